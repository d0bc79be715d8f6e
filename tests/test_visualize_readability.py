"""Readability of the figures: the correspondence colour bar and its 1/N mark, the bootstrapped-CE schedule and
the IoU panel of the loss curves, the titles of the side-by-side panels, the per-frame J&F curves.

Cheap inputs only: a synthetic DAVIS set, result folders made from its ground truth, and a TensorBoard log written
here (no training run).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from corrvos.data.synthetic import generate_dataset
from corrvos.visualize.compare import (
    compare_frame,
    compare_scale,
    format_score,
    list_compare_sequences,
    plan_sequence,
    sequence_object_scores,
)
from corrvos.visualize.correspondence import (
    COLORBAR_HEIGHT,
    TITLE_LINES,
    CorrespondenceResult,
    colorbar_figure,
    draw_correspondence,
)
from corrvos.visualize.curves import BOOTSTRAP_NOTE, curves_figure, read_bootstrap_schedule, read_run
from corrvos.visualize.frame_curves import FrameCurve, frame_curves_figure, plot_frame_curves
from corrvos.visualize.panels import LINE_HEIGHT, panel_scale
from test_visualize import _results  # result folders made from the ground truth

H, W = 64, 96  # as tests/test_visualize.py: object 1 of the first video is out of view on frames 1-3


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "davis", sequences=2, frames=5, size=(H, W), seed=1)


def _tiny_run(run_dir: Path) -> Path:
    """A run folder with a TensorBoard log of ``train/loss``, ``train/terms/seg`` and ``train/iou`` (steps 1-12)."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir / "tb")) as writer:
        for step in range(1, 13):
            for tag, value in (("loss", 2.0 / step), ("terms/seg", 1.0 / step), ("iou", step / 12)):
                writer.add_scalar(f"train/{tag}", value, step)
    return run_dir


def test_correspondence_colour_bar_marks_the_uniform_level() -> None:
    fig, bar = colorbar_figure(600, 0.4, 30)
    assert bar.ax in fig.axes and bar.orientation == "horizontal"
    assert bar.vmin == 0.0 and bar.vmax == pytest.approx(0.4)
    assert any(np.allclose(line.get_xdata(), 1 / 30) for line in bar.ax.lines)  # the 1/N line
    assert "1/N" in [t.get_text() for t in bar.ax.texts] and "1/N = 0.0333" in bar.ax.get_xlabel()
    # the figure: tiles on one shared scale, then the bar (its colours are those of the heat maps)
    gen = torch.Generator().manual_seed(0)
    sharp = torch.softmax(4 * torch.randn(1, 12, generator=gen), dim=1).reshape(1, 3, 4)
    flat = torch.full((1, 3, 4), 1 / 12)
    results = [CorrespondenceResult([(5, 5)], r, (0, 0, 0, 0), (48, 64)) for r in (sharp, flat)]
    assert results[0].positions == 12 and results[0].uniform == pytest.approx(1 / 12)
    frame = np.full((48, 64, 3), 128, np.uint8)
    image = draw_correspondence(frame, frame, results, ["a", "b"])
    s = panel_scale(64)
    assert image.shape == (TITLE_LINES * LINE_HEIGHT + s * 48 + COLORBAR_HEIGHT, 3 * s * 64, 3)
    bar_rows = image[-COLORBAR_HEIGHT:]
    assert bar_rows.std() > 10  # something is drawn there


def test_curves_mark_the_bootstrap_schedule_and_plot_iou(tmp_path: Path) -> None:
    run_dir = _tiny_run(tmp_path / "run")
    loss = {"bootstrap_start": 1, "bootstrap_end": 2, "bootstrap_top_p": 0.25}
    override = {"bootstrap_start": 4, "bootstrap_end": 20}
    stages = [{"name": "a", "iterations": 2}, {"name": "b", "iterations": 10, "loss": override}]
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"loss": loss, "stages": stages}))
    # global steps: stage b starts after stage a's 2 steps; its end is clipped to the stage
    schedule = read_bootstrap_schedule(run_dir)
    assert schedule == [(1, 2, 0.25), (2 + 4, 2 + 10, 0.25)]
    assert read_bootstrap_schedule(run_dir / "tb") == schedule  # a tb/ folder finds its run's config
    assert read_bootstrap_schedule(tmp_path) == []  # no config.yaml: nothing to mark
    run = read_run(run_dir, ("loss", "terms/seg", "iou"))
    assert set(run.series) == {"loss", "terms/seg", "iou"} and run.bootstrap == schedule
    fig = curves_figure([run], tags=["terms/seg", "iou"])
    seg, iou = fig.axes
    assert iou.get_title().startswith("IoU")
    seg_labels = [h.get_label() for h in seg.get_legend().legend_handles]
    assert BOOTSTRAP_NOTE in seg_labels and BOOTSTRAP_NOTE not in [
        h.get_label() for h in iou.get_legend().legend_handles
    ]
    plain = curves_figure([run], tags=["terms/seg"], mark_bootstrap=False).axes[0]
    assert [h.get_label() for h in plain.get_legend().legend_handles] == [run.name]


def test_compare_titles_name_each_object_and_fit(tmp_path: Path, synth: Path, monkeypatch) -> None:
    import corrvos.visualize.compare as compare

    good, bad = _results(synth, tmp_path / "good", drop=None), _results(synth, tmp_path / "bad", drop=2)
    gt, images = synth / "Annotations" / "480p", synth / "JPEGImages" / "480p"
    name = list_compare_sequences(gt, images, [good, bad])[0]
    plan = plan_sequence(name, gt, images, [good, bad], ["model A", "model B"])
    seq = sequence_object_scores(plan, visible_only=True)
    titles: list[tuple[list[str], float]] = []
    real = compare.titled
    monkeypatch.setattr(
        compare,
        "titled",
        lambda image, lines, n, **kw: titles.append((lines, kw["font_scale"])) or real(image, lines, n, **kw),
    )
    compare_frame(plan, 2, 2, seq, video_label="video (visible)")  # object 1 is out of view on frame 2
    (gt_lines, _), (a_lines, font), (b_lines, _) = titles
    assert gt_lines[2] == "* = hidden here: #1"
    assert a_lines == ["model A", "J&F frame #1 1.00*  #2 1.00", "J&F video (visible) #1 --  #2 1.00"]
    assert b_lines == ["model B", "J&F frame #1 1.00*  #2 0.00", "J&F video (visible) #1 --  #2 0.00"]
    assert font > 0.45  # larger than the other figures' titles, and every line fits its panel
    width = compare_scale((H, W)) * W
    assert all(
        cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0] <= width for lines, _ in titles for line in lines
    )
    assert [format_score(v) for v in (1.0, 0.523, 0.0472, 0.0, float("nan"))] == ["1.00", "0.52", "0.047", "0.00", "--"]


def test_frame_curves_figure_shows_models_and_floors(tmp_path: Path) -> None:
    values = {"visible": [0.5, None, 0.25], "all": [0.5, 1.0, 0.5]}
    curves = [FrameCurve("model", [1, 2, 3], values), FrameCurve("floor: empty", [1, 2, 3], values, floor=True)]
    fig = frame_curves_figure(curves, title="held-out videos")
    visible, every = fig.axes
    assert visible.get_title().startswith("visible cells") and every.get_title().startswith("all cells")
    assert [line.get_label() for line in visible.lines] == ["model", "floor: empty"]
    assert visible.lines[1].get_linestyle() == "--" and np.isnan(visible.lines[0].get_ydata()[1])
    path = plot_frame_curves(curves, tmp_path / "f" / "frame_scores.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (400, 1100, 3)
