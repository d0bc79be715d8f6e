"""Inputs of ``corrvos segment``: the videos of a folder, where each video's masks are, and every check made before
the model is loaded (:func:`check_video` collects one-line problems; :func:`raise_problems` reports them all).

Layout of ``--videos DIR --masks MASKS``: every video file (mp4, avi, mov, mkv, webm, m4v) and every frame folder of
DIR is a video named by its file stem or folder name; its masks are ``MASKS/<name>/`` (a mask folder, see
:mod:`corrvos.data.user_masks`) or ``MASKS/<name>.png`` (the mask of frame 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corrvos.data.mask_formats import ColourMap
from corrvos.data.sequence import image_size
from corrvos.data.user_masks import FrameMasks, VideoAnnotations, folder_mask_files, load_annotations
from corrvos.data.video import VIDEO_EXTENSIONS, FolderSource, FrameSource, open_frames
from corrvos.errors import DataError
from corrvos.inference.propagate import FrameRange

__all__ = ["CheckedVideo", "VideoInput", "check_video", "find_videos", "masks_of", "raise_problems"]


@dataclass
class VideoInput:
    """One video to segment and where its masks are.

    Attributes:
        name: the video's name (file stem or folder name; the output folder in ``--videos`` mode).
        path: the video file or frame folder.
        masks: a mask PNG (annotating ``mask_frame``) or a mask folder.
        mask_frame: the frame a single mask file annotates.
    """

    name: str
    path: Path
    masks: Path
    mask_frame: int = 0


@dataclass
class CheckedVideo:
    """A video whose inputs passed every check: its frames and annotations."""

    source: FrameSource
    annotations: VideoAnnotations


def find_videos(folder: str | Path, *, skip: tuple[Path, ...] = ()) -> tuple[dict[str, Path], list[str]]:
    """Videos of ``folder`` by name (sorted) and the problems found (no video; two videos of one name).

    ``skip``: folders that are no videos even inside ``folder`` (the masks and output folders).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}, [f"{folder}: videos folder not found"]
    skipped = {p.resolve() for p in skip}
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.resolve() in skipped:
            continue
        if p.is_dir():
            found.setdefault(p.name, []).append(p)
        elif p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            found.setdefault(p.stem, []).append(p)
    problems = [
        f"{paths[0]}: two videos named {name!r} ({', '.join(p.name for p in paths)}): rename one"
        for name, paths in found.items()
        if len(paths) > 1
    ]
    if not found:
        problems.append(f"{folder}: no videos ({', '.join(VIDEO_EXTENSIONS)} files or frame folders)")
    return {name: paths[0] for name, paths in found.items()}, problems


def masks_of(name: str, video: Path, masks_root: Path, fmt: str) -> tuple[Path | None, str | None]:
    """``MASKS/<name>/`` or ``MASKS/<name>.png`` for the video ``name``: (path, None) or (None, problem)."""
    folder, single = masks_root / name, masks_root / f"{name}.png"
    if folder.is_dir() and single.is_file():
        return None, f"{single}: both {folder}/ and this file give masks for {video}: keep one"
    if folder.is_dir():
        return folder, None
    if single.is_file():
        if fmt == "per-object":
            return None, f"{single}: per-object masks are files {folder}/<frame>_<id>.png"
        return single, None
    return None, (
        f"{folder}: no masks for {video}: expected a folder {folder}/ of <frame>.png masks or the frame-0 mask {single}"
    )


def check_video(
    video: VideoInput,
    *,
    fmt: str,
    frames: FrameRange,
    palette_map: ColourMap | None = None,
    resize: bool = False,
    exclude: tuple[Path, ...] = (),
) -> tuple[CheckedVideo | None, list[str]]:
    """Open ``video``, read every mask, check sizes and the frame range: (checked video or None, problems).

    ``exclude``: files of a frame folder that are not frames (a mask saved beside them).
    """
    try:
        source = open_frames(video.path, exclude=exclude)
    except DataError as exc:
        return None, [str(exc)]
    problems: list[str] = []
    indices = frames.indices(len(source))
    if not indices:
        problems.append(f"{video.path}: --start {frames.start} is past the video's last frame ({len(source)} frames)")
    if video.masks.is_dir():
        files, found = folder_mask_files(video.masks, source.names, fmt)
        problems += found
    elif not 0 <= video.mask_frame < len(source):
        return None, [f"--mask-frame {video.mask_frame} is outside the video's {len(source)} frames"]
    else:
        files = {video.mask_frame: video.masks}
    if isinstance(source, FolderSource):  # headers only: a frame of another size would stop the run midway
        for i in indices:
            try:
                size = image_size(source.paths[i])
            except DataError as exc:
                problems.append(str(exc))
                continue
            if size != source.size:
                problems.append(
                    f"{source.paths[i]}: frame is {size[0]}x{size[1]} (HxW) but the first frame is "
                    f"{source.size[0]}x{source.size[1]}"
                )
    problems += _range_problems(files, source, indices, frames)
    annotations, found = load_annotations(files, source.size, fmt=fmt, colours=palette_map, resize=resize)
    problems += found
    if problems or annotations is None:
        return None, problems
    return CheckedVideo(source, annotations), []


def _range_problems(files: FrameMasks, source: FrameSource, indices: list[int], frames: FrameRange) -> list[str]:
    wanted = set(indices)
    problems = []
    for frame, masks in files.items():
        if frame not in wanted:
            path = min(masks.values()) if isinstance(masks, dict) else masks
            problems.append(
                f"{path}: annotates frame {source.names[frame]} (index {frame}), which --start {frames.start} "
                f"--end {frames.end if frames.end is not None else len(source)} --stride {frames.stride} leave out"
            )
    return problems


def raise_problems(problems: list[str]) -> None:
    """Raise one DataError listing every problem (one line when there is one); nothing when the list is empty."""
    if len(problems) == 1:
        raise DataError(None, problems[0])
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError(
            None, f"{len(problems)} input problem(s), nothing was run:" + "".join(f"\n  {p}" for p in shown)
        )
