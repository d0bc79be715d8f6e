"""Per-frame region similarity J, contour accuracy F and the per-object statistics Mean / Recall / Decay.

Semantics are those of the official DAVIS 2017 toolkit (davisvideochallenge/davis2017-evaluation, commit
ac7c43f, ``davis2017/metrics.py`` and ``davis2017/utils.py``), re-expressed here, not copied:

- J = |P ∩ G| / |P ∪ G| from integer pixel counts and one float64 division; J = 1 when the union is empty;
- F: 1-pixel boundary maps (:func:`seg2bmap`, BSDS convention, offset half a pixel towards the origin, no
  contour along the image border), each dilated with the disk {dx² + dy² <= r²} (:func:`disk`, the
  scikit-image kernel, not OpenCV's ``MORPH_ELLIPSE``), r = ceil(0.008 * sqrt(H² + W²)) from the full image
  size; precision = |bP ∧ dil(bG)| / float(|bP|), recall = |bG ∧ dil(bP)| / float(|bG|), F = 2PR / (P + R),
  with the empty-boundary conventions (1, 0) / (0, 1) / (1, 1) for (precision, recall);
- Mean = nanmean, Recall = nanmean(v > 0.5) (strict), Decay over 4 overlapping bins with the ``+1e-10``
  rounding. The official code casts the bin bounds to uint8, which wraps from n = 256 evaluated frames;
  :func:`db_statistics` computes them in int64 unless ``uint8_decay=True`` (bit-for-bit compatibility).

Speed-ups that keep every number identical (see docs/evaluation.md): all objects of a frame come from one
pair of uint8 label maps; J uses one joint histogram (:func:`label_confusion`); the ``seg2bmap`` boundaries of
all objects come from one pass over each label map (:func:`boundary_pixels`); instead of two dense dilations
per object, the matched boundary pixels are counted on the sparse boundary pixels with the integer row
intervals of the disk (:func:`_count_within`), which is the same set test as the dilation; r always comes from
the full image size. ``f_measure(..., dense=True)`` keeps the official dense ``cv2.dilate`` computation.

Masks are boolean [H, W]; label maps are uint8 [H, W] with 0 = background and 1..N the objects.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "BOUND_TH",
    "BoundaryPixels",
    "boundary_pixels",
    "boundary_radius",
    "db_statistics",
    "decay_bin_bounds",
    "disk",
    "f_measure",
    "frame_scores",
    "jaccard",
    "label_confusion",
    "seg2bmap",
]

BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal (official default)


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Tolerance radius in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th * ||(H, W)||).

    Computed with the same float64 operations as the official code (``np.linalg.norm`` of the shape).
    """
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(np.asarray(shape[:2], dtype=np.float64))))


def disk(radius: int) -> np.ndarray:
    """Disk structuring element, uint8 [2r+1, 2r+1], ones exactly where dx² + dy² <= r².

    This is ``skimage.morphology.disk(radius)`` (197 ones at r = 8), which the official F uses.
    """
    r = int(radius)
    d = np.arange(-r, r + 1)
    return ((d[:, None] ** 2 + d[None, :] ** 2) <= r * r).astype(np.uint8)  # [2r+1, 2r+1]


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """Binary boundary map of a mask (same-size, bool [H, W]), the BSDS ``seg2bmap`` rules.

    With E, S, SE the east, south and south-east neighbours (0 outside the image):
    b = (m ^ E) | (m ^ S) | (m ^ SE) inside; the last row is m ^ E; the last column is m ^ S; the
    bottom-right pixel is 0. Hence the image border is never a boundary, and an empty or full mask has none.

    Args:
        mask: [H, W], any dtype; nonzero = foreground.
    """
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim != 2:
        raise ValueError(f"seg2bmap expects a 2-D mask, got shape {m.shape}")
    b = np.zeros_like(m)
    core, east, south, se = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]
    b[:-1, :-1] = (core ^ east) | (core ^ south) | (core ^ se)
    b[-1, :-1] = m[-1, :-1] ^ m[-1, 1:]  # last row: east neighbour only
    b[:-1, -1] = m[:-1, -1] ^ m[1:, -1]  # last column: south neighbour only
    return b  # bottom-right stays 0


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity of two binary masks [H, W]: |P ∩ G| / |P ∪ G|, 1.0 when both are empty."""
    p, g = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: prediction {p.shape}, ground truth {g.shape}")
    inter = np.int64(np.count_nonzero(p & g))
    union = np.int64(np.count_nonzero(p | g))
    return 1.0 if union == 0 else float(inter / union)


def _f_from_counts(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    """F from boundary counts with the official conventions and float64 order of operations."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@functools.lru_cache(maxsize=64)
def _disk_rows(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets dy [2r+1] of the disk and the half-width isqrt(r² - dy²) of each row [2r+1]."""
    dys = np.arange(-radius, radius + 1)
    half = np.array([math.isqrt(radius * radius - d * d) for d in range(-radius, radius + 1)])
    return dys, half


def _count_within(points: np.ndarray, targets: np.ndarray, shape: tuple[int, int], radius: int) -> int:
    """How many ``points`` lie within Euclidean distance ``radius`` of some pixel of ``targets``.

    This is |points ∧ dilate(targets, disk(radius))| computed on the sparse boundary pixels instead of a dense
    dilation: pixel (y, x) is covered iff some target lies in row y + dy, columns x ± isqrt(r² - dy²), for some
    |dy| <= r. Targets become sorted keys in a frame padded by r on every side (so rows never wrap); for each
    row interval one binary search finds the first key >= its start, and the interval holds a target iff that
    key is <= its end. Integer arithmetic only: identical to the dilation.

    Args:
        points: flat indices (row-major in ``shape``) of the pixels to test [n].
        targets: flat indices of the target pixels, sorted [m], m > 0.
        shape: (h, w) of the array the indices refer to (only w is used).
        radius: r.
    """
    w = shape[1]
    r = int(radius)
    wp = w + 2 * r + 1  # padded row length
    ty, tx = np.divmod(targets, w)
    keys = np.append((ty + r) * wp + (tx + r), np.iinfo(np.int64).max)  # sorted [m + 1], with a sentinel
    py, px = np.divmod(points, w)
    dys, half = _disk_rows(r)  # [2r+1] each
    start = (py[None, :] + dys[:, None] + r) * wp + (px[None, :] - half[:, None] + r)  # [2r+1, n]
    first = keys[np.searchsorted(keys, start, side="left")]  # [2r+1, n] first target key >= interval start
    hit = first <= start + 2 * half[:, None]  # [2r+1, n]
    return int(np.count_nonzero(hit.any(axis=0)))


@dataclass
class BoundaryPixels:
    """The pixels of a label map where the label changes towards E, S or SE, with the four labels involved.

    For any id k, the ``seg2bmap`` boundary of the mask (label == k) is exactly the set of these pixels whose
    four labels (own, east, south, south-east) include k: with the edge rules expressed by replicating the last
    row and column (a neighbour outside the image then equals the pixel itself, which is what the last-row /
    last-column overrides and the cleared bottom-right pixel amount to).

    Attributes:
        index: flat row-major indices of the pixels, sorted [m].
        labels: uint8 [4, m], the pixel's own, E, S and SE labels.
        width: W of the label map (to turn indices into (y, x)).
    """

    index: np.ndarray
    labels: np.ndarray
    width: int

    def of(self, k: int) -> np.ndarray:
        """Sorted flat indices of the boundary pixels of object k [n_k]."""
        return self.index[(self.labels == k).any(axis=0)]


def boundary_pixels(label: np.ndarray) -> BoundaryPixels:
    """:class:`BoundaryPixels` of a uint8 label map [H, W] (one pass; all objects at once)."""
    lab = np.asarray(label)
    lp = np.pad(lab, ((0, 1), (0, 1)), mode="edge")  # [H+1, W+1], replicated last row and column
    east, south, se = lp[:-1, 1:], lp[1:, :-1], lp[1:, 1:]  # [H, W] each
    changed = (lab != east) | (lab != south) | (lab != se)  # [H, W]
    index = np.flatnonzero(changed)
    ys, xs = np.divmod(index, lab.shape[1])
    labels = np.stack([lab.ravel()[index], lp[ys, xs + 1], lp[ys + 1, xs], lp[ys + 1, xs + 1]])  # [4, m]
    return BoundaryPixels(index=index, labels=labels, width=int(lab.shape[1]))


_DENSE_FACTOR = 4.0  # use dense dilation when the box area < factor * (2r+1) * boundary pixels (cost model)


@functools.lru_cache(maxsize=64)
def _disk_cached(radius: int) -> np.ndarray:
    return disk(radius)


def _match_counts(bp: np.ndarray, bg: np.ndarray, width: int, radius: int) -> tuple[int, int]:
    """(|bP ∧ dil(bG)|, |bG ∧ dil(bP)|) from sorted flat boundary indices; both sets non-empty.

    Two exact methods, chosen by a cost model: dense ``cv2.dilate`` on the bounding box of both boundaries
    (nothing outside the box can matter, and OpenCV's default border adds nothing), or the sparse row-interval
    search of :func:`_count_within` when the box is large compared with the boundaries (scattered pixels).
    """
    gy, gx = np.divmod(bg, width)
    py, px = np.divmod(bp, width)
    y0, y1 = min(gy[0], py[0]), max(gy[-1], py[-1]) + 1  # flat indices are row-major sorted
    x0, x1 = min(gx.min(), px.min()), max(gx.max(), px.max()) + 1
    area = int(y1 - y0) * int(x1 - x0)
    if area > _DENSE_FACTOR * (2 * radius + 1) * (bp.size + bg.size):
        shape = (0, width)
        return _count_within(bp, bg, shape, radius), _count_within(bg, bp, shape, radius)
    box = (int(y1 - y0), int(x1 - x0))
    kernel = _disk_cached(radius)
    canvas_g = np.zeros(box, np.uint8)
    canvas_g[gy - y0, gx - x0] = 1
    canvas_p = np.zeros(box, np.uint8)
    canvas_p[py - y0, px - x0] = 1
    gt_dil = cv2.dilate(canvas_g, kernel)  # [h_box, w_box]
    fg_dil = cv2.dilate(canvas_p, kernel)  # [h_box, w_box]
    return int(np.count_nonzero(gt_dil[py - y0, px - x0])), int(np.count_nonzero(fg_dil[gy - y0, gx - x0]))


def _boundary_f(bp: np.ndarray, bg: np.ndarray, width: int, radius: int) -> float:
    """F from the sorted flat boundary indices of prediction [n_fg] and GT [n_gt]."""
    n_fg, n_gt = int(bp.size), int(bg.size)
    if n_fg == 0 or n_gt == 0:  # the conventions decide; the matches are not needed
        return _f_from_counts(n_fg, n_gt, 0, 0)
    return _f_from_counts(n_fg, n_gt, *_match_counts(bp, bg, width, radius))


def dilation_counts(p: np.ndarray, g: np.ndarray, kernel: np.ndarray) -> tuple[int, int, int, int]:
    """(|bP|, |bG|, |bP ∧ dil(bG)|, |bG ∧ dil(bP)|) with dense ``cv2.dilate`` maps, the official computation."""
    bp, bg = seg2bmap(p), seg2bmap(g)
    gt_dil = cv2.dilate(bg.view(np.uint8), kernel).view(bool)  # [h, w]
    fg_dil = cv2.dilate(bp.view(np.uint8), kernel).view(bool)  # [h, w]
    return (
        int(np.count_nonzero(bp)),
        int(np.count_nonzero(bg)),
        int(np.count_nonzero(bp & gt_dil)),
        int(np.count_nonzero(bg & fg_dil)),
    )


def f_measure(pred: np.ndarray, gt: np.ndarray, *, bound_th: float = BOUND_TH, dense: bool = False) -> float:
    """Contour accuracy F of two binary masks [H, W] (the official ``f_measure`` without void pixels).

    Args:
        pred: predicted mask [H, W], nonzero = foreground.
        gt: ground-truth mask [H, W].
        bound_th: tolerance as a fraction of the diagonal (< 1) or in pixels (>= 1).
        dense: use the official full-frame ``cv2.dilate`` computation instead of the sparse boundary matching
            (identical result, slower).
    """
    p, g = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"masks must be 2-D and equal in shape: prediction {p.shape}, ground truth {g.shape}")
    radius = boundary_radius(g.shape, bound_th)
    if dense:
        return _f_from_counts(*dilation_counts(p, g, disk(radius)))
    width = g.shape[1]
    return _boundary_f(boundary_pixels(p.view(np.uint8)).of(1), boundary_pixels(g.view(np.uint8)).of(1), width, radius)


def label_confusion(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Joint histogram of two uint8 label maps [H, W]: int64 [256, 256], entry [g, p] = #pixels (gt=g, pred=p).

    One OpenCV pass (float32 counts, exact below 2**24 pixels); ``np.bincount`` above that.
    """
    if gt.size < 2**24:
        hist = cv2.calcHist([gt, pred], [0, 1], None, [256, 256], [0, 256, 0, 256])  # [256, 256] float32
        return hist.astype(np.int64)
    pair = gt.astype(np.int64) * 256 + pred  # [H, W] in 0..65535
    return np.bincount(pair.ravel(), minlength=65536).reshape(256, 256)  # [gt label, pred label]


def frame_scores(
    gt: np.ndarray, pred: np.ndarray, num_objects: int, radius: int, *, confusion: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..N in one frame, from one GT and one predicted label map.

    Args:
        gt: ground-truth label map, uint8 [H, W], void (255) already mapped to 0. Values > N are not
            objects (official: ids above the maximum of GT frame 0 are ignored).
        pred: predicted label map, uint8 [H, W], values in 0..N (checked by the caller).
        num_objects: N.
        radius: the boundary tolerance of this resolution (:func:`boundary_radius` of the full frame).
        confusion: :func:`label_confusion` of (gt, pred) if the caller already has it.

    Returns:
        (J [N], F [N]) float64.
    """
    n = int(num_objects)
    j = np.ones(n, dtype=np.float64)
    f = np.ones(n, dtype=np.float64)
    if n == 0:
        return j, f
    conf = label_confusion(gt, pred) if confusion is None else confusion  # [256, 256]
    ids = np.arange(1, n + 1)
    inter = conf[ids, ids]
    size_g = conf[1 : n + 1, :].sum(axis=1)
    size_p = conf[:, 1 : n + 1].sum(axis=0)
    union = size_g + size_p - inter
    nonempty = union > 0
    j[nonempty] = inter[nonempty] / union[nonempty]  # int64 / int64 -> float64, as the official division
    bnd_g, bnd_p = boundary_pixels(gt), boundary_pixels(pred)
    for k in np.flatnonzero(nonempty) + 1:  # both empty: F = 1 (no boundary on either side)
        f[k - 1] = _boundary_f(bnd_p.of(k), bnd_g.of(k), gt.shape[1], radius)
    return j, f


def decay_bin_bounds(n: int, *, uint8_decay: bool = False) -> list[tuple[int, int]]:
    """The 4 (start, stop) slice bounds of the Decay bins for n per-frame values.

    ids = round(linspace(1, n, 5) + 1e-10) - 1 and bin i = v[ids[i] : ids[i+1] + 1] (neighbouring bins share a
    frame). With ``uint8_decay`` the bounds wrap modulo 256 as in the official code under NumPy >= 2.
    """
    ids = np.round(np.linspace(1, n, 5) + 1e-10) - 1
    if uint8_decay:
        with warnings.catch_warnings(), np.errstate(over="ignore"):
            warnings.simplefilter("ignore")
            ids8 = ids.astype(np.uint8)
            return [(int(ids8[i]), int(ids8[i + 1] + 1)) for i in range(4)]
    ids64 = ids.astype(np.int64)
    return [(int(ids64[i]), int(ids64[i + 1]) + 1) for i in range(4)]


def db_statistics(values: np.ndarray, *, uint8_decay: bool = False) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame values [n] (float64), official semantics.

    Mean = nanmean(v); Recall = nanmean(v > 0.5); Decay = nanmean(first bin) - nanmean(last bin). An empty bin
    (only possible with ``uint8_decay``) gives NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(v)
        recall = np.nanmean(v > 0.5)
        bins = [v[a:b] for a, b in decay_bin_bounds(len(v), uint8_decay=uint8_decay)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)
