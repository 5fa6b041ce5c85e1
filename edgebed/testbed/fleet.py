"""A fleet of real agent processes on this host.

``Fleet`` starts ``edgebed-device`` processes (real processes, real sockets)
with per-agent CPU quotas and link profiles, and can kill one to emulate a
device dying mid-work. ``DeviceClass`` rows are what a suite's emulated
boards differ in; ``fleet_specs`` deals them out to ``count`` agents.
"""
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgebed.testbed.server_thread import ServerThread

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceClass:
    """One kind of emulated board: its compute (a CPU quota in cores, applied
    when cgroups allow), its link profile (``--link``), its meter and its
    labels (``--label KEY=VALUE``, e.g. a role a workload looks for)."""

    cores: float
    link: str = ""
    power_backend: str = "utilization:rpi4b"  # a Raspberry Pi 4 model: labelled estimated
    labels: Tuple[str, ...] = ()


def fleet_specs(classes: Sequence[DeviceClass], count: int, use_quota: bool,
                prefix: str = "dev", power_backend: Optional[str] = None) -> List["AgentSpec"]:
    """``count`` agents named ``<prefix>-<i>``, dealt the classes in turn."""
    if count < 1:
        raise ValueError(f"need at least one agent, got {count}")
    specs = []
    for i in range(count):
        cls = classes[i % len(classes)]
        specs.append(AgentSpec(f"{prefix}-{i}", cpu_quota=cls.cores if use_quota else 0.0,
                               link=cls.link, power_backend=power_backend or cls.power_backend,
                               extra_args=tuple(a for label in cls.labels
                                                for a in ("--label", label))))
    return specs


@dataclass(frozen=True)
class AgentSpec:
    name: str
    cpu_quota: float = 0.0
    link: str = ""
    power_backend: str = "auto"
    extra_args: Sequence[str] = ()


class Fleet:
    """Agent processes; stdout/stderr of each go to ``log_dir/<name>.log``."""

    def __init__(self, server_address: str, specs: Sequence[AgentSpec], *,
                 token: Optional[str] = None, log_dir: Optional[pathlib.Path] = None,
                 benchmark_s: float = 0.2) -> None:
        self.server_address = server_address
        self.specs = {s.name: s for s in specs}
        self.token = token
        self.log_dir = pathlib.Path(log_dir) if log_dir else None
        self.benchmark_s = benchmark_s
        self.procs: Dict[str, subprocess.Popen] = {}
        self._logs: List[Any] = []

    def command_line(self, spec: AgentSpec) -> List[str]:
        cmd = [sys.executable, "-m", "edgebed.device.cli", "--server", self.server_address,
               "--name", spec.name, "--power-backend", spec.power_backend,
               "--benchmark-s", str(self.benchmark_s)]
        if spec.cpu_quota:
            cmd += ["--cpu-quota", str(spec.cpu_quota)]
        if spec.link:
            cmd += ["--link", spec.link]
        return cmd + list(spec.extra_args)

    def start(self, names: Optional[Sequence[str]] = None) -> "Fleet":
        env = dict(os.environ)
        if self.token:
            env["EDGEBED_TOKEN"] = self.token
        # One intra-op thread per agent: emulated devices share two cores, and
        # oversubscription would measure the scheduler, not the device.
        env.setdefault("OMP_NUM_THREADS", "1")
        for name in names or list(self.specs):
            spec = self.specs[name]
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "ab")
                self._logs.append(out)
            else:
                out = subprocess.DEVNULL
            self.procs[name] = subprocess.Popen(self.command_line(spec), stdout=out,
                                                stderr=subprocess.STDOUT, env=env)
        return self

    def start_sequentially(self, server: ServerThread, timeout_s: float = 120.0) -> "Fleet":
        """Start agents one at a time, each after the previous registered.

        Agents probe their compute throughput when they start; started
        together on a small host they would measure each other.
        """
        for count, name in enumerate(self.specs, start=1):
            self.start([name])
            self.wait_registered(server, count, timeout_s)
        return self

    def wait_registered(self, server: ServerThread, count: int, timeout_s: float = 120.0) -> None:
        """Wait until ``count`` agents hold sessions; fail at once, with the
        agent's own words, if one of them exited (e.g. a bad option)."""
        deadline = time.monotonic() + timeout_s
        while True:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                name = sorted(dead)[0]
                raise RuntimeError(f"agent {name} exited with code {dead[name]}: "
                                   f"{self.log_tail(name)}")
            try:
                server.call(server.server.wait_for_devices(count, 0.5))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def log_tail(self, name: str, lines: int = 3) -> str:
        if self.log_dir is None:
            return "(no log kept)"
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def kill(self, name: str) -> None:
        """SIGKILL one agent: no goodbye, as when a board loses power."""
        proc = self.procs[name]
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait()
        for out in self._logs:
            out.close()

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
