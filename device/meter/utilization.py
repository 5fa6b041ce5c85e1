"""Boards without a power sensor: a CPU-utilization power model (estimated).

    P(u) = idle_w + (max_w - idle_w) * u

where ``u`` is the CPU utilization of this process (or of its cgroup) over
the window: CPU seconds used / elapsed seconds / cores available, capped at
1. "Cores available" is the smaller of the CPU affinity set and the cgroup
CPU quota, so an emulated device limited to half a core is "fully busy" when
it uses half a core, and its power rises to that board's maximum.

Energy is linear in CPU time, so this is a counter backend: it reads the
cumulative CPU time at both window edges; no thread. Results are labelled
``estimated``: they are a model fed with measured activity, not a sensor.

The coefficients are per board (``BOARD_MODELS``); each entry says where its
numbers come from. An unknown board is an error, not a guess: pass
``board=`` explicitly.
"""
import glob
import logging
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import psutil

from edgebed.device.meter.base import CounterMeter, MeterError
from edgebed.proto.records import Provenance
from edgebed.device.meter.rpi import board_model

logger = logging.getLogger(__name__)

SCOPES = ("process", "cgroup")


@dataclass(frozen=True)
class BoardPowerModel:
    """Linear power model of one board type."""

    description: str
    idle_w: float
    max_w: float
    source: str

    def power_w(self, utilization: float) -> float:
        u = min(max(utilization, 0.0), 1.0)
        return self.idle_w + (self.max_w - self.idle_w) * u


BOARD_MODELS = {
    "rpi4b": BoardPowerModel(
        "Raspberry Pi 4 Model B", 2.286, 2.286 + 4.534,
        "edgebed DESIGN.md (P = 2.286 + 4.534 u W); primary measurement not traced here"),
    "jetson_nano": BoardPowerModel(
        "NVIDIA Jetson Nano, CPU load only (GPU idle)", 1.3, 4.5,
        "assumed: rough headless idle and four-core CPU load at the 5 V input, MAXN mode"),
    "x86_laptop": BoardPowerModel(
        "generic x86 laptop", 5.0, 35.0,
        "assumed: mobile CPU platform idle with display off, to PL2-class package load"),
    "x86_server": BoardPowerModel(
        "generic x86 desktop or server", 60.0, 200.0,
        "assumed: one-socket server idle to all cores loaded"),
}


def detect_board(root: str = "/") -> str:
    """A ``BOARD_MODELS`` key for this machine; MeterError if none fits."""
    model = board_model(root)
    if model is not None:
        if "Raspberry Pi 4" in model:
            return "rpi4b"
        if "Jetson Nano" in model:
            return "jetson_nano"
        raise MeterError("utilization: no power coefficients for board {!r}".format(model))
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        batteries = glob.glob(os.path.join(root, "sys/class/power_supply/BAT*"))
        return "x86_laptop" if batteries else "x86_server"
    raise MeterError("utilization: no power coefficients for machine {!r}".format(
        platform.machine()))


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# cgroup v1 controller -> (mount names it may live under, a file it always has).
# The cpu and cpuacct controllers are often mounted together ("cpu,cpuacct"),
# but some hosts mount them apart: the quota then lives in the cpu hierarchy
# and the usage counter in the cpuacct one, under different paths.
_V1_CONTROLLERS = {
    "cpuacct": (("cpu,cpuacct", "cpuacct,cpu", "cpuacct"), "cpuacct.usage"),
    "cpu": (("cpu,cpuacct", "cpuacct,cpu", "cpu"), "cpu.cfs_quota_us"),
}


def cgroup_dir(root: str = "/", controller: str = "cpuacct") -> Tuple[str, int]:
    """``(directory, version)`` of this process's cgroup for ``controller``
    (cgroup v1: "cpuacct" for CPU accounting, "cpu" for the CFS quota; v2 has
    one directory for both)."""
    mounts, marker = _V1_CONTROLLERS[controller]
    text = _read(os.path.join(root, "proc/self/cgroup")) or ""
    v2_path = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if controller in controllers.split(","):
            for mount in mounts:
                directory = os.path.join(root, "sys/fs/cgroup", mount, path.lstrip("/"))
                if os.path.exists(os.path.join(directory, marker)):
                    return directory, 1
        if hierarchy == "0" and controllers == "":
            v2_path = path
    if v2_path is not None:
        directory = os.path.join(root, "sys/fs/cgroup", v2_path.lstrip("/"))
        if os.path.exists(os.path.join(directory, "cpu.stat")):
            return directory, 2
    raise MeterError("utilization: no readable {} cgroup under {}".format(controller, root))


def cgroup_cpu_seconds(directory: str, version: int) -> float:
    if version == 2:
        for line in (_read(os.path.join(directory, "cpu.stat")) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise MeterError("utilization: no usage_usec in {}/cpu.stat".format(directory))
    value = _read(os.path.join(directory, "cpuacct.usage"))
    if value is None:
        raise MeterError("utilization: cannot read {}/cpuacct.usage".format(directory))
    return int(value) / 1e9


def cgroup_quota_cores(directory: str, version: int) -> Optional[float]:
    """CPU quota in cores, or None when unlimited or unknown."""
    if version == 2:
        fields = (_read(os.path.join(directory, "cpu.max")) or "max").split()
        if fields[0] == "max" or len(fields) < 2:
            return None
        return int(fields[0]) / int(fields[1])
    quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
    period = _read(os.path.join(directory, "cpu.cfs_period_us"))
    if quota is None or period is None or int(quota) <= 0:
        return None
    return int(quota) / int(period)


def available_cores(quota_cores: Optional[float] = None) -> float:
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cores = float(os.cpu_count() or 1)
    return min(cores, quota_cores) if quota_cores else cores


class UtilizationMeter(CounterMeter):
    """Estimated power from CPU time and per-board coefficients."""

    name = "utilization"
    provenance = Provenance.ESTIMATED

    def __init__(
        self,
        board: Optional[str] = None,
        scope: str = "process",
        root: str = "/",
        cores: Optional[float] = None,
        cpu_seconds: Optional[Callable[[], float]] = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError("scope must be one of {}, got {!r}".format(SCOPES, scope))
        if board is not None and board not in BOARD_MODELS:
            raise ValueError("unknown board {!r}; known: {}".format(board, sorted(BOARD_MODELS)))
        super().__init__(clock=clock)
        self.board = board or detect_board(root)
        self.model = BOARD_MODELS[self.board]
        self.scope = scope
        if scope == "cgroup":
            directory, version = cgroup_dir(root)
            self._cpu_seconds = lambda: cgroup_cpu_seconds(directory, version)
        else:
            process = psutil.Process()
            self._cpu_seconds = lambda: _process_cpu_seconds(process)
        try:
            # The quota of our cgroup limits the process too (v1: the cpu hierarchy).
            quota = cgroup_quota_cores(*cgroup_dir(root, "cpu"))
        except MeterError:
            quota = None  # no cgroup: the affinity set is the limit
        if cpu_seconds is not None:
            self._cpu_seconds = cpu_seconds
        self.cores = cores if cores is not None else available_cores(quota)
        # cpu_times advance in clock ticks (1/USER_HZ, usually 10 ms).
        self.update_period_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        logger.info("utilization: board %s (%s), scope %s, %.2f cores; coefficients: %s",
                    self.board, self.model.description, scope, self.cores, self.model.source)

    def _read_counter(self) -> float:
        return self._cpu_seconds()

    def _energy_between(self, start: float, end: float, duration_s: float) -> float:
        # Tick rounding can make CPU time exceed wall time; cap u at 1.
        busy_s = min(max(end - start, 0.0) / self.cores, duration_s)
        return self.model.idle_w * duration_s + (self.model.max_w - self.model.idle_w) * busy_s


def _process_cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    # children_* count only children that were waited for; that is what the
    # kernel exposes per process.
    children = getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
    return times.user + times.system + children


def probe_utilization(root: str = "/") -> str:
    board = detect_board(root)
    return "model {} ({})".format(board, BOARD_MODELS[board].source)
