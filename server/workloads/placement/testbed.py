"""Testbed mode of the placement environment: every slot's decisions executed on real agents
(Zhang et al., "Deep Reinforcement Learning Based Resource Management for DNN Inference in
Industrial IoT", Sections III-B and III-C, Algorithm 1 lines 12-33).

:class:`TestbedExecutor` is the environment's :class:`~.env.SlotExecutor` for the testbed.
For one slot it runs DCPU on the start-of-slot caches, which says what Algorithm 1 places
(Step 2: the model fits and its eq. (5) delay is within T^max) and keeps (Step 4: omega),
and what eqs. (1)-(10) predict. Then it does all of it for real:

- models placed at the ECaS, or at an IGW whose ECaS lacks them, come from the cloud store:
  the store uploads each model's bytes at R^c; the edge holds the ones placed there in its
  cache of S^e bytes (:class:`~edgebed.models.placement.cache.ModelCache`);
- models placed at an IGW are offered to it at its R^e, from the edge cache or as soon as
  they have arrived from the cloud (tau^l = tau^c + tau^e, store and forward);
- every gateway runs its tasks (``placement.slot``): sources' bytes over the paced radio
  hops, inference at the decided shares, its cache of S^l bytes;
- tasks offloaded to the ECoS arrive here over their gateway's uplink and run at their
  share beta^e of this server (:class:`~edgebed.models.placement.shares.ShareScheduler`),
  timed on the server's clock from the slot's start (the command's delivery, about a
  millisecond, is included);
- Step 4: each cache keeps what omega kept.

A task's measured U (eq. 10) is the fraction of its digits its model classified right, if it
completed within T^max; the caches after the slot are the real ones, so the next state
(eq. 12) is what the nodes hold. A gateway that fails mid-slot loses its tasks (not
completed), the rest of the slot goes on, and its cache counts as empty until it is
configured again when it returns. The executor is called from the environment's thread
and runs each slot on the server's event loop.
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import torch

from edgebed.models.placement.cache import CacheRefused, ModelCache, bytes_tensor, tensor_bytes
from edgebed.models.placement.shares import ShareScheduler
from edgebed.models.placement.tasks import IMAGE_BYTES
from edgebed.proto.contracts import placement as pl
from edgebed.proto.errors import CodecError
from edgebed.server.core import EdgeServer
from edgebed.server.errors import ServerError, WorkloadError
from edgebed.server.transfers import ReceivedTransfer

from .env import SlotDecisions, SlotOutcomes
from .solver.dcpu import EDGE, TaskOutcome, dcpu, validate_cache
from .solver.model import ECOS, IGW, CacheState, PlacementProblem, check_constraints

logger = logging.getLogger(__name__)


@dataclass
class EdgeNode:
    """The edge server as ECaS (its model cache) and ECoS (its compute shares)."""

    cache: ModelCache
    scheduler: ShareScheduler


@dataclass
class SlotRecord:
    """One slot: what DCPU and eqs. (1)-(10) predicted beside what the testbed measured."""

    slot: int
    predicted: Tuple[TaskOutcome, ...]
    measured: Tuple[TaskOutcome, ...]
    seconds: float
    model_bytes_moved: int                     # cloud -> edge plus edge -> gateways
    cache_peak: Dict[str, Tuple[int, int]]     # node -> (peak bytes held, capacity)
    lost: List[str] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)
    tasks: List[Dict[str, Any]] = field(default_factory=list)  # per task: the measured parts


class TestbedExecutor:
    """Runs slots on ``gateways`` (in the problem's gateway order) with ``cloud`` as CCaS."""

    provenance = "measured"

    def __init__(self, server: EdgeServer, loop: asyncio.AbstractEventLoop, keys: pl.PlacementKeys,
                 problem: PlacementProblem, gateways: List[str], cloud: str, edge: EdgeNode,
                 configure: Dict[str, pl.ConfigureIns], gateway_rates_bps: List[float],
                 cloud_rate_bps: float, seed: int = 0, timeout_s: float = 120.0) -> None:
        if len(gateways) != len(problem.gateways):
            raise ValueError(f"{len(gateways)} gateway agents for a problem of "
                             f"{len(problem.gateways)} gateways")
        self.server, self.loop, self.keys = server, loop, keys
        self.problem, self.gateways, self.cloud, self.edge = problem, gateways, cloud, edge
        self.configure_ins = configure
        self.gateway_rates_bps = gateway_rates_bps   # R^e of each gateway (its own or the problem's)
        self.cloud_rate_bps = cloud_rate_bps
        self.seed = seed
        self.timeout_s = timeout_s
        self.lost: Set[str] = set()
        self.real = CacheState.empty(len(gateways))
        self.records: List[SlotRecord] = []
        self._slot = 0
        self._moved = 0  # model bytes that reached the edge in the slot in progress

    # ------------------------------------------------------------ SlotExecutor
    def execute(self, slot: SlotDecisions) -> SlotOutcomes:
        """Run ``slot`` on the testbed (from the environment's thread)."""
        return asyncio.run_coroutine_threadsafe(self.run_slot(slot), self.loop).result()

    def check(self, slot: SlotDecisions) -> None:
        """Refuse a slot this testbed cannot execute as asked, before anything runs: another
        problem, a decision that breaks C2-C5 or C7 (a hand-made one: the environment's never
        does), or a cache state with unknown models or gateways or over a capacity.

        C6 is Algorithm 1's to keep: a model that does not fit is not placed (Step 2) and its
        task cannot run, which the outcomes say."""
        if slot.problem is not self.problem:
            raise WorkloadError("this testbed executes the slots of the problem it measured")
        broken = check_constraints(slot.problem, slot.decision, capacity=False)
        if broken:
            raise WorkloadError("decision refused, nothing ran: " + "; ".join(broken))
        validate_cache(slot.problem, slot.cache)

    async def run_slot(self, slot: SlotDecisions) -> SlotOutcomes:
        self.check(slot)
        problem, decision = slot.problem, slot.decision
        number = self._slot
        self._slot += 1
        await self._rejoin()
        # A new episode starts from empty caches: the nodes drop what the state no longer has.
        self.edge.cache.keep(slot.cache.edge)
        plan = dcpu(problem, slot.tasks, slot.cache, decision)
        placed_edge = {key for node, key in plan.placed if node == EDGE}
        placed_gw = [(int(node[len("gateway"):]), key) for node, key in plan.placed if node != EDGE]
        from_cloud = placed_edge | {key for _, key in placed_gw if key not in slot.cache.edge}
        self.edge.cache.peak_bytes = self.edge.cache.held_bytes
        start = time.perf_counter()
        self._moved = 0
        arrivals = {key: asyncio.ensure_future(self._from_cloud(number, key, key in placed_edge))
                    for key in sorted(from_cloud)}
        offers = [asyncio.ensure_future(self._offer(number, i, key, arrivals.get(key)))
                  for i, key in placed_gw]
        ecos = {k: asyncio.ensure_future(self._ecos_task(number, k, slot, arrivals, start))
                for k in range(problem.n_tasks) if not decision.on_gateway[k]}
        replies = await asyncio.gather(*(self._gateway_slot(number, i, slot, plan, placed_gw)
                                         for i in range(len(self.gateways))))
        ecos_done = {k: await task for k, task in ecos.items()}
        for task in list(arrivals.values()) + offers:
            task.cancel()
        await asyncio.gather(*arrivals.values(), *offers, return_exceptions=True)
        self.server.forget(self.keys.key("model", number) + "/")
        self.server.forget(self.keys.key("task", number) + "/")
        self.edge.cache.keep(plan.cache.edge)  # Step 4 at the ECaS
        return self._outcomes(number, slot, plan, replies, ecos_done, start)

    # ------------------------------------------------------------ models
    async def _from_cloud(self, number: int, key: str, cache_at_edge: bool) -> bytes:
        """A model's bytes from the cloud store at R^c; cached at the edge when placed there."""
        upload_key = self.keys.model(number, key, EDGE)
        await self.server.call(self.cloud, pl.PUSH, pl.PushIns(
            run_id=self.keys.run_id, model=key, key=upload_key, uplink_bps=self.cloud_rate_bps),
            timeout_s=self.timeout_s)
        received = await self.server.receive(self.cloud, upload_key, timeout_s=self.timeout_s)
        blob = tensor_bytes(received.tensors["bytes"])
        self._moved += len(blob)
        if cache_at_edge:
            meta = pl.ModelMeta.from_meta(received.meta)
            await asyncio.get_running_loop().run_in_executor(
                None, self.edge.cache.put, key, blob, meta.size_bytes)
        return blob

    async def _offer(self, number: int, gateway: int, key: str,
                     arriving: "Optional[asyncio.Future[bytes]]") -> None:
        """Offer model ``key`` to ``gateway`` at its R^e once the edge has its bytes."""
        blob = await arriving if arriving is not None else self.edge.cache.blob(key)
        name = self.gateways[gateway]
        self.server.offer(self.keys.model(number, key, name),
                          {"bytes": bytes_tensor(blob)},
                          device=name, rate_bps=self.gateway_rates_bps[gateway],
                          meta=pl.ModelMeta(model=key, size_bytes=len(blob)).to_meta())

    # ------------------------------------------------------------ gateways
    async def _gateway_slot(self, number: int, i: int, slot: SlotDecisions, plan,
                            placed_gw: List[Tuple[int, str]]) -> Optional[pl.SlotRes]:
        name = self.gateways[i]
        if name in self.lost:
            return None
        problem, d = slot.problem, slot.decision
        fetching = {key for g, key in placed_gw if g == i}
        tasks = []
        for k, dev in enumerate(problem.devices):
            if dev.gateway != i:
                continue
            spec = problem.model(dev.task_type, int(d.heavy[k]))
            on_gw = bool(d.on_gateway[k])
            gamma_e = problem.gateways[i].gamma_e
            tasks.append(pl.TaskIns(
                index=k, task_type=dev.task_type, data_bytes=int(slot.tasks.data_bytes[k]),
                deadline_s=float(slot.tasks.deadline_s[k]), noisy=bool(slot.tasks.noisy[k]),
                on_gateway=on_gw, model=spec.key,
                source_bps=float(d.alpha_l[k] * problem.bandwidth_hz * dev.gamma),
                uplink_bps=0.0 if on_gw else float(d.alpha_e[k] * problem.edge_bandwidth_hz * gamma_e),
                share=float(d.beta_l[k]) if on_gw else 0.0,
                fetch_key=self.keys.model(number, spec.key, name)
                if on_gw and spec.key in fetching else "",
                seed=int(self.seed * 1_000_003 + number * 1009 + k)))
        request = pl.SlotIns(run_id=self.keys.run_id, slot=number, tasks=tasks,
                             keep=sorted(plan.cache.gateways[i]),
                             held=sorted(slot.cache.gateways[i]),
                             fetch_wait_s=2.0 * float(max(slot.tasks.deadline_s)))
        try:
            return await self.server.call(name, pl.SLOT, request, timeout_s=self.timeout_s)
        except ServerError as exc:
            logger.warning("gateway %s failed slot %d: %s; its tasks count as not completed "
                           "and its cache as empty", name, number, exc)
            self.lost.add(name)
            return None

    async def _rejoin(self) -> None:
        """A lost gateway that is connected again starts over with an empty cache."""
        for name in sorted(self.lost):
            if name not in self.server.device_names():
                continue
            try:
                await self.server.call(name, pl.CONFIGURE, self.configure_ins[name],
                                       timeout_s=self.timeout_s)
            except ServerError as exc:
                logger.warning("gateway %s is back but could not be configured: %s", name, exc)
                continue
            logger.info("gateway %s rejoined with an empty cache", name)
            self.lost.discard(name)

    # ------------------------------------------------------------ the ECoS
    async def _ecos_task(self, number: int, k: int, slot: SlotDecisions,
                         arrivals: "Dict[str, asyncio.Future[bytes]]", start: float) -> Dict[str, Any]:
        """Task ``k`` offloaded to the ECoS: its bytes arrive, its model is (or arrives) at
        the edge, it runs at its share beta^e. Measured on this server's clock."""
        problem, d = slot.problem, slot.decision
        dev = problem.devices[k]
        key = problem.model(dev.task_type, int(d.heavy[k])).key
        deadline = float(slot.tasks.deadline_s[k])
        out: Dict[str, Any] = {"reason": "late", "correct": 0, "images": 0}

        def left() -> float:
            return deadline - (time.perf_counter() - start)

        gateway = self.gateways[dev.gateway]
        if gateway in self.lost:
            out["reason"] = "lost"
            return out
        try:
            received = await self.server.receive(gateway, self.keys.task(number, k),
                                                 timeout_s=max(0.0, left()))
        except (ServerError, asyncio.TimeoutError):
            out["reason"] = "lost" if gateway in self.lost else "late"
            return out
        out["arrived_s"] = time.perf_counter() - start
        meta = pl.TaskMeta.from_meta(received.meta)
        out["images"] = meta.images
        if key not in self.edge.cache and key in arrivals:
            try:
                await asyncio.wait_for(asyncio.shield(arrivals[key]), max(0.0, left()))
            except (asyncio.TimeoutError, ServerError, CacheRefused):
                pass
        if key not in self.edge.cache:
            out["reason"] = "no-model"
            return out
        raw = received.tensors["data"].numpy()[:meta.images * IMAGE_BYTES]
        images = torch.from_numpy(raw.reshape(meta.images, 1, 28, 28).astype(np.float32) / 255.0)
        job = self.edge.scheduler.submit(self.edge.cache.get(key), images, float(d.beta_e[k]))
        try:
            done = await asyncio.wait_for(asyncio.wrap_future(job), max(0.0, left()))
        except asyncio.TimeoutError:
            job.cancel()
            return out
        labels = torch.tensor([int(c) for c in meta.labels])
        out.update(reason="ok", correct=int((done.predictions == labels).sum()),
                   compute_s=done.compute_s, delay_s=time.perf_counter() - start)
        return out

    # ------------------------------------------------------------ outcomes
    def _outcomes(self, number: int, slot: SlotDecisions, plan, replies: List[Optional[pl.SlotRes]],
                  ecos: Dict[int, Dict[str, Any]], start: float) -> SlotOutcomes:
        problem, d = slot.problem, slot.decision
        by_index: Dict[int, pl.TaskRes] = {}
        gateways_now, refused, peaks = [], [], {}
        for i, reply in enumerate(replies):
            name = self.gateways[i]
            if reply is None:
                gateways_now.append(frozenset())
                continue
            by_index.update({t.index: t for t in reply.tasks})
            gateways_now.append(frozenset(reply.cache))
            refused += [f"{name}: {why}" for why in reply.refused]
            self._moved += reply.fetched_bytes  # complete downloads only
            peaks[name] = (reply.peak_bytes, int(problem.gateways[i].cache_bytes))
        peaks[EDGE] = (self.edge.cache.peak_bytes, self.edge.cache.capacity_bytes)
        measured, details = [], []
        for k, dev in enumerate(problem.devices):
            spec = problem.model(dev.task_type, int(d.heavy[k]))
            on_gw = bool(d.on_gateway[k])
            expected = spec.acc_noisy if slot.tasks.noisy[k] else spec.acc_clean
            if on_gw:
                res = by_index.get(k)
                if res is None:
                    row = {"reason": "lost", "correct": 0, "images": 0}
                else:
                    row = {"reason": res.reason, "correct": res.correct, "images": res.images,
                           "delay_s": res.delay_s, "source_s": res.source_s,
                           "fetch_s": res.fetch_s, "compute_s": res.compute_s}
            else:
                row = dict(ecos[k])
                res = by_index.get(k)
                if res is not None:
                    row.update(source_s=res.source_s, uplink_s=res.uplink_s)
            done = row["reason"] == "ok"
            if row["reason"] == "no-model" and plan.outcomes[k].reason in ("no-space", "late-model"):
                row["reason"] = plan.outcomes[k].reason  # why Algorithm 1 did not place it
            accuracy = row["correct"] / row["images"] if done and row["images"] else 0.0
            start_held = slot.cache.gateways[dev.gateway] if on_gw else slot.cache.edge
            now_held = gateways_now[dev.gateway] if on_gw else self.edge.cache.keys()
            measured.append(TaskOutcome(
                node=IGW if on_gw else ECOS, gateway=dev.gateway, model=spec.key, completed=done,
                accuracy=accuracy, expected_accuracy=expected,
                delay_s=float(row.get("delay_s", float("inf"))),
                placed=spec.key not in start_held and (spec.key in now_held
                                                       or any(p[1] == spec.key for p in plan.placed)),
                reason=row["reason"]))
            details.append(dict(row, index=k, node=IGW if on_gw else ECOS, model=spec.key,
                                deadline_s=float(slot.tasks.deadline_s[k])))
        cache = CacheState(tuple(gateways_now), frozenset(self.edge.cache.keys()))
        self.real = cache
        refused += [f"{'gateway ' + str(o.gateway) if o.node == IGW else 'edge'}: {o.model} does not "
                    f"fit (task {k}, Algorithm 1 Step 2)"
                    for k, o in enumerate(plan.outcomes) if o.reason == "no-space"]
        record = SlotRecord(number, plan.outcomes, tuple(measured), time.perf_counter() - start,
                            self._moved, peaks, sorted(self.lost), refused, details)
        self.records.append(record)
        return SlotOutcomes(tuple(measured), cache, (), self.provenance)


def validate_model_upload(catalogue: Dict[str, int], cloud: str):
    """Upload validator for models: only from the cloud store, one uint8 tensor of the
    catalogue's size for a known model."""

    def check(received: ReceivedTransfer) -> None:
        if received.device != cloud:
            raise CodecError(f"{received.device} is not this run's cloud store")
        meta = pl.ModelMeta.from_meta(received.meta)
        if meta.model not in catalogue:
            raise CodecError(f"unknown model {meta.model!r}")
        blob = received.tensors.get("bytes")
        if blob is None or blob.dtype != torch.uint8 or blob.dim() != 1:
            raise CodecError("a model upload is one 1-D uint8 tensor 'bytes'")
        if blob.numel() != meta.size_bytes or meta.size_bytes != catalogue[meta.model]:
            raise CodecError(f"{meta.model} must be {catalogue[meta.model]} B, got {blob.numel()}")

    return check


def validate_task_upload(gateways: List[str]):
    """Upload validator for tasks: only from this run's gateways, D bytes of which the
    announced digits are a prefix, one label per digit."""

    def check(received: ReceivedTransfer) -> None:
        if received.device not in gateways:
            raise CodecError(f"{received.device} is not one of this run's gateways")
        meta = pl.TaskMeta.from_meta(received.meta)
        data = received.tensors.get("data")
        if data is None or data.dtype != torch.uint8 or data.dim() != 1:
            raise CodecError("a task upload is one 1-D uint8 tensor 'data'")
        if not 1 <= meta.images <= data.numel() // IMAGE_BYTES:
            raise CodecError(f"{meta.images} digits announced in {data.numel()} B")
        if len(meta.labels) != meta.images or not meta.labels.isdigit():
            raise CodecError("a task needs one digit label per image")

    return check
