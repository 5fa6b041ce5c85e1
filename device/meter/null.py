"""The explicit empty meter: timing without energy.

Used only when asked for by name (``make_meter("null")``), e.g. for emulated
devices whose energy comes from a formula elsewhere, or to turn metering off.
The factory never falls back to it silently.

Labelling: a null meter measures nothing, but the span record accepts only
measured / estimated / modeled. "measured" would claim a sensor read 0 J,
which is false. So the null meter reports ``provenance="estimated"`` (a
placeholder estimate of zero) together with ``power_backend="null"`` and
``low_confidence=True``; consumers that aggregate energy must filter on the
backend name, and the low-confidence flag keeps zeros out of default plots.
"""
import itertools
import threading
import time
from typing import Callable, Dict

from edgebed.device.meter.base import EnergyMeasurement, PowerMeter, unknown_token
from edgebed.proto.records import Provenance


class NullMeter(PowerMeter):
    """Times windows and reports 0 J."""

    name = "null"
    provenance = Provenance.ESTIMATED

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._windows: Dict[int, float] = {}

    def begin_window(self) -> int:
        with self._lock:
            token = next(self._tokens)
            self._windows[token] = self._clock()
        return token

    def end_window(self, token: int) -> EnergyMeasurement:
        with self._lock:
            try:
                t0 = self._windows.pop(token)
            except KeyError:
                raise unknown_token(token) from None
        return EnergyMeasurement(
            energy_j=0.0,
            duration_s=max(self._clock() - t0, 0.0),
            power_backend=self.name,
            provenance=self.provenance,
            low_confidence=True,
            samples=0,
        )
