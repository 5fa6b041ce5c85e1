"""deploy/: the scripts parse, the units verify, and the netns fleet really works.

The ``netns`` test builds the fleet with ``deploy/fleet-netns.sh`` (root only;
it skips elsewhere), runs a real server and two real agents inside the
namespaces, sees them register over the shaped veths, and tears it all down.
All its traffic stays inside namespaces it creates.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
FLEET = DEPLOY / "fleet-netns.sh"
INSTALL = DEPLOY / "install-agent.sh"
SCRIPTS = sorted(DEPLOY.glob("*.sh"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
FLEET_NS = re.compile(r"^(eb-srv|eb-dev[0-9]+)$")
BASH = shutil.which("bash")


def run(args: List[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def fleet(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run([BASH, FLEET, *args], timeout=timeout)


def fleet_namespaces() -> List[str]:
    out = run(["ip", "netns", "list"]).stdout
    return sorted(n for n in (line.split()[0] for line in out.splitlines() if line.strip())
                  if FLEET_NS.match(n))


# ---------------------------------------------------------------- static checks
def test_deploy_layout():
    assert {"install-agent.sh", "fleet-netns.sh"} <= {p.name for p in SCRIPTS}
    assert {"edgebed-device.service", "edgebed-server.service"} <= {p.name for p in UNITS}
    assert (DEPLOY / "README.md").is_file()


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax_and_help(script):
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    check = run([BASH, "-n", script])
    assert check.returncode == 0, check.stderr
    help_ = run([BASH, script, "--help"])
    assert help_.returncode == 0, help_.stderr
    assert "Usage:" in help_.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_contract(unit):
    text = unit.read_text()
    assert re.search(r"^Restart=always$", text, re.M)
    assert re.search(r"^EnvironmentFile=/etc/edgebed/\w+\.env$", text, re.M)
    assert "EDGEBED_TOKEN" in text
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    # The token travels in the environment, never on a command line `ps` shows.
    assert "--token" not in exec_start
    assert exec_start.startswith("/opt/edgebed/venv/bin/")  # install-agent.sh rewrites this
    if unit.name == "edgebed-device.service":
        assert "${EDGEBED_SERVER}" in exec_start and "${EDGEBED_NAME}" in exec_start
        assert "$EDGEBED_DEVICE_ARGS" in exec_start
        assert "backoff" in text  # why the agent's own reconnect still matters


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies(unit, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = unit.read_text()
    exe = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
    # verify insists that ExecStart exists: point it at a stand-in, as
    # install-agent.sh points it at the real venv.
    stand_in = tmp_path / Path(exe).name
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(text.replace(exe, str(stand_in)))
    result = run([analyze, "verify", copy])
    assert result.returncode == 0, result.stdout + result.stderr
    assert unit.name not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_install_agent_refuses_old_python(tmp_path):
    fake = tmp_path / "python3.6"
    fake.write_text("#!/bin/sh\necho 3.6.9\n")
    fake.chmod(0o755)
    result = run([BASH, INSTALL, "--python", fake, "--venv", tmp_path / "venv", "--dry-run"])
    assert result.returncode != 0
    assert "Python >= 3.8" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_install_agent_dry_run_pins_found_torch(tmp_path):
    result = run([BASH, INSTALL, "--python", sys.executable, "--venv", tmp_path / "venv",
                  "--dry-run"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "venv").exists(), "--dry-run created the venv"
    assert "--system-site-packages" in result.stdout
    try:
        import importlib.metadata as md
        torch_version: Optional[str] = md.version("torch")
    except Exception:
        torch_version = None
    if torch_version is not None:
        assert f"torch=={torch_version}" in result.stdout
        assert "install mode: constraints" in result.stdout or "install mode: no-deps" in result.stdout
    else:
        assert "install mode: normal" in result.stdout


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_fleet_rejects_bad_input_before_touching_anything():
    for args, message in ((["up"], "how many devices"),
                          (["up", "0"], "device index"),
                          (["up", "2", "--rate-up", "8mbps"], "bad rate"),
                          (["up", "2", "--delay", "ten"], "bad --delay"),
                          (["addr", "x"], "device index"),
                          (["frobnicate"], "unknown command")):
        result = fleet(*args)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    assert fleet("addr", "3").stdout.strip() == "10.213.3.1"
    assert fleet("addr", "3", "--device").stdout.strip() == "10.213.3.2"


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_fleet_needs_root():
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot try as an unprivileged user")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    result = run(prefix + [BASH, FLEET, "up", "1"])
    assert result.returncode != 0
    assert "must run as root" in result.stderr


# ------------------------------------------------------------------ real netns
def netns_unusable() -> Optional[str]:
    """Why the netns test cannot run here, or None."""
    if BASH is None:
        return "bash not installed"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' (iproute2) not installed"
    listing = run(["ip", "netns", "list"])
    if listing.returncode != 0:
        return f"'ip netns' unusable: {listing.stderr.strip()}"
    if fleet_namespaces():
        return f"a fleet is already up ({', '.join(fleet_namespaces())}); not touching it"
    probe = f"eb-probe-{os.getpid()}"
    made = run(["ip", "netns", "add", probe])
    if made.returncode != 0:
        return f"cannot create network namespaces here: {made.stderr.strip()}"
    run(["ip", "netns", "del", probe])
    return None


def wait_for(path: Path, pattern: str, procs, timeout_s: float = 45.0) -> "re.Match":
    """Poll a log file for ``pattern``; fail early if a process died."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = regex.search(text)
        if found:
            return found
        for proc, log in procs:
            if proc.poll() is not None:
                raise AssertionError(f"process {proc.args[2:]} exited with {proc.returncode}:\n"
                                     + log.read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for /{pattern}/ in {path.name}:\n"
                         + (path.read_text(errors="replace")[-3000:] if path.exists() else ""))


def sent_bytes(namespace: str, dev: str) -> int:
    out = run(["tc", "-s", "-n", namespace, "qdisc", "show", "dev", dev]).stdout
    return int(re.search(r"Sent (\d+) bytes", out).group(1))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.netns
def test_fleet_netns_end_to_end(tmp_path):
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    procs = []  # (Popen, log path)
    try:
        up = fleet("up", "2", "--rate-up", "8mbit", "--rate-down", "16mbit")
        assert up.returncode == 0, up.stderr
        again = fleet("up", "2", "--rate-up", "8mbit", "--rate-down", "16mbit")
        assert again.returncode == 0, again.stderr  # idempotent
        assert fleet_namespaces() == ["eb-dev1", "eb-dev2", "eb-srv"]

        for i in (1, 2):
            srv_ip = fleet("addr", str(i)).stdout.strip()
            assert srv_ip == f"10.213.{i}.1"
            srv_addr = run(["ip", "-n", "eb-srv", "-o", "addr", "show", "dev", f"eb-s{i}"]).stdout
            dev_addr = run(["ip", "-n", f"eb-dev{i}", "-o", "addr", "show", "dev", f"eb-d{i}"]).stdout
            assert f"{srv_ip}/30" in srv_addr
            assert f"10.213.{i}.2/30" in dev_addr
            up_q = run(["tc", "-n", f"eb-dev{i}", "qdisc", "show", "dev", f"eb-d{i}"]).stdout
            down_q = run(["tc", "-n", "eb-srv", "qdisc", "show", "dev", f"eb-s{i}"]).stdout
            assert "tbf" in up_q and "rate 8Mbit" in up_q, up_q
            assert "tbf" in down_q and "rate 16Mbit" in down_q, down_q
            assert up_q.count("qdisc") == 1 and down_q.count("qdisc") == 1  # replaced, not stacked
            lo = run(["ip", "-n", f"eb-dev{i}", "-o", "link", "show", "lo"]).stdout
            assert "UP" in lo
        status = fleet("status")
        assert status.returncode == 0 and "eb-dev2" in status.stdout and "tbf" in status.stdout

        # Device 2 has no route to device 1's subnet: each device sees only its link.
        probe = fleet("exec", "2", sys.executable, "-c",
                      "import socket; socket.create_connection(('10.213.1.1', 9), timeout=3)")
        assert probe.returncode != 0 and "unreachable" in probe.stderr.lower(), probe.stderr

        # A real server in eb-srv (the wildcard address exists only inside that
        # namespace) and a real agent in each device namespace.
        srv_out, srv_err = tmp_path / "server.out", tmp_path / "server.log"
        with open(srv_out, "w") as out, open(srv_err, "w") as err:
            server = subprocess.Popen(
                [BASH, str(FLEET), "srv-exec", sys.executable, "-m", "edgebed.server.cli",
                 "--listen", "0.0.0.0:0", "--insecure", "--log-level", "INFO"],
                stdout=out, stderr=err, cwd=tmp_path)
        procs.append((server, srv_err))
        port = int(wait_for(srv_out, r"edgebed-server listening on port (\d+)", procs).group(1))

        for i in (1, 2):
            log = tmp_path / f"dev{i}.log"
            with open(log, "w") as err:
                agent = subprocess.Popen(
                    [BASH, str(FLEET), "exec", str(i), sys.executable, "-m", "edgebed.device.cli",
                     "--server", f"10.213.{i}.1:{port}", "--name", f"dev{i}",
                     "--power-backend", "null", "--benchmark-s", "0.05", "--log-level", "INFO"],
                    stdout=err, stderr=subprocess.STDOUT, cwd=tmp_path)
            procs.append((agent, log))
        for i in (1, 2):
            wait_for(srv_err, rf"registered dev{i} \(", procs)
            wait_for(tmp_path / f"dev{i}.log", rf"dev{i}: registered with 10\.213\.{i}\.1:{port}", procs)
            # The registration really crossed this device's shaped veth, both ways.
            assert sent_bytes(f"eb-dev{i}", f"eb-d{i}") > 0
            assert sent_bytes("eb-srv", f"eb-s{i}") > 0

        for proc, _ in reversed(procs):
            stop(proc)
        assert server.returncode == 0, srv_err.read_text()[-2000:]

        down = fleet("down")
        assert down.returncode == 0, down.stderr
        assert fleet_namespaces() == []
        assert "nothing to remove" in fleet("down").stdout  # idempotent
        links = run(["ip", "-o", "link", "show"]).stdout
        assert not re.search(r"\beb-[sd]\d+\b", links), links
    finally:
        for proc, _ in reversed(procs):
            stop(proc)
        if fleet_namespaces():
            fleet("down")
    assert fleet_namespaces() == []


@contextlib.contextmanager
def standing_fleet(tmp_path: Path, devices: int, rate_up: str, rate_down: str):
    """A netns fleet with tc-shaped links, a standing server in eb-srv and an
    agent (no --link) in each device namespace; yields a function that runs
    an ``edgebed-bench`` command inside eb-srv against that server."""
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    procs = []
    try:
        up = fleet("up", str(devices), "--rate-up", rate_up, "--rate-down", rate_down)
        assert up.returncode == 0, up.stderr
        srv_out, srv_err = tmp_path / "server.out", tmp_path / "server.log"
        with open(srv_out, "w") as out, open(srv_err, "w") as err:
            server = subprocess.Popen(
                [BASH, str(FLEET), "srv-exec", sys.executable, "-m", "edgebed.server.cli",
                 "--listen", "0.0.0.0:0", "--insecure", "--state-dir", str(tmp_path / "state")],
                stdout=out, stderr=err, cwd=tmp_path)
        procs.append((server, srv_err))
        port = int(wait_for(srv_out, r"edgebed-server listening on port (\d+)", procs).group(1))
        for i in range(1, devices + 1):
            log = tmp_path / f"dev{i}.log"
            with open(log, "w") as err:
                agent = subprocess.Popen(
                    [BASH, str(FLEET), "exec", str(i), sys.executable, "-m", "edgebed.device.cli",
                     "--server", f"10.213.{i}.1:{port}", "--name", f"dev{i}",
                     "--power-backend", "utilization:rpi4b", "--benchmark-s", "0.1"],
                    stdout=err, stderr=subprocess.STDOUT, cwd=tmp_path,
                    env={**os.environ, "OMP_NUM_THREADS": "1"})
            procs.append((agent, log))
        for i in range(1, devices + 1):
            wait_for(srv_err, rf"registered dev{i} \(", procs)

        def bench(*args: str, timeout: float = 600) -> dict:
            done = run([BASH, FLEET, "srv-exec", sys.executable, "-m", "edgebed.benchmarks.cli",
                        *args, "--server", f"127.0.0.1:{port}", "--results",
                        str(tmp_path / "results")], timeout=timeout)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            run_dir = sorted((tmp_path / "results" / args[0]).iterdir())[-1]
            return json.loads((run_dir / "summary.json").read_text())

        yield bench
    finally:
        for proc, _ in reversed(procs):
            stop(proc)
        if fleet_namespaces():
            fleet("down", "--kill")


@pytest.mark.netns
def test_links_are_measured_through_tc_shaped_links(tmp_path):
    """Each device's measured capacity is within 10% of its tc rate, both ways."""
    with standing_fleet(tmp_path, 2, "8mbit", "16mbit") as bench:
        links = bench("links")["links"]
    assert set(links) == {"dev1", "dev2"}
    for link in links.values():
        assert link["up_capacity_bps"] == pytest.approx(8e6, rel=0.10)
        assert link["down_capacity_bps"] == pytest.approx(16e6, rel=0.10)
        assert link["provenance"] == "measured"


@pytest.mark.netns
@pytest.mark.slow
def test_tl_testbed_on_tc_shaped_links_keeps_its_prediction(tmp_path):
    """JUDBA never allocates more than a link carries, so its completion
    latency T holds: measured within 20% of predicted."""
    with standing_fleet(tmp_path, 4, "8mbit", "16mbit") as bench:
        summary = bench("tl-testbed", "--quick", timeout=900)
    for device, rates in summary["allocated"].items():
        assert rates["uplink_bps"] <= summary["links"][device]["up_capacity_bps"]
    assert summary["T_judba_s"] == pytest.approx(summary["T_pred_s"], rel=0.20)
