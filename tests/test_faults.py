"""Bad input and faults, each against a real server (and real agents)."""
import asyncio
import logging
import socket
import subprocess
import sys

import grpc
import pytest
import torch

from edgebed.testbed import AgentSpec, Fleet, ServerThread
from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS, auth_metadata
from edgebed.proto.codec import encode_transfer
from edgebed.proto.contracts import runtime as rt
from edgebed.proto.records import CapabilityProfile
from edgebed.server.core import ServerConfig
from edgebed.server.errors import DeviceDisconnected
from tests.helpers import wait_until


def _stub(address):
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return channel, edge_pb2_grpc.EdgeServiceStub(channel)


@pytest.fixture(scope="module")
def client(server):
    channel, stub = _stub(server.address)
    stub.Register(pb.RegisterRequest(name="prober", profile=CapabilityProfile().to_proto()))
    yield stub
    channel.close()


def _frames(key="bad", **tensors):
    return list(encode_transfer(tensors or {"x": torch.arange(1000, dtype=torch.float32)},
                                device_id="prober", key=key, chunk_bytes=1024))


def _upload_error(stub, frames):
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(iter(frames))
    return info.value


def _nothing_stored(server):
    assert not [slot for slot in server.server.inbox.pending() if slot[0] == "prober"]


def test_good_upload_is_stored(server, client):
    stats = client.Upload(iter(_frames(key="good")))
    assert stats.bytes == 4000 and stats.num_tensors == 1
    got = server.call(server.server.receive("prober", "good", 10))
    assert torch.equal(got.tensors["x"], torch.arange(1000, dtype=torch.float32))


def test_bytes_disagreeing_with_dtype_and_shape(server, client):
    frames = _frames()
    frames[0].tensor.shape[:] = [10, 10]  # 100 float32 need 400 bytes, 4000 are announced
    err = _upload_error(client, frames)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4000 bytes" in err.details() and "(10, 10)" in err.details()
    _nothing_stored(server)


def test_bad_crc32(server, client):
    frames = _frames()
    frames[0].tensor.crc32 ^= 0xFFFF
    err = _upload_error(client, frames)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "crc32" in err.details()
    _nothing_stored(server)


def test_unknown_dtype(server, client):
    frames = _frames()
    frames[0].tensor.dtype = "complex7"
    err = _upload_error(client, frames)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "complex7" in err.details()
    _nothing_stored(server)


def test_chunks_out_of_order(server, client):
    frames = _frames()
    frames[1], frames[2] = frames[2], frames[1]
    err = _upload_error(client, frames)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of order" in err.details()
    _nothing_stored(server)


def test_transfer_over_the_size_cap(server, client):
    frames = _frames(x=torch.zeros(17 * 1024 * 1024, dtype=torch.float32))  # 68 MiB > 64 MiB
    err = _upload_error(client, frames[:3])
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _nothing_stored(server)


def test_upload_from_an_unregistered_device(server, client):
    frames = list(encode_transfer({"x": torch.ones(3)}, device_id="stranger", key="k"))
    err = _upload_error(client, frames)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stranger" in err.details()


def test_download_of_something_never_offered(server, client):
    with pytest.raises(grpc.RpcError) as info:
        list(client.Download(pb.DownloadRequest(device_id="prober", key="nothing")))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_infer_runs_the_named_handler_and_rejects_unknown_ones(server, client):
    server.run(server.server.add_infer_handler, "double", lambda r: {"y": r.tensors["x"] * 2})
    frames = list(encode_transfer({"x": torch.arange(6.0)}, device_id="prober", key="i",
                                  meta={"handler": "double"}))
    replies = list(client.Infer(iter(frames)))
    assert replies[0].tensor.name == "y"
    bad = list(encode_transfer({"x": torch.ones(2)}, device_id="prober", key="i",
                               meta={"handler": "nope"}))
    with pytest.raises(grpc.RpcError) as info:
        list(client.Infer(iter(bad)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in info.value.details()
    assert "double" in info.value.details()
    server.run(server.server.remove_infer_handler, "double")


def test_a_bare_value_error_inside_the_server_is_internal_not_the_clients_fault(server, client):
    def broken(received):
        raise ValueError("a bug, not bad input")

    server.run(server.server.add_infer_handler, "broken", broken)
    try:
        frames = list(encode_transfer({"x": torch.ones(2)}, device_id="prober", key="b",
                                      meta={"handler": "broken"}))
        with pytest.raises(grpc.RpcError) as info:
            list(client.Infer(iter(frames)))
        assert info.value.code() == grpc.StatusCode.INTERNAL
    finally:
        server.run(server.server.remove_infer_handler, "broken")


def test_the_status_table_maps_the_most_specific_error_first():
    from edgebed.proto.errors import CodecError, TransferTooLarge
    from edgebed.server.errors import NotOffered, RequestError, ServerError, UploadTimeout
    from edgebed.server.servicer import status_for

    assert status_for(TransferTooLarge("big"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for(CodecError("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(RequestError("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(NotOffered("k"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(UploadTimeout("late"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(ServerError("state"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(ValueError("bug"))[0] == grpc.StatusCode.INTERNAL


# ---------------------------------------------------------------- tokens

@pytest.fixture(scope="module")
def guarded():
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", token="s3cret"))
    yield srv
    srv.stop()


@pytest.mark.parametrize("token", [None, "wrong"])
def test_missing_or_wrong_token_is_unauthenticated(guarded, token):
    channel, stub = _stub(guarded.address)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(pb.RegisterRequest(name="intruder"),
                          metadata=auth_metadata(token))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert guarded.server.registry.all() == []


def test_agent_with_wrong_token_stops_and_is_not_registered(guarded):
    proc = subprocess.run(
        [sys.executable, "-m", "edgebed.device.cli", "--server", guarded.address,
         "--name", "intruder", "--token", "wrong", "--power-backend", "null",
         "--benchmark-s", "0.01"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "rejected" in proc.stderr and "wrong token" in proc.stderr
    assert guarded.server.registry.all() == []


def test_agent_with_the_right_token_registers(guarded, tmp_path):
    with Fleet(guarded.address, [AgentSpec("friend", power_backend="null")], token="s3cret",
               log_dir=tmp_path, benchmark_s=0.01):
        guarded.call(guarded.server.wait_for_devices(1, 120))
        pong = guarded.call(guarded.server.call("friend", rt.PING, rt.PingIns(), 30))
        assert pong.name == "friend"


# ---------------------------------------------------------------- dying devices

def test_device_killed_mid_upload_is_discarded_and_others_go_on(server, tmp_path):
    fleet = Fleet(server.address, [AgentSpec("victim", power_backend="null"),
                                   AgentSpec("survivor", power_backend="null")],
                  log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        server.call(server.server.wait_for_devices(2, 120))
        wait_until(lambda: {"victim", "survivor"} <= set(server.server.device_names()), 120,
                   what="both agents")
        # 4 MiB at 2 Mbit/s takes ~17 s: plenty of time to kill it mid-way.
        upload = server.server.call("victim", rt.UPLOAD, rt.UploadIns(
            run_id="t", key="doomed", size_bytes=4 * 1024 * 1024, uplink_bps=2e6), 120)
        pending = asyncio.run_coroutine_threadsafe(upload, server.loop)
        wait_until(lambda: server.server.transfers_in_flight > 0, 30, what="the upload to start")
        fleet.kill("victim")
        with pytest.raises(DeviceDisconnected):
            pending.result(30)
        wait_until(lambda: not server.server.registry.get("victim").connected, 30,
                   what="the victim to be noticed")
        assert ("victim", "doomed") not in server.server.inbox.pending()
        result = server.call(server.server.call("survivor", rt.UPLOAD, rt.UploadIns(
            run_id="t", key="fine", size_bytes=4096, uplink_bps=0.0), 60))
        got = server.call(server.server.receive("survivor", "fine", 30))
        assert got.stats.bytes == result.bytes == 4096
    finally:
        fleet.stop()


def test_a_stopped_agent_leaves_and_a_killed_one_vanishes(server, tmp_path, caplog):
    """SIGTERM: the agent says it is stopping and the server logs a departure (INFO);
    SIGKILL: no goodbye, so a warning of a device that vanished."""
    names = ("leaver", "vanisher")
    fleet = Fleet(server.address, [AgentSpec(n, power_backend="null") for n in names],
                  log_dir=tmp_path, benchmark_s=0.01).start()
    registry = server.server.registry
    try:
        wait_until(lambda: set(names) <= set(server.server.device_names()), 120, what="both agents")
        with caplog.at_level(logging.INFO, logger="edgebed.server.registry"):
            fleet.procs["leaver"].terminate()
            assert fleet.procs["leaver"].wait(30) == 0
            fleet.kill("vanisher")
            wait_until(lambda: not any(registry.get(n).connected for n in names), 30,
                       what="both to be gone")
        said = {r.getMessage().split(" ")[0]: r for r in caplog.records
                if " disconnected: " in r.getMessage()}
        assert said["leaver"].levelno == logging.INFO
        assert "the agent left (stop requested)" in said["leaver"].getMessage()
        assert said["vanisher"].levelno == logging.WARNING
    finally:
        fleet.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agents_reconnect_and_reregister_after_a_server_restart(tmp_path):
    port = _free_port()
    config = ServerConfig(listen=f"127.0.0.1:{port}")
    first = ServerThread(config)
    fleet = Fleet(first.address, [AgentSpec("phoenix", power_backend="null")],
                  log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        first.call(first.server.wait_for_devices(1, 120))
        first.stop()
        second = ServerThread(config)
        try:
            second.call(second.server.wait_for_devices(1, 120))
            pong = second.call(second.server.call("phoenix", rt.PING, rt.PingIns(), 30))
            assert pong.name == "phoenix"
        finally:
            second.stop()
    finally:
        fleet.stop()
