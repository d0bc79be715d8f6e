"""The Cutie network (Cheng et al., "Putting the Object Back into Video Object Segmentation", CVPR 2024) with
named stages.

Re-expresses hkchengrex/Cutie:cutie/model/cutie.py and big_modules.py (``PixelEncoder``, ``KeyProjection``,
``MaskEncoder``, ``PixelFeatureFuser``, ``MaskDecoder``) and aux_modules.py, with the same parameter names, shapes,
registration order and arithmetic, so that the official ``cutie-base-*.pth`` (527 state_dict entries) and
``cutie-small-*.pth`` (359) load strictly and give the official numbers. One class serves training and
inference; there is no ``forward``.

A frame goes through (shapes for the base model; h = H/16, C = 256):

1. ``encode_key``: the pixel encoder (ResNet-50 or -18 to layer3, ``res2`` naming) gives f16 / f8 / f4;
   ``pix_feat_proj`` projects f16 to the pixel feature [B, C, h, w]; ``key_proj`` (its own 1x1 projection, then
   3x3 heads) gives the key [B, 64, h, w], the shrinkage d^2 + 1 and the selection sigmoid(e) (XMem's);
2. ``read_memory`` (shared with XMem): the anisotropic-L2 affinity over the memory, the pixel readout
   [B, N, C, h, w];
3. ``fuse_pixel``: the readout plus a 1x1 projection of [sensory memory, last mask, others' last mask], fused with
   the pixel feature;
4. ``read_objects``: the object transformer refines it with the object queries built from the object memory;
5. ``segment``: the mask decoder (skips from f8 / f4) gives per-object logits at stride 4 and updates the sensory
   memory; sigmoid, soft aggregation, x4 bilinear upsampling of the aggregated logits, softmax;
6. ``encode_value``: on a memory frame, the mask encoder (ResNet-18 on [RGB, mask, others], fused with the pixel
   feature) gives the object's value [B, N, C, h, w] and deep-updates the sensory memory; the object summarizer
   gives its summaries [B, N, 16, C+1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.families.cutie.blocks import (
    FusionBlock,
    GroupConv2d,
    SensoryDeepUpdater,
    SensoryUpdater,
    UpsampleBlock,
)
from corrvos.families.cutie.transformer import ObjectSummarizer, ObjectTransformer
from corrvos.models.backbones import KeyEncoder, MaskResNet18
from corrvos.models.common import StagedModel, aggregate_logits
from corrvos.types import QueryFeatures, SegmentOutput

__all__ = ["Cutie", "others_mask"]

PIXEL_DIM = VALUE_DIM = SENSORY_DIM = EMBED_DIM = 256
KEY_DIM = 64
UP_DIMS = (256, 128, 128)


def others_mask(masks: Tensor) -> Tensor:
    """For each object of [B, N, H, W], the clamped sum of the other objects' masks (Cutie's rule)."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)


class _KeyProjection(nn.Module):
    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.pix_feat_proj = nn.Conv2d(in_dim, PIXEL_DIM, kernel_size=1)
        self.key_proj = nn.Conv2d(PIXEL_DIM, KEY_DIM, kernel_size=3, padding=1)
        self.d_proj = nn.Conv2d(PIXEL_DIM, 1, kernel_size=3, padding=1)
        self.e_proj = nn.Conv2d(PIXEL_DIM, KEY_DIM, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, f16: Tensor, *, need_s: bool, need_e: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x = self.pix_feat_proj(f16)  # [B, C, h, w]
        shrinkage = self.d_proj(x) ** 2 + 1 if need_s else None  # [B, 1, h, w]
        selection = torch.sigmoid(self.e_proj(x)) if need_e else None  # [B, CK, h, w]
        return self.key_proj(x), shrinkage, selection


class _MaskEncoder(MaskResNet18):
    """ResNet-18 trunk on [RGB, mask, others] (bias-free convs), fused with the pixel feature; sensory deep update."""

    def __init__(self, *, single_object: bool) -> None:
        super().__init__(1 if single_object else 2, bias=False)
        self.fuser = FusionBlock(PIXEL_DIM, self.out_dim, VALUE_DIM)
        self.sensory_update = SensoryDeepUpdater(VALUE_DIM, SENSORY_DIM)


class _PixelFuser(nn.Module):
    def __init__(self, *, single_object: bool) -> None:
        super().__init__()
        self.fuser = FusionBlock(PIXEL_DIM, VALUE_DIM, EMBED_DIM)
        self.sensory_compress = GroupConv2d(SENSORY_DIM + (1 if single_object else 2), VALUE_DIM, kernel_size=1)


class _DecoderSkips(nn.Module):
    def __init__(self, in_dims: tuple[int, int], out_dims: tuple[int, int]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(nn.Conv2d(i, o, kernel_size=1) for i, o in zip(in_dims, out_dims, strict=True))


class _MaskDecoder(nn.Module):
    def __init__(self, f8_dim: int, f4_dim: int) -> None:
        super().__init__()
        self.sensory_update = SensoryUpdater((UP_DIMS[0], UP_DIMS[1], UP_DIMS[2] + 1), SENSORY_DIM, SENSORY_DIM)
        self.decoder_feat_proc = _DecoderSkips((f8_dim, f4_dim), UP_DIMS[:2])
        self.up_16_8 = UpsampleBlock(UP_DIMS[0], UP_DIMS[1])
        self.up_8_4 = UpsampleBlock(UP_DIMS[1], UP_DIMS[2])
        self.pred = nn.Conv2d(UP_DIMS[2], 1, kernel_size=3, padding=1)


class _SensoryPredictor(nn.Module):
    """Training-only auxiliary head: per-object logits from the sensory memory, a dot product with the pixel
    feature plus a bias (``aux_computer.sensory_aux``)."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = GroupConv2d(SENSORY_DIM, PIXEL_DIM + 1, kernel_size=1)

    def forward(self, pix_feat: Tensor, sensory: Tensor) -> Tensor:
        """(pix_feat [B, C, h, w], sensory [B, N, CS, h, w]) -> logits [B, N, h, w]."""
        x = self.projection(sensory)  # [B, N, C+1, h, w]
        return (pix_feat.unsqueeze(1) * x[:, :, :-1]).sum(dim=2) + x[:, :, -1]


class _AuxComputer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sensory_aux = _SensoryPredictor()


class Cutie(StagedModel):
    """Cutie with named stages (module docstring).

    Args:
        key_encoder: the pixel encoder, "resnet50" (Cutie-base) or "resnet18" (Cutie-small).
        single_object: a stage-0 network whose mask encoder and pixel fuser take the object's mask only.

    Attributes:
        key_dim, value_dim, hidden_dim: CK = 64, CV = 256, CS = 256 (the ``VOSModel`` contract; the sensory memory
            is the hidden state).
        f16_dim: channels of the pixel encoder's stride-16 features (1024 base, 256 small).
        pixel_dim: channels of the projected pixel feature (256).
    """

    family = "cutie"

    def __init__(self, *, key_encoder: str = "resnet50", single_object: bool = False, width: int = 64) -> None:
        super().__init__()
        if width != 64:
            raise ValueError(f"Cutie has no narrow variant: width must be 64, got {width}")
        self.single_object = single_object
        self.key_dim, self.value_dim, self.hidden_dim = KEY_DIM, VALUE_DIM, SENSORY_DIM
        self.pixel_dim, self.embed_dim = PIXEL_DIM, EMBED_DIM
        self.pixel_encoder = KeyEncoder(key_encoder, 64)
        self.f16_dim = self.pixel_encoder.f16_dim
        self.pix_feat_proj = nn.Conv2d(self.f16_dim, PIXEL_DIM, kernel_size=1)
        self.key_proj = _KeyProjection(self.f16_dim)
        self.mask_encoder = _MaskEncoder(single_object=single_object)
        self.mask_decoder = _MaskDecoder(self.pixel_encoder.f8_dim, self.pixel_encoder.f4_dim)
        self.pixel_fuser = _PixelFuser(single_object=single_object)
        self.object_transformer = ObjectTransformer(EMBED_DIM)
        self.object_summarizer = ObjectSummarizer(VALUE_DIM, EMBED_DIM, 16, pe_scale=32, pe_temperature=128)
        self.aux_computer = _AuxComputer()

    @property
    def decoder(self) -> nn.Module:
        """The mask decoder under the name the engines look for (``InferenceCore`` stores its weights channels-last:
        4-6 % faster on the CPU, probabilities equal to 3e-7). Not a second registration: the state_dict keeps only
        ``mask_decoder.*``."""
        return self.mask_decoder

    def init_args(self) -> dict:
        return {"key_encoder": self.pixel_encoder.arch, "single_object": self.single_object}

    def imagenet_encoders(self) -> tuple[nn.Module, nn.Module]:
        """The modules that ImageNet weights initialise (``corrvos.models.load_imagenet_backbones``): the pixel
        encoder (ResNet-50 / -18) and the mask encoder's ResNet-18 trunk."""
        return self.pixel_encoder, self.mask_encoder

    # ------------------------------------------------------------------------------------------ stages

    def encode_key(self, frame: Tensor, *, need_shrinkage: bool = True, need_selection: bool = True) -> QueryFeatures:
        """Normalised frames [B, 3, H, W] -> features, pixel feature and key of each frame (``QueryFeatures``;
        ``pix_feat`` is the projected pixel feature [B, C, h, w])."""
        f16, f8, f4 = self.pixel_encoder(frame)
        key, shrinkage, selection = self.key_proj(f16, need_s=need_shrinkage, need_e=need_selection)
        return QueryFeatures(
            key=key, f16=f16, f8=f8, f4=f4, shrinkage=shrinkage, selection=selection, pix_feat=self.pix_feat_proj(f16)
        )

    def encode_value(
        self,
        frame: Tensor,
        pix_feat: Tensor,
        masks: Tensor,
        sensory: Tensor,
        *,
        deep_update: bool = True,
        chunk_size: int = -1,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A memory frame's value, updated sensory memory and object summaries.

        Args:
            frame: [B, 3, H, W] normalised frame.
            pix_feat: [B, C, h, w] its pixel feature.
            masks: [B, N, H, W] object probabilities.
            sensory: [B, N, CS, h, w] sensory memory.
            deep_update: update the sensory memory from the value (else it is returned unchanged).
            chunk_size: objects encoded at a time (< 1: all; Cutie's ``chunk_size``, which bounds the memory; the
                "others" channel still comes from every object).

        Returns:
            (value [B, N, CV, h, w], sensory [B, N, CS, h, w], summaries [B, N, 16, C+1]).
        """
        enc = self.mask_encoder
        g = masks.unsqueeze(2) if self.single_object else torch.stack([masks, others_mask(masks)], dim=2)
        b, n = g.shape[:2]
        step = n if chunk_size < 1 else chunk_size
        values, sensories = [], []
        for i in range(0, n, step):
            part = g[:, i : i + step]  # [B, n_c, 1|2, H, W]
            n_c = part.shape[1]
            x = torch.cat([frame.unsqueeze(1).expand(-1, n_c, -1, -1, -1), part], dim=2).flatten(
                0, 1
            )  # [B*n_c, 5, H, W]
            x = enc.trunk(x)  # [B*n_c, 256, h, w]
            value = enc.fuser(pix_feat, x.view(b, n_c, *x.shape[1:]))  # [B, n_c, CV, h, w]
            values.append(value)
            sensories.append(enc.sensory_update(value, sensory[:, i : i + step]) if deep_update else None)
        value = values[0] if len(values) == 1 else torch.cat(values, dim=1)  # [B, N, CV, h, w]
        if deep_update:
            sensory = sensories[0] if len(sensories) == 1 else torch.cat(sensories, dim=1)
        return value, sensory, self.object_summarizer(masks, value)

    def fuse_pixel(self, pix_feat: Tensor, readout: Tensor, sensory: Tensor, last_mask: Tensor) -> Tensor:
        """Pixel readout [B, N, CV, h, w] + the sensory memory and the last masks [B, N, H', W'] (area-resized to
        h x w), fused with the pixel feature -> [B, N, C, h, w]."""
        fuser = self.pixel_fuser
        last = F.interpolate(last_mask, size=sensory.shape[-2:], mode="area")  # [B, N, h, w]
        extra = last.unsqueeze(2) if self.single_object else torch.stack([last, others_mask(last)], dim=2)
        compressed = fuser.sensory_compress(torch.cat([sensory, extra], dim=2))  # [B, N, CV, h, w]
        return fuser.fuser(pix_feat, readout + compressed)

    def read_objects(
        self, pixel: Tensor, obj_memory: Tensor, *, selector: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """The object transformer: (pixel [B, N, C, h, w], object memory [B, N, T, 16, C+1]) -> (refined pixel
        readout [B, N, C, h, w], its auxiliary mask logits [B, N, h, w] per level, for training)."""
        return self.object_transformer(pixel, obj_memory, selector=selector)

    def segment(
        self,
        readout16: Tensor,
        feats: QueryFeatures,
        hidden: Tensor | None = None,
        *,
        selector: Tensor | None = None,
        update_hidden: bool = True,
        chunk_size: int = -1,
    ) -> SegmentOutput:
        """Decode every object (``chunk_size`` at a time; < 1: all), sigmoid, mask by ``selector`` [B, N],
        soft-aggregate, upsample x4; update the sensory memory ``hidden`` [B, N, CS, h, w] (returned as ``hidden``
        when ``update_hidden``)."""
        dec = self.mask_decoder
        b, n = readout16.shape[:2]
        f8, f4 = (t(f) for t, f in zip(dec.decoder_feat_proc.transforms, (feats.f8, feats.f4), strict=True))
        step = n if chunk_size < 1 else chunk_size
        all_logits, hiddens = [], []
        for i in range(0, n, step):
            r16 = readout16[:, i : i + step]  # [B, n_c, C, h, w]
            n_c = r16.shape[1]
            p8 = dec.up_16_8(r16, f8)  # [B, n_c, 128, 2h, 2w]
            p4 = dec.up_8_4(p8, f4)  # [B, n_c, 128, 4h, 4w]
            with torch.autocast(device_type=p4.device.type, enabled=False):
                logits = dec.pred(F.relu(p4.flatten(0, 1).float()))  # [B*n_c, 1, 4h, 4w]
            logits = logits.view(b, n_c, *logits.shape[-2:])  # [B, n_c, 4h, 4w]
            all_logits.append(logits)
            if update_hidden and hidden is not None:
                p4 = torch.cat([p4, logits.unsqueeze(2)], dim=2)
                hiddens.append(dec.sensory_update([r16, p8, p4], hidden[:, i : i + step]))
        logits = all_logits[0] if len(all_logits) == 1 else torch.cat(all_logits, dim=1)  # [B, N, 4h, 4w]
        new_hidden = None if not hiddens else hiddens[0] if len(hiddens) == 1 else torch.cat(hiddens, dim=1)
        prob = torch.sigmoid(logits)  # [B, N, 4h, 4w]
        if selector is not None:
            prob = prob * selector[:, :, None, None].to(prob.dtype)
        agg = aggregate_logits(prob.float())  # [B, N+1, 4h, 4w]
        agg = F.interpolate(agg, scale_factor=4, mode="bilinear", align_corners=False)  # [B, N+1, H, W]
        return SegmentOutput(logits=agg, prob=F.softmax(agg, dim=1), hidden=new_hidden)

    def sensory_logits(self, pix_feat: Tensor, sensory: Tensor) -> Tensor:
        """Training-only auxiliary logits [B, N, h, w] from the sensory memory (``aux_computer``)."""
        return self.aux_computer.sensory_aux(pix_feat, sensory)
