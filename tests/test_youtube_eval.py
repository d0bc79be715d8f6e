"""Approximate local YouTube-VOS J/F and the submission zip, on tiny YouTube-VOS-layout trees in tmp_path."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrvos.cli import main as cli_main
from corrvos.data.io import read_label, write_label
from corrvos.errors import DataError
from corrvos.evaluation import evaluate_youtube, f_measure, pack_youtube

FRAMES = ["00000", "00005", "00010", "00015"]


def video(h: int = 24, w: int = 36) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Object 2 from the first frame, object 5 appearing in the third annotated frame."""
    gts, preds = [], []
    for t in range(len(FRAMES)):
        g, p = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        g[4:12, 3 + t : 13 + t] = 2
        p[5:12, 3 + t : 13 + t] = 2  # one row missing
        if t >= 2:
            g[14:20, 20:30] = 5
            p[14:20, 22:30] = 5
        gts.append(g)
        preds.append(p)
    return gts, preds


def write_video(folder: Path, labels: list[np.ndarray]) -> None:
    for name, lab in zip(FRAMES, labels, strict=True):
        write_label(folder / f"{name}.png", lab)


def plain_j(p: np.ndarray, g: np.ndarray) -> float:
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def test_objects_scored_after_first_appearance(tmp_path) -> None:
    gts, preds = video()
    write_video(tmp_path / "gt" / "vid", gts)
    write_video(tmp_path / "res" / "vid", preds)
    result = evaluate_youtube(tmp_path / "gt", tmp_path / "res", progress=False)
    v = result.videos[0]
    assert v.objects == [2, 5] and list(v.frames) == [3, 1]  # object 5: only frame 00015 after 00010
    j2 = np.mean([plain_j(preds[t] == 2, gts[t] == 2) for t in (1, 2, 3)])
    j5 = plain_j(preds[3] == 5, gts[3] == 5)
    f5 = f_measure(preds[3] == 5, gts[3] == 5)
    assert v.j[0] == pytest.approx(j2, abs=1e-15) and v.j[1] == j5 and v.f[1] == f5
    assert result.global_scores["J-Mean"] == pytest.approx((j2 + j5) / 2, abs=1e-15)
    assert result.approximate
    skip = evaluate_youtube(tmp_path / "gt", tmp_path / "res", skip_last=True, write_csv=False, progress=False)
    assert skip.videos[0].objects == [2] and list(skip.videos[0].frames) == [2]
    rows = (tmp_path / "res" / "corrvos_youtube_per-object.csv").read_text().splitlines()
    assert rows[0] == "Video,Object,Frames,J-Mean,F-Mean" and rows[1].startswith("vid,2,3,")
    out = tmp_path / "cli"
    assert (
        cli_main(
            [
                "eval",
                "--youtube-gt",
                str(tmp_path / "gt"),
                "--results",
                str(tmp_path / "res"),
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    expected = (tmp_path / "res" / "corrvos_youtube_global.csv").read_text()
    assert (out / "corrvos_youtube_global.csv").read_text() == expected


def test_youtube_bad_input(tmp_path) -> None:
    gts, preds = video()
    write_video(tmp_path / "gt" / "vid", gts)
    preds[1] = preds[1].copy()
    preds[1][0, 0] = 7  # an id the GT does not have
    write_video(tmp_path / "res" / "vid", preds)
    (tmp_path / "res" / "vid" / "00010.png").unlink()
    with pytest.raises(DataError) as exc:
        evaluate_youtube(tmp_path / "gt", tmp_path / "res", progress=False)
    msg = str(exc.value)
    assert "00005.png: predicted id(s) [7]" in msg and "00010.png: label map not found" in msg
    assert cli_main(["eval", "--youtube-gt", str(tmp_path / "gt"), "--results", str(tmp_path / "res"), "--quiet"]) == 2


def make_youtube_root(tmp: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    root = tmp / "yt"
    for vid, (h, w) in sizes.items():
        for name in FRAMES[:3]:
            jpg = root / "valid" / "JPEGImages" / vid / f"{name}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(jpg)
    return root


def test_pack_youtube_layout_and_checks(tmp_path) -> None:
    root = make_youtube_root(tmp_path, {"a": (16, 24), "b": (20, 30)})
    res = tmp_path / "out" / "Annotations"
    for vid, (h, w) in {"a": (16, 24), "b": (20, 30)}.items():
        for i, name in enumerate(["00000", "00001", "00005", "00010"]):  # 00001: an extra (all-frames) output
            write_label(res / vid / f"{name}.png", np.full((h, w), i % 2, np.uint8))
    out = tmp_path / "sub.zip"
    assert pack_youtube(tmp_path / "out", out, youtube_root=root) == 6
    with zipfile.ZipFile(out) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        assert names == [f"Annotations/{v}/{f}.png" for v in "ab" for f in FRAMES[:3]]
        assert all(n.startswith("Annotations/") for n in zf.namelist())
        zf.extract("Annotations/b/00005.png", tmp_path / "x")
    assert np.array_equal(read_label(tmp_path / "x" / "Annotations" / "b" / "00005.png"), np.zeros((20, 30)))
    # every problem at once: a missing frame and a wrong size; no zip written
    (res / "a" / "00005.png").unlink()
    write_label(res / "b" / "00010.png", np.zeros((20, 31), np.uint8))
    bad = tmp_path / "bad.zip"
    with pytest.raises(DataError) as exc:
        pack_youtube(res, bad, youtube_root=root)
    assert "a/00005.png: missing" in str(exc.value) and "b/00010.png: size 20x31 (HxW)" in str(exc.value)
    assert not bad.exists()
    assert cli_main(["pack-youtube", "--results", str(res), "--out", str(bad), "--youtube-root", str(root)]) == 2
    # without a root every PNG is packed as is
    assert cli_main(["pack-youtube", "--results", str(res), "--out", str(bad)]) == 0
    with zipfile.ZipFile(bad) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 7


def test_pack_youtube_fills_frames_before_the_first_reference_mask(tmp_path) -> None:
    """`corrvos infer` writes nothing before a video's first reference mask (as the official scripts); the zip
    still needs a PNG for every frame, so those frames are packed as background. Other missing frames stay errors."""
    root = make_youtube_root(tmp_path, {"a": (16, 24), "b": (20, 30)})
    write_label(root / "valid" / "Annotations" / "a" / "00000.png", np.ones((16, 24), np.uint8))
    write_label(root / "valid" / "Annotations" / "b" / "00005.png", np.ones((20, 30), np.uint8))  # starts late
    res = tmp_path / "res" / "Annotations"
    for vid, (h, w), names in (("a", (16, 24), FRAMES[:3]), ("b", (20, 30), FRAMES[1:3])):
        for name in names:
            write_label(res / vid / f"{name}.png", np.full((h, w), 1, np.uint8))
    out = tmp_path / "sub.zip"
    assert cli_main(["pack-youtube", "--results", str(res.parent), "--out", str(out), "--youtube-root", str(root)]) == 0
    with zipfile.ZipFile(out) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        assert names == [f"Annotations/{v}/{f}.png" for v in "ab" for f in FRAMES[:3]]
        zf.extractall(tmp_path / "x")
    blank = tmp_path / "x" / "Annotations" / "b" / "00000.png"
    assert np.array_equal(read_label(blank), np.zeros((20, 30), np.uint8))
    with Image.open(blank) as img:
        assert img.mode == "P"
    assert np.array_equal(read_label(tmp_path / "x" / "Annotations" / "b" / "00005.png"), np.ones((20, 30)))
    # a frame after the first reference mask is still required
    (res / "b" / "00010.png").unlink()
    with pytest.raises(DataError, match=r"b/00010\.png: missing"):
        pack_youtube(res, tmp_path / "bad.zip", youtube_root=root)
