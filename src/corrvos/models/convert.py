"""Checkpoint reading and the explicit conversions needed to load official STCN / XMem weights.

Accepted files (all read by :func:`read_checkpoint`, i.e. :func:`corrvos.checkpoint_io.read_checkpoint`, with
``torch.load(..., weights_only=True)``; a pickle that carries code is refused):

- an official state_dict (hkchengrex/STCN ``stcn.pth``, ``stcn_s03.pth``, the stage-0 / stage-01 files, a
  wenguanwang/VOS_Correspondence file, or hkchengrex/XMem ``XMem.pth`` / ``XMem-s012.pth``), saved from
  ``model.module.state_dict()``;
- an official training checkpoint ``{"it", "network": state_dict, "optimizer", "scheduler"}``;
- a corrvos checkpoint ``{"format_version": int, "arch": str, "model": state_dict, ...}`` (trainer output).

A ``module.`` prefix (a state_dict saved from a DataParallel/DDP wrapper) is removed when every key has it.

Architecture detection, from the keys only, is the table of :mod:`corrvos.models.archs`.
``value_encoder.conv1.weight`` with 4 input channels marks a single-object (stage-0) file of any architecture;
:func:`widen_single_object` appends the fifth ("others") channel as the official code does: zeros in the
evaluation scripts (hkchengrex/STCN:eval_davis.py, XMem ``load_weights(init_as_zero_if_needed=True)``), an
``nn.init.orthogonal_`` slice in training (hkchengrex/STCN:model/model.py ``load_network``, XMem's default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from corrvos.checkpoint_io import read_checkpoint  # re-exported: the loader of every checkpoint
from corrvos.errors import CheckpointError

__all__ = ["check_and_load", "extract_state_dict", "read_checkpoint", "widen_single_object"]

logger = logging.getLogger(__name__)

_CONV1 = "value_encoder.conv1.weight"
_MAX_LISTED = 20


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
        for entry in ("arch", "model_args"):
            if entry in obj:
                meta[entry] = obj[entry]
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


def widen_single_object(
    state: Mapping[str, Tensor],
    *,
    init: str = "zeros",
    generator: torch.Generator | None = None,
    keys: tuple[str, ...] = (_CONV1,),
) -> dict[str, Tensor]:
    """Append the "others" input channel to a stage-0 value encoder (conv1 [64, 4, 7, 7] -> [64, 5, 7, 7]).

    Args:
        state: state_dict with a 4-channel ``keys[0]`` (5-channel input is returned unchanged).
        init: "zeros" (official evaluation scripts; the model then ignores the new channel) or "orthogonal"
            (official training ``load_network``).
        generator: RNG for the orthogonal slices (drawn in the order of ``keys``).
        keys: the weights [C_out, C_in, k, k] that take the object's mask channels (``Family.others_channel_keys``;
            default the value encoder's conv1 of STCN and XMem); each gains one input channel, appended last. The
            first must be the 4-channel (RGB + mask) convolution that tells a single-object network.

    Returns:
        A new dict; other entries are shared with ``state``.
    """
    if init not in ("zeros", "orthogonal"):
        raise ValueError(f"init must be 'zeros' or 'orthogonal', got {init!r}")
    out = dict(state)
    if out[keys[0]].shape[1] != 4:
        return out
    for key in keys:
        w = out[key]
        pads = torch.zeros(w.shape[0], 1, *w.shape[2:], dtype=w.dtype, device=w.device)  # [C_out, 1, k, k]
        if init == "orthogonal":
            nn.init.orthogonal_(pads, generator=generator)
        out[key] = torch.cat([w, pads], dim=1)  # [C_out, C_in + 1, k, k]
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
