"""RoIAlign in pure PyTorch with the semantics of ``torchvision.ops.roi_align`` (torchvision cannot be imported here).

Semantics (those of torchvision's CPU/CUDA kernels), for a box (b, x1, y1, x2, y2) in input-image coordinates:

    offset = 0.5 if aligned else 0
    start  = x1 * spatial_scale - offset,   end = x2 * spatial_scale - offset
    size   = end - start                    (clamped to >= 1 when not aligned)
    bin    = size / pooled
    g      = sampling_ratio if sampling_ratio > 0 else ceil(size / pooled)      (per box and per axis)
    sample i of bin p at  start + p * bin + (i + 0.5) * bin / g,  i = 0 .. g - 1
    out    = mean over the g_y * g_x samples of the bilinear value (divided by max(g_y * g_x, 1))

and the bilinear value at (y, x) is 0 when y < -1, y > H, x < -1 or x > W; otherwise coordinates below 0 are
clamped to 0 and a coordinate whose integer part is >= H - 1 (W - 1) is set to H - 1 (W - 1).

Implementation: the sampling and the bilinear weights factor into a row part and a column part, so each box
gets two small interpolation matrices Wy [P_h, H] and Wx [P_w, W] (each row the average of its samples'
bilinear weights) and the output is Wy @ F[b] @ Wx^T. No loop over boxes or pixels; differentiable with
respect to the features (not the boxes, as in torchvision).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["roi_align"]


def _axis_weights(
    start: Tensor, size: Tensor, pooled: int, grid: Tensor, length: int, gmax: int | None = None
) -> Tensor:
    """Interpolation matrix along one axis.

    Args:
        start: [K] start coordinate of each box on this axis (feature units).
        size: [K] extent of each box.
        pooled: output bins along the axis.
        grid: [K] int64 samples per bin (<= 0 means none).
        length: input extent along the axis (H or W).
        gmax: an upper bound of ``grid`` (read from ``grid``, a device sync, when None).

    Returns:
        [K, pooled, length] weights; row p averages the bilinear weights of the samples of bin p.
    """
    k = start.shape[0]
    if gmax is None:
        gmax = int(grid.max().item()) if k > 0 else 1
    gmax = max(gmax, 1)
    binsz = size / pooled  # [K]
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)  # [P]
    i = torch.arange(gmax, device=start.device, dtype=start.dtype)  # [G]
    g = grid.clamp(min=1).to(start.dtype)  # [K]
    coord = (
        start[:, None, None]
        + p[None, :, None] * binsz[:, None, None]
        + (i[None, None, :] + 0.5) * (binsz / g)[:, None, None]
    )  # [K, P, G]
    use = (i[None, None, :] < grid[:, None, None]) & (coord >= -1.0) & (coord <= length)  # [K, P, G]
    c = coord.clamp(min=0.0)
    low = c.floor().long()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    c = torch.where(at_end, low.to(c.dtype), c)
    frac_high = (c - low.to(c.dtype)) * use  # weight of `high`, [K, P, G]
    frac_low = (1.0 - (c - low.to(c.dtype))) * use  # weight of `low`, [K, P, G]
    weights = torch.zeros(k, pooled, gmax, length, device=start.device, dtype=start.dtype)  # [K, P, G, L]
    weights.scatter_add_(3, low.clamp(0, length - 1)[..., None], frac_low[..., None])
    weights.scatter_add_(3, high.clamp(0, length - 1)[..., None], frac_high[..., None])
    return weights.sum(dim=2) / g[:, None, None]  # [K, P, L]


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = True,
) -> Tensor:
    """Pool a fixed-size feature map for every box (``torchvision.ops.roi_align`` semantics).

    Args:
        features: [B, C, H, W] input features.
        boxes: [K, 5] rows (batch_index, x1, y1, x2, y2) in input-image coordinates.
        output_size: (P_h, P_w) or an int for a square output.
        spatial_scale: factor from box coordinates to feature coordinates (1/16 for stride-16 features).
        sampling_ratio: samples per bin side; <= 0 chooses ceil(box size / output size) per box (adaptive).
        aligned: shift the box by -0.5 feature pixel so that samples align with pixel centres.

    Returns:
        [K, C, P_h, P_w] pooled features, same dtype as ``features``.
    """
    if features.dim() != 4:
        raise ValueError(f"roi_align: features must be [B, C, H, W], got {tuple(features.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"roi_align: boxes must be [K, 5] (batch_index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, c, h, w = features.shape
    k = boxes.shape[0]
    if k == 0:
        return features.new_zeros(0, c, ph, pw) + features.sum() * 0  # keeps the graph for empty batches
    with torch.no_grad():
        # coordinates in the kernels' scalar type: float64 for double input, float32 otherwise
        cdtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        bx = boxes.detach().to(device=features.device, dtype=cdtype)
        offset = 0.5 if aligned else 0.0
        x1 = bx[:, 1] * spatial_scale - offset
        y1 = bx[:, 2] * spatial_scale - offset
        rw = bx[:, 3] * spatial_scale - offset - x1
        rh = bx[:, 4] * spatial_scale - offset - y1
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        if sampling_ratio > 0:
            gy = torch.full((k,), sampling_ratio, dtype=torch.long, device=features.device)
            gx = gy
        else:
            # the kernels take ceil(size / pooled) in the scalar type
            gy = torch.ceil(rh / ph).long()
            gx = torch.ceil(rw / pw).long()
        fixed = sampling_ratio if sampling_ratio > 0 else None  # fixed ratio: no device sync
        wy = _axis_weights(y1, rh, ph, gy, h, fixed).to(features.dtype)  # [K, Ph, H]
        wx = _axis_weights(x1, rw, pw, gx, w, fixed).to(features.dtype)  # [K, Pw, W]
        bidx = bx[:, 0].long()
    picked = features.index_select(0, bidx)  # [K, C, H, W]
    cols = picked @ wx.transpose(1, 2)[:, None]  # [K, C, H, Pw]
    return wy[:, None] @ cols  # [K, C, Ph, Pw]
