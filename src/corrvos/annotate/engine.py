"""Propagation of a project's annotations with any corrvos model: forward, backward or both, cancellable.

The annotations are read exactly as ``corrvos segment --mask-dir <project>/annotations`` reads them
(:func:`corrvos.data.user_masks.load_annotations`) and run through the same engine,
:func:`corrvos.inference.propagate.propagate`, so that:

- ``both`` gives the masks of ``corrvos segment`` on every frame (backwards from the first annotated frame, then
  forwards through every frame, each annotated frame given to ``InferenceCore.step`` with its mask);
- ``forward`` runs from the first annotated frame to the last frame and leaves earlier frames as they are (equal
  to ``corrvos segment --start <first annotated frame>``);
- ``backward`` runs from the last annotated frame to frame 0 on the time-reversed frames, every annotated frame
  given on its way (equal to ``corrvos segment`` on the reversed video); later frames are left as they are.

Memory of corrected frames: a corrected frame is an annotated frame; each run starts a fresh
:class:`~corrvos.inference.InferenceCore` and gives it every annotated frame of the pass, in order, with the ids
its mask shows. Such a frame always becomes a memory frame (as the first frame), under the family's memory rules
(STCN keeps every memory frame; XMem / Cutie keep it in working memory, from where it may be consolidated into
long-term memory). An id that a corrected frame does not show keeps its prediction there, as in ``segment``.

Each frame's result is written to the project as soon as its turn comes (time order; the frames of a backward pass
before the first annotated frame appear when that pass ends). :class:`Propagator` runs one job at a time in a
thread, with progress (network steps done / to do) and cancellation (checked before every step).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from corrvos.annotate.project import Project
from corrvos.data.user_masks import folder_mask_files, load_annotations
from corrvos.data.video import FolderSource, FrameSource
from corrvos.errors import DataError
from corrvos.inference import InferenceCore
from corrvos.inference.propagate import Annotation, FrameRange, propagate

__all__ = ["DIRECTIONS", "JobStatus", "Propagator", "run_propagation"]

DIRECTIONS = ("forward", "backward", "both")


class Cancelled(Exception):
    """Raised inside a propagation when its job was cancelled."""


@dataclass
class JobStatus:
    """State of the last propagation job (what ``GET /api/propagate`` returns)."""

    state: str = "idle"  # idle | running | done | cancelled | failed
    direction: str | None = None
    done: int = 0
    total: int = 0
    frames_written: int = 0
    message: str = ""
    seconds: float = 0.0


def read_annotations(project: Project) -> dict[int, Annotation]:
    """The project's annotations as ``segment --mask-dir`` reads them: {frame index: (label, ids)}.

    Raises:
        DataError: no annotated frame, the first shows no object, or an annotation file cannot be read.
    """
    folder = project.annotations_dir
    if not folder.is_dir() or not any(folder.glob("*.png")):
        raise DataError(None, "no annotated frame yet: draw an object on a frame first")
    files, problems = folder_mask_files(folder, project.frame_names, "auto")
    annotations, found = load_annotations(files, project.size, fmt="auto")
    problems += found
    if problems or annotations is None:
        raise DataError(None, "; ".join(problems))
    return {i: (m.label, m.objects) for i, m in annotations.masks.items()}


class _ReversedFolder(FolderSource):
    """Frames 0..last of a frame folder in reverse order (frame ``last`` first)."""

    def __init__(self, base: FolderSource, last: int) -> None:
        self.paths = base.paths[: last + 1][::-1]
        FrameSource.__init__(self, path=base.path, names=[p.stem for p in self.paths], fps=base.fps, size=base.size)


class _CountingCore:
    """An InferenceCore that reports each step and stops a cancelled job before the next one."""

    def __init__(self, core: InferenceCore, on_step: Callable[[], None]) -> None:
        self._core = core
        self._on_step = on_step

    def step(self, *args: Any, **kwargs: Any) -> Any:
        self._on_step()
        return self._core.step(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def run_propagation(
    project: Project,
    make_core: Callable[[int], InferenceCore],
    direction: str,
    *,
    on_step: Callable[[int, int], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Propagate the project's annotations (module docstring); returns the number of frames written.

    ``on_step(done, total)`` is called before every network step (it may raise :class:`Cancelled`);
    ``on_frame(index)`` after each frame's mask is stored.
    """
    if direction not in DIRECTIONS:
        raise DataError(None, f"direction must be one of {DIRECTIONS}, got {direction!r}")
    annotations = read_annotations(project)
    n = len(project.frame_names)
    first, last = min(annotations), max(annotations)
    if direction == "both":
        source: FolderSource = project.source
        given, frames, backward = annotations, FrameRange(), True
        total = n + (1 if first > 0 else 0)
        to_frame = _identity
    elif direction == "forward":
        source, given, frames, backward = project.source, annotations, FrameRange(start=first), False
        total = n - first
        to_frame = _identity
    else:
        source = _ReversedFolder(project.source, last)
        given = {last - i: a for i, a in annotations.items()}
        frames, backward, total = FrameRange(), False, last + 1
        to_frame = lambda j: last - j  # noqa: E731 - index in the reversed frames -> frame index
    steps = [0]

    def counted(length: int) -> Any:
        def step() -> None:
            if on_step is not None:
                on_step(steps[0], total)
            steps[0] += 1

        return _CountingCore(make_core(length), step)

    written = [0]

    def write(index: int, name: str, rgb: np.ndarray, label: np.ndarray) -> None:
        frame = to_frame(index)
        project.write_propagated(frame, label)
        written[0] += 1
        if on_frame is not None:
            on_frame(frame)

    propagate(counted, source, given, write, frames=frames, backward=backward, progress=False)
    return written[0]


def _identity(index: int) -> int:
    return index


class Propagator:
    """Runs one propagation job at a time in a background thread; :meth:`status` and :meth:`cancel` are safe to
    call from any thread."""

    def __init__(self, project: Project, make_core: Callable[[int], InferenceCore]) -> None:
        self.project = project
        self.make_core = make_core
        self._status = JobStatus()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> JobStatus:
        with self._lock:
            return JobStatus(**vars(self._status))

    def start(self, direction: str) -> JobStatus:
        """Start a job; raises DataError when one is running or there is no annotation."""
        if direction not in DIRECTIONS:
            raise DataError(None, f"direction must be one of {DIRECTIONS}, got {direction!r}")
        with self._lock:
            if self._status.state == "running":
                raise DataError(None, "a propagation is running: cancel it or wait for it to finish")
            read_annotations(self.project)  # no annotation: the message now, not in the thread
            self._cancel.clear()
            self._status = JobStatus(state="running", direction=direction)
            self._thread = threading.Thread(target=self._run, args=(direction,), daemon=True)
            self._thread.start()
            return JobStatus(**vars(self._status))

    def cancel(self) -> JobStatus:
        self._cancel.set()
        return self.status()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Wait for the running job (tests, the command line)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def _on_step(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise Cancelled
        with self._lock:
            self._status.done, self._status.total = done, total

    def _on_frame(self, _frame: int) -> None:
        with self._lock:
            self._status.frames_written += 1

    def _run(self, direction: str) -> None:
        start = time.perf_counter()
        state, message = "done", ""
        try:
            run_propagation(self.project, self.make_core, direction, on_step=self._on_step, on_frame=self._on_frame)
        except Cancelled:
            state, message = "cancelled", "cancelled: frames done so far keep their new masks"
        except Exception as exc:  # reported in the page; the server keeps running
            state, message = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._status.state, self._status.message = state, message
            self._status.seconds = time.perf_counter() - start
            if state == "done":
                self._status.done = self._status.total
