"""What a run shows on the terminal: progress bars and fixed-width tables."""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
from typing import IO, Any, Iterable, Mapping, Sequence



def progress_enabled(stream: IO[str] | None = None) -> bool:
    """``EDGEBED_PROGRESS=1`` forces bars on, ``=0`` off; otherwise on iff stderr is a TTY."""
    forced = os.environ.get("EDGEBED_PROGRESS", "").strip()
    if forced == "1":
        return True
    if forced == "0":
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(iterable: Iterable[Any] | None = None, total: int | None = None,
             desc: str = "", **kwargs: Any) -> Any:
    """A tqdm progress bar on stderr, disabled unless stderr is a TTY (or
    ``EDGEBED_PROGRESS=1``). Extra keyword arguments go to ``tqdm``."""
    from tqdm import tqdm

    stream = sys.stderr
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable=iterable, total=total, desc=desc or None, file=stream,
                disable=not progress_enabled(stream), **kwargs)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _format_cell(value: Any, float_format: str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        if float_format is not None:
            return format(value, float_format)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def format_table(rows: Sequence[Any], columns: Sequence[str],
                 float_format: str | None = None) -> str:
    """Render rows (dicts or dataclass records) as a fixed-width table: a
    header, a dashed rule, one line per row.

    Numbers are right-aligned, text left-aligned; a column whose present values
    are all numbers has a right-aligned header. Missing values show as ``-``.
    Floats use ``float_format`` (a format spec like ``".2f"``) or a 4-decimal /
    scientific default.
    """
    columns = list(columns)
    rows = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in rows]
    cells = [[_format_cell(row.get(col), float_format) for col in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(col)) for row in rows if row.get(col) is not None)
        for col in columns
    ]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]

    def render(values: Sequence[str], right: Sequence[bool]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    lines = [render(columns, numeric), "  ".join("-" * w for w in widths)]
    for row, line in zip(rows, cells):
        right = [_is_number(row.get(col)) or (row.get(col) is None and num)
                 for col, num in zip(columns, numeric)]
        lines.append(render(line, right))
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                file: IO[str] | None = None, float_format: str | None = None) -> str:
    """Print :func:`format_table` to ``file`` (default: the current ``sys.stdout``)
    and return the text."""
    text = format_table(rows, columns, float_format)
    (sys.stdout if file is None else file).write(text)
    return text
