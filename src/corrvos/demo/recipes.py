"""The demo's training recipes: tiny STCN / XMem runs on synthetic videos that fit a few CPU minutes.

The values follow ``configs/synthetic_demo.yaml`` and ``configs/xmem_synthetic_demo.yaml`` (random init, 64x64
crops, the official schedules compressed to the run's length); only the loss mode differs between the two runs
of a comparison, so that any difference comes from the correspondence losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corrvos.config import TrainConfig, config_from_dict

__all__ = ["DEMO_ARCHS", "demo_train_config"]

DEMO_ARCHS = ("stcn", "xmem")


def _scaled(steps: int, fraction: float) -> int:
    return max(1, round(steps * fraction))


def demo_train_config(
    arch: str, mode: str, *, data_root: str | Path, out_dir: str | Path, steps: int, seed: int
) -> TrainConfig:
    """The demo recipe of ``arch`` ("stcn" or "xmem") with loss ``mode`` ("none", "paper", ...).

    Schedules scale with ``steps`` as in the shipped 240-step demo configs: bootstrapped CE from 5/12 to 5/6 of
    the run, L_PCL / L_OCL ramps over the first 5/12, the learning rate divided by 10 at 5/6. No resumable
    checkpoints are written (``keep_checkpoints: 0``): the run folder keeps ``main_final.pth`` (about 210 MB)
    and its TensorBoard log.
    """
    if arch not in DEMO_ARCHS:
        raise ValueError(f"demo arch must be one of {DEMO_ARCHS}, got {arch!r}")
    ramp = _scaled(steps, 100 / 240)
    loss: dict[str, Any] = {
        "mode": mode,
        "bootstrap_start": ramp,
        "bootstrap_end": _scaled(steps, 200 / 240),
        "pcl_ramp_start": 0,
        "pcl_ramp_end": ramp,
        "ocl_ramp_start": 0,
        "ocl_ramp_end": ramp,
    }
    data: dict[str, Any] = {
        "crop_size": 64,
        "datasets": [{"kind": "davis", "root": str(Path(data_root).resolve())}],
    }
    stage: dict[str, Any] = {
        "name": "main",
        "iterations": steps,
        "lr": 1.0e-4,
        "lr_milestones": [_scaled(steps, 200 / 240)],
    }
    model: dict[str, Any] = {"arch": arch, "pretrained_backbones": False}
    optim: dict[str, Any] = {"optimizer": "adamw", "grad_clip": 5.0}
    if arch == "stcn":
        optim["weight_decay"] = 1.0e-7
        stage["batch_size"] = 4
        data.update(num_frames=3, max_objects=2, max_skip_values=[2, 4], max_skip_fractions=[0.5])
    else:
        model["deep_update_prob"] = 0.2
        optim["weight_decay"] = 0.05
        loss.update(dice_weight=1.0, dice_mode="xmem")
        stage["batch_size"] = 2
        data.update(
            num_frames=8,
            num_ref_frames=3,
            max_objects=3,
            augment="xmem",
            sampling="xmem",
            finetune_iterations=_scaled(steps, 40 / 240),
            max_skip_values=[2, 3, 4, 2],
            max_skip_fractions=[0.1, 0.3, 0.9],
        )
    stage["data"] = data
    raw = {
        "model": model,
        "optim": optim,
        "loss": loss,
        "amp": "off",
        "seed": seed,
        "out_dir": str(out_dir),
        "num_workers": 0,
        "log_interval": 5,
        "image_interval": 0,
        "save_interval": steps,
        "keep_checkpoints": 0,
        "stages": [stage],
    }
    return config_from_dict(raw, source=f"demo recipe ({arch}, loss {mode})")
