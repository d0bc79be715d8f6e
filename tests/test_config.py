"""Tests of corrvos.config: defaults, YAML overrides and ``base`` chains, ``--set``, type checks, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrvos.cli import main as cli_main
from corrvos.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_data_root,
    stage_loss_config,
)
from corrvos.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_validate_and_round_trip():
    cfg = load_config(None)
    assert isinstance(cfg, TrainConfig)
    assert [s.name for s in cfg.stages] == ["main"]
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_load(path: Path):
    cfg = load_config(path)
    assert cfg.stages, path
    for stage in cfg.stages:
        stage_loss_config(cfg, stage)  # every stage's loss block is valid


def test_shipped_recipes_hold_the_published_numbers():
    official = load_config(REPO / "configs" / "stcn_corr_official.yaml")
    assert official.model.arch == "stcn_corr"
    assert official.optim.optimizer == "adamw"
    assert (official.optim.encoder_lr_scale, official.optim.encoder_deep_lr_scale) == (0.2, 0.4)
    assert official.loss.mode == "official" and official.loss.dice_weight == 0.4
    assert (official.loss.temp_weight, official.loss.cross_key_weight) == (0.20, 0.04)
    main = official.stages[-1]
    assert (main.lr, main.iterations, main.lr_milestones) == (5e-5, 150_000, [125_000])
    assert main.data.max_skip_values == [5, 10, 15, 5] and main.data.max_skip_fractions == [0.1, 0.3, 0.8]
    stcn = load_config(REPO / "configs" / "stcn.yaml")
    assert stcn.optim.optimizer == "adam" and stcn.loss.mode == "none"
    assert [(s.name, s.iterations, s.lr_milestones, s.single_object) for s in stcn.stages] == [
        ("static", 300_000, [150_000], True),
        ("main", 150_000, [125_000], False),
    ]
    paper = load_config(REPO / "configs" / "stcn_corr_paper.yaml")
    assert paper.model.arch == "stcn" and paper.loss.mode == "paper"
    assert all(s.batch_size == 16 and s.lr == 5e-5 for s in paper.stages)


def test_yaml_overrides_and_base_chain(tmp_path: Path):
    write(
        tmp_path,
        "base.yaml",
        "seed: 7\noptim:\n  weight_decay: 0.5\nstages:\n  - name: a\n    iterations: 10\n    lr_milestones: [5]\n",
    )
    child = write(tmp_path, "child.yaml", "base: base.yaml\noptim:\n  grad_clip: 2\n")
    cfg = load_config(child)
    assert cfg.seed == 7
    assert cfg.optim.weight_decay == 0.5 and cfg.optim.grad_clip == 2.0  # merged, int promoted to float
    assert [(s.name, s.iterations) for s in cfg.stages] == [("a", 10)]
    assert cfg.stages[0].batch_size == TrainConfig().stages[0].batch_size  # stage defaults fill the block


def test_set_overrides_by_stage_name_and_index(tmp_path: Path):
    path = write(tmp_path, "two.yaml", "stages:\n  - {name: static, single_object: true}\n  - {name: main}\n")
    cfg = load_config(
        path,
        [
            "stages.main.iterations=42",
            "stages.0.lr=3e-4",
            "amp=off",
            "stages.main.lr_milestones=[10, 20]",
            "stages.static.loss.dice_weight=0.4",
        ],
    )
    assert cfg.stages[1].iterations == 42 and cfg.stages[0].lr == 3e-4
    assert cfg.amp == "off"  # YAML reads `off` as false; accepted for the "off" choice
    assert cfg.stages[1].lr_milestones == [10, 20]
    assert stage_loss_config(cfg, cfg.stages[0]).dice_weight == 0.4
    assert stage_loss_config(cfg, cfg.stages[1]).dice_weight == cfg.loss.dice_weight


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("optim:\n  learning_rate: 1\n", "unknown key 'optim.learning_rate'"),
        ("seed: 1.5\n", "'seed' must be int"),
        ("optim:\n  gamma: fast\n", "'optim.gamma' must be float"),
        ("model:\n  arch: resnet\n", "model.arch: unknown architecture"),
        ("stages:\n  - {name: main, batch_size: many}\n", "batch_size' must be int"),
        ("stages:\n  - {name: main, lr_milestones: [10, 5]}\n", "lr_milestones must be positive and increasing"),
        ("stages:\n  - {name: a}\n  - {name: a}\n", "stage names must be unique"),
        ("stages:\n  - {name: main, data: {crop_size: 100}}\n", "multiple of 16"),
        ("stages:\n  - {name: main, loss: {pcl_wieght: 1}}\n", "unknown key 'stages[main].loss.pcl_wieght'"),
        ("loss:\n  mode: both\n", "loss.mode"),
        ("stages:\n  - {name: main, data: {max_skip_values: [5, 10], max_skip_fractions: []}}\n", "one more entry"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("seed: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, needle: str):
    _assert_config_error(tmp_path, text, needle)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("stages.main.iterationz=3", "unknown key 'stages.main.iterationz'"),
        ("stages.nope.iterations=3", "no list item 'stages.nope'"),
        ("seed", "expected KEY=VALUE"),
        ("stages.main.iterations=abc", "must be int"),
        ("seed.x=1", "is not a mapping or list"),
    ],
)
def test_bad_set_overrides(item: str, needle: str):
    with pytest.raises(ConfigError) as info:
        load_config(None, [item])
    assert needle in str(info.value)


def test_apply_overrides_does_not_mutate_its_input():
    data = config_to_dict(load_config(None))
    out = apply_overrides(data, ["seed=3"])
    assert out["seed"] == 3 and data["seed"] != 3


def test_missing_file_and_base_cycle(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_data_root_from_config_or_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("CORRVOS_DATA", raising=False)
    assert resolve_data_root(load_config(None)) is None
    monkeypatch.setenv("CORRVOS_DATA", str(tmp_path))
    assert resolve_data_root(load_config(None)) == tmp_path
    assert resolve_data_root(load_config(None, [f"data_root={tmp_path / 'x'}"])) == tmp_path / "x"


def test_cli_print_config_and_bad_config_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert (
        cli_main(
            [
                "train",
                "--config",
                str(REPO / "configs" / "synthetic_demo.yaml"),
                "--print-config",
                "--set",
                "stages.main.iterations=5",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "iterations: 5" in printed
    bad = write(tmp_path, "bad.yaml", "optim:\n  momentum: 0.9\n")
    assert cli_main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corrvos train: error:" in err and str(bad) in err and "optim.momentum" in err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # official-mode losses need the key_proj2 head of arch stcn_corr (else the trainer failed with a traceback)
        ("model: {arch: stcn}\nloss: {mode: official}\n", "needs the key_proj2 head"),
        ("model: {arch: stcn}\nstages:\n  - {name: main, loss: {mode: official}}\n", "needs the key_proj2 head"),
        ("model: {arch: xmem}\nloss: {mode: official}\n", "needs the key_proj2 head"),
        # the frame roles of L_PCL / L_OCL must be different frames (a 2-frame clip made r its own pseudo-label)
        ("stages:\n  - {name: main, data: {num_frames: 2}}\n", "must name different frames"),
        ("loss: {ocl_frame_p: 1, ocl_frame_q: -2}\n", "must name different frames"),
        # XMem's clip options
        ("stages:\n  - {name: main, data: {num_ref_frames: 0}}\n", "num_ref_frames must be >= 1"),
        ("stages:\n  - {name: main, iterations: 10, data: {finetune_iterations: 10}}\n", "finetune_iterations"),
        ("stages:\n  - {name: main, data: {num_frames: 8, sampling: chain}}\n", "draws 3 frames"),
        ("model: {deep_update_prob: 1.5}\n", "deep_update_prob must lie in [0, 1]"),
        # corrvos's small variants: a width the ResNets cannot take, or ImageNet weights that cannot fit it
        ("model: {width: 20}\n", "model.width must be a positive multiple of 8"),
        ("model: {width: 0}\n", "model.width must be a positive multiple of 8"),
        ("model: {width: 32, pretrained_backbones: true}\n", "pretrained_backbones needs model.width 64"),
        ("model: {key_encoder: resnet34}\n", "key_encoder"),
        # a max skip below 1 later in the curriculum failed only when the curriculum reached it
        (
            "stages:\n  - {name: main, data: {max_skip_values: [5, 0], max_skip_fractions: [0.5]}}\n",
            "max_skip_values must be >= 1",
        ),
        # one curriculum rule for the config and SkipCurriculum: fractions increase strictly within (0, 1]
        (
            "stages:\n  - {name: main, data: {max_skip_values: [5, 10, 15], max_skip_fractions: [0.5, 0.5]}}\n",
            "fractions must increase within (0, 1]",
        ),
        # a single-object stage after a multi-object one failed only when that stage started
        ("stages:\n  - {name: main}\n  - {name: static, single_object: true}\n", "single-object stage"),
        # a subset list was silently ignored for these kinds; a bad synthetic size raised an IndexError later
        (
            "stages:\n  - {name: s, data: {datasets: [{kind: static, root: x, subset: a.txt}]}}\n",
            "subset is only read for davis, youtube and synthetic",
        ),
        ("stages:\n  - {name: s, data: {datasets: [{kind: synthetic, size: [64]}]}}\n", "size must be [H, W]"),
        # optimiser values: grad_clip 0 silently zeroed every gradient; negative lrs / decay raised in torch later
        ("optim: {grad_clip: 0}\n", "optim.grad_clip must be > 0"),
        ("optim: {encoder_lr_scale: -0.2}\n", "optim.encoder_lr_scale must be > 0"),
        ("optim: {weight_decay: -1.0e-7}\n", "optim.weight_decay must be >= 0"),
        ("optim: {gamma: 0}\n", "optim.gamma must be > 0"),
        # loss frame indices outside the clip raised a ValueError traceback at the first training step
        ("loss: {mode: paper, pcl_frame_t1: 3}\n", "loss.pcl_frame_t1 = 3 is outside a clip of 3 frames"),
        ("loss: {mode: paper, ocl_frame_q: -4}\n", "loss.ocl_frame_q = -4 is outside a clip of 3 frames"),
    ],
)
def test_inconsistent_recipes_fail_at_load_time(tmp_path: Path, text: str, needle: str):
    _assert_config_error(tmp_path, text, needle)


def test_consistent_recipes_still_load(tmp_path: Path):
    ok = write(
        tmp_path,
        "ok.yaml",
        "model: {arch: stcn_corr}\nloss: {mode: official}\nstages:\n"
        "  - {name: static, single_object: true}\n  - {name: main, loss: {mode: none}}\n",
    )
    cfg = load_config(ok)
    assert [stage_loss_config(cfg, s).mode for s in cfg.stages] == ["official", "none"]
    cfg = load_config(None, ["loss.mode=none"])  # arch stcn with official mode switched off per stage
    assert stage_loss_config(cfg, cfg.stages[0]).mode == "none"
    # frame indices are checked against each stage's own T, and only for the terms that run
    cfg = load_config(None, ["loss.pcl_frame_t1=5", "stages.main.data.num_frames=8"])
    assert stage_loss_config(cfg, cfg.stages[0]).pcl_frame_t1 == 5
    cfg = load_config(None, ["loss.pcl_frame_t1=5", "loss.pcl_weight=0", "loss.mode=paper"])
    assert stage_loss_config(cfg, cfg.stages[0]).pcl_weight == 0


def _assert_config_error(tmp_path: Path, text: str, needle: str) -> None:
    """Loading ``text`` as a config file raises a ConfigError that names the file and contains ``needle``."""
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)
