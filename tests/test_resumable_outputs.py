"""Results that are never half-written, mixed or stale (issue #10 parts 4 and 6).

- `corrvos infer` killed with SIGKILL mid-sequence leaves only whole sequences; `--skip-done` continues it and
  the results (and their J&F) equal an uninterrupted run's, byte for byte;
- an output folder of another run, of foreign files, or of this run without `--skip-done` is refused;
  `--overwrite` deletes only what corrvos wrote;
- `corrvos segment`: the mask inside the frame folder is not a frame, 255 is void, a small video is not enlarged
  unless `--upsample`, earlier results need `--overwrite`; overlays use a codec browsers play when available.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from corrvos.cli import main
from corrvos.data.io import read_label, write_image, write_label
from corrvos.inference.outputs import MANIFEST_NAME, PARTIAL_PREFIX
from test_cli_infer import _davis_root, _scene

SEQS = ("s1", "s2", "s3", "s4")


def _infer_argv(ck: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["infer", "--model", str(ck), "--davis-root", str(root), "--out", str(out), "--device", "cpu", *extra]


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
def test_killed_infer_resumes_with_skip_done_and_scores_the_same(tmp_path: Path, ckpt: Path) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=SEQS, frames=20)
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(_infer_argv(ckpt, root, full)) == 0

    code = "import sys; from corrvos.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *_infer_argv(ckpt, root, killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partials = list(killed.glob(f"{PARTIAL_PREFIX}*"))
            whole = [p for p in killed.glob("s*") if p.is_dir()]
            if whole and partials and len(list(partials[0].glob("*.png"))) >= 3:
                proc.send_signal(signal.SIGKILL)  # a hard kill: no clean-up code runs
                break
            time.sleep(0.005)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-sequence"

    # only whole sequences under their final names; the partial one is hidden
    whole = sorted(p.name for p in killed.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert whole and len(whole) < len(SEQS)
    for name in whole:
        assert _pngs(killed / name) == _pngs(full / name)
    assert list(killed.glob(f"{PARTIAL_PREFIX}*"))

    # without --skip-done the folder is refused; with it the run continues and ends equal to the full run
    assert main(_infer_argv(ckpt, root, killed)) == 2
    assert main(_infer_argv(ckpt, root, killed, "--skip-done")) == 0
    assert not list(killed.glob(f"{PARTIAL_PREFIX}*"))
    assert _pngs(killed) == _pngs(full)
    from corrvos.evaluation import evaluate_davis

    scores = [evaluate_davis(root, f, write_csv=False, progress=False) for f in (full, killed)]
    assert scores[0].global_scores == scores[1].global_scores
    assert np.array_equal(scores[0].j_stats, scores[1].j_stats)


def test_infer_refuses_stale_and_foreign_folders_and_overwrite_clears_only_its_own(
    tmp_path: Path,
    ckpt: Path,
    capsys,
) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("s1", "s2"), frames=3)
    out = tmp_path / "res"
    assert main(_infer_argv(ckpt, root, out, "--sequences", "s1")) == 0
    assert (out / MANIFEST_NAME).is_file() and (out / "s1").is_dir()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()

    # the same job: refused without a flag, continued with --skip-done (s1 is not run again)
    assert main(_infer_argv(ckpt, root, out)) == 2
    assert "--skip-done continues it" in capsys.readouterr().err
    before = (out / "s1" / "00001.png").stat().st_mtime_ns
    assert main(_infer_argv(ckpt, root, out, "--skip-done")) == 0
    assert (out / "s1" / "00001.png").stat().st_mtime_ns == before and (out / "s2").is_dir()
    assert "1 of 2 sequences already complete" in capsys.readouterr().out

    # another setting: stale results are refused even with --skip-done, naming what differs
    assert main(_infer_argv(ckpt, root, out, "--mem-every", "2", "--skip-done")) == 2
    assert "another run (different inference)" in capsys.readouterr().err
    # --overwrite deletes the earlier results (and only them) and runs again
    assert main(_infer_argv(ckpt, root, out, "--mem-every", "2", "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "s1").is_dir() and (out / "s2").is_dir()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.png").write_bytes(b"x")
    capsys.readouterr()
    for extra in ((), ("--overwrite",), ("--skip-done",)):
        assert main(_infer_argv(ckpt, root, foreign, *extra)) == 2
        assert "no corrvos results manifest" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["x.png"]


def test_infer_reports_every_broken_sequence_before_running_any(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("s1", "s2", "s3"), frames=3)
    (root / "Annotations" / "480p" / "s1" / "00000.png").write_bytes(b"broken")
    write_label(root / "Annotations" / "480p" / "s3" / "00000.png", np.ones((10, 10), np.uint8))  # wrong size
    write_image(root / "JPEGImages" / "480p" / "s2" / "00002.jpg", np.zeros((20, 20, 3), np.uint8))  # wrong size
    out = tmp_path / "res"
    assert main(_infer_argv(ckpt, root, out)) == 2
    err = capsys.readouterr().err
    assert "3 input problem(s), nothing was run" in err
    assert "s1/00000.png: cannot decode" in err and "s2/00002.jpg: frame is 20x20 (HxW)" in err
    assert "s3/00000.png: annotation is 10x10 (HxW)" in err
    assert not out.exists()


def _frames_folder(folder: Path, frames: int = 4) -> Path:
    for t in range(frames):
        write_image(folder / f"{t:05d}.png", _scene(t)[0])
    return folder


def _segment(ck: Path, video: Path, mask: Path, out: Path, *extra: str) -> int:
    return main(["segment", "--model", str(ck), "--video", str(video), "--mask", str(mask), "--out", str(out),
                 "--device", "cpu", "--no-overlay", *extra])  # fmt: skip


def test_segment_mask_in_frame_folder_void_and_no_upsampling(tmp_path: Path, ckpt: Path, capsys) -> None:
    frames = _frames_folder(tmp_path / "frames")
    label = _scene(0)[1]
    mask = frames / "mask.png"  # saved beside the frames, same type: not a frame
    write_label(mask, label)
    assert _segment(ckpt, frames, mask, tmp_path / "a") == 0
    assert sorted(p.name for p in (tmp_path / "a" / "masks").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert "smaller than --size 480: processed at its own size" in capsys.readouterr().out

    # the default never enlarges the 48x80 video: the same masks as --size -1; --upsample enlarges it
    assert _segment(ckpt, frames, mask, tmp_path / "b", "--size", "-1") == 0
    assert _pngs(tmp_path / "a") == _pngs(tmp_path / "b")
    assert _segment(ckpt, frames, mask, tmp_path / "c", "--size", "96", "--upsample") == 0
    assert _segment(ckpt, frames, mask, tmp_path / "d", "--size", "64", "--upsample") == 0
    assert _segment(ckpt, frames, mask, tmp_path / "f", "--size", "96") == 0  # asked, but not enlarged
    assert _pngs(tmp_path / "f") == _pngs(tmp_path / "a")
    assert _pngs(tmp_path / "c") != _pngs(tmp_path / "a") and _pngs(tmp_path / "d") != _pngs(tmp_path / "c")

    # 255 is void, as in `infer`: a mask with a void region segments like the mask without it
    voided = label.copy()
    voided[:4, :] = 255
    void_mask = tmp_path / "void.png"
    write_label(void_mask, voided)
    assert _segment(ckpt, frames, void_mask, tmp_path / "e") == 0
    first = read_label(tmp_path / "e" / "masks" / "00000.png")
    assert 255 not in np.unique(read_label(tmp_path / "e" / "masks" / "00001.png"))
    assert sorted(np.unique(first).tolist()) == [0, 1, 2]
    # and the objects are exactly the mask's non-void ids
    assert "objects [1, 2]" in capsys.readouterr().out


def test_segment_refuses_earlier_results_unless_overwrite(tmp_path: Path, ckpt: Path, capsys) -> None:
    frames = _frames_folder(tmp_path / "frames", frames=3)
    mask = tmp_path / "m.png"
    write_label(mask, _scene(0)[1])
    out = tmp_path / "seg"
    assert _segment(ckpt, frames, mask, out) == 0
    (out / "masks" / "stale.png").write_bytes(b"old")
    capsys.readouterr()
    assert _segment(ckpt, frames, mask, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _segment(ckpt, frames, mask, out, "--overwrite") == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert not list(out.glob(".partial*"))


def test_overlay_video_uses_a_browser_codec_when_opencv_has_one(tmp_path: Path) -> None:
    from corrvos.visualize.overlay import BROWSER_CODECS, VideoWriter, first_writable_codec

    codec = first_writable_codec()
    assert codec is not None
    with VideoWriter(tmp_path / "v.mp4", fps=5) as video:
        for t in range(4):
            video.write(_scene(t)[0])
    assert video.codec == codec
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 4
    if codec in BROWSER_CODECS:  # PyPI OpenCV wheels: VP9 in MP4 (no H.264 encoder)
        assert fourcc.lower() in {"avc1", "h264", "vp09", "vp90"}, fourcc
