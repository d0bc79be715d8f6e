"""The loss ablation benchmark (``benchmarks/ablation.py``): bootstrap intervals, the crossing-frame detector, the
regeneration of the held-out videos, and the smoke profile end to end (labeled and semi-supervised studies)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from ablation_data import make_eval_set, regenerate_video, sprite_silhouettes, verify_labels, video_crossings
from ablation_stats import (
    bootstrap_ci,
    bootstrap_means,
    crossing_frames,
    paired_differences,
    subset_scores,
    summarize,
)
from corrvos.data.io import read_label, write_label
from corrvos.data.synthetic import generate_dataset

# ----------------------------------------------------------------------------------------------- statistics


def test_bootstrap_of_constant_differences_is_a_zero_width_interval_at_that_value() -> None:
    ci = bootstrap_ci([0.03, 0.03, 0.03, 0.03], resamples=2000)
    assert ci["mean"] == pytest.approx(0.03)
    assert ci["low"] == pytest.approx(0.03) and ci["high"] == pytest.approx(0.03)


def test_bootstrap_interval_is_the_percentiles_of_the_resample_means() -> None:
    values = [0.1, -0.02, 0.05, 0.2, 0.0, -0.07]
    ci = bootstrap_ci(values, resamples=5000, level=0.9, seed=7)
    means = bootstrap_means(values, resamples=5000, rng=np.random.default_rng(7))
    low, high = np.percentile(means, [5, 95])
    assert (ci["low"], ci["high"]) == (pytest.approx(low), pytest.approx(high))
    assert means.mean() == pytest.approx(np.mean(values), abs=0.005)


def test_bootstrap_of_three_seeds_spans_their_range() -> None:
    """With k = 3 each extreme resample has probability 1/27 > 2.5 %: the 95 % interval is [min, max]."""
    ci = bootstrap_ci([0.01, 0.04, -0.02], resamples=10_000)
    assert (ci["low"], ci["high"]) == (pytest.approx(-0.02), pytest.approx(0.04))


def test_paired_differences_use_the_common_seeds() -> None:
    d = paired_differences({0: 0.5, 1: 0.6, 2: 0.4}, {0: 0.45, 1: 0.65, 3: 0.1})
    assert d["seeds"] == [0, 1]
    assert d["per_seed"] == [pytest.approx(0.05), pytest.approx(-0.05)]
    assert d["wins"] == 1 and d["n"] == 2 and d["mean"] == pytest.approx(0.0)
    assert d["t_low"] < 0 < d["t_high"]
    assert paired_differences({0: 0.5}, {1: 0.5}) is None
    s = summarize([0.2, 0.4])
    assert s["mean"] == pytest.approx(0.3) and s["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert summarize([0.2])["std"] is None


# ---------------------------------------------------------------------------------------------- crossings


def _moving_distractor() -> np.ndarray:
    """Instance map [T=5, 20, 30]: object 1 fixed at columns 10..13, distractor 2 (4 columns wide, in front) moving.

    The distractor's last column is 3, 7, 8, 11 and 23: it lies 7, 3 and 2 pixels left of the object (2: one empty
    column between them), then overlaps it, then lies 7 pixels right of it.
    """
    inst = np.zeros((5, 20, 30), np.uint8)
    inst[:, 5:10, 10:14] = 1
    for t, x0 in enumerate([0, 4, 5, 8, 20]):
        inst[t, 5:10, x0 : x0 + 4] = 2
    return inst


def test_markdown_table_reports_means_intervals_and_seeds_from_the_record() -> None:
    from ablation_report import format_markdown

    none = {0: 0.10, 1: 0.12, 2: 0.14}
    paper = {0: 0.11, 1: 0.14, 2: 0.17}  # paired differences +1, +2, +3 points
    visible_none, visible_paper = {0: 0.3, 1: 0.3, 2: 0.3}, {0: 0.25, 1: 0.25, 2: 0.25}
    rows = {
        "none": {
            "jf": summarize(list(none.values())),
            "crossing_jf": summarize([0.2]),
            "visible_jf": summarize(list(visible_none.values())),
            "foreground_ratio": summarize([0.5, 0.7, 0.6]),
            "seconds_per_step": 1.5,
        },
        "paper": {
            "jf": summarize(list(paper.values())),
            "crossing_jf": summarize([0.1]),
            "visible_jf": summarize(list(visible_paper.values())),
            "foreground_ratio": summarize([0.25, 0.25, 0.25]),
            "seconds_per_step": 2.25,
            "diff_jf": paired_differences(paper, none, resamples=2000),
            "diff_crossing_jf": None,
            "diff_visible_jf": paired_differences(visible_paper, visible_none, resamples=2000),
        },
    }
    record = {
        "summary": {"stcn": rows},
        "baseline": "none",
        "settings": {"steps": {"stcn": 100}, "seeds": 3},
        "reference": {
            "copy_first_frame": {"jf": 0.117, "crossing": {"JF": 0.155}, "visible": {"JF": 0.2}},
            "empty": {"jf": 0.162, "crossing": {"JF": 0.3}, "visible": {"JF": 0.0}},
        },
    }
    lines = format_markdown(record).splitlines()
    assert lines[0].startswith("STCN, 100 steps, 3 seeds")
    assert "copy first frame: J&F 11.7, crossing 15.5, visible 20.0; empty after frame 0: J&F 16.2" in lines[0]
    none_row = next(line for line in lines if line.startswith("| `none`"))
    paper_row = next(line for line in lines if line.startswith("| `paper`"))
    assert none_row == "| `none` | 12.0 ± 2.0 | - | 20.0 | - | 30.0 ± 0.0 | - | 0.60 | 1.50 |"
    # three seeds: the bootstrap interval is their range; the t interval is mean ± 4.303 * 1.0 / sqrt(3)
    assert "| **+2.0** [+1.0, +3.0] (t: -0.5, +4.5); seeds +1.0, +2.0, +3.0 |" in paper_row
    assert paper_row.startswith("| `paper` | 14.0 ± 3.0 |")
    assert paper_row.endswith(
        "| 10.0 | - | 25.0 ± 0.0 | **-5.0** [-5.0, -5.0] (t: -5.0, -5.0); seeds -5.0, -5.0, -5.0 | 0.25 | 2.25 |"
    )


def test_crossing_frames_of_a_distractor_touching_an_object() -> None:
    inst = _moving_distractor()
    objects, distractors = (inst == 1)[None], (inst == 2)[None]  # [1, T, H, W] visible masks
    assert crossing_frames(objects, distractors, radius=2).tolist() == [[False, False, True, True, False]]
    assert crossing_frames(objects, distractors, radius=3).tolist() == [[False, True, True, True, False]]
    # visible masks never overlap (the distractor hides what it covers): they only touch, at radius 1
    assert not crossing_frames(objects, distractors, radius=0).any()
    assert crossing_frames(objects, distractors, radius=1).tolist() == [[False, False, False, True, False]]
    assert not crossing_frames(objects, distractors[:0]).any()


def test_crossing_frames_count_a_fully_hidden_object_through_its_silhouette() -> None:
    silhouette = np.zeros((1, 2, 10, 10), bool)
    silhouette[0, :, 3:6, 3:6] = True  # the object's full silhouette
    distractor = np.zeros((1, 2, 10, 10), bool)
    distractor[0, 1, 2:8, 2:8] = True  # frame 1: the distractor covers it entirely (visible mask empty)
    assert crossing_frames(silhouette, distractor).tolist() == [[False, True]]


def test_subset_scores_average_per_object_then_over_objects() -> None:
    seq = SimpleNamespace(name="a", j=np.array([[1.0, 0.0, 0.5], [0.2, 0.4, 0.6]]), f=np.full((2, 3), 0.5))
    sel = {"a": np.array([[True, True, False], [False, False, True]])}
    out = subset_scores([seq], sel)
    assert out["J"] == pytest.approx((0.5 + 0.6) / 2) and out["F"] == pytest.approx(0.5)
    assert out["JF"] == pytest.approx(((0.5 + 0.6) / 2 + 0.5) / 2)
    assert (out["objects"], out["cells"]) == (2, 3)
    assert subset_scores([seq], {"a": np.zeros((2, 3), bool)})["JF"] is None


# -------------------------------------------------------------------------------------------- regeneration


def test_regenerated_videos_equal_the_files_of_generate_dataset(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", sequences=3, frames=5, size=(32, 40), seed=5)
    for i in range(3):
        video = regenerate_video(5, i, 5, (32, 40))
        on_disk = np.stack(
            [read_label(p) for p in sorted((root / "Annotations" / "480p" / f"synth{i:03d}").glob("*.png"))]
        )
        np.testing.assert_array_equal(on_disk, video.labels)
        verify_labels(root, f"synth{i:03d}", video)
    # the visible instances lie inside the sprites' full silhouettes
    sil = sprite_silhouettes(video)
    for s in range(sil.shape[0]):
        assert not ((video.instances == s + 1) & ~sil[s]).any()
    tampered = video.labels[2].copy()
    tampered[0, 0] = 1 if tampered[0, 0] == 0 else 0
    write_label(root / "Annotations" / "480p" / "synth002" / "00002.png", tampered)
    with pytest.raises(RuntimeError, match="differs"):
        verify_labels(root, "synth002", video)


def test_eval_set_keeps_videos_with_crossings_and_lists_only_them(tmp_path: Path) -> None:
    es = make_eval_set(tmp_path / "e", sequences=2, frames=8, size=(48, 64), seed=1, min_crossing=2)
    listed = (tmp_path / "e" / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert listed == es.names and len(es.names) == 2
    for name in es.names:
        video = regenerate_video(1, int(name[5:]), 8, (48, 64))
        cross = video_crossings(video)
        assert cross.shape == (len(video.first_frame), 8)
        np.testing.assert_array_equal(es.crossing[name], cross[:, 1:-1])
        assert es.crossing[name].any(axis=0).sum() >= 2
        assert es.stats[name]["crossing_cells"] == int(cross[:, 1:-1].sum())


# --------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("arch", ["stcn", "xmem", "cutie"])
def test_variants_differ_only_by_their_losses(arch: str, tmp_path: Path) -> None:
    """Same network (the key_proj2 head in every row, so STCN's init is the same; Cutie has no such head and no
    "official" row), seed, data and schedule."""
    from ablation_runs import VARIANTS, build_config
    from corrvos.config import config_to_dict

    head = arch != "cutie"
    raw = {
        name: config_to_dict(build_config(arch, v, data_root=tmp_path, out_dir=tmp_path / name, steps=100, seed=3))
        for name, v in VARIANTS.items()
        if head or name != "official"
    }
    for name, cfg in raw.items():
        assert cfg["model"] == raw["none"]["model"] and cfg["model"]["aux_key_head"] is (True if head else None)
        assert cfg["stages"] == raw["none"]["stages"] and cfg["seed"] == 3
        changed = {k for k in cfg["loss"] if cfg["loss"][k] != raw["none"]["loss"][k]}
        expected = {"none": set(), "paper": {"mode"}, "official": {"mode"}}
        assert changed == expected.get(name, {"mode", "ocl_weight" if name == "pcl" else "pcl_weight"}), name
    if head:
        assert raw["official"]["loss"]["official_ramp_end"] == raw["official"]["loss"]["pcl_ramp_end"] == 42


# ------------------------------------------------------------------------------------------------ end to end


def _smoke(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    import ablation

    out = tmp_path / "out.json"
    return ablation.main(["--profile", "smoke", "--work", str(tmp_path / "work"), "--json", str(out), *extra]), out


@pytest.mark.slow
def test_smoke_profile_runs_cutie_and_other_profiles_ask_for_its_steps(tmp_path: Path) -> None:
    rc, out = _smoke(tmp_path, "--arch", "cutie")
    assert rc == 0
    record = json.loads(out.read_text())
    assert {(r["arch"], r["variant"]) for r in record["runs"]} == {("cutie", "none"), ("cutie", "paper")}
    assert set(record["summary"]) == {"cutie"}
    import ablation

    with pytest.raises(SystemExit, match="no step counts for \\['cutie'\\]"):
        ablation.main(["--profile", "cpu", "--arch", "cutie", "--variants", "none", "paper", "--work", str(tmp_path)])
    with pytest.raises(SystemExit, match="--variants none paper pcl ocl"):  # no second view: no "official" row
        ablation.main(["--profile", "cpu", "--arch", "cutie", "--steps", "2", "--work", str(tmp_path / "cpu")])


@pytest.mark.slow
def test_smoke_profile_writes_the_record(tmp_path: Path) -> None:
    rc, out = _smoke(tmp_path)
    assert rc == 0
    record = json.loads(out.read_text())
    for key in ("study", "profile", "baseline", "settings", "crossing", "data", "eval", "runs", "summary", "seconds"):
        assert key in record
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [("none", 0), ("paper", 0)]
    for run in record["runs"]:
        assert 0.0 <= run["scores"]["jf"] <= 1.0
        assert {"crossing", "non_crossing", "per_sequence_jf"} <= set(run["scores"])
        assert run["scores"]["crossing"]["cells"] > 0
        assert run["seconds"]["train_seconds"] > 0
    row = record["summary"]["stcn"]["paper"]
    assert {"jf", "crossing_jf", "diff_jf", "diff_crossing_jf"} <= set(row)
    assert row["diff_jf"]["per_seed"] == [
        pytest.approx(row["jf"]["mean"] - record["summary"]["stcn"]["none"]["jf"]["mean"])
    ]
    assert out.with_suffix(".png").is_file()
    assert not list((tmp_path / "work").rglob("*.pth"))  # checkpoints deleted after inference

    # visible cells, counted independently from the annotation files: (object, evaluated frame) with object pixels
    root = Path(record["eval"]["root"]) / "Annotations" / "480p"
    visible = 0
    for name in record["eval"]["names"]:
        labels = [read_label(p) for p in sorted((root / name).glob("*.png"))]
        visible += sum(int((lab == k).any()) for lab in labels[1:-1] for k in np.unique(labels[0]) if k != 0)
    assert record["runs"][0]["scores"]["visible"]["cells"] == visible
    # the "predict nothing" floor scores 0 where an object is visible and predicts no pixel
    empty = record["reference"]["empty"]
    assert empty["visible"]["JF"] == 0.0 and empty["foreground_ratio"] == 0.0
    assert record["reference"]["copy_first_frame"]["foreground_ratio"] > 0
    assert row["diff_visible_jf"]["per_seed"] == [
        pytest.approx(row["visible_jf"]["mean"] - record["summary"]["stcn"]["none"]["visible_jf"]["mean"])
    ]

    # --rescore scores the same runs again without training them: the same scores, the same timings
    import ablation

    again = tmp_path / "again.json"
    assert (
        ablation.main(["--profile", "smoke", "--work", str(tmp_path / "work"), "--json", str(again), "--rescore"]) == 0
    )
    rescored = json.loads(again.read_text())
    assert rescored["rescored"] is True
    for a, b in zip(record["runs"], rescored["runs"], strict=True):
        assert a["scores"] == b["scores"]
        assert a["seconds"]["train_seconds"] == b["seconds"]["train_seconds"]


@pytest.mark.slow
def test_smoke_profile_of_the_semi_supervised_study(tmp_path: Path) -> None:
    import ablation

    reason = ablation.semi_supported()
    rc, out = _smoke(tmp_path, "--study", "semi")
    if reason is not None:
        assert rc == 3
        return
    assert rc == 0
    record = json.loads(out.read_text())
    assert record["study"] == "semi"
    assert [r["variant"] for r in record["runs"]] == ["labeled:paper", "labeled+unlabeled:paper"]
    assert record["data"]["unlabeled"]["sequences"] > 0


@pytest.mark.slow
def test_smoke_finetune_protocol_starts_every_variant_from_one_lseg_run(tmp_path: Path) -> None:
    rc, out = _smoke(tmp_path, "--protocol", "finetune")
    assert rc == 0
    assert out.name == "out.json"
    record = json.loads(out.read_text())
    settings = record["settings"]
    assert (settings["protocol"], settings["recipe"], settings["pretrain_steps"]) == ("finetune", "cpu", {"stcn": 2})
    pre = tmp_path / "work" / "runs" / "stcn" / "pretrain"
    ckpt = pre / "train" / "checkpoints" / "main_final.pth"
    assert ckpt.is_file() and not (pre / "results").exists()  # kept for the variants, never segmented
    pre_job = json.loads((pre / "job.json").read_text())
    assert pre_job["variant"]["loss"] == {"mode": "none"} and pre_job["steps"] == 2
    for run in record["runs"]:
        job = json.loads((Path(run["run_dir"]) / "job.json").read_text())
        assert job["init_from"] == str(ckpt) and job["recipe"] == "cpu"
        cfg = (Path(run["run_dir"]) / "train" / "config.yaml").read_text()
        assert "key_encoder: resnet18" in cfg
