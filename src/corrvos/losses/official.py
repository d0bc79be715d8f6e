"""The released code's auxiliary losses ("official" mode): ``temp`` and ``cross_key``.

Re-expresses wenguanwang/VOS_Correspondence:model/model.py (``get_aff``, ``_align``, ``_sample_index``,
``_sample_from``, ``_pseudo_mask``, ``_cluster_grid``, ``_ref_loss``, ``_ce_loss``, ``do_pass``), themselves taken
from visinf/dense-ulearn-vos:models/framework.py. Inputs are the ``key_proj2`` keys of both views
(``ClipOutputs.keys2`` / ``view2_keys2``) and the view-2 -> view-1 affine ``view2_theta``.

Affinity everywhere: a(u, v) = (2 u.v - ||u||^2 - ||v||^2) / sqrt(C) = -||u - v||^2 / sqrt(C) (no temperature).

``temp`` (weight 0.20, the L_PCL analogue), for a clip of T frames:
    anchors  = view-1 frame-0 keys at a G x G grid (G = 8, stride h // G, random (x, y) offset per clip),
               pooled over the batch: K = B G^2 anchors
    student  = a(view-1 pixel, anchor) for all T frames, warped into view-2 coordinates (nearest)
    teacher  = argmax over the clip's *own* G^2 anchors of a(view-2 pixel, anchor)       (no gradient)
    temp     = mean over clips, frames t = 1..T-1 and pixels of -log(softmax_K(student) + eps)[teacher]
(frame 0 is computed in the release and discarded; we skip it).

``cross_key`` (weight 0.04):
    x = view-1 frame-0 keys warped into view 2 (nearest), y = view-2 frame-0 keys
    x_k, y_k at the same 4 x 4 grid positions (random offset per clip), k over the batch (K = 16 B)
    cross_key = mean_k -log(softmax_j a(x_k, y_j) + eps)[k]      (InfoNCE, positive = same position)

Randomness (grid offsets) comes only from the ``generator`` argument.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from corrvos.losses.pixel_consistency import gather_grid, sample_grid_index
from corrvos.losses.views import align_to_view2

__all__ = ["cross_key_loss", "neg_sq_l2_affinity", "official_grid_index", "temp_loss"]


def neg_sq_l2_affinity(a: Tensor, b: Tensor) -> Tensor:
    """The release's ``get_aff``: (2 a.b - ||a||^2 - ||b||^2) / sqrt(C), batched over leading dimensions.

    Args:
        a: [..., C, M] features.
        b: [..., C, K] features.

    Returns:
        [..., M, K].
    """
    c = a.shape[-2]
    a_sq = a.pow(2).sum(-2)[..., :, None]  # [..., M, 1]
    b_sq = b.pow(2).sum(-2)[..., None, :]  # [..., 1, K]
    return (2 * (a.transpose(-1, -2) @ b) - a_sq - b_sq) / math.sqrt(c)


def official_grid_index(
    h: int,
    w: int,
    *,
    grid: int,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The release's ``_sample_index``: ``grid`` points per side with stride h // grid, one offset per clip.

    Maps smaller than ``grid`` cells get one point per cell (stride 1).

    Returns:
        [B, n_y * n_x] flat indices into h * w.
    """
    ny, nx = min(grid, h), min(grid, w)
    return sample_grid_index(
        h,
        w,
        batch=batch,
        num_y=ny,
        num_x=nx,
        stride_y=max(1, h // grid),
        stride_x=max(1, w // grid),
        generator=generator,
        device=device,
    )


def _pixels(keys: Tensor) -> Tensor:
    """[N, C, h, w] -> [C, N*h*w] (map-major, then row-major pixels)."""
    return keys.permute(1, 0, 2, 3).flatten(1)  # [C, N*hw]


def temp_loss(
    keys_v1: Tensor,
    keys_v2: Tensor,
    theta: Tensor,
    *,
    grid: int = 8,
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
    anchor_index: Tensor | None = None,
) -> Tensor:
    """The release's ``temp`` loss (see the module docstring).

    Args:
        keys_v1: [B, T, C, h, w] view-1 keys (trained).
        keys_v2: [B, T, C, h, w] view-2 keys (teacher; detached here).
        theta: [B, 2, 3] view-2 -> view-1 affine.
        grid: G, anchors per side on view-1 frame 0.
        eps: added to the softmax before the log (release: 1e-8).
        generator: source of the grid offsets.
        anchor_index: [B, n] explicit flat anchor indices (for tests).

    Returns:
        Scalar loss.
    """
    b, t, c, h, w = keys_v1.shape
    if keys_v2.shape != keys_v1.shape or t < 2:
        raise ValueError(
            f"temp_loss: view keys must share a [B, T >= 2, C, h, w] shape, got "
            f"{tuple(keys_v1.shape)} and {tuple(keys_v2.shape)}"
        )
    if anchor_index is None:
        anchor_index = official_grid_index(h, w, grid=grid, batch=b, generator=generator, device=keys_v1.device)
    n = anchor_index.shape[1]
    k1 = keys_v1.float()
    anchors = gather_grid(k1[:, 0], anchor_index)  # [C, B*n]
    student = neg_sq_l2_affinity(_pixels(k1.flatten(0, 1)), anchors)  # [B*T*hw, B*n]
    student = student.view(b * t, h * w, b * n).transpose(1, 2).reshape(b, t, b * n, h, w)  # [B, T, Bn, h, w]
    student = align_to_view2(student, theta, mode="nearest")  # [B, T, Bn, h, w] in view-2 coordinates
    with torch.no_grad():
        v2 = keys_v2.detach().float().permute(0, 2, 1, 3, 4).flatten(2)  # [B, C, T*hw]
        own = anchors.detach().view(c, b, n).transpose(0, 1)  # [B, C, n] each clip's own anchors
        teacher = neg_sq_l2_affinity(v2, own)  # [B, T*hw, n]
        pseudo = teacher.argmax(dim=2) + (torch.arange(b, device=teacher.device) * n)[:, None]  # [B, T*hw]
        pseudo = pseudo.view(b, t, h, w)  # [B, T, h, w] indices in [0, B*n)
    prob = student[:, 1:].softmax(dim=2)  # [B, T-1, Bn, h, w]
    picked = prob.gather(2, pseudo[:, 1:, None]).squeeze(2)  # [B, T-1, h, w]
    return -(picked + eps).log().mean()


def cross_key_loss(
    key_v1: Tensor,
    key_v2: Tensor,
    theta: Tensor,
    *,
    grid: int = 4,
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
    index: Tensor | None = None,
) -> Tensor:
    """The release's ``cross_key`` loss on frame 0 (see the module docstring).

    Args:
        key_v1: [B, C, h, w] view-1 frame-0 keys.
        key_v2: [B, C, h, w] view-2 frame-0 keys (both views receive gradient).
        theta: [B, 2, 3] view-2 -> view-1 affine.
        grid: points per side.
        eps: added to the softmax before the log.
        generator: source of the grid offsets.
        index: [B, n] explicit flat indices (for tests).

    Returns:
        Scalar loss.
    """
    b, _, h, w = key_v1.shape
    if key_v2.shape != key_v1.shape:
        raise ValueError(f"cross_key_loss: shapes differ: {tuple(key_v1.shape)} vs {tuple(key_v2.shape)}")
    x = align_to_view2(key_v1.float(), theta, mode="nearest")  # [B, C, h, w] in view-2 coordinates
    if index is None:
        index = official_grid_index(h, w, grid=grid, batch=b, generator=generator, device=key_v1.device)
    xs = gather_grid(x, index)  # [C, K]
    ys = gather_grid(key_v2.float(), index)  # [C, K]
    prob = neg_sq_l2_affinity(xs, ys).softmax(dim=1)  # [K, K] softmax over the view-2 points
    return -(prob.diagonal() + eps).log().mean()
