"""Trivial VOS floors that need no model: copy the first-frame mask, or predict nothing after frame 0.

- :func:`copy_first_frame`: every frame's prediction is the first-frame mask. A lower bound for J&F (objects
  that do not move score well, everything else badly); ``corrvos demo --quick`` runs it, a quick end-to-end check
  of the data readers, the results layout and the evaluator.
- :func:`empty_after_first_frame`: the first-frame mask on frame 0 and empty masks on every later frame. It scores
  0 on every cell where an object is visible and 1 on every cell where it is hidden (an empty prediction of an
  empty ground truth), so its J&F over all cells measures how often objects are hidden, not segmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corrvos.data.davis import DavisDataset
from corrvos.data.io import write_label
from corrvos.progress import progress_bar

__all__ = ["copy_first_frame", "empty_after_first_frame"]


def copy_first_frame(
    davis_root: str | Path, out_dir: str | Path, *, split: str = "val", year: str = "2017", progress: bool = True
) -> Path:
    """Write ``<out_dir>/<seq>/<frame id>.png``: the frame-0 objects (void 255 -> 0) for every frame of every sequence.

    Args:
        davis_root: a DAVIS-layout root (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets``).
        out_dir: results folder in the DAVIS results layout, ready for ``corrvos eval``.
        split: the ImageSets split to run on.
        year: DAVIS year of the ImageSets list.
        progress: show a progress bar.

    Returns:
        ``out_dir`` as a Path.
    """
    dataset = DavisDataset(davis_root, year=year, split=split)
    out_dir = Path(out_dir)
    for name in progress_bar(dataset.sequences, desc="copy-first-frame", unit="seq", disable=not progress):
        seq = dataset.sequence(name)
        first = seq.read_mask(0)
        first[~np.isin(first, seq.object_ids)] = 0  # only the objects: DAVIS void (255) is background
        for frame_id in seq.frame_ids:
            write_label(out_dir / name / f"{frame_id}.png", first)
    return out_dir


def empty_after_first_frame(
    davis_root: str | Path, out_dir: str | Path, *, split: str = "val", year: str = "2017", progress: bool = True
) -> Path:
    """Write ``<out_dir>/<seq>/<frame id>.png``: the frame-0 objects (void 255 -> 0) on frame 0, nothing after.

    Arguments and return value as :func:`copy_first_frame`.
    """
    dataset = DavisDataset(davis_root, year=year, split=split)
    out_dir = Path(out_dir)
    for name in progress_bar(dataset.sequences, desc="empty-after-frame-0", unit="seq", disable=not progress):
        seq = dataset.sequence(name)
        first = seq.read_mask(0)
        first[~np.isin(first, seq.object_ids)] = 0
        for t, frame_id in enumerate(seq.frame_ids):
            write_label(out_dir / name / f"{frame_id}.png", first if t == 0 else np.zeros_like(first))
    return out_dir
