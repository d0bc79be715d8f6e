"""Exports of a project: DAVIS palette PNGs, per-object PNGs, an overlay MP4 and a DAVIS-layout training set.

Every export goes to a hidden folder next to its destination that is renamed into place when complete (an older
export of the same kind is replaced only then), so a failed export never leaves a partial result. The mask of a
frame is its annotation where it has one, else its propagated mask; a frame with neither is an error (propagate
first), except for the overlay, which shows such frames without a mask.

Training set layout (what ``corrvos train`` reads with ``{kind: davis, root: <folder>}``, and
:class:`corrvos.data.davis.DavisDataset`)::

    JPEGImages/480p/<name>/<frame>.jpg
    Annotations/480p/<name>/<frame>.png    palette PNGs of every frame
    ImageSets/2017/train.txt, val.txt      the one sequence name
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from corrvos.annotate.project import Project
from corrvos.data.io import write_image, write_label
from corrvos.errors import DataError
from corrvos.utils import atomic_write_text, make_output_dir

__all__ = ["EXPORTS", "export"]

EXPORTS = ("palette", "per-object", "overlay", "training-set")


def export(project: Project, kind: str, *, name: str | None = None, alpha: float = 0.5) -> Path:
    """Write the export ``kind`` under ``<project>/exports/`` and return its path.

    ``name``: the sequence name of a training set (default: the video's name).

    Raises:
        DataError: an unknown kind, a bad name, or a frame without a mask.
    """
    out = make_output_dir(project.root / "exports")
    if kind == "palette":
        return _folder_export(out / "masks", lambda d: _write_palette(project, d))
    if kind == "per-object":
        return _folder_export(out / "per_object", lambda d: _write_per_object(project, d))
    if kind == "overlay":
        return _write_overlay(project, out / "overlay.mp4", alpha)
    if kind == "training-set":
        seq = (
            name
            if name is not None
            else _safe_name(project.video.stem if project.video.is_file() else project.video.name)
        )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", seq):
            raise DataError(None, f"sequence name must be letters, digits, '_', '-' or '.', got {seq!r}")
        return _folder_export(out / "training_set", lambda d: _write_training_set(project, d, seq))
    raise DataError(None, f"unknown export {kind!r}; one of {EXPORTS}")


def _folder_export(dest: Path, fill) -> Path:
    with tempfile.TemporaryDirectory(prefix=f".partial-{dest.name}-", dir=dest.parent) as tmp:
        work = Path(tmp) / dest.name
        work.mkdir()
        fill(work)
        old = dest.parent / f".old-{dest.name}"
        if old.exists():
            shutil.rmtree(old)
        if dest.exists():
            dest.rename(old)
        work.rename(dest)
        if old.exists():
            shutil.rmtree(old)
    return dest


def _labels(project: Project, *, required: bool = True) -> Iterator[tuple[int, str, np.ndarray | None]]:
    for i, name in enumerate(project.frame_names):
        label, _ = project.mask(i)
        if label is None and required:
            raise DataError(None, f"frame {name} (index {i}) has no mask yet: propagate first")
        yield i, name, label


def _check_all(project: Project) -> None:
    for _ in _labels(project):
        pass


def _write_palette(project: Project, folder: Path) -> None:
    _check_all(project)  # before writing anything
    for _, name, label in _labels(project):
        write_label(folder / f"{name}.png", label, project.palette())


def _write_per_object(project: Project, folder: Path) -> None:
    """``<frame>_<id>.png``: 0/255 grayscale, one per object and frame (``segment --mask-format per-object``)."""
    _check_all(project)
    ids = [o.id for o in project.objects]
    for _, name, label in _labels(project):
        assert label is not None
        for obj_id in ids:
            binary = np.where(label == obj_id, 255, 0).astype(np.uint8)  # [H, W]
            if not cv2.imwrite(str(folder / f"{name}_{obj_id}.png"), binary):
                raise DataError(folder, "OpenCV could not write a PNG here")


def _write_overlay(project: Project, path: Path, alpha: float) -> Path:
    """The frames with every object's mask blended in its colour (the page's colours), H.264/VP9 when available."""
    from corrvos.visualize.overlay import VideoWriter

    colours = {o.id: [int(o.colour[k : k + 2], 16) for k in (1, 3, 5)] for o in project.objects}
    lookup = np.zeros((256, 3), np.float32)  # id -> colour
    shown = np.zeros(256, bool)  # ids with a colour (objects)
    for obj_id, colour in colours.items():
        lookup[obj_id], shown[obj_id] = colour, True
    with VideoWriter(path, fps=project.frames.fps) as video:
        for i, _, label in _labels(project, required=False):
            rgb = project.frame(i)  # [H, W, 3]
            if label is not None:
                inside = shown[label][..., None]  # [H, W, 1]
                blend = (1 - alpha) * rgb.astype(np.float32) + alpha * lookup[label]  # [H, W, 3]
                rgb = np.where(inside, np.clip(np.rint(blend), 0, 255).astype(np.uint8), rgb)
            video.write(rgb)
    return path


def _write_training_set(project: Project, root: Path, seq: str) -> None:
    _check_all(project)
    images, annotations = root / "JPEGImages" / "480p" / seq, root / "Annotations" / "480p" / seq
    for i, name, label in _labels(project):
        assert label is not None
        write_image(images / f"{name}.jpg", project.frame(i))
        write_label(annotations / f"{name}.png", label, project.palette())
    for year in ("2016", "2017"):
        for split in ("train", "val"):
            atomic_write_text(root / "ImageSets" / year / f"{split}.txt", seq + "\n")


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")
    return cleaned[:100] or "video"
