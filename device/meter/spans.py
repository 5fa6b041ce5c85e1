"""Phase spans: time and energy of one phase, handed to a sink as a ``Span``.

Usage::

    recorder = SpanRecorder(meter, device="pi-3", run_id=run_id, sink=spans.append)
    with recorder.phase("upload", round=4) as span:
        n = upload(...)
        span.bytes = n
        span.extra["chunks"] = 12

Timing uses ``time.perf_counter`` (``start_unix_s`` records ``time.time()``
once, to line spans up across hosts). If CUDA is in use the GPU is
synchronized at both boundaries, otherwise queued kernels would be billed to
the next phase. The meter window is opened before the clock starts and
closed after it stops, so the energy covers the whole timed interval.

A phase that raises still produces its span (with ``extra["error"]`` set to
the exception type): a failed upload used time and energy too. A meter
failure does not lose the timing: the span then carries 0 J, provenance
"estimated", ``low_confidence`` and ``extra["meter_error"]``.
"""
import contextlib
import logging
import sys
import time
from typing import Any, Callable, Dict, Iterator, Optional

from edgebed.device.meter.base import EnergyMeasurement, MeterError, PowerMeter
from edgebed.proto.records import Provenance, Span

logger = logging.getLogger(__name__)


def synchronize_accelerators() -> None:
    """Wait for queued CUDA work, if this process has started any.

    torch is looked up, not imported: if nothing imported it, no CUDA work
    can be pending, and importing it would cost a second or more per agent.
    """
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        cuda.synchronize()


class PhaseHandle:
    """What the body of ``SpanRecorder.phase`` may fill in.

    ``bytes``, ``extra`` (and ``run_id``) go into the span; ``span`` is the
    finished ``Span``, set on exit.
    """

    def __init__(self, phase: str, round: int, bytes: int, extra: Dict[str, Any]) -> None:
        self.phase = phase
        self.round = round
        self.bytes = bytes
        self.extra = extra
        self.run_id = ""
        self.span: Optional[Span] = None


class SpanRecorder:
    """Measures phases with ``meter`` and passes each ``Span`` to ``sink``."""

    def __init__(
        self,
        meter: PowerMeter,
        device: str,
        run_id: str,
        sink: Callable[[Span], Any],
        sync: bool = True,
    ) -> None:
        self.meter = meter
        self.device = device
        self.run_id = run_id
        self.sink = sink
        self._sync = synchronize_accelerators if sync else (lambda: None)

    @contextlib.contextmanager
    def phase(self, phase: str, round: int = 0, bytes: int = 0, run_id: Optional[str] = None,
              **extra: Any) -> Iterator[PhaseHandle]:
        """Time and meter the ``with`` body as one span of ``phase``.

        ``run_id`` overrides the recorder's for this span (an agent serves
        many runs); other keywords go to the span's ``extra``.
        """
        handle = PhaseHandle(phase, round, bytes, dict(extra))
        handle.run_id = self.run_id if run_id is None else run_id
        self._sync()
        token = self.meter.begin_window()
        start_unix_s = time.time()
        start_s = time.perf_counter()
        try:
            yield handle
        except BaseException as exc:
            handle.extra.setdefault("error", type(exc).__name__)
            try:
                self._finish(handle, token, start_s, start_unix_s, failed=True)
            except Exception:  # noqa: BLE001 - never mask the phase's own error
                logger.exception("could not record span of failed phase %s", phase)
            raise
        self._finish(handle, token, start_s, start_unix_s, failed=False)

    def _finish(self, handle: PhaseHandle, token: int, start_s: float, start_unix_s: float,
                failed: bool) -> None:
        try:
            self._sync()
        except Exception:  # noqa: BLE001 - after a CUDA error, sync raises it again
            if not failed:
                raise
            logger.debug("synchronize after failed phase %s raised", handle.phase, exc_info=True)
        end_s = time.perf_counter()
        measurement = self._end_window(handle, token)
        handle.span = Span(
            run_id=handle.run_id,
            phase=handle.phase,
            device=self.device,
            start_s=start_s,
            end_s=end_s,
            round=int(handle.round),
            start_unix_s=start_unix_s,
            bytes=int(handle.bytes),
            energy_j=measurement.energy_j,
            power_backend=measurement.power_backend,
            provenance=measurement.provenance,
            low_confidence=measurement.low_confidence,
            extra=dict(handle.extra),
        )
        self.sink(handle.span)

    def _end_window(self, handle: PhaseHandle, token: int) -> EnergyMeasurement:
        try:
            return self.meter.end_window(token)
        except MeterError as exc:
            logger.warning("meter %s failed for phase %s: %s", self.meter.name, handle.phase, exc)
            handle.extra["meter_error"] = str(exc)
            # "null": no energy was measured; extra["meter_error"] names the backend.
            return EnergyMeasurement(0.0, 0.0, "null", Provenance.ESTIMATED, True, 0)
