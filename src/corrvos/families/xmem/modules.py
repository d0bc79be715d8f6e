"""XMem's building blocks: the GRU step, the hidden-state updaters, the key projection, value encoder and decoder.

Re-expresses hkchengrex/XMem:model/modules.py (``ValueEncoder``, ``KeyProjection``, ``Decoder``,
``HiddenReinforcer``, ``HiddenUpdater``) and model/group_modules.py with the official parameter names; the network
that composes them is :class:`corrvos.families.xmem.network.XMem` (which re-exports them). Channel counts in the
docstrings are those of the official network (width 64); corrvos's small variants pass smaller ``f16_dim`` /
``mid_dim`` / ``width``. Shapes follow :mod:`corrvos.models.base`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.models.backbones import MaskResNet18
from corrvos.models.layers import FeatureFusionBlock, KeyProjection, UpsampleBlock

__all__ = ["HiddenReinforcer", "HiddenUpdater", "XMemDecoder", "XMemKeyProjection", "XMemValueEncoder", "gru_update"]


def gru_update(gates: Tensor, hidden: Tensor) -> Tensor:
    """XMem's GRU step: gates [B, 3*CH, h, w] ordered [forget | update | new], hidden [B, CH, h, w] -> new hidden.

    h' = sigmoid(g_f) * h * (1 - sigmoid(g_u)) + sigmoid(g_u) * tanh(g_n).
    """
    ch = hidden.shape[1]
    forget = torch.sigmoid(gates[:, :ch])  # [B, CH, h, w]
    update = torch.sigmoid(gates[:, ch : 2 * ch])
    new = torch.tanh(gates[:, 2 * ch :])
    return forget * hidden * (1 - update) + update * new


class HiddenReinforcer(nn.Module):
    """The value encoder's GRU ("deep update"): one 3x3 conv on ``cat([value, h])`` -> 3*CH gates."""

    def __init__(self, value_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.transform = nn.Conv2d(value_dim + hidden_dim, 3 * hidden_dim, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, value: Tensor, hidden: Tensor) -> Tensor:
        """``value`` [B*N, CV, h, w], ``hidden`` [B*N, CH, h, w] -> new hidden [B*N, CH, h, w]."""
        return gru_update(self.transform(torch.cat([value, hidden], dim=1)), hidden)


class HiddenUpdater(nn.Module):
    """The decoder's GRU: multi-scale decoder features, each mapped to ``mid_dim`` channels at stride 16 and summed.

    Inputs: g16 (fuser output, 2 * mid_dim = 512 ch), g8 (mid_dim = 256 ch, area-downsampled x1/2) and
    ``cat([g4, logit])`` (mid_dim + 1 = 257 ch, area-downsampled x1/4); their sum is concatenated with h and a
    3x3 conv gives the 3*CH gates. (Channel counts of the official width 64.)
    """

    def __init__(self, hidden_dim: int, mid_dim: int = 256) -> None:
        super().__init__()
        self.g16_conv = nn.Conv2d(2 * mid_dim, mid_dim, kernel_size=1)
        self.g8_conv = nn.Conv2d(mid_dim, mid_dim, kernel_size=1)
        self.g4_conv = nn.Conv2d(mid_dim + 1, mid_dim, kernel_size=1)
        self.transform = nn.Conv2d(mid_dim + hidden_dim, 3 * hidden_dim, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g16: Tensor, g8: Tensor, g4: Tensor, hidden: Tensor) -> Tensor:
        """g16 [B*N, 2M, h, w], g8 [B*N, M, 2h, 2w], g4 [B*N, M+1, 4h, 4w], hidden [B*N, CH, h, w] -> new hidden
        (M = ``mid_dim``)."""
        g = (
            self.g16_conv(g16)
            + self.g8_conv(F.interpolate(g8, scale_factor=1 / 2, mode="area"))
            + self.g4_conv(F.interpolate(g4, scale_factor=1 / 4, mode="area"))
        )  # [B*N, M, h, w]
        return gru_update(self.transform(torch.cat([g, hidden], dim=1)), hidden)


class XMemKeyProjection(KeyProjection):
    """``key_proj`` (orthogonal init) plus XMem's ``d_proj`` (shrinkage) and ``e_proj`` (selection) 3x3 heads."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__(in_dim, key_dim)
        self.d_proj = nn.Conv2d(in_dim, 1, kernel_size=3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)

    def shrinkage(self, x: Tensor) -> Tensor:
        """[B, in_dim, h, w] -> s = d^2 + 1, [B, 1, h, w]."""
        return self.d_proj(x) ** 2 + 1

    def selection(self, x: Tensor) -> Tensor:
        """[B, in_dim, h, w] -> e = sigmoid(e_proj(x)), [B, CK, h, w]."""
        return torch.sigmoid(self.e_proj(x))


class XMemValueEncoder(MaskResNet18):
    """Bias-free ResNet-18 to layer3 on [RGB, masks], ``fuser`` on ``cat([f16, layer3])``, optional GRU.

    The trunk has torchvision's names (``conv1``, ``bn1``, ``layer1..3``) and an ``extra_channels`` attribute, so
    :func:`corrvos.models.backbones.load_imagenet_resnet18` fills it from ImageNet weights.

    Args:
        extra_channels: 2 for [target, others] masks; 1 for single-object (stage-0) models.
        value_dim: CV, output channels.
        hidden_dim: CH; 0 builds no ``hidden_reinforce``.
        f16_dim: C16, channels of the key encoder's f16 (1024 for ResNet-50 at width 64).
        width: stem channels of the trunk (official 64).
    """

    def __init__(
        self,
        extra_channels: int = 2,
        value_dim: int = 512,
        hidden_dim: int = 64,
        *,
        f16_dim: int = 1024,
        width: int = 64,
    ) -> None:
        super().__init__(extra_channels, bias=False, width=width)
        # project=True: the official conv of the skip, kept when a ResNet-18 key encoder makes in == out (4w + 4w)
        self.fuser = FeatureFusionBlock(f16_dim + self.out_dim, value_dim, project=True)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim) if hidden_dim > 0 else None

    def forward(self, image: Tensor, key_f16: Tensor, masks: Tensor) -> Tensor:
        """``image`` [B*N, 3, H, W], ``key_f16`` [B*N, C16, h, w], ``masks`` [B*N, extra, H, W] -> [B*N, CV, h, w].

        ``image`` and ``key_f16`` may be broadcast views of one frame's tensors (see ``repeat_per_object``).
        """
        g = self.trunk(torch.cat([image, masks], dim=1))  # [B*N, 4*width, h, w]
        return self.fuser(key_f16, g)


class XMemDecoder(nn.Module):
    """``fuser`` on ``cat([f16, readout, hidden])`` -> 512, two upsampling steps to stride 4, ``pred`` (1 logit).

    Args:
        value_dim: CV, channels of the memory readout.
        hidden_dim: CH; 0 builds no ``hidden_update`` and the fuser takes ``cat([f16, readout])``.
        f16_dim, f8_dim, f4_dim: channels of the key encoder's features (1024, 512, 256 for ResNet-50 at width 64).
        mid_dim: fuser output channels (512 at width 64); the upsampling path and the GRU's mid width are half.
    """

    def __init__(
        self,
        value_dim: int = 512,
        hidden_dim: int = 64,
        *,
        f16_dim: int = 1024,
        f8_dim: int = 512,
        f4_dim: int = 256,
        mid_dim: int = 512,
    ) -> None:
        super().__init__()
        self.fuser = FeatureFusionBlock(f16_dim + value_dim + hidden_dim, mid_dim, project=True)
        self.hidden_update = HiddenUpdater(hidden_dim, mid_dim // 2) if hidden_dim > 0 else None
        self.up_16_8 = UpsampleBlock(f8_dim, mid_dim, mid_dim // 2)
        self.up_8_4 = UpsampleBlock(f4_dim, mid_dim // 2, mid_dim // 2)
        self.pred = nn.Conv2d(mid_dim // 2, 1, kernel_size=3, padding=1)

    def forward(
        self,
        readout16: Tensor,
        hidden: Tensor | None,
        f16: Tensor,
        f8: Tensor,
        f4: Tensor,
        *,
        update_hidden: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Per-object logits and, when asked for, the decoder's hidden update.

        Args:
            readout16: [B*N, CV, h, w] memory readout.
            hidden: [B*N, CH, h, w] hidden state (``None`` when CH = 0).
            f16: [B*N, C16, h, w] query features (a broadcast view when B = 1).
            f8, f4: [B, C8, 2h, 2w] and [B, C4, 4h, 4w] per-frame skips (broadcast over objects).
            update_hidden: run ``hidden_update``.

        Returns:
            (logits [B*N, 1, H, W], new hidden [B*N, CH, h, w] or ``None``).
        """
        g = readout16 if self.hidden_update is None else torch.cat([readout16, hidden], dim=1)  # [B*N, CV+CH, h, w]
        g16 = self.fuser(f16, g)  # [B*N, mid, h, w]
        g8 = self.up_16_8(f8, g16)  # [B*N, mid/2, 2h, 2w]
        g4 = self.up_8_4(f4, g8)  # [B*N, mid/2, 4h, 4w]
        logits = self.pred(F.relu(g4))  # [B*N, 1, 4h, 4w]
        new_hidden = None
        if update_hidden and self.hidden_update is not None:
            new_hidden = self.hidden_update(g16, g8, torch.cat([g4, logits], dim=1), hidden)  # [B*N, CH, h, w]
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)  # [B*N, 1, H, W]
        return logits, new_hidden
