"""Sender-side link shaping, checked against an injected fake clock only."""
import asyncio
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebed.proto.codec import MAX_CHUNK_BYTES, decode_transfer, encode_transfer
from edgebed.proto.shaping import (
    MIN_CHUNK_BYTES,
    TokenBucket,
    apace_frames,
    chunk_bytes_for_rate,
    pace_frames,
)

TOL_S = 1e-6


class FakeClock:
    """Deterministic time: only sleeps (and explicit stalls) advance it."""

    def __init__(self, oversleep_s=0.0, undersleep=1.0):
        self.now = 0.0
        self.sleeps = []
        self.oversleep_s = oversleep_s
        self.undersleep = undersleep  # fraction of each sleep actually slept

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds * self.undersleep + self.oversleep_s

    async def asleep(self, seconds):
        self.sleep(seconds)


def frame(nbytes):
    return SimpleNamespace(data=b"\0" * nbytes)


def run_paced(frames, rate_bps, clock, stalls=None, **kw):
    """Consume paced frames; return (elapsed, bytes) at each release."""
    marks, sent = [], 0
    for i, f in enumerate(pace_frames(frames, rate_bps, clock=clock, sleep=clock.sleep, **kw)):
        sent += len(f.data)
        marks.append((clock.now, sent))
        if stalls:
            clock.now += stalls[i % len(stalls)]
    return marks


def never_ahead(marks, rate_bps):
    """Bytes released by t never exceed rate * t (to the pacer's 1 ns resolution)."""
    return all(sent * 8 <= rate_bps * (t + 2e-9) * (1 + 1e-12) for t, sent in marks)


# ---------------------------------------------------------------- chunk size

@pytest.mark.parametrize("rate, chunk", [
    (0, MAX_CHUNK_BYTES), (None, MAX_CHUNK_BYTES), (8e6, 20_000), (1e3, MIN_CHUNK_BYTES),
    (1e12, MAX_CHUNK_BYTES), (8 * 4096 / 0.02, 4096), (1e8, 250_000),
])
def test_chunk_bytes_for_rate(rate, chunk):
    assert chunk_bytes_for_rate(rate) == chunk


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "-3"])
def test_bad_rates_are_value_errors(bad):
    with pytest.raises(ValueError, match="rate_bps"):
        chunk_bytes_for_rate(bad)
    with pytest.raises(ValueError, match="rate_bps"):
        pace_frames([], bad)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="rate_bps"):
        apace_frames([], bad)


# ---------------------------------------------------------------- bucket

def test_bucket_starts_empty():
    clock = FakeClock()
    bucket = TokenBucket(8000, burst_bytes=10_000, clock=clock)
    assert bucket.delay_for(1000) == pytest.approx(1.0)  # 1000 B at 1000 B/s
    assert bucket.delay_for(500) == pytest.approx(1.5)  # queued behind the first
    clock.now = 1.5
    assert bucket.pending_s() == 0.0


def test_bucket_credit_is_capped_by_burst():
    clock = FakeClock()
    bucket = TokenBucket(8000, burst_bytes=300, clock=clock)
    clock.now = 100.0  # long idle: only 300 B of credit survive
    assert bucket.delay_for(300) == 0.0
    assert bucket.delay_for(1000) == pytest.approx(1.0)


def test_bucket_validation():
    for bad_rate in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            TokenBucket(bad_rate, 100)
    with pytest.raises(ValueError, match="burst_bytes"):
        TokenBucket(1e6, -1)
    with pytest.raises(ValueError, match="nbytes"):
        TokenBucket(1e6, 0, clock=FakeClock()).delay_for(-1)


# ---------------------------------------------------------------- pacing

def test_unshaped_is_passthrough():
    frames = [frame(10), frame(20)]
    clock = FakeClock()
    for rate in (0, 0.0, None):
        out = list(pace_frames(iter(frames), rate, clock=clock, sleep=clock.sleep))
        assert all(a is b for a, b in zip(out, frames)) and len(out) == 2
    assert clock.sleeps == []


def test_paced_codec_transfer_takes_n_times_8_over_rate():
    rate = 8e6  # 1 MB/s
    tensor = torch.arange(1_250_000, dtype=torch.float32)  # 5 MB
    frames = encode_transfer({"x": tensor}, device_id="d", key="k", rate_bps=rate,
                             chunk_bytes=chunk_bytes_for_rate(rate))
    clock = FakeClock()
    released, marks = [], []
    for f in pace_frames(frames, rate, clock=clock, sleep=clock.sleep):
        released.append(f)
        marks.append((clock.now, sum(len(r.data) for r in released)))
    assert marks[-1][1] == 5_000_000
    assert clock.now == pytest.approx(5.0, abs=TOL_S)
    assert never_ahead(marks, rate)
    # Smooth: every 20 ms chunk is released 20 ms after the previous one.
    gaps = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    assert max(gaps) == pytest.approx(0.02, abs=TOL_S)
    assert torch.equal(decode_transfer(released).tensors["x"], tensor)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 50_000), min_size=1, max_size=40),
       st.floats(1e3, 1e9), st.lists(st.floats(0, 0.5), max_size=5))
def test_never_ahead_of_rate_and_exact_without_stalls(sizes, rate, stalls):
    clock = FakeClock()
    marks = run_paced([frame(n) for n in sizes], rate, clock, stalls=stalls)
    assert never_ahead(marks, rate)
    if not any(stalls):
        assert marks[-1][0] == pytest.approx(sum(sizes) * 8 / rate, rel=1e-9, abs=TOL_S)


def test_stall_credit_is_capped_at_burst():
    rate, chunk = 8e5, 10_000  # 100 kB/s, 0.1 s per chunk
    clock = FakeClock()
    stalls = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # the consumer stalls 1 s after frame 2
    marks = run_paced([frame(chunk)] * 6, rate, clock, stalls=stalls, burst_bytes=chunk)
    times = [t for t, _ in marks]
    assert times[:3] == pytest.approx([0.1, 0.2, 0.3])
    # After the stall (t = 1.3) one chunk of credit goes at once, then the
    # rate resumes; the idle second is not made up with a burst.
    assert times[3:] == pytest.approx([1.3, 1.4, 1.5])
    assert never_ahead(marks, rate)


def test_oversleeping_is_compensated_by_burst_credit():
    rate = 8e6
    clock = FakeClock(oversleep_s=0.001)  # every sleep ends 1 ms late
    chunk = chunk_bytes_for_rate(rate)
    marks = run_paced([frame(chunk)] * 250, rate, clock)  # 5 MB, ideal 5 s
    assert never_ahead(marks, rate)
    assert clock.now <= 5.0 + 0.002  # lateness does not accumulate


def test_early_wakeups_sleep_again():
    rate = 8e4
    clock = FakeClock(undersleep=0.5)
    marks = run_paced([frame(1000)] * 10, rate, clock)
    assert never_ahead(marks, rate)
    assert clock.now == pytest.approx(1.0, abs=1e-3)


def test_header_only_frames_are_not_delayed():
    clock = FakeClock()
    marks = run_paced([frame(0), frame(0), frame(1000), frame(0)], 8000, clock)
    assert [t for t, _ in marks] == pytest.approx([0.0, 0.0, 1.0, 1.0])


# ---------------------------------------------------------------- async

def collect_async(agen, clock):
    async def run():
        marks, sent = [], 0
        async for f in agen:
            sent += len(f.data)
            marks.append((clock.now, sent))
        return marks
    return asyncio.run(run())


def test_async_pacing_matches_sync():
    rate, sizes = 8e5, [3000, 0, 7000, 12_345, 1]
    clock = FakeClock()
    marks = collect_async(apace_frames([frame(n) for n in sizes], rate, clock=clock,
                                       sleep=clock.asleep), clock)
    sync_clock = FakeClock()
    expected = run_paced([frame(n) for n in sizes], rate, sync_clock)
    assert [sent for _, sent in marks] == [sent for _, sent in expected]
    assert [t for t, _ in marks] == pytest.approx([t for t, _ in expected])
    assert never_ahead(marks, rate)
    assert clock.now == pytest.approx(sum(sizes) * 8 / rate)


def test_async_source_and_unshaped():
    async def source():
        for n in (100, 200):
            yield frame(n)

    clock = FakeClock()
    marks = collect_async(apace_frames(source(), 8000, clock=clock, sleep=clock.asleep), clock)
    assert [t for t, _ in marks] == pytest.approx([0.1, 0.3])
    marks = collect_async(apace_frames(source(), 0, clock=clock, sleep=clock.asleep), clock)
    assert [s for _, s in marks] == [100, 300] and math.isclose(clock.now, 0.3)
