"""The template every workload's orchestrator fills in.

    async with TransferLearning(server, devices, config) as tl:   # configure()
        decision = tl.decide("proposed")                          # a solver's decision
        result = await tl.run(decision, tag="proposed")           # enforced, measured
                                                                  # close() on exit, always

A subclass writes ``configure`` (prepare the devices, measure what its
solver needs), ``decide`` (a scheme from its table -> a decision) and
``run`` (enforce a decision -> measured results). The template owns what
they share, once:

- the lifecycle: ``async with`` configures on entry and closes on exit,
  whatever happened; ``close`` removes the upload validators the run
  installed, forgets every tensor under the run's key prefix (so a later
  run starts clean) and calls ``on_close`` for what the subclass holds (an
  Infer handler, a thread pool);
- ``dispatch``: one command to many devices through its contract, returning
  results and failures (Flower's ``(results, failures)``): a device that
  fails is logged with why, remembered in ``missing`` and, unless the step
  allows a rejoin, left out of later steps;
- ``by_device``: a solver's per-device vectors (in the order of
  ``problem_devices``, fixed when the problem was built) mapped to the
  devices still present.
"""
import abc
import asyncio
import logging
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
)

from edgebed.proto.contracts.base import CommandSpec, ContractError, RunKeys
from edgebed.server.core import EdgeServer, UploadValidator
from edgebed.server.errors import ServerError, WorkloadError

logger = logging.getLogger(__name__)

Config = TypeVar("Config")
Decision = TypeVar("Decision")
Result = TypeVar("Result")
Res = TypeVar("Res")
T = TypeVar("T")


class Orchestrator(abc.ABC, Generic[Config, Decision, Result]):
    """One workload's run on ``devices`` of ``server`` under ``config``.

    ``config`` must have a ``run_id``; ``keys_type`` is the workload's
    contract key builder, so every key of the run is under one prefix.
    """

    keys_type: Callable[[str], RunKeys] = RunKeys

    def __init__(self, server: EdgeServer, devices: Sequence[str], config: Config) -> None:
        if not devices:
            raise ValueError(f"{type(self).__name__} needs at least one device")
        self.server = server
        self.devices: List[str] = list(devices)
        self.config = config
        self.keys = self.keys_type(config.run_id)
        self.missing: Dict[str, str] = {}
        self.problem_devices: List[str] = []  # the order of the solver's vectors
        self.configured = False
        self._validators: List[str] = []

    # ------------------------------------------------------------ the hooks
    @abc.abstractmethod
    async def configure(self) -> None:
        """Prepare the devices and measure what the solver needs."""

    @abc.abstractmethod
    def decide(self, scheme: Optional[str] = None, **params: Any) -> Decision:
        """The decision of ``scheme`` (one of the workload's table) on the measured problem."""

    @abc.abstractmethod
    async def run(self, decision: Optional[Decision] = None, tag: str = "") -> Result:
        """Enforce ``decision`` on the devices and return what was measured."""

    def on_close(self) -> None:
        """Release what the subclass holds itself (an Infer handler, a thread
        pool); no-op by default."""

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self):
        try:
            await self.configure()
        except BaseException:
            self.close()
            raise
        self.configured = True
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Leave nothing behind on the server: validators, tensors, handlers."""
        for prefix in self._validators:
            self.server.remove_upload_validator(prefix)
        self._validators.clear()
        self.server.forget(self.keys.prefix)
        self.on_close()

    def require_configured(self) -> None:
        if not self.configured:
            raise WorkloadError(f"{type(self).__name__}: use it as 'async with' (configure() "
                                "has not run)")

    def install_validator(self, key_prefix: str, validator: UploadValidator) -> None:
        """Check this run's uploads under ``key_prefix``; removed on close."""
        self.server.add_upload_validator(key_prefix, validator)
        self._validators.append(key_prefix)

    # ------------------------------------------------------------ dispatch
    async def dispatch(self, spec: CommandSpec[Any, Res], requests: Mapping[str, Any], *,
                       timeout_s: Optional[float] = None, step: str = "",
                       rejoin: bool = False) -> Dict[str, Res]:
        """Run ``spec`` on every device of ``requests`` at once; the typed results
        of the devices that succeeded.

        A device whose command fails (its handler raised, it disconnected,
        timed out, or answered outside the contract) is logged and recorded in
        ``missing`` with its reason; it is left out of later steps unless
        ``rejoin``. Raises WorkloadError when no device succeeded.
        """
        step = step or spec.kind
        names = list(requests)

        async def one(name: str) -> Any:
            try:
                return await self.server.call(name, spec, requests[name], timeout_s)
            except (ServerError, ContractError) as exc:
                return exc

        outcomes = await asyncio.gather(*(one(n) for n in names))
        results, failures = {}, {}
        for name, outcome in zip(names, outcomes):
            if isinstance(outcome, BaseException):
                failures[name] = f"{step}: {outcome}"
                logger.warning("%s failed %s: %s", name, step, outcome)
            else:
                results[name] = outcome
        self.missing.update(failures)
        if not rejoin:
            self.devices = [d for d in self.devices if d not in failures]
        if not results:
            raise WorkloadError(f"no device completed {step}: {failures}")
        return results

    # ------------------------------------------------------------ solver vectors
    def by_device(self, vector: Sequence[T]) -> Dict[str, T]:
        """A solver's per-device ``vector`` by device name, for the devices
        still present (ones lost since the problem was built are left out)."""
        if len(vector) != len(self.problem_devices):
            raise WorkloadError(f"a solver vector of {len(vector)} entries for "
                                f"{len(self.problem_devices)} devices")
        return {name: value for name, value in zip(self.problem_devices, vector)
                if name in self.devices}
