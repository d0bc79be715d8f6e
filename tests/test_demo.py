"""The demo's pipeline at a reduced size: both runs train, segment and score; the floors are scored; visible-cell
J&F recomputed here from the PNGs equals what demo.json records; every figure exists and has its new elements; the
report refers only to files that exist; no resumable checkpoints are kept; an earlier demo folder is replaced and a
foreign one refused."""

from __future__ import annotations

import html
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.demo import DemoSettings, run_demo
from corrvos.demo.report import referenced_files, signed


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    settings = DemoSettings(
        out=out,
        steps=3,
        train_sequences=3,
        train_frames=6,
        eval_sequences=2,
        eval_frames=6,
        size=(64, 80),
        workers=1,
        compare_sequences=1,
        progress=False,
    )
    return run_demo(settings)


@pytest.mark.slow
def test_demo_runs_both_models_and_reports_only_existing_files(demo) -> None:
    out = demo.settings.out
    assert set(demo.scores) == {"none", "paper"}
    for mode, scores in demo.scores.items():
        assert 0.0 <= scores.global_scores["J&F-Mean"] <= 1.0
        assert sorted(scores.per_sequence) == ["heldout001", "heldout002"]  # the held-out split of the eval set
        pngs = sorted((out / "results" / mode / "heldout001").glob("*.png"))
        assert len(pngs) == 6
    # the two runs differ only by the losses: the paper run logged L_PCL and L_OCL, the other did not
    from corrvos.visualize.curves import read_run

    none_tags = set(read_run(out / "runs" / "none").series)
    paper_tags = set(read_run(out / "runs" / "paper").series)
    assert {"terms/pcl", "terms/ocl"} <= paper_tags - none_tags
    # both runs train the CPU recipe (corrvos's small variant, BatchNorm on batch statistics)
    import yaml

    for mode in ("none", "paper"):
        cfg = yaml.safe_load((out / "runs" / mode / "config.yaml").read_text())
        assert (cfg["model"]["key_encoder"], cfg["model"]["width"], cfg["optim"]["freeze_bn"]) == (
            "resnet18",
            32,
            False,
        )
        assert cfg["loss"]["mode"] == mode
    # small folder: final weights only, no resumable step checkpoints
    for mode in ("none", "paper"):
        ckpts = sorted(p.name for p in (out / "runs" / mode / "checkpoints").iterdir())
        assert ckpts == ["main_final.pth"]
    # every figure kind, every file the page refers to exists, and images decode
    assert {k: len(v) > 0 for k, v in demo.figures.items()} == {
        "curves": True,
        "frame_scores": True,
        "correspondence": True,
        "matches": True,
        "compare": True,
    }
    refs = referenced_files(out / "report.html")
    assert refs and all((out / r).is_file() for r in refs), [r for r in refs if not (out / r).is_file()]
    for r in refs:
        if r.endswith(".png"):
            assert cv2.imread(str(out / r)) is not None
    assert {f for files in demo.figures.values() for f in files} == set(refs)
    record = json.loads((out / "demo.json").read_text())
    assert record["scores"]["paper"]["global_scores"] == demo.scores["paper"].global_scores
    assert record["environment"]["torch"] == torch.__version__ and record["environment"]["cpu_count"] >= 1
    page = (out / "report.html").read_text()
    assert "cannot separate the losses" in page and f"{demo.scores['none'].global_scores['J&F-Mean']:.3f}" in page


@pytest.mark.slow
def test_demo_matches_figure_uses_the_trained_head_of_the_paper_run(demo) -> None:
    from corrvos.visualize.matches import find_projection_head

    out = demo.settings.out
    assert find_projection_head(out / "runs" / "paper" / "checkpoints" / "main_final.pth").head is not None
    assert find_projection_head(out / "runs" / "none" / "checkpoints" / "main_final.pth").head is None


def _visible_jf_from_pngs(gt_root: Path, results: Path, names: list[str]) -> tuple[float, int]:
    """Visible-cell J&F recomputed from the PNGs: per object the mean of J (and of F) over the evaluated frames
    1..T-2 where it has a ground-truth pixel, then the mean over objects, then (J + F) / 2; and the cell count."""
    from corrvos.data.io import read_label
    from corrvos.evaluation.metrics import f_measure, jaccard

    per_j, per_f, cells = [], [], 0
    for name in names:
        gts = sorted((gt_root / name).glob("*.png"))
        first = read_label(gts[0])
        first[first == 255] = 0
        for k in range(1, int(first.max()) + 1):
            js, fs = [], []
            for path in gts[1:-1]:
                gt = read_label(path)
                if (gt == k).any():
                    pred = read_label(results / name / path.name) == k
                    js.append(jaccard(pred, gt == k))
                    fs.append(f_measure(pred, gt == k))
            if js:
                per_j.append(np.mean(js))
                per_f.append(np.mean(fs))
                cells += len(js)
    return (float(np.mean(per_j)) + float(np.mean(per_f))) / 2, cells


@pytest.mark.slow
def test_demo_scores_floors_and_visible_cells(demo) -> None:
    out = demo.settings.out
    record = json.loads((out / "demo.json").read_text())
    gt_root = out / "data" / "eval" / "Annotations" / "480p"
    names = sorted(record["scores"]["none"]["per_sequence"])
    assert set(record["floors"]) == {"copy_first_frame", "empty_after_first_frame"}
    rows = {**record["scores"], **record["floors"]}
    for name, row in rows.items():
        expected, cells = _visible_jf_from_pngs(gt_root, Path(row["results"]), names)
        assert row["visible"]["JF"] == pytest.approx(expected, abs=1e-9), name
        assert row["visible"]["cells"] == cells > 0
        # all cells: the DAVIS J&F-Mean
        assert row["all_cells"]["JF"] == pytest.approx(row["global_scores"]["J&F-Mean"], abs=1e-9)
        assert len(row["per_frame"]["frame"]) == demo.settings.eval_frames - 2
    empty = record["floors"]["empty_after_first_frame"]
    assert empty["visible"]["JF"] == 0.0 and empty["visible"]["J"] == 0.0 and empty["visible"]["F"] == 0.0
    hidden = empty["all_cells"]["JF"]  # 1 on each hidden cell, 0 on each visible one
    assert 0.0 <= hidden < 1.0
    copy = record["floors"]["copy_first_frame"]
    copied = [cv2.imread(str(Path(copy["results"]) / names[0] / f"{t:05d}.png")) for t in (0, 3)]
    assert np.array_equal(*copied)
    # the floors are rows of the report's table, with both numbers, and the comparison sentence is generated
    page = (out / "report.html").read_text()
    for label in ("floor: copy first frame", "floor: empty after frame 0", "J&amp;F visible cells"):
        assert label in page
    assert f"{copy['visible']['JF']:.3f}" in page and f"{copy['all_cells']['JF']:.3f}" in page
    a, b = record["scores"]["none"]["visible"]["JF"], record["scores"]["paper"]["visible"]["JF"]
    assert f"{a:.3f}" in record["comparison"] and f"difference of {signed(b - a)} " in record["comparison"]
    assert f"twice that is {2 * copy['visible']['JF']:.3f}" in record["comparison"]
    assert record["comparison"] in html.unescape(page)
    # the console summary of `corrvos demo` has the same four rows
    from corrvos.cli.demo import _summary_table
    from corrvos.demo.figures import row_label

    table = _summary_table("stcn", {**demo.scores, **demo.floors}, row_label)
    assert "J&F visible" in table and "floor: empty after frame 0" in table and f"{b:.3f}" in table


@pytest.mark.slow
def test_demo_held_out_names_and_figure_elements(demo) -> None:
    out = demo.settings.out
    train = {p.name for p in (out / "data" / "train" / "JPEGImages" / "480p").iterdir()}
    held_out = {p.name for p in (out / "data" / "eval" / "JPEGImages" / "480p").iterdir()}
    assert all(n.startswith("synth") for n in train) and all(n.startswith("heldout") for n in held_out)
    assert not train & held_out
    # both models' object matches use the same embeddings, named in the JSON, the figure title and the caption
    records = [json.loads((out / p).with_suffix(".json").read_text()) for p in demo.figures["matches"]]
    f16_dim = 128  # the CPU recipe's small variant: ResNet-18 layer3 at half width
    assert {r["embeddings"] for r in records} == {f"embeddings: raw pooled res4 ({f16_dim}-d), no PROJ"}
    page = (out / "report.html").read_text()
    assert "Both models use the same embeddings" in page and "colour scale of the bar" in page
    assert "Columns: the ground truth" in page or "columns: the ground truth" in page
    # the correspondence figure ends with its colour bar; the curves show bootstrapping and the training IoU
    from corrvos.visualize.correspondence import COLORBAR_HEIGHT

    image = cv2.imread(str(out / demo.figures["correspondence"][0]))
    assert image.shape[0] > COLORBAR_HEIGHT and demo.facts["positions"] == 5 * 4  # 64x80 frames: 4 x 5 cells
    assert "bootstrapped cross-entropy" in page and demo.facts["bootstrap"]
    assert "frame_scores.png" in demo.figures["frame_scores"][0]


def test_demo_refuses_a_foreign_folder_and_bad_options(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "holds no earlier demo" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--steps", "0"]) == 2
    assert not (tmp_path / "d").exists()


def test_demo_quick_baseline(tmp_path: Path, capsys) -> None:
    argv = ["demo", "--quick", "--out", str(tmp_path / "q"), "--sequences", "2", "--frames", "4", "--size", "48x64"]
    assert main([*argv, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "copy-first-frame baseline" in out and "J&F-Mean" in out
    assert np.array_equal(
        cv2.imread(str(tmp_path / "q" / "baseline" / "synth001" / "00003.png")),
        cv2.imread(str(tmp_path / "q" / "baseline" / "synth001" / "00000.png")),
    )


def test_demo_environment_names_the_commit_of_this_checkout(tmp_path: Path) -> None:
    """demo.json's ``environment`` (the numbers are deterministic per machine and torch build, not across them):
    the commit git reports for the repository root, run here independently; ``None`` for a copy of the package
    outside a checkout."""
    import shutil
    import subprocess
    import sys

    from corrvos.demo.pipeline import environment

    repo = Path(__file__).resolve().parents[1]
    env = environment()
    assert env["torch"] == torch.__version__ and env["cpu_count"] >= 1
    if shutil.which("git") and (repo / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        assert env["commit"] == head.stdout.strip() and isinstance(env["dirty"], bool)
    copy = tmp_path / "site" / "corrvos"
    shutil.copytree(repo / "src" / "corrvos", copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import json, corrvos.demo.pipeline as p; print(json.dumps(p.environment()))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy.parent), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    outside = json.loads(done.stdout)
    assert outside["commit"] is None and outside["dirty"] is None
