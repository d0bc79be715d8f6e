"""Run-folder ownership and graceful stops: what the trainer does before its first step and when asked to stop.

- :func:`check_run_folder`: a new run refuses a folder that holds an earlier run (``RUN_FILES``), or clears only
  those files with ``overwrite``; every process looks before rank 0 deletes, so all agree.
- :class:`StopSignals`: SIGINT / SIGTERM set a flag that the trainer reads after each step (it then writes that
  step's checkpoint and stops); a second SIGINT aborts at once. Used as a context manager that restores the
  previous handlers.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from pathlib import Path

from corrvos.errors import ConfigError
from corrvos.training.distributed import DistInfo, barrier

__all__ = ["RUN_FILES", "StopSignals", "check_run_folder"]

logger = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "tb", "checkpoints")
"""What a run writes into its folder; a new run refuses a folder holding any of them (see ``overwrite``)."""


def check_run_folder(out_dir: Path, *, resuming: bool, overwrite: bool, dist_info: DistInfo) -> None:
    """Refuse to start a new run in ``out_dir`` when it holds an earlier run, or delete that run's files when
    ``overwrite`` (other files, e.g. a generated ``synthetic_data/``, are kept). A resumed run may use its folder."""
    found = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    if found and not resuming:
        if not overwrite:
            names = ", ".join(p.name for p in found)
            raise ConfigError(
                f"{out_dir}: holds an earlier run ({names}); continue it with --resume {out_dir}, "
                f"choose a fresh --out folder, or pass --overwrite to delete that run's files"
            )
        barrier(dist_info)  # every process has looked before rank 0 deletes
        if dist_info.is_main:
            for path in found:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            logger.warning("--overwrite: deleted %s from %s", ", ".join(p.name for p in found), out_dir)
    barrier(dist_info)


class StopSignals:
    """While entered, SIGINT / SIGTERM record their name in ``received`` instead of ending the process.

    Only the main thread can install handlers; entered from another thread it installs nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logger.warning("%s: finishing the current step and writing its checkpoint (Ctrl-C again aborts)", self.received)

    def __enter__(self) -> StopSignals:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}
