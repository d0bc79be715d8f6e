"""The ``VOSModel`` protocol: the stage methods every matching-based model of corrvos offers, and the shape legend.

Shape legend (every docstring and reshape comment in :mod:`corrvos.models` uses it):

- B batch, T time (memory frames), N objects (slots; the aggregated output has N+1 channels, background first);
- C channels: CK = key channels (64), CV = value channels (512); f16 / f8 / f4 are backbone features at
  strides 16 / 8 / 4 with 1024 / 512 / 256 channels;
- H x W image size (multiples of 16), h x w = H/16 x W/16 feature size; HW / hw flattened positions;
- brackets give a tensor's shape, e.g. [B, N, CV, T, h, w].

The clip unroller (training) and ``InferenceCore`` (inference) drive a model only through these methods; the
model's ``forward`` raises ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from corrvos.types import QueryFeatures

__all__ = ["VOSModel"]


@runtime_checkable
class VOSModel(Protocol):
    """A space-time memory network seen through its stages.

    Attributes:
        key_dim: CK, channels of the matching keys.
        value_dim: CV, channels of the memory values.
        single_object: the value encoder ignores the other objects' masks (stage-0 models).
    """

    key_dim: int
    value_dim: int
    single_object: bool

    def encode_key(self, frame: Tensor) -> QueryFeatures:
        """[B, 3, H, W] normalised frames -> key [B, CK, h, w] and backbone features (see QueryFeatures)."""
        ...

    def encode_value(self, frame: Tensor, f16: Tensor, masks: Tensor) -> Tensor:
        """frame [B, 3, H, W], f16 [B, 1024, h, w], masks [B, N, H, W] -> values [B, N, CV, h, w]."""
        ...

    def read_memory(self, mem_key: Tensor, mem_value: Tensor, query_key: Tensor, *, top_k: int | None = None) -> Tensor:
        """mem_key [B, CK, T, h, w], mem_value [B, N, CV, T, h, w], query_key [B, CK, h, w] -> [B, N, CV, h, w]."""
        ...

    def segment(
        self, readout16: Tensor, feats: QueryFeatures, *, selector: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """readout [B, N, CV, h, w] + query features -> (logits [B, N+1, H, W], prob [B, N+1, H, W])."""
        ...
