"""The configure / run / aggregate template every workload follows."""
import abc
import logging
from typing import Dict, Generic, List, TypeVar

from edgebed.server.core import EdgeServer
from edgebed.server.errors import ServerError

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


class Orchestrator(abc.ABC, Generic[Result]):
    """Drives one workload on ``devices`` of ``server``.

    Devices that fail or disconnect are moved to ``missing`` with the reason
    and the workload goes on with the rest.
    """

    def __init__(self, server: EdgeServer, devices: List[str]) -> None:
        if not devices:
            raise ValueError("an orchestrator needs at least one device")
        self.server = server
        self.devices = list(devices)
        self.missing: Dict[str, str] = {}

    def keep_successes(self, results: Dict[str, object], step: str) -> Dict[str, dict]:
        """Drop devices whose command failed in ``step``; log and remember why."""
        good = {}
        for name, result in results.items():
            if isinstance(result, BaseException):
                self.missing[name] = f"{step}: {result}"
                logger.warning("excluding %s after %s: %s", name, step, result)
                if name in self.devices:
                    self.devices.remove(name)
            else:
                good[name] = result
        if not good:
            raise ServerError(f"no device completed {step}: {self.missing}")
        return good

    @abc.abstractmethod
    async def configure(self) -> None:
        """Prepare devices and measure what the solver needs."""

    @abc.abstractmethod
    async def run(self) -> Result:
        """Run the workload once and return its result."""
