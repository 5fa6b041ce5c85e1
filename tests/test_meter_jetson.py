"""Jetson INA3221 rails in both sysfs layouts, against board fixture trees."""
import os
import shutil

import pytest

from edgebed.device.meter import JetsonMeter, MeterError
from edgebed.device.meter.jetson import find_rails, probe_jetson

BOARDS = os.path.join(os.path.dirname(__file__), "fixtures", "boards")
NANO = os.path.join(BOARDS, "jetson_nano")
AGX = os.path.join(BOARDS, "jetson_agx_xavier")
ORIN = os.path.join(BOARDS, "jetson_orin_nano")
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
NANO_IIO = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


def test_nano_reads_only_the_board_input_rail():
    rails = find_rails(NANO)
    assert sorted(r.name for r in rails) == ["POM_5V_CPU", "POM_5V_GPU", "POM_5V_IN"]
    meter = JetsonMeter(NANO, start=False)
    # POM_5V_IN already contains the CPU and GPU rails: 3120 mW, not 4720.
    assert [r.name for r in meter.rails] == ["POM_5V_IN"]
    assert meter.read_power_w() == pytest.approx(3.120)


def test_board_without_input_rail_sums_every_rail():
    meter = JetsonMeter(AGX, start=False)
    assert len(meter.rails) == 6  # two sensors, three channels each
    assert meter.read_power_w() == pytest.approx((1520 + 2280 + 1900 + 380 + 760 + 1640) / 1e3)


def test_orin_hwmon_layout_multiplies_millivolts_by_milliamps():
    names = [r.name for r in find_rails(ORIN)]
    assert names == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # no "sum of shunt voltages"
    meter = JetsonMeter(ORIN, start=False)
    assert [r.name for r in meter.rails] == ["VDD_IN"]
    assert meter.read_power_w() == pytest.approx(5064 * 1020 / 1e6)


def test_sum_of_shunt_voltages_channel_is_skipped_by_label(tmp_path):
    root = str(tmp_path / "orin")
    shutil.copytree(ORIN, root)
    hwmon = os.path.join(root, ORIN_HWMON)
    # Even if a driver exposed a current for it, the sum channel is not a rail.
    with open(os.path.join(hwmon, "curr7_input"), "w") as f:
        f.write("1629\n")
    with open(os.path.join(hwmon, "in1_label"), "w") as f:
        f.write("VDD_MAIN\n")  # no total rail now: rails are summed
    meter = JetsonMeter(root, start=False)
    assert [r.name for r in meter.rails] == ["VDD_MAIN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    expected = (5064 * 1020 + 5064 * 328 + 5056 * 281) / 1e6
    assert meter.read_power_w() == pytest.approx(expected)


def test_disabled_channel_is_skipped(tmp_path):
    root = str(tmp_path / "orin")
    shutil.copytree(ORIN, root)
    with open(os.path.join(root, ORIN_HWMON, "in3_enable"), "w") as f:
        f.write("0\n")
    assert [r.name for r in find_rails(root)] == ["VDD_IN", "VDD_CPU_GPU_CV"]


def test_explicit_rails():
    meter = JetsonMeter(NANO, rails=["POM_5V_CPU", "POM_5V_GPU"], start=False)
    assert meter.read_power_w() == pytest.approx(1.600)
    with pytest.raises(MeterError, match="VDD_GPU"):
        JetsonMeter(NANO, rails=["VDD_GPU"], start=False)


def test_sampled_energy_follows_the_rail_file(tmp_path):
    root = str(tmp_path / "nano")
    shutil.copytree(NANO, root)
    power_file = os.path.join(root, NANO_IIO, "in_power0_input")
    clock = FakeClock()
    meter = JetsonMeter(root, clock=clock, start=False)
    meter.sampler.sample_once()  # 3.12 W at t=0
    token = meter.begin_window()
    for t, mw in [(0.5, 3120), (1.0, 5000), (1.5, 5000), (2.0, 5000)]:
        with open(power_file, "w") as f:
            f.write("{}\n".format(mw))
        clock.t = t
        meter.sampler.sample_once()
    m = meter.end_window(token)
    # 3.12 W for 0.5 s, a ramp to 5 W over 0.5 s, then 5 W for 1 s.
    assert m.energy_j == pytest.approx(3.12 * 0.5 + (3.12 + 5.0) / 2 * 0.5 + 5.0 * 1.0)
    assert m.power_backend == "jetson" and m.provenance == "measured"


def test_no_sensor_is_a_meter_error(tmp_path):
    with pytest.raises(MeterError, match="no INA3221 rails"):
        probe_jetson(str(tmp_path))
    assert "POM_5V_IN" in probe_jetson(NANO)
