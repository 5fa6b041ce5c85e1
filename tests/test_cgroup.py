"""CPU quotas: v1 and v2 logic on fixture trees, and real throttling on this host."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from edgebed.device import cgroup
from edgebed.device.cgroup import (
    CpuQuota,
    CpuQuotaUnavailable,
    apply_cpu_quota,
    detect_cgroup_support,
    read_cpu_stat,
    remove_cpu_quota,
)

FAKE_PID = 424242  # fixture trees only: never a real process here
REAL_ROOT = Path("/sys/fs/cgroup")


def _files(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _v1_tree(root: Path) -> Path:
    return _files(root, {
        "cpu/cpu.cfs_quota_us": "-1\n",
        "cpu/cpu.cfs_period_us": "100000\n",
        "cpu/cgroup.procs": "",
    })


def _v2_tree(root: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    return _files(root, {
        "cgroup.controllers": controllers + "\n",
        "cgroup.subtree_control": "memory\n",
        "cgroup.procs": "",
    })


@pytest.mark.parametrize("cores", [0, -1, float("nan"), float("inf"), (os.cpu_count() or 1) + 1])
def test_bad_core_counts_are_value_errors_naming_the_value(tmp_path, cores):
    with pytest.raises(ValueError, match=repr(cores).replace("(", r"\(")):
        apply_cpu_quota(cores, "x", cgroup_root=_v1_tree(tmp_path), pid=FAKE_PID)


def test_below_kernel_minimum_and_bad_names(tmp_path):
    root = _v1_tree(tmp_path)
    with pytest.raises(ValueError, match="0.001"):
        apply_cpu_quota(0.001, "x", cgroup_root=root, pid=FAKE_PID)
    for name in ("", "a/b", "..x/y", "a b"):
        with pytest.raises(ValueError, match="name"):
            apply_cpu_quota(0.5, name, cgroup_root=root, pid=FAKE_PID)


def test_detect_support(tmp_path):
    assert detect_cgroup_support(_v1_tree(tmp_path / "v1")) == "cgroup-v1"
    assert detect_cgroup_support(_v2_tree(tmp_path / "v2")) == "cgroup-v2"
    # Hybrid host like this one: v2 at unified/ without cpu, v1 cpu writable.
    hybrid = _v1_tree(tmp_path / "hybrid")
    _v2_tree(hybrid / "unified", controllers="hugetlb")
    assert detect_cgroup_support(hybrid) == "cgroup-v1"
    none = detect_cgroup_support(tmp_path / "empty")
    assert none.startswith("none: ") and "v2" in none and "v1" in none


def test_v1_quota_on_fixture_tree(tmp_path):
    root = _v1_tree(tmp_path)
    quota = apply_cpu_quota(0.5, "pi4", cgroup_root=root, pid=FAKE_PID)
    group = root / "cpu" / "edgebed" / f"pi4-{FAKE_PID}"
    assert quota == CpuQuota(mechanism="cgroup-v1", path=str(group), cores=0.5, pid=FAKE_PID,
                             quota_us=10000, period_us=20000, restore_path=str(root / "cpu"))
    assert (group / "cpu.cfs_period_us").read_text() == "20000"
    assert (group / "cpu.cfs_quota_us").read_text() == "10000"
    assert (group / "cgroup.procs").read_text() == str(FAKE_PID)


def test_v2_quota_delegates_the_controller(tmp_path):
    root = _v2_tree(tmp_path)
    _v1_tree(tmp_path)  # v2 is preferred when both work
    quota = apply_cpu_quota(1.5, "gpu", cgroup_root=root, pid=FAKE_PID)
    group = root / "edgebed" / f"gpu-{FAKE_PID}"
    assert quota.mechanism == "cgroup-v2" and quota.path == str(group)
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "edgebed" / "cgroup.subtree_control").read_text() == "+cpu"
    assert (group / "cpu.max").read_text() == "30000 20000"
    assert (group / "cgroup.procs").read_text() == str(FAKE_PID)


def test_hybrid_unified_mount_with_cpu_is_used(tmp_path):
    root = _v1_tree(tmp_path)
    _v2_tree(root / "unified")
    quota = apply_cpu_quota(1, "h", cgroup_root=root, pid=FAKE_PID)
    assert quota.mechanism == "cgroup-v2"
    assert Path(quota.path).parent.parent == root / "unified"


def test_failed_v2_write_falls_back_to_v1(tmp_path):
    root = _v2_tree(tmp_path)
    _v1_tree(tmp_path)
    # Root ignores permission bits, so make the write fail structurally: the
    # new group's cpu.max is a directory.
    (root / "edgebed" / f"a-{FAKE_PID}" / "cpu.max").mkdir(parents=True)
    quota = apply_cpu_quota(0.5, "a", cgroup_root=root, pid=FAKE_PID)
    assert quota.mechanism == "cgroup-v1"


def test_unavailable_says_what_was_tried(tmp_path, monkeypatch):
    with pytest.raises(CpuQuotaUnavailable) as info:
        apply_cpu_quota(0.5, "x", cgroup_root=tmp_path / "empty", pid=FAKE_PID)
    message = str(info.value)
    assert message.startswith("cannot apply --cpu-quota 0.5: ")
    assert "no cgroup v2 hierarchy" in message and "no cgroup v1 cpu hierarchy" in message
    # The agent catches the project's base error; the quota error must be one.
    assert isinstance(info.value, cgroup.EdgebedError)

    # A hybrid host where v2 lacks cpu and v1 is read-only (e.g. not root).
    root = _v1_tree(tmp_path / "ro")
    _v2_tree(root / "unified", controllers="hugetlb")
    monkeypatch.setattr(cgroup.os, "access", lambda path, mode: False)
    with pytest.raises(CpuQuotaUnavailable) as info:
        apply_cpu_quota(0.5, "x", cgroup_root=root, pid=FAKE_PID)
    message = str(info.value)
    assert "has no cpu controller (available: hugetlb" in message
    assert f"{root / 'cpu'} is not writable" in message
    assert not (root / "cpu" / "edgebed").exists()


def test_remove_moves_the_pid_back_and_removes_the_group(tmp_path):
    root = _v1_tree(tmp_path)
    quota = apply_cpu_quota(0.5, "r", cgroup_root=root, pid=FAKE_PID)
    _files(Path(quota.path), {"cpu.stat": "nr_periods 7\nnr_throttled 3\nthrottled_time 12\n"})
    assert read_cpu_stat(quota) == {"nr_periods": 7, "nr_throttled": 3, "throttled_time": 12}
    # A plain directory keeps its files, unlike cgroupfs: rmdir fails, logged.
    assert remove_cpu_quota(quota) is False
    assert (root / "cpu" / "cgroup.procs").read_text() == str(FAKE_PID)
    for child in Path(quota.path).iterdir():
        child.unlink()
    assert remove_cpu_quota(quota) is True
    assert not (root / "cpu" / "edgebed").exists()


def _real_quota_problem() -> str:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    support = detect_cgroup_support(REAL_ROOT)
    if support.startswith("none"):
        return f"no writable cgroup cpu controller here ({support})"
    return ""


@pytest.mark.skipif(bool(_real_quota_problem()), reason=_real_quota_problem() or "n/a")
def test_real_quota_throttles_a_busy_subprocess():
    spin = ("import sys, time\n"
            "sys.stdin.readline()\n"
            "end = time.perf_counter() + 0.4\n"
            "while time.perf_counter() < end:\n"
            "    pass\n")
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE)
    quota = None
    try:
        quota = apply_cpu_quota(0.25, "pytest", pid=child.pid)
        rel = quota.path[len(str(REAL_ROOT)):]
        membership = Path(f"/proc/{child.pid}/cgroup").read_text()
        assert rel.split("/", 2)[2] in membership  # e.g. "1:cpu:/edgebed/pytest-123"
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        stats = read_cpu_stat(quota)
        print(f"{quota.mechanism} {quota.path}: {stats}")
        # A single spinning thread wants 100 ms per 100 ms period and gets 25.
        assert stats["nr_periods"] > 0
        assert stats["nr_throttled"] > 0
        throttled = stats.get("throttled_time", 0) or stats.get("throttled_usec", 0)
        assert throttled > 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if quota is not None:
            assert remove_cpu_quota(quota) is True
            assert not Path(quota.path).exists()
