"""L_PCL, pixel-level consistency ("paper" mode): Algorithm S1 / Eqs. 5-7 of Zhang et al. (CVPR 2023) supplement.

For the matching keys k_t1, k_t2 of two successive frames and k_r of a remote frame of every clip in the batch:

    G      = keys of k_r at a sparse grid: stride R feature cells, one random (x, y) offset per clip;
             all B * n grid points of the batch are pooled (other clips act as negatives)
    S_t(i, j) = l2_affinity(G_j, k_t(i)) / tau           (the model's own matching affinity, Eq. 5)
    A_t    = softmax_j S_t(i, j)                          over all B * n grid points
    y(i)   = argmax_j A_t1(i, j)                          (Eq. 6, no gradient; optionally within the clip)
    L_PCL  = - mean_i log A_t2(i, y(i))                   over all B * h * w pixels of t2 (Eq. 7)

The affinity is the model's own matching similarity (:func:`corrvos.models.memory.similarity`): STCN's L2
affinity (2 k_j . q_i - ||k_j||^2) / sqrt(CK), or for XMem the anisotropic L2 with the grid points' shrinkage (they
play the memory) and the query pixels' selection. It is the quantity the memory read softmaxes over, so the loss
shapes the matching itself. Grid size: n = max(1, h // R) x max(1, w // R); offsets are drawn
in [0, min(R, h - (n_y - 1) R)) so every point lies inside the map. The pseudocode's ``arange(0, W, R)`` would
give ceil(W / R) points and could fall outside the map when W is not a multiple of R; we keep exactly
floor(W / R) points.

Randomness (the grid offsets) comes only from the ``generator`` argument.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from corrvos.models.memory import similarity

__all__ = ["gather_grid", "grid_offsets_to_index", "pcl_logits", "pixel_consistency_loss", "sample_grid_index"]


def _randint(high: int, size: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Integers in [0, high) drawn from ``generator`` (on the generator's own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high, size, generator=generator, device=gen_device).to(device)


def grid_offsets_to_index(
    off_y: Tensor, off_x: Tensor, *, num_y: int, num_x: int, stride_y: int, stride_x: int, width: int
) -> Tensor:
    """Flat indices y * width + x of a regular grid shifted per clip.

    Args:
        off_y: [B] row offsets.
        off_x: [B] column offsets.
        num_y, num_x: grid points per column / row.
        stride_y, stride_x: spacing in cells.
        width: w of the map.

    Returns:
        [B, num_y * num_x] int64 indices into the flattened h * w map (row-major grid order).
    """
    ys = torch.arange(num_y, device=off_y.device) * stride_y  # [ny]
    xs = torch.arange(num_x, device=off_x.device) * stride_x  # [nx]
    y = ys[None, :, None] + off_y[:, None, None]  # [B, ny, 1]
    x = xs[None, None, :] + off_x[:, None, None]  # [B, 1, nx]
    return (y * width + x).flatten(1)  # [B, ny*nx]


def sample_grid_index(
    h: int,
    w: int,
    *,
    batch: int,
    num_y: int,
    num_x: int,
    stride_y: int,
    stride_x: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """A ``num_y x num_x`` grid with spacing ``stride`` and one random (x, y) offset per clip.

    Offsets are drawn uniformly in [0, min(stride, extent - (num - 1) * stride)), so all points are inside.

    Returns:
        [B, num_y * num_x] int64 flat indices into an h * w map.
    """
    if num_y < 1 or num_x < 1 or (num_y - 1) * stride_y >= h or (num_x - 1) * stride_x >= w:
        raise ValueError(f"grid {num_y}x{num_x} with stride {stride_y}x{stride_x} does not fit a {h}x{w} map")
    device = torch.device(device)
    hi_y = min(stride_y, h - (num_y - 1) * stride_y)
    hi_x = min(stride_x, w - (num_x - 1) * stride_x)
    off_x = _randint(hi_x, (batch,), generator, device)
    off_y = _randint(hi_y, (batch,), generator, device)
    return grid_offsets_to_index(off_y, off_x, num_y=num_y, num_x=num_x, stride_y=stride_y, stride_x=stride_x, width=w)


def gather_grid(key: Tensor, index: Tensor) -> Tensor:
    """Keys at grid points, pooled over the batch.

    Args:
        key: [B, C, h, w] features.
        index: [B, n] flat indices into h * w.

    Returns:
        [C, B * n] the grid features, clip-major (clip b owns columns b*n .. b*n + n - 1).
    """
    b, c = key.shape[:2]
    flat = key.flatten(2)  # [B, C, hw]
    picked = flat.gather(2, index[:, None, :].expand(b, c, index.shape[1]))  # [B, C, n]
    return picked.permute(1, 0, 2).reshape(c, -1)  # [C, B*n]


def _flat_batch(x: Tensor) -> Tensor:
    """[B, C, h, w] -> [1, C, B*hw], clip-major then row-major pixels."""
    return x.permute(1, 0, 2, 3).reshape(1, x.shape[1], -1)


def pcl_logits(
    k_t: Tensor,
    grid: Tensor,
    *,
    temperature: float = 1.0,
    grid_shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
) -> Tensor:
    """Eq. 5 before the softmax: affinity of every pixel of the batch to every grid point of the batch.

    Args:
        k_t: [B, C, h, w] keys of a frame.
        grid: [C, M] grid keys of the batch (M = B * n).
        temperature: tau dividing the affinity.
        grid_shrinkage: [1, M] XMem shrinkage of the grid points, or ``None`` (STCN).
        selection: [B, C, h, w] XMem selection of the frame's pixels, or ``None`` (STCN).

    Returns:
        [B * h * w, M] logits, rows clip-major then row-major pixels.
    """
    sel = None if selection is None else _flat_batch(selection)  # [1, C, B*hw]
    shrink = None if grid_shrinkage is None else grid_shrinkage[None]  # [1, 1, M]
    aff = similarity(grid[None], _flat_batch(k_t), mem_shrinkage=shrink, query_selection=sel)[0]  # [M, B*hw]
    return aff.t() / temperature  # [B*hw, M]


def pixel_consistency_loss(
    k_t1: Tensor,
    k_t2: Tensor,
    k_r: Tensor,
    *,
    stride: int = 8,
    temperature: float = 1.0,
    label_within_clip: bool = False,
    generator: torch.Generator | None = None,
    grid_index: Tensor | None = None,
    shrinkage_r: Tensor | None = None,
    selection_t1: Tensor | None = None,
    selection_t2: Tensor | None = None,
) -> Tensor:
    """L_PCL of Algorithm S1 (see the module docstring for the equations).

    Args:
        k_t1: [B, C, h, w] keys of frame t1 (pseudo-label source; receives no gradient from this loss).
        k_t2: [B, C, h, w] keys of frame t2 (trained).
        k_r: [B, C, h, w] keys of the remote frame r (grid source; trained through the t2 affinities).
        stride: R, the grid stride in feature cells.
        temperature: tau dividing the L2 affinity.
        label_within_clip: restrict the Eq. 6 argmax to the clip's own grid points (paper: over all).
        generator: source of the per-clip grid offsets.
        grid_index: [B, n] explicit flat grid indices (overrides ``stride`` / ``generator``; for tests).
        shrinkage_r: [B, 1, h, w] XMem shrinkage of frame r (the grid points' side of the similarity), or ``None``.
        selection_t1, selection_t2: [B, C, h, w] XMem selection of frames t1 / t2 (the query side), or ``None``.
            The t1 side gives the pseudo-label without gradient; r and t2 are trained (shrinkage and selection
            heads included).

    Returns:
        Scalar loss (float32).
    """
    if not (k_t1.shape == k_t2.shape == k_r.shape) or k_r.dim() != 4:
        raise ValueError(
            f"pixel_consistency_loss: keys must all be [B, C, h, w], got {tuple(k_t1.shape)}, "
            f"{tuple(k_t2.shape)}, {tuple(k_r.shape)}"
        )
    b, _, h, w = k_r.shape
    if grid_index is None:
        ny, nx = max(1, h // stride), max(1, w // stride)
        grid_index = sample_grid_index(
            h, w, batch=b, num_y=ny, num_x=nx, stride_y=stride, stride_x=stride, generator=generator, device=k_r.device
        )
    n = grid_index.shape[1]
    grid = gather_grid(k_r.float(), grid_index)  # [C, B*n]
    grid_s = None if shrinkage_r is None else gather_grid(shrinkage_r.float(), grid_index)  # [1, B*n]
    sel1 = None if selection_t1 is None else selection_t1.detach().float()
    sel2 = None if selection_t2 is None else selection_t2.float()
    with torch.no_grad():
        logits_t1 = pcl_logits(
            k_t1.detach().float(),
            grid.detach(),
            temperature=temperature,
            grid_shrinkage=None if grid_s is None else grid_s.detach(),
            selection=sel1,
        )
        if label_within_clip:
            own = torch.arange(b, device=k_r.device).repeat_interleave(h * w)  # [B*hw] clip of each pixel
            col_clip = torch.arange(b, device=k_r.device).repeat_interleave(n)  # [B*n] clip of each point
            logits_t1 = logits_t1.masked_fill(own[:, None] != col_clip[None, :], float("-inf"))
        pseudo = logits_t1.argmax(dim=1)  # [B*hw]
    logits_t2 = pcl_logits(k_t2.float(), grid, temperature=temperature, grid_shrinkage=grid_s, selection=sel2)
    return F.cross_entropy(logits_t2, pseudo)
