"""A run's ``events.jsonl`` read as it grows, and what the live views need from it.

The dashboard, ``/metrics`` and the TensorBoard mirror all read a run the
same way: from the file its writer appends to (spans as they arrive, and
the dict events suites write: solver decisions, federated rounds). A
:class:`RunDigest` keeps a byte offset and reads only complete new lines,
so it can follow a run that is still being written, and keeps:

- totals per device, phase, power backend and provenance (spans, seconds,
  joules, bytes, low-confidence windows): every span, never sampled;
- the latest spans for a timeline (bounded), each with a sequence number so
  a page can ask for the ones after the last it has;
- the solver decisions (``phase: decision``) as written;
- predicted beside measured, one row per comparison the events carry:
  feel's round time (``feel_round``: ``predicted_s`` / ``round_s``), tl's
  completion latency and per-device finish times (``T_pred_s`` /
  ``T_meas_s``), split's end-to-end delay (eq. 24 beside the measured
  delays, and the suite's own ``pred_error``);
- per round: energy per device, and accuracy where a round reports one;
- per device and phase, what its latest span says it was told to do (the
  span's extras: batch size, allocated rate, split point): the solver's
  decisions as the devices applied them, live, before any summary.

Nothing here knows a server: a finished run's directory (fetched, or a
local run's) digests the same way.
"""
import json
import logging
import statistics
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
TIMELINE_SPANS = 4000   # spans kept for the timeline; totals count every span
DECISIONS = 500
COMPARISONS = 5000
VIEW_ROWS = 500         # of comparisons in a view
VIEW_DECISIONS = 100

NOT_DECISIONS = ("key", "run_id", "model")  # span extras that name things, not decide them
TotalKey = Tuple[str, str, str, str]  # device, phase, power backend, provenance


@dataclass
class PhaseTotal:
    spans: int = 0
    seconds: float = 0.0
    energy_j: float = 0.0
    bytes: int = 0
    low_confidence: int = 0

    def add(self, span: Dict[str, Any]) -> None:
        """Count a span as read back from a results file."""
        self.count(span_seconds(span), float(span.get("energy_j") or 0.0),
                   int(span.get("bytes") or 0), bool(span.get("low_confidence")))

    def count(self, seconds: float, energy_j: float, nbytes: int, low_confidence: bool) -> None:
        self.spans += 1
        self.seconds += seconds
        self.energy_j += energy_j
        self.bytes += nbytes
        self.low_confidence += low_confidence


def is_span(record: Dict[str, Any]) -> bool:
    return all(k in record for k in ("device", "phase", "start_s", "end_s"))


def span_seconds(span: Dict[str, Any]) -> float:
    return max(0.0, float(span["end_s"]) - float(span["start_s"]))


def relative_error(predicted: Optional[float], measured: Optional[float]) -> Optional[float]:
    """|measured - predicted| / predicted: how far off the model was, as the
    suites' summaries define it (tl's ``T_rel_error``)."""
    if not isinstance(predicted, (int, float)) or not isinstance(measured, (int, float)):
        return None
    if predicted <= 0:
        return None
    return abs(measured - predicted) / predicted


def _mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def comparisons_of(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The predicted-vs-measured rows one dict event carries (none for most)."""
    phase = record.get("phase")
    rows: List[Dict[str, Any]] = []

    def row(quantity: str, tag: str, predicted, measured, device: str = "", step: int = 0) -> None:
        # One definition of the error for every row, from the row's own columns
        # (split-testbed's pred_error averages per-device errors over measured delays).
        rows.append({"quantity": quantity, "tag": tag, "device": device, "step": step,
                     "predicted_s": predicted, "measured_s": measured,
                     "rel_error": relative_error(predicted, measured)})

    if phase == "feel_round":
        tag = " ".join(str(x) for x in (record.get("scheme"), record.get("partition"),
                                        f"K={record['K']}" if "K" in record else None) if x)
        row("round time", tag or "feel", record.get("predicted_s"), record.get("round_s"),
            step=int(record.get("round") or 0))
    elif phase == "decision" and "T_pred_s" in record:  # tl: eq. (8)
        tag = str(record.get("tag", ""))
        row("completion latency", tag, record.get("T_pred_s"), record.get("T_meas_s"))
        for entry in record.get("per_device") or ():
            row("finish time", tag, entry.get("finish_pred_s"), entry.get("finish_s"),
                device=str(entry.get("device", "")))
    elif phase == "decision" and isinstance(record.get("predicted"), list):  # split: eq. (24)
        predicted = _mean([o.get("delay_s") for o in record["predicted"] if isinstance(o, dict)])
        measured = _mean([m.get("e2e_s") for m in record.get("measured") or ()
                          if isinstance(m, dict)])
        row("end-to-end delay (mean over devices)", str(record.get("tag", "")), predicted,
            measured)
    return rows


class EventsTail:
    """The records appended to an ``events.jsonl`` since the last ``read``:
    complete lines only (the writer may be in the middle of one), each a
    JSON object; anything else is counted in ``bad_lines`` and skipped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0

    def read(self) -> List[Dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:  # nothing new, or a line still being written
            return []
        self.offset += end + 1
        records = []
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                self.bad_lines += 1
        return records


@dataclass
class RunDigest:
    """What a run's events say so far; ``update()`` reads what was appended."""

    run_dir: Path
    totals: Dict[TotalKey, PhaseTotal] = field(default_factory=dict)
    timeline: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TIMELINE_SPANS))
    decisions: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DECISIONS))
    comparisons: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=COMPARISONS))
    applied: Dict[Tuple[str, str], Dict[str, Any]] = field(default_factory=dict)
    span_count: int = 0
    records: int = 0
    bad_lines: int = 0

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self._tail = EventsTail(self.run_dir / EVENTS_FILE)
        self._lock = threading.Lock()

    def update(self) -> int:
        """Read the records appended since the last call; how many. Thread-safe:
        the dashboard reads in a worker thread."""
        with self._lock:
            records = self._tail.read()
            for record in records:
                self._take(record)
            self.records += len(records)
            self.bad_lines = self._tail.bad_lines
            return len(records)

    def _take(self, record: Dict[str, Any]) -> None:
        if is_span(record):
            self._span(record)
            return
        if record.get("phase") == "decision":
            self.decisions.append(record)
        self.comparisons.extend(comparisons_of(record))

    def _span(self, span: Dict[str, Any]) -> None:
        device, phase = str(span["device"]), str(span["phase"])
        key = (device, phase, str(span.get("power_backend", "")), str(span.get("provenance", "")))
        self.totals.setdefault(key, PhaseTotal()).add(span)
        self.span_count += 1
        rnd = int(span.get("round") or 0)
        extra = span.get("extra") if isinstance(span.get("extra"), dict) else {}
        # What the device was told to do (batch size, rate, split point, ...),
        # as it did it: the solver's decisions, applied.
        told = {k: v for k, v in extra.items() if k not in NOT_DECISIONS}
        if told:
            self.applied[(device, phase)] = {"round": rnd, **told}
        self.timeline.append({
            "seq": self.span_count, "device": device, "phase": phase, "round": rnd,
            "start_unix_s": float(span.get("start_unix_s") or 0.0),
            "duration_s": span_seconds(span), "energy_j": float(span.get("energy_j") or 0.0),
            "bytes": int(span.get("bytes") or 0), "provenance": key[3], "power_backend": key[2],
            "low_confidence": bool(span.get("low_confidence"))})

    # ------------------------------------------------------------ views
    def energy_table(self) -> List[Dict[str, Any]]:
        """Per device and phase (and backend, provenance): seconds, joules, bytes."""
        with self._lock:
            items = sorted(self.totals.items())
        return [{"device": d, "phase": p, "power_backend": b, "provenance": v,
                 "spans": t.spans, "seconds": t.seconds, "energy_j": t.energy_j,
                 "bytes": t.bytes, "low_confidence": t.low_confidence}
                for (d, p, b, v), t in items]

    def spans_after(self, seq: int, limit: int = TIMELINE_SPANS) -> List[Dict[str, Any]]:
        with self._lock:
            out = [s for s in self.timeline if s["seq"] > seq]
        return out[-limit:]

    def prediction_errors(self) -> Dict[str, float]:
        """Per quantity, the median relative error over the run's comparisons."""
        with self._lock:
            by_quantity: Dict[str, List[float]] = {}
            for row in self.comparisons:
                if isinstance(row["rel_error"], (int, float)):
                    by_quantity.setdefault(row["quantity"], []).append(row["rel_error"])
        return {q: statistics.median(v) for q, v in by_quantity.items()}

    def view(self) -> Dict[str, Any]:
        """Everything but the timeline, for a page or a JSON API (the newest
        entries of the long lists: a page shows no more)."""
        energy = self.energy_table()
        with self._lock:
            return {"records": self.records, "spans": self.span_count,
                    "bad_lines": self.bad_lines,
                    "decisions": list(self.decisions)[-VIEW_DECISIONS:],
                    "comparisons": list(self.comparisons)[-VIEW_ROWS:],
                    "energy": energy,
                    "applied": [{"device": d, "phase": p, **told}
                                for (d, p), told in sorted(self.applied.items())]}


class DigestCache:
    """Digests of the most recently asked-for runs (a standing server has
    many runs; only a few are watched at once)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._digests: "OrderedDict[Path, RunDigest]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_dir: Path) -> RunDigest:
        run_dir = Path(run_dir)
        with self._lock:
            digest = self._digests.pop(run_dir, None) or RunDigest(run_dir)
            self._digests[run_dir] = digest
            while len(self._digests) > self.size:
                self._digests.popitem(last=False)
            return digest


def read_summary(run_dir: Path) -> Optional[Dict[str, Any]]:
    """``summary.json`` when the run has written one (None otherwise, or when
    it is unreadable: a page must not fail on a run's bad file)."""
    path = Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None
