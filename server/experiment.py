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
from typing import Any, Callable, Dict, List

from edgebed.results.writer import RunWriter
from edgebed.server.core import EdgeServer

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

    @property
    def run_id(self) -> str:
        return self.writer.run_id

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
