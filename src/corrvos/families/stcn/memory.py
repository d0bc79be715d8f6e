"""STCN's memory for streaming inference: memory frames, a temporary last frame, object groups.

Implements :class:`corrvos.inference.memory_store.MemoryStore`. Re-expresses the memory handling of
hkchengrex/STCN:inference_memory_bank.py (``MemoryBank``) and the per-object banks of
hkchengrex/STCN:inference_core_yv.py, written independently.

Conventions (shape legend of :mod:`corrvos.types`):
- keys are stored once for all objects as [1, CK, T, h, w] (T memory frames, oldest first);
- values are stored per object group as [1, N_g, CV, T_g, h, w]; a group introduced when the memory already held
  ``s`` frames reads the key suffix ``keys[:, :, s:]`` and its own T_g = T - s values, exactly as if it had its
  own bank started at its first annotated frame (every later memory frame is added to every group);
- the temporary entry (STCN's ``include_last``) holds one frame that is appended after the permanent frames when
  reading and is dropped by the next insertion of any kind;
- reading calls the model's ``read_memory`` (L2 affinity, top-k softmax of ``topk_softmax``, readout) once
  per group, so all objects of a group share one affinity.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from corrvos.inference.config import InferenceConfig
from corrvos.inference.objects import scatter_groups
from corrvos.types import QueryFeatures

__all__ = ["MemoryBank"]

_log = logging.getLogger(__name__)


class MemoryBank:
    """Memory of one video: permanent frames, an optional temporary frame, and per-group values.

    Args:
        config: the inference options; ``top_k`` is how many memory positions each query position keeps (STCN
            inference: 20; ``None`` for the full softmax over memory).
        video_length: unused (STCN's memory does not depend on it).
    """

    reads_change_state = False

    def __init__(self, config: InferenceConfig | None = None, *, video_length: int | None = None) -> None:
        self.top_k = (config or InferenceConfig()).top_k
        self.keys: Tensor | None = None  # [1, CK, T, h, w]
        self.values: list[Tensor] = []  # per group: [1, N_g, CV, T_g, h, w]
        self.starts: list[int] = []  # per group: first memory frame it reads
        self.temp_key: Tensor | None = None  # [1, CK, 1, h, w]
        self.temp_values: list[Tensor] | None = None  # per group: [1, N_g, CV, 1, h, w]

    @property
    def num_frames(self) -> int:
        """Permanent memory frames held (the temporary frame is not counted)."""
        return 0 if self.keys is None else self.keys.shape[2]

    @property
    def num_groups(self) -> int:
        return len(self.values)

    @property
    def num_elements(self) -> int:
        """Memory positions held (permanent and temporary frames)."""
        if self.keys is None:
            return 0
        per_frame = self.keys.shape[-2] * self.keys.shape[-1]
        return per_frame * (self.num_frames + (self.temp_key is not None))

    def add(self, feats: QueryFeatures, value: Tensor, groups: list[list[int]], *, temporary: bool = False) -> None:
        """Insert one frame (see :class:`MemoryStore`); ``temporary`` keeps it only until the next insertion (STCN's
        "last frame" memory). A new group must start on a permanent frame."""
        values = [value] if len(groups) == 1 else [value[:, c] for c in groups]  # per group [1, N_g, CV, h, w]
        self.add_frame(feats.key, values, temporary=temporary)

    def read(self, model: Any, feats: QueryFeatures, groups: list[list[int]]) -> Tensor:
        """Readout [1, N, CV, h, w] (channel order) of one query frame; one affinity per group."""
        readouts = self.read_groups(model, feats.key)  # per group [1, N_g, CV, h, w]
        return scatter_groups([r[0] for r in readouts], groups)[None]  # [1, N, CV, h, w]

    def add_frame(self, key: Tensor, values: list[Tensor], *, temporary: bool = False) -> None:
        """Insert one frame.

        Args:
            key: [1, CK, h, w] key of the frame.
            values: one [1, N_g, CV, h, w] tensor per object group, in group order. Groups beyond the ones already
                held are new: they start at this frame (which must then be permanent).
            temporary: keep the frame only until the next insertion (STCN's "last frame" memory).
        """
        if len(values) < self.num_groups:
            raise ValueError(f"expected values for all {self.num_groups} object groups, got {len(values)}")
        if temporary and len(values) > self.num_groups:
            raise ValueError("a new object group must start on a permanent memory frame")
        self.temp_key, self.temp_values = None, None
        key = key.unsqueeze(2)  # [1, CK, 1, h, w]
        values = [v.unsqueeze(3) for v in values]  # per group: [1, N_g, CV, 1, h, w]
        if temporary:
            self.temp_key, self.temp_values = key, values
            return
        start = self.num_frames
        self.keys = key if self.keys is None else torch.cat([self.keys, key], dim=2)  # [1, CK, T+1, h, w]
        for g, value in enumerate(values):
            if g < self.num_groups:
                self.values[g] = torch.cat([self.values[g], value], dim=3)  # [1, N_g, CV, T_g+1, h, w]
            else:
                self.values.append(value)
                self.starts.append(start)

    def read_groups(self, model: Any, query_key: Tensor) -> list[Tensor]:
        """Read the memory of every group for one query frame.

        Args:
            model: provides ``read_memory``.
            query_key: [1, CK, h, w] key of the query frame.

        Returns:
            one readout [1, N_g, CV, h, w] per group, in group order.
        """
        if self.keys is None:
            raise RuntimeError("the memory is empty: give a mask before reading")
        out = []
        for g, (start, value) in enumerate(zip(self.starts, self.values, strict=True)):
            mem_key = self.keys[:, :, start:]  # [1, CK, T_g, h, w]
            if self.temp_key is not None and self.temp_values is not None:
                mem_key = torch.cat([mem_key, self.temp_key], dim=2)  # [1, CK, T_g+1, h, w]
                value = torch.cat([value, self.temp_values[g]], dim=3)  # [1, N_g, CV, T_g+1, h, w]
            out.append(model.read_memory(mem_key, value, query_key, top_k=self.top_k))
        return out
