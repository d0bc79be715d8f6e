"""Space-time memory matching as pure functions: one similarity for STCN and XMem, softmax (full or top-k), readout.

Re-expresses hkchengrex/STCN:model/network.py (``MemoryReader.get_affinity`` / ``readout``),
hkchengrex/STCN:inference_memory_bank.py (``softmax_w_top``) and hkchengrex/XMem:model/memory_util.py
(``get_similarity``), with the same arithmetic so that official weights give the same numbers.

Similarity between memory keys k_i and query keys q_j of CK channels (:func:`similarity`):

- STCN, "L2 similarity" (no shrinkage, no selection): S_ij = (2 k_i . q_j - ||k_i||^2) / sqrt(CK), which is
  -||k_i - q_j||^2 / sqrt(CK) up to a term constant over i (it cancels in the softmax over i);
- XMem, "anisotropic L2": S_ij = -s_i * sum_c e_jc (k_ic - q_jc)^2 / sqrt(CK), with the memory shrinkage
  s_i >= 1 and the query selection e_j in [0, 1]^CK. Expanded as -a^2 + 2ab - b^2 weighted by e; the b^2 term
  does not cancel because s_i varies with i. With shrinkage but no selection, XMem drops b^2 as STCN does
  (``(2 k.q - ||k||^2) * s_i / sqrt(CK)``); we keep that rule so official weights give the same numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["l2_affinity", "read_memory", "readout", "similarity", "softmax_affinity", "topk_softmax"]


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


def similarity(
    mem_key: Tensor, query_key: Tensor, *, mem_shrinkage: Tensor | None = None, query_selection: Tensor | None = None
) -> Tensor:
    """The matching similarity of STCN and XMem (see the module docstring); STCN's exactly when both terms are absent.

    Args:
        mem_key: [B, CK, T, h, w] (or [B, CK, M]) memory keys.
        query_key: [B, CK, h, w] (or [B, CK, Q]) query keys.
        mem_shrinkage: [B, 1, T, h, w] (or [B, 1, M]) XMem shrinkage s_i of the memory positions, or ``None``.
        query_selection: [B, CK, h, w] (or [B, CK, Q]) XMem selection e_j of the query positions, or ``None``.

    Returns:
        [B, M, Q] similarities (unnormalised logits of the softmax over memory positions).
    """
    if mem_shrinkage is None and query_selection is None:
        return l2_affinity(mem_key, query_key)  # [B, M, Q], the exact STCN path
    ck = mem_key.shape[1]
    mk = mem_key.flatten(start_dim=2)  # [B, CK, M]
    qk = query_key.flatten(start_dim=2)  # [B, CK, Q]
    if query_selection is not None:
        qe = query_selection.flatten(start_dim=2)  # [B, CK, Q]
        mk_t = mk.transpose(1, 2)  # [B, M, CK]
        a_sq = mk_t.pow(2) @ qe  # [B, M, Q]: sum_c e_jc k_ic^2
        two_ab = 2 * (mk_t @ (qk * qe))  # [B, M, Q]: 2 sum_c e_jc k_ic q_jc
        b_sq = (qe * qk.pow(2)).sum(1, keepdim=True)  # [B, 1, Q]: sum_c e_jc q_jc^2
        sim = -a_sq + two_ab - b_sq  # [B, M, Q]
    else:
        a_sq = mk.pow(2).sum(1).unsqueeze(2)  # [B, M, 1]
        sim = -a_sq + 2 * (mk.transpose(1, 2) @ qk)  # [B, M, Q]
    if mem_shrinkage is not None:
        sim = sim * mem_shrinkage.flatten(start_dim=1).unsqueeze(2)  # [B, M, Q] * [B, M, 1]
    return sim / math.sqrt(ck)


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


def read_memory(
    mem_key: Tensor,
    mem_value: Tensor,
    query_key: Tensor,
    *,
    mem_shrinkage: Tensor | None = None,
    query_selection: Tensor | None = None,
    top_k: int | None = None,
) -> Tensor:
    """The memory read of every model: :func:`similarity`, softmax over memory (full, or top-k), readout.

    Args:
        mem_key: [B, CK, T, h, w] memory keys.
        mem_value: [B, N, CV, T, h, w] memory values.
        query_key: [B, CK, h, w] query keys.
        mem_shrinkage: [B, 1, T, h, w] XMem shrinkage of the memory positions, or ``None``.
        query_selection: [B, CK, h, w] XMem selection of the query positions, or ``None``.
        top_k: keep the top-k similarities per query (inference) or, when ``None``, the full max-subtracted
            softmax (training).

    Returns:
        [B, N, CV, h, w] readout.
    """
    affinity = similarity(mem_key, query_key, mem_shrinkage=mem_shrinkage, query_selection=query_selection)
    # affinity: [B, T*h*w, h*w]
    if top_k is None:
        weights = softmax_affinity(affinity)
    else:  # the affinity is ours: overwrite it unless autograd needs it
        weights = topk_softmax(affinity, top_k, inplace=not affinity.requires_grad)
    return readout(weights, mem_value)
