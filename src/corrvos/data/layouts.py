"""Dataset layout detection: open the training clips of a DAVIS, YouTube-VOS or BL30K folder.

Contents: :data:`LAYOUTS`, :func:`detect_layout`, :func:`open_clip_dataset`.

This module sits above :mod:`corrvos.data.clips` (DAVIS and YouTube-VOS helpers) and :mod:`corrvos.data.bl30k`
(which builds on ``clips``), so that neither of those two imports the other the wrong way round.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from corrvos.data.bl30k import bl30k_clip_dataset, find_bl30k_parts
from corrvos.data.clips import VOSClipDataset, davis_clip_dataset, youtube_clip_dataset
from corrvos.errors import ConfigError, DataError

__all__ = ["LAYOUTS", "detect_layout", "open_clip_dataset"]

LAYOUTS = ("davis", "youtube", "bl30k")


def detect_layout(root: str | PathLike) -> str:
    """The layout of ``root``: "davis" (``JPEGImages/480p``), "youtube" (``train/JPEGImages``, or a split folder
    with ``meta.json``) or "bl30k" (``JPEGImages`` + ``Annotations`` here or in segment folders).

    Raises:
        DataError: none of these layouts is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if (root / "JPEGImages" / "480p").is_dir():
        return "davis"
    if (root / "train" / "JPEGImages").is_dir() or ((root / "JPEGImages").is_dir() and (root / "meta.json").is_file()):
        return "youtube"
    find_bl30k_parts(root)  # raises DataError when nothing matches
    return "bl30k"


def open_clip_dataset(root: str | PathLike, *, layout: str = "auto", **kwargs: Any) -> VOSClipDataset:
    """Training clips of a DAVIS, YouTube-VOS or BL30K folder (``layout="auto"`` detects which).

    Keyword arguments go to :func:`corrvos.data.clips.davis_clip_dataset`,
    :func:`corrvos.data.clips.youtube_clip_dataset` or :func:`corrvos.data.bl30k.bl30k_clip_dataset`. Works for
    the synthetic sets of ``corrvos synth``.

    Raises:
        ConfigError: ``layout`` is not "auto" or one of :data:`LAYOUTS`.
        DataError: ``layout="auto"`` and no known layout is found.
    """
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "davis":
        return davis_clip_dataset(root, **kwargs)
    if layout == "youtube":
        return youtube_clip_dataset(root, **kwargs)
    if layout == "bl30k":
        return bl30k_clip_dataset(root, **kwargs)
    raise ConfigError(f"unknown dataset layout {layout!r}; choose 'auto' or one of {LAYOUTS}")
