"""Frame geometry for inference: normalisation, resizing, padding to stride 16 and back.

Geometry (the conventions of the official STCN evaluation, hkchengrex/STCN:util/tensor_util.py and
dataset/yv_test_dataset.py, re-expressed):
- frames are ImageNet-normalised (``(x - mean) / std`` on [0, 1] RGB) before anything else;
- resizing sets the shorter side to ``size`` and the longer one to ``int(size * long / short)`` (truncated, as
  torchvision's ``Resize(int)``); images use bicubic interpolation on the normalised tensor without antialias,
  label maps use nearest; a frame whose shorter side already equals ``size`` is left untouched;
- padding adds zeros (after normalisation) up to multiples of 16, ``pad // 2`` on the left/top and the rest on
  the right/bottom; ``pad`` tuples follow ``F.pad`` order ``(left, right, top, bottom)``.

Frame sources (folders and video files) are :mod:`corrvos.data.video`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from corrvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the one definition, re-exported

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize",
    "pad_to_multiple",
    "resize_image",
    "resize_label",
    "resized_shape",
    "to_float_image",
    "unpad",
]


def to_float_image(rgb: np.ndarray) -> Tensor:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] in [0, 1] (``ToTensor`` arithmetic: x / 255)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255)  # [3, H, W]


def normalize(image: Tensor) -> Tensor:
    """ImageNet normalisation of [..., 3, H, W] float images in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def resized_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(H, W) after setting the shorter side to ``size`` (torchvision ``Resize(int)`` rule); unchanged if None."""
    if size is None:
        return height, width
    if width <= height:
        return (height if width == size else int(size * height / width)), size
    return size, (width if height == size else int(size * width / height))


def resize_image(image: Tensor, shape: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Resize [B, C, H, W] to ``shape`` (align_corners=False, no antialias); identity if equal.

    ``mode`` "bicubic" is STCN's YouTube-VOS driver, "bilinear" XMem's ``eval.py`` (torchvision ``Resize`` on a
    tensor without antialias, the behaviour of the torchvision releases XMem was written for).
    """
    if tuple(image.shape[-2:]) == tuple(shape):
        return image
    return F.interpolate(image, size=shape, mode=mode, align_corners=False)


def resize_label(label: Tensor, shape: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of an integer label map [H, W] to ``shape`` (legacy ``nearest`` indexing)."""
    if tuple(label.shape) == tuple(shape):
        return label
    resized = F.interpolate(label[None, None].float(), size=shape, mode="nearest")  # [1, 1, H', W']
    return resized[0, 0].to(label.dtype)


def pad_to_multiple(
    x: Tensor, stride: int = 16, *, fill: Tensor | None = None
) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad the last two dims of ``x`` up to multiples of ``stride``, split evenly (floor half left/top).

    Args:
        x: [..., C, H, W] (or [H, W]).
        fill: per-channel value [C] of the padded pixels (default zeros). Cutie pads the frame before normalising
            it, so its padding is the normalised value of a black pixel, ``-mean / std``.

    Returns:
        the padded tensor and ``(left, right, top, bottom)``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    out = F.pad(x, pad)
    if fill is not None:
        outside = torch.ones(h, w, dtype=x.dtype, device=x.device)
        outside = 1 - F.pad(outside, pad)  # [H', W'] 1 on the padded pixels
        out = out + fill.to(x.dtype).view(-1, 1, 1) * outside  # 0 + fill there, x + 0 elsewhere
    return out, pad


def unpad(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple` on the last two dims."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
