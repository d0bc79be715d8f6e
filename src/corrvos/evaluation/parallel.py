"""Process-pool plumbing of the evaluators: ordered parallel map with a progress bar, and one-error reporting.

Workers never call ``exit()``: input problems travel back as strings inside the results and are raised in the
parent as one :class:`corrvos.errors.DataError` listing every offender; unexpected exceptions propagate.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from corrvos.errors import DataError

__all__ = ["TaskRunner", "raise_problems", "run_pool"]

T = TypeVar("T")
R = TypeVar("R")
_MAX_LISTED = 40  # problems listed in one error message


class TaskRunner:
    """Maps a function over tasks, in one reusable process pool when ``workers > 1``, with a progress bar.

    Results come back in task order; tasks are handed out largest first (by ``weight``) to balance the
    processes. Exceptions raised in a worker propagate to the caller. Use as a context manager.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            if exc[0] is not None:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None

    def map(
        self, func: Callable[[T], R], tasks: list[T], *, desc: str, progress: bool, weights: list[int] | None = None
    ) -> list[R]:
        """``[func(t) for t in tasks]``, computed in the pool (largest ``weights`` first) or in this process."""
        from corrvos.progress import progress_bar

        out: list = [None] * len(tasks)  # results in task order
        order = sorted(range(len(tasks)), key=lambda i: -weights[i]) if weights else list(range(len(tasks)))
        with progress_bar(total=len(tasks), desc=desc, unit="seq", disable=not progress, leave=False) as bar:
            if self.workers == 1 or len(tasks) <= 1:
                for i in order:
                    out[i] = func(tasks[i])
                    bar.update(1)
            else:
                if self._pool is None:
                    self._pool = multiprocessing.get_context().Pool(self.workers)
                for i, res in self._pool.imap_unordered(_Indexed(func), [(i, tasks[i]) for i in order]):
                    out[i] = res
                    bar.update(1)
        return out


def run_pool(func: Callable[[T], R], tasks: list[T], workers: int, desc: str, progress: bool) -> list[R]:
    """One-off :meth:`TaskRunner.map`."""
    with TaskRunner(min(workers, max(len(tasks), 1))) as runner:
        return runner.map(func, tasks, desc=desc, progress=progress)


class _Indexed(Generic[T, R]):
    """Picklable wrapper returning (index, func(task))."""

    def __init__(self, func: Callable[[T], R]) -> None:
        self.func = func

    def __call__(self, item: tuple[int, T]) -> tuple[int, R]:
        return item[0], self.func(item[1])


def raise_problems(problems: list[str], results_dir: Path) -> None:
    """Raise one DataError listing every problem (at most ``_MAX_LISTED`` lines), if there is any."""
    if not problems:
        return
    listed = "\n  - ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise DataError(
        results_dir, f"{len(problems)} problem(s) found, nothing was scored or written:\n  - {listed}{more}"
    )
