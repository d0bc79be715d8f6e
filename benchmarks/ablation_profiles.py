"""Profiles of the ablation (``benchmarks/ablation.py``): the sizes, steps and workers of each study run.

The module docstring of ``ablation.py`` gives the measured times of each profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ablation_runs import VARIANTS

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True)
class Profile:
    """Sizes of one profile. Videos are (count, frames, (H, W))."""

    seeds: int
    steps: dict[str, int]
    batch: dict[str, int | None]
    parallel: int
    threads: int
    device: str
    num_workers: int
    train: tuple[int, int, tuple[int, int]]
    eval: tuple[int, int, tuple[int, int]]
    variants: tuple[str, ...]
    semi_variants: tuple[str, ...]
    semi_labeled: int  # labeled training videos of the semi study
    semi_unlabeled: tuple[int, int, tuple[int, int]]
    pretrain_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # finetune protocol: L_SEG steps first
    finetune_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # then each variant's steps
    finetune_seeds: int = 5


_ALL = tuple(VARIANTS)
_SEMI = ("labeled:none", "labeled:paper", "labeled+unlabeled:paper")
PROFILES = {
    "smoke": Profile(
        seeds=1,
        steps={"stcn": 2, "xmem": 2, "cutie": 2},
        batch={"stcn": 2, "xmem": 2, "cutie": 2},
        parallel=2,
        threads=1,
        device="cpu",
        num_workers=0,
        train=(4, 10, (64, 80)),
        eval=(2, 8, (64, 80)),
        variants=("none", "paper"),
        semi_variants=("labeled:paper", "labeled+unlabeled:paper"),
        semi_labeled=2,
        semi_unlabeled=(4, 10, (64, 80)),
        pretrain_steps={"stcn": 2, "xmem": 2, "cutie": 2},
        finetune_steps={"stcn": 2, "xmem": 2, "cutie": 2},
        finetune_seeds=1,
    ),
    "cpu": Profile(
        seeds=3,
        steps={"stcn": 600, "xmem": 200},
        batch={"stcn": None, "xmem": None},
        parallel=2,
        threads=1,
        device="cpu",
        num_workers=0,
        train=(24, 12, (80, 96)),
        eval=(8, 20, (80, 96)),
        variants=_ALL,
        semi_variants=_SEMI,
        semi_labeled=4,
        semi_unlabeled=(32, 12, (80, 96)),
        pretrain_steps={"stcn": 1200, "xmem": 480},
        finetune_steps={"stcn": 300, "xmem": 120},
    ),
    "gpu": Profile(
        seeds=5,
        steps={"stcn": 500, "xmem": 250},
        batch={"stcn": 8, "xmem": 4},
        parallel=5,
        threads=1,
        device="cuda",
        num_workers=1,
        train=(48, 16, (80, 96)),
        eval=(16, 30, (80, 96)),
        variants=_ALL,
        semi_variants=(*_SEMI, "labeled+unlabeled:official"),
        semi_labeled=6,
        semi_unlabeled=(96, 16, (80, 96)),
        pretrain_steps={"stcn": 3000, "xmem": 1500},
        finetune_steps={"stcn": 1000, "xmem": 500},
    ),
}
