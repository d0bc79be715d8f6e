"""Small building blocks of the STCN decoder and value encoder: ResBlock, CBAM, feature fusion, upsampling, key head.

Re-expresses hkchengrex/STCN:model/modules.py (ResBlock, FeatureFusionBlock, UpsampleBlock, KeyProjection) and
hkchengrex/STCN:model/cbam.py (CBAM, itself from Jongchan/attention-module), keeping the parameter names of the
official modules so that official checkpoints load without renaming:

- ``ResBlock``: ``downsample`` (a 3x3 conv, present only when the channel count changes) is registered before
  ``conv1`` / ``conv2``; there is no normalisation.
- ``CBAM``: ``ChannelGate.mlp.{1,3}`` (position 0 is a parameter-free flatten, position 2 a ReLU) and
  ``SpatialGate.spatial.conv``.
- ``KeyProjection``: ``key_proj`` (3x3 conv), orthogonal weight and zero bias at construction.

Shapes use the legend of :mod:`corrvos.models.base` ([B, C, H, W] here means any batch of feature maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CBAM", "ChannelGate", "FeatureFusionBlock", "KeyProjection", "ResBlock", "SpatialGate", "UpsampleBlock"]


class ResBlock(nn.Module):
    """Pre-activation residual block without normalisation: x' = skip(x) + conv2(relu(conv1(relu(x)))).

    Args:
        in_dim: input channels.
        out_dim: output channels (defaults to ``in_dim``); when different, the skip path is a 3x3 conv.
        project: give the skip path its 3x3 conv (``downsample``) even when ``in_dim == out_dim``; ``None``: only
            when they differ (the official rule). corrvos's small variants set it where the official network has
            the conv, so that their state_dict has the same names whatever the channel counts.
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, *, project: bool | None = None) -> None:
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        project = in_dim != out_dim if project is None else project
        if not project and in_dim != out_dim:
            raise ValueError(f"ResBlock({in_dim} -> {out_dim}) needs the projection skip (project=False given)")
        # Registered first, as in the official module, so the state_dict order matches.
        self.downsample = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1) if project else None
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.downsample is None else self.downsample(x)
        return skip + r


class ChannelGate(nn.Module):
    """CBAM channel attention: x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x))), pooling over the whole map."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        h, w = x.shape[-2:]
        avg = F.avg_pool2d(x, (h, w), stride=(h, w))  # [B, C, 1, 1]
        mx = F.max_pool2d(x, (h, w), stride=(h, w))  # [B, C, 1, 1]
        att = self.mlp(avg) + self.mlp(mx)  # [B, C]
        return x * torch.sigmoid(att)[:, :, None, None]


class _SpatialConv(nn.Module):
    """Holder that gives the spatial-gate conv the official key ``spatial.conv``."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention: x * sigmoid(conv7x7([max_c(x), mean_c(x)]))."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.spatial = _SpatialConv(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        pooled = torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)  # [B, 2, H, W]
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention module (channel gate, then spatial gate). Returns the gated input."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """ResBlock(in -> out) on the concatenated inputs, CBAM residual, then ResBlock(out -> out).

    Args:
        in_dim: channels of ``cat([a, b])``.
        out_dim: output channels.
        project: ``block1``'s projection skip (see :class:`ResBlock`; ``None``: when ``in_dim != out_dim``).
    """

    def __init__(self, in_dim: int, out_dim: int, *, project: bool | None = None) -> None:
        super().__init__()
        self.block1 = ResBlock(in_dim, out_dim, project=project)
        self.attention = CBAM(out_dim)
        self.block2 = ResBlock(out_dim, out_dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse ``a`` [B, Ca, H, W] and ``b`` [B, Cb, H, W] (concatenated in that order) into [B, out_dim, H, W]."""
        x = self.block1(torch.cat([a, b], dim=1))  # [B, out_dim, H, W]
        return self.block2(x + self.attention(x))


class UpsampleBlock(nn.Module):
    """Decoder step: out_conv(skip_conv(skip) + bilinear_upsample(up)).

    ``skip`` may have fewer batch entries than ``up`` when the decoder runs N objects on the same frame: a skip of
    [B, ...] is then computed once and repeated for an ``up`` of [B*N, ...] (object index fastest).

    Args:
        skip_dim: channels of the skip features.
        up_dim: channels of the upsampled path (and of the skip conv's output).
        out_dim: output channels.
        scale_factor: upsampling factor of ``up``.
    """

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, kernel_size=3, padding=1)
        self.out_conv = ResBlock(up_dim, out_dim)
        self.scale_factor = scale_factor

    def forward(self, skip: Tensor, up: Tensor) -> Tensor:
        """``skip`` [B, skip_dim, H, W], ``up`` [B*N, up_dim, H/s, W/s] -> [B*N, out_dim, H, W]."""
        s = self.skip_conv(skip)  # [B, up_dim, H, W]
        u = F.interpolate(up, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)  # [B*N, C, H, W]
        if s.shape[0] == u.shape[0]:
            return self.out_conv(s + u)
        b = s.shape[0]
        u = u.view(b, u.shape[0] // b, *u.shape[1:])  # [B, N, up_dim, H, W]
        x = (u + s.unsqueeze(1)).flatten(0, 1)  # broadcast the skip over objects, no copy: [B*N, up_dim, H, W]
        return self.out_conv(x)


class KeyProjection(nn.Module):
    """3x3 conv from backbone features to matching keys; orthogonal weight, zero bias at construction."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        """[B, in_dim, h, w] -> [B, key_dim, h, w]."""
        return self.key_proj(x)
