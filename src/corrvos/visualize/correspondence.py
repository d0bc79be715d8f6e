"""Matching responses between two distant frames (Fig. S3 of Zhang et al., CVPR 2023 supplement).

For a query pixel j of frame t, the response over frame tau is the column of the model's own memory read that
pixel j would use if frame tau were the only memory frame: ``softmax_i S(k_tau_i, q_t_j)`` over all positions i of
tau's stride-16 key grid (padding included, as in inference), with S the model's similarity
(:func:`corrvos.models.memory.similarity`: STCN's L2 similarity, or XMem's anisotropic L2 with tau's shrinkage
and t's selection). Each response therefore sums to 1 over tau's positions. ``top_k`` restricts it to the top-k
positions as the inference memory read does.

The figure has one row per query point and, after the query frame, one column per checkpoint: tau with the
response as a jet heat map, the ground-truth object outlines of tau when masks are given, and a cross at the peak.
All heat maps share one colour scale, from 0 to the largest weight of the figure, drawn as a colour bar under the
grid. On that bar a line marks the uniform level 1/N (N = the positions of tau's key grid): a response that
matched nothing in particular would be 1/N everywhere, so the peak's ratio to 1/N (in each tile's title) says how
sharply the pixel is matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.data.io import write_image
from corrvos.errors import DataError
from corrvos.inference.geometry import unpad
from corrvos.models.memory import similarity, softmax_affinity, topk_softmax
from corrvos.visualize.inputs import FEATURE_STRIDE, FrameFolder, ModelInput, model_input, object_ids
from corrvos.visualize.overlay import overlay
from corrvos.visualize.panels import grid, heat_colors, panel_scale, scale_image, titled

__all__ = [
    "CorrespondenceResult",
    "auto_points",
    "colorbar_figure",
    "correspondence_responses",
    "draw_correspondence",
    "make_correspondence_figure",
    "parse_point",
    "response_from_keys",
]

TITLE_LINES = 3
COLORBAR_HEIGHT = 84
_POINT_COLOUR = (255, 255, 0)


@dataclass
class CorrespondenceResult:
    """The responses of one model to the query points of frame t over frame tau.

    Attributes:
        points: (y, x) query pixels of frame t.
        response: [P, h, w] float32 softmax weights over tau's key grid (padded frame); each [h, w] sums to 1.
        pad: (left, right, top, bottom) padding of tau's network input.
        size: (H, W) of tau before padding.
    """

    points: list[tuple[int, int]]
    response: Tensor
    pad: tuple[int, int, int, int]
    size: tuple[int, int]

    @property
    def positions(self) -> int:
        """N: the positions of tau's key grid (padding included), over which each response sums to 1."""
        return int(self.response.shape[-2] * self.response.shape[-1])

    @property
    def uniform(self) -> float:
        """1/N, the weight of every position in a response that prefers none."""
        return 1.0 / self.positions

    def upsampled(self) -> Tensor:
        """[P, H, W] the responses bilinearly enlarged to tau's pixels (for display; no longer sums to 1)."""
        h, w = self.response.shape[-2:]
        big = F.interpolate(self.response[None], size=(h * FEATURE_STRIDE, w * FEATURE_STRIDE), mode="bilinear")
        return unpad(big[0], self.pad)  # [P, H, W]

    def peaks(self) -> list[tuple[int, int]]:
        """(y, x) image pixel at the centre of the strongest cell of each response (clipped to the frame)."""
        left, _, top, _ = self.pad
        w = self.response.shape[-1]
        flat = self.response.flatten(1).argmax(dim=1).tolist()  # [P]
        out = []
        for index in flat:
            row, col = divmod(int(index), w)
            y = row * FEATURE_STRIDE + FEATURE_STRIDE // 2 - top
            x = col * FEATURE_STRIDE + FEATURE_STRIDE // 2 - left
            out.append((min(max(y, 0), self.size[0] - 1), min(max(x, 0), self.size[1] - 1)))
        return out


def parse_point(text: str) -> tuple[int, int]:
    """ "y,x" -> (y, x) (integers, pixels of frame t).

    Raises:
        DataError: not two integers separated by a comma.
    """
    parts = str(text).replace(" ", "").split(",")
    try:
        y, x = (int(p) for p in parts)
    except ValueError as exc:
        raise DataError(None, f"--points: {text!r} is not y,x (two integers, e.g. 120,200)") from exc
    return y, x


def auto_points(label: np.ndarray) -> tuple[list[tuple[int, int]], list[int]]:
    """One query pixel per object of a label map: its centroid, or the object pixel nearest to it.

    Returns:
        (points (y, x), object ids), in increasing id order.
    """
    points, ids = [], object_ids(label)
    for k in ids:
        ys, xs = np.nonzero(label == k)
        cy, cx = ys.mean(), xs.mean()
        nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))  # the centroid of a ring is not on it
        points.append((int(ys[nearest]), int(xs[nearest])))
    return points, ids


def response_from_keys(
    query_key: Tensor,
    memory_key: Tensor,
    cells: Sequence[tuple[int, int]],
    *,
    memory_shrinkage: Tensor | None = None,
    query_selection: Tensor | None = None,
    top_k: int | None = None,
) -> Tensor:
    """The model's read weights over the memory frame for some query cells.

    Args:
        query_key: [1, CK, h, w] keys of frame t.
        memory_key: [1, CK, h', w'] keys of frame tau.
        cells: (row, column) feature cells of the query points in t's grid.
        memory_shrinkage: [1, 1, h', w'] XMem shrinkage of tau, or None.
        query_selection: [1, CK, h, w] XMem selection of t, or None.
        top_k: keep the top-k positions per query (inference read), or None for the full softmax.

    Returns:
        [P, h', w'] weights; each [h', w'] sums to 1.
    """
    rows = torch.tensor([c[0] for c in cells], device=query_key.device)
    cols = torch.tensor([c[1] for c in cells], device=query_key.device)
    qk = query_key[:, :, rows, cols]  # [1, CK, P]
    qe = None if query_selection is None else query_selection[:, :, rows, cols]  # [1, CK, P]
    sim = similarity(memory_key, qk, mem_shrinkage=memory_shrinkage, query_selection=qe)  # [1, M, P]
    weights = softmax_affinity(sim) if top_k is None else topk_softmax(sim, top_k)  # [1, M, P]
    h, w = memory_key.shape[-2:]
    return weights[0].transpose(0, 1).reshape(len(cells), h, w)  # [P, h', w']


def correspondence_responses(
    model: nn.Module,
    frame_t: ModelInput,
    frame_tau: ModelInput,
    points: Sequence[tuple[int, int]],
    *,
    top_k: int | None = None,
) -> CorrespondenceResult:
    """Encode both frames with ``model`` and compute the responses of ``points`` (pixels of t) over tau.

    Raises:
        DataError: a point lies outside frame t.
    """
    height, width = frame_t.size
    for y, x in points:
        if not (0 <= y < height and 0 <= x < width):
            raise DataError(None, f"--points {y},{x} lies outside frame t ({height}x{width}, HxW)")
    cells = [frame_t.feature_cell(y, x) for y, x in points]
    with torch.inference_mode():
        query = model.encode_key(frame_t.image, need_shrinkage=False, need_selection=True)
        memory = model.encode_key(frame_tau.image, need_shrinkage=True, need_selection=False)
        response = response_from_keys(
            query.key.float(),
            memory.key.float(),
            cells,
            memory_shrinkage=None if memory.shrinkage is None else memory.shrinkage.float(),
            query_selection=None if query.selection is None else query.selection.float(),
            top_k=top_k,
        )
    return CorrespondenceResult(list(points), response.cpu(), frame_tau.pad, frame_tau.size)


def _mark(image: np.ndarray, y: int, x: int, scale: int, *, cross: bool = False) -> None:
    centre = (int(x * scale + scale // 2), int(y * scale + scale // 2))
    radius = max(4, 2 * scale)
    if cross:
        cv2.drawMarker(image, centre, (255, 255, 255), cv2.MARKER_CROSS, 3 * radius, 3, cv2.LINE_AA)
        cv2.drawMarker(image, centre, (0, 0, 0), cv2.MARKER_CROSS, 3 * radius, 1, cv2.LINE_AA)
    else:
        cv2.circle(image, centre, radius, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(image, centre, radius - 1, _POINT_COLOUR, -1, cv2.LINE_AA)


def colorbar_figure(width: int, vmax: float, positions: int, *, height: int = COLORBAR_HEIGHT):
    """A horizontal colour bar ``width`` x ``height`` pixels for heat maps drawn with :func:`heat_colors` on the
    scale [0, ``vmax``], with the uniform level 1/``positions`` marked.

    Returns:
        (the matplotlib ``Figure``, its ``Colorbar``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    cax = fig.add_axes((0.04, 0.58, 0.92, 0.2))
    lut = heat_colors(np.linspace(0.0, 1.0, 256)[None])[0] / 255.0  # [256, 3]: the colours of the tiles
    mappable = ScalarMappable(norm=Normalize(0.0, vmax), cmap=ListedColormap(lut))
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal")
    uniform = 1.0 / positions
    cax.axvline(uniform, color="white", linewidth=3)
    cax.axvline(uniform, color="black", linewidth=1.5)
    cax.text(uniform, 1.08, "1/N", transform=cax.get_xaxis_transform(), ha="center", va="bottom", color="white")
    cax.tick_params(colors="white", labelsize=8)
    bar.outline.set_edgecolor("white")
    bar.set_label(
        f"read weight w (softmax over the N = {positions} positions of frame tau; one scale for every map); "
        f"uniform 1/N = {uniform:.4f}",
        color="white",
        fontsize=8,
    )
    return fig, bar


def _render(fig) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a matplotlib figure drawn on its Agg canvas."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def draw_correspondence(
    frame_t: np.ndarray,
    frame_tau: np.ndarray,
    results: Sequence[CorrespondenceResult],
    labels: Sequence[str],
    *,
    names: tuple[str, str] = ("t", "tau"),
    point_names: Sequence[str] | None = None,
    mask_tau: np.ndarray | None = None,
) -> np.ndarray:
    """The Fig. S3 grid: one row per query point; columns: frame t with the point, then tau per model; a colour
    bar under the grid.

    Every heat map uses the scale [0, the largest weight of any result] (:func:`colorbar_figure`).

    Args:
        frame_t, frame_tau: uint8 RGB [H, W, 3].
        results: one :class:`CorrespondenceResult` per model (same points).
        labels: column titles (one per model).
        names: how frames t and tau are named in the titles.
        point_names: a name per point (e.g. "object 2"), or None.
        mask_tau: label map [H, W] of tau, whose object outlines are drawn on the heat maps, or None.

    Returns:
        uint8 RGB [P * (TITLE_LINES * LINE_HEIGHT + s * H) + COLORBAR_HEIGHT, (1 + models) * s * W, 3] with
        s = :func:`panel_scale` (W).
    """
    scale = panel_scale(frame_t.shape[1])
    points = results[0].points
    vmax = max(float(r.response.max()) for r in results)
    positions = results[0].positions
    rows = []
    for p, (y, x) in enumerate(points):
        query = scale_image(frame_t, scale).copy()
        _mark(query, y, x, scale)
        what = f"{point_names[p]} " if point_names else ""
        row = [titled(query, [f"query frame {names[0]}", f"{what}(y={y}, x={x})"], TITLE_LINES)]
        for result, label in zip(results, labels, strict=True):
            heat = result.upsampled()[p].numpy()  # [H, W]
            tile = (0.45 * frame_tau + 0.55 * heat_colors(heat / max(vmax, 1e-12))).astype(np.uint8)
            if mask_tau is not None:
                tile = overlay(tile, mask_tau, alpha=0.0, contour=True)
            tile = scale_image(tile, scale).copy()
            py, px = result.peaks()[p]
            _mark(tile, py, px, scale, cross=True)
            peak = float(result.response[p].max())
            lines = [
                f"{label}: frame {names[1]}",
                f"peak w={peak:.3f} at (y={py}, x={px})",
                f"= {peak * positions:.1f} x uniform 1/N (1/{positions})",
            ]
            row.append(titled(tile, lines, TITLE_LINES))
        rows.append(row)
    body = grid(rows)
    fig, _ = colorbar_figure(body.shape[1], vmax, positions)
    bar = _render(fig)
    if bar.shape[:2] != (COLORBAR_HEIGHT, body.shape[1]):  # matplotlib rounds inches * dpi
        bar = cv2.resize(bar, (body.shape[1], COLORBAR_HEIGHT), interpolation=cv2.INTER_AREA)
    return np.concatenate([body, bar], axis=0)  # [P * tile_h + COLORBAR_HEIGHT, cols * tile_w, 3]


def make_correspondence_figure(
    models: Sequence[nn.Module],
    labels: Sequence[str],
    folder: FrameFolder,
    t: int,
    tau: int,
    out_dir: str | Path,
    *,
    points: Sequence[tuple[int, int]] | None = None,
    top_k: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Path, list[CorrespondenceResult]]:
    """Read frames t and tau (and masks), compute every model's responses and write the figure.

    Query points are ``points`` or, when None, one per object of frame t's mask (:func:`auto_points`).

    Returns:
        (the PNG written, ``<out_dir>/correspondence_<t id>_<tau id>.png``; the results, one per model).

    Raises:
        DataError: frame index out of range, missing mask, frames or masks of different sizes, no query point.
    """
    t = folder.check_index(t, "--frame")
    tau = folder.check_index(tau, "--target")
    rgb_t, rgb_tau = folder.read_frame(t), folder.read_frame(tau)
    folder.check_same_size(rgb_t, rgb_tau, t, tau)
    size = rgb_t.shape[:2]
    point_names = None
    if points is None:
        if folder.mask_dir is None:
            raise DataError(folder.frame_dir, "give query points with --points y,x or a mask folder with --masks")
        points, ids = auto_points(folder.read_mask(t, size))
        if not points:
            raise DataError(folder.mask_dir, f"the mask of frame {folder.paths[t].name} holds no object")
        point_names = [f"object {k}" for k in ids]
    mask_tau = folder.read_mask(tau, size) if folder.mask_dir is not None else None
    input_t, input_tau = model_input(rgb_t, device), model_input(rgb_tau, device)
    results = [correspondence_responses(m, input_t, input_tau, points, top_k=top_k) for m in models]
    names = (f"t={t} ({folder.frame_id(t)})", f"tau={tau} ({folder.frame_id(tau)})")
    figure = draw_correspondence(
        rgb_t, rgb_tau, results, labels, names=names, point_names=point_names, mask_tau=mask_tau
    )
    path = Path(out_dir) / f"correspondence_{folder.frame_id(t)}_{folder.frame_id(tau)}.png"
    write_image(path, figure)
    return path, results
