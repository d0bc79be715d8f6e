"""The demo's figures, drawn with :mod:`corrvos.visualize` on its two runs (paths relative to the demo folder).

- ``curves``: the loss curves of both runs on shared axes, with the bootstrapped-CE schedule of L_SEG marked,
  and the training foreground IoU (Fig. S2);
- ``frame_scores``: per frame index, the mean over the held-out objects of (J + F) / 2 of both models and both
  floors, on visible cells and on all cells;
- ``correspondence``: both models' matching responses of frame 0's objects over the last frame, on one colour
  scale with the uniform level 1/N marked (Fig. S3);
- ``matches``: each model's object matching between those frames (Fig. S1), both with the same embeddings
  (:data:`MATCH_FEATURES`: raw pooled res4, L_OCL's input; only the L_PCL + L_OCL run has a trained projection
  head, so using it would compare different kinds of features);
- ``compare``: ground truth and both results side by side, with per-object J&F, for the evaluation videos where
  the two models differ most (Figs. S4-S9), as frame PNGs and a video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["MATCH_FEATURES", "draw_demo_figures", "model_label", "row_label"]

MATCH_FEATURES = "res4"
CURVE_TAGS = ("loss", "terms/seg", "terms/pcl", "terms/ocl", "iou")


def model_label(arch: str, mode: str) -> str:
    return f"{arch.upper()}" if mode == "none" else f"{arch.upper()} + L_PCL + L_OCL"


def row_label(arch: str, name: str) -> str:
    """A model's label, or a floor's ("floor: copy first frame")."""
    from corrvos.demo.scores import FLOORS

    return f"floor: {FLOORS[name]}" if name in FLOORS else model_label(arch, name)


def _compare_order(scores: dict[str, Any]) -> list[str]:
    """The evaluation videos ordered by how much the two models differ on visible cells (largest first)."""
    modes = list(scores)
    first, last = scores[modes[0]], scores[modes[-1]]

    def gap(name: str) -> float:
        a, b = first.per_sequence_visible.get(name), last.per_sequence_visible.get(name)
        if a is None or b is None:
            return abs(last.per_sequence[name] - first.per_sequence[name])
        return abs(b - a)

    return sorted(first.per_sequence, key=lambda s: -gap(s))


def draw_demo_figures(
    out: Path,
    eval_root: Path,
    checkpoints: dict[str, Path],
    scores: dict[str, Any],
    floors: dict[str, Any],
    settings: Any,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Draw every figure.

    Returns:
        (kind -> files written, relative to ``out``; frame PNGs of ``compare`` are subsampled to the first, middle
        and last frame of each sequence, then the video), (facts the captions need: ``bootstrap`` schedule,
        ``positions`` N of the correspondence maps, ``match_features``, ``compare_videos``).
    """
    from corrvos.models import load_model
    from corrvos.visualize.compare import compare_sequence, plan_sequence
    from corrvos.visualize.correspondence import make_correspondence_figure
    from corrvos.visualize.curves import DEFAULT_TAGS, plot_curves, read_run
    from corrvos.visualize.frame_curves import FrameCurve, plot_frame_curves
    from corrvos.visualize.inputs import FrameFolder
    from corrvos.visualize.matches import find_projection_head, make_matches_figure

    figs = out / "figures"
    modes = list(checkpoints)
    labels = [model_label(settings.arch, m) for m in modes]
    rel = lambda p: str(Path(p).relative_to(out))  # noqa: E731
    written: dict[str, list[str]] = {}
    facts: dict[str, Any] = {}

    tags = (*DEFAULT_TAGS, "iou")
    runs = [read_run(out / "runs" / m, tags, name=label) for m, label in zip(modes, labels, strict=True)]
    written["curves"] = [rel(plot_curves(runs, figs / "curves.png", tags=CURVE_TAGS, smoothing=0.6))]
    facts["bootstrap"] = sorted({b for run in runs for b in run.bootstrap})

    rows = {**scores, **floors}
    curves = [
        FrameCurve(row_label(settings.arch, name), s.per_frame["frame"], s.per_frame, floor=name in floors)
        for name, s in rows.items()
    ]
    title = f"{settings.eval_sequences} held-out videos: mean over objects of (J + F) / 2 per frame"
    written["frame_scores"] = [rel(plot_frame_curves(curves, figs / "frame_scores.png", title=title))]

    names = _compare_order(scores)
    images, gt = eval_root / "JPEGImages" / "480p", eval_root / "Annotations" / "480p"
    folder = FrameFolder(images / names[0], gt / names[0])
    tau = len(folder) - 1
    models = [load_model(checkpoints[m]).eval() for m in modes]
    path, responses = make_correspondence_figure(models, labels, folder, 0, tau, figs / "correspondence")
    written["correspondence"] = [rel(path)]
    facts["positions"] = responses[0].positions
    facts["correspondence_video"] = names[0]
    written["matches"] = []
    for mode, model, label in zip(modes, models, labels, strict=True):
        source = find_projection_head(checkpoints[mode], features=MATCH_FEATURES)
        path, _ = make_matches_figure(model, source, folder, 0, tau, figs / "matches" / mode, label=label)
        written["matches"].append(rel(path))
        facts["match_features"] = source.label

    written["compare"] = []
    results = [out / "results" / m for m in modes]
    facts["compare_videos"] = names[: settings.compare_sequences]
    for name in names[: settings.compare_sequences]:
        plan = plan_sequence(name, gt, images, results, labels)
        files = compare_sequence(plan, figs / "compare", fps=6.0, video=True, visible_only=True)
        frames, video = files[:-1], files[-1]
        picks = sorted({0, len(frames) // 2, len(frames) - 1})
        written["compare"] += [rel(frames[i]) for i in picks] + [rel(video)]
    return written, facts
