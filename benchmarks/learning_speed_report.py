"""Table and plot of the learning-speed study (``benchmarks/learning_speed.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MARKS", "at_minutes", "format_table", "plot_curves", "recipe_summary"]


MARKS = (5.0, 10.0)  # minutes of training the table reads the curves at


def at_minutes(run: dict[str, Any], minutes: float, set_name: str, metric: str = "visible") -> float | None:
    """The score of ``run``'s last scoring point by ``minutes`` of training (5 % grace: a run scores just after a
    mark). A run that finished its steps earlier counts with its last point; one stopped early (``incomplete``)
    before ``minutes`` gives None, as does a run with no point by then."""
    curve = run["curve"]
    if run.get("incomplete") and curve[-1]["train_seconds"] < 0.95 * minutes * 60:
        return None
    seen = [p[set_name][metric] for p in curve if p["train_seconds"] <= 1.05 * minutes * 60]
    return seen[-1] if seen else None


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def recipe_summary(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """recipe -> seeds, steps, s/step and, per held-out set, mean and std over seeds of visible J&F at each of
    ``MARKS`` and of visible / all-cell J&F at the last point (with its minutes)."""
    out: dict[str, dict[str, Any]] = {}
    for recipe in result["settings"]["recipes"]:
        runs = [r for r in result["runs"] if r["recipe"] == recipe]
        row: dict[str, Any] = {
            "seeds": len(runs),
            "steps": float(np.mean([r.get("steps_done", r["steps"]) for r in runs])),
        }
        row["seconds_per_step"] = float(np.mean([r["calibrated_seconds_per_step"] for r in runs]))
        row["minutes"] = float(np.mean([r["curve"][-1]["train_seconds"] / 60 for r in runs]))
        row["incomplete"] = any(r.get("incomplete") for r in runs)
        for name in result["data"]["eval"]:
            for mark in MARKS:
                row[f"{name}_visible@{mark:g}"] = _mean_std([at_minutes(r, mark, name) for r in runs])
            for metric in ("visible", "all"):
                row[f"{name}_{metric}_last"] = _mean_std([r["curve"][-1][name][metric] for r in runs])
        out[recipe] = row
    return out


def _cell(value: tuple[float | None, float | None] | float | None) -> str:
    mean, std = value if isinstance(value, tuple) else (value, None)
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def format_table(result: dict[str, Any], *, markdown: bool = False) -> str:
    """One row per recipe (and the floors): s/step, steps, visible J&F at 5 and 10 training minutes and at the
    last point, all-cell J&F at the last point, per held-out set (x100; mean ± std over seeds). (*): a run that
    stopped before its end (its scoring points up to then; s/step = training seconds / steps)."""
    sets = list(result["data"]["eval"])
    head = ["recipe", "seeds", "s/step", "steps", "minutes"]
    for name in sets:
        head += [f"{name} vis@{m:g}m" for m in MARKS] + [f"{name} vis last", f"{name} all last"]
    rows = [head]
    for floor in ("copy_first_frame", "empty"):
        row = [floor, "-", "-", "-", "-"]
        for s in sets:
            f = result["data"]["eval"][s]["floors"][floor]
            row += [_cell(f["visible"])] * (len(MARKS) + 1) + [_cell(f["all"])]
        rows.append(row)
    for recipe, summary in recipe_summary(result).items():
        name = recipe + (" (*)" if summary["incomplete"] else "")
        row = [name, str(summary["seeds"]), f"{summary['seconds_per_step']:.2f}", f"{summary['steps']:.0f}"]
        row.append(f"{summary['minutes']:.1f}")
        for s in sets:
            row += [_cell(summary[f"{s}_visible@{m:g}"]) for m in MARKS]
            row += [_cell(summary[f"{s}_visible_last"]), _cell(summary[f"{s}_all_last"])]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(head))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    """Visible-cell J&F against training minutes, one panel per held-out set: each recipe's seeds (thin) and
    their mean (thick), the copy-first-frame floor, twice that floor (the CPU recipe's goal) and the empty floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result["data"]["eval"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], sets, strict=True):
        info = result["data"]["eval"][name]
        floors = info["floors"]
        copy = 100 * floors["copy_first_frame"]["visible"]
        ax.axhline(copy, color="k", ls="--", lw=1, label=f"copy first frame ({copy:.1f})")
        ax.axhline(2 * copy, color="k", ls=":", lw=1, label=f"2x copy first frame ({2 * copy:.1f})")
        ax.axhline(100 * floors["empty"]["visible"], color="grey", ls="-.", lw=1, label="empty after frame 0")
        for i, recipe in enumerate(result["settings"]["recipes"]):
            colour = colours[i % len(colours)]
            style = ("-", "--", "-.")[(i // len(colours)) % 3]  # more recipes than colours: dashed after a cycle
            runs = [r for r in result["runs"] if r["recipe"] == recipe]
            for r in runs:
                xs = [p["train_seconds"] / 60 for p in r["curve"]]
                ys = [100 * p[name]["visible"] for p in r["curve"]]
                ax.plot(xs, ys, color=colour, ls=style, lw=0.8, alpha=0.45 if len(runs) > 1 else 1.0, marker=".")
            if len(runs) > 1 and len({len(r["curve"]) for r in runs}) == 1:
                xs = np.mean([[p["train_seconds"] / 60 for p in r["curve"]] for r in runs], axis=0)
                ys = np.mean([[100 * p[name]["visible"] for p in r["curve"]] for r in runs], axis=0)
                ax.plot(xs, ys, color=colour, ls=style, lw=2.2)
            ax.plot([], [], color=colour, ls=style, lw=2, label=recipe)
        h, w = info["size"]
        ax.set_title(f"held-out '{name}': {info['videos']} stress videos at {h}x{w}")
        ax.set_xlabel(f"training minutes ({result['settings']['threads']} thread(s) per run)")
        ax.set_ylabel("J&F on visible cells (x100)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{result['arch'].upper()}: held-out J&F against CPU training time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
