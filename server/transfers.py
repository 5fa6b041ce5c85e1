"""Where uploaded tensors wait for orchestrators, and offered tensors wait for
devices to download them.

Only complete, validated transfers reach the inbox: a stream that breaks or
fails validation is dropped by the servicer before anything is stored. One
(device, key) holds one upload until it is collected: a second upload there
is refused (ALREADY_EXISTS), so an acknowledged upload is never overwritten.
An upload nobody collects is dropped when its run ends or after the
server's ``retain_s``, never silently: each drop is logged. Offers expire
the same way.
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from edgebed.proto.codec import EncodedTensor, QuantArg, encode_tensors
from edgebed.proto.records import TransferStats
from edgebed.server.errors import DuplicateUpload, NotOffered, UploadTimeout

logger = logging.getLogger(__name__)

ANY_DEVICE = "*"


@dataclass(frozen=True)
class ReceivedTransfer:
    """A validated upload: its tensors and how fast it arrived."""

    device: str
    key: str
    tensors: Dict[str, torch.Tensor]
    meta: Dict[str, str]
    stats: TransferStats


class Inbox:
    """Completed uploads by (device, key), one each until collected."""

    def __init__(self) -> None:
        self._items: Dict[Tuple[str, str], Tuple[ReceivedTransfer, float]] = {}
        self._arrived = asyncio.Condition()

    async def put(self, item: ReceivedTransfer) -> None:
        slot = (item.device, item.key)
        async with self._arrived:
            if slot in self._items:
                raise DuplicateUpload(f"{item.device} already uploaded {item.key!r} and nobody "
                                      "has collected it yet")
            self._items[slot] = (item, time.monotonic())
            self._arrived.notify_all()

    async def get(self, device: str, key: str, timeout_s: Optional[float]) -> ReceivedTransfer:
        slot = (device, key)

        async def wait() -> ReceivedTransfer:
            async with self._arrived:
                await self._arrived.wait_for(lambda: slot in self._items)
                return self._items.pop(slot)[0]

        try:
            return await asyncio.wait_for(wait(), timeout_s)
        except asyncio.TimeoutError:
            raise UploadTimeout(f"no upload {key!r} from {device} within {timeout_s} s") from None

    def pending(self) -> List[Tuple[str, str]]:
        return list(self._items)

    def _drop(self, slots: List[Tuple[str, str]], why: str) -> int:
        for slot in slots:
            item, _ = self._items.pop(slot)
            logger.warning("dropped %s's upload %s (%d bytes, acknowledged, never collected): %s",
                           slot[0], slot[1], item.stats.bytes, why)
        return len(slots)

    def discard_prefix(self, prefix: str) -> int:
        """Drop uploads nobody will collect (late ones of a finished run), saying so."""
        return self._drop([s for s in self._items if s[1].startswith(prefix)],
                          f"its run ({prefix}) has ended")

    def expire(self, older_than_s: float) -> int:
        """Drop uploads that waited longer than ``older_than_s``, saying so."""
        now = time.monotonic()
        return self._drop([s for s, (_, at) in self._items.items() if now - at > older_than_s],
                          f"kept for over {older_than_s:.0f} s")


@dataclass
class Offer:
    """Tensors encoded once, downloadable by one device or by all."""

    key: str
    encoded: Sequence[EncodedTensor]
    # One rate for every device, a rate per device, or None: each device's
    # downlink setting. Per-device rates let one encoding serve a broadcast.
    rate_bps: Union[None, float, Mapping[str, float]] = None
    meta: Dict[str, str] = field(default_factory=dict)
    offered_monotonic_s: float = field(default_factory=time.monotonic)

    @property
    def payload_bytes(self) -> int:
        return sum(e.header.payload_bytes for e in self.encoded)

    def rate_for(self, device: str) -> Optional[float]:
        if isinstance(self.rate_bps, Mapping):
            return self.rate_bps.get(device)
        return self.rate_bps


class Outbox:
    """Offered downloads by (device or ANY_DEVICE, key).

    A device may ask for a key before it is offered and wait for it: that is
    how agents sit idle (and measure their idle energy) while the server
    trains the model they will download.
    """

    def __init__(self) -> None:
        self._offers: Dict[Tuple[str, str], Offer] = {}
        self._offered = asyncio.Condition()

    def offer(
        self,
        key: str,
        tensors: Mapping[str, torch.Tensor],
        *,
        device: str = ANY_DEVICE,
        rate_bps: Union[None, float, Mapping[str, float]] = None,
        quant: QuantArg = None,
        meta: Optional[Mapping[str, str]] = None,
    ) -> Offer:
        if not tensors:
            raise ValueError(f"offer {key!r} has no tensors")
        encoded = encode_tensors(tensors, quant)
        offer = Offer(key, encoded, rate_bps, dict(meta or {}))
        self._offers[(device, key)] = offer
        logger.debug("offered %s to %s (%d bytes)", key, device, offer.payload_bytes)
        asyncio.get_running_loop().create_task(self._notify())
        return offer

    async def _notify(self) -> None:
        async with self._offered:
            self._offered.notify_all()

    def withdraw_prefix(self, prefix: str) -> int:
        """Drop every offer whose key starts with ``prefix`` (a finished run's)."""
        stale = [slot for slot in self._offers if slot[1].startswith(prefix)]
        for slot in stale:
            del self._offers[slot]
        return len(stale)

    def expire(self, older_than_s: float) -> int:
        """Drop offers older than ``older_than_s`` (of runs that never closed)."""
        now = time.monotonic()
        stale = [slot for slot, offer in self._offers.items()
                 if now - offer.offered_monotonic_s > older_than_s]
        for slot in stale:
            logger.info("withdrew the offer %s to %s: kept for over %.0f s", slot[1], slot[0],
                        older_than_s)
            del self._offers[slot]
        return len(stale)

    def _lookup(self, device: str, key: str) -> Optional[Offer]:
        return self._offers.get((device, key)) or self._offers.get((ANY_DEVICE, key))

    def find(self, device: str, key: str) -> Offer:
        offer = self._lookup(device, key)
        if offer is None:
            raise NotOffered(f"nothing offered under {key!r} for {device}")
        return offer

    async def wait_for(self, device: str, key: str, timeout_s: float) -> Offer:
        """The offer for ``key``, waiting up to ``timeout_s`` for it to appear."""
        if timeout_s <= 0:
            return self.find(device, key)

        async def wait() -> Offer:
            async with self._offered:
                await self._offered.wait_for(lambda: self._lookup(device, key) is not None)
                return self.find(device, key)

        try:
            return await asyncio.wait_for(wait(), timeout_s)
        except asyncio.TimeoutError:
            raise NotOffered(
                f"nothing offered under {key!r} for {device} within {timeout_s} s") from None
