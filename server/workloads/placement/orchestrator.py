"""Placement on real agents: gateways, the edge server and a cloud model store (Zhang et al.,
"Deep Reinforcement Learning Based Resource Management for DNN Inference in Industrial IoT").

    async with Placement(server, devices, config) as pm:       # roles, catalogue, Q, problem
        policy = pm.decide("td3", path="policies/td3/run0")    # a trained policy (or trains one)
        run = await pm.run(policy, tag="td3")                  # slots executed for real

``configure`` finds the cloud store (the agent labelled ``role=cloud``; every other device is
a gateway), has it train or load the models and measure them (accuracy clean and noisy, size;
its own inference times are reported with the catalogue, not used), gives every gateway an
empty cache and has it time every model (Q on that node), times them on this server (the
ECoS), and builds the problem from those measurements (:func:`testbed_problem`). ``decide``
loads a saved policy or trains one in the model-mode environment of that problem. ``run``
lets the policy decide every slot of an episode whose slots :class:`~.testbed.TestbedExecutor`
executes on the agents.
"""
import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from edgebed.models.placement.cache import ModelCache
from edgebed.models.placement.shares import ShareScheduler, build_net, time_model
from edgebed.models.placement.tasks import REFERENCE_TASK_BYTES, images_per_task, task_type
from edgebed.proto.contracts import placement as pl
from edgebed.server.errors import WorkloadError
from edgebed.server.links import rate_bounds
from edgebed.server.workloads.template import Orchestrator

from .env import PlacementEnv
from .solver.model import Device, Gateway, ModelSpec, PlacementProblem
from .solver.params import (
    DEVICE_DISTANCE_M,
    EDGE_CACHE_RATIO,
    GATEWAY_CACHE_RATIO,
    GATEWAY_DISTANCE_M,
    TABLE4,
    spectral_efficiency,
)
from .testbed import EdgeNode, SlotRecord, TestbedExecutor, validate_model_upload, validate_task_upload

logger = logging.getLogger(__name__)

#: The nominal C^e: only ratios of measured times enter eq. (6), so any value gives the same delays.
NOMINAL_EDGE_HZ = TABLE4["C_e_hz"]


@dataclass(frozen=True)
class PlacementConfig:
    run_id: str = "placement"
    cloud: Optional[str] = None        # the cloud store's device; None: the one labelled role=cloud
    preset: str = "quick"              # the model zoo (models.placement.zoo.PRESETS)
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    seed: int = 0
    devices_per_gateway: int = 4       # K task sources per gateway (round robin over task types)
    band_hz: float = 200e3             # B of each gateway's device network (the paced radio hop)
    edge_band_hz: float = 400e3        # B^e, gateways -> BS (ECoS tasks' uploads)
    cloud_rate_bps: float = 2e6        # R^c asked for (capped by the store's measured uplink)
    edge_rate_bps: float = 1.6e6       # R^e asked for (capped by each gateway's downlink)
    cache_scale: float = 1.0           # S^l and S^e relative to Table IV's ratios (solver.params)
    noise_draws: int = 3
    repeats: int = 7                   # timing passes per model and node (median)
    period_s: float = 0.02             # the compute shares' time slice
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("band_hz", "edge_band_hz", "cloud_rate_bps", "edge_rate_bps", "cache_scale"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.devices_per_gateway < 1:
            raise ValueError(f"devices_per_gateway must be >= 1, got {self.devices_per_gateway}")


@dataclass
class PlacementRun:
    """One episode of slots decided by one policy and executed on the testbed."""

    tag: str
    records: List[SlotRecord]
    decision_ms: List[float]
    rewards: List[float]               # eq. (14), measured
    metrics: List[Dict[str, float]] = field(default_factory=list)


def task_types_of(models: Sequence[pl.ModelInfo]) -> List[str]:
    """The catalogue's task types in order; gateway sources take them round robin."""
    return list(dict.fromkeys(m.task_type for m in models))


def gateway_sources(models: Sequence[pl.ModelInfo], devices_per_gateway: int) -> List[str]:
    """The task types of a gateway's ``devices_per_gateway`` sources (round robin)."""
    types = task_types_of(models)
    return [types[k % len(types)] for k in range(devices_per_gateway)]


def cache_bytes(models: Sequence[pl.ModelInfo], task_types: Sequence[str], ratio: float,
                scale: float) -> int:
    """A cache of Table IV's capacity-to-catalogue ``ratio`` (``solver.params``) of the bytes
    of the models its node's tasks can use, times ``scale``."""
    return int(scale * ratio * sum(m.size_bytes for m in models if m.task_type in set(task_types)))


def _median_ratio(fast: Dict[str, float], slow: Dict[str, float]) -> float:
    return statistics.median(fast[k] / slow[k] for k in fast if slow.get(k, 0) > 0)


def testbed_problem(models: Sequence[pl.ModelInfo], edge_s: Dict[str, float],
                    gateway_s: Sequence[Dict[str, float]], config: PlacementConfig,
                    cloud_rate_bps: float, gateway_rates_bps: Sequence[float],
                    gateway_cache_bytes: float, rng: np.random.Generator) -> PlacementProblem:
    """The problem of Section III on measured inputs.

    - M^n: the store's accuracies and sizes; Q^n = this server's time x the nominal C^e.
    - C^l of gateway i: C^e x the median over models of (server time / gateway time), so
      Q^n / C^l is that gateway's own measured time (derived, to within the models' spread).
    - Caches: Table IV's capacity-to-catalogue ratios (``solver.params``) of the bytes of
      the distinct models a node's tasks can use, times ``cache_scale``
      (``gateway_cache_bytes``: the S^l every gateway was configured with).
    - B and B^e: the config's (the caller caps B^e at what the gateways' uplinks carry).
    - Channels: Section V-A's path loss at drawn distances (modeled radio, paced on the
      testbed); R^c and each R^e as asked for, capped by the measured links.
    """
    types = task_types_of(models)
    here = gateway_sources(models, config.devices_per_gateway)
    specs = tuple(ModelSpec(m.task_type, m.level, float(m.size_bytes), m.acc_clean, m.acc_noisy,
                            edge_s[m.key] * NOMINAL_EDGE_HZ) for m in models)
    gateways, devices = [], []
    for i, times in enumerate(gateway_s):
        own_rate = gateway_rates_bps[i]
        gateways.append(Gateway(
            cache_bytes=float(gateway_cache_bytes),
            compute_hz=NOMINAL_EDGE_HZ * _median_ratio(edge_s, times),
            gamma_e=spectral_efficiency(TABLE4["p_e_dbm"], rng.uniform(*GATEWAY_DISTANCE_M)),
            edge_rate_bps=own_rate if own_rate < config.edge_rate_bps else None))
        for t in here:
            devices.append(Device(i, t, spectral_efficiency(
                TABLE4["p_dbm"], rng.uniform(*DEVICE_DISTANCE_M))))
    return PlacementProblem(
        models=specs, gateways=tuple(gateways), devices=tuple(devices),
        edge_cache_bytes=float(cache_bytes(models, types, EDGE_CACHE_RATIO, config.cache_scale)),
        edge_compute_hz=NOMINAL_EDGE_HZ, bandwidth_hz=config.band_hz,
        edge_bandwidth_hz=config.edge_band_hz, cloud_rate_bps=cloud_rate_bps,
        edge_rate_bps=config.edge_rate_bps)


class Placement(Orchestrator[PlacementConfig, Any, PlacementRun]):
    keys_type = pl.PlacementKeys

    def __init__(self, server, devices, config: PlacementConfig) -> None:
        super().__init__(server, devices, config)
        self.cloud = ""
        self.catalogue: List[pl.ModelInfo] = []
        self.store: Optional[pl.StoreRes] = None
        self.gateway_times: Dict[str, Dict[str, float]] = {}
        self.edge_times: Dict[str, float] = {}
        self.problem: Optional[PlacementProblem] = None
        self.executor: Optional[TestbedExecutor] = None
        self.edge: Optional[EdgeNode] = None
        self.rates: Dict[str, float] = {}
        self.configure_ins: Dict[str, pl.ConfigureIns] = {}
        self.gateway_cache_bytes = 0

    # ------------------------------------------------------------ configure
    def _roles(self) -> List[str]:
        if self.config.cloud is not None:
            clouds = [d for d in self.devices if d == self.config.cloud]
        else:
            clouds = [d for d in self.devices
                      if self.server.profile(d).labels.get(pl.ROLE_LABEL) == pl.CLOUD_ROLE]
        if len(clouds) != 1:
            raise WorkloadError(f"placement needs exactly one cloud store (an agent started with "
                                f"--label {pl.ROLE_LABEL}={pl.CLOUD_ROLE}); found {len(clouds)} "
                                f"among {self.devices}")
        gateways = [d for d in self.devices if d != clouds[0]]
        if not gateways:
            raise WorkloadError("placement needs at least one gateway besides the cloud store")
        self.cloud = clouds[0]
        return gateways

    async def configure(self) -> None:
        cfg = self.config
        gateways = self._roles()
        store = (await self.dispatch(pl.STORE, {self.cloud: pl.StoreIns(
            run_id=cfg.run_id, preset=cfg.preset, dataset=cfg.dataset, data_root=cfg.data_root,
            seed=cfg.seed, noise_draws=cfg.noise_draws, repeats=cfg.repeats)},
            timeout_s=cfg.timeout_s))[self.cloud]
        self.store, self.catalogue = store, list(store.models)
        size_of = {m.key: m.size_bytes for m in self.catalogue}
        self.gateway_cache_bytes = cache_bytes(
            self.catalogue, gateway_sources(self.catalogue, cfg.devices_per_gateway),
            GATEWAY_CACHE_RATIO, cfg.cache_scale)
        self.configure_ins = {name: pl.ConfigureIns(
            run_id=cfg.run_id, models=self.catalogue, cache_bytes=self.gateway_cache_bytes,
            dataset=cfg.dataset, data_root=cfg.data_root, test_fraction=store.test_fraction,
            max_samples=store.max_samples, seed=cfg.seed, repeats=cfg.repeats,
            period_s=cfg.period_s) for name in gateways}
        configured = await self.dispatch(pl.CONFIGURE, self.configure_ins, timeout_s=cfg.timeout_s)
        gateways = [g for g in gateways if g in configured]
        self.gateway_times = {g: configured[g].infer_s for g in gateways}
        self.edge_times = await asyncio.get_running_loop().run_in_executor(None, self._time_here)
        self.problem = self._problem(gateways)
        self.problem_devices = gateways
        structures = {m.key: m for m in self.catalogue}
        self.edge = EdgeNode(
            ModelCache(int(self.problem.edge_cache_bytes),
                       lambda key: build_net(structures[key].depth, structures[key].width,
                                             structures[key].hidden, structures[key].pooled,
                                             structures[key].classes), name="edge"),
            ShareScheduler(cfg.period_s, name="ecos-shares"))
        self.install_validator(self.keys.key("model") + "/", validate_model_upload(size_of, self.cloud))
        self.install_validator(self.keys.key("task") + "/", validate_task_upload(gateways))
        self.executor = TestbedExecutor(
            self.server, asyncio.get_running_loop(), self.keys, self.problem, gateways, self.cloud,
            self.edge, self.configure_ins, [self.rates[g] for g in gateways],
            self.problem.cloud_rate_bps, seed=cfg.seed, timeout_s=cfg.timeout_s)

    def _time_here(self) -> Dict[str, float]:
        """Q on the ECoS: every model structure timed on this server (untrained weights:
        inference time does not depend on them)."""
        out = {}
        n = images_per_task(REFERENCE_TASK_BYTES)
        gen = torch.Generator().manual_seed(self.config.seed)
        for m in self.catalogue:
            net = build_net(m.depth, m.width, m.hidden, m.pooled, m.classes)
            x = task_type(m.task_type).transform(torch.rand((n, 1, 28, 28), generator=gen))
            out[m.key] = time_model(net, x, repeats=self.config.repeats)
        return out

    def _problem(self, gateways: List[str]) -> PlacementProblem:
        cfg = self.config
        up_cloud, _ = rate_bounds(self.server, self.cloud)
        bounds = {g: rate_bounds(self.server, g) for g in gateways}  # (up, down) per gateway
        self.rates = {g: min(cfg.edge_rate_bps, bounds[g][1]) for g in gateways}
        problem = testbed_problem(self.catalogue, self.edge_times,
                                  [self.gateway_times[g] for g in gateways], cfg,
                                  min(cfg.cloud_rate_bps, up_cloud),
                                  [self.rates[g] for g in gateways], self.gateway_cache_bytes,
                                  np.random.default_rng([cfg.seed, 17]))
        # No gateway's uplink may be asked for more than it carries: the whole band B^e at
        # its gamma^e is the most one ECoS task can get (alpha^e = 1).
        cap = min(bounds[g][0] / gw.gamma_e for g, gw in zip(gateways, problem.gateways))
        if cap < problem.edge_bandwidth_hz:
            logger.warning("B^e %.0f Hz would ask more than a gateway's uplink carries; capped "
                           "at %.0f Hz", problem.edge_bandwidth_hz, cap)
            problem = replace(problem, edge_bandwidth_hz=cap)
        return problem

    def on_close(self) -> None:
        if self.edge is not None:
            self.edge.scheduler.close()

    # ------------------------------------------------------------ decide
    def env(self, executor: Any = None, slots: int = 50) -> PlacementEnv:
        """The environment of this testbed's problem: model mode, or testbed mode with
        ``executor=self.executor``."""
        self.require_configured()
        return PlacementEnv(self.problem, executor=executor, slots_per_episode=slots)

    def decide(self, scheme: Optional[str] = None, path: Optional[str] = None, **params: Any) -> Any:
        """The policy saved under ``path``, or a fresh ``random`` one; learning schemes are
        trained with :meth:`train` first."""
        from .agents import load_agent, make_agent

        self.require_configured()
        if path:
            saved, agent = load_agent(path, self.env())
            if scheme and saved != scheme:
                raise WorkloadError(f"{path} holds a {saved} policy, not {scheme}")
            expected = self.env().observation_space.shape
            if agent.observation_space.shape != expected:
                raise WorkloadError(f"{path} was trained for observations of shape "
                                    f"{agent.observation_space.shape}, this testbed's are {expected}"
                                    " (another number of gateways or task sources)")
            return agent
        if scheme != "random":
            raise WorkloadError(f"{scheme!r} needs a trained policy: train() it or give a path")
        return make_agent("random", self.env(), seed=self.config.seed)

    # ------------------------------------------------------------ run
    async def run(self, decision: Any = None, tag: str = "", slots: int = 10,
                  episode_seed: int = 0) -> PlacementRun:
        """One episode of ``slots`` slots: ``decision`` (a policy) decides each from the
        measured state; the testbed executes it."""
        self.require_configured()
        policy = decision if decision is not None else self.decide("random")
        env = self.env(self.executor, slots)
        first = len(self.executor.records)
        run = PlacementRun(tag or getattr(policy, "scheme", "policy"), [], [], [])

        def episode() -> None:
            obs, _ = env.reset(seed=episode_seed)
            done = False
            while not done:
                t0 = time.perf_counter()
                action, _ = policy.predict(obs, deterministic=True)
                run.decision_ms.append(1e3 * (time.perf_counter() - t0))
                obs, reward, term, trunc, info = env.step(action)
                run.rewards.append(float(reward))
                run.metrics.append({k: v for k, v in info.items() if isinstance(v, (int, float))})
                done = term or trunc

        await asyncio.get_running_loop().run_in_executor(None, episode)
        run.records = self.executor.records[first:]
        return run

