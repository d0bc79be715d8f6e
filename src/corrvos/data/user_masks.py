"""The annotated frames of a user's video: which mask file annotates which frame, read and checked up front.

Layouts (``corrvos segment``):

- one mask file for one frame (``--mask FILE --mask-frame K``; ``MASKS/<video>.png`` annotates frame 0);
- a mask folder (``--mask-dir DIR``; ``MASKS/<video>/``) with a mask for any frames, named like the frames:
  ``<frame>.png``, where ``<frame>`` is the file stem of the frame in a frame folder or, for a video file, the
  frame index zero-padded to 5 digits (``00000.png`` is the first frame). With ``--mask-format per-object`` the
  folder holds one binary mask per object and frame instead: ``<frame>_<id>.png`` (``00012_3.png`` is object 3
  on frame 12; the id is the number after the last underscore).

Problems are collected as one-line messages that start with the file, so that a command can report every problem
of every video before running any (see :func:`load_annotations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from corrvos.data.io import IMAGE_EXTENSIONS, VOID_LABEL
from corrvos.data.mask_formats import ColourMap, MaskRead, read_mask_any
from corrvos.errors import DataError

__all__ = ["FrameMasks", "VideoAnnotations", "folder_mask_files", "load_annotations"]

#: frame index -> the mask file of that frame, or {object id: binary mask file} for per-object masks
FrameMasks = dict[int, Path | dict[int, Path]]


@dataclass
class VideoAnnotations:
    """Every annotated frame of one video, at the frame size.

    Attributes:
        masks: frame index -> the frame's mask (label map uint8 [H, W] and the ids it gives), ascending.
        colours: the colour map when colour (RGB) masks were read, else None.
    """

    masks: dict[int, MaskRead]
    colours: ColourMap | None

    @property
    def first_frame(self) -> int:
        return min(self.masks)


def folder_mask_files(folder: str | Path, frame_names: list[str], fmt: str) -> tuple[FrameMasks, list[str]]:
    """The mask files of a mask folder by frame index, and the problems found (one line each).

    Args:
        folder: the mask folder.
        frame_names: the names of the video's frames, in order (file stems, or 00000, 00001, ... for a video file).
        fmt: the mask format; ``per-object`` reads ``<frame>_<id>.png`` files, the others ``<frame>.png``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}, [f"{folder}: mask folder not found"]
    index = {name: i for i, name in enumerate(frame_names)}
    files: FrameMasks = {}
    problems: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        suffix = path.suffix.lower()
        if suffix != ".png":
            if suffix in IMAGE_EXTENSIONS:
                problems.append(f"{path}: masks must be PNG (lossless); {suffix} compression changes the ids")
            continue
        stem = path.stem
        frame, _, obj = stem.rpartition("_")
        if fmt == "per-object":
            if not (obj.isdigit() and frame in index):
                problems.append(
                    f"{path}: not <frame>_<id>.png for a frame of the video (frames {_examples(frame_names)})"
                )
                continue
            per_object = files.setdefault(index[frame], {})
            assert isinstance(per_object, dict)
            per_object[int(obj)] = path
        elif stem in index:
            files[index[stem]] = path
        else:
            hint = " (one mask per object? use --mask-format per-object)" if obj.isdigit() and frame in index else ""
            problems.append(
                f"{path}: no frame {stem!r} in the video; masks are named like the frames "
                f"({_examples(frame_names)}){hint}"
            )
    if not files and not problems:
        layout = "<frame>_<id>.png" if fmt == "per-object" else "<frame>.png"
        problems.append(f"{folder}: no {layout} masks in this folder (frames {_examples(frame_names)})")
    return dict(sorted(files.items())), problems


def load_annotations(
    files: FrameMasks,
    frame_size: tuple[int, int],
    *,
    fmt: str = "auto",
    colours: ColourMap | None = None,
    resize: bool = False,
) -> tuple[VideoAnnotations | None, list[str]]:
    """Read every mask of a video in frame order and check it against the frames.

    Colour masks get their ids in frame order (the first annotated mask numbers its colours first). Masks of
    another size than the frames are a problem unless ``resize`` (nearest neighbour). The first annotated mask
    must show an object.

    Args:
        files: from :func:`folder_mask_files`, or {frame index: file} for one mask file.
        frame_size: (H, W) of the frames.
        fmt: the mask format (:data:`~corrvos.data.mask_formats.MASK_FORMATS`).
        colours: an explicit colour map (``--palette-map``; copied, not changed), or None to number colours.
        resize: resize masks of another size to the frame size.

    Returns:
        (annotations, problems): annotations is None when any problem was found.
    """
    colour_map = ColourMap() if colours is None else ColourMap(dict(colours.colours), fixed=colours.fixed)
    masks: dict[int, MaskRead] = {}
    problems: list[str] = []
    kinds: dict[str, Path] = {}
    for frame in sorted(files):
        source = files[frame]
        path = Path(min(source.values())) if isinstance(source, dict) else Path(source)
        try:
            read = read_mask_any(source, fmt, colour_map)
        except DataError as exc:
            problems.append(str(exc))
            continue
        kinds.setdefault(read.kind, path)
        if read.label.shape != tuple(frame_size):
            if not resize:
                problems.append(
                    f"{path}: mask is {read.label.shape[0]}x{read.label.shape[1]} (HxW) but the video frames are "
                    f"{frame_size[0]}x{frame_size[1]}: draw the mask on a frame of the video, "
                    "or pass --resize-mask to resize it (nearest neighbour)"
                )
                continue
            read.label = cv2.resize(read.label, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
        masks[frame] = read
    if "colours" in kinds and "labels" in kinds:
        problems.append(
            f"{kinds['colours']}: a colour (RGB) mask beside label-map masks such as {kinds['labels'].name}: their "
            "ids would clash; save every mask of the video in one format (--mask-format rgb reads all as colours)"
        )
    if colours is not None and kinds and "colours" not in kinds:
        path = next(iter(kinds.values()))
        problems.append(
            f"{path}: --palette-map applies to colour (RGB) masks and this is a label map "
            "(--mask-format rgb reads the colours of a palette PNG)"
        )
    if masks and not problems:
        first = min(masks)
        label = masks[first].label
        if not np.any((label != 0) & (label != VOID_LABEL)):
            source = files[first]
            path = Path(min(source.values())) if isinstance(source, dict) else Path(source)
            hint = (
                "; a binary mask (0 background, 255 object)? --mask-format binary reads it as object 1"
                if np.any(label == VOID_LABEL) and masks[first].kind == "labels"
                else ""
            )
            problems.append(f"{path}: mask has no object (every pixel is 0 = background or 255 = void){hint}")
    if problems or not masks:
        return None, problems
    return VideoAnnotations(masks, colour_map if "colours" in kinds else None), []


def _examples(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]}, {names[1]}, ..., {names[-1]}"
