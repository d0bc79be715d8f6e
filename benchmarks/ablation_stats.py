"""Statistics of the ablation (``benchmarks/ablation.py``): seed summaries, paired bootstrap intervals, and J / F
restricted to the frames where an unannotated distractor crosses an annotated object.

- :func:`summarize`: mean and sample standard deviation (ddof 1) over seeds;
- :func:`bootstrap_ci`: percentile bootstrap interval of the mean of per-seed paired differences (resampling the
  seeds with replacement); :func:`t_interval` gives the Student-t interval of the same mean for reference;
- :func:`crossing_frames`: which frames of which object a distractor overlaps or comes within ``radius`` pixels of;
- :func:`subset_scores` (:mod:`corrvos.evaluation.visible`'s): DAVIS-style J, F and J&F (per-object means over
  the selected frames, then the mean over
  objects) of the per-frame scores of :class:`corrvos.evaluation.SequenceScores`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from corrvos.evaluation.metrics import disk
from corrvos.evaluation.visible import subset_scores  # the library's (the demo scores visible cells too)

__all__ = [
    "bootstrap_ci",
    "bootstrap_means",
    "crossing_frames",
    "paired_differences",
    "subset_scores",
    "summarize",
    "t_interval",
]


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; None for one value), count and the values themselves."""
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()) if arr.size else None,
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "n": int(arr.size),
        "values": [float(v) for v in arr],
    }


def bootstrap_means(values: Sequence[float], *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of ``values`` (drawn with replacement), float64 [resamples]."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("bootstrap of an empty sample")
    idx = rng.integers(0, arr.size, size=(resamples, arr.size))  # [R, k]
    return arr[idx].mean(axis=1)


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-seed paired differences).

    The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles (numpy's default linear
    interpolation) of the means of ``resamples`` resamples drawn with ``np.random.default_rng(seed)``. With k values
    there are only C(2k-1, k) distinct resamples: for k = 3, 10, and each extreme (all three draws the smallest, or
    the largest, value) has probability 1/27 > 2.5 %, so the 95 % interval is the full range [min, max] of the
    three differences. It says nothing stronger than "all seeds agree in sign" and understates the uncertainty of
    so few seeds; see :func:`t_interval`.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    means = bootstrap_means(values, resamples=resamples, rng=np.random.default_rng(seed))
    low, high = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {
        "mean": float(np.mean(values)),
        "low": float(low),
        "high": float(high),
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "n": len(values),
    }


def t_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean (None with fewer than 2 values)."""
    from scipy import stats

    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return None
    half = float(stats.t.ppf((1 + level) / 2, arr.size - 1)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return float(arr.mean() - half), float(arr.mean() + half)


def paired_differences(
    scores: Mapping[int, float], baseline: Mapping[int, float], *, resamples: int = 10_000, level: float = 0.95
) -> dict[str, Any] | None:
    """Per-seed differences ``scores[s] - baseline[s]`` over the seeds both have, their bootstrap and t intervals."""
    seeds = sorted(set(scores) & set(baseline))
    if not seeds:
        return None
    diffs = [float(scores[s] - baseline[s]) for s in seeds]
    ci = bootstrap_ci(diffs, resamples=resamples, level=level)
    t = t_interval(diffs, level=level)
    return {
        "seeds": seeds,
        "per_seed": diffs,
        "mean": ci["mean"],
        "ci_low": ci["low"],
        "ci_high": ci["high"],
        "t_low": t[0] if t else None,
        "t_high": t[1] if t else None,
        "wins": sum(d > 0 for d in diffs),
        "n": len(diffs),
    }


def crossing_frames(object_masks: np.ndarray, distractor_masks: np.ndarray, *, radius: int = 2) -> np.ndarray:
    """Frames where a distractor overlaps or touches an object.

    Args:
        object_masks: bool [K, T, H, W], the (full or visible) silhouette of each annotated object per frame.
        distractor_masks: bool [D, T, H, W], the same for the unannotated distractors (D may be 0).
        radius: a distractor dilated by a disk of this radius (pixels, Euclidean) must meet the object.

    Returns:
        bool [K, T]: True where object k and some distractor overlap or lie within ``radius`` pixels at frame t.
    """
    k, t = object_masks.shape[:2]
    out = np.zeros((k, t), dtype=bool)
    if distractor_masks.shape[0] == 0:
        return out
    kernel = disk(radius)
    near = distractor_masks.any(axis=0).astype(np.uint8)  # [T, H, W]
    for f in range(t):
        grown = cv2.dilate(near[f], kernel).astype(bool) if radius > 0 else near[f].astype(bool)
        out[:, f] = (object_masks[:, f] & grown).reshape(k, -1).any(axis=1)
    return out
