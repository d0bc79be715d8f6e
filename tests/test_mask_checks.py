"""Masks that would be read wrong are refused (issue #21, item 1): lossy files (JPEG, lossy WebP) wherever masks are
read, automatically numbered colour masks with many tiny colours, and the 0/255 binary mask, which ``--mask-format
binary`` reads as object 1 (and which the "no object" message names).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrvos.cli import main
from corrvos.data.io import label_header_problem, lossy_format, read_label, write_label
from corrvos.data.mask_formats import ColourMap, read_mask_any
from corrvos.errors import DataError
from test_cli_infer import _davis_root, _scene, _write_mp4

H, W = 48, 80
RED, BLUE = (230, 30, 30), (30, 40, 230)


def _rgb(label: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*label.shape, 3), np.uint8)  # [H, W, 3]
    rgb[label == 1], rgb[label == 2] = RED, BLUE
    return rgb


def _segment(tmp_path: Path, ckpt: Path, mask: Path, *extra: str) -> list[str]:
    video = tmp_path / "clip.mp4"
    if not video.exists():
        _write_mp4(video, frames=3)
    out = tmp_path / "out"
    return ["segment", "--model", str(ckpt), "--video", str(video), "--mask", str(mask), "--out", str(out),
            "--device", "cpu", "--no-overlay", *extra]  # fmt: skip


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]  # no progress bars
    assert len(lines) == 1, lines
    return lines[0]


def test_colour_jpeg_mask_is_refused_by_segment(tmp_path: Path, ckpt: Path, capsys) -> None:
    mask = tmp_path / "first.jpg"
    Image.fromarray(_rgb(_scene(0)[1])).save(mask, quality=90)
    with Image.open(mask) as img:  # what the old reader numbered: far more colours than the 2 objects
        assert len(np.unique(np.array(img).reshape(-1, 3), axis=0)) > 10
    assert main(_segment(tmp_path, ckpt, mask)) == 2
    err = _one_error_line(capsys)
    assert f"{mask}: mask is a JPEG file" in err and "PNG" in err, err
    assert not (tmp_path / "out").exists()


def test_jpeg_content_is_refused_whatever_the_name(tmp_path: Path) -> None:
    """A grayscale JPEG saved as .png (mode L, so the old reader took its noisy values as ids)."""
    label = _scene(0)[1] * 100  # ids 100 and 200
    buffer = io.BytesIO()
    Image.fromarray(label, mode="L").save(buffer, format="JPEG", quality=90)
    path = tmp_path / "00000.png"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"00000\.png: mask is a JPEG file"):
        read_label(path)  # the datasets' annotations, infer, visualize
    problem, size = label_header_problem(path)  # eval's up-front check
    assert problem is not None and "mask is a JPEG file" in problem and size == (H, W)
    with pytest.raises(DataError, match="mask is a JPEG file"):
        read_mask_any(path, "label")
    with pytest.raises(DataError, match="mask is a JPEG file"):
        read_mask_any({1: path}, "per-object")
    write_label(path, _scene(0)[1])  # the same name as a PNG is fine
    assert label_header_problem(path)[0] is None and lossy_format(path, "PNG") is None


def test_infer_refuses_a_jpeg_annotation(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    first = root / "Annotations" / "480p" / "aaa" / "00000.png"
    Image.fromarray(_scene(0)[1], mode="L").save(first, format="JPEG")
    argv = ["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(tmp_path / "res"), "--device", "cpu"]
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert f"{first}: mask is a JPEG file" in err, err


def test_lossy_webp_is_refused_and_lossless_webp_read_exactly(tmp_path: Path) -> None:
    label = _scene(0)[1]
    lossless, lossy = tmp_path / "lossless.webp", tmp_path / "lossy.webp"
    Image.fromarray(_rgb(label)).save(lossless, lossless=True)
    Image.fromarray(_rgb(label)).save(lossy, lossless=False, quality=80)
    read = read_mask_any(lossless, "rgb", ColourMap())
    assert read.objects == [1, 2] and np.array_equal(read.label, label)
    with pytest.raises(DataError, match=r"lossy\.webp: mask is a lossy WebP file"):
        read_mask_any(lossy, "rgb", ColourMap())
    assert lossy_format(lossless, "WEBP") is None and lossy_format(lossy, "WEBP") == "lossy WebP"


def _with_specks(label: np.ndarray, specks: int, pixels: int) -> np.ndarray:
    """The two-object colour mask plus ``specks`` extra colours of ``pixels`` pixels each (in the empty top rows)."""
    rgb = _rgb(label)
    for k in range(specks):
        rgb[0, k * 12 : k * 12 + pixels] = (k + 1, k + 1, k + 1)  # near-black noise colours, as anti-aliasing makes
    return rgb


def test_many_tiny_colours_are_refused_at_the_documented_threshold(tmp_path: Path) -> None:
    """48x80 = 3840 pixels: tiny is below max(10, 0.05% of 3840) = 10 pixels; more than 3 tiny colours refuse."""
    label = _scene(0)[1]
    assert not label[0].any()
    ok = ColourMap().to_labels(_with_specks(label, 4, 10), tmp_path / "ten.png")  # 10 pixels: not tiny
    assert len(np.unique(ok)) == 7
    assert len(np.unique(ColourMap().to_labels(_with_specks(label, 3, 9), tmp_path / "three.png"))) == 6
    with pytest.raises(DataError, match=r"four\.png: 4 of its 6 object colours cover fewer than 10 pixels each"):
        ColourMap().to_labels(_with_specks(label, 4, 9), tmp_path / "four.png")
    # a --palette-map (fixed colours) lists the colours on purpose: no check
    fixed = ColourMap({1: RED, 2: BLUE, **{10 + k: (k + 1, k + 1, k + 1) for k in range(4)}}, fixed=True)
    ids = fixed.to_labels(_with_specks(label, 4, 9), tmp_path / "map.png")
    assert np.unique(ids).tolist() == [0, 1, 2, 10, 11, 12, 13]


def test_binary_mask_format_and_the_hint_of_a_0_255_mask(tmp_path: Path, ckpt: Path, capsys) -> None:
    label = _scene(0)[1]
    mask = tmp_path / "binary.png"
    Image.fromarray(np.where(label == 2, 255, 0).astype(np.uint8), mode="L").save(mask)
    read = read_mask_any(mask, "binary")
    assert read.objects == [1] and np.array_equal(read.label, (label == 2).astype(np.uint8))
    assert main(_segment(tmp_path, ckpt, mask)) == 2  # auto: 255 is void, so no object
    err = _one_error_line(capsys)
    assert f"{mask}: mask has no object" in err and "--mask-format binary" in err, err
    assert main(_segment(tmp_path, ckpt, mask, "--mask-format", "binary")) == 0
    assert "objects [1]" in capsys.readouterr().out
    assert np.array_equal(read_label(tmp_path / "out" / "masks" / "00000.png"), read.label)
