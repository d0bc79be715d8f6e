"""Pieces every model shares: soft aggregation over objects, per-object broadcasting, value-encoder mask inputs.

Soft aggregation (from STM, as in STCN and XMem): p = [prod_k(1 - p_k), p_1..p_N] clamped to [1e-7, 1 - 1e-7],
logits = log(p / (1 - p)), prob = softmax(logits) over the N+1 channels (background first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.types import SegmentOutput

__all__ = ["StagedModel", "aggregate", "aggregate_logits", "object_mask_inputs", "repeat_per_object"]


class StagedModel(nn.Module):
    """Base of the networks: they are driven through their named stages only, so ``forward`` refuses."""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} has no forward(); call encode_key, encode_value, read_memory and segment "
            "(corrvos.training unrolls clips, corrvos.inference.InferenceCore runs videos)"
        )


def aggregate_logits(prob: Tensor) -> Tensor:
    """Soft aggregation of per-object probabilities into logits over background + objects.

    Args:
        prob: [B, N, H, W] per-object foreground probabilities (already multiplied by the selector).

    Returns:
        [B, N+1, H, W] logits (background first); their softmax is the aggregated probability.
    """
    bg = torch.prod(1 - prob, dim=1, keepdim=True)  # [B, 1, H, W]
    p = torch.cat([bg, prob], dim=1).clamp(1e-7, 1 - 1e-7)  # [B, N+1, H, W]
    return torch.log(p / (1 - p))


def repeat_per_object(x: Tensor, n: int) -> Tensor:
    """[B, ...] -> [B*N, ...], each entry repeated for N objects (object index fastest).

    With B = 1 (inference) this is a broadcast view, not a copy: the convolutions and ``torch.cat`` that consume
    it read the one frame's features directly, as the official ``expand`` does.
    """
    if x.shape[0] == 1:
        return x.expand(n, *x.shape[1:])  # [N, ...] view
    return x.unsqueeze(1).expand(x.shape[0], n, *x.shape[1:]).flatten(0, 1)  # [B*N, ...] copy


def aggregate(prob: Tensor, selector: Tensor | None = None) -> SegmentOutput:
    """Mask per-object probabilities [B, N, H, W] by ``selector`` [B, N] and soft-aggregate them (both models)."""
    if selector is not None:
        prob = prob * selector[:, :, None, None].to(prob.dtype)
    logits = aggregate_logits(prob)
    return SegmentOutput(logits=logits, prob=F.softmax(logits, dim=1))


def object_mask_inputs(masks: Tensor, *, single_object: bool) -> Tensor:
    """The value encoder's mask channels of every object: [mask_k, sum of the other objects' masks], or [mask_k]
    for single-object (stage-0) models.

    Args:
        masks: [B, N, H, W] soft or hard object masks (N >= 1; with N = 1 "others" is zeros).

    Returns:
        [B*N, 2, H, W] (or [B*N, 1, H, W]), object index fastest.
    """
    b, n, hh, ww = masks.shape
    if single_object:
        extra = masks.unsqueeze(2)  # [B, N, 1, H, W]
    else:
        others = [masks[:, [j for j in range(n) if j != k]].sum(dim=1) for k in range(n)]  # N x [B, H, W]
        extra = torch.stack([masks, torch.stack(others, dim=1)], dim=2)  # [B, N, 2, H, W]
    return extra.reshape(b * n, extra.shape[2], hh, ww)  # [B*N, extra, H, W]
