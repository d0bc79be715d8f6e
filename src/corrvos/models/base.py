"""The ``VOSModel`` protocol: the stage methods every matching-based model of corrvos offers, and the shape legend.

Shape legend (every docstring and reshape comment in :mod:`corrvos.models` uses it):

- B batch, T time (memory frames), N objects (slots; the aggregated output has N+1 channels, background first);
- C channels: CK = key channels (64), CV = value channels (512); f16 / f8 / f4 are backbone features at
  strides 16 / 8 / 4 with C16 / C8 / C4 = 1024 / 512 / 256 channels (the official networks; corrvos's small
  variants, ``key_encoder="resnet18"`` or ``width`` < 64, have fewer: ``model.f16_dim``, ``model.value_dim``);
- H x W image size (multiples of 16), h x w = H/16 x W/16 feature size; HW / hw flattened positions;
- brackets give a tensor's shape, e.g. [B, N, CV, T, h, w].

The clip unroller (training) and ``InferenceCore`` (inference) drive a model only through these methods; the
model's ``forward`` raises ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from corrvos.types import QueryFeatures, SegmentOutput

__all__ = ["VOSModel", "zero_hidden"]


@runtime_checkable
class VOSModel(Protocol):
    """A space-time memory network seen through its stages (STCN, XMem).

    Attributes:
        family: the model family ("stcn", "xmem"): picks the inference memory and the default inference options.
        key_dim: CK, channels of the matching keys.
        value_dim: CV, channels of the memory values.
        hidden_dim: CH, channels of the per-object hidden (sensory) state; 0 for models without one (STCN).
        f16_dim: C16, channels of the key encoder's stride-16 features (1024 for ResNet-50 at width 64).
        single_object: the value encoder ignores the other objects' masks (stage-0 models).
    """

    family: str
    key_dim: int
    value_dim: int
    hidden_dim: int
    f16_dim: int
    single_object: bool

    def init_args(self) -> dict:
        """The constructor's keyword arguments, recorded in corrvos checkpoints (``type(model)(**init_args())``)."""
        ...

    def encode_key(self, frame: Tensor, *, need_shrinkage: bool = True, need_selection: bool = True) -> QueryFeatures:
        """[B, 3, H, W] normalised frames -> key [B, CK, h, w] (with XMem's shrinkage / selection when asked for and
        the model has them) and backbone features (see QueryFeatures)."""
        ...

    def encode_value(
        self, frame: Tensor, f16: Tensor, masks: Tensor, hidden: Tensor | None = None, *, deep_update: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """frame [B, 3, H, W], f16 [B, C16, h, w], masks [B, N, H, W], hidden [B, N, CH, h, w] or None ->
        (values [B, N, CV, h, w], hidden [B, N, CH, h, w] after the deep update, or the input ``hidden`` unchanged
        when ``deep_update`` is False or the model has no hidden state)."""
        ...

    def read_memory(
        self,
        mem_key: Tensor,
        mem_value: Tensor,
        query_key: Tensor,
        *,
        mem_shrinkage: Tensor | None = None,
        query_selection: Tensor | None = None,
        top_k: int | None = None,
    ) -> Tensor:
        """mem_key [B, CK, T, h, w], mem_value [B, N, CV, T, h, w], query_key [B, CK, h, w] (+ shrinkage
        [B, 1, T, h, w] and selection [B, CK, h, w]) -> readout [B, N, CV, h, w] with the model's similarity."""
        ...

    def segment(
        self,
        readout16: Tensor,
        feats: QueryFeatures,
        hidden: Tensor | None = None,
        *,
        selector: Tensor | None = None,
        update_hidden: bool = True,
    ) -> SegmentOutput:
        """readout [B, N, CV, h, w] + query features (+ hidden [B, N, CH, h, w]) -> SegmentOutput with logits and
        prob [B, N+1, H, W] and, when ``update_hidden`` and the model has a hidden state, the new hidden."""
        ...


def zero_hidden(model: VOSModel, batch: int, num_objects: int, h: int, w: int, *, like: Tensor) -> Tensor | None:
    """The initial hidden state [B, N, CH, h, w]: float32 zeros on ``like``'s device, or ``None`` when CH = 0."""
    if model.hidden_dim <= 0:
        return None
    return torch.zeros(batch, num_objects, model.hidden_dim, h, w, dtype=torch.float32, device=like.device)
