"""Reader of the YouTube-VOS 2018 / 2019 layout.

Layout under the YouTube-VOS root::

    train/JPEGImages/<vid>/00000.jpg 00005.jpg ...   the sampled frames (every 5th frame of the 30 fps video)
    train/Annotations/<vid>/00000.png ...            a label map for every sampled frame
    train/meta.json                                  objects, their category and the frames they appear in
    valid/JPEGImages/<vid>/00000.jpg 00005.jpg ...   the sampled frames, the ones that are scored
    valid/Annotations/<vid>/<frame>.png              only the frames where some object first appears
    valid/meta.json                                  {"videos": {vid: {"objects": {"1": {"frames": [...]}}}}}
    valid_all_frames/JPEGImages/<vid>/00000.jpg ...  every frame (no annotations)
    (test/ and test_all_frames/ as valid/)

Conventions:
- sequences are the videos of ``<split>/meta.json``, sorted by name;
- an object's first frame is the first frame listed for it in ``meta.json``; objects may first appear after
  frame 0, and their reference mask is the annotation PNG of that frame (``mask_paths``);
- ``all_frames=True`` runs on ``<split>_all_frames/JPEGImages`` (every frame) and sets ``frames_to_save`` to the
  frames of ``<split>/JPEGImages`` (the sampled ones), as STCN/XMem save only those;
- object ids are per video and need not be contiguous;
- the dataset object only reads ``meta.json``; ``sequence(name)`` lists folders and reads one image header.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from corrvos.data.io import list_frames
from corrvos.data.sequence import (
    SequenceCollection,
    VideoSequence,
    check_annotation_size,
    image_size,
    list_sequence_frames,
)
from corrvos.errors import DataError

__all__ = ["YOUTUBE_SPLITS", "YOUTUBE_YEARS", "YouTubeVOSDataset", "read_meta"]

logger = logging.getLogger(__name__)

YOUTUBE_YEARS = ("2018", "2019")
YOUTUBE_SPLITS = ("train", "valid", "test")


def read_meta(path: str | Path) -> dict[str, dict[int, list[str]]]:
    """Parse a YouTube-VOS ``meta.json`` into {video: {object id: [frame ids]}}.

    Raises:
        DataError: the file is missing, not JSON, or does not have the YouTube-VOS structure.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "meta.json not found")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot parse meta.json ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataError(path, 'meta.json must be an object with a "videos" object')
    videos: dict[str, dict[int, list[str]]] = {}
    for vid, entry in meta["videos"].items():
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            raise DataError(path, f'video {vid!r} has no "objects" object')
        parsed: dict[int, list[str]] = {}
        for key, obj in objects.items():
            try:
                obj_id = int(key)
            except ValueError:
                raise DataError(path, f"video {vid!r}: object id {key!r} is not an integer") from None
            if not 1 <= obj_id <= 255:
                raise DataError(path, f"video {vid!r}: object id {obj_id} outside 1..255")
            frames = obj.get("frames") if isinstance(obj, dict) else None
            if not isinstance(frames, list) or not frames or not all(isinstance(f, str) for f in frames):
                raise DataError(path, f'video {vid!r}, object {key}: "frames" must be a non-empty list of frame ids')
            parsed[obj_id] = frames
        videos[str(vid)] = parsed
    return videos


class YouTubeVOSDataset(SequenceCollection):
    """The videos of one YouTube-VOS split, read lazily.

    Args:
        root: the YouTube-VOS root (holding ``train/``, ``valid/``, ``valid_all_frames/``, ...).
        year: "2018" or "2019" (the layouts are the same; the year only labels the dataset).
        split: "train", "valid" or "test".
        all_frames: run on ``<split>_all_frames`` (every frame) and save only the sampled frames.

    Raises:
        DataError: the root, split folder or meta.json is missing or malformed, or the year / split is unknown.
    """

    def __init__(self, root: str | Path, *, year: str = "2019", split: str = "valid", all_frames: bool = False) -> None:
        self.root = Path(root)
        self.year = str(year)
        self.split = split
        self.all_frames = all_frames
        if not self.root.is_dir():
            raise DataError(self.root, "YouTube-VOS root folder not found")
        if self.year not in YOUTUBE_YEARS:
            raise DataError(
                self.root, f"unknown YouTube-VOS year {self.year!r} (expected one of {list(YOUTUBE_YEARS)})"
            )
        if split not in YOUTUBE_SPLITS:
            raise DataError(self.root, f"unknown YouTube-VOS split {split!r} (expected one of {list(YOUTUBE_SPLITS)})")
        self.split_root = self.root / split
        if not self.split_root.is_dir():
            raise DataError(self.split_root, "split folder not found")
        self.image_root = (self.root / f"{split}_all_frames" if all_frames else self.split_root) / "JPEGImages"
        if not self.image_root.is_dir():
            raise DataError(
                self.image_root,
                "frame folder not found"
                + (" (all_frames needs the <split>_all_frames download)" if all_frames else ""),
            )
        self.annotation_root = self.split_root / "Annotations"
        self.meta_path = self.split_root / "meta.json"
        self.meta = read_meta(self.meta_path)
        self.sequences: list[str] = sorted(self.meta)
        logger.debug("YouTube-VOS %s %s: %d videos in %s", self.year, split, len(self.sequences), self.root)

    def __repr__(self) -> str:
        return (
            f"YouTubeVOSDataset(root={str(self.root)!r}, year={self.year!r}, split={self.split!r}, "
            f"all_frames={self.all_frames}, sequences={len(self.sequences)})"
        )

    def sequence(self, name: str) -> VideoSequence:
        """The video ``name`` of this split.

        Raises:
            DataError: the video is not in meta.json, its frame folder is missing or empty, an object's first frame
                is not among the frames, or the annotation PNG of an object's first frame is missing.
        """
        if name not in self.meta:
            raise DataError(self.meta_path, f"video {name!r} is not in meta.json")
        frame_dir = self.image_root / name
        frame_paths = list_sequence_frames(frame_dir, name, kind="video")
        frame_ids = [p.stem for p in frame_paths]
        index_of = {fid: i for i, fid in enumerate(frame_ids)}

        frames_to_save: set[int] | None = None
        if self.all_frames:
            sampled_dir = self.split_root / "JPEGImages" / name
            if not sampled_dir.is_dir():
                raise DataError(sampled_dir, f"sampled-frame folder of video {name!r} not found")
            sampled = [p.stem for p in list_frames(sampled_dir)]
            missing = [fid for fid in sampled if fid not in index_of]
            if missing:
                raise DataError(frame_dir, f"sampled frame {missing[0]} of video {name!r} is not among all frames")
            frames_to_save = {index_of[fid] for fid in sampled}

        ann_dir = self.annotation_root / name
        objects_first_frame: dict[int, int] = {}
        mask_paths = {}
        for obj_id, obj_frames in sorted(self.meta[name].items()):
            first_id = min(obj_frames)
            if first_id not in index_of:
                raise DataError(
                    frame_dir, f"first frame {first_id} of object {obj_id} (meta.json) is not a frame of video {name!r}"
                )
            index = index_of[first_id]
            path = ann_dir / f"{first_id}.png"
            if not path.is_file():
                raise DataError(
                    path,
                    f"annotation of frame {first_id}, where object {obj_id} of video {name!r} first appears, not found",
                )
            objects_first_frame[obj_id] = index
            mask_paths[index] = path
        size = image_size(frame_paths[0])
        for path in mask_paths.values():
            check_annotation_size(path, image_size(path), size, name)
        annotation_paths = dict(mask_paths)
        if ann_dir.is_dir():
            for path in ann_dir.glob("*.png"):
                if path.stem in index_of:
                    annotation_paths[index_of[path.stem]] = path
        return VideoSequence(
            name=name,
            frame_paths=frame_paths,
            frame_ids=frame_ids,
            mask_paths=dict(sorted(mask_paths.items())),
            objects_first_frame=objects_first_frame,
            frames_to_save=frames_to_save,
            size=size,
            annotation_paths=dict(sorted(annotation_paths.items())),
        )
