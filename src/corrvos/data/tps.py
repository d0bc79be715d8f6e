"""Random thin-plate-spline (TPS) warps for static-image pseudo-videos.

Contents: :func:`random_tps_maps` (``cv2.remap`` maps of a random TPS warp) and :func:`tps_warp` (warp an
image and its label map with them).

The recipe (a fact from hkchengrex/STCN:dataset/tps.py, restated): pick 12 random control points, move each by
Gaussian noise with standard deviation 0.02 of the image size, and warp so that the content at each original
point appears at its moved position. Here the spline is fitted with ``scipy.interpolate.RBFInterpolator``
(kernel ``thin_plate_spline`` with an affine part, i.e. the classical TPS) from the moved points (output
coordinates) to the original points (input coordinates), so evaluating it at every output pixel gives the
input position to sample. The spline is evaluated on a grid of at most 64 x 64 points and upsampled
bilinearly to the image size: a 12-point TPS is smooth enough that this changes the sampling positions by a
small fraction of a pixel, and it keeps the warp cheap at 384 x 384.

Coordinates are normalised so that (0, 0) is the top-left pixel edge and (1, 1) the bottom-right one.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

__all__ = ["random_tps_maps", "tps_warp"]

_MAX_GRID = 64


def random_tps_maps(
    height: int, width: int, rng: np.random.Generator, *, num_points: int = 12, sigma: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps of a random TPS warp.

    Args:
        height, width: size of the image to warp (output size equals input size).
        rng: source of randomness.
        num_points: number of control points (at least 3).
        sigma: standard deviation of the control-point displacement, in units of the image size.

    Returns:
        map_x, map_y: float32 [height, width] input pixel coordinates for every output pixel (``cv2.remap``).
    """
    if num_points < 3:
        raise ValueError(f"a TPS warp needs at least 3 control points, got {num_points}")
    src = rng.random((num_points, 2))  # [P, 2] (x, y) in [0, 1)
    dst = src + rng.normal(scale=sigma, size=src.shape)  # [P, 2]
    spline = RBFInterpolator(dst, src, kernel="thin_plate_spline", degree=1)
    grid_h, grid_w = min(height, _MAX_GRID), min(width, _MAX_GRID)
    # normalised positions of the grid samples, spanning the centres of the first and last output pixels
    ys = (np.linspace(0.0, height - 1.0, grid_h) + 0.5) / height
    xs = (np.linspace(0.0, width - 1.0, grid_w) + 0.5) / width
    gy, gx = np.meshgrid(ys, xs, indexing="ij")  # [gh, gw] each
    query = np.stack([gx.ravel(), gy.ravel()], axis=1)  # [gh*gw, 2]
    coarse = spline(query).reshape(grid_h, grid_w, 2).astype(np.float32)  # [gh, gw, 2] normalised input (x, y)
    if (grid_h, grid_w) != (height, width):
        # align_corners-style upsampling: grid samples sit on the first/last pixel centres
        coarse = _resize_corners(coarse, height, width)  # [H, W, 2]
    map_x = coarse[..., 0] * width - 0.5
    map_y = coarse[..., 1] * height - 0.5
    return np.ascontiguousarray(map_x, dtype=np.float32), np.ascontiguousarray(map_y, dtype=np.float32)


def _resize_corners(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of [h, w, C] samples placed on the corners of an [height, width] grid."""
    h, w = values.shape[:2]
    # matrix mapping the h x w sample lattice onto output pixel positions with matching end points
    sx = (width - 1) / (w - 1) if w > 1 else 1.0
    sy = (height - 1) / (h - 1) if h > 1 else 1.0
    matrix = np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]], dtype=np.float64)
    return cv2.warpAffine(values, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def tps_warp(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    num_points: int = 12,
    sigma: float = 0.02,
    fill: tuple[int, int, int] = (124, 116, 104),
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a uint8 RGB image [H, W, 3] (bilinear) and its uint8 label map [H, W] (nearest) by one random TPS."""
    map_x, map_y = random_tps_maps(image.shape[0], image.shape[1], rng, num_points=num_points, sigma=sigma)
    warped = cv2.remap(
        image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(c) for c in fill)
    )
    warped_label = cv2.remap(label, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, warped_label
