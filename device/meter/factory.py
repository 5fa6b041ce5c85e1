"""Pick a power backend: cached probes, an explicit order, no silent fallback.

``make_meter("auto")`` takes the first available backend in ``AUTO_ORDER``
(most direct measurement first; the utilization model last because it is an
estimate) and logs which one it chose and why the better ones were skipped.
An explicit name that is unavailable raises MeterError with the probe's
reason; it never quietly becomes another backend. ``"null"`` (timing only,
0 J) is only ever returned when asked for by name.

``root`` redirects every sysfs/procfs path, so tests run the probes against
fixture trees. NVML is a library, not a file tree, so it ignores ``root``;
tests inject a fake ``pynvml`` module.
"""
import functools
import logging
from typing import Callable, Dict, List, Tuple

from edgebed.device.meter.base import MeterError, PowerMeter
from edgebed.device.meter.jetson import JetsonMeter, probe_jetson
from edgebed.device.meter.null import NullMeter
from edgebed.device.meter.nvml import open_nvml_meter, probe_nvml
from edgebed.device.meter.rapl import RaplMeter, probe_rapl
from edgebed.device.meter.rpi import Rpi5Meter, probe_rpi5
from edgebed.device.meter.utilization import BOARD_MODELS, UtilizationMeter, probe_utilization

logger = logging.getLogger(__name__)

AUTO_ORDER = ("nvml", "jetson", "rapl", "rpi5", "utilization")
BACKENDS = AUTO_ORDER + ("null",)

_PROBES: Dict[str, Callable[[str], str]] = {
    "nvml": lambda root: probe_nvml(),
    "jetson": probe_jetson,
    "rapl": probe_rapl,
    "rpi5": lambda root: probe_rpi5(root),
    "utilization": probe_utilization,
}

_BUILDERS: Dict[str, Callable[[str], PowerMeter]] = {
    "nvml": lambda root: open_nvml_meter(),
    "jetson": lambda root: JetsonMeter(root),
    "rapl": lambda root: RaplMeter(root),
    "rpi5": lambda root: Rpi5Meter(),
    "utilization": lambda root: UtilizationMeter(root=root),
}


@functools.lru_cache(maxsize=None)
def _probe_all(root: str) -> Tuple[Tuple[str, bool, str], ...]:
    """``(name, available, description or reason)`` for every probed backend."""
    results = []
    for name in AUTO_ORDER:
        try:
            results.append((name, True, _PROBES[name](root)))
        except MeterError as exc:
            results.append((name, False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a broken probe must not hide the others
            logger.warning("probe of power backend %s crashed", name, exc_info=True)
            results.append((name, False, "probe crashed: {!r}".format(exc)))
    for name, ok, text in results:
        logger.debug("power backend %s: %s (%s)", name, "available" if ok else "unavailable", text)
    return tuple(results)


def probe_backends(root: str = "/") -> List[str]:
    """Names of the available backends, in ``AUTO_ORDER``. Cached per root."""
    return [name for name, ok, _ in _probe_all(root) if ok]


def probe_report(root: str = "/") -> Dict[str, str]:
    """Each probed backend's description if available, else why not."""
    return {name: text for name, _, text in _probe_all(root)}


def clear_probe_cache() -> None:
    """Forget cached probes (hardware or permissions changed, or tests)."""
    _probe_all.cache_clear()


def make_meter(name: str = "auto", root: str = "/") -> PowerMeter:
    """A meter for backend ``name``: one of ``BACKENDS`` or ``"auto"``."""
    if name == "null":
        logger.info("power backend: null (timing only, no energy), as requested")
        return NullMeter()
    if name.startswith("utilization:"):
        # An emulated device models the board it stands for (labelled estimated).
        board = name.split(":", 1)[1]
        if board not in BOARD_MODELS:
            raise ValueError("unknown board {!r} for the utilization model; one of {}".format(
                board, sorted(BOARD_MODELS)))
        logger.info("power backend: utilization model of %s, as requested", board)
        return UtilizationMeter(board=board, root=root)
    if name != "auto" and name not in BACKENDS:
        raise ValueError("unknown power backend {!r}; choose 'auto' or one of {}".format(
            name, BACKENDS))
    probes = _probe_all(root)
    if name != "auto":
        for probed, ok, text in probes:
            if probed == name and not ok:
                raise MeterError("power backend {!r} is unavailable: {}".format(name, text))
        meter = _BUILDERS[name](root)
        logger.info("power backend: %s, as requested", name)
        return meter
    skipped = []
    for probed, ok, text in probes:
        if not ok:
            skipped.append("{}: {}".format(probed, text))
            continue
        try:
            meter = _BUILDERS[probed](root)
        except MeterError as exc:
            logger.warning("power backend %s probed fine but failed to open: %s", probed, exc)
            skipped.append("{}: {}".format(probed, exc))
            continue
        logger.info("power backend: %s (auto; %s); skipped: %s", probed, text,
                    "; ".join(skipped) or "none")
        return meter
    raise MeterError("no power backend available ({}); use make_meter('null') to run "
                     "without energy measurement".format("; ".join(skipped)))
