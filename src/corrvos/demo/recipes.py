"""The demo's training recipes: tiny STCN / XMem runs on synthetic videos that fit a few CPU minutes.

The values follow ``configs/synthetic_demo.yaml`` and ``configs/xmem_synthetic_demo.yaml`` (random init, 64x64
crops, the official schedules compressed to the run's length); only the loss mode differs between the two runs
of a comparison, so that any difference comes from the correspondence losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corrvos.config import TrainConfig, config_from_dict

__all__ = ["CPU_INFER_SIZE", "DEMO_ARCHS", "cpu_train_config", "demo_train_config"]

DEMO_ARCHS = ("stcn", "xmem")


def _scaled(steps: int, fraction: float) -> int:
    return max(1, round(steps * fraction))


def demo_train_config(
    arch: str, mode: str, *, data_root: str | Path, out_dir: str | Path, steps: int, seed: int
) -> TrainConfig:
    """The first demo recipe (before the CPU recipe; kept as the learning-speed study's baseline)."""
    raw = _demo_raw(arch, mode, data_root=data_root, out_dir=out_dir, steps=steps, seed=seed)
    return config_from_dict(raw, source=f"demo recipe ({arch}, loss {mode})")


def _demo_raw(
    arch: str, mode: str, *, data_root: str | Path, out_dir: str | Path, steps: int, seed: int
) -> dict[str, Any]:
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
    return raw


#: shorter side (px) the CPU recipe's models segment at (None: the frames' own size).
CPU_INFER_SIZE: int | None = None


def cpu_train_config(
    arch: str, mode: str, *, data_root: str | Path, out_dir: str | Path, steps: int, seed: int
) -> TrainConfig:
    """The CPU recipe: the demo recipe with the changes the learning-speed study found to matter
    (``benchmarks/learning_speed.py``, docs/benchmarks.md): corrvos's small variant (ResNet-18 key encoder, half
    width; about 9 M parameters instead of 54 M), BatchNorm on batch statistics (random init has no ImageNet
    statistics to freeze) and a learning rate of 3e-4 instead of 1e-4; XMem also trains on 5-frame clips instead
    of 8 (more, faster steps in the same minutes).
    """
    raw = _demo_raw(arch, mode, data_root=data_root, out_dir=out_dir, steps=steps, seed=seed)
    raw["model"].update(key_encoder="resnet18", width=32)
    raw["optim"]["freeze_bn"] = False
    raw["stages"][0]["lr"] = 3.0e-4
    if arch == "xmem":
        raw["stages"][0]["data"]["num_frames"] = 5
    return config_from_dict(raw, source=f"CPU recipe ({arch}, loss {mode})")
