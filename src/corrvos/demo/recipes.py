"""The demo's training recipes: tiny STCN / XMem runs on synthetic videos that fit a few CPU minutes.

The values follow ``configs/synthetic_demo.yaml`` and ``configs/xmem_synthetic_demo.yaml`` (random init, 64x64
crops, the official schedules compressed to the run's length); only the loss mode differs between the two runs
of a comparison, so that any difference comes from the correspondence losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corrvos.config import TrainConfig, config_from_dict
from corrvos.families import family_of_arch

__all__ = ["CPU_INFER_SIZE", "cpu_train_config", "demo_train_config"]


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
    """The demo recipe of ``arch`` (any architecture of the family table) with loss ``mode`` ("none", "paper", ...).

    Schedules scale with ``steps`` as in the shipped 240-step demo configs: bootstrapped CE from 5/12 to 5/6 of
    the run, L_PCL / L_OCL ramps over the first 5/12, the learning rate divided by 10 at 5/6. No resumable
    checkpoints are written (``keep_checkpoints: 0``): the run folder keeps ``main_final.pth`` (about 210 MB)
    and its TensorBoard log.
    """
    owner = family_of_arch(arch)  # ValueError naming the known architectures
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
    owner.recipe(raw, steps)  # the family's batch, clip sampling and loss settings
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
    family_of_arch(arch).cpu_recipe(raw, steps)
    return config_from_dict(raw, source=f"CPU recipe ({arch}, loss {mode})")
