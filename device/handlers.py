"""Command handlers: a registry the agent loop dispatches into.

Each workload adds its handlers to a ``HandlerRegistry`` without touching the
agent loop. A handler is a plain function ``fn(ctx, args) -> dict`` run in a
worker thread; it moves tensors through ``ctx.transfers``, records measured
phases with ``ctx.phase(...)`` and keeps state across commands in
``ctx.state``.
"""
import itertools
import logging
import threading
from typing import Any, Callable, Dict, Iterator, Optional

from edgebed import EdgebedError
from edgebed.proto.records import LinkProfile

logger = logging.getLogger(__name__)

Handler = Callable[["HandlerContext", Dict[str, Any]], Dict[str, Any]]


class UnknownCommand(EdgebedError, ValueError):
    """The server asked for a handler this agent does not have."""


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: Dict[str, Handler] = {}

    def register(self, kind: str, handler: Optional[Handler] = None):
        """``registry.register("ping", fn)`` or as a decorator ``@registry.register("ping")``."""

        def add(fn: Handler) -> Handler:
            if kind in self._handlers:
                raise ValueError(f"a handler for {kind!r} is already registered")
            self._handlers[kind] = fn
            return fn

        return add(handler) if handler is not None else add

    def update(self, other: "HandlerRegistry") -> None:
        for kind, fn in other._handlers.items():
            self.register(kind, fn)

    def get(self, kind: str) -> Handler:
        try:
            return self._handlers[kind]
        except KeyError:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise UnknownCommand(f"no handler for command {kind!r} (known: {known})") from None


def span_summary(handle) -> Dict[str, Any]:
    """What a handler reports of a finished phase (the handle of ``ctx.phase``)."""
    record = handle.span
    return {"seconds": record.duration_s, "energy_j": record.energy_j,
            "provenance": record.provenance, "power_backend": record.power_backend}


class HandlerContext:
    """What a handler may use: identity, link, transfers, spans, state."""

    def __init__(self, name: str, recorder, transfers, link: LinkProfile) -> None:
        self.name = name
        self.recorder = recorder  # edgebed.device.meter.spans.SpanRecorder
        self.transfers = transfers  # edgebed.device.transfer_client.TransferClient
        self._link = link
        self._lock = threading.Lock()
        self.state: Dict[str, Any] = {}

    @property
    def link(self) -> LinkProfile:
        with self._lock:
            return self._link

    def set_link(self, link: LinkProfile) -> None:
        with self._lock:
            self._link = link

    def uplink_bps(self, args: Dict[str, Any]) -> float:
        """The rate for an upload: the command's ``rate_bps`` or the link default."""
        rate = args.get("rate_bps")
        return float(rate) if rate is not None else self.link.uplink_bps

    def download_after_wait(self, key: str, wait_phase: str, wait_s: float, **phase_args):
        """Wait in a measured phase until the server offers ``key``, then
        download it in a measured "download" phase.

        Returns ``(downloaded, wait_handle, download_handle)``. The first frame
        ends the wait, so the wait phase is the device idling for the server.
        """
        frames = self.transfers.open_download(key, wait_s=wait_s)
        with self.phase(wait_phase, **phase_args) as wait:
            first = next(frames)
        with self.phase("download", **phase_args) as down:
            got = self.transfers.receive(key, itertools.chain([first], frames))
            down.bytes = got.stats.bytes
        return got, wait, down

    def phase(self, phase: str, round: int = 0, **extra) -> Iterator[Any]:
        """Context manager around a measured phase; see SpanRecorder.phase."""
        return self.recorder.phase(phase, round=round, **extra)
