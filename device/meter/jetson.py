"""NVIDIA Jetson boards: the on-board INA3221 power monitors in sysfs.

Two kernel interfaces exist, depending on the L4T release:

(a) NVIDIA's iio driver (L4T 32, JetPack 4: Nano, TX2, Xavier)::

        /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<K>/
            rail_name_<N>        e.g. POM_5V_IN, POM_5V_GPU, POM_5V_CPU
            in_power<N>_input    milliwatts

(b) the mainline hwmon driver (L4T 34+, JetPack 5/6: Orin, Xavier NX)::

        /sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<K>/
            in<N>_label          e.g. VDD_IN, VDD_CPU_GPU_CV, VDD_SOC
            in<N>_input          bus voltage, millivolts
            curr<N>_input        current, milliamps

    The hwmon driver adds a channel labelled "sum of shunt voltages" (in7)
    that is not a rail; it is skipped.

The board's input rail (``POM_5V_IN`` on the Nano, ``VDD_IN`` on Xavier NX,
Orin Nano/NX and TX2) already contains the CPU, GPU and SoC rails, so when it
exists it is the only rail read; adding the others would double count. On
boards without one (AGX Xavier, AGX Orin) the rails are summed, which misses
regulator losses and so reads somewhat below the wall.
"""
import glob
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from edgebed.device.meter.base import MeterError
from edgebed.device.meter.sampler import DEFAULT_PERIOD_S, SampledMeter

logger = logging.getLogger(__name__)

TOTAL_RAILS = ("POM_5V_IN", "VDD_IN")
IIO_GLOB = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
HWMON_GLOB = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
_NOT_RAILS = ("sum of shunt voltages", "nc")  # "NC": channel not connected


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel. ``power_path`` is set for the iio layout (mW);
    ``volt_path`` and ``curr_path`` for hwmon (mV, mA)."""

    name: str
    power_path: Optional[str] = None
    volt_path: Optional[str] = None
    curr_path: Optional[str] = None

    def read_w(self) -> float:
        if self.power_path is not None:
            return _read_number(self.power_path) / 1e3
        assert self.volt_path is not None and self.curr_path is not None
        return _read_number(self.volt_path) * _read_number(self.curr_path) / 1e6


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _read_number(path: str) -> float:
    return float(_read_text(path))


def _channel_numbers(directory: str, prefix: str, suffix: str) -> List[int]:
    numbers = []
    for path in glob.glob(os.path.join(directory, prefix + "*" + suffix)):
        base = os.path.basename(path)
        middle = base[len(prefix):len(base) - len(suffix)]
        if middle.isdigit():
            numbers.append(int(middle))
    return sorted(numbers)


def _iio_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(os.path.join(root, IIO_GLOB))):
        for n in _channel_numbers(device, "rail_name_", ""):
            name = _read_text(os.path.join(device, "rail_name_{}".format(n)))
            power = os.path.join(device, "in_power{}_input".format(n))
            if name.lower() not in _NOT_RAILS and os.path.exists(power):
                rails.append(Rail(name, power_path=power))
    return rails


def _hwmon_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(os.path.join(root, HWMON_GLOB))):
        for n in _channel_numbers(device, "in", "_label"):
            name = _read_text(os.path.join(device, "in{}_label".format(n)))
            if name.lower() in _NOT_RAILS:
                continue
            enable = os.path.join(device, "in{}_enable".format(n))
            if os.path.exists(enable) and _read_text(enable) == "0":
                continue
            volt = os.path.join(device, "in{}_input".format(n))
            curr = os.path.join(device, "curr{}_input".format(n))
            if os.path.exists(volt) and os.path.exists(curr):
                rails.append(Rail(name, volt_path=volt, curr_path=curr))
    return rails


def find_rails(root: str = "/") -> List[Rail]:
    """Every INA3221 rail under ``root`` in either layout."""
    return _iio_rails(root) + _hwmon_rails(root)


def select_rails(rails: Sequence[Rail], names: Optional[Sequence[str]] = None) -> List[Rail]:
    """The rails whose sum is the node's power (see the module docstring).

    ``names`` picks rails explicitly (e.g. a CPU rail alone); an unknown name
    raises MeterError.
    """
    by_name = {r.name: r for r in rails}
    if names is not None:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise MeterError("jetson: rails {} not found (have {})".format(
                missing, sorted(by_name)))
        return [by_name[n] for n in names]
    for total in TOTAL_RAILS:
        if total in by_name:
            return [by_name[total]]
    return list(rails)


class JetsonMeter(SampledMeter):
    """Sampled INA3221 power of a Jetson board."""

    name = "jetson"

    def __init__(
        self,
        root: str = "/",
        rails: Optional[Sequence[str]] = None,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        start: bool = True,
    ) -> None:
        found = find_rails(root)
        if not found:
            raise MeterError("jetson: no INA3221 rails under {} or {}".format(
                os.path.join(root, IIO_GLOB), os.path.join(root, HWMON_GLOB)))
        self.rails = select_rails(found, rails)
        try:
            for rail in self.rails:
                rail.read_w()
        except (OSError, ValueError) as exc:
            raise MeterError("jetson: cannot read rail {}: {}".format(rail.name, exc)) from exc
        logger.info("jetson: reading rails %s", [r.name for r in self.rails])
        super().__init__(period_s=period_s, clock=clock, start=start)

    def read_power_w(self) -> float:
        return sum(rail.read_w() for rail in self.rails)


def probe_jetson(root: str = "/") -> str:
    """Describe the rails that would be read, or raise MeterError."""
    meter = JetsonMeter(root, start=False)
    return "INA3221 rails {}".format([r.name for r in meter.rails])
