"""Sampled backends: trapezoid integration, edges, confidence, bounded memory."""
import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebed.device.meter import MeterError, SampledMeter, integrate


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


class ScriptedMeter(SampledMeter):
    """Power is a function of the fake clock; the test drives sampling."""

    name = "scripted"

    def __init__(self, clock, power, period_s=0.1, **kwargs):
        self.power = power
        self.clock = clock
        super().__init__(period_s=period_s, clock=clock, start=False, **kwargs)

    def read_power_w(self):
        return self.power(self.clock.t)

    def tick(self, until, step=None):
        """Advance the clock to ``until`` taking a sample every period."""
        step = step or self.sampler.period_s
        while self.clock.t + step <= until + 1e-12:
            self.clock.t += step
            self.sampler.sample_once()
        self.clock.t = until


def test_trapezoid_by_hand():
    samples = [(0.0, 2.0), (1.0, 4.0), (3.0, 0.0)]
    energy, inside, covered, gap = integrate(samples, 0.0, 3.0)
    # (2+4)/2*1 + (4+0)/2*2
    assert energy == pytest.approx(3.0 + 4.0)
    assert inside == 1 and covered and gap == pytest.approx(2.0)


def test_edges_are_interpolated_between_bracketing_samples():
    samples = [(0.0, 0.0), (1.0, 10.0), (2.0, 10.0)]
    # power at 0.5 is 5 W: (5+10)/2*0.5 + 10*0.5
    energy, inside, covered, _ = integrate(samples, 0.5, 1.5)
    assert energy == pytest.approx(3.75 + 5.0)
    assert inside == 1 and covered


def test_edges_beyond_the_samples_hold_the_value_and_are_not_covered():
    energy, _, covered, _ = integrate([(1.0, 4.0), (2.0, 4.0)], 0.0, 3.0)
    assert energy == pytest.approx(12.0) and not covered


@settings(max_examples=50, deadline=None)
@given(
    times=st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=2, max_size=30, unique=True),
    a=st.floats(0.0, 50.0),
    b=st.floats(-2.0, 2.0),
    edges=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_linear_power_integrates_exactly(times, a, b, edges):
    """Trapezoids with interpolated edges are exact for linear power."""
    times = sorted(times)
    samples = [(t, a + b * t) for t in times]
    lo, hi = sorted(times[0] + f * (times[-1] - times[0]) for f in edges)
    energy, _, covered, _ = integrate(samples, lo, hi)
    exact = a * (hi - lo) + b * (hi * hi - lo * lo) / 2
    assert covered
    assert energy == pytest.approx(exact, rel=1e-9, abs=1e-9)


def test_sampled_meter_integrates_a_known_power_function():
    clock = FakeClock()

    def power(t):
        return 5.0 + 3.0 * math.sin(t)

    meter = ScriptedMeter(clock, power, period_s=0.01)
    meter.sampler.sample_once()
    meter.tick(0.105)
    token = meter.begin_window()
    meter.tick(2.0)
    meter.sampler.sample_once()  # the sample end_window asks for
    m = meter.end_window(token)
    exact = 5.0 * (2.0 - 0.105) + 3.0 * (math.cos(0.105) - math.cos(2.0))
    # Trapezoid error bound: (b-a) h^2 max|P''| / 12 with h = 0.01.
    assert m.energy_j == pytest.approx(exact, abs=(2.0 - 0.105) * 0.01 ** 2 * 3.0 / 12 + 1e-9)
    assert m.duration_s == pytest.approx(1.895)
    assert not m.low_confidence and m.provenance == "measured" and m.samples > 150


def test_overlapping_windows_and_bounded_memory():
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 10.0 if t < 0.95 else 20.0, period_s=0.1)
    meter.sampler.sample_once()
    meter.tick(0.5)
    outer = meter.begin_window()
    meter.tick(1.5)
    inner = meter.begin_window()
    meter.tick(2.5)
    m_inner = meter.end_window(inner)
    # Samples from before the outer window (except one bracketing it) are gone.
    kept = [t for t, _ in meter.sampler.snapshot()]
    assert kept[0] <= 0.5 < kept[1] and kept[0] > 0.45
    meter.tick(3.0)
    m_outer = meter.end_window(outer)
    assert m_inner.energy_j == pytest.approx(20.0)
    # 10 W until the 0.9 s sample, a ramp to the 1.0 s sample, then 20 W.
    assert m_outer.energy_j == pytest.approx(10 * 0.4 + 15 * 0.1 + 20 * 2.0)
    # No window open: only the latest sample is kept.
    assert len(meter.sampler.snapshot()) == 1


def test_short_window_is_low_confidence():
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 7.0, period_s=0.1)
    meter.sampler.sample_once()
    meter.tick(1.0)
    token = meter.begin_window()
    meter.tick(1.15)
    meter.sampler.sample_once()
    m = meter.end_window(token)
    assert m.low_confidence and m.energy_j == pytest.approx(7.0 * 0.15)


def test_slow_sensor_period_sets_the_confidence_threshold():
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 7.0, period_s=0.1)
    meter.sensor_period_s = 1.0  # e.g. a 1 s moving average
    meter.sampler.sample_once()
    token = meter.begin_window()
    meter.tick(1.5)
    assert meter.end_window(token).low_confidence


def test_missing_samples_inside_a_window_lower_confidence():
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 7.0, period_s=0.1)
    meter.sampler.sample_once()
    token = meter.begin_window()
    meter.tick(0.3)
    clock.t = 1.3  # a second with no samples (sensor errors)
    meter.tick(1.6)
    assert meter.end_window(token).low_confidence


def test_a_window_with_no_sample_inside_is_low_confidence():
    """Long enough, bracketed, small gap, but the sampler never ran inside it
    (a starved thread): the energy is only interpolated, so it is flagged."""
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 7.0, period_s=0.1)
    meter.sampler.sample_once()
    clock.t = 0.01
    token = meter.begin_window()
    clock.t = 0.22  # 0.21 s >= two periods, no sample taken inside
    meter.sampler.sample_once()
    m = meter.end_window(token)
    assert m.samples == 0 and m.low_confidence
    assert m.energy_j == pytest.approx(7.0 * 0.21)


def test_window_without_any_sample_raises():
    clock = FakeClock()
    meter = ScriptedMeter(clock, lambda t: 1.0)
    token = meter.begin_window()
    clock.t = 1.0
    with pytest.raises(MeterError):
        meter.end_window(token)
    with pytest.raises(ValueError):
        meter.end_window(12345)


class RampMeter(SampledMeter):
    """Real thread, real clock: P(t) = 2 + 10 (t - t_start) W."""

    name = "ramp"

    def __init__(self, fail_every=0):
        self.t_start = time.perf_counter()
        self.reads = 0
        self.fail_every = fail_every
        self.thread_ids = set()
        super().__init__(period_s=0.02)

    def read_power_w(self):
        self.reads += 1
        self.thread_ids.add(threading.get_ident())
        if self.fail_every and self.reads % self.fail_every == 0:
            raise OSError("sensor hiccup")
        return 2.0 + 10.0 * (time.perf_counter() - self.t_start)


def test_background_sampler_with_real_clock_integrates_a_ramp():
    meter = RampMeter()
    try:
        time.sleep(0.05)
        before = time.perf_counter()
        token = meter.begin_window()
        after = time.perf_counter()
        time.sleep(0.3)
        m = meter.end_window(token)
    finally:
        meter.close()
    assert threading.get_ident() not in meter.thread_ids  # sampled in its own thread
    assert not meter.sampler.running
    assert m.samples >= 5 and not m.low_confidence

    # Power is linear in time, so the trapezoid is exact given the window's
    # start t0, which lies between ``before`` and ``after``:
    # E = D (2 + 10 (t0 - t_start)) + 5 D^2.
    def exact(t0):
        d = m.duration_s
        return d * (2.0 + 10.0 * (t0 - meter.t_start)) + 5.0 * d * d

    # Each sample is stamped at the middle of its read, not at the instant
    # the power function ran: allow 1 ms of that per second of window.
    slack = 10.0 * 1e-3 * m.duration_s
    assert exact(before) - slack <= m.energy_j <= exact(after) + slack


def test_background_sampler_survives_read_errors():
    meter = RampMeter(fail_every=3)
    try:
        token = meter.begin_window()
        time.sleep(0.2)
        m = meter.end_window(token)
    finally:
        meter.close()
    assert m.samples >= 3 and m.energy_j > 0
    assert isinstance(meter.sampler.last_error, OSError)


def test_concurrent_windows_from_many_threads():
    class Constant(SampledMeter):
        name = "constant"

        def __init__(self):
            super().__init__(period_s=0.01)

        def read_power_w(self):
            return 5.0

    meter = Constant()
    results, errors = [], []

    def worker(k):
        try:
            for _ in range(3):
                token = meter.begin_window()
                time.sleep(0.01 * (k + 1))
                results.append(meter.end_window(token))
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    finally:
        meter.close()
    assert not errors and len(results) == 12
    for m in results:
        assert m.energy_j == pytest.approx(5.0 * m.duration_s)
        assert m.samples >= 1 or m.low_confidence
