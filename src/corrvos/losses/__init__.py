"""Training losses of corrvos: L_SEG, L_PCL and L_OCL (paper mode), ``temp`` and ``cross_key`` (official mode).

Pure functions, one module per loss; ``objective.compute_losses`` combines them into a ``LossOutput`` with named
terms. Nothing here imports training code. See docs/training.md for the equations and the paper-symbol
table of ``LossConfig``.

The names below are imported lazily (on first attribute access), so that ``corrvos.losses.config`` (and with it
``corrvos.config``) can be imported without torch and the model stack that the loss functions need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corrvos.losses.config import LossConfig
    from corrvos.losses.object_coherence import object_coherence_loss
    from corrvos.losses.objective import LossOutput, compute_losses, linear_ramp
    from corrvos.losses.official import cross_key_loss, temp_loss
    from corrvos.losses.pixel_consistency import pixel_consistency_loss
    from corrvos.losses.segmentation import segmentation_loss
    from corrvos.losses.views import align_to_view2, make_second_view

_LAZY = {
    "LossConfig": "corrvos.losses.config",
    "LossOutput": "corrvos.losses.objective",
    "align_to_view2": "corrvos.losses.views",
    "compute_losses": "corrvos.losses.objective",
    "cross_key_loss": "corrvos.losses.official",
    "linear_ramp": "corrvos.losses.objective",
    "make_second_view": "corrvos.losses.views",
    "object_coherence_loss": "corrvos.losses.object_coherence",
    "pixel_consistency_loss": "corrvos.losses.pixel_consistency",
    "segmentation_loss": "corrvos.losses.segmentation",
    "temp_loss": "corrvos.losses.official",
}

__all__ = [
    "LossConfig",
    "LossOutput",
    "align_to_view2",
    "compute_losses",
    "cross_key_loss",
    "linear_ramp",
    "make_second_view",
    "object_coherence_loss",
    "pixel_consistency_loss",
    "segmentation_loss",
    "temp_loss",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'corrvos.losses' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
