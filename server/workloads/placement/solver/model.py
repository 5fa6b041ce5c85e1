"""The system model of Zhang et al., "Deep Reinforcement Learning Based Resource Management for
DNN Inference in Industrial IoT", Section III: eqs. (1)-(11) and constraints C1-C7. Pure.

Problem: G gateways (IGWs) with devices (one task each per slot, Algorithm 1's
``i, k`` order is the device order), a catalogue of light/heavy models per task
type, caches S^l (each IGW) and S^e (the ECaS), computing C^l and C^e, bands B
(device -> IGW) and B^e (IGW -> BS) and the backhaul rates R^c (CCaS -> ECaS)
and R^e (ECaS -> IGW). Units are in the names; sizes are bytes, delays seconds.

Readings where the extracted text is garbled or silent (each says which
equation it implements):

- Eq. (4) sends every task over the device -> IGW hop, so the band B is shared
  by *all* tasks of a gateway: C4's first sum runs over every task (as printed it
  has ``m_{i,k}``, which would leave the first hop of ECoS tasks unconstrained).
- C4 and C5 are enforced per gateway for the gateway's own resources: each IGW
  runs its own device network of band B (Table I: "available bandwidth from device
  to IGW"; Fig. 5 sweeps "the spectrum resources of IGWs") and shares its own C^l.
  The printed sums over all IGWs would let one gateway's devices use another's band
  and processor.
- Eq. (8) as printed has tau^{e_n}; the only route into the ECaS is CCaS ->
  ECaS (Section III-C), whose delay is tau^{c_n} of eq. (5). We use tau^{c_n}.
- Models are shared by task type, not dedicated per device: a cache holds a
  model once, however many devices need it. C6 therefore bounds the bytes of
  the *distinct* models a node's tasks need (with one model per device, as in
  the paper, this is the printed sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

import numpy as np

LIGHT, HEAVY = 0, 1
LEVEL_NAMES = ("light", "heavy")
IGW, ECOS = "igw", "ecos"
#: Column order of the per-task cache keep decisions omega (eq. 13): l0, l1, e0, e1.
OMEGA_COLUMNS = ("igw_light", "igw_heavy", "edge_light", "edge_heavy")


def model_key(task_type: str, level: int) -> str:
    """The catalogue name of a model, e.g. ``"parity/heavy"`` (as ``models.placement`` names it)."""
    return f"{task_type}/{LEVEL_NAMES[level]}"


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class ModelProfile:
    """One model's measured inputs: accuracy clean/noisy, size, full-node inference time per node kind."""

    task_type: str
    level: int
    size_bytes: float
    acc_clean: float
    acc_noisy: float
    infer_s: Mapping[str, float]  # node kind ("igw", "ecos") -> seconds for one reference task, beta = 1

    @property
    def key(self) -> str:
        return model_key(self.task_type, self.level)


@dataclass(frozen=True)
class PlacementProfile:
    """The per-model inputs of the placement problem; ``label`` says where they came from
    (measured: host, data set, preset; or Table III, modeled)."""

    models: Tuple[ModelProfile, ...]
    label: str

    def __post_init__(self) -> None:
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a model appears twice in the profile: {keys}")
        for t in {m.task_type for m in self.models}:
            if not {model_key(t, LIGHT), model_key(t, HEAVY)} <= set(keys):
                raise ValueError(f"task type {t!r} needs a light and a heavy model")

    @property
    def task_types(self) -> Tuple[str, ...]:
        seen: List[str] = []
        for m in self.models:
            if m.task_type not in seen:
                seen.append(m.task_type)
        return tuple(seen)

    @classmethod
    def from_measurements(
        cls,
        records: Iterable[Mapping[str, Any]],
        label: str,
        node_kind: str = ECOS,
        node_speed_ratio: Optional[Mapping[str, float]] = None,
    ) -> PlacementProfile:
        """From ``ModelMeasurement.to_dict()`` records measured on one node of kind ``node_kind``.

        Other kinds' times are derived as ``infer_s * node_speed_ratio[kind]``.
        """
        ratios = dict(node_speed_ratio or {})
        models = []
        for r in records:
            times = {node_kind: float(r["infer_s"])}
            times.update({kind: float(r["infer_s"]) * ratio for kind, ratio in ratios.items()})
            models.append(
                ModelProfile(
                    str(r["task_type"]),
                    int(r["level"]),
                    float(r["size_bytes"]),
                    float(r["acc_clean"]),
                    float(r["acc_noisy"]),
                    times,
                )
            )
        return cls(tuple(models), label)


# --------------------------------------------------------------------------- problem


@dataclass(frozen=True)
class ModelSpec:
    """M^n = (P^n, Q^n, S^n) of Section III-A for one task type and level."""

    task_type: str
    level: int
    size_bytes: float  # S^n
    acc_clean: float  # P_UL / P_UH
    acc_noisy: float  # P_DL / P_DH
    workload_cycles: float  # Q^n

    @property
    def key(self) -> str:
        return model_key(self.task_type, self.level)


@dataclass(frozen=True)
class Device:
    """IIoT device k under gateway ``gateway``: its application and eq. (1) spectral efficiency."""

    gateway: int
    task_type: str
    gamma: float  # bit/s/Hz on the device -> IGW link


@dataclass(frozen=True)
class Gateway:
    """IGW i: its cache S^l, computing C^l and the IGW -> BS spectral efficiency gamma^e.

    ``edge_rate_bps`` is this IGW's own R^e where its link carries less than the problem's
    (a testbed gateway on a slower measured link); None: the problem's R^e.
    """

    cache_bytes: float
    compute_hz: float
    gamma_e: float
    edge_rate_bps: Optional[float] = None


@dataclass(frozen=True)
class PlacementProblem:
    models: Tuple[ModelSpec, ...]
    gateways: Tuple[Gateway, ...]
    devices: Tuple[Device, ...]
    edge_cache_bytes: float  # S^e
    edge_compute_hz: float  # C^e
    bandwidth_hz: float  # B of each IGW's device network, shared by that IGW's tasks
    edge_bandwidth_hz: float  # B^e, IGW -> BS, shared by ECoS tasks
    cloud_rate_bps: float  # R^c, CCaS -> ECaS
    edge_rate_bps: float  # R^e, ECaS -> IGW

    def __post_init__(self) -> None:
        if not self.gateways or not self.devices:
            raise ValueError("a placement problem needs at least one gateway and one device")
        for name in (
            "edge_cache_bytes",
            "edge_compute_hz",
            "bandwidth_hz",
            "edge_bandwidth_hz",
            "cloud_rate_bps",
            "edge_rate_bps",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a model appears twice in the catalogue: {keys}")
        for k, d in enumerate(self.devices):
            if not 0 <= d.gateway < len(self.gateways):
                raise ValueError(
                    f"device {k} is under gateway {d.gateway}, but there are "
                    f"{len(self.gateways)} gateways (0..{len(self.gateways) - 1})"
                )
            for level in (LIGHT, HEAVY):
                if model_key(d.task_type, level) not in keys:
                    raise ValueError(
                        f"device {k} runs {d.task_type!r}, which has no "
                        f"{LEVEL_NAMES[level]} model in the catalogue"
                    )

    @property
    def n_tasks(self) -> int:
        return len(self.devices)

    @cached_property
    def catalogue(self) -> Dict[str, ModelSpec]:
        return {m.key: m for m in self.models}

    def model(self, task_type: str, level: int) -> ModelSpec:
        return self.catalogue[model_key(task_type, level)]

    @cached_property
    def gateway_of(self) -> np.ndarray:
        return np.array([d.gateway for d in self.devices], dtype=np.int64)


@dataclass(frozen=True)
class SlotTasks:
    """W_{i,k} = (D, T^max, theta) of every device for one slot, in device order."""

    data_bytes: np.ndarray
    deadline_s: np.ndarray
    noisy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.data_bytes)
        if len(self.deadline_s) != n or len(self.noisy) != n:
            raise ValueError("data_bytes, deadline_s and noisy must have one entry per task")


@dataclass(frozen=True)
class Decision:
    """The discretized action of eq. (13), one entry per task in device order.

    ``keep`` is N x 4 (omega l0, l1, e0, e1: :data:`OMEGA_COLUMNS`).
    """

    on_gateway: np.ndarray  # m (1: IGW i, 0: ECoS)
    heavy: np.ndarray  # phi (1: heavy)
    alpha_l: np.ndarray
    alpha_e: np.ndarray
    beta_l: np.ndarray
    beta_e: np.ndarray
    keep: np.ndarray

    def check_shapes(self, n: int) -> None:
        for name in ("on_gateway", "heavy", "alpha_l", "alpha_e", "beta_l", "beta_e"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(
                    f"decision.{name} must have shape ({n},), got {np.shape(getattr(self, name))}"
                )
        if np.shape(self.keep) != (n, 4):
            raise ValueError(f"decision.keep must have shape ({n}, 4), got {np.shape(self.keep)}")


@dataclass(frozen=True)
class CacheState:
    """Which models each IGW cache and the ECaS hold (u^{l_n}, u^{e_n} of Section III-C)."""

    gateways: Tuple[FrozenSet[str], ...]
    edge: FrozenSet[str]

    @classmethod
    def empty(cls, n_gateways: int) -> CacheState:
        return cls(tuple(frozenset() for _ in range(n_gateways)), frozenset())

    def flags(self, problem: PlacementProblem) -> np.ndarray:
        """N x 4 of u^{l0}, u^{l1}, u^{e0}, u^{e1} per task (the cache part of eq. 12)."""
        out = np.zeros((problem.n_tasks, 4), dtype=np.float32)
        for k, d in enumerate(problem.devices):
            for level in (LIGHT, HEAVY):
                key = model_key(d.task_type, level)
                out[k, level] = key in self.gateways[d.gateway]
                out[k, 2 + level] = key in self.edge
        return out


# --------------------------------------------------------------------------- equations


@dataclass(frozen=True)
class SlotPrediction:
    """Eqs. (2)-(10) for one slot given the start-of-slot caches (per task, device order)."""

    upload_s: np.ndarray  # t^l (3) or t^e (4)
    transfer_s: np.ndarray  # the model's transmission delay if it must be placed, else 0
    compute_s: np.ndarray  # c^l or c^e (6)
    delay_s: np.ndarray  # d (9), from (7) and (8)
    accuracy: np.ndarray  # U (10), before the deadline test
    meets_deadline: np.ndarray  # C1


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)


def model_transfer_s(
    problem: PlacementProblem,
    spec: ModelSpec,
    on_gateway: bool,
    edge_has_model: bool,
    gateway: Optional[int] = None,
) -> float:
    """Eq. (5) and Section III-C routes: CCaS -> ECaS tau^c (ECoS tasks); ECaS -> IGW tau^e when
    the ECaS holds the model, else CCaS -> IGW tau^l = tau^c + tau^e (IGW tasks), at gateway
    ``gateway``'s own R^e when it has one."""
    own = problem.gateways[gateway].edge_rate_bps if gateway is not None else None
    tau_c = 8.0 * spec.size_bytes / problem.cloud_rate_bps
    tau_e = 8.0 * spec.size_bytes / (own or problem.edge_rate_bps)
    if not on_gateway:
        return tau_c
    return tau_e if edge_has_model else tau_c + tau_e


def predict(
    problem: PlacementProblem, tasks: SlotTasks, cache: CacheState, decision: Decision
) -> SlotPrediction:
    """Eqs. (2)-(10) for every task, with u from ``cache`` (the start of the slot)."""
    n = problem.n_tasks
    decision.check_shapes(n)
    if len(tasks.data_bytes) != n:
        raise ValueError(f"{len(tasks.data_bytes)} tasks for {n} devices")
    m = np.asarray(decision.on_gateway, dtype=bool)
    bits = 8.0 * np.asarray(tasks.data_bytes, dtype=float)
    gamma = np.array([d.gamma for d in problem.devices])
    gamma_e = np.array([problem.gateways[d.gateway].gamma_e for d in problem.devices])
    rate = np.asarray(decision.alpha_l, float) * problem.bandwidth_hz * gamma  # eq. (2)
    rate_e = np.asarray(decision.alpha_e, float) * problem.edge_bandwidth_hz * gamma_e
    t_l = _safe_div(bits, rate)  # eq. (3)
    upload = np.where(m, t_l, t_l + _safe_div(bits, rate_e))  # eq. (4)
    transfer = np.zeros(n)
    q = np.zeros(n)
    acc = np.zeros(n)
    for k, d in enumerate(problem.devices):
        spec = problem.model(d.task_type, int(decision.heavy[k]))
        q[k] = spec.workload_cycles
        noisy = bool(tasks.noisy[k])
        acc[k] = spec.acc_noisy if noisy else spec.acc_clean  # eq. (10)
        held = cache.gateways[d.gateway] if m[k] else cache.edge
        if spec.key not in held:  # (1 - u) factors of eqs. (7)-(8)
            transfer[k] = model_transfer_s(problem, spec, bool(m[k]), spec.key in cache.edge, d.gateway)
    capacity = np.where(
        m,
        np.array([problem.gateways[d.gateway].compute_hz for d in problem.devices]),
        problem.edge_compute_hz,
    )
    compute = _safe_div(q, np.where(m, decision.beta_l, decision.beta_e) * capacity)  # eq. (6)
    delay = np.maximum(upload, transfer) + compute  # eqs. (7)-(9)
    return SlotPrediction(upload, transfer, compute, delay, acc, delay <= np.asarray(tasks.deadline_s))


def check_constraints(
    problem: PlacementProblem, decision: Decision, tol: float = 1e-9, capacity: bool = True
) -> List[str]:
    """Violations of C2-C7 (C1 is per task: :attr:`SlotPrediction.meets_deadline`), one line each.

    ``capacity=False`` skips C6 (the caches' capacities) and the bytes it needs: the
    executors leave C6 to DCPU, which places a model only where it fits."""
    n = problem.n_tasks
    decision.check_shapes(n)
    out: List[str] = []
    for name, values in (
        ("C2 m", decision.on_gateway),
        ("C3 phi", decision.heavy),
        ("C7 omega", decision.keep),
    ):
        if not np.isin(np.asarray(values), (0, 1)).all():
            out.append(f"{name} must be 0 or 1")
    m = np.asarray(decision.on_gateway).astype(bool)
    for name in ("alpha_l", "alpha_e", "beta_l", "beta_e"):
        v = np.asarray(getattr(decision, name), float)
        if (v < -tol).any() or (v > 1 + tol).any():
            out.append(f"{'C4' if name.startswith('alpha') else 'C5'} {name} outside [0, 1]")
    if decision.alpha_e[~m].sum() > 1 + tol:
        out.append(f"C4 sum of alpha_e over ECoS tasks is {decision.alpha_e[~m].sum():.6g} > 1")
    if decision.beta_e[~m].sum() > 1 + tol:
        out.append(f"C5 sum of beta_e over ECoS tasks is {decision.beta_e[~m].sum():.6g} > 1")
    g = problem.gateway_of
    for i, gw in enumerate(problem.gateways):
        if decision.alpha_l[g == i].sum() > 1 + tol:
            out.append(f"C4 sum of alpha_l at gateway {i} is {decision.alpha_l[g == i].sum():.6g} > 1")
        here = m & (g == i)
        if decision.beta_l[here].sum() > 1 + tol:
            out.append(f"C5 sum of beta_l at gateway {i} is {decision.beta_l[here].sum():.6g} > 1")
        if not capacity:
            continue
        need = required_bytes(problem, decision, here)
        if need > gw.cache_bytes + tol:
            out.append(f"C6 gateway {i} needs {need:.0f} B of models, cache S^l is {gw.cache_bytes:.0f} B")
    if not capacity:
        return out
    need = required_bytes(problem, decision, ~m)
    if need > problem.edge_cache_bytes + tol:
        out.append(f"C6 the ECaS needs {need:.0f} B of models, cache S^e is {problem.edge_cache_bytes:.0f} B")
    return out


def required_bytes(problem: PlacementProblem, decision: Decision, mask: np.ndarray) -> float:
    """Bytes of the distinct models the tasks in ``mask`` need (C6's left-hand side)."""
    keys = {model_key(problem.devices[k].task_type, int(decision.heavy[k])) for k in np.flatnonzero(mask)}
    return float(sum(problem.catalogue[key].size_bytes for key in keys))


def average_accuracy(accuracy: np.ndarray, completed: np.ndarray) -> float:
    """Eq. (11): (1/N) sum U over tasks, U counting only for tasks completed in time."""
    return float(np.mean(np.where(completed, accuracy, 0.0))) if len(accuracy) else 0.0
