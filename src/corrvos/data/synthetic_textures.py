"""Seeded procedural textures for the synthetic videos: smooth noise, stripes, checkers, spots.

Conventions:
- a *field* is float32 [h, w] with values in [0, 1]; a *texture* is uint8 RGB [h, w, 3];
- a :class:`Family` is an appearance family (hue, saturation, brightness, pattern, scale). Objects of the same
  family look alike (same colours and pattern, a different random realisation); this is how the generator makes
  appearance-similar distractors;
- every function draws its randomness from the ``numpy.random.Generator`` it is given, so a texture is a pure
  function of the generator state. OpenCV is used only for deterministic resampling and blurring.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "PATTERNS",
    "Family",
    "background_texture",
    "colorize",
    "family_texture",
    "pattern_field",
    "random_family",
    "smooth_field",
]

PATTERNS = ("noise", "stripes", "checker", "spots")


@dataclass(frozen=True)
class Family:
    """An appearance family: two colours of one hue, mixed by a pattern of a given period (pixels)."""

    hue: float  # 0..1
    saturation: float  # 0..1
    value: float  # 0..1, brightness of the light colour
    contrast: float  # 0..1, how much darker the dark colour is
    pattern: str  # one of PATTERNS
    period: float  # pattern period in pixels (at the object's scale)

    def colors(self) -> tuple[np.ndarray, np.ndarray]:
        """The (dark, light) RGB colours of the family, float32 [3] in 0..255."""
        light = colorsys.hsv_to_rgb(self.hue % 1.0, self.saturation, self.value)
        dark = colorsys.hsv_to_rgb(self.hue % 1.0, min(1.0, self.saturation * 1.1), self.value * (1 - self.contrast))
        return np.array(dark, np.float32) * 255, np.array(light, np.float32) * 255


def random_family(
    rng: np.random.Generator, *, hue: float | None = None, background: bool = False, base_size: float = 100.0
) -> Family:
    """Draw an appearance family; objects get saturated colours, backgrounds muted ones.

    Args:
        rng: the random generator.
        hue: fix the hue (0..1) instead of drawing it.
        background: draw a low-saturation family for a background.
        base_size: the image's smaller side, to scale the pattern period.
    """
    hue = float(rng.random()) if hue is None else hue
    if background:
        return Family(
            hue=hue,
            saturation=float(rng.uniform(0.08, 0.3)),
            value=float(rng.uniform(0.45, 0.75)),
            contrast=float(rng.uniform(0.25, 0.5)),
            pattern=str(rng.choice(PATTERNS)),
            period=float(base_size * rng.uniform(0.08, 0.25)),
        )
    return Family(
        hue=hue,
        saturation=float(rng.uniform(0.6, 1.0)),
        value=float(rng.uniform(0.7, 1.0)),
        contrast=float(rng.uniform(0.3, 0.55)),
        pattern=str(rng.choice(PATTERNS)),
        period=float(base_size * rng.uniform(0.04, 0.1)),
    )


def smooth_field(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field [height, width] in [0, 1]: uniform noise on a grid of ``cell`` pixels, cubic-upsampled."""
    cell = max(float(cell), 1.0)
    gh, gw = int(np.ceil(height / cell)) + 3, int(np.ceil(width / cell)) + 3
    grid = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (round(gw * cell), round(gh * cell)), interpolation=cv2.INTER_CUBIC)
    offset = round(cell)
    field = big[offset : offset + height, offset : offset + width]  # [height, width]
    lo, hi = float(field.min()), float(field.max())
    return ((field - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _coords(rng: np.random.Generator, height: int, width: int, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotated coordinates (u, v) [height, width] in units of ``period``, at a random angle."""
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)  # [height, width] each
    u = (x * np.cos(angle) + y * np.sin(angle)) / period
    v = (-x * np.sin(angle) + y * np.cos(angle)) / period
    return u.astype(np.float32), v.astype(np.float32)


def pattern_field(rng: np.random.Generator, height: int, width: int, pattern: str, period: float) -> np.ndarray:
    """A field [height, width] in [0, 1] of the given pattern and period, with some smooth noise mixed in."""
    period = max(float(period), 2.0)
    noise = smooth_field(rng, height, width, period)
    if pattern == "noise":
        fine = smooth_field(rng, height, width, period / 3)
        return (0.65 * noise + 0.35 * fine).astype(np.float32)
    if pattern == "stripes":
        u, _ = _coords(rng, height, width, period)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * noise) + rng.uniform(0, 2 * np.pi))
        return (0.8 * wave + 0.2 * noise).astype(np.float32)
    if pattern == "checker":
        u, v = _coords(rng, height, width, period)
        board = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
        board = cv2.GaussianBlur(board, (0, 0), sigmaX=max(period / 12, 0.5))
        return (0.8 * board + 0.2 * noise).astype(np.float32)
    if pattern == "spots":
        fine = smooth_field(rng, height, width, period / 2)
        spots = np.clip((fine - 0.55) * 5, 0, 1)
        return (0.75 * spots + 0.25 * noise).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r} (expected one of {PATTERNS})")


def colorize(field: np.ndarray, dark: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by a field: field [h, w] in [0, 1] -> uint8 RGB [h, w, 3]."""
    rgb = dark[None, None, :] + field[:, :, None] * (light - dark)[None, None, :]  # [h, w, 3]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def family_texture(rng: np.random.Generator, family: Family, height: int, width: int) -> np.ndarray:
    """A texture uint8 RGB [height, width, 3] of the family (a new random realisation at every call)."""
    dark, light = family.colors()
    return colorize(pattern_field(rng, height, width, family.pattern, family.period), dark, light)


def background_texture(rng: np.random.Generator, height: int, width: int, *, base_size: float) -> np.ndarray:
    """A background canvas uint8 RGB [height, width, 3]: a muted patterned family plus a large-scale shading."""
    family = random_family(rng, background=True, base_size=base_size)
    dark, light = family.colors()
    field = pattern_field(rng, height, width, family.pattern, family.period)
    # a second, larger-scale layer of another muted hue breaks up the regularity of the pattern
    second = random_family(rng, background=True, base_size=base_size)
    d2, l2 = second.colors()
    blotch = smooth_field(rng, height, width, base_size * 0.6)
    rgb = colorize(field, dark, light).astype(np.float32)  # [h, w, 3]
    rgb2 = colorize(smooth_field(rng, height, width, base_size * 0.15), d2, l2).astype(np.float32)
    weight = np.clip((blotch - 0.45) * 3, 0, 1)[:, :, None]  # [h, w, 1]
    shade = 0.8 + 0.4 * smooth_field(rng, height, width, base_size * 1.5)[:, :, None]  # [h, w, 1]
    return np.clip((rgb * (1 - weight) + rgb2 * weight) * shade + 0.5, 0, 255).astype(np.uint8)
