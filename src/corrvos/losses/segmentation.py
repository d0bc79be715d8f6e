"""L_SEG: STCN's bootstrapped cross-entropy with its warm-up schedule, plus the Dice term of the release or XMem.

Re-expresses hkchengrex/STCN:model/losses.py (``BootstrappedCE``, ``LossComputer.compute``), the Dice term of
wenguanwang/VOS_Correspondence:model/losses.py and XMem's loss (hkchengrex/XMem:model/losses.py, the same
bootstrapped CE plus its own Dice), vectorised over clips and frames.

For clip b and predicted frame t (1..T-1) with per-pixel cross-entropy e_i over the classes present in the clip
(background plus the object slots whose selector is 1; absent slots are removed from the softmax, as STCN does
by slicing ``logits[:, :2]`` when there is no second object; a class that occurs in the labels is always kept):

    bce(b, t) = mean of the k = int(H W p(step)) largest e_i,
    p(step)   = 1                                            for step <  start   (plain CE)
              = top_p + (1 - top_p) (end - step) / (end - start)   for start <= step <= end
              = top_p                                        for step >  end
    dice(b, t) = mean over present classes c of 1 - (2 sum_i s_ic y_ic + smooth) / (sum_i (s_ic + y_ic) + smooth + 1e-8)
    L_SEG = sum_t mean_b [ bce(b, t) + dice_weight * dice(b, t) ]

with s = softmax over the present classes and y the one-hot labels. This equals the per-sample loop of the
released code (sum over frames, mean over the batch).

XMem's Dice (``dice_mode="objects"``, :func:`object_dice_loss`) differs: it uses the object channels only (no
background), the softmax over all N+1 channels (absent slots hold the clamped aggregation's tiny probability),
smoothing 1 without epsilon, and the mean over all N slots, absent ones included (their term is ~0):

    dice_obj(b, t) = mean over k = 1..N of 1 - (2 sum_i s_ik y_ik + 1) / (sum_i s_ik + sum_i y_ik + 1)

XMem weights it 1 and sums it over frames with the CE: L_SEG = sum_t mean_b [ bce(b, t) + dice_obj(b, t) ].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bootstrap_fraction", "bootstrapped_ce", "class_mask", "dice_loss", "object_dice_loss", "segmentation_loss"]


def bootstrap_fraction(step: int, *, start: int, end: int, top_p: float) -> float:
    """Fraction p of hardest pixels kept by the bootstrapped CE at ``step`` (1.0 = plain CE)."""
    if step < start:
        return 1.0
    if step > end or end == start:
        return top_p
    return top_p + (1.0 - top_p) * ((end - step) / (end - start))


def class_mask(selector: Tensor | None, labels: Tensor, num_classes: int) -> Tensor:
    """Which classes each clip uses: background, slot k when ``selector[:, k-1] > 0.5``, and any class that
    occurs in the clip's labels (so a label is never left outside the softmax).

    Args:
        selector: [B, N] or None (every slot present).
        labels: [B, ...] int64 class maps.
        num_classes: N + 1.

    Returns:
        [B, N+1] bool.
    """
    b, device = labels.shape[0], labels.device
    if selector is None:
        return torch.ones(b, num_classes, dtype=torch.bool, device=device)
    bg = torch.ones(b, 1, dtype=torch.bool, device=device)
    present = torch.cat([bg, selector.to(device) > 0.5], dim=1)  # [B, N+1]
    seen = torch.zeros(b, num_classes, device=device).scatter_(1, labels.reshape(b, -1), 1.0) > 0  # [B, N+1]
    return present | seen


def _masked_logits(logits: Tensor, present: Tensor) -> Tensor:
    """Set the logits of absent classes to -inf so they drop out of the softmax. [B, T, C, H, W]."""
    keep = present[:, None, :, None, None]  # [B, 1, C, 1, 1]
    return logits.float().masked_fill(~keep, float("-inf"))


def bootstrapped_ce(logits: Tensor, labels: Tensor, *, fraction: float, present: Tensor | None = None) -> Tensor:
    """Per clip and frame: mean of the ``int(H*W*fraction)`` largest pixel cross-entropies.

    Args:
        logits: [B, T', C, H, W] class logits (background first).
        labels: [B, T', H, W] int64 in [0, C).
        fraction: p in (0, 1]; 1 gives the plain mean cross-entropy.
        present: [B, C] bool mask of the classes in each clip's softmax (None: all).

    Returns:
        [B, T'] loss per clip and frame.
    """
    b, t, _, h, w = logits.shape
    if present is not None:
        logits = _masked_logits(logits, present)
    raw = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1), reduction="none")  # [B*T', H, W]
    raw = raw.view(b, t, h * w)  # [B, T', HW]
    if fraction >= 1.0:
        return raw.mean(dim=2)
    k = max(int(h * w * fraction), 1)
    top, _ = torch.topk(raw, k, dim=2, sorted=False)  # [B, T', k]
    return top.mean(dim=2)


def dice_loss(
    logits: Tensor, labels: Tensor, *, present: Tensor | None = None, smooth: float = 1.0, eps: float = 1e-8
) -> Tensor:
    """Soft multi-class Dice loss over the present classes, per clip and frame.

    Args:
        logits: [B, T', C, H, W] class logits (background first).
        labels: [B, T', H, W] int64 in [0, C).
        present: [B, C] bool mask of the classes in each clip (None: all).
        smooth: additive smoothing of numerator and denominator.
        eps: added to the denominator only (as in the release).

    Returns:
        [B, T'] loss per clip and frame (mean over the present classes).
    """
    b, c = logits.shape[0], logits.shape[2]
    if present is None:
        present = torch.ones(b, c, dtype=torch.bool, device=logits.device)
    prob = _masked_logits(logits, present).softmax(dim=2).flatten(3)  # [B, T', C, HW]
    onehot = F.one_hot(labels.flatten(2), c).permute(0, 1, 3, 2).to(prob.dtype)  # [B, T', C, HW]
    inter = (prob * onehot).sum(dim=3)  # [B, T', C]
    card = (prob + onehot).sum(dim=3)  # [B, T', C]
    per_class = 1.0 - (2.0 * inter + smooth) / (card + smooth + eps)  # [B, T', C]
    weights = present[:, None, :].to(prob.dtype)  # [B, 1, C]
    return (per_class * weights).sum(dim=2) / weights.sum(dim=2)


def object_dice_loss(logits: Tensor, labels: Tensor, *, smooth: float = 1.0) -> Tensor:
    """XMem's Dice loss on the object channels, per clip and frame (see the module docstring).

    Args:
        logits: [B, T', N+1, H, W] aggregated logits (background first).
        labels: [B, T', H, W] int64 in [0, N].
        smooth: added to numerator and denominator (XMem: 1).

    Returns:
        [B, T'] mean over the N object slots.
    """
    c = logits.shape[2]
    prob = logits.float().softmax(dim=2)[:, :, 1:].flatten(3)  # [B, T', N, HW]
    onehot = F.one_hot(labels.flatten(2), c)[..., 1:].permute(0, 1, 3, 2).to(prob.dtype)  # [B, T', N, HW]
    numerator = 2.0 * (prob * onehot).sum(dim=3)  # [B, T', N]
    denominator = prob.sum(dim=3) + onehot.sum(dim=3)  # [B, T', N]
    return (1.0 - (numerator + smooth) / (denominator + smooth)).mean(dim=2)


def segmentation_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    step: int,
    selector: Tensor | None = None,
    bootstrap_start: int = 20_000,
    bootstrap_end: int = 70_000,
    top_p: float = 0.15,
    dice_weight: float = 0.0,
    dice_smooth: float = 1.0,
    dice_mode: str = "release",
    parts: dict[str, Tensor] | None = None,
) -> tuple[Tensor, float]:
    """L_SEG = sum over frames of the batch mean of bootstrapped CE (+ dice_weight * Dice).

    Args:
        logits: [B, T-1, N+1, H, W] aggregated logits of frames 1..T-1 (``ClipOutputs.logits``).
        labels: [B, T-1, H, W] int64 class maps of the same frames (``ClipBatch.labels[:, 1:]``).
        step: training step of the stage (drives the bootstrap schedule).
        selector: [B, N] 1 for real object slots (absent slots leave the softmax); None: all present.
        bootstrap_start, bootstrap_end, top_p: the schedule of ``bootstrap_fraction``.
        dice_weight: weight of the Dice term (0 disables it).
        dice_smooth: Dice smoothing.
        dice_mode: "release" (:func:`dice_loss`) or "objects" (XMem's, :func:`object_dice_loss`).
        parts: when given, receives the unweighted "ce" and "dice" sums over frames (batch means), detached.

    Returns:
        (scalar loss, the fraction p used at this step).
    """
    if logits.dim() != 5 or labels.shape != (logits.shape[0], logits.shape[1], *logits.shape[3:]):
        raise ValueError(
            f"segmentation_loss: logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
            "must be [B, T', C, H, W] and [B, T', H, W]"
        )
    frac = bootstrap_fraction(step, start=bootstrap_start, end=bootstrap_end, top_p=top_p)
    present = class_mask(selector, labels, logits.shape[2])
    per = bootstrapped_ce(logits, labels, fraction=frac, present=present)  # [B, T']
    if parts is not None:
        parts["ce"] = per.detach().mean(dim=0).sum()
    if dice_weight > 0:
        if dice_mode == "objects":
            dice = object_dice_loss(logits, labels, smooth=dice_smooth)  # [B, T']
        elif dice_mode == "release":
            dice = dice_loss(logits, labels, present=present, smooth=dice_smooth)  # [B, T']
        else:
            raise ValueError(f"segmentation_loss: unknown dice_mode {dice_mode!r}")
        if parts is not None:
            parts["dice"] = dice.detach().mean(dim=0).sum()
        per = per + dice_weight * dice
    return per.mean(dim=0).sum(), frac
