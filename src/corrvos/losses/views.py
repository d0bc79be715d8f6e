"""The second view of the "official" losses: random horizontal flip + zoom-crop per clip, and alignment helpers.

Re-expresses the two-view logic of wenguanwang/VOS_Correspondence:dataset/vos_dataset.py and
dataset/daugm_video.py (``GuidedRandHFlip`` then ``MaskRandScaleCrop(0.5, 1.0)``, shared by all frames of a clip;
inverse affine from ``_get_affine`` / ``_get_affine_inv``), done on batched tensors with ``grid_sample``.

Geometry, in normalised coordinates (``align_corners=False``: -1 and 1 are the outer image edges). View 2 is view
1 flipped (f = -1 with probability ``flip_prob``, else 1), then cropped to a window of relative size s ~ U[s_lo,
s_hi] whose centre (cx, cy) is uniform over the positions that keep the window inside the image, then resized
back to H x W. A view-2 point u maps to the view-1 point

    x1 = f (s u_x + cx),   y1 = s u_y + cy        i.e.  theta = [[f s, 0, f cx], [0, s, cy]],

which is the release's ``view2_inv_aff`` and the ``ClipOutputs.view2_theta`` convention:
``grid_sample(view1_map, affine_grid(theta))`` is the view-1 map seen in view-2 coordinates. The same theta works at
any resolution (image or stride-16 features). The release crops integer pixel windows and resizes with PIL; we
sample the window with bilinear ``grid_sample`` (continuous window, border padding for the half pixel at the
edges), which keeps frames and theta exactly consistent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["align_to_view2", "make_second_view", "sample_view_theta"]


def sample_view_theta(
    batch: int,
    *,
    zoom_range: tuple[float, float] = (0.5, 1.0),
    flip_prob: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Random flip + zoom-crop affines, one per clip.

    Args:
        batch: B.
        zoom_range: (s_lo, s_hi), the relative crop size range (release: 0.5 to 1).
        flip_prob: probability of a horizontal flip (release: 0.5).
        generator: randomness source.
        device: device of the result.

    Returns:
        [B, 2, 3] float32 theta mapping view-2 to view-1 normalised coordinates.
    """
    lo, hi = zoom_range
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"sample_view_theta: zoom_range must satisfy 0 < lo <= hi <= 1, got {zoom_range}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, 4, generator=generator, device=gen_device).to(device)  # [B, 4]
    flip = torch.where(u[:, 0] < flip_prob, -1.0, 1.0)  # [B]
    s = lo + (hi - lo) * u[:, 1]  # [B]
    cx = (1.0 - s) * (2.0 * u[:, 2] - 1.0)  # [B] centre keeps the window inside
    cy = (1.0 - s) * (2.0 * u[:, 3] - 1.0)  # [B]
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = flip * s
    theta[:, 0, 2] = flip * cx
    theta[:, 1, 1] = s
    theta[:, 1, 2] = cy
    return theta


def align_to_view2(x: Tensor, theta: Tensor, *, mode: str = "nearest", padding_mode: str = "zeros") -> Tensor:
    """Resample view-1 maps into view-2 coordinates (the release's ``_align``).

    Args:
        x: [B, C, h, w] or [B, T, C, h, w] view-1 maps (one theta per clip, shared over T).
        theta: [B, 2, 3] view-2 -> view-1 affine.
        mode: ``grid_sample`` interpolation ("nearest" in the release's losses, "bilinear" for images).
        padding_mode: ``grid_sample`` padding ("zeros" as in the release; "border" for images, whose edge samples
            fall up to half a pixel outside the pixel centres).

    Returns:
        Same shape as ``x``, float32 when ``x`` is half precision (as ``grid_sample`` needs matching dtypes).
    """
    five = x.dim() == 5
    if five:
        b, t = x.shape[:2]
        flat = x.flatten(0, 1)  # [B*T, C, h, w]
        th = theta.repeat_interleave(t, dim=0)  # [B*T, 2, 3]
    elif x.dim() == 4:
        flat, th = x, theta
    else:
        raise ValueError(f"align_to_view2: x must be [B, C, h, w] or [B, T, C, h, w], got {tuple(x.shape)}")
    dtype = torch.float32 if flat.dtype in (torch.float16, torch.bfloat16) else flat.dtype
    flat = flat.to(dtype)
    grid = F.affine_grid(th.to(dtype), list(flat.shape), align_corners=False)  # [BT, h, w, 2]
    out = F.grid_sample(flat, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.view(b, t, *out.shape[1:]) if five else out  # [B, T, C, h, w] or [B, C, h, w]


def make_second_view(
    frames: Tensor,
    *,
    generator: torch.Generator | None = None,
    zoom_range: tuple[float, float] = (0.5, 1.0),
    flip_prob: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """The release's second view: one random flip + zoom-crop per clip, shared by its frames.

    Args:
        frames: [B, T, 3, H, W] (normalised) view-1 frames.
        generator: randomness source.
        zoom_range: relative crop size range.
        flip_prob: horizontal flip probability.

    Returns:
        (frames2 [B, T, 3, H, W] view-2 frames (bilinear), theta [B, 2, 3] view-2 -> view-1 affine).
    """
    if frames.dim() != 5:
        raise ValueError(f"make_second_view: frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
    theta = sample_view_theta(
        frames.shape[0], zoom_range=zoom_range, flip_prob=flip_prob, generator=generator, device=frames.device
    )
    frames2 = align_to_view2(frames, theta, mode="bilinear", padding_mode="border").to(frames.dtype)
    return frames2, theta
