"""The server as users run it: a process, health checks, TLS, clean shutdown."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgebed.proto.contracts import runtime as rt
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from edgebed.server.core import ServerConfig
from tests.helpers import wait_until


def _start_server(*args):
    proc = subprocess.Popen([sys.executable, "-m", "edgebed.server.cli", "--listen",
                             "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"listening on port (\d+)", line)
    assert match, f"no port announced: {line!r} {proc.stderr.read() if proc.poll() else ''}"
    return proc, f"127.0.0.1:{match.group(1)}"


def _collect(stream, lines):
    for line in stream:
        lines.append(line)


def test_server_process_serves_health_and_stops_cleanly_on_sigterm(tmp_path):
    proc, address = _start_server("--events", str(tmp_path / "events.jsonl"))
    log = []
    threading.Thread(target=_collect, args=(proc.stderr, log), daemon=True).start()
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "edgebed.v1.EdgeService"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with Fleet(address, [AgentSpec("spanner", power_backend="null")], log_dir=tmp_path,
                   benchmark_s=0.01):
            wait_until(lambda: any("registered spanner" in line for line in log), 120,
                       what="the agent to register")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    wait_until(lambda: any("edge server stopped" in line for line in log), 10,
               what="the shutdown log line")


def test_bad_server_arguments_are_named():
    proc = subprocess.run([sys.executable, "-m", "edgebed.server.cli", "--tls-cert", "a.pem"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--tls-cert and --tls-key must be given together" in proc.stderr


def test_agent_refuses_a_malformed_server_address():
    proc = subprocess.run([sys.executable, "-m", "edgebed.device.cli", "--server", "nohost",
                           "--name", "x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "HOST:PORT" in proc.stderr


@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_tls_server_and_agent(certificate, tmp_path):
    cert, key = certificate
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", tls_cert=cert, tls_key=key))
    address = f"localhost:{srv.port}"
    try:
        spec = AgentSpec("secure", power_backend="null", extra_args=("--tls-ca", cert))
        with Fleet(address, [spec], log_dir=tmp_path, benchmark_s=0.01):
            srv.call(srv.server.wait_for_devices(1, 120))
            assert srv.call(srv.server.call("secure", rt.PING, rt.PingIns(), 30)).name == "secure"
        # A plaintext client cannot talk to the TLS port.
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    finally:
        srv.stop()


def test_a_hung_device_is_expired_and_comes_back(server, tmp_path):
    """SIGSTOP freezes an agent (heartbeats stop); the server notices, and
    after SIGCONT the agent reconnects by itself."""
    fleet = Fleet(server.address, [AgentSpec("sleeper", power_backend="null")],
                  log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        wait_until(lambda: "sleeper" in server.server.device_names(), 120, what="registration")
        os.kill(fleet.procs["sleeper"].pid, signal.SIGSTOP)
        wait_until(lambda: "sleeper" not in server.server.device_names(), 60,
                   what="the hung device to be expired")
        reason = server.server.registry.get("sleeper").disconnect_reason
        assert "no heartbeat" in reason
        os.kill(fleet.procs["sleeper"].pid, signal.SIGCONT)
        wait_until(lambda: "sleeper" in server.server.device_names(), 120, what="reconnection")
        assert server.call(server.server.call("sleeper", rt.PING, rt.PingIns(), 30)).name == "sleeper"
    finally:
        fleet.stop()
