"""Fuzzing every RPC of a standing server (issue 12, part 7).

A seeded generator sends raw bytes (identity serializers) to every
device-facing RPC (Register, Session, Upload, Download, Infer) and every
Control RPC (Submit, ListRuns, Watch, Cancel, Fetch, Fleet): random bytes,
real messages mutated field by field (interesting values: NaN, inf, extreme
integers, empty, long and hostile strings), their serialized bytes flipped,
truncated and extended, transfer streams whose frames come from
``encode_transfer`` with one frame mutated, dropped, repeated or swapped,
sessions opened with garbage, wrong keys or a non-open first message, and
mutated call metadata. Streams carry many messages where the RPC allows
(a transfer of many small frames, several transfers per Infer stream, a
session of hundreds of messages), which is how 10,000 messages fit in well
under a minute on a loaded two-core host.

Throughout: the server stays up and answers every malformed input with a
client's status (``ALLOWED``), never UNKNOWN or INTERNAL; the server logs no
ERROR and no traceback; and a well-behaved agent process keeps the same
session from start to end and answers a typed ping.

``EDGEBED_FUZZ_SEED`` picks another seed; a failure names the seed and the
first offending cases.
"""
import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from typing import Callable, Dict, List, Sequence, Tuple

import grpc
import pytest
import torch
from google.protobuf.descriptor import FieldDescriptor as FD
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgebed.proto import control_pb2 as cpb
from edgebed.proto import edge_pb2 as pb
from edgebed.proto.channel import AUTH_HEADER, CHANNEL_OPTIONS, DEVICE_HEADER
from edgebed.proto.codec import encode_transfer
from edgebed.proto.contracts import runtime as rt
from edgebed.proto.quantize import QuantSpec
from edgebed.proto.records import MIN_RATE_BPS, CapabilityProfile, LinkProfile
from edgebed.proto.wire import SERVICE as EDGE
from edgebed.server.config import ServerConfig
from edgebed.server.control.plane import runnable_suites
from edgebed.server.control.service import SERVICE as CONTROL
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from tests.helpers import wait_until

SEED = int(os.environ.get("EDGEBED_FUZZ_SEED", "20240612"))
S = grpc.StatusCode

#: What a malformed input may be answered with. FAILED_PRECONDITION is the
#: server's answer to a request that needs a registration first (an upload
#: from an unregistered device, a stale or wrong session key): the agent
#: registers again on it, where UNAUTHENTICATED would stop it for good.
ALLOWED = frozenset({S.OK, S.INVALID_ARGUMENT, S.UNAUTHENTICATED, S.PERMISSION_DENIED,
                     S.NOT_FOUND, S.RESOURCE_EXHAUSTED, S.DEADLINE_EXCEEDED, S.ALREADY_EXISTS,
                     S.FAILED_PRECONDITION})
#: A Session that opened ends with ABORTED and the server's reason (closed by
#: the device, or broken by what it sent): its documented end, not an answer.
SESSION_ENDED = frozenset({S.ABORTED})

STEADY = "fz-steady"          # the well-behaved agent
DEVICES = [f"fz-dev-{i}" for i in range(4)]  # registered, never attached: uploads' senders
PARKED = "fz-parked"          # registered, never attached: holds the queued runs
NOBODY = "fz-nobody"          # never registered: every fuzzed Submit names it
OFFER = "fz/offer"            # a key anyone may download
ECHO = "fz-echo"              # an Infer handler that returns what it got

MAX_WAIT_S = 0.05             # a Download waits at most this for its offer
SESSION_OPEN_S = 0.5

INTERESTING_TEXT = ["", " ", "a b", "\n", "\r\nforged: line", "\x00", "\x7f", "../../etc/passwd",
                    "é" * 40, "名前", "\u202e", "x" * 200, "y" * 1500, STEADY, NOBODY, PARKED,
                    OFFER, ECHO, "handler", "run_id", "{}", "[", "null", "NaN"]
INTERESTING_FLOAT = [math.nan, math.inf, -math.inf, -0.0, 0.0, -1.0, 1.0, 1e308, -1e308,
                     5e-324, 1e-300, 2.0 ** 63, 0.5]
INT_RANGES = {
    "int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1),
    "uint32": (0, 2 ** 32 - 1), "uint64": (0, 2 ** 64 - 1),
}
CPP_INT = {FD.CPPTYPE_INT32: "int32", FD.CPPTYPE_INT64: "int64", FD.CPPTYPE_UINT32: "uint32",
           FD.CPPTYPE_UINT64: "uint64"}


# ---------------------------------------------------------------- values

def _text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(INTERESTING_TEXT)
    if roll < 0.8:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_./=,")
                       for _ in range(rng.randint(1, 24)))
    # any code point but surrogates (protobuf strings are UTF-8)
    return "".join(chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                   for _ in range(rng.randint(1, 12)))


def _int(rng: random.Random, kind: str) -> int:
    low, high = INT_RANGES[kind]
    return rng.choice([0, 1, -1 if low < 0 else 2, low, high, high // 2 + 1,
                       rng.randint(low, high), rng.randint(-1000 if low < 0 else 0, 1000)])


def _float(rng: random.Random) -> float:
    return rng.choice(INTERESTING_FLOAT) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)


def _bytes(rng: random.Random, most: int = 64) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, most)))


def _scalar(rng: random.Random, field):
    cpp = field.cpp_type
    if cpp in CPP_INT:
        return _int(rng, CPP_INT[cpp])
    if cpp in (FD.CPPTYPE_DOUBLE, FD.CPPTYPE_FLOAT):
        return _float(rng)
    if cpp == FD.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if cpp == FD.CPPTYPE_ENUM:
        return rng.choice(field.enum_type.values).number
    if field.type == FD.TYPE_BYTES:
        return _bytes(rng)
    return _text(rng)


def mutate_message(rng: random.Random, message, depth: int = 0) -> None:
    """Set one field (perhaps nested) of ``message`` to an interesting value,
    clear it, or stuff a repeated or map field."""
    fields = message.DESCRIPTOR.fields
    if not fields:
        return
    field = rng.choice(fields)
    name = field.name
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if is_map:
        target = getattr(message, name)
        roll = rng.random()
        if roll < 0.2:
            target.clear()
            return
        value_field = field.message_type.fields_by_name["value"]
        for _ in range(rng.choice([1, 2, 8, 70])):  # 64 meta entries is a transfer's bound
            key = _text(rng) + (str(rng.random()) if roll < 0.6 else "")
            if value_field.message_type is None:
                target[key] = _scalar(rng, value_field)
        return
    if field.label == FD.LABEL_REPEATED:
        target = getattr(message, name)
        roll = rng.random()
        if roll < 0.3:
            del target[:]
        elif field.message_type is not None:
            for _ in range(rng.choice([1, 3])):
                mutate_message(rng, target.add(), depth + 1)
        else:
            for _ in range(rng.choice([1, 2, 5, 300])):
                target.append(_scalar(rng, field))
        return
    if field.message_type is not None:
        if rng.random() < 0.25 or depth > 3:
            message.ClearField(name)
        else:
            mutate_message(rng, getattr(message, name), depth + 1)
        return
    if rng.random() < 0.1:
        message.ClearField(name)
    else:
        setattr(message, name, _scalar(rng, field))


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """``data`` with bits flipped, cut, extended, spliced or overwritten."""
    buf = bytearray(data)
    op = rng.randrange(8)
    if op == 0 and buf:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 1:
        del buf[rng.randint(0, len(buf)):]
    elif op == 2:
        buf += _bytes(rng, 64)
    elif op == 3:
        at = rng.randint(0, len(buf))
        buf[at:at] = _bytes(rng, 32)
    elif op == 4 and buf:
        at = rng.randrange(len(buf))
        del buf[at:at + rng.randint(1, 16)]
    elif op == 5 and buf:
        at = rng.randrange(len(buf))
        buf[at:at + 10] = b"\xff" * 10  # a varint that never ends, or a huge one
    elif op == 6 and buf:
        at = rng.randrange(len(buf))
        buf[at:at] = buf[at:at + rng.randint(1, 32)]
    else:
        buf = bytearray(_bytes(rng, max(len(buf), 1)))
    return bytes(buf)


def mutate_serialized(rng: random.Random, message) -> bytes:
    """One mutation of a message: a field (then serialized) or its bytes."""
    if rng.random() < 0.55:
        copy = type(message)()
        copy.CopyFrom(message)
        for _ in range(rng.choice([1, 1, 2, 3])):
            mutate_message(rng, copy)
        return copy.SerializeToString()
    return mutate_bytes(rng, message.SerializeToString())


def fuzz_metadata(rng: random.Random) -> Tuple[Tuple[str, object], ...]:
    """Mostly none; else garbage credentials and headers a client may send."""
    roll = rng.random()
    printable = "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(0, 40)))
    if roll < 0.75:
        return ()
    if roll < 0.82:
        return ((AUTH_HEADER, "Bearer " + printable),)
    if roll < 0.86:
        return ((AUTH_HEADER, printable),)
    if roll < 0.90:
        return ((DEVICE_HEADER, rng.choice([STEADY, printable or "x"])),)
    if roll < 0.94:
        return ((f"x-fuzz-{rng.randrange(1000)}", printable), ("x-fuzz-bin", _bytes(rng)))
    if roll < 0.97:
        return ((AUTH_HEADER, "Bearer " + "a" * rng.choice([1000, 6000])),)
    return (("x-fuzz-big", "b" * 9000),)


def _decodes(message_type, data: bytes, predicate) -> bool:
    """Whether ``data`` decodes as ``message_type`` and the result satisfies ``predicate``."""
    try:
        return bool(predicate(message_type.FromString(data)))
    except Exception:
        return False


# Inputs the fuzzer steers clear of because they are slow, not wrong; the
# fuzzer draws again when it makes one.

def _slow_link(request: pb.RegisterRequest) -> bool:
    """A registration the server accepts with a link so slow (under 1 kbit/s)
    that a download paced at it outlasts the case, for a device the fuzzer
    downloads to (rates that make no sense are refused: INVALID_ARGUMENT)."""
    link = request.profile.link
    return request.name in DEVICES and any(
        MIN_RATE_BPS <= rate < 1e3 for rate in (link.uplink_bps, link.downlink_bps))


# ---------------------------------------------------------------- templates

def profile_proto(rng: random.Random) -> pb.CapabilityProfile:
    link = LinkProfile(uplink_bps=rng.choice([0.0, 1e6]), distance_m=rng.choice([0.0, 50.0]))
    return CapabilityProfile(cpu_model="fuzz", cpu_cores=2, link=link,
                             labels={"fuzz": "yes"}).to_proto()


def random_tensors(rng: random.Random) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    out = {}
    for i in range(rng.choice([1, 1, 2, 3])):
        shape = rng.choice([(0,), (), (7,), (3, 5), (64,), (2, 2, 33)])
        dtype = rng.choice([torch.float32, torch.float32, torch.float64, torch.float16,
                            torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool])
        t = torch.randn(shape, generator=gen).to(dtype) if dtype.is_floating_point else \
            torch.randint(0, 2 if dtype == torch.bool else 100, shape, generator=gen).to(dtype)
        out[f"t{i}"] = t
    return out


def transfer_frames(rng: random.Random, device: str, meta: Dict[str, str]) -> List[pb.TransferFrame]:
    quant = rng.choice([None, None, QuantSpec("float16"), QuantSpec("int8"),
                        QuantSpec("uniform", rng.choice([1, 3, 8, 16]))])
    return list(encode_transfer(random_tensors(rng), device_id=device,
                                key=f"fz/{rng.getrandbits(40):x}", meta=meta, quant=quant,
                                chunk_bytes=rng.choice([8, 32, 64, 256])))


def _mutated_frame(rng: random.Random, frame: pb.TransferFrame, serialized: bool) -> bytes:
    return mutate_serialized(rng, frame) if serialized else \
        mutate_bytes(rng, frame.SerializeToString())


def mutate_stream(rng: random.Random, frames: Sequence[pb.TransferFrame]
                  ) -> Tuple[List[bytes], int]:
    """The serialized frames with one stream-level fault, and how many of them
    the server has to read before the fault (the fault included)."""
    wire = [f.SerializeToString() for f in frames]
    n = len(wire)
    at = rng.randrange(n)
    op = rng.randrange(8)
    if op == 0:
        wire[at] = _mutated_frame(rng, frames[at], serialized=True)
    elif op == 1:
        wire[at] = _mutated_frame(rng, frames[at], serialized=False)
    elif op == 2:
        del wire[at]
    elif op == 3:
        wire.insert(at, wire[at])
    elif op == 4 and n > 1:
        other = rng.randrange(n)
        wire[at], wire[other] = wire[other], wire[at]
        at = max(at, other)
    elif op == 5:
        del wire[at:]  # the stream ends early
        return wire, len(wire)
    elif op == 6:
        wire.append(_bytes(rng, 80))  # garbage after a complete transfer
        return wire, n
    else:
        wire.insert(at, _bytes(rng, 80))
    return wire, min(at + 1, len(wire))


# ---------------------------------------------------------------- the target

@dataclasses.dataclass
class Target:
    server: ServerThread
    fleet: Fleet
    run_ids: List[str]
    session: object               # the steady agent's DeviceSession at the start


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    config = ServerConfig(listen="127.0.0.1:0", max_transfer_bytes=1024 * 1024,
                          max_wait_s=MAX_WAIT_S, session_open_s=SESSION_OPEN_S,
                          stream_idle_s=5.0, stream_total_s=30.0, retain_s=60.0)
    srv = ServerThread(config, state_dir=tmp_path_factory.mktemp("fuzz-state"))
    fleet = Fleet(srv.address, [AgentSpec(STEADY, power_backend="null")],
                  log_dir=tmp_path_factory.mktemp("fuzz-agent"), benchmark_s=0.01)
    try:
        fleet.start()
        fleet.wait_registered(srv, 1, 120)
        srv.run(srv.server.add_infer_handler, ECHO, lambda received: dict(received.tensors))
        srv.run(lambda: srv.server.offer(OFFER, {"w": torch.arange(300, dtype=torch.float32)}))
        with grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS) as channel:
            register = channel.unary_unary(f"/{EDGE}/Register")
            for name in DEVICES + [PARKED]:
                register(pb.RegisterRequest(name=name, profile=CapabilityProfile().to_proto())
                         .SerializeToString(), timeout=10)
            submit = channel.unary_unary(f"/{CONTROL}/Submit")
            # Queued for ever (their device never attaches): real runs to watch,
            # fetch and cancel.
            run_ids = [cpb.RunInfo.FromString(submit(cpb.SubmitRequest(
                suite="links", options_json="{}", devices=[PARKED]).SerializeToString(),
                timeout=10)).run_id for _ in range(3)]
        session = srv.server.registry.get(STEADY).session
        assert session is not None and not session.closed
        yield Target(srv, fleet, run_ids, session)
    finally:
        fleet.stop()
        srv.stop()


@dataclasses.dataclass
class Outcome:
    rpc: str
    label: str
    messages: int
    code: grpc.StatusCode
    details: str
    allowed: frozenset = ALLOWED


class Fuzzer:
    """Cases for every RPC, each built from its own seeded generator and run
    over one channel by a few threads."""

    def __init__(self, target: Target, seed: int) -> None:
        self.t = target
        self.seed = seed
        self.channel = grpc.insecure_channel(target.server.address, options=CHANNEL_OPTIONS)
        c = self.channel
        self.m = {
            "Register": c.unary_unary(f"/{EDGE}/Register"),
            "Session": c.stream_stream(f"/{EDGE}/Session"),
            "Upload": c.stream_unary(f"/{EDGE}/Upload"),
            "Download": c.unary_stream(f"/{EDGE}/Download"),
            "Infer": c.stream_stream(f"/{EDGE}/Infer"),
            "Submit": c.unary_unary(f"/{CONTROL}/Submit"),
            "ListRuns": c.unary_unary(f"/{CONTROL}/ListRuns"),
            "Watch": c.unary_stream(f"/{CONTROL}/Watch"),
            "Cancel": c.unary_unary(f"/{CONTROL}/Cancel"),
            "Fetch": c.unary_stream(f"/{CONTROL}/Fetch"),
            "Fleet": c.unary_unary(f"/{CONTROL}/Fleet"),
        }
        self.runnable = set(runnable_suites())
        self._names = iter(range(10 ** 9))
        self._lock = threading.Lock()
        self.cases: List[Tuple[Callable[[random.Random], Outcome], float]] = [
            (self.register, 10), (self.session_opening, 8), (self.session_batch, 3),
            (self.upload, 14), (self.download, 8), (self.infer, 7), (self.submit, 8),
            (self.list_runs, 2), (self.watch, 3), (self.cancel, 3), (self.fetch, 3),
            (self.fleet_info, 2),
        ]

    def close(self) -> None:
        self.channel.close()

    def fresh_name(self) -> str:
        with self._lock:
            return f"fz-s-{next(self._names)}"

    # ------------------------------------------------------------ calling
    def call(self, rpc: str, request, rng: random.Random, timeout_s: float = 10.0,
             metadata=None) -> Tuple[grpc.StatusCode, str, List[bytes]]:
        method = self.m[rpc]
        metadata = fuzz_metadata(rng) if metadata is None else metadata
        replies: List[bytes] = []
        try:
            if rpc in ("Session", "Upload", "Infer"):
                request = iter(request)
            reply = method(request, metadata=metadata, timeout=timeout_s)
            if rpc in ("Session", "Download", "Infer", "Watch", "Fetch"):
                replies.extend(reply)
            else:
                replies.append(reply)
            return S.OK, "", replies
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", replies

    def outcome(self, rpc, label, messages, request, rng, allowed=ALLOWED, **kwargs) -> Outcome:
        code, details, _ = self.call(rpc, request, rng, **kwargs)
        return Outcome(rpc, label, messages, code, details, allowed)

    # ------------------------------------------------------------ device-facing
    def register(self, rng: random.Random) -> Outcome:
        valid = pb.RegisterRequest(name=rng.choice([STEADY, self.fresh_name()] + DEVICES),
                                   profile=profile_proto(rng), agent_version="fuzz")
        data = _bytes(rng, 200) if rng.random() < 0.2 else mutate_serialized(rng, valid)
        if _decodes(pb.RegisterRequest, data, lambda r: r.name == NOBODY or _slow_link(r)):
            data = valid.SerializeToString()  # NOBODY stays unregistered (see submit)
        return self.outcome("Register", "mutated", 1, data, rng)

    def session_opening(self, rng: random.Random) -> Outcome:
        """The first message of a Session: garbage, not an open, a wrong key,
        or nothing at all."""
        roll = rng.random()
        tail = [pb.DeviceMessage(heartbeat=pb.Heartbeat(seq=1)).SerializeToString()] * \
            rng.choice([0, 0, 3])  # never read: the first message decides
        if roll < 0.25:
            return self.outcome("Session", "random first", 1, [_bytes(rng, 100)] + tail, rng)
        if roll < 0.45:
            first = pb.DeviceMessage()
            mutate_message(rng, first)
            if first.WhichOneof("body") == "open":
                first.heartbeat.seq = 1
            return self.outcome("Session", "not an open", 1, [first.SerializeToString()] + tail,
                                rng)
        if roll < 0.5:
            return self.outcome("Session", "empty", 0, [], rng)
        if roll < 0.52:  # says nothing until session_open_s has passed
            def silent():
                time.sleep(SESSION_OPEN_S * 3)
                yield from ()
            return self.outcome("Session", "silent", 0, silent(), rng)
        opening = pb.DeviceMessage(open=pb.SessionOpen(
            device_id=rng.choice([STEADY, NOBODY] + DEVICES), session_key=_text(rng)))
        data = opening.SerializeToString() if roll < 0.75 else mutate_serialized(rng, opening)
        return self.outcome("Session", "wrong key" if roll < 0.75 else "mutated open", 1,
                            [data] + tail, rng)

    def _batch_message(self, rng: random.Random) -> bytes:
        """A message a session reads and goes on after (odd values, but parseable)."""
        roll = rng.random()
        if roll < 0.4:
            message = pb.DeviceMessage(heartbeat=pb.Heartbeat(
                seq=_int(rng, "uint64"), sent_unix_s=_float(rng)))
        elif roll < 0.7:
            span = pb.Span(run_id=_text(rng), round=_int(rng, "int64"),
                           device=rng.choice([STEADY, _text(rng)]), phase=_text(rng),
                           start_s=_float(rng), end_s=_float(rng), start_unix_s=_float(rng),
                           bytes=_int(rng, "int64"), energy_j=_float(rng),
                           provenance=rng.choice(["", "measured", "estimated", "modeled"]),
                           extra_json=rng.choice(["", "{}", json.dumps({_text(rng): _text(rng)})]))
            message = pb.DeviceMessage(span=span)
        elif roll < 0.9:
            message = pb.DeviceMessage(result=pb.CommandResult(
                command_id=rng.choice([f"{STEADY}-0", _text(rng)]), ok=rng.random() < 0.5,
                result_json=rng.choice(["", "{}", '{"a": 1}']), error=_text(rng)))
        elif roll < 0.95:
            message = pb.DeviceMessage(open=pb.SessionOpen(device_id=STEADY, session_key="x"))
        else:
            message = pb.DeviceMessage()
        return message.SerializeToString()

    def session_batch(self, rng: random.Random) -> Outcome:
        """A proper registration and open, then hundreds of odd messages, and
        perhaps garbage to end it."""
        name = self.fresh_name()
        code, details, replies = self.call("Register", pb.RegisterRequest(
            name=name, profile=profile_proto(rng)).SerializeToString(), rng, metadata=())
        if code != S.OK:
            return Outcome("Register", "batch registration", 1, code, details)
        reply = pb.RegisterReply.FromString(replies[0])
        messages = [pb.DeviceMessage(open=pb.SessionOpen(
            device_id=name, session_key=reply.session_key)).SerializeToString()]
        messages += [self._batch_message(rng) for _ in range(rng.randint(20, 120))]
        label = "batch"
        if rng.random() < 0.5:
            label = "batch then garbage"
            messages.append(rng.choice([
                _bytes(rng, 60), mutate_bytes(rng, messages[-1]),
                pb.DeviceMessage(span=pb.Span(extra_json="{not json")).SerializeToString(),
                pb.DeviceMessage(span=pb.Span(provenance=_text(rng) + "?")).SerializeToString(),
                pb.DeviceMessage(result=pb.CommandResult(result_json="[1,")).SerializeToString()]))
        return self.outcome("Session", label, 1 + len(messages), messages, rng,
                            allowed=ALLOWED | SESSION_ENDED, metadata=())

    def _transfer(self, rng: random.Random, rpc: str, meta: Dict[str, str]) -> Outcome:
        device = rng.choice(DEVICES * 6 + [STEADY, NOBODY, _text(rng)])
        roll = rng.random()
        if roll < 0.1:
            return self.outcome(rpc, "random frames", 1, [_bytes(rng, 120)], rng)
        transfers = [transfer_frames(rng, device, meta)
                     for _ in range(rng.choice([1, 2, 4]) if rpc == "Infer" else 1)]
        head = [f.SerializeToString() for frames in transfers[:-1] for f in frames]
        if roll < 0.2:  # all good: stored (Upload) or answered (Infer)
            wire = head + [f.SerializeToString() for f in transfers[-1]]
            return self.outcome(rpc, "valid", len(wire), wire, rng)
        wire, read = mutate_stream(rng, transfers[-1])
        return self.outcome(rpc, "mutated stream", len(head) + read, head + wire, rng)

    def upload(self, rng: random.Random) -> Outcome:
        return self._transfer(rng, "Upload", rng.choice([{}, {"k": "v"}]))

    def infer(self, rng: random.Random) -> Outcome:
        return self._transfer(rng, "Infer", {"handler": rng.choice([ECHO] * 8 + ["nope", ""])})

    def download(self, rng: random.Random) -> Outcome:
        request = pb.DownloadRequest(device_id=rng.choice(DEVICES + [STEADY, NOBODY]),
                                     key=rng.choice([OFFER, OFFER, "fz/none", _text(rng)]),
                                     rate_bps=rng.choice([0.0, 1e9]),
                                     wait_s=rng.choice([0.0, 0.01, 1e9]))
        if rng.random() < 0.15:
            return self.outcome("Download", "random", 1, _bytes(rng, 80), rng)
        return self.outcome("Download", "mutated", 1, mutate_serialized(rng, request), rng)

    # ------------------------------------------------------------ control
    def _parseable(self, rng: random.Random, message_type, valid, guard=None) -> bytes:
        """A mutation of ``valid``: bytes that do not decode as ``message_type``
        (INVALID_ARGUMENT), or a message that passes ``guard``."""
        for _ in range(50):
            roll = rng.random()
            data = _bytes(rng, 60) if roll < 0.15 else mutate_serialized(rng, valid)
            try:
                parsed = message_type.FromString(data)
            except Exception:
                return data
            if guard is None or guard(parsed):
                return data
        return valid.SerializeToString()

    def _may_not_start(self, request: cpb.SubmitRequest) -> bool:
        """Never a run that could start: on the steady agent, it would keep it busy."""
        return request.suite not in self.runnable or NOBODY in request.devices

    def submit(self, rng: random.Random) -> Outcome:
        valid = cpb.SubmitRequest(
            suite=rng.choice(sorted(self.runnable) + ["nope", "", "tl-solver"]),
            options_json=rng.choice(["{}", '{"seed": 1}', '{"size_mb": 0.5}', "{", "[]", "null",
                                     '{"seed": NaN}', '{"x": 1}', json.dumps({"seed": 2 ** 70})]),
            devices=[NOBODY] + rng.choice([[], [STEADY], DEVICES]),
            selector=rng.choice(["", "power=null", "a=b", "=", ","]),
            count=rng.choice([0, 1, -1, 2 ** 31 - 1]), command=["fuzz"])
        data = self._parseable(rng, cpb.SubmitRequest, valid, self._may_not_start)
        return self.outcome("Submit", "mutated", 1, data, rng)

    def list_runs(self, rng: random.Random) -> Outcome:
        return self.outcome("ListRuns", "mutated", 1,
                            self._parseable(rng, cpb.ListRunsRequest, cpb.ListRunsRequest()), rng)

    def fleet_info(self, rng: random.Random) -> Outcome:
        return self.outcome("Fleet", "mutated", 1,
                            self._parseable(rng, cpb.FleetRequest, cpb.FleetRequest()), rng)

    def _run_ref(self, rng: random.Random) -> cpb.RunRef:
        return cpb.RunRef(run_id=rng.choice(self.t.run_ids + ["", "../..", "nope"]))

    def watch(self, rng: random.Random) -> Outcome:
        valid = cpb.WatchRequest(run_id=self._run_ref(rng).run_id,
                                 from_seq=_int(rng, "int64"))
        # A queued run's watch lasts until the run ends: the client stops it.
        return self.outcome("Watch", "mutated", 1,
                            self._parseable(rng, cpb.WatchRequest, valid), rng, timeout_s=0.3)

    def cancel(self, rng: random.Random) -> Outcome:
        return self.outcome("Cancel", "mutated", 1,
                            self._parseable(rng, cpb.RunRef, self._run_ref(rng)), rng)

    def fetch(self, rng: random.Random) -> Outcome:
        return self.outcome("Fetch", "mutated", 1,
                            self._parseable(rng, cpb.RunRef, self._run_ref(rng)), rng)

    # ------------------------------------------------------------ running
    def run(self, messages: int, workers: int = 6) -> Tuple[List[Outcome], float]:
        """Cases until ``messages`` messages were sent; (outcomes, seconds)."""
        kinds = [c for c, _ in self.cases]
        weights = [w for _, w in self.cases]
        picker = random.Random(self.seed)
        outcomes: List[Outcome] = []
        sent = 0
        index = 0
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pending = set()
            while sent < messages or pending:
                while sent < messages and len(pending) < 4 * workers:
                    case = picker.choices(kinds, weights)[0]
                    rng = random.Random(f"{self.seed}-{index}")
                    index += 1
                    pending.add(pool.submit(case, rng))
                    sent += 1  # provisional: a case sends at least about one message
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    outcomes.append(outcome)
                    sent += outcome.messages - 1
        return outcomes, time.perf_counter() - start


# ---------------------------------------------------------------- checks

def _server_errors(caplog) -> List[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith(("edgebed", "grpc", "asyncio"))
            and (r.levelno >= logging.ERROR or r.exc_info)]


def _assert_healthy(target: Target) -> None:
    srv = target.server
    with grpc.insecure_channel(srv.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=EDGE), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    record = srv.server.registry.get(STEADY)
    assert record.session is target.session and not record.session.closed, \
        f"the steady agent's session dropped: {record.disconnect_reason}"
    pong = srv.call(srv.server.call(STEADY, rt.PING, rt.PingIns(), 30))
    assert pong.name == STEADY
    assert target.fleet.procs[STEADY].poll() is None
    # Every transfer slot a fuzzed stream took was given back.
    wait_until(lambda: srv.server.transfers_in_flight == 0 and not srv.server.transfers_by_device,
               30, what="every transfer slot to be released")


def _fuzz(target: Target, caplog, messages: int, seed: int) -> Tuple[int, float]:
    caplog.set_level(logging.WARNING)
    fuzzer = Fuzzer(target, seed)
    try:
        outcomes, seconds = fuzzer.run(messages)
    finally:
        fuzzer.close()
    bad = [o for o in outcomes if o.code not in o.allowed]
    tally = Counter((o.rpc, o.code.name) for o in outcomes)
    assert not bad, (f"seed {seed}: {len(bad)} answers outside the allowed codes, e.g. "
                     + "; ".join(f"{o.rpc} [{o.label}]: {o.code.name} {o.details[:160]!r}"
                                 for o in bad[:8]) + f"\ntally: {dict(tally)}")
    assert {rpc for rpc, _ in tally} >= {"Register", "Session", "Upload", "Download", "Infer",
                                         "Submit", "ListRuns", "Watch", "Cancel", "Fetch",
                                         "Fleet"}
    errors = _server_errors(caplog)
    assert not errors, f"seed {seed}: the server logged {errors[0].name}: {errors[0].getMessage()}"
    _assert_healthy(target)
    total = sum(o.messages for o in outcomes)
    per_rpc = Counter()
    for o in outcomes:
        per_rpc[o.rpc] += o.messages
    print(f"\nfuzz seed {seed}: {total} messages in {len(outcomes)} calls, {seconds:.1f} s; "
          f"messages by RPC {dict(per_rpc)}; answers {dict(sorted(tally.items()))}")
    return total, seconds


def test_ten_thousand_fuzzed_messages_leave_the_server_and_its_agent_unharmed(target, caplog):
    total, _ = _fuzz(target, caplog, 10_000, SEED)
    assert total >= 10_000


@pytest.mark.slow
def test_a_hundred_thousand_fuzzed_messages(target, caplog):
    total, _ = _fuzz(target, caplog, 100_000, SEED + 1)
    assert total >= 100_000


# ---------------------------------------------------------------- bugs the fuzzer found
# Each test below pins one bug the fuzzer found (fixed since); the fuzzer now
# sends such inputs too.

def _raw(target: Target, service: str, method: str, kind: str = "unary_unary"):
    channel = grpc.insecure_channel(target.server.address, options=CHANNEL_OPTIONS)
    return channel, getattr(channel, kind)(f"/{service}/{method}")


def _answer(method, request, stream: bool = False) -> Tuple[grpc.StatusCode, str]:
    try:
        reply = method(request, timeout=10)
        if stream:
            list(reply)
        return S.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


CONTROL_METHODS = [("Submit", False), ("ListRuns", False), ("Watch", True), ("Cancel", False),
                   ("Fetch", True), ("Fleet", False)]


@pytest.mark.parametrize("method, stream", CONTROL_METHODS)
def test_control_refuses_undecodable_bytes_as_invalid_argument(target, caplog, method, stream):
    """Control's methods parse raw bytes (servicer.parse), as the device-facing
    service does: garbage is INVALID_ARGUMENT, not gRPC's UNKNOWN and a traceback."""
    caplog.set_level(logging.WARNING)
    channel, call = _raw(target, CONTROL, method, "unary_stream" if stream else "unary_unary")
    with channel:
        code, details = _answer(call, b"\xff\xff\xff\xff", stream)
    assert code == S.INVALID_ARGUMENT, (code, details)
    assert not _server_errors(caplog)


def test_a_session_key_with_non_ascii_characters_is_a_wrong_key(target, caplog):
    """registry.attach compares UTF-8 bytes (compare_digest refuses non-ASCII str)."""
    caplog.set_level(logging.WARNING)
    _registered_session(target, "fz-non-ascii-key")  # registered: only the key is wrong
    opening = pb.DeviceMessage(open=pb.SessionOpen(device_id="fz-non-ascii-key", session_key="clé"))
    channel, call = _raw(target, EDGE, "Session", "stream_stream")
    with channel:
        code, details = _answer(call, iter([opening.SerializeToString()]), stream=True)
    assert code == S.FAILED_PRECONDITION, (code, details)
    assert not _server_errors(caplog)


@pytest.mark.parametrize("options_json, words", [
    ("[" * 100_000, ["characters", "at most"]),
    ("[" * 1000, ["nests deeper"]),
    ('{"a": ' * 17 + "1" + "}" * 17, ["nests deeper"]),
    (json.dumps({"seed": "[" * 1000}), ["seed must be an integer"]),  # brackets in a string
    (json.dumps({"seed": 10 ** 400}), ["seed"]),
    ('{"seed": 1', ["not JSON"])],
    ids=["huge", "deep-lists", "deep-objects", "brackets-in-a-string", "huge-int", "truncated"])
def test_deeply_nested_or_huge_options_are_invalid_argument(target, caplog, options_json, words):
    """ControlPlane.submit bounds options_json's size and nesting before
    decoding it (deep nesting exhausted the decoder's recursion: INTERNAL)."""
    caplog.set_level(logging.WARNING)
    request = cpb.SubmitRequest(suite="links", options_json=options_json, devices=[NOBODY])
    channel, call = _raw(target, CONTROL, "Submit")
    with channel:
        code, details = _answer(call, request.SerializeToString())
    assert code == S.INVALID_ARGUMENT, (code, details)
    assert all(word in details for word in words), details
    assert len(details) < 1024
    assert not _server_errors(caplog)


def test_garbage_after_the_open_is_invalid_argument(target):
    """rpc_handlers.session detaches the device, then ends the stream with the
    status of what broke it: INVALID_ARGUMENT, as malformed input elsewhere."""
    channel, call = _raw(target, EDGE, "Register")
    with channel:
        reply = pb.RegisterReply.FromString(call(pb.RegisterRequest(
            name="fz-garbage-after-open").SerializeToString(), timeout=10))
    opening = pb.DeviceMessage(open=pb.SessionOpen(device_id="fz-garbage-after-open",
                                                   session_key=reply.session_key))
    channel, call = _raw(target, EDGE, "Session", "stream_stream")
    with channel:
        code, details = _answer(call, iter([opening.SerializeToString(), b"\xff\xff\xff"]),
                                stream=True)
    assert code == S.INVALID_ARGUMENT, (code, details)


def _registered_session(target: Target, name: str) -> pb.DeviceMessage:
    channel, call = _raw(target, EDGE, "Register")
    with channel:
        reply = pb.RegisterReply.FromString(call(pb.RegisterRequest(name=name).SerializeToString(),
                                                 timeout=10))
    return pb.DeviceMessage(open=pb.SessionOpen(device_id=name, session_key=reply.session_key))


@pytest.mark.parametrize("tail", [
    b"\xff\xff\xff",
    pb.DeviceMessage(span=pb.Span(run_id="r", phase="p", extra_json="{not json")).SerializeToString(),
    pb.DeviceMessage(result=pb.CommandResult(command_id="c", result_json="[1,")).SerializeToString()],
    ids=["undecodable", "span-json", "result-json"])
def test_a_session_message_that_does_not_decode_is_invalid_argument(target, caplog, tail):
    caplog.set_level(logging.WARNING)
    name = f"fz-bad-tail-{abs(hash(tail)) % 10 ** 6}"
    opening = _registered_session(target, name)
    channel, call = _raw(target, EDGE, "Session", "stream_stream")
    with channel:
        code, details = _answer(call, iter([opening.SerializeToString(), tail]), stream=True)
    assert code == S.INVALID_ARGUMENT, (code, details)
    assert not _server_errors(caplog)
    record = target.server.server.registry.get(name)
    assert not record.connected and "stream broken" in record.disconnect_reason


def test_a_session_that_repeats_oddities_does_not_flood_the_log(target, caplog):
    """Results for unknown commands and messages out of place: the first of
    each logged, the rest counted and summed up when the session ends."""
    caplog.set_level(logging.WARNING)
    name = "fz-repeats"
    opening = _registered_session(target, name)
    odd = [pb.DeviceMessage(result=pb.CommandResult(command_id=f"nope-{i}", ok=True))
           for i in range(300)]
    odd += [pb.DeviceMessage(open=pb.SessionOpen(device_id=name, session_key="x")),
            pb.DeviceMessage()] * 150
    channel, call = _raw(target, EDGE, "Session", "stream_stream")
    with channel:
        code, details = _answer(call, iter([opening.SerializeToString()]
                                           + [m.SerializeToString() for m in odd]), stream=True)
    assert code == S.ABORTED and "closed by the device" in details, (code, details)
    wait_until(lambda: not target.server.server.registry.get(name).connected, 10,
               what="the session to end")
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.WARNING and r.getMessage().startswith(f"{name}:")]
    assert len(lines) <= 6, lines
    assert any("unknown commands" in line and "nope-0" in line for line in lines), lines
    assert any("299 more results for unknown commands" in line for line in lines), lines
    assert any("299 more unexpected messages" in line for line in lines), lines


def test_repeated_warnings_are_summed_up_periodically(caplog):
    from edgebed.server.registry import RepeatedWarning

    caplog.set_level(logging.WARNING)
    now = [0.0]
    odd = RepeatedWarning("dev", every_s=60.0, clock=lambda: now[0])
    for i in range(1000):  # ten per second for 100 s
        now[0] = i / 10
        odd.warn("oddities", str(i))
    odd.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["dev: oddities (0)", "dev: 600 more oddities in the last 60 s (latest: 600)",
                     "dev: 399 more oddities in the last 40 s (latest: 999)"]


@pytest.mark.parametrize("method, request_", [
    ("Submit", cpb.SubmitRequest(suite="s" * 10_000)),
    ("Submit", cpb.SubmitRequest(suite="links", devices=["d" * 10_000])),
    ("Submit", cpb.SubmitRequest(suite="links", devices=[f"d{i}" for i in range(5000)])),
    ("Submit", cpb.SubmitRequest(suite="links", selector="x" * 10_000)),
    ("Submit", cpb.SubmitRequest(suite="links", selector="a=" + "x" * 10_000)),
    ("Submit", cpb.SubmitRequest(suite="links", options_json=json.dumps({"k" * 10_000: 1}))),
    ("Submit", cpb.SubmitRequest(suite="links", options_json=json.dumps({"seed": "s" * 10_000}))),
    ("Cancel", cpb.RunRef(run_id="r" * 10_000)),
    ("Fetch", cpb.RunRef(run_id="r" * 10_000)),
    ("Watch", cpb.WatchRequest(run_id="r" * 10_000))])
def test_control_status_messages_do_not_echo_long_client_strings(target, method, request_):
    """ControlPlane cuts what it quotes of the client's strings (identity.printable)."""
    stream = dict(CONTROL_METHODS)[method]
    channel, call = _raw(target, CONTROL, method, "unary_stream" if stream else "unary_unary")
    with channel:
        code, details = _answer(call, request_.SerializeToString(), stream)
    assert code in (S.INVALID_ARGUMENT, S.NOT_FOUND), (code, details[:200])
    assert len(details) < 1024


def test_device_facing_status_messages_do_not_echo_long_client_strings(target):
    """The device-facing service cuts what it quotes (identity.printable)."""
    channel, call = _raw(target, EDGE, "Download", "unary_stream")
    with channel:
        code, details = _answer(call, pb.DownloadRequest(
            device_id="d" * 10_000, key="k").SerializeToString(), stream=True)
    assert code in (S.INVALID_ARGUMENT, S.FAILED_PRECONDITION, S.PERMISSION_DENIED), code
    assert len(details) < 1024


def test_a_registration_that_never_opens_a_session_is_forgotten():
    """retain_s applies from the registration too: a flood of Registers never
    followed by a Session does not grow the registry without bound."""
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", retain_s=0.3,
                                    heartbeat_interval_s=0.1, heartbeat_timeout_s=1.0))
    try:
        with grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS) as channel:
            channel.unary_unary(f"/{EDGE}/Register")(
                pb.RegisterRequest(name="fz-ghost").SerializeToString(), timeout=10)
        assert [r.name for r in srv.server.registry.all()] == ["fz-ghost"]
        wait_until(lambda: not srv.server.registry.all(), 5, what="the ghost to be forgotten")
    finally:
        srv.stop()


def test_only_registrations_without_a_session_are_forgotten_from_their_registration():
    from edgebed.server.registry import DeviceRegistry

    async def scenario():
        registry = DeviceRegistry()
        registry.register("fz-ghost", CapabilityProfile())
        attached = registry.register("fz-live", CapabilityProfile())
        session = registry.attach("fz-live", attached.session_key)
        assert registry.forget_gone(60.0) == []
        time.sleep(0.05)
        assert registry.forget_gone(0.01) == ["fz-ghost"]
        assert [r.name for r in registry.all()] == ["fz-live"]  # attached: kept
        registry.detach(session, "test")
        assert registry.forget_gone(60.0) == []                 # gone just now: kept
        time.sleep(0.05)
        assert registry.forget_gone(0.01) == ["fz-live"]

    asyncio.run(scenario())


@pytest.mark.parametrize("field, value", [
    ("link.downlink_bps", -1.0), ("link.downlink_bps", math.nan), ("link.downlink_bps", math.inf),
    ("link.downlink_bps", 5e-324), ("link.uplink_bps", 0.5), ("link.uplink_bps", -math.inf),
    ("link.distance_m", math.nan), ("link.bandwidth_hz", -1.0), ("link.tx_power_w", math.inf),
    ("matmul_gflops", math.nan), ("conv_gflops", -1.0), ("cpu_freq_mhz", math.inf),
    ("cpu_quota", -0.5), ("cpu_cores", -2), ("ram_bytes", -1)])
def test_a_registered_profile_number_that_makes_no_sense_is_refused(target, field, value):
    """Refused at registration (CapabilityProfile.check), naming the field: the server
    would pace the device's Download and Infer replies at its link's rates (INTERNAL),
    and speed classes and solvers are built on its other numbers."""
    if field.startswith("link."):
        profile = CapabilityProfile(link=LinkProfile(**{field[len("link."):]: value}))
    else:
        profile = CapabilityProfile(**{field: value})
    name = f"fz-profile-{field}-{abs(hash(str(value)))}"
    channel, call = _raw(target, EDGE, "Register")
    with channel:
        code, details = _answer(call, pb.RegisterRequest(
            name=name, profile=profile.to_proto()).SerializeToString())
    assert code == S.INVALID_ARGUMENT, (code, details)
    assert f"profile.{field} must be" in details, details
    assert name not in {r.name for r in target.server.server.registry.all()}


def test_a_quantization_header_without_a_scheme_is_invalid_argument(target, caplog):
    """codec FrameAssembler._open refuses a quant header with an empty scheme
    (it was looked up as SUPPORTED_DTYPES['']: KeyError, INTERNAL)."""
    caplog.set_level(logging.WARNING)
    _registered_session(target, "fz-schemeless")  # registered (no session needed to upload)
    frames = list(encode_transfer({"x": torch.ones(4)}, device_id="fz-schemeless",
                                  key="fz/schemeless"))
    frames[0].tensor.quant.bits = 3  # present, scheme left empty
    channel, call = _raw(target, EDGE, "Upload", "stream_unary")
    with channel:
        code, details = _answer(call, iter([f.SerializeToString() for f in frames]))
    assert code == S.INVALID_ARGUMENT, (code, details)
    assert "quant.scheme" in details, details
    assert not _server_errors(caplog)
