"""BL30K (MiVOS's synthetic Blender videos) layout reader and object filter for stage-1 pre-training.

Contents: :func:`find_bl30k_parts`, :class:`BL30KObjectFilter`, :func:`bl30k_clip_dataset`.

Layout (facts from hkchengrex/STCN:README.md, train.py and hkchengrex/MiVOS:README.md): BL30K is organised like
DAVIS / YouTube-VOS, ``BL30K/JPEGImages/<video>/<frame>.jpg`` and ``BL30K/Annotations/<video>/<frame>.png``,
every frame annotated, 160 frames of 768 x 512 per video, 3-5 objects. It is distributed as six segments
(``BL30K_a`` ... ``BL30K_f``, about 115 GB each). :func:`find_bl30k_parts` accepts the merged folder or a folder
whose sub-folders (up to two levels down) are extracted segments with that layout.

Object filter (STCN's rule for the rendered objects, which are often tiny): in the first augmented frame keep an
object that covers more than 10^2 pixels and either more than 30^2 pixels, or stays below 20^2 pixels in every
other frame of the clip (small in the first frame because it *is* small, not because it is just entering). The
thresholds are defined for 384 x 384 crops and scaled by the crop area for other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np

from corrvos.data.clips import VOSClipDataset
from corrvos.data.transforms import ClipAugmentConfig
from corrvos.errors import DataError

__all__ = ["BL30KObjectFilter", "bl30k_clip_dataset", "find_bl30k_parts"]


def _is_part(folder: Path) -> bool:
    return (folder / "JPEGImages").is_dir() and (folder / "Annotations").is_dir()


def find_bl30k_parts(root: str | PathLike) -> list[Path]:
    """Folders under ``root`` (itself, or up to two levels down) that hold ``JPEGImages`` and ``Annotations``.

    Raises:
        DataError: ``root`` is missing or holds no such folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "BL30K folder not found")
    if _is_part(root):
        return [root]
    parts = [p for p in sorted(root.iterdir()) if p.is_dir() and _is_part(p)]
    if not parts:
        parts = [
            q for p in sorted(root.iterdir()) if p.is_dir() for q in sorted(p.iterdir()) if q.is_dir() and _is_part(q)
        ]
    if not parts:
        raise DataError(
            root,
            "no BL30K layout found: expected JPEGImages/<video>/*.jpg and "
            "Annotations/<video>/*.png here or in extracted segment folders below",
        )
    return parts


@dataclass(frozen=True)
class BL30KObjectFilter:
    """STCN's size filter for BL30K objects (picklable, so it works in DataLoader workers).

    Attributes:
        area_scale: (crop height * crop width) / 384^2; the 10^2 / 30^2 / 20^2 pixel thresholds are multiplied by it.
    """

    area_scale: float = 1.0

    @classmethod
    def for_size(cls, size: tuple[int, int]) -> BL30KObjectFilter:
        return cls(area_scale=size[0] * size[1] / (384.0 * 384.0))

    def __call__(self, labels: np.ndarray, candidates: list[int]) -> list[int]:
        """Keep the candidate ids of ``labels[0]`` that pass the rule; labels: [T, H, W] uint8."""
        tiny, large, small_elsewhere = (s * s * self.area_scale for s in (10, 30, 20))
        kept = []
        for object_id in candidates:
            areas = (labels == object_id).reshape(labels.shape[0], -1).sum(axis=1)  # [T, H*W] -> [T]
            first, others = float(areas[0]), areas[1:]
            if first <= tiny:
                continue
            if first > large or others.size == 0 or float(others.max()) < small_elsewhere:
                kept.append(object_id)
        return kept


def bl30k_clip_dataset(
    root: str | PathLike, *, augment: ClipAugmentConfig | None = None, filter_objects: bool = True, **kwargs
) -> VOSClipDataset:
    """Training clips of BL30K (all segments found under ``root``).

    Args:
        root: the BL30K folder (see :func:`find_bl30k_parts`).
        augment: defaults to the video recipe with crop scale 0.25-1.0 (STCN's BL30K recipe) at 384 x 384.
        filter_objects: apply :class:`BL30KObjectFilter` (STCN does).
        **kwargs: passed to :class:`VOSClipDataset` (num_frames, max_objects, max_skip, seed, ...). The max-skip
            curriculum of this stage is the family's ``curricula["bl30k"]`` (``corrvos.families``).
    """
    parts = find_bl30k_parts(root)
    augment = augment if augment is not None else replace(ClipAugmentConfig.video(), crop_scale=(0.25, 1.0))
    object_filter = BL30KObjectFilter.for_size(augment.size) if filter_objects else None
    return VOSClipDataset(
        [p / "JPEGImages" for p in parts],
        [p / "Annotations" for p in parts],
        augment=augment,
        object_filter=object_filter,
        **kwargs,
    )
