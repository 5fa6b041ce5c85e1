"""The runtime against a real server and real agent processes on loopback."""
import torch

from edgebed.device.workloads.runtime import tensor_checksum
from edgebed.proto.records import LinkProfile
from edgebed.server.errors import CommandFailed, UnknownDevice
from tests.conftest import wait_until

import pytest


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


def test_command_round_trip_and_broadcast(server, two_agents):
    assert server.call(server.server.command("alpha", "ping", {}, 30))["name"] == "alpha"
    results = server.call(server.server.broadcast(["alpha", "beta"], "ping", {}, 30))
    assert {name: r["name"] for name, r in results.items()} == {"alpha": "alpha", "beta": "beta"}


def test_unknown_command_fails_with_the_devices_reason(server, two_agents):
    with pytest.raises(CommandFailed) as info:
        server.call(server.server.command("alpha", "no-such-thing", {}, 30))
    assert info.value.error_type == "UnknownCommand"
    assert "no-such-thing" in str(info.value)


def test_unknown_device_is_named(server, two_agents):
    with pytest.raises(UnknownDevice, match="gamma"):
        server.call(server.server.command("gamma", "ping", {}, 5))


def test_tensors_move_both_ways_intact(server, two_agents):
    up = server.call(server.server.command(
        "alpha", "upload_synthetic", {"size_bytes": 3 * 1024 * 1024 + 4, "key": "t/up",
                                      "seed": 7}, 60))
    received = server.call(server.server.receive("alpha", "t/up", 30))
    assert received.stats.bytes == up["bytes"] == 3 * 1024 * 1024 + 4
    assert tensor_checksum(received.tensors["x"]) == up["checksum"]
    assert up["seconds"] > 0 and up["rate_bps"] > 0

    payload = {"w": torch.arange(300000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.int64)}
    server.run(server.server.offer, "t/down", payload)
    down = server.call(server.server.command("beta", "download", {"key": "t/down"}, 60))
    assert down["checksums"] == {k: tensor_checksum(v) for k, v in payload.items()}
    assert down["bytes"] == 300000 * 4 + 3 * 8


def test_set_link_changes_the_agents_default_rate(server, two_agents):
    server.run(server.server.set_link, "alpha", LinkProfile(uplink_bps=40e6, downlink_bps=80e6))
    try:
        result = server.call(server.server.command(
            "alpha", "upload_synthetic", {"size_bytes": 64 * 1024, "key": "t/link"}, 60))
        assert result["set_rate_bps"] == 40e6
        server.call(server.server.receive("alpha", "t/link", 30))
    finally:
        server.run(server.server.set_link, "alpha", LinkProfile())


def test_spans_reach_the_server_with_provenance(server, two_agents):
    spans = []
    server.run(server.server.add_span_sink, spans.append)
    server.call(server.server.command("alpha", "compute", {"n": 64, "iterations": 5,
                                                           "run_id": "r1"}, 60))
    span = wait_until(lambda: next((s for s in spans if s.phase == "compute"
                                    and s.device == "alpha"), None), 10, what="compute span")
    assert span.run_id == "r1"
    assert span.provenance == "estimated"  # the utilization model is an estimate
    assert span.power_backend == "utilization"
    assert span.end_s > span.start_s
