"""Side-by-side comparison of result folders against the ground truth (Figs. S4-S9 of the supplement).

Inputs are DAVIS-layout folders: frames ``<images>/<sequence>/<frame id>.jpg``, ground truth
``<gt>/<sequence>/<frame id>.png`` and one or more result folders ``<results>/<sequence>/<frame id>.png``. Every
frame of a sequence becomes one row of panels: the ground-truth overlay, then one overlay per result folder.
Each result panel's title names the result, then gives the J&F (the mean of J and F) of every object, by id, on
this frame and over the video, both from the evaluator of ``corrvos eval``
(:func:`corrvos.evaluation.metrics.frame_scores` per frame, :func:`corrvos.evaluation.davis.score_sequence` per
video, official protocol: objects 1..N with N the largest id of the first ground-truth frame, first and last
frames not scored, void 255 counted as background). A ``*`` marks an object absent from this frame's ground truth
(an empty prediction scores 1 there); with ``visible_only`` the video values average only the frames where each
object is visible (:mod:`corrvos.evaluation.visible`).

Small frames are enlarged for display (:func:`compare_scale`: at least ``MIN_PANEL_HEIGHT`` pixels tall and
``MIN_PANEL_WIDTH`` wide; frames bilinearly, label maps by nearest neighbour) and titles use a larger font
(``TITLE_FONT_SCALE``, reduced per row only as far as needed for the longest line to fit).

Outputs: ``<out>/<sequence>/<frame id>.png`` per frame and ``<out>/<sequence>.mp4`` per sequence.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from corrvos.data.io import list_frames, read_image, read_label, write_image
from corrvos.errors import ConfigError, DataError
from corrvos.evaluation.davis import SequenceTask, score_sequence
from corrvos.evaluation.metrics import boundary_radius, db_statistics, frame_scores
from corrvos.evaluation.visible import visible_cells
from corrvos.visualize.overlay import VideoWriter, overlay
from corrvos.visualize.panels import MIN_PANEL_WIDTH, fit_font_scale, grid, panel_scale, scale_image, titled

__all__ = [
    "ComparePlan",
    "check_labels",
    "compare_frame",
    "compare_scale",
    "compare_sequence",
    "format_score",
    "list_compare_sequences",
    "plan_sequence",
    "sequence_object_scores",
]

logger = logging.getLogger(__name__)

TITLE_LINES = 3
TITLE_LINE_HEIGHT = 24
TITLE_FONT_SCALE = 0.6
MIN_PANEL_HEIGHT = 240
VOID = 255


@dataclass
class ComparePlan:
    """The files of one sequence.

    Attributes:
        name: sequence name.
        frame_ids: frame file stems [T], in sorted order.
        images: frame files [T].
        gt: ground-truth PNG per frame, or None where the frame has none [T].
        results: per result folder, the PNG of every frame [R][T].
        labels: a name per result folder [R].
    """

    name: str
    frame_ids: list[str]
    images: list[Path]
    gt: list[Path | None]
    results: list[list[Path]]
    labels: list[str]


def list_compare_sequences(
    gt_root: Path, images_root: Path, result_roots: Sequence[Path], names: Sequence[str] | None = None
) -> list[str]:
    """The sequences to draw: ``names``, or every sub-folder of ``gt_root``, sorted.

    Raises:
        DataError: a root is missing, or a sequence folder is missing from the images, the ground truth or a result.
    """
    for root, what in [(gt_root, "ground-truth"), (images_root, "image"), *((r, "result") for r in result_roots)]:
        if not root.is_dir():
            raise DataError(root, f"{what} folder not found")
    chosen = list(names) if names else sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    if not chosen:
        raise DataError(gt_root, "no sequence folder in the ground-truth folder")
    for name in chosen:
        for root, what in [(gt_root, "ground truth"), (images_root, "frames"), *((r, "results") for r in result_roots)]:
            if not (root / name).is_dir():
                raise DataError(root / name, f"{what} of sequence {name!r} not found")
    return chosen


def plan_sequence(
    name: str, gt_root: Path, images_root: Path, result_roots: Sequence[Path], labels: Sequence[str]
) -> ComparePlan:
    """The files of sequence ``name``; every frame must have a PNG in every result folder.

    Raises:
        DataError: no frames, or result PNGs missing (the message names the first and the count).
    """
    images = list_frames(images_root / name)
    if not images:
        raise DataError(images_root / name, f"no frames (.jpg/.png) for sequence {name!r}")
    ids = [p.stem for p in images]
    gt = [(gt_root / name / f"{i}.png") if (gt_root / name / f"{i}.png").is_file() else None for i in ids]
    if gt[0] is None:
        raise DataError(gt_root / name / f"{ids[0]}.png", f"first-frame ground truth of sequence {name!r} not found")
    results = []
    for root in result_roots:
        paths = [root / name / f"{i}.png" for i in ids]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(missing[0], f"result missing ({len(missing)} of the {len(ids)} frames of {name!r} are)")
        results.append(paths)
    return ComparePlan(name, ids, images, gt, results, list(labels))


def _read_gt(path: Path) -> np.ndarray:
    gt = read_label(path)
    gt[gt == VOID] = 0  # void counts as background, as in the evaluator
    return gt


def _check_size(path: Path, array: np.ndarray, size: tuple[int, int]) -> None:
    if array.shape[:2] != size:
        raise DataError(
            path, f"size {array.shape[0]}x{array.shape[1]} (HxW) differs from the frame's {size[0]}x{size[1]}"
        )


def sequence_object_scores(plan: ComparePlan, *, visible_only: bool = False) -> list[np.ndarray | None]:
    """Per result folder, J&F [N] of every object over the sequence (evaluator protocol), or None when the ground
    truth does not cover every frame or the sequence has fewer than 3 frames.

    ``visible_only``: average each object's J and F over the evaluated frames where its ground truth has a pixel
    (NaN for an object never visible there) instead of over every evaluated frame.
    """
    if any(g is None for g in plan.gt) or len(plan.frame_ids) < 3:
        return [None] * len(plan.results)
    gt_paths = [g for g in plan.gt if g is not None]
    visible = visible_cells(gt_paths) if visible_only else None  # [N, T-2]
    out = []
    for paths in plan.results:
        task = SequenceTask(plan.name, gt_paths, paths[1:-1], plan.frame_ids[1:-1])
        scores = score_sequence(task)
        if scores.problems:
            raise DataError(None, scores.problems[0])
        if visible is None:
            pairs = zip(scores.j, scores.f, strict=True)
            means = [(db_statistics(j)[0] + db_statistics(f)[0]) / 2 for j, f in pairs]
        else:
            means = [
                (float(j[v].mean()) + float(f[v].mean())) / 2 if v.any() else float("nan")
                for j, f, v in zip(scores.j, scores.f, visible, strict=True)
            ]
        out.append(np.array(means, dtype=np.float64))
    return out


def format_score(value: float) -> str:
    """A score in [0, 1] with 2-3 significant digits ("0.52", "0.047", "1.00"); "--" for NaN."""
    if not np.isfinite(value):
        return "--"
    return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.2g}"


def _scores_text(prefix: str, values: np.ndarray | None, hidden: Collection[int] = ()) -> str:
    if values is None:
        return f"{prefix} n/a"
    if values.size == 0:
        return f"{prefix} (no object)"
    parts = [f"#{k + 1} {format_score(float(v))}{'*' if k + 1 in hidden else ''}" for k, v in enumerate(values)]
    return f"{prefix} " + "  ".join(parts)


def compare_scale(size: tuple[int, int]) -> int:
    """Integer display enlargement of an H x W frame: at least MIN_PANEL_HEIGHT tall and MIN_PANEL_WIDTH wide."""
    return max(panel_scale(size[1], MIN_PANEL_WIDTH), -(-MIN_PANEL_HEIGHT // max(size[0], 1)))


def _enlarge(rgb: np.ndarray, label: np.ndarray | None, scale: int) -> np.ndarray:
    """The overlay of ``label`` on ``rgb`` at ``scale`` times the size (frame bilinear, labels nearest)."""
    if scale > 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return rgb if label is None else overlay(rgb, scale_image(label, scale))


def compare_frame(
    plan: ComparePlan,
    index: int,
    num_objects: int,
    seq_scores: list[np.ndarray | None],
    *,
    video_label: str = "video",
) -> np.ndarray:
    """The row of panels of frame ``index``: ground truth, then every result, each under its title.

    Titles: the result's name; "J&F frame" and then "J&F <video_label>" followed by the J&F of every object as
    ``#<id> <value>`` (``*``: the object is not in this frame's ground truth).

    Returns:
        uint8 RGB [TITLE_LINES * TITLE_LINE_HEIGHT + s * H, (1 + R) * s * W, 3] with s = :func:`compare_scale`.
    """
    rgb = read_image(plan.images[index])
    size = rgb.shape[:2]
    scale = compare_scale(size)
    gt = None
    if plan.gt[index] is not None:
        gt = _read_gt(plan.gt[index])
        _check_size(plan.gt[index], gt, size)
    where = f"{plan.name}, frame {plan.frame_ids[index]} ({index + 1}/{len(plan.frame_ids)})"
    present = set(np.unique(gt).tolist()) if gt is not None else set()
    hidden = {k for k in range(1, num_objects + 1) if k not in present} if gt is not None else set()
    gt_note = "no ground truth" if gt is None else "* = hidden here: " + " ".join(f"#{k}" for k in sorted(hidden))
    titles = [["ground truth", where, gt_note if hidden or gt is None else "every object visible"]]
    images = [_enlarge(rgb, gt, scale)]
    radius = boundary_radius(size)
    for label, paths, seq in zip(plan.labels, plan.results, seq_scores, strict=True):
        pred = read_label(paths[index])
        _check_size(paths[index], pred, size)
        lines = [label, "no ground truth for this frame", ""]
        if gt is not None:
            j, f = frame_scores(gt, pred, num_objects, radius)
            lines = [label, _scores_text("J&F frame", (j + f) / 2, hidden), _scores_text(f"J&F {video_label}", seq)]
        titles.append(lines)
        images.append(_enlarge(rgb, pred, scale))
    width = images[0].shape[1]
    font = fit_font_scale([line for lines in titles for line in lines], width, largest=TITLE_FONT_SCALE)
    tiles = [
        titled(image, lines, TITLE_LINES, font_scale=font, line_height=TITLE_LINE_HEIGHT)
        for image, lines in zip(images, titles, strict=True)
    ]
    return grid([tiles])


def _even(image: np.ndarray) -> np.ndarray:
    """Pad [H, W, 3] with black to even H and W (MPEG-4 encoders drop an odd last row or column)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0))) if h % 2 or w % 2 else image


def compare_sequence(
    plan: ComparePlan, out_dir: Path, *, fps: float = 10.0, video: bool = True, visible_only: bool = False
) -> list[Path]:
    """Write ``<out_dir>/<sequence>/<frame id>.png`` for every frame and ``<out_dir>/<sequence>.mp4``.

    Video frames are the PNGs padded with black to even sizes, which MPEG-4 needs. ``visible_only``: the video
    J&F of each object averages only the frames where it is visible (:func:`sequence_object_scores`).

    Returns:
        the files written (frame PNGs, then the video).
    """
    gt0 = plan.gt[0]
    num_objects = int(_read_gt(gt0).max()) if gt0 is not None else 0
    seq_scores = sequence_object_scores(plan, visible_only=visible_only)
    video_label = "video (visible)" if visible_only else "video"
    written: list[Path] = []
    video_path = out_dir / f"{plan.name}.mp4"
    with VideoWriter(video_path, fps=fps) if video else contextlib.nullcontext() as writer:
        for index, frame_id in enumerate(plan.frame_ids):
            row = compare_frame(plan, index, num_objects, seq_scores, video_label=video_label)
            path = out_dir / plan.name / f"{frame_id}.png"
            write_image(path, row)
            written.append(path)
            if writer is not None:
                writer.write(_even(row))
    if video:
        written.append(video_path)
    return written


def check_labels(labels: Sequence[str] | None, results: Sequence[Path]) -> list[str]:
    """``labels`` (one per result folder) or the result folders' names."""
    if labels is None:
        names = [r.name for r in results]
        return names if len(set(names)) == len(names) else [str(r) for r in results]
    if len(labels) != len(results):
        raise ConfigError(f"--labels: {len(labels)} label(s) for {len(results)} result folder(s)")
    return list(labels)
