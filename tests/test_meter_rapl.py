"""RAPL powercap: package zones only, wraparound, permissions."""
import os
import shutil

import pytest

from edgebed.device.meter import MeterError, RaplMeter
from edgebed.device.meter import rapl
from edgebed.device.meter.rapl import find_zones, probe_rapl

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "boards", "x86_rapl")
MAX_RANGE = 262143328850


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def root(tmp_path):
    path = str(tmp_path / "x86")
    shutil.copytree(FIXTURE, path)
    return path


def write(root, zone, name, value):
    with open(os.path.join(root, "sys/class/powercap", zone, name), "w") as f:
        f.write("{}\n".format(value))


def read(root, zone):
    with open(os.path.join(root, "sys/class/powercap", zone, "energy_uj")) as f:
        return int(f.read())


def test_only_top_level_package_zones():
    zones = find_zones(FIXTURE)
    assert [os.path.basename(z.path) for z in zones] == ["intel-rapl:0", "intel-rapl:1"]
    assert [z.name for z in zones] == ["package-0", "package-1"]


def test_packages_summed_without_subzones_or_mmio(root):
    clock = FakeClock()
    meter = RaplMeter(root, clock=clock)
    token = meter.begin_window()
    write(root, "intel-rapl:0", "energy_uj", read(root, "intel-rapl:0") + 30_000_000)
    write(root, "intel-rapl:1", "energy_uj", read(root, "intel-rapl:1") + 20_000_000)
    # Subzones and the MMIO duplicate move too; adding them would double count.
    write(root, "intel-rapl:0:0", "energy_uj", read(root, "intel-rapl:0:0") + 9_000_000)
    write(root, "intel-rapl:1:0", "energy_uj", read(root, "intel-rapl:1:0") + 9_000_000)
    write(root, "intel-rapl-mmio:0", "energy_uj", read(root, "intel-rapl-mmio:0") + 30_000_000)
    clock.t = 1.0
    m = meter.end_window(token)
    assert m.energy_j == pytest.approx(50.0)
    assert m.power_backend == "rapl" and m.provenance == "measured" and not m.low_confidence


def test_wraparound_uses_max_energy_range(root):
    write(root, "intel-rapl:0", "energy_uj", MAX_RANGE - 1_000_000)
    clock = FakeClock()
    meter = RaplMeter(root, clock=clock)
    token = meter.begin_window()
    write(root, "intel-rapl:0", "energy_uj", 2_500_000)  # wrapped past the range
    clock.t = 1.0
    m = meter.end_window(token)
    assert m.energy_j == pytest.approx(3.5)  # 1 J to the top, 2.5 J after the wrap
    # Overlapping windows see one consistent unwrapped counter.
    outer = meter.begin_window()
    write(root, "intel-rapl:0", "energy_uj", MAX_RANGE - 100)
    inner = meter.begin_window()
    write(root, "intel-rapl:0", "energy_uj", 400)
    clock.t = 2.0
    assert meter.end_window(inner).energy_j == pytest.approx(500e-6)
    outer_uj = (MAX_RANGE - 100) - 2_500_000 + 500  # up to the top, then past the wrap
    assert meter.end_window(outer).energy_j == pytest.approx(outer_uj / 1e6)


def test_read_gap_longer_than_a_wrap_is_low_confidence(root):
    clock = FakeClock()
    meter = RaplMeter(root, clock=clock)
    # Range 262 kJ at up to twice the 165 W limit: a wrap takes >= ~794 s.
    wrap_s = MAX_RANGE / 1e6 / (2 * 165.0)
    token = meter.begin_window()
    clock.t = wrap_s + 1
    assert meter.end_window(token).low_confidence
    # Polling inside a long window keeps it trustworthy.
    token = meter.begin_window()
    for _ in range(3):
        clock.t += wrap_s / 2
        meter.poll()
    assert not meter.end_window(token).low_confidence


def test_psys_is_not_added(root):
    psys = os.path.join(root, "sys/class/powercap/intel-rapl:2")
    os.makedirs(psys)
    write(root, "intel-rapl:2", "name", "psys")
    write(root, "intel-rapl:2", "energy_uj", 5)
    write(root, "intel-rapl:2", "max_energy_range_uj", MAX_RANGE)
    assert [z.name for z in find_zones(root)] == ["package-0", "package-1"]


def test_unreadable_counter_fails_at_probe_time(monkeypatch):
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    # Root can read 0400 files anyway, so deny the read the way the kernel would.
    monkeypatch.setattr(rapl, "open", guarded_open, raising=False)
    with pytest.raises(MeterError, match="root"):
        probe_rapl(FIXTURE)


def test_no_powercap_is_a_meter_error(tmp_path):
    with pytest.raises(MeterError, match="no package zones"):
        probe_rapl(str(tmp_path))
