"""Cutie's clip unroller: the one ``nn.Module`` whose ``forward(batch)`` runs a training clip through Cutie.

Re-expresses the unroll of hkchengrex/Cutie:cutie/model/train_wrapper.py (``CutieTrainWrapper.forward``) in the
interface of :class:`corrvos.training.unroll.ClipUnroller` (``forward(batch) -> ClipOutputs``, ``clip_generator``,
``last_draws``), so that the task, the trainer and DDP drive it unchanged:

- the pixel encoder runs on all T frames at once; the key projection (key, shrinkage, selection) in float32 outside
  autocast, as the official ``transform_key``;
- only the first ``max(num_objects)`` object slots of the batch are unrolled (the official truncation); the logits
  of the remaining slots are the constant that a zero probability aggregates to (what the untruncated network
  would give), so the outputs keep N+1 channels;
- frame 0's value, sensory deep update and object summaries come from the ground-truth masks, with the sensory
  memory starting at zeros; frame 0's ground truth is the "last mask" of frame 1's pixel fusion;
- frame t >= 1 reads a pixel memory (full softmax in float32) of every earlier frame while t <= ``num_ref_frames``,
  else of ``num_ref_frames`` distinct earlier frames per clip drawn as ``randperm(t)[:k]`` (frame 0 is not forced,
  unlike XMem); the readout is fused with the sensory memory and the last masks (``fuse_pixel``) and refined by
  the object transformer over the object summaries of *every* earlier frame (``read_objects``);
- the auxiliary outputs of frame t: the sensory head's logits from the sensory memory *before* the frame's decoder
  update, and the object transformer's per-level mask logits, each sigmoid x selector, soft-aggregated (stride 16);
- the decoder updates the sensory memory (not on the last frame, whose update nothing reads); unless it is the
  last frame, the frame's soft probabilities (with gradient) are encoded as its value and summaries, with a deep
  update of the sensory memory with probability ``deep_update_prob``.

Randomness: the memory frames and the deep-update draws come from ``clip_generator`` in the official order (per
frame: one ``randperm`` per clip, then the deep-update draw); the task reseeds it every step. ``last_draws`` keeps
them so that tests can replay them into the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from corrvos.errors import ConfigError
from corrvos.models.common import aggregate_logits
from corrvos.types import ClipBatch, ClipDraws, ClipOutputs, QueryFeatures, draw_deep_update

__all__ = ["PAD_LOGIT", "CutieUnrollPolicy", "CutieUnroller", "draw_reference_frames"]

PAD_LOGIT = math.log(1e-7 / (1 - 1e-7))
"""The aggregated logit of an object slot whose probability is 0 (the aggregation clamps it to 1e-7)."""


@dataclass(frozen=True)
class CutieUnrollPolicy:
    """Memory size and deep-update probability of Cutie's training unroll.

    Attributes:
        num_ref_frames: memory frames once t > num_ref_frames (official: 2 in the static stage, 3 in main training).
        deep_update_prob: probability that encoding a frame's value also deep-updates the sensory memory (0.2).
    """

    num_ref_frames: int = 3
    deep_update_prob: float = 0.2

    def __post_init__(self) -> None:
        if self.num_ref_frames < 1:
            raise ValueError(f"num_ref_frames must be >= 1, got {self.num_ref_frames}")
        if not 0.0 <= self.deep_update_prob <= 1.0:
            raise ValueError(f"deep_update_prob must lie in [0, 1], got {self.deep_update_prob}")


def draw_reference_frames(t: int, batch: int, k: int, generator: torch.Generator | None) -> Tensor:
    """Memory frames of frame ``t`` for each clip: the first ``k`` of one ``randperm(t)`` per clip (clips in order),
    as the official trainer. Returns [B, k] int64 (CPU)."""
    return torch.stack([torch.randperm(t, generator=generator)[:k] for _ in range(batch)])  # [B, k]


class CutieUnroller(nn.Module):
    """Unroll a :class:`~corrvos.families.cutie.network.Cutie` over training clips (module docstring).

    Args:
        model: the Cutie network.
        policy: memory size and deep-update probability (default: the main-training values 3 / 0.2); any object
            with ``num_ref_frames`` (an int) and ``deep_update_prob``, e.g. the trainer's ``UnrollPolicy``.
        second_view: not supported (the release's correspondence losses are not defined on Cutie).
    """

    def __init__(self, model: nn.Module, *, policy: object | None = None, second_view: bool = False):
        super().__init__()
        if second_view:
            raise ConfigError(
                "loss.mode 'official' needs the second view and key_proj2 head of the release, which this model "
                "family does not have; use loss.mode none or paper"
            )
        if policy is not None and not isinstance(policy, CutieUnrollPolicy):
            if getattr(policy, "num_ref_frames", None) is None:
                raise ValueError("Cutie's training unroll needs num_ref_frames (data.num_ref_frames), got None")
            policy = CutieUnrollPolicy(policy.num_ref_frames, policy.deep_update_prob)
        self.model = model
        self.policy = policy if policy is not None else CutieUnrollPolicy()
        self.second_view = False
        self.view_generator: torch.Generator | None = None
        """Unused (no second view); set by the task like the other unrollers'."""
        self.clip_generator: torch.Generator | None = None
        """CPU RNG of the memory frames and the deep-update draws; the task reseeds it every step."""
        self.last_draws = ClipDraws()

    def _features(self, frames: Tensor) -> tuple[QueryFeatures, Tensor, Tensor, Tensor]:
        """Pixel features of [B*T, 3, H, W] frames, and the key, shrinkage and selection in float32."""
        model = self.model
        f16, f8, f4 = model.pixel_encoder(frames)
        pix_feat = model.pix_feat_proj(f16)  # [B*T, C, h, w]
        with torch.autocast(device_type=frames.device.type, enabled=False):
            key, shrinkage, selection = model.key_proj(f16.float(), need_s=True, need_e=True)
        feats = QueryFeatures(key=key, f16=f16, f8=f8, f4=f4, pix_feat=pix_feat)
        return feats, key, shrinkage, selection

    def forward(self, batch: ClipBatch) -> ClipOutputs:
        """Segment frames 1..T-1 of every clip from the ground truth of frame 0.

        Args:
            batch: frames [B, T, 3, H, W], masks [B, T, N, H, W], selector [B, N] (real objects first).

        Returns:
            ClipOutputs with logits [B, T-1, N+1, H, W], aux_logits [B, T-1, 1+L, N+1, h, w] (the sensory head,
            then the object transformer's L levels), keys / selection [B, T, CK, h, w], shrinkage [B, T, 1, h, w]
            and res4 (the pixel encoder's stride-16 features) [B, T, C16, h, w].
        """
        frames = batch.frames
        b, t = frames.shape[:2]
        n_all = batch.masks.shape[2]
        n = max(1, int(batch.selector.sum(dim=1).max().item())) if n_all > 0 else 0
        masks_gt = batch.masks[:, :, :n].float()  # [B, T, n, H, W]
        sel = batch.selector[:, :n].float()  # [B, n]
        selector = None if self.model.single_object else sel
        obj_selector = sel[:, :, None, None]  # [B, n, 1, 1]
        policy, model, draws = self.policy, self.model, ClipDraws()

        feats, key, shrinkage, selection = self._features(frames.flatten(0, 1))

        def per_frame(x: Tensor) -> Tensor:
            return x.view(b, t, *x.shape[1:])  # [B*T, ...] -> [B, T, ...]

        keys, shrinks, selects = per_frame(key), per_frame(shrinkage), per_frame(selection)
        f16, f8, f4, pix = (per_frame(x) for x in (feats.f16, feats.f8, feats.f4, feats.pix_feat))
        h, w = keys.shape[-2:]
        sensory = torch.zeros(b, n, model.hidden_dim, h, w, device=frames.device)  # [B, n, CS, h, w]
        value, sensory, summary = model.encode_value(frames[:, 0], pix[:, 0], masks_gt[:, 0], sensory)
        values, summaries = [value], [summary]  # [B, n, CV, h, w], [B, n, Q, C+1] per encoded frame
        last_mask = masks_gt[:, 0]  # [B, n, H, W]
        logits, aux = [], []
        rows = torch.arange(b, device=frames.device)[:, None]  # [B, 1]
        for ti in range(1, t):
            if ti <= policy.num_ref_frames:
                mem_key = keys[:, :ti].transpose(1, 2)  # [B, CK, ti, h, w]
                mem_shrink = shrinks[:, :ti].transpose(1, 2)  # [B, 1, ti, h, w]
                mem_value = torch.stack(values, dim=3)  # [B, n, CV, ti, h, w]
            else:
                idx = draw_reference_frames(ti, b, policy.num_ref_frames, self.clip_generator)  # [B, k]
                draws.memory_frames[ti] = idx
                idx = idx.to(frames.device)
                mem_key = keys[rows, idx].transpose(1, 2)  # [B, k, CK, h, w] -> [B, CK, k, h, w]
                mem_shrink = shrinks[rows, idx].transpose(1, 2)  # [B, 1, k, h, w]
                mem_value = torch.stack(values, dim=1)[rows, idx].permute(0, 2, 3, 1, 4, 5)  # [B, n, CV, k, h, w]
            with torch.autocast(device_type=frames.device.type, enabled=False):
                readout = model.read_memory(
                    mem_key.float(),
                    mem_value.float(),
                    keys[:, ti].float(),
                    mem_shrinkage=mem_shrink.float(),
                    query_selection=selects[:, ti].float(),
                )  # [B, n, CV, h, w]
            fused = model.fuse_pixel(pix[:, ti], readout, sensory, last_mask)  # [B, n, C, h, w]
            obj_memory = torch.stack(summaries, dim=2)  # [B, n, ti, Q, C+1]
            readout16, q_logits = model.read_objects(fused, obj_memory, selector=obj_selector)
            heads = [model.sensory_logits(pix[:, ti], sensory), *q_logits]  # [B, n, h, w] each
            prob = torch.stack(heads, dim=1).float().sigmoid() * sel[:, None, :, None, None]  # [B, 1+L, n, h, w]
            aux.append(aggregate_logits(prob.flatten(0, 1)).view(b, len(heads), n + 1, h, w))  # [B, 1+L, n+1, h, w]
            query = QueryFeatures(key=keys[:, ti], f16=f16[:, ti], f8=f8[:, ti], f4=f4[:, ti])
            last = ti == t - 1
            seg = model.segment(readout16, query, sensory, selector=selector, update_hidden=not last)
            logits.append(seg.logits)  # [B, n+1, H, W]
            if not last:
                sensory = seg.hidden
                last_mask = seg.prob[:, 1:]  # [B, n, H, W]
                draws.deep_updates[ti] = draw_deep_update(self.policy.deep_update_prob, self.clip_generator)
                value, sensory, summary = model.encode_value(
                    frames[:, ti], pix[:, ti], last_mask, sensory, deep_update=draws.deep_updates[ti]
                )
                values.append(value)
                summaries.append(summary)
        self.last_draws = draws
        return ClipOutputs(
            logits=_pad_objects(torch.stack(logits, dim=1), n_all, dim=2),  # [B, T-1, N+1, H, W]
            keys=keys,
            res4=f16,
            shrinkage=shrinks,
            selection=selects,
            aux_logits=_pad_objects(torch.stack(aux, dim=1), n_all, dim=3),  # [B, T-1, 1+L, N+1, h, w]
        )


def _pad_objects(x: Tensor, n_all: int, *, dim: int) -> Tensor:
    """Aggregated logits with n+1 channels along ``dim`` -> N+1 (``n_all``) channels, padded with ``PAD_LOGIT``."""
    missing = n_all + 1 - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_full(shape, PAD_LOGIT)], dim=dim)
