"""The demo's pipeline at a reduced size: both runs train, segment and score; every figure exists; the report
refers only to files that exist; no resumable checkpoints are kept; an earlier demo folder is replaced and a
foreign one refused."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from corrvos.cli import main
from corrvos.demo import DemoSettings, run_demo
from corrvos.demo.report import referenced_files


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
        assert sorted(scores.per_sequence) == ["synth001", "synth002"]  # the held-out split of the eval set
        pngs = sorted((out / "results" / mode / "synth001").glob("*.png"))
        assert len(pngs) == 6
    # the two runs differ only by the losses: the paper run logged L_PCL and L_OCL, the other did not
    from corrvos.visualize.curves import read_run

    none_tags = set(read_run(out / "runs" / "none").series)
    paper_tags = set(read_run(out / "runs" / "paper").series)
    assert {"terms/pcl", "terms/ocl"} <= paper_tags - none_tags
    # small folder: final weights only, no resumable step checkpoints
    for mode in ("none", "paper"):
        ckpts = sorted(p.name for p in (out / "runs" / mode / "checkpoints").iterdir())
        assert ckpts == ["main_final.pth"]
    # every figure kind, every file the page refers to exists, and images decode
    assert {k: len(v) > 0 for k, v in demo.figures.items()} == {
        "curves": True,
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
    page = (out / "report.html").read_text()
    assert "run-to-run noise" in page and f"{demo.scores['none'].global_scores['J&F-Mean']:.3f}" in page


@pytest.mark.slow
def test_demo_matches_figure_uses_the_trained_head_of_the_paper_run(demo) -> None:
    from corrvos.visualize.matches import find_projection_head

    out = demo.settings.out
    assert find_projection_head(out / "runs" / "paper" / "checkpoints" / "main_final.pth").head is not None
    assert find_projection_head(out / "runs" / "none" / "checkpoints" / "main_final.pth").head is None


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
