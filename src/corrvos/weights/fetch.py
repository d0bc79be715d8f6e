"""Resumable, checksum-verified downloads into the weight cache.

:func:`download` streams a file with :mod:`urllib` to ``<file>.part``. When a ``.part`` exists (an earlier run was
interrupted) it asks only for the missing bytes with an HTTP ``Range`` request; a server that ignores ``Range``
(status 200 instead of 206) is handled by starting over. After the transfer the SHA-256 of the whole file is
checked (:func:`corrvos.weights.cache.check_digest`); on a mismatch the ``.part`` is deleted and a one-line
:class:`DownloadError` names the file, the expected and the actual hash. Only a checked file is renamed (atomically,
``os.replace``) to its final name, so a file in the cache under its final name is always complete.

Files without a published SHA-256 (see :mod:`corrvos.weights.table`) are trusted on first use: the hash of the first
complete download is printed and written to ``<file>.sha256``, and every later check of the cached file compares
against it. That detects corruption or replacement later on; it cannot prove that the first download was the
file the authors published.

Mirrors: every URL's scheme and host are replaced by ``mirror`` (``--mirror`` / ``$CORRVOS_DOWNLOAD_MIRROR``) and
its path is kept, e.g. ``https://github.com/hkchengrex/XMem/releases/download/v1.0/XMem.pth`` with mirror
``http://127.0.0.1:8000/weights`` becomes ``http://127.0.0.1:8000/weights/hkchengrex/XMem/releases/download/v1.0/
XMem.pth``. The tests use this to serve files from a local HTTP server.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, TextIO

from corrvos import __version__
from corrvos.weights.cache import (
    DownloadError,
    cache_dir,
    check_digest,
    part_path,
    read_record,
    record_path,
    sha256_file,
)
from corrvos.weights.table import WeightFile

__all__ = ["MIRROR_ENV", "apply_mirror", "download"]

logger = logging.getLogger(__name__)

#: environment variable giving a mirror that replaces the scheme and host of every URL.
MIRROR_ENV = "CORRVOS_DOWNLOAD_MIRROR"

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _TryNextURL(Exception):
    """This URL cannot serve the file (HTTP error, unreachable, an HTML page): try the next one."""


def apply_mirror(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (whose own path becomes a prefix); unchanged if no
    mirror."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    base = urllib.parse.urlsplit(mirror)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def download(
    entry: WeightFile,
    cache: str | Path | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    out: TextIO | None = None,
) -> Path:
    """Make sure ``entry`` is in the cache, downloading (or resuming) it when needed; returns the file.

    Args:
        entry: the table entry.
        cache: the cache folder (``None``: ``$CORRVOS_CACHE`` or ``~/.cache/corrvos``).
        mirror: replaces the scheme and host of every URL (``None``: ``$CORRVOS_DOWNLOAD_MIRROR`` if set).
        force: download again even if a checked file is cached (an existing ``.part`` is discarded too).
        progress: show progress on stderr (a bar on a terminal, plain lines in a log).
        timeout: socket timeout in seconds.
        out: where the one-line messages go (default stdout).

    Raises:
        DownloadError: no URL could serve the file, the transfer stopped before the end (the ``.part`` is kept and
            the next call resumes it), or the file fails its checksum (nothing is kept).
    """
    out = sys.stdout if out is None else out
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    dest = cache_dir(cache) / entry.filename
    part = part_path(dest)
    if force:
        for stale in (dest, part, record_path(dest)):
            stale.unlink(missing_ok=True)
    if dest.is_file():
        problem = check_digest(entry, sha256_file(dest), dest)
        if problem:
            raise DownloadError(f"{dest}: cached file fails its check: {problem}; rerun with --force to replace it")
        print(f"{entry.name}: already cached: {dest} ({_record_or_describe(entry, dest)})", file=out)
        return dest
    if not entry.urls:
        raise DownloadError(
            f"{entry.name}: no direct download URL is known; download it from {entry.page} and save it as {dest}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in entry.urls:
        target = apply_mirror(url, mirror)
        try:
            _fetch(target, part, label=entry.filename, progress=progress, timeout=timeout)
            break
        except _TryNextURL as exc:
            logger.debug("%s: %s", target, exc)
            failures.append(f"{target}: {exc}")
    else:
        raise DownloadError(
            f"{entry.name}: download failed ({'; '.join(failures)}); the file is published on {entry.page}, "
            f"you may save it by hand as {dest}"
        )
    digest = sha256_file(part)
    problem = check_digest(entry, digest, dest)
    if problem:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{entry.filename}: {problem}; the download was deleted")
    os.replace(part, dest)
    print(f"{entry.name}: downloaded: {dest} ({_record_or_describe(entry, dest, digest)})", file=out)
    return dest


def _record_or_describe(entry: WeightFile, dest: Path, digest: str | None = None) -> str:
    """Say what the (already passed) check compared against; trust on first use: when no full hash is published nor
    recorded yet, write ``<dest>.sha256`` and say so."""
    if entry.sha256 is not None:
        return "sha256 matches the published hash"
    if read_record(dest) is not None:
        return f"sha256 matches the hash recorded in {record_path(dest).name}"
    digest = digest or sha256_file(dest)
    record_path(dest).write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    checked = f"sha256 starts with {entry.sha256_prefix} as its name says; " if entry.sha256_prefix else ""
    return f"{checked}no published sha256: recorded {digest} in {record_path(dest).name}, checked from now on"


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"corrvos/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch(url: str, part: Path, *, label: str, progress: bool, timeout: float) -> None:
    """Bring ``part`` to the complete file at ``url``, resuming from its current size when it exists."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # Range Not Satisfiable: the .part may already be complete
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            if total == offset:
                return
            part.unlink()  # larger than the file, or unknown size: start over
            return _fetch(url, part, label=label, progress=progress, timeout=timeout)
        raise _TryNextURL(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _TryNextURL(f"cannot connect ({getattr(exc, 'reason', exc)})") from exc
    with resp:
        if resp.headers.get_content_type() == "text/html":
            raise _TryNextURL("the server sent an HTML page instead of the file (quota, sign-in or a moved file?)")
        length = resp.headers.get("Content-Length")
        if offset and resp.status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise _TryNextURL(f"bad Content-Range {resp.headers.get('Content-Range')!r} for bytes={offset}-")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
            logger.info("%s: resuming at byte %d", label, offset)
        else:
            if offset:
                logger.info("%s: the server ignored the Range request; downloading from the start", label)
            offset, mode = 0, "wb"
            total = int(length) if length is not None else None
        with open(part, mode) as f:
            _copy(resp, f, label=label, offset=offset, total=total, progress=progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"{label}: the connection closed after {size} of {total} bytes; run the same command again to resume "
            f"({part} is kept)"
        )


def _copy(
    resp: http.client.HTTPResponse, f: BinaryIO, *, label: str, offset: int, total: int | None, progress: bool
) -> None:
    from corrvos.progress import progress_bar

    done = offset
    try:
        with progress_bar(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
        ) as bar:
            while block := resp.read(_CHUNK):
                f.write(block)
                done += len(block)
                bar.update(len(block))
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
        raise DownloadError(
            f"{label}: download interrupted after {done} bytes ({type(exc).__name__}: {exc}); run the same command "
            f"again to resume ({f.name} is kept)"
        ) from exc


def _total_from_content_range(value: str) -> int | None:
    match = re.match(r"bytes\s+\*/(\d+)", value)
    return int(match.group(1)) if match else None
