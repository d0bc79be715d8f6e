"""Checkpoint reading, architecture detection and the explicit conversions needed to load official STCN weights.

Accepted files (all read with ``torch.load(..., weights_only=True)``; a pickle that carries code is refused):

- an official state_dict (hkchengrex/STCN ``stcn.pth``, ``stcn_s03.pth``, the stage-0 / stage-01 files, or a
  wenguanwang/VOS_Correspondence file), saved from ``model.module.state_dict()``;
- an official training checkpoint ``{"it", "network": state_dict, "optimizer", "scheduler"}``;
- a corrvos checkpoint ``{"format_version": int, "arch": str, "model": state_dict, ...}`` (trainer output).

A ``module.`` prefix (a state_dict saved from a DataParallel/DDP wrapper) is removed when every key has it.

Architecture detection, from the keys only: ``key_comp.*`` / ``decoder.compress.*`` -> variant "stcn";
``decoder.fuser.*`` -> "corr" (with ``key_proj2.*`` when present); XMem files (``decoder.hidden_update.*``,
``key_proj.d_proj.*``) are recognised and refused with a clear message. ``value_encoder.conv1.weight`` with 4
input channels marks a single-object (stage-0) file; :func:`widen_single_object` appends the fifth ("others")
channel as the official code does: zeros in the evaluation scripts (hkchengrex/STCN:eval_davis.py), an
``nn.init.orthogonal_`` slice in training (hkchengrex/STCN:model/model.py ``load_network``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from corrvos.errors import CheckpointError

__all__ = [
    "ARCH_ALIASES",
    "CheckpointInfo",
    "arch_name",
    "check_and_load",
    "detect_architecture",
    "extract_state_dict",
    "read_checkpoint",
    "variant_of_arch",
    "widen_single_object",
]

logger = logging.getLogger(__name__)

#: accepted ``arch`` names -> STCN variant. Canonical names: "stcn", "stcn_corr".
ARCH_ALIASES = {"stcn": "stcn", "stcn_corr": "corr", "stcn-corr": "corr", "corr": "corr"}
_CONV1 = "value_encoder.conv1.weight"
_MAX_LISTED = 20


def variant_of_arch(arch: str) -> str:
    """Map an architecture name ("stcn", "stcn_corr"; aliases "stcn-corr", "corr") to the STCN variant."""
    key = arch.lower()
    if key not in ARCH_ALIASES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCH_ALIASES)}")
    return ARCH_ALIASES[key]


def arch_name(variant: str) -> str:
    """Canonical architecture name of an STCN variant ("stcn" -> "stcn", "corr" -> "stcn_corr")."""
    return {"stcn": "stcn", "corr": "stcn_corr"}[variant]


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`detect_architecture` finds in a state_dict.

    Attributes:
        variant: "stcn" or "corr".
        single_object: the value encoder's conv1 has 4 input channels (a stage-0 file).
        aux_key_head: the file has ``key_proj2`` (VOS_Correspondence training layout).
        source: "official", "official-training" or "corrvos" (the container the weights came in).
    """

    variant: str
    single_object: bool
    aux_key_head: bool
    source: str = "official"


def read_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; errors become :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip / truncated), EOFError, ...
        raise CheckpointError(
            f"{path}: refused: not a weights-only checkpoint (it holds pickled code or objects, or is corrupt); "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def extract_state_dict(obj: Any, *, path: str | Path = "<checkpoint>") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Find the network state_dict in a loaded checkpoint object.

    Returns:
        (state_dict, meta): ``meta`` holds "source" ("official", "official-training", "corrvos") and, for corrvos
        files, "arch" and "format_version".

    Raises:
        CheckpointError: no state_dict can be found.
    """
    meta: dict[str, Any]
    if isinstance(obj, Mapping) and "format_version" in obj and "model" in obj:
        state, meta = obj["model"], {"source": "corrvos", "format_version": obj["format_version"]}
        if "arch" in obj:
            meta["arch"] = obj["arch"]
    elif isinstance(obj, Mapping) and "network" in obj and _is_state_dict(obj["network"]):
        state, meta = obj["network"], {"source": "official-training"}
    else:
        state, meta = obj, {"source": "official"}
    if not _is_state_dict(state):
        raise CheckpointError(
            f"{path}: no network weights found (expected a state_dict, an official training checkpoint with "
            f"'network', or a corrvos checkpoint with 'format_version' and 'model')"
        )
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, meta


def detect_architecture(state: Mapping[str, Tensor], *, path: str | Path = "<checkpoint>") -> CheckpointInfo:
    """Tell the STCN variant, single-object-ness and presence of ``key_proj2`` from a state_dict's keys.

    Raises:
        CheckpointError: an XMem file, or keys of no known architecture.
    """
    if any(k.startswith(("decoder.hidden_update.", "key_proj.d_proj.", "key_proj.e_proj.")) for k in state):
        raise CheckpointError(f"{path}: this is an XMem checkpoint; corrvos.models.load_model loads STCN weights only")
    if "key_comp.weight" in state or any(k.startswith("decoder.compress.") for k in state):
        variant = "stcn"
    elif any(k.startswith("decoder.fuser.") for k in state):
        variant = "corr"
    else:
        listed = sorted(state)[:_MAX_LISTED]
        raise CheckpointError(
            f"{path}: unknown architecture (no key_comp/decoder.compress (STCN) or decoder.fuser "
            f"(VOS_Correspondence) keys); first keys: {listed}"
        )
    if _CONV1 not in state:
        raise CheckpointError(f"{path}: missing key {_CONV1}")
    in_ch = state[_CONV1].shape[1]
    if in_ch not in (4, 5):
        raise CheckpointError(f"{path}: {_CONV1} has {in_ch} input channels; expected 5 (or 4 for stage 0)")
    return CheckpointInfo(variant=variant, single_object=in_ch == 4, aux_key_head="key_proj2.key_proj.weight" in state)


def widen_single_object(
    state: Mapping[str, Tensor], *, init: str = "zeros", generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Append the "others" input channel to a stage-0 value encoder (conv1 [64, 4, 7, 7] -> [64, 5, 7, 7]).

    Args:
        state: state_dict with a 4-channel ``value_encoder.conv1.weight`` (5-channel input is returned unchanged).
        init: "zeros" (official evaluation scripts; the model then ignores the new channel) or "orthogonal"
            (official training ``load_network``).
        generator: RNG for the orthogonal slice.

    Returns:
        A new dict; other entries are shared with ``state``.
    """
    out = dict(state)
    w = out[_CONV1]
    if w.shape[1] != 4:
        return out
    pads = torch.zeros(w.shape[0], 1, *w.shape[2:], dtype=w.dtype, device=w.device)  # [64, 1, 7, 7]
    if init == "orthogonal":
        nn.init.orthogonal_(pads, generator=generator)
    elif init != "zeros":
        raise ValueError(f"init must be 'zeros' or 'orthogonal', got {init!r}")
    out[_CONV1] = torch.cat([w, pads], dim=1)  # [64, 5, 7, 7]
    return out


def _fmt(keys: list[str]) -> str:
    if not keys:
        return "none"
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def check_and_load(
    model: nn.Module,
    state: Mapping[str, Tensor],
    *,
    path: str | Path = "<checkpoint>",
    optional_prefixes: tuple[str, ...] = (),
) -> None:
    """Strict ``load_state_dict`` that reports every missing / unexpected key and every shape mismatch.

    Args:
        model: the network to fill.
        state: its weights.
        path: named in the error message.
        optional_prefixes: model keys allowed to be absent from ``state`` (they keep their current values).

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(optional_prefixes)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: weights do not fit the {type(model).__name__} model; "
            f"missing keys ({len(missing)}): {_fmt(missing)}; unexpected keys ({len(unexpected)}): "
            f"{_fmt(unexpected)}; shape mismatches ({len(shapes)}): {_fmt(shapes)}"
        )
    skipped = [k for k in own if k not in state]
    if skipped:
        logger.info(
            "%s: %d optional entries not in the file keep their initial values: %s", path, len(skipped), _fmt(skipped)
        )
        full = dict(own)
        full.update(state)
        state = full
    model.load_state_dict(state, strict=True)
