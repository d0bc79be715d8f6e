"""Per-frame J / F and the Mean / Recall / Decay statistics against hand-computed values and a plain reference.

The reference implementation below is written from the definitions in the official DAVIS 2017 protocol
(full-frame boundary maps, dilation by explicit disk offsets, no crop, no OpenCV); the fast code must match
it exactly (float equality, no tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from corrvos.data.io import read_label, write_label
from corrvos.evaluation.metrics import (
    boundary_pixels,
    boundary_radius,
    db_statistics,
    decay_bin_bounds,
    disk,
    f_measure,
    frame_scores,
    jaccard,
    seg2bmap,
)

# ----------------------------------------------------------------------------- plain reference implementation


def ref_bmap(m: np.ndarray) -> np.ndarray:
    """Boundary map by the letter of the rules, pixel by pixel."""
    h, w = m.shape
    m = m.astype(bool)

    def at(y: int, x: int) -> bool:
        return bool(m[y, x]) if y < h and x < w else False

    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                b[y, x] = False
            elif y == h - 1:
                b[y, x] = m[y, x] != at(y, x + 1)
            elif x == w - 1:
                b[y, x] = m[y, x] != at(y + 1, x)
            else:
                b[y, x] = (m[y, x] != at(y, x + 1)) or (m[y, x] != at(y + 1, x)) or (m[y, x] != at(y + 1, x + 1))
    return b


def ref_dilate(b: np.ndarray, r: int) -> np.ndarray:
    """Dilation by every offset with dy² + dx² <= r², zero outside the image."""
    h, w = b.shape
    out = np.zeros_like(b)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:
                continue
            src = b[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def ref_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    p, g = pred.astype(bool), gt.astype(bool)
    union = int((p | g).sum())
    j = 1.0 if union == 0 else int((p & g).sum()) / union
    r = math.ceil(0.008 * math.sqrt(g.shape[0] ** 2 + g.shape[1] ** 2))
    bp, bg = ref_bmap(p), ref_bmap(g)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g > 0:
        prec, rec = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        prec, rec = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        prec, rec = 1.0, 1.0
    else:
        prec = int((bp & ref_dilate(bg, r)).sum()) / float(n_p)
        rec = int((bg & ref_dilate(bp, r)).sum()) / float(n_g)
    f = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return j, f


def square(shape: tuple[int, int], y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[max(y0, 0) : y0 + size, max(x0, 0) : x0 + size] = True
    return m


# ----------------------------------------------------------------------------- hand-computed cases


def test_empty_and_full_conventions() -> None:
    empty, full = np.zeros((30, 40), bool), np.ones((30, 40), bool)
    obj = square((30, 40), 5, 5, 10)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    assert jaccard(empty, obj) == 0.0 and f_measure(empty, obj) == 0.0  # empty prediction
    assert jaccard(obj, empty) == 0.0 and f_measure(obj, empty) == 0.0  # prediction where GT is empty
    # a full-image mask has no boundary: F(full, empty) is the (1, 1) convention although J = 0
    assert not seg2bmap(full).any()
    assert jaccard(empty, full) == 0.0 and f_measure(empty, full) == 1.0
    assert f_measure(full, full) == 1.0 and f_measure(obj, full) == 0.0


def test_square_boundary_and_shifts_around_tolerance() -> None:
    shape = (100, 100)
    assert boundary_radius(shape) == 2  # ceil(0.008 * 141.42)
    gt = square(shape, 40, 40, 20)
    b = seg2bmap(gt)
    # row 39 x 39..59, column 39 y 40..59, row 59 x 40..59, column 59 y 40..58
    assert b.sum() == 21 + 20 + 20 + 19
    assert b[39, 39:60].all() and b[40:60, 39].all() and b[59, 40:60].all() and b[40:59, 59].all()
    for d in (1, 2):  # within tolerance: every boundary pixel has its translate within d <= r
        assert f_measure(np.roll(gt, d, axis=1), gt) == 1.0
    # d = 3 > r: 44 of 80 boundary pixels match on each side (20 top, 5 left, 19 bottom, 0 right)
    pred = np.roll(gt, 3, axis=1)
    p = r = 44 / 80.0
    assert f_measure(pred, gt) == 2 * p * r / (p + r)
    assert jaccard(pred, gt) == (20 * 17) / (800 - 20 * 17)


def test_radius_follows_the_full_resolution() -> None:
    shape = (480, 854)
    assert boundary_radius(shape) == 8 and disk(8).sum() == 197
    gt = square(shape, 200, 300, 60)
    assert f_measure(np.roll(gt, 8, axis=1), gt) == 1.0
    assert f_measure(np.roll(gt, 9, axis=1), gt) < 1.0
    for hw, r in (((240, 427), 4), ((360, 640), 6), ((480, 910), 9), ((720, 1280), 12), ((1080, 1920), 18)):
        assert boundary_radius(hw) == r


def test_boundary_on_the_image_edge() -> None:
    shape = (100, 100)
    left = square(shape, 40, 0, 20)
    b = seg2bmap(left)
    assert not b[40:59, 0].any()  # the image border is never a boundary
    assert b.sum() == 20 + 19 + 20  # row 39, column 19 (y 40..58), row 59
    corner = square(shape, 80, 80, 20)  # touches the bottom and right borders
    bc = seg2bmap(corner)
    assert bc.sum() == 21 + 20 and not bc[99, 99] and not bc[80:, 99].any() and not bc[99, 80:].any()
    # shifting along the border keeps the contour within tolerance only up to r
    assert f_measure(np.roll(left, 2, axis=0), left) == 1.0
    assert f_measure(np.roll(left, 3, axis=0), left) < 1.0


def test_disk_is_the_skimage_kernel() -> None:
    for r in range(0, 12):
        k = disk(r)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        assert np.array_equal(k, (yy**2 + xx**2 <= r * r).astype(np.uint8))
    assert [int(disk(r).sum()) for r in (4, 6, 8, 9, 12, 18)] == [49, 113, 197, 253, 441, 1009]


# ----------------------------------------------------------------------------- parity with the reference


def test_seg2bmap_matches_reference_rules() -> None:
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (1, 7), (6, 1), (2, 2), (9, 13)):
        for _ in range(5):
            m = rng.random((h, w)) < 0.5
            assert np.array_equal(seg2bmap(m), ref_bmap(m))


def test_boundary_pixels_of_all_labels_at_once() -> None:
    rng = np.random.default_rng(3)
    for h, w in ((1, 1), (1, 9), (8, 1), (2, 3), (15, 21)):
        label = rng.integers(0, 4, (h, w)).astype(np.uint8)
        label[rng.random((h, w)) < 0.5] = 0
        bnd = boundary_pixels(label)
        for k in range(0, 5):
            assert np.array_equal(bnd.of(k), np.flatnonzero(ref_bmap(label == k))), (h, w, k)


def test_frame_scores_parity_with_reference() -> None:
    rng = np.random.default_rng(1)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(3, 40, 2))
        n = int(rng.integers(1, 5))
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for k in range(1, n + 1):
            for lab in (gt, pred):
                if rng.random() < 0.8:
                    y, x = rng.integers(-2, h), rng.integers(-2, w)
                    lab[max(y, 0) : y + rng.integers(1, h + 1), max(x, 0) : x + rng.integers(1, w + 1)] = k
        if trial % 3 == 0:  # speckle noise: many tiny components
            noise = rng.random((h, w)) < 0.05
            pred[noise] = rng.integers(0, n + 1, int(noise.sum()))
        if trial % 5 == 0:
            gt[rng.random((h, w)) < 0.05] = n + 3  # a GT id above N is not an object
        j, f = frame_scores(gt, pred, n, boundary_radius((h, w)))
        for k in range(1, n + 1):
            rj, rf = ref_scores(pred == k, gt == k)
            assert j[k - 1] == rj and f[k - 1] == rf, (trial, k)
            assert f_measure(pred == k, gt == k) == rf and f_measure(pred == k, gt == k, dense=True) == rf


# ----------------------------------------------------------------------------- statistics


def test_recall_is_strict_and_mean_is_plain() -> None:
    v = np.array([0.5, 0.5000001, 0.2, 1.0])
    mean, recall, _ = db_statistics(v)
    assert mean == np.mean(v) and recall == 0.5  # 0.5 itself does not count


def test_decay_bins_and_values() -> None:
    assert decay_bin_bounds(1) == [(0, 1)] * 4
    assert decay_bin_bounds(2) == [(0, 1), (0, 2), (1, 2), (1, 2)]
    assert decay_bin_bounds(5) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert decay_bin_bounds(18) == [(0, 5), (4, 10), (9, 14), (13, 18)]
    assert decay_bin_bounds(100) == [(0, 26), (25, 51), (50, 75), (74, 100)]
    assert db_statistics(np.array([0.7]))[2] == 0.0
    assert db_statistics(np.array([0.9, 0.4]))[2] == 0.9 - 0.4
    v = np.array([1.0, 0.8, 0.6, 0.4, 0.2])
    assert db_statistics(v)[2] == np.mean([1.0, 0.8]) - np.mean([0.4, 0.2])
    v18 = np.linspace(1, 0, 18)
    assert db_statistics(v18)[2] == np.mean(v18[0:5]) - np.mean(v18[13:18])


def test_decay_past_255_frames() -> None:
    v = np.linspace(1.0, 0.0, 300)
    _, _, d = db_statistics(v)
    assert d == np.mean(v[0:76]) - np.mean(v[224:300]) and d > 0
    assert math.isnan(db_statistics(v, uint8_decay=True)[2])  # the official uint8 bins: last bin [224:44] empty
    v400 = np.linspace(1.0, 0.0, 400)
    assert decay_bin_bounds(400, uint8_decay=True)[3] == (43, 144)  # finite but from the wrong frames
    assert db_statistics(v400, uint8_decay=True)[2] == np.mean(v400[0:101]) - np.mean(v400[43:144])
    for n in (3, 100, 255):  # identical up to 255 frames
        assert decay_bin_bounds(n) == decay_bin_bounds(n, uint8_decay=True)


# ----------------------------------------------------------------------------- palette round trip


@pytest.mark.parametrize("ids", [(0, 1, 2), (0, 7, 255), (0, 1, 2, 3, 4, 5, 6, 40)])
def test_palette_round_trip(tmp_path, ids) -> None:
    rng = np.random.default_rng(2)
    label = rng.choice(np.array(ids, np.uint8), size=(17, 23))
    write_label(tmp_path / "x.png", label)
    back = read_label(tmp_path / "x.png")
    assert back.dtype == np.uint8 and np.array_equal(back, label)
    from PIL import Image

    with Image.open(tmp_path / "x.png") as img:
        assert img.mode == "P"
