"""The STCN network (public hkchengrex/STCN and the wenguanwang/VOS_Correspondence variant) with named stage methods.

Re-expresses hkchengrex/STCN:model/network.py, model/eval_network.py and model/modules.py (``ValueEncoder``,
``Decoder``), and wenguanwang/VOS_Correspondence:model/network.py (the "corr" variant). One class serves training
and inference; there is no ``forward(mode, ...)``.

Variants (``STCN(variant=...)``):

- ``"stcn"``: the public network. The query's f16 is compressed by ``key_comp`` (1024 -> 512) and the decoder
  runs ``compress = ResBlock(1024 -> 512)`` on ``cat([readout, f16_thin])``. 405 state_dict entries.
- ``"corr"``: the correspondence-training network. No ``key_comp`` and no ``decoder.compress``; the decoder
  starts with ``fuser = FeatureFusionBlock(1536 -> 512)`` on ``cat([f16, readout])``, and an auxiliary
  ``key_proj2`` head (same shape as ``key_proj``) gives the keys the correspondence losses use. 415 entries
  (413 without ``key_proj2``, the released evaluation layout: ``aux_key_head=False``).

The state_dict keys, shapes and order equal the official ones (registration order key_encoder, value_encoder,
key_proj, [key_proj2], [key_comp], decoder), so official files load with strict ``load_state_dict``.

Small variants (corrvos's own, not official): ``key_encoder="resnet18"`` and ``width`` (official 64) shrink the
backbones, ``value_dim`` and the decoder (every width scales by ``width / 64``); the state_dict keeps the same
names and order with smaller shapes. The channel counts above are those of the default network.

Soft aggregation over objects, the per-object broadcast and the value encoder's mask inputs are shared with XMem
(:mod:`corrvos.models.common`).

Shapes follow :mod:`corrvos.models.base`: frames [B, 3, H, W] (H, W multiples of 16), h = H/16.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.models.backbones import KeyEncoder, MaskResNet18
from corrvos.models.common import StagedModel, aggregate, aggregate_logits, object_mask_inputs, repeat_per_object
from corrvos.models.layers import FeatureFusionBlock, KeyProjection, ResBlock, UpsampleBlock
from corrvos.types import QueryFeatures, SegmentOutput

__all__ = [
    "STCN",
    "VARIANTS",
    "FusedDecoder",
    "STCNDecoder",
    "ValueEncoder",
    "aggregate",
    "aggregate_logits",
]

logger = logging.getLogger(__name__)

VARIANTS = ("stcn", "corr")


class ValueEncoder(MaskResNet18):
    """Mask ResNet-18 trunk + ``fuser = FeatureFusionBlock(256 + 1024 -> 512)`` on ``cat([layer3, key f16])``.

    Args:
        extra_channels: 2 for [target, others] masks; 1 for single-object (stage-0) models.
        value_dim: CV, output channels.
        f16_dim: C16, channels of the key encoder's f16 (1024 for ResNet-50 at width 64).
        width: stem channels of the trunk (official 64).
    """

    def __init__(self, extra_channels: int = 2, value_dim: int = 512, *, f16_dim: int = 1024, width: int = 64) -> None:
        super().__init__(extra_channels, width=width)
        # project=True: the official conv of the skip, kept when a ResNet-18 key encoder makes in == out (4w + 4w)
        self.fuser = FeatureFusionBlock(self.out_dim + f16_dim, value_dim, project=True)

    def forward(self, image: Tensor, key_f16: Tensor, masks: Tensor) -> Tensor:
        """``image`` [B, 3, H, W], ``key_f16`` [B, C16, h, w], ``masks`` [B, extra, H, W] -> [B, CV, h, w]."""
        x = self.trunk(torch.cat([image, masks], dim=1))  # [B, 4*width, h, w]
        return self.fuser(x, key_f16)


class _DecoderTail(nn.Module):
    """The part shared by both decoders: two upsampling steps, ``pred`` and the final x4 bilinear upsampling.

    At width 64 (official) the stride-16 input has ``mid_dim`` = 512 channels and the upsampling path 256.
    """

    def _add_tail(self, f8_dim: int, f4_dim: int, mid_dim: int) -> None:
        """Register ``up_16_8``, ``up_8_4`` and ``pred`` (after the subclass's first module, the official order)."""
        self.up_16_8 = UpsampleBlock(f8_dim, mid_dim, mid_dim // 2)
        self.up_8_4 = UpsampleBlock(f4_dim, mid_dim // 2, mid_dim // 2)
        self.pred = nn.Conv2d(mid_dim // 2, 1, kernel_size=3, padding=1)

    def _upsample_predict(self, x: Tensor, f8: Tensor, f4: Tensor) -> Tensor:
        """``x`` [B*N, mid, h, w], ``f8`` [B, C8, 2h, 2w], ``f4`` [B, C4, 4h, 4w] -> logits [B*N, 1, H, W]."""
        x = self.up_8_4(f4, self.up_16_8(f8, x))  # [B*N, mid/2, 4h, 4w]
        x = self.pred(F.relu(x))  # [B*N, 1, 4h, 4w]
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


class STCNDecoder(_DecoderTail):
    """Public STCN decoder: ``compress`` ResBlock(1024 -> 512) on ``cat([readout, f16_thin])``, then upsampling.

    Args:
        value_dim: CV, channels of the readout.
        f8_dim, f4_dim: channels of the key encoder's skips (512, 256 for ResNet-50 at width 64).
        mid_dim: channels of ``f16_thin`` and of the compressed map (512 at width 64).
    """

    def __init__(self, value_dim: int = 512, *, f8_dim: int = 512, f4_dim: int = 256, mid_dim: int = 512) -> None:
        super().__init__()
        self.compress = ResBlock(value_dim + mid_dim, mid_dim, project=True)
        self._add_tail(f8_dim, f4_dim, mid_dim)

    def forward(self, readout16: Tensor, f16_thin: Tensor, f8: Tensor, f4: Tensor) -> Tensor:
        """``readout16`` [B*N, CV, h, w], ``f16_thin`` [B*N, mid, h, w], skips per frame -> [B*N, 1, H, W]."""
        x = self.compress(torch.cat([readout16, f16_thin], dim=1))  # [B*N, mid, h, w]
        return self._upsample_predict(x, f8, f4)


class FusedDecoder(_DecoderTail):
    """VOS_Correspondence decoder: ``fuser`` FeatureFusionBlock(1024 + 512 -> 512) on ``cat([f16, readout])``.

    Args:
        value_dim: CV, channels of the readout.
        f16_dim, f8_dim, f4_dim: channels of the key encoder's features (1024, 512, 256 for ResNet-50 at width 64).
        mid_dim: channels of the fused map (512 at width 64).
    """

    def __init__(
        self, value_dim: int = 512, *, f16_dim: int = 1024, f8_dim: int = 512, f4_dim: int = 256, mid_dim: int = 512
    ) -> None:
        super().__init__()
        self.fuser = FeatureFusionBlock(f16_dim + value_dim, mid_dim, project=True)
        self._add_tail(f8_dim, f4_dim, mid_dim)

    def forward(self, readout16: Tensor, f16: Tensor, f8: Tensor, f4: Tensor) -> Tensor:
        """``readout16`` [B*N, CV, h, w], ``f16`` [B*N, C16, h, w], skips per frame -> [B*N, 1, H, W]."""
        x = self.fuser(f16, readout16)  # [B*N, mid, h, w]
        return self._upsample_predict(x, f8, f4)


class STCN(StagedModel):
    """Space-time correspondence network (STCN) with stage methods encode_key / encode_value / read_memory / segment.

    Args:
        single_object: stage-0 model whose value encoder takes [RGB, mask] (4 channels) and ignores other objects.
        variant: "stcn" (hkchengrex/STCN) or "corr" (wenguanwang/VOS_Correspondence fused decoder).
        aux_key_head: build the ``key_proj2`` head; default ``True`` for "corr", ``False`` for "stcn".
        key_encoder: "resnet50" (official) or "resnet18" (corrvos's small variant, same state_dict names).
        width: base channel width (official 64, a positive multiple of 8). The ResNet stages of both encoders,
            ``value_dim`` (512 at 64) and the decoder's widths scale by ``width / 64``; ``key_dim`` stays 64.

    Attributes:
        key_dim, value_dim, hidden_dim: CK = 64, CV = 8 * width, CH = 0 (the ``VOSModel`` contract).
        f16_dim: C16, channels of the key encoder's stride-16 features (1024 for the official network).
    """

    family = "stcn"

    def __init__(
        self,
        *,
        single_object: bool = False,
        variant: str = "stcn",
        aux_key_head: bool | None = None,
        key_encoder: str = "resnet50",
        width: int = 64,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown STCN variant {variant!r}; expected one of {VARIANTS}")
        self.single_object = single_object
        self.variant = variant
        self.width = width
        self.key_encoder = KeyEncoder(key_encoder, width)
        enc = self.key_encoder
        self.key_dim, self.value_dim, self.hidden_dim, self.f16_dim = 64, 8 * width, 0, enc.f16_dim
        mid = 8 * width  # key_comp output and decoder width (512 at width 64)
        self.value_encoder = ValueEncoder(
            extra_channels=1 if single_object else 2, value_dim=self.value_dim, f16_dim=self.f16_dim, width=width
        )
        self.key_proj = KeyProjection(self.f16_dim, self.key_dim)
        if aux_key_head is None:
            aux_key_head = variant == "corr"
        self.key_proj2 = KeyProjection(self.f16_dim, self.key_dim) if aux_key_head else None
        self.aux_key_head = aux_key_head
        if variant == "stcn":
            self.key_comp = nn.Conv2d(self.f16_dim, mid, kernel_size=3, padding=1)
            self.decoder: STCNDecoder | FusedDecoder = STCNDecoder(
                self.value_dim, f8_dim=enc.f8_dim, f4_dim=enc.f4_dim, mid_dim=mid
            )
        else:
            self.key_comp = None
            self.decoder = FusedDecoder(
                self.value_dim, f16_dim=self.f16_dim, f8_dim=enc.f8_dim, f4_dim=enc.f4_dim, mid_dim=mid
            )

    def init_args(self) -> dict:
        """Constructor keyword arguments (recorded in corrvos checkpoints)."""
        return {
            "single_object": self.single_object,
            "variant": self.variant,
            "aux_key_head": self.aux_key_head,
            "key_encoder": self.key_encoder.arch,
            "width": self.width,
        }

    @property
    def has_aux_key_head(self) -> bool:
        """Whether the model has the ``key_proj2`` head (keys for the "official" correspondence losses)."""
        return self.key_proj2 is not None

    def encode_key(self, frame: Tensor, *, need_shrinkage: bool = True, need_selection: bool = True) -> QueryFeatures:
        """Key-encoder features of a batch of frames.

        Args:
            frame: [B, 3, H, W] ImageNet-normalised images, H and W multiples of 16.
            need_shrinkage, need_selection: ignored (STCN has neither; see ``VOSModel``).

        Returns:
            QueryFeatures with key [B, CK, h, w], f16 [B, C16, h, w], f8 [B, C8, 2h, 2w], f4 [B, C4, 4h, 4w]
            (1024 / 512 / 256 channels for the official network), f16_thin [B, 8*width, h, w] ("stcn" only) and
            key2 [B, CK, h, w] (models with ``key_proj2`` only).
        """
        f16, f8, f4 = self.key_encoder(frame)
        return QueryFeatures(
            key=self.key_proj(f16),
            f16=f16,
            f8=f8,
            f4=f4,
            f16_thin=None if self.key_comp is None else self.key_comp(f16),
            key2=None if self.key_proj2 is None else self.key_proj2(f16),
        )

    def encode_value(
        self, frame: Tensor, f16: Tensor, masks: Tensor, hidden: Tensor | None = None, *, deep_update: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Memory values of N objects in one frame.

        The value encoder of object k sees [RGB, mask_k, sum of the other objects' masks] (single-object models:
        [RGB, mask_k]).

        Args:
            frame: [B, 3, H, W] normalised images.
            f16: [B, C16, h, w] key-encoder features of the same frames.
            masks: [B, N, H, W] soft or hard object masks.
            hidden, deep_update: STCN has no hidden state; ``hidden`` is returned as given.

        Returns:
            (values [B, N, CV, h, w], ``hidden``).
        """
        b, n = masks.shape[:2]
        if n == 0:
            return f16.new_zeros(b, 0, self.value_dim, *f16.shape[-2:]), hidden  # [B, 0, CV, h, w]
        v = self.value_encoder(
            repeat_per_object(frame, n),  # [B*N, 3, H, W]
            repeat_per_object(f16, n),  # [B*N, C16, h, w]
            object_mask_inputs(masks, single_object=self.single_object),  # [B*N, extra, H, W]
        )  # [B*N, CV, h, w]
        return v.view(b, n, *v.shape[1:]), hidden  # [B, N, CV, h, w]

    def decode(self, readout16: Tensor, feats: QueryFeatures) -> Tensor:
        """Per-object decoder logits before the sigmoid.

        Args:
            readout16: [B, N, CV, h, w] memory readout.
            feats: the query frame's features (batch B).

        Returns:
            [B, N, H, W] logits.
        """
        b, n = readout16.shape[:2]
        r = readout16.flatten(0, 1)  # [B*N, CV, h, w]
        if self.key_comp is not None:
            if feats.f16_thin is None:
                raise ValueError("QueryFeatures.f16_thin is None but this STCN variant needs it")
            q16 = feats.f16_thin
        else:
            q16 = feats.f16
        q16 = repeat_per_object(q16, n)  # [B*N, C16, h, w]
        logits = self.decoder(r, q16, feats.f8, feats.f4)  # [B*N, 1, H, W]
        return logits.view(b, n, *logits.shape[-2:])  # [B, N, H, W]

    def segment(
        self,
        readout16: Tensor,
        feats: QueryFeatures,
        hidden: Tensor | None = None,
        *,
        selector: Tensor | None = None,
        update_hidden: bool = True,
    ) -> SegmentOutput:
        """Decode every object, take the sigmoid, mask by ``selector`` and soft-aggregate.

        Args:
            readout16: [B, N, CV, h, w] memory readout of the query frame.
            feats: the query frame's QueryFeatures.
            hidden, update_hidden: STCN has no hidden state (the output's ``hidden`` is ``None``).
            selector: [B, N] 1 for real objects, 0 for padding slots (their probability is zeroed); ``None`` = all.

        Returns:
            SegmentOutput: logits [B, N+1, H, W] and prob [B, N+1, H, W] aggregated over background (channel 0)
            and objects, ``prob = softmax(logits, dim=1)``.
        """
        prob = torch.sigmoid(self.decode(readout16, feats))  # [B, N, H, W]
        return aggregate(prob, selector)
