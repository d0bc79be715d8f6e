"""Frame geometry and frame sources for inference.

Geometry (the conventions of the official STCN evaluation, hkchengrex/STCN:util/tensor_util.py and
dataset/yv_test_dataset.py, re-expressed):
- frames are ImageNet-normalised (``(x - mean) / std`` on [0, 1] RGB) before anything else;
- resizing sets the shorter side to ``size`` and the longer one to ``int(size * long / short)`` (truncated, as
  torchvision's ``Resize(int)``); images use bicubic interpolation on the normalised tensor without antialias,
  label maps use nearest; a frame whose shorter side already equals ``size`` is left untouched;
- padding adds zeros (after normalisation) up to multiples of 16, ``pad // 2`` on the left/top and the rest on
  the right/bottom; ``pad`` tuples follow ``F.pad`` order ``(left, right, top, bottom)``.

Frame sources yield uint8 RGB frames [H, W, 3] from a folder of images or a video file (OpenCV).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from corrvos.data.io import list_frames, read_image
from corrvos.data.sequence import image_size
from corrvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the one definition, re-exported
from corrvos.errors import DataError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIDEO_EXTENSIONS",
    "FolderSource",
    "FrameSource",
    "VideoFileSource",
    "normalize",
    "open_frames",
    "pad_to_multiple",
    "resize_image",
    "resize_label",
    "resized_shape",
    "to_float_image",
    "unpad",
]

_log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


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


def pad_to_multiple(x: Tensor, stride: int = 16) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims of ``x`` up to multiples of ``stride``, split evenly (floor half left/top).

    Returns:
        the padded tensor and ``(left, right, top, bottom)``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    return F.pad(x, pad), pad


def unpad(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple` on the last two dims."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


@dataclass
class FrameSource:
    """Common surface of frame sources: ``len``, iteration over (name, uint8 RGB [H, W, 3]), ``fps``, ``size``."""

    path: Path
    names: list[str]
    fps: float
    size: tuple[int, int]  # (H, W) of the frames

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:  # pragma: no cover - overridden
        raise NotImplementedError


class FolderSource(FrameSource):
    """The images of a folder, in lexicographic order (the DAVIS / YouTube-VOS naming)."""

    def __init__(self, path: str | Path, *, fps: float = 24.0, exclude: tuple[str | Path, ...] = ()) -> None:
        path = Path(path)
        self.paths = list_frames(path, exclude=exclude)
        if not self.paths:
            raise DataError(path, "no image frames (.jpg/.jpeg/.png/.bmp) in this folder")
        super().__init__(path=path, names=[p.stem for p in self.paths], fps=fps, size=image_size(self.paths[0]))

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as uint8 RGB [H, W, 3] (random access; raises DataError if its size differs)."""
        p = self.paths[index]
        rgb = read_image(p)
        if rgb.shape[:2] != self.size:
            raise DataError(
                p,
                f"frame is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but the first frame is {self.size[0]}x{self.size[1]}",
            )
        return rgb

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for index, name in enumerate(self.names):
            yield name, self.read(index)


class VideoFileSource(FrameSource):
    """The frames of a video file decoded with OpenCV; frames are named 00000, 00001, ..."""

    def __init__(self, path: str | Path) -> None:
        import cv2

        path = Path(path)
        if not path.is_file():
            raise DataError(path, "video file not found")
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise DataError(path, "OpenCV cannot open this video (unsupported codec or not a video)")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or 24.0
            ok, bgr = cap.read()  # the decoded size (containers may store a rotation)
            if not ok:
                raise DataError(path, "the video has no decodable frames")
            size = (int(bgr.shape[0]), int(bgr.shape[1]))
        finally:
            cap.release()
        if count <= 0:  # some containers do not store the count: decode once to find it
            count = sum(1 for _ in self._decode(path))
        super().__init__(path=path, names=[f"{i:05d}" for i in range(count)], fps=fps, size=size)

    @staticmethod
    def _decode(path: Path) -> Iterator[np.ndarray]:
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # [H, W, 3] RGB
        finally:
            cap.release()

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        n = 0
        for rgb in self._decode(self.path):
            if n >= len(self.names):  # the stored count was short: extend the names
                self.names.append(f"{n:05d}")
            yield self.names[n], rgb
            n += 1
        if n < len(self.names):
            _log.warning("%s: the container announced %d frames but %d were decoded", self.path, len(self.names), n)
            del self.names[n:]


def open_frames(path: str | Path, *, exclude: tuple[str | Path, ...] = ()) -> FrameSource:
    """A frame folder or a video file (by extension), as a :class:`FrameSource`.

    ``exclude``: files of a frame folder that are not frames (e.g. the first-frame mask saved beside them).

    Raises:
        DataError: the path does not exist, is an unsupported file, or holds no frames.
    """
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, exclude=exclude)
    if not path.exists():
        raise DataError(path, "no such video file or frame folder")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise DataError(path, f"not a frame folder nor a video file ({', '.join(VIDEO_EXTENSIONS)})")
    return VideoFileSource(path)
