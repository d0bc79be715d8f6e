"""Cutie's per-frame recurrence: what :class:`corrvos.inference.InferenceCore` delegates to the family for a frame.

Re-expresses the frame loop of hkchengrex/Cutie:cutie/inference/inference_core.py (``_segment``, ``_add_memory``)
and the read of its memory manager, written independently:

- segmenting a frame: for each object group, the pixel readout of its memory, fused with the sensory memory and the
  last frame's masks (``fuse_pixel``), refined by the object transformer from the group's object memory
  (``read_objects``; its attention masks come from the group's own objects, as Cutie reads bucket by bucket); then
  the mask decoder on every object at once (``segment``), which updates the sensory memory on the frames
  ``stagger_updates`` spreads over each ``mem_every`` interval (every frame with the defaults 5 / 5);
- a memory frame: the mask encoder on the frame's final probabilities gives the values, a deep update of the sensory
  memory and the object summaries, all added to the memory;
- new objects start with a zero sensory memory;
- ``chunk_size`` (>= 1) processes that many objects of a group at a time in the fusion and the object transformer
  (whose "others" channel then comes from the chunk's objects, as in the official memory manager), and in the mask
  encoder and decoder (where nothing changes but the peak memory);
- ``flip_aug``: the frame and its mirror image are a batch of two (``InferenceCore`` stacks them) with their own
  memories and sensory memories; the output is the mean of the frame's probabilities and the mirrored ones of the
  mirror image, and both copies continue from that mean (mirrored for the second).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from corrvos.families.cutie.memory import CutieMemory
from corrvos.inference.config import InferenceConfig
from corrvos.inference.objects import scatter_groups
from corrvos.inference.recurrence import MatchingRecurrence
from corrvos.types import QueryFeatures

__all__ = ["CutieRecurrence", "stagger_offsets"]


def stagger_offsets(mem_every: int, stagger_updates: int) -> set[int]:
    """Frame offsets after the last memory frame on which the decoder updates the sensory memory (Cutie's rule)."""
    if stagger_updates >= mem_every:
        return set(range(1, mem_every + 1))
    return {int(v) for v in np.round(np.linspace(1, mem_every, stagger_updates)).astype(int)}


class CutieRecurrence(MatchingRecurrence):
    """Cutie's recurrence (module docstring); built by ``InferenceCore`` as ``cls(model, config, memory)``. New
    objects get a zero sensory memory (``hidden``, [B, N, CS, h, w] in channel order) as in the matching models."""

    def __init__(self, model: nn.Module, config: InferenceConfig, memory: CutieMemory) -> None:
        super().__init__(model, config, memory)
        self.last_prob: Tensor | None = None  # [B, N, Hp, Wp] the last frame's object probabilities
        self.offsets = stagger_offsets(config.mem_every, config.stagger_updates)

    every_frame_counts = True  # the sensory memory changes on (almost) every frame
    pads_before_normalising = True  # Cutie pads the [0, 1] frame, then normalises: padding = -mean / std

    def plan(self, t: int, *, last_memory_frame: int | None, is_memory_frame: bool, end: bool) -> tuple[bool, bool]:
        """(deep_update, decoder_update): a deep update on every memory frame; decoder updates by the stagger rule."""
        since = t - (last_memory_frame if last_memory_frame is not None else 0)
        return is_memory_frame and not end, since in self.offsets and not end

    supports_flip_aug = True

    def _chunks(self, channels: list[int]) -> list[list[int]]:
        """``channels`` in pieces of ``chunk_size`` (one piece when it is < 1)."""
        size = self.config.chunk_size if self.config.chunk_size >= 1 else max(1, len(channels))
        return [channels[i : i + size] for i in range(0, len(channels), size)]

    def _batched(self, prob: Tensor) -> Tensor:
        """Object probabilities [N+1, Hp, Wp] -> [B, N, Hp, Wp]: with ``flip_aug`` the mirror image's copy too."""
        masks = prob[1:][None]  # [1, N, Hp, Wp]
        return torch.cat([masks, masks.flip(-1)]) if self.config.flip_aug else masks

    def segment(self, feats: QueryFeatures, groups: list[list[int]], *, update_hidden: bool) -> Tensor:
        """Read the memory, refine per group, decode every object: [N+1, Hp, Wp] float32 probabilities."""
        assert self.hidden is not None and self.last_prob is not None and feats.pix_feat is not None
        refined, pieces = [], []
        for g, channels in enumerate(groups):
            readout = self.memory.read_group(g, feats)  # [B, N_g, CV, h, w]
            obj_memory = self.memory.object_memory(g)  # [B, N_g, 1, Q, C+1]
            for piece in self._chunks(list(range(len(channels)))):
                chans = [channels[i] for i in piece]
                fused = self.model.fuse_pixel(
                    feats.pix_feat, readout[:, piece], self.hidden[:, chans], self.last_prob[:, chans]
                )  # [B, n_c, C, h, w]
                pixel, _ = self.model.read_objects(fused, obj_memory[:, piece])
                refined.append(pixel.transpose(0, 1))  # [n_c, B, C, h, w]
                pieces.append(chans)
        readout16 = scatter_groups(refined, pieces).transpose(0, 1)  # [B, N, C, h, w]
        seg = self.model.segment(
            readout16, feats, self.hidden, update_hidden=update_hidden, chunk_size=self.config.chunk_size
        )
        if update_hidden and seg.hidden is not None:
            self.hidden = seg.hidden
        prob = seg.prob.float()  # [B, N+1, Hp, Wp]
        return (prob[0] + prob[1].flip(-1)) / 2 if self.config.flip_aug else prob[0]

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
        """Encode frame ``t`` from its final probabilities [N+1, Hp, Wp]; add values and summaries to the memory."""
        assert self.hidden is not None and feats.pix_feat is not None
        value, hidden, summaries = self.model.encode_value(
            x,
            feats.pix_feat,
            self._batched(prob),
            self.hidden,
            deep_update=deep_update,
            chunk_size=self.config.chunk_size,
        )
        self.memory.add(feats, value, groups, temporary=temporary, summaries=summaries)
        if deep_update:
            self.hidden = hidden

    def observe(self, prob: Tensor) -> None:
        """Keep the frame's final object probabilities for the next frame's fusion."""
        self.last_prob = self._batched(prob)
