"""Per-step seed derivation and the learning-rate factor of the trainer.

The learning rate is ``torch.optim.lr_scheduler.MultiStepLR`` (built in ``trainer.py``), or with a warm-up
(``StageConfig.lr_warmup``) a ``LambdaLR`` of :func:`lr_factor`. The other schedules live with what they schedule:
the max-skip curriculum is :class:`corrvos.data.sampling.SkipCurriculum` (its ``at_step``), and the loss weight
ramps live with the losses (``corrvos.losses``). Each is a pure function of the step, so a resumed run sees exactly
the values an uninterrupted run would.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

__all__ = ["derive_seed", "lr_factor"]


def lr_factor(step: int, *, warmup: int, milestones: Sequence[int], gamma: float) -> float:
    """The learning-rate multiplier of stage step ``step`` (0-based): a linear warm-up, ``(step + 1) / warmup``
    over the first ``warmup`` steps, times ``gamma`` per milestone reached (MultiStepLR's rule)."""
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * gamma ** bisect.bisect_right(list(milestones), step)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, stage, step, rank, sample index).

    Uses a hash rather than arithmetic so that nearby inputs give unrelated seeds.
    """
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
