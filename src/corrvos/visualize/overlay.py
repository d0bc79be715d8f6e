"""Mask overlays: colour a label map with the DAVIS palette, blend it over a frame, write an mp4.

Conventions: frames are uint8 RGB [H, W, 3]; label maps are integer [H, W] (0 background, object ids otherwise)
and take the colours of :data:`corrvos.data.io.DAVIS_PALETTE`, so overlays match the palette PNGs. Videos are
written with OpenCV's ``VideoWriter`` into a temporary file that is moved into place on success.

Codecs: browsers play H.264 and VP9 in MP4, not the MPEG-4 Part 2 (``mp4v``) that every OpenCV build writes.
``fourcc="auto"`` takes the first of :data:`AUTO_CODECS` that the installed OpenCV can write: H.264 (``avc1``;
OpenCV builds linked to a system FFmpeg with libx264 or OpenH264), then VP9 (``vp09``; the PyPI wheels of
``opencv-python(-headless)`` have it; about 30x slower to encode than ``mp4v``, ~0.15 s per 480p frame on one
core), then ``mp4v`` with a warning that browsers will not play the file (desktop players such as VLC do).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from corrvos.data.io import DAVIS_PALETTE
from corrvos.errors import DataError
from corrvos.utils import atomic_path

__all__ = ["AUTO_CODECS", "VideoWriter", "colorize", "first_writable_codec", "overlay"]

#: Codecs tried by ``fourcc="auto"``, in order: H.264, VP9 (both play in browsers), MPEG-4 Part 2 (last resort).
AUTO_CODECS = ("avc1", "vp09", "mp4v")
BROWSER_CODECS = ("avc1", "vp09")

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


@functools.lru_cache(maxsize=1)
def first_writable_codec() -> str | None:
    """The first of :data:`AUTO_CODECS` the installed OpenCV can write to an .mp4 (probed once per process).

    The probe silences the C-level messages FFmpeg prints for the codecs it lacks (file descriptor 2).
    """
    with tempfile.TemporaryDirectory() as tmp:
        for codec in AUTO_CODECS:
            with _quiet_stderr():
                writer = cv2.VideoWriter(str(Path(tmp) / "probe.mp4"), cv2.VideoWriter_fourcc(*codec), 10, (32, 32))
                ok = writer.isOpened()
                writer.release()
            if ok:
                return codec
    return None


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoWriter:
    """Write uint8 RGB frames to a video file atomically (a context manager).

    The file appears under its final name only when the context exits without an exception.

    Args:
        path: destination (``.mp4``; the suffix selects the container).
        fps: frames per second.
        fourcc: OpenCV codec code, or "auto" (the first of :data:`AUTO_CODECS` this OpenCV writes; the one chosen
            is :attr:`codec` after the first frame).
    """

    def __init__(self, path: str | Path, *, fps: float = 24.0, fourcc: str = "auto") -> None:
        self.path = Path(path)
        self.fps = fps
        self.fourcc = fourcc
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.codec: str | None = None

    def __enter__(self) -> VideoWriter:
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 RGB [H, W, 3] frame (every frame must have the size of the first)."""
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._writer = self._open((w, h))
            self._size = (h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame size {(h, w)} differs from the first frame's {self._size}")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _open(self, size_wh: tuple[int, int]) -> cv2.VideoWriter:
        codec = first_writable_codec() if self.fourcc == "auto" else self.fourcc
        writer = (
            None
            if codec is None
            else cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, size_wh)
        )
        if writer is None or not writer.isOpened():
            raise DataError(self.path, f"OpenCV cannot write a video with codec {codec or self.fourcc!r} here")
        self.codec = codec
        if self.fourcc == "auto" and codec not in BROWSER_CODECS:
            _log.warning(
                "%s: this OpenCV writes neither H.264 nor VP9: the %r video plays in VLC and most desktop players "
                "but not in browsers",
                self.path,
                codec,
            )
        return writer

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
