"""Sampled power backends: a background poller and trapezoid integration.

Sensors that only report instantaneous power (INA3221 rails, the Pi 5 PMIC,
NVML's instant power field) are polled at about 10 Hz by one daemon thread.
Each sample is ``(t, P)`` with ``t`` from ``time.perf_counter`` taken at the
middle of the read, so a slow read (``vcgencmd`` forks a process) is not
attributed to its start or its end.

A window's energy is the trapezoid integral of the samples inside it, with
the power at the window's edges linearly interpolated between the samples
that bracket each edge. When a window closes the meter asks the thread for
one extra sample and waits for it, so the right edge is bracketed without
waiting a whole period. Memory stays bounded: samples older than the oldest
open window (keeping the one sample that brackets its start) are dropped.
"""
import bisect
import collections
import itertools
import logging
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

from edgebed.device.meter.base import (
    EnergyMeasurement,
    MeterError,
    PowerMeter,
    unknown_token,
)

logger = logging.getLogger(__name__)

Sample = Tuple[float, float]  # (perf_counter seconds, watts)

DEFAULT_PERIOD_S = 0.1
# At 10 Hz this is 10 h of samples for one window left open; past it the
# oldest samples go and that window's start is no longer bracketed, so it is
# reported low-confidence.
DEFAULT_MAX_SAMPLES = 360000


def _interpolate(times: List[float], samples: Sequence[Sample], t: float) -> Tuple[float, bool]:
    """Power at ``t`` and whether ``t`` lies within the sampled range."""
    i = bisect.bisect_left(times, t)
    if i < len(times) and times[i] == t:
        return samples[i][1], True
    if i == 0:
        return samples[0][1], False  # before the first sample: hold its value
    if i == len(times):
        return samples[-1][1], False  # after the last sample: hold its value
    (ta, pa), (tb, pb) = samples[i - 1], samples[i]
    return pa + (pb - pa) * (t - ta) / (tb - ta), True


def integrate(samples: Sequence[Sample], t0: float, t1: float) -> Tuple[float, int, bool, float]:
    """Trapezoid energy in joules of time-ordered ``samples`` over ``[t0, t1]``.

    Returns ``(energy_j, samples_inside, edges_covered, max_gap_s)``: how many
    samples fell strictly inside the window, whether both edges were
    bracketed by samples (otherwise the nearest value was held constant), and
    the longest interval between consecutive points used.
    """
    if t1 < t0:
        raise ValueError("window ends before it starts")
    if not samples:
        return 0.0, 0, False, t1 - t0
    times = [t for t, _ in samples]
    p0, ok0 = _interpolate(times, samples, t0)
    p1, ok1 = _interpolate(times, samples, t1)
    lo = bisect.bisect_right(times, t0)
    hi = bisect.bisect_left(times, t1)
    points = [(t0, p0)] + list(samples[lo:hi]) + [(t1, p1)]
    energy_j = 0.0
    max_gap_s = 0.0
    for (ta, pa), (tb, pb) in zip(points, points[1:]):
        energy_j += 0.5 * (pa + pb) * (tb - ta)
        max_gap_s = max(max_gap_s, tb - ta)
    return energy_j, hi - lo, ok0 and ok1, max_gap_s


class Sampler:
    """Polls ``read_power_w`` every ``period_s`` in a daemon thread.

    ``start=False`` leaves the thread off so tests (or callers with their own
    loop) drive it with :meth:`sample_once` and an injected ``clock``.
    """

    def __init__(
        self,
        read_power_w: Callable[[], float],
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        name: str = "sampler",
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive, got {!r}".format(period_s))
        self._read = read_power_w
        self.period_s = float(period_s)
        self._clock = clock
        self._name = name
        self._samples: Deque[Sample] = collections.deque(maxlen=max_samples)
        self.lock = threading.Lock()
        self.new_sample = threading.Condition(self.lock)
        # Samples before ``floor`` may go (keeping one that brackets it);
        # None: no window is open, keep only the latest sample.
        self.floor: Optional[float] = None
        self.last_error: Optional[BaseException] = None
        self._failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="edgebed-{}".format(self._name), daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def request(self) -> None:
        """Ask the thread for a sample now instead of at the next tick."""
        self._wake.set()

    def sample_once(self) -> Optional[Sample]:
        """Read the sensor once and store the sample; None if the read failed."""
        before = self._clock()
        try:
            power_w = float(self._read())
        except Exception as exc:  # noqa: BLE001 - a sensor hiccup must not kill the thread
            self._failures += 1
            self.last_error = exc
            if self._failures == 1:
                logger.warning("%s: power read failed: %s", self._name, exc)
            else:
                logger.debug("%s: power read failed again (%d): %s",
                             self._name, self._failures, exc)
            return None
        if self._failures:
            logger.info("%s: power reads recovered after %d failures", self._name, self._failures)
            self._failures = 0
        sample = ((before + self._clock()) / 2.0, power_w)
        with self.lock:
            self._samples.append(sample)
            self._trim()
            self.new_sample.notify_all()
        return sample

    def _trim(self) -> None:
        """Drop samples nobody can need (caller holds the lock)."""
        samples = self._samples
        if self.floor is None:
            while len(samples) > 1:
                samples.popleft()
            return
        while len(samples) > 1 and samples[1][0] <= self.floor:
            samples.popleft()

    def set_floor(self, floor: Optional[float]) -> None:
        """Caller holds the lock."""
        self.floor = floor
        self._trim()

    def snapshot(self) -> List[Sample]:
        """Caller holds the lock."""
        return list(self._samples)

    def wait_for_sample_after(self, t: float, timeout_s: float) -> bool:
        """Caller holds the lock (via ``new_sample``). True if one arrived."""
        return self.new_sample.wait_for(
            lambda: bool(self._samples) and self._samples[-1][0] >= t, timeout_s
        )

    def _run(self) -> None:
        # Fixed-rate schedule on the monotonic clock (the sample clock may be
        # injected); if a read overruns, skip ahead rather than burst.
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            self.sample_once()
            next_tick += self.period_s
            now = time.monotonic()
            if next_tick < now:
                next_tick = now
            self._wake.wait(next_tick - now)


class SampledMeter(PowerMeter):
    """Base of sampled backends.

    Subclasses implement :meth:`read_power_w` and call ``super().__init__``
    last, because the sampler thread starts here and calls it at once.
    ``sensor_period_s`` is how often the sensor itself refreshes; windows
    shorter than two effective periods (the slower of sensor and polling)
    are flagged low-confidence.
    """

    sensor_period_s = 0.0

    def __init__(
        self,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        start: bool = True,
        read_power_w: Optional[Callable[[], float]] = None,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        self._clock = clock
        self.sampler = Sampler(
            read_power_w or self.read_power_w,
            period_s=period_s,
            clock=clock,
            max_samples=max_samples,
            name=self.name,
        )
        self._tokens = itertools.count(1)
        self._windows: Dict[int, float] = {}
        if start:
            self.sampler.start()
            # Wait for the first sample so a window opened right away has a
            # sample before its start (and a dead sensor shows up now).
            with self.sampler.lock:
                if not self.sampler.wait_for_sample_after(float("-inf"), 2.0):
                    logger.warning("%s: no power sample yet (last error: %s)",
                                   self.name, self.sampler.last_error)

    def read_power_w(self) -> float:
        """Instantaneous power of this node in watts."""
        raise NotImplementedError

    @property
    def effective_period_s(self) -> float:
        return max(self.sampler.period_s, self.sensor_period_s)

    def begin_window(self) -> int:
        with self.sampler.lock:
            t0 = self._clock()
            token = next(self._tokens)
            self._windows[token] = t0
            self.sampler.set_floor(min(self._windows.values()))
        return token

    def end_window(self, token: int) -> EnergyMeasurement:
        t1 = self._clock()
        if self.sampler.running:
            self.sampler.request()
        with self.sampler.lock:
            if token not in self._windows:
                raise unknown_token(token)
            if self.sampler.running:
                # Bracket the right edge; a hung sensor must not hang the agent.
                # The window stays registered while waiting (the wait releases
                # the lock) so other threads' trims keep its samples.
                timeout_s = max(1.0, 3 * self.sampler.period_s)
                if not self.sampler.wait_for_sample_after(t1, timeout_s):
                    logger.warning("%s: no sample after window end within %.1f s",
                                   self.name, timeout_s)
            t0 = self._windows.pop(token, None)
            if t0 is None:  # closed by another thread meanwhile
                raise unknown_token(token)
            samples = self.sampler.snapshot()
            self.sampler.set_floor(min(self._windows.values()) if self._windows else None)
        if not samples:
            raise MeterError("{}: no power samples at all (last error: {})".format(
                self.name, self.sampler.last_error))
        energy_j, inside, covered, max_gap_s = integrate(samples, t0, t1)
        duration_s = t1 - t0
        low = (
            duration_s < 2 * self.effective_period_s
            or not covered
            # Reads failed or the thread stalled inside the window.
            or max_gap_s > 3 * self.sampler.period_s
            # No sample landed inside (a starved sampler thread on a busy host):
            # the energy is only interpolated between the neighbours.
            or inside == 0
        )
        return EnergyMeasurement(
            energy_j=energy_j,
            duration_s=duration_s,
            power_backend=self.name,
            provenance=self.provenance,
            low_confidence=low,
            samples=inside,
        )

    def close(self) -> None:
        self.sampler.stop()


__all__ = ["Sample", "Sampler", "SampledMeter", "integrate"]
