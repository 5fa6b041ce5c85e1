"""x86 CPUs: RAPL energy counters through the Linux powercap interface.

Each CPU package is a top-level zone ``/sys/class/powercap/intel-rapl:<N>``
(also on AMD Zen) whose ``energy_uj`` is a microjoule counter that wraps to 0
after ``max_energy_range_uj``. Only package zones are summed:

* subzones (``intel-rapl:0:0`` core, ``intel-rapl:0:1`` uncore, ``dram`` on
  servers) are parts of their package, and adding them double counts;
* the top-level ``psys`` zone (laptops) covers the whole platform including
  the packages, so it is not added either;
* ``intel-rapl-mmio:<N>`` is a second interface to the same package counter.

Wraparound: every read unwraps each zone's counter against the previous read
(a drop means one wrap: ``max - previous + current``). Two wraps between
consecutive reads cannot be told from one, so if the gap between two reads
exceeds the shortest possible wrap period (range / twice the zone's power
limit), windows spanning that gap are flagged low-confidence. Callers with
very long phases can call :meth:`RaplMeter.poll` now and then to prevent it.

Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694);
without access the probe fails with a MeterError saying so.
"""
import glob
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from edgebed.device.meter.base import CounterMeter, MeterError

logger = logging.getLogger(__name__)

POWERCAP_DIR = "sys/class/powercap"
_TOP_LEVEL = re.compile(r"^intel-rapl:\d+$")
# Power bound used for the wrap period when a zone has no power limit file:
# above any single package's draw, so the bound stays conservative.
_ASSUMED_MAX_POWER_W = 500.0
# RAPL counters refresh about every millisecond (Intel SDM, RAPL section).
_UPDATE_PERIOD_S = 0.001


@dataclass
class Zone:
    """One package zone and its unwrapping state."""

    path: str
    name: str
    max_range_uj: int
    max_power_w: float
    last_uj: Optional[int] = None
    total_uj: int = 0

    @property
    def energy_path(self) -> str:
        return os.path.join(self.path, "energy_uj")

    def read_uj(self) -> int:
        try:
            with open(self.energy_path) as f:
                return int(f.read().strip())
        except PermissionError as exc:
            raise MeterError(
                "rapl: {} is not readable: since Linux 5.10 energy_uj is root-only; run the "
                "agent as root or grant read access (e.g. chmod o+r via a udev rule)".format(
                    self.energy_path)) from exc
        except (OSError, ValueError) as exc:
            raise MeterError("rapl: cannot read {}: {}".format(self.energy_path, exc)) from exc

    def advance(self) -> None:
        """Read the counter and add the unwrapped delta to ``total_uj``."""
        now = self.read_uj()
        if self.last_uj is not None:
            delta = now - self.last_uj
            if delta < 0:  # wrapped once (more is caught by the read-gap check)
                delta += self.max_range_uj
            self.total_uj += delta
        self.last_uj = now

    @property
    def min_wrap_period_s(self) -> float:
        return self.max_range_uj / 1e6 / (2.0 * self.max_power_w)


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def find_zones(root: str = "/") -> List[Zone]:
    """Top-level package zones under ``root``; MeterError if none or unreadable."""
    base = os.path.join(root, POWERCAP_DIR)
    zones = []
    for path in sorted(glob.glob(os.path.join(base, "intel-rapl:*"))):
        if not _TOP_LEVEL.match(os.path.basename(path)):
            continue  # a subzone: part of its package
        try:
            with open(os.path.join(path, "name")) as f:
                name = f.read().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            logger.debug("rapl: skipping zone %s (%s): overlaps the packages", path, name)
            continue
        max_range = _read_int(os.path.join(path, "max_energy_range_uj"))
        if not max_range:
            raise MeterError("rapl: {} has no readable max_energy_range_uj".format(path))
        limit_uw = _read_int(os.path.join(path, "constraint_0_max_power_uw"))
        max_power_w = limit_uw / 1e6 if limit_uw else _ASSUMED_MAX_POWER_W
        zones.append(Zone(path, name, max_range, max_power_w))
    if not zones:
        raise MeterError("rapl: no package zones under {}".format(base))
    for zone in zones:
        zone.read_uj()  # fail now, at probe time, on permissions
    return zones


class RaplMeter(CounterMeter):
    """Sum of the package energy counters."""

    name = "rapl"
    update_period_s = _UPDATE_PERIOD_S

    def __init__(self, root: str = "/", clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.zones = find_zones(root)
        self._min_wrap_s = min(z.min_wrap_period_s for z in self.zones)
        self._last_read_t: Optional[float] = None
        self._long_gaps = 0  # read gaps long enough to hide a second wrap
        logger.info("rapl: zones %s, shortest wrap period %.0f s",
                    [z.name for z in self.zones], self._min_wrap_s)
        self._read_counter()

    def _read_counter(self) -> float:
        now = self._clock()
        if self._last_read_t is not None and now - self._last_read_t >= self._min_wrap_s:
            self._long_gaps += 1
        self._last_read_t = now
        for zone in self.zones:
            zone.advance()
        return sum(z.total_uj for z in self.zones) / 1e6

    def _mark(self) -> object:
        return self._long_gaps

    def _suspect(self, duration_s: float, mark: object) -> bool:
        return self._long_gaps != mark

    def poll(self) -> None:
        """Read the counters so that no wrap goes unseen in long windows."""
        with self._lock:
            self._read_counter()


def probe_rapl(root: str = "/") -> str:
    """Describe the package zones, or raise MeterError saying why not."""
    return "RAPL zones {}".format([z.name for z in find_zones(root)])
