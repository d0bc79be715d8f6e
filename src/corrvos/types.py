"""Typed containers passed between the data pipeline, the models, the clip unroller and the losses.

Shape legend (used in every docstring and reshape comment of the package):
B batch, T time (frames of a clip or memory), N objects, C channels (CK key = 64, CV value = 512; C16 / C8 / C4
the key encoder's channels at strides 16 / 8 / 4), H x W image size, h x w feature size at stride 16 (h = H / 16),
HW / hw flattened. Channel numbers are those of the official networks; corrvos's small variants
(``key_encoder="resnet18"``, ``width`` < 64; see :mod:`corrvos.models.backbones`) have fewer, and expose them as
the model attributes ``key_dim``, ``value_dim``, ``hidden_dim`` and ``f16_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

__all__ = ["ClipBatch", "ClipDraws", "ClipOutputs", "QueryFeatures", "SegmentOutput", "draw_deep_update"]


def _to(obj, device: torch.device | str, non_blocking: bool = False):
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = value.to(device, non_blocking=non_blocking)
    return replace(obj, **changes)


@dataclass
class QueryFeatures:
    """What ``encode_key`` returns for a batch of frames.

    Attributes:
        key: [B, CK, h, w] matching key (``key_proj``), the features the memory read compares.
        f16: [B, C16, h, w] ResNet-50 layer3 ("res4") features at stride 16 (C16 = 1024; ``model.f16_dim``).
        f8: [B, C8, 2h, 2w] layer2 features at stride 8 (decoder skip; C8 = 512).
        f4: [B, C4, 4h, 4w] layer1 ("res2") features at stride 4 (decoder skip; C4 = 256).
        f16_thin: [B, 512, h, w] ``key_comp`` output concatenated with the readout (public STCN); ``None``
            for the VOS_Correspondence fused-decoder variant, whose decoder takes f16 directly.
        key2: [B, CK, h, w] the auxiliary ``key_proj2`` head of the VOS_Correspondence variant (used only by
            the "official" correspondence losses); ``None`` when the model has no such head.
        shrinkage: [B, 1, h, w] XMem's shrinkage s >= 1 of each position as a *memory* key (``d_proj``; scales
            the similarity of every query to this position); ``None`` for STCN or when not requested.
        selection: [B, CK, h, w] XMem's selection e in [0, 1] of each position as a *query* key (``e_proj``;
            weights the key channels); ``None`` for STCN or when not requested.
        pix_feat: [B, C, h, w] Cutie's projected pixel feature (``pix_feat_proj`` of f16); ``None`` for the others.
    """

    key: Tensor
    f16: Tensor
    f8: Tensor
    f4: Tensor
    f16_thin: Tensor | None = None
    key2: Tensor | None = None
    shrinkage: Tensor | None = None
    selection: Tensor | None = None
    pix_feat: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> QueryFeatures:
        return _to(self, device, non_blocking)


@dataclass
class SegmentOutput:
    """What ``segment`` returns for a batch of query frames.

    Attributes:
        logits: [B, N+1, H, W] soft-aggregated logits, background first.
        prob: [B, N+1, H, W] ``softmax(logits, dim=1)``.
        hidden: [B, N, CH, h, w] the updated hidden (sensory) state of models that keep one (XMem), when the
            update was asked for; ``None`` otherwise (STCN, or ``update_hidden=False``).
    """

    logits: Tensor
    prob: Tensor
    hidden: Tensor | None = None


@dataclass
class ClipBatch:
    """A batch of training clips.

    Attributes:
        frames: [B, T, 3, H, W] float32 images, ImageNet-normalised.
        masks: [B, T, N, H, W] float32 {0, 1} masks of the N object slots (all-zero for unused slots).
        labels: [B, T, H, W] int64 class map: 0 background, k in 1..N for slot k.
        selector: [B, N] float32, 1 for slots that hold a real object, 0 for padding.
        names: the clip names (sequence ids), length B.
        labeled: [B] bool, False for clips of unlabeled videos (no masks: only the label-free losses use them);
            ``None`` means every clip is labeled.
    """

    frames: Tensor
    masks: Tensor
    labels: Tensor
    selector: Tensor
    names: list[str] = field(default_factory=list)
    labeled: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[2]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ClipBatch:
        return _to(self, device, non_blocking)


@dataclass
class ClipOutputs:
    """What the clip unroller returns: everything the losses and the training hooks need.

    Attributes:
        logits: [B, T-1, N+1, H, W] aggregated logits (background first) of frames 1..T-1.
        keys: [B, T, CK, h, w] matching keys of all T frames (the features L_PCL trains).
        res4: [B, T, C16, h, w] key-encoder stride-16 features of all frames (RoIAlign input of L_OCL).
        shrinkage: [B, T, 1, h, w] XMem shrinkage of every frame (the memory side of the model's similarity), or
            ``None`` for models without it (STCN).
        selection: [B, T, CK, h, w] XMem selection of every frame (the query side), or ``None``.
        keys2: [B, T, CK, h, w] auxiliary ``key_proj2`` keys, or ``None`` when the model has no such head.
        view2_keys2: [B, T, CK, h, w] ``key_proj2`` keys of the second (flipped / zoom-cropped) view, used by the
            "official" correspondence losses (frame 0 with gradient, later frames without); else ``None``.
        view2_theta: [B, 2, 3] affine (``F.affine_grid`` convention) that maps view-2 normalised coordinates to
            view-1 normalised coordinates, so ``grid_sample(view1_map, affine_grid(view2_theta))`` aligns a
            view-1 map to view 2; ``None`` when there is no second view.
        aux_logits: [B, T-1, A, N+1, h, w] aggregated logits of a model's A auxiliary heads at stride 16 (Cutie: the
            sensory head, then the object transformer's levels), for its own segmentation loss; else ``None``.
    """

    logits: Tensor
    keys: Tensor
    res4: Tensor
    shrinkage: Tensor | None = None
    selection: Tensor | None = None
    keys2: Tensor | None = None
    view2_keys2: Tensor | None = None
    view2_theta: Tensor | None = None
    aux_logits: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ClipOutputs:
        return _to(self, device, non_blocking)


@dataclass
class ClipDraws:
    """The random choices of one training unroll (every family's unroller keeps its last ones in ``last_draws``).

    Attributes:
        memory_frames: frame t -> [B, num_ref_frames] int64 clip indices of its memory frames in draw order (the
            family's rule: XMem puts frame 0 first, Cutie draws all of them); only for frames whose memory was drawn.
        deep_updates: frame t -> whether encoding frame t's value ran the deep update of the hidden (sensory)
            state (frames 1..T-2; frame 0's ground-truth value always does).
    """

    memory_frames: dict[int, Tensor] = field(default_factory=dict)
    deep_updates: dict[int, bool] = field(default_factory=dict)


def draw_deep_update(prob: float, generator: torch.Generator | None) -> bool:
    """Whether a value encoding deep-updates, with probability ``prob``; 1 and 0 draw nothing from ``generator``."""
    if prob >= 1.0 or prob <= 0.0:
        return prob >= 1.0
    return bool(torch.rand((), generator=generator) < prob)
