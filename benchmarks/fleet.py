"""Run an edge server and a fleet of real agent processes on one host.

``ServerThread`` runs an ``EdgeServer`` on its own event loop in a background
thread so synchronous code (benchmarks, tests) can drive it with ``call``.
``Fleet`` starts ``edgebed-device`` processes (real processes, real sockets)
with per-agent CPU quotas and link profiles, and can kill one to emulate a
device dying mid-work.
"""
import asyncio
import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Dict, Iterator, List, Optional, Sequence

from edgebed.device.cgroup import detect_cgroup_support
from edgebed.server.core import EdgeServer, ServerConfig

logger = logging.getLogger(__name__)


class ServerThread:
    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="edge-server",
                                        daemon=True)
        self._thread.start()
        self.server = EdgeServer(config)
        self.port = self.call(self.server.start())
        host = config.listen.rsplit(":", 1)[0]
        self.address = f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{self.port}"

    def call(self, awaitable: Awaitable[Any], timeout_s: Optional[float] = None) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout_s)

    def run(self, fn, *args) -> Any:
        """Run a plain function on the server's loop (for non-thread-safe APIs)."""
        async def wrapper():
            return fn(*args)
        return self.call(wrapper())

    def stop(self) -> None:
        try:
            self.call(self.server.stop(), timeout_s=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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


def quota_support(no_quota: bool, external: int) -> "tuple[str, bool]":
    """(what the host's cgroups allow, whether to give agents CPU quotas);
    says so when quotas were wanted but are not available."""
    support = detect_cgroup_support()
    use_quota = not no_quota and not external and not support.startswith("none")
    if not no_quota and not external and not use_quota:
        print(f"note: CPU quotas unavailable ({support}); agents run at full speed")
    return support, use_quota


@contextlib.contextmanager
def local_testbed(writer, specs: Sequence[AgentSpec], *, listen: str = "127.0.0.1:0",
                  external: int = 0, token: Optional[str] = None, timeout_s: float = 120.0,
                  benchmark_s: float = 0.5) -> Iterator["tuple[ServerThread, List[str]]"]:
    """A server whose spans go to ``writer``, with ``specs`` started as local
    agents one by one, or ``external`` agents started elsewhere (boards).

    Yields ``(server_thread, device_names)``; stops agents and server on exit.
    """
    srv = ServerThread(ServerConfig(listen=listen, token=token))
    srv.run(srv.server.add_span_sink, writer.event)
    fleet = None
    try:
        if external:
            print(f"waiting for {external} agents on port {srv.port}")
        else:
            fleet = Fleet(srv.address, specs, token=token, log_dir=writer.path / "agents",
                          benchmark_s=benchmark_s)
            fleet.start_sequentially(srv, timeout_s)
        srv.call(srv.server.wait_for_devices(external or len(specs), timeout_s))
        yield srv, srv.server.device_names()
    finally:
        if fleet is not None:
            fleet.stop()
        srv.stop()
