"""ResNet backbones without torchvision: the STCN key encoder (ResNet-50 to layer3) and mask trunk (ResNet-18).

Re-expresses the ResNet of torchvision (as used by hkchengrex/STCN:model/modules.py ``KeyEncoder``) and
hkchengrex/STCN:model/mod_resnet.py (the value encoder's ResNet-18 with conv biases and extra input channels).
Parameter names follow torchvision (``conv1``, ``bn1``, ``layerX.Y.convZ``, ``downsample.0`` conv /
``downsample.1`` BN), so torchvision-format ImageNet files load, with two official deviations:

- the key encoder stores ``layer1`` as ``res2`` (and has no ``layer4`` / ``fc``);
- every conv of the mask ResNet-18 has a bias (STCN's mod_resnet keeps ``nn.Conv2d``'s default ``bias=True``),
  and its ``conv1`` takes 3 + ``extra_channels`` inputs ([RGB, target mask, others' masks]).

The stride of a downsampling Bottleneck sits on its 3x3 ``conv2`` (ResNet v1.5, as torchvision).

Small variants (corrvos's own, not official architectures): ``KeyEncoder(arch="resnet18")`` is a ResNet-18 to
layer3 under the same names, and ``width`` (official 64) sets the stem channels of either backbone, every stage
width scaling by ``width / 64``. The defaults build exactly the official modules.

ImageNet weights: :func:`read_torchvision_state` reads a torchvision-format file (``weights_only=True``) or, when
asked, downloads torchvision's IMAGENET1K_V1 file through ``torch.hub`` (the re-serialised copies of the
``resnet50-19c8e357`` / ``resnet18-5c106cde`` files STCN used; same weights). :func:`load_imagenet_key_encoder` and
:func:`load_imagenet_resnet18` drop ``fc.*`` and ``layer4.*`` explicitly and load the rest strictly; as in
STCN's ``load_weights_sequential``, the conv biases torchvision lacks stay zero and the extra input channels of
``conv1`` are appended with ``nn.init.orthogonal_``. Shapes: [B, C, H, W]; f4/f8/f16 are strides 4/8/16.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from corrvos.checkpoint_io import read_checkpoint
from corrvos.errors import CheckpointError
from corrvos.weights import cached_file

__all__ = [
    "KEY_ENCODERS",
    "TORCHVISION_URLS",
    "BasicBlock",
    "Bottleneck",
    "KeyEncoder",
    "MaskResNet18",
    "check_width",
    "init_resnet_",
    "key_encoder_args",
    "key_encoder_dims",
    "load_imagenet_key_encoder",
    "load_imagenet_resnet18",
    "load_imagenet_resnet50",
    "make_layer",
    "read_torchvision_state",
]

logger = logging.getLogger(__name__)

#: torchvision's IMAGENET1K_V1 weight files (hash prefix in the name, checked by ``torch.hub``).
TORCHVISION_URLS = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
}


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs with BN, identity or ``downsample`` skip.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of ``conv1``.
        downsample: skip-path module (1x1 conv + BN) when shape changes, else ``None``.
        bias: give the convs a bias (STCN's value encoder) instead of torchvision's bias-free convs.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *, bias: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """[B, inplanes, H, W] -> [B, planes, H/stride, W/stride]."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    """ResNet-50 block: 1x1 -> 3x3 (strided, v1.5) -> 1x1 (x4 channels), BN after each, identity or projection skip.

    Args:
        inplanes: input channels.
        planes: bottleneck width; the output has ``4 * planes`` channels.
        stride: stride of ``conv2``.
        downsample: skip-path module (1x1 conv + BN) when shape changes, else ``None``.
        bias: give the convs a bias (not used by STCN's ResNet-50; kept for symmetry with ``BasicBlock``).
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *, bias: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=bias)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """[B, inplanes, H, W] -> [B, 4*planes, H/stride, W/stride]."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


#: key-encoder architectures: block type and number of blocks of res2 / layer2 / layer3.
KEY_ENCODERS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int]]] = {
    "resnet50": (Bottleneck, (3, 4, 6)),
    "resnet18": (BasicBlock, (2, 2, 2)),
}


def make_layer(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    blocks: int,
    *,
    stride: int = 1,
    bias: bool = False,
) -> nn.Sequential:
    """One ResNet stage of ``blocks`` blocks; the first one carries the stride and the projection skip.

    Returns:
        ``nn.Sequential`` with torchvision's child names ``0..blocks-1``; output channels ``planes * expansion``.
    """
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        conv = nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=bias)
        downsample = nn.Sequential(conv, nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, downsample, bias=bias)]
    layers += [block(out, planes, bias=bias) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet_(module: nn.Module) -> None:
    """torchvision / mod_resnet initialisation: convs N(0, 2/(k*k*C_out)) with zero bias, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_width(width: int) -> int:
    """``width`` if it is a valid base channel width (a positive multiple of 8), else ValueError."""
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0 or width % 8:
        raise ValueError(f"width must be a positive multiple of 8 (official: 64), got {width!r}")
    return width


def key_encoder_dims(arch: str = "resnet50", width: int = 64) -> tuple[int, int, int]:
    """(f16, f8, f4) channels of a key encoder: (1024, 512, 256) for ResNet-50, (256, 128, 64) for ResNet-18 at
    width 64; both scale by width / 64."""
    if arch not in KEY_ENCODERS:
        raise ValueError(f"unknown key encoder {arch!r}; expected one of {tuple(KEY_ENCODERS)}")
    out4 = width * KEY_ENCODERS[arch][0].expansion  # stride-4 channels
    return 4 * out4, 2 * out4, out4


class KeyEncoder(nn.Module):
    """ResNet-50 (or ResNet-18) truncated after layer3, with STCN's ``res2`` name for layer1. No conv biases.

    Args:
        arch: "resnet50" (Bottleneck blocks [3, 4, 6], official) or "resnet18" (BasicBlock [2, 2, 2], corrvos's
            small variant; a torchvision ResNet-18 file loads into it as a ResNet-50 file loads into the default).
        width: stem channels (official 64); every stage width scales by ``width / 64``.

    Attributes:
        f16_dim, f8_dim, f4_dim: output channels at strides 16 / 8 / 4 (1024 / 512 / 256 for the default).
    """

    def __init__(self, arch: str = "resnet50", width: int = 64) -> None:
        super().__init__()
        self.f16_dim, self.f8_dim, self.f4_dim = key_encoder_dims(arch, check_width(width))
        self.arch, self.width = arch, width
        block, blocks = KEY_ENCODERS[arch]
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res2 = make_layer(block, width, width, blocks[0])
        self.layer2 = make_layer(block, self.f4_dim, 2 * width, blocks[1], stride=2)
        self.layer3 = make_layer(block, self.f8_dim, 4 * width, blocks[2], stride=2)
        init_resnet_(self)

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, 3, H, W] -> (f16 [B, C16, H/16, W/16], f8 [B, C8, H/8, W/8], f4 [B, C4, H/4, W/4]); C16/C8/C4 =
        1024/512/256 for the default ResNet-50."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frame))))  # [B, width, H/4, W/4]
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class MaskResNet18(nn.Module):
    """ResNet-18 to layer3 with ``3 + extra_channels`` inputs: the value-encoder trunk of STCN and XMem.

    Args:
        extra_channels: mask channels appended to RGB (2 = [target, others]; 1 for single-object models).
        bias: give every conv a bias (STCN's mod_resnet); XMem's trunk has torchvision's bias-free convs.
        width: stem channels (official 64); layer1..3 have ``width``, ``2 * width``, ``4 * width`` channels.

    Attributes:
        out_dim: channels of the layer3 output (256 at width 64).
    """

    def __init__(self, extra_channels: int = 2, *, bias: bool = True, width: int = 64) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.out_dim = 4 * check_width(width)
        self.conv1 = nn.Conv2d(3 + extra_channels, width, kernel_size=7, stride=2, padding=3, bias=bias)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_layer(BasicBlock, width, width, 2, bias=bias)
        self.layer2 = make_layer(BasicBlock, width, 2 * width, 2, stride=2, bias=bias)
        self.layer3 = make_layer(BasicBlock, 2 * width, 4 * width, 2, stride=2, bias=bias)
        init_resnet_(self)

    def trunk(self, x: Tensor) -> Tensor:
        """[B, 3 + extra, H, W] -> [B, 4*width, H/16, W/16] (layer3 output; 256 channels at width 64). XMem pools
        before the ReLU; ReLU and max pooling commute exactly, so one order serves both."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, width, H/4, W/4]
        return self.layer3(self.layer2(self.layer1(x)))


def key_encoder_args(state: Mapping[str, Tensor], prefix: str = "key_encoder.") -> dict[str, str | int]:
    """``{"key_encoder": ..., "width": ...}`` of a network state_dict, read from its key encoder's shapes.

    ``{prefix}conv1.weight`` has ``width`` output channels; a ``{prefix}res2.0.conv3.weight`` (a Bottleneck's third
    conv) marks "resnet50", its absence "resnet18". Without ``conv1`` the defaults ("resnet50", 64) are returned and
    the strict load that follows reports the missing keys.
    """
    conv1 = state.get(prefix + "conv1.weight")
    if conv1 is None or conv1.dim() != 4:
        return {"key_encoder": "resnet50", "width": 64}
    arch = "resnet50" if prefix + "res2.0.conv3.weight" in state else "resnet18"
    return {"key_encoder": arch, "width": int(conv1.shape[0])}


def read_torchvision_state(source: bool | str | Path, arch: str) -> dict[str, Tensor]:
    """Read a torchvision-format ImageNet state_dict.

    Args:
        source: ``True`` reads the file of ``corrvos download {arch}-imagenet`` from the corrvos weight cache if
            it is there, else downloads ``TORCHVISION_URLS[arch]`` through ``torch.hub`` (cached; hash-checked);
            a path reads that local file.
        arch: "resnet50" or "resnet18".

    Raises:
        CheckpointError: the file is missing, is not a weights-only tensor file, or holds no state_dict.
    """
    if source is True and (cached := cached_file(f"{arch}-imagenet")) is not None:
        source = cached  # fetched by `corrvos download imagenet` (checked there); no torch.hub access needed
    if source is True:
        logger.info("downloading ImageNet %s weights from %s", arch, TORCHVISION_URLS[arch])
        try:
            state = torch.hub.load_state_dict_from_url(
                TORCHVISION_URLS[arch], map_location="cpu", check_hash=True, weights_only=True
            )
        except (OSError, RuntimeError) as exc:  # URLError (offline), hash mismatch, truncated file
            raise CheckpointError(
                f"{TORCHVISION_URLS[arch]}: cannot get the ImageNet {arch} weights ({exc}); run "
                f"`corrvos download {arch}-imagenet` where there is internet, or set pretrained_backbones to a "
                "folder holding resnet50-*.pth and resnet18-*.pth"
            ) from exc
        return dict(state)
    path = Path(source)
    state = read_checkpoint(path, what=f"ImageNet {arch} weight file")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a torchvision {arch} state_dict (name -> tensor)")
    return dict(state)


def _drop_head(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``fc.*`` and ``layer4.*``, which STCN's backbones do not keep."""
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "layer4."))}


def _check_keys(expected: set[str], given: set[str], optional: set[str], what: str) -> None:
    missing = sorted(expected - given - optional)
    unexpected = sorted(given - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: not a torchvision-format state_dict; missing keys: {missing or 'none'}; "
            f"unexpected keys: {unexpected or 'none'}"
        )


def load_imagenet_key_encoder(encoder: KeyEncoder, state: Mapping[str, Tensor], *, what: str = "resnet50") -> None:
    """Copy torchvision ResNet-50 (or, into a "resnet18" key encoder, ResNet-18) weights into ``encoder``
    (``layer1`` -> ``res2``; ``fc`` / ``layer4`` dropped).

    ``num_batches_tracked`` buffers are optional (old torchvision files lack them).

    Raises:
        CheckpointError: keys or shapes differ from the torchvision ResNet of ``encoder.arch`` (a width other than
            64 never fits).
    """
    src = _drop_head(state)
    renamed = {("res2." + k[len("layer1.") :] if k.startswith("layer1.") else k): v for k, v in src.items()}
    own = encoder.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    _check_keys(set(own), set(renamed), optional, what)
    _copy(encoder, renamed, what)


#: the name of the ResNet-50-only loader, kept for callers.
load_imagenet_resnet50 = load_imagenet_key_encoder


def load_imagenet_resnet18(
    trunk: MaskResNet18,
    state: Mapping[str, Tensor],
    *,
    what: str = "resnet18",
    generator: torch.Generator | None = None,
) -> None:
    """Copy torchvision ResNet-18 weights into the trunk of ``trunk`` (as STCN's ``load_weights_sequential``).

    The conv biases torchvision lacks are left as they are (zero after construction); ``conv1``'s extra mask input
    channels get an ``nn.init.orthogonal_`` slice of shape [64, extra, 7, 7]. Only the trunk (``conv1``, ``bn1``,
    ``layer1..3``) is touched; submodules a subclass adds (the fuser) are not.

    Raises:
        CheckpointError: keys or shapes differ from a torchvision ResNet-18.
    """
    prefixes = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
    own = {k: v for k, v in trunk.state_dict().items() if k.startswith(prefixes)}
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    optional |= {k for k in own if k.endswith(".bias") and own[k.replace(".bias", ".weight")].dim() == 4}
    src = _drop_head(state)
    _check_keys(set(own), set(src), optional, what)
    w = src["conv1.weight"]
    extra = trunk.extra_channels
    if w.dim() == 4 and w.shape[1] == 3 and extra > 0:
        pads = torch.zeros(w.shape[0], extra, *w.shape[2:], dtype=w.dtype)  # [64, extra, 7, 7]
        nn.init.orthogonal_(pads, generator=generator)
        src["conv1.weight"] = torch.cat([w, pads], dim=1)  # [64, 3 + extra, 7, 7]
    _copy(trunk, src, what)


def _copy(module: nn.Module, src: Mapping[str, Tensor], what: str) -> None:
    own = module.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in src.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{what}: shape mismatch: {bad}")
    with torch.no_grad():
        for k, v in src.items():
            own[k].copy_(v)
    logger.info("loaded ImageNet weights into %d tensors from %s", len(src), what)
