"""Training clips of unlabeled videos: :class:`UnlabeledClipDataset` (the ``unlabeled`` dataset kind).

The correspondence losses need no annotation: L_PCL (and the official ``temp`` / ``cross_key``) only compare the
matching keys of frames of one clip. The paper's supplement names "the extra use of massive unlabeled video data"
as future work; corrvos mixes such clips into a stage with ``data.unlabeled_share`` (see
:mod:`corrvos.training.data`). An unlabeled clip is sampled and augmented exactly as a labeled one (same frame
sampler, max-skip curriculum and augmentation recipe), with an all-background label map: its ``ClipItem`` has
``num_objects = 0`` and ``labeled = False``, and the losses leave it out of L_SEG and L_OCL.

Layout: ``root`` holds one entry per video, either a frame folder (``<video>/<frame>.jpg``, one image type per
folder, sorted by name) or a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ``.m4v``, decoded with
OpenCV). Other files (e.g. the generator's ``corrvos_synthetic.json``) are ignored. ``corrvos synth --layout
unlabeled`` writes such a folder.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from corrvos.data.clips import ClipItem
from corrvos.data.sampling import effective_max_skip, item_rng, sample_frames
from corrvos.data.transforms import ClipAugmentConfig, augment_clip, normalize_frames
from corrvos.errors import ConfigError, DataError

__all__ = ["UnlabeledClipDataset", "find_unlabeled_videos"]

logger = logging.getLogger(__name__)


def find_unlabeled_videos(root: str | PathLike) -> list[Path]:
    """The video entries of ``root``: sub-folders holding frames, and video files, sorted by name.

    Raises:
        DataError: ``root`` is missing or holds no video.
    """
    from corrvos.data.video import VIDEO_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "unlabeled video folder not found")
    entries = sorted(
        p for p in root.iterdir() if (p.is_dir() and not p.name.startswith(".")) or p.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not entries:
        raise DataError(root, "no video (frame folder or video file) in the unlabeled video folder")
    return entries


class UnlabeledClipDataset(Dataset):
    """Clips of T frames from unlabeled videos, sampled and augmented like :class:`~corrvos.data.clips.VOSClipDataset`.

    Args:
        root: folder of videos (frame folders and / or video files).
        num_frames: T.
        max_objects: N, the object slots of the batch (the clip fills none of them).
        max_skip: initial max skip (changed with :meth:`set_max_skip`).
        augment: the augmentation recipe (applied to the frames; the label maps are all background).
        sampling: frame sampler, as for labeled clips.
        reverse_prob: probability of reversing time.
        short_videos: "error" or "skip" a video with fewer than T frames.
        seed: base seed of the item generators (every item is a pure function of seed, epoch, index).
    """

    def __init__(
        self,
        root: str | PathLike,
        *,
        num_frames: int = 3,
        max_objects: int = 2,
        max_skip: int = 5,
        augment: ClipAugmentConfig | None = None,
        sampling: str = "auto",
        reverse_prob: float = 0.5,
        short_videos: str = "error",
        seed: int = 0,
    ) -> None:
        from corrvos.data.video import open_frames

        if num_frames < 1 or max_objects < 1:
            raise ConfigError(f"num_frames and max_objects must be >= 1, got {num_frames}, {max_objects}")
        if short_videos not in ("error", "skip"):
            raise ConfigError(f"short_videos must be 'error' or 'skip', got {short_videos!r}")
        effective_max_skip(max_skip, 1)
        self.root = Path(root)
        self.num_frames, self.max_objects, self.max_skip = num_frames, max_objects, max_skip
        self.augment = augment if augment is not None else ClipAugmentConfig.video()
        self.sampling, self.reverse_prob, self.seed, self.epoch = sampling, reverse_prob, seed, 0
        self.sources = []
        for entry in find_unlabeled_videos(self.root):
            source = open_frames(entry)
            if len(source) < num_frames:
                problem = f"video has {len(source)} frame(s), fewer than the {num_frames} frames of a clip"
                if short_videos == "error":
                    raise DataError(entry, problem)
                logger.warning("%s: %s; skipped", entry, problem)
                continue
            self.sources.append(source)
        if not self.sources:
            raise DataError(self.root, "no usable unlabeled video found")
        logger.info("%d unlabeled videos of at least %d frames under %s", len(self.sources), num_frames, self.root)

    def __len__(self) -> int:
        return len(self.sources)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_max_skip(self, max_skip: int) -> None:
        effective_max_skip(max_skip, 1)
        self.max_skip = int(max_skip)

    @staticmethod
    def _read(source, order: list[int]) -> list[np.ndarray]:
        """Frames ``order`` of a source (random access for folders, one decoding pass for video files)."""
        if hasattr(source, "read"):
            return [source.read(i) for i in order]
        wanted, last, found = set(order), max(order), {}
        for i, (_, rgb) in enumerate(source):
            if i in wanted:
                found[i] = rgb
            if i >= last:
                break
        missing = [i for i in order if i not in found]
        if missing:
            raise DataError(source.path, f"frames {missing} could not be decoded")
        return [found[i] for i in order]

    def __getitem__(self, index: int) -> ClipItem:
        source = self.sources[index]
        rng = item_rng(self.seed, self.epoch, index, 0)
        order = sample_frames(
            len(source), self.num_frames, self.max_skip, rng, method=self.sampling, reverse_prob=self.reverse_prob
        )
        images = self._read(source, order)
        empty = [np.zeros(img.shape[:2], np.uint8) for img in images]  # [H, W] each: no object anywhere
        frames, labels = augment_clip(images, empty, self.augment, rng)  # [T, H', W', 3], [T, H', W']
        return ClipItem(
            frames=normalize_frames(frames),
            labels=torch.zeros(labels.shape, dtype=torch.int64),  # [T, H', W']
            num_objects=0,
            max_objects=self.max_objects,
            name=source.path.name,
            frame_ids=tuple(source.names[i] for i in order),
            labeled=False,
        )
