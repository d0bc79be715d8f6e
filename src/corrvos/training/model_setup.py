"""The trainer's networks: seeded construction, fine-tuning weights, single- to multi-object widening, the L_OCL head.

Every random initialisation here draws from a generator seeded by ``(cfg.seed, purpose)`` inside
``torch.random.fork_rng``, so building a network neither depends on nor moves the global random state: the same
config gives the same initial weights on every process, in a fresh run and in a resumed one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from corrvos.config import TrainConfig
from corrvos.errors import ConfigError
from corrvos.training.schedules import derive_seed

__all__ = [
    "build_network",
    "build_projection_head",
    "freeze_batchnorm",
    "load_init_weights",
    "resolve_amp",
    "widen_to_multi_object",
]

logger = logging.getLogger(__name__)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the ``amp`` setting: "auto" = bf16 (or fp16) on CUDA and off elsewhere."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics frozen; affine parameters still trained)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def build_network(cfg: TrainConfig, single_object: bool, *, pretrained: bool = False) -> nn.Module:
    """A fresh ``cfg.model.arch`` network (seeded init); ImageNet backbones only when ``pretrained``."""
    from corrvos.models import build_model

    extra = {} if cfg.model.aux_key_head is None else {"aux_key_head": cfg.model.aux_key_head}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "model-init") & 0x7FFFFFFF)
        return build_model(
            cfg.model.arch,
            single_object=single_object,
            pretrained_backbones=cfg.model.pretrained_backbones if pretrained else False,
            key_encoder=cfg.model.key_encoder,
            width=cfg.model.width,
            **extra,
        )


def load_init_weights(cfg: TrainConfig, model: nn.Module, path: str | Path) -> None:
    """Fine-tuning start: strict load of an official or corrvos file into ``model``; ``key_proj2`` may be absent.

    Raises:
        ConfigError: the file holds another architecture, or a multi-object network for a single-object first stage.
    """
    from corrvos.models import arch_of, load_model
    from corrvos.models.convert import check_and_load

    source = load_model(path, widen_single_object_file=not model.single_object)
    if arch_of(source) != arch_of(model):
        raise ConfigError(f"{path}: holds a {arch_of(source)!r} network but model.arch is {arch_of(model)!r}")
    for name in ("key_encoder", "width"):
        theirs, ours = source.init_args()[name], model.init_args()[name]
        if theirs != ours:
            raise ConfigError(f"{path}: holds a network with {name} {theirs!r} but model.{name} is {ours!r}")
    if model.single_object and not source.single_object:
        stage = cfg.stages[0].name
        later = ",".join(s.name for s in cfg.stages if not s.single_object)
        raise ConfigError(
            f"{path}: holds a multi-object network, but the first stage {stage!r} trains a single-object one; "
            f"run the later stages only (--stages {later or 'NAME'})"
        )
    check_and_load(model, source.state_dict(), path=path, optional_prefixes=("key_proj2.",))
    logger.info("initial weights from %s", path)


def widen_to_multi_object(cfg: TrainConfig, model: nn.Module) -> nn.Module:
    """A multi-object copy of single-object ``model``, with an orthogonally initialised "others" channel (STCN).

    The copy is built from ``model.init_args()`` (architecture, key encoder, width, heads), not from ``cfg``.
    """
    from corrvos.families import family_of
    from corrvos.models.convert import widen_single_object

    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "widen") & 0x7FFFFFFF)
    keys = family_of(model).others_channel_keys
    state = widen_single_object(model.state_dict(), init="orthogonal", generator=gen, keys=keys)
    with torch.random.fork_rng(devices=[]):  # every entry is overwritten below; keep the global RNG where it is
        wide = type(model)(**{**model.init_args(), "single_object": False})
    wide.load_state_dict(state, strict=True)
    logger.info("single-object weights widened to a multi-object model (orthogonal 'others' channel)")
    return wide


def build_projection_head(cfg: TrainConfig, loss_cfg, *, in_dim: int | None = None) -> nn.Module:
    """L_OCL's projection head (seeded init) for a stage whose loss uses one.

    Args:
        cfg: the run's configuration.
        loss_cfg: the stage's loss configuration (hidden and embedding sizes).
        in_dim: channels of the res4 features it projects (the model's ``f16_dim``); ``None``: the f16 channels
            of ``cfg.model``'s key encoder and width (1024 for the official ResNet-50).
    """
    from corrvos.models.backbones import key_encoder_dims
    from corrvos.models.heads import ProjectionHead

    if in_dim is None:
        in_dim = key_encoder_dims(cfg.model.key_encoder, cfg.model.width)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "proj-head") & 0x7FFFFFFF)
        return ProjectionHead(in_dim, loss_cfg.ocl_hidden_dim, loss_cfg.ocl_embed_dim)
