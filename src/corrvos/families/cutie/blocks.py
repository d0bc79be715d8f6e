"""Cutie's convolutional building blocks: per-object ("group") convolutions, channel-attention residual blocks,
feature fusion, the sensory-memory GRUs, and the mask decoder's upsampling blocks.

Re-expresses hkchengrex/Cutie:cutie/model/group_modules.py, channel_attn.py and modules.py with the same
parameter names and arithmetic, so that official weights give the official numbers; written independently.

Naming legend (Cutie's): ``x`` is a feature shared by the objects of a frame, [B, C, H, W]; ``g`` is a per-object
feature, [B, N, C, H, W]. A *group* convolution is a plain 2-D convolution applied to every object of ``g`` (the
object axis folded into the batch); its parameters are those of ``nn.Conv2d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CAResBlock",
    "FusionBlock",
    "GroupConv2d",
    "GroupResBlock",
    "SensoryDeepUpdater",
    "SensoryUpdater",
    "UpsampleBlock",
    "gru_update",
    "resize_groups",
]


def resize_groups(g: Tensor, ratio: float, mode: str) -> Tensor:
    """Rescale every object's map of ``g`` [B, N, C, H, W] by ``ratio`` ("bilinear" without corner alignment, or
    "area")."""
    b, n = g.shape[:2]
    flat = g.flatten(0, 1)  # [B*N, C, H, W]
    out = F.interpolate(flat, scale_factor=ratio, mode=mode, align_corners=False if mode == "bilinear" else None)
    return out.view(b, n, *out.shape[1:])  # [B, N, C, H', W']


class GroupConv2d(nn.Conv2d):
    """``nn.Conv2d`` applied to each object: [B, N, C, H, W] -> [B, N, C', H', W']."""

    def forward(self, g: Tensor) -> Tensor:
        b, n = g.shape[:2]
        out = super().forward(g.flatten(0, 1))  # [B*N, C', H', W']
        return out.view(b, n, *out.shape[1:])


class CAResBlock(nn.Module):
    """Residual block of two 3x3 convolutions (pre-activation ReLU) gated by efficient channel attention: a 1-D
    convolution over the channels' global means (kernel ``k`` from the channel count, odd), sigmoid, multiplied in.

    Args:
        in_dim, out_dim: channels; the skip is a 1x1 convolution when they differ.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        t = int((abs(math.log2(out_dim)) + 1) // 2)
        k = t if t % 2 else t + 1
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.downsample = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        out = self.conv2(F.relu(self.conv1(F.relu(x))))  # [B, C, H, W]
        b, c = out.shape[:2]
        w = self.conv(self.pool(out).view(b, 1, c))  # [B, 1, C]
        w = w.transpose(-1, -2).unsqueeze(-1).sigmoid()  # [B, C, 1, 1]
        return out * w + self.downsample(x)


class GroupResBlock(nn.Module):
    """Per-object residual block: two pre-activation 3x3 group convolutions, a 1x1 skip when the width changes."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = nn.Identity() if in_dim == out_dim else GroupConv2d(in_dim, out_dim, kernel_size=1)
        self.conv1 = GroupConv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = GroupConv2d(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, g: Tensor) -> Tensor:
        """[B, N, C_in, H, W] -> [B, N, C_out, H, W]."""
        return self.conv2(F.relu(self.conv1(F.relu(g)))) + self.downsample(g)


class _AddShared(nn.Module):
    """Adds a shared feature to every object: ``x_transform(x)`` broadcast over N plus ``g_transform(g)``.

    Kept as a module of its own so that the parameters are named ``distributor.x_transform`` /
    ``distributor.g_transform``, as in the official files.
    """

    def __init__(self, x_transform: nn.Module, g_transform: nn.Module) -> None:
        super().__init__()
        self.x_transform = x_transform
        self.g_transform = g_transform

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        return self.x_transform(x).unsqueeze(1) + self.g_transform(g)  # [B, N, C, H, W]


class FusionBlock(nn.Module):
    """Fuse a shared feature with per-object features: 1x1 projections of both, added, then two ``CAResBlock``.

    Args:
        x_dim: channels of the shared feature [B, x_dim, H, W].
        g_dim: channels of the per-object feature [B, N, g_dim, H, W].
        out_dim: output channels.
    """

    def __init__(self, x_dim: int, g_dim: int, out_dim: int) -> None:
        super().__init__()
        self.distributor = _AddShared(nn.Conv2d(x_dim, out_dim, kernel_size=1), GroupConv2d(g_dim, out_dim, 1))
        self.block1 = CAResBlock(out_dim, out_dim)
        self.block2 = CAResBlock(out_dim, out_dim)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """(x [B, x_dim, H, W], g [B, N, g_dim, H, W]) -> [B, N, out_dim, H, W]."""
        b, n = g.shape[:2]
        fused = self.distributor(x, g).flatten(0, 1)  # [B*N, C, H, W]
        fused = self.block2(self.block1(fused))
        return fused.view(b, n, *fused.shape[1:])


def gru_update(h: Tensor, values: Tensor) -> Tensor:
    """Cutie's (and XMem's) GRU step: values [B, N, 3*CS, h, w] = [forget | update | new] pre-activations;
    h' = sigmoid(f) * h * (1 - sigmoid(u)) + sigmoid(u) * tanh(n)."""
    cs = values.shape[2] // 3
    forget = torch.sigmoid(values[:, :, :cs])
    update = torch.sigmoid(values[:, :, cs : 2 * cs])
    new = torch.tanh(values[:, :, 2 * cs :])
    return forget * h * (1 - update) + update * new


class SensoryUpdater(nn.Module):
    """The decoder's sensory-memory update from its features at strides 16, 8 and 4 (area-downsampled to 16).

    Args:
        g_dims: channels of the three decoder features (the stride-4 one includes the mask logit).
        mid_dim: channels they are projected to and summed in.
        sensory_dim: CS, channels of the sensory memory.
    """

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.g16_conv = GroupConv2d(g_dims[0], mid_dim, kernel_size=1)
        self.g8_conv = GroupConv2d(g_dims[1], mid_dim, kernel_size=1)
        self.g4_conv = GroupConv2d(g_dims[2], mid_dim, kernel_size=1)
        self.transform = GroupConv2d(mid_dim + sensory_dim, sensory_dim * 3, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g: list[Tensor], h: Tensor) -> Tensor:
        """(g = [g16, g8, g4] per-object features, h [B, N, CS, h, w]) -> new h (float32)."""
        summed = (
            self.g16_conv(g[0])
            + self.g8_conv(resize_groups(g[1], 1 / 2, "area"))
            + self.g4_conv(resize_groups(g[2], 1 / 4, "area"))
        )  # [B, N, mid, h, w]
        with torch.autocast(device_type=h.device.type, enabled=False):
            values = self.transform(torch.cat([summed.float(), h.float()], dim=2))  # [B, N, 3*CS, h, w]
            return gru_update(h.float(), values)


class SensoryDeepUpdater(nn.Module):
    """The mask encoder's ("deep") sensory-memory update from the object's value features."""

    def __init__(self, value_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.transform = GroupConv2d(value_dim + sensory_dim, sensory_dim * 3, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g: Tensor, h: Tensor) -> Tensor:
        """(g [B, N, CV, h, w], h [B, N, CS, h, w]) -> new h (float32)."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            values = self.transform(torch.cat([g.float(), h.float()], dim=2))  # [B, N, 3*CS, h, w]
            return gru_update(h.float(), values)


class UpsampleBlock(nn.Module):
    """Decoder step: upsample the per-object features x2 (bilinear), add the shared skip feature, a
    ``GroupResBlock`` (its module is named ``out_conv``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_conv = GroupResBlock(in_dim, out_dim)

    def forward(self, g: Tensor, skip: Tensor) -> Tensor:
        """(g [B, N, C_in, h, w], skip [B, C_in, 2h, 2w]) -> [B, N, C_out, 2h, 2w]."""
        up = resize_groups(g, 2, "bilinear")  # [B, N, C_in, 2h, 2w]
        return self.out_conv(skip.unsqueeze(1) + up)
