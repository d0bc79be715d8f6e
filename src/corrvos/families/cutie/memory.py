"""Cutie's memory for streaming inference: the pixel memory per object group and the object memory.

Re-expresses hkchengrex/Cutie:cutie/inference/memory_manager.py and kv_memory_store.py (their working memory; the
long-term memory is not implemented yet), written independently with the same arithmetic and bookkeeping:

- every object group (the objects introduced by the same mask, Cutie's "bucket") has its own keys [1, CK, M_g],
  shrinkage [1, 1, M_g] and values [1, N_g, CV, M_g], from the frame that introduced it on; a memory frame is added
  to every group;
- a group's first memory frame is permanent; of the others, the last ``max_mem_frames - 1`` stay (older ones are
  dropped after each insertion);
- reading a group: XMem's anisotropic-L2 similarity of its keys to the query (with the query's selection), top-k
  softmax over the memory, readout of its values;
- the object memory of each object is the running sum of its summaries and their areas, [1, N_g, Q, C+1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from corrvos.inference.config import InferenceConfig
from corrvos.inference.objects import scatter_groups
from corrvos.models.memory import similarity, topk_softmax
from corrvos.types import QueryFeatures

__all__ = ["CutieMemory"]


class CutieMemory:
    """Cutie's pixel and object memory for one video (module docstring).

    Args:
        config: the inference options (``top_k``, ``max_mem_frames``; ``enable_long_term`` must be off).
        video_length: unused.
    """

    reads_change_state = False

    def __init__(self, config: InferenceConfig, *, video_length: int | None = None) -> None:
        if config.enable_long_term:
            raise ValueError(
                "Cutie's long-term memory is not implemented yet: use enable_long_term=False (--disable-long-term), "
                "its setting on DAVIS and YouTube-VOS"
            )
        self.top_k = config.top_k
        self.max_frames = config.max_mem_frames
        self.keys: list[Tensor] = []  # per group: [1, CK, M_g]
        self.shrinkage: list[Tensor] = []  # per group: [1, 1, M_g]
        self.values: list[Tensor] = []  # per group: [1, N_g, CV, M_g]
        self.permanent: list[int] = []  # per group: elements of its permanent (first) frame
        self.objects: list[Tensor] = []  # per group: [1, N_g, Q, C+1] summed summaries

    @property
    def num_groups(self) -> int:
        return len(self.keys)

    @property
    def num_elements(self) -> int:
        """Memory positions held, over every group."""
        return sum(k.shape[-1] for k in self.keys)

    def add(
        self,
        feats: QueryFeatures,
        value: Tensor,
        groups: list[list[int]],
        *,
        temporary: bool = False,
        summaries: Tensor | None = None,
    ) -> None:
        """Insert a memory frame: its key features, values [1, N, CV, h, w] and object summaries [1, N, Q, C+1]
        (channel order); groups past the known ones start here, with this frame as their permanent one."""
        if temporary:
            raise ValueError("Cutie's memory has no temporary entries")
        if feats.shrinkage is None or summaries is None:
            raise ValueError("a Cutie memory frame needs the key's shrinkage and the object summaries")
        key = feats.key.flatten(start_dim=2)  # [1, CK, HW]
        shrink = feats.shrinkage.flatten(start_dim=2)  # [1, 1, HW]
        hw = key.shape[-1]
        keep = (self.max_frames - 1) * hw  # non-permanent elements kept
        for g, channels in enumerate(groups):
            v = value[:, channels].flatten(start_dim=3)  # [1, N_g, CV, HW]
            s = summaries[:, channels]  # [1, N_g, Q, C+1]
            if g == self.num_groups:
                self.keys.append(key)
                self.shrinkage.append(shrink)
                self.values.append(v)
                self.permanent.append(hw)
                self.objects.append(s)
                continue
            self.keys[g] = torch.cat([self.keys[g], key], dim=-1)
            self.shrinkage[g] = torch.cat([self.shrinkage[g], shrink], dim=-1)
            self.values[g] = torch.cat([self.values[g], v], dim=-1)
            self.objects[g] = self.objects[g] + s
            p = self.permanent[g]
            if self.keys[g].shape[-1] - p > keep:  # drop the oldest non-permanent elements
                self.keys[g] = torch.cat([self.keys[g][..., :p], self.keys[g][..., -keep:]], dim=-1)
                self.shrinkage[g] = torch.cat([self.shrinkage[g][..., :p], self.shrinkage[g][..., -keep:]], dim=-1)
                self.values[g] = torch.cat([self.values[g][..., :p], self.values[g][..., -keep:]], dim=-1)

    def read_group(self, g: int, feats: QueryFeatures) -> Tensor:
        """Pixel readout [1, N_g, CV, h, w] of group ``g`` for one query frame."""
        h, w = feats.key.shape[-2:]
        qk = feats.key.flatten(start_dim=2)  # [1, CK, Q]
        qe = None if feats.selection is None else feats.selection.flatten(start_dim=2)  # [1, CK, Q]
        sim = similarity(self.keys[g], qk, mem_shrinkage=self.shrinkage[g], query_selection=qe)  # [1, M_g, Q]
        affinity = topk_softmax(sim, self.top_k, inplace=True) if self.top_k is not None else sim.softmax(dim=1)
        n, cv, m = self.values[g].shape[1:]
        out = self.values[g].reshape(1, n * cv, m) @ affinity  # [1, N_g*CV, Q]
        return out.view(1, n, cv, h, w)

    def read(self, model: Any, feats: QueryFeatures, groups: list[list[int]]) -> Tensor:
        """Pixel readout [1, N, CV, h, w] of every object (channel order), before Cutie's fusion and object read."""
        if not self.keys:
            raise RuntimeError("the memory is empty: give a mask before reading")
        readouts = [self.read_group(g, feats)[0] for g in range(len(groups))]  # [N_g, CV, h, w]
        return scatter_groups(readouts, groups)[None]

    def object_memory(self, g: int) -> Tensor:
        """The object memory of group ``g``, [1, N_g, 1, Q, C+1] (one summed entry per object)."""
        return self.objects[g].unsqueeze(2)
