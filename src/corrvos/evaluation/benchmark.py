"""Local J&F on benchmarks read as :class:`~corrvos.data.sequence.SequenceCollection` (MOSE, LVOS).

MOSE and LVOS are scored by their servers (MOSE valid, LVOS test) or by the LVOS toolkit; this module gives the
same kind of number wherever ground truth is on disk (MOSE train, LVOS train / valid), with DAVIS semantics:

- objects: the ids the reader gives as input (``objects_first_frame``: MOSE frame 0, LVOS the meta's start);
- object k is scored on every annotated frame t with ``reference(k) < t <= last(k)`` (``last``: LVOS's
  ``objects_last_frame``, else the last frame); the reference frame is not scored (its mask is the input), the
  last frame is (unlike DAVIS, which drops it);
- per frame, J and F as DAVIS (:func:`corrvos.evaluation.metrics.frame_scores`, void 255 counted as background,
  boundary tolerance ``ceil(0.008 * diagonal)``); per object Mean, Recall and Decay
  (:func:`~corrvos.evaluation.metrics.db_statistics`); global values are means over objects and J&F-Mean is
  (J-Mean + F-Mean) / 2.

Known differences from the official LVOS toolkit: it also scores each object's reference frame (J = F = 1 for a
method that echoes the given mask, so its numbers are slightly higher) and reads 255 as an object; treat these
numbers as approximate. Every missing, unreadable or wrongly sized prediction and every predicted id that is not
an object of its video is reported in one error before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrvos.data.io import VOID_LABEL, label_header_problem, read_label
from corrvos.data.sequence import SequenceCollection
from corrvos.errors import DataError
from corrvos.evaluation.metrics import boundary_radius, db_statistics, frame_scores
from corrvos.evaluation.parallel import raise_problems, run_pool
from corrvos.evaluation.tables import GLOBAL_COLUMNS, format_csv
from corrvos.utils import atomic_write_text

__all__ = ["BenchmarkEvalResult", "evaluate_sequences"]

logger = logging.getLogger(__name__)


@dataclass
class _SequenceTask:
    name: str
    gt_paths: dict[int, Path]  # frame index -> ground-truth PNG, for the scored frames
    pred_paths: dict[int, Path]  # frame index -> prediction PNG, same keys
    objects: dict[int, tuple[int, int]]  # id -> (reference frame index, last scored frame index)


@dataclass
class _SequenceScores:
    name: str
    objects: list[int]
    j: list[list[float]]  # per object, per scored frame
    f: list[list[float]]
    problems: list[str] = field(default_factory=list)


@dataclass
class BenchmarkEvalResult:
    """Result of :func:`evaluate_sequences` (fractions; approximate, see the module docstring).

    Attributes:
        global_scores: the 7 DAVIS global values by column name (``J&F-Mean``, ``J-Mean``, ...).
        object_names: ``<video>_<id>`` of every scored object [O].
        j_stats / f_stats: float64 [O, 3] (Mean, Recall, Decay) per object.
        frames: [O] scored frames per object.
    """

    benchmark: str
    split: str
    global_scores: dict[str, float]
    object_names: list[str]
    j_stats: np.ndarray
    f_stats: np.ndarray
    frames: list[int]
    csv_paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _score(task: _SequenceTask) -> _SequenceScores:
    """Stream one video's scored frames: J and F of every active object."""
    ids = sorted(task.objects)
    j: list[list[float]] = [[] for _ in ids]
    f: list[list[float]] = [[] for _ in ids]
    problems: list[str] = []
    for t in sorted(task.gt_paths):
        active = [i for i, k in enumerate(ids) if task.objects[k][0] < t <= task.objects[k][1]]
        try:
            gt = read_label(task.gt_paths[t])
            pred = read_label(task.pred_paths[t])
        except DataError as exc:
            problems.append(str(exc))
            continue
        if pred.shape != gt.shape:
            problems.append(f"{task.pred_paths[t]}: size {pred.shape} differs from the ground truth {gt.shape}")
            continue
        extra = sorted(set(np.unique(pred).tolist()) - set(ids) - {0})
        if extra:
            problems.append(
                f"{task.pred_paths[t]}: predicted id(s) {extra} that are not objects of video {task.name} ({ids})"
            )
            continue
        if problems:
            continue
        gt = np.where(gt == VOID_LABEL, 0, gt).astype(np.uint8)
        j_t, f_t = frame_scores(gt, pred, max(ids), boundary_radius(gt.shape))  # [max id] each
        for i in active:
            j[i].append(float(j_t[ids[i] - 1]))
            f[i].append(float(f_t[ids[i] - 1]))
    return _SequenceScores(task.name, ids, j, f, problems)


def _plan(dataset: SequenceCollection, results_dir: Path, names: list[str]) -> tuple[list[_SequenceTask], list[str]]:
    """Per video: the scored frames and their files, checked from the PNG headers; (tasks, problems)."""
    tasks, problems = [], []
    for name in names:
        try:
            seq = dataset.sequence(name)
        except DataError as exc:
            problems.append(str(exc))
            continue
        last_of = getattr(seq, "objects_last_frame", {})
        objects = {k: (r, last_of.get(k, len(seq) - 1)) for k, r in seq.objects_first_frame.items()}
        scored = sorted(t for t in seq.annotation_paths if any(r < t <= e for r, e in objects.values()))
        if not scored:
            where = Path(getattr(dataset, "annotation_root", seq.frame_paths[0].parent.parent)) / name
            problems.append(f"{where}: no ground truth after the reference frame(s) (a server-scored split?)")
            continue
        if not (results_dir / name).is_dir():
            problems.append(f"{results_dir / name}: prediction folder not found (video {name})")
            continue
        preds = {t: results_dir / name / f"{seq.frame_ids[t]}.png" for t in scored}
        missing = [p for p in preds.values() if not p.is_file()]
        if missing:
            listed = ", ".join(p.name for p in missing[:10]) + (" ..." if len(missing) > 10 else "")
            problems.append(f"{results_dir / name}: {len(missing)} prediction(s) missing: {listed}")
        for p in preds.values():
            if p.is_file():
                problem, _ = label_header_problem(p, seq.size, reference="its frame")
                if problem:
                    problems.append(problem)
        tasks.append(_SequenceTask(name, {t: seq.annotation_paths[t] for t in scored}, preds, objects))
    return tasks, problems


def evaluate_sequences(
    dataset: SequenceCollection,
    results_dir: str | Path,
    *,
    benchmark: str,
    videos: list[str] | None = None,
    workers: int = 1,
    write_csv: bool = True,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> BenchmarkEvalResult:
    """Local J&F of ``<results>/<video>/<frame>.png`` predictions on a dataset with ground truth on disk.

    Args:
        dataset: a reader (:class:`~corrvos.data.mose.MoseDataset`, :class:`~corrvos.data.lvos.LvosDataset`).
        results_dir: the predictions (an ``Annotations/`` sub-folder is used when present).
        benchmark: name used in the CSV file names and messages (``mose``, ``lvos``).
        videos: videos to score (default: all of the split).
        workers: processes; 1 = in this process.
        write_csv: write ``corrvos_<benchmark>_global-<split>.csv`` and ``corrvos_<benchmark>_per-object-<split>.csv``.
        output_dir: where to write them (default: the results folder).
        progress: show a progress bar.

    Raises:
        DataError: listing every problem of every video (missing ground truth or prediction, size, unknown id).
    """
    results_dir = Path(results_dir)
    if (results_dir / "Annotations").is_dir():
        results_dir = results_dir / "Annotations"
    if not results_dir.is_dir():
        raise DataError(results_dir, "results folder not found")
    split = str(getattr(dataset, "split", "all"))
    tasks, problems = _plan(dataset, results_dir, list(videos if videos is not None else dataset.sequences))
    raise_problems(problems, results_dir)
    scores: list[_SequenceScores] = run_pool(_score, tasks, workers, f"J&F ({benchmark})", progress)
    raise_problems([p for s in scores for p in s.problems], results_dir)
    names, j_stats, f_stats, frames, notes = [], [], [], [], []
    for s in scores:
        for k, j, f in zip(s.objects, s.j, s.f, strict=True):
            if not j:
                notes.append(f"{s.name}: object {k} has no annotated frame in its range after its reference frame")
                continue
            names.append(f"{s.name}_{k}")
            j_stats.append(db_statistics(np.asarray(j, dtype=np.float64)))
            f_stats.append(db_statistics(np.asarray(f, dtype=np.float64)))
            frames.append(len(j))
    js = np.array(j_stats, dtype=np.float64).reshape(-1, 3)  # [O, 3] Mean, Recall, Decay
    fs = np.array(f_stats, dtype=np.float64).reshape(-1, 3)  # [O, 3]
    with np.errstate(invalid="ignore"):
        means = [float(np.mean(js[:, c])) if len(js) else float("nan") for c in range(3)]
        means += [float(np.mean(fs[:, c])) if len(fs) else float("nan") for c in range(3)]
    values = [(means[0] + means[3]) / 2.0, *means]
    result = BenchmarkEvalResult(
        benchmark=benchmark,
        split=split,
        global_scores=dict(zip(GLOBAL_COLUMNS, values, strict=True)),
        object_names=names,
        j_stats=js,
        f_stats=fs,
        frames=frames,
        warnings=notes,
    )
    for note in notes:
        logger.warning(note)
    if write_csv:
        out = Path(output_dir) if output_dir is not None else results_dir
        rows = [(n, c, *map(float, j), *map(float, f)) for n, c, j, f in zip(names, frames, js, fs, strict=True)]
        files = {
            "global": (
                out / f"corrvos_{benchmark}_global-{split}.csv",
                format_csv(GLOBAL_COLUMNS, [values], full_precision=True),
            ),
            "per_object": (
                out / f"corrvos_{benchmark}_per-object-{split}.csv",
                format_csv(
                    ("Object", "Frames", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"),
                    rows,
                    full_precision=True,
                ),
            ),
        }
        for path, text in files.values():
            atomic_write_text(path, text)
        result.csv_paths = {k: p for k, (p, _) in files.items()}
    return result
