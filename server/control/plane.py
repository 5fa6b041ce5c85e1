"""The experiment plane of a standing server: submitted runs claim devices,
wait in a queue for busy ones, and run their suite's experiment here.

A suite that runs on devices (the registry's ``testbed`` suites, quickstart)
exposes ``experiment(ctx, options)`` and an ``Options`` record; this plane
imports it by the name the workload registry gives (as Flower's SuperLink
loads a ServerApp by its import string), decodes the submitted options
strictly, measures the claimed devices' links, and runs the experiment on
the server's event loop with the run's writer. Runs on disjoint devices run
at once. A queued run starts when its devices are idle and no run queued
before it wants one of them, so nobody starves. When a run ends (done,
failed or cancelled) its orchestrators have closed (no offers, uploads,
validators or Infer handlers are left), anything else under its run id is
forgotten, and its devices are free again once they have finished any
command the run abandoned. Agents are never restarted between runs.
"""
import asyncio
import importlib
import json
import logging
import time
import traceback
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from edgebed.argtypes import record_problems
from edgebed.proto.contracts.base import ContractError, from_args
from edgebed.proto.records import Span
from edgebed.server.control.runs import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Run,
    RunStore,
)
from edgebed.server.errors import RequestError, UnknownRun
from edgebed.server.experiment import RunContext
from edgebed.server.identity import printable
from edgebed.server.links import measure_links
from edgebed.workloads import WORKLOADS, suite_modules

if TYPE_CHECKING:  # the plane is attached to a server; it does not make one
    from edgebed.server.core import EdgeServer

logger = logging.getLogger(__name__)

IDLE, BUSY, DRAINING, GONE = "idle", "busy", "draining", "gone"


def device_labels(record) -> Dict[str, str]:
    """What a selector can match: the device's name, labels derived from its
    probed profile, and the agent's own ``--label`` ones (which win)."""
    profile = record.profile
    labels = {"name": record.name, "accelerator": profile.accelerator.split(":")[0] or "none",
              "power": profile.power_backend, "host": profile.hostname}
    labels.update(profile.labels)
    return labels


def parse_selector(text: str) -> Dict[str, str]:
    wanted = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key or not value:
            raise RequestError(f"a device selector is key=value[,key=value...], got "
                               f"{printable(text)!r}")
        wanted[key] = value
    return wanted


#: A submitted run's options: the most characters and nesting levels read
#: (a suite's options are a flat record with a few lists: far less).
MAX_OPTIONS_CHARS = 64 * 1024
MAX_OPTIONS_DEPTH = 16


def load_options(text: str) -> object:
    """``options_json`` decoded, its size and nesting bounded before it is
    parsed (deep nesting would exhaust the decoder's recursion)."""
    if len(text) > MAX_OPTIONS_CHARS:
        raise RequestError(f"options_json has {len(text)} characters (at most "
                           f"{MAX_OPTIONS_CHARS})")
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_OPTIONS_DEPTH:
                raise RequestError(f"options_json nests deeper than {MAX_OPTIONS_DEPTH} levels")
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text or "{}")
    except ValueError as exc:
        raise RequestError(f"options_json is not JSON: {printable(str(exc))}") from None


def _names(names: Sequence[str], most: int = 8) -> str:
    """Device names for a status message: each cut, and not too many."""
    shown = ", ".join(printable(n, 40) for n in list(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def runnable_suites() -> Dict[str, str]:
    """Suites a standing server runs: the ones that run on devices."""
    modules = suite_modules()
    names = [w.testbed for w in WORKLOADS if w.testbed] + ["quickstart", "links"]
    return {name: modules[name] for name in names if name in modules}


class ControlPlane:
    def __init__(self, server: "EdgeServer", store: RunStore) -> None:
        self.server = server
        self.store = store
        self.suites = runnable_suites()  # suite name -> module
        self._claims: Dict[str, str] = {}  # device -> the run holding it
        self._wake = asyncio.Event()
        self._scheduler: Optional["asyncio.Task[None]"] = None

    def start(self) -> None:
        self._scheduler = asyncio.get_running_loop().create_task(self._schedule_loop())

    async def stop(self) -> None:
        for run in self.store.runs.values():
            if run.task is not None and not run.task.done():
                run.task.cancel()
        if self._scheduler is not None:
            self._scheduler.cancel()

    # ------------------------------------------------------------ submit
    def submit(self, suite: str, options_json: str, devices: Sequence[str], selector: str,
               count: int, command: Sequence[str]) -> Run:
        """Check everything before anything is claimed; then queue the run."""
        if suite not in self.suites:
            raise RequestError(f"unknown suite {printable(suite)!r} for a standing server; it "
                               f"runs: {', '.join(self.suites)}")
        module = importlib.import_module(self.suites[suite])
        try:
            options = from_args(module.Options, load_options(options_json), f"{suite} options")
        except (ContractError, ValueError) as exc:
            raise RequestError(printable(str(exc), 400)) from None
        # The checks its command line would have applied (the fields' own).
        problems = record_problems(options)
        if problems:
            raise RequestError(f"{suite} options: " + "; ".join(
                f"{name} {printable(problem)}" for name, problem in problems))
        claimed = self._select(devices, selector, count)
        need = getattr(module, "MIN_DEVICES", 1)
        if len(claimed) < need:
            raise RequestError(f"{suite} needs at least {need} devices, {len(claimed)} "
                               f"matched: {_names(claimed)}")
        config = {"options": options, "devices": claimed, "selector": selector,
                  "submitted_to": "standing server"}
        run = self.store.create(suite, options_json, claimed, config, list(command))
        run.module, run.options = module, options
        logger.info("run %s (%s) queued on %s", run.run_id, suite, ", ".join(claimed))
        run.update(state=QUEUED)
        self._wake.set()
        return run

    def _select(self, devices: Sequence[str], selector: str, count: int) -> List[str]:
        records = {r.name: r for r in self.server.registry.all()}
        if devices:
            unknown = [d for d in devices if d not in records]
            if unknown:
                raise RequestError(f"no device named {_names(unknown)} has registered "
                                   f"(known: {_names(sorted(records)) or 'none'})")
            chosen = list(dict.fromkeys(devices))
        else:
            wanted = parse_selector(selector) if selector else {}
            chosen = sorted(name for name, record in records.items() if record.connected
                            and all(device_labels(record).get(k) == v for k, v in wanted.items()))
            if not chosen:
                raise RequestError(f"no attached device matches {printable(selector)!r}"
                                   if selector else "no device is attached")
        if count < 0:
            raise RequestError(f"count must not be negative, got {count}")
        if count:
            if count > len(chosen):
                raise RequestError(f"{count} devices asked for, {len(chosen)} match")
            chosen = chosen[:count]
        return chosen

    # ------------------------------------------------------------ devices
    def device_state(self, name: str) -> str:
        record = self.server.registry.get(name)
        if not record.connected:
            return GONE
        if name in self._claims:
            return BUSY
        return DRAINING if record.session.busy else IDLE

    def claimed_by(self, name: str) -> str:
        return self._claims.get(name, "")

    # ------------------------------------------------------------ queue
    def queued(self) -> List[Run]:
        return [r for r in self.store.listing() if r.status.state == QUEUED]

    def queue_positions(self) -> Dict[str, int]:
        """Each queued run's place in the queue (1 first), by run id: one
        pass over the runs, for a listing that shows every run's."""
        return {run.run_id: i for i, run in enumerate(self.queued(), 1)}

    def queue_position(self, run: Run) -> int:
        """One run's place (0: not queued); a listing uses queue_positions."""
        return self.queue_positions().get(run.run_id, 0)

    async def _schedule_loop(self) -> None:
        while True:
            self._schedule()
            self._wake.clear()
            try:  # devices come, go and drain without telling us: look again now and then
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def _schedule(self) -> None:
        wanted = set()  # devices of runs queued ahead
        registered = {r.name for r in self.server.registry.all()}
        for run in self.queued():
            devices = run.status.devices
            free = all(d in registered and self.device_state(d) == IDLE for d in devices)
            if free and not wanted.intersection(devices):
                self._start(run)
            wanted.update(devices)

    def _start(self, run: Run) -> None:
        for device in run.status.devices:
            self._claims[device] = run.run_id
        run.update(state=RUNNING, started_unix_s=time.time())
        run.task = asyncio.get_running_loop().create_task(self._execute(run))

    # ------------------------------------------------------------ execution
    async def _execute(self, run: Run) -> None:
        def sink(span: Span) -> None:
            if span.run_id.startswith(run.run_id):
                # Watchers get the line events.jsonl got (NaN already null), serialised once.
                run.span(run.writer.event(span))

        def progress(fraction: float, what: str) -> None:
            run.update(progress=fraction, progress_text=what)

        self.server.add_span_sink(sink)
        try:
            run.log(f"run {run.run_id}: {run.status.suite} on {', '.join(run.status.devices)}")
            links = await measure_links(self.server, run.status.devices)
            ctx = RunContext(self.server, list(run.status.devices), run.writer, say=run.log,
                             on_progress=progress, links=links)
            await run.module.experiment(ctx, run.options)
            run.update(state=DONE, progress=1.0)
        except asyncio.CancelledError:
            run.log("cancelled: partial results are kept")
            run.update(state=CANCELLED)
        except Exception as exc:  # the run fails; the server goes on
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            (run.path / "error.txt").write_text(text, encoding="utf-8")
            run.log(f"failed: {type(exc).__name__}: {exc}")
            run.update(state=FAILED, error=f"{type(exc).__name__}: {exc}")
            logger.warning("run %s failed: %s", run.run_id, exc)
        finally:
            self.server.remove_span_sink(sink)
            for workload in WORKLOADS:  # whatever an experiment left under its run id
                self.server.forget(f"{workload.name}/{run.run_id}")
            for device in run.status.devices:
                self._claims.pop(device, None)
            run.update(ended_unix_s=time.time())
            run.close_files()
            self._wake.set()

    def cancel(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.status.state == QUEUED:
            run.update(state=CANCELLED, ended_unix_s=time.time())
            run.close_files()
            self._wake.set()
        elif run.task is not None and not run.task.done():
            run.task.cancel()
        return run

    def get(self, run_id: str) -> Run:
        try:
            return self.store.get(run_id)
        except KeyError:
            raise UnknownRun(f"no run {printable(run_id)!r} on this server") from None
