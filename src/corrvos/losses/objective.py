"""The total training loss: weighted sum of named terms with linear warm-up ramps.

    "none":     L = w_seg L_SEG
    "paper":    L = w_seg L_SEG + alpha f_pcl(step) L_PCL + beta f_ocl(step) L_OCL           (Eq. 12)
    "official": L = w_seg L_SEG + 0.20 f(step) temp + 0.04 f(step) cross_key  (wenguanwang/VOS_Correspondence)

with the ramp f(step) = 0 before ``start``, (step - start) / (end - start) up to ``end``, then 1 (the release's
30K -> 90K). Every enabled term is computed at every step, even while its ramp is still 0, so that all trainable
parameters (the PROJ head, ``key_proj2``) take part in every backward pass (DDP needs this) and the curves can be
logged. In "paper" mode a term whose configured weight (alpha or beta) is 0 is switched off entirely.

Unlabeled clips (``ClipBatch.labeled`` False: clips of unlabeled videos) take part only in the label-free terms
(L_PCL; temp and cross_key): L_SEG and L_OCL are computed on the labeled clips alone. L_OCL needs object boxes,
which an unlabeled clip does not have; boxes from the model's own predictions would turn it into self-training
on pseudo-labels, a different method from the paper's, so corrvos does not do it.

Term names: "seg", "pcl", "ocl", "temp", "cross_key". ``LossOutput.terms`` holds the unweighted terms,
``LossOutput.weights`` the weights applied at this step. This module imports no training code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from corrvos.losses.config import LossConfig
from corrvos.losses.object_coherence import object_coherence_loss
from corrvos.losses.official import cross_key_loss, temp_loss
from corrvos.losses.pixel_consistency import pixel_consistency_loss
from corrvos.losses.segmentation import segmentation_loss
from corrvos.types import ClipBatch, ClipOutputs

__all__ = ["LossOutput", "compute_losses", "linear_ramp"]

_logger = logging.getLogger(__name__)


@dataclass
class LossOutput:
    """What ``compute_losses`` returns.

    Attributes:
        total: scalar to back-propagate, sum of weights[name] * terms[name].
        terms: unweighted scalar terms by name ("seg", "pcl", "ocl", "temp", "cross_key").
        weights: weight applied to each term at this step (ramps included).
        stats: extra numbers for logging ("bootstrap_p": fraction of pixels kept by L_SEG; "seg_ce" / "seg_dice":
            its unweighted CE and Dice parts; "ocl_matched": number of Hungarian pairs in L_OCL).
    """

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


def linear_ramp(step: int, *, start: int, end: int) -> float:
    """0 before ``start``, linear up to 1 at ``end``, then 1 (``end == start``: a step at ``start``)."""
    if step < start:
        return 0.0
    if step >= end:
        return 1.0
    return (step - start) / (end - start)


def _frame(index: int, num_frames: int, name: str) -> int:
    if not -num_frames <= index < num_frames:
        raise ValueError(f"loss.{name} = {index} is outside a clip of {num_frames} frames")
    return index % num_frames


def _paper_terms(
    outputs: ClipOutputs,
    batch: ClipBatch,
    cfg: LossConfig,
    step: int,
    proj_head: nn.Module | None,
    generator: torch.Generator | None,
    out: LossOutput,
) -> None:
    t = outputs.keys.shape[1]
    if cfg.pcl_weight > 0:
        _pcl_term(outputs, cfg, step, t, generator, out)
    if cfg.ocl_weight > 0:
        _ocl_term(outputs, batch, cfg, step, t, proj_head, generator, out)


def _pcl_term(
    outputs: ClipOutputs, cfg: LossConfig, step: int, t: int, generator: torch.Generator | None, out: LossOutput
) -> None:
    r = _frame(cfg.pcl_remote_frame, t, "pcl_remote_frame")
    t1 = _frame(cfg.pcl_frame_t1, t, "pcl_frame_t1")
    t2 = _frame(cfg.pcl_frame_t2, t, "pcl_frame_t2")
    keys, shrink, sel = outputs.keys, outputs.shrinkage, outputs.selection  # [B, T, C, h, w]; C = 1 for shrinkage
    out.terms["pcl"] = pixel_consistency_loss(
        keys[:, t1],
        keys[:, t2],
        keys[:, r],
        stride=cfg.pcl_grid_stride,
        temperature=cfg.pcl_temperature,
        label_within_clip=cfg.pcl_label_within_clip,
        generator=generator,
        shrinkage_r=None if shrink is None else shrink[:, r],
        selection_t1=None if sel is None else sel[:, t1],
        selection_t2=None if sel is None else sel[:, t2],
    )
    out.weights["pcl"] = cfg.pcl_weight * linear_ramp(step, start=cfg.pcl_ramp_start, end=cfg.pcl_ramp_end)


def _ocl_term(
    outputs: ClipOutputs,
    batch: ClipBatch,
    cfg: LossConfig,
    step: int,
    t: int,
    proj_head: nn.Module | None,
    generator: torch.Generator | None,
    out: LossOutput,
) -> None:
    if proj_head is None:
        raise ValueError("compute_losses: loss.mode 'paper' with ocl_weight > 0 needs proj_head (a ProjectionHead)")
    p = _frame(cfg.ocl_frame_p, t, "ocl_frame_p")
    q = _frame(cfg.ocl_frame_q, t, "ocl_frame_q")
    labeled = _labeled_index(batch)  # L_OCL needs the objects' boxes: labeled clips only
    res4 = outputs.res4 if labeled is None else outputs.res4[labeled]  # [B_l, T, C16, h, w]
    masks = batch.masks if labeled is None else batch.masks[labeled]  # [B_l, T, N, H, W]
    selector = batch.selector if labeled is None else batch.selector[labeled]  # [B_l, N]
    ocl = object_coherence_loss(
        res4[:, p],
        res4[:, q],
        masks[:, p],
        masks[:, q],
        proj_head,
        selector=selector,
        num_objects=cfg.ocl_num_objects,
        roi_size=cfg.ocl_roi_size,
        sampling_ratio=cfg.ocl_sampling_ratio,
        similarity=cfg.ocl_similarity,
        temperature=cfg.ocl_temperature,
        generator=generator,
    )
    out.terms["ocl"] = ocl.loss
    out.weights["ocl"] = cfg.ocl_weight * linear_ramp(step, start=cfg.ocl_ramp_start, end=cfg.ocl_ramp_end)
    out.stats["ocl_matched"] = float(ocl.num_matched)


def _official_terms(
    outputs: ClipOutputs, cfg: LossConfig, step: int, generator: torch.Generator | None, out: LossOutput
) -> None:
    if outputs.view2_keys2 is None or outputs.view2_theta is None:
        raise ValueError(
            "compute_losses: loss.mode 'official' needs ClipOutputs.view2_keys2 and view2_theta "
            "(the clip unroller must run the second view, see corrvos.losses.views.make_second_view)"
        )
    keys_v1 = outputs.keys2 if outputs.keys2 is not None else outputs.keys  # [B, T, CK, h, w]
    keys_v2 = outputs.view2_keys2  # [B, T, CK, h, w]
    theta = outputs.view2_theta  # [B, 2, 3]
    ramp = linear_ramp(step, start=cfg.official_ramp_start, end=cfg.official_ramp_end)
    # the release draws the temp grid first, then the cross_key grid
    out.terms["temp"] = temp_loss(
        keys_v1, keys_v2, theta, grid=cfg.temp_grid, eps=cfg.official_log_eps, generator=generator
    )
    out.terms["cross_key"] = cross_key_loss(
        keys_v1[:, 0], keys_v2[:, 0], theta, grid=cfg.cross_key_grid, eps=cfg.official_log_eps, generator=generator
    )
    out.weights["temp"] = cfg.temp_weight * ramp
    out.weights["cross_key"] = cfg.cross_key_weight * ramp


def _labeled_index(batch: ClipBatch) -> Tensor | None:
    """Indices [B_l] of the labeled clips, or None when every clip is labeled."""
    if batch.labeled is None or bool(batch.labeled.all()):
        return None
    if not bool(batch.labeled.any()):
        raise ValueError("compute_losses: a batch needs at least one labeled clip (L_SEG)")
    return batch.labeled.nonzero().squeeze(1).to(batch.labels.device)


def compute_losses(
    outputs: ClipOutputs,
    batch: ClipBatch,
    *,
    cfg: LossConfig,
    step: int,
    proj_head: nn.Module | None = None,
    generator: torch.Generator | None = None,
    segmentation: Callable[..., dict[str, Tensor]] | None = None,
) -> LossOutput:
    """All training losses of one step, weighted and summed (see the module docstring).

    Args:
        outputs: the clip unroller's ``ClipOutputs`` (logits [B, T-1, N+1, H, W], keys / res4 [B, T, ., h, w],
            and for "official" mode keys2 / view2_keys2 [B, T, CK, h, w] and view2_theta [B, 2, 3]).
        batch: the ``ClipBatch`` (labels [B, T, H, W], masks [B, T, N, H, W], selector [B, N]; ``labeled`` [B]
            marks the clips L_SEG and L_OCL use).
        cfg: the loss configuration.
        step: training step of the current stage (drives the bootstrap schedule and the ramps).
        proj_head: PROJ of Alg. S2 (``corrvos.models.heads.ProjectionHead``); needed in "paper" mode with L_OCL.
        generator: the only randomness source (grid offsets, object subsets; a family L_SEG's point draws, first).
        segmentation: a family's own L_SEG (``Family.segmentation_loss``): ``fn(logits, aux_logits, labels,
            selector, cfg, generator)`` -> weighted parts whose sum is the "seg" term (each logged as the stat
            ``seg_<part>``); ``None``: the shared bootstrapped CE (+ Dice).

    Returns:
        ``LossOutput``.
    """
    parts: dict[str, Tensor] = {}
    labeled = _labeled_index(batch)  # L_SEG: labeled clips only
    logits = outputs.logits if labeled is None else outputs.logits[labeled]  # [B_l, T-1, N+1, H, W]
    labels = batch.labels if labeled is None else batch.labels[labeled]  # [B_l, T, H, W]
    selector = batch.selector if labeled is None else batch.selector[labeled]  # [B_l, N]
    if segmentation is not None:
        aux = outputs.aux_logits
        aux = aux if aux is None or labeled is None else aux[labeled]  # [B_l, T-1, A, N+1, h, w]
        parts = segmentation(logits, aux, labels[:, 1:], selector, cfg, generator)
        seg = torch.stack(list(parts.values())).sum()
        stats = {f"seg_{k}": float(v.detach()) for k, v in parts.items()}
        out = LossOutput(total=seg, terms={"seg": seg}, weights={"seg": cfg.seg_weight}, stats=stats)
        return _finish(outputs, batch, cfg, step, proj_head, generator, out)
    seg, frac = segmentation_loss(
        logits,
        labels[:, 1:],
        step=step,
        selector=selector,
        bootstrap_start=cfg.bootstrap_start,
        bootstrap_end=cfg.bootstrap_end,
        top_p=cfg.bootstrap_top_p,
        dice_weight=cfg.dice_weight,
        dice_smooth=cfg.dice_smooth,
        dice_mode=cfg.dice_mode,
        parts=parts,
    )
    stats = {"bootstrap_p": frac, **{f"seg_{k}": float(v) for k, v in parts.items()}}
    out = LossOutput(total=seg, terms={"seg": seg}, weights={"seg": cfg.seg_weight}, stats=stats)
    return _finish(outputs, batch, cfg, step, proj_head, generator, out)


def _finish(
    outputs: ClipOutputs,
    batch: ClipBatch,
    cfg: LossConfig,
    step: int,
    proj_head: nn.Module | None,
    generator: torch.Generator | None,
    out: LossOutput,
) -> LossOutput:
    """Add the correspondence terms of ``cfg.mode`` to ``out`` (which holds L_SEG) and sum the weighted total."""
    if cfg.mode == "paper":
        _paper_terms(outputs, batch, cfg, step, proj_head, generator, out)
    elif cfg.mode == "official":
        _official_terms(outputs, cfg, step, generator, out)
    total = out.terms["seg"].new_zeros(())
    for name, term in out.terms.items():
        total = total + out.weights[name] * term
    out.total = total
    return out
