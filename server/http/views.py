"""What the dashboard's JSON API returns, built from the server's live state.

Every function here runs on the server's event loop (the registry and the
control plane belong to it) and only reads. Files (a run's events and
summary) are read by :class:`~edgebed.results.digest.RunDigest` in a worker
thread before these are called.
"""
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from edgebed.results.digest import RunDigest
from edgebed.server.control.plane import device_labels
from edgebed.server.control.runs import Run

if TYPE_CHECKING:
    from edgebed.server.control.plane import ControlPlane
    from edgebed.server.core import EdgeServer

PROFILE_KEYS = ("cpu_model", "cpu_cores", "cpu_freq_mhz", "ram_bytes", "accelerator",
                "matmul_gflops", "conv_gflops", "cpu_quota", "hostname", "platform",
                "torch_version", "python_version")
LOG_TAIL_LINES = 40
RUNS_SHOWN = 200


def fleet_view(server: "EdgeServer", plane: "ControlPlane") -> Dict[str, Any]:
    now_mono, now = time.monotonic(), time.time()
    devices = []
    for record in sorted(server.registry.all(), key=lambda r: r.name):
        profile = record.profile
        link = server.links.get(record.name)
        session = record.session
        age = now_mono - session.last_heartbeat if session is not None else None
        devices.append({
            "name": record.name,
            "state": plane.device_state(record.name),
            "run_id": plane.claimed_by(record.name),
            "labels": device_labels(record),
            "power_backend": profile.power_backend,
            "profile": {k: getattr(profile, k) for k in PROFILE_KEYS},
            "link": None if link is None else {
                "up_capacity_bps": link.up_capacity_bps,
                "down_capacity_bps": link.down_capacity_bps, "rtt_ms": link.rtt_ms,
                "measured_unix_s": link.measured_unix_s, "provenance": link.provenance},
            "emulated": {"uplink_bps": record.link.uplink_bps,
                         "downlink_bps": record.link.downlink_bps},
            "heartbeat_age_s": age,
            "last_heartbeat_unix_s": None if age is None else now - age,
            "registered_unix_s": record.registered_unix_s,
            "disconnect_reason": record.disconnect_reason,
        })
    return {"server_unix_s": now, "devices": devices}


def run_status(run: Run, plane: "ControlPlane",
               positions: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """``positions``: ``plane.queue_positions()``, computed once for a listing."""
    status = asdict(run.status)
    status["queue_position"] = (plane.queue_position(run) if positions is None
                                else positions.get(run.run_id, 0))
    return status


def runs_view(plane: "ControlPlane", limit: int = RUNS_SHOWN) -> Dict[str, Any]:
    """The newest ``limit`` runs, and every queued or running one (a server
    that ran for months keeps thousands)."""
    runs = plane.store.listing()
    positions = plane.queue_positions()
    shown = [r for r in runs[:-limit] if not r.ended] + runs[-limit:]
    return {"server_unix_s": time.time(), "total": len(runs),
            "runs": [run_status(r, plane, positions) for r in reversed(shown)]}


def log_tail(run: Run, lines: int = LOG_TAIL_LINES) -> List[str]:
    """The last lines the run printed (worker thread: it reads a file)."""
    try:
        with open(run.path / "log.txt", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def run_view(run: Run, plane: "ControlPlane", digest: RunDigest,
             summary: Optional[Dict[str, Any]], log: List[str]) -> Dict[str, Any]:
    """One run: its status, what its events say so far, its summary and log."""
    return {"server_unix_s": time.time(), "status": run_status(run, plane),
            "digest": digest.view(), "summary": summary, "log": log}
