"""Progress reporting: a tqdm bar on a terminal, a few plain lines in a log.

A tqdm bar redraws itself with carriage returns; written to a file (``corrvos demo 2> demo.log``, a batch job's
log) every redraw stays, and the demo's log grew to 58 KB of bars (issue #21). :func:`progress_bar` is the one
place corrvos creates a progress display: when the stream (stderr by default) is a terminal it returns a tqdm bar;
otherwise a :class:`LineProgress` that prints one plain line at each quarter of the total (and one at the end; with
no known total only the end), with the rate and the latest ``set_postfix`` values. In a log, transient displays
(``leave=False``) and displays opened while another one is open (the per-video frame bars under ``infer``'s
per-sequence bar) print nothing, so a command writes a few lines, not one per frame.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["LINE_STEPS", "LineProgress", "progress_bar"]

LINE_STEPS = 4
"""A non-terminal display prints a line each time another 1/LINE_STEPS of the total is done."""

_OPEN: weakref.WeakSet[LineProgress] = weakref.WeakSet()
"""LineProgress displays that print and are not closed yet (a display opened meanwhile stays silent); weak, so a
display dropped without ``close`` does not silence the rest of the process."""


def _amount(n: float, unit: str, unit_scale: bool) -> str:
    if not unit_scale:
        return f"{n:g} {unit}"
    for prefix, size in (("G", 2**30), ("M", 2**20), ("k", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {prefix}{unit}"
    return f"{n:g} {unit}"


class LineProgress:
    """The subset of tqdm's interface corrvos uses (iterate, ``update``, ``set_postfix``, ``close``, ``with``),
    printing plain lines instead of a redrawn bar (see the module docstring)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        leave: bool = True,
        disable: bool = False,
        unit_scale: bool = False,
        file: TextIO | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.silent = disable or not leave or len(_OPEN) > 0
        if not self.silent:
            _OPEN.add(self)
        self.unit_scale = unit_scale
        self.file = file
        self.postfix: dict[str, Any] = {}
        self._start, self._start_n = time.perf_counter(), initial
        self._printed_step = self._step_of(initial)
        self._closed = False

    def _step_of(self, n: float) -> int:
        return int(n * LINE_STEPS // self.total) if self.total else 0

    def _line(self) -> str:
        seconds = time.perf_counter() - self._start
        rate = (self.n - self._start_n) / seconds if seconds > 0 else 0.0
        done = _amount(self.n, self.unit, self.unit_scale)
        if self.total:
            done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
            if self.unit_scale:
                done = f"{_amount(self.n, self.unit, True)} of {_amount(self.total, self.unit, True)}"
        rate_text = _amount(rate, self.unit, self.unit_scale) if self.unit_scale else f"{rate:.2f} {self.unit}"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {done}, {seconds:.1f} s, {rate_text}/s{extra}"

    def _print(self) -> None:
        stream = self.file if self.file is not None else sys.stderr
        print(self._line(), file=stream, flush=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        step = self._step_of(self.n)
        if not self.silent and self.total and step > self._printed_step and self.n < self.total:
            self._print()
        self._printed_step = max(self._printed_step, step)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if not self._closed and not self.silent:
            self._print()
            _OPEN.discard(self)
        self._closed = True

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate (created without an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None, **kwargs: Any) -> Any:
    """A tqdm bar when ``file`` (default ``sys.stderr``) is a terminal, else a :class:`LineProgress`.

    Takes tqdm's arguments; those :class:`LineProgress` does not know (``dynamic_ncols``, ``unit_divisor``, ...)
    only shape the terminal bar.
    """
    stream = file if file is not None else sys.stderr
    is_tty = getattr(stream, "isatty", None)
    if callable(is_tty) and is_tty():
        from tqdm import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    known = ("total", "desc", "unit", "initial", "leave", "disable", "unit_scale")
    return LineProgress(iterable, file=file, **{k: v for k, v in kwargs.items() if k in known})
