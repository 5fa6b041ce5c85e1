"""NVIDIA GPUs through NVML (package ``nvidia-ml-py``, import name ``pynvml``).

Three mechanisms, best first, chosen once at open time (all selected GPUs
must support it, so a sum never mixes mechanisms):

``energy``   ``nvmlDeviceGetTotalEnergyConsumption``: a 64-bit millijoule
             counter since driver load (Volta and newer). A counter backend:
             two reads per window, no thread. The driver refreshes it every
             20-100 ms, so windows under 0.2 s are low-confidence.
``instant``  ``nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)`` in mW,
             sampled at ~10 Hz and integrated.
``usage``    ``nvmlDeviceGetPowerUsage`` in mW, sampled. On recent GPUs this
             is a 1 s moving average, so windows under 2 s are flagged.

Only the GPU is measured, not the host: on a GPU host the node's energy is
the GPU's energy. ``pynvml`` is imported lazily so boards without it (or
without a driver) can import this package.
"""
import logging
import time
from typing import Any, Callable, List, Optional

from edgebed.device.meter.base import CounterMeter, MeterError, PowerMeter
from edgebed.device.meter.sampler import DEFAULT_PERIOD_S, SampledMeter

logger = logging.getLogger(__name__)

MODES = ("energy", "instant", "usage")
# Field id and value-type codes from nvml.h, for nvidia-ml-py releases that
# predate the named constants.
_FI_DEV_POWER_INSTANT = 186
_VALUE_ATTR = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise MeterError("nvml: package nvidia-ml-py (pynvml) is not installed") from exc
    return pynvml


class _Nvml:
    """An initialised NVML session and the handles of the selected GPUs."""

    def __init__(self, index: Optional[int] = None) -> None:
        nv = _import_pynvml()
        self.nv = nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise MeterError("nvml: nvmlInit failed (no NVIDIA driver?): {}".format(exc)) from exc
        try:
            count = nv.nvmlDeviceGetCount()
            if count == 0:
                raise MeterError("nvml: the driver reports no GPUs")
            if index is not None and not 0 <= index < count:
                raise MeterError("nvml: GPU index {} out of range (0..{})".format(index, count - 1))
            indices = [index] if index is not None else list(range(count))
            self.handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except BaseException:
            self.shutdown()
            raise
        self.indices = indices

    def shutdown(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError as exc:  # already shut down: nothing to release
            logger.debug("nvmlShutdown: %s", exc)

    def energy_mj(self, handle: Any) -> int:
        return int(self.nv.nvmlDeviceGetTotalEnergyConsumption(handle))

    def instant_mw(self, handle: Any) -> float:
        field_id = getattr(self.nv, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT)
        value = self.nv.nvmlDeviceGetFieldValues(handle, [field_id])[0]
        if value.nvmlReturn != getattr(self.nv, "NVML_SUCCESS", 0):
            # The call succeeds as a whole; each field carries its own status.
            raise self.nv.NVMLError(value.nvmlReturn)
        return float(getattr(value.value, _VALUE_ATTR.get(int(value.valueType), "uiVal")))

    def usage_mw(self, handle: Any) -> float:
        return float(self.nv.nvmlDeviceGetPowerUsage(handle))

    def unsupported(self, mode: str) -> Optional[str]:
        """None if every selected GPU supports ``mode``, else the NVML error."""
        read = {"energy": self.energy_mj, "instant": self.instant_mw, "usage": self.usage_mw}[mode]
        try:
            for handle in self.handles:
                read(handle)
        except self.nv.NVMLError as exc:
            return "{}: {}".format(mode, exc)
        return None

    def detect_mode(self) -> str:
        """The best mechanism every selected GPU supports."""
        reasons: List[str] = []
        for mode in MODES:
            reason = self.unsupported(mode)
            if reason is None:
                return mode
            reasons.append(reason)
        raise MeterError("nvml: no power reading is supported ({})".format("; ".join(reasons)))


class NvmlEnergyMeter(CounterMeter):
    """Sum of the GPUs' energy counters (mode ``energy``)."""

    name = "nvml"
    mode = "energy"
    update_period_s = 0.1

    def __init__(self, session: _Nvml, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self._nvml = session

    def _read_counter(self) -> float:
        try:
            return sum(self._nvml.energy_mj(h) for h in self._nvml.handles) / 1000.0
        except self._nvml.nv.NVMLError as exc:
            raise MeterError("nvml: energy counter read failed: {}".format(exc)) from exc

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.shutdown()
            self._nvml = None


class NvmlPowerMeter(SampledMeter):
    """Sum of the GPUs' sampled power (modes ``instant`` and ``usage``)."""

    name = "nvml"

    def __init__(
        self,
        session: _Nvml,
        mode: str,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        start: bool = True,
    ) -> None:
        if mode not in ("instant", "usage"):
            raise ValueError("sampled NVML mode must be 'instant' or 'usage', got {!r}".format(
                mode))
        self._nvml = session
        self.mode = mode
        self._read_mw = session.instant_mw if mode == "instant" else session.usage_mw
        # The usage reading is a 1 s moving average on recent GPUs.
        self.sensor_period_s = 1.0 if mode == "usage" else 0.0
        super().__init__(period_s=period_s, clock=clock, start=start)

    def read_power_w(self) -> float:
        return sum(self._read_mw(h) for h in self._nvml.handles) / 1000.0

    def close(self) -> None:
        super().close()
        if self._nvml is not None:
            self._nvml.shutdown()
            self._nvml = None


def probe_nvml(index: Optional[int] = None) -> str:
    """Describe what NVML offers here, or raise MeterError saying why not."""
    session = _Nvml(index)
    try:
        mode = session.detect_mode()
    finally:
        session.shutdown()
    return "{} GPU(s), {} mode".format(len(session.handles), mode)


def open_nvml_meter(
    index: Optional[int] = None,
    mode: str = "auto",
    period_s: float = DEFAULT_PERIOD_S,
) -> PowerMeter:
    """An NVML meter over GPU ``index`` (default: the sum of all GPUs).

    ``mode="auto"`` picks the best mechanism; an explicit mode the GPUs do
    not support raises MeterError.
    """
    if mode != "auto" and mode not in MODES:
        raise ValueError("mode must be 'auto' or one of {}, got {!r}".format(MODES, mode))
    session = _Nvml(index)
    try:
        if mode == "auto":
            chosen = session.detect_mode()
        else:
            reason = session.unsupported(mode)
            if reason is not None:
                raise MeterError("nvml: requested mode is not supported ({})".format(reason))
            chosen = mode
        logger.info("nvml: GPUs %s, mode %s", session.indices, chosen)
        if chosen == "energy":
            return NvmlEnergyMeter(session)
        return NvmlPowerMeter(session, chosen, period_s=period_s)
    except BaseException:
        session.shutdown()
        raise
