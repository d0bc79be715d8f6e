"""The demo's figures, drawn with :mod:`corrvos.visualize` on its two runs (paths relative to the demo folder).

- ``curves``: the loss curves of both runs on shared axes (Fig. S2);
- ``correspondence``: both models' matching responses of frame 0's objects over the last frame (Fig. S3);
- ``matches``: each model's object matching between those frames (Fig. S1; the L_SEG-only run has no
  projection head, so its embeddings are the raw pooled features);
- ``compare``: ground truth and both results side by side, with per-object J&F, for the evaluation videos where
  the two models differ most (Figs. S4-S9), as frame PNGs and a video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw_demo_figures", "model_label"]


def model_label(arch: str, mode: str) -> str:
    return f"{arch.upper()}" if mode == "none" else f"{arch.upper()} + L_PCL + L_OCL"


def draw_demo_figures(
    out: Path, eval_root: Path, checkpoints: dict[str, Path], scores: dict[str, Any], settings: Any
) -> dict[str, list[str]]:
    """Draw every figure; returns kind -> files written, relative to ``out`` (frame PNGs of ``compare`` are
    subsampled to the first, middle and last frame of each sequence, then the video)."""
    from corrvos.models import load_model
    from corrvos.visualize.compare import compare_sequence, plan_sequence
    from corrvos.visualize.correspondence import make_correspondence_figure
    from corrvos.visualize.curves import plot_curves, read_run
    from corrvos.visualize.inputs import FrameFolder
    from corrvos.visualize.matches import find_projection_head, make_matches_figure

    figs = out / "figures"
    modes = list(checkpoints)
    labels = [model_label(settings.arch, m) for m in modes]
    rel = lambda p: str(Path(p).relative_to(out))  # noqa: E731
    written: dict[str, list[str]] = {}

    runs = [read_run(out / "runs" / m, name=label) for m, label in zip(modes, labels, strict=True)]
    written["curves"] = [rel(plot_curves(runs, figs / "curves.png", smoothing=0.6))]

    # the evaluation videos ordered by how much the two models differ (largest first)
    first, last = modes[0], modes[-1]
    names = sorted(
        scores[first].per_sequence,
        key=lambda s: -abs(scores[last].per_sequence[s] - scores[first].per_sequence[s]),
    )
    images, gt = eval_root / "JPEGImages" / "480p", eval_root / "Annotations" / "480p"
    folder = FrameFolder(images / names[0], gt / names[0])
    tau = len(folder) - 1
    models = [load_model(checkpoints[m]).eval() for m in modes]
    path, _ = make_correspondence_figure(models, labels, folder, 0, tau, figs / "correspondence")
    written["correspondence"] = [rel(path)]
    written["matches"] = []
    for mode, model in zip(modes, models, strict=True):
        source = find_projection_head(checkpoints[mode])
        path, _ = make_matches_figure(model, source, folder, 0, tau, figs / "matches" / mode)
        written["matches"].append(rel(path))

    written["compare"] = []
    results = [out / "results" / m for m in modes]
    for name in names[: settings.compare_sequences]:
        plan = plan_sequence(name, gt, images, results, labels)
        files = compare_sequence(plan, figs / "compare", fps=6.0, video=True)
        frames, video = files[:-1], files[-1]
        picks = sorted({0, len(frames) // 2, len(frames) - 1})
        written["compare"] += [rel(frames[i]) for i in picks] + [rel(video)]
    return written
