"""What an experiment gets from whoever runs it.

An experiment is a suite's testbed part, ``async def experiment(ctx,
options)``: it drives workloads on ``ctx.devices`` of ``ctx.server`` and
writes what it measured through ``ctx.writer`` (tables, plots, a summary of
provenance-tagged values). The local harness (``edgebed.testbed``) runs it on
an embedded server with a local fleet of agent processes; the standing
server runs it on the devices a submitted run claims. It never knows which:
console lines go through ``say``, progress through ``progress``.
"""
import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from edgebed.results.provenance import given, measured, modeled
from edgebed.results.writer import RunWriter
from edgebed.server.core import EdgeServer
from edgebed.server.links import LinkMeasurement

logger = logging.getLogger(__name__)


def _no_progress(fraction: float, what: str) -> None:
    return None


@dataclass
class RunContext:
    server: EdgeServer
    devices: List[str]
    writer: RunWriter
    say: Callable[[str], None] = print
    on_progress: Callable[[float, str], None] = field(default=_no_progress)
    links: Dict[str, LinkMeasurement] = field(default_factory=dict)  # measured before the run

    @property
    def run_id(self) -> str:
        """Unique per run: workloads scope their keys with it, so runs on
        disjoint devices of one server never share a tensor."""
        return self.writer.run_id

    def link_figures(self, allocated: Optional[Mapping[str, Tuple[Optional[float],
                                                                  Optional[float]]]] = None,
                     how: str = "") -> Dict[str, Any]:
        """The summary keys of every testbed run: each device's measured link
        (``links``), the rates a solver allocated, when it allocated any
        (``allocated``: up, down; None for a direction it did not allocate),
        and any emulated link (``emulated``)."""
        emulated = {d: self.server.link(d) for d in self.devices}
        figures = {
            "links": measured({d: link.summary() for d, link in self.links.items()},
                              "real transfers before the run"),
            "emulated": given({d: {"uplink_bps": e.uplink_bps, "downlink_bps": e.downlink_bps}
                               for d, e in emulated.items() if e.uplink_bps or e.downlink_bps},
                              "the agents' --link pacing"),
        }
        if allocated is not None:
            figures["allocated"] = modeled({d: {"uplink_bps": up, "downlink_bps": down}
                                            for d, (up, down) in allocated.items()}, how)
        return figures

    def progress(self, done: float, total: float, what: str = "") -> None:
        """Report ``done`` of ``total`` steps (the client shows a bar or a line)."""
        self.on_progress(min(1.0, done / total) if total else 1.0, what)

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work (evaluation, plotting) off the server's event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@dataclass
class QuickPass:
    """A workload's short pass in quickstart: what it prints and records.

    ``summary`` holds provenance-tagged values under keys the workload
    prefixes with its short name (``tl_T_pred_s``)."""

    title: str
    table: str
    rows: List[Any]
    columns: List[str]
    summary: Dict[str, Any]
