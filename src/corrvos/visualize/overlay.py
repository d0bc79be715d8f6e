"""Mask overlays: colour a label map with the DAVIS palette, blend it over a frame, write an mp4.

Conventions: frames are uint8 RGB [H, W, 3]; label maps are integer [H, W] (0 background, object ids otherwise)
and take the colours of :data:`corrvos.data.io.DAVIS_PALETTE`, so overlays match the palette PNGs. Videos are
written with OpenCV's ``VideoWriter`` (``mp4v`` codec) into a temporary file that is moved into place on success.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from corrvos.data.io import DAVIS_PALETTE
from corrvos.errors import DataError
from corrvos.utils import atomic_path

__all__ = ["VideoWriter", "colorize", "overlay"]

_log = logging.getLogger(__name__)


def colorize(label: np.ndarray) -> np.ndarray:
    """Label map [H, W] -> uint8 RGB [H, W, 3] with the DAVIS palette (background black)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be [H, W], got shape {label.shape}")
    return DAVIS_PALETTE[np.clip(label, 0, 255).astype(np.uint8)]  # [H, W, 3]


def overlay(frame: np.ndarray, label: np.ndarray, *, alpha: float = 0.5, contour: bool = True) -> np.ndarray:
    """Blend the coloured objects of ``label`` over ``frame``; background pixels keep the frame's colours.

    Args:
        frame: uint8 RGB [H, W, 3].
        label: integer label map [H, W] of the same size.
        alpha: opacity of the mask colours on object pixels.
        contour: draw a 1-pixel white outline around every object.

    Returns:
        uint8 RGB [H, W, 3].
    """
    if frame.shape[:2] != label.shape:
        raise ValueError(f"frame {frame.shape[:2]} and label map {label.shape} differ in size")
    colours = colorize(label).astype(np.float32)
    out = frame.astype(np.float32)
    fg = label > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    if contour:
        lab = np.ascontiguousarray(label.astype(np.uint8))
        edges = (cv2.dilate(lab, np.ones((3, 3), np.uint8)) != cv2.erode(lab, np.ones((3, 3), np.uint8))) & fg
        out[edges] = 255
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class VideoWriter:
    """Write uint8 RGB frames to a video file atomically (a context manager).

    The file appears under its final name only when the context exits without an exception.

    Args:
        path: destination (``.mp4``; the suffix selects the container).
        fps: frames per second.
        fourcc: OpenCV codec code (``mp4v`` plays nearly everywhere and needs no extra library).
    """

    def __init__(self, path: str | Path, *, fps: float = 24.0, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self.fps = fps
        self.fourcc = fourcc
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 RGB [H, W, 3] frame (every frame must have the size of the first)."""
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise DataError(self.path, f"OpenCV cannot write a {self.fourcc!r} video here")
            self._size = (h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame size {(h, w)} differs from the first frame's {self._size}")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if self._writer is not None:
            self._writer.release()
        if exc_type is None and self.frames == 0:
            exc = DataError(self.path, "no frames were written")
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        return self._ctx.__exit__(exc_type, exc, tb)
