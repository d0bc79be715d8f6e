"""Training clips from video datasets (DAVIS, YouTube-VOS, BL30K, synthetic) and their collation into a ClipBatch.

Contents:

- :class:`ClipItem`: one training clip (what a dataset's ``__getitem__`` returns);
- :func:`collate_clips`: a list of items -> :class:`corrvos.types.ClipBatch` (pass it as the DataLoader's
  ``collate_fn``);
- :class:`VOSClipDataset`: clips from an image root and an annotation root with one folder per video;
- :func:`davis_clip_dataset`, :func:`youtube_clip_dataset`: the two standard layouts (BL30K:
  :mod:`corrvos.data.bl30k`; layout detection: :mod:`corrvos.data.layouts`);
- :func:`set_dataset_epoch`: forward ``set_epoch`` / ``set_max_skip`` through ``ConcatDataset`` / ``Subset``.

Layout read by :class:`VOSClipDataset`: ``image_root/<video>/<frame>.jpg`` (or .jpeg/.png/.bmp) and
``mask_root/<video>/<frame>.png`` (palette or 8-bit grayscale label maps, 0 = background, k = object k). Only
frames that have both an image and an annotation are used, so YouTube-VOS ``train/JPEGImages`` (every 5th frame)
and ``train_all_frames/JPEGImages`` both work; gaps are then counted in annotated frames, which is why YouTube-VOS
uses ``skip_divisor=5`` (STCN's ``max_skip // 5``).

Randomness: every item is a pure function of (seed, epoch, index): :func:`corrvos.data.sampling.item_rng` seeds
a numpy Generator from them (and the retry number), and every draw (frames, time reversal, augmentation,
objects) comes from it. Call ``set_epoch`` before creating each epoch's DataLoader iterator; with
``persistent_workers=True`` the workers keep the epoch and max skip they were started with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from corrvos.data.io import list_frames, read_image, read_label
from corrvos.data.sampling import effective_max_skip, item_rng, sample_frames, select_objects
from corrvos.data.transforms import ClipAugmentConfig, augment_clip, normalize_frames
from corrvos.errors import ConfigError, DataError
from corrvos.types import ClipBatch

__all__ = [
    "ClipItem",
    "ObjectFilter",
    "VOSClipDataset",
    "collate_clips",
    "davis_clip_dataset",
    "index_video",
    "read_subset",
    "set_dataset_epoch",
    "youtube_clip_dataset",
]

logger = logging.getLogger(__name__)

#: (augmented labels [T, H, W] uint8, candidate ids of the first frame) -> the ids to keep.
ObjectFilter = Callable[[np.ndarray, list[int]], list[int]]


@dataclass
class ClipItem:
    """One training clip.

    Attributes:
        frames: [T, 3, H, W] float32, ImageNet-normalised.
        labels: [T, H, W] int64 slot map: 0 background, k in 1..num_objects for slot k.
        num_objects: number of real objects (slots 1..num_objects).
        max_objects: number of slots N of the dataset (the selector length).
        name: video (or image) name.
        frame_ids: the file stems of the T frames, in clip order.
        object_ids: the original label ids held by slots 1..num_objects.
        labeled: False for a clip of an unlabeled video (labels all 0, no object; see
            :mod:`corrvos.data.unlabeled`).
    """

    frames: Tensor
    labels: Tensor
    num_objects: int
    max_objects: int
    name: str
    frame_ids: tuple[str, ...] = ()
    object_ids: tuple[int, ...] = ()
    labeled: bool = True


def collate_clips(items: Sequence[ClipItem]) -> ClipBatch:
    """Stack clip items into a :class:`ClipBatch`.

    Items may come from datasets with different ``max_objects``; the batch uses the largest (N) and pads the
    selector with zeros.

    Returns:
        ClipBatch with frames [B, T, 3, H, W], masks [B, T, N, H, W] in {0, 1}, labels [B, T, H, W] int64,
        selector [B, N], names, and ``labeled`` [B] bool when some item is unlabeled (else None).
    """
    if not items:
        raise ValueError("collate_clips needs at least one item")
    shapes = {tuple(item.frames.shape) for item in items}
    if len(shapes) != 1:
        raise ConfigError(
            f"cannot batch clips of different shapes {sorted(shapes)}: give every dataset of the "
            "loader the same number of frames and the same augmentation size"
        )
    n = max(item.max_objects for item in items)
    frames = torch.stack([item.frames for item in items])  # [B, T, 3, H, W]
    labels = torch.stack([item.labels for item in items]).long()  # [B, T, H, W]
    slots = torch.arange(1, n + 1, dtype=labels.dtype).view(1, 1, n, 1, 1)
    masks = (labels.unsqueeze(2) == slots).float()  # [B, T, 1, H, W] vs [1, 1, N, 1, 1] -> [B, T, N, H, W]
    counts = torch.tensor([item.num_objects for item in items]).view(-1, 1)  # [B, 1]
    selector = (torch.arange(n).view(1, n) < counts).float()  # [B, N]
    labeled = None if all(i.labeled for i in items) else torch.tensor([i.labeled for i in items])  # [B] bool
    return ClipBatch(
        frames=frames, masks=masks, labels=labels, selector=selector, names=[i.name for i in items], labeled=labeled
    )


def set_dataset_epoch(dataset: Dataset, epoch: int, *, max_skip: int | None = None) -> int:
    """Call ``set_epoch`` (and ``set_max_skip`` when given) on every clip dataset inside ``dataset``.

    Walks ``ConcatDataset`` and ``Subset`` wrappers. Returns how many datasets were updated.
    """
    if isinstance(dataset, ConcatDataset):
        return sum(set_dataset_epoch(d, epoch, max_skip=max_skip) for d in dataset.datasets)
    if isinstance(dataset, Subset):
        return set_dataset_epoch(dataset.dataset, epoch, max_skip=max_skip)
    touched = 0
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
        touched = 1
    if max_skip is not None and hasattr(dataset, "set_max_skip"):
        dataset.set_max_skip(max_skip)
        touched = 1
    return touched


@dataclass(frozen=True)
class _Video:
    name: str
    image_dir: Path
    images: tuple[Path, ...]
    masks: tuple[Path, ...]


def read_subset(subset: str | PathLike | Iterable[str]) -> tuple[list[str], Path | None]:
    """Video names from a text file (one per line) or an iterable; returns (names, file or None)."""
    if isinstance(subset, (str, PathLike)):
        path = Path(subset)
        if not path.is_file():
            raise DataError(path, "video subset list not found")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return names, path
    return [str(name) for name in subset], None


def index_video(name: str, image_dir: Path, mask_dir: Path) -> _Video:
    """Pair the frames of one video with their annotations (by file stem)."""
    if not mask_dir.is_dir():
        raise DataError(mask_dir, f"annotation folder of video {name!r} not found")
    masks = {p.stem: p for p in list_frames(mask_dir, (".png",))}
    images = [p for p in list_frames(image_dir) if p.stem in masks]
    return _Video(name, image_dir, tuple(images), tuple(masks[p.stem] for p in images))


class VOSClipDataset(Dataset):
    """Training clips of T frames with up to N objects from folders of annotated videos (STCN / XMem recipe).

    Each item: sample T frames with gaps bounded by the max skip (time reversed with probability 0.5), augment
    them with one clip-level and T frame-level draws, choose up to ``max_objects`` objects that are visible in
    the first (augmented) frame, and retry with a fresh draw (``max_attempts`` in all) when there is none.

    Args:
        image_root: folder with one sub-folder of frames per video (or a list of such folders).
        mask_root: folder with one sub-folder of annotation PNGs per video (a list matching ``image_root``).
        num_frames: T (3 for STCN, 8 for XMem).
        max_objects: N, the number of object slots (STCN main training: 2; XMem: 3).
        max_skip: initial max skip (changed with :meth:`set_max_skip`).
        skip_divisor: divide the max skip by this (5 for YouTube-VOS train, annotated every 5th frame).
        subset: names of the videos to use (a list, or a text file with one name per line); None = all.
        augment: the augmentation recipe (default: STCN's video recipe at 384 x 384).
        sampling: frame sampler, "auto" / "chain" / "window" (see :func:`corrvos.data.sampling.sample_frames`).
        reverse_prob: probability of reversing time.
        max_attempts: clips drawn before giving up on a video whose first frame shows no object (20: at small
            frame sizes a crop misses every object of a clip's first frame a few percent of the time, so 5 draws
            was not enough to never fail in a long run; a failed draw costs one PNG read or one augmentation).
        object_filter: optional rule that drops candidate objects (BL30K's size filter).
        short_videos: "error" (default) raises DataError for a video with fewer than T annotated frames,
            "skip" leaves it out with a warning.
        seed: base seed of the item generators.

    Raises:
        DataError: a missing folder, an unknown subset name, a short video (unless skipped), an unreadable file,
            a frame whose annotation has another size, or a video with no visible object in ``max_attempts``
            clips (raised by ``__getitem__``).
    """

    def __init__(
        self,
        image_root: str | PathLike | Sequence[str | PathLike],
        mask_root: str | PathLike | Sequence[str | PathLike],
        *,
        num_frames: int = 3,
        max_objects: int = 2,
        max_skip: int = 5,
        skip_divisor: int = 1,
        subset: str | PathLike | Iterable[str] | None = None,
        augment: ClipAugmentConfig | None = None,
        sampling: str = "auto",
        reverse_prob: float = 0.5,
        max_attempts: int = 20,
        object_filter: ObjectFilter | None = None,
        short_videos: str = "error",
        seed: int = 0,
    ) -> None:
        image_roots = [Path(image_root)] if isinstance(image_root, (str, PathLike)) else [Path(p) for p in image_root]
        mask_roots = [Path(mask_root)] if isinstance(mask_root, (str, PathLike)) else [Path(p) for p in mask_root]
        if len(image_roots) != len(mask_roots) or not image_roots:
            raise ConfigError(f"need one annotation root per image root, got {len(image_roots)} and {len(mask_roots)}")
        if num_frames < 1 or max_objects < 1 or max_attempts < 1:
            raise ConfigError(
                f"num_frames, max_objects and max_attempts must be >= 1, got {num_frames}, "
                f"{max_objects}, {max_attempts}"
            )
        if short_videos not in ("error", "skip"):
            raise ConfigError(f"short_videos must be 'error' or 'skip', got {short_videos!r}")
        effective_max_skip(max_skip, skip_divisor)  # validates both
        self.num_frames = num_frames
        self.max_objects = max_objects
        self.max_skip = max_skip
        self.skip_divisor = skip_divisor
        self.augment = augment if augment is not None else ClipAugmentConfig.video()
        self.sampling = sampling
        self.reverse_prob = reverse_prob
        self.max_attempts = max_attempts
        self.object_filter = object_filter
        self.seed = seed
        self.epoch = 0
        sample_frames(num_frames, num_frames, 1, np.random.default_rng(0), method=sampling)  # validates sampling

        wanted, subset_file = read_subset(subset) if subset is not None else (None, None)
        found: dict[str, tuple[Path, Path]] = {}
        for image_base, mask_base in zip(image_roots, mask_roots, strict=True):
            if not image_base.is_dir():
                raise DataError(image_base, "image root not found")
            if not mask_base.is_dir():
                raise DataError(mask_base, "annotation root not found")
            prefix = f"{image_base.parent.name}/" if len(image_roots) > 1 else ""
            for folder in sorted(p for p in image_base.iterdir() if p.is_dir()):
                key = folder.name if folder.name not in found else prefix + folder.name
                found[key] = (folder, mask_base / folder.name)
        if wanted is not None:
            missing = [name for name in wanted if name not in found]
            if missing:
                raise DataError(
                    subset_file or image_roots[0],
                    f"{len(missing)} listed video(s) not found under {image_roots[0]}, e.g. {missing[:3]}",
                )
            names = list(dict.fromkeys(wanted))
        else:
            names = list(found)
        self.videos: list[_Video] = []
        for name in names:
            video = index_video(name, *found[name])
            if len(video.images) < num_frames:
                problem = (
                    f"video {name!r} has {len(video.images)} annotated frame(s), fewer than the "
                    f"{num_frames} frames of a clip"
                )
                if short_videos == "error":
                    raise DataError(video.image_dir, problem)
                logger.warning("%s: %s; skipped", video.image_dir, problem)
                continue
            self.videos.append(video)
        if not self.videos:
            raise DataError(image_roots[0], "no usable video found")
        logger.info(
            "%d videos of at least %d annotated frames under %s",
            len(self.videos),
            num_frames,
            ", ".join(str(p) for p in image_roots),
        )

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips ``__getitem__`` returns (part of every item's seed)."""
        self.epoch = int(epoch)

    def set_max_skip(self, max_skip: int) -> None:
        """Change the max skip (the curriculum); the effective value is ``max_skip // skip_divisor``."""
        effective_max_skip(max_skip, self.skip_divisor)
        self.max_skip = int(max_skip)

    def _read_frame(
        self, image_path: Path, mask_path: Path, label: np.ndarray | None, size: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        label = read_label(mask_path) if label is None else label
        image = read_image(image_path)
        if image.shape[:2] != label.shape:
            raise DataError(
                mask_path,
                f"annotation size {label.shape[1]}x{label.shape[0]} differs from frame "
                f"{image_path.name} ({image.shape[1]}x{image.shape[0]})",
            )
        if size is not None and image.shape[:2] != size:
            raise DataError(
                image_path,
                f"frame size {image.shape[1]}x{image.shape[0]} differs from the other "
                f"frames of the video ({size[1]}x{size[0]})",
            )
        return image, label

    def __getitem__(self, index: int) -> ClipItem:
        video = self.videos[index]
        max_skip = effective_max_skip(self.max_skip, self.skip_divisor)
        cropped_out = 0  # draws whose first frame had an object before augmentation, none after
        for attempt in range(self.max_attempts):
            rng = item_rng(self.seed, self.epoch, index, attempt)
            order = sample_frames(
                len(video.images), self.num_frames, max_skip, rng, method=self.sampling, reverse_prob=self.reverse_prob
            )
            first_label = read_label(video.masks[order[0]])
            if not first_label.any():
                continue  # cheap rejection before decoding any image
            images, labels, size = [], [], None
            for position, frame in enumerate(order):
                image, label = self._read_frame(
                    video.images[frame], video.masks[frame], first_label if position == 0 else None, size
                )
                size = image.shape[:2]
                images.append(image)
                labels.append(label)
            frames, out_labels = augment_clip(images, labels, self.augment, rng)  # [T, H, W, 3], [T, H, W]
            candidates = [int(i) for i in np.unique(out_labels[0]) if i != 0]
            if self.object_filter is not None and candidates:
                candidates = self.object_filter(out_labels, candidates)
            if not candidates:
                cropped_out += 1
                continue
            chosen = select_objects(candidates, self.max_objects, rng)
            slots = np.zeros(out_labels.shape, dtype=np.int64)  # [T, H, W]
            for slot, object_id in enumerate(chosen, start=1):
                slots[out_labels == object_id] = slot
            return ClipItem(
                frames=normalize_frames(frames),
                labels=torch.from_numpy(slots),
                num_objects=len(chosen),
                max_objects=self.max_objects,
                name=video.name,
                frame_ids=tuple(video.images[i].stem for i in order),
                object_ids=tuple(chosen),
            )
        if cropped_out:
            why = (
                f"{cropped_out} of them had objects that the augmentation cropped out or the object filter dropped "
                "(objects too small or at the border for the crop size?)"
            )
        else:
            why = "their first-frame annotations were empty (empty annotations?)"
        raise DataError(
            video.image_dir,
            f"no object visible in the first frame of {self.max_attempts} sampled clips of video {video.name!r}: "
            + why,
        )


def davis_clip_dataset(
    root: str | PathLike, *, split: str | None = "train", year: str = "2017", resolution: str = "480p", **kwargs
) -> VOSClipDataset:
    """Clips of a DAVIS tree: ``JPEGImages/<res>``, ``Annotations/<res>``, ``ImageSets/<year>/<split>.txt``.

    ``split=None`` uses every video. Other keyword arguments go to :class:`VOSClipDataset`.
    """
    root = Path(root)
    subset = None if split is None else root / "ImageSets" / year / f"{split}.txt"
    return VOSClipDataset(root / "JPEGImages" / resolution, root / "Annotations" / resolution, subset=subset, **kwargs)


def youtube_clip_dataset(
    root: str | PathLike, *, split: str = "train", skip_divisor: int = 5, **kwargs
) -> VOSClipDataset:
    """Clips of a YouTube-VOS tree: ``<split>/JPEGImages`` and ``<split>/Annotations`` (annotated every 5th frame).

    ``root`` may also be the split folder itself (one that contains ``JPEGImages``), e.g. STCN's ``train_480p``.
    Other keyword arguments (``subset`` for a filtered video list, ...) go to :class:`VOSClipDataset`.
    """
    root = Path(root)
    base = root if (root / "JPEGImages").is_dir() else root / split
    return VOSClipDataset(base / "JPEGImages", base / "Annotations", skip_divisor=skip_divisor, **kwargs)
