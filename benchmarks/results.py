"""Where a benchmark run puts what it measured: ``results/<suite>/<run-id>/``.

A :class:`RunWriter` owns one run directory:

- ``config.json``: the suite's config, package versions, the host profile and
  the command line, written when the writer is created;
- ``events.jsonl``: one JSON object per line (a :class:`~edgebed.proto.records.Span`
  or any dict), flushed line by line so a crash keeps what was written;
- ``<name>.csv`` tables, ``<name>.png`` plots;
- ``summary.json``: the suite's headline numbers (strict: NaN/inf rejected);
- ``error.txt``: the traceback, when the ``with`` block raised.

Also :func:`progress` (a tqdm bar on stderr, only on a TTY) and
:func:`print_table` (fixed-width text tables for per-device results).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import enum
import json
import logging
import math
import numbers
import os
import platform
import re
import secrets
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from edgebed.device.meter.rpi import board_model

if TYPE_CHECKING:  # annotations only; never imported at run time
    from typing_extensions import Self

logger = logging.getLogger(__name__)

#: Distributions whose versions every run records (``python`` is added first).
VERSIONED_PACKAGES = ("torch", "grpcio", "protobuf", "numpy", "edgebed")


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------- JSON


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    item = getattr(key, "item", None)  # numpy scalar keys
    return str(item() if callable(item) else key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def to_jsonable(value: Any, strict: bool = False, path: str = "") -> Any:
    """Convert ``value`` to plain JSON types (dict, list, str, int, float, bool, None).

    Dataclasses, ``argparse.Namespace`` and mappings become dicts; tuples and
    sets become lists; numpy scalars and arrays (anything with ``tolist``)
    become Python numbers and lists; paths become strings; enums their value.

    ``strict=False`` (config, events): NaN/inf become ``None`` and unknown
    objects become ``str(obj)``. ``strict=True`` (summaries): NaN/inf raise
    ``ValueError`` and unknown objects ``TypeError``, both naming the key.
    """
    where = path or "<root>"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        if strict:
            raise ValueError(f"{where} is {value!r}; NaN/inf is not allowed here")
        return None
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, strict, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _json_key(key)
            out[name] = to_jsonable(item, strict, _join(path, name))
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, strict, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(item, strict, f"{path}[{i}]") for i, item in enumerate(value)]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars/arrays, torch tensors
    if callable(tolist):
        return to_jsonable(tolist(), strict, path)
    if strict:
        raise TypeError(f"{where} is a {type(value).__name__}, which is not JSON-serializable")
    return str(value)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- profile


def package_versions() -> dict[str, str | None]:
    """Versions of Python and :data:`VERSIONED_PACKAGES` (``None`` if not installed).

    Read from installed distribution metadata, so nothing heavy is imported.
    """
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED_PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["edgebed"] is None:
        import edgebed

        versions["edgebed"] = getattr(edgebed, "__version__", None)
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            fields: dict[str, str] = {}
            for line in fh:
                key, sep, val = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), val.strip())
        for key in ("model name", "Model", "Hardware", "cpu model", "cpu"):
            if fields.get(key):
                return fields[key]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_profile() -> dict[str, Any]:
    """Hostname, platform, CPU model, cores and RAM of this host (stdlib + psutil)."""
    profile: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "board": board_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": None,
        "ram_bytes": None,
    }
    try:
        import psutil
    except ImportError:  # psutil is a dependency; stay usable without it anyway
        logger.warning("psutil is not installed; host profile lacks RAM and physical cores")
        return profile
    profile["cpu_cores_physical"] = psutil.cpu_count(logical=False)
    profile["ram_bytes"] = int(psutil.virtual_memory().total)
    return profile


# --------------------------------------------------------------------------- writer


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(
            f"{kind} {name!r} must be letters, digits, '.', '_' or '-' "
            "(no path separators, not starting with '.' or '-')"
        )
    return name


def new_run_id() -> str:
    """UTC ``YYYYmmdd-HHMMSS`` plus a short random suffix, e.g. ``20240501-120000-3fa2c1``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (str, bool, int, float)):
        return value
    value = to_jsonable(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else value


class RunWriter:
    """Writes one run's results under ``<root>/<suite>/<run_id>/``.

    ``config`` is a dict, a dataclass or an ``argparse.Namespace``. ``argv``
    defaults to ``sys.argv``. An explicit ``run_id`` whose directory already
    holds files is refused (``ValueError``) so two runs never mix.

    Use it as a context manager: on an exception the traceback goes to
    ``error.txt`` and the exception propagates; the events file is closed on
    exit either way. ``event`` is thread-safe.
    """

    def __init__(
        self,
        suite: str,
        config: Any = None,
        root: str | os.PathLike[str] = "results",
        run_id: str | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.suite = _check_name("suite", suite)
        base = Path(root) / suite
        if run_id is None:
            for _ in range(10):
                run_id = new_run_id()
                try:
                    (base / run_id).mkdir(parents=True)
                    break
                except FileExistsError:
                    continue
            else:  # pragma: no cover - ten 24-bit collisions in one second
                raise RuntimeError(f"could not create a fresh run directory under {base}")
        else:
            _check_name("run id", run_id)
            (base / run_id).mkdir(parents=True, exist_ok=True)
            if any((base / run_id).iterdir()):
                raise ValueError(
                    f"results directory {base / run_id} already exists and is not empty; "
                    "choose another run id"
                )
        self.run_id: str = run_id
        self._path = base / run_id
        self._lock = threading.Lock()
        self._events: IO[str] | None = None
        self._closed = False
        self.config: dict[str, Any] = {
            "suite": suite,
            "run_id": run_id,
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "command": list(sys.argv if argv is None else argv),
            "cwd": os.getcwd(),
            "config": to_jsonable(config) if config is not None else {},
            "versions": package_versions(),
            "host": host_profile(),
        }
        _write_json_atomic(self._path / "config.json", self.config)
        logger.info("writing %s results to %s", suite, self._path)

    @classmethod
    def from_args(cls, args: argparse.Namespace, config: Any = None) -> RunWriter:
        """A writer for the ``edgebed-bench`` options in ``args`` (suite, results, run id).

        ``config`` defaults to all of ``args``.
        """
        return cls(
            args.suite,
            config=args if config is None else config,
            root=args.results,
            run_id=args.run_id,
        )

    @property
    def path(self) -> Path:
        """The run directory."""
        return self._path

    # ---- events

    def event(self, record: Any) -> None:
        """Append one record (a ``Span``, anything with ``to_dict()``, a dict or a
        dataclass) as one line of ``events.jsonl``, flushed immediately."""
        to_dict = getattr(record, "to_dict", None)
        if callable(to_dict):
            data = to_dict()
        elif isinstance(record, Mapping) or (
            dataclasses.is_dataclass(record) and not isinstance(record, type)
        ):
            data = record
        else:
            raise TypeError(f"an event must be a Span or a dict, not {type(record).__name__}")
        line = json.dumps(to_jsonable(data), allow_nan=False, separators=(",", ":"))
        with self._lock:
            if self._closed:
                raise ValueError(f"run writer for {self._path} is closed")
            if self._events is None:
                self._events = open(  # noqa: SIM115 - kept open for the run, closed in close()
                    self._path / "events.jsonl", "a", encoding="utf-8"
                )
            self._events.write(line + "\n")
            self._events.flush()

    # ---- tables, plots, summary

    def table(
        self, name: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
    ) -> Path:
        """Write ``<name>.csv``: columns are ``columns`` (if given) then every other
        key in first-seen order; missing cells are empty; nested values JSON."""
        _check_name("table name", name)
        rows = [dict(row) for row in rows]
        fieldnames: list[str] = list(columns or [])
        seen = set(fieldnames)
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.add(key)
                    fieldnames.append(key)
        path = self._path / f"{name}.csv"
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fieldnames, restval="")
            if fieldnames:
                writer.writeheader()
            for row in rows:
                writer.writerow({key: _csv_cell(val) for key, val in row.items()})
        return path

    def plot(self, name: str, fig: Any, dpi: int = 150) -> Path:
        """Save a matplotlib figure as ``<name>.png`` (rendered by Agg) and close it
        if pyplot manages it."""
        _check_name("plot name", name)
        path = self._path / f"{name}.png"
        fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
        return path

    def summary(self, data: Mapping[str, Any]) -> Path:
        """Write ``summary.json`` and return its path.

        Values must be JSON-serializable (numpy scalars/arrays are converted);
        NaN or inf raises ``ValueError`` naming the key.
        """
        if not isinstance(data, Mapping) and not (
            dataclasses.is_dataclass(data) and not isinstance(data, type)
        ):
            raise TypeError(f"a summary must be a dict, not {type(data).__name__}")
        clean = to_jsonable(data, strict=True)
        path = self._path / "summary.json"
        _write_json_atomic(path, clean)
        return path

    # ---- lifecycle

    def close(self) -> None:
        """Close ``events.jsonl``; later ``event`` calls raise."""
        with self._lock:
            self._closed = True
            if self._events is not None:
                self._events.close()
                self._events = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None and not (
                issubclass(exc_type, SystemExit) and exc.code in (0, None)
            ):
                text = "".join(traceback.format_exception(exc_type, exc, tb))
                (self._path / "error.txt").write_text(text, encoding="utf-8")
                logger.error("run failed; traceback in %s", self._path / "error.txt")
        finally:
            self.close()
        return False

    def __repr__(self) -> str:
        return f"RunWriter({str(self._path)!r})"


# --------------------------------------------------------------------------- console


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


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                 float_format: str | None = None) -> str:
    """Render rows as a fixed-width table: a header, a dashed rule, one line per row.

    Numbers are right-aligned, text left-aligned; a column whose present values
    are all numbers has a right-aligned header. Missing values show as ``-``.
    Floats use ``float_format`` (a format spec like ``".2f"``) or a 4-decimal /
    scientific default.
    """
    columns = list(columns)
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
