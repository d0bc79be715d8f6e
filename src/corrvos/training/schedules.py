"""Per-step seed derivation for the trainer.

The other schedules live with what they schedule: the learning rate is ``torch.optim.lr_scheduler.MultiStepLR``
(built in ``trainer.py``), the max-skip curriculum is :class:`corrvos.data.sampling.SkipCurriculum` (its
``at_step``), and the loss weight ramps live with the losses (``corrvos.losses``). Each is a pure function of the
step, so a resumed run sees exactly the values an uninterrupted run would.
"""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, stage, step, rank, sample index).

    Uses a hash rather than arithmetic so that nearby inputs give unrelated seeds.
    """
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
