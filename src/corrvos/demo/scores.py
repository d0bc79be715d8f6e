"""The demo's scores: J&F of the two models and of two no-model floors, on all cells and on the visible cells.

Every row (a model's results or a floor's) is scored with the DAVIS 2017 semi-supervised protocol
(:func:`corrvos.evaluation.evaluate_davis`, as ``corrvos eval``), then restricted to the *visible cells*, the
(object, evaluated frame) cells where the object has at least one ground-truth pixel
(:mod:`corrvos.evaluation.visible`). Visible-cell J&F is the headline: the synthetic videos hide objects often
(occlusions, objects leaving the frame), and on a hidden object an empty mask scores J = F = 1, so the all-cell
J&F rewards predicting nothing. The floors make this visible:

- ``copy_first_frame``: every frame's prediction is the first-frame mask (:func:`copy_first_frame`);
- ``empty_after_first_frame``: the first-frame mask on frame 0, nothing after (:func:`empty_after_first_frame`):
  0 on every visible cell, 1 on every hidden one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FLOORS", "ModelScores", "score_results", "sequence_jf", "write_floors"]

#: floor name -> (label, what it predicts)
FLOORS = {
    "copy_first_frame": "copy first frame",
    "empty_after_first_frame": "empty after frame 0",
}


@dataclass
class ModelScores:
    """J&F of one row (a model or a floor) on the evaluation set (fractions).

    Attributes:
        mode: the loss mode of a model ("none", "paper") or the floor's name.
        global_scores: the 7 DAVIS global values (all cells: ``J&F-Mean``, ``J-Mean``, ...).
        per_sequence: per video, J&F over all cells (the mean over its objects of (J-Mean + F-Mean) / 2).
        checkpoint: the model's weights ("" for a floor).
        results: the folder of palette PNGs.
        visible: J, F, JF over the visible cells, and the ``objects`` and ``cells`` counted (scores None if none).
        all_cells: the same over every cell (JF equals ``global_scores["J&F-Mean"]``).
        per_sequence_visible: per video, J&F over its visible cells (None: no visible cell).
        per_frame: ``frame`` indices (1..T-2) and, for ``visible`` and ``all`` cells, the mean over objects of
            (J + F) / 2 at each index.
    """

    mode: str
    global_scores: dict[str, float]
    per_sequence: dict[str, float]
    checkpoint: str
    results: str
    visible: dict[str, Any] = field(default_factory=dict)
    all_cells: dict[str, Any] = field(default_factory=dict)
    per_sequence_visible: dict[str, float | None] = field(default_factory=dict)
    per_frame: dict[str, list] = field(default_factory=dict)

    @property
    def headline(self) -> float | None:
        """Visible-cell J&F."""
        return self.visible.get("JF")


def sequence_jf(report: Any) -> dict[str, float]:
    """Per-sequence J&F: the mean over its objects of (J-Mean + F-Mean) / 2, as the official per-object CSV."""
    per_object = (report.j_stats[:, 0] + report.f_stats[:, 0]) / 2  # [O]
    groups: dict[str, list[float]] = {}
    for name, value in zip(report.object_names, per_object.tolist(), strict=True):
        groups.setdefault(name.rsplit("_", 1)[0], []).append(value)
    return {seq: float(np.mean(values)) for seq, values in groups.items()}


def write_floors(eval_root: Path, results_root: Path, progress: bool) -> dict[str, Path]:
    """Write the results of every floor of :data:`FLOORS` to ``<results_root>/<name>``; returns name -> folder."""
    from corrvos.inference.baseline import copy_first_frame, empty_after_first_frame

    writers = {"copy_first_frame": copy_first_frame, "empty_after_first_frame": empty_after_first_frame}
    return {name: writers[name](eval_root, results_root / name, split="val", progress=progress) for name in FLOORS}


def score_results(
    eval_root: Path, results: dict[str, Path], checkpoints: dict[str, str], *, workers: int, progress: bool
) -> dict[str, ModelScores]:
    """Score every results folder (name -> folder) on the ``val`` split of ``eval_root``, all and visible cells."""
    from corrvos.evaluation import evaluate_davis
    from corrvos.evaluation.visible import dataset_visible_cells, frame_means, subset_scores

    visible: dict[str, np.ndarray] | None = None
    out: dict[str, ModelScores] = {}
    for name, folder in results.items():
        report = evaluate_davis(eval_root, folder, set_name="val", workers=workers, progress=progress)
        if visible is None:  # the same ground truth for every row
            visible = dataset_visible_cells(eval_root, [s.name for s in report.sequences])
        seen, every = frame_means(report.sequences, visible), frame_means(report.sequences)
        out[name] = ModelScores(
            mode=name,
            global_scores=dict(report.global_scores),
            per_sequence=sequence_jf(report),
            checkpoint=checkpoints.get(name, ""),
            results=str(folder),
            visible=subset_scores(report.sequences, visible),
            all_cells=subset_scores(report.sequences),
            per_sequence_visible={s.name: subset_scores([s], visible)["JF"] for s in report.sequences},
            per_frame={"frame": every["frame"], "visible": seen["jf"], "all": every["jf"]},
        )
    return out
