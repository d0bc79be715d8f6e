"""Schedules as data: the max-skip curriculum, piecewise-constant lookups and per-step seed derivation.

The learning-rate schedule itself is ``torch.optim.lr_scheduler.MultiStepLR`` (built in ``trainer.py``); the loss
weight ramps live with the losses (``corrvos.losses``). Everything here is a pure function of the step, so a
resumed run sees exactly the values an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["derive_seed", "max_skip_at", "piecewise_constant"]


def piecewise_constant(values: Sequence[float], boundaries: Sequence[float], x: float) -> float:
    """``values[i]`` for ``boundaries[i-1] <= x < boundaries[i]`` (``values`` has one more entry than boundaries).

    >>> piecewise_constant([5, 10, 15], [0.1, 0.3], 0.2)
    10
    """
    if len(values) != len(boundaries) + 1:
        raise ValueError("values needs exactly one more entry than boundaries")
    index = sum(1 for b in boundaries if x >= b)
    return values[index]


def max_skip_at(values: Sequence[int], fractions: Sequence[float], step: int, iterations: int) -> int:
    """Max frame gap of the curriculum at ``step`` of a stage of ``iterations`` steps.

    STCN switches to ``values[i]`` once training passes ``fractions[i-1]`` of the stage (it does so at epoch
    boundaries; we switch at the exact step, which does not depend on the dataset size or the process count).

    Args:
        values: e.g. STCN's [5, 10, 15, 20, 25, 5].
        fractions: e.g. STCN's [0.1, 0.2, 0.3, 0.4, 0.9].
        step: 0-based step within the stage.
        iterations: the stage's length.
    """
    return int(piecewise_constant(values, fractions, step / max(iterations, 1)))


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, stage, step, rank, sample index).

    Uses a hash rather than arithmetic so that nearby inputs give unrelated seeds.
    """
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
