"""L_OCL, object-level coherence ("paper" mode): Algorithm S2 / Eqs. 8-11 of Zhang et al. (CVPR 2023) supplement.

For two distant frames p and q of every clip:

    boxes  = bounding boxes of the ground-truth object masks (identities are *not* used) [our choice]
    o      = AvgPool_{h x w}( PROJ( RoIAlign(res4, box) ) ) in R^D                       (Eq. 8)
    P'     = a random subset of min(N, |P|) objects of p per clip
    match  = Hungarian assignment per clip between P' and the objects of q, cost -cos(o_p, o_q)  (Eqs. 9-10)
    s(n,m) = cos(o_p(n), o_q(m)) / tau  (or the plain dot product o_p . o_q / tau)     [our choice]
    L_OCL  = - mean_n log softmax_m s(n, m)[m*(n)]                                     (Eq. 11)

The softmax runs over the q objects of the *whole batch* (cross-batch negatives). The q objects are laid out
clip after clip in blocks of N_q = N slots (slots without an object are masked out of the softmax), so the label
of p object n of clip b is b * N_q + m*(n): the per-clip offset is the number of q slots per clip. (The
supplement's pseudocode offsets by ``b * indices.size(0)``, i.e. by the batch size B, which is wrong unless
B = N_q.)

Edge cases: clips with no object in p or q contribute nothing; p objects left unmatched (more p than q objects)
contribute nothing; when nothing in the batch can be matched the loss is an exact 0 that still depends on the
head and the features (so DDP sees every parameter used). Tiny objects are fine: RoIAlign (aligned=True)
samples bilinearly inside boxes smaller than one stride-16 cell.

Randomness (the subsets) comes only from the ``generator`` argument. The Hungarian step runs in scipy on the
CPU, one small problem per clip (the only per-clip loop), after a single device-to-host copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from corrvos.models.roi_align import roi_align

__all__ = [
    "OCLResult",
    "boxes_from_masks",
    "hungarian_match",
    "object_coherence_loss",
    "object_embeddings",
    "random_subset",
]

FEATURE_STRIDE = 16  # res4 is at stride 16


@dataclass
class OCLResult:
    """L_OCL and what it matched.

    Attributes:
        loss: scalar loss.
        num_matched: number of (p, q) pairs that entered the loss.
        pairs: per clip, the list of (p slot, q slot) pairs chosen by the Hungarian step.
    """

    loss: Tensor
    num_matched: int
    pairs: list[list[tuple[int, int]]]


def boxes_from_masks(masks: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Tight boxes around binary masks, in pixel-edge coordinates.

    Args:
        masks: [..., H, W] masks (> threshold is foreground).
        threshold: foreground threshold.

    Returns:
        (boxes [..., 4] float32 (x1, y1, x2, y2) with x2 = last column + 1, so a one-pixel object at column x
        spans [x, x + 1]; empty masks get (0, 0, 1, 1)), nonempty [...] bool).
    """
    h, w = masks.shape[-2:]
    fg = masks > threshold
    rows = fg.any(dim=-1)  # [..., H]
    cols = fg.any(dim=-2)  # [..., W]
    nonempty = rows.any(dim=-1)  # [...]
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ar_h, h).amin(dim=-1)
    y2 = torch.where(rows, ar_h, -1).amax(dim=-1) + 1
    x1 = torch.where(cols, ar_w, w).amin(dim=-1)
    x2 = torch.where(cols, ar_w, -1).amax(dim=-1) + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=-1).float()  # [..., 4]
    empty_box = torch.tensor([0.0, 0.0, 1.0, 1.0], device=masks.device)
    boxes = torch.where(nonempty[..., None], boxes, empty_box)
    return boxes, nonempty


def random_subset(valid: Tensor, size: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Per row, a uniformly random subset of at most ``size`` of the True entries.

    Args:
        valid: [B, N] bool.
        size: maximum number kept per row.
        generator: randomness source.

    Returns:
        [B, N] bool, a subset of ``valid`` with min(size, valid.sum(1)) entries per row.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    scores = torch.rand(valid.shape, generator=generator, device=gen_device).to(valid.device)  # [B, N]
    scores = scores.masked_fill(~valid, 2.0)  # invalid entries rank last
    rank = scores.argsort(dim=1).argsort(dim=1)  # [B, N] rank of each entry in its row
    return valid & (rank < size)


def hungarian_match(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment (scipy ``linear_sum_assignment``; rectangular allowed): (rows, cols)."""
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def object_embeddings(
    res4: Tensor, boxes: Tensor, head: nn.Module, *, roi_size: int = 7, sampling_ratio: int = 2
) -> Tensor:
    """Eq. 8: o = AvgPool(PROJ(RoIAlign(res4, box))).

    Args:
        res4: [B, C, h, w] stride-16 features.
        boxes: [B, N, 4] boxes (x1, y1, x2, y2) in image pixels.
        head: PROJ, [K, C, s, s] -> [K, D, s, s].
        roi_size: RoIAlign output side s.
        sampling_ratio: RoIAlign samples per bin side (<= 0: adaptive).

    Returns:
        [B, N, D] embeddings (padding slots included; mask them afterwards).
    """
    b, n = boxes.shape[:2]
    bidx = torch.arange(b, device=boxes.device, dtype=boxes.dtype).repeat_interleave(n)  # [B*N]
    rois = torch.cat([bidx[:, None], boxes.reshape(b * n, 4)], dim=1)  # [B*N, 5]
    feats = roi_align(
        res4, rois, roi_size, spatial_scale=1.0 / FEATURE_STRIDE, sampling_ratio=sampling_ratio, aligned=True
    )  # [B*N, C, s, s]
    emb = head(feats).mean(dim=(2, 3))  # [B*N, D]
    return emb.view(b, n, emb.shape[1])  # [B, N, D]


def object_coherence_loss(
    res4_p: Tensor,
    res4_q: Tensor,
    masks_p: Tensor,
    masks_q: Tensor,
    head: nn.Module,
    *,
    selector: Tensor | None = None,
    num_objects: int = 3,
    roi_size: int = 7,
    sampling_ratio: int = 2,
    similarity: str = "cosine",
    temperature: float = 0.07,
    generator: torch.Generator | None = None,
) -> OCLResult:
    """L_OCL of Algorithm S2 (see the module docstring for the equations).

    Args:
        res4_p: [B, C, h, w] res4 features of frame p.
        res4_q: [B, C, h, w] res4 features of frame q.
        masks_p: [B, N, H, W] object masks of frame p (H = 16 h).
        masks_q: [B, N, H, W] object masks of frame q.
        head: PROJ.
        selector: [B, N] 1 for real object slots (None: all slots may hold objects).
        num_objects: N of Alg. S2, the size of the random subset of p objects.
        roi_size: RoIAlign output side.
        sampling_ratio: RoIAlign samples per bin side.
        similarity: "cosine" or "dot", the affinity of Eq. 11 (the matcher always uses cosine).
        temperature: divides the affinity of Eq. 11.
        generator: source of the random subsets.

    Returns:
        ``OCLResult``.
    """
    b, n = masks_p.shape[:2]
    boxes_p, valid_p = boxes_from_masks(masks_p)  # [B, N, 4], [B, N]
    boxes_q, valid_q = boxes_from_masks(masks_q)
    if selector is not None:
        real = selector.to(valid_p.device) > 0.5
        valid_p, valid_q = valid_p & real, valid_q & real
    # one RoIAlign + PROJ call for both frames: batch [p clips; q clips]
    feats = torch.cat([res4_p, res4_q], dim=0)  # [2B, C, h, w]
    boxes = torch.cat([boxes_p, boxes_q], dim=0)  # [2B, N, 4]
    emb = object_embeddings(feats, boxes, head, roi_size=roi_size, sampling_ratio=sampling_ratio).float()
    o_p, o_q = emb[:b], emb[b:]  # [B, N, D] each
    chosen_p = random_subset(valid_p, num_objects, generator=generator)  # [B, N]

    with torch.no_grad():
        cos = F.normalize(o_p, dim=2) @ F.normalize(o_q, dim=2).transpose(1, 2)  # [B, N, N]
        # one device -> host copy (a single sync) for everything the Hungarian step needs
        packed = torch.cat([cos.flatten(1), chosen_p.float(), valid_q.float()], dim=1).cpu().numpy()  # [B, N*N+2N]
    cos_np = packed[:, : n * n].reshape(b, n, n)
    chosen_np = packed[:, n * n : n * n + n] > 0.5
    valid_q_np = packed[:, n * n + n :] > 0.5

    rows: list[int] = []  # flat p index b * N + slot
    labels: list[int] = []  # flat q index b * N + slot: the per-clip offset is the number of q slots, N
    pairs: list[list[tuple[int, int]]] = []
    for bi in range(b):
        p_slots = np.flatnonzero(chosen_np[bi])
        q_slots = np.flatnonzero(valid_q_np[bi])
        clip_pairs: list[tuple[int, int]] = []
        if p_slots.size and q_slots.size:
            r, c = hungarian_match(-cos_np[bi][np.ix_(p_slots, q_slots)])
            for ri, ci in zip(r, c, strict=True):
                rows.append(bi * n + int(p_slots[ri]))
                labels.append(bi * n + int(q_slots[ci]))
                clip_pairs.append((int(p_slots[ri]), int(q_slots[ci])))
        pairs.append(clip_pairs)

    if not rows:
        return OCLResult(loss=emb.sum() * 0.0, num_matched=0, pairs=pairs)
    index = torch.tensor([rows, labels]).to(emb.device)  # [2, M]
    anchors = o_p.reshape(b * n, -1)[index[0]]  # [M, D]
    q_flat = o_q.reshape(b * n, -1)  # [B*N, D] clip-major q slots
    if similarity == "cosine":
        anchors, q_flat = F.normalize(anchors, dim=1), F.normalize(q_flat, dim=1)
    elif similarity != "dot":
        raise ValueError(f"object_coherence_loss: similarity must be 'cosine' or 'dot', got {similarity!r}")
    logits = anchors @ q_flat.t() / temperature  # [M, B*N]
    logits = logits.masked_fill(~valid_q.reshape(1, b * n), float("-inf"))  # empty q slots leave the softmax
    loss = F.cross_entropy(logits, index[1])
    return OCLResult(loss=loss, num_matched=len(rows), pairs=pairs)
