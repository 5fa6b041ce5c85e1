"""Emulated compute heterogeneity: a CPU quota per agent through cgroups.

``apply_cpu_quota(0.5, "pi4-a")`` moves a process into
``<hierarchy>/edgebed/pi4-a-<pid>`` with a CFS bandwidth limit of half a core,
so everything it computes is really slower, the way a weaker board is. The
quota is a *bandwidth* limit (``quota`` microseconds of CPU time per
``period``), not a share: it throttles even on an idle host, which is what an
emulated device needs.

Mechanisms, in order of preference:

- cgroup v2 ``cpu.max`` ("<quota> <period>"), when the unified hierarchy (at
  ``cgroup_root`` itself or at ``cgroup_root/unified`` on hybrid hosts) has the
  cpu controller available and is writable.
- cgroup v1 ``cpu.cfs_quota_us`` + ``cpu.cfs_period_us`` under
  ``cgroup_root/cpu`` (or a co-mounted ``cpu,cpuacct``).

Where neither works, :class:`CpuQuotaUnavailable` says what was tried and why
it failed. The quota is never silently skipped: an agent that believes it is a
slow board while running at full speed would corrupt every measurement.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from edgebed import EdgebedError

logger = logging.getLogger(__name__)

# A 20 ms CFS period, not the kernel's default 100 ms: with 100 ms a quarter-core
# device runs at full speed for 25 ms and then stalls for 75, so a 30 ms layer
# takes 30 or 105 ms depending on where it lands in the period. A real slow
# board is slow evenly; a short period comes closer. 20 ms keeps the kernel's
# 1 ms quota floor at 0.05 cores, below the smallest share the suites use.
PERIOD_US = 20_000
# The kernel rejects CFS quotas below 1 ms (EINVAL); say so in terms of cores.
MIN_QUOTA_US = 1_000
GROUP_PARENT = "edgebed"
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

PathLike = Union[str, "os.PathLike[str]"]


class CpuQuotaUnavailable(EdgebedError):
    """No cgroup mechanism could apply the requested CPU quota."""


@dataclass(frozen=True)
class CpuQuota:
    """An applied quota: enough to report it and to undo it.

    ``restore_path`` is the cgroup the process was in before (same hierarchy),
    where :func:`remove_cpu_quota` puts it back.
    """

    mechanism: str  # "cgroup-v1" or "cgroup-v2"
    path: str
    cores: float
    pid: int
    quota_us: int
    period_us: int
    restore_path: str


def _v2_dir(root: Path) -> Path | None:
    # Pure v2 mounts the unified hierarchy at the root; hybrid hosts (systemd's
    # default for years) put it at "unified" next to the v1 controllers.
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


def _v1_cpu_dir(root: Path) -> Path | None:
    for name in _V1_CPU_DIRS:
        candidate = root / name
        if (candidate / "cpu.cfs_quota_us").is_file():
            return candidate
    return None


def _read(path: Path) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: Path, text: str) -> None:
    # Plain open(): cgroupfs control files exist once the directory does, and
    # each write must be a single write(2) call for the kernel to parse it.
    with open(path, "w") as handle:
        handle.write(text)


def _v2_problem(root: Path) -> str:
    """Why cgroup v2 cannot be used here, or "" when it can."""
    unified = _v2_dir(root)
    if unified is None:
        return f"no cgroup v2 hierarchy at {root} or {root / 'unified'}"
    controllers = _read(unified / "cgroup.controllers").split()
    if "cpu" not in controllers:
        listed = " ".join(controllers) or "none"
        return (f"cgroup v2 at {unified} has no cpu controller (available: {listed}; "
                "it is probably bound to cgroup v1)")
    if not os.access(unified, os.W_OK):
        return f"cgroup v2 at {unified} is not writable (not root, or mounted read-only?)"
    return ""


def _v1_problem(root: Path) -> str:
    """Why cgroup v1 cannot be used here, or "" when it can."""
    cpu_dir = _v1_cpu_dir(root)
    if cpu_dir is None:
        return f"no cgroup v1 cpu hierarchy with cpu.cfs_quota_us under {root}"
    if not os.access(cpu_dir, os.W_OK):
        return f"{cpu_dir} is not writable (not root, or mounted read-only?)"
    return ""


def detect_cgroup_support(cgroup_root: PathLike = "/sys/fs/cgroup") -> str:
    """``"cgroup-v2"``, ``"cgroup-v1"`` or ``"none: <reason>"`` for CPU quotas."""
    root = Path(cgroup_root)
    v2 = _v2_problem(root)
    if not v2:
        return "cgroup-v2"
    v1 = _v1_problem(root)
    if not v1:
        return "cgroup-v1"
    return f"none: {v2}; {v1}"


def _current_cgroup(pid: int, v1_controller: str | None) -> str | None:
    """The pid's cgroup path in one hierarchy (v2 when ``v1_controller`` is None)."""
    try:
        lines = _read(Path("/proc") / str(pid) / "cgroup").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if v1_controller is None and parts[0] == "0" and controllers == "":
            return rel
        if v1_controller is not None and v1_controller in controllers.split(","):
            return rel
    return None


def _restore_target(hierarchy: Path, pid: int, v1_controller: str | None) -> Path:
    rel = _current_cgroup(pid, v1_controller)
    if rel:
        candidate = hierarchy / rel.lstrip("/")
        if candidate.is_dir():
            return candidate
    return hierarchy


def _os_reason(exc: OSError) -> str:
    hint = " (not root?)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
    return f"{exc.filename or ''}: {exc.strerror or exc}{hint}".lstrip(": ")


def _delegate_cpu(directory: Path) -> None:
    control = directory / "cgroup.subtree_control"
    if not control.exists() or "cpu" not in _read(control).split():
        _write(control, "+cpu")


def _apply_v2(group: Path, pid: int, quota_us: int) -> None:
    # A child only gets cpu.max when every ancestor delegates the controller
    # through cgroup.subtree_control; "edgebed" itself holds no processes, as
    # v2's no-internal-process rule requires.
    _delegate_cpu(group.parent.parent)
    group.parent.mkdir(exist_ok=True)
    _delegate_cpu(group.parent)
    group.mkdir(exist_ok=True)
    _write(group / "cpu.max", f"{quota_us} {PERIOD_US}")
    _write(group / "cgroup.procs", str(pid))


def _apply_v1(group: Path, pid: int, quota_us: int) -> None:
    group.parent.mkdir(exist_ok=True)
    group.mkdir(exist_ok=True)
    # Period first: the kernel validates the quota against the current period.
    _write(group / "cpu.cfs_period_us", str(PERIOD_US))
    _write(group / "cpu.cfs_quota_us", str(quota_us))
    # cgroup.procs moves the whole thread group; "tasks" would move one thread.
    _write(group / "cgroup.procs", str(pid))


def _discard(group: Path) -> None:
    # A half-configured group (the pid is moved in last, so it is empty) would
    # otherwise be left behind by a failed attempt.
    try:
        os.rmdir(group)
    except OSError as exc:
        logger.debug("could not remove half-made %s: %s", group, exc)


def _validate(cores: float, name: str) -> int:
    count = os.cpu_count() or 1
    if not isinstance(cores, (int, float)) or not math.isfinite(cores) \
            or cores <= 0 or cores > count:
        raise ValueError(f"cpu quota {cores!r} must be > 0 and <= {count} (cores on this host)")
    quota_us = round(cores * PERIOD_US)
    if quota_us < MIN_QUOTA_US:
        raise ValueError(f"cpu quota {cores!r} is below the kernel minimum of "
                         f"{MIN_QUOTA_US / PERIOD_US:g} cores ({MIN_QUOTA_US} us per "
                         f"{PERIOD_US} us period)")
    if not _NAME_RE.match(name):
        raise ValueError(f"cgroup name {name!r} must be letters, digits, '_', '.' or '-'")
    return quota_us


def apply_cpu_quota(
    cores: float,
    name: str,
    *,
    cgroup_root: PathLike = "/sys/fs/cgroup",
    pid: int | None = None,
) -> CpuQuota:
    """Limit ``pid`` (default: this process) to ``cores`` CPUs' worth of time.

    Children forked afterwards inherit the group, so data-loader workers are
    limited too. Raises ValueError for a bad ``cores``/``name`` and
    :class:`CpuQuotaUnavailable` when no mechanism works.
    """
    quota_us = _validate(cores, name)
    pid = os.getpid() if pid is None else int(pid)
    root = Path(cgroup_root)
    tried: list[str] = []

    problem = _v2_problem(root)
    if not problem:
        unified = _v2_dir(root)
        assert unified is not None  # _v2_problem checked it
        restore = _restore_target(unified, pid, None)
        group = unified / GROUP_PARENT / f"{name}-{pid}"
        try:
            _apply_v2(group, pid, quota_us)
        except OSError as exc:
            problem = f"cgroup v2 at {unified}: {_os_reason(exc)}"
            _discard(group)
        else:
            return _applied("cgroup-v2", group, cores, pid, quota_us, restore)
    tried.append(problem)

    problem = _v1_problem(root)
    if not problem:
        cpu_dir = _v1_cpu_dir(root)
        assert cpu_dir is not None  # _v1_problem checked it
        restore = _restore_target(cpu_dir, pid, "cpu")
        group = cpu_dir / GROUP_PARENT / f"{name}-{pid}"
        try:
            _apply_v1(group, pid, quota_us)
        except OSError as exc:
            problem = f"cgroup v1 at {cpu_dir}: {_os_reason(exc)}"
            _discard(group)
        else:
            return _applied("cgroup-v1", group, cores, pid, quota_us, restore)
    tried.append(problem)

    raise CpuQuotaUnavailable(f"cannot apply --cpu-quota {cores:g}: " + "; ".join(tried))


def _applied(mechanism: str, group: Path, cores: float, pid: int, quota_us: int,
             restore: Path) -> CpuQuota:
    logger.info("cpu quota %g cores applied to pid %d with %s at %s",
                cores, pid, mechanism, group)
    return CpuQuota(mechanism=mechanism, path=str(group), cores=float(cores), pid=pid,
                    quota_us=quota_us, period_us=PERIOD_US, restore_path=str(restore))


def read_cpu_stat(quota: CpuQuota) -> dict[str, int]:
    """The group's ``cpu.stat`` counters (v1: nr_periods, nr_throttled,
    throttled_time ns; v2 also usage_usec and throttled_usec)."""
    stats: dict[str, int] = {}
    for line in _read(Path(quota.path) / "cpu.stat").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            stats[key] = int(value)
    return stats


def remove_cpu_quota(quota: CpuQuota) -> bool:
    """Undo :func:`apply_cpu_quota`, best effort; True when the group is gone.

    Every process still in the group (the agent and any children that
    inherited it) goes back to ``restore_path`` (or the hierarchy root), then
    the directory is removed. Failures are logged, never raised: this runs on
    the agent's way out.
    """
    group = Path(quota.path)
    hierarchy = group.parent.parent
    targets = [Path(quota.restore_path), hierarchy]
    members = {quota.pid}
    try:
        members.update(int(p) for p in _read(group / "cgroup.procs").split())
    except (OSError, ValueError) as exc:
        logger.debug("cannot list members of %s: %s", group, exc)
    for member in sorted(members):
        _move_back(member, targets)
    try:
        os.rmdir(group)
    except OSError as exc:
        logger.warning("could not remove cgroup %s: %s", group, exc)
        return False
    try:
        os.rmdir(group.parent)  # other agents may still use it; that is fine
    except OSError as exc:
        logger.debug("kept %s: %s", group.parent, exc)
    logger.info("cpu quota removed: pid %d back in %s", quota.pid, quota.restore_path)
    return True


def _move_back(pid: int, targets: list[Path]) -> None:
    for target in targets:
        try:
            _write(target / "cgroup.procs", str(pid))
            return
        except OSError as exc:
            if exc.errno == errno.ESRCH:  # already exited: nothing to move
                return
            logger.debug("cannot move pid %d to %s: %s", pid, target, exc)
    logger.warning("could not move pid %d out of its quota group", pid)
