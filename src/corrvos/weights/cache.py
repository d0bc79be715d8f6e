"""The weight cache folder: where it is, what it holds, checksum records, and ``--model NAME`` resolution.

Layout (flat, so the folder can also be given as ``model.pretrained_backbones``, which looks for exactly one
``resnet50*.pth`` and one ``resnet18*.pth``)::

    <cache>/XMem.pth                  a verified, complete file (renamed here only after its check)
    <cache>/XMem.pth.part             an interrupted download, resumed by the next ``corrvos download``
    <cache>/XMem.pth.sha256           the SHA-256 recorded at the first download when none is published

The folder is ``--cache DIR`` where a command offers it, else ``$CORRVOS_CACHE``, else ``~/.cache/corrvos``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from corrvos.errors import CheckpointError, CorrvosError
from corrvos.weights.table import WeightFile, known_names, lookup

__all__ = [
    "CACHE_ENV",
    "DownloadError",
    "Status",
    "cache_dir",
    "cached_file",
    "check_digest",
    "part_path",
    "record_path",
    "resolve_model_path",
    "sha256_file",
    "status",
]

logger = logging.getLogger(__name__)

#: environment variable naming the cache folder.
CACHE_ENV = "CORRVOS_CACHE"


class DownloadError(CorrvosError):
    """A download that failed or a file that failed its checksum (reported as one line by the CLI)."""


def cache_dir(override: str | Path | None = None) -> Path:
    """``override`` (``--cache``), else ``$CORRVOS_CACHE``, else ``~/.cache/corrvos``; ``~`` is expanded."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else Path("~/.cache/corrvos").expanduser()


def part_path(dest: Path) -> Path:
    """Where the download of ``dest`` is written until it has been checked."""
    return dest.with_name(dest.name + ".part")


def record_path(dest: Path) -> Path:
    """Where the SHA-256 of a file without a published hash is recorded (``sha256sum`` format)."""
    return dest.with_name(dest.name + ".sha256")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_record(dest: Path) -> str | None:
    """The recorded SHA-256 of ``dest`` (first field of ``<dest>.sha256``), or ``None``."""
    rec = record_path(dest)
    if not rec.is_file():
        return None
    fields = rec.read_text(encoding="utf-8").split()
    return fields[0].lower() if fields else None


def check_digest(entry: WeightFile, digest: str, dest: Path) -> str | None:
    """Compare ``digest`` with what is known of ``entry``; returns ``None`` when it fits, else a one-line problem.

    Known means, in order: the published ``sha256``, the SHA-256 recorded at the first download
    (``<dest>.sha256``), then the ``sha256_prefix`` (torchvision file names). With none of them nothing is
    checked (the caller records the digest).
    """
    expected = entry.sha256 or read_record(dest)
    if expected is not None and digest != expected.lower():
        source = "published" if entry.sha256 else f"recorded in {record_path(dest).name}; --force discards it"
        return f"sha256 mismatch: expected {expected} ({source}), got {digest}"
    prefix = entry.sha256_prefix
    if prefix is not None and not digest.startswith(prefix.lower()):
        return f"sha256 mismatch: expected a hash starting with {prefix} (from the file name), got {digest}"
    return None


@dataclass(frozen=True)
class Status:
    """What the cache holds for one entry."""

    entry: WeightFile
    path: Path
    cached: bool
    partial_bytes: int

    @property
    def label(self) -> str:
        if self.cached:
            return "cached"
        if self.partial_bytes:
            return f"partial ({self.partial_bytes / 1e6:.1f} MB)"
        return "not downloaded"


def status(entry: WeightFile, cache: str | Path | None = None) -> Status:
    """Presence of the final file and of a ``.part`` (no hashing: cheap enough for ``--list``)."""
    dest = cache_dir(cache) / entry.filename
    part = part_path(dest)
    return Status(entry, dest, dest.is_file(), part.stat().st_size if part.is_file() else 0)


def cached_file(name: str, cache: str | Path | None = None) -> Path | None:
    """The cached file of entry ``name`` if it has been downloaded, else ``None`` (also for unknown names)."""
    entry = lookup(name)
    if entry is None:
        return None
    dest = cache_dir(cache) / entry.filename
    return dest if dest.is_file() else None


def resolve_model_path(model: str | Path, cache: str | Path | None = None) -> str | Path:
    """Map a ``--model`` value to a file: an existing path (or anything that looks like a path) is returned
    unchanged; a weight name (``xmem``, or a cache file name such as ``XMem.pth``) gives its cached file.

    Raises:
        CheckpointError: ``model`` is a bare word that is neither a file nor a known name (the known names are
            listed), or a known name whose file has not been downloaded yet (the message names
            ``corrvos download NAME``).
    """
    text = str(model)
    if Path(text).expanduser().exists():
        return model
    entry = lookup(text)
    if entry is None:
        if isinstance(model, Path) or "/" in text or os.sep in text or Path(text).suffix:
            return model  # a missing file: the checkpoint reader reports it
        raise CheckpointError(
            f"{text}: no such checkpoint file, and not a known weight name (known: {', '.join(known_names())})"
        )
    dest = cache_dir(cache) / entry.filename
    if not dest.is_file():
        how = f"run `corrvos download {entry.name}`" if entry.urls else f"download it from {entry.page}"
        raise CheckpointError(f"{entry.name}: weights not downloaded yet; {how} (expected at {dest})")
    logger.info("--model %s: using %s", text, dest)
    return dest
