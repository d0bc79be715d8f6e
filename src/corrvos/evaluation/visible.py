"""J&F restricted to the cells where an object is visible, and per-frame J&F means.

The DAVIS protocol scores every (object, evaluated frame) cell, including cells where the object is hidden in
the ground truth (occluded or out of view): there an empty prediction scores J = F = 1. On videos with many
occlusions this rewards predicting nothing, so a J&F over all cells can rank an empty mask above a model.
The *visible cells* are the (object k, evaluated frame t) cells whose ground truth has at least one pixel of k;
the scores here average over them only:

- per object, the mean of J (and of F) over its visible cells; then the mean over the objects that have at least
  one visible cell; J&F is the average of the two means, as the DAVIS J&F-Mean
  (the definition of ``subset_scores`` in benchmarks/ablation_stats.py);
- objects are 1..N with N the largest id of the first ground-truth frame, evaluated frames 1..T-2, void (255)
  counts as background, as in :mod:`corrvos.evaluation.davis`.

The inputs are the per-frame ``j`` / ``f`` arrays [N, T-2] of
:attr:`corrvos.evaluation.DavisEvalResult.sequences` and the ground-truth PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corrvos.data.io import read_label
from corrvos.errors import DataError

__all__ = ["dataset_visible_cells", "frame_means", "subset_scores", "visible_cells"]

VOID = 255


def visible_cells(gt_paths: Sequence[Path]) -> np.ndarray:
    """bool [N, T-2]: object k (row k-1) has at least one pixel in the ground truth of evaluated frame t.

    Args:
        gt_paths: the ground-truth PNGs of every frame of one sequence, in frame order [T], T >= 3.
    """
    if len(gt_paths) < 3:
        raise DataError(gt_paths[0] if gt_paths else None, "at least 3 annotated frames are needed")
    first = read_label(gt_paths[0])
    first[first == VOID] = 0
    num_obj = int(first.max())
    out = np.zeros((num_obj, len(gt_paths) - 2), dtype=bool)  # [N, T-2]
    ids = np.arange(1, num_obj + 1)
    for i, path in enumerate(gt_paths[1:-1]):
        present = np.unique(read_label(path))
        out[:, i] = np.isin(ids, present)
    return out


def dataset_visible_cells(davis_root: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """:func:`visible_cells` of each sequence of a DAVIS-layout root (``Annotations/480p/<name>/*.png``)."""
    root = Path(davis_root) / "Annotations" / "480p"
    return {name: visible_cells(sorted((root / name).glob("*.png"))) for name in names}


def subset_scores(sequences: Sequence[Any], selected: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """J, F and J&F over the selected (object, frame) cells of per-frame sequence scores.

    Args:
        sequences: objects with ``name`` and ``j`` / ``f`` float [N, n] (``SequenceScores``).
        selected: sequence name -> bool [N, n] of the cells to keep (sequences absent here are skipped); None keeps
            every cell (then J&F equals the DAVIS J&F-Mean).

    Returns:
        ``J``, ``F`` (means over the objects with at least one selected cell of their mean over those cells),
        ``JF`` (their average), ``objects`` and ``cells`` counted; the scores are None when nothing is selected.
    """
    per_j: list[float] = []
    per_f: list[float] = []
    cells = 0
    for seq in sequences:
        mask = np.ones(seq.j.shape, dtype=bool) if selected is None else selected.get(seq.name)
        if mask is None:
            continue
        if mask.shape != seq.j.shape:
            raise ValueError(f"{seq.name}: selection {mask.shape} does not match the scores {seq.j.shape}")
        for k in range(mask.shape[0]):
            if mask[k].any():
                per_j.append(float(seq.j[k, mask[k]].mean()))
                per_f.append(float(seq.f[k, mask[k]].mean()))
                cells += int(mask[k].sum())
    if not per_j:
        return {"J": None, "F": None, "JF": None, "objects": 0, "cells": 0}
    j, f = float(np.mean(per_j)), float(np.mean(per_f))
    return {"J": j, "F": f, "JF": (j + f) / 2, "objects": len(per_j), "cells": cells}


def frame_means(sequences: Sequence[Any], selected: Mapping[str, np.ndarray] | None = None) -> dict[str, list]:
    """Per frame index, the mean over objects of (J + F) / 2 on the selected cells (all cells when None).

    Frame index t is the frame's position in its sequence (evaluated frames are 1..T-2); sequences of different
    lengths contribute to the frames they have.

    Returns:
        ``frame`` (indices, increasing), ``jf`` (the means; None where no cell is selected) and ``cells`` (the
        number of (object, sequence) cells averaged at each index).
    """
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for seq in sequences:
        jf = (seq.j + seq.f) / 2  # [N, n]
        mask = np.ones(jf.shape, dtype=bool) if selected is None else selected.get(seq.name)
        if mask is None:
            continue
        for i in range(jf.shape[1]):
            t = i + 1
            counts.setdefault(t, 0)
            sums.setdefault(t, 0.0)
            keep = mask[:, i]
            sums[t] += float(jf[keep, i].sum())
            counts[t] += int(keep.sum())
    frames = sorted(counts)
    return {
        "frame": frames,
        "jf": [sums[t] / counts[t] if counts[t] else None for t in frames],
        "cells": [counts[t] for t in frames],
    }
