"""What a run records about where it ran: package versions and the host."""
from __future__ import annotations

import logging
import os
import platform
import socket
from typing import Any

from edgebed.device.meter.rpi import board_model
from edgebed.device.probe import read_cpu_model

logger = logging.getLogger(__name__)

#: Distributions whose versions every run records (``python`` is added first).
VERSIONED_PACKAGES = ("torch", "grpcio", "protobuf", "numpy", "edgebed")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and :data:`VERSIONED_PACKAGES` (``None`` if not installed).

    Read from installed distribution metadata, so nothing heavy is imported.
    """
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED_PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["edgebed"] is None:
        import edgebed

        versions["edgebed"] = getattr(edgebed, "__version__", None)
    return versions


def host_profile() -> dict[str, Any]:
    """Hostname, platform, CPU model, cores and RAM of this host (stdlib + psutil)."""
    profile: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": read_cpu_model(),
        "board": board_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": None,
        "ram_bytes": None,
    }
    try:
        import psutil
    except ImportError:  # psutil is a dependency; stay usable without it anyway
        logger.warning("psutil is not installed; host profile lacks RAM and physical cores")
        return profile
    profile["cpu_cores_physical"] = psutil.cpu_count(logical=False)
    profile["ram_bytes"] = int(psutil.virtual_memory().total)
    return profile


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def busy_warning(suite: str, loadavg: list[float] | None, threads: int, effect: str) -> str | None:
    """A warning when the 1-minute load leaves fewer idle cores than the ``threads``
    measuring need: other work then competes with the measurement (``effect``)."""
    cores = os.cpu_count() or 1
    if loadavg is None or loadavg[0] + threads <= cores + 0.5:
        return None
    return (f"{suite}: warning: load average {loadavg[0]:.1f} on {cores} cores; other work "
            f"competes with the {threads} measuring thread(s), so {effect}")
