"""The architecture table: one entry per network corrvos can build, load and detect from a state_dict's keys.

A new model is one entry here (its class, its default constructor arguments, and a ``detect`` function that reads
its constructor arguments from a state_dict, or says it is not this architecture) plus one memory implementation in
:mod:`corrvos.inference.memory`. ``build_model`` / ``load_model`` (:mod:`corrvos.models`), the trainer and the CLI
go through this table only; nothing else branches on the architecture.

| name | class | detected by |
|---|---|---|
| ``stcn`` | :class:`~corrvos.models.stcn.STCN` (hkchengrex/STCN) | ``key_comp.*`` / ``decoder.compress.*`` |
| ``stcn_corr`` | ``STCN``, variant "corr" (wenguanwang/VOS_Correspondence) | ``decoder.fuser.*``, no XMem key heads |
| ``xmem`` | :class:`~corrvos.models.xmem.XMem` (hkchengrex/XMem) | ``key_proj.d_proj.*`` / ``key_proj.e_proj.*`` |

Every architecture marks a single-object (stage-0) file the same way: ``value_encoder.conv1.weight`` with 4 input
channels instead of 5. Every ``detect`` also reads corrvos's small variants from the shapes
(:func:`corrvos.models.backbones.key_encoder_args`): ``key_encoder.conv1.weight`` has ``width`` output channels
and ``key_encoder.res2.0.conv3.weight`` (a Bottleneck) marks the "resnet50" key encoder, its absence "resnet18".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from corrvos.errors import CheckpointError
from corrvos.models.backbones import key_encoder_args
from corrvos.models.stcn import STCN
from corrvos.models.xmem import XMem, detect_xmem

__all__ = ["ALIASES", "ARCHITECTURES", "Architecture", "arch_of", "canonical_arch", "detect_architecture"]

CONV1 = "value_encoder.conv1.weight"
_MAX_LISTED = 20


@dataclass(frozen=True)
class Architecture:
    """One entry of the table.

    Attributes:
        name: canonical name ("stcn", "stcn_corr", "xmem"), recorded in corrvos checkpoints as ``arch``.
        model_class: the ``nn.Module`` class; ``model_class(**kwargs)`` builds the network.
        defaults: constructor arguments of a fresh ``build_model(name)``.
        detect: state_dict -> constructor arguments, or ``None`` when the keys are not this architecture's.
        summary: one line for help texts.
    """

    name: str
    model_class: type[nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    detect: Callable[[Mapping[str, Tensor]], dict[str, Any] | None] = lambda state: None
    summary: str = ""

    def build(self, **kwargs: Any) -> nn.Module:
        """A fresh network with ``defaults`` updated by ``kwargs``."""
        return self.model_class(**{**self.defaults, **kwargs})


def _single_object(state: Mapping[str, Tensor]) -> bool:
    return CONV1 in state and state[CONV1].dim() == 4 and state[CONV1].shape[1] == 4


def _is_xmem(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("key_proj.d_proj.", "key_proj.e_proj.", "decoder.hidden_update.")) for k in state)


def _detect_stcn(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    if _is_xmem(state) or not ("key_comp.weight" in state or any(k.startswith("decoder.compress.") for k in state)):
        return None
    return {
        "variant": "stcn",
        "single_object": _single_object(state),
        "aux_key_head": "key_proj2.key_proj.weight" in state,
        **key_encoder_args(state),
    }


def _detect_stcn_corr(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    if _is_xmem(state) or "key_comp.weight" in state or not any(k.startswith("decoder.fuser.") for k in state):
        return None
    return {
        "variant": "corr",
        "single_object": _single_object(state),
        "aux_key_head": "key_proj2.key_proj.weight" in state,
        **key_encoder_args(state),
    }


#: canonical name -> entry. Order matters only for error messages.
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("stcn", STCN, {"variant": "stcn"}, _detect_stcn, "STCN (hkchengrex/STCN), 405 state_dict entries"),
        Architecture(
            "stcn_corr",
            STCN,
            {"variant": "corr"},
            _detect_stcn_corr,
            "STCN with VOS_Correspondence's fused decoder and key_proj2 head (413/415 entries)",
        ),
        Architecture("xmem", XMem, {}, detect_xmem, "XMem (hkchengrex/XMem), 412 entries (402 without sensory memory)"),
    )
}

#: other accepted spellings.
ALIASES = {"stcn-corr": "stcn_corr", "corr": "stcn_corr", "xmem-no-sensory": "xmem"}


def canonical_arch(name: str) -> str:
    """The canonical table name of ``name`` (case-insensitive; aliases accepted). Raises ValueError if unknown."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted([*ARCHITECTURES, *ALIASES])}")
    return key


def detect_architecture(state: Mapping[str, Tensor], *, path: Any = "<checkpoint>") -> tuple[str, dict[str, Any]]:
    """Find the architecture of a state_dict and its constructor arguments.

    Returns:
        (canonical name, constructor kwargs), e.g. ("xmem", {"single_object": False, "key_dim": 64, ...}).

    Raises:
        CheckpointError: no entry (or several) recognise the keys, or the value encoder's conv1 is malformed.
    """
    found = [(a.name, kw) for a in ARCHITECTURES.values() if (kw := a.detect(state)) is not None]
    if len(found) != 1:
        listed = sorted(state)[:_MAX_LISTED]
        what = "unknown architecture: no entry" if not found else f"ambiguous: {[n for n, _ in found]}"
        raise CheckpointError(
            f"{path}: {what} of the table matches these keys (STCN: key_comp / decoder.compress; "
            f"VOS_Correspondence: decoder.fuser; XMem: key_proj.d_proj / key_proj.e_proj); first keys: {listed}"
        )
    if CONV1 not in state:
        raise CheckpointError(f"{path}: missing key {CONV1}")
    in_ch = state[CONV1].shape[1] if state[CONV1].dim() == 4 else -1
    if in_ch not in (4, 5):
        raise CheckpointError(f"{path}: {CONV1} has {in_ch} input channels; expected 5 (or 4 for stage 0)")
    return found[0]


def arch_of(model: nn.Module) -> str:
    """The canonical architecture name of a built network (detected from its own state_dict keys)."""
    return detect_architecture(model.state_dict(), path=type(model).__name__)[0]
