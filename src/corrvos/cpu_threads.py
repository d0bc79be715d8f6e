"""The intra-op (OpenMP) thread count of a command, chosen once at start from the cores it may use and their load.

PyTorch starts one intra-op thread per core. When other processes keep some of those cores busy, the threads
spin-wait for each other and CPU work gets several times slower (issue #21: with one busy process on 2 cores,
``train`` reached its first step 5-8x later and ``segment`` ran at 1.9 FPS against 8.5-21 FPS with one thread).

:func:`choose_threads` is the decision, a pure function; :func:`configure_threads` gathers its inputs (CPU count,
the affinity mask, the load on the cores, ``OMP_NUM_THREADS``), applies the choice with ``torch.set_num_threads``
and logs it once. Order of precedence: ``--threads N``, then ``OMP_NUM_THREADS``, then the automatic choice::

    threads = clamp(round(usable cores - load from other processes - DataLoader workers), 1, usable cores)

where the usable cores are those of ``os.sched_getaffinity(0)`` (else ``os.cpu_count()``) and the load is
the number of other runnable tasks at start (Linux ``/proc/loadavg``, median of a few samples; elsewhere the
1-minute load average). DataLoader workers count one core each (PyTorch gives each worker one thread).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from corrvos.errors import ConfigError

__all__ = ["THREADS_HELP", "ThreadChoice", "add_threads_argument", "choose_threads", "configure_threads", "other_load"]

logger = logging.getLogger(__name__)

THREADS_HELP = (
    "intra-op CPU threads (default: OMP_NUM_THREADS if set, else the cores this process may use minus the load "
    "of other processes and the DataLoader workers, at least 1; logged at start)"
)

_last_logged: tuple[int, str] | None = None


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count and why."""

    threads: int
    source: str
    """"--threads", "OMP_NUM_THREADS" or "auto"."""
    usable_cores: int
    load: float | None = None
    """Other runnable processes counted by the automatic choice (None when it was not needed)."""
    workers: int = 0

    def describe(self) -> str:
        """One line for the log, e.g. ``intra-op threads: 1 (auto: 2 usable cores, load 1.0, 0 workers)``."""
        if self.source != "auto":
            return f"intra-op threads: {self.threads} (from {self.source}; {self.usable_cores} usable cores)"
        load = f"{self.load:.1f}" if self.load is not None else "unknown"
        return (
            f"intra-op threads: {self.threads} (auto: {self.usable_cores} usable cores, load {load} from other "
            f"processes, {self.workers} DataLoader workers; --threads N or OMP_NUM_THREADS=N overrides)"
        )


def _parse_env_threads(raw: str) -> int:
    """The first value of ``OMP_NUM_THREADS`` (OpenMP allows a comma list of nesting levels)."""
    first = raw.split(",")[0].strip()
    try:
        value = int(first)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"OMP_NUM_THREADS={raw!r}: not a positive whole number (unset it or pass --threads N)")
    return value


def choose_threads(
    *,
    cpu_count: int | None,
    affinity: Collection[int] | None,
    load: float | None,
    env: Mapping[str, str],
    explicit: int | None = None,
    workers: int = 0,
) -> ThreadChoice:
    """The intra-op thread count (see the module docstring for the rule).

    Args:
        cpu_count: ``os.cpu_count()`` (None when unknown).
        affinity: the CPUs this process may run on (``os.sched_getaffinity(0)``); None where unsupported.
        load: runnable tasks of other processes (or the load average); None when unknown (taken as 0).
        env: the environment (``OMP_NUM_THREADS`` is read from it).
        explicit: ``--threads`` (wins over everything); must be >= 1.
        workers: DataLoader worker processes the command starts (one core each).

    Raises:
        ConfigError: ``explicit`` < 1 or an ``OMP_NUM_THREADS`` that is not a positive whole number.
    """
    usable = len(affinity) if affinity else max(cpu_count or 1, 1)
    if explicit is not None:
        if explicit < 1:
            raise ConfigError(f"--threads must be >= 1, got {explicit}")
        return ThreadChoice(explicit, "--threads", usable, workers=workers)
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if raw:
        return ThreadChoice(_parse_env_threads(raw), "OMP_NUM_THREADS", usable, workers=workers)
    busy = max(load, 0.0) if load is not None and math.isfinite(load) else 0.0
    free = usable - busy - max(workers, 0)
    threads = int(min(max(math.floor(free + 0.5), 1), usable))  # round half up, then clamp to [1, usable]
    return ThreadChoice(threads, "auto", usable, load=busy, workers=workers)


def other_load(samples: int = 5, interval: float = 0.01) -> float | None:
    """Tasks of other processes that are runnable now: the median over ``samples`` reads of ``/proc/loadavg``'s
    running count, less this process's own reading thread; elsewhere the 1-minute load average (None if neither)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                running = f.read().split()[3].split("/")[0]  # "1.05 0.80 0.60 3/412 12345" -> "3"
            counts.append(max(int(running) - 1, 0))
        except (OSError, IndexError, ValueError):
            break
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        return float(statistics.median(counts))
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def configure_threads(explicit: int | None = None, *, workers: int = 0) -> ThreadChoice:
    """Choose the thread count (:func:`choose_threads` with this machine's inputs), apply it with
    ``torch.set_num_threads`` and log it (once per distinct choice)."""
    global _last_logged
    import torch

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    needs_load = explicit is None and not os.environ.get("OMP_NUM_THREADS", "").strip()
    choice = choose_threads(
        cpu_count=os.cpu_count(),
        affinity=affinity,
        load=other_load() if needs_load else None,
        env=os.environ,
        explicit=explicit,
        workers=workers,
    )
    torch.set_num_threads(choice.threads)
    if (choice.threads, choice.source) != _last_logged:
        logger.info("%s", choice.describe())
        _last_logged = (choice.threads, choice.source)
    return choice


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads N`` (see :data:`THREADS_HELP`)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
