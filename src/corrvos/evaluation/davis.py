"""J&F evaluation of DAVIS-layout predictions with the official semi-supervised protocol.

Reproduces davisvideochallenge/davis2017-evaluation (commit ac7c43f, ``davis2017/{davis,results,evaluation}.py``
and ``evaluation_method.py``; semantics re-expressed, no code copied):

- sequences from ``ImageSets/<year>/<set>.txt`` in file order; GT = the sorted ``*.png`` of
  ``Annotations/480p/<seq>``; a frame id is the file name without its extension (further dots removed, as the
  official code joins the remaining parts);
- GT 255 (void) -> 0; N = max label of GT frame 0; objects 1..N (missing ids are phantom objects whose GT is
  empty everywhere; GT ids > N are ignored); predictions ``<results>/<seq>/<id>.png`` of frames 1 .. T-2;
  objects never predicted score as empty predictions;
- per object: Mean / Recall / Decay of J and F; global values are means over all objects of all sequences.

Deliberate differences (documented in docs/evaluation.md): every sequence is checked first and all problems
are reported in one :class:`corrvos.errors.DataError` (missing or unreadable prediction, RGB/16-bit PNG, size
mismatch, predicted id > N, fewer than 3 frames); Decay bins are int64 (``uint8_decay=True`` reproduces the
official wrap past 255 frames); ``--year 2016`` binarises GT and predictions (label > 0), the usual DAVIS 2016
convention. Work is streamed (one uint8 label map per frame) and spread over a process pool per sequence.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrvos.data.io import label_header_problem, read_label
from corrvos.errors import ConfigError, DataError
from corrvos.evaluation.metrics import boundary_radius, db_statistics, frame_scores, label_confusion
from corrvos.evaluation.parallel import TaskRunner, raise_problems
from corrvos.evaluation.tables import GLOBAL_COLUMNS, PER_SEQUENCE_COLUMNS, format_csv, format_text_table
from corrvos.utils import atomic_write_text

__all__ = ["SETS", "DavisEvalResult", "SequenceScores", "evaluate_davis", "format_tables", "official_csv_names"]

logger = logging.getLogger(__name__)

SETS = ("train", "val", "test-dev", "test-challenge")


@dataclass
class SequenceTask:
    """What a worker needs to score one sequence (picklable)."""

    name: str
    gt_paths: list[Path]  # all GT PNGs, sorted [T]
    pred_paths: list[Path]  # predictions of the evaluated frames [T-2]
    frame_ids: list[str]  # evaluated frame ids [T-2]
    binarise: bool = False  # DAVIS 2016: label > 0 -> 1


@dataclass
class SequenceScores:
    """Per-frame scores of one sequence. ``j`` and ``f`` are float64 [N, n] (objects x evaluated frames)."""

    name: str
    frame_ids: list[str]
    j: np.ndarray
    f: np.ndarray
    notes: list[str] = field(default_factory=list)  # non-DAVIS-style data, scored as the official code does
    problems: list[str] = field(default_factory=list)  # fatal input errors

    @property
    def num_objects(self) -> int:
        return int(self.j.shape[0])


@dataclass
class DavisEvalResult:
    """Result of :func:`evaluate_davis`. Values are fractions.

    Attributes:
        global_scores: the 7 global values by column name (``J&F-Mean``, ``J-Mean``, ...).
        object_names: ``<seq>_<k>`` in evaluation order [O].
        j_stats / f_stats: float64 [O, 3], per object (Mean, Recall, Decay).
        sequences: per-frame scores of every sequence, in ImageSets order.
        csv_paths: files written (empty when ``write_csv=False``).
        warnings: notes about non-DAVIS-style data and Decay past 255 frames.
    """

    set_name: str
    global_scores: dict[str, float]
    object_names: list[str]
    j_stats: np.ndarray
    f_stats: np.ndarray
    sequences: list[SequenceScores]
    csv_paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def official_csv_names(set_name: str) -> tuple[str, str]:
    """File names of the official global and per-object CSVs for a set."""
    return f"global_results-{set_name}.csv", f"per-sequence_results-{set_name}.csv"


def _frame_id(path: Path) -> str:
    return "".join(path.name.split(".")[:-1])  # official: dots of a multi-dot name are dropped


def check_sequence(task: SequenceTask) -> list[str]:
    """Header-level checks of one sequence (existence, PNG mode, sizes); returns the problems found."""
    problems: list[str] = []
    problem, size0 = label_header_problem(task.gt_paths[0], None)
    if problem:
        return [problem]
    for path in task.gt_paths[1:-1]:
        problem, _ = label_header_problem(path, size0)
        if problem:
            problems.append(problem)
    missing = [p for p in task.pred_paths if not p.is_file()]
    if missing and len(missing) == len(task.pred_paths) and not missing[0].parent.is_dir():
        problems.append(f"{missing[0].parent}: prediction folder not found (sequence {task.name})")
        return problems
    if missing:
        names = ", ".join(p.name for p in missing[:10]) + (" ..." if len(missing) > 10 else "")
        problems.append(f"{missing[0].parent}: {len(missing)} prediction(s) missing: {names}")
    for path in task.pred_paths:
        if path.is_file():
            problem, _ = label_header_problem(path, size0)
            if problem:
                problems.append(problem)
    return problems


def scan_ids(task: SequenceTask) -> list[str]:
    """Only the predicted-id check (id > N) of one sequence, skipping files that cannot be read.

    Used when the header checks already failed, so that one error lists every kind of problem.
    """
    try:
        num_obj = int(_read_gt(task.gt_paths[0], task.binarise).max())
    except DataError:
        return []
    problems = []
    for path in task.pred_paths:
        try:
            pred = read_label(path)
        except DataError:
            continue
        if task.binarise:
            continue
        bad = sorted(int(v) for v in np.unique(pred) if v > num_obj)
        if bad:
            problems.append(_id_problem(path, bad, task.name, num_obj))
    return problems


def _id_problem(path: Path, bad: list[int], name: str, num_obj: int) -> str:
    return (
        f"{path}: predicted id(s) {bad} but the ground truth of sequence {name} has N = {num_obj} object(s) "
        f"(ids 1..{num_obj} from its first frame)"
    )


def _read_gt(path: Path, binarise: bool) -> np.ndarray:
    gt = read_label(path)
    if binarise:
        return (gt > 0).astype(np.uint8)
    gt[gt == 255] = 0  # void -> background
    return gt


def score_sequence(task: SequenceTask) -> SequenceScores:
    """Stream one sequence frame by frame and compute J and F for objects 1..N on frames 1 .. T-2.

    Fatal input problems (an unreadable file, a predicted id > N) are returned in ``problems`` rather than
    raised, so that a process pool can report every sequence's problems at once.
    """
    n = len(task.frame_ids)
    empty = np.zeros((0, n))
    try:
        gt0 = _read_gt(task.gt_paths[0], task.binarise)
    except DataError as exc:
        return SequenceScores(task.name, task.frame_ids, empty, empty, problems=[str(exc)])
    num_obj = int(gt0.max()) if gt0.size else 0
    radius = boundary_radius(gt0.shape)
    j = np.ones((num_obj, n), dtype=np.float64)  # [N, n]
    f = np.ones((num_obj, n), dtype=np.float64)  # [N, n]
    problems: list[str] = []
    gt_ids_seen: set[int] = set()
    for i, (gt_path, pred_path) in enumerate(zip(task.gt_paths[1:-1], task.pred_paths, strict=True)):
        try:
            gt = _read_gt(gt_path, task.binarise)
            pred = read_label(pred_path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if task.binarise:
            pred = (pred > 0).astype(np.uint8)
        if gt.shape != gt0.shape or pred.shape != gt0.shape:
            problems.append(
                f"{pred_path}: size {pred.shape} or ground truth size {gt.shape} differs from "
                f"{gt0.shape} of {task.gt_paths[0]}"
            )
            continue
        conf = label_confusion(gt, pred)  # [256 gt labels, 256 predicted labels]
        pred_ids = np.flatnonzero(conf.sum(axis=0))
        if pred_ids.size and pred_ids[-1] > num_obj:
            problems.append(_id_problem(pred_path, [int(v) for v in pred_ids if v > num_obj], task.name, num_obj))
            continue
        gt_ids_seen.update(np.flatnonzero(conf.sum(axis=1)).tolist())
        if not problems:
            j[:, i], f[:, i] = frame_scores(gt, pred, num_obj, radius, confusion=conf)
    notes = _data_notes(task, gt0, num_obj, gt_ids_seen) if not problems else []
    return SequenceScores(task.name, task.frame_ids, j, f, notes=notes, problems=problems)


def _data_notes(task: SequenceTask, gt0: np.ndarray, num_obj: int, gt_ids: set[int]) -> list[str]:
    """Warnings for data that is not DAVIS-style (scored exactly as the official code does)."""
    notes = []
    first = {int(v) for v in np.unique(gt0)}
    absent0 = [k for k in range(1, num_obj + 1) if k not in first]
    phantom = [k for k in absent0 if k not in gt_ids]
    late = [k for k in absent0 if k in gt_ids]
    beyond = sorted(k for k in gt_ids if k > num_obj)
    if phantom:
        notes.append(
            f"{task.name}: id(s) {phantom} <= N={num_obj} never appear in the ground truth; the official "
            "protocol scores them as objects with empty masks (1 where not predicted)"
        )
    if late:
        notes.append(f"{task.name}: object(s) {late} are absent from the first frame but appear later")
    if beyond:
        notes.append(
            f"{task.name}: ground-truth id(s) {beyond} > N={num_obj} appear after the first frame and are "
            "ignored, as in the official protocol"
        )
    return notes


def _plan(davis_root: Path, results_dir: Path, set_name: str, year: str) -> tuple[list[SequenceTask], list[str]]:
    """Sequence list and per-sequence file lists; returns (tasks, problems)."""
    if set_name not in SETS:
        raise ConfigError(f"--set must be one of {', '.join(SETS)}, got {set_name!r}")
    if year not in ("2016", "2017"):
        raise ConfigError(f"--year must be 2016 or 2017, got {year!r}")
    list_file = davis_root / "ImageSets" / year / f"{set_name}.txt"
    if not list_file.is_file():
        raise DataError(list_file, "sequence list not found (expected a DAVIS root with ImageSets/)")
    names: list[str] = []
    for line in list_file.read_text().splitlines():
        name = line.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise DataError(list_file, "no sequence listed")
    tasks, problems = [], []
    for name in names:
        gt_dir = davis_root / "Annotations" / "480p" / name
        if not gt_dir.is_dir():
            problems.append(f"{gt_dir}: ground-truth folder not found")
            continue
        gt_paths = sorted(p for p in gt_dir.glob("*.png") if p.is_file())
        jpg_dir = davis_root / "JPEGImages" / "480p" / name
        n_jpg = len(list(jpg_dir.glob("*.jpg"))) if jpg_dir.is_dir() else 0
        if len(gt_paths) < n_jpg:
            problems.append(
                f"{gt_dir}: {len(gt_paths)} annotation(s) for {n_jpg} frame(s) in {jpg_dir}; the "
                "ground truth is incomplete (test sets cannot be scored locally)"
            )
            continue
        if len(gt_paths) < 3:
            problems.append(
                f"{gt_dir}: {len(gt_paths)} annotated frame(s); at least 3 are needed (the first and "
                "last frames are not scored)"
            )
            continue
        ids = [_frame_id(p) for p in gt_paths[1:-1]]
        preds = [results_dir / name / f"{i}.png" for i in ids]
        tasks.append(
            SequenceTask(name=name, gt_paths=gt_paths, pred_paths=preds, frame_ids=ids, binarise=year == "2016")
        )
    return tasks, problems


def evaluate_davis(
    davis_root: str | Path,
    results_dir: str | Path,
    *,
    set_name: str = "val",
    year: str = "2017",
    workers: int = 1,
    uint8_decay: bool = False,
    write_csv: bool = True,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> DavisEvalResult:
    """Score DAVIS-layout predictions with the official semi-supervised J&F protocol.

    Args:
        davis_root: DAVIS folder with ``ImageSets/<year>/<set>.txt`` and ``Annotations/480p/<seq>/*.png``.
        results_dir: folder with ``<seq>/<frame id>.png`` palette or grayscale predictions.
        set_name: ``train``, ``val``, ``test-dev`` or ``test-challenge``.
        year: ``2017`` (multi-object) or ``2016`` (``ImageSets/2016``, GT and predictions binarised).
        workers: processes (sequences are scored in parallel); 1 = in this process.
        uint8_decay: reproduce the official uint8 Decay bins (NaN or wrong values past 255 frames).
        write_csv: write the official CSVs (and corrvos' full-precision ones).
        output_dir: where to write them; the results folder by default, as the official script does.
        progress: show progress bars.

    Raises:
        DataError: listing every problem of every sequence (missing/unreadable files, sizes, extra ids).
        ConfigError: an unknown set or year.
    """
    davis_root, results_dir = Path(davis_root), Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(results_dir, "results folder not found")
    tasks, problems = _plan(davis_root, results_dir, set_name, year)
    weights = [len(t.pred_paths) for t in tasks]
    with TaskRunner(min(workers, max(len(tasks), 1))) as runner:
        for found in runner.map(check_sequence, tasks, desc="checking", progress=progress):
            problems.extend(found)
        if problems:  # also list the id problems, so that one error names every offender
            for found in runner.map(scan_ids, tasks, desc="checking ids", progress=progress):
                problems.extend(found)
            raise_problems(problems, results_dir)
        scores: list[SequenceScores] = runner.map(score_sequence, tasks, desc="J&F", progress=progress, weights=weights)
    raise_problems([p for s in scores for p in s.problems], results_dir)
    result = _aggregate(scores, set_name, uint8_decay)
    for note in result.warnings:
        logger.warning(note)
    if write_csv:
        result.csv_paths = write_csvs(result, Path(output_dir) if output_dir is not None else results_dir)
    return result


def _aggregate(scores: list[SequenceScores], set_name: str, uint8_decay: bool) -> DavisEvalResult:
    names: list[str] = []
    j_stats, f_stats, notes = [], [], [n for s in scores for n in s.notes]
    for seq in scores:
        n = seq.j.shape[1]
        for k in range(seq.num_objects):
            names.append(f"{seq.name}_{k + 1}")
            j_stats.append(db_statistics(seq.j[k], uint8_decay=uint8_decay))
            f_stats.append(db_statistics(seq.f[k], uint8_decay=uint8_decay))
            if n >= 256 and not uint8_decay:
                off = (db_statistics(seq.j[k], uint8_decay=True)[2], db_statistics(seq.f[k], uint8_decay=True)[2])
                if not np.array_equal(off, (j_stats[-1][2], f_stats[-1][2]), equal_nan=True):
                    notes.append(
                        f"{names[-1]}: {n} evaluated frames; Decay computed with int64 bins "
                        f"(J {j_stats[-1][2]:.6f}, F {f_stats[-1][2]:.6f}); the official toolkit would report "
                        f"J {off[0]:.6f}, "
                        f"F {off[1]:.6f} (uint8 wrap; use --compat-uint8-decay to reproduce it)"
                    )
    js = np.array(j_stats, dtype=np.float64).reshape(-1, 3)  # [O, 3] M, R, D
    fs = np.array(f_stats, dtype=np.float64).reshape(-1, 3)  # [O, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # no object at all: NaN, as the official code
        jm, jr, jd = (np.mean(list(js[:, c])) for c in range(3))
        fm, fr, fd = (np.mean(list(fs[:, c])) for c in range(3))
        values = [(jm + fm) / 2.0, jm, jr, jd, fm, fr, fd]
    return DavisEvalResult(
        set_name=set_name,
        global_scores=dict(zip(GLOBAL_COLUMNS, map(float, values), strict=True)),
        object_names=names,
        j_stats=js,
        f_stats=fs,
        sequences=scores,
        warnings=notes,
    )


def format_tables(result: DavisEvalResult, *, per_object: bool = True) -> str:
    """The global table and (optionally) the per-object table as console text, values with 3 decimals."""
    name = result.set_name
    parts = [
        f"--------------------------- Global results for {name} ---------------------------",
        format_text_table(GLOBAL_COLUMNS, [[result.global_scores[c] for c in GLOBAL_COLUMNS]]),
    ]
    if per_object:
        rows = [
            (obj, float(j[0]), float(f[0]))
            for obj, j, f in zip(result.object_names, result.j_stats, result.f_stats, strict=True)
        ]
        parts += [
            "",
            f"---------- Per sequence results for {name} ----------",
            format_text_table(PER_SEQUENCE_COLUMNS, rows),
        ]
    return "\n".join(parts)


def write_csvs(result: DavisEvalResult, out_dir: Path) -> dict[str, Path]:
    """Write the two official CSVs and corrvos' full-precision per-object and per-frame CSVs (atomically)."""
    g_name, s_name = official_csv_names(result.set_name)
    gvals = [result.global_scores[c] for c in GLOBAL_COLUMNS]
    per_obj = [
        (name, float(j[0]), float(f[0]))
        for name, j, f in zip(result.object_names, result.j_stats, result.f_stats, strict=True)
    ]
    full_obj = [
        (name, *map(float, j), *map(float, f))
        for name, j, f in zip(result.object_names, result.j_stats, result.f_stats, strict=True)
    ]
    frames = [
        (seq.name, k + 1, fid, float(seq.j[k, i]), float(seq.f[k, i]))
        for seq in result.sequences
        for k in range(seq.num_objects)
        for i, fid in enumerate(seq.frame_ids)
    ]
    files = {
        "global": (out_dir / g_name, format_csv(GLOBAL_COLUMNS, [gvals])),
        "per_sequence": (out_dir / s_name, format_csv(PER_SEQUENCE_COLUMNS, per_obj)),
        "global_full": (
            out_dir / f"corrvos_global-full-{result.set_name}.csv",
            format_csv(GLOBAL_COLUMNS, [gvals], full_precision=True),
        ),
        "per_object_full": (
            out_dir / f"corrvos_per-object-full-{result.set_name}.csv",
            format_csv(
                ("Object", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"),
                full_obj,
                full_precision=True,
            ),
        ),
        "per_frame_full": (
            out_dir / f"corrvos_per-frame-full-{result.set_name}.csv",
            format_csv(("Sequence", "Object", "Frame", "J", "F"), frames, full_precision=True),
        ),
    }
    for path, text in files.values():
        atomic_write_text(path, text)
    return {key: path for key, (path, _) in files.items()}
