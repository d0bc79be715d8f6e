"""``report.html`` of the demo: one self-contained page (no scripts, no network) with tables and figures.

Images and videos are referenced by relative paths next to the page, so the folder can be zipped or opened from
anywhere. :func:`referenced_files` lists what a page refers to (the tests check every one exists).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from corrvos.utils import atomic_write_text

__all__ = ["HONEST_NOTE", "referenced_files", "write_report"]

HONEST_NOTE = (
    "What a few CPU minutes can and cannot show: both models are full-size networks trained from random weights for "
    "{steps} steps on 64x64 crops of synthetic videos, far from converged (the paper trains for 150K+ steps from "
    "ImageNet weights on DAVIS and YouTube-VOS). The two runs share the seed, the data and every step except the "
    "losses, but at this scale the difference in J&F between them is of the size of run-to-run noise: this page "
    "shows the whole pipeline and what the figures look like, not the paper's gain. Measuring the gain needs many "
    "seeds (benchmarks/ablation.py) or a GPU and real data."
)

_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: 0.6em 1em; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.92em; margin-top: 0.3em; }
img, video { max-width: 100%; border: 1px solid #ddd; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(src: str, caption: str) -> str:
    src_q = html.escape(src, quote=True)
    if src.endswith(".mp4"):
        media = f'<video controls loop muted src="{src_q}"></video>'
    else:
        media = f'<a href="{src_q}"><img src="{src_q}" alt="{html.escape(caption, quote=True)}"></a>'
    return f"<figure>{media}<figcaption>{html.escape(caption)}</figcaption></figure>"


def write_report(path: Path, result: Any) -> Path:
    """Write the page for a :class:`~corrvos.demo.pipeline.DemoResult`; returns ``path``."""
    from corrvos.demo.figures import model_label

    s, scores, figs = result.settings, result.scores, result.figures
    modes = list(scores)
    labels = {m: model_label(s.arch, m) for m in modes}
    rows = [[labels[m]] + [f"{scores[m].global_scores[c]:.3f}" for c in _COLUMNS] for m in modes]
    first, last = modes[0], modes[-1]
    rows.append(
        ["difference"] + [f"{scores[last].global_scores[c] - scores[first].global_scores[c]:+.3f}" for c in _COLUMNS]
    )
    seq_rows = [
        [name] + [f"{scores[m].per_sequence[name]:.3f}" for m in modes] for name in sorted(scores[first].per_sequence)
    ]
    timing = [[k, f"{v:.0f}"] for k, v in result.seconds.items()]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>corrvos demo: {html.escape(s.arch.upper())} with and without correspondence learning</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>corrvos demo: {html.escape(s.arch.upper())} with and without space-time correspondence learning</h1>",
        f"<p>Two {html.escape(s.arch.upper())} networks trained with the same seed ({s.seed}), data and {s.steps} "
        f"steps: one with the segmentation loss only, one with the paper's pixel-level consistency (L_PCL) and "
        f"object-level coherence (L_OCL) losses added. Both segment {s.eval_sequences} held-out synthetic videos "
        f"({s.eval_frames} frames of {s.size[0]}x{s.size[1]}, HxW) from their first-frame masks; the videos have "
        "occlusions, objects that leave and come back, and unannotated distractors that share an object's colour "
        "and texture.</p>",
        f"<p class='note'>{html.escape(HONEST_NOTE.format(steps=s.steps))}</p>",
        "<h2>J&amp;F (DAVIS 2017 semi-supervised protocol, corrvos eval)</h2>",
        _table(["model", *_COLUMNS], rows),
        "<h2>Per video (J&amp;F-Mean)</h2>",
        _table(["video", *[labels[m] for m in modes]], seq_rows),
        "<h2>Training curves (Fig. S2)</h2>",
        *[_figure(p, "Loss terms of both runs (raw: faint; EMA 0.6: solid).") for p in figs.get("curves", [])],
        "<h2>What the models match (Fig. S3)</h2>",
        *[
            _figure(
                p,
                "Matching response of a pixel of each object in frame 0 over the last frame (the model's own "
                "memory-read weights, softmax over the last frame), one column per model.",
            )
            for p in figs.get("correspondence", [])
        ],
        "<h2>Object matches (Fig. S1)</h2>",
        *[
            _figure(
                p,
                f"{labels[m]}: RoIAlign embeddings of the objects of frame 0 and the last frame, Hungarian "
                "assignment; green = same object, red = wrong.",
            )
            for p, m in zip(figs.get("matches", []), modes, strict=False)
        ],
        "<h2>Results side by side (Figs. S4-S9)</h2>",
        "<p>Ground truth, then each model, on the videos where the two differ most; titles give per-object J&amp;F."
        "</p>",
        *[_figure(p, Path(p).stem if not p.endswith(".mp4") else f"{Path(p).stem} (video)") for p in figs["compare"]],
        "<h2>Time (seconds, this machine)</h2>",
        _table(["step", "seconds"], timing),
        "<p>Files: runs in <code>runs/</code> (TensorBoard: <code>tensorboard --logdir runs</code>), results in "
        "<code>results/</code>, figures in <code>figures/</code>, numbers in <code>demo.json</code>.</p>",
        "</body></html>",
    ]
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def referenced_files(page: str | Path) -> list[str]:
    """Relative paths a report refers to (``src`` and ``href`` attributes)."""
    text = Path(page).read_text(encoding="utf-8")
    return sorted({html.unescape(m) for m in re.findall(r'(?:src|href)="([^"]+)"', text)})
