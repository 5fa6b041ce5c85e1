"""The abstract power meter, its measurement record, and a counter helper.

A meter answers one question: how much energy did this node use between two
instants? Callers open a window with :meth:`PowerMeter.begin_window`, get an
opaque token back, and close it with :meth:`PowerMeter.end_window`. Windows
may overlap (a "round" window around several "phase" windows), so every
meter keys its open windows by token instead of keeping one global start.

Two families implement it: counter backends read a cumulative energy counter
(NVML energy, RAPL) or a cumulative CPU time (the utilization model) at each
window edge and subtract; sampled backends (``sampler.py``) poll a power
reading in a background thread and integrate.
"""
import abc
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from edgebed import EdgebedError
from edgebed.proto.records import Provenance

logger = logging.getLogger(__name__)


class MeterError(EdgebedError):
    """A power backend is missing, unreadable, or failed while reading."""


@dataclass(frozen=True)
class EnergyMeasurement:
    """The energy of one closed window.

    ``low_confidence`` is set when the window was too short for the sensor
    (shorter than two update periods), when samples were missing at an edge,
    or when a counter may have wrapped more than once.
    """

    energy_j: float
    duration_s: float
    power_backend: str
    provenance: str
    low_confidence: bool
    samples: int

    @property
    def power_w(self) -> float:
        """Mean power over the window; 0 for an empty window."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


class PowerMeter(abc.ABC):
    """One power source. Thread-safe; windows may overlap.

    Subclasses set ``name`` (the backend name reported in spans) and
    ``provenance``. ``close`` releases threads or library handles; meters are
    also context managers.
    """

    name = "abstract"
    provenance = Provenance.MEASURED

    @abc.abstractmethod
    def begin_window(self) -> int:
        """Open a window now and return its token."""

    @abc.abstractmethod
    def end_window(self, token: int) -> EnergyMeasurement:
        """Close the window ``token`` now and return its energy.

        Raises ValueError for a token that is unknown or already closed.
        """

    def close(self) -> None:  # noqa: B027 - a no-op is right for meters without resources
        """Release resources. Idempotent."""

    def __enter__(self) -> "PowerMeter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<{} backend={!r} provenance={!r}>".format(
            type(self).__name__, self.name, self.provenance
        )


def unknown_token(token: object) -> ValueError:
    """The error every meter raises for a token it does not hold."""
    return ValueError("unknown or already closed meter window token {!r}".format(token))


class CounterMeter(PowerMeter):
    """Base of backends that read a cumulative counter at window edges.

    Subclasses implement :meth:`_read_counter`, which returns a monotonic
    cumulative quantity (already unwrapped), and :meth:`_energy_between`,
    which turns two counter readings and the elapsed time into joules. The
    counter is read under a lock so overlapping windows see one consistent
    sequence of readings (which the wraparound unwrapping relies on).

    ``update_period_s`` is how often the hardware refreshes the counter:
    windows shorter than two periods are flagged low-confidence.
    """

    update_period_s = 0.0

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._windows: Dict[int, Tuple[float, float, object]] = {}

    @abc.abstractmethod
    def _read_counter(self) -> float:
        """Cumulative, monotonic counter value (joules or CPU seconds)."""

    def _energy_between(self, start: float, end: float, duration_s: float) -> float:
        """Joules between two counter readings; default: the counter is joules."""
        return end - start

    def _mark(self) -> object:
        """State saved when a window opens, handed back to :meth:`_suspect`."""
        return None

    def _suspect(self, duration_s: float, mark: object) -> bool:
        """Extra reasons to distrust a window (e.g. a possibly missed wrap)."""
        return False

    def begin_window(self) -> int:
        with self._lock:
            value = self._read_counter()
            t0 = self._clock()
            token = next(self._tokens)
            self._windows[token] = (t0, value, self._mark())
        return token

    def end_window(self, token: int) -> EnergyMeasurement:
        with self._lock:
            try:
                t0, start, mark = self._windows.pop(token)
            except KeyError:
                raise unknown_token(token) from None
            end = self._read_counter()
            t1 = self._clock()
            suspect = self._suspect(t1 - t0, mark)
        duration_s = max(t1 - t0, 0.0)
        energy_j = self._energy_between(start, end, duration_s)
        low = duration_s < 2 * self.update_period_s or suspect
        if energy_j < 0:
            # Backends unwrap their counters, so this means a counter reset
            # (driver reload); the window's energy is unknown, not negative.
            logger.warning("%s: counter went backwards over a window; reporting 0 J", self.name)
            energy_j, low = 0.0, True
        return EnergyMeasurement(
            energy_j=energy_j,
            duration_s=duration_s,
            power_backend=self.name,
            provenance=self.provenance,
            low_confidence=low,
            samples=2,
        )
