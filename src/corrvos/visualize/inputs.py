"""Inputs shared by the model-based figures (``correspondence``, ``matches``): frames, masks, model input.

Conventions: a *frame folder* is one sequence of a DAVIS-layout dataset (``JPEGImages/480p/<seq>``); frames are
indexed 0..T-1 in sorted file-name order, and the mask of frame t is ``<masks>/<frame stem>.png``. The network
sees the frame as inference does (:mod:`corrvos.data.video`): ImageNet-normalised and zero-padded to
multiples of 16, ``pad`` in ``F.pad`` order (left, right, top, bottom). Features are at stride 16, so image pixel
(y, x) lies in feature cell ((y + top) // 16, (x + left) // 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from corrvos.data.io import list_frames, read_image, read_label
from corrvos.errors import DataError
from corrvos.inference.geometry import normalize, pad_to_multiple, to_float_image

__all__ = ["FEATURE_STRIDE", "FrameFolder", "ModelInput", "model_input", "object_ids"]

FEATURE_STRIDE = 16
VOID = 255


@dataclass
class ModelInput:
    """One frame as the network sees it.

    Attributes:
        image: [1, 3, Hp, Wp] normalised, padded frame (Hp, Wp multiples of 16).
        pad: (left, right, top, bottom) zero padding added around the H x W frame.
        size: (H, W) of the frame before padding.
    """

    image: Tensor
    pad: tuple[int, int, int, int]
    size: tuple[int, int]

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the stride-16 feature grid."""
        return self.image.shape[-2] // FEATURE_STRIDE, self.image.shape[-1] // FEATURE_STRIDE

    def feature_cell(self, y: float, x: float) -> tuple[int, int]:
        """The feature cell (row, column) holding image pixel (y, x)."""
        left, _, top, _ = self.pad
        h, w = self.feature_size
        return min(int(y + top) // FEATURE_STRIDE, h - 1), min(int(x + left) // FEATURE_STRIDE, w - 1)


def model_input(rgb: np.ndarray, device: torch.device | str = "cpu") -> ModelInput:
    """uint8 RGB [H, W, 3] -> :class:`ModelInput` on ``device`` (inference's normalisation and padding)."""
    x = normalize(to_float_image(rgb))[None].to(device)  # [1, 3, H, W]
    padded, pad = pad_to_multiple(x, FEATURE_STRIDE)  # [1, 3, Hp, Wp]
    return ModelInput(image=padded, pad=pad, size=(int(rgb.shape[0]), int(rgb.shape[1])))


def object_ids(label: np.ndarray) -> list[int]:
    """Sorted object ids of a label map (background 0 and void 255 excluded)."""
    return [int(k) for k in np.unique(label) if k not in (0, VOID)]


class FrameFolder:
    """The frames of one sequence folder and, optionally, its annotation folder.

    Args:
        frames: folder of frames (``.jpg`` / ``.png``), sorted by name.
        masks: folder of palette PNG label maps named after the frames, or ``None``.

    Raises:
        DataError: a folder is missing, or the frame folder holds no frames.
    """

    def __init__(self, frames: str | Path, masks: str | Path | None = None) -> None:
        self.frame_dir = Path(frames)
        if not self.frame_dir.is_dir():
            raise DataError(self.frame_dir, "frame folder not found")
        self.paths = list_frames(self.frame_dir)
        if not self.paths:
            raise DataError(self.frame_dir, "no frames (.jpg/.png) in this folder")
        self.mask_dir = None if masks is None else Path(masks)
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise DataError(self.mask_dir, "mask folder not found")

    def __len__(self) -> int:
        return len(self.paths)

    def check_index(self, index: int, option: str) -> int:
        """``index`` itself when it is a frame of the folder (negative counts from the end)."""
        n = len(self.paths)
        if not -n <= index < n:
            raise DataError(self.frame_dir, f"{option} {index} is out of range: the folder has {n} frames (0..{n - 1})")
        return index % n

    def frame_id(self, index: int) -> str:
        return self.paths[index].stem

    def read_frame(self, index: int) -> np.ndarray:
        """uint8 RGB [H, W, 3] of frame ``index``."""
        return read_image(self.paths[index])

    def read_mask(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """uint8 label map [H, W] of frame ``index``; its size must be ``size`` (the frame's)."""
        if self.mask_dir is None:
            raise DataError(self.frame_dir, "no mask folder given (--masks)")
        path = self.mask_dir / f"{self.frame_id(index)}.png"
        if not path.is_file():
            raise DataError(path, f"mask of frame {index} ({self.paths[index].name}) not found")
        label = read_label(path)
        if label.shape != tuple(size):
            frame = self.paths[index].name
            raise DataError(path, f"mask is {label.shape[0]}x{label.shape[1]} but frame {frame} is {size[0]}x{size[1]}")
        return label

    def check_same_size(self, a: np.ndarray, b: np.ndarray, ia: int, ib: int) -> None:
        """Frames ``ia`` and ``ib`` must have the same size (one network input geometry for both)."""
        if a.shape != b.shape:
            raise DataError(
                self.paths[ib],
                f"frame is {b.shape[0]}x{b.shape[1]} but {self.paths[ia].name} is {a.shape[0]}x{a.shape[1]}",
            )
