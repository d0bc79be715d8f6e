"""Reader of the LVOS v1 layout (long-term video object segmentation, Hong et al. ICCV 2023).

Layout under the LVOS root (as the LVOS v1 download unpacks; LingyiHongfd/lvos-evaluation reads the same)::

    <split>/JPEGImages/<video>/00000000.jpg 00000005.jpg ...   the sampled frames (6 fps), 8-digit frame numbers
    <split>/Annotations/<video>/<frame>.png                    label maps (train, valid: on the sampled frames;
                                                               test, or after LVOS-api's conversion: only the
                                                               frames where an object first appears)
    <split>/<split>_meta.json                                  {"videos": {<video>: {"objects": {"<id>":
                                                               {"frame_range": {"start": s, "end": e,
                                                               "frame_nums": n}}}}}}

``<split>`` is ``train``, ``valid`` or ``test``. Conventions:
- sequences are the videos of the meta file, sorted (without a meta file: the folders of ``JPEGImages``);
- objects may first appear long after frame 0: object k's reference mask is the annotation of the frame whose
  number is its ``frame_range.start`` (only object k is taken from it; other objects of that frame stay
  predictions), and ``objects_last_frame[k]`` is the last frame whose number is below ``end`` (the official
  evaluation scores ``range(start, end, 5)``, end excluded);
- ``<split>/meta.json`` is accepted in place of ``<split>_meta.json``; without either, every annotation PNG is
  decoded once to find where each id first appears (slow on long videos), and objects are scored to the end;
- every annotation PNG present is ground truth for ``corrvos eval --lvos-root``;
- frame numbers are the integer values of the file stems (``"00000005"`` is 5).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrvos.data.io import VOID_LABEL, read_label
from corrvos.data.mose import split_videos
from corrvos.data.sequence import (
    SequenceCollection,
    VideoSequence,
    check_annotation_size,
    image_size,
    list_sequence_frames,
)
from corrvos.errors import DataError

__all__ = ["LVOS_SPLITS", "LvosDataset", "LvosSequence", "read_lvos_meta"]

logger = logging.getLogger(__name__)

LVOS_SPLITS = ("train", "valid", "test")


@dataclass
class LvosSequence(VideoSequence):
    """A :class:`VideoSequence` that also knows where each object's scored range ends (``objects_last_frame``)."""

    objects_last_frame: dict[int, int] = field(default_factory=dict)


def read_lvos_meta(path: str | Path) -> dict[str, dict[int, tuple[int, int]]]:
    """Parse an LVOS meta file into {video: {object id: (start frame number, end frame number)}}.

    Raises:
        DataError: the file is not JSON or lacks ``videos`` / ``objects`` / ``frame_range`` start and end.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot parse the LVOS meta file ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataError(path, 'LVOS meta must be an object with a "videos" object')
    videos: dict[str, dict[int, tuple[int, int]]] = {}
    for vid, entry in meta["videos"].items():
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict) or not objects:
            raise DataError(path, f'video {vid!r} has no "objects"')
        parsed: dict[int, tuple[int, int]] = {}
        for key, obj in objects.items():
            rng = obj.get("frame_range") if isinstance(obj, dict) else None
            try:
                obj_id, start, end = int(key), int(rng["start"]), int(rng["end"])  # type: ignore[index]
            except (TypeError, KeyError, ValueError):
                raise DataError(
                    path, f'video {vid!r}, object {key!r}: needs an integer id and "frame_range" start and end'
                ) from None
            if not 1 <= obj_id < VOID_LABEL:
                raise DataError(path, f"video {vid!r}: object id {obj_id} outside 1..254")
            parsed[obj_id] = (start, end)
        videos[str(vid)] = parsed
    return videos


class LvosDataset(SequenceCollection):
    """The videos of one LVOS split, read lazily.

    Args:
        root: the LVOS root (holding ``train/``, ``valid/``, ``test/``).
        split: ``train``, ``valid`` or ``test``.

    Raises:
        DataError: the root, split or frame folder is missing, or the meta file is malformed.
    """

    def __init__(self, root: str | Path, *, split: str = "valid") -> None:
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DataError(self.root, "LVOS root folder not found")
        if split not in LVOS_SPLITS:
            raise DataError(self.root, f"unknown LVOS split {split!r} (expected one of {list(LVOS_SPLITS)})")
        self.split_root = self.root / split
        if not self.split_root.is_dir():
            raise DataError(self.split_root, "LVOS split folder not found")
        self.image_root = self.split_root / "JPEGImages"
        self.annotation_root = self.split_root / "Annotations"
        candidates = (self.split_root / f"{split}_meta.json", self.split_root / "meta.json")
        self.meta_path: Path | None = next((p for p in candidates if p.is_file()), None)
        self.meta = read_lvos_meta(self.meta_path) if self.meta_path is not None else None
        self.sequences: list[str] = sorted(self.meta) if self.meta is not None else split_videos(self.image_root)
        if self.meta is None:
            logger.warning("%s: no %s; objects are found by decoding every annotation", self.split_root, candidates[0])

    def __repr__(self) -> str:
        return f"LvosDataset(root={str(self.root)!r}, split={self.split!r}, sequences={len(self.sequences)})"

    def sequence(self, name: str) -> LvosSequence:
        """The video ``name`` of this split.

        Raises:
            DataError: the video is unknown, its frame folder is missing or empty, a frame stem is not a number,
                an object's start frame is not a frame, or its reference annotation is missing or of another size.
        """
        if name not in self.sequences:
            raise DataError(self.meta_path or self.image_root, f"video {name!r} is not in this split")
        frame_dir = self.image_root / name
        frame_paths = list_sequence_frames(frame_dir, name, kind="video")
        frame_ids = [p.stem for p in frame_paths]
        try:
            numbers = [int(fid) for fid in frame_ids]
        except ValueError:
            raise DataError(frame_dir, f"LVOS frame names must be frame numbers, got {frame_ids[0]!r} ...") from None
        ann_dir = self.annotation_root / name
        index_of = {fid: i for i, fid in enumerate(frame_ids)}
        annotation_paths = (
            {index_of[p.stem]: p for p in ann_dir.glob("*.png") if p.stem in index_of} if ann_dir.is_dir() else {}
        )
        if self.meta is not None:
            first, last = self._ranges_from_meta(name, frame_dir, numbers)
        else:
            first = _first_appearances(dict(sorted(annotation_paths.items())))
            last = dict.fromkeys(first, len(frame_paths) - 1)
        size = image_size(frame_paths[0])
        mask_paths: dict[int, Path] = {}
        for obj_id, index in sorted(first.items()):
            path = ann_dir / f"{frame_ids[index]}.png"
            if not path.is_file():
                raise DataError(
                    path,
                    f"annotation of frame {frame_ids[index]}, where object {obj_id} of video {name!r} first "
                    "appears, not found",
                )
            check_annotation_size(path, image_size(path), size, name)
            mask_paths[index] = path
        return LvosSequence(
            name=name,
            frame_paths=frame_paths,
            frame_ids=frame_ids,
            mask_paths=dict(sorted(mask_paths.items())),
            objects_first_frame=first,
            frames_to_save=None,
            size=size,
            annotation_paths=dict(sorted({**annotation_paths, **mask_paths}.items())),
            objects_last_frame=last,
        )

    def _ranges_from_meta(
        self, name: str, frame_dir: Path, numbers: list[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """(object -> index of its start frame, object -> index of its last scored frame) from the meta file."""
        assert self.meta is not None and self.meta_path is not None
        index_of = {n: i for i, n in enumerate(numbers)}
        first, last = {}, {}
        for obj_id, (start, end) in self.meta[name].items():
            if start not in index_of:
                raise DataError(
                    frame_dir,
                    f"start frame {start} of object {obj_id} ({self.meta_path.name}) is not a frame of video {name!r}",
                )
            first[obj_id] = index_of[start]
            last[obj_id] = max([i for i, n in enumerate(numbers) if n < end] or [index_of[start]])
        return first, last


def _first_appearances(annotations: dict[int, Path]) -> dict[int, int]:
    """Object id -> first frame index whose annotation shows it (every PNG decoded, in frame order)."""
    first: dict[int, int] = {}
    for index, path in annotations.items():
        for value in np.unique(read_label(path)).tolist():
            if value not in (0, VOID_LABEL):
                first.setdefault(int(value), index)
    return first
