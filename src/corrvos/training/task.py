"""The training task: clip unroller + objective -> ``dict(loss, terms, outputs)``; no optimiser, no side effects.

``CorrespondenceTask.step(batch, step=..., seed=...)`` runs the (possibly DDP-wrapped) :class:`ClipUnroller`
under autocast, then ``corrvos.losses.objective.compute_losses`` in float32. Every random draw of the step (the
second view; XMem's reference frames and deep updates; the losses' grid offsets and object subsets) comes from
three generators seeded from ``seed``, so a step is a pure function of (weights, batch, step, seed).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from corrvos.losses.config import LossConfig
from corrvos.types import ClipBatch

__all__ = ["CorrespondenceTask", "clip_iou", "step_scalars"]


class CorrespondenceTask:
    """Segmentation + correspondence objective over unrolled clips.

    Args:
        unroller: the :class:`~corrvos.training.unroll.ClipUnroller` (or a family's own unroller), or a
            ``DistributedDataParallel`` wrapping one.
        loss_cfg: the stage's loss configuration.
        proj_head: the PROJ head of L_OCL (paper mode) or None; kept outside DDP (see ``unroll.py``).
        amp_dtype: autocast dtype (``torch.bfloat16`` / ``torch.float16``) or None for full precision.
        segmentation: the model family's own L_SEG (``Family.segmentation_loss``), or None for the shared one.
    """

    def __init__(
        self,
        unroller: nn.Module,
        loss_cfg: LossConfig,
        *,
        proj_head: nn.Module | None = None,
        amp_dtype: torch.dtype | None = None,
        segmentation: Callable[..., dict[str, Tensor]] | None = None,
    ) -> None:
        self.unroller = unroller
        self.segmentation = segmentation
        self.loss_cfg = loss_cfg
        self.proj_head = proj_head
        self.amp_dtype = amp_dtype

    @property
    def core(self) -> nn.Module:
        """The unwrapped unroller (inside DDP when distributed)."""
        return getattr(self.unroller, "module", self.unroller)

    def step(self, batch: ClipBatch, *, step: int, seed: int) -> dict[str, Any]:
        """Forward one batch and compute the losses.

        Args:
            batch: a ClipBatch on the training device.
            step: the step within the stage (drives the loss ramps and the bootstrapping schedule).
            seed: seed of this step's random draws.

        Returns:
            ``{"loss": scalar Tensor, "terms": dict[str, Tensor] (unweighted), "weights": dict[str, float] (at this
            step, ramps included), "stats": dict[str, float], "outputs": ClipOutputs}``.
        """
        from corrvos.losses.objective import compute_losses

        device = batch.frames.device
        core = self.core
        view_gen = torch.Generator(device=device)
        view_gen.manual_seed(seed)
        core.view_generator = view_gen
        clip_gen = torch.Generator()  # CPU: reference frames and deep-update draws (a few numbers per clip)
        clip_gen.manual_seed(seed ^ 0x2545F491)
        core.clip_generator = clip_gen
        loss_gen = torch.Generator(device=device)
        loss_gen.manual_seed(seed ^ 0x5DEECE66D)
        autocast = (
            torch.autocast(device_type=device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        with autocast:
            outputs = self.unroller(batch)
        outputs = _to_float(outputs)
        result = compute_losses(
            outputs,
            batch,
            cfg=self.loss_cfg,
            step=step,
            proj_head=self.proj_head,
            generator=loss_gen,
            segmentation=self.segmentation,
        )
        return {
            "loss": result.total,
            "terms": dict(result.terms),
            "weights": dict(result.weights),
            "stats": dict(result.stats),
            "outputs": outputs,
        }


def _to_float(outputs: Any) -> Any:
    """Cast the half-precision tensors of a ClipOutputs to float32 (losses run in full precision)."""
    from dataclasses import fields, replace

    changes = {}
    for f in fields(outputs):
        value = getattr(outputs, f.name)
        if isinstance(value, Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            changes[f.name] = value.float()
    return replace(outputs, **changes) if changes else outputs


@torch.no_grad()
def clip_iou(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean foreground IoU of the predicted frames (the training "IoU" scalar).

    Args:
        logits: [B, T-1, N+1, H, W] aggregated logits of frames 1..T-1.
        labels: [B, T, H, W] ground-truth class maps (0 background).

    Returns:
        Scalar: intersection over union of "any object" pixels, pooled over the batch (1 when both are empty).
    """
    pred = logits.argmax(dim=2) > 0  # [B, T-1, H, W]
    gt = labels[:, 1:] > 0  # [B, T-1, H, W]
    inter = (pred & gt).sum()
    union = (pred | gt).sum()
    if union == 0:
        return torch.ones((), device=logits.device)
    return inter.float() / union.float()


def step_scalars(result: dict[str, Any], batch: ClipBatch, finite: bool) -> dict[str, float]:
    """The scalars one :meth:`CorrespondenceTask.step` result logs: loss, terms, weights, stats and training IoU.

    The IoU is over labeled clips only (unlabeled clips have no ground truth); a non-finite step logs only
    ``nonfinite`` and the IoU, so that its loss does not poison the interval means.
    """
    logits, labels = result["outputs"].logits, batch.labels
    if batch.labeled is not None:
        logits, labels = logits[batch.labeled], labels[batch.labeled]
    scalars = {"nonfinite": 0.0 if finite else 1.0, "iou": float(clip_iou(logits, labels))}
    if finite:
        scalars["loss"] = float(result["loss"].detach())
        for name, value in result["terms"].items():
            scalars[f"terms/{name}"] = float(value.detach() if isinstance(value, torch.Tensor) else value)
        scalars.update({f"weights/{k}": float(v) for k, v in result.get("weights", {}).items()})
        scalars.update({f"stats/{k}": float(v) for k, v in result.get("stats", {}).items()})
    return scalars
