"""edgebed-server as users run it: a process boards stay attached to, which
runs what clients submit, survives being killed, and runs the next run."""
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from edgebed.benchmarks import cli
from edgebed.benchmarks.tl_testbed import PRESETS as TL_PRESETS
from edgebed.proto import control_pb2 as cpb
from edgebed.proto import control_pb2_grpc
from edgebed.proto.contracts.base import to_args
from edgebed.testbed import AgentSpec, Fleet
from tests.helpers import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, state: Path, log: Path) -> subprocess.Popen:
    out = open(log, "a")
    proc = subprocess.Popen([sys.executable, "-m", "edgebed.server.cli", "--listen",
                             f"127.0.0.1:{port}", "--state-dir", str(state)],
                            stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: "listening on port" in log.read_text() or proc.poll() is not None, 60,
               what="the server to listen")
    assert proc.poll() is None, log.read_text()[-2000:]
    return proc


def stub_for(port: int):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, control_pb2_grpc.ControlStub(channel)


def attached(stub, names) -> bool:
    try:
        fleet = stub.Fleet(cpb.FleetRequest(), timeout=5).devices
    except grpc.RpcError:
        return False
    return {d.name for d in fleet if d.state == "idle"} >= set(names)


def run_state(stub, run_id):
    return next(r for r in stub.ListRuns(cpb.ListRunsRequest()).runs if r.run_id == run_id)


def test_a_server_killed_mid_run_fails_the_run_keeps_its_files_and_runs_the_next(tmp_path):
    port, state, log = _free_port(), tmp_path / "state", tmp_path / "server.log"
    names = ["kill-a", "kill-b"]
    server = start_server(port, state, log)
    fleet = Fleet(f"127.0.0.1:{port}", [AgentSpec(n, power_backend="null") for n in names],
                  log_dir=tmp_path / "agents", benchmark_s=0.05).start()
    channel, stub = stub_for(port)
    try:
        wait_until(lambda: attached(stub, names), 120, what="the agents")
        run = stub.Submit(cpb.SubmitRequest(suite="tl-testbed",
                                            options_json=json.dumps(to_args(TL_PRESETS.quick))))
        run_dir = state / "runs" / "tl-testbed" / run.run_id
        wait_until(lambda: run_state(stub, run.run_id).state == "running", 60, what="running")
        # Killed once the devices have trained their autoencoders (their spans are in).
        wait_until(lambda: "ae_train" in (run_dir / "events.jsonl").read_text()
                   if (run_dir / "events.jsonl").exists() else False, 120,
                   what="the devices to train their autoencoders")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)

        server = start_server(port, state, log)
        wait_until(lambda: attached(stub, names), 120, what="the agents to re-register")
        failed = run_state(stub, run.run_id)
        assert failed.state == "failed"
        assert "server stopped while the run was running" in failed.error
        assert (run_dir / "config.json").exists()
        assert "tl-testbed on kill-a, kill-b" in (run_dir / "log.txt").read_text()
        assert (run_dir / "events.jsonl").read_text().strip()  # spans up to the kill

        after = stub.Submit(cpb.SubmitRequest(suite="links"))
        for event in stub.Watch(cpb.WatchRequest(run_id=after.run_id), timeout=120):
            if event.WhichOneof("body") == "state":
                last = event.state
        assert last.state == "done", last.error
    finally:
        channel.close()
        fleet.stop()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)


@pytest.mark.slow
def test_every_testbed_suite_runs_on_the_same_attached_agents(tmp_path):
    """The issue's done-when: one server process, agent processes with no
    --link (four boards and one labelled the placement workload's cloud store),
    and quickstart, tl-testbed, split-testbed, feel-train and placement-testbed
    (each --quick) submitted one after another; each writes results like a
    local run."""
    port, state, log = _free_port(), tmp_path / "state", tmp_path / "server.log"
    names = [f"board-{i}" for i in range(4)] + ["store"]
    server = start_server(port, state, log)
    fleet = Fleet(f"127.0.0.1:{port}", [
        AgentSpec(n, power_backend="utilization:rpi4b",
                  extra_args=("--label", "role=cloud") if n == "store" else ())
        for n in names], log_dir=tmp_path / "agents", benchmark_s=0.2).start()
    channel, stub = stub_for(port)
    pids = {}
    try:
        wait_until(lambda: attached(stub, names), 120, what="the agents")
        pids = {n: p.pid for n, p in fleet.procs.items()}
        for suite in ("quickstart", "tl-testbed", "split-testbed", "feel-train",
                      "placement-testbed"):
            results = tmp_path / "results"
            rc = cli.main([suite, "--quick", "--server", f"127.0.0.1:{port}",
                           "--results", str(results)])
            assert rc == 0, suite
            run_dir = next((results / suite).iterdir())
            summary = json.loads((run_dir / "summary.json").read_text())
            assert set(summary["links"]) == set(names)
            assert (run_dir / "events.jsonl").exists()
            for device, rates in summary.get("allocated", {}).items():
                capacity = summary["links"][device]
                assert rates["uplink_bps"] is None or \
                    rates["uplink_bps"] <= capacity["up_capacity_bps"] or rates["uplink_bps"] == 0
        assert {n: p.pid for n, p in fleet.procs.items()} == pids  # never restarted
        assert all(p.poll() is None for p in fleet.procs.values())
    finally:
        channel.close()
        fleet.stop()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
