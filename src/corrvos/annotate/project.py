"""The project folder of ``corrvos annotate``: annotations, propagated masks, objects and settings, saved as you work.

Layout of a project folder::

    project.json              the video, its frame names and size, the objects, the settings (JSON)
    annotations/<frame>.png   the frames a person drew or corrected: palette PNGs of object ids (0 background)
    masks/<frame>.png         the propagated masks, one per frame, palette PNGs
    frames/<frame>.png        a video file's frames, decoded once in the background (:mod:`.frames`)
    exports/                  what the export buttons write
    .lock                     held (``flock``) by the server that has the project open

``annotations/`` is a mask folder exactly as ``corrvos segment --mask-dir`` reads it: the annotations of a project
give the same masks in ``corrvos segment`` as in the tool. Every file is written atomically (a temporary file
renamed into place). One server holds a project at a time (a second one is refused with a clear message); inside
a server, writes are serialised by a lock, so two browser windows on one project never interleave half writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corrvos.annotate.frames import ProjectFrames
from corrvos.data.io import DAVIS_PALETTE, VOID_LABEL, read_label, write_label
from corrvos.data.video import FolderSource, open_frames
from corrvos.errors import DataError
from corrvos.utils import atomic_write_text, make_output_dir

__all__ = ["AnnotatedObject", "Project", "ProjectSettings"]

PROJECT_FILE = "project.json"
FORMAT_VERSION = 1


@dataclass
class AnnotatedObject:
    """One object of the project: its id in the label PNGs (1..254), a name and an RGB colour ``#rrggbb``."""

    id: int
    name: str
    colour: str


@dataclass
class ProjectSettings:
    """What the page remembers: overlay opacity, brush size, the last frame shown and propagation direction."""

    opacity: float = 0.5
    brush: int = 12
    frame: int = 0
    direction: str = "both"


@dataclass
class _State:
    video: str
    frame_names: list[str]
    size: tuple[int, int]
    objects: list[AnnotatedObject] = field(default_factory=list)
    settings: ProjectSettings = field(default_factory=ProjectSettings)


def default_colour(obj_id: int) -> str:
    """The DAVIS palette colour of an id, as ``#rrggbb`` (the colour of the exported palette PNGs)."""
    r, g, b = (int(c) for c in DAVIS_PALETTE[obj_id])
    return f"#{r:02x}{g:02x}{b:02x}"


class Project:
    """An open project folder (see the module docstring); :meth:`open` creates or reopens one.

    Holds the folder's lock until :meth:`close`. Frames are read from disk when asked for (never all in memory).
    """

    def __init__(self, root: Path, state: _State, frames: ProjectFrames, lock_fd: int) -> None:
        self.root = root
        self._state = state
        self.frames = frames
        self._lock_fd = lock_fd
        self.lock = threading.RLock()  # serialises writes of the server's threads

    # ----------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | Path, video: str | Path | None = None) -> Project:
        """Open the project ``root``, creating it for ``video`` when it has no ``project.json`` yet.

        Raises:
            DataError: the folder is held by another server, the video cannot be read, or (reopening) the video
                given is another one than the project's.
        """
        root = Path(root)
        if video is not None and not (root / PROJECT_FILE).is_file():
            open_frames(video)  # an unreadable video: its message before anything is created
        root = make_output_dir(root)
        lock_fd = _take_lock(root / ".lock")
        try:
            return cls._open_locked(root, video, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _open_locked(cls, root: Path, video: str | Path | None, lock_fd: int) -> Project:
        path = root / PROJECT_FILE
        if path.is_file():
            state = _read_state(path)
            if video is not None and Path(video).resolve() != Path(state.video).resolve():
                raise DataError(root, f"this project annotates {state.video}, not {video}: choose another --project")
        elif video is None:
            raise DataError(root, "not a corrvos annotate project (no project.json): give --video to create it")
        else:
            state = None
        frames = ProjectFrames(Path(video if state is None else state.video), root / "frames")
        if state is None:
            state = _State(str(Path(video).resolve()), list(frames.names), frames.size)
        elif tuple(frames.size) != tuple(state.size) or (frames.video.is_dir() and frames.names != state.frame_names):
            raise DataError(state.video, "the frames changed since the project was made: start a new --project")
        project = cls(root, state, frames, lock_fd)
        project._save()
        return project

    def close(self) -> None:
        """Release the folder's lock (the project must not be used after)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------- reading
    @property
    def frame_names(self) -> list[str]:
        """The frames' names (a video file's are final once decoded, see :mod:`corrvos.annotate.frames`)."""
        return list(self.frames.names)

    @property
    def source(self) -> FolderSource:
        """Every frame, random access (waits for the decoding of a video file)."""
        return self.frames.source()

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return self._state.size

    @property
    def video(self) -> Path:
        return Path(self._state.video)

    @property
    def objects(self) -> list[AnnotatedObject]:
        return [AnnotatedObject(**asdict(o)) for o in self._state.objects]

    @property
    def settings(self) -> ProjectSettings:
        return ProjectSettings(**asdict(self._state.settings))

    @property
    def annotations_dir(self) -> Path:
        return self.root / "annotations"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    def frame(self, index: int) -> np.ndarray:
        """uint8 RGB [H, W, 3] of frame ``index``."""
        return self.frames.read(self._check_index(index))

    def annotated_frames(self) -> list[int]:
        """Indices of the annotated frames, ascending."""
        index = {n: i for i, n in enumerate(self.frames.names)}
        folder = self.annotations_dir
        found = [index[p.stem] for p in folder.glob("*.png") if p.stem in index] if folder.is_dir() else []
        return sorted(found)

    def annotation(self, index: int) -> np.ndarray | None:
        """The annotation of frame ``index`` (uint8 [H, W] ids) or None."""
        path = self.annotations_dir / f"{self.frames.names[self._check_index(index)]}.png"
        return read_label(path) if path.is_file() else None

    def propagated(self, index: int) -> np.ndarray | None:
        """The propagated mask of frame ``index`` or None."""
        path = self.masks_dir / f"{self.frames.names[self._check_index(index)]}.png"
        return read_label(path) if path.is_file() else None

    def mask(self, index: int) -> tuple[np.ndarray | None, str]:
        """The mask of frame ``index`` (shown, exported): (label, "propagated" | "annotation" | "none").

        The propagated mask when there is one (an annotated frame's propagated mask is the engine's output on it, as
        ``corrvos segment`` writes it), else the annotation. Annotating a frame deletes its propagated mask, which
        the annotation outdates.
        """
        with self.lock:
            label = self.propagated(index)
            if label is not None:
                return label, "propagated"
            label = self.annotation(index)
            return label, "annotation" if label is not None else "none"

    # --------------------------------------------------------------------------------------------- writing
    def set_annotation(self, index: int, label: np.ndarray, *, source: str = "mask") -> list[int]:
        """Make ``label`` the annotation of frame ``index`` (a corrected frame becomes an annotated frame).

        The frame's propagated mask is deleted (outdated until the next propagation). Ids not yet in the object list
        are added to it. Returns the ids the mask shows.

        Raises:
            DataError: naming ``source``: the label is not of the frame size, or has ids outside 1..254 / 255.
        """
        label = np.asarray(label)
        h, w = self.size
        if label.ndim != 2 or label.shape != (h, w):
            raise DataError(
                source, f"mask is {'x'.join(map(str, label.shape))} but the frames are {h}x{w} (HxW): nothing changed"
            )
        ids = sorted(int(v) for v in np.unique(label) if int(v) not in (0, VOID_LABEL))
        with self.lock:
            known = {o.id for o in self._state.objects}
            for obj_id in ids:
                if obj_id not in known:
                    self._state.objects.append(AnnotatedObject(obj_id, f"object {obj_id}", default_colour(obj_id)))
            self._state.objects.sort(key=lambda o: o.id)
            write_label(self._annotation_path(index), label.astype(np.uint8), self.palette())
            stale = self.masks_dir / self._annotation_path(index).name
            if stale.is_file():
                stale.unlink()
            self._save()
        return ids

    def delete_annotation(self, index: int) -> bool:
        """Remove the annotation of frame ``index`` (its propagated mask stays); True if there was one."""
        with self.lock:
            path = self._annotation_path(index)
            if not path.is_file():
                return False
            path.unlink()
            return True

    def write_propagated(self, index: int, label: np.ndarray) -> None:
        """Store the propagated mask of frame ``index`` (atomically)."""
        with self.lock:
            write_label(self.masks_dir / f"{self.frames.names[self._check_index(index)]}.png", label, self.palette())

    def add_object(self, name: str | None = None, colour: str | None = None) -> AnnotatedObject:
        """A new object with the smallest free id."""
        with self.lock:
            used = {o.id for o in self._state.objects}
            obj_id = next((i for i in range(1, VOID_LABEL) if i not in used), None)
            if obj_id is None:
                raise DataError(self.root, "254 objects already: no free id")
            obj = AnnotatedObject(obj_id, name or f"object {obj_id}", _check_colour(colour or default_colour(obj_id)))
            self._state.objects.append(obj)
            self._state.objects.sort(key=lambda o: o.id)
            self._save()
            return obj

    def update_object(self, obj_id: int, *, name: str | None = None, colour: str | None = None) -> AnnotatedObject:
        """Rename or recolour an object."""
        with self.lock:
            obj = self._object(obj_id)
            if name is not None:
                if not name.strip() or len(name) > 100:
                    raise DataError(None, f"object name must be 1 to 100 characters, got {name!r}")
                obj.name = name.strip()
            if colour is not None:
                obj.colour = _check_colour(colour)
            self._save()
            return AnnotatedObject(**asdict(obj))

    def delete_object(self, obj_id: int) -> int:
        """Delete an object: it is erased (set to background) from every annotation and propagated mask.

        Returns the number of files changed.
        """
        with self.lock:
            obj = self._object(obj_id)
            changed = 0
            for folder in (self.annotations_dir, self.masks_dir):
                for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
                    label = read_label(path)
                    if np.any(label == obj_id):
                        label[label == obj_id] = 0
                        if folder == self.annotations_dir and not np.any((label != 0) & (label != VOID_LABEL)):
                            path.unlink()  # nothing left to annotate on this frame
                        else:
                            write_label(path, label, self.palette())
                        changed += 1
            self._state.objects.remove(obj)
            self._save()
            return changed

    def update_settings(self, **values: object) -> ProjectSettings:
        """Change page settings (unknown names raise DataError)."""
        with self.lock:
            settings = asdict(self._state.settings)
            unknown = sorted(set(values) - set(settings))
            if unknown:
                raise DataError(None, f"unknown settings {unknown}; known: {sorted(settings)}")
            settings.update(values)
            new = ProjectSettings(**settings)  # type: ignore[arg-type]
            if not 0 <= float(new.opacity) <= 1 or not 1 <= int(new.brush) <= 500:
                raise DataError(None, "opacity must lie in [0, 1] and brush in 1..500")
            if new.direction not in ("forward", "backward", "both"):
                raise DataError(None, f"direction must be forward, backward or both, got {new.direction!r}")
            self._state.settings = new
            self._save()
            return ProjectSettings(**asdict(new))

    def palette(self) -> np.ndarray:
        """[256, 3] uint8: the DAVIS palette (the exported PNGs keep the DAVIS colours that training expects)."""
        return DAVIS_PALETTE

    # --------------------------------------------------------------------------------------------- helpers
    def _annotation_path(self, index: int) -> Path:
        return self.annotations_dir / f"{self.frames.names[self._check_index(index)]}.png"

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self.frames.names):
            raise DataError(None, f"frame {index} is outside the video's {len(self.frames.names)} frames")
        return index

    def _object(self, obj_id: int) -> AnnotatedObject:
        for obj in self._state.objects:
            if obj.id == obj_id:
                return obj
        raise DataError(None, f"no object with id {obj_id}")

    def _save(self) -> None:
        self._state.frame_names = list(self.frames.names)
        state = asdict(self._state)
        state["format"] = FORMAT_VERSION
        atomic_write_text(self.root / PROJECT_FILE, json.dumps(state, indent=1) + "\n")


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataError(path.parent, "project is open in another corrvos annotate server: close it first") from None
    return fd


def _read_state(path: Path) -> _State:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        objects = [AnnotatedObject(int(o["id"]), str(o["name"]), str(o["colour"])) for o in raw.get("objects", [])]
        settings = ProjectSettings(**raw.get("settings", {}))
        return _State(
            str(raw["video"]), [str(n) for n in raw["frame_names"]], (int(raw["size"][0]), int(raw["size"][1])),
            objects, settings,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"unreadable project file ({type(exc).__name__}: {exc})") from exc


def _check_colour(colour: str) -> str:
    text = colour.strip().lower()
    if len(text) != 7 or text[0] != "#" or any(c not in "0123456789abcdef" for c in text[1:]):
        raise DataError(None, f"colour must be #rrggbb, got {colour!r}")
    return text
