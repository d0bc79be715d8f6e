"""Small helpers shared across the package: atomic file writes, output folders.

Outputs and checkpoints are written to a temporary file in the destination folder and moved into place with
``os.replace``, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from corrvos.errors import DataError

__all__ = ["atomic_path", "atomic_write_text", "format_size", "make_output_dir"]


def format_size(size: tuple[int, int] | list[int]) -> str:
    """A frame size (H, W) as every corrvos message prints it: ``"480x854"`` (height first, as ``--size``)."""
    return f"{int(size[0])}x{int(size[1])}"


def make_output_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents) if needed and return it.

    Raises:
        DataError: a file stands where the folder (or one of its parents) must go.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise DataError(blocker, "is a file, not a folder: cannot write outputs under it") from exc
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    Args:
        path: the final destination. Its parent folder is created if needed.
        suffix: suffix of the temporary file (defaults to the destination's suffix, so that writers which
            infer the format from the extension, like OpenCV and PIL, still work).
    """
    path = Path(path)
    make_output_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
        )
    except OSError as exc:  # name the file the user asked for, not the hidden temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8, newlines as given)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
