"""Spans measured on the edge server itself (it is a node whose power counts).

The server uses the device package's meters and nothing else from it.
"""
import contextlib
import logging
import time
from typing import Iterator, Optional

from edgebed.device.meter.base import MeterError, PowerMeter
from edgebed.device.meter.factory import make_meter
from edgebed.device.meter.null import NullMeter
from edgebed.proto.records import Span

logger = logging.getLogger(__name__)

SERVER_DEVICE = "edge-server"
_meter: Optional[PowerMeter] = None


def server_meter() -> PowerMeter:
    """The server's meter, chosen once; the null meter, said out loud, if none works."""
    global _meter
    if _meter is None:
        try:
            _meter = make_meter("auto")
        except MeterError as exc:
            logger.warning("no power meter on the edge server (%s); its spans carry "
                           "timing only", exc)
            _meter = NullMeter()
    return _meter


class _Handle:
    span: Optional[Span] = None

    @property
    def duration_s(self) -> float:
        assert self.span is not None, "read after the with block"
        return self.span.duration_s


@contextlib.contextmanager
def measured_span(server, run_id: str, phase: str, **extra) -> Iterator[_Handle]:
    """Time and meter a server phase; the span goes to the server's sinks."""
    meter = server_meter()
    handle = _Handle()
    token = meter.begin_window()
    start_unix = time.time()
    start = time.perf_counter()
    try:
        yield handle
    finally:
        end = time.perf_counter()
        energy = meter.end_window(token)
        handle.span = Span(run_id=run_id, phase=phase, device=SERVER_DEVICE, start_s=start,
                           end_s=end, start_unix_s=start_unix, energy_j=energy.energy_j,
                           power_backend=energy.power_backend, provenance=energy.provenance,
                           low_confidence=energy.low_confidence, extra=dict(extra))
        server.record_span(handle.span)
