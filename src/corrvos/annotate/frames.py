"""The frames of a project, by index: a frame folder as it is, or a video file decoded lazily in the background.

A video file is decoded once, in order, by a background thread into ``<project>/frames/<name>.png`` (lossless, so
the frames are those ``corrvos segment`` decodes); the server starts at once and a frame is shown as soon as it is
decoded (:meth:`ProjectFrames.read` waits for it). Propagation and exports need random access to every frame and
wait for the end of the decoding (:meth:`ProjectFrames.source`). Memory stays at one frame. A ``.complete`` file
marks a finished decoding; an interrupted one starts again on the next opening.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from corrvos.data.io import read_image
from corrvos.data.video import FolderSource, FrameSource, open_frames
from corrvos.errors import DataError
from corrvos.utils import atomic_path, make_output_dir

__all__ = ["ProjectFrames"]


class ProjectFrames:
    """Random-access frames of ``video`` (a frame folder or a video file decoded into ``cache``).

    Attributes:
        names: the frame names (a video file's: 00000, 00001, ...; fixed when the decoding ends if the container
            announced another number of frames).
        size: (H, W).
        fps: the video's frame rate (24 for a frame folder).
    """

    def __init__(self, video: str | Path, cache: str | Path) -> None:
        self.video, self.cache = Path(video), Path(cache)
        source = open_frames(self.video)  # raises a DataError naming the video when it cannot be read
        self.names: list[str] = list(source.names)
        self.size: tuple[int, int] = (int(source.size[0]), int(source.size[1]))
        self.fps = source.fps
        self._done = threading.Condition()
        self._decoded = 0
        self._error: Exception | None = None
        self._folder: FolderSource | None = None
        self._thread: threading.Thread | None = None
        if isinstance(source, FolderSource):
            self._folder, self._decoded = source, len(source)
        elif (self.cache / ".complete").is_file():
            self._folder = FolderSource(self.cache, fps=self.fps)
            self.names, self._decoded = list(self._folder.names), len(self._folder)
        else:
            make_output_dir(self.cache)
            for old in self.cache.glob("*.png"):  # an interrupted decoding
                old.unlink()
            self._thread = threading.Thread(target=self._decode, args=(source,), daemon=True)
            self._thread.start()

    @property
    def decoded(self) -> tuple[int, int]:
        """(frames decoded so far, frames in the video)."""
        with self._done:
            return self._decoded, len(self.names)

    @property
    def complete(self) -> bool:
        with self._done:
            return self._folder is not None or self._error is not None

    def read(self, index: int, timeout: float | None = 600.0) -> np.ndarray:
        """uint8 RGB [H, W, 3] of frame ``index``, waiting for the decoder to reach it."""
        with self._done:
            if not self._done.wait_for(lambda: self._decoded > index or self._folder or self._error, timeout):
                raise DataError(self.video, f"frame {index} is not decoded after {timeout} s")
            self._raise()
            folder = self._folder
        if folder is not None:
            return folder.read(index)
        return read_image(self.cache / f"{self.names[index]}.png")

    def source(self, timeout: float | None = None) -> FolderSource:
        """Every frame as a :class:`FolderSource` (waits for the end of the decoding)."""
        with self._done:
            self._done.wait_for(lambda: self._folder is not None or self._error is not None, timeout)
            self._raise()
            if self._folder is None:
                raise DataError(self.video, "the video is still being decoded")
            return self._folder

    def _raise(self) -> None:
        if self._error is not None:
            raise DataError(self.video, f"decoding failed: {self._error}")

    def _decode(self, source: FrameSource) -> None:
        try:
            count = 0
            for name, rgb in source:  # [H, W, 3] RGB, in order
                with atomic_path(self.cache / f"{name}.png") as tmp:
                    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                    cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                count += 1
                with self._done:
                    if count > len(self.names):  # the container announced fewer frames
                        self.names.append(name)
                    self._decoded = count
                    self._done.notify_all()
            (self.cache / ".complete").touch()
            folder = FolderSource(self.cache, fps=self.fps)
            with self._done:
                self.names, self._folder = list(folder.names), folder
                self._decoded = len(folder)
                self._done.notify_all()
        except Exception as exc:  # reported by read() and source()
            with self._done:
                self._error = exc
                self._done.notify_all()
