"""What each RPC does, as plain async functions of the server's state.

The servicer (``servicer.py``) only calls these; its interceptors
authenticate and map the exceptions raised here to status codes. Nothing
here touches grpc.
"""
import asyncio
import logging
import time
import uuid
from typing import AsyncIterator, Optional

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.codec import FrameAssembler, encode_tensor
from edgebed.proto.errors import CodecError
from edgebed.proto.records import CapabilityProfile, CommandResult, Span, TransferStats
from edgebed.proto.shaping import apace_frames
from edgebed.proto.wire import InFrame, OutFrame, iter_out_frames
from edgebed.server.errors import ServerError, UnknownDevice
from edgebed.server.state import InferReply, ServerState
from edgebed.server.telemetry import SERVER_DEVICE
from edgebed.server.transfers import ReceivedTransfer

logger = logging.getLogger(__name__)


def register(core: ServerState, request: pb.RegisterRequest) -> pb.RegisterReply:
    profile = CapabilityProfile.from_proto(request.profile)
    record = core.registry.register(request.name, profile)
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
    """Attach the stream to its registration, then pump both directions."""
    first = await messages.__anext__()
    if first.WhichOneof("body") != "open":
        raise CodecError("a Session must start with an 'open' message")
    device_session = core.registry.attach(first.open.device_id, first.open.session_key)
    name = device_session.name
    logger.info("%s: session open", name)

    async def read_uplink() -> None:
        reason = "stream closed by the device"
        try:
            async for message in messages:
                body = message.WhichOneof("body")
                device_session.heartbeat()  # any message proves liveness
                if body == "heartbeat":
                    device_session.send(pb.ServerMessage(heartbeat_ack=message.heartbeat))
                elif body == "result":
                    device_session.deliver(CommandResult.from_proto(message.result))
                elif body == "span":
                    core.record_span(Span.from_proto(message.span))
                else:
                    logger.warning("%s: unexpected %s message ignored", name, body)
        except Exception as exc:  # the stream broke: the device is gone
            reason = f"stream broken: {type(exc).__name__}: {exc}"
        finally:
            core.registry.detach(device_session, reason)

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


def _check_device(core: ServerState, device: str) -> None:
    try:
        core.registry.get(device)
    except UnknownDevice:
        raise ServerError(f"transfer from unregistered device {device!r}") from None


async def _assemble_one(
    core: ServerState, frames: AsyncIterator[InFrame], first: InFrame
) -> ReceivedTransfer:
    """Feed frames into one assembler until its transfer is complete; the
    stats time the receiver's side, from the first frame to the last."""
    assembler = FrameAssembler(max_bytes=core.config.max_transfer_bytes)
    start = time.perf_counter()
    assembler.feed(first)
    _check_device(core, first.transfer.device_id)
    while not assembler.complete:
        try:
            frame = await frames.__anext__()
        except StopAsyncIteration:
            raise CodecError("stream ended before the transfer was complete") from None
        assembler.feed(frame)
    done = assembler.finish()
    seconds = time.perf_counter() - start
    stats = TransferStats(uuid.uuid4().hex[:12], done.payload_bytes, seconds, len(done.tensors))
    return ReceivedTransfer(done.device_id, done.key, done.tensors, dict(done.meta), stats)


async def upload(core: ServerState, frames: AsyncIterator[InFrame]) -> pb.TransferStats:
    """Assemble and validate one transfer; store it only when all of it is good."""
    try:
        first = await frames.__anext__()
    except StopAsyncIteration:
        raise CodecError("empty upload: no frames were sent") from None
    core.uploads_in_flight += 1
    try:
        received = await _assemble_one(core, frames, first)
    finally:
        core.uploads_in_flight -= 1
    core.validate_upload(received)  # a workload's own checks; raises CodecError
    await core.inbox.put(received)
    logger.debug("%s uploaded %s: %d bytes in %.3f s", received.device, received.key,
                 received.stats.bytes, received.stats.seconds)
    return received.stats.to_proto()


def _downlink_rate(core: ServerState, device: str, offered: Optional[float]) -> float:
    if offered is not None:
        return offered
    return core.link(device).downlink_bps


async def download(core: ServerState, request: pb.DownloadRequest) -> AsyncIterator[OutFrame]:
    """Stream an offered transfer, paced to the server's rate for that device."""
    _check_device(core, request.device_id)
    offer = await core.outbox.wait_for(request.device_id, request.key, request.wait_s)
    rate = _downlink_rate(core, request.device_id, offer.rate_for(request.device_id))
    frames = iter_out_frames(offer.encoded, device_id=request.device_id, key=offer.key,
                         rate_bps=rate, meta=offer.meta)
    async for frame in apace_frames(frames, rate):
        yield frame


async def infer(core: ServerState, frames: AsyncIterator[InFrame]) -> AsyncIterator[OutFrame]:
    """Answer each request transfer with the named handler's output transfer."""
    loop = asyncio.get_running_loop()
    async for first in frames:
        core.uploads_in_flight += 1
        try:
            received = await _assemble_one(core, frames, first)
        finally:
            core.uploads_in_flight -= 1
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
