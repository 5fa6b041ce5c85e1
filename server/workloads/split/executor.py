"""The server half of split DNN inference: the Infer handler that runs tails
(paper 004, sections 3 and 4).

A device that split its DNN at ``m`` streams the activation of layer m over
the Infer RPC with the contract's ``InferMeta`` (``handler="split/<run-id>"``,
``model``, ``seed``, ``input_size``, ``split``, ...). Each run installs its
own executor under its own handler name (``split.infer_handler``), so split
runs on disjoint devices of one server run at once. :class:`SplitExecutor`
validates all of it before anything runs (an unknown model, a split outside
0..M-1 or an activation whose shape does not match split m of that model
raise ``RequestError``, which the client gets as INVALID_ARGUMENT; the shape
error names both shapes), then runs layers m+1..M honouring the slot model:

- Slot time origin. Each request's slots are counted from the moment its
  activation has fully arrived (``arrival``): slot h of that device spans
  ``[arrival + (h-1) T_d/H, arrival + h T_d/H)``. Devices finish their heads
  and uploads at different times, so a common frame would make early devices
  wait for late ones; per-request origins keep eq. (24) exact for each
  device, whose delay terms (local, upload, server, download) add up in
  sequence.
- A layer assigned to slot h (y_{n,m,h} = 1, eq. 14) does not start before
  its slot begins; layers of one device run in order (Rule 2, eq. 16).
- Eq. (24)'s server delay h_max T_d/H: with ``release="slot_end"`` (the
  default) the result is returned when the device's last slot h_max ends, so
  the measured server delay is h_max T_d/H whenever the layers fit their
  slots (constraint 17), and more (an overrun, recorded) when they did not.
  ``release="asap"`` returns as soon as the last layer is done.
- Parallel limit B (eq. 27), for real: a device holds one of B admission
  places while its layers of a slot run (it gives it back while it waits for
  a later slot), and the layers themselves run in a pool of B threads, so at
  most B tails ever compute at once. ``max_active`` / ``max_computing``
  record the highest concurrency seen.
- A device whose stream breaks (it disconnected) is cancelled by gRPC: a
  request waiting for its slot or its admission place leaves at once, one
  that was computing gives its place back at once and runs no further layer
  (the layer already running finishes: a thread cannot be interrupted, and
  until it does it keeps its pool thread, so no more than B ever compute).
  Nobody else ever waits for it: there is no barrier between devices.

Every request leaves a :class:`TailRecord` (measured, server clock) that the
orchestrator joins with the device's own timings.
"""
import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from edgebed.models.split.nets import SPLIT_MODEL_NAMES, SplitModel, build_split_model
from edgebed.proto.records import Span
from edgebed.proto.contracts.split import infer_handler
from edgebed.server.workloads.split.requests import (
    SlotConfig,
    TailPlan,
    TailRequest,
    check_slots,
    parse_request,
)
from edgebed.server.errors import RequestError
from edgebed.server.state import InferReply
from edgebed.server.telemetry import SERVER_DEVICE
from edgebed.server.transfers import ReceivedTransfer

__all__ = ["SlotConfig", "SplitExecutor", "TailPlan", "TailRecord", "infer_handler"]

logger = logging.getLogger(__name__)

ModelKey = Tuple[str, int, Optional[int]]


@dataclass
class TailRecord:
    """One tail as the server measured it (seconds, server clock)."""

    device: str
    key: str
    run_id: str
    tag: str
    model: str
    split: int
    slots: Tuple[int, ...]
    upload_rx_s: float         # first to last activation frame, receiver side
    arrival_s: float = 0.0     # server clock when the activation was complete (slot origin)
    slot_wait_s: float = 0.0   # waiting for slots to begin
    queue_s: float = 0.0       # waiting for one of the B places
    compute_s: float = 0.0     # layers m+1..M
    server_s: float = 0.0      # arrival to result ready (all of the above + slot-end hold)
    predicted_server_s: float = 0.0  # h_max T_d / H, eq. (24)
    download_tx_s: Optional[float] = None  # the reply's paced send (InferReply.on_sent)
    overrun: bool = False      # the layers did not fit in their slots
    status: str = "running"    # ok, cancelled, failed


class _NotBuilt(Exception):
    def __init__(self, key: ModelKey) -> None:
        super().__init__(key)
        self.key = key


class SplitExecutor:
    """The Infer handler of one split run (``split/<run_id>``); install with
    :meth:`install`. It serves requests of that run only."""

    def __init__(self, config: SlotConfig, *, run_id: str, seed: int = 0, server=None,
                 models: Optional[Mapping[str, SplitModel]] = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.config = config
        self.run_id = run_id
        self.handler = infer_handler(run_id)
        self.seed = seed
        self.server = server  # EdgeServer, for spans; optional
        self._clock = clock
        self._models: Dict[ModelKey, SplitModel] = {}
        for name, model in (models or {}).items():
            self._models[(name, model.seed, None)] = model
        self._models_lock = threading.Lock()
        self._plans: Dict[str, TailPlan] = {}
        self._pool = ThreadPoolExecutor(max_workers=config.parallel_limit,
                                        thread_name_prefix="split-tail")
        self._admission: Optional[asyncio.Semaphore] = None  # made on the server's loop
        self._count_lock = threading.Lock()
        self.active = 0            # devices holding a place now
        self.max_active = 0
        self.computing = 0         # layer groups computing now
        self.max_computing = 0
        self.layers_run = 0
        self.records: List[TailRecord] = []

    # ------------------------------------------------------------ setup
    def install(self, server) -> None:
        self.server = server
        server.add_infer_handler(self.handler, self.handle)

    def close(self) -> None:
        """Uninstall (if installed) and stop the pool."""
        if self.server is not None:
            self.server.remove_infer_handler(self.handler, self.handle)
        self._pool.shutdown(wait=False)

    def _key(self, name: str, seed: Optional[int], input_size: Optional[int]) -> ModelKey:
        return (str(name), self.seed if seed is None else int(seed), input_size)

    def model(self, name: str, seed: Optional[int] = None,
              input_size: Optional[int] = None) -> SplitModel:
        """The server's copy of ``name`` (built once; unknown names raise ValueError)."""
        key = self._key(name, seed, input_size)
        with self._models_lock:
            if key not in self._models:
                self._models[key] = build_split_model(key[0], key[1], input_size=input_size)
            return self._models[key]

    def add_model(self, model: SplitModel, input_size: Optional[int] = None) -> None:
        """Serve an already built model (``input_size`` as the devices announce it)."""
        with self._models_lock:
            self._models[(model.name, model.seed, input_size)] = model

    def plan(self, device: str, model: str, split: int, slots, seed: Optional[int] = None,
             input_size: Optional[int] = None) -> TailPlan:
        """Register a device's decided strategy; its requests must then match it."""
        m = self.model(model, seed, input_size)
        plan = TailPlan(m.name, int(split), tuple(int(s) for s in slots))
        check_slots(m, plan.split, plan.slots, self.config.slots_h)
        self._plans[device] = plan
        return plan

    def clear_plans(self) -> None:
        self._plans.clear()

    def reset_stats(self) -> None:
        """Restart the concurrency high-water marks (between runs)."""
        with self._count_lock:
            self.max_active, self.max_computing = self.active, self.computing

    def pop_records(self, run_id: Optional[str] = None, tag: Optional[str] = None) -> List[TailRecord]:
        """The records of ``run_id`` (and ``tag``), or all; they are forgotten here."""
        keep, out = [], []
        for r in self.records:
            mine = (run_id is None or r.run_id == run_id) and (tag is None or r.tag == tag)
            (out if mine else keep).append(r)
        self.records = keep
        return out

    # ------------------------------------------------------------ validation
    def validate(self, received: ReceivedTransfer) -> TailRequest:
        """Everything checked before anything runs; ValueError names the problem."""
        return parse_request(received, self.model, self._plans, self.config.slots_h,
                             self.run_id, self.handler)

    def _built(self, name: str, seed: Optional[int], input_size: Optional[int]) -> SplitModel:
        key = self._key(name, seed, input_size)
        with self._models_lock:
            if key in self._models:
                return self._models[key]
        raise _NotBuilt(key)

    async def _validate(self, received: ReceivedTransfer) -> TailRequest:
        """``validate`` on the loop, building a model not built yet in a thread
        (a big network takes seconds: the loop serves everyone else meanwhile)."""
        try:
            return parse_request(received, self._built, self._plans, self.config.slots_h,
                                 self.run_id, self.handler)
        except _NotBuilt as missing:
            # Built on demand only for what this executor serves: a known
            # model, at its seed and an input size it already serves. A client
            # cannot make it build (and cache) networks of its own choosing.
            name, seed, size = missing.key
            if name not in SPLIT_MODEL_NAMES:
                raise RequestError(f"unknown split model {name!r}; known models: "
                                   f"{', '.join(SPLIT_MODEL_NAMES)}") from None
            served_sizes = {key[2] for key in self._models} | {None}
            if seed != self.seed or size not in served_sizes:
                raise RequestError(f"this server serves split models of seed {self.seed} at "
                                   f"input sizes {sorted(served_sizes, key=str)}, not seed "
                                   f"{seed} at {size}") from None
            await asyncio.get_running_loop().run_in_executor(None, self.model, *missing.key)
            return self.validate(received)

    # ------------------------------------------------------------ execution
    def _groups(self, req: TailRequest) -> List[Tuple[int, int, int]]:
        """(slot, start, stop): consecutive layers start+1..stop sharing a slot."""
        groups: List[Tuple[int, int, int]] = []
        for offset, slot in enumerate(req.slots):
            layer = req.split + offset  # runs layer+1
            if groups and groups[-1][0] == slot:
                groups[-1] = (slot, groups[-1][1], layer + 1)
            else:
                groups.append((slot, layer, layer + 1))
        return groups

    def _compute(self, model: SplitModel, x: torch.Tensor, start: int, stop: int,
                 cancelled: threading.Event) -> torch.Tensor:
        """Layers start+1..stop, one at a time; stops between layers once cancelled."""
        with self._count_lock:
            self.computing += 1
            self.max_computing = max(self.max_computing, self.computing)
        try:
            for i in range(start, stop):
                if cancelled.is_set():
                    break
                x = model.run_layers(x, i, i + 1)
                with self._count_lock:
                    self.layers_run += 1
            return x
        finally:
            with self._count_lock:
                self.computing -= 1

    def _admit(self, delta: int) -> None:
        with self._count_lock:
            self.active += delta
            self.max_active = max(self.max_active, self.active)

    async def handle(self, received: ReceivedTransfer) -> InferReply:
        """The Infer handler (a coroutine: rpc_handlers awaits it on the loop)."""
        arrival = self._clock()
        req = await self._validate(received)
        if self._admission is None:
            self._admission = asyncio.Semaphore(self.config.parallel_limit)
        slot_s = self.config.slot_s
        h_max = max(req.slots)
        record = TailRecord(req.device, req.key, req.run_id, req.tag, req.model.name, req.split,
                            req.slots, received.stats.seconds, arrival,
                            predicted_server_s=h_max * slot_s)
        self.records.append(record)
        loop = asyncio.get_running_loop()
        x, held = req.x, False
        cancelled = threading.Event()
        try:
            for slot, start, stop in self._groups(req):
                begin = arrival + (slot - 1) * slot_s
                now = self._clock()
                if held and begin > now:  # idle until a later slot: give the place back
                    self._admission.release()
                    self._admit(-1)
                    held = False
                if begin > now:
                    await self._sleep_until(begin)
                    record.slot_wait_s += self._clock() - now
                if not held:
                    t0 = self._clock()
                    await self._admission.acquire()
                    held = True
                    self._admit(+1)
                    record.queue_s += self._clock() - t0
                t0 = self._clock()
                x = await loop.run_in_executor(self._pool, self._compute, req.model, x, start, stop,
                                               cancelled)
                record.compute_s += self._clock() - t0
                if self._clock() > arrival + slot * slot_s:
                    record.overrun = True
            self._admission.release()  # done computing: the hold below takes no place
            self._admit(-1)
            held = False
            if self.config.release == "slot_end":
                await self._sleep_until(arrival + h_max * slot_s)
        except asyncio.CancelledError:
            cancelled.set()
            record.status = "cancelled"
            logger.info("%s: split request %s cancelled (stream gone); its place is free",
                        req.device, req.key)
            raise
        except Exception:
            record.status = "failed"
            raise
        finally:
            if held:
                self._admission.release()
                self._admit(-1)
        record.server_s = self._clock() - arrival
        record.status = "ok"
        self._span(record)

        def sent(seconds: float) -> None:  # the reply's paced send, timed by the RPC layer
            record.download_tx_s = seconds

        return InferReply({"y": x}, on_sent=sent)

    async def _sleep_until(self, instant: float) -> None:
        """Never wake before ``instant`` (the loop may fire timers a tick early)."""
        while True:
            left = instant - self._clock()
            if left <= 0:
                return
            await asyncio.sleep(left)

    def _span(self, record: TailRecord) -> None:
        if self.server is None:
            return
        end = self._clock()
        self.server.record_span(Span(
            run_id=record.run_id, phase="split_tail", device=SERVER_DEVICE,
            start_s=end - record.server_s, end_s=end, start_unix_s=time.time() - record.server_s,
            power_backend="null", provenance="measured",
            extra={"for_device": record.device, "key": record.key, "model": record.model,
                   "split": record.split, "slots": list(record.slots),
                   "slot_wait_s": record.slot_wait_s, "queue_s": record.queue_s,
                   "compute_s": record.compute_s, "overrun": record.overrun,
                   "energy": "not metered (timing span)"}))
