"""Where uploaded tensors wait for orchestrators, and offered tensors wait for
devices to download them.

Only complete, validated transfers reach the inbox: a stream that breaks or
fails validation is dropped by the servicer before anything is stored.
"""
import asyncio
import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from edgebed.proto.codec import EncodedTensor, QuantArg, encode_tensors
from edgebed.proto.records import TransferStats
from edgebed.server.errors import NotOffered, UploadTimeout

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
    """Completed uploads by (device, key), in arrival order."""

    def __init__(self) -> None:
        self._items: Dict[Tuple[str, str], Deque[ReceivedTransfer]] = defaultdict(deque)
        self._arrived = asyncio.Condition()

    async def put(self, item: ReceivedTransfer) -> None:
        async with self._arrived:
            self._items[(item.device, item.key)].append(item)
            self._arrived.notify_all()

    async def get(self, device: str, key: str, timeout_s: Optional[float]) -> ReceivedTransfer:
        slot = (device, key)

        async def wait() -> ReceivedTransfer:
            async with self._arrived:
                await self._arrived.wait_for(lambda: bool(self._items.get(slot)))
                return self._items[slot].popleft()

        try:
            return await asyncio.wait_for(wait(), timeout_s)
        except asyncio.TimeoutError:
            raise UploadTimeout(f"no upload {key!r} from {device} within {timeout_s} s") from None

    def pending(self) -> List[Tuple[str, str]]:
        return [slot for slot, items in self._items.items() if items]

    def discard_prefix(self, prefix: str) -> int:
        """Drop uploads nobody will collect (late ones of a finished run)."""
        stale = [slot for slot in self._items if slot[1].startswith(prefix)]
        for slot in stale:
            del self._items[slot]
        return len(stale)


@dataclass
class Offer:
    """Tensors encoded once, downloadable by one device or by all."""

    key: str
    encoded: Sequence[EncodedTensor]
    # One rate for every device, a rate per device, or None: each device's
    # downlink setting. Per-device rates let one encoding serve a broadcast.
    rate_bps: Union[None, float, Mapping[str, float]] = None
    meta: Dict[str, str] = field(default_factory=dict)

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
