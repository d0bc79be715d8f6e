"""Text table and figure of the ablation (``benchmarks/ablation.py``) from its JSON record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_markdown", "format_table", "plot_summary"]


def _pm(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "-"
    std = "" if stats["std"] is None else f" ± {100 * stats['std']:.1f}"
    return f"{100 * stats['mean']:.1f}{std}"


def _diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    return f"{100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] {d['wins']}/{d['n']}"


def format_table(record: dict[str, Any]) -> str:
    """One line per (arch, variant): J&F and crossing-frame J&F (mean ± std over seeds, in points) and the paired
    difference to the baseline with its bootstrap interval and the number of seeds where the variant is ahead."""
    lines = []
    head = (
        f"{'arch':5} {'variant':26} {'seeds':>5} {'J&F':>12} {'Δ J&F [95% CI] wins':>28} "
        f"{'crossing J&F':>13} {'Δ crossing [95% CI] wins':>28} {'visible J&F':>12} {'Δ visible [95% CI] wins':>28} "
        f"{'fg ratio':>8} {'s/step':>7}"
    )
    for arch, rows in record["summary"].items():
        title = f"{arch.upper()}: J&F in points on the held-out stress set; Δ = variant - {record['baseline']}, paired"
        lines += [title + _floors(record), head, "-" * len(head)]
        for name, row in rows.items():
            fg = row.get("foreground_ratio", {}).get("mean")
            lines.append(
                f"{arch:5} {name:26} {row['jf']['n']:>5} {_pm(row['jf']):>12} {_diff(row.get('diff_jf')):>28} "
                f"{_pm(row['crossing_jf']):>13} {_diff(row.get('diff_crossing_jf')):>28} "
                f"{_pm(row.get('visible_jf', _NONE)):>12} {_diff(row.get('diff_visible_jf')):>28} "
                f"{'-' if fg is None else f'{fg:.2f}':>8} {row['seconds_per_step']:>7.2f}"
            )
        lines.append("")
    return "\n".join(lines)


_NONE = {"mean": None, "std": None}


def _floors(record: dict[str, Any]) -> str:
    """The trivial floors of the record (copy the first frame; predict nothing after it), as a parenthesis."""
    names = {"copy_first_frame": "copy first frame", "empty": "empty after frame 0"}
    parts = []
    for key, label in names.items():
        ref = record.get("reference", {}).get(key)
        if ref:
            visible = ref.get("visible", {}).get("JF")
            vis = "" if visible is None else f", visible {100 * visible:.1f}"
            parts.append(f"{label}: J&F {100 * ref['jf']:.1f}, crossing {100 * ref['crossing']['JF']:.1f}{vis}")
    return f" ({'; '.join(parts)})" if parts else ""


def _md_diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    t = "" if d.get("t_low") is None else f" (t: {100 * d['t_low']:+.1f}, {100 * d['t_high']:+.1f})"
    seeds = ", ".join(f"{100 * v:+.1f}" for v in d["per_seed"])
    return f"**{100 * d['mean']:+.1f}** [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]{t}; seeds {seeds}"


def format_markdown(record: dict[str, Any]) -> str:
    """The summary as Markdown tables (one per arch) for the docs: J&F on all evaluated cells, on the crossing cells
    and on the cells where the object is visible, in points (mean ± std over seeds), each with the paired difference
    to the baseline (mean, 95 % bootstrap interval, t interval, per seed); the predicted / annotated pixel ratio."""
    out = []
    for arch, rows in record["summary"].items():
        steps = record["settings"]["steps"][arch]
        out.append(
            f"{arch.upper()}, {steps} steps, {record['settings']['seeds']} seeds; "
            f"Δ = variant - `{record['baseline']}` of the same seed; floors{_floors(record)}"
        )
        out.append("")
        out.append(
            "| variant | J&F | Δ J&F [95 % bootstrap] (t) per seed | crossing J&F | Δ crossing | visible J&F | "
            "Δ visible | fg ratio | s/step |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for name, row in rows.items():
            fg = row.get("foreground_ratio", {}).get("mean")
            out.append(
                f"| `{name}` | {_pm(row['jf'])} | {_md_diff(row.get('diff_jf'))} | {_pm(row['crossing_jf'])} | "
                f"{_md_diff(row.get('diff_crossing_jf'))} | {_pm(row.get('visible_jf', _NONE))} | "
                f"{_md_diff(row.get('diff_visible_jf'))} | {'-' if fg is None else f'{fg:.2f}'} | "
                f"{row['seconds_per_step']:.2f} |"
            )
        out.append("")
    return "\n".join(out)


def plot_summary(record: dict[str, Any], path: Path) -> Path:
    """Per arch: J&F and crossing J&F per variant (mean ± std, seeds as dots), and the paired differences to the
    baseline (mean, 95 % bootstrap interval, seeds as dots). Written with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(record["summary"])
    fig, axes = plt.subplots(len(archs), 2, figsize=(13, 5.4 * len(archs)), squeeze=False)
    metrics = (("jf", "all evaluated cells", "C0"), ("crossing_jf", "crossing cells", "C3"))
    if all("visible_jf" in rows for arch_rows in record["summary"].values() for rows in arch_rows.values()):
        metrics += (("visible_jf", "visible cells (object in the ground truth)", "C2"),)
    width = 0.5 / len(metrics)
    for row, arch in enumerate(archs):
        rows = record["summary"][arch]
        names = list(rows)
        x = np.arange(len(names))
        ax = axes[row, 0]
        for m, (key, label, colour) in enumerate(metrics):
            offset = (m - (len(metrics) - 1) / 2) * width
            means = [np.nan if rows[n][key]["mean"] is None else 100 * rows[n][key]["mean"] for n in names]
            stds = [0.0 if rows[n][key]["std"] is None else 100 * rows[n][key]["std"] for n in names]
            ax.errorbar(x + offset, means, yerr=stds, fmt="o", color=colour, capsize=4, ms=7, label=label)
            for i, n in enumerate(names):
                vals = 100 * np.asarray(rows[n][key]["values"], dtype=float)
                ax.scatter(np.full(vals.size, x[i] + offset + 0.06), vals, s=12, color=colour, alpha=0.45)
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        for ref_key, style, ref_label in (("copy_first_frame", "--", "copy first frame"), ("empty", ":", "empty")):
            ref = record.get("reference", {}).get(ref_key)
            if not ref:
                continue
            for key, label, colour in metrics:
                value = ref["jf"] if key == "jf" else ref[key.removesuffix("_jf")]["JF"]
                if value is not None:
                    ax.axhline(100 * value, color=colour, ls=style, lw=0.9, label=f"{ref_label}, {label.split()[0]}")
        ax.set_ylabel("J&F (points)")
        ax.set_title(f"{arch.upper()}: J&F per variant (mean ± std over seeds; dots: seeds)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
        ax.grid(axis="y", alpha=0.3)
        ax = axes[row, 1]
        others = [n for n in names if rows[n].get("diff_jf")]
        xo = np.arange(len(others))
        for m, (key, label, colour) in enumerate(metrics):
            offset = (m - (len(metrics) - 1) / 2) * width
            for i, n in enumerate(others):
                d = rows[n][f"diff_{key}"]
                if d is None:
                    continue
                mean, lo, hi = (100 * d[k] for k in ("mean", "ci_low", "ci_high"))
                ax.errorbar(
                    [xo[i] + offset],
                    [mean],
                    yerr=[[mean - lo], [hi - mean]],
                    fmt="o",
                    color=colour,
                    capsize=4,
                    ms=7,
                    label=label if i == 0 else None,
                )
                vals = 100 * np.asarray(d["per_seed"], dtype=float)
                ax.scatter(np.full(vals.size, xo[i] + offset + 0.06), vals, s=12, color=colour, alpha=0.45)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(xo, others, rotation=20, ha="right")
        ax.set_xlim(-0.6, max(len(others), 1) - 0.4)
        ax.set_ylabel(f"Δ J&F vs {record['baseline']} (points)")
        ax.set_title("paired difference per seed: mean and 95 % bootstrap interval")
        if others:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
        ax.grid(axis="y", alpha=0.3)
    settings = record["settings"]
    fig.suptitle(
        f"ablation ({record['study']} study, profile {record['profile']}): {settings['seeds']} seed(s), "
        f"steps {settings['steps']}, {len(record['eval']['names'])} held-out stress videos",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Print an ablation JSON record as text or Markdown tables.")
    parser.add_argument("record", type=Path, help="benchmarks/results/ablation*.json")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables (as in docs/benchmarks.md)")
    args = parser.parse_args()
    data = json.loads(args.record.read_text())
    print(format_markdown(data) if args.markdown else format_table(data))
