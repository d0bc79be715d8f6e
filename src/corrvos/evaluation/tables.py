"""CSV files and console tables of the DAVIS evaluation, formatted exactly as the official script writes them.

The official ``evaluation_method.py`` (davisvideochallenge/davis2017-evaluation) writes two pandas DataFrames
with ``to_csv(f, index=False, float_format="%.3f")``. That means: the header row, then one row per record;
floats as ``"%.3f" % value`` (so ``-0.000`` for tiny negative values); NaN as an empty field; fields quoted only
when they contain the separator, a quote or a newline (``csv.QUOTE_MINIMAL``); lines ending with
``os.linesep``. This module reproduces that byte for byte without pandas, and also writes corrvos' own
full-precision files (``repr`` of every float64) under other names.

All values are fractions in [0, 1]; only the console tables may show them differently.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

__all__ = [
    "GLOBAL_COLUMNS",
    "PER_SEQUENCE_COLUMNS",
    "format_csv",
    "format_official_float",
    "format_text_table",
]

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def format_official_float(value: float) -> str:
    """``"%.3f" % value``, or the empty string for NaN (pandas' default missing-value text)."""
    return "" if math.isnan(value) else "%.3f" % value  # noqa: UP031 - the exact pandas float_format


def _full_float(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def format_csv(header: Sequence[str], rows: Sequence[Sequence[object]], *, full_precision: bool = False) -> str:
    """CSV text with pandas ``to_csv(index=False, float_format="%.3f")`` conventions.

    Args:
        header: column names.
        rows: records; floats are formatted (``%.3f``, or ``repr`` with ``full_precision``), other values
            with ``str``.
        full_precision: write floats with all their digits instead of three decimals.
    """
    fmt = _full_float if full_precision else format_official_float
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=os.linesep, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    for row in rows:
        writer.writerow([fmt(v) if isinstance(v, float) else str(v) for v in row])
    return buf.getvalue()


def format_text_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, decimals: int = 3) -> str:
    """A right-aligned console table (floats with ``decimals`` decimals, NaN as ``nan``)."""
    cells = [[str(h) for h in header]]
    for row in rows:
        cells.append(
            [("nan" if math.isnan(v) else f"{v:.{decimals}f}") if isinstance(v, float) else str(v) for v in row]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [r[0].ljust(widths[0]) if isinstance(rows[0][0] if rows else 0.0, str) else r[0].rjust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts))
    return "\n".join(lines)
