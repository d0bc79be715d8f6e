"""Image panels for the figures: titled tiles laid out in grids, drawn with OpenCV on uint8 RGB arrays.

Every figure made of frames (``correspondence``, ``matches``, ``compare``) is a grid of equal tiles: a title bar
of ``lines`` text lines (``LINE_HEIGHT`` pixels each) above the frame, which is enlarged by an integer factor
(:func:`panel_scale`) so that small frames still leave room for the titles. The size of a figure is therefore
known in advance: ``rows * (lines * LINE_HEIGHT + s * H)`` by ``cols * s * W``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "LINE_HEIGHT",
    "MIN_PANEL_WIDTH",
    "draw_text",
    "fit_font_scale",
    "grid",
    "heat_colors",
    "panel_scale",
    "scale_image",
    "titled",
]

LINE_HEIGHT = 18
MIN_PANEL_WIDTH = 320
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.45


def panel_scale(width: int, min_width: int = MIN_PANEL_WIDTH) -> int:
    """Integer enlargement factor of a frame ``width`` pixels wide: the smallest s >= 1 with s * width >= min_width."""
    return max(1, -(-min_width // max(width, 1)))


def scale_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an image [H, W, ...] by an integer factor (nearest neighbour, so label colours stay exact)."""
    if factor == 1:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def draw_text(
    image: np.ndarray,
    text: str,
    org: tuple[int, int],
    colour: tuple[int, int, int] = (255, 255, 255),
    *,
    outline: bool = True,
    scale: float = _FONT_SCALE,
) -> None:
    """Write ``text`` with its baseline starting at ``org`` = (x, y), in place; a black outline keeps it legible."""
    if outline:
        cv2.putText(image, text, org, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def fit_font_scale(lines: list[str], width: int, *, largest: float, smallest: float = _FONT_SCALE) -> float:
    """The largest font scale in [``smallest``, ``largest``] (steps of 0.05) at which every line fits ``width``
    pixels with a 4-pixel margin on each side (``smallest`` when none does)."""
    scale = largest
    while scale > smallest:
        if all(cv2.getTextSize(line, _FONT, scale, 1)[0][0] <= width - 8 for line in lines):
            return scale
        scale = round(scale - 0.05, 2)
    return smallest


def titled(
    image: np.ndarray,
    lines: list[str],
    num_lines: int,
    *,
    font_scale: float = _FONT_SCALE,
    line_height: int = LINE_HEIGHT,
) -> np.ndarray:
    """``image`` [H, W, 3] under a black title bar of ``num_lines`` lines -> [num_lines * line_height + H, W, 3]."""
    bar = np.zeros((num_lines * line_height, image.shape[1], 3), np.uint8)
    for i, line in enumerate(lines[:num_lines]):
        draw_text(bar, line, (4, (i + 1) * line_height - max(5, line_height // 4)), outline=False, scale=font_scale)
    return np.concatenate([bar, image], axis=0)


def grid(tiles: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized tiles [h, w, 3] -> one image [rows * h, cols * w, 3] (short rows padded black)."""
    h, w = tiles[0][0].shape[:2]
    cols = max(len(row) for row in tiles)
    out = np.zeros((len(tiles) * h, cols * w, 3), np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return out


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] [H, W] to RGB uint8 [H, W, 3] with the jet colour map (blue low, red high)."""
    gray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
