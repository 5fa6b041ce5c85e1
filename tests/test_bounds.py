"""No input can crash, stall, exhaust or silently lose data on the server:
each attack of the issue, tried as an attacker would, with raw gRPC calls."""
import logging
import math
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import psutil
import pytest
import torch

from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS
from edgebed.proto.codec import encode_transfer
from edgebed.proto.quantize import QuantSpec
from edgebed.proto.records import CapabilityProfile
from edgebed.server.core import ServerConfig
from edgebed.testbed import ServerThread
from tests.helpers import wait_until

MIB = 1024 * 1024
SERVICE = "/edgebed.v1.EdgeService/"


@pytest.fixture(scope="module")
def bounded():
    srv = ServerThread(ServerConfig(
        listen="127.0.0.1:0", max_transfer_bytes=MIB, max_transfers_per_device=2,
        stream_idle_s=1.0, session_open_s=1.0, max_wait_s=2.0, retain_s=60.0))
    channel = grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS)
    stub = edge_pb2_grpc.EdgeServiceStub(channel)
    stub.Register(pb.RegisterRequest(name="attacker", profile=CapabilityProfile().to_proto()))
    yield srv, channel, stub
    channel.close()
    srv.stop()


def _error(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_quantized_amplification_counts_its_decoded_size(bounded):
    """1-bit levels of float64 tensors decode to 64 times their wire size:
    three uploads of 1 MiB-cap-sized wire payloads used to hold 199 MB."""
    srv, _, stub = bounded
    x = torch.randn(4 * MIB // 8 * 2, dtype=torch.float64)  # 64 KiB on the wire at 1 bit
    frames = encode_transfer({"x": x}, device_id="attacker", key="amp",
                             quant=QuantSpec("uniform", 1))
    err = _error(lambda: stub.Upload(frames))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "decodes to" in err.details()
    assert not srv.server.inbox.pending()


def test_many_tensors_and_long_names_count_against_the_cap(bounded):
    """200 zero-byte tensors with 256 KiB names used to hold 117 MB."""
    _, _, stub = bounded
    err = _error(lambda: stub.Upload(encode_transfer(
        {f"{i:03d}" + "n" * (256 * 1024): torch.zeros(0) for i in range(3)},
        device_id="attacker", key="names")))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = _error(lambda: stub.Upload(encode_transfer(
        {f"t{i}": torch.zeros(0) for i in range(2000)}, device_id="attacker", key="many")))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "metadata" in err.details()


def test_a_slow_loris_upload_is_ended_by_its_idle_deadline(bounded):
    _, _, stub = bounded
    frames = list(encode_transfer({"x": torch.zeros(150_000)}, device_id="attacker", key="slow",
                                  chunk_bytes=256 * 1024))

    def dribble():
        yield frames[0]
        time.sleep(30)  # never sends the rest
        yield from frames[1:]

    started = time.monotonic()
    err = _error(lambda: stub.Upload(dribble(), timeout=60))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent nothing" in err.details()
    assert time.monotonic() - started < 20  # ended by the server, not by the client


def test_a_session_that_never_opens_is_closed(bounded):
    _, _, stub = bounded

    def silent():
        time.sleep(30)
        yield pb.DeviceMessage()

    err = _error(lambda: list(stub.Session(silent(), timeout=60)))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "must open within" in err.details()


def test_concurrent_transfers_per_device_are_limited(bounded):
    srv, _, stub = bounded
    frames = list(encode_transfer({"x": torch.zeros(150_000)}, device_id="attacker", key="c",
                                  chunk_bytes=64 * 1024))
    release = threading.Event()

    def held(i):
        def gen():
            yield frames[0]
            release.wait(10)
        try:
            stub.Upload(gen(), timeout=30)
        except grpc.RpcError:
            pass

    threads = [threading.Thread(target=held, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: srv.server.transfers_by_device.get("attacker") == 2, 10,
                   what="two transfers open")
        err = _error(lambda: stub.Upload(iter(frames[:1] * 1), timeout=10))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already has 2 transfers open" in err.details()
    finally:
        release.set()
        for t in threads:
            t.join()


@pytest.mark.parametrize("wait_s", [math.inf, math.nan, -1.0])
def test_download_wait_is_validated(bounded, wait_s):
    _, _, stub = bounded
    err = _error(lambda: list(stub.Download(pb.DownloadRequest(device_id="attacker", key="k",
                                                               wait_s=wait_s))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "wait_s" in err.details()


def test_download_wait_is_capped(bounded):
    _, _, stub = bounded
    started = time.monotonic()
    err = _error(lambda: list(stub.Download(pb.DownloadRequest(device_id="attacker", key="k",
                                                               wait_s=1e6), timeout=60)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert time.monotonic() - started < 30  # max_wait_s = 2, not a million


def test_the_same_upload_twice_is_refused_while_the_first_waits(bounded):
    srv, _, stub = bounded
    stub.Upload(encode_transfer({"x": torch.ones(3)}, device_id="attacker", key="twice"))
    err = _error(lambda: stub.Upload(encode_transfer({"x": torch.zeros(3)},
                                                     device_id="attacker", key="twice")))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    got = srv.call(srv.server.receive("attacker", "twice", 5))
    assert torch.equal(got.tensors["x"], torch.ones(3))  # the acknowledged one, untouched


def test_an_uncollected_upload_is_dropped_with_a_log_line(bounded, caplog):
    srv, _, stub = bounded
    stub.Upload(encode_transfer({"x": torch.ones(3)}, device_id="attacker", key="run-9/late"))
    with caplog.at_level(logging.WARNING, logger="edgebed.server.transfers"):
        srv.run(srv.server.forget, "run-9/")
    assert any("dropped attacker's upload run-9/late" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("method, kind", [
    ("Register", "unary_unary"), ("Download", "unary_stream"), ("Session", "stream_stream"),
    ("Upload", "stream_unary"), ("Infer", "stream_stream")])
def test_garbage_bytes_are_invalid_argument_without_a_traceback(bounded, caplog, method, kind):
    _, channel, _ = bounded
    call = getattr(channel, kind)(SERVICE + method)  # raw bytes both ways
    garbage = b"\xff\xfe\x07garbage\x00\x01" * 3
    request = garbage if kind.startswith("unary") else iter([garbage])
    with caplog.at_level(logging.DEBUG, logger="edgebed.server"):
        err = _error(lambda: list(call(request)) if kind.endswith("stream") else call(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_hostile_strings_reach_the_log_escaped_and_short(bounded, caplog):
    _, _, stub = bounded
    forged = "cpu\nINFO edgebed.server: forged line"
    with caplog.at_level(logging.INFO, logger="edgebed.server.registry"):
        stub.Register(pb.RegisterRequest(name="hostile", profile=CapabilityProfile(
            cpu_model=forged).to_proto()))
        stub.Register(pb.RegisterRequest(name="huge", profile=CapabilityProfile(
            cpu_model="x" * (4 * MIB)).to_proto()))
    lines = [r.getMessage() for r in caplog.records if "registered" in r.getMessage()]
    assert any("cpu\\nINFO" in line for line in lines)
    assert all("\n" not in line and len(line) < 500 for line in lines)


def test_a_replaced_session_ends_with_a_status_and_its_reason(bounded):
    srv, _, stub = bounded
    reply = stub.Register(pb.RegisterRequest(name="flaky", profile=CapabilityProfile().to_proto()))
    opened = threading.Event()

    def messages():
        yield pb.DeviceMessage(open=pb.SessionOpen(device_id="flaky", session_key=reply.session_key))
        opened.set()
        time.sleep(30)

    errors = []

    def run():
        try:
            list(stub.Session(messages(), timeout=60))
        except grpc.RpcError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    opened.wait(10)
    wait_until(lambda: srv.server.registry.get("flaky").connected, 10, what="the session")
    srv.run(lambda: srv.server.registry.detach(srv.server.registry.session("flaky"),
                                               "replaced by a new session"))
    thread.join(30)
    assert errors and errors[0].code() == grpc.StatusCode.ABORTED
    assert "replaced by a new session" in errors[0].details()


# ---------------------------------------------------------------- retained memory

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_memory_returns_after_ten_thousand_uploads_nobody_collects(tmp_path):
    """10,000 tiny uploads to a finished run (nobody will collect them): the
    server forgets them after --retain-s, and its resident memory comes back
    to within 20 MB of where it started."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edgebed.server.cli", "--listen",
                             f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"),
                             "--http-listen", "none", "--retain-s", "3", "--log-level", "ERROR"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        stub = edge_pb2_grpc.EdgeServiceStub(channel)
        wait_until(lambda: _ready(stub), 60, what="the server")
        # The device stays attached (a registration that never opens a session
        # is itself forgotten after --retain-s).
        stop = threading.Event()
        attached = threading.Thread(target=_attached, args=(stub, stop), daemon=True)
        attached.start()
        server = psutil.Process(proc.pid)
        tensor = torch.arange(16, dtype=torch.float32)
        warm = [encode_transfer({"x": tensor}, device_id="flood", key=f"warm/{i}")
                for i in range(200)]
        for frames in warm:
            stub.Upload(frames)
        time.sleep(5)  # longer than --retain-s plus a sweep: the warm-up is forgotten
        before = server.memory_info().rss
        failures = []
        workers = [threading.Thread(target=_flood, args=(stub, w, 2500, tensor, failures))
                   for w in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not failures, failures[:3]  # every upload of the flood was stored
        grown = server.memory_info().rss
        wait_until(lambda: server.memory_info().rss - before < 20 * MIB, 60,
                   what="the uploads to be forgotten and the memory to come back")
        stop.set()
        attached.join(30)
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert grown >= before  # the flood really was held for a while
    assert "dropped flood's upload" not in (tmp_path / "server.log").read_text()  # ERROR level only


def _ready(stub) -> bool:
    try:
        stub.Register(pb.RegisterRequest(name="flood", profile=CapabilityProfile().to_proto()),
                      timeout=2)
        return True
    except grpc.RpcError:
        return False



def _attached(stub, stop: threading.Event) -> None:
    """The flood device's session, heartbeating until ``stop``."""
    reply = stub.Register(pb.RegisterRequest(name="flood", profile=CapabilityProfile().to_proto()),
                          timeout=10)

    def messages():
        yield pb.DeviceMessage(open=pb.SessionOpen(device_id="flood", session_key=reply.session_key))
        seq = 0
        while not stop.wait(0.5):
            seq += 1
            yield pb.DeviceMessage(heartbeat=pb.Heartbeat(seq=seq))

    try:
        for _ in stub.Session(messages()):
            pass
    except grpc.RpcError:  # ABORTED: closed by the device, as it should end
        pass


def _flood(stub, worker: int, count: int, tensor, failures: list) -> None:
    try:
        for i in range(count):
            stub.Upload(encode_transfer({"x": tensor}, device_id="flood",
                                        key=f"finished-run/{worker}/{i}"))
    except grpc.RpcError as exc:
        failures.append(f"{exc.code().name}: {exc.details()}")
