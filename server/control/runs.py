"""Submitted runs: their state, what they said, and where their files live.

A run's directory is ``<state-dir>/runs/<suite>/<run-id>/``, the layout of
a local ``results/`` tree: ``config.json`` when it is submitted, spans in
``events.jsonl`` as they arrive, tables, plots and ``summary.json`` as the
experiment writes them, ``log.txt`` (what it printed) and ``run.json`` (its
state, rewritten at every change). A server that stops mid-run leaves the
run's files as they were; when it starts again, a run that was queued or
running is marked failed.
"""
import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from edgebed.results.jsonable import write_json_atomic
from edgebed.results.writer import RunWriter

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ENDED = (DONE, FAILED, CANCELLED)
STATE_FILE = "run.json"
LOG_FILE = "log.txt"
MAX_EVENTS = 20000  # kept in memory for late watchers; the files keep everything


@dataclass
class RunStatus:
    """What ``run.json`` holds and ``ListRuns`` shows."""

    run_id: str
    suite: str
    options_json: str
    devices: List[str]
    state: str = QUEUED
    error: str = ""
    progress: float = 0.0
    progress_text: str = ""
    submitted_unix_s: float = field(default_factory=time.time)
    started_unix_s: float = 0.0
    ended_unix_s: float = 0.0


class Run:
    """One submitted run: its status, its writer and its event stream."""

    def __init__(self, status: RunStatus, path: Path, writer: Optional[RunWriter] = None) -> None:
        self.status = status
        self.path = path
        self.writer = writer
        self.task: Optional["asyncio.Task[None]"] = None
        self.module = None     # the suite's module and its decoded options, while in this life
        self.options = None
        self._events: List[Tuple[int, str, str]] = []  # (seq, kind, payload)
        self._seq = 0
        self._changed = asyncio.Condition()
        self._log = None

    @property
    def run_id(self) -> str:
        return self.status.run_id

    @property
    def ended(self) -> bool:
        return self.status.state in ENDED

    # ------------------------------------------------------------ what it says
    def _emit(self, kind: str, payload: str) -> None:
        self._seq += 1
        self._events.append((self._seq, kind, payload))
        if len(self._events) > MAX_EVENTS:
            del self._events[: len(self._events) - MAX_EVENTS]
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def log(self, text: str) -> None:
        """A line the experiment printed: to ``log.txt`` and to watchers."""
        if self._log is None:
            self._log = open(self.path / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._log.write(text + "\n")
        self._log.flush()
        self._emit("log", text)

    def span(self, line: str) -> None:
        self._emit("span", line)

    def update(self, **changes) -> None:
        """Change the status; saved at once, and sent to watchers."""
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.save()
        self._emit("state", "")

    def save(self) -> None:
        write_json_atomic(self.path / STATE_FILE, asdict(self.status))

    def close_files(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.writer is not None:
            self.writer.close()

    async def events_since(self, seq: int) -> Tuple[List[Tuple[int, str, str]], bool]:
        """Events after ``seq`` (waiting for one if there is none yet), and
        whether the run has ended."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ended or (self._events and
                                                                self._events[-1][0] > seq))
        return [e for e in self._events if e[0] > seq], self.ended

    def files(self) -> Iterator[Path]:
        for path in sorted(self.path.rglob("*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                yield path


class RunStore:
    """Every run the server knows, on disk under ``<root>/runs/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.runs: Dict[str, Run] = {}
        self._load()

    def _load(self) -> None:
        """Runs of earlier lives of this server; ones it was running failed with it."""
        for state_file in sorted(self.root.glob(f"*/*/{STATE_FILE}")):
            try:
                status = RunStatus(**json.loads(state_file.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                logger.warning("cannot read %s (%s); the run is not listed", state_file, exc)
                continue
            run = Run(status, state_file.parent)
            if status.state not in ENDED:
                status.error = (f"the server stopped while the run was {status.state}; its "
                                "files up to then are kept")
                status.state, status.ended_unix_s = FAILED, time.time()
                run.save()
                logger.warning("run %s failed with the server's last life", status.run_id)
            self.runs[status.run_id] = run

    def create(self, suite: str, options_json: str, devices: List[str], config: dict,
               command: List[str]) -> Run:
        writer = RunWriter(suite, config=config, root=self.root, argv=command)
        status = RunStatus(writer.run_id, suite, options_json, list(devices))
        run = Run(status, writer.path, writer)
        run.save()
        self.runs[run.run_id] = run
        return run

    def get(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise KeyError(run_id) from None

    def listing(self) -> List[Run]:
        return sorted(self.runs.values(), key=lambda r: r.status.submitted_unix_s)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "state")
    return Path(base) / "edgebed"
