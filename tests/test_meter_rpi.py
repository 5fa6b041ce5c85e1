"""Raspberry Pi 5 PMIC via recorded ``vcgencmd pmic_read_adc`` output."""
import os

import pytest

from edgebed.device.meter import MeterError, Rpi5Meter
from edgebed.device.meter.rpi import parse_pmic_adc, power_from_adc, probe_rpi5

BOARDS = os.path.join(os.path.dirname(__file__), "fixtures", "boards")


def recorded(board):
    with open(os.path.join(BOARDS, board, "vcgencmd_pmic_read_adc.txt")) as f:
        return f.read()


PI5 = recorded("rpi5")


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


def expected_power(text):
    """Independent V x A sum: pair "X_A ...=nA" with "X_V ...=nV" by name."""
    values = {}
    for line in text.split("\n"):
        if "=" not in line:
            continue
        key = line.split()[0]
        values[key] = float(line.split("=")[1].rstrip("AV"))
    return sum(values[k] * values[k[:-2] + "_V"] for k in values if k.endswith("_A"))


def test_parse_pairs_current_with_voltage_by_rail():
    rails = parse_pmic_adc(PI5)
    assert len(rails) == 12
    assert rails["VDD_CORE"] == (pytest.approx(0.87460320), pytest.approx(0.88164000))
    assert "EXT5V" not in rails and "BATT" not in rails  # voltage only


def test_power_is_sum_of_volts_times_amps():
    assert power_from_adc(PI5) == pytest.approx(expected_power(PI5))
    assert 1.0 < power_from_adc(PI5) < 3.0


def test_unparseable_values_are_skipped():
    text = PI5.replace("BATT_V volt(25)=0.00512820V", "BATT_V volt(25)=nanV")
    assert power_from_adc(text) == pytest.approx(expected_power(PI5))


def test_pi4_has_no_pmic():
    with pytest.raises(MeterError):
        power_from_adc(recorded("rpi4b"))
    with pytest.raises(MeterError):
        Rpi5Meter(runner=lambda: recorded("rpi4b"), start=False)
    with pytest.raises(MeterError, match="not a Raspberry Pi 5"):
        probe_rpi5(os.path.join(BOARDS, "rpi4b"), runner=lambda: PI5)


def test_sampled_from_the_command_runner():
    core = "  VDD_CORE_A current(7)=0.88164000A"
    outputs = iter([PI5, PI5, PI5.replace(core, "  VDD_CORE_A current(7)=3.00000000A"), PI5])
    clock = FakeClock()
    meter = Rpi5Meter(runner=lambda: next(outputs), clock=clock, start=False)
    base = expected_power(PI5)
    meter.sampler.sample_once()  # t = 0
    token = meter.begin_window()
    clock.t = 1.0
    meter.sampler.sample_once()  # heavier core load
    clock.t = 2.0
    meter.sampler.sample_once()
    m = meter.end_window(token)
    extra = (3.0 - 0.88164) * 0.8746032
    assert m.energy_j == pytest.approx(2 * base + extra)  # two trapezoids meet at the peak
    assert m.power_backend == "rpi5" and m.samples == 1


def test_probe_with_recorded_output():
    assert "VDD_CORE" in probe_rpi5(os.path.join(BOARDS, "rpi5"), runner=lambda: PI5)
