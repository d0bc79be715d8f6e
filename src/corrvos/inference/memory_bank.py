"""Key/value memory of streaming inference: memory frames, an optional temporary last frame, object groups.

Re-expresses the memory handling of hkchengrex/STCN:inference_memory_bank.py (``MemoryBank``) and the
per-object banks of hkchengrex/STCN:inference_core_yv.py, written independently.

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
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["MemoryBank", "MemoryReader"]

_log = logging.getLogger(__name__)


class MemoryReader(Protocol):
    """The model stage a :class:`MemoryBank` needs (implemented by ``corrvos.models.stcn.STCN``)."""

    def read_memory(self, mem_key: Tensor, mem_value: Tensor, query_key: Tensor, *,
                    top_k: int | None = None) -> Tensor: ...


class MemoryBank:
    """Memory of one video: permanent frames, an optional temporary frame, and per-group values.

    Args:
        top_k: how many memory positions each query position keeps (STCN inference: 20); ``None`` for the full
            softmax over memory.
    """

    def __init__(self, *, top_k: int | None = 20) -> None:
        self.top_k = top_k
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

    def add(self, key: Tensor, values: list[Tensor], *, temporary: bool = False) -> None:
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

    def read(self, model: MemoryReader, query_key: Tensor) -> list[Tensor]:
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
