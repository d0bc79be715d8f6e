"""``LossConfig``: every weight, ramp, temperature, grid size and dimension of the training losses.

Each field carries a one-line comment naming the paper symbol it stands for (Zhang et al., CVPR 2023, Eq. 12 and
Algorithms S1/S2 of the supplementary material) or the constant of the released code
(wenguanwang/VOS_Correspondence ``model/model.py`` / ``model/losses.py``) it reproduces. Values the paper leaves
open are marked ``[our choice]``; see docs/training.md for the symbol <-> field table.

Modes:
    ``"none"``: L_SEG only (plain STCN training).
    ``"paper"``: L = L_SEG + alpha * L_PCL + beta * L_OCL (Algorithms S1 and S2).
    ``"official"``: L = L_SEG + 0.20 f(it) temp + 0.04 f(it) cross_key, the released code's losses.

Iteration counters (``*_start``, ``*_end``) are training steps of the current stage, as in the release.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from corrvos.errors import ConfigError

__all__ = ["DICE_MODES", "MODES", "LossConfig"]

MODES = ("none", "paper", "official")
DICE_MODES = ("release", "objects")
_FIELD_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool}


@dataclass
class LossConfig:
    """Configuration of ``corrvos.losses.objective.compute_losses`` (see the module docstring)."""

    mode: str = "paper"  # "none" | "paper" (Alg. S1 + S2) | "official" (released temp + cross_key)

    # --- L_SEG (STCN BootstrappedCE, optional Dice) -------------------------------------------------------
    seg_weight: float = 1.0  # weight of L_SEG in Eq. 12 (1 in the paper)
    bootstrap_start: int = 20_000  # L_SEG: plain CE before this step (STCN start_warm)
    bootstrap_end: int = 70_000  # L_SEG: top-p fraction reaches bootstrap_top_p here (STCN end_warm)
    bootstrap_top_p: float = 0.15  # L_SEG: final fraction p of hardest pixels kept (STCN top_p)
    dice_weight: float = 0.0  # L_SEG: Dice term weight (release: 0.4; STCN and the paper: none)
    dice_smooth: float = 1.0  # L_SEG: Dice smoothing constant (release and XMem: 1)
    dice_mode: str = "release"  # L_SEG Dice: "release" (all present classes) | "objects" (XMem's: object channels)
    # --- L_SEG of a family with its own segmentation loss (Family.segmentation_loss; Cutie's point-sampled one) ----
    seg_points: int = 12544  # points per frame of a point-sampled L_SEG (Cutie train_num_points: 12544; s0 8192)
    seg_point_oversample: float = 3.0  # candidates per point (Cutie / PointRend oversample_ratio)
    seg_point_importance: float = 0.75  # fraction of the points picked by uncertainty (importance_sample_ratio)
    seg_aux_sensory_weight: float = 0.01  # weight of an auxiliary sensory head's CE and Dice (Cutie aux_loss)
    seg_aux_query_weight: float = 0.01  # weight of each object-transformer level's CE and Dice (Cutie aux_loss)

    # --- L_PCL, pixel-level consistency (Alg. S1, Eqs. 5-7) ------------------------------------------------
    pcl_weight: float = 0.2  # alpha of Eq. 12 [our choice: the release's weight of its analogue `temp`]
    pcl_ramp_start: int = 30_000  # alpha ramp: 0 before this step [our choice: the release's ramp]
    pcl_ramp_end: int = 90_000  # alpha ramp: full weight from this step [our choice: the release's ramp]
    pcl_grid_stride: int = 8  # R of Alg. S1: grid stride on the remote frame, in stride-16 feature cells
    pcl_temperature: float = 1.0  # tau dividing the L2 affinity of Eq. 5 (the paper shows none) [our choice]
    pcl_remote_frame: int = 0  # r of Alg. S1: index of the remote frame in the clip [our choice: first]
    pcl_frame_t1: int = -2  # t1 of Alg. S1: pseudo-label frame (Eq. 6) [our choice: second to last]
    pcl_frame_t2: int = -1  # t2 of Alg. S1: trained frame (Eq. 7) [our choice: last]
    pcl_label_within_clip: bool = False  # Eq. 6 argmax over the clip's own grid points only (paper: all)

    # --- L_OCL, object-level coherence (Alg. S2, Eqs. 8-11) ------------------------------------------------
    ocl_weight: float = 0.1  # beta of Eq. 12 [our choice]
    ocl_ramp_start: int = 30_000  # beta ramp: 0 before this step [our choice: the release's ramp]
    ocl_ramp_end: int = 90_000  # beta ramp: full weight from this step [our choice: the release's ramp]
    ocl_num_objects: int = 3  # N of Alg. S2: objects drawn from P (all when fewer) [our choice]
    ocl_embed_dim: int = 128  # D of Alg. S2: object embedding size [our choice]
    ocl_hidden_dim: int = 1024  # PROJ hidden width (1x1 conv - ReLU - 1x1 conv) [our choice]
    ocl_roi_size: int = 7  # RoIAlign output h x w of Eq. 8 [our choice]
    ocl_sampling_ratio: int = 2  # RoIAlign samples per bin side (<= 0: adaptive) [our choice]
    ocl_frame_p: int = 0  # p of Alg. S2: first of the two distant frames [our choice: first]
    ocl_frame_q: int = -1  # q of Alg. S2: second distant frame [our choice: last]
    ocl_similarity: str = "cosine"  # "cosine" | "dot": object affinity of Eq. 11 [our choice; pseudocode: dot]
    ocl_temperature: float = 0.07  # temperature of Eq. 11 (the paper shows none) [our choice]

    # --- "official" mode: released temp + cross_key (model/model.py, model/losses.py) ------------------------
    temp_weight: float = 0.20  # release weight of `temp` (the L_PCL analogue)
    cross_key_weight: float = 0.04  # release weight of `cross_key`
    official_ramp_start: int = 30_000  # release ramp f(it): 0 before 30K
    official_ramp_end: int = 90_000  # release ramp f(it): linear to 1 at 90K
    temp_grid: int = 8  # release GRID_SIZE: temp anchors per side on frame 0
    cross_key_grid: int = 4  # release GRID_SIZE_REF: cross_key points per side on frame 0
    official_log_eps: float = 1e-8  # release: NLL of log(softmax + eps)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_projection_head(self) -> bool:
        """Whether ``compute_losses`` needs a ``ProjectionHead`` (the PROJ of Alg. S2)."""
        return self.mode == "paper" and self.ocl_weight > 0

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid field."""
        for f in fields(self):  # annotations are strings here (postponed evaluation)
            value = getattr(self, f.name)
            if not isinstance(value, _FIELD_TYPES[f.type]) or (f.type != "bool" and isinstance(value, bool)):
                raise ConfigError(f"loss.{f.name}: must be {f.type}, got {value!r}")
        if self.mode not in MODES:
            raise ConfigError(f"loss.mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.dice_mode not in DICE_MODES:
            raise ConfigError(f"loss.dice_mode: {self.dice_mode!r} is not one of {', '.join(DICE_MODES)}")
        if self.ocl_similarity not in ("cosine", "dot"):
            raise ConfigError(f"loss.ocl_similarity: {self.ocl_similarity!r} is not 'cosine' or 'dot'")
        nonneg = (
            "seg_weight",
            "dice_weight",
            "pcl_weight",
            "ocl_weight",
            "temp_weight",
            "cross_key_weight",
            "dice_smooth",
            "official_log_eps",
            "seg_aux_sensory_weight",
            "seg_aux_query_weight",
            "bootstrap_start",
            "pcl_ramp_start",
            "ocl_ramp_start",
            "official_ramp_start",
        )
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name}: must be >= 0, got {getattr(self, name)}")
        positive = (
            "pcl_grid_stride",
            "pcl_temperature",
            "ocl_num_objects",
            "ocl_embed_dim",
            "ocl_hidden_dim",
            "ocl_roi_size",
            "ocl_temperature",
            "temp_grid",
            "cross_key_grid",
            "seg_points",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"loss.{name}: must be > 0, got {getattr(self, name)}")
        if self.seg_point_oversample < 1:
            raise ConfigError(f"loss.seg_point_oversample: must be >= 1, got {self.seg_point_oversample}")
        if not 0.0 <= self.seg_point_importance <= 1.0:
            raise ConfigError(f"loss.seg_point_importance: must be in [0, 1], got {self.seg_point_importance}")
        if not 0.0 < self.bootstrap_top_p <= 1.0:
            raise ConfigError(f"loss.bootstrap_top_p: must be in (0, 1], got {self.bootstrap_top_p}")
        for start, end in (
            ("bootstrap_start", "bootstrap_end"),
            ("pcl_ramp_start", "pcl_ramp_end"),
            ("ocl_ramp_start", "ocl_ramp_end"),
            ("official_ramp_start", "official_ramp_end"),
        ):
            if getattr(self, end) < getattr(self, start):
                raise ConfigError(
                    f"loss.{end}: must be >= loss.{start} ({getattr(self, end)} < {getattr(self, start)})"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (for checkpoints and YAML dumps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LossConfig:
        """Build from a mapping, raising ``ConfigError`` on unknown keys or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"loss: unknown option(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def official(cls, **overrides: Any) -> LossConfig:
        """The released code's recipe: temp + cross_key, ramp 30K -> 90K, and 0.4 Dice in L_SEG."""
        return cls(**{"mode": "official", "dice_weight": 0.4, **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> LossConfig:
        """Algorithms S1 + S2 with our defaults for what the paper leaves open (no Dice, as in STCN)."""
        return cls(**{"mode": "paper", **overrides})
