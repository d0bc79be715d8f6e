"""Cutie's entry of the family table: its layout and how its checkpoints are told apart, its inference memory and
recurrence, and its training: the clip unroller (:mod:`.unroll`), the point-sampled L_SEG with the auxiliary losses
(:mod:`.losses`), the learning-rate group of the pixel encoder, the max-skip curriculum and augmentation.

| architecture | network | detected by |
|---|---|---|
| ``cutie`` | :class:`~.network.Cutie` (hkchengrex/Cutie) | ``pixel_encoder.*`` and ``object_transformer.*`` |

Cutie-base and Cutie-small are the same architecture with a ResNet-50 or ResNet-18 pixel encoder
(``key_encoder``), read from the shapes as for corrvos's small variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from corrvos.data.sampling import SkipCurriculum
from corrvos.data.transforms import AffineRange, ClipAugmentConfig, ColorJitterRange
from corrvos.errors import CheckpointError
from corrvos.families.base import Architecture, Family
from corrvos.families.cutie import CARD
from corrvos.families.cutie.losses import PointLossConfig, segmentation_terms
from corrvos.families.cutie.memory import CutieMemory
from corrvos.families.cutie.network import Cutie
from corrvos.families.cutie.recurrence import CutieRecurrence
from corrvos.families.cutie.unroll import CutieUnroller
from corrvos.models.backbones import key_encoder_args

__all__ = ["CUTIE_CURRICULUM", "FAMILY", "cutie_augment", "cutie_segmentation_loss", "detect_cutie"]

#: Cutie main training (train_config.yaml max_skip_schedule [5, 10, 15, 5] at fractions [0, 0.1, 0.3, 0.8]).
CUTIE_CURRICULUM = SkipCurriculum(5, (0.1, 0.3, 0.8), (10, 15, 5))


def cutie_augment(size: int) -> ClipAugmentConfig:
    """Cutie's video recipe (cutie/dataset/vos_dataset.py): per clip a flip, an affine of up to 25 degrees and 20
    degrees of shear (no per-frame affine), a RandomResizedCrop of 36-100 % of the area, colour jitter
    (0.1, 0.03, 0.03) and 5 % grayscale; per frame colour jitter (0.1, 0.05, 0.05); bilinear."""
    return ClipAugmentConfig(
        size=(size, size) if isinstance(size, int) else tuple(size),
        crop_scale=(0.36, 1.0),
        clip_affine=AffineRange(degrees=25.0, shear=20.0),
        frame_affine=AffineRange(),
        clip_jitter=ColorJitterRange(0.1, 0.03, 0.03, 0.0),
        grayscale_prob=0.05,
        frame_jitter=ColorJitterRange(0.1, 0.05, 0.05, 0.0),
        interpolation="linear",
    )


def _recipe(raw: dict[str, Any], steps: int) -> None:
    """The demo recipe's Cutie settings: deep updates, Cutie's optimiser (weight decay 1e-3, pixel encoder at
    0.1 x lr, clip 3), batch 2, 5-frame clips with 3 memory frames and 3 objects, XMem-style window sampling, and
    the point-sampled loss with fewer points (64 x 64 crops have 4096 pixels)."""
    raw["model"]["deep_update_prob"] = 0.2
    raw["optim"].update(weight_decay=0.001, encoder_lr_scale=0.1, encoder_deep_lr_scale=0.1, grad_clip=3.0)
    raw["loss"]["seg_points"] = 1024
    stage = raw["stages"][0]
    stage["batch_size"] = 2
    stage["data"].update(
        num_frames=5,
        num_ref_frames=3,
        max_objects=3,
        sampling="window",
        max_skip_values=[2, 3, 4, 2],
        max_skip_fractions=[0.1, 0.3, 0.8],
    )


def _cpu_recipe(raw: dict[str, Any], steps: int) -> None:
    """The CPU recipe's Cutie change: full width (Cutie has no narrow variant; the small pixel encoder stays)."""
    raw["model"]["width"] = 64


def cutie_segmentation_loss(
    logits: Tensor, aux_logits: Tensor | None, labels: Tensor, selector: Tensor, cfg: Any, generator: Any
) -> dict[str, Tensor]:
    """Cutie's L_SEG (``Family.segmentation_loss``): :func:`.losses.segmentation_terms` with the point sampling and
    auxiliary weights of the ``LossConfig`` ``cfg`` (``seg_points``, ``seg_point_oversample``,
    ``seg_point_importance``, ``seg_aux_sensory_weight``, ``seg_aux_query_weight``); each clip's objects are its
    selected slots (selector [B, N], real objects first)."""
    points = PointLossConfig(
        num_points=cfg.seg_points,
        oversample_ratio=cfg.seg_point_oversample,
        importance_sample_ratio=cfg.seg_point_importance,
        sensory_weight=cfg.seg_aux_sensory_weight,
        query_weight=cfg.seg_aux_query_weight,
    )
    num_objects = [int(n) for n in selector.sum(dim=1).round().long().tolist()]
    return segmentation_terms(logits, aux_logits, labels, num_objects, points, generator)


_MODULES = (
    "pixel_encoder",
    "pix_feat_proj",
    "key_proj",
    "mask_encoder",
    "mask_decoder",
    "pixel_fuser",
    "object_transformer",
    "object_summarizer",
    "aux_computer",
)


def detect_cutie(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """The ``Cutie`` constructor arguments of an official or corrvos Cutie state_dict, or ``None`` for others.

    Raises:
        CheckpointError: a Cutie file whose mask encoder's conv1 or pixel encoder is malformed.
    """
    if "object_transformer.query_init.weight" not in state or not any(k.startswith("pixel_encoder.") for k in state):
        return None
    if not all(k.split(".", 1)[0] in _MODULES for k in state):
        return None
    conv1 = state.get("mask_encoder.conv1.weight")
    channels = conv1.shape[1] if conv1 is not None and conv1.dim() == 4 else -1
    if channels not in (4, 5):
        raise CheckpointError(f"mask_encoder.conv1.weight has {channels} input channels; expected 5 (or 4 for stage 0)")
    encoder = key_encoder_args(state, prefix="pixel_encoder.")
    if encoder["width"] != 64:
        raise CheckpointError(f"pixel_encoder.conv1.weight has {encoder['width']} output channels; Cutie's have 64")
    return {"key_encoder": encoder["key_encoder"], "single_object": channels == 4}


FAMILY = Family(
    card=CARD,
    architectures=(
        Architecture(
            "cutie",
            Cutie,
            {},
            detect_cutie,
            "Cutie (hkchengrex/Cutie): base 527 entries (ResNet-50), small 359 (key_encoder resnet18)",
        ),
    ),
    memory=CutieMemory,
    recurrence=CutieRecurrence,
    augment={
        "video": cutie_augment,
        "bl30k": cutie_augment,
        # [approximation] the static-image recipe of STCN / XMem; Cutie's static_dataset.py is not compared yet
        "static": ClipAugmentConfig.static_images,
    },
    curricula={"video": CUTIE_CURRICULUM, "bl30k": CUTIE_CURRICULUM},
    encoders=("pixel_encoder",),  # official get_parameter_groups: only the pixel encoder at backbone_lr_ratio
    # official embedding_names (embed_weight_decay 0), matched as suffixes as there: the query embeddings and the
    # summary_to_query_init / _emb linear weights (summary_pos and obj_pe do not exist in this network)
    no_decay=("query_init.weight", "query_emb.weight"),
    recipe=_recipe,
    cpu_recipe=_cpu_recipe,
    tiny_args={"key_encoder": "resnet18"},
    unroller=CutieUnroller,
    # official CUTIE.load_weights: the mask encoder's conv1 and the pixel fuser's sensory compression
    others_channel_keys=("mask_encoder.conv1.weight", "pixel_fuser.sensory_compress.weight"),
    segmentation_loss=cutie_segmentation_loss,
)
