"""What each RPC does, as plain async functions of the server's state.

The servicer (``servicer.py``) only calls these; its interceptor
authenticates and maps the exceptions raised here to status codes. Nothing
here touches grpc.

Every client input is bounded before it is allocated: the caller may act
only as its own device (``identity.check_name``); a transfer counts its
decoded size and metadata against the cap (``FrameAssembler``), waits at
most ``stream_idle_s`` for each frame and lasts at most ``stream_total_s``;
a device holds at most ``max_transfers_per_device`` transfers open and the
server ``max_transfers``; a Session must open within ``session_open_s``; a
Download waits at most ``max_wait_s`` for its offer. Client strings are
escaped (``printable``) before they reach a log line.
"""
import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from typing import AsyncIterator, Iterator, List, Optional

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.codec import FrameAssembler, encode_tensor
from edgebed.proto.contracts.base import ContractError
from edgebed.proto.errors import CodecError
from edgebed.proto.records import CapabilityProfile, CommandResult, Span, TransferStats
from edgebed.proto.shaping import apace_frames
from edgebed.proto.wire import InFrame, OutFrame, iter_out_frames
from edgebed.server.errors import (
    RequestError,
    ServerError,
    SessionClosed,
    StreamTimeout,
    TooManyTransfers,
    UnknownDevice,
)
from edgebed.server.identity import CALLER, check_name, printable
from edgebed.server.state import InferReply, ServerState
from edgebed.server.telemetry import SERVER_DEVICE
from edgebed.server.transfers import ReceivedTransfer

logger = logging.getLogger(__name__)

# Above this, decoding (crc32, dequantization) runs in a worker thread, off the loop.
DECODE_OFF_LOOP_BYTES = 256 * 1024


def register(core: ServerState, request: pb.RegisterRequest) -> pb.RegisterReply:
    check_name(request.name, "Register")
    profile = CapabilityProfile.from_proto(request.profile)
    try:  # solvers use its numbers; the server paces its downloads at its link's rates
        profile.check()
    except ValueError as exc:
        raise RequestError(f"profile.{exc}") from None
    record = core.registry.register(request.name, profile, CALLER.get())
    core.links.forget(record.name)  # it may sit behind another link now: measure again
    return pb.RegisterReply(
        device_id=record.name,
        session_key=record.session_key,
        heartbeat_interval_s=core.config.heartbeat_interval_s,
        heartbeat_timeout_s=core.config.heartbeat_timeout_s,
    )


async def session(
    core: ServerState, messages: AsyncIterator[pb.DeviceMessage]
) -> AsyncIterator[pb.ServerMessage]:
    """Attach the stream to its registration, then pump both directions.

    Ends with a status and a reason when the server closes it (replaced by a
    new session, no heartbeats, the server stopping)."""
    try:
        first = await asyncio.wait_for(messages.__anext__(), core.config.session_open_s)
    except asyncio.TimeoutError:
        raise StreamTimeout(f"a Session must open within {core.config.session_open_s} s") from None
    except StopAsyncIteration:
        raise CodecError("a Session must start with an 'open' message; it sent nothing") from None
    if first.WhichOneof("body") != "open":
        raise CodecError("a Session must start with an 'open' message")
    check_name(first.open.device_id, "Session")
    device_session = core.registry.attach(first.open.device_id, first.open.session_key)
    name = device_session.name
    logger.info("%s: session open", name)

    # What the device sent that broke the stream (a message that does not
    # parse or decode): the stream then ends with its status, not ABORTED.
    refused: List[Exception] = []
    departed: List[str] = []  # the agent said it is stopping: the stream ends OK

    async def read_uplink() -> None:
        reason = "stream closed by the device"
        oddities = device_session.oddities  # logged once, then counted
        try:
            async for message in messages:
                body = message.WhichOneof("body")
                device_session.heartbeat()  # any message proves liveness
                if body == "heartbeat":
                    device_session.send(pb.ServerMessage(heartbeat_ack=message.heartbeat))
                elif body == "result":
                    device_session.deliver(_decoded(CommandResult.from_proto, message.result))
                elif body == "span":
                    span = _decoded(Span.from_proto, message.span)
                    if span.device != name:  # a session speaks for its own device only
                        oddities.warn(f"spans of other devices bound to {name}",
                                      printable(span.device, 60))
                        span = dataclasses.replace(span, device=name)
                    core.record_span(span)
                elif body == "close":
                    departed.append(printable(message.close.reason, 80) or "no reason given")
                    reason = f"the agent left ({departed[0]})"
                    break
                else:
                    oddities.warn("unexpected messages ignored", body or "no body")
        except (CodecError, ContractError) as exc:  # garbage: the client's INVALID_ARGUMENT
            reason = f"stream broken: {type(exc).__name__}: {printable(str(exc))}"
            refused.append(exc)
        except Exception as exc:  # the stream broke: the device is gone
            reason = f"stream broken: {type(exc).__name__}: {printable(str(exc))}"
        finally:
            core.registry.detach(device_session, reason, expected=bool(departed))

    reader = asyncio.get_running_loop().create_task(read_uplink())
    try:
        while True:
            outgoing = await device_session.outbox.get()
            if outgoing is None:
                break
            yield outgoing
    finally:
        reader.cancel()
        core.registry.detach(device_session, "session ended")
    if refused:  # detached above; the device learns what was wrong with what it sent
        raise refused[0]
    if departed:
        return
    raise SessionClosed(f"{name}: session closed by the server: {device_session.close_reason}")


def _decoded(from_proto, message):
    """A session message's record, or CodecError naming why it does not decode
    (its JSON, a value its record refuses)."""
    try:
        return from_proto(message)
    except (ValueError, TypeError, RecursionError) as exc:
        what = type(message).DESCRIPTOR.name
        raise CodecError(f"a {what} that does not decode: {type(exc).__name__}: "
                         f"{printable(str(exc))}") from None


def _check_device(core: ServerState, device: str, what: str) -> None:
    check_name(device, what)
    try:
        core.registry.get(device)
    except UnknownDevice:
        raise ServerError(f"{what} from unregistered device {printable(device)!r}") from None


@contextlib.contextmanager
def _transfer_slot(core: ServerState, device: str) -> Iterator[None]:
    """One of the device's (and the server's) concurrent transfers, or
    RESOURCE_EXHAUSTED: one device cannot hold the server's memory and sockets."""
    mine = core.transfers_by_device.get(device, 0)
    if mine >= core.config.max_transfers_per_device:
        raise TooManyTransfers(f"{device} already has {mine} transfers open "
                               f"(at most {core.config.max_transfers_per_device})")
    in_flight = core.transfers_in_flight
    if in_flight >= core.config.max_transfers:
        raise TooManyTransfers(f"the server has {in_flight} transfers open "
                               f"(at most {core.config.max_transfers})")
    core.transfers_by_device[device] = mine + 1
    try:
        yield
    finally:
        left = core.transfers_by_device.get(device, 1) - 1
        if left:
            core.transfers_by_device[device] = left
        else:
            core.transfers_by_device.pop(device, None)


async def _next_frame(core: ServerState, frames: AsyncIterator[InFrame], deadline: float,
                      what: str) -> InFrame:
    """The next frame, within the idle deadline and the stream's total one."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise StreamTimeout(f"{what} lasted over {core.config.stream_total_s} s")
    try:
        return await asyncio.wait_for(frames.__anext__(),
                                      min(core.config.stream_idle_s, left))
    except asyncio.TimeoutError:
        raise StreamTimeout(f"{what} sent nothing for {min(core.config.stream_idle_s, left):.0f} "
                            "s") from None


async def _assemble_one(core: ServerState, frames: AsyncIterator[InFrame], first: InFrame,
                        deadline: float) -> ReceivedTransfer:
    """Feed frames into one assembler until its transfer is complete; the
    stats time the receiver's side, from the first frame to the last."""
    assembler = FrameAssembler(max_bytes=core.config.max_transfer_bytes)
    start = time.perf_counter()
    assembler.feed(first)
    while not assembler.complete:
        try:
            frame = await _next_frame(core, frames, deadline, "a transfer")
        except StopAsyncIteration:
            raise CodecError("stream ended before the transfer was complete") from None
        assembler.feed(frame)
    if assembler.payload_bytes > DECODE_OFF_LOOP_BYTES:  # crc32 and dequantization take time
        done = await asyncio.get_running_loop().run_in_executor(None, assembler.finish)
    else:
        done = assembler.finish()
    seconds = time.perf_counter() - start
    stats = TransferStats(uuid.uuid4().hex[:12], done.payload_bytes, seconds, len(done.tensors))
    return ReceivedTransfer(done.device_id, done.key, done.tensors, dict(done.meta), stats)


async def upload(core: ServerState, frames: AsyncIterator[InFrame]) -> pb.TransferStats:
    """Assemble and validate one transfer; store it only when all of it is good."""
    deadline = time.monotonic() + core.config.stream_total_s
    try:
        first = await _next_frame(core, frames, deadline, "an upload")
    except StopAsyncIteration:
        raise CodecError("empty upload: no frames were sent") from None
    device = first.transfer.device_id
    _check_device(core, device, "an upload")
    with _transfer_slot(core, device):
        received = await _assemble_one(core, frames, first, deadline)
    core.validate_upload(received)  # a workload's own checks; raises CodecError
    await core.inbox.put(received)  # DuplicateUpload if one is still uncollected there
    logger.debug("%s uploaded %s: %d bytes in %.3f s", received.device, printable(received.key),
                 received.stats.bytes, received.stats.seconds)
    return received.stats.to_proto()


def _downlink_rate(core: ServerState, device: str, offered: Optional[float]) -> float:
    if offered is not None:
        return offered
    return core.link(device).downlink_bps


def _wait_s(core: ServerState, wait_s: float) -> float:
    if not math.isfinite(wait_s) or wait_s < 0:
        raise RequestError(f"wait_s must be a finite number of seconds >= 0, got {wait_s!r}")
    return min(wait_s, core.config.max_wait_s)  # capped: no request holds a stream for ever


async def download(core: ServerState, request: pb.DownloadRequest) -> AsyncIterator[OutFrame]:
    """Stream an offered transfer, paced to the server's rate for that device."""
    _check_device(core, request.device_id, "a download")
    wait_s = _wait_s(core, request.wait_s)
    with _transfer_slot(core, request.device_id):
        offer = await core.outbox.wait_for(request.device_id, request.key, wait_s)
        rate = _downlink_rate(core, request.device_id, offer.rate_for(request.device_id))
        frames = iter_out_frames(offer.encoded, device_id=request.device_id, key=offer.key,
                                 rate_bps=rate, meta=offer.meta)
        async for frame in apace_frames(frames, rate):
            yield frame


async def infer(core: ServerState, frames: AsyncIterator[InFrame]) -> AsyncIterator[OutFrame]:
    """Answer each request transfer with the named handler's output transfer."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + core.config.stream_total_s
    while True:
        try:
            # Between requests a device may think (run its head): the idle
            # deadline bounds that too, as it bounds a stalled request.
            first = await _next_frame(core, frames, deadline, "an Infer stream")
        except StopAsyncIteration:
            return
        device = first.transfer.device_id
        _check_device(core, device, "an inference")
        with _transfer_slot(core, device):
            received = await _assemble_one(core, frames, first, deadline)
        name = received.meta.get("handler", "")
        handler = core.infer_handler(name)
        if asyncio.iscoroutinefunction(handler):
            # A coroutine handler schedules its own compute (the split
            # executor's slots and B-thread pool) and is cancelled with the stream.
            outputs = await handler(received)
        else:
            # Tail computation is CPU/GPU bound: keep the event loop free for
            # heartbeats and other devices' streams.
            outputs = await loop.run_in_executor(None, handler, received)
        reply = outputs if isinstance(outputs, InferReply) else InferReply(outputs)
        start = time.perf_counter()
        start_unix = time.time()
        encoded = [encode_tensor(k, v) for k, v in reply.tensors.items()]
        rate = _downlink_rate(core, received.device, None)
        out = iter_out_frames(encoded, device_id=received.device, key=received.key,
                              rate_bps=rate, meta=received.meta)
        released = start
        async for frame in apace_frames(out, rate):
            released = time.perf_counter()
            yield frame
        # The reply's paced transfer as the sender saw it (encoding to the pacer
        # releasing the last frame): a receiver cannot see the first chunk's airtime.
        if reply.on_sent is not None:
            reply.on_sent(released - start)
        core.record_span(Span(
            run_id=received.meta.get("run_id", ""), phase="infer_reply", device=SERVER_DEVICE,
            start_s=start, end_s=released, start_unix_s=start_unix,
            bytes=sum(e.header.payload_bytes for e in encoded),
            extra={"for_device": received.device, "key": received.key, "handler": name,
                   "rate_bps": rate}))
