"""corrvos.inference: streaming per-video inference (:class:`InferenceCore`), memory, object bookkeeping, frames.

Usage::

    core = InferenceCore(model, top_k=20, mem_every=5)
    for t, image in enumerate(frames):          # image: float32 [3, H, W] RGB in [0, 1]
        prob = core.step(image, mask if t == 0 else None, end=t == len(frames) - 1)
        labels = core.prob_to_mask(prob)        # int64 [H, W] with the original object ids
"""

from __future__ import annotations

from corrvos.inference.core import InferenceCore, soft_aggregate
from corrvos.inference.memory_bank import MemoryBank
from corrvos.inference.objects import ObjectGroup, ObjectManager

__all__ = ["InferenceCore", "MemoryBank", "ObjectGroup", "ObjectManager", "soft_aggregate"]
