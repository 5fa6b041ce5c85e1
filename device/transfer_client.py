"""The device end of the data plane: paced Upload, Download and Infer.

Runs in handler threads with a synchronous gRPC channel, so a handler can
stream tensors while the agent's event loop keeps the Session heartbeats going.
Every call returns the measured bytes, seconds and achieved rate.
"""
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import grpc
import torch

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.channel import auth_metadata
from edgebed.proto.codec import (
    DEFAULT_MAX_TRANSFER_BYTES,
    FrameAssembler,
    QuantArg,
    encode_tensors,
)
from edgebed.proto.records import TransferStats
from edgebed.proto.shaping import pace_frames
from edgebed.proto.wire import (
    SERVICE,
    InFrame,
    OutFrame,
    iter_out_frames,
    parse_frame,
    serialize_frame,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Downloaded:
    tensors: Dict[str, torch.Tensor]
    meta: Dict[str, str]
    stats: TransferStats


class TransferClient:
    def __init__(self, channel: grpc.Channel, device: str, token: Optional[str] = None,
                 max_bytes: int = DEFAULT_MAX_TRANSFER_BYTES) -> None:
        # Data-plane calls use the zero-copy frame (de)serializers of wire.py.
        self._upload = channel.stream_unary(
            f"/{SERVICE}/Upload", request_serializer=serialize_frame,
            response_deserializer=pb.TransferStats.FromString)
        self._download = channel.unary_stream(
            f"/{SERVICE}/Download", request_serializer=pb.DownloadRequest.SerializeToString,
            response_deserializer=parse_frame)
        self._infer = channel.stream_stream(
            f"/{SERVICE}/Infer", request_serializer=serialize_frame,
            response_deserializer=parse_frame)
        self.device = device
        self.max_bytes = max_bytes  # a server cannot make this device hold more (0: no cap)
        self._metadata = auth_metadata(token, device)

    def _frames(
        self, tensors: Mapping[str, torch.Tensor], key: str, rate_bps: float,
        quant: QuantArg, meta: Optional[Mapping[str, str]],
    ) -> Tuple[Iterator[OutFrame], int]:
        """Paced frames of one transfer and its payload bytes."""
        encoded = encode_tensors(tensors, quant)
        frames = iter_out_frames(encoded, device_id=self.device, key=key, rate_bps=rate_bps,
                                 meta=dict(meta or {}))
        return pace_frames(frames, rate_bps), sum(e.header.payload_bytes for e in encoded)

    def upload(
        self, key: str, tensors: Mapping[str, torch.Tensor], *, rate_bps: float = 0.0,
        quant: QuantArg = None, meta: Optional[Mapping[str, str]] = None,
        timeout_s: Optional[float] = None,
    ) -> TransferStats:
        """Send tensors paced at ``rate_bps`` (0 = unshaped).

        The returned stats are the sender's: from the first byte handed to
        gRPC until the server confirmed the whole transfer was stored.
        """
        frames, _ = self._frames(tensors, key, rate_bps, quant, meta)  # encodes eagerly
        start = time.perf_counter()
        reply = self._upload(frames, metadata=self._metadata, timeout=timeout_s)
        seconds = time.perf_counter() - start
        return TransferStats(reply.transfer_id, reply.bytes, seconds, reply.num_tensors)

    def download(self, key: str, *, wait_s: float = 0.0,
                 timeout_s: Optional[float] = None) -> Downloaded:
        """Fetch what the server offered under ``key`` at the server's rate.

        ``wait_s`` lets the server hold the request until the key is offered.
        """
        frames = self.open_download(key, wait_s=wait_s, timeout_s=timeout_s)
        return self.receive(key, frames)

    def open_download(self, key: str, *, wait_s: float = 0.0,
                      timeout_s: Optional[float] = None) -> Iterator[InFrame]:
        """Start a Download; iterating blocks until the server sends frames.

        Split from ``receive`` so a caller can time the wait for the offer
        (an idle phase) apart from the transfer itself.
        """
        request = pb.DownloadRequest(device_id=self.device, key=key, wait_s=wait_s)
        return self._download(request, metadata=self._metadata, timeout=timeout_s)

    def receive(self, key: str, frames: Iterable[InFrame]) -> Downloaded:
        """Assemble a Download's frames; timing starts at this call."""
        start = time.perf_counter()
        assembler = FrameAssembler(max_bytes=self.max_bytes)
        for frame in frames:
            assembler.feed(frame)
        done = assembler.finish()
        seconds = time.perf_counter() - start
        stats = TransferStats(f"dl-{key}", done.payload_bytes, seconds, len(done.tensors))
        return Downloaded(done.tensors, dict(done.meta), stats)

    def infer_stream(self, timeout_s: Optional[float] = None) -> "InferStream":
        return InferStream(self, timeout_s)


@dataclass(frozen=True)
class InferTiming:
    """One Infer round trip on the device's clock, seconds from its start.

    ``sent_s``: the request encoded and its last frame released by the pacer
    to gRPC (the upload at the allocated rate); ``first_reply_s``: the first reply frame
    in; ``total_s``: the reply assembled.
    """

    bytes_up: int
    bytes_down: int
    sent_s: float
    first_reply_s: float
    total_s: float

    @property
    def download_s(self) -> float:
        return self.total_s - self.first_reply_s

    @property
    def wait_s(self) -> float:
        """From the last request frame out to the first reply frame in."""
        return self.first_reply_s - self.sent_s

    def as_stats(self, key: str) -> TransferStats:
        return TransferStats(f"infer-{key}", self.bytes_down, self.download_s, 0)


def _stamped(frames: Iterator[OutFrame], stamps: List[float]) -> Iterator[OutFrame]:
    """Yield ``frames``, noting when the pacer released each (the last one's
    release is when the shaped link has carried the whole request)."""
    for frame in frames:
        stamps.append(time.perf_counter())
        yield frame


class InferStream:
    """One Infer stream: send a request transfer, get its reply transfer.

    Requests are answered in order on the same stream, so a device can run
    many split inferences without reopening the call.
    """

    _CLOSE = object()

    def __init__(self, client: TransferClient, timeout_s: Optional[float]) -> None:
        self._client = client
        self._outgoing: "queue.Queue[object]" = queue.Queue()
        self._responses = client._infer(self._requests(), metadata=client._metadata,
                                             timeout=timeout_s)
        self._lock = threading.Lock()

    def _requests(self) -> Iterator[OutFrame]:
        while True:
            item = self._outgoing.get()
            if item is self._CLOSE:
                return
            yield from item  # type: ignore[misc]

    def call(
        self, key: str, tensors: Mapping[str, torch.Tensor], *, handler: str,
        rate_bps: float = 0.0, meta: Optional[Mapping[str, str]] = None,
    ) -> Tuple[Downloaded, TransferStats]:
        """Send ``tensors`` to server handler ``handler``; block for the reply.

        Returns the reply and the total round-trip stats (bytes both ways).
        """
        got, timing = self.call_timed(key, tensors, handler=handler, rate_bps=rate_bps, meta=meta)
        stats = TransferStats(f"infer-{key}", timing.bytes_up + timing.bytes_down,
                              timing.total_s, len(got.tensors))
        return got, stats

    def call_timed(
        self, key: str, tensors: Mapping[str, torch.Tensor], *, handler: str,
        rate_bps: float = 0.0, meta: Optional[Mapping[str, str]] = None,
    ) -> Tuple[Downloaded, "InferTiming"]:
        """``call``, with the instants the phases of the round trip ended
        (this device's clock): request encoded and paced out, first reply
        frame in, reply assembled."""
        merged = dict(meta or {})
        merged["handler"] = handler
        with self._lock:
            start = time.perf_counter()
            # gRPC's request thread iterates the paced generator, so pacing
            # happens as the frames go out, not before.
            frames, sent = self._client._frames(tensors, key, rate_bps, None, merged)
            sent_at: List[float] = []
            self._outgoing.put(_stamped(frames, sent_at))
            assembler = FrameAssembler(max_bytes=self._client.max_bytes)
            first = next(self._responses)
            first_reply = time.perf_counter()
            assembler.feed(first)
            while not assembler.complete:
                assembler.feed(next(self._responses))
            done = assembler.finish()
            end = time.perf_counter()
        # The server answers only after the last frame: it was released by then.
        sent_s = (sent_at[-1] if sent_at else first_reply) - start
        timing = InferTiming(sent, done.payload_bytes, min(sent_s, first_reply - start),
                             first_reply - start, end - start)
        return Downloaded(done.tensors, dict(done.meta), timing.as_stats(key)), timing

    def close(self) -> None:
        self._outgoing.put(self._CLOSE)
        self._responses.cancel()

