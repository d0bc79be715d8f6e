"""The per-frame recurrence of streaming inference: what a video carries from frame to frame besides the memory,
and the model calls that segment a frame and memorise it.

:class:`InferenceCore` owns the frame geometry, the object bookkeeping, the memory-frame schedule and the merging of
given masks; it delegates the rest to the recurrence of the model's family (``Family.recurrence``; the default is
:class:`MatchingRecurrence`). A family whose frames go through more stages (e.g. an object transformer between the
memory read and the decoder) supplies its own class with the same methods.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from corrvos.inference.config import InferenceConfig
from corrvos.models.base import zero_hidden
from corrvos.types import QueryFeatures

__all__ = ["MatchingRecurrence"]


class MatchingRecurrence:
    """STCN's and XMem's recurrence: the memory readout feeds the decoder directly; models with a hidden
    ("sensory") state (``hidden_dim > 0``) update it in the decoder on frames that are not deep-update frames and in
    the value encoder on deep-update memory frames (XMem's ``deep_update_every``: -1 = every memory frame, k =
    every k frames).

    Args:
        model: the network (the ``VOSModel`` stages).
        config: the inference options.
        memory: the video's memory (``MemoryStore``).
    """

    pads_before_normalising = False  # frames are normalised, then zero-padded (STCN's and XMem's convention)
    supports_flip_aug = False  # whether frames may come as a batch of two (the frame and its mirror image)

    def __init__(self, model: nn.Module, config: InferenceConfig, memory: Any) -> None:
        self.model, self.config, self.memory = model, config, memory
        self.hidden: Tensor | None = None  # [1, N, CH, h, w] in channel order (models with a hidden state)
        self.last_deep_update = -config.deep_update_every

    @property
    def every_frame_counts(self) -> bool:
        """Every frame changes the state (a hidden state, or reads that count usage): none may be skipped."""
        return self.model.hidden_dim > 0 or self.memory.reads_change_state

    def plan(self, t: int, *, last_memory_frame: int | None, is_memory_frame: bool, end: bool) -> tuple[bool, bool]:
        """(deep_update, decoder_update) of frame ``t``."""
        sync = self.config.deep_update_every < 0
        deep = (is_memory_frame if sync else t - self.last_deep_update >= self.config.deep_update_every) and not end
        return deep, (not sync or not deep) and not end

    def add_objects(self, new_ids: list[int], ids: list[int], like: Tensor) -> None:
        """Objects ``new_ids`` joined (``ids``: every known id, ascending): give them a zero hidden state at their
        channels. ``like``: a [B, .., h, w] tensor of the frame's batch and stride-16 size."""
        if self.model.hidden_dim <= 0:
            return
        fresh = zero_hidden(self.model, like.shape[0], len(ids), *like.shape[-2:], like=like)  # [B, N, CH, h, w]
        if self.hidden is not None:
            old = [c for c, obj_id in enumerate(ids) if obj_id not in new_ids]
            fresh[:, old] = self.hidden.to(fresh.dtype)
        self.hidden = fresh

    def segment(self, feats: QueryFeatures, groups: list[list[int]], *, update_hidden: bool) -> Tensor:
        """Read the memory and decode the frame: [N+1, Hp, Wp] float32 aggregated probabilities."""
        readout = self.memory.read(self.model, feats, groups)  # [1, N, CV, h, w]
        seg = self.model.segment(readout, feats, self.hidden, update_hidden=update_hidden)  # prob [1, N+1, Hp, Wp]
        if update_hidden and seg.hidden is not None:
            self.hidden = seg.hidden
        return seg.prob[0].float()

    def memorize(
        self,
        x: Tensor,
        feats: QueryFeatures,
        prob: Tensor,
        groups: list[list[int]],
        *,
        t: int,
        temporary: bool,
        deep_update: bool,
    ) -> None:
        """Encode frame ``t``'s values from its probabilities [N+1, Hp, Wp] and insert it into the memory."""
        value, hidden = self.model.encode_value(x, feats.f16, prob[1:][None], self.hidden, deep_update=deep_update)
        self.memory.add(feats, value, groups, temporary=temporary)  # value [1, N, CV, h, w]
        if deep_update and hidden is not None:
            self.hidden = hidden
            self.last_deep_update = t

    def observe(self, prob: Tensor) -> None:
        """The frame's final probabilities [N+1, Hp, Wp] (after given masks were merged); unused here."""
