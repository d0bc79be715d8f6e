"""`corrvos segment` (issue #12 parts 1-3): masks on any frames, backward propagation, frame ranges, mask formats
(palette, grayscale, RGB colours, one binary mask per object) and folders of videos with --skip-done.

A random STCN (key projection scaled down, as in test_bad_inputs) segments tiny 48x80 scenes on the CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from corrvos.cli import main
from corrvos.data.io import read_label, write_image, write_label
from corrvos.data.mask_formats import ColourMap, read_mask_any
from corrvos.errors import DataError
from corrvos.inference import InferenceCore
from corrvos.inference.outputs import MANIFEST_NAME
from test_cli_infer import _scene, _write_mp4

TOP, LOW = (0, 200, 0), (200, 0, 0)  # colours of object 1 (upper box) and object 2 (lower box) in RGB masks


def _folder(folder: Path, frames: int) -> Path:
    for t in range(frames):
        write_image(folder / f"{t:05d}.png", _scene(t)[0])  # PNG: lossless, so copies are the same frames
    return folder


def _seg(ck: Path, out: Path, *extra: str) -> int:
    return main(["segment", "--model", str(ck), "--out", str(out), "--device", "cpu", "--size", "-1", *extra])


def _labels(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: read_label(p) for p in sorted((out / "masks").glob("*.png"))}


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _rgb_mask(label: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*label.shape, 3), np.uint8)
    rgb[label == 1], rgb[label == 2] = TOP, LOW
    return rgb


def test_mask_on_a_later_frame_adds_an_object_and_a_known_id_is_corrected(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames", 5)
    masks = tmp_path / "masks"
    first, later = _scene(0)[1], _scene(2)[1]
    write_label(masks / "00000.png", np.where(first == 1, 1, 0))  # object 1 only
    write_label(masks / "00002.png", np.where(later == 2, 2, 0))  # object 2 appears on frame 2
    out = tmp_path / "out"
    assert _seg(ckpt, out, "--video", str(frames), "--mask-dir", str(masks), "--no-overlay") == 0
    got = _labels(out)
    assert sorted(got) == [f"{t:05d}" for t in range(5)]
    assert all(2 not in got[f"{t:05d}"] for t in (0, 1))  # absent before its frame
    assert all((got[f"{t:05d}"] == 2).sum() > 50 for t in (2, 3, 4))  # present after
    assert np.array_equal(got["00002"] == 2, later == 2)

    # a known id given again is a correction: its mask replaces the prediction on that frame
    fix = np.zeros_like(first)
    fix[8:18, 30:40] = 1
    write_label(masks / "00003.png", fix)
    out = tmp_path / "corrected"
    assert _seg(ckpt, out, "--video", str(frames), "--mask-dir", str(masks), "--no-overlay") == 0
    got = _labels(out)
    assert np.array_equal(got["00003"] == 1, fix == 1)
    # the same as InferenceCore.step with each mask and the ids it gives
    from corrvos.models import load_model

    core = InferenceCore(load_model(ckpt))
    given = {0: (np.where(first == 1, 1, 0), [1]), 2: (np.where(later == 2, 2, 0), [2]), 3: (fix, [1])}
    for t in range(5):
        mask, ids = given.get(t, (None, None))
        image = torch.from_numpy(_scene(t)[0]).permute(2, 0, 1).float() / 255
        prob = core.step(image, None if mask is None else torch.from_numpy(mask).long(), ids, end=t == 4)
        assert np.array_equal(got[f"{t:05d}"], core.prob_to_mask(prob).numpy()), t


def test_backward_propagation_equals_forward_on_the_reversed_video(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames", 5)
    reversed_frames = tmp_path / "reversed"
    reversed_frames.mkdir()
    for t in range(5):
        shutil.copy(frames / f"{4 - t:05d}.png", reversed_frames / f"{t:05d}.png")
    mask = tmp_path / "last.png"
    write_label(mask, _scene(4)[1])
    back, fwd = tmp_path / "back", tmp_path / "fwd"
    assert _seg(ckpt, back, "--video", str(frames), "--mask", str(mask), "--mask-frame", "4", "--no-overlay") == 0
    assert _seg(ckpt, fwd, "--video", str(reversed_frames), "--mask", str(mask), "--no-overlay") == 0
    for t in range(5):
        assert (back / "masks" / f"{t:05d}.png").read_bytes() == (fwd / "masks" / f"{4 - t:05d}.png").read_bytes()
    assert _labels(back)["00000"].any()  # propagated, not background
    assert not list(back.glob(".*"))  # no scratch or partial folder left

    # a video file mid-annotated: the backward frames are decoded once and kept losslessly, so it equals the run on
    # a folder of its decoded frames
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames=5)
    decoded = tmp_path / "decoded"
    from corrvos.data.video import open_frames

    for name, rgb in open_frames(video):
        write_image(decoded / f"{name}.png", rgb)
    mid = tmp_path / "mid.png"
    write_label(mid, _scene(2)[1])
    a, b = tmp_path / "a", tmp_path / "b"
    assert _seg(ckpt, a, "--video", str(video), "--mask", str(mid), "--mask-frame", "2", "--no-overlay") == 0
    assert _seg(ckpt, b, "--video", str(decoded), "--mask", str(mid), "--mask-frame", "2", "--no-overlay") == 0
    assert _pngs(a) == _pngs(b) and len(_pngs(a)) == 5
    assert not list(a.glob(".*"))


def test_frame_range_and_stride_output_exactly_those_frames(tmp_path: Path, ckpt: Path, capsys) -> None:
    frames = _folder(tmp_path / "frames", 7)
    mask = tmp_path / "m.png"
    write_label(mask, _scene(1)[1])
    out = tmp_path / "out"
    rng = ("--start", "1", "--end", "6", "--stride", "2")
    assert _seg(ckpt, out, "--video", str(frames), "--mask", str(mask), "--mask-frame", "1", *rng, "--no-overlay") == 0
    assert sorted(_labels(out)) == ["00001", "00003", "00005"]
    # the network sees those frames as consecutive: the same as a folder holding only them
    sub = tmp_path / "sub"
    sub.mkdir()
    for t in (1, 3, 5):
        shutil.copy(frames / f"{t:05d}.png", sub / f"{t:05d}.png")
    assert _seg(ckpt, tmp_path / "sub_out", "--video", str(sub), "--mask", str(mask), "--no-overlay") == 0
    assert _pngs(out) == _pngs(tmp_path / "sub_out")
    # an annotation the range leaves out is refused before anything is written
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert _seg(ckpt, bad, "--video", str(frames), "--mask", str(mask), "--mask-frame", "2", *rng) == 2
    assert "leave out" in capsys.readouterr().err and not bad.exists()
    # a video file with an overlay: one overlay frame per processed frame
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames=7)
    vout = tmp_path / "vout"
    assert _seg(ckpt, vout, "--video", str(video), "--mask", str(mask), "--mask-frame", "1", *rng) == 0
    assert sorted(_labels(vout)) == ["00001", "00003", "00005"]
    cap = cv2.VideoCapture(str(vout / "overlay.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 3


def test_colour_masks_round_trip(tmp_path: Path, ckpt: Path, capsys) -> None:
    frames = _folder(tmp_path / "frames", 4)
    label = _scene(0)[1]
    rgb_mask, pal_mask = tmp_path / "rgb.png", tmp_path / "pal.png"
    Image.fromarray(_rgb_mask(label), mode="RGB").save(rgb_mask)
    write_label(pal_mask, label)
    rgb_out, pal_out = tmp_path / "rgb_out", tmp_path / "pal_out"
    assert _seg(ckpt, rgb_out, "--video", str(frames), "--mask", str(rgb_mask), "--no-overlay") == 0
    assert _seg(ckpt, pal_out, "--video", str(frames), "--mask", str(pal_mask), "--no-overlay") == 0
    # ids by first appearance in raster order (the upper box first), written beside the results
    assert json.loads((rgb_out / "colour_ids.json").read_text()) == {"0": [0, 0, 0], "1": list(TOP), "2": list(LOW)}
    got, expected = _labels(rgb_out), _labels(pal_out)
    assert sorted(got) == sorted(expected) and all(np.array_equal(got[k], expected[k]) for k in got)
    # the result PNGs' palette reproduces the colours: frame 0 maps back to the input mask
    for name in got:
        with Image.open(rgb_out / "masks" / f"{name}.png") as img:
            assert img.mode == "P"
            palette = np.array(img.getpalette()[: 256 * 3], np.uint8).reshape(256, 3)
            colours = palette[np.array(img)]  # [H, W, 3]
        assert np.array_equal(colours[got[name] == 1], np.tile(TOP, ((got[name] == 1).sum(), 1)))
        if name == "00000":
            assert np.array_equal(colours, _rgb_mask(label))
    # an explicit --palette-map fixes the ids; a colour it does not list is an error naming the file
    pmap = tmp_path / "map.json"
    pmap.write_text(json.dumps({"7": "#c80000", "5": list(TOP)}))
    mapped = tmp_path / "mapped"
    argv = ("--video", str(frames), "--mask", str(rgb_mask), "--palette-map", str(pmap))
    assert _seg(ckpt, mapped, *argv, "--no-overlay") == 0
    remap = np.array([0, 5, 7], np.uint8)
    assert all(np.array_equal(lab, remap[expected[k]]) for k, lab in _labels(mapped).items())
    pmap.write_text(json.dumps({"5": list(TOP)}))
    capsys.readouterr()
    assert _seg(ckpt, tmp_path / "x", *argv) == 2
    err = capsys.readouterr().err
    assert "#c80000" in err and str(rgb_mask) in err and not (tmp_path / "x").exists()


def test_per_object_binary_masks_equal_the_label_map(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames", 4)
    label = _scene(0)[1]
    per_object = tmp_path / "objects"
    per_object.mkdir()
    Image.fromarray(np.where(label == 1, 255, 0).astype(np.uint8), mode="L").save(per_object / "00000_1.png")  # 0/255
    Image.fromarray((label == 2).astype(np.uint8), mode="L").save(per_object / "00000_2.png")  # 0/1
    combined = tmp_path / "combined.png"
    write_label(combined, label)
    a, b = tmp_path / "a", tmp_path / "b"
    argv = ("--video", str(frames), "--mask-dir", str(per_object), "--mask-format", "per-object")
    assert _seg(ckpt, a, *argv, "--no-overlay") == 0
    assert _seg(ckpt, b, "--video", str(frames), "--mask", str(combined), "--no-overlay") == 0
    assert _pngs(a) == _pngs(b) and len(_pngs(a)) == 4


def test_read_mask_any_formats(tmp_path: Path) -> None:
    label = _scene(0)[1]
    rgba = np.zeros((*label.shape, 4), np.uint8)
    rgba[..., :3] = _rgb_mask(label)
    rgba[..., 3] = 255
    rgba[label == 2, 3] = 0  # transparent: background
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    read = read_mask_any(tmp_path / "rgba.png", "auto", ColourMap())
    assert read.kind == "colours" and read.objects == [1] and np.array_equal(read.label, (label == 1).astype(np.uint8))
    write_label(tmp_path / "pal.png", label)
    Image.fromarray(label, mode="L").save(tmp_path / "gray.png")
    assert read_mask_any(tmp_path / "pal.png", "palette").objects == [1, 2]
    assert np.array_equal(read_mask_any(tmp_path / "gray.png", "label").label, label)
    with pytest.raises(DataError, match="not a palette"):
        read_mask_any(tmp_path / "gray.png", "palette")
    # palette PNG read as colours: the DAVIS colours get ids by appearance
    assert np.array_equal(read_mask_any(tmp_path / "pal.png", "rgb", ColourMap()).label, label)
    # per-object: the larger id wins on overlaps, an empty file still gives its id
    a, b, c = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    a[:2], b[1:3] = 255, 255
    for name, m in (("a", a), ("b", b), ("c", c)):
        Image.fromarray(m, mode="L").save(tmp_path / f"{name}.png")
    read = read_mask_any({3: tmp_path / "a.png", 9: tmp_path / "b.png", 4: tmp_path / "c.png"}, "per-object")
    assert read.objects == [3, 4, 9] and read.label[:, 0].tolist() == [3, 9, 9, 0]
    with pytest.raises(DataError, match="more than the 254"):
        noisy = np.stack(np.meshgrid(np.arange(1, 21), np.arange(1, 21), [7]), axis=-1)[..., 0, :]  # [20, 20, 3]
        ColourMap().to_labels(noisy.astype(np.uint8), tmp_path / "noisy.png")  # 400 colours: anti-aliased edges


def _videos(root: Path) -> tuple[Path, Path]:
    videos, masks = root / "videos", root / "masks"
    _write_mp4(videos / "a.mp4", frames=5)
    _folder(videos / "b", 4)
    write_label(masks / "a.png", _scene(0)[1])  # frame-0 mask of a.mp4
    write_label(masks / "b" / "00000.png", np.where(_scene(0)[1] == 1, 1, 0))
    write_label(masks / "b" / "00002.png", np.where(_scene(2)[1] == 2, 2, 0))
    return videos, masks


def test_videos_folder_with_skip_done(tmp_path: Path, ckpt: Path, capsys) -> None:
    videos, masks = _videos(tmp_path)
    out = tmp_path / "out"
    argv = ("--videos", str(videos), "--masks", str(masks))
    assert _seg(ckpt, out, *argv) == 0
    assert (out / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in (out / "a" / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert sorted(p.name for p in (out / "b" / "masks").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert (out / "a" / "overlay.mp4").is_file() and (out / "b" / "overlay.mp4").is_file()
    assert 2 in read_label(out / "b" / "masks" / "00003.png") and 2 not in read_label(out / "b" / "masks" / "00001.png")
    # one video segments as `--video` does
    single = tmp_path / "single"
    assert _seg(ckpt, single, "--video", str(videos / "a.mp4"), "--mask", str(masks / "a.png"), "--no-overlay") == 0
    assert _pngs(single / "masks") == _pngs(out / "a" / "masks")

    first_b = _pngs(out / "b")
    stamp = (out / "a" / "masks" / "00001.png").stat().st_mtime_ns
    shutil.rmtree(out / "b")
    capsys.readouterr()
    assert _seg(ckpt, out, *argv) == 2  # the same job again: refused without --skip-done
    assert "--skip-done continues it" in capsys.readouterr().err
    assert _seg(ckpt, out, *argv, "--skip-done") == 0
    printed = capsys.readouterr().out
    assert "1 of 2 videos already complete" in printed and "b: 4 frames" in printed and "a: " not in printed
    assert (out / "a" / "masks" / "00001.png").stat().st_mtime_ns == stamp
    assert _pngs(out / "b") == first_b
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert _seg(ckpt, out, *argv, "--skip-done", "--stride", "2") == 2  # another setting: refused
    assert "another run" in capsys.readouterr().err


def test_videos_folder_reports_every_problem_before_running(tmp_path: Path, ckpt: Path, capsys) -> None:
    videos, masks = _videos(tmp_path)
    (masks / "a.png").unlink()  # a.mp4 has no mask
    write_label(masks / "b" / "00000.png", np.ones((10, 10), np.uint8))  # wrong size
    write_label(masks / "b" / "frame7.png", np.ones((48, 80), np.uint8))  # no such frame
    out = tmp_path / "out"
    assert _seg(ckpt, out, "--videos", str(videos), "--masks", str(masks)) == 2
    err = capsys.readouterr().err
    assert "3 input problem(s), nothing was run" in err
    assert f"no masks for {videos / 'a.mp4'}" in err
    assert "00000.png: mask is 10x10 (HxW)" in err and "frame7.png: no frame 'frame7'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--video", "v"), "--video needs one of --mask"),
        (("--videos", "v"), "--videos needs --masks"),
        (("--videos", "v", "--masks", "m", "--mask", "a.png"), "--mask applies to --video"),
        (("--video", "v", "--mask", "a.png", "--mask-format", "per-object"), "give their folder with --mask-dir"),
        (("--video", "v", "--mask", "a.png", "--skip-done"), "--skip-done applies to --videos only"),
        (("--video", "v", "--mask", "a.png", "--stride", "0"), "--stride >= 1"),
        (("--video", "v", "--mask", "a.png", "--start", "5", "--end", "5"), "--end > --start"),
    ],
)
def test_option_errors_are_one_line(tmp_path: Path, extra: tuple[str, ...], expected: str, capsys) -> None:
    out = tmp_path / "out"
    assert main(["segment", "--model", "none.pth", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()
