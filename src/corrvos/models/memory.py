"""Space-time memory matching as pure functions: the L2 affinity of STCN, softmax (full or top-k), readout.

Re-expresses hkchengrex/STCN:model/network.py (``MemoryReader.get_affinity`` / ``readout``) and
hkchengrex/STCN:inference_memory_bank.py (``softmax_w_top``), with the same arithmetic so that official weights
give the same numbers.

Affinity (STCN, "L2 similarity"): for memory keys k_i and query keys q_j of CK channels,
    S_ij = (2 k_i . q_j - ||k_i||^2) / sqrt(CK)
which is -||k_i - q_j||^2 / sqrt(CK) up to a term constant over i (it cancels in the softmax over i).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["l2_affinity", "readout", "softmax_affinity", "topk_softmax"]


def l2_affinity(mem_key: Tensor, query_key: Tensor) -> Tensor:
    """Unnormalised L2 affinity between every memory position and every query position.

    Args:
        mem_key: [B, CK, T, h, w] (or [B, CK, M] already flattened) memory keys.
        query_key: [B, CK, h, w] (or [B, CK, Q]) query keys.

    Returns:
        [B, M, Q] with M = T*h*w memory positions and Q = h*w query positions.
    """
    ck = mem_key.shape[1]
    mk = mem_key.flatten(start_dim=2)  # [B, CK, M]
    qk = query_key.flatten(start_dim=2)  # [B, CK, Q]
    a_sq = mk.pow(2).sum(1).unsqueeze(2)  # [B, M, 1]
    if torch.is_autocast_enabled(mk.device.type):
        # autocast runs the product in half precision; subtract ||k||^2 in float32 as the official code does
        return (2 * (mk.transpose(1, 2) @ qk) - a_sq) / math.sqrt(ck)  # [B, M, Q]
    # (2 k.q - ||k||^2) / sqrt(CK) as one GEMM with a fused epilogue: alpha * (mk^T qk) + beta * a_sq
    scale = 1.0 / math.sqrt(ck)
    return torch.baddbmm(a_sq, mk.transpose(1, 2), qk, beta=-scale, alpha=2 * scale)  # [B, M, Q]


def softmax_affinity(affinity: Tensor) -> Tensor:
    """Softmax over the memory dimension (dim 1). [B, M, Q] -> [B, M, Q].

    STCN training writes out exp(a - max) / sum exp(a - max); ``torch.softmax`` is the same max-subtracted
    softmax in one kernel, and its backward keeps only the output instead of the exponentials and the sums.
    """
    return torch.softmax(affinity, dim=1)


def topk_softmax(affinity: Tensor, top_k: int, *, inplace: bool = False) -> Tensor:
    """Keep the ``top_k`` largest affinities per query, softmax them, zero the rest (STCN inference).

    The official inference exponentiates the kept values without max-subtraction, which overflows to NaN for
    large affinities (e.g. a randomly initialised network). We take ``torch.softmax`` of the kept values, which
    subtracts their maximum first: the normalisation cancels it, so the weights are the same up to float rounding
    (well inside the 1e-4 parity tolerance) and always finite, in one kernel instead of three. When ``top_k`` is
    at least the memory size this is a softmax over all of memory.

    Args:
        affinity: [B, M, Q] raw affinities.
        top_k: how many memory positions each query keeps.
        inplace: write the weights into ``affinity`` (as the official code does) instead of a new tensor; saves
            one [B, M, Q] allocation. Only for tensors that autograd does not need (inference).

    Returns:
        [B, M, Q] weights, each column summing to 1.
    """
    k = min(top_k, affinity.shape[1])
    values, indices = torch.topk(affinity, k=k, dim=1)  # [B, k, Q]
    weights = torch.softmax(values, dim=1)  # [B, k, Q]
    out = affinity.zero_() if inplace else torch.zeros_like(affinity)
    return out.scatter_(1, indices, weights)


def readout(weights: Tensor, mem_value: Tensor) -> Tensor:
    """Weighted sum of memory values for every query position.

    Args:
        weights: [B, M, Q] affinity weights (columns sum to 1), M = T*h*w.
        mem_value: [B, N, CV, T, h, w] memory values of N objects.

    Returns:
        [B, N, CV, h, w] readout, with h*w = Q (taken from the memory's spatial size).
    """
    b, n, cv, t, h, w = mem_value.shape
    mv = mem_value.reshape(b, n * cv, t * h * w)  # [B, N*CV, M]
    out = mv @ weights  # [B, N*CV, Q]
    return out.view(b, n, cv, h, w)  # [B, N, CV, h, w]
