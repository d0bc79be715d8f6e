"""Loss curves of training runs from their TensorBoard logs (Fig. S2 of the supplement).

The trainer (:mod:`corrvos.training.hooks`) writes scalars under ``train/`` in ``<run>/tb``: ``train/loss`` (the
total of Eq. 12), ``train/terms/<name>`` for every unweighted term (``seg``, ``pcl``, ``ocl`` in "paper" mode;
``temp``, ``cross_key`` in "official" mode), and learning rates, IoU, gradient norm, ... The figure has one panel
per loss and the runs on shared axes in each panel: the raw values faint, the smoothed ones solid. Smoothing is
TensorBoard's debiased exponential moving average with weight ``smoothing`` (0 = none).

L_SEG is STCN's bootstrapped cross-entropy: from stage step ``loss.bootstrap_start`` it averages only the hardest
fraction of the pixels, a fraction that shrinks linearly to ``bootstrap_top_p`` at ``bootstrap_end``, so L_SEG
(and the total) *rise* there although the model keeps improving. When the run folder holds the trainer's
``config.yaml``, the L_SEG and total panels mark that schedule (a dashed line where bootstrapping starts, a shaded
span while the fraction shrinks); the training foreground IoU (``iou``, not bootstrapped) does not jump.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from corrvos.errors import ConfigError, DataError
from corrvos.utils import atomic_path

__all__ = [
    "DEFAULT_TAGS",
    "TAG_TITLES",
    "RunCurves",
    "check_smoothing",
    "curves_figure",
    "curves_figure_size",
    "ema",
    "find_event_dir",
    "plot_curves",
    "read_bootstrap_schedule",
    "read_run",
    "resolve_tag",
]

PREFIX = "train/"
#: trainer tag (without ``train/``) -> panel title, in panel order.
TAG_TITLES: dict[str, str] = {
    "loss": "total",
    "terms/seg": "L_SEG",
    "terms/pcl": "L_PCL",
    "terms/ocl": "L_OCL",
    "terms/temp": "temp (official)",
    "terms/cross_key": "cross_key (official)",
    "iou": "IoU (training clips, foreground)",
}
#: the loss panels drawn by default (``iou`` and other scalars on request).
DEFAULT_TAGS = ("loss", "terms/seg", "terms/pcl", "terms/ocl", "terms/temp", "terms/cross_key")
#: panels whose values the bootstrapped CE changes (the schedule is marked there).
BOOTSTRAP_TAGS = ("loss", "terms/seg")
BOOTSTRAP_NOTE = "bootstrapped CE: hardest pixels only from here"
PANEL_INCHES = (5.0, 3.6)
DPI = 100
MAX_COLUMNS = 3


@dataclass
class RunCurves:
    """The scalars of one run: tag (without ``train/``) -> (steps [n] int64, values [n] float64).

    ``bootstrap``: per stage that bootstraps L_SEG, (global step where it starts, where the kept fraction reaches
    its final value, that fraction), from the run's ``config.yaml`` (empty without one).
    """

    name: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    available: list[str] = field(default_factory=list)
    bootstrap: list[tuple[int, int, float]] = field(default_factory=list)


def resolve_tag(name: str) -> str:
    """A tag as given on the command line -> the trainer's tag without ``train/``.

    Accepts the trainer's tags (``loss``, ``terms/seg``, ``train/terms/seg``, ``iou``, ...) and the panel titles
    (``total``, ``L_SEG``, ``L_PCL``, ``L_OCL``; any case).
    """
    by_title = {title.split()[0].lower(): tag for tag, title in TAG_TITLES.items()}
    key = name.strip()
    key = key[len(PREFIX) :] if key.startswith(PREFIX) else key
    return by_title.get(key.lower(), key)


def find_event_dir(run: str | Path) -> Path:
    """The folder holding a run's event files: ``<run>/tb`` (a corrvos run folder) or ``run`` itself.

    Raises:
        DataError: the folder is missing or holds no ``events.out.tfevents.*`` file.
    """
    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found")
    for folder in (run / "tb", run):
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            return folder
    raise DataError(run, "no TensorBoard event file (events.out.tfevents.*) in this folder or its tb/ sub-folder")


def read_bootstrap_schedule(run: str | Path) -> list[tuple[int, int, float]]:
    """The bootstrapping schedule of L_SEG in global steps, from ``<run>/config.yaml`` (the trainer's copy).

    Stages run one after the other, so stage i's steps are offset by the iterations of the stages before it.

    Returns:
        per stage whose bootstrapping starts within it: (start, end, final kept fraction), ``end`` clipped to the
        stage; empty when there is no readable ``config.yaml`` (a folder of event files only).
    """
    run = Path(run)
    folders = [run, run.parent] if run.name == "tb" else [run]
    path = next((f / "config.yaml" for f in folders if (f / "config.yaml").is_file()), None)
    if path is None:
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    loss = data.get("loss") if isinstance(data.get("loss"), dict) else {}
    out: list[tuple[int, int, float]] = []
    offset = 0
    for stage in data.get("stages") or []:
        if not isinstance(stage, dict):
            return out
        merged = {**loss, **(stage.get("loss") or {})}
        iterations = int(stage.get("iterations", 0))
        try:
            start, end = int(merged["bootstrap_start"]), int(merged["bootstrap_end"])
            top_p = float(merged.get("bootstrap_top_p", 1.0))
        except (KeyError, TypeError, ValueError):
            start, end, top_p = iterations, iterations, 1.0
        if top_p < 1.0 and start < iterations:
            out.append((offset + start, offset + min(end, iterations), top_p))
        offset += iterations
    return out


def read_run(run: str | Path, tags: Sequence[str] = DEFAULT_TAGS, *, name: str | None = None) -> RunCurves:
    """Read the scalar series ``train/<tag>`` of a run with TensorBoard's ``EventAccumulator`` (every event kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = find_event_dir(run)
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    tb_logger = logging.getLogger("tensorboard")  # its INFO lines ("No path found after ...") are noise here
    level = tb_logger.level
    tb_logger.setLevel(logging.WARNING)
    try:
        acc.Reload()
    except Exception as exc:  # corrupt records
        raise DataError(folder, f"cannot read the TensorBoard events ({type(exc).__name__}: {exc})") from exc
    finally:
        tb_logger.setLevel(level)
    available = sorted(acc.Tags().get("scalars", []))
    curves = RunCurves(name or Path(run).name, Path(run), available=available, bootstrap=read_bootstrap_schedule(run))
    for tag in tags:
        full = PREFIX + tag
        if full in available:
            events = acc.Scalars(full)
            curves.series[tag] = (
                np.array([e.step for e in events], dtype=np.int64),
                np.array([e.value for e in events], dtype=np.float64),
            )
    return curves


def check_smoothing(weight: float) -> None:
    """Raise ConfigError unless 0 <= ``weight`` < 1."""
    if not 0.0 <= weight < 1.0:
        raise ConfigError(f"--smoothing must be in [0, 1), got {weight}")


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: debiased exponential moving average; non-finite values are carried over."""
    check_smoothing(weight)
    out = np.empty_like(values, dtype=np.float64)
    last, count = 0.0, 0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1.0 - weight) * v
        count += 1
        out[i] = last / (1.0 - weight**count)
    return out


def _layout(num_panels: int) -> tuple[int, int]:
    """(rows, columns): at most MAX_COLUMNS per row, rows filled evenly (4 panels: 2 x 2)."""
    rows = math.ceil(num_panels / MAX_COLUMNS)
    return rows, math.ceil(num_panels / rows)


def curves_figure_size(num_panels: int) -> tuple[int, int]:
    """(height, width) in pixels of the figure of ``num_panels`` panels."""
    rows, cols = _layout(num_panels)
    return round(rows * PANEL_INCHES[1] * DPI), round(cols * PANEL_INCHES[0] * DPI)


def _mark_bootstrap(ax, runs: Sequence[RunCurves]) -> None:
    """Mark each distinct bootstrapping schedule of ``runs`` on ``ax`` (labelled once for the legend)."""
    schedules = sorted({b for run in runs for b in run.bootstrap})
    for i, (start, end, top_p) in enumerate(schedules):
        ax.axvline(start, color="0.35", linestyle="--", linewidth=1, label=BOOTSTRAP_NOTE if i == 0 else None)
        if end > start:
            label = f"kept fraction 100% -> {top_p:.0%} of pixels" if i == 0 else None
            ax.axvspan(start, end, color="0.6", alpha=0.18, linewidth=0, label=label)


def curves_figure(
    runs: Sequence[RunCurves],
    *,
    tags: Sequence[str] | None = None,
    smoothing: float = 0.6,
    log_y: bool = False,
    mark_bootstrap: bool = True,
):
    """The matplotlib ``Figure`` of :func:`plot_curves` (one axes per panel, in order).

    Raises:
        DataError: no run has any of the tags (the message lists the scalars the first run has).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    wanted = list(tags) if tags is not None else list(DEFAULT_TAGS)
    shown = [t for t in wanted if any(t in r.series for r in runs)]
    if not shown:
        have = ", ".join(a.removeprefix(PREFIX) for a in runs[0].available) or "none"
        raise DataError(runs[0].path, f"no run logs {', '.join(wanted)}; scalars of this run: {have}")
    height, width = curves_figure_size(len(shown))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    rows, cols = _layout(len(shown))
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for p, tag in enumerate(shown):
        ax = fig.add_subplot(rows, cols, p + 1)
        for run, colour in zip(runs, colours, strict=True):
            if tag not in run.series:
                continue
            steps, values = run.series[tag]
            if smoothing > 0:
                ax.plot(steps, values, color=colour, alpha=0.25, linewidth=1)
            marker = "o" if len(steps) < 3 else None  # a line through fewer points is hard to see
            ax.plot(steps, ema(values, smoothing), color=colour, linewidth=1.6, marker=marker, label=run.name)
        if mark_bootstrap and tag in BOOTSTRAP_TAGS:
            _mark_bootstrap(ax, runs)
        ax.set_title(TAG_TITLES.get(tag, tag))
        ax.set_xlabel("global step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small" if mark_bootstrap and tag in BOOTSTRAP_TAGS else "small")
    fig.tight_layout()
    return fig


def plot_curves(
    runs: Sequence[RunCurves],
    out: str | Path,
    *,
    tags: Sequence[str] | None = None,
    smoothing: float = 0.6,
    log_y: bool = False,
    mark_bootstrap: bool = True,
) -> Path:
    """One panel per tag (``tags``, or every default loss tag some run has), the runs on shared axes.

    ``mark_bootstrap``: on the L_SEG and total panels, mark the runs' bootstrapping schedules (see the module
    docstring).

    Returns:
        ``out``, a PNG of :func:`curves_figure_size` pixels.

    Raises:
        DataError: no run has any of the tags (the message lists the scalars the first run has).
    """
    fig = curves_figure(runs, tags=tags, smoothing=smoothing, log_y=log_y, mark_bootstrap=mark_bootstrap)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
