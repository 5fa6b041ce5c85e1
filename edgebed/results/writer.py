"""Where a run puts what it measured: ``<root>/<suite>/<run-id>/``.

A :class:`RunWriter` owns one run directory:

- ``config.json``: the suite's config, package versions, the host profile and
  the command line, written when the writer is created;
- ``events.jsonl``: one JSON object per line (a :class:`~edgebed.proto.records.Span`
  or any dict), flushed line by line so a crash keeps what was written;
- ``<name>.csv`` tables, ``<name>.png`` plots;
- ``summary.json``: the suite's headline numbers (strict: NaN/inf rejected),
  each key's provenance derived from its tagged value (:mod:`.provenance`);
- ``error.txt``: the traceback, when the ``with`` block raised.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import logging
import os
import re
import secrets
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from edgebed.results.host import host_profile, package_versions
from edgebed.results.jsonable import to_jsonable, write_json_atomic
from edgebed.results.provenance import split_provenance

if TYPE_CHECKING:  # annotations only; never imported at run time
    from typing_extensions import Self

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
        write_json_atomic(self._path / "config.json", self.config)
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

    def event(self, record: Any) -> str:
        """Append one record (a ``Span``, anything with ``to_dict()``, a dict or a
        dataclass) as one line of ``events.jsonl``, flushed immediately; the
        line written (without its newline) is returned, so a caller passing
        the record on sends exactly what the file holds."""
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
        return line

    # ---- tables, plots, summary

    def table(
        self, name: str, rows: Iterable[Any], columns: Sequence[str] | None = None
    ) -> Path:
        """Write ``<name>.csv`` from dicts or dataclass records: columns are
        ``columns`` (if given) then every other key in first-seen order;
        missing cells are empty; nested values JSON."""
        _check_name("table name", name)
        rows = [dataclasses.asdict(row) if dataclasses.is_dataclass(row) else dict(row)
                for row in rows]
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

        Every value is tagged with its provenance (``measured(x)``,
        ``modeled(x)``, ... of :mod:`edgebed.results.provenance`); the file
        holds the plain values and a ``provenance`` object derived from the
        tags. Values must be JSON-serializable (numpy scalars/arrays are
        converted); NaN or inf raises ``ValueError`` naming the key.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a summary must be a dict, not {type(data).__name__}")
        values, labels = split_provenance(data)
        clean = to_jsonable({**values, "provenance": labels}, strict=True)
        path = self._path / "summary.json"
        write_json_atomic(path, clean)
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
