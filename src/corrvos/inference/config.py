"""Inference options in one typed object, with each model family's official defaults.

``InferenceConfig`` groups every option of :class:`corrvos.inference.InferenceCore`. ``inference_config_for(model)``
starts from the defaults of the model's family (STCN's eval scripts or XMem's ``eval.py``) and applies overrides.
Options a family does not use are ignored by it (STCN has no long-term memory; XMem has no temporary last frame);
``flip_aug`` is refused by the families whose recurrence cannot take a batch of two. Cutie's defaults (its
``eval_config.yaml``: top_k 30, long-term memory off, 480-pixel shorter side, ...) are in its card; the long-term
settings T_max / T_min / P / LT_max have the same defaults in XMem and Cutie.

| option | STCN | XMem | paper symbol / meaning |
|---|---|---|---|
| ``top_k`` | 20 | 30 | k of the top-k softmax over memory |
| ``mem_every`` | 5 | 5 | r: a memory frame every r frames |
| ``include_last`` | False | (unused) | STCN: keep the previous frame as a temporary memory entry |
| ``deep_update_every`` | (unused) | -1 | deep update of the sensory memory every k frames (-1: on memory frames) |
| ``enable_long_term`` | (unused) | True | XMem: consolidate working memory into long-term memory |
| ``min_mid_term_frames`` | (unused) | 5 | T_min: frames kept in working memory after consolidation |
| ``max_mid_term_frames`` | (unused) | 10 | T_max: working-memory frames that trigger consolidation |
| ``num_prototypes`` | (unused) | 128 | P: prototypes per consolidation |
| ``max_long_term_elements`` | (unused) | 10000 | LT_max: long-term elements before least-used eviction |
| ``count_long_term_usage`` | (unused) | None | count long-term usage (None: eval.py's rule; Cutie counts) |
| ``long_term_buffer`` | (unused) | (unused) | Cutie (2000): elements below LT_max - P that a long-term eviction frees |
| ``max_mem_frames`` | (unused) | (unused) | Cutie (5): frames kept without long-term memory, the first included |
| ``stagger_updates`` | (unused) | (unused) | Cutie (5): sensory updates by the decoder per ``mem_every`` frames |
| ``chunk_size`` | (unused) | (unused) | Cutie (-1 = all): objects processed at a time |
| ``flip_aug`` | (refused) | (refused) | Cutie (False): average with the mirror image (two memories) |
| ``internal_size`` | None | 480 | shorter side the frames are resized to before the network (None = as given) |
| ``resize_mode`` | "bicubic" | "bilinear" | interpolation of that resize (STCN's YouTube-VOS driver / XMem's eval.py) |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["InferenceConfig", "driver_defaults", "inference_config_for"]


@dataclass(frozen=True)
class InferenceConfig:
    """Options of one video's streaming inference (see the module table for the defaults of each family)."""

    top_k: int | None = 20
    mem_every: int = 5
    include_last: bool = False
    deep_update_every: int = -1
    enable_long_term: bool = True
    min_mid_term_frames: int = 5
    max_mid_term_frames: int = 10
    num_prototypes: int = 128
    max_long_term_elements: int = 10000
    count_long_term_usage: bool | None = None
    long_term_buffer: int = 2000
    max_mem_frames: int = 5
    stagger_updates: int = 5
    chunk_size: int = -1
    flip_aug: bool = False
    internal_size: int | None = None
    resize_mode: str = "bicubic"
    amp: str = "none"
    channels_last_decoder: bool = True

    def __post_init__(self) -> None:
        if self.mem_every < 1:
            raise ValueError(f"mem_every must be >= 1, got {self.mem_every}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.deep_update_every == 0 or self.deep_update_every < -1:
            raise ValueError(f"deep_update_every must be -1 (with memory frames) or >= 1, got {self.deep_update_every}")
        if not 1 <= self.min_mid_term_frames < self.max_mid_term_frames:
            raise ValueError(
                f"need 1 <= min_mid_term_frames < max_mid_term_frames, got {self.min_mid_term_frames} and "
                f"{self.max_mid_term_frames}"
            )
        if self.max_mem_frames < 2 or self.stagger_updates < 1:
            raise ValueError(
                f"max_mem_frames must be >= 2 and stagger_updates >= 1, got {self.max_mem_frames} and "
                f"{self.stagger_updates}"
            )
        if self.long_term_buffer < 0:
            raise ValueError(f"long_term_buffer must be >= 0, got {self.long_term_buffer}")
        if self.chunk_size == 0 or self.chunk_size < -1:
            raise ValueError(f"chunk_size must be -1 (every object at once) or >= 1, got {self.chunk_size}")
        if self.num_prototypes < 1:
            raise ValueError(f"num_prototypes must be >= 1, got {self.num_prototypes}")
        if self.enable_long_term and self.max_long_term_elements <= self.num_prototypes:
            raise ValueError(
                f"max_long_term_elements ({self.max_long_term_elements}) must exceed num_prototypes "
                f"({self.num_prototypes})"
            )
        if self.internal_size is not None and self.internal_size < 16:
            raise ValueError(f"internal_size must be >= 16 or None, got {self.internal_size}")
        if self.resize_mode not in ("bilinear", "bicubic"):
            raise ValueError(f"resize_mode must be 'bilinear' or 'bicubic', got {self.resize_mode!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be one of 'none', 'bf16', 'fp16', got {self.amp!r}")

    def replace(self, **changes: Any) -> InferenceConfig:
        """A copy with ``changes`` applied and validated (``None`` is a value: ``top_k=None`` = full softmax)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def driver_defaults(model: Any) -> dict[str, Any]:
    """Conventions of the official evaluation drivers of ``model``'s family that are not engine options (e.g.
    whether YouTube-VOS runs on every frame, ``youtube_all_frames``)."""
    from corrvos.families import family_of

    return dict(family_of(model).driver_defaults)


def inference_config_for(model_or_family: Any, **overrides: Any) -> InferenceConfig:
    """The family's official defaults with ``overrides`` applied.

    Args:
        model_or_family: a model (its ``family`` attribute is used) or a family name of the table.
        **overrides: any :class:`InferenceConfig` field; ``None`` is a value (``internal_size=None`` keeps the frame
            size, ``top_k=None`` reads the full softmax), so pass only the fields to change.
    """
    from corrvos.families import family, family_of

    entry = family(model_or_family) if isinstance(model_or_family, str) else family_of(model_or_family)
    unknown = sorted(set(overrides) - set(InferenceConfig.field_names()))
    if unknown:
        raise TypeError(f"unknown inference options {unknown}; valid: {InferenceConfig.field_names()}")
    return InferenceConfig(**entry.inference_defaults).replace(**overrides)
