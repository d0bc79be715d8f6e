"""One video of a VOS dataset, as the readers (DAVIS, YouTube-VOS) hand it to inference and evaluation.

Conventions:
- frames are indexed 0..T-1 in the order of ``frame_paths`` (sorted file names); ``frame_ids`` are the file stems
  ("00000", "00005", ...), which are also the names of the result PNGs;
- ``mask_paths`` holds only the annotations given as *input* (semi-supervised reference masks): frame 0 for
  DAVIS, and every frame where some object first appears for YouTube-VOS; ``annotation_paths`` holds every
  annotation PNG that exists for the sequence (the full ground truth for DAVIS train/val, YouTube-VOS train);
- label maps are uint8 [H, W]: 0 background, 1..255 object ids; DAVIS 2016 sequences are binarised (id > 0 -> 1);
- nothing is decoded when a sequence is built, except the headers that give the frame size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from corrvos.data.io import list_frames, read_image, read_label
from corrvos.errors import DataError

__all__ = [
    "SequenceCollection",
    "VideoSequence",
    "annotation_size_problem",
    "check_annotation_size",
    "image_size",
    "list_sequence_frames",
    "sequence_problems",
]


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header only (no pixel decoding).

    Raises:
        DataError: the file is missing or not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image header ({exc})") from exc
    return height, width


def annotation_size_problem(mask_size: tuple[int, ...], frame_size: tuple[int, ...], name: str) -> str | None:
    """The message for an annotation of (H, W) ``mask_size`` in a sequence of ``frame_size`` frames; None if equal."""
    if tuple(mask_size) == tuple(frame_size):
        return None
    return (
        f"annotation is {mask_size[0]}x{mask_size[1]} (HxW) but the frames of sequence {name!r} are "
        f"{frame_size[0]}x{frame_size[1]}"
    )


def check_annotation_size(path: Path, mask_size: tuple[int, ...], frame_size: tuple[int, ...], name: str) -> None:
    """Raise DataError naming ``path`` when its (H, W) ``mask_size`` is not the sequence's ``frame_size``."""
    problem = annotation_size_problem(mask_size, frame_size, name)
    if problem is not None:
        raise DataError(path, problem)


@dataclass
class VideoSequence:
    """A video: its frames, its input annotations and the frames whose predictions are saved.

    Attributes:
        name: sequence (video) name, the folder name in the dataset.
        frame_paths: the frames to run on, sorted.
        frame_ids: the file stems of ``frame_paths``.
        mask_paths: frame index -> annotation PNG given as input (DAVIS: frame 0; YouTube-VOS: every frame where
            an object first appears).
        objects_first_frame: object id -> index of the frame whose input mask introduces it.
        frames_to_save: frame indices whose predictions are written (YouTube-VOS all-frames mode: the sampled
            frames); ``None`` means all frames.
        size: (H, W) of the original frames.
        annotation_paths: frame index -> every annotation PNG available (ground truth, for training and
            evaluation); defaults to ``mask_paths``.
        binarize: read label maps as single-object masks (any id > 0 becomes 1), as DAVIS 2016.
    """

    name: str
    frame_paths: list[Path]
    frame_ids: list[str]
    mask_paths: dict[int, Path]
    objects_first_frame: dict[int, int]
    frames_to_save: set[int] | None
    size: tuple[int, int]
    annotation_paths: dict[int, Path] = field(default_factory=dict)
    binarize: bool = False

    def __post_init__(self) -> None:
        if not self.annotation_paths:
            self.annotation_paths = dict(self.mask_paths)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def object_ids(self) -> list[int]:
        """Sorted ids of the objects introduced by the input masks."""
        return sorted(self.objects_first_frame)

    def objects_at(self, index: int) -> list[int]:
        """Sorted ids of the objects whose input mask is given at frame ``index``."""
        return sorted(k for k, t in self.objects_first_frame.items() if t == index)

    def should_save(self, index: int) -> bool:
        """Whether the prediction of frame ``index`` is written (always, unless ``frames_to_save`` says otherwise)."""
        return self.frames_to_save is None or index in self.frames_to_save

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.frame_paths):
            raise IndexError(f"{self.name}: frame index {index} out of range 0..{len(self.frame_paths) - 1}")

    def read_frame(self, index: int) -> np.ndarray:
        """Decode frame ``index`` as uint8 RGB [H, W, 3].

        Raises:
            DataError: the file is missing, corrupt, or its size differs from the sequence's ``size``.
        """
        self._check_index(index)
        path = self.frame_paths[index]
        rgb = read_image(path)
        if rgb.shape[:2] != tuple(self.size):
            raise DataError(
                path,
                f"frame is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but the sequence's frames are "
                f"{self.size[0]}x{self.size[1]}",
            )
        return rgb

    def has_mask(self, index: int) -> bool:
        """Whether an annotation PNG exists for frame ``index``."""
        return index in self.annotation_paths or index in self.mask_paths

    def read_mask(self, index: int) -> np.ndarray:
        """Decode the annotation of frame ``index`` as a uint8 label map [H, W] (binarised for DAVIS 2016).

        Raises:
            DataError: the frame has no annotation, the PNG is unreadable or not a label map, or its size differs
                from the frame size.
        """
        self._check_index(index)
        path = self.annotation_paths.get(index, self.mask_paths.get(index))
        if path is None:
            raise DataError(
                self.frame_paths[index], f"frame {self.frame_ids[index]} of sequence {self.name!r} has no annotation"
            )
        label = read_label(path)
        check_annotation_size(path, label.shape, self.size, self.name)
        if self.binarize:
            label = (label > 0).astype(np.uint8)
        return label


def sequence_problems(seq: VideoSequence, *, frames: bool = True) -> list[str]:
    """Every problem that would stop inference on ``seq``, found without running it (one line each).

    Decodes every input (reference) mask: it must be a readable label map of the frame size that holds the objects
    it introduces. With ``frames``, reads every frame's header: each must be a readable image of the sequence's
    size. A frame whose pixels are corrupt behind a valid header is still only found when it is decoded.
    """
    problems: list[str] = []
    for index, path in sorted(seq.mask_paths.items()):
        try:
            label = read_label(path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if problem := annotation_size_problem(label.shape, seq.size, seq.name):
            problems.append(f"{path}: {problem}")
            continue
        wanted = seq.objects_at(index)
        present = set(np.unique(label).tolist()) if not seq.binarize else ({1} if label.any() else set())
        absent = [k for k in wanted if k not in present]
        if absent or not wanted:
            what = f"objects {absent} it should introduce" if absent else "any object (all 0 or void 255)"
            problems.append(f"{path}: reference mask of {seq.name!r} has no pixel of {what}")
    if frames:
        for path in seq.frame_paths:
            try:
                size = image_size(path)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if size != tuple(seq.size):
                problems.append(
                    f"{path}: frame is {size[0]}x{size[1]} (HxW) but frame 0 of {seq.name!r} is "
                    f"{seq.size[0]}x{seq.size[1]}"
                )
    return problems


def list_sequence_frames(frame_dir: Path, name: str, *, kind: str = "sequence") -> list[Path]:
    """Sorted frame files of one sequence folder.

    Raises:
        DataError: the folder is missing or holds no frames (the message names the ``kind`` and ``name``).
    """
    if not frame_dir.is_dir():
        raise DataError(frame_dir, f"frame folder of {kind} {name!r} not found")
    frame_paths = list_frames(frame_dir)
    if not frame_paths:
        raise DataError(frame_dir, f"no frames (.jpg/.png) in the folder of {kind} {name!r}")
    return frame_paths


class SequenceCollection:
    """Shared behaviour of a dataset split: ``len`` and iteration over its sequences in split order.

    Subclasses set ``sequences`` (names) and implement ``sequence(name) -> VideoSequence``.
    """

    sequences: list[str]

    def sequence(self, name: str) -> VideoSequence:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[VideoSequence]:
        for name in self.sequences:
            yield self.sequence(name)
