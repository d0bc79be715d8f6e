"""Test-time augmentation (`infer --flip`, `--scales`), saved scores (`--save-scores`) and `corrvos merge`.

The expected outputs are computed independently with :class:`InferenceCore`: one pass on the original frames and
one on the mirrored frames and masks (or one per internal size), averaged in float32 as ``(p1 + p2) / 2``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.data.io import read_label
from corrvos.inference import InferenceCore, inference_config_for
from corrvos.inference.scores import ScoreFile, quantize_scores
from test_cli_infer import _davis_root, _scene

FRAMES = 4


def _passes(ckpt: Path, root: Path, *, flip: bool, size: int | None = None) -> list[torch.Tensor]:
    """[N+1, H, W] probabilities of every frame of sequence aaa from one independent InferenceCore pass."""
    from corrvos.models import load_model

    config = inference_config_for(load_model(ckpt), mem_every=2).replace(internal_size=size)
    core = InferenceCore(load_model(ckpt), config)
    out = []
    for t in range(FRAMES):
        bgr = cv2.imread(str(root / "JPEGImages" / "480p" / "aaa" / f"{t:05d}.jpg"))
        image = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy(_scene(0)[1]).long() if t == 0 else None
        if flip:
            image, mask = image.flip(-1), None if mask is None else mask.flip(-1)
        prob = core.step(image, mask, end=t == FRAMES - 1)
        out.append(prob.flip(-1) if flip else prob)
    return out


def _labels(prob: torch.Tensor, ids: tuple[int, ...] = (1, 2)) -> np.ndarray:
    return np.asarray([0, *ids], np.uint8)[prob.argmax(dim=0).numpy()]


def _infer(ckpt: Path, root: Path, out: Path, *extra: str) -> int:
    args = ["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(out), "--device", "cpu"]
    return main([*args, "--mem-every", "2", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ckpt: Path) -> dict[str, Path]:
    """A plain run and a --flip run of one sequence, both with --save-scores."""
    d = tmp_path_factory.mktemp("runs")
    root = _davis_root(d / "DAVIS", seqs=("aaa",), frames=FRAMES)
    assert _infer(ckpt, root, d / "plain", "--save-scores", str(d / "plain-scores")) == 0
    assert _infer(ckpt, root, d / "flip", "--flip", "--save-scores", str(d / "flip-scores")) == 0
    return {"root": root, "d": d}


def test_flip_tta_equals_the_average_of_the_two_passes(runs, ckpt: Path) -> None:
    root, d = runs["root"], runs["d"]
    plain, mirrored = _passes(ckpt, root, flip=False), _passes(ckpt, root, flip=True)
    saved = ScoreFile.load(d / "flip-scores" / "aaa" / "scores.npz")
    assert saved.object_ids == [1, 2] and saved.frame_ids == [f"{t:05d}" for t in range(FRAMES)]
    for t in range(FRAMES):
        mean = (plain[t] + mirrored[t]) / 2  # exactly what the TTA merge computes
        assert np.array_equal(read_label(d / "flip" / "aaa" / f"{t:05d}.png"), _labels(mean))
        assert np.array_equal(saved.scores[t], quantize_scores(mean.numpy()))
        assert np.array_equal(read_label(d / "plain" / "aaa" / f"{t:05d}.png"), _labels(plain[t]))
    assert not all(torch.equal(p, m) for p, m in zip(plain[1:], mirrored[1:], strict=True))  # the flip matters


def test_multi_scale_equals_the_average_of_per_scale_passes(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=FRAMES)
    assert _infer(ckpt, root, tmp_path / "ms", "--scales", "32", "64") == 0
    assert "2 TTA passes" in capsys.readouterr().out
    small, large = _passes(ckpt, root, flip=False, size=32), _passes(ckpt, root, flip=False, size=64)
    for t in range(FRAMES):
        assert small[t].shape == large[t].shape == (3, 48, 80)  # both resized back to the frame
        expected = _labels((small[t] + large[t]) / 2)
        assert np.array_equal(read_label(tmp_path / "ms" / "aaa" / f"{t:05d}.png"), expected)


def test_merge_averages_saved_scores_and_one_folder_reproduces_its_run(runs, tmp_path: Path) -> None:
    d = runs["d"]
    assert main(["merge", "--scores", str(d / "plain-scores"), "--out", str(tmp_path / "one")]) == 0
    assert (
        main(["merge", "--scores", str(d / "plain-scores"), str(d / "flip-scores"), "--out", str(tmp_path / "two")])
        == 0
    )
    a = ScoreFile.load(d / "plain-scores" / "aaa" / "scores.npz").scores
    b = ScoreFile.load(d / "flip-scores" / "aaa" / "scores.npz").scores
    for t in range(FRAMES):
        name = f"{t:05d}.png"
        assert np.array_equal(read_label(tmp_path / "one" / "aaa" / name), read_label(d / "plain" / "aaa" / name))
        mean = (a[t].astype(np.float64) + b[t]) / (2 * 255)  # [N+1, H, W] mean of the dequantised scores
        assert np.array_equal(
            read_label(tmp_path / "two" / "aaa" / name), np.asarray([0, 1, 2], np.uint8)[mean.argmax(0)]
        )


def test_merge_refuses_disagreeing_scores_listing_every_problem(runs, tmp_path: Path, capsys) -> None:
    d = runs["d"]
    bad = tmp_path / "bad"
    shutil.copytree(d / "flip-scores", bad)
    src = ScoreFile.load(bad / "aaa" / "scores.npz")
    cropped = src.scores[:-1, :, :40]  # one frame fewer and another size
    ScoreFile(src.object_ids, src.frame_ids[:-1], (40, 80), cropped).save(bad / "aaa" / "scores.npz")
    out = tmp_path / "merged"
    assert main(["merge", "--scores", str(d / "plain-scores"), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("corrvos merge: error: ") and "2 problem(s)" in err
    assert "frame ids differ" in err and "frame size (40, 80)" in err and str(bad / "aaa" / "scores.npz") in err
    assert not out.exists()


def test_quantised_scores_keep_the_argmax() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((2, 4, 16, 16)).astype(np.float32)
    p[:, 2] = p[:, 1] + rng.choice([0.0, 1e-4, -1e-4], size=(2, 16, 16)).astype(np.float32)  # near ties
    q = quantize_scores(p)
    assert q.dtype == np.uint8 and np.array_equal(q.argmax(axis=1), p.argmax(axis=1))
    assert np.abs(q.astype(int) - np.rint(p * 255)).max() <= 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--scales", "480", "--size", "240"), "--scales"),
        (("--scales", "8"), "--scales"),
        (("--flip",), "--save-scores"),
    ],
)
def test_bad_tta_options_are_one_line_errors(tmp_path: Path, ckpt: Path, capsys, extra, needle) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=2)
    out = tmp_path / "res"
    if needle == "--save-scores":
        extra = (*extra, "--save-scores", str(out / "scores"))  # inside --out
    assert _infer(ckpt, root, out, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("corrvos infer: error: ") and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_scores_of_objects_appearing_later(tmp_path: Path, ckpt: Path) -> None:
    """LVOS: object 1 appears after object 3; its channel is 0 before, and the scored run equals the streamed one."""
    from test_benchmark_layouts import LVOS_FRAMES, _lvos_root

    root = _lvos_root(tmp_path / "LVOS")
    base = ["infer", "--model", str(ckpt), "--lvos-root", str(root), "--device", "cpu", "--size", "-1"]
    assert main([*base, "--out", str(tmp_path / "streamed")]) == 0
    assert main([*base, "--out", str(tmp_path / "scored"), "--save-scores", str(tmp_path / "scores")]) == 0
    assert main(["merge", "--scores", str(tmp_path / "scores"), "--out", str(tmp_path / "merged")]) == 0
    saved = ScoreFile.load(tmp_path / "scores" / "lv1" / "scores.npz")
    assert saved.object_ids == [1, 3] and saved.frame_ids == LVOS_FRAMES[1:]  # nothing before the first mask
    assert not saved.scores[0, 1].any() and saved.scores[1, 1].any()  # object 1: no channel until frame 2
    for name in LVOS_FRAMES[1:]:
        streamed = read_label(tmp_path / "streamed" / "lv1" / f"{name}.png")
        assert np.array_equal(read_label(tmp_path / "scored" / "lv1" / f"{name}.png"), streamed)
        assert np.array_equal(read_label(tmp_path / "merged" / "lv1" / f"{name}.png"), streamed)
