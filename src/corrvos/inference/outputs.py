"""Result folders that never mix runs and never hold half-written sequences: :class:`ResultsFolder`.

``corrvos infer`` writes one folder per sequence. Each is first written under a hidden temporary name
(``.partial-<sequence>``) and renamed into place when its last PNG is written, so a killed run leaves only
whole sequences. A manifest (``corrvos_results.json`` at the top of the output folder) records which job made
the results: the checkpoint (its sha256), the dataset, split and every inference setting. A later run

- into a new or empty folder starts from scratch;
- of the same job continues with ``skip_done`` (sequences already in place are not run again) and is otherwise
  refused, since it would rewrite results that are already there;
- of another job (another checkpoint, split or setting) is refused: its results would sit beside stale ones;
- with ``overwrite`` first deletes what an earlier corrvos run wrote (the manifest's sequence folders, the
  temporary folders and the manifest), nothing else.

A non-empty folder without a manifest holds foreign results and is refused, also with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corrvos.errors import DataError
from corrvos.utils import atomic_write_text, make_output_dir

__all__ = ["MANIFEST_NAME", "PARTIAL_PREFIX", "ResultsFolder", "file_sha256"]

MANIFEST_NAME = "corrvos_results.json"
PARTIAL_PREFIX = ".partial-"


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file (the identity of a checkpoint in the manifest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ResultsFolder:
    """The output folder of one inference job.

    Args:
        top: the folder given as ``--out``; the manifest lives here.
        job: what makes the results (JSON-serialisable): two runs continue each other only if equal.
        sequence_root: where the sequence folders go (``top`` itself, or ``top/Annotations`` for YouTube-VOS).
    """

    def __init__(self, top: str | Path, job: dict[str, Any], *, sequence_root: str | Path | None = None) -> None:
        self.top = Path(top)
        self.job = json.loads(json.dumps(job))  # normalised (tuples -> lists), compared with the stored one
        self.root = Path(sequence_root) if sequence_root is not None else self.top
        self.manifest = self.top / MANIFEST_NAME
        self._planned: tuple[dict[str, Any] | None, list[str], bool] = (None, [], False)

    # ------------------------------------------------------------------------------------------------ state
    def _read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest.is_file():
            return None
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                self.manifest, f"unreadable results manifest ({exc}); delete the folder or use another --out"
            ) from exc
        if not isinstance(data, dict) or "job" not in data:
            raise DataError(self.manifest, "not a corrvos results manifest; use another --out")
        return data

    def done(self) -> list[str]:
        """Sequences whose folder is in place (complete: folders only appear by renaming a finished one)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _write_manifest(self, sequences: list[str]) -> None:
        atomic_write_text(self.manifest, json.dumps({"job": self.job, "sequences": sequences}, indent=2) + "\n")

    # ------------------------------------------------------------------------------------------------ set-up
    def plan(self, sequences: list[str], *, skip_done: bool = False, overwrite: bool = False) -> list[str]:
        """Check the folder without changing it; return the sequences still to run, in order.

        :meth:`begin` then carries the plan out (clearing with ``overwrite``, writing the manifest).

        Raises:
            DataError: the folder holds foreign results, results of another job, or results of this job while
                neither ``skip_done`` nor ``overwrite`` is given (the message names the option that fits).
        """
        if self.top.exists() and not self.top.is_dir():
            raise DataError(self.top, "is a file, not a folder: choose another --out")
        manifest = self._read_manifest()
        if manifest is None and self.top.is_dir() and any(self.top.iterdir()):
            raise DataError(
                self.top,
                "output folder is not empty and holds no corrvos results manifest (foreign files): "
                "choose a new or empty --out",
            )
        self._planned = (manifest, list(sequences), overwrite)
        if manifest is None or overwrite:
            return list(sequences)
        old = manifest["job"]
        if old != self.job:
            changed = sorted(k for k in set(old) | set(self.job) if old.get(k) != self.job.get(k))
            raise DataError(
                self.top,
                f"holds results of another run (different {', '.join(changed)}): use a new --out, or --overwrite "
                "to delete them",
            )
        done = set(self.done())
        if not skip_done:
            raise DataError(
                self.top,
                f"holds results of this run ({len(done & set(sequences))} of {len(sequences)} sequences done): "
                "--skip-done continues it, --overwrite starts again",
            )
        return [s for s in sequences if s not in done]

    def begin(self) -> None:
        """Carry out :meth:`plan`: clear an earlier run (``overwrite``) or leftovers, write the manifest."""
        manifest, sequences, overwrite = self._planned
        if manifest is not None and overwrite:
            self._clear(manifest)
            manifest = None
        make_output_dir(self.root)
        self._remove_partials()
        known = [] if manifest is None else list(manifest.get("sequences", []))
        self._write_manifest(sorted(set(known) | set(sequences)))

    def prepare(self, sequences: list[str], *, skip_done: bool = False, overwrite: bool = False) -> list[str]:
        """:meth:`plan` then :meth:`begin`; returns the sequences still to run."""
        todo = self.plan(sequences, skip_done=skip_done, overwrite=overwrite)
        self.begin()
        return todo

    def _remove_partials(self) -> None:
        if self.root.is_dir():
            for p in self.root.glob(f"{PARTIAL_PREFIX}*"):
                shutil.rmtree(p)

    def _clear(self, manifest: dict[str, Any]) -> None:
        """Delete what corrvos wrote: the manifest's sequence folders, partial folders, the manifest."""
        self._remove_partials()
        for name in manifest.get("sequences", []):
            folder = self.root / str(name)
            if folder.is_dir() and folder.resolve().parent == self.root.resolve():
                shutil.rmtree(folder)
        self.manifest.unlink()

    # ------------------------------------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def sequence(self, name: str) -> Iterator[Path]:
        """Yield a temporary folder for sequence ``name``; on success rename it to ``<root>/<name>``."""
        if "/" in name or name.startswith("."):
            raise DataError(self.root / name, "sequence name cannot hold '/' or start with '.'")
        partial = self.root / f"{PARTIAL_PREFIX}{name}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        final = self.root / name
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
