"""Per-frame J&F curves: how segmentation quality evolves along the videos, one line per method.

Each line is, per frame index t (evaluated frames 1..T-2), the mean over the held-out objects of (J + F) / 2
(:func:`corrvos.evaluation.visible.frame_means`). Two panels: over the *visible* cells only (objects with at
least one ground-truth pixel on frame t), and over all cells, where a hidden object scores 1 whenever nothing is
predicted for it. Lines are drawn dashed for the no-model floors (copy the first frame, empty after frame 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrvos.utils import atomic_path

__all__ = ["FrameCurve", "frame_curves_figure", "plot_frame_curves"]

DPI = 100
PANELS = (
    ("visible", "visible cells: objects present in the ground truth of the frame"),
    ("all", "all cells (DAVIS protocol): a hidden object scores 1 when predicted empty"),
)


@dataclass
class FrameCurve:
    """One line: ``frame`` indices [n] and, per panel key (``visible``, ``all``), the means [n] (None: no cell)."""

    label: str
    frame: Sequence[int]
    values: Mapping[str, Sequence[float | None]]
    floor: bool = False


def _as_array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def frame_curves_figure(curves: Sequence[FrameCurve], *, title: str = ""):
    """The matplotlib ``Figure``: one axes per panel of :data:`PANELS`, J&F in [0, 1] against the frame index."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.0, 4.0), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS), sharey=True)
    for ax, (key, panel_title) in zip(axes, PANELS, strict=True):
        for i, curve in enumerate(curves):
            if key not in curve.values:
                continue
            style = "--" if curve.floor else "-"
            ax.plot(
                list(curve.frame),
                _as_array(curve.values[key]),
                style,
                color=f"C{i % 10}",
                marker="o",
                markersize=3,
                linewidth=1.6,
                label=curve.label,
            )
        ax.set_title(panel_title, fontsize="medium")
        ax.set_xlabel("frame index (evaluated frames 1..T-2)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mean over objects of (J + F) / 2")
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_frame_curves(curves: Sequence[FrameCurve], out: str | Path, *, title: str = "") -> Path:
    """Write :func:`frame_curves_figure` as a PNG (1100 x 400 pixels); returns ``out``."""
    fig = frame_curves_figure(curves, title=title)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
