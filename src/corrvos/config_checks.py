"""The consistency checks of a training configuration (:mod:`corrvos.config`): values that the dataclass types
alone cannot rule out (positive sizes, increasing milestones, frames inside a clip, an architecture of the family
table that can train, ...), each a :class:`corrvos.errors.ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from corrvos.data.sampling import SkipCurriculum
from corrvos.errors import ConfigError
from corrvos.losses.config import LossConfig
from corrvos.yaml_dataclasses import build_dataclass

if TYPE_CHECKING:
    from corrvos.config import ModelConfig, StageConfig, TrainConfig

__all__ = ["has_aux_key_head", "stage_loss_config", "validate"]


def has_aux_key_head(model: ModelConfig) -> bool:
    """Whether the configured network has the ``key_proj2`` head of the "official" losses."""
    from corrvos.families import architecture

    return model.aux_key_head if model.aux_key_head is not None else architecture(model.arch).aux_key_head


def _check_model(cfg: TrainConfig, source: str) -> None:
    """The architecture and the augmentation recipes name entries of the family table."""
    from corrvos.families import NAMES, canonical_arch, family_of_arch

    try:
        canonical_arch(cfg.model.arch)
    except ValueError as exc:
        raise ConfigError(f"{source}: model.arch: {exc}") from None
    owner = family_of_arch(cfg.model.arch)
    if not owner.trainable:
        raise ConfigError(
            f"{source}: model.arch: {cfg.model.arch!r} ({owner.title}) runs inference only; training it is not "
            "implemented yet"
        )
    for stage in cfg.stages:
        if stage.data.augment != "auto" and stage.data.augment not in NAMES:
            raise ConfigError(
                f"{source}: stages[{stage.name}]: data.augment {stage.data.augment!r} is not 'auto' or a model "
                f"family ({', '.join(NAMES)})"
            )


def stage_loss_config(cfg: TrainConfig, stage: StageConfig, source: str = "config") -> LossConfig:
    """The loss configuration of ``stage``: the top-level ``loss`` block with the stage's overrides applied."""
    merged = {**dataclasses.asdict(cfg.loss), **stage.loss}
    return build_dataclass(LossConfig, merged, where=f"stages[{stage.name}].loss", source=source)


def _check_unlabeled(stage: StageConfig, where: str) -> None:
    """Unlabeled sources need a share of the batch in (0, 1) that leaves room for labeled clips, and vice versa."""
    data = stage.data
    kinds = [d.kind for d in data.datasets]
    if "unlabeled" not in kinds:
        if data.unlabeled_share != 0:
            raise ConfigError(f"{where}: data.unlabeled_share is {data.unlabeled_share} but no dataset is unlabeled")
        return
    if all(k == "unlabeled" for k in kinds):
        raise ConfigError(f"{where}: every dataset is unlabeled; L_SEG needs at least one labeled dataset")
    n = round(data.unlabeled_share * stage.batch_size)
    if not 0 < data.unlabeled_share < 1 or not 1 <= n < stage.batch_size:
        raise ConfigError(
            f"{where}: data.unlabeled_share {data.unlabeled_share} of batch_size {stage.batch_size} gives {n} "
            "unlabeled clips per batch; it must give between 1 and batch_size - 1"
        )


def _aux_head_archs() -> list[str]:
    from corrvos.families import architectures

    return [name for name, a in architectures().items() if a.aux_key_head]


def validate(cfg: TrainConfig, source: str) -> None:
    """Raise ConfigError naming the key and ``source`` for the first inconsistent value of ``cfg``."""
    if not cfg.stages:
        raise ConfigError(f"{source}: 'stages' must list at least one stage")
    _check_model(cfg, source)
    seen: set[str] = set()
    for i, stage in enumerate(cfg.stages):
        where = f"stages[{i}] ({stage.name})"
        if stage.name in seen or not stage.name or stage.name.isdigit():
            raise ConfigError(f"{source}: {where}: stage names must be unique, non-empty and not numbers")
        seen.add(stage.name)
        if stage.iterations <= 0 or stage.batch_size <= 0 or stage.lr <= 0:
            raise ConfigError(f"{source}: {where}: iterations, batch_size and lr must be positive")
        if list(stage.lr_milestones) != sorted(stage.lr_milestones) or any(m <= 0 for m in stage.lr_milestones):
            raise ConfigError(f"{source}: {where}: lr_milestones must be positive and increasing")
        if not 0 <= stage.lr_warmup <= stage.iterations:
            raise ConfigError(f"{source}: {where}: lr_warmup must lie in [0, iterations], got {stage.lr_warmup}")
        data = stage.data
        if data.crop_size <= 0 or data.crop_size % 16:
            raise ConfigError(f"{source}: {where}: data.crop_size must be a positive multiple of 16")
        if data.num_frames < 2 or data.max_objects < 1:
            raise ConfigError(f"{source}: {where}: data.num_frames must be >= 2 and data.max_objects >= 1")
        if data.num_ref_frames is not None and data.num_ref_frames < 1:
            raise ConfigError(f"{source}: {where}: data.num_ref_frames must be >= 1 (or null: every earlier frame)")
        if not 0 <= data.finetune_iterations < stage.iterations:
            raise ConfigError(
                f"{source}: {where}: data.finetune_iterations must lie in [0, iterations), got "
                f"{data.finetune_iterations} of {stage.iterations}"
            )
        if data.sampling == "chain" and data.num_frames != 3:
            raise ConfigError(f"{source}: {where}: data.sampling 'chain' draws 3 frames; use 'window' or 'auto'")
        try:  # the trainer builds the same curriculum, so a bad one fails here and not when its stage starts
            SkipCurriculum.from_values(data.max_skip_values, data.max_skip_fractions)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {where}: data: {exc}") from None
        if not data.datasets:
            raise ConfigError(f"{source}: {where}: data.datasets is empty")
        _check_unlabeled(stage, f"{source}: {where}")
        for spec in data.datasets:
            if spec.repeat < 1:
                raise ConfigError(f"{source}: {where}: data.datasets repeat must be >= 1")
            if spec.subset is not None and spec.kind not in ("davis", "youtube", "synthetic"):
                raise ConfigError(
                    f"{source}: {where}: a {spec.kind} dataset has a subset, but a subset is only read "
                    "for davis, youtube and synthetic datasets"
                )
            if spec.kind == "synthetic" and (len(spec.size) != 2 or min(spec.size) < 1 or spec.sequences < 1):
                raise ConfigError(
                    f"{source}: {where}: synthetic size must be [H, W] of positive sizes and sequences "
                    f">= 1, got size {spec.size} and {spec.sequences} sequences"
                )
        if stage.single_object and any(not s.single_object for s in cfg.stages[:i]):
            raise ConfigError(f"{source}: {where}: a single-object stage cannot follow a multi-object stage")
        loss = stage_loss_config(cfg, stage, source)
        if loss.mode == "official" and not has_aux_key_head(cfg.model):
            raise ConfigError(
                f"{source}: {where}: loss.mode 'official' needs the key_proj2 head: an architecture that has it "
                f"({', '.join(_aux_head_archs())}), or model.aux_key_head: true (arch {cfg.model.arch!r})"
            )
        frame_fields = []
        if loss.mode == "paper" and loss.pcl_weight > 0:
            frame_fields += ["pcl_remote_frame", "pcl_frame_t1", "pcl_frame_t2"]
        if loss.mode == "paper" and loss.ocl_weight > 0:
            frame_fields += ["ocl_frame_p", "ocl_frame_q"]
        for name in frame_fields:
            index = getattr(loss, name)
            if not -data.num_frames <= index < data.num_frames:
                raise ConfigError(
                    f"{source}: {where}: loss.{name} = {index} is outside a clip of {data.num_frames} frames"
                )
        roles = {name: getattr(loss, name) % data.num_frames for name in frame_fields}
        for group in (("pcl_remote_frame", "pcl_frame_t1", "pcl_frame_t2"), ("ocl_frame_p", "ocl_frame_q")):
            frames = [roles[name] for name in group if name in roles]
            if len(set(frames)) != len(frames):
                named = ", ".join(f"loss.{name} = {getattr(loss, name)}" for name in group)
                raise ConfigError(
                    f"{source}: {where}: {named} must name different frames of a clip of {data.num_frames} frames"
                )
    model = cfg.model
    if isinstance(model.width, bool) or model.width <= 0 or model.width % 8:
        raise ConfigError(f"{source}: model.width must be a positive multiple of 8 (official: 64), got {model.width}")
    if model.width != 64 and model.pretrained_backbones is not False:
        raise ConfigError(
            f"{source}: model.pretrained_backbones needs model.width 64 (torchvision's ImageNet files do not fit "
            f"width {model.width}); set pretrained_backbones: false to train the small variant from random init"
        )
    if not 0.0 <= cfg.model.deep_update_prob <= 1.0:
        raise ConfigError(f"{source}: model.deep_update_prob must lie in [0, 1], got {cfg.model.deep_update_prob}")
    optim = cfg.optim
    for name in ("encoder_lr_scale", "encoder_deep_lr_scale", "gamma", "eps"):
        if getattr(optim, name) <= 0:
            raise ConfigError(f"{source}: optim.{name} must be > 0, got {getattr(optim, name)}")
    if optim.weight_decay < 0:
        raise ConfigError(f"{source}: optim.weight_decay must be >= 0, got {optim.weight_decay}")
    if optim.grad_clip is not None and optim.grad_clip <= 0:
        raise ConfigError(f"{source}: optim.grad_clip must be > 0 (or null: no clipping), got {optim.grad_clip}")
    for name in ("log_interval", "save_interval"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{source}: '{name}' must be positive")
    if cfg.keep_checkpoints < 0:
        raise ConfigError(f"{source}: 'keep_checkpoints' must be >= 0 (0: no resumable checkpoints)")
    if cfg.image_interval < 0 or cfg.num_workers < 0 or cfg.optim.max_nonfinite < 1:
        raise ConfigError(f"{source}: image_interval/num_workers must be >= 0 and optim.max_nonfinite >= 1")
