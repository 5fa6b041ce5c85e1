"""Link shaping by the sender: pace transfer frames to an allocated rate.

The rate counts only the ``data`` payload bytes of each frame. Headers,
protobuf and gRPC framing, HTTP/2 and TCP/IP overhead are not counted, so
``rate_bps`` is the tensor-payload goodput the solver allocated and the
achieved rate in ``TransferStats`` is directly comparable to it.

Pacing follows a token bucket that starts empty: a chunk is released only
once the link "has carried" it, so ``N`` bytes take ``N * 8 / rate`` seconds
and the cumulative bytes released never get ahead of ``rate * elapsed``
(elapsed from the first frame requested; to 1 ns, below which a remaining
wait is float rounding). The bucket keeps at most
``burst_bytes`` of unused credit, so a sender stalled by the transport
catches up by at most that much instead of bursting, as a real link would.

Pacing granularity is the chunk: at low rates 1 MiB chunks would make a
few-MB transfer a handful of visible steps, so senders frame with
``chunk_bytes_for_rate(rate)`` (about 20 ms of link time per chunk).
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

__all__ = [
    "MAX_CHUNK_BYTES",
    "MIN_CHUNK_BYTES",
    "PACING_QUANTUM_S",
    "TokenBucket",
    "apace_frames",
    "check_rate_bps",
    "chunk_bytes_for_rate",
    "pace_frames",
]

# The wire's cap on one frame's data (edge.proto). Defined here, where the
# chunk size is chosen, so this module needs no torch; codec re-exports it.
MAX_CHUNK_BYTES = 1 << 20
MIN_CHUNK_BYTES = 4 << 10
PACING_QUANTUM_S = 0.020  # link time per chunk when pacing
# Debt below this is float rounding after an exact sleep, not a real wait.
_EPS_S = 1e-9

Clock = Callable[[], float]


def check_rate_bps(rate_bps: float | None) -> float:
    """Validated rate in bit/s; None and 0 mean unshaped (returns 0.0)."""
    if rate_bps is None:
        return 0.0
    rate = float(rate_bps)
    if math.isnan(rate) or rate < 0 or math.isinf(rate):
        raise ValueError(f"rate_bps must be finite and >= 0 (0 = unshaped), got {rate_bps!r}")
    return rate


def chunk_bytes_for_rate(rate_bps: float | None) -> int:
    """Chunk size for a paced transfer: the bytes of ~20 ms at ``rate_bps``,
    clamped to [4 KiB, 1 MiB]; 1 MiB when unshaped."""
    rate = check_rate_bps(rate_bps)
    if rate == 0.0:
        return MAX_CHUNK_BYTES
    return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, rate / 8.0 * PACING_QUANTUM_S)))


class TokenBucket:
    """Byte credit refilled at ``rate_bps / 8`` per second, capped at
    ``burst_bytes``, starting empty. Consuming may drive it negative (debt);
    the caller waits the debt off. ``clock`` is injectable for tests.
    """

    def __init__(
        self, rate_bps: float, burst_bytes: float = 0.0, *, clock: Clock | None = None
    ) -> None:
        rate = check_rate_bps(rate_bps)
        if rate == 0.0:
            raise ValueError("a token bucket needs rate_bps > 0 (leave 0 = unshaped unpaced)")
        burst = float(burst_bytes)
        if math.isnan(burst) or burst < 0 or math.isinf(burst):
            raise ValueError(f"burst_bytes must be finite and >= 0, got {burst_bytes!r}")
        self.rate_bps = rate
        self.burst_bytes = burst
        self._byte_rate = rate / 8.0
        self._clock = clock or time.perf_counter
        self._tokens = 0.0
        self._last = self._clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._last:
            credit = self._tokens + (now - self._last) * self._byte_rate
            self._tokens = min(self.burst_bytes, credit)
            self._last = now

    def delay_for(self, nbytes: int) -> float:
        """Consume ``nbytes`` and return the seconds to wait before sending them."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._refill()
        self._tokens -= nbytes
        return self._debt_s()

    def pending_s(self) -> float:
        """Seconds until the bytes already consumed may go (0 if they may now)."""
        self._refill()
        return self._debt_s()

    def _debt_s(self) -> float:
        wait = -self._tokens / self._byte_rate
        return wait if wait > _EPS_S else 0.0


def _data_len(frame) -> int:
    # Reads the data field once (upb copies bytes fields on every access).
    return len(frame.data)


def _bucket(rate: float, burst_bytes: float | None, clock: Clock | None) -> TokenBucket:
    burst = chunk_bytes_for_rate(rate) if burst_bytes is None else burst_bytes
    return TokenBucket(rate, burst, clock=clock)


def pace_frames(
    frames: Iterable,
    rate_bps: float | None,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
    burst_bytes: float | None = None,
) -> Iterator:
    """Yield ``frames`` no faster than ``rate_bps`` (``data`` bytes only).

    Sleeps before each frame until the link has carried it. ``rate_bps`` 0
    or None passes frames through untouched. ``burst_bytes`` (default: one
    chunk at this rate) caps credit saved while the consumer was slow.
    """
    rate = check_rate_bps(rate_bps)
    if rate == 0.0:
        return iter(frames)
    return _pace(frames, rate, clock, sleep or time.sleep, burst_bytes)


def _pace(frames, rate, clock, sleep, burst_bytes) -> Iterator:
    bucket = _bucket(rate, burst_bytes, clock)  # created at the first next()
    for frame in frames:
        wait = bucket.delay_for(_data_len(frame))
        while wait > 0.0:  # re-check: a sleep may end early
            sleep(wait)
            wait = bucket.pending_s()
        yield frame


def apace_frames(
    frames: Iterable | AsyncIterable,
    rate_bps: float | None,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    burst_bytes: float | None = None,
) -> AsyncIterator:
    """Async :func:`pace_frames` for grpc.aio: awaits ``asyncio.sleep``.

    ``frames`` may be a sync or an async iterable.
    """
    rate = check_rate_bps(rate_bps)
    return _apace(frames, rate, clock, sleep or asyncio.sleep, burst_bytes)


async def _apace(frames, rate, clock, sleep, burst_bytes) -> AsyncIterator:
    bucket = _bucket(rate, burst_bytes, clock) if rate else None
    if hasattr(frames, "__aiter__"):
        async for frame in frames:
            if bucket is not None:
                await _await_credit(bucket, _data_len(frame), sleep)
            yield frame
    else:
        for frame in frames:
            if bucket is not None:
                await _await_credit(bucket, _data_len(frame), sleep)
            yield frame


async def _await_credit(bucket: TokenBucket, nbytes: int, sleep) -> None:
    wait = bucket.delay_for(nbytes)
    while wait > 0.0:
        await sleep(wait)
        wait = bucket.pending_s()
