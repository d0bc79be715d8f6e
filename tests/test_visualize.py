"""Tests of `corrvos visualize` (correspondence, matches, curves, compare) and the library functions behind it.

Models are real STCN / XMem networks with random weights (saved in the official state_dict layout) and, for
``curves`` and ``matches``, a two-step "paper" run of the real trainer on a tiny synthetic DAVIS set (its
TensorBoard log and its checkpoints, one of which holds the trained projection head). Known-answer cases build
the keys or the embeddings directly, or use a stand-in model whose keys are the pixels of each 16 x 16 cell.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import paper_run_config
from corrvos.cli import build_parser, main
from corrvos.config import config_from_dict
from corrvos.data.io import read_label, write_image, write_label
from corrvos.data.synthetic import generate_dataset
from corrvos.training.trainer import Trainer
from corrvos.types import QueryFeatures
from corrvos.visualize.compare import (
    TITLE_LINE_HEIGHT,
    compare_scale,
    list_compare_sequences,
    plan_sequence,
    sequence_object_scores,
)
from corrvos.visualize.correspondence import (
    COLORBAR_HEIGHT,
    TITLE_LINES,
    auto_points,
    correspondence_responses,
    response_from_keys,
)
from corrvos.visualize.curves import curves_figure_size, ema, read_run
from corrvos.visualize.inputs import FrameFolder, model_input
from corrvos.visualize.matches import ObjectMatches, find_projection_head, match_embeddings
from corrvos.visualize.panels import LINE_HEIGHT, panel_scale

H, W = 64, 96  # synthetic frames; W = 96 -> panels enlarged 4x


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "davis", sequences=2, frames=5, size=(H, W), seed=1)


def _sequence(root: Path, index: int = 0) -> tuple[Path, Path]:
    seq = sorted((root / "JPEGImages" / "480p").iterdir())[index]
    return seq, root / "Annotations" / "480p" / seq.name


@pytest.fixture(scope="module")
def stcn_file(tmp_path_factory: pytest.TempPathFactory):
    from corrvos.families.stcn.network import STCN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("stcn") / "stcn_random.pth"
    torch.save(STCN().eval().state_dict(), path)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def xmem_file(tmp_path_factory: pytest.TempPathFactory):
    from corrvos.families.xmem.network import XMem

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("xmem") / "xmem_random.pth"
    torch.save(XMem().eval().state_dict(), path)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def trained_run(synth: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two steps of "paper" training (L_SEG + L_PCL + L_OCL): TensorBoard log, step and final checkpoints."""
    cfg = paper_run_config(synth, save_interval=100)
    run = tmp_path_factory.mktemp("run")
    assert Trainer(config_from_dict(cfg), out_dir=run, progress=False).run().finished
    yield run
    for path in run.rglob("*.pth"):  # ~0.9 GB of optimiser state: do not keep it in pytest's temp folders
        path.unlink(missing_ok=True)


def _image_shape(path: Path) -> tuple[int, ...]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image.shape


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- correspondence --------------------------------------------------------------------------------------------


def test_response_from_keys_sums_to_one_and_peaks_at_the_known_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    key_t = 3 * torch.randn(1, 64, 6, 8, generator=gen)  # [1, CK, h, w], distinctive per cell
    key_tau = torch.roll(key_t, shifts=(2, -3), dims=(2, 3))  # content of cell (r, c) moves to (r + 2, c - 3)
    cells = [(0, 3), (1, 5), (3, 7), (5, 0)]
    for extra in ({}, {"memory_shrinkage": 1 + torch.rand(1, 1, 6, 8), "query_selection": torch.ones(1, 64, 6, 8)}):
        resp = response_from_keys(key_t, key_tau, cells, **extra)  # [P, h, w]
        assert resp.shape == (4, 6, 8)
        torch.testing.assert_close(resp.sum(dim=(1, 2)), torch.ones(4))
        peaks = [divmod(int(i), 8) for i in resp.flatten(1).argmax(1)]
        assert peaks == [((r + 2) % 6, (c - 3) % 8) for r, c in cells]
    top = response_from_keys(0.05 * key_t, 0.05 * key_tau, cells, top_k=5)  # soft enough: no weight underflows
    assert ((top > 0).sum(dim=(1, 2)) == 5).all()
    torch.testing.assert_close(top.sum(dim=(1, 2)), torch.ones(4))


class _PixelKeys(torch.nn.Module):
    """A stand-in model whose key at a cell is the cell's 16 x 16 x 3 pixels: distinctive on a noise image."""

    def encode_key(self, frame, *, need_shrinkage=True, need_selection=True) -> QueryFeatures:
        key = F.pixel_unshuffle(frame, 16)  # [1, 768, h, w]
        return QueryFeatures(key=key, f16=key, f8=key, f4=key)


def test_correspondence_full_path_peaks_at_the_shifted_pixel() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    frame_t, frame_tau = noise[0:64, 32:128], noise[32:96, 0:96]  # pixel (y, x) of t is pixel (y - 32, x + 32) of tau
    points = [(40, 40), (50, 20), (63, 5)]
    result = correspondence_responses(_PixelKeys(), model_input(frame_t), model_input(frame_tau), points)
    torch.testing.assert_close(result.response.sum(dim=(1, 2)), torch.ones(3))
    # the peak is the centre of the cell holding the shifted pixel
    assert result.peaks() == [((y - 32) // 16 * 16 + 8, (x + 32) // 16 * 16 + 8) for y, x in points]


@pytest.mark.parametrize("which", ["stcn", "xmem"])
def test_real_model_responses_sum_to_one_and_equal_the_memory_read(
    which: str, stcn_file: Path, xmem_file: Path, synth: Path
) -> None:
    from corrvos.models import load_model

    model = load_model(stcn_file if which == "stcn" else xmem_file)
    folder = FrameFolder(*_sequence(synth))
    rgb_t, rgb_tau = folder.read_frame(0), folder.read_frame(4)
    points, ids = auto_points(folder.read_mask(0, (H, W)))
    assert ids and len(points) == len(ids)
    in_t, in_tau = model_input(rgb_t), model_input(rgb_tau)
    result = correspondence_responses(model, in_t, in_tau, points)
    h, w = H // 16, W // 16
    assert result.response.shape == (len(points), h, w)
    torch.testing.assert_close(result.response.sum(dim=(1, 2)), torch.ones(len(points)))
    assert result.upsampled().shape == (len(points), H, W)
    # the same weights through the model's own memory read: values that are one-hot codes of tau's positions
    with torch.inference_mode():
        q = model.encode_key(in_t.image, need_shrinkage=False, need_selection=True)
        m = model.encode_key(in_tau.image, need_shrinkage=True, need_selection=False)
        codes = torch.eye(h * w).reshape(1, 1, h * w, 1, h, w)  # [B, N, CV = M, T, h, w]
        shrink = None if m.shrinkage is None else m.shrinkage[:, :, None]  # [1, 1, 1, h, w]
        read = model.read_memory(
            m.key[:, :, None], codes, q.key, mem_shrinkage=shrink, query_selection=q.selection
        )  # [1, 1, M, h, w]
    for p, (y, x) in enumerate(points):
        r, c = in_t.feature_cell(y, x)
        torch.testing.assert_close(read[0, 0, :, r, c].reshape(h, w), result.response[p], rtol=1e-4, atol=1e-6)


def test_auto_points_lie_on_their_objects() -> None:
    label = np.zeros((40, 40), np.uint8)
    cv2.circle(label, (20, 20), 12, 1, 3)  # a ring: its centroid is not on it
    label[2:6, 30:38] = 3
    points, ids = auto_points(label)
    assert ids == [1, 3]
    assert [int(label[y, x]) for y, x in points] == [1, 3]


def test_cli_correspondence_two_models(tmp_path: Path, stcn_file: Path, xmem_file: Path, synth: Path, capsys) -> None:
    frames, masks = _sequence(synth)
    out = tmp_path / "figs"
    argv = ["visualize", "correspondence", "--model", str(stcn_file), "--model", str(xmem_file)]
    argv += ["--video", str(frames), "--masks", str(masks), "--frame", "0", "--target", "-1", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    (png,) = out.glob("correspondence_*.png")
    num_points = len(auto_points(read_label(masks / "00000.png"))[0])
    s = panel_scale(W)
    tile = TITLE_LINES * LINE_HEIGHT + s * H
    assert _image_shape(png) == (num_points * tile + COLORBAR_HEIGHT, 3 * s * W, 3)
    assert "stcn_random: query -> peak" in capsys.readouterr().out
    # explicit points, one model, top-k
    argv = ["visualize", "correspondence", "--model", str(stcn_file), "--video", str(frames), "--frame", "1"]
    assert main([*argv, "--target", "3", "--points", "10,20", "60,95", "--top-k", "4", "--out", str(out)]) == 0
    assert _image_shape(out / "correspondence_00001_00003.png") == (2 * tile + COLORBAR_HEIGHT, 2 * s * W, 3)


# -- matches ---------------------------------------------------------------------------------------------------


def test_match_embeddings_recovers_a_permutation() -> None:
    gen = torch.Generator().manual_seed(0)
    emb_t = torch.randn(4, 32, generator=gen)
    perm = [2, 0, 3, 1]  # object i of t is object perm[i] of tau
    emb_tau = torch.empty(4, 32)
    emb_tau[perm] = emb_t + 0.05 * torch.randn(4, 32, generator=gen)
    sim, pairs = match_embeddings(emb_t, emb_tau)
    assert sim.shape == (4, 4) and pairs == [(i, perm[i]) for i in range(4)]
    matches = ObjectMatches([5, 6, 7, 8], [6, 9, 5, 8], torch.zeros(4, 4), torch.zeros(4, 4), sim, pairs)
    assert matches.correct == [True, True, False, False]
    sim, pairs = match_embeddings(emb_t[:2], emb_tau)  # fewer objects in t: every one still matched
    assert pairs == [(0, 2), (1, 0)]


def _permuted_copy(frames: Path, masks: Path, dest: Path, t: int, tau: int) -> dict[int, int]:
    """A two-frame sequence: frame tau = frame t, its mask with the object ids permuted. Returns id_t -> id_tau."""
    rgb = cv2.cvtColor(cv2.imread(str(sorted(frames.iterdir())[t])), cv2.COLOR_BGR2RGB)
    label = read_label(masks / f"{t:05d}.png")
    ids = [int(k) for k in np.unique(label) if k]
    mapping = dict(zip(ids, ids[1:] + ids[:1], strict=True))
    for i, lab in ((0, label), (1, np.vectorize(lambda v: mapping.get(int(v), 0))(label).astype(np.uint8))):
        write_image(dest / "frames" / f"{i:05d}.png", rgb)
        write_label(dest / "masks" / f"{i:05d}.png", lab)
    return mapping


def test_cli_matches_trained_head_and_fallbacks(tmp_path: Path, trained_run: Path, stcn_file: Path, synth, capsys):
    frames, masks = _sequence(synth, 1)  # two objects in every frame
    mapping = _permuted_copy(frames, masks, tmp_path / "seq", 2, 2)
    ckpts = trained_run / "checkpoints"
    step, final = ckpts / "step_0000002.pth", ckpts / "main_final.pth"
    assert find_projection_head(step).head is not None and find_projection_head(stcn_file).head is None
    s = panel_scale(W)
    cases = [
        (step, [], "through the trained projection head"),
        (final, [], "through the trained projection head"),  # final weights keep the head too
        (stcn_file, [], "no trained projection head"),
        (step, ["--features", "key"], "raw pooled matching keys"),
    ]
    for i, (ckpt, extra, note) in enumerate(cases):
        out = tmp_path / f"out{i}"
        argv = ["visualize", "matches", "--model", str(ckpt), "--video", str(tmp_path / "seq" / "frames"), *extra]
        argv += ["--masks", str(tmp_path / "seq" / "masks"), "--frame", "0", "--target", "1", "--out", str(out)]
        assert main([*argv, "--device", "cpu"]) == 0
        assert note in capsys.readouterr().out
        assert _image_shape(out / "matches_00000_00001.png") == (2 * LINE_HEIGHT + s * H, 2 * s * W, 3)
        record = json.loads((out / "matches_00000_00001.json").read_text())
        assert ("trained PROJ" in record["embeddings"]) == (i < 2)  # what the title says the embeddings are
        # the same picture with permuted ids: each box is matched to itself, i.e. id a of t to id mapping[a] of tau
        assert {(p["id_t"], p["id_tau"]) for p in record["pairs"]} == set(mapping.items())
        assert all(p["cosine"] == pytest.approx(1.0, abs=1e-4) for p in record["pairs"])
        assert not any(p["correct"] for p in record["pairs"])  # ... which the ground-truth ids call wrong


# -- curves ----------------------------------------------------------------------------------------------------


def test_ema_matches_tensorboard_smoothing() -> None:
    np.testing.assert_allclose(ema(np.full(5, 3.0), 0.6), np.full(5, 3.0))
    values = np.array([1.0, 2.0, float("nan"), 4.0])
    out = ema(values, 0.5)
    assert out[0] == 1.0 and out[1] == pytest.approx((0.25 + 1.0) / 0.75) and np.isnan(out[2])
    np.testing.assert_array_equal(ema(values, 0.0), values)


def test_cli_curves_from_a_trainer_run(tmp_path: Path, trained_run: Path, capsys) -> None:
    run = read_run(trained_run)
    assert set(run.series) == {"loss", "terms/seg", "terms/pcl", "terms/ocl"}
    assert all(len(steps) == 2 and list(steps) == [1, 2] for steps, _ in run.series.values())
    out = tmp_path / "curves.png"
    argv = ["visualize", "curves", "--run", str(trained_run), "--run", str(trained_run / "tb")]
    assert main([*argv, "--labels", "a", "b", "--smoothing", "0.3", "--out", str(out)]) == 0
    assert _image_shape(out) == (*curves_figure_size(4), 3) == (720, 1000, 3)  # 2 x 2 panels
    assert main(["visualize", "curves", "--run", str(trained_run), "--tags", "L_SEG", "iou", "--out", str(out)]) == 0
    assert _image_shape(out) == (*curves_figure_size(2), 3)
    capsys.readouterr()
    assert main(["visualize", "curves", "--run", str(trained_run), "--tags", "nothing", "--out", str(out)]) == 2
    assert "terms/seg" in _error_line(capsys)  # the message lists what the run has


# -- compare ---------------------------------------------------------------------------------------------------


def _results(synth: Path, dest: Path, *, drop: int | None) -> Path:
    """Result folders from the ground truth: an exact copy, or one with object ``drop`` erased after frame 0."""
    shutil.copytree(synth / "Annotations" / "480p", dest)
    if drop is not None:
        for png in sorted(dest.rglob("*.png")):
            if png.stem != "00000":
                label = read_label(png)
                label[label == drop] = 0
                write_label(png, label)
    return dest


def test_cli_compare_on_synthetic_results(tmp_path: Path, synth: Path, capsys) -> None:
    good, bad = _results(synth, tmp_path / "good", drop=None), _results(synth, tmp_path / "bad", drop=2)
    gt, images, out = synth / "Annotations" / "480p", synth / "JPEGImages" / "480p", tmp_path / "cmp"
    names = list_compare_sequences(gt, images, [good, bad])
    assert len(names) == 2
    plan = plan_sequence(names[0], gt, images, [good, bad], ["good", "bad"])
    perfect, erased = sequence_object_scores(plan)
    np.testing.assert_allclose(perfect, 1.0)
    assert erased.tolist() == [1.0, 0.0]  # object 1 is out of view on frames 1-3 (both empty: 1), object 2 erased
    _, erased_visible = sequence_object_scores(plan, visible_only=True)
    assert np.isnan(erased_visible[0]) and erased_visible[1] == 0.0  # object 1 has no visible evaluated frame
    argv = ["visualize", "compare", "--gt", str(gt), "--images", str(images), "--results", str(good), str(bad)]
    assert main([*argv, "--labels", "good", "bad", "--sequences", names[0], "--out", str(out)]) == 0
    s = compare_scale((H, W))
    assert s * H >= 240 and s * W >= 320  # small frames are enlarged for display
    shape = (3 * TITLE_LINE_HEIGHT + s * H, 3 * s * W, 3)
    pngs = sorted((out / names[0]).glob("*.png"))
    assert len(pngs) == 5 and not (out / names[1]).exists()
    assert all(_image_shape(p) == shape for p in pngs)
    video = cv2.VideoCapture(str(out / f"{names[0]}.mp4"))
    ok, frame = video.read()
    count = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    video.release()
    assert ok and frame.shape == shape and count == 5
    assert main([*argv[:-2], str(good), "--no-video", "--out", str(tmp_path / "all")]) == 0  # one result, all seqs
    assert len(list((tmp_path / "all").rglob("*.png"))) == 10 and not list((tmp_path / "all").glob("*.mp4"))


# -- errors and help -------------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_errors(tmp_path: Path, synth: Path, stcn_file: Path, capsys) -> None:
    frames, masks = _sequence(synth)
    corr = ["visualize", "correspondence", "--model", str(stcn_file), "--out", str(tmp_path / "o"), "--device", "cpu"]
    missing = tmp_path / "nope"
    assert main([*corr, "--video", str(missing), "--frame", "0", "--target", "1"]) == 2
    assert str(missing) in _error_line(capsys)
    assert main([*corr, "--video", str(frames), "--masks", str(masks), "--frame", "9", "--target", "1"]) == 2
    assert "--frame 9 is out of range" in _error_line(capsys)
    # a mask of another size
    shutil.copytree(masks, tmp_path / "masks")
    write_label(tmp_path / "masks" / "00000.png", np.zeros((H, W + 16), np.uint8))
    assert (
        main([*corr, "--video", str(frames), "--masks", str(tmp_path / "masks"), "--frame", "0", "--target", "1"]) == 2
    )
    assert "00000.png: mask is 64x112 but frame" in _error_line(capsys)
    # an unknown checkpoint
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "foo.pth")
    argv = ["visualize", "matches", "--model", str(tmp_path / "foo.pth"), "--video", str(frames)]
    argv += ["--masks", str(masks), "--frame", "0", "--target", "1", "--out", str(tmp_path / "o")]
    assert main([*argv, "--device", "cpu"]) == 2
    assert "foo.pth: unknown architecture" in _error_line(capsys)
    # a result folder lacking a frame; a run without events
    results = _results(synth, tmp_path / "res", drop=None)
    seq = frames.name
    (results / seq / "00003.png").unlink()
    gt, images = synth / "Annotations" / "480p", synth / "JPEGImages" / "480p"
    argv = ["visualize", "compare", "--gt", str(gt), "--images", str(images), "--results", str(results)]
    assert main([*argv, "--out", str(tmp_path / "c")]) == 2
    assert f"{seq}/00003.png: result missing" in _error_line(capsys)
    assert main(["visualize", "curves", "--run", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 2
    assert "no TensorBoard event file" in _error_line(capsys)


def test_help_explains_every_option(capsys) -> None:
    parser = build_parser()
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["visualize"]
    views = next(a for a in command._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(views) == {"correspondence", "matches", "curves", "compare"}
    for name, sub in views.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        with pytest.raises(SystemExit):
            main(["visualize", name, "--help"])
        text = capsys.readouterr().out
        assert all(opt in text for a in sub._actions for opt in a.option_strings), name
