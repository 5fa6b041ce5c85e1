"""Spans measured on the edge server itself (it is a node whose power counts).

The server uses the device package's meters and nothing else from it.
"""
import logging
from typing import Optional

from edgebed.device.meter.base import MeterError, PowerMeter
from edgebed.device.meter.factory import make_meter
from edgebed.device.meter.null import NullMeter
from edgebed.device.meter.spans import SpanRecorder

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


def measured_span(server, run_id: str, phase: str, round: int = 0, **extra):
    """Time and meter a server phase with the same recorder the agents use;
    the span goes to the server's sinks. The yielded handle's ``span`` is
    set when the block ends."""
    recorder = SpanRecorder(server_meter(), SERVER_DEVICE, run_id, server.record_span)
    return recorder.phase(phase, round=round, **extra)
