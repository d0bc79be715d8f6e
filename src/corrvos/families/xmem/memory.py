"""XMem's memory for streaming inference: working memory, long-term memory with prototype consolidation, and eviction.

Re-expresses the procedure of hkchengrex/XMem:inference/memory_manager.py and inference/kv_memory_store.py (the
Atkinson-Shiffrin memory of the XMem paper, ECCV 2022), written independently with the same arithmetic and the same
index bookkeeping, so that official weights give the official numbers (the sensory memory, XMem's third store, is
the hidden state that :class:`corrvos.inference.InferenceCore` threads through the model).

Layout of a :class:`KeyValueStore` (working and long-term memory alike):
- keys [1, CK, M], shrinkage [1, 1, M] and (working memory only) selection [1, CK, M] hold every element once;
- values are kept per object group as [N_g, CV, M_g]; a group introduced later covers only the *last* M_g keys
  (the official convention, kept even where consolidation makes it approximate, so that numbers match);
- usage statistics ``use_count`` / ``life_count`` [1, 1, M]: every read adds the affinity mass each element
  received (summed over the query positions) to its use count and 1 to its life; usage = use / life.

Working memory -> long-term memory (``max_mid_term_frames`` = T_max, ``min_mid_term_frames`` = T_min,
``num_prototypes`` = P, ``max_long_term_elements`` = LT_max; HW = positions per frame):
1. when the working memory holds T_max * HW elements after an insertion, the candidates are all of them except the
   first frame and the newest T_min - 1 frames;
2. the P candidates of highest usage become prototype keys; each group's prototype values (and the shrinkage) are
   the softmax-affinity readout of the candidates with the prototypes as queries ("potentiation"); a group only gets
   the prototypes that fall inside its own span;
3. the candidates leave the working memory and the prototypes join the long-term memory; before that, if the
   long-term memory holds LT_max - P elements or more, its least-used elements are dropped until LT_max - P remain
   (every element whose usage ties with the last one dropped goes too, as in the official code).

Usage of long-term elements is counted only when ``count_long_term_usage`` is set; ``None`` applies eval.py's rule
(count when length / (T_max - T_min) * P >= LT_max, i.e. when eviction can happen) if the video length is known,
and counts otherwise. Without usage counts, eviction drops the oldest elements (the official code cannot evict
then). Where the official code cannot run we extend it: fewer than P candidates give as many prototypes as there are
candidates, eviction with several object groups maps the surviving keys to each group's span, and T_min = 1 keeps
only the first frame (the official slicing would select no candidates).
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrvos.inference.config import InferenceConfig
from corrvos.inference.objects import scatter_groups
from corrvos.models.memory import similarity, softmax_affinity, topk_softmax
from corrvos.types import QueryFeatures

__all__ = ["KeyValueStore", "XMemMemory", "long_term_usage_rule"]


def long_term_usage_rule(config: InferenceConfig, video_length: int | None) -> bool:
    """Whether long-term usage is counted (eval.py's rule; ``True`` when the length is unknown)."""
    if not config.enable_long_term:
        return False
    if config.count_long_term_usage is not None:
        return config.count_long_term_usage
    if video_length is None:
        return True
    span = config.max_mid_term_frames - config.min_mid_term_frames
    return video_length / span * config.num_prototypes >= config.max_long_term_elements


def _softmax(sim: Tensor, top_k: int | None) -> Tensor:
    """Column softmax over memory [1, M, Q]: top-k (inference) or full; written in place when that is safe."""
    if top_k is None:
        return softmax_affinity(sim)
    return topk_softmax(sim, top_k)


_CHUNK = 1024  # elements moved at a time when a store is compacted


class _Buffer:
    """A [..., M] tensor kept in a buffer of ``capacity`` elements along the last dimension: appends write in place.

    With a capacity (XMem's stores are bounded), the memory is allocated once and never copied to grow; without one
    the buffer doubles when full. ``view()`` is the live [..., M] prefix (a view: in-place updates reach the buffer).
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.buf: Tensor | None = None
        self.n = 0

    def view(self) -> Tensor | None:
        return None if self.buf is None else self.buf[..., : self.n]

    def append(self, x: Tensor) -> None:
        m = x.shape[-1]
        if self.buf is None or self.n + m > self.buf.shape[-1]:
            old = 0 if self.buf is None else self.buf.shape[-1]
            cap = max(self.capacity or 0, 2 * old, self.n + m)
            grown = x.new_empty(*x.shape[:-1], cap)
            if self.n:
                grown[..., : self.n] = self.buf[..., : self.n]
            self.buf = grown
        self.buf[..., self.n : self.n + m] = x
        self.n += m

    def keep(self, index: Tensor) -> None:
        """Keep the elements at ``index`` (int64, increasing) in order, compacted in place in chunks: the largest
        temporary is one chunk, not a copy of the whole store (eviction would otherwise double the peak memory)."""
        assert self.buf is not None
        k = index.numel()
        for a in range(0, k, _CHUNK):  # safe in place: index[i] >= i, so later sources are never overwritten
            part = index[a : a + _CHUNK]
            self.buf[..., a : a + part.numel()] = self.buf[..., part]
        self.n = k

    def replace(self, x: Tensor) -> None:
        """Make ``x`` (a new tensor, e.g. from indexing the view) the content, written into the buffer's prefix."""
        self.buf[..., : x.shape[-1]] = x
        self.n = x.shape[-1]


class KeyValueStore:
    """Keys shared by all object groups, values per group over a suffix of the keys, optional usage counts.

    Args:
        count_usage: keep use / life counts.
        capacity: elements to allocate up front (XMem's stores are bounded: T_max * HW for the working memory,
            LT_max for the long-term memory), so that the store's memory does not grow; ``None`` grows on demand.
    """

    def __init__(self, *, count_usage: bool, capacity: int | None = None) -> None:
        self.count_usage = count_usage
        self.capacity = capacity
        names = ("key", "shrinkage", "selection", "use_count", "life_count")
        self._shared = {name: _Buffer(capacity) for name in names}  # [1, CK | 1, M] each
        self._values: list[_Buffer] = []  # per group [N_g, CV, M_g]

    @staticmethod
    def _field(name: str, doc: str) -> property:
        """A live view of one shared tensor; assigning a [.., M] tensor of the store's size overwrites it."""

        def set_(self: KeyValueStore, x: Tensor) -> None:
            if x.shape[-1] != self.size:
                raise ValueError(f"{name} must have {self.size} elements, got {x.shape[-1]}")
            self._shared[name].replace(x)

        return property(lambda self: self._shared[name].view(), set_, doc=doc)

    key = _field("key", "[1, CK, M] keys, or None")
    shrinkage = _field("shrinkage", "[1, 1, M] shrinkage, or None")
    selection = _field("selection", "[1, CK, M] selection, or None")
    use_count = _field("use_count", "[1, 1, M] summed affinity each element received, or None")
    life_count = _field("life_count", "[1, 1, M] reads each element has been in memory for, or None")

    def reserve(self, capacity: int) -> None:
        """Allocate ``capacity`` elements at the next growth of every tensor (the store's bound)."""
        self.capacity = capacity
        for buffer in [*self._shared.values(), *self._values]:
            buffer.capacity = capacity

    @property
    def values(self) -> list[Tensor]:
        """Per group [N_g, CV, M_g]: the group's values for the last M_g keys."""
        return [b.view() for b in self._values]

    @property
    def size(self) -> int:
        return self._shared["key"].n

    @property
    def num_groups(self) -> int:
        return len(self._values)

    def value_size(self, group: int) -> int:
        return self._values[group].n

    def add(self, key: Tensor, shrinkage: Tensor | None, selection: Tensor | None, values: list[Tensor | None]) -> None:
        """Append M' elements: key [1, CK, M'], shrinkage [1, 1, M'], selection [1, CK, M'] or None, and one value
        [N_g, CV, M'] (or None: this group gets nothing) per group; entries past ``num_groups`` start new groups."""
        m = key.shape[-1]
        first = self.size == 0 and self._shared["key"].buf is None
        new = {"key": key, "shrinkage": shrinkage, "selection": selection}
        if self.count_usage:
            zeros = torch.zeros(1, 1, m, device=key.device, dtype=torch.float32)
            new.update(use_count=zeros, life_count=zeros + 1e-7)
        for name, x in new.items():
            if x is None:
                continue
            if name == "selection" and not first and self.selection is None:
                continue  # a store that started without selection (long-term memory) keeps none, as official
            self._shared[name].append(x)
        for g, value in enumerate(values):
            if value is None:
                continue
            if g >= self.num_groups:
                self._values.append(_Buffer(self.capacity))
            self._values[g].append(value)  # [N_g, CV, M_g + M']

    def update_usage(self, usage: Tensor) -> None:
        """Add ``usage`` [M] (affinity mass per element) to the use counts and 1 to every life count."""
        if not self.count_usage:
            return
        use, life = self.use_count, self.life_count
        assert use is not None and life is not None
        use.add_(usage.view_as(use))  # in place: the views write through to the buffers
        life.add_(1)

    def usage(self) -> Tensor:
        """[1, 1, M] use / life."""
        if self.use_count is None or self.life_count is None:
            raise RuntimeError("usage is not counted in this store")
        return self.use_count / self.life_count

    def _keep(self, index: Tensor) -> None:
        """Keep the elements ``index`` (int64, increasing) of the shared tensors."""
        for buffer in self._shared.values():
            if buffer.buf is not None:
                buffer.keep(index)

    def remove_range(self, start: int, keep_tail: int, *, min_value_size: int) -> None:
        """Keep the first ``start`` and the last ``keep_tail`` elements of the keys, and of every group value holding
        at least ``min_value_size`` (each value counts its tail from its own end, as the official code does)."""
        device = self._shared["key"].buf.device

        def kept(m: int) -> Tensor:
            return torch.cat([torch.arange(0, start), torch.arange(m - keep_tail, m)]).to(device)

        self._keep(kept(self.size))
        for buffer in self._values:
            if buffer.n >= min_value_size:
                buffer.keep(kept(buffer.n))

    def evict(self, max_size: int) -> None:
        """Drop the least-used elements (ties with the last dropped one go too) until at most ``max_size`` remain;
        without usage counts, the oldest."""
        m = self.size
        if m <= max_size:
            return
        if self.count_usage:
            usage = self.usage().flatten()  # [M]
            lowest = torch.topk(usage, k=m - max_size, largest=False, sorted=True).values
            survived = usage > lowest[-1]  # [M] bool
        else:
            survived = torch.arange(m, device=self.key.device) >= m - max_size
        self._keep(survived.nonzero().flatten())
        for buffer in self._values:
            buffer.keep(survived[m - buffer.n :].nonzero().flatten())  # the group's span is the last M_g keys


class XMemMemory:
    """Working and long-term memory of one video (see the module docstring).

    Args:
        config: the inference options (``top_k``, long-term memory settings).
        video_length: frames in the video when known (for eval.py's long-term usage rule).
    """

    def __init__(self, config: InferenceConfig, *, video_length: int | None = None) -> None:
        if config.include_last:
            raise ValueError("include_last (a temporary last-frame memory) is an STCN option; XMem has no such entry")
        self.config = config
        self.top_k = config.top_k
        self.long_term = config.enable_long_term
        self.work = KeyValueStore(count_usage=self.long_term)
        self.long = KeyValueStore(count_usage=long_term_usage_rule(config, video_length))
        self.hw: int | None = None
        self.groups: list[list[int]] = []  # channels of each group, in group order

    @property
    def reads_change_state(self) -> bool:
        """Reading counts usage, so a frame cannot be skipped without changing later results."""
        return self.long_term

    @property
    def num_elements(self) -> int:
        """Memory positions held (working + long-term)."""
        return self.work.size + self.long.size

    @property
    def num_frames(self) -> int:
        """Working-memory frames held."""
        return 0 if self.hw is None else self.work.size // self.hw

    # ----------------------------------------------------------------------------------------------- read
    def read(self, model: object, feats: QueryFeatures, groups: list[list[int]]) -> Tensor:
        """Readout [1, N, CV, h, w] of every object (channel order) for one query frame."""
        if self.work.key is None:
            raise RuntimeError("the memory is empty: give a mask before reading")
        h, w = feats.key.shape[-2:]
        qk = feats.key.flatten(start_dim=2)  # [1, CK, Q]
        qe = None if feats.selection is None else feats.selection.flatten(start_dim=2)  # [1, CK, Q]
        work, long = self.work, self.long
        if self.long_term and long.size > 0:
            # one similarity over [long-term | working] keys (the keys are small), but the values are read from each
            # store in place: no per-frame copy of the whole memory's values
            n_long = long.size
            sim = similarity(
                torch.cat([long.key, work.key], dim=-1),  # [1, CK, L + W]
                qk,
                mem_shrinkage=torch.cat([long.shrinkage, work.shrinkage], dim=-1),
                query_selection=qe,
            )  # [1, L + W, Q]
            readouts, usage = [], None
            for g in range(work.num_groups):
                work_g = sim[:, sim.shape[1] - work.value_size(g) :]  # [1, W_g, Q]
                if g < long.num_groups:
                    n_g = long.value_size(g)
                    spans = sim if n_g == n_long and work_g.shape[1] == work.size else None  # group 0: everything
                    if spans is None:
                        spans = torch.cat([sim[:, n_long - n_g : n_long], work_g], dim=1)  # [1, L_g + W_g, Q]
                    affinity = _softmax(spans, self.top_k)
                    readouts.append(long.values[g] @ affinity[:, :n_g] + work.values[g] @ affinity[:, n_g:])
                else:
                    affinity = _softmax(work_g, self.top_k)
                    readouts.append(work.values[g] @ affinity)  # [N_g, CV, Q]
                if g == 0:
                    usage = affinity.sum(dim=2)  # [1, L + W]: group 0 spans every element
            assert usage is not None
            work.update_usage(usage[:, n_long:].flatten())
            long.update_usage(usage[:, :n_long].flatten())
        else:
            sim = similarity(work.key, qk, mem_shrinkage=work.shrinkage, query_selection=qe)  # [1, W, Q]
            affinities = [_softmax(sim[:, -work.value_size(g) :], self.top_k) for g in range(work.num_groups)]
            if self.long_term:
                work.update_usage(affinities[0].sum(dim=2).flatten())
            readouts = [v @ a for v, a in zip(work.values, affinities, strict=True)]  # [N_g, CV, M_g] @ [1, M_g, Q]
        out = scatter_groups([r.to(qk.dtype) for r in readouts], groups)  # [N, CV, Q]
        return out.view(1, *out.shape[:2], h, w)  # [1, N, CV, h, w]

    # ------------------------------------------------------------------------------------------------ add
    def add(self, feats: QueryFeatures, value: Tensor, groups: list[list[int]], *, temporary: bool = False) -> None:
        """Insert one memory frame: keys, shrinkage (and selection with long-term memory) of ``feats``, values
        [1, N, CV, h, w] split by ``groups`` (channels per group; groups beyond the known ones start here)."""
        if temporary:
            raise ValueError("XMem's memory has no temporary entries")
        if feats.shrinkage is None:
            raise ValueError("XMem memory frames need the key's shrinkage (encode_key(need_shrinkage=True))")
        if self.hw is None:
            self.hw = feats.key.shape[-2] * feats.key.shape[-1]
            if self.long_term:  # both stores are bounded: allocate them once
                self.work.reserve(self.config.max_mid_term_frames * self.hw)
                self.long.reserve(self.config.max_long_term_elements)
        self.groups = [list(c) for c in groups]
        key = feats.key.flatten(start_dim=2)  # [1, CK, HW]
        shrinkage = feats.shrinkage.flatten(start_dim=2)  # [1, 1, HW]
        selection = None
        if self.long_term:
            if feats.selection is None:
                raise ValueError("XMem long-term memory needs the key's selection (encode_key(need_selection=True))")
            selection = feats.selection.flatten(start_dim=2)  # [1, CK, HW]
        flat = value[0].flatten(start_dim=2)  # [N, CV, HW]
        self.work.add(key, shrinkage, selection, [flat[c] for c in groups])
        cfg = self.config
        if self.long_term and self.work.size >= cfg.max_mid_term_frames * self.hw:
            if self.long.size >= cfg.max_long_term_elements - cfg.num_prototypes:
                self.long.evict(cfg.max_long_term_elements - cfg.num_prototypes)
            self._consolidate()

    def _consolidate(self) -> None:
        """Move the working-memory candidates into long-term memory as P prototypes (steps 1-2)."""
        assert self.hw is not None
        work, hw = self.work, self.hw
        keep_recent = self.config.min_mid_term_frames * hw
        total = work.size
        start, end = hw, total - keep_recent + hw  # candidates: [start, end)
        n_cand = end - start
        cand_values: list[Tensor | None] = []
        for v in work.values:
            size = v.shape[-1]
            if size == total or size > keep_recent + hw:
                cand_values.append(v[:, :, hw : size - keep_recent + hw])  # the group's own candidate span
            else:
                cand_values.append(None)  # too young to consolidate
        key = work.key[:, :, start:end]  # [1, CK, C]
        shrinkage = work.shrinkage[:, :, start:end]  # [1, 1, C]
        selection = None if work.selection is None else work.selection[:, :, start:end]  # [1, CK, C]
        usage = work.usage()[:, :, start:end]  # [1, 1, C]
        k = min(self.config.num_prototypes, n_cand)
        index = torch.topk(usage, k=k, dim=-1, sorted=True).indices.flatten()  # [P]
        proto_key = key[:, :, index]  # [1, CK, P]
        proto_sel = None if selection is None else selection[:, :, index]  # [1, CK, P]
        sim = similarity(key, proto_key, mem_shrinkage=shrinkage, query_selection=proto_sel)  # [1, C, P]
        proto_values: list[Tensor | None] = []
        affinity0 = None
        for g, v in enumerate(cand_values):
            if v is None:
                proto_values.append(None)
                continue
            valid = index >= n_cand - v.shape[-1]  # [P]: prototypes inside the group's span
            if not bool(valid.any()):
                proto_values.append(None)
                continue
            affinity = softmax_affinity(sim[:, -v.shape[-1] :, valid])  # [1, C_g, P_g]
            if g == 0:
                affinity0 = affinity
            proto_values.append(v @ affinity)  # [N_g, CV, P_g]
        assert affinity0 is not None, "the first object group always spans every candidate"
        proto_shrinkage = shrinkage @ affinity0  # [1, 1, P]
        work.remove_range(start, keep_recent - hw, min_value_size=keep_recent + hw)
        self.long.add(proto_key, proto_shrinkage, None, proto_values)
