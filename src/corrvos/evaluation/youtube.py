"""YouTube-VOS: approximate local J/F per object, and the submission zip.

The YouTube-VOS server code is not public, so :func:`evaluate_youtube` is labelled **approximate**. It follows
the conventions that papers and visionml/pytracking:pytracking/analysis/evaluate_vos.py agree on:

- the ground truth is a folder of ``<video>/<frame>.png`` label maps annotated on the sampled frames (for
  example a held-out part of ``train/Annotations``); object ids are per video and need not be contiguous;
- each object is scored on the annotated frames strictly after the first frame where it appears (its reference
  mask); the last frame is scored too unless ``skip_last=True`` (pytracking's DAVIS-style choice);
- J and F per frame are the DAVIS ones (:mod:`corrvos.evaluation.metrics`); each object's J and F are means over
  its scored frames; the global J and F are means over objects, J&F their average. Seen/unseen splits need the
  server's category lists and are not computed.

:func:`pack_youtube` writes the layout the server expects: a zip with a top-level ``Annotations/`` folder holding
``Annotations/<video>/<frame>.png`` for every frame of ``valid/JPEGImages/<video>`` at that frame's size
(hkchengrex/XMem:eval.py builds the same layout with ``shutil.make_archive``).
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from corrvos.data.io import DAVIS_PALETTE, label_header_problem, read_label
from corrvos.errors import DataError
from corrvos.evaluation.metrics import boundary_radius, frame_scores
from corrvos.evaluation.parallel import raise_problems, run_pool
from corrvos.evaluation.tables import format_csv
from corrvos.utils import atomic_path, atomic_write_text

__all__ = ["YouTubeEvalResult", "YouTubeVideoScores", "evaluate_youtube", "pack_youtube"]

logger = logging.getLogger(__name__)


@dataclass
class YouTubeVideoScores:
    """Per-object scores of one video: ``objects`` [K] ids, ``j`` / ``f`` [K] means, ``frames`` [K] counts."""

    name: str
    objects: list[int]
    j: np.ndarray
    f: np.ndarray
    frames: np.ndarray
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class YouTubeEvalResult:
    """Result of :func:`evaluate_youtube` (fractions; approximate, see the module docstring)."""

    videos: list[YouTubeVideoScores]
    global_scores: dict[str, float]
    csv_paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    approximate: bool = True


@dataclass
class _VideoTask:
    name: str
    gt_paths: list[Path]  # annotated frames, sorted [T]
    pred_dir: Path
    skip_last: bool


def score_video(task: _VideoTask) -> YouTubeVideoScores:
    """Stream one video: J/F of every GT object on the frames after its first appearance."""
    problems: list[str] = []
    labels: list[np.ndarray] = []
    try:
        labels = [read_label(p) for p in task.gt_paths]
    except DataError as exc:
        return YouTubeVideoScores(task.name, [], np.zeros(0), np.zeros(0), np.zeros(0, int), problems=[str(exc)])
    shape = labels[0].shape
    first: dict[int, int] = {}
    for t, lab in enumerate(labels):
        if lab.shape != shape:
            problems.append(f"{task.gt_paths[t]}: size {lab.shape} differs from {shape} of {task.gt_paths[0]}")
        for v in np.unique(lab):
            first.setdefault(int(v), t)
    first.pop(0, None)
    objects = sorted(first)
    max_id = max(objects, default=0)
    radius = boundary_radius(shape)
    j_sum, f_sum, count = (np.zeros(len(objects)) for _ in range(3))
    last = len(labels) - 1 if task.skip_last else len(labels)
    for t in range(1, last):
        active = [i for i, k in enumerate(objects) if first[k] < t]
        if not active or labels[t].shape != shape:
            continue
        pred_path = task.pred_dir / f"{task.gt_paths[t].stem}.png"
        try:
            pred = read_label(pred_path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if pred.shape != shape:
            problems.append(
                f"{pred_path}: size {pred.shape[0]}x{pred.shape[1]} (HxW) differs from the ground truth "
                f"{shape[0]}x{shape[1]}"
            )
            continue
        extra = sorted(set(np.unique(pred).tolist()) - set(objects) - {0})
        if extra:
            problems.append(
                f"{pred_path}: predicted id(s) {extra} that the ground truth of video {task.name} does "
                f"not have (objects {objects})"
            )
            continue
        if problems:
            continue
        j, f = frame_scores(labels[t], pred, max_id, radius)  # [max_id] each
        for i in active:
            j_sum[i] += j[objects[i] - 1]
            f_sum[i] += f[objects[i] - 1]
            count[i] += 1
    scored = count > 0
    notes = [
        f"{task.name}: object {k} appears only in the last annotated frame and is not scored"
        for k, s in zip(objects, scored, strict=True)
        if not s
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        j_mean, f_mean = j_sum / count, f_sum / count
    return YouTubeVideoScores(
        task.name,
        [k for k, s in zip(objects, scored, strict=True) if s],
        j_mean[scored],
        f_mean[scored],
        count[scored].astype(int),
        problems=problems,
        notes=notes,
    )


def evaluate_youtube(
    gt_dir: str | Path,
    results_dir: str | Path,
    *,
    videos: list[str] | None = None,
    skip_last: bool = False,
    workers: int = 1,
    write_csv: bool = True,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> YouTubeEvalResult:
    """Approximate local J/F of YouTube-VOS-layout predictions against available ground truth.

    Args:
        gt_dir: folder of ``<video>/<frame>.png`` ground-truth label maps (every annotated frame).
        results_dir: folder of ``<video>/<frame>.png`` predictions (an ``Annotations/`` sub-folder is used when
            present); frames that have no ground truth are ignored.
        videos: videos to score (default: every folder of ``gt_dir``, sorted).
        skip_last: do not score each video's last annotated frame.
        workers: processes; 1 = in this process.
        write_csv: write ``corrvos_youtube_global.csv`` and ``corrvos_youtube_per-object.csv``.
        output_dir: where to write them (default: the results folder).
        progress: show a progress bar.

    Raises:
        DataError: listing every missing/unreadable prediction, size mismatch and predicted id unknown to the GT.
    """
    gt_dir, results_dir = Path(gt_dir), Path(results_dir)
    if (results_dir / "Annotations").is_dir():
        results_dir = results_dir / "Annotations"
    for folder in (gt_dir, results_dir):
        if not folder.is_dir():
            raise DataError(folder, "folder not found")
    names = videos if videos is not None else sorted(p.name for p in gt_dir.iterdir() if p.is_dir())
    tasks, problems = [], []
    for name in names:
        gt_paths = sorted((gt_dir / name).glob("*.png"))
        if len(gt_paths) < 2:
            problems.append(f"{gt_dir / name}: {len(gt_paths)} annotated frame(s); at least 2 are needed")
        elif not (results_dir / name).is_dir():
            problems.append(f"{results_dir / name}: prediction folder not found")
        else:
            tasks.append(_VideoTask(name, gt_paths, results_dir / name, skip_last))
    raise_problems(problems, results_dir)
    scores: list[YouTubeVideoScores] = run_pool(score_video, tasks, workers, "J&F (YouTube-VOS)", progress)
    raise_problems([p for s in scores for p in s.problems], results_dir)
    j_all = np.concatenate([s.j for s in scores]) if scores else np.zeros(0)
    f_all = np.concatenate([s.f for s in scores]) if scores else np.zeros(0)
    with np.errstate(invalid="ignore"):
        jm = float(np.mean(j_all)) if j_all.size else float("nan")
        fm = float(np.mean(f_all)) if f_all.size else float("nan")
    result = YouTubeEvalResult(
        videos=scores,
        global_scores={"J&F-Mean": (jm + fm) / 2.0, "J-Mean": jm, "F-Mean": fm},
        warnings=[n for s in scores for n in s.notes],
    )
    for note in result.warnings:
        logger.warning(note)
    if write_csv:
        out = Path(output_dir) if output_dir is not None else results_dir
        rows = [
            (s.name, k, int(n), float(j), float(f))
            for s in scores
            for k, j, f, n in zip(s.objects, s.j, s.f, s.frames, strict=True)
        ]
        g_vals = [result.global_scores[c] for c in ("J&F-Mean", "J-Mean", "F-Mean")]
        files = {
            "global": (
                out / "corrvos_youtube_global.csv",
                format_csv(("J&F-Mean", "J-Mean", "F-Mean"), [g_vals], full_precision=True),
            ),
            "per_object": (
                out / "corrvos_youtube_per-object.csv",
                format_csv(("Video", "Object", "Frames", "J-Mean", "F-Mean"), rows, full_precision=True),
            ),
        }
        for path, text in files.values():
            atomic_write_text(path, text)
        result.csv_paths = {k: p for k, (p, _) in files.items()}
    return result


def _background_png(size: tuple[int, int]) -> bytes:
    """An all-background palette PNG (DAVIS palette) of ``size`` = (W, H)."""
    img = Image.new("P", size, 0)
    img.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pack_youtube(
    results_dir: str | Path, out_zip: str | Path, *, youtube_root: str | Path | None = None, split: str = "valid"
) -> int:
    """Zip predictions into the YouTube-VOS submission layout ``Annotations/<video>/<frame>.png``.

    Args:
        results_dir: ``<video>/<frame>.png`` predictions (or a folder holding them under ``Annotations/``).
        out_zip: the zip file to write (atomically).
        youtube_root: YouTube-VOS root; when given, every frame of ``<split>/JPEGImages/<video>`` must have a
            prediction of its size, and only those frames are packed (extra frames, e.g. from all-frames
            inference, are left out); frames before the video's first reference mask in
            ``<split>/Annotations/<video>`` that have no prediction (the official scripts write none) are packed
            as background.
        split: ``valid`` or ``test``.

    Returns:
        the number of PNGs written.

    Raises:
        DataError: listing every missing, unreadable or wrongly sized PNG.
    """
    out_zip = Path(out_zip)
    if out_zip.is_dir():
        raise DataError(out_zip, "is a folder: --out is the zip file to write, e.g. submission.zip")
    if out_zip.suffix.lower() != ".zip":
        raise DataError(out_zip, "the submission file must end in .zip")
    src = Path(results_dir)
    if (src / "Annotations").is_dir():
        src = src / "Annotations"
    if not src.is_dir():
        raise DataError(src, "results folder not found")
    entries: list[tuple[str, Path]] = []  # (video, png)
    blanks: dict[Path, tuple[int, int]] = {}  # frames before a video's first reference mask: (W, H) of background
    problems: list[str] = []
    if youtube_root is not None:
        frames_root = Path(youtube_root) / split / "JPEGImages"
        if not frames_root.is_dir():
            raise DataError(frames_root, "frame folder not found (expected <youtube-root>/<split>/JPEGImages)")
        videos = sorted(p.name for p in frames_root.iterdir() if p.is_dir())
        meta = Path(youtube_root) / split / "meta.json"
        if meta.is_file():
            listed = set(json.loads(meta.read_text()).get("videos", {}))
            if listed and listed != set(videos):
                logger.warning("%s lists %d videos, %s holds %d", meta, len(listed), frames_root, len(videos))
        for video in videos:
            # the official scripts (and `corrvos infer`) write nothing before the first reference mask
            refs = sorted((Path(youtube_root) / split / "Annotations" / video).glob("*.png"))
            for jpg in sorted((frames_root / video).glob("*.jpg")):
                with Image.open(jpg) as img:
                    size = img.size  # (W, H)
                png = src / video / f"{jpg.stem}.png"
                if refs and jpg.stem < refs[0].stem and not png.exists():
                    blanks[png] = size
                    entries.append((video, png))
                    continue
                problem, _ = label_header_problem(png, (size[1], size[0]), reference="its input frame")
                if problem:
                    problems.append(problem)
                entries.append((video, png))
        extra = sorted(p.name for p in src.iterdir() if p.is_dir() and p.name not in set(videos))
        if extra:
            logger.warning("%d result folder(s) not in %s are left out: %s", len(extra), frames_root, extra[:5])
    else:
        # hidden folders (an interrupted `corrvos infer`'s .partial-<video>) are not results
        for video_dir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for png in sorted(video_dir.glob("*.png")):
                problem, _ = label_header_problem(png)
                if problem:
                    problems.append(problem)
                entries.append((video_dir.name, png))
        if not entries:
            raise DataError(src, "no <video>/<frame>.png prediction found")
    raise_problems(problems, src)
    with atomic_path(out_zip, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Annotations/", b"")
        seen: set[str] = set()
        for video, png in entries:
            if video not in seen:
                zf.writestr(f"Annotations/{video}/", b"")
                seen.add(video)
            if png in blanks:
                zf.writestr(f"Annotations/{video}/{png.name}", _background_png(blanks[png]))
            else:
                zf.write(png, f"Annotations/{video}/{png.name}")
    if blanks:
        logger.info("%d frame(s) before their video's first reference mask packed as background", len(blanks))
    logger.info("wrote %d PNGs of %d videos to %s", len(entries), len({v for v, _ in entries}), out_zip)
    return len(entries)
