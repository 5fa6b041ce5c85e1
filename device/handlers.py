"""Command handlers: a registry the agent loop dispatches into.

Each workload registers its handlers against its contract's ``CommandSpec``
(``@registry.command(tl.PREPARE)``) without touching the agent loop. A
handler is a plain function ``fn(ctx, request) -> result`` run in a worker
thread: the request is already the contract's typed record (unknown, missing
or mistyped arguments never reach it: the device answers with an error that
names the key and the command), and its result record goes back as JSON.
It moves tensors through ``ctx.transfers``, records measured phases with
``ctx.phase(...)`` and keeps state across commands in ``ctx.state``.
"""
import itertools
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from edgebed import EdgebedError
from edgebed.proto.contracts.base import CommandSpec, PhaseSummary

if TYPE_CHECKING:  # annotations only: the agent builds both
    from edgebed.device.meter.spans import SpanRecorder
    from edgebed.device.transfer_client import TransferClient

logger = logging.getLogger(__name__)

Handler = Callable[["HandlerContext", Any], Any]


class UnknownCommand(EdgebedError, ValueError):
    """The server asked for a handler this agent does not have."""


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: Dict[str, Tuple[CommandSpec, Handler]] = {}

    def command(self, spec: CommandSpec):
        """Decorator: ``@registry.command(feel.ROUND)`` serves that command."""

        def add(fn: Handler) -> Handler:
            self.add(spec, fn)
            return fn

        return add

    def add(self, spec: CommandSpec, fn: Handler) -> None:
        if spec.kind in self._handlers:
            raise ValueError(f"a handler for {spec.kind!r} is already registered")
        self._handlers[spec.kind] = (spec, fn)

    def update(self, other: "HandlerRegistry") -> None:
        for spec, fn in other._handlers.values():
            self.add(spec, fn)

    def run(self, ctx: "HandlerContext", kind: str, args: Mapping[str, Any]) -> Dict[str, Any]:
        """Decode ``args`` by the contract (ContractError names a bad key), run
        the handler, encode its result."""
        try:
            spec, fn = self._handlers[kind]
        except KeyError:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise UnknownCommand(f"no handler for command {kind!r} (known: {known})") from None
        return spec.encode_result(fn(ctx, spec.decode_request(args)))


def span_summary(handle) -> PhaseSummary:
    """What a handler reports of a finished phase (the handle of ``ctx.phase``)."""
    record = handle.span
    return PhaseSummary(seconds=record.duration_s, energy_j=record.energy_j,
                        provenance=record.provenance, power_backend=record.power_backend)


class HandlerContext:
    """What a handler may use: identity, transfers, spans, state. Rates come
    with each command (its contract's ``uplink_bps``), never from here."""

    def __init__(self, name: str, recorder: "SpanRecorder",
                 transfers: "Optional[TransferClient]") -> None:
        self.name = name
        self.recorder = recorder
        self.transfers = transfers
        self.state: Dict[str, Any] = {}

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
