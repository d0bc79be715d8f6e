"""STCN's entry of the family table: its two layouts and how their checkpoints are told apart, the official
evaluation options, the official training presets, and its part of the demo / CPU recipes.

| architecture | network | detected by |
|---|---|---|
| ``stcn`` | :class:`~corrvos.families.stcn.network.STCN` (hkchengrex/STCN) | ``key_comp.*`` / ``decoder.compress.*`` |
| ``stcn_corr`` | ``STCN``, variant "corr" (wenguanwang/VOS_Correspondence) | ``decoder.fuser.*``, no XMem key heads |

A stage-0 (single-object) file has a 4-channel ``value_encoder.conv1``; corrvos's small variants are read from
the shapes (:func:`corrvos.models.backbones.key_encoder_args`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import Tensor

from corrvos.data.sampling import SkipCurriculum
from corrvos.data.transforms import ClipAugmentConfig
from corrvos.families.base import Architecture, Family
from corrvos.families.stcn import CARD
from corrvos.families.stcn.memory import MemoryBank
from corrvos.families.stcn.network import STCN
from corrvos.models.backbones import key_encoder_args
from corrvos.models.common import value_conv1_single_object

__all__ = ["FAMILY", "STCN_BL30K_CURRICULUM", "STCN_CURRICULUM"]

#: STCN main training (DAVIS + YouTube-VOS): 5, then 10, 15, 20, 25 and 5 at 10/20/30/40/90 % of training.
STCN_CURRICULUM = SkipCurriculum(5, (0.1, 0.2, 0.3, 0.4, 0.9), (10, 15, 20, 25, 5))
#: STCN BL30K pre-training: as main training but back to 5 at 80 %.
STCN_BL30K_CURRICULUM = SkipCurriculum(5, (0.1, 0.2, 0.3, 0.4, 0.8), (10, 15, 20, 25, 5))

_OTHER_FAMILY_KEYS = ("key_proj.d_proj.", "key_proj.e_proj.", "decoder.hidden_update.")


def _common(state: Mapping[str, Tensor], variant: str) -> dict[str, Any]:
    return {
        "variant": variant,
        "single_object": value_conv1_single_object(state),
        "aux_key_head": "key_proj2.key_proj.weight" in state,
        **key_encoder_args(state),
    }


_STCN_MODULES = ("key_encoder", "value_encoder", "key_proj", "key_proj2", "key_comp", "decoder")


def _foreign(state: Mapping[str, Tensor]) -> bool:
    """Keys of another family: XMem's key heads, or a top-level module STCN does not have."""
    return any(k.startswith(_OTHER_FAMILY_KEYS) or k.split(".", 1)[0] not in _STCN_MODULES for k in state)


def detect_stcn(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """The public layout: ``key_comp`` or ``decoder.compress`` (and none of XMem's key heads)."""
    if _foreign(state) or not ("key_comp.weight" in state or any(k.startswith("decoder.compress.") for k in state)):
        return None
    return _common(state, "stcn")


def detect_stcn_corr(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """The VOS_Correspondence layout: ``decoder.fuser`` and no ``key_comp``."""
    if _foreign(state) or "key_comp.weight" in state or not any(k.startswith("decoder.fuser.") for k in state):
        return None
    return _common(state, "corr")


def _bl30k(size: int) -> ClipAugmentConfig:
    """STCN's BL30K recipe: the video recipe with crop scale 0.25-1.0."""
    return replace(ClipAugmentConfig.video(size), crop_scale=(0.25, 1.0))


def _recipe(raw: dict[str, Any], steps: int) -> None:
    """The demo recipe's STCN settings: batch 4, STCN's three-frame clips with two objects, short skips."""
    raw["optim"]["weight_decay"] = 1.0e-7
    stage = raw["stages"][0]
    stage["batch_size"] = 4
    stage["data"].update(num_frames=3, max_objects=2, max_skip_values=[2, 4], max_skip_fractions=[0.5])


FAMILY = Family(
    card=CARD,
    architectures=(
        Architecture("stcn", STCN, {"variant": "stcn"}, detect_stcn, "STCN (hkchengrex/STCN), 405 state_dict entries"),
        Architecture(
            "stcn_corr",
            STCN,
            {"variant": "corr"},
            detect_stcn_corr,
            "STCN with VOS_Correspondence's fused decoder and key_proj2 head (413/415 entries)",
            aux_key_head=True,
            aliases=("stcn-corr", "corr"),
        ),
    ),
    memory=MemoryBank,
    augment={"video": ClipAugmentConfig.video, "bl30k": _bl30k, "static": ClipAugmentConfig.static_images},
    curricula={"video": STCN_CURRICULUM, "bl30k": STCN_BL30K_CURRICULUM},
    recipe=_recipe,
    tiny_args={"key_encoder": "resnet18", "width": 16},
)
