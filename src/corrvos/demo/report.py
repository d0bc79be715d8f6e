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

__all__ = ["HONEST_NOTE", "comparison_sentence", "referenced_files", "signed", "visible_note", "write_report"]

HONEST_NOTE = (
    "What a few CPU minutes can and cannot show: both models are corrvos's small variant of the network (ResNet-18 "
    "key encoder at half width; the CPU recipe of docs/benchmarks.md) trained from random weights for {steps} steps "
    "on 64x64 crops of synthetic videos. That is enough to track the synthetic objects (compare them with the "
    "copy-the-first-frame floor), far from the paper's setting (150K+ steps from ImageNet weights on DAVIS and "
    "YouTube-VOS). The two runs share the seed, the data and every step except the losses, but one seed on a few "
    "videos cannot separate the losses unless the difference is large: that needs many seeds "
    "(benchmarks/ablation.py, docs/benchmarks.md) or a GPU and real data."
)

_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
_HEADLINE = ("J&F visible cells", "J visible", "F visible", "J&F all cells", "J all", "F all", "visible cells")

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: 0.6em 1em; }
.result { background: #eef4ff; border-left: 4px solid #3b6fd6; padding: 0.6em 1em; }
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


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def signed(value: float) -> str:
    """A difference with its sign and 3 decimals; "0.000" when it rounds to zero (never "-0.000")."""
    text = f"{value:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def _rows(result: Any) -> dict[str, Any]:
    """Every scored row, models first: name -> ModelScores."""
    return {**result.scores, **result.floors}


def comparison_sentence(result: Any) -> str:
    """The two models' visible-cell J&F, their difference, each against 2x copy-first-frame, and what one seed on a
    few videos can tell (generated from the numbers)."""
    from corrvos.demo.figures import model_label

    s = result.settings
    modes = list(result.scores)
    first, last = modes[0], modes[-1]
    la, lb = model_label(s.arch, first), model_label(s.arch, last)
    a, b = result.scores[first].headline, result.scores[last].headline
    if a is None or b is None:
        return "The held-out videos have no visible object cell: nothing can be compared."
    parts = [
        f"On the visible cells, {la} scores J&F {a:.3f} and {lb} {b:.3f}, a difference of {signed(b - a)} "
        f"({lb} minus {la})."
    ]
    copy = result.floors.get("copy_first_frame")
    if copy is not None and copy.headline is not None:
        bar = 2 * copy.headline
        if (a > bar) == (b > bar):
            verdict = "both models beat it" if a > bar else "neither model beats it"
        else:
            verdict = f"{la if a > bar else lb} beats it, {lb if a > bar else la} does not"
        parts.append(f"Copying the first frame scores {copy.headline:.3f}, twice that is {bar:.3f}: {verdict}.")
    gaps = [
        y - x
        for name, x in result.scores[first].per_sequence_visible.items()
        if x is not None and (y := result.scores[last].per_sequence_visible.get(name)) is not None
    ]
    objects = result.scores[first].visible.get("objects", 0)
    spread = ""
    if gaps:
        wins = sum(g > 0 for g in gaps)
        spread = (
            f"; per video the difference ranges from {signed(min(gaps))} to {signed(max(gaps))} ({lb} ahead on "
            f"{wins} of {len(gaps)} videos)"
        )
    parts.append(
        f"This is one training seed ({s.seed}) evaluated on {len(result.scores[first].per_sequence)} held-out videos "
        f"({objects} objects){spread}. Such a run cannot tell the two losses apart unless the difference is large; "
        "many seeds are needed for that (benchmarks/ablation.py)."
    )
    return " ".join(parts)


def visible_note(result: Any) -> str:
    """Why visible-cell J&F is the headline, with this run's cell counts and the empty floor's numbers."""
    first = next(iter(result.scores.values()))
    cells, total = first.visible.get("cells", 0), first.all_cells.get("cells", 0)
    text = (
        "Why visible cells: the DAVIS protocol scores every object on every evaluated frame (frames 1..T-2), "
        "including frames where the object is hidden (occluded or out of view); there an empty mask scores "
        "J = F = 1, so the all-cell J&F rewards predicting nothing wherever objects are hidden. "
        f"Here {total - cells} of the {total} evaluated (object, frame) cells are hidden. The headline is J&F over "
        f"the {cells} visible cells, where the object has at least one ground-truth pixel: per object the mean over "
        "its visible cells, then the mean over objects, J and F separately, then averaged."
    )
    empty = result.floors.get("empty_after_first_frame")
    if empty is not None:
        text += (
            f" The floor that predicts nothing after frame 0 scores {_num(empty.all_cells.get('JF'))} on all cells "
            f"and {_num(empty.headline)} on the visible ones."
        )
    return text


def _score_tables(result: Any, labels: dict[str, str]) -> list[str]:
    """The headline table (visible and all cells, four rows and the models' difference), the full DAVIS table and
    the per-video table."""
    rows = _rows(result)

    def line(m: Any) -> list[float | None]:
        v, a = m.visible, m.all_cells
        return [v.get("JF"), v.get("J"), v.get("F"), a.get("JF"), a.get("J"), a.get("F")]

    headline = [[labels[n]] + [_num(x) for x in line(m)] + [str(m.visible.get("cells", 0))] for n, m in rows.items()]
    modes = list(result.scores)
    first, last = modes[0], modes[-1]
    pairs = zip(line(result.scores[first]), line(result.scores[last]), strict=True)
    headline.append(
        [f"difference ({labels[last]} minus {labels[first]})"]
        + ["n/a" if x is None or y is None else signed(y - x) for x, y in pairs]
        + [""]
    )
    davis = [[labels[n]] + [f"{m.global_scores[c]:.3f}" for c in _COLUMNS] for n, m in rows.items()]
    per_video = [
        [name] + [_num(m.per_sequence_visible.get(name)) for m in rows.values()]
        for name in sorted(result.scores[first].per_sequence)
    ]
    return [
        _table(["", *_HEADLINE], headline),
        "<details><summary>The full DAVIS table (all cells: Mean, Recall, Decay)</summary>",
        _table(["", *_COLUMNS], davis),
        "</details>",
        "<h2>Per video (J&amp;F on visible cells)</h2>",
        _table(["video", *[labels[n] for n in rows]], per_video),
    ]


def _captions(result: Any, labels: dict[str, str]) -> dict[str, str]:
    s, facts = result.settings, result.facts
    boot = facts.get("bootstrap") or []
    curves = "Loss terms of both runs (raw: faint; EMA 0.6: solid) and the foreground IoU of the training clips."
    if boot:
        start, end, top_p = boot[0]
        curves += (
            f" L_SEG is a bootstrapped cross-entropy: from step {start} it averages only the hardest pixels, a "
            f"fraction that shrinks from 100% to {top_p:.0%} by step {end} (dashed line, grey span), so L_SEG and the "
            "total rise there while the model keeps improving; the IoU is not bootstrapped and does not jump."
        )
    n = facts.get("positions")
    uniform = f" (N = {n}: 1/N = {1 / n:.4f})" if n else ""
    modes = list(result.scores)
    return {
        "curves": curves,
        "frame_scores": (
            "Per frame, the mean over the held-out objects of (J + F) / 2, for both models (solid) and both floors "
            "(dashed). Left: only the objects visible in that frame's ground truth (the headline). Right: every "
            "object, as the DAVIS protocol counts them; a hidden object scores 1 when nothing is predicted for it, "
            "which is why the empty floor rises there wherever objects are hidden."
        ),
        "correspondence": (
            f"Matching response of a pixel of each object in frame 0 over the last frame of "
            f"{facts.get('correspondence_video', 'a held-out video')}: the model's own memory-read weights (softmax "
            "over the N positions of the last frame's stride-16 key grid), one column per model. Every map uses the "
            f"colour scale of the bar below it; the line on the bar marks the uniform weight 1/N{uniform}, what a "
            "pixel that matched nothing in particular would give every position; titles give each peak as a "
            "multiple of 1/N."
        ),
        "matches": (
            "RoIAlign embeddings of the objects of frame 0 and the last frame, Hungarian assignment on cosine "
            "similarity; green = same object, red = wrong. Both models use the same embeddings "
            f"({facts.get('match_features', 'see the title').removeprefix('embeddings: ')}): the key encoder's res4 "
            "features pooled in each box, L_OCL's input, without the projection head, which only the L_PCL + L_OCL "
            "run has; comparing its trained head with the other run's raw features would compare different kinds of "
            "features."
        ),
        "compare": (
            f"Each image is one frame; columns: the ground truth, then {labels[modes[0]]}, then "
            f"{labels[modes[-1]]}. Objects keep their id's palette colour, outlined in white. A model panel's title "
            "gives the J&F ((J + F) / 2) of each object by id (#1, #2, ...) on this frame, then over the video on the "
            "frames where that object is visible; * marks an object hidden on this frame (not in its ground truth, "
            "listed in the ground-truth title), where an empty prediction scores 1. Frames are enlarged for display "
            f"(nearest neighbour for the masks). Videos: {', '.join(facts.get('compare_videos', []))}, where the two "
            f"models differ most on visible cells; first, middle and last of the {s.eval_frames} frames, then the "
            "whole video."
        ),
    }


def write_report(path: Path, result: Any) -> Path:
    """Write the page for a :class:`~corrvos.demo.pipeline.DemoResult`; returns ``path``."""
    from corrvos.demo.figures import row_label

    s, figs = result.settings, result.figures
    labels = {n: row_label(s.arch, n) for n in _rows(result)}
    caption = _captions(result, labels)
    timing = [[k, f"{v:.0f}"] for k, v in result.seconds.items()]
    arch = html.escape(s.arch.upper())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>corrvos demo: {arch} with and without correspondence learning</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>corrvos demo: {arch} with and without space-time correspondence learning</h1>",
        f"<p>Two {arch} networks trained with the same seed ({s.seed}), data and {s.steps} "
        f"steps: one with the segmentation loss only, one with the paper's pixel-level consistency (L_PCL) and "
        f"object-level coherence (L_OCL) losses added. Both segment {s.eval_sequences} held-out synthetic videos "
        f"(named heldout..., never seen in training; {s.eval_frames} frames of {s.size[0]}x{s.size[1]}, HxW) from "
        "their first-frame masks; the videos have occlusions, objects that leave and come back, and unannotated "
        "distractors that share an object's colour and texture. Two floors that need no model are scored on the "
        "same videos: copying the first-frame mask to every frame, and the first-frame mask followed by empty "
        "masks.</p>",
        f"<p class='result'>{html.escape(comparison_sentence(result))}</p>",
        f"<p class='note'>{html.escape(HONEST_NOTE.format(steps=s.steps))}</p>",
        "<h2>J&amp;F (DAVIS 2017 semi-supervised protocol, corrvos eval)</h2>",
        f"<p>{html.escape(visible_note(result))}</p>",
        *_score_tables(result, labels),
        "<h2>J&amp;F along the videos</h2>",
        *[_figure(p, caption["frame_scores"]) for p in figs.get("frame_scores", [])],
        "<h2>Training curves (Fig. S2)</h2>",
        *[_figure(p, caption["curves"]) for p in figs.get("curves", [])],
        "<h2>What the models match (Fig. S3)</h2>",
        *[_figure(p, caption["correspondence"]) for p in figs.get("correspondence", [])],
        "<h2>Object matches (Fig. S1)</h2>",
        *[
            _figure(p, f"{labels[m]}: {caption['matches']}")
            for p, m in zip(figs.get("matches", []), result.scores, strict=False)
        ],
        "<h2>Results side by side (Figs. S4-S9)</h2>",
        f"<p>{html.escape(caption['compare'])}</p>",
        *[
            _figure(
                p,
                f"{Path(p).parent.name}, frame {Path(p).stem}" if not p.endswith(".mp4") else f"{Path(p).stem} (video)",
            )
            for p in figs.get("compare", [])
        ],
        "<h2>Time (seconds, this machine)</h2>",
        _table(["step", "seconds"], timing),
        "<p>Files: runs in <code>runs/</code> (TensorBoard: <code>tensorboard --logdir runs</code>), results of the "
        "models and floors in <code>results/</code>, figures in <code>figures/</code>, numbers in "
        "<code>demo.json</code>.</p>",
        "</body></html>",
    ]
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def referenced_files(page: str | Path) -> list[str]:
    """Relative paths a report refers to (``src`` and ``href`` attributes)."""
    text = Path(page).read_text(encoding="utf-8")
    return sorted({html.unescape(m) for m in re.findall(r'(?:src|href)="([^"]+)"', text)})
