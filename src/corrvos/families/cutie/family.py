"""Cutie's entry of the family table: its layout and how its checkpoints are told apart, its inference memory and
recurrence. Training Cutie is not implemented yet (``trainable=False``: the trainer refuses it by name).

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

from corrvos.errors import CheckpointError
from corrvos.families.base import Architecture, Family
from corrvos.families.cutie import CARD
from corrvos.families.cutie.memory import CutieMemory
from corrvos.families.cutie.network import Cutie
from corrvos.families.cutie.recurrence import CutieRecurrence
from corrvos.models.backbones import key_encoder_args

__all__ = ["FAMILY", "detect_cutie"]

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
    encoders=("pixel_encoder", "mask_encoder"),
    tiny_args={"key_encoder": "resnet18"},
    trainable=False,
)
