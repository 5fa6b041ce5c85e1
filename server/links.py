"""Measured links: each device's uplink and downlink capacity, and its RTT.

Three numbers per direction, never confused:

- the measured **capacity** (this module: real transfers, unshaped, before
  a run uses the device);
- the **allocated** rate (a solver's decision, never above the capacity);
- an optional **emulated** rate (the agent paces to its ``--link`` when the
  user asked for an emulated link).

A probe moves real tensors through the same Upload and Download RPCs the
workloads use, doubling the size from 256 KiB until one transfer lasts at
least ``min_transfer_s`` (so TCP's start and one round trip are a small
part of it) or ``max_bytes`` is reached; the capacity is the rate of that
last transfer, on the receiving side's clock for downloads and on the
device's clock (first byte out to the server's acknowledgement) for uploads.
The RTT is the median round trip of a few ``runtime.ping`` commands over the
device's Session stream (a command's dispatch on the agent included).
Measurements are cached for ``ttl_s`` and labelled measured.
"""
import logging
import math
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import torch

from edgebed.proto.contracts import runtime as rt
from edgebed.proto.records import Provenance

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class LinkMeasurement:
    up_capacity_bps: float
    down_capacity_bps: float
    rtt_ms: float
    measured_unix_s: float
    up_bytes: int                 # the transfer each capacity comes from
    down_bytes: int
    provenance: str = Provenance.MEASURED

    def summary(self) -> Dict[str, object]:
        """What every testbed summary records per device under ``links``."""
        return {"up_capacity_bps": self.up_capacity_bps,
                "down_capacity_bps": self.down_capacity_bps,
                "rtt_ms": self.rtt_ms, "provenance": self.provenance}


class LinkBook:
    """The server's cache of measured links, fresh for ``ttl_s``."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._links: Dict[str, LinkMeasurement] = {}

    def get(self, device: str) -> Optional[LinkMeasurement]:
        return self._links.get(device)

    def fresh(self, device: str) -> Optional[LinkMeasurement]:
        link = self._links.get(device)
        if link is None or time.time() - link.measured_unix_s > self.ttl_s:
            return None
        return link

    def put(self, device: str, link: LinkMeasurement) -> None:
        self._links[device] = link

    def forget(self, device: str) -> None:
        """A device that registered again may sit behind another link now."""
        self._links.pop(device, None)


@dataclass(frozen=True)
class ProbeConfig:
    min_transfer_s: float = 1.0   # the measured transfer lasts at least this long
    first_bytes: int = 256 * 1024
    max_bytes: int = 64 * MIB
    pings: int = 5
    timeout_s: float = 60.0


async def _rtt_ms(server, device: str, config: ProbeConfig) -> float:
    trips = []
    for _ in range(config.pings):
        start = time.perf_counter()
        await server.call(device, rt.PING, rt.PingIns(), config.timeout_s)
        trips.append(time.perf_counter() - start)
    return 1e3 * statistics.median(trips)


async def _grow(transfer, config: ProbeConfig) -> Tuple[float, int]:
    """Double the size until one transfer lasts ``min_transfer_s``; the rate
    and size of the last one."""
    size = config.first_bytes
    while True:
        seconds = await transfer(size)
        if seconds >= config.min_transfer_s or size >= config.max_bytes:
            return 8.0 * size / seconds, size
        # Jump close to the target once a transfer was long enough to be telling.
        grow = 2 if seconds < 0.05 else max(2, math.ceil(config.min_transfer_s / seconds))
        size = min(config.max_bytes, size * grow)


async def probe_link(server, device: str, config: ProbeConfig = ProbeConfig()) -> LinkMeasurement:
    """Measure ``device``'s link with real transfers (a few seconds at most)."""
    keys = rt.RuntimeKeys(f"probe-{uuid.uuid4().hex[:8]}")
    rtt = await _rtt_ms(server, device, config)

    async def upload(size: int) -> float:
        key = keys.upload(device, str(size))
        result = await server.call(device, rt.UPLOAD, rt.UploadIns(
            run_id=keys.run_id, key=key, size_bytes=size, uplink_bps=0.0), config.timeout_s)
        await server.receive(device, key, config.timeout_s)  # and drop it
        return result.seconds

    async def download(size: int) -> float:
        key = keys.download(str(size))
        blob = torch.zeros(size // 4, dtype=torch.float32)
        server.offer(key, {"x": blob}, device=device, rate_bps=0.0)  # unshaped
        try:
            result = await server.call(device, rt.DOWNLOAD, rt.DownloadIns(
                run_id=keys.run_id, key=key), config.timeout_s)
        finally:
            server.forget(key)
        return result.seconds

    try:
        up_bps, up_bytes = await _grow(upload, config)
        down_bps, down_bytes = await _grow(download, config)
    finally:
        server.forget(keys.prefix)
    link = LinkMeasurement(up_bps, down_bps, rtt, time.time(), up_bytes, down_bytes)
    logger.info("%s: link measured: up %.2f Mbit/s, down %.2f Mbit/s, rtt %.2f ms", device,
                up_bps / 1e6, down_bps / 1e6, rtt)
    return link


async def measure_links(server, devices: Iterable[str],
                        config: ProbeConfig = ProbeConfig()) -> Dict[str, LinkMeasurement]:
    """Every device's link, measured now unless the server's cache is fresh.

    One device at a time: the server's own link is shared, and two probes at
    once would each see half of it.
    """
    out = {}
    for device in devices:
        link = server.links.fresh(device)
        if link is None:
            link = await probe_link(server, device, config)
            server.links.put(device, link)
        out[device] = link
    return out


def rate_bounds(server, device: str) -> Tuple[float, float]:
    """The most a solver may allocate to ``device``, up and down: its measured
    capacity and, when the agent emulates a link, that link's rates (inf where
    nothing bounds it)."""
    link, emulated = server.links.get(device), server.link(device)
    up = [r for r in (link.up_capacity_bps if link else 0.0, emulated.uplink_bps) if r > 0]
    down = [r for r in (link.down_capacity_bps if link else 0.0, emulated.downlink_bps) if r > 0]
    return min(up, default=math.inf), min(down, default=math.inf)
