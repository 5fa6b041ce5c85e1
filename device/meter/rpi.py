"""Raspberry Pi 5: the PMIC's rail ADCs through ``vcgencmd pmic_read_adc``.

The command prints one line per channel, currents and voltages separately::

       VDD_CORE_A current(7)=2.13400000A
       ...
       VDD_CORE_V volt(15)=0.89000000V

Rails are matched by name (``VDD_CORE_A`` with ``VDD_CORE_V``) and the node's
power is the sum of V x A over rails that have both; voltage-only channels
(``EXT5V_V``, ``BATT_V``) carry no power reading. The sum covers the PMIC's
own outputs, so it leaves out the 5 V that goes straight to USB and HATs and
the PMIC's conversion losses: it reads below the wall.

The command forks a process (tens of ms), hence a sampled backend.

Raspberry Pi 4 has no power sensor at all: the factory falls through to the
utilization model there (an external INA219 on I2C would be a future
backend).
"""
import logging
import os
import re
import shutil
import subprocess
import time
from typing import Callable, Dict, Optional, Tuple

from edgebed.device.meter.base import MeterError
from edgebed.device.meter.sampler import DEFAULT_PERIOD_S, SampledMeter

logger = logging.getLogger(__name__)

COMMAND = ("vcgencmd", "pmic_read_adc")
MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
# "NAME_A current(7)=2.134A"; older firmware prints "NAME_A=2.134A".
_LINE = re.compile(
    r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s*(?:[a-z]+\(\d+\))?\s*=\s*"
    r"(?P<value>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[AV]?\s*$"
)


def run_vcgencmd() -> str:
    """Run ``vcgencmd pmic_read_adc`` and return its output."""
    try:
        done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=2.0, check=True)
    except FileNotFoundError as exc:
        raise MeterError("rpi5: vcgencmd not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise MeterError("rpi5: vcgencmd pmic_read_adc timed out") from exc
    except subprocess.CalledProcessError as exc:
        raise MeterError("rpi5: vcgencmd pmic_read_adc failed: {}".format(
            (exc.stderr or exc.stdout or "").strip())) from exc
    return done.stdout


def parse_pmic_adc(text: str) -> Dict[str, Tuple[float, float]]:
    """``{rail: (volts, amps)}`` for every rail with both readings."""
    amps: Dict[str, float] = {}
    volts: Dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        table = amps if match.group("kind") == "A" else volts
        table[match.group("rail")] = float(match.group("value"))
    return {rail: (volts[rail], amps[rail]) for rail in sorted(amps) if rail in volts}


def power_from_adc(text: str) -> float:
    """Watts: sum of V x A over the rails in one ``pmic_read_adc`` output."""
    rails = parse_pmic_adc(text)
    if not rails:
        raise MeterError("rpi5: no current/voltage rail pairs in pmic_read_adc output")
    return sum(v * a for v, a in rails.values())


def board_model(root: str = "/") -> Optional[str]:
    """The device-tree model string, or None when there is none (x86)."""
    for rel in MODEL_FILES:
        try:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read().decode("utf-8", "replace").strip("\x00\n ")
        except OSError:
            continue
    return None


class Rpi5Meter(SampledMeter):
    """Sampled PMIC rail power of a Raspberry Pi 5."""

    name = "rpi5"

    def __init__(
        self,
        runner: Optional[Callable[[], str]] = None,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        start: bool = True,
    ) -> None:
        self._runner = runner or run_vcgencmd
        self.rails = sorted(parse_pmic_adc(self._runner()))
        if not self.rails:
            raise MeterError("rpi5: pmic_read_adc printed no rail pairs (not a Pi 5?)")
        logger.info("rpi5: summing PMIC rails %s", self.rails)
        super().__init__(period_s=period_s, clock=clock, start=start)

    def read_power_w(self) -> float:
        return power_from_adc(self._runner())


def probe_rpi5(root: str = "/", runner: Optional[Callable[[], str]] = None) -> str:
    """Describe the PMIC rails, or raise MeterError saying why not."""
    model = board_model(root)
    if model is not None and "Raspberry Pi 5" not in model and "Compute Module 5" not in model:
        raise MeterError("rpi5: board is {!r}, not a Raspberry Pi 5".format(model))
    if runner is None:
        if model is None:
            raise MeterError("rpi5: no device-tree model under {}".format(root))
        if shutil.which(COMMAND[0]) is None:
            raise MeterError("rpi5: vcgencmd not found on PATH")
    meter = Rpi5Meter(runner, start=False)
    return "PMIC rails {}".format(meter.rails)
