"""Split DNN inference, paper 004 (Gao et al.): the cost model of Sections 2-4.

Typed inputs (:class:`SplitDevice`, :class:`SplitProblem`), a strategy per
device (:class:`DeviceStrategy`: split point m* of eq. (18) and the slot of
each offloaded layer, eq. (14)), and :func:`evaluate`, which returns what the
model predicts for a joint strategy (:class:`DeviceOutcome`, eqs. (23)-(25)).

Equations (numbers of the paper):

- upload ``T^up_{n,m} = O_{n,m} / R^up_n`` (8), rate ``W log2(1 + P G / (W N0))``
  (9) (:func:`link_rate_bps`); download ``T^do_n = O_{n,M} / R^do_n`` (10), (11);
  ``O`` is given in bytes and converted to bits here;
- energy ``E^lo = P^lo T^lo`` (12), ``E^up = P^up T^up`` (13);
- price ``p_h = a_h + (b_h / h) S^h_Sigma`` (19), ``S_{n,m} = delta_n f_s T^se_{n,m}``
  (20)-(21); cycles are counted in units of ``SplitProblem.price_unit_cycles``
  (the paper: single cycles, see ``split_params`` for why Fig. 4 needs another unit);
- delay ``T_n = sum_{m<=m*} T^lo + T^up_{m*} + (h_max / H) T_d + T^do`` (24),
  energy ``E_n = sum_{m<=m*} E^lo + E^up_{m*}`` (25), cost
  ``C_n = alpha c^T T_n + beta c^E E_n + gamma sum_h p_h S_{n,h}`` (23).
  All-local (m* = M) uploads, waits and downloads nothing.

Slot constraints, our reading of (17), (27) and the cap of eq. (29): the server
has B parallel lanes, each slot lasts T_d / H. (i) One device's subtasks in a
slot run one after the other (Rule 2), so they must fit in T_d / H; (ii) at most
B devices use a slot (27); (iii) so the total load of a slot is at most
B T_d / H, the cap of eq. (29). The paper's (17) bounds the total load by T_d / H,
which would leave no room for Rule 1's parallelism; we apply T_d / H per device.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edgebed.proto.link_model import shannon_rate_bps
from edgebed.server.solvers.base import SolverError, scalar

logger = logging.getLogger(__name__)

#: Relative slack when checking slot capacities (sums of floats).
CAP_RTOL = 1e-9


class InfeasibleError(SolverError):
    """No strategy meets the delay bound (26) or the slot constraints (17), (27)."""


def link_rate_bps(bandwidth_hz: float, power_w: float, gain: float, n0_w_per_hz: float) -> float:
    """Eqs. (9) and (11): ``W log2(1 + P G / (W N0))``, N0 a noise density in W/Hz."""
    bandwidth_hz = scalar("bandwidth_hz", bandwidth_hz, positive=True)
    n0 = scalar("n0_w_per_hz", n0_w_per_hz, positive=True)
    return shannon_rate_bps(bandwidth_hz, scalar("power_w", power_w), scalar("gain", gain),
                            n0 * bandwidth_hz)


def nonneg_array(name: str, values, length: Optional[int] = None) -> np.ndarray:
    """A read-only float array, non-empty, finite and >= 0 (of ``length`` if given), else ValueError."""
    try:
        arr = np.array(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if length is not None and arr.size != length:
        raise ValueError(f"{name} has {arr.size} entries, expected {length}")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be non-empty, finite and non-negative, got {arr!r}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SplitDevice:
    """One mobile device (MD) n: its DNN's per-layer profile, link and cost weights."""

    t_local_s: np.ndarray      #: (M,) T^lo_{n,m}, layer m on the device
    t_server_s: np.ndarray     #: (M,) T^se_{n,m}, layer m on the server
    out_bytes: np.ndarray      #: (M+1,) O_{n,m} uploaded at split m (index 0: the raw input), eq. (8)
    result_bytes: float        #: O_{n,M_n} returned to the device, eq. (10)
    uplink_bps: float         #: R^up_n, eq. (9) or a measured link
    downlink_bps: float       #: R^do_n, eq. (11) or a measured link
    p_up_w: float              #: P^up_n, eq. (13)
    p_local_w: float           #: P^lo_n, eq. (12)
    alpha: float               #: weight of the delay cost, eq. (23)
    beta: float                #: weight of the energy cost
    gamma: float               #: weight of the price; alpha + beta + gamma = 1
    c_t: float                 #: c^T_n, delay -> cost
    c_e: float                 #: c^E_n, energy -> cost
    delta: float               #: delta_n, cycles per bit, eq. (20)
    tau_s: float               #: tau_n, tolerable delay, eq. (26)

    def __post_init__(self) -> None:
        t_lo = nonneg_array("t_local_s", self.t_local_s)
        m = t_lo.size
        object.__setattr__(self, "t_local_s", t_lo)
        object.__setattr__(self, "t_server_s", nonneg_array("t_server_s", self.t_server_s, m))
        object.__setattr__(self, "out_bytes", nonneg_array("out_bytes", self.out_bytes, m + 1))
        for name in ("uplink_bps", "downlink_bps", "delta", "tau_s"):
            object.__setattr__(self, name, scalar(name, getattr(self, name), positive=True))
        for name in ("result_bytes", "p_up_w", "p_local_w", "c_t", "c_e"):
            object.__setattr__(self, name, scalar(name, getattr(self, name)))
        for name in ("alpha", "beta", "gamma"):
            object.__setattr__(self, name, scalar(name, getattr(self, name), upper=1.0))
        total = self.alpha + self.beta + self.gamma
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"alpha + beta + gamma must be 1 (eq. 23), got {total!r}")

    @property
    def num_layers(self) -> int:
        return int(self.t_local_s.size)


@dataclass(frozen=True, eq=False)
class SplitProblem:
    """N devices sharing one server with H slots over T_d and B parallel lanes (Section 3)."""

    devices: Tuple[SplitDevice, ...]
    slots_h: int               #: H
    t_d_s: float               #: T_d, the total duration of the H slots
    parallel_limit: int        #: B, eq. (27)
    a: np.ndarray              #: (H,) a_h, eq. (19)
    b: np.ndarray              #: (H,) b_h, eq. (19)
    f_s_hz: float              #: f_s, eq. (21)
    price_unit_cycles: float = 1.0   #: cycles per priced unit in (19), (23) (paper: 1)

    def __post_init__(self) -> None:
        devices = tuple(self.devices)
        if not devices or not all(isinstance(d, SplitDevice) for d in devices):
            raise ValueError("devices must be a non-empty sequence of SplitDevice")
        object.__setattr__(self, "devices", devices)
        for name in ("slots_h", "parallel_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("t_d_s", "f_s_hz", "price_unit_cycles"):
            object.__setattr__(self, name, scalar(name, getattr(self, name), positive=True))
        object.__setattr__(self, "a", nonneg_array("a", self.a, self.slots_h))
        object.__setattr__(self, "b", nonneg_array("b", self.b, self.slots_h))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def slot_s(self) -> float:
        """T_d / H, one slot, and the most one device may load into it (Rule 2, (17))."""
        return self.t_d_s / self.slots_h

    def cycles_per_second(self, n: int) -> float:
        """Priced units per second of server time of device n: delta_n f_s / unit (eqs. 20-22)."""
        return self.devices[n].delta * self.f_s_hz / self.price_unit_cycles


@dataclass(frozen=True)
class DeviceStrategy:
    """m* (eq. 18) and the slot (1..H) of each offloaded layer m*+1..M, non-decreasing (16).

    ``slots`` is empty when the device computes everything locally (m* = M), and
    for GTPOS, which has no slot model (its outcome holds the queue's timing).
    """

    split: int
    slots: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.split, bool) or int(self.split) != self.split or self.split < 0:
            raise ValueError(f"split must be a non-negative integer, got {self.split!r}")
        object.__setattr__(self, "split", int(self.split))
        slots = tuple(int(h) for h in self.slots)
        if any(h < 1 for h in slots) or any(x > y for x, y in zip(slots, slots[1:])):
            raise ValueError(f"slots must be >= 1 and non-decreasing (eq. 16), got {slots}")
        object.__setattr__(self, "slots", slots)

    @property
    def last_slot(self) -> int:
        """h_{n,max} of eq. (24); 0 when nothing is offloaded."""
        return self.slots[-1] if self.slots else 0

    def blocks(self) -> Tuple[Tuple[int, int, int], ...]:
        """``(slot, first_layer, last_layer)`` per used slot (layers 1-based, inclusive)."""
        out: List[Tuple[int, int, int]] = []
        for k, h in enumerate(self.slots):
            layer = self.split + 1 + k
            if out and out[-1][0] == h:
                out[-1] = (h, out[-1][1], layer)
            else:
                out.append((h, layer, layer))
        return tuple(out)


@dataclass(frozen=True)
class DeviceOutcome:
    """What the model predicts for one device (eqs. 23-25); times in s, energy in J."""

    delay_s: float
    energy_j: float
    price: float               #: C^P_n = sum_h p_h S_{n,h}, in priced units
    cost: float                #: C_n, eq. (23)
    local_s: float
    upload_s: float
    server_s: float            #: (h_max / H) T_d; GTPOS: queueing + processing
    download_s: float
    feasible: bool = True      #: T_n <= tau_n (26)


@dataclass(frozen=True)
class SplitSolution:
    strategies: Tuple[DeviceStrategy, ...]
    outcomes: Tuple[DeviceOutcome, ...]
    iterations: int
    avg_cost_history: Tuple[float, ...]
    converged: bool
    scheme: str
    rejections: int = 0        #: updates the server refused (UAI: the estimate was wrong)

    @property
    def avg_delay_s(self) -> float:
        return float(np.mean([o.delay_s for o in self.outcomes]))

    @property
    def avg_energy_j(self) -> float:
        return float(np.mean([o.energy_j for o in self.outcomes]))

    @property
    def avg_cost(self) -> float:
        return float(np.mean([o.cost for o in self.outcomes]))


# --------------------------------------------------------------------------- per-device terms


@dataclass(frozen=True, eq=False)
class DeviceTerms:
    """Per-split quantities of one device, indexed by m = 0..M (eqs. 8, 10, 12, 13)."""

    local_s: np.ndarray        #: sum_{i<=m} T^lo_i
    upload_s: np.ndarray       #: T^up at split m (0 at m = M)
    server_cum_s: np.ndarray   #: sum_{i<=m} T^se_i (so layers i..j take cum[j] - cum[i-1])
    download_s: float          #: T^do, paid when m < M
    energy_j: np.ndarray       #: E_n of eq. (25) at split m
    base_delay_s: np.ndarray   #: T_n of eq. (24) without the slot term


def device_terms(dev: SplitDevice) -> DeviceTerms:
    m = dev.num_layers
    local = np.concatenate([[0.0], np.cumsum(dev.t_local_s)])
    upload = dev.out_bytes * 8.0 / dev.uplink_bps                 # eq. (8)
    upload[m] = 0.0                                                # all local: nothing sent
    download = dev.result_bytes * 8.0 / dev.downlink_bps          # eq. (10)
    energy = dev.p_local_w * local + dev.p_up_w * upload           # eqs. (12), (13), (25)
    base = local + upload + np.where(np.arange(m + 1) < m, download, 0.0)
    return DeviceTerms(local, upload, np.concatenate([[0.0], np.cumsum(dev.t_server_s)]),
                       download, energy, base)


def slot_price_cost(problem: SplitProblem, n: int, h: int, own_s: np.ndarray, others_units: float,
                    self_weight: float = 1.0, agg_cap_units: float = np.inf) -> np.ndarray:
    """gamma_n p_h S_{n,h} of device n for own loads ``own_s`` (seconds) in slot ``h`` (1-based).

    The slot's aggregate S^h_Sigma is ``min(agg_cap_units, others_units + self_weight S_{n,h})``
    in priced units (eqs. 19-22; the weight and cap are those of the estimate (29), 1 and
    none with exact feedback).
    """
    s = problem.cycles_per_second(n) * np.asarray(own_s, dtype=float)      # eqs. (20), (21)
    agg = np.minimum(agg_cap_units, others_units + self_weight * s)
    return problem.devices[n].gamma * (problem.a[h - 1] + problem.b[h - 1] / h * agg) * s  # eq. (19)


# --------------------------------------------------------------------------- joint evaluation


def check_strategy(problem: SplitProblem, n: int, strategy: DeviceStrategy) -> None:
    """ValueError unless ``strategy`` is a well-formed slot strategy for device n (15), (16)."""
    m = problem.devices[n].num_layers
    if not 0 <= strategy.split <= m:
        raise ValueError(f"device {n}: split {strategy.split} outside 0..{m}")
    if len(strategy.slots) != m - strategy.split:
        raise ValueError(f"device {n}: split {strategy.split} offloads {m - strategy.split} layers "
                         f"but {len(strategy.slots)} slots are given")
    if strategy.slots and strategy.slots[-1] > problem.slots_h:
        raise ValueError(f"device {n}: slot {strategy.slots[-1]} outside 1..{problem.slots_h}")


def device_loads(problem: SplitProblem, n: int, strategy: DeviceStrategy) -> np.ndarray:
    """(H,) server seconds of device n per slot: sum_m y_{n,m,h} T^se_{n,m}."""
    load = np.zeros(problem.slots_h)
    t_se = problem.devices[n].t_server_s
    for k, h in enumerate(strategy.slots):
        load[h - 1] += t_se[strategy.split + k]
    return load


def slot_usage(problem: SplitProblem, strategies: Sequence[DeviceStrategy]) -> np.ndarray:
    """(N, H) per-device slot loads in seconds; a device uses slot h iff it has a layer there."""
    if len(strategies) != problem.num_devices:
        raise ValueError(f"{len(strategies)} strategies for {problem.num_devices} devices")
    for n, s in enumerate(strategies):
        check_strategy(problem, n, s)
    return np.array([device_loads(problem, n, s) for n, s in enumerate(strategies)])


def slot_violations(problem: SplitProblem, strategies: Sequence[DeviceStrategy]) -> List[str]:
    """Human-readable violations of (17) per device, the total cap and (27); empty if none."""
    loads = slot_usage(problem, strategies)
    used = np.array([[h in s.slots for h in range(1, problem.slots_h + 1)] for s in strategies])
    cap = problem.slot_s * (1.0 + CAP_RTOL)
    out = [f"device {n} loads {loads[n, h]:.4g} s into slot {h + 1} > T_d/H = {problem.slot_s:.4g} s"
           for n, h in zip(*np.nonzero(loads > cap))]
    for h in range(problem.slots_h):
        if used[:, h].sum() > problem.parallel_limit:
            out.append(f"slot {h + 1} holds {int(used[:, h].sum())} devices > B = {problem.parallel_limit}")
        if loads[:, h].sum() > problem.parallel_limit * cap:
            out.append(f"slot {h + 1} total load {loads[:, h].sum():.4g} s > B T_d/H")
    return out


def evaluate(problem: SplitProblem, strategies: Sequence[DeviceStrategy]) -> Tuple[DeviceOutcome, ...]:
    """Eqs. (19)-(25) for a joint slot strategy (constraints are not enforced here:
    see :func:`slot_violations`; ``DeviceOutcome.feasible`` reports (26))."""
    loads = slot_usage(problem, strategies)
    units = loads * np.array([problem.cycles_per_second(n) for n in range(problem.num_devices)])[:, None]
    total_units = units.sum(axis=0)                                # S^h_Sigma, eq. (22)
    h = np.arange(1, problem.slots_h + 1)
    price_h = problem.a + problem.b / h * total_units              # p_h, eq. (19)
    out = []
    for n, (dev, s) in enumerate(zip(problem.devices, strategies)):
        terms = device_terms(dev)
        m = s.split
        server = s.last_slot * problem.slot_s                      # (h_max / H) T_d
        delay = float(terms.base_delay_s[m] + server)              # eq. (24)
        energy = float(terms.energy_j[m])                          # eq. (25)
        price = float(price_h @ units[n])                          # C^P_n
        cost = dev.alpha * dev.c_t * delay + dev.beta * dev.c_e * energy + dev.gamma * price
        out.append(DeviceOutcome(delay, energy, price, cost, float(terms.local_s[m]),
                                 float(terms.upload_s[m]), server,
                                 terms.download_s if m < dev.num_layers else 0.0,
                                 delay <= dev.tau_s * (1.0 + CAP_RTOL)))
    return tuple(out)
