"""The registry of workloads: one line each. The agent, ``edgebed-bench``,
quickstart and the standing server's Control service all read it.

A workload's short name is its module in every tier, its command prefix and
its key prefix (``<name>/<run-id>/...``); its suites are named ``<name>-*``.
Its files follow from the name (see "Adding a workload" in the README):

- ``proto/contracts/<name>.py``: the typed contract both ends import;
- ``device/workloads/<name>.py``: the agent's handlers (``registry``);
- ``server/workloads/<name>/``: the orchestrator and its pure solver;
- ``benchmarks/<name>_<suite>.py``: its suites; the one that runs on
  devices (``testbed``) also gives quickstart its short pass.

Device-safe: the agent imports this module (standard library only).
"""
from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Workload:
    name: str                     # the short name
    suites: Tuple[str, ...]       # edgebed-bench suite names
    testbed: str = ""             # the suite that runs on devices; quickstart runs its short pass

    @property
    def device_module(self) -> str:
        return f"edgebed.device.workloads.{self.name}"


WORKLOADS: Tuple[Workload, ...] = (
    Workload("runtime", ("quickstart", "transport", "links")),
    Workload("tl", ("tl-compression", "tl-solver", "tl-testbed"), testbed="tl-testbed"),
    Workload("feel", ("feel-solver", "feel-latency", "feel-train"), testbed="feel-train"),
    Workload("split", ("split-profile", "split-game", "split-testbed"), testbed="split-testbed"),
    Workload("placement",
             ("placement-train", "placement-resources", "placement-rates", "placement-testbed"),
             testbed="placement-testbed"),
)


def suite_modules() -> Dict[str, str]:
    """Every suite name -> its module (``edgebed.benchmarks.<name with underscores>``)."""
    return {suite: "edgebed.benchmarks." + suite.replace("-", "_")
            for w in WORKLOADS for suite in w.suites}
