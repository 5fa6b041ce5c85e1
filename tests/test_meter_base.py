"""The meter contract: measurement record, null meter, counter windows."""
import pytest

from edgebed import EdgebedError
from edgebed.device.meter import (
    CounterMeter,
    EnergyMeasurement,
    MeterError,
    NullMeter,
    Provenance,
)
from edgebed.proto.records import PROVENANCES


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


class JouleCounter(CounterMeter):
    """A counter backend whose counter the test sets."""

    name = "fake-counter"
    update_period_s = 0.1

    def __init__(self, clock):
        super().__init__(clock=clock)
        self.joules = 0.0

    def _read_counter(self):
        return self.joules


def test_power_is_energy_over_duration():
    m = EnergyMeasurement(12.0, 4.0, "rapl", Provenance.MEASURED, False, 2)
    assert m.power_w == 3.0
    assert EnergyMeasurement(0.0, 0.0, "null", Provenance.ESTIMATED, True, 0).power_w == 0.0


def test_meter_error_is_an_edgebed_error():
    assert issubclass(MeterError, EdgebedError)


def test_provenance_values_are_accepted_by_the_span_record():
    assert Provenance.MEASURED in PROVENANCES and Provenance.ESTIMATED in PROVENANCES


def test_null_meter_times_but_reports_no_energy():
    clock = FakeClock()
    meter = NullMeter(clock=clock)
    token = meter.begin_window()
    clock.t += 2.5
    m = meter.end_window(token)
    assert m.energy_j == 0.0 and m.duration_s == pytest.approx(2.5)
    assert m.power_backend == "null" and m.provenance == "estimated"
    assert m.low_confidence and m.samples == 0
    with pytest.raises(ValueError):
        meter.end_window(token)


def test_counter_windows_overlap_independently():
    clock = FakeClock()
    meter = JouleCounter(clock)
    outer = meter.begin_window()
    clock.t += 1.0
    meter.joules += 5.0
    inner = meter.begin_window()
    clock.t += 1.0
    meter.joules += 7.0
    m_inner = meter.end_window(inner)
    clock.t += 1.0
    meter.joules += 3.0
    m_outer = meter.end_window(outer)
    assert m_inner.energy_j == pytest.approx(7.0) and m_inner.duration_s == pytest.approx(1.0)
    assert m_outer.energy_j == pytest.approx(15.0) and m_outer.duration_s == pytest.approx(3.0)
    assert not m_outer.low_confidence and m_outer.power_backend == "fake-counter"
    with pytest.raises(ValueError):
        meter.end_window(outer)


def test_counter_window_shorter_than_two_updates_is_low_confidence():
    clock = FakeClock()
    meter = JouleCounter(clock)
    token = meter.begin_window()
    clock.t += 0.15  # update period 0.1 s
    assert meter.end_window(token).low_confidence
    token = meter.begin_window()
    clock.t += 0.25
    assert not meter.end_window(token).low_confidence


def test_counter_reset_reports_zero_and_low_confidence():
    clock = FakeClock()
    meter = JouleCounter(clock)
    meter.joules = 1000.0
    token = meter.begin_window()
    clock.t += 1.0
    meter.joules = 3.0  # driver reload reset the counter
    m = meter.end_window(token)
    assert m.energy_j == 0.0 and m.low_confidence
