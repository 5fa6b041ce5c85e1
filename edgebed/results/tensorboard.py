"""A run's scalars as TensorBoard event files (``--tensorboard DIR``).

The mirror follows the run's ``events.jsonl`` as it grows (the same file
the dashboard digests, :mod:`.digest`), so it needs nothing from the suite
and works for any run directory: a local run while it goes on, or a run
fetched from a standing server afterwards (``python -m
edgebed.results.tensorboard RUN_DIR LOGDIR``). Under
``LOGDIR/<suite>/<run-id>/`` it writes:

- ``accuracy/<tag>``: every event that reports an accuracy (feel's rounds),
  by round;
- ``round_time_s/<tag>/measured`` and ``.../predicted``: feel's round time
  beside Theorems 1-2's prediction, by round;
- ``prediction_error/<quantity>/<tag>``: |measured - predicted| / predicted
  of every comparison the events carry (round time, tl's completion
  latency, split's end-to-end delay);
- ``energy_j_per_round/<part>`` and ``.../<part>/<device>``: the joules of
  every span in a round (``part``: what follows the run id in the spans'
  run ids, e.g. one feel scheme; the power backend's provenance is in the
  run's events and summary);
- ``summary/<key>``: the summary's numeric accuracies and errors, at the end.

Written with ``torch.utils.tensorboard`` (torch is there already; it needs
the ``tensorboard`` package: ``pip install 'edgebed[tensorboard]'``).
"""
import argparse
import contextlib
import logging
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from edgebed.results.digest import EVENTS_FILE, EventsTail, comparisons_of, is_span, read_summary

logger = logging.getLogger(__name__)

POLL_S = 2.0
SUMMARY_WORDS = ("accuracy", "error")


def summary_writer_class():
    """``SummaryWriter``, or a ValueError that says how to get it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ValueError("--tensorboard needs the tensorboard package: pip install "
                         f"'edgebed[tensorboard]' ({exc})") from None
    return SummaryWriter


class TensorBoardMirror:
    """Scalars of the run in ``run_dir`` under ``logdir/<suite>/<run-id>/``;
    ``poll()`` writes what was appended, ``close()`` the rest and the summary."""

    def __init__(self, run_dir: Path, logdir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.logdir = Path(logdir) / self.run_dir.parent.name / self.run_id
        self._writer = summary_writer_class()(log_dir=str(self.logdir))
        self._tail = EventsTail(self.run_dir / EVENTS_FILE)
        self._steps: Dict[str, int] = defaultdict(int)  # per tag, for comparisons without a step
        # part -> round -> device -> joules; rounds two behind the newest are complete
        self._energy: Dict[str, Dict[int, Dict[str, float]]] = defaultdict(dict)
        self._lock = threading.Lock()

    def poll(self) -> int:
        with self._lock:
            records = self._tail.read()
            for record in records:
                if is_span(record):
                    self._span(record)
                else:
                    self._event(record)
            self._flush_rounds(final=False)
            self._writer.flush()
            return len(records)

    def close(self) -> None:
        self.poll()
        with self._lock:
            self._flush_rounds(final=True)
            summary = read_summary(self.run_dir) or {}
            for key, value in sorted(summary.items()):
                if (isinstance(value, (int, float)) and not isinstance(value, bool)
                        and any(word in key for word in SUMMARY_WORDS)):
                    self._writer.add_scalar(f"summary/{key}", value, 0)
            self._writer.close()

    # ------------------------------------------------------------ records
    def _part(self, run_id: str) -> str:
        rest = run_id[len(self.run_id):] if run_id.startswith(self.run_id) else run_id
        return rest.strip("-") or "run"

    def _span(self, span: Dict[str, Any]) -> None:
        rounds = self._energy[self._part(str(span.get("run_id", "")))]
        per_device = rounds.setdefault(int(span.get("round") or 0), {})
        device = str(span["device"])
        per_device[device] = per_device.get(device, 0.0) + float(span.get("energy_j") or 0.0)

    def _event(self, record: Dict[str, Any]) -> None:
        for row in comparisons_of(record):
            tag = row["tag"] or "run"
            step = row["step"] if record.get("phase") == "feel_round" else self._step(
                f"{row['quantity']}/{tag}/{row['device']}")
            if record.get("phase") == "feel_round":
                for which, key in (("measured", "measured_s"), ("predicted", "predicted_s")):
                    if isinstance(row[key], (int, float)):
                        self._writer.add_scalar(f"round_time_s/{tag}/{which}", row[key], step)
            if isinstance(row["rel_error"], (int, float)):
                name = row["quantity"] + (f"/{row['device']}" if row["device"] else "")
                self._writer.add_scalar(f"prediction_error/{name}/{tag}", row["rel_error"], step)
        accuracy = record.get("accuracy")
        if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
            tag = " ".join(str(record[k]) for k in ("scheme", "partition") if record.get(k))
            step = record.get("round")
            step = step if isinstance(step, int) else self._step(f"accuracy/{tag}")
            self._writer.add_scalar(f"accuracy/{tag or 'run'}", accuracy, step)

    def _step(self, tag: str) -> int:
        self._steps[tag] += 1
        return self._steps[tag] - 1

    def _flush_rounds(self, final: bool) -> None:
        for part, rounds in self._energy.items():
            newest = max(rounds) if rounds else 0
            for rnd in sorted(r for r in rounds if final or r < newest - 1):
                per_device = rounds.pop(rnd)
                self._writer.add_scalar(f"energy_j_per_round/{part}", sum(per_device.values()), rnd)
                for device, joules in sorted(per_device.items()):
                    self._writer.add_scalar(f"energy_j_per_round/{part}/{device}", joules, rnd)


@contextlib.contextmanager
def tensorboard_mirror(run_dir: Path, logdir: Optional[str],
                       poll_s: float = POLL_S) -> Iterator[Optional[TensorBoardMirror]]:
    """Mirror the run in ``run_dir`` while the block runs (a thread polls
    every ``poll_s``); nothing when ``logdir`` is None."""
    if not logdir:
        yield None
        return
    mirror = TensorBoardMirror(run_dir, Path(logdir))
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(poll_s):
            try:
                mirror.poll()
            except Exception:  # the run goes on without its mirror
                logger.exception("TensorBoard mirror of %s failed", run_dir)
                return

    thread = threading.Thread(target=follow, name="tensorboard-mirror", daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        stop.set()
        thread.join()
        mirror.close()
        print(f"TensorBoard scalars in {mirror.logdir} (tensorboard --logdir {logdir})")


def write_tensorboard(run_dir: Path, logdir: Path) -> Path:
    """Mirror a finished run (a local one, or one fetched from a server)."""
    if not (Path(run_dir) / EVENTS_FILE).exists():
        raise ValueError(f"{run_dir} has no {EVENTS_FILE}: not a run directory")
    mirror = TensorBoardMirror(run_dir, logdir)
    mirror.close()
    return mirror.logdir


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgebed.results.tensorboard",
        description="Write a run's scalars (accuracy, round time, energy per round, prediction "
                    "error) as TensorBoard event files.")
    parser.add_argument("run_dir", type=Path, help="results/<suite>/<run-id>")
    parser.add_argument("logdir", type=Path, help="TensorBoard's --logdir")
    args = parser.parse_args(argv)
    try:
        out = write_tensorboard(args.run_dir, args.logdir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"TensorBoard scalars in {out}")
    return 0


def scalars(logdir: Path) -> Dict[str, List[Tuple[int, float]]]:
    """What a log directory holds, tag -> [(step, value)] (for checks)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


if __name__ == "__main__":
    sys.exit(main())
