"""The learning-speed study (``benchmarks/learning_speed.py``) and what it rests on: recipes built from factors,
the trainer's step callbacks, segmenting a split with a model in memory, and the smoke profile end to end (its
last scoring point must be the score of the run's final weights, its floors those of the floor predictions)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from conftest import paper_run_config
from corrvos.config import config_from_dict, config_to_dict
from corrvos.data.synthetic import generate_dataset


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                out |= _flat(item, f"{prefix}{k}.{i}.")
        else:
            out[prefix + k] = v
    return out


def _diff(a, b) -> dict:
    fa, fb = _flat(config_to_dict(a)), _flat(config_to_dict(b))
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


# ------------------------------------------------------------------------------------------ recipes


def test_factors_change_only_their_settings(tmp_path: Path) -> None:
    from learning_speed_runs import build_recipe

    kw = {"data_root": str(tmp_path), "out_dir": tmp_path / "run", "steps": 100, "seed": 3}
    demo = build_recipe("demo", "stcn", **kw)
    assert _diff(demo, build_recipe("demo+bn+lr1e-3", "stcn", **kw)) == {
        "optim.freeze_bn": (True, False),
        "stages.0.lr": (1e-4, 1e-3),
    }
    # factors apply in order: the last learning rate wins
    assert build_recipe("demo+lr1e-3+lr3e-4", "stcn", **kw).stages[0].lr == 3e-4
    nb = build_recipe("demo+noboot", "stcn", **kw)
    assert nb.loss.bootstrap_start > 100 and nb.loss.bootstrap_end > 100


def test_cpu_recipe_is_the_demo_recipe_with_the_study_changes(tmp_path: Path) -> None:
    from corrvos.demo.recipes import cpu_train_config, demo_train_config

    kw = {"data_root": str(tmp_path), "out_dir": tmp_path / "run", "steps": 100, "seed": 3}
    for arch in ("stcn", "xmem"):
        diff = _diff(demo_train_config(arch, "paper", **kw), cpu_train_config(arch, "paper", **kw))
        assert set(diff) == {
            "model.key_encoder",
            "model.width",
            "optim.freeze_bn",
            "stages.0.lr",
        } | ({"stages.0.data.num_frames"} if arch == "xmem" else set()), arch
        assert diff["model.key_encoder"] == ("resnet50", "resnet18")


@pytest.mark.parametrize("arch", ["stcn", "xmem"])
def test_shipped_cpu_configs_are_the_cpu_recipe(arch: str, tmp_path: Path) -> None:
    from corrvos.config import load_config
    from corrvos.demo.recipes import cpu_train_config

    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{arch}_cpu.yaml")
    recipe = cpu_train_config(
        arch, "none", data_root=tmp_path, out_dir=shipped.out_dir, steps=shipped.stages[0].iterations, seed=shipped.seed
    )
    diff = _diff(recipe, shipped)
    assert all(k.startswith("stages.0.data.datasets.0.") for k in diff), diff  # the data: generated, not a folder
    assert shipped.stages[0].data.datasets[0].kind == "synthetic"


def test_warmup_factor_sets_only_the_warmup(tmp_path: Path) -> None:
    from learning_speed_runs import build_recipe

    kw = {"data_root": str(tmp_path), "out_dir": tmp_path / "run", "steps": 100, "seed": 3}
    assert _diff(build_recipe("cpu", "stcn", **kw), build_recipe("cpu+warmup", "stcn", **kw)) == {
        "stages.0.lr_warmup": (0, 5)
    }


def test_static_factor_prepends_a_static_stage_on_exported_frames(tmp_path: Path) -> None:
    from corrvos.data.io import read_image, read_label
    from corrvos.data.static import find_image_mask_pairs, read_binary_mask
    from corrvos.training.trainer import Trainer
    from learning_speed_runs import build_recipe

    root = generate_dataset(tmp_path / "train", sequences=2, frames=9, size=(64, 80), seed=4)
    kw = {"data_root": str(root), "out_dir": tmp_path / "run", "steps": 100, "seed": 3}
    plain, cfg = build_recipe("cpu+lr1e-3", "stcn", **kw), build_recipe("cpu+static+lr1e-3", "stcn", **kw)
    static, main = cfg.stages
    assert (static.name, static.iterations, main.name, main.iterations) == ("static", 25, "main", 75)
    assert static.lr == main.lr == 1e-3  # "static" copies the main stage after the other factors
    assert static.data.datasets[0].kind == "static" and static.data.num_frames == 3
    base = plain.stages[0]
    assert main.lr_milestones == [round(m * 75 / 100) for m in base.lr_milestones]
    assert cfg.loss.bootstrap_start == round(plain.loss.bootstrap_start * 75 / 100)
    # the exported pairs: every 4th annotated frame, one binary mask per object, the frame itself as the image
    want = []
    for ann_dir in sorted((root / "Annotations" / "480p").iterdir()):
        for ann in sorted(ann_dir.glob("*.png"))[::4]:
            label = read_label(ann)
            want += [(ann_dir.name, ann.stem, int(k), label == k) for k in np.unique(label) if k]
    pairs = find_image_mask_pairs(static.data.datasets[0].root)
    assert len(pairs) == len(want) > 0
    for (image, mask), (seq, frame, obj, truth) in zip(
        pairs, sorted(want, key=lambda w: f"{w[0]}_{w[1]}_{w[2]}"), strict=True
    ):
        assert mask.stem == f"{seq}_{frame}_{obj}"
        np.testing.assert_array_equal(read_binary_mask(mask), truth)
        source = read_image(root / "JPEGImages" / "480p" / seq / f"{frame}.jpg")
        assert np.abs(read_image(image).astype(int) - source.astype(int)).mean() < 3  # re-encoded JPEG
    # and the two stages train, static first
    cfg = build_recipe("cpu+static", "stcn", **(kw | {"steps": 4}))
    seen: list[str] = []
    Trainer(cfg, progress=False, callbacks=[lambda t, record: seen.append(record.stage)]).run()
    assert seen == ["static", "main", "main", "main"]


def test_recipe_inference_size() -> None:
    from corrvos.demo.recipes import CPU_INFER_SIZE
    from learning_speed_runs import recipe_infer_size

    assert recipe_infer_size("demo") is None
    assert recipe_infer_size("cpu") == CPU_INFER_SIZE
    assert recipe_infer_size("cpu+s0") is None
    assert recipe_infer_size("demo+s128") == 128


# ------------------------------------------------------------------------------------------ library pieces


def test_segment_split_writes_what_corrvos_infer_writes(ckpt: Path, tmp_path: Path) -> None:
    from corrvos.cli import main
    from corrvos.data.davis import DavisDataset
    from corrvos.inference.split import segment_split
    from corrvos.models import load_model

    root = generate_dataset(tmp_path / "data", sequences=4, frames=5, size=(48, 64), seed=4, val_fraction=0.5)
    assert main(["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(tmp_path / "cli")]) == 0
    model = load_model(ckpt)
    dataset = DavisDataset(root, year="2017", split="val")
    frames, _ = segment_split(model, dataset, tmp_path / "lib")
    cli = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.png"))
    lib = sorted(p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib").rglob("*.png"))
    assert cli == lib and len(lib) == 10 and frames == 10
    for rel in lib:
        assert (tmp_path / "cli" / rel).read_bytes() == (tmp_path / "lib" / rel).read_bytes()


def test_eval_mode_restores_each_modules_flag() -> None:
    from corrvos.inference.split import eval_mode

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training model
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, True, False, True]


def test_trainer_calls_callbacks_after_every_step_and_stops_on_request(tmp_path: Path) -> None:
    from corrvos.training.trainer import Trainer

    root = generate_dataset(tmp_path / "data", sequences=3, frames=6, size=(64, 80), seed=0, val_fraction=0.34)
    raw = paper_run_config(root, out_dir=str(tmp_path / "run"))
    raw["stages"][0]["iterations"] = 5
    raw["loss"] = {"mode": "none"}
    seen: list[tuple[int, int, bool]] = []

    def callback(trainer, record) -> None:
        seen.append((record.step, trainer.global_step, record.stage_done))
        if record.step == 2:
            trainer.request_stop("enough")

    result = Trainer(config_from_dict(raw), progress=False, callbacks=[callback]).run()
    assert seen == [(1, 1, False), (2, 2, False)]
    assert result.stopped_by == "enough" and result.step == 2 and not result.finished
    assert result.checkpoint is not None and result.checkpoint.is_file()


# ------------------------------------------------------------------------------------------ the study end to end


def test_smoke_profile_scores_the_trained_weights(tmp_path: Path) -> None:
    import learning_speed
    from corrvos.data.davis import DavisDataset
    from corrvos.inference.baseline import copy_first_frame
    from corrvos.inference.config import inference_config_for
    from corrvos.inference.split import segment_split
    from corrvos.models import load_model
    from learning_speed_runs import recipe_infer_size, score_results

    out = tmp_path / "ls.json"
    argv = ["--profile", "smoke", "--recipes", "cpu", "--work", str(tmp_path / "work"), "--json", str(out)]
    assert learning_speed.main([*argv, "--parallel", "1", "--keep-checkpoints"]) == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").is_file()
    (run,) = result["runs"]
    assert run["recipe"] == "cpu" and run["infer_size"] == recipe_infer_size("cpu")
    curve = run["curve"]
    assert len(curve) >= 1 and [p["step"] for p in curve] == sorted({p["step"] for p in curve})
    assert all(b["train_seconds"] > a["train_seconds"] for a, b in itertools.pairwise(curve))

    # the last point is the score of the weights the run ended with, on each held-out set
    ckpts = sorted((tmp_path / "work" / "runs" / "cpu" / "seed0" / "train" / "checkpoints").glob("*.pth"))
    model = load_model(ckpts[-1])
    for name, info in result["data"]["eval"].items():
        visible = {k: np.array(v) for k, v in json.loads(Path(info["visible_cells"]).read_text()).items()}
        dataset = DavisDataset(info["root"], year="2017", split="val")
        config = inference_config_for(model, internal_size=run["infer_size"])
        segment_split(model, dataset, tmp_path / "again" / name, config=config)
        assert score_results(info["root"], tmp_path / "again" / name, visible) == pytest.approx(curve[-1][name])
        copied = copy_first_frame(info["root"], tmp_path / "copy" / name, progress=False)
        assert score_results(info["root"], copied, visible) == info["floors"]["copy_first_frame"]
        assert info["floors"]["empty"]["visible"] == 0.0


def test_table_reads_each_curve_by_the_minute_marks() -> None:
    from learning_speed_report import at_minutes, format_table, recipe_summary

    def point(minutes: float, like: float) -> dict:
        return {"step": int(minutes * 100), "train_seconds": 60 * minutes, "like": {"visible": like, "all": 0.5}}

    finished = {"curve": [point(2, 0.1), point(4, 0.2), point(8.5, 0.3)], "steps": 850}
    stopped = {"curve": [point(2, 0.3), point(5.1, 0.4)], "steps": 510, "incomplete": True}
    assert at_minutes(finished, 5, "like") == 0.2  # the last point by 5 min (4 min)
    assert at_minutes(finished, 10, "like") == 0.3  # finished early: its last model is there at 10 min
    assert at_minutes(stopped, 5, "like") == 0.4  # 5.1 min is within the 5 % grace
    assert at_minutes(stopped, 10, "like") is None  # stopped before 10 min: unknown
    assert at_minutes(finished, 1, "like") is None
    floors = {"copy_first_frame": {"visible": 0.12, "all": 0.11}, "empty": {"visible": 0.0, "all": 0.16}}
    result = {
        "settings": {"recipes": ["a"]},
        "data": {"eval": {"like": {"floors": floors}}},
        "runs": [
            {"recipe": "a", "calibrated_seconds_per_step": 0.5, **finished},
            {"recipe": "a", "calibrated_seconds_per_step": 0.7, "curve": [point(5, 0.4), point(10, 0.5)], "steps": 9},
        ],
    }
    row = recipe_summary(result)["a"]
    assert row["like_visible@5"] == (pytest.approx(0.3), pytest.approx(np.std([0.2, 0.4], ddof=1)))
    assert row["like_visible@10"][0] == pytest.approx(0.4) and row["seconds_per_step"] == pytest.approx(0.6)
    table = format_table(result, markdown=True).splitlines()
    assert table[2].startswith("| copy_first_frame |") and "12.4" not in table[2] and "12.0" in table[2]
    assert table[4].startswith("| a | 2 | 0.60 |") and "30.0 ± 14.1" in table[4]
