"""Pieces every model shares: soft aggregation over objects, per-object broadcasting, value-encoder mask inputs.

Soft aggregation (from STM, as in STCN and XMem): p = [prod_k(1 - p_k), p_1..p_N] clamped to [1e-7, 1 - 1e-7],
logits = log(p / (1 - p)), prob = softmax(logits) over the N+1 channels (background first).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.models.memory import read_memory as memory_read
from corrvos.types import SegmentOutput

__all__ = [
    "StagedModel",
    "aggregate",
    "aggregate_logits",
    "object_mask_inputs",
    "repeat_per_object",
    "value_conv1_single_object",
]


class StagedModel(nn.Module):
    """Base of the networks: they are driven through their named stages only, so ``forward`` refuses; the memory
    readout (``read_memory``) is shared."""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} has no forward(); call encode_key, encode_value, read_memory and segment "
            "(corrvos.training unrolls clips, corrvos.inference.InferenceCore runs videos)"
        )

    def read_memory(
        self,
        mem_key: Tensor,
        mem_value: Tensor,
        query_key: Tensor,
        *,
        mem_shrinkage: Tensor | None = None,
        query_selection: Tensor | None = None,
        top_k: int | None = None,
    ) -> Tensor:
        """The memory readout [B, N, CV, h, w] at the query positions: :func:`corrvos.models.memory.read_memory`
        (arguments and shapes there; without shrinkage and selection it is STCN's L2 affinity)."""
        return memory_read(
            mem_key, mem_value, query_key, mem_shrinkage=mem_shrinkage, query_selection=query_selection, top_k=top_k
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


def value_conv1_single_object(state: dict | Any) -> bool:
    """Whether a state_dict's mask-conditioned value encoder takes [RGB, mask] only (a stage-0 single-object file).

    ``value_encoder.conv1.weight`` has 5 input channels (RGB, the object's mask, the other objects' mask) or 4.

    Raises:
        CheckpointError: the key is missing or has another number of input channels.
    """
    from corrvos.errors import CheckpointError

    key = "value_encoder.conv1.weight"
    if key not in state:
        raise CheckpointError(f"missing key {key}")
    in_ch = state[key].shape[1] if state[key].dim() == 4 else -1
    if in_ch not in (4, 5):
        raise CheckpointError(f"{key} has {in_ch} input channels; expected 5 (or 4 for stage 0)")
    return in_ch == 4
