"""Clip-consistent joint image / label augmentation for training clips (the STCN and XMem recipes).

Contents: :class:`AffineRange`, :class:`ColorJitterRange`, :class:`ClipAugmentConfig` (the video and static-image
recipes as classmethods; each model family's official presets live in its package, ``corrvos.families.<name>``),
:func:`augment_clip` (the whole pipeline for one clip) and :func:`normalize_frames` (ImageNet normalisation to a
[T, 3, H, W] tensor).

The recipe (facts from hkchengrex/STCN:dataset/vos_dataset.py and static_dataset.py, restated, not copied):

- drawn once per clip and shared by all its frames: horizontal flip, RandomResizedCrop (video) or a
  scale-only affine (static images), colour jitter and random grayscale;
- drawn per frame: a random affine (rotation, shear, scale), the resize-and-crop of the static recipe, a small
  colour jitter and (static images only) a thin-plate-spline warp with probability 0.33.

Design (why not torchvision or Albumentations):

- torchvision cannot be imported in this project. Albumentations 2.0.8 (MIT) installs from PyPI but pulls in
  pydantic and a pinned ``albucore``; it is the last release of the MIT line (development moved to a separately
  licensed successor); and it draws its parameters from its own internal generator, so sharing one draw across
  a clip and making every draw a function of (seed, epoch, index) would need ``ReplayCompose`` bookkeeping on
  top. The handful of operations the recipe needs are short with OpenCV and numpy, and every random number here
  comes from the ``numpy.random.Generator`` the caller passes, so a clip is exactly reproducible.
- All geometric steps of a frame (clip affine, flip, crop/resize, frame affine, final crop) are composed into
  one 3x3 matrix and applied with a single ``cv2.warpAffine``: one interpolation instead of three, and much
  faster at small output sizes. Images use bicubic (STCN) or bilinear (XMem) interpolation, masks nearest, and
  the image is first shrunk with ``INTER_AREA`` when the warp scales it down by more than 2x (anti-aliasing).
  A consequence of composing: where the sequential recipe would fill the corners of a rotated crop with the
  mean colour although the source frame has content there, this pipeline shows that content; pixels outside
  the source frame get the fill colour (124, 116, 104) for images and 0 (background) for masks.
- Colour operations run after the warp on float32 RGB in [0, 1]: brightness (multiply), contrast (blend with
  the mean luminance), saturation (blend with the luminance image), hue (rotation in HSV), applied in a random
  order as torchvision's ColorJitter does; grayscale uses the ITU-R 601 luma weights.

Coordinates: pixel centres sit at integer coordinates (OpenCV's convention); matrices map source pixel
coordinates (x, y, 1) to output pixel coordinates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from torch import Tensor

from corrvos.data.tps import tps_warp
from corrvos.errors import ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AffineRange",
    "ClipAugmentConfig",
    "ColorJitterRange",
    "augment_clip",
    "normalize_frames",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_INTERPOLATION = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
_CROP_MODES = ("resized_crop", "shorter_side", "resize")


@dataclass(frozen=True)
class AffineRange:
    """Ranges of a random affine about the image centre (torchvision ``RandomAffine`` semantics).

    Attributes:
        degrees: rotation angle drawn uniformly from [-degrees, degrees].
        shear: x-shear angle drawn uniformly from [-shear, shear] (degrees).
        scale: isotropic scale drawn uniformly from [scale[0], scale[1]].
    """

    degrees: float = 0.0
    shear: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one affine; returns the 2x2 linear part A = scale * R(angle) * Shear(shear)."""
        angle = math.radians(rng.uniform(-self.degrees, self.degrees)) if self.degrees else 0.0
        shear = math.radians(rng.uniform(-self.shear, self.shear)) if self.shear else 0.0
        scale = rng.uniform(*self.scale) if self.scale[0] != self.scale[1] else self.scale[0]
        c, s = math.cos(angle), math.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        shearing = np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
        return scale * rotation @ shearing


@dataclass(frozen=True)
class ColorJitterRange:
    """Colour jitter strengths (torchvision ``ColorJitter`` semantics: factors in [1 - x, 1 + x], hue in [-h, h])."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue))

    def sample(self, rng: np.random.Generator) -> list[tuple[str, float]]:
        """Draw the factors and their random order; returns [(operation, factor), ...]."""
        if not self.active:
            return []
        ops = []
        for name in ("brightness", "contrast", "saturation"):
            strength = getattr(self, name)
            if strength > 0:
                ops.append((name, float(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))))
        if self.hue > 0:
            ops.append(("hue", float(rng.uniform(-self.hue, self.hue))))
        order = rng.permutation(len(ops))
        return [ops[i] for i in order]


def _apply_jitter(image: np.ndarray, ops: list[tuple[str, float]]) -> np.ndarray:
    """Apply sampled jitter operations to float32 RGB [H, W, 3] in [0, 1]."""
    for name, factor in ops:
        if name == "brightness":
            image = image * factor
        elif name == "contrast":
            mean = float((image @ _LUMA).mean())
            image = factor * image + (1.0 - factor) * mean
        elif name == "saturation":
            gray = (image @ _LUMA)[..., None]  # [H, W, 1]
            image = factor * image + (1.0 - factor) * gray
        else:  # hue: rotate H (OpenCV float HSV has H in [0, 360))
            hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = np.mod(hsv[..., 0] + factor * 360.0, 360.0)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        image = np.clip(image, 0.0, 1.0)
    return image.astype(np.float32, copy=False)


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ConfigError(f"augmentation size must be an int or (height, width), got {size!r}")
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class ClipAugmentConfig:
    """Parameters of the clip augmentation; the classmethods give the published recipes.

    Attributes:
        size: output (height, width); an int means square.
        crop: "resized_crop" (per-clip RandomResizedCrop, video recipe), "shorter_side" (per-frame resize of
            the shorter side to the output size then a random crop, static-image recipe) or "resize" (the whole
            frame resized to the output size, aspect not kept; no randomness from the crop).
        crop_scale: RandomResizedCrop area fraction range.
        crop_ratio: RandomResizedCrop aspect-ratio (w / h) range.
        hflip_prob: probability of a per-clip horizontal flip.
        clip_affine: per-clip affine about the source centre (static recipe: scale 0.8-1.5).
        frame_affine: per-frame affine (video: 15 degrees, shear 10; static: 20 degrees, shear 10, scale 0.9-1.1).
        clip_jitter: per-clip colour jitter.
        grayscale_prob: probability that the whole clip becomes grayscale.
        frame_jitter: per-frame colour jitter.
        tps_prob: per-frame probability of a thin-plate-spline warp (static recipe: 0.33).
        tps_points: number of TPS control points.
        tps_sigma: standard deviation of the control-point offsets, in units of the image size.
        interpolation: "cubic" (STCN) or "linear" (XMem) for images; masks always use nearest.
        fill: RGB colour (0-255) of pixels that come from outside the source frame.
    """

    size: tuple[int, int] = (384, 384)
    crop: str = "resized_crop"
    crop_scale: tuple[float, float] = (0.36, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip_prob: float = 0.5
    clip_affine: AffineRange = field(default_factory=AffineRange)
    frame_affine: AffineRange = field(default_factory=lambda: AffineRange(degrees=15.0, shear=10.0))
    clip_jitter: ColorJitterRange = field(default_factory=lambda: ColorJitterRange(0.1, 0.03, 0.03, 0.0))
    grayscale_prob: float = 0.05
    frame_jitter: ColorJitterRange = field(default_factory=lambda: ColorJitterRange(0.01, 0.01, 0.01, 0.0))
    tps_prob: float = 0.0
    tps_points: int = 12
    tps_sigma: float = 0.02
    interpolation: str = "cubic"
    fill: tuple[int, int, int] = (124, 116, 104)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _as_size(self.size))
        if min(self.size) < 1:
            raise ConfigError(f"augmentation size must be positive, got {self.size}")
        if self.crop not in _CROP_MODES:
            raise ConfigError(f"crop must be one of {_CROP_MODES}, got {self.crop!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ConfigError(f"interpolation must be one of {tuple(_INTERPOLATION)}, got {self.interpolation!r}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ConfigError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        for name in ("hflip_prob", "grayscale_prob", "tps_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    @classmethod
    def video(cls, size: int | Sequence[int] = 384) -> ClipAugmentConfig:
        """The video recipe (the field defaults: STCN's main training on DAVIS / YouTube-VOS, bicubic)."""
        return cls(size=_as_size(size))

    @classmethod
    def static_images(cls, size: int | Sequence[int] = 384) -> ClipAugmentConfig:
        """Stage-0 static-image pseudo-videos (STCN's recipe, which XMem also uses)."""
        return cls(
            size=_as_size(size),
            crop="shorter_side",
            hflip_prob=0.5,
            clip_affine=AffineRange(scale=(0.8, 1.5)),
            frame_affine=AffineRange(degrees=20.0, shear=10.0, scale=(0.9, 1.1)),
            clip_jitter=ColorJitterRange(0.1, 0.05, 0.05, 0.05),
            grayscale_prob=0.05,
            frame_jitter=ColorJitterRange(0.1, 0.05, 0.05, 0.0),
            tps_prob=0.33,
        )

    @classmethod
    def none(cls, size: int | Sequence[int] = 384) -> ClipAugmentConfig:
        """No randomness: every frame is resized to ``size`` (for evaluation-like clips and tests)."""
        return cls(
            size=_as_size(size),
            crop="resize",
            hflip_prob=0.0,
            frame_affine=AffineRange(),
            clip_jitter=ColorJitterRange(),
            grayscale_prob=0.0,
            frame_jitter=ColorJitterRange(),
            tps_prob=0.0,
        )

    def with_size(self, size: int | Sequence[int]) -> ClipAugmentConfig:
        """The same recipe at another output size."""
        return replace(self, size=_as_size(size))


# ----------------------------------------------------------------------------------------------------------------
# geometry: 3x3 matrices mapping source pixel coordinates to output pixel coordinates


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _linear_about(linear: np.ndarray, cx: float, cy: float) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] = linear
    return _translate(cx, cy) @ m @ _translate(-cx, -cy)


def _box_to_output(x0: float, y0: float, w: float, h: float, out_w: int, out_h: int) -> np.ndarray:
    """Map the box [x0, x0 + w) x [y0, y0 + h) (pixel edges) onto an out_w x out_h image (pixel edges)."""
    sx, sy = out_w / w, out_h / h
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5], [0.0, 0.0, 1.0]])


def _hflip(width: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _sample_resized_crop(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """RandomResizedCrop box (x0, y0, w, h): 10 tries of area/ratio draws, then a ratio-clamped centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _warp_image(
    image: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int, interpolation: int, fill: tuple[int, int, int]
) -> np.ndarray:
    """Warp uint8 RGB [H, W, 3] by a source->output matrix, pre-shrinking with INTER_AREA when minifying > 2x."""
    zoom = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if zoom < 0.5:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * zoom * 2)), max(1, round(h * zoom * 2))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.linalg.inv(_box_to_output(0, 0, w, h, new_w, new_h))
    return cv2.warpAffine(
        image,
        matrix[:2],
        (out_w, out_h),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(c) for c in fill),
    )


def _warp_label(label: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    return cv2.warpAffine(
        label, matrix[:2], (out_w, out_h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def augment_clip(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], cfg: ClipAugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one clip with parameters shared by the clip and parameters drawn per frame.

    Args:
        images: T uint8 RGB frames [H, W, 3], all the same size.
        labels: T uint8 label maps [H, W] (0 background, k object id), same size as the frames.
        cfg: the recipe.
        rng: the only source of randomness; the same generator state gives the same clip.

    Returns:
        frames: float32 [T, H', W', 3] RGB in [0, 1], (H', W') = ``cfg.size``.
        labels: uint8 [T, H', W'].
    """
    if len(images) != len(labels) or not images:
        raise ValueError(f"augment_clip needs as many labels as images (got {len(images)} and {len(labels)})")
    height, width = images[0].shape[:2]
    out_h, out_w = cfg.size
    interpolation = _INTERPOLATION[cfg.interpolation]

    # --- drawn once per clip (fixed order of draws)
    flip = rng.random() < cfg.hflip_prob
    clip_linear = cfg.clip_affine.sample(rng)
    src_affine = _linear_about(clip_linear, (width - 1) / 2, (height - 1) / 2)
    if cfg.crop == "resized_crop":
        box = _sample_resized_crop(height, width, cfg.crop_scale, cfg.crop_ratio, rng)
    else:
        box = (0, 0, width, height)
    clip_jitter = cfg.clip_jitter.sample(rng)
    gray = rng.random() < cfg.grayscale_prob

    out_frames = np.empty((len(images), out_h, out_w, 3), dtype=np.float32)
    out_labels = np.empty((len(images), out_h, out_w), dtype=np.uint8)
    for t, (image, label) in enumerate(zip(images, labels, strict=True)):
        # --- drawn per frame
        frame_linear = cfg.frame_affine.sample(rng)
        if cfg.crop == "shorter_side":
            geo = (_hflip(width) if flip else np.eye(3)) @ src_affine
            geo = _linear_about(frame_linear, (width - 1) / 2, (height - 1) / 2) @ geo
            s = max(out_h / height, out_w / width)
            rw, rh = round(width * s), round(height * s)
            ox = int(rng.integers(min(0, rw - out_w), max(0, rw - out_w) + 1))
            oy = int(rng.integers(min(0, rh - out_h), max(0, rh - out_h) + 1))
            geo = _translate(-ox, -oy) @ _box_to_output(0, 0, width, height, rw, rh) @ geo
        else:
            geo = _box_to_output(*box, out_w, out_h) @ src_affine
            if flip:
                geo = _hflip(out_w) @ geo
            geo = _linear_about(frame_linear, (out_w - 1) / 2, (out_h - 1) / 2) @ geo
        frame_jitter = cfg.frame_jitter.sample(rng)
        warped = _warp_image(image, geo, out_w, out_h, interpolation, cfg.fill)  # [H', W', 3] uint8
        warped_label = _warp_label(label, geo, out_w, out_h)  # [H', W'] uint8
        if cfg.tps_prob > 0 and rng.random() < cfg.tps_prob:
            warped, warped_label = tps_warp(
                warped, warped_label, rng, num_points=cfg.tps_points, sigma=cfg.tps_sigma, fill=cfg.fill
            )

        frame = warped.astype(np.float32) / 255.0
        frame = _apply_jitter(frame, clip_jitter)
        if gray:
            frame = np.repeat((frame @ _LUMA)[..., None], 3, axis=2)  # [H', W', 1] -> [H', W', 3]
        frame = _apply_jitter(frame, frame_jitter)
        out_frames[t] = frame
        out_labels[t] = warped_label
    return out_frames, out_labels


def normalize_frames(frames: np.ndarray) -> Tensor:
    """float32 RGB [T, H, W, 3] in [0, 1] -> ImageNet-normalised float32 tensor [T, 3, H, W]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)  # [T, 3, H, W]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((tensor - mean) / std).contiguous()
