"""Cutie's memory for streaming inference: per object group, a pixel working memory and (optionally) a long-term
memory of prototypes; per object, the object memory.

Re-expresses hkchengrex/Cutie:cutie/inference/memory_manager.py and kv_memory_store.py, written independently with
the same arithmetic and bookkeeping. Every tensor has a batch dimension B: 1, or 2 with ``flip_aug`` (the frame and
its mirror image are two batch elements with their own memories, as in the official code).

- every object group (the objects introduced by the same mask, Cutie's "bucket") has its own keys [B, CK, M_g],
  shrinkage [B, 1, M_g] and values [B, N_g, CV, M_g], from the frame that introduced it on; a memory frame is added
  to every group; a group's first memory frame is permanent;
- without long-term memory the last ``max_mem_frames - 1`` other frames stay (older ones are dropped);
- with long-term memory (T_max = ``max_mid_term_frames``, T_min = ``min_mid_term_frames``, P = ``num_prototypes``,
  LT_max = ``max_long_term_elements``, ``long_term_buffer``; Cutie counts the permanent frame in neither T): each
  read adds the top-k affinity mass every non-permanent working element (and, with ``count_long_term_usage``, every
  long-term element) received to its use count and 1 to its life; when a group's non-permanent working memory holds
  (T_max - 1) frames, all of it but the newest T_min - 1 frames are candidates; per batch element the P most used
  (use / life) become prototype keys, their values and shrinkage the full-softmax readout of the candidates with the
  prototypes as queries (with the candidates' selection); the candidates leave, the prototypes join the group's
  long-term memory. Before that, when the long-term memory holds LT_max - P elements or more, only its
  LT_max - P - buffer most used stay, in order of usage (the official ``topk``);
- reading a group: XMem's anisotropic-L2 similarity of [long-term | working] keys to the query (with the query's
  selection), top-k softmax over the memory, readout of the values;
- the object memory of each object is the running sum of its summaries and their areas, [B, N_g, Q, C+1].

Where the official code cannot run we extend it: fewer candidates than P give as many prototypes as candidates, and
without long-term usage counts the eviction keeps the newest elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from corrvos.inference.config import InferenceConfig
from corrvos.inference.objects import scatter_groups
from corrvos.models.memory import similarity, softmax_affinity, topk_softmax
from corrvos.types import QueryFeatures

__all__ = ["CutieMemory"]


def _cat(old: Tensor | None, new: Tensor) -> Tensor:
    return new if old is None else torch.cat([old, new], dim=-1)


def _take(x: Tensor, index: Tensor) -> Tensor:
    """Per batch element b, the elements ``index[b]`` of the last dimension: [B, ..., M] -> [B, ..., K]."""
    idx = index.view(index.shape[0], *([1] * (x.dim() - 2)), index.shape[-1])  # [B, 1.., K]
    return torch.gather(x, -1, idx.expand(*x.shape[:-1], index.shape[-1]))


@dataclass
class _Store:
    """One group's elements in one memory (working or long-term). Selection and usage cover only the non-permanent
    elements (the last ``size - perm`` ones), as in the official store."""

    key: Tensor | None = None  # [B, CK, M]
    shrinkage: Tensor | None = None  # [B, 1, M]
    values: Tensor | None = None  # [B, N_g, CV, M]
    selection: Tensor | None = None  # [B, CK, M - perm]
    use: Tensor | None = None  # [B, M - perm]
    life: Tensor | None = None  # [B, M - perm]
    perm: int = 0

    @property
    def size(self) -> int:
        return 0 if self.key is None else self.key.shape[-1]

    @property
    def non_perm(self) -> int:
        return self.size - self.perm

    def append(self, key: Tensor, shrinkage: Tensor, values: Tensor, selection: Tensor | None, *, usage: bool) -> None:
        self.key, self.shrinkage, self.values = (
            _cat(self.key, key),
            _cat(self.shrinkage, shrinkage),
            _cat(self.values, values),
        )
        if selection is not None:
            self.selection = _cat(self.selection, selection)
        if usage:
            zeros = torch.zeros(key.shape[0], key.shape[-1], device=key.device, dtype=torch.float32)  # [B, M']
            self.use, self.life = _cat(self.use, zeros), _cat(self.life, zeros + 1e-7)

    def update_usage(self, usage: Tensor) -> None:
        """``usage`` [B, M - perm]: affinity mass of each non-permanent element; no-op without usage counts."""
        if self.use is None or self.life is None or usage.shape[-1] == 0:
            return
        self.use += usage
        self.life += 1

    def keep_tail(self, tail: int) -> None:
        """Keep the permanent elements and the newest ``tail`` others."""
        p, cut = self.perm, self.non_perm - tail
        if cut <= 0:
            return
        for name in ("key", "shrinkage", "values"):
            x = getattr(self, name)
            setattr(self, name, torch.cat([x[..., :p], x[..., p + cut :]], dim=-1))
        for name in ("selection", "use", "life"):
            x = getattr(self, name)
            if x is not None:
                setattr(self, name, x[..., cut:])

    def select(self, index: Tensor) -> None:
        """Keep, per batch element, the elements ``index`` [B, K] (no permanent elements: long-term memory)."""
        assert self.perm == 0
        for name in ("key", "shrinkage", "values", "selection", "use", "life"):
            x = getattr(self, name)
            if x is not None:
                setattr(self, name, _take(x, index))


@dataclass
class _Group:
    work: _Store = field(default_factory=_Store)
    long: _Store = field(default_factory=_Store)
    objects: Tensor | None = None  # [B, N_g, Q, C+1] summed summaries


class CutieMemory:
    """Cutie's pixel and object memory for one video (module docstring).

    Args:
        config: the inference options (``top_k``, ``max_mem_frames``, the long-term settings).
        video_length: unused (Cutie counts long-term usage unless ``count_long_term_usage`` is False).
    """

    def __init__(self, config: InferenceConfig, *, video_length: int | None = None) -> None:
        if config.include_last:
            raise ValueError("include_last (a temporary last-frame memory) is an STCN option; Cutie has no such entry")
        self.config = config
        self.top_k = config.top_k
        self.long_term = config.enable_long_term
        self.count_long_usage = config.count_long_term_usage is not False
        self.groups: list[_Group] = []
        self.hw: int | None = None

    @property
    def reads_change_state(self) -> bool:
        """With long-term memory, reading counts usage."""
        return self.long_term

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def num_elements(self) -> int:
        """Memory positions held, over every group and both memories."""
        return sum(g.work.size + g.long.size for g in self.groups)

    def add(
        self,
        feats: QueryFeatures,
        value: Tensor,
        groups: list[list[int]],
        *,
        temporary: bool = False,
        summaries: Tensor | None = None,
    ) -> None:
        """Insert a memory frame: its key features, values [B, N, CV, h, w] and object summaries [B, N, Q, C+1]
        (channel order); groups past the known ones start here, with this frame as their permanent one."""
        if temporary:
            raise ValueError("Cutie's memory has no temporary entries")
        if feats.shrinkage is None or summaries is None:
            raise ValueError("a Cutie memory frame needs the key's shrinkage and the object summaries")
        if self.long_term and feats.selection is None:
            raise ValueError("Cutie's long-term memory needs the key's selection (encode_key(need_selection=True))")
        key = feats.key.flatten(start_dim=2)  # [B, CK, HW]
        shrink = feats.shrinkage.flatten(start_dim=2)  # [B, 1, HW]
        sel = feats.selection.flatten(start_dim=2) if self.long_term else None  # [B, CK, HW]
        self.hw = hw = key.shape[-1]
        for g, channels in enumerate(groups):
            v = value[:, channels].flatten(start_dim=3)  # [B, N_g, CV, HW]
            s = summaries[:, channels]  # [B, N_g, Q, C+1]
            if g == self.num_groups:
                group = _Group(objects=s)
                group.work.append(key, shrink, v, None, usage=False)
                group.work.perm = hw
                self.groups.append(group)
                continue
            group = self.groups[g]
            group.work.append(key, shrink, v, sel, usage=self.long_term)
            group.objects = group.objects + s
        for group in self.groups:
            if not self.long_term:
                group.work.keep_tail((self.config.max_mem_frames - 1) * hw)
            elif group.work.non_perm >= (self.config.max_mid_term_frames - 1) * hw:
                cfg = self.config
                if group.long.size >= cfg.max_long_term_elements - cfg.num_prototypes:
                    self._evict(group.long, cfg.max_long_term_elements - cfg.num_prototypes - cfg.long_term_buffer)
                self._consolidate(group)

    def _evict(self, store: _Store, max_size: int) -> None:
        """Keep the ``max_size`` most used long-term elements (in order of usage; the newest without counts)."""
        if store.use is not None and store.life is not None:
            index = torch.topk(store.use / store.life, k=max(0, min(max_size, store.size)), dim=-1).indices  # [B, K]
        else:
            b, m = store.key.shape[0], store.size
            index = torch.arange(max(0, m - max_size), m, device=store.key.device).expand(b, -1)  # [B, K]
        store.select(index)

    def _consolidate(self, group: _Group) -> None:
        """Move the working memory's candidates into long-term memory as prototypes (module docstring)."""
        assert self.hw is not None
        work = group.work
        keep = (self.config.min_mid_term_frames - 1) * self.hw
        n = work.non_perm - keep  # candidates: non-permanent elements [0, n)
        p = work.perm
        key = work.key[..., p : p + n]  # [B, CK, n]
        shrink = work.shrinkage[..., p : p + n]  # [B, 1, n]
        values = work.values[..., p : p + n]  # [B, N_g, CV, n]
        assert work.selection is not None and work.use is not None and work.life is not None
        usage = (work.use / work.life)[:, :n]  # [B, n]
        index = torch.topk(usage, k=min(self.config.num_prototypes, n), dim=-1, sorted=True).indices  # [B, P]
        proto_key = _take(key, index)  # [B, CK, P]
        proto_sel = _take(work.selection[..., :n], index)  # [B, CK, P]
        affinity = softmax_affinity(
            similarity(key, proto_key, mem_shrinkage=shrink, query_selection=proto_sel)
        )  # [B, n, P]
        b, n_g, cv = values.shape[:3]
        proto_values = (values.reshape(b, n_g * cv, n) @ affinity).view(b, n_g, cv, -1)  # [B, N_g, CV, P]
        proto_shrink = shrink @ affinity  # [B, 1, P]
        work.keep_tail(keep)
        group.long.append(proto_key, proto_shrink, proto_values, None, usage=self.count_long_usage)

    def read_group(self, g: int, feats: QueryFeatures) -> Tensor:
        """Pixel readout [B, N_g, CV, h, w] of group ``g`` for one query frame (counts usage with long-term
        memory)."""
        group = self.groups[g]
        work, long = group.work, group.long
        h, w = feats.key.shape[-2:]
        qk = feats.key.flatten(start_dim=2)  # [B, CK, Q]
        qe = None if feats.selection is None else feats.selection.flatten(start_dim=2)  # [B, CK, Q]
        n_long = long.size
        mem_key = work.key if n_long == 0 else torch.cat([long.key, work.key], dim=-1)  # [B, CK, L + W]
        mem_shrink = work.shrinkage if n_long == 0 else torch.cat([long.shrinkage, work.shrinkage], dim=-1)
        sim = similarity(mem_key, qk, mem_shrinkage=mem_shrink, query_selection=qe)  # [B, L + W, Q]
        affinity = topk_softmax(sim, self.top_k, inplace=True) if self.top_k is not None else sim.softmax(dim=1)
        if self.long_term:
            usage = affinity.sum(dim=2)  # [B, L + W]
            work.update_usage(usage[:, n_long + work.perm :])
            long.update_usage(usage[:, :n_long])
        b, n, cv, m = work.values.shape
        out = work.values.reshape(b, n * cv, m) @ affinity[:, n_long:]  # [B, N_g*CV, Q]
        if n_long:
            out = out + long.values.reshape(b, n * cv, n_long) @ affinity[:, :n_long]
        return out.view(b, n, cv, h, w)

    def read(self, model: Any, feats: QueryFeatures, groups: list[list[int]]) -> Tensor:
        """Pixel readout [B, N, CV, h, w] of every object (channel order), before Cutie's fusion and object read."""
        if not self.groups:
            raise RuntimeError("the memory is empty: give a mask before reading")
        readouts = [self.read_group(g, feats).transpose(0, 1) for g in range(len(groups))]  # [N_g, B, CV, h, w]
        return scatter_groups(readouts, groups).transpose(0, 1)

    def object_memory(self, g: int) -> Tensor:
        """The object memory of group ``g``, [B, N_g, 1, Q, C+1] (one summed entry per object)."""
        objects = self.groups[g].objects
        assert objects is not None
        return objects.unsqueeze(2)
