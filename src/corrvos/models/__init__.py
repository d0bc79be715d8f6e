"""corrvos.models: the building blocks every model family shares, and model construction / checkpoint loading.

The networks themselves live in their families (``corrvos.families.<name>``); this package holds what they share
(backbones, layers, the memory readout, the ``VOSModel`` contract, weight conversion) and the two entry points
that go through the family table (:mod:`corrvos.families`):

- :func:`build_model` makes a fresh network by architecture name (any architecture of the table), optionally
  with ImageNet backbones (torchvision-format files, downloaded through ``torch.hub`` or read from a local folder).
- :func:`load_model` reads a checkpoint (an official state_dict of any family, an official training checkpoint,
  or a corrvos checkpoint), detects the architecture from its keys and loads it strictly.

The submodules never import the family table; only these entry points do (at call time).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from corrvos.errors import CheckpointError, ConfigError
from corrvos.models.backbones import load_imagenet_key_encoder, load_imagenet_resnet18, read_torchvision_state
from corrvos.models.base import VOSModel
from corrvos.models.convert import check_and_load, extract_state_dict, read_checkpoint, widen_single_object
from corrvos.models.params import parameter_groups
from corrvos.weights import resolve_model_path

__all__ = [
    "VOSModel",
    "arch_of",
    "build_model",
    "load_imagenet_backbones",
    "load_model",
    "load_weights_into",
    "parameter_groups",
]

logger = logging.getLogger(__name__)


def _find_local_file(folder: Path, arch: str) -> Path:
    if folder.is_file():
        raise CheckpointError(
            f"{folder}: pretrained_backbones must be a folder holding torchvision's resnet50-*.pth and "
            f"resnet18-*.pth files, not a file"
        )
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: ImageNet weight folder not found")
    found = sorted(folder.glob(f"{arch}*.pth"))
    if len(found) != 1:
        raise CheckpointError(f"{folder}: expected exactly one {arch}*.pth file, found {[p.name for p in found]}")
    return found[0]


def _check_imagenet_width(width: int) -> None:
    """ConfigError unless ``width`` is 64: torchvision's ImageNet files only fit full-width backbones."""
    if width != 64:
        raise ConfigError(
            f"ImageNet backbones (pretrained_backbones) need width 64, got width {width}: torchvision's files do not "
            "fit narrower ResNets; train a small variant from random init (pretrained_backbones: false)"
        )


def load_imagenet_backbones(
    model: nn.Module, source: bool | str | Path, *, generator: torch.Generator | None = None
) -> None:
    """Initialise the key encoder (ResNet-50 or -18) and value-encoder trunk (ResNet-18) from ImageNet weights.

    Args:
        model: the network to fill (other parts are untouched).
        source: ``True`` uses torchvision's IMAGENET1K_V1 files from the corrvos weight cache when
            ``corrvos download imagenet`` has put them there, else downloads them through ``torch.hub`` (needs
            internet; cached in ``$TORCH_HOME/hub/checkpoints``); a folder path reads ``resnet50*.pth`` and
            ``resnet18*.pth`` from it (the weight cache folder itself qualifies; a model with a "resnet18" key
            encoder needs only ``resnet18*.pth``).
        generator: RNG of the orthogonal init of the value encoder's extra mask channels.

    Raises:
        ConfigError: the model is a small variant of width other than 64.
    """
    # a network whose encoders have other names says which modules they are (``imagenet_encoders()``)
    if hasattr(model, "imagenet_encoders"):
        key_encoder, value_encoder = model.imagenet_encoders()
    else:
        key_encoder, value_encoder = model.key_encoder, model.value_encoder
    key_arch = key_encoder.arch
    _check_imagenet_width(key_encoder.width)
    for arch in dict.fromkeys((key_arch, "resnet18")):  # the key encoder's file first, then the value encoder's
        file = True if source is True else _find_local_file(Path(source).expanduser(), arch)
        state = read_torchvision_state(file, arch)
        what = f"ImageNet {arch}" if file is True else str(file)
        if arch == key_arch:
            load_imagenet_key_encoder(key_encoder, state, what=what)
        if arch == "resnet18":
            load_imagenet_resnet18(value_encoder, state, what=what, generator=generator)


def arch_of(model: nn.Module) -> str:
    """The canonical architecture name of a built network (detected from its own state_dict keys)."""
    from corrvos.families import arch_of as detect

    return detect(model)


def build_model(arch: str | None = None, *, pretrained_backbones: bool | str = False, **kwargs: Any) -> nn.Module:
    """Build a fresh network from the family table.

    Args:
        arch: an architecture of the table (``corrvos.families.architectures()``: "stcn" (hkchengrex/STCN),
            "stcn_corr" (wenguanwang/VOS_Correspondence, with ``key_proj2``), "xmem" (hkchengrex/XMem), ...;
            aliases accepted); ``None``: the table's default (its first family's first architecture).
        pretrained_backbones: ``False`` (random init), ``True`` (download torchvision ImageNet weights) or a folder
            holding torchvision's ``resnet50-*.pth`` and ``resnet18-*.pth``.
        **kwargs: constructor arguments overriding the table's defaults (e.g. ``single_object=True`` for a stage-0
            network, ``hidden_dim=0`` for XMem without sensory memory, ``key_encoder="resnet18", width=32`` for
            corrvos's small variants).

    Raises:
        ValueError: unknown ``arch`` or bad constructor arguments.
        ConfigError: ImageNet backbones asked for a width other than 64.
        CheckpointError: ImageNet files missing or not torchvision-format.
    """
    if pretrained_backbones is not False:
        _check_imagenet_width(kwargs.get("width", 64))  # before building: a full model costs seconds
    from corrvos.families import architecture, default_arch

    model = architecture(arch if arch is not None else default_arch()).build(**kwargs)
    if pretrained_backbones is not False:
        load_imagenet_backbones(model, pretrained_backbones)
    return model


def load_model(path: str | Path, *, map_location: Any = "cpu", widen_single_object_file: bool = True) -> nn.Module:
    """Load a checkpoint strictly, detecting its architecture from the keys; the model is in eval mode.

    Args:
        path: an official state_dict of a family of the table (e.g. ``stcn.pth``, stage-0 files, VOS_Correspondence
            files, ``XMem.pth`` / no-sensory files), an official training checkpoint
            ``{"network": ...}`` or a corrvos checkpoint ``{"model": ..., "arch": ..., "model_args": ...}``.
            A value that is not an existing path may be a weight name of ``corrvos download --list`` (e.g.
            "xmem"): its file in the weight cache is loaded (:func:`corrvos.weights.resolve_model_path`).
        map_location: passed to ``torch.load``; a device (string or ``torch.device``) also receives the model.
        widen_single_object_file: give a 4-channel stage-0 file a zero "others" channel and return a
            multi-object model, as the official evaluation does; ``False`` returns a single-object model.

    Raises:
        CheckpointError: unsafe or unreadable file, unknown architecture, or keys / shapes that do not fit
            (all missing and unexpected keys are listed); a name that is neither a file nor a known weight, or
            whose weights have not been downloaded (the message names ``corrvos download NAME``).
    """
    from corrvos.families import architecture, canonical_arch, detect_architecture, family_of_arch

    path = resolve_model_path(path)  # weight name -> cached file (corrvos download); existing paths unchanged
    state, meta = extract_state_dict(read_checkpoint(path, map_location=map_location), path=path)
    name, kwargs = detect_architecture(state, path=path)
    if "arch" in meta:
        try:
            declared = canonical_arch(str(meta["arch"]))
        except ValueError as exc:
            raise CheckpointError(f"{path}: unsupported arch {meta['arch']!r} ({exc})") from exc
        if declared != name:
            raise CheckpointError(f"{path}: declares arch {meta['arch']!r} but its keys are those of {name!r}")
    recorded = meta.get("model_args")
    if isinstance(recorded, dict):
        clash = {k: (v, kwargs[k]) for k, v in recorded.items() if k in kwargs and kwargs[k] != v}
        if clash:
            raise CheckpointError(f"{path}: recorded model_args disagree with the weights (recorded, found): {clash}")
        kwargs = {**recorded, **kwargs}
    if kwargs.get("single_object") and widen_single_object_file:
        state = widen_single_object(state, init="zeros", keys=family_of_arch(name).others_channel_keys)
        kwargs["single_object"] = False
        logger.info("%s: stage-0 (single-object) weights widened to 5 input channels with zeros", path)
    try:
        model = architecture(name).build(**kwargs)
    except (TypeError, ValueError) as exc:  # e.g. a width that is not a multiple of 8, an unknown recorded argument
        raise CheckpointError(f"{path}: cannot build {name!r} with {kwargs}: {exc}") from exc
    check_and_load(model, state, path=path)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    logger.info(
        "loaded %s (%s, %s weights) from %s",
        name,
        "single-object" if kwargs.get("single_object") else "multi-object",
        meta["source"],
        path,
    )
    return model.eval()


def load_weights_into(
    model: nn.Module,
    path: str | Path,
    *,
    widen_init: str = "orthogonal",
    partial: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[list[str], list[str]]:
    """Initialise an existing model from a checkpoint, as the official training ``--load_network`` does.

    A stage-0 (4-channel) file loaded into a multi-object model gets its "others" channel appended with
    ``widen_init`` ("orthogonal" as official training; "zeros" as official evaluation). ``key_proj2`` may be absent
    from the file (it keeps its initial values). With ``partial=True`` the keys the two networks share are loaded and
    the rest is reported instead of refused; this is how wenguanwang/VOS_Correspondence initialises its network from
    an STCN file (``load_state_dict(strict=False)``). Shape mismatches are always refused.

    Returns:
        (missing, unexpected): model keys the file lacked (left at their initial values) and file keys not used.

    Raises:
        CheckpointError: unsafe/unreadable file, unknown architecture, or (``partial=False``) keys that do not fit.
    """
    from corrvos.families import detect_architecture

    state, _ = extract_state_dict(read_checkpoint(path), path=path)
    _, kwargs = detect_architecture(state, path=path)
    if kwargs.get("single_object") and not model.single_object:
        from corrvos.families import family_of

        keys = family_of(model).others_channel_keys
        state = widen_single_object(state, init=widen_init, generator=generator, keys=keys)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if partial:
        check_and_load(model, {k: v for k, v in state.items() if k in own}, path=path, optional_prefixes=("",))
        if missing or unexpected:
            logger.warning(
                "%s: partial load: %d model entries kept their initial values (%s...), %d file entries unused (%s...)",
                path,
                len(missing),
                ", ".join(missing[:5]),
                len(unexpected),
                ", ".join(unexpected[:5]),
            )
    else:
        check_and_load(model, state, path=path, optional_prefixes=("key_proj2.",))
    return missing, unexpected
