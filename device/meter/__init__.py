"""Power meters: one abstract meter, one module per source, a factory.

A meter measures the energy of this node between two instants::

    meter = make_meter()            # "auto", or a backend name
    token = meter.begin_window()    # windows may overlap
    ...
    m = meter.end_window(token)     # EnergyMeasurement(energy_j, duration_s, ...)

Backends: ``nvml`` (NVIDIA GPUs), ``jetson`` (INA3221 in sysfs), ``rapl``
(x86 package counters), ``rpi5`` (Pi 5 PMIC via vcgencmd), ``utilization``
(CPU-time power model, provenance "estimated") and the explicit ``null``
meter. Counter backends subtract two counter reads; sampled backends poll
at about 10 Hz in a background thread and integrate (``sampler.py``).

The edge server imports this package too (it measures its own power), so
it depends only on the standard library, psutil and, lazily, pynvml.
"""
from edgebed.device.meter.base import (
    CounterMeter,
    EnergyMeasurement,
    MeterError,
    PowerMeter,
    Provenance,
)
from edgebed.device.meter.factory import (
    AUTO_ORDER,
    BACKENDS,
    clear_probe_cache,
    make_meter,
    probe_backends,
    probe_report,
)
from edgebed.device.meter.jetson import JetsonMeter
from edgebed.device.meter.null import NullMeter
from edgebed.device.meter.nvml import NvmlEnergyMeter, NvmlPowerMeter, open_nvml_meter
from edgebed.device.meter.rapl import RaplMeter
from edgebed.device.meter.rpi import Rpi5Meter
from edgebed.device.meter.sampler import SampledMeter, Sampler, integrate
from edgebed.device.meter.utilization import BOARD_MODELS, BoardPowerModel, UtilizationMeter

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BOARD_MODELS",
    "BoardPowerModel",
    "CounterMeter",
    "EnergyMeasurement",
    "JetsonMeter",
    "MeterError",
    "NullMeter",
    "NvmlEnergyMeter",
    "NvmlPowerMeter",
    "PowerMeter",
    "Provenance",
    "RaplMeter",
    "Rpi5Meter",
    "SampledMeter",
    "Sampler",
    "UtilizationMeter",
    "clear_probe_cache",
    "integrate",
    "make_meter",
    "open_nvml_meter",
    "probe_backends",
    "probe_report",
]
