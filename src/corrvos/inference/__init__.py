"""corrvos.inference: streaming per-video inference (:class:`InferenceCore`), the memory interface, object
bookkeeping, frames. Each family's memory lives in its package (``corrvos.families.<name>.memory``).

Usage::

    core = InferenceCore(model)                 # the official options of the model's family
    core = InferenceCore(model, inference_config_for(model, mem_every=10))   # or some of them changed
    for t, image in enumerate(frames):          # image: float32 [3, H, W] RGB in [0, 1]
        prob = core.step(image, mask if t == 0 else None, end=t == len(frames) - 1)
        labels = core.prob_to_mask(prob)        # int64 [H, W] with the original object ids
"""

from __future__ import annotations

from corrvos.inference.config import InferenceConfig, inference_config_for
from corrvos.inference.core import InferenceCore, soft_aggregate
from corrvos.inference.memory_store import MemoryStore, make_memory
from corrvos.inference.objects import ObjectGroup, ObjectManager

__all__ = [
    "InferenceConfig",
    "InferenceCore",
    "MemoryStore",
    "ObjectGroup",
    "ObjectManager",
    "inference_config_for",
    "make_memory",
    "soft_aggregate",
]
