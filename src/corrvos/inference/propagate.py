"""Segment one video from masks on any frames, forwards and backwards: :func:`propagate`.

The engine of ``corrvos segment``, usable from Python. Given annotations {frame index: (label map, object ids)}:

- frames are the ones of a :class:`FrameRange` (``start``, ``start + stride``, ... below ``end``); only those are
  read, processed and written, and the network sees them as consecutive frames (``mem_every`` counts them);
- forwards: from the first annotated frame to the last frame, one :class:`InferenceCore`; each annotation is given
  on its frame with its ids (``InferenceCore.step(image, mask, objects)``): a new id starts an object there (it is
  absent before), a known id is corrected (its mask replaces the prediction; the other objects keep theirs
  outside the given objects);
- backwards: the frames before the first annotated frame run in reverse order with a fresh core, starting at the
  annotated frame with its mask (as SAM 2's ``propagate_in_video(reverse=True)``), so the result equals a forward
  run on the time-reversed video. Only the first annotation conditions this pass: objects annotated later are
  absent before their frame. With ``backward=False`` those frames are written as background.

Results go to ``write(index, name, rgb, label)`` once per frame of the range, in time order (so that an overlay
video can be written as it goes). Backward results wait in a scratch folder (label PNGs) until their turn; a video
file's frames for the backward pass are decoded once and kept there too (lossless PNG), since video decoding only
runs forwards. The scratch folder is deleted at the end, also on errors.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from corrvos.data.io import read_image
from corrvos.data.video import FolderSource, FrameSource
from corrvos.inference.core import InferenceCore
from corrvos.inference.geometry import to_float_image

__all__ = ["Annotation", "FrameRange", "PropagationStats", "WriteFn", "propagate"]

#: (label map uint8 [H, W] with 0 background and 255 void, ids it gives or None for its values other than 0/255)
Annotation = tuple[np.ndarray, "list[int] | None"]
#: called once per processed frame, in time order: (frame index, frame name, RGB uint8 [H, W, 3], label uint8 [H, W])
WriteFn = Callable[[int, str, np.ndarray, np.ndarray], None]
SCRATCH_PREFIX = ".partial-scratch-"


@dataclass(frozen=True)
class FrameRange:
    """The frames to process: ``start``, ``start + stride``, ... below ``end`` (exclusive; None: the last frame)."""

    start: int = 0
    end: int | None = None
    stride: int = 1

    def __post_init__(self) -> None:
        if self.start < 0 or self.stride < 1 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"bad frame range: start {self.start}, end {self.end}, stride {self.stride}")

    def indices(self, length: int) -> list[int]:
        """The frame indices of a video of ``length`` frames."""
        end = length if self.end is None else min(self.end, length)
        return list(range(self.start, end, self.stride))


@dataclass
class PropagationStats:
    """Work done: frames written, ``step`` calls, seconds in ``step`` and the argmax (I/O excluded), object ids.

    ``frames`` exceeds ``written`` by one when a backward pass ran (the annotated frame starts both passes).
    """

    written: int = 0
    frames: int = 0
    seconds: float = 0.0
    object_ids: list[int] = field(default_factory=list)


def propagate(
    make_core: Callable[[int], InferenceCore],
    source: FrameSource,
    annotations: Mapping[int, Annotation],
    write: WriteFn,
    *,
    frames: FrameRange | None = None,
    backward: bool = True,
    scratch_dir: str | Path | None = None,
    progress: bool = True,
) -> PropagationStats:
    """Segment ``source`` from ``annotations`` (see the module docstring) and hand every result to ``write``.

    Args:
        make_core: video length (frames of one pass) -> a fresh :class:`InferenceCore`.
        source: the frames.
        annotations: frame index -> (label map, ids); every index must be one of ``frames``.
        write: receives each processed frame's result, in time order.
        frames: the frame range (default: every frame).
        backward: propagate backwards from the first annotated frame (else earlier frames are background).
        scratch_dir: where the scratch folder goes (default: the system's temporary folder).
        progress: show progress bars.

    Raises:
        ValueError: no annotation, or an annotated frame outside ``frames``.
    """
    indices = (frames or FrameRange()).indices(len(source))
    wanted = set(indices)
    outside = sorted(i for i in annotations if i not in wanted)
    if not annotations or outside:
        raise ValueError(f"annotated frames {outside or '(none)'} are not among the processed frames")
    first = min(annotations)
    before = [i for i in indices if i < first]
    after = [i for i in indices if i >= first]
    stats = PropagationStats()
    ids: set[int] = set()
    with contextlib.ExitStack() as stack:
        done: dict[int, Path] = {}  # backward results by frame index
        if before and backward:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch_dir)))
            order = [*before, first]  # ascending; processed in reverse
            core = make_core(len(order))
            frames_back = _reversed_frames(source, order, scratch)
            for k, (i, _, rgb) in enumerate(_bar(frames_back, len(order), f"{source.path.name} (backward)", progress)):
                label = _step(core, rgb, annotations[first] if k == 0 else None, end=k == len(order) - 1, stats=stats)
                if i != first:
                    done[i] = scratch / f"label_{i}.png"
                    cv2.imwrite(str(done[i]), label)  # grayscale PNG: lossless
            ids.update(core.object_ids)
        core = make_core(len(after))
        k = 0
        for i, name, rgb in _bar(_frames(source, indices), len(indices), source.path.name, progress):
            if i < first:
                label = _read_scratch(done[i]) if i in done else np.zeros(rgb.shape[:2], np.uint8)
            else:
                label = _step(core, rgb, annotations.get(i), end=k == len(after) - 1, stats=stats)
                k += 1
            write(i, name, rgb, label)
            stats.written += 1
        ids.update(core.object_ids)
    stats.object_ids = sorted(ids)
    return stats


def _step(core: InferenceCore, rgb: np.ndarray, annotation: Annotation | None, *, end: bool, stats: PropagationStats):
    """One ``step`` and its argmax, timed (device synchronised): uint8 label map [H, W] with the object ids."""
    sync = torch.cuda.synchronize if core.device.type == "cuda" else (lambda: None)
    image = to_float_image(rgb)  # [3, H, W]
    mask = None if annotation is None else torch.from_numpy(annotation[0].astype(np.int64))  # [H, W]
    objects = None if annotation is None else annotation[1]
    sync()
    start = time.perf_counter()
    prob = core.step(image, mask, objects, end=end)  # [N+1, H, W]
    label = core.prob_to_mask(prob).to("cpu", torch.uint8).numpy()  # [H, W]
    sync()
    stats.seconds += time.perf_counter() - start
    stats.frames += 1
    return label


def _bar(items: Iterator, total: int, desc: str, progress: bool) -> Iterator:
    from corrvos.progress import progress_bar

    return iter(progress_bar(items, total=total, desc=desc, unit="frame", disable=not progress))


def _frames(source: FrameSource, indices: list[int]) -> Iterator[tuple[int, str, np.ndarray]]:
    """(index, name, RGB) of the frames ``indices`` (ascending): read directly from a folder, else decoded in order."""
    if not indices:
        return
    if isinstance(source, FolderSource):
        for i in indices:
            yield i, source.names[i], source.read(i)
        return
    wanted, last = set(indices), indices[-1]
    for i, (name, rgb) in enumerate(source):
        if i in wanted:
            yield i, name, rgb
        if i >= last:
            return


def _reversed_frames(source: FrameSource, indices: list[int], scratch: Path) -> Iterator[tuple[int, str, np.ndarray]]:
    """The frames ``indices`` (ascending) in reverse order; a video file's are decoded once into ``scratch``."""
    if isinstance(source, FolderSource):
        for i in reversed(indices):
            yield i, source.names[i], source.read(i)
        return
    kept: dict[int, tuple[str, Path]] = {}
    for i, name, rgb in _frames(source, indices):
        path = scratch / f"frame_{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        kept[i] = (name, path)
    for i in reversed(indices):
        if i in kept:  # a container that announced more frames than it holds
            yield i, kept[i][0], read_image(kept[i][1])


def _read_scratch(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # [H, W] uint8
    if label is None:  # pragma: no cover - written by this module a moment ago
        raise OSError(f"{path}: cannot read back a scratch label map")
    return label
