"""The hardware probe against board fixture trees, plus a real short benchmark."""
import os
from pathlib import Path

import pytest
import torch
from edgebed.device import probe
from edgebed.proto.records import CapabilityProfile, LinkProfile

FIXTURES = Path(__file__).parent / "fixtures" / "probe"
JETSON = FIXTURES / "jetson_nano"
PI4 = FIXTURES / "raspberry_pi4"
X86 = FIXTURES / "x86"


def _tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_device_tree_model_drops_the_trailing_nul():
    assert (JETSON / "proc/device-tree/model").read_bytes().endswith(b"\x00")
    assert probe.read_device_tree_model(JETSON) == "NVIDIA Jetson Nano Developer Kit"


def test_cpu_model_of_each_board():
    assert probe.read_cpu_model(JETSON) == (
        "NVIDIA Jetson Nano Developer Kit, ARMv8 Processor rev 1 (v8l)")
    assert probe.read_cpu_model(PI4) == (
        "Raspberry Pi 4 Model B Rev 1.1, ARMv7 Processor rev 3 (v7l)")
    # x86's lower-case numeric "model" must not be taken for the board.
    assert probe.read_cpu_model(X86) == "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"


def test_cpu_model_from_hardware_line_and_fallback(tmp_path, monkeypatch):
    arm = _tree(tmp_path / "arm", {"proc/cpuinfo": "processor\t: 0\nHardware\t: Qualcomm SDM845\n"})
    assert probe.read_cpu_model(arm) == "Qualcomm SDM845"
    monkeypatch.setattr(probe.platform, "processor", lambda: "mystery-cpu")
    assert probe.read_cpu_model(tmp_path / "empty") == "mystery-cpu"


def test_accelerator_detection_from_fixtures(tmp_path):
    assert probe.detect_accelerator(JETSON) == "jetson:NVIDIA Jetson Nano Developer Kit"
    assert probe.detect_accelerator(PI4, probe_cuda=False) == "none"
    # A Jetson container without the device tree: L4T's release file says it.
    release = (JETSON / "etc/nv_tegra_release").read_text()
    bare = _tree(tmp_path, {"etc/nv_tegra_release": release})
    assert probe.detect_accelerator(bare) == "jetson:t210ref (L4T R32.7.1)"


def test_accelerator_on_this_host_matches_torch():
    accelerator = probe.detect_accelerator(X86)
    if torch.cuda.is_available():
        assert accelerator == f"cuda:{torch.cuda.get_device_name(0)}"
    else:
        assert accelerator == "none" or accelerator.startswith("cuda:")


def test_cgroup_v1_limit_takes_the_tightest_ancestor(tmp_path):
    root = _tree(tmp_path, {
        "proc/self/cgroup": "4:memory:/x\n2:cpu,cpuacct:/agents/a1\n0::/\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/agents/cpu.cfs_quota_us": "150000\n",
        "sys/fs/cgroup/cpu,cpuacct/agents/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/agents/a1/cpu.cfs_quota_us": "25000\n",
        "sys/fs/cgroup/cpu,cpuacct/agents/a1/cpu.cfs_period_us": "50000\n",
    })
    assert probe.cgroup_cpu_limit(root) == pytest.approx(0.5)


def test_cgroup_v2_limit_and_unlimited(tmp_path):
    limited = _tree(tmp_path / "a", {
        "proc/self/cgroup": "0::/edgebed/pi-1\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
        "sys/fs/cgroup/edgebed/cpu.max": "max 100000\n",
        "sys/fs/cgroup/edgebed/pi-1/cpu.max": "150000 100000\n",
    })
    assert probe.cgroup_cpu_limit(limited) == pytest.approx(1.5)
    unlimited = _tree(tmp_path / "b", {
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu\n",
    })
    assert probe.cgroup_cpu_limit(unlimited) == 0.0
    assert probe.cgroup_cpu_limit(tmp_path / "nothing") == 0.0


def test_container_path_not_mounted_falls_back_to_the_visible_root(tmp_path):
    # Without a cgroup namespace /proc/self/cgroup names a host path.
    root = _tree(tmp_path, {
        "proc/self/cgroup": "0::/system.slice/docker-abc.scope\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu\n",
        "sys/fs/cgroup/cpu.max": "50000 100000\n",
    })
    assert probe.cgroup_cpu_limit(root) == pytest.approx(0.5)


def test_available_cores_respects_affinity_cgroup_and_agent_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert probe.available_cores(tmp_path) == affinity
    assert probe.available_cores(tmp_path, cpu_quota=0.25) == 1
    root = _tree(tmp_path / "q", {
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu\n",
        "sys/fs/cgroup/cpu.max": "50000 100000\n",
    })
    assert probe.available_cores(root) == 1


def test_cpu_freq_missing_is_zero(monkeypatch):
    monkeypatch.setattr(probe.psutil, "cpu_freq", lambda: None)
    assert probe.cpu_freq_mhz() == 0.0

    def broken():
        raise NotImplementedError("no cpufreq")

    monkeypatch.setattr(probe.psutil, "cpu_freq", broken)
    assert probe.cpu_freq_mhz() == 0.0


def test_benchmark_measures_and_restores_thread_count():
    before = torch.get_num_threads()
    matmul, conv = probe.measure_throughput(0.04, num_threads=1)
    assert torch.get_num_threads() == before
    assert matmul > 0.01 and conv > 0.01
    assert probe.measure_throughput(0.0) == (0.0, 0.0)


def test_probe_profile_on_a_jetson_tree():
    link = LinkProfile(uplink_bps=1e6, downlink_bps=2e6)
    profile = probe.probe_profile(name_hint="nano-1", power_backend="jetson-ina3221",
                                  cpu_quota=0.5, link=link, benchmark_s=0.04, root=JETSON)
    assert profile.cpu_model.startswith("NVIDIA Jetson Nano Developer Kit")
    assert profile.accelerator == "jetson:NVIDIA Jetson Nano Developer Kit"
    assert profile.cpu_cores == 1 and profile.cpu_quota == 0.5
    assert profile.power_backend == "jetson-ina3221" and profile.link == link
    assert profile.matmul_gflops > 0 and profile.conv_gflops > 0
    assert profile.ram_bytes > 0 and profile.hostname
    assert profile.torch_version == torch.__version__
    assert profile.python_version.count(".") == 2
    assert CapabilityProfile.from_proto(profile.to_proto()) == profile
