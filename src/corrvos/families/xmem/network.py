"""The XMem network (Cheng & Schwing, ECCV 2022) with named stage methods, on the corrvos ``VOSModel`` contract.

Re-expresses hkchengrex/XMem:model/network.py, model/modules.py (``ValueEncoder``, ``KeyProjection``,
``Decoder``, ``HiddenReinforcer``, ``HiddenUpdater``: :mod:`corrvos.families.xmem.modules`, re-exported here),
model/group_modules.py and model/memory_util.py, with the same arithmetic so that official weights give the same
numbers. One class serves training and inference; there is no ``forward(mode, ...)``.

Differences from STCN (:mod:`corrvos.families.stcn.network`):

- ``key_proj`` has two more heads on f16: ``d_proj`` gives the shrinkage s = d^2 + 1 >= 1 of a position used as a
  memory key, ``e_proj`` the selection e = sigmoid(.) in [0, 1]^CK of a position used as a query (both feed
  :func:`corrvos.models.memory.similarity`, XMem's "anisotropic L2");
- the value encoder's ResNet-18 trunk has no conv biases and its ``fuser`` takes ``cat([f16, layer3])`` (f16 first);
- there is no ``key_comp``: the decoder's ``fuser`` takes ``cat([f16, readout, hidden])``;
- every object carries a hidden ("sensory") state h [CH, h, w] at stride 16, updated by a convolutional GRU in the
  decoder (``hidden_update``, every segmented frame) and in the value encoder (``hidden_reinforce``, on a "deep
  update"). Gates are [forget | update | new] and h' = f * h * (1 - u) + u * n (XMem's variant: the forget gate
  multiplies h, there is no reset gate). ``hidden_dim=0`` removes both ("XMem-no-sensory").

The state_dict keys, shapes and order equal the official ones (registration order key_encoder, value_encoder,
key_proj, decoder; 412 entries, 402 without the hidden state), so official files load with strict
``load_state_dict``. Small variants (corrvos's own, not official): ``key_encoder="resnet18"`` and ``width``
(official 64) shrink the backbones, the decoder and, unless given, ``value_dim`` / ``hidden_dim`` (all by
``width / 64``); their state_dict has the same names and order with smaller shapes. Channel counts written in this
module are those of the default network. Shapes follow :mod:`corrvos.models.base`: frames [B, 3, H, W] (H, W
multiples of 16).
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrvos.families.xmem.modules import (
    HiddenReinforcer,
    HiddenUpdater,
    XMemDecoder,
    XMemKeyProjection,
    XMemValueEncoder,
    gru_update,
)
from corrvos.models.backbones import KeyEncoder
from corrvos.models.common import StagedModel, aggregate, object_mask_inputs, repeat_per_object
from corrvos.models.layers import KeyProjection
from corrvos.types import QueryFeatures, SegmentOutput

__all__ = [
    "HiddenReinforcer",
    "HiddenUpdater",
    "XMem",
    "XMemDecoder",
    "XMemKeyProjection",
    "XMemValueEncoder",
    "gru_update",
]


class XMem(StagedModel):
    """XMem with stage methods encode_key / encode_value / read_memory / segment (see :mod:`corrvos.models.base`).

    Args:
        single_object: stage-0 model whose value encoder takes [RGB, mask] (4 channels) and ignores other objects.
        key_dim: CK, channels of keys and selections.
        value_dim: CV, channels of memory values; ``None``: 8 * width (512, official).
        hidden_dim: CH, channels of the per-object hidden state; 0 for the no-sensory variant; ``None``: ``width``
            (64, official).
        aux_key_head: add a ``key_proj2`` head (3x3 conv C16 -> CK on f16, as VOS_Correspondence adds to STCN) whose
            keys only the "official" correspondence losses use; corrvos's extension, absent from official XMem files.
        key_encoder: "resnet50" (official) or "resnet18" (corrvos's small variant, same state_dict names).
        width: base channel width (official 64, a positive multiple of 8): the ResNet stages of both encoders and
            the decoder's widths scale by ``width / 64``, and so do ``value_dim`` / ``hidden_dim`` when not given.

    Attributes:
        f16_dim: C16, channels of the key encoder's stride-16 features (1024 for the official network).
    """

    family = "xmem"

    def __init__(
        self,
        *,
        single_object: bool = False,
        key_dim: int = 64,
        value_dim: int | None = None,
        hidden_dim: int | None = None,
        aux_key_head: bool = False,
        key_encoder: str = "resnet50",
        width: int = 64,
    ) -> None:
        super().__init__()
        self.single_object = single_object
        self.width = width
        self.key_dim = key_dim
        self.value_dim = 8 * width if value_dim is None else value_dim
        self.hidden_dim = width if hidden_dim is None else max(hidden_dim, 0)
        self.key_encoder = KeyEncoder(key_encoder, width)
        enc = self.key_encoder
        self.f16_dim = enc.f16_dim
        self.value_encoder = XMemValueEncoder(
            1 if single_object else 2, self.value_dim, self.hidden_dim, f16_dim=self.f16_dim, width=width
        )
        self.key_proj = XMemKeyProjection(self.f16_dim, key_dim)
        self.decoder = XMemDecoder(
            self.value_dim,
            self.hidden_dim,
            f16_dim=self.f16_dim,
            f8_dim=enc.f8_dim,
            f4_dim=enc.f4_dim,
            mid_dim=8 * width,  # 512 at width 64
        )
        self.key_proj2 = KeyProjection(self.f16_dim, key_dim) if aux_key_head else None  # after the official modules
        self.aux_key_head = aux_key_head

    def init_args(self) -> dict:
        """Constructor keyword arguments (recorded in corrvos checkpoints)."""
        names = ("single_object", "key_dim", "value_dim", "hidden_dim", "aux_key_head", "width")
        return {**{name: getattr(self, name) for name in names}, "key_encoder": self.key_encoder.arch}

    @property
    def has_aux_key_head(self) -> bool:
        """Whether the model has the ``key_proj2`` head (keys for the "official" correspondence losses)."""
        return self.key_proj2 is not None

    def encode_key(self, frame: Tensor, *, need_shrinkage: bool = True, need_selection: bool = True) -> QueryFeatures:
        """Key-encoder features of a batch of frames.

        Args:
            frame: [B, 3, H, W] ImageNet-normalised images, H and W multiples of 16.
            need_shrinkage: compute the shrinkage (needed for frames that enter the memory).
            need_selection: compute the selection (needed for query frames).

        Returns:
            QueryFeatures with key [B, CK, h, w], f16 [B, C16, h, w], f8 [B, C8, 2h, 2w], f4 [B, C4, 4h, 4w]
            (1024 / 512 / 256 channels for the official network), shrinkage [B, 1, h, w] and selection
            [B, CK, h, w] (``None`` when not asked for), key2 [B, CK, h, w] (models with ``key_proj2`` only).
        """
        f16, f8, f4 = self.key_encoder(frame)
        return QueryFeatures(
            key=self.key_proj(f16),
            f16=f16,
            f8=f8,
            f4=f4,
            shrinkage=self.key_proj.shrinkage(f16) if need_shrinkage else None,
            selection=self.key_proj.selection(f16) if need_selection else None,
            key2=None if self.key_proj2 is None else self.key_proj2(f16),
        )

    def encode_value(
        self, frame: Tensor, f16: Tensor, masks: Tensor, hidden: Tensor | None = None, *, deep_update: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Memory values of N objects in one frame, and the deep update of their hidden state.

        The value encoder of object k sees [RGB, mask_k, sum of the other objects' masks] (zeros when N = 1;
        single-object models: [RGB, mask_k]).

        Args:
            frame: [B, 3, H, W] normalised images.
            f16: [B, C16, h, w] key-encoder features of the same frames.
            masks: [B, N, H, W] soft or hard object masks.
            hidden: [B, N, CH, h, w] hidden state; needed for a deep update (``zero_hidden`` for new objects).
            deep_update: run ``hidden_reinforce`` on the values (only when CH > 0).

        Returns:
            (values [B, N, CV, h, w], new hidden [B, N, CH, h, w] after a deep update, else ``hidden`` as given).

        Raises:
            ValueError: a deep update of a model with a hidden state was asked for without ``hidden``.
        """
        b, n = masks.shape[:2]
        reinforce = deep_update and self.value_encoder.hidden_reinforce is not None
        if reinforce and hidden is None:
            raise ValueError("XMem.encode_value: a deep update needs the hidden state (see corrvos.models.zero_hidden)")
        if n == 0:
            return f16.new_zeros(b, 0, self.value_dim, *f16.shape[-2:]), hidden  # [B, 0, CV, h, w]
        v = self.value_encoder(
            repeat_per_object(frame, n),  # [B*N, 3, H, W]
            repeat_per_object(f16, n),  # [B*N, C16, h, w]
            object_mask_inputs(masks, single_object=self.single_object),  # [B*N, extra, H, W]
        )  # [B*N, CV, h, w]
        if reinforce:
            h = self.value_encoder.hidden_reinforce(v, hidden.flatten(0, 1))  # [B*N, CH, h, w]
            hidden = h.view(b, n, *h.shape[1:])  # [B, N, CH, h, w]
        return v.view(b, n, *v.shape[1:]), hidden  # [B, N, CV, h, w]

    def segment(
        self,
        readout16: Tensor,
        feats: QueryFeatures,
        hidden: Tensor | None = None,
        *,
        selector: Tensor | None = None,
        update_hidden: bool = True,
    ) -> SegmentOutput:
        """Decode every object, take the sigmoid, mask by ``selector``, soft-aggregate; update the hidden state.

        Args:
            readout16: [B, N, CV, h, w] memory readout of the query frame.
            feats: the query frame's QueryFeatures.
            hidden: [B, N, CH, h, w] hidden state (required when CH > 0).
            selector: [B, N] 1 for real objects, 0 for padding slots (their probability is zeroed); ``None`` = all.
            update_hidden: return the decoder's new hidden state (``False`` skips ``hidden_update``).

        Returns:
            SegmentOutput: logits and prob [B, N+1, H, W] (background first) and the new hidden [B, N, CH, h, w]
            when ``update_hidden`` and CH > 0, else ``None``.

        Raises:
            ValueError: CH > 0 and no ``hidden`` was given.
        """
        if self.hidden_dim > 0 and hidden is None:
            raise ValueError("XMem.segment needs the hidden state (see corrvos.models.zero_hidden)")
        b, n = readout16.shape[:2]
        logits, new_hidden = self.decoder(
            readout16.flatten(0, 1),  # [B*N, CV, h, w]
            None if self.hidden_dim == 0 else hidden.flatten(0, 1),  # [B*N, CH, h, w]
            repeat_per_object(feats.f16, n),  # [B*N, C16, h, w]
            feats.f8,
            feats.f4,
            update_hidden=update_hidden,
        )
        out = aggregate(torch.sigmoid(logits.view(b, n, *logits.shape[-2:])), selector)  # [B, N+1, H, W]
        if new_hidden is not None:
            out.hidden = new_hidden.view(b, n, *new_hidden.shape[1:])  # [B, N, CH, h, w]
        return out
