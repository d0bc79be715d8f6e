"""XMem's entry of the family table: its layout and how its checkpoints are told apart, the official evaluation
options (working + long-term memory), the official training presets, and its part of the demo / CPU recipes.

| architecture | network | detected by |
|---|---|---|
| ``xmem`` | :class:`~.network.XMem` (hkchengrex/XMem) | ``key_proj.d_proj.*`` / ``key_proj.e_proj.*`` |

"XMem-no-sensory" files (no ``decoder.hidden_update``) are the same architecture with ``hidden_dim=0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from corrvos.data.sampling import SkipCurriculum
from corrvos.data.transforms import AffineRange, ClipAugmentConfig
from corrvos.errors import CheckpointError
from corrvos.families.base import Architecture, Family
from corrvos.families.xmem import CARD
from corrvos.families.xmem.memory import XMemMemory
from corrvos.families.xmem.network import XMem
from corrvos.models.backbones import key_encoder_args
from corrvos.models.common import value_conv1_single_object

__all__ = ["FAMILY", "XMEM_BL30K_CURRICULUM", "XMEM_CURRICULUM", "detect_xmem", "xmem_augment"]

#: XMem main training: 5, then 10, 15 and 5 at 10/30/90 % of the iterations.
XMEM_CURRICULUM = SkipCurriculum(5, (0.1, 0.3, 0.9), (10, 15, 5))
#: XMem BL30K pre-training: back to 5 at 80 %.
XMEM_BL30K_CURRICULUM = SkipCurriculum(5, (0.1, 0.3, 0.8), (10, 15, 5))


def xmem_augment(size: int, *, bl30k: bool = False, finetune: bool = False) -> ClipAugmentConfig:
    """XMem's video recipe: bilinear; BL30K and the final fine-tuning iterations drop the per-frame affine."""
    frame_affine = AffineRange() if (bl30k or finetune) else AffineRange(degrees=15.0, shear=10.0)
    return ClipAugmentConfig(
        size=(size, size) if isinstance(size, int) else tuple(size),
        crop_scale=(0.25, 1.0) if bl30k else (0.36, 1.0),
        frame_affine=frame_affine,
        interpolation="linear",
    )


def _scaled(steps: int, fraction: float) -> int:
    return max(1, round(steps * fraction))


def _recipe(raw: dict[str, Any], steps: int) -> None:
    """The demo recipe's XMem settings: deep updates, XMem's weight decay and Dice, batch 2, 8-frame clips with 3
    memory frames and 3 objects, XMem's sampler and augmentation, the fine-tune phase over the last 1/6."""
    raw["model"]["deep_update_prob"] = 0.2
    raw["optim"]["weight_decay"] = 0.05
    raw["loss"].update(FAMILY.loss_defaults)
    stage = raw["stages"][0]
    stage["batch_size"] = 2
    stage["data"].update(
        num_frames=8,
        num_ref_frames=3,
        max_objects=3,
        sampling="window",
        finetune_iterations=_scaled(steps, 40 / 240),
        max_skip_values=[2, 3, 4, 2],
        max_skip_fractions=[0.1, 0.3, 0.9],
    )


def _cpu_recipe(raw: dict[str, Any], steps: int) -> None:
    """The CPU recipe's XMem change: 5-frame clips (more, faster steps in the same minutes)."""
    raw["stages"][0]["data"]["num_frames"] = 5


_XMEM_MARKERS = ("key_proj.d_proj.weight", "key_proj.e_proj.weight")
_XMEM_SIZES = ("key_proj.key_proj.weight", "value_encoder.fuser.block2.conv2.weight", "value_encoder.conv1.weight")


_XMEM_MODULES = ("key_encoder", "value_encoder", "key_proj", "key_proj2", "decoder")


def _only_modules(state: Mapping[str, Tensor], modules: tuple[str, ...]) -> bool:
    return all(k.split(".", 1)[0] in modules for k in state)


def detect_xmem(state: Mapping[str, Tensor]) -> dict | None:
    """The ``XMem`` constructor arguments of an official or corrvos XMem state_dict, or ``None`` for other models.

    Read as the official loader does: hidden_dim = ``decoder.hidden_update.transform.weight.shape[0] // 3`` (0 when
    that key is absent), key_dim and value_dim from the output channels of ``key_proj.key_proj`` and
    ``value_encoder.fuser.block2.conv2``; a 4-channel ``value_encoder.conv1`` marks a single-object file. The key
    encoder and width of corrvos's small variants come from the shapes too (:func:`key_encoder_args`).

    Raises:
        CheckpointError: the file has XMem's ``d_proj`` / ``e_proj`` heads but lacks a key the sizes are read from.
    """
    if not all(k in state for k in _XMEM_MARKERS) or not _only_modules(state, _XMEM_MODULES):
        return None  # another family (one with the same key heads and further modules) is not XMem
    missing = [k for k in _XMEM_SIZES if k not in state]
    if missing:
        raise CheckpointError(f"XMem state_dict without {missing}: cannot read the network's sizes")
    transform = state.get("decoder.hidden_update.transform.weight")
    return {
        "single_object": value_conv1_single_object(state),
        "key_dim": state["key_proj.key_proj.weight"].shape[0],
        "value_dim": state["value_encoder.fuser.block2.conv2.weight"].shape[0],
        "hidden_dim": 0 if transform is None else transform.shape[0] // 3,
        "aux_key_head": "key_proj2.key_proj.weight" in state,
        **key_encoder_args(state),
    }


FAMILY = Family(
    card=CARD,
    architectures=(
        Architecture(
            "xmem",
            XMem,
            {},
            detect_xmem,
            "XMem (hkchengrex/XMem), 412 entries (402 without sensory memory)",
            aliases=("xmem-no-sensory",),
        ),
    ),
    memory=XMemMemory,
    augment={
        "video": xmem_augment,
        "bl30k": lambda size: xmem_augment(size, bl30k=True),
        "static": ClipAugmentConfig.static_images,
    },
    curricula={"video": XMEM_CURRICULUM, "bl30k": XMEM_BL30K_CURRICULUM},
    loss_defaults={"dice_weight": 1.0, "dice_mode": "objects"},
    recipe=_recipe,
    tiny_args={"key_encoder": "resnet18", "width": 16},
    cpu_recipe=_cpu_recipe,
)
