"""Frame sources: uint8 RGB frames [H, W, 3] from a folder of images or a video file (OpenCV), in order.

:func:`open_frames` picks the source of a path; :class:`FolderSource` lists image files in lexicographic order
(the DAVIS / YouTube-VOS naming), :class:`VideoFileSource` decodes a video file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrvos.data.io import list_frames, read_image
from corrvos.data.sequence import image_size
from corrvos.errors import DataError

__all__ = ["VIDEO_EXTENSIONS", "FolderSource", "FrameSource", "VideoFileSource", "open_frames"]

_log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


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
