"""The runtime against a real server and real agent processes on loopback."""
import torch

import pytest

from edgebed.device.workloads.runtime import tensor_checksum
from edgebed.proto.contracts import runtime as rt
from edgebed.server.errors import CommandFailed, UnknownDevice
from tests.helpers import wait_until


def test_registration_carries_a_probed_profile(server, two_agents):
    profile = server.server.profile("alpha")
    assert profile.cpu_cores >= 1
    assert profile.ram_bytes > 0
    assert profile.matmul_gflops > 0 and profile.conv_gflops > 0
    assert profile.torch_version == torch.__version__
    assert profile.power_backend == "utilization"
    assert server.server.profile("beta").power_backend == "null"
    assert server.server.device_names() == ["alpha", "beta"]


def test_heartbeats_keep_the_session_fresh(server, two_agents):
    session = server.server.registry.session("alpha")
    first = session.last_heartbeat
    wait_until(lambda: session.last_heartbeat > first, 10, what="a heartbeat")


def test_typed_command_round_trip(server, two_agents):
    for name in ("alpha", "beta"):
        pong = server.call(server.server.call(name, rt.PING, rt.PingIns(), 30))
        assert isinstance(pong, rt.PingRes) and pong.name == name


@pytest.mark.parametrize("args, words", [
    # the allocated rate is missing: never a guessed default
    ({"run_id": "r", "key": "k", "size_bytes": 64}, ["missing", "'uplink_bps'", "runtime.upload"]),
    # a misspelt rate is refused, not ignored
    ({"run_id": "r", "key": "k", "size_bytes": 64, "rate_bps": 1e6, "uplink_bps": 1e6},
     ["unknown", "'rate_bps'", "runtime.upload"]),
    ({"run_id": "r", "key": "k", "size_bytes": "big", "uplink_bps": 1e6},
     ["size_bytes", "integer"]),
])
def test_a_command_off_its_contract_fails_naming_the_key(server, two_agents, args, words):
    with pytest.raises(CommandFailed) as info:
        server.call(server.server.command("alpha", rt.UPLOAD.kind, args, 30))
    assert info.value.error_type == "ContractError"
    for word in words:
        assert word in str(info.value)
    assert not server.server.inbox.pending()  # nothing ran


def test_unknown_command_fails_with_the_devices_reason(server, two_agents):
    with pytest.raises(CommandFailed) as info:
        server.call(server.server.command("alpha", "no-such-thing", {}, 30))
    assert info.value.error_type == "UnknownCommand"
    assert "no-such-thing" in str(info.value)


def test_unknown_device_is_named(server, two_agents):
    with pytest.raises(UnknownDevice, match="gamma"):
        server.call(server.server.call("gamma", rt.PING, rt.PingIns(), 5))


def test_tensors_move_both_ways_intact(server, two_agents):
    up = server.call(server.server.call("alpha", rt.UPLOAD, rt.UploadIns(
        run_id="t", key="t/up", size_bytes=3 * 1024 * 1024 + 4, uplink_bps=0.0, seed=7), 60))
    received = server.call(server.server.receive("alpha", "t/up", 30))
    assert received.stats.bytes == up.bytes == 3 * 1024 * 1024 + 4
    assert tensor_checksum(received.tensors["x"]) == up.checksum
    assert up.seconds > 0
    assert up.rate_bps > 0

    payload = {"w": torch.arange(300000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.int64)}
    server.run(server.server.offer, "t/down", payload)
    down = server.call(server.server.call("beta", rt.DOWNLOAD, rt.DownloadIns(
        run_id="t", key="t/down"), 60))
    assert down.checksums == {k: tensor_checksum(v) for k, v in payload.items()}
    assert down.bytes == 300000 * 4 + 3 * 8


def test_spans_reach_the_server_with_provenance(server, two_agents):
    spans = []
    server.run(server.server.add_span_sink, spans.append)
    server.call(server.server.call("alpha", rt.COMPUTE, rt.ComputeIns(
        run_id="r1", n=64, iterations=5), 60))
    span = wait_until(lambda: next((s for s in spans if s.phase == "compute"
                                    and s.device == "alpha"), None), 10, what="compute span")
    assert span.run_id == "r1"
    assert span.provenance == "estimated"  # the utilization model is an estimate
    assert span.power_backend == "utilization"
    assert span.end_s > span.start_s
