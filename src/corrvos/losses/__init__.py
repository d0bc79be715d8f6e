"""Training losses of corrvos: L_SEG, L_PCL and L_OCL (paper mode), ``temp`` and ``cross_key`` (official mode).

Pure functions, one module per loss; ``objective.compute_losses`` combines them into a ``LossOutput`` with named
terms. Nothing here imports training code. See the README ("Training losses") for the equations and the paper-symbol
table of ``LossConfig``.
"""

from __future__ import annotations

from corrvos.losses.config import LossConfig
from corrvos.losses.object_coherence import object_coherence_loss
from corrvos.losses.objective import LossOutput, compute_losses, linear_ramp
from corrvos.losses.official import cross_key_loss, temp_loss
from corrvos.losses.pixel_consistency import pixel_consistency_loss
from corrvos.losses.segmentation import segmentation_loss
from corrvos.losses.views import align_to_view2, make_second_view

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
