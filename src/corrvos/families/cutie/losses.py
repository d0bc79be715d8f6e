"""Cutie's segmentation loss (L_SEG of its training) as pure functions.

Re-expresses hkchengrex/Cutie:cutie/model/losses.py (``LossComputer``) and the point sampling of PointRend that it
uses (cutie/utils/point_features.py), written independently:

- per clip, over its own objects (background + the first ``num_objects`` slots), the logits of frames 1..T-1
  ([T-1, n+1, H, W]) are supervised at ``num_points`` points per frame: ``oversample_ratio * num_points`` uniform
  random points, of which the ``importance_sample_ratio`` fraction with the smallest margin between the two largest
  sampled logits is kept, plus uniform random points for the rest (coordinates in [0, 1]^2, bilinear sampling,
  ``align_corners=False``; the ground truth is the one-hot class map sampled at the same points);
- cross-entropy with the sampled (soft) labels, and a Dice of the softmax over the foreground channels with
  smoothing 1; both summed over the frames and averaged over points (CE) or objects (Dice), then averaged over the
  clips of the batch;
- the auxiliary heads (the sensory head and each level of the object transformer; ``ClipOutputs.aux_logits``, at
  stride 16) get the same two losses against the same full-resolution ground truth, each with its own point draw,
  weighted by ``sensory_weight`` / ``query_weight`` (0.01 each in the official model config).

Every random point comes from an explicit ``torch.Generator``, drawn in the official order (per clip: the main
logits, the sensory head, then the query levels; per call: the oversampled points, then the random ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PointLossConfig",
    "point_dice",
    "point_mask_loss",
    "point_sample",
    "point_uncertainty",
    "segmentation_terms",
    "uncertain_points",
]


@dataclass(frozen=True)
class PointLossConfig:
    """Options of Cutie's point-sampled loss (values of the official main-training stage).

    Attributes:
        num_points: points per frame (``train_num_points``: 12544 in main training, 8192 in the static stage).
        oversample_ratio: uniform candidates per point (3).
        importance_sample_ratio: fraction of the points chosen by uncertainty (0.75).
        sensory_weight: weight of the sensory head's CE and Dice (``aux_loss.sensory.weight`` 0.01).
        query_weight: weight of each object-transformer level's CE and Dice (``aux_loss.query.weight`` 0.01).
    """

    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    sensory_weight: float = 0.01
    query_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.oversample_ratio < 1:
            raise ValueError(f"oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ValueError(f"importance_sample_ratio must lie in [0, 1], got {self.importance_sample_ratio}")


def point_sample(x: Tensor, coords: Tensor) -> Tensor:
    """Bilinear samples of maps x [P, C, H, W] at coords [P, S, 2] ((x, y) in [0, 1]) -> [P, C, S]."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [P, S, 1, 2] in [-1, 1]
    return F.grid_sample(x, grid, align_corners=False).squeeze(3)  # [P, C, S, 1] -> [P, C, S]


def point_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty [P, 1, S] of sampled logits [P, C, S]: minus the gap between the two largest classes (minus
    ``|logit|`` of class 1 when there are two; of class 0 for a clip without objects, C = 1)."""
    if logits.shape[1] <= 2:
        return -logits[:, -1:].abs()
    top2 = logits.topk(2, dim=1).values  # [P, 2, S]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def uncertain_points(
    logits: Tensor,
    *,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None,
) -> Tensor:
    """PointRend's training points of logits [P, C, H, W]: [P, num_points, 2] coordinates in [0, 1]^2, the most
    uncertain of the oversampled candidates first, then uniform ones (see the module docstring)."""
    p = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(p, num_sampled, 2, generator=generator, device=logits.device)  # [P, S', 2]
    uncertainty = point_uncertainty(point_sample(logits, candidates))  # [P, 1, S']
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty[:, 0].topk(num_uncertain, dim=1).indices  # [P, k]
    coords = candidates.gather(1, idx.unsqueeze(2).expand(-1, -1, 2))  # [P, k, 2]
    if num_points > num_uncertain:
        extra = torch.rand(p, num_points - num_uncertain, 2, generator=generator, device=logits.device)
        coords = torch.cat([coords, extra], dim=1)  # [P, num_points, 2]
    return coords


def point_dice(prob: Tensor, labels: Tensor) -> Tensor:
    """Dice loss of the foreground channels of prob / labels [T, C, S] (smoothing 1), summed over T, mean over
    objects."""
    prob, labels = prob[:, 1:], labels[:, 1:].float()  # [T, C-1, S]
    inter = 2 * (prob * labels).sum(-1)  # [T, C-1]
    total = prob.sum(-1) + labels.sum(-1)
    return (1 - (inter + 1) / (total + 1)).sum(0).mean()


def point_mask_loss(
    logits: Tensor, soft_gt: Tensor, cfg: PointLossConfig, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """(CE, Dice) of aggregated logits [T, C, H, W] against one-hot targets [T, C, H', W'] at the uncertain points.

    CE: per point, summed over T, mean over points; Dice: :func:`point_dice` of the softmax (0 for a clip without
    objects, C = 1, whose Dice would average over nothing).
    """
    with torch.no_grad():
        coords = uncertain_points(
            logits,
            num_points=cfg.num_points,
            oversample_ratio=cfg.oversample_ratio,
            importance_sample_ratio=cfg.importance_sample_ratio,
            generator=generator,
        )  # [T, S, 2]
        labels = point_sample(soft_gt, coords)  # [T, C, S]
    sampled = point_sample(logits, coords)  # [T, C, S]
    ce = F.cross_entropy(sampled, labels, reduction="none").sum(0).mean()
    if logits.shape[1] < 2:
        return ce, (sampled * 0).sum()  # no foreground channel; keeps the graph
    return ce, point_dice(sampled.softmax(dim=1), labels)


def segmentation_terms(
    logits: Tensor,
    aux_logits: Tensor | None,
    labels: Tensor,
    num_objects: list[int],
    cfg: PointLossConfig,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Cutie's loss terms, weighted and averaged over the clips, named as the official ``LossComputer``'s.

    Args:
        logits: [B, T-1, N+1, H, W] aggregated logits of frames 1..T-1.
        aux_logits: [B, T-1, 1+L, N+1, h, w] the sensory head, then the L object-transformer levels; or ``None``.
        labels: [B, T-1, H, W] int64 class maps of frames 1..T-1 (0 background, k <= num_objects[b]).
        num_objects: the real objects of each clip (its first slots).
        cfg: the point sampling and the auxiliary weights.
        generator: the points' RNG (on the logits' device).

    Returns:
        ``{"ce", "dice", "aux_sensory_ce", "aux_sensory_dice", "aux_query_ce_l0", "aux_query_dice_l0", ...}``
        (the auxiliary ones already multiplied by their weights); their sum is L_SEG.
    """
    b = logits.shape[0]
    terms: dict[str, Tensor] = {}

    def add(name: str, value: Tensor) -> None:
        terms[name] = terms[name] + value if name in terms else value

    for bi in range(b):
        n = num_objects[bi]
        if int(labels[bi].max()) > n:
            raise ValueError(f"clip {bi}: class map has label {int(labels[bi].max())} but only {n} objects")
        soft_gt = F.one_hot(labels[bi], n + 1).permute(0, 3, 1, 2).float()  # [T-1, n+1, H, W]
        ce, dice = point_mask_loss(logits[bi, :, : n + 1], soft_gt, cfg, generator)
        add("ce", ce / b)
        add("dice", dice / b)
        if aux_logits is None:
            continue
        heads = aux_logits[bi, :, :, : n + 1]  # [T-1, 1+L, n+1, h, w]
        ce, dice = point_mask_loss(heads[:, 0], soft_gt, cfg, generator)
        add("aux_sensory_ce", ce / b * cfg.sensory_weight)
        add("aux_sensory_dice", dice / b * cfg.sensory_weight)
        for level in range(heads.shape[1] - 1):
            ce, dice = point_mask_loss(heads[:, level + 1], soft_gt, cfg, generator)
            add(f"aux_query_ce_l{level}", ce / b * cfg.query_weight)
            add(f"aux_query_dice_l{level}", dice / b * cfg.query_weight)
    return terms
