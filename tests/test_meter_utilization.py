"""The CPU-utilization power model (provenance "estimated")."""
import os
import time

import pytest

from edgebed.device.meter import BOARD_MODELS, MeterError, UtilizationMeter
from edgebed.device.meter.utilization import (
    cgroup_cpu_seconds,
    cgroup_dir,
    cgroup_quota_cores,
    detect_board,
)

BOARDS = os.path.join(os.path.dirname(__file__), "fixtures", "boards")


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


class FakeCpu:
    seconds = 0.0

    def __call__(self):
        return self.seconds


def make(cores=4.0, board="rpi4b"):
    clock, cpu = FakeClock(), FakeCpu()
    meter = UtilizationMeter(board=board, cores=cores, cpu_seconds=cpu, clock=clock)
    return meter, clock, cpu


def test_pi4_coefficients_from_the_design():
    model = BOARD_MODELS["rpi4b"]
    assert model.power_w(0.0) == pytest.approx(2.286)
    assert model.power_w(1.0) == pytest.approx(2.286 + 4.534)
    assert model.power_w(0.5) == pytest.approx(2.286 + 4.534 / 2)
    assert all(m.source for m in BOARD_MODELS.values())


def test_energy_is_idle_plus_busy_share():
    meter, clock, cpu = make(cores=4.0)
    token = meter.begin_window()
    clock.t, cpu.seconds = 10.0, 20.0  # two of four cores busy: u = 0.5
    m = meter.end_window(token)
    assert m.energy_j == pytest.approx((2.286 + 4.534 * 0.5) * 10.0)
    assert m.provenance == "estimated" and m.power_backend == "utilization"
    assert not m.low_confidence


def test_utilization_is_capped_at_one():
    meter, clock, cpu = make(cores=1.0)
    token = meter.begin_window()
    clock.t, cpu.seconds = 1.0, 1.02  # tick rounding: a bit more CPU than wall time
    assert meter.end_window(token).energy_j == pytest.approx(2.286 + 4.534)


def test_real_process_burning_cpu():
    meter = UtilizationMeter(board="x86_server")
    token = meter.begin_window()
    deadline = time.perf_counter() + 0.2
    x = 0
    while time.perf_counter() < deadline:
        x += 1
    m = meter.end_window(token)
    model = meter.model
    assert model.idle_w * m.duration_s <= m.energy_j <= model.max_w * m.duration_s + 1e-9
    # The loop used CPU time, so the estimate rises above idle by at least one
    # clock tick's worth (not more: a loaded machine may deschedule us).
    one_tick = (model.max_w - model.idle_w) * meter.update_period_s / meter.cores
    assert m.energy_j >= model.idle_w * m.duration_s + one_tick * 0.99


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_cgroup_v2_usage_and_quota(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "proc/self/cgroup"), "0::/edgebed/pi-1\n")
    group = os.path.join(root, "sys/fs/cgroup/edgebed/pi-1")
    write(os.path.join(group, "cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\n")
    write(os.path.join(group, "cpu.max"), "50000 100000\n")
    directory, version = cgroup_dir(root)
    assert version == 2 and directory == group
    assert cgroup_cpu_seconds(directory, version) == pytest.approx(2.5)
    assert cgroup_quota_cores(directory, version) == pytest.approx(0.5)
    meter = UtilizationMeter(board="rpi4b", scope="cgroup", root=root)
    assert meter.cores == pytest.approx(0.5)  # the quota, not the host's cores
    write(os.path.join(group, "cpu.max"), "max 100000\n")
    assert cgroup_quota_cores(directory, version) is None


def test_cgroup_v1_usage_and_quota(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "proc/self/cgroup"),
          "12:memory:/agent\n4:cpu,cpuacct:/agent\n0::/\n")
    group = os.path.join(root, "sys/fs/cgroup/cpu,cpuacct/agent")
    write(os.path.join(group, "cpuacct.usage"), "1500000000\n")
    write(os.path.join(group, "cpu.cfs_quota_us"), "150000\n")
    write(os.path.join(group, "cpu.cfs_period_us"), "100000\n")
    directory, version = cgroup_dir(root)
    assert version == 1
    assert cgroup_cpu_seconds(directory, version) == pytest.approx(1.5)
    assert cgroup_quota_cores(directory, version) == pytest.approx(1.5)
    write(os.path.join(group, "cpu.cfs_quota_us"), "-1\n")
    assert cgroup_quota_cores(directory, version) is None


def test_cgroup_v1_with_cpu_and_cpuacct_mounted_apart(tmp_path):
    """The quota lives in the cpu hierarchy, the usage counter in cpuacct."""
    root = str(tmp_path)
    write(os.path.join(root, "proc/self/cgroup"),
          "3:cpuacct:/\n2:cpu:/edgebed/pi-7\n0::/\n")
    write(os.path.join(root, "sys/fs/cgroup/cpuacct/cpuacct.usage"), "4000000000\n")
    group = os.path.join(root, "sys/fs/cgroup/cpu/edgebed/pi-7")
    write(os.path.join(group, "cpu.cfs_quota_us"), "5000\n")
    write(os.path.join(group, "cpu.cfs_period_us"), "20000\n")
    assert cgroup_dir(root, "cpu") == (group, 1)
    assert os.path.normpath(cgroup_dir(root)[0]) == os.path.join(root, "sys/fs/cgroup/cpuacct")
    meter = UtilizationMeter(board="rpi4b", scope="cgroup", root=root)
    assert meter.cores == pytest.approx(0.25)  # the quota, found in the other hierarchy
    assert UtilizationMeter(board="rpi4b", root=root).cores == pytest.approx(0.25)


def test_board_detection():
    assert detect_board(os.path.join(BOARDS, "rpi4b")) == "rpi4b"
    assert detect_board(os.path.join(BOARDS, "jetson_nano")) == "jetson_nano"
    with pytest.raises(MeterError, match="Raspberry Pi 5"):
        detect_board(os.path.join(BOARDS, "rpi5"))


def test_bad_arguments():
    with pytest.raises(ValueError):
        UtilizationMeter(board="cray-1")
    with pytest.raises(ValueError):
        UtilizationMeter(board="rpi4b", scope="thread")
