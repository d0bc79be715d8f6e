"""J&F on visible cells (corrvos.evaluation.visible) and the no-model floors (corrvos.inference.baseline).

Known answers on hand-made per-frame scores and label maps; on a synthetic DAVIS set, the "empty after frame 0"
floor scores exactly 0 on every visible cell and 1 on every hidden one.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from corrvos.data.io import read_label, write_label
from corrvos.data.synthetic import generate_dataset
from corrvos.evaluation import evaluate_davis
from corrvos.evaluation.visible import dataset_visible_cells, frame_means, subset_scores, visible_cells
from corrvos.inference.baseline import copy_first_frame, empty_after_first_frame


def test_visible_cells_from_label_maps(tmp_path: Path) -> None:
    frames = []
    for t in range(5):
        label = np.zeros((16, 16), np.uint8)
        label[:4, :4] = 2  # object 2 everywhere
        if t != 2:
            label[8:12, 8:12] = 1  # object 1 hidden on frame 2
        if t == 3:
            label[0, 15] = 255  # void is not an object
        frames.append(tmp_path / f"{t:05d}.png")
        write_label(frames[-1], label)
    vis = visible_cells(frames)  # evaluated frames 1, 2, 3
    assert vis.tolist() == [[True, False, True], [True, True, True]]


def test_subset_scores_and_frame_means_known_answer() -> None:
    a = SimpleNamespace(name="a", j=np.array([[1.0, 0.5, 0.0], [0.2, 0.4, 0.6]]), f=np.array([[1.0, 0.5, 0.0]] * 2))
    b = SimpleNamespace(name="b", j=np.array([[0.8, 0.8, 0.8]]), f=np.array([[0.4, 0.4, 0.4]]))
    visible = {"a": np.array([[True, True, False], [False, False, False]]), "b": np.array([[False, True, True]])}
    got = subset_scores([a, b], visible)
    # object a1: J 0.75, F 0.75 over its two visible cells; a2 has none; b1: J 0.8, F 0.4
    assert got["objects"] == 2 and got["cells"] == 4
    assert got["J"] == pytest.approx(0.775) and got["F"] == pytest.approx(0.575)
    assert got["JF"] == pytest.approx(0.675)
    every = subset_scores([a, b])
    assert every["cells"] == 9 and every["J"] == pytest.approx((0.5 + 0.4 + 0.8) / 3)
    assert subset_scores([a], {"a": np.zeros((2, 3), bool)})["JF"] is None
    means = frame_means([a, b], visible)
    assert means["frame"] == [1, 2, 3] and means["cells"] == [1, 2, 1]
    assert means["jf"] == pytest.approx([1.0, (0.5 + 0.6) / 2, 0.6])
    assert frame_means([a, b])["cells"] == [3, 3, 3]


def test_floors_on_visible_and_hidden_cells(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", sequences=3, frames=10, size=(48, 64), seed=3)
    empty = empty_after_first_frame(root, tmp_path / "empty", progress=False)
    copy = copy_first_frame(root, tmp_path / "copy", progress=False)
    for path in sorted(empty.rglob("*.png")):
        assert (read_label(path) > 0).any() == (path.stem == "00000")
    report = evaluate_davis(root, empty, workers=1, write_csv=False, progress=False)
    visible = dataset_visible_cells(root, [s.name for s in report.sequences])
    assert any((~v).any() for v in visible.values())  # this set hides objects: both kinds of cells are tested
    for seq in report.sequences:
        hidden = (~visible[seq.name]).astype(float)  # [N, T-2]: 1 where the object is hidden
        np.testing.assert_array_equal(seq.j, hidden)
        np.testing.assert_array_equal(seq.f, hidden)
    assert subset_scores(report.sequences, visible)["JF"] == 0.0
    copied = evaluate_davis(root, copy, workers=1, write_csv=False, progress=False)
    assert subset_scores(copied.sequences)["JF"] == pytest.approx(copied.global_scores["J&F-Mean"], abs=1e-12)
