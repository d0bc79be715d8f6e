"""The learning-rate warm-up (``StageConfig.lr_warmup``): the factor, the rates a real run trains with, resume."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from corrvos.config import StageConfig, config_from_dict
from corrvos.data.synthetic import generate_dataset
from corrvos.errors import ConfigError
from corrvos.training.checkpoint import load_scheduler_state, scheduler_state
from corrvos.training.schedules import lr_factor
from corrvos.training.trainer import Trainer, _build_scheduler
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)


def test_lr_factor_ramps_then_follows_the_milestones() -> None:
    got = [lr_factor(k, warmup=4, milestones=[6, 7], gamma=0.1) for k in range(9)]
    want = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.01, 0.01]
    assert got == pytest.approx(want, rel=1e-12)
    assert [lr_factor(k, warmup=0, milestones=[2], gamma=0.5) for k in range(4)] == [1.0, 1.0, 0.5, 0.5]


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.3)


def _rates(stage: StageConfig, steps: int) -> list[float]:
    opt = _optimizer()
    sched = _build_scheduler(opt, stage, 0.1)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_without_warmup_the_schedule_is_multistep_lr() -> None:
    stage = StageConfig(iterations=6, lr=0.3, lr_milestones=[2, 4])
    opt = _optimizer()
    reference = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4], 0.1)
    want = []
    for _ in range(6):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        reference.step()
    assert isinstance(_build_scheduler(_optimizer(), stage, 0.1), torch.optim.lr_scheduler.MultiStepLR)
    assert _rates(stage, 6) == pytest.approx(want, rel=1e-12)


def test_warmup_scheduler_resumes_exactly_from_a_weights_only_state() -> None:
    stage = StageConfig(iterations=8, lr=0.3, lr_milestones=[5], lr_warmup=3)
    want = _rates(stage, 8)
    assert want == pytest.approx([0.3 * f for f in (1 / 3, 2 / 3, 1, 1, 1, 0.1, 0.1, 0.1)], rel=1e-12)
    opt = _optimizer()
    sched = _build_scheduler(opt, stage, 0.1)
    for _ in range(2):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler_state(sched), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2 = _optimizer()  # the trainer's order: scheduler built, then the optimizer's and the scheduler's states
    sched2 = _build_scheduler(opt2, stage, 0.1)
    opt2.load_state_dict(state["optimizer"])
    load_scheduler_state(sched2, state["scheduler"])
    rest = []
    for _ in range(6):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert rest == pytest.approx(want[2:], rel=1e-12)


def test_a_training_run_trains_with_the_warmed_up_rates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, sequences=2, frames=6, size=(48, 64), seed=3)
    data = {"crop_size": 32, "datasets": [{"kind": "davis", "root": str(root)}]}
    data |= {"max_skip_values": [2], "max_skip_fractions": []}
    stage = {"name": "main", "iterations": 4, "batch_size": 2, "lr": 2e-4, "lr_milestones": [3], "lr_warmup": 2}
    raw = {
        "model": {"arch": "stcn", "key_encoder": "resnet18", "width": 16, "pretrained_backbones": False},
        "optim": {"freeze_bn": False},
        "loss": {"mode": "none"},
        "stages": [stage | {"data": data}],
        "num_workers": 0,
        "log_interval": 1,
        "image_interval": 0,
        "keep_checkpoints": 0,
        "device": "cpu",
        "amp": "off",
        "out_dir": str(tmp_path / "run"),
    }
    seen: list[float] = []
    trainer = Trainer(config_from_dict(raw), callbacks=[lambda t, record: seen.append(record.scalars["lr/rest"])])
    trainer.run()
    assert seen == pytest.approx([1e-4, 2e-4, 2e-4, 2e-5], rel=1e-9)


def test_a_warmup_longer_than_the_stage_is_refused() -> None:
    stage = {"name": "main", "iterations": 5, "lr_warmup": 6}
    with pytest.raises(ConfigError, match="lr_warmup must lie in"):
        config_from_dict({"stages": [stage]}, source="warmup.yaml")
