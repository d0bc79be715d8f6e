"""Pseudo-videos from static images with a foreground mask (STCN / XMem stage-0 pre-training).

Contents: :class:`StaticPseudoVideoDataset`, :func:`find_image_mask_pairs`, :func:`read_binary_mask`.

Accepted naming (any folder tree, searched recursively): an image ``name.jpg`` (also ``.jpeg``, ``.bmp``,
``.webp``, any letter case) and its mask ``name.png`` in the same folder. This covers the layouts STCN's static
data ships in (FSS-1000 ``class/1.jpg`` + ``class/1.png``; DUTS, ECSSD, BIG, HRSOD ``x.jpg`` + ``x.png``). With
``mask_root`` given, masks are looked up at the same relative path under that folder instead
(``image_root/a/x.jpg`` -> ``mask_root/a/x.png``), which also allows PNG images. A mask may be grayscale or
RGB (object = luminance > 127, i.e. STCN's threshold 0.5) or a palette PNG (object = any non-zero index).

Each item is one image turned into a T-frame clip by the static recipe of
:meth:`corrvos.data.transforms.ClipAugmentConfig.static_images` (clip-level scale/flip/colour, per-frame affine,
resize-and-crop, colour and a thin-plate-spline warp with probability 0.33). STCN's stage 0 is single-object
(``max_objects=1``). With ``max_objects > 1`` the XMem rule applies: 0 .. N-1 further random images of the
dataset are augmented the same way and pasted on top through their masks, each becoming one more object.
Randomness is a function of (seed, epoch, index) as in :mod:`corrvos.data.clips`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from corrvos.data.clips import ClipItem
from corrvos.data.io import read_image
from corrvos.data.sampling import item_rng
from corrvos.data.transforms import ClipAugmentConfig, augment_clip, normalize_frames
from corrvos.errors import ConfigError, DataError

__all__ = ["STATIC_IMAGE_EXTENSIONS", "StaticPseudoVideoDataset", "find_image_mask_pairs", "read_binary_mask"]

logger = logging.getLogger(__name__)

STATIC_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".bmp", ".webp")


def find_image_mask_pairs(
    image_root: str | PathLike, mask_root: str | PathLike | None = None
) -> list[tuple[Path, Path]]:
    """All (image, mask) pairs under ``image_root``, sorted by image path.

    Raises:
        DataError: the folder is missing, holds no image, or an image has no mask.
    """
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise DataError(image_root, "image folder not found")
    extensions = STATIC_IMAGE_EXTENSIONS + ((".png",) if mask_root is not None else ())
    images = sorted(p for p in image_root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not images:
        raise DataError(image_root, f"no image ({', '.join(extensions)}) found")
    pairs = []
    for image in images:
        if mask_root is None:
            mask = image.with_suffix(".png")
        else:
            mask = (Path(mask_root) / image.relative_to(image_root)).with_suffix(".png")
        if not mask.is_file():
            raise DataError(
                image,
                f"mask {mask} not found (expected next to the image, same name, .png)"
                if mask_root is None
                else f"mask {mask} not found",
            )
        pairs.append((image, mask))
    return pairs


def read_binary_mask(path: str | PathLike) -> np.ndarray:
    """Read a foreground mask as uint8 {0, 1} [H, W] (palette: index > 0; otherwise luminance > 127)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode == "P":
                return (np.array(img) > 0).astype(np.uint8)
            return (np.array(img.convert("L")) > 127).astype(np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode mask ({exc})") from exc


class StaticPseudoVideoDataset(Dataset):
    """T-frame pseudo-videos from static image + mask pairs.

    Args:
        roots: one folder or several (e.g. FSS-1000, DUTS-TR, DUTS-TE, ECSSD, BIG_small, HRSOD_small).
        repeats: how many times each root is listed (STCN: 1 for the first four, 5 for BIG and HRSOD).
        mask_roots: optional mask folder per root (None entries: masks next to the images).
        num_frames: T.
        max_objects: N; 1 for STCN's single-object stage 0.
        augment: the recipe (default: STCN's static recipe at 384 x 384).
        max_attempts: augmentations drawn before giving up on an image whose object leaves the first frame.
        seed: base seed of the item generators.

    Raises:
        DataError: missing folders or masks (at construction); an unreadable file, a mask of another size than
            its image, an empty mask or an object never visible in ``max_attempts`` draws (in ``__getitem__``).
    """

    def __init__(
        self,
        roots: str | PathLike | Sequence[str | PathLike],
        *,
        repeats: Sequence[int] | None = None,
        mask_roots: Sequence[str | PathLike | None] | None = None,
        num_frames: int = 3,
        max_objects: int = 1,
        augment: ClipAugmentConfig | None = None,
        max_attempts: int = 20,
        seed: int = 0,
    ) -> None:
        roots = [Path(roots)] if isinstance(roots, (str, PathLike)) else [Path(r) for r in roots]
        repeats = [1] * len(roots) if repeats is None else [int(r) for r in repeats]
        mask_roots = [None] * len(roots) if mask_roots is None else list(mask_roots)
        if len(repeats) != len(roots) or len(mask_roots) != len(roots) or any(r < 0 for r in repeats):
            raise ConfigError(f"need one non-negative repeat count and one mask root per image root ({len(roots)})")
        if num_frames < 1 or max_objects < 1 or max_attempts < 1:
            raise ConfigError(
                f"num_frames, max_objects and max_attempts must be >= 1, got {num_frames}, "
                f"{max_objects}, {max_attempts}"
            )
        self.num_frames = num_frames
        self.max_objects = max_objects
        self.augment = augment if augment is not None else ClipAugmentConfig.static_images()
        self.max_attempts = max_attempts
        self.seed = seed
        self.epoch = 0
        self.pairs: list[tuple[Path, Path]] = []
        self._names: list[str] = []
        for root, mask_root, repeat in zip(roots, mask_roots, repeats, strict=True):
            pairs = find_image_mask_pairs(root, mask_root)
            logger.info("%d image/mask pairs in %s (x%d)", len(pairs), root, repeat)
            self.pairs.extend(pairs * repeat)
            self._names.extend([f"{root.name}/{p[0].relative_to(root).as_posix()}" for p in pairs] * repeat)
        if not self.pairs:
            raise DataError(roots[0], "no image/mask pair selected (all repeat counts are 0)")

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips ``__getitem__`` returns (part of every item's seed)."""
        self.epoch = int(epoch)

    def _read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_binary_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(
                mask_path,
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{image_path.name} ({image.shape[1]}x{image.shape[0]})",
            )
        if not mask.any():
            raise DataError(mask_path, "mask is empty (no pixel above 127)")
        return image, mask

    def _pseudo_clip(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self._read_pair(index)
        frames, masks = augment_clip([image] * self.num_frames, [mask] * self.num_frames, self.augment, rng)
        return frames, masks  # [T, H, W, 3] float in [0, 1], [T, H, W] uint8 {0, 1}

    def __getitem__(self, index: int) -> ClipItem:
        for attempt in range(self.max_attempts):
            rng = item_rng(self.seed, self.epoch, index, attempt)
            frames, masks = self._pseudo_clip(index, rng)
            labels = masks.astype(np.int64)  # [T, H, W], layer 1 = the indexed image
            extra = int(rng.integers(0, self.max_objects)) if self.max_objects > 1 else 0
            for layer, other in enumerate(rng.integers(0, len(self.pairs), size=extra), start=2):
                other_frames, other_masks = self._pseudo_clip(int(other), rng)
                paste = other_masks.astype(bool)  # [T, H, W]
                frames = np.where(paste[..., None], other_frames, frames)  # [T, H, W, 1] broadcast over RGB
                labels[paste] = layer
            visible = [int(v) for v in np.unique(labels[0]) if v != 0]
            if not visible:
                continue
            slots = np.zeros_like(labels)
            for slot, layer in enumerate(visible, start=1):
                slots[labels == layer] = slot
            return ClipItem(
                frames=normalize_frames(frames),
                labels=torch.from_numpy(slots),
                num_objects=len(visible),
                max_objects=self.max_objects,
                name=self._names[index],
                frame_ids=tuple(f"{self.pairs[index][0].stem}#{t}" for t in range(self.num_frames)),
                object_ids=tuple(visible),
            )
        raise DataError(
            self.pairs[index][1],
            f"the object is outside the first frame in all {self.max_attempts} "
            "augmentations drawn (object too small or at the border?)",
        )
