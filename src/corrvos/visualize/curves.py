"""Loss curves of training runs from their TensorBoard logs (Fig. S2 of the supplement).

The trainer (:mod:`corrvos.training.hooks`) writes scalars under ``train/`` in ``<run>/tb``: ``train/loss`` (the
total of Eq. 12), ``train/terms/<name>`` for every unweighted term (``seg``, ``pcl``, ``ocl`` in "paper" mode;
``temp``, ``cross_key`` in "official" mode), and learning rates, IoU, gradient norm, ... The figure has one panel
per loss and the runs on shared axes in each panel: the raw values faint, the smoothed ones solid. Smoothing is
TensorBoard's debiased exponential moving average with weight ``smoothing`` (0 = none).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrvos.errors import ConfigError, DataError
from corrvos.utils import atomic_path

__all__ = [
    "DEFAULT_TAGS",
    "TAG_TITLES",
    "RunCurves",
    "check_smoothing",
    "curves_figure_size",
    "ema",
    "find_event_dir",
    "plot_curves",
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
}
DEFAULT_TAGS = tuple(TAG_TITLES)
PANEL_INCHES = (5.0, 3.6)
DPI = 100
MAX_COLUMNS = 3


@dataclass
class RunCurves:
    """The scalars of one run: tag (without ``train/``) -> (steps [n] int64, values [n] float64)."""

    name: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    available: list[str] = field(default_factory=list)


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
    curves = RunCurves(name or Path(run).name, Path(run), available=available)
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


def plot_curves(
    runs: Sequence[RunCurves],
    out: str | Path,
    *,
    tags: Sequence[str] | None = None,
    smoothing: float = 0.6,
    log_y: bool = False,
) -> Path:
    """One panel per tag (``tags``, or every default loss tag some run has), the runs on shared axes.

    Returns:
        ``out``, a PNG of :func:`curves_figure_size` pixels.

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
            ax.plot(steps, ema(values, smoothing), color=colour, linewidth=1.6, label=run.name)
        ax.set_title(TAG_TITLES.get(tag, tag))
        ax.set_xlabel("global step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
