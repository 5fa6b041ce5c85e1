"""Paper 003 (Ren, Yu, Ding, "Accelerating DNN training in wireless federated
edge learning systems"): the round model, its problem and solution records.

One gradient-averaging round (Sec. II-A, III-B), per device k of K:

- local gradient on ``B_k`` samples: CPU, eq. (9), ``t_k^L = B_k C / f_k``
  (here ``cpu_fixed_s + cpu_s_per_sample B_k``: ``cpu_s_per_sample = C / f_k =
  1 / V_k``; the intercept is 0 in the paper and absorbs a measured fit's
  per-call overhead); GPU, Assumption 1, eq. (27), ``t_l`` up to ``B_th``
  then ``t_l + c (B_k - B_th)``;
- upload of ``s = b p`` bits with a share ``x_k = tau_k^U / T_f^U`` of each
  uplink frame: ``t_k^U = s T_f^U / (tau_k^U R_k^U) = s / (x_k R_k^U)``, eq. (10);
- download, eq. (11), likewise with ``y_k = tau_k^D / T_f^D`` and ``R_k^D``;
- model update ``t_k^M = M / f_k``, eqs. (12) and (28).

The round takes ``T = max_k (t^L + t^U) + max_k (t^D + t^M)``, eq. (15);
device k is done at ``T_k = max_j (t_j^L + t_j^U) + t_k^D + t_k^M``, eq. (13)
(the extracted text writes the max over k with index k inside: the server
needs every gradient before it aggregates). Loss decay ``Delta L = xi B^alpha``
with ``B = sum_k B_k`` and ``alpha = 1/2``, eq. (8); learning efficiency
``E = Delta L / T``, eq. (16), the objective of P1 (17a) and P7 (31a).

The frame lengths cancel out of every latency (only shares matter); a zero
frame still means no slots at all and is refused. Everything is pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from edgebed.server.solvers.base import SolverError, equal_finish_shares, scalar, vector

SCENARIOS = ("cpu", "gpu")
#: Defaults with their source in the paper.
PAPER_MAX_BATCH = 128          # B^max, Sec. VI-A / Table I
PAPER_FRAME_S = 0.010          # T_f^U = T_f^D = 10 ms (LTE), Sec. VI-A / Table I
PAPER_QUANT_BITS = 32          # b, Sec. VI-A / Table I
#: xi of eq. (8) is "determined by the specific DNN model" and never given; it
#: scales E but not the optimal decision, so 1 by default. alpha = 1/2 is the
#: sqrt(B) law of eq. (8) (learning rate scaled as O(sqrt(B)), Sec. III-A).
DEFAULT_LOSS_DECAY_COEF = 1.0
DEFAULT_LOSS_DECAY_EXPONENT = 0.5

_GPU = ("gpu_flat_s", "gpu_threshold_batch", "gpu_s_per_sample")


def payload_bits(num_params: int, bits_per_element: int = PAPER_QUANT_BITS) -> float:
    """``s = b x p``, the gradient's size in bits (Sec. III-B, before eq. (10))."""
    if num_params < 1 or bits_per_element < 1:
        raise ValueError(f"num_params and bits_per_element must be positive, "
                         f"got {num_params} and {bits_per_element}")
    return float(num_params) * float(bits_per_element)


@dataclass(frozen=True)
class FeelProblem:
    """One round's allocation problem. Per-device fields have one entry per device.

    Zero rates and zero frames are accepted here and make the solvers raise
    :class:`SolverError` naming the cause; malformed values raise ``ValueError``.
    The three GPU fields (eq. (27)) are given together or not at all.
    """

    cpu_s_per_sample: Tuple[float, ...]   #: C / f_k = 1 / V_k, eq. (9), > 0
    update_s: Tuple[float, ...]           #: t_k^{M,C} = M^C / f_k, eq. (12)
    uplink_bps: Tuple[float, ...]    #: R_k^U with the whole frame, eq. (5)
    downlink_bps: Tuple[float, ...]  #: R_k^D with the whole frame, eq. (6)
    gradient_bits: float                  #: s = b p, both directions (Sec. III-B)
    cpu_fixed_s: Optional[Tuple[float, ...]] = None   #: intercept of t^L (0 in eq. (9))
    max_batch: int = PAPER_MAX_BATCH      #: B^max, eq. (17e)
    dataset_size: Optional[Tuple[int, ...]] = None    #: N_k: B_k <= N_k too (None: no cap)
    min_global_batch: Optional[float] = None          #: lower bound on B (None: K)
    max_global_batch: Optional[float] = None          #: upper bound on B (None: sum of caps)
    uplink_frame_s: float = PAPER_FRAME_S             #: T_f^U, eq. (17b)
    downlink_frame_s: float = PAPER_FRAME_S           #: T_f^D, eq. (17c)
    loss_decay_coef: float = DEFAULT_LOSS_DECAY_COEF          #: xi, eq. (8)
    loss_decay_exponent: float = DEFAULT_LOSS_DECAY_EXPONENT  #: 1/2 in eq. (8), in (0, 1]
    gpu_flat_s: Optional[Tuple[float, ...]] = None            #: t_k^l, eq. (27)
    gpu_threshold_batch: Optional[Tuple[float, ...]] = None   #: B_k^th, eq. (27)
    gpu_s_per_sample: Optional[Tuple[float, ...]] = None      #: c_k, eq. (27), >= 0
    gpu_update_s: Optional[Tuple[float, ...]] = None          #: t_k^{M,G}, eq. (28) (None: update_s)

    def __post_init__(self) -> None:
        k = len(self.cpu_s_per_sample) if hasattr(self.cpu_s_per_sample, "__len__") else 0
        if not k:
            raise ValueError("cpu_s_per_sample must list at least one device")
        put = object.__setattr__
        put(self, "cpu_s_per_sample", vector("cpu_s_per_sample", self.cpu_s_per_sample, k, positive=True))
        for name in ("update_s", "uplink_bps", "downlink_bps"):
            put(self, name, vector(name, getattr(self, name), k))
        put(self, "gradient_bits", scalar("gradient_bits", self.gradient_bits, positive=True))
        fixed = (0.0,) * k if self.cpu_fixed_s is None else vector("cpu_fixed_s", self.cpu_fixed_s, k,
                                                                  nonneg=False)
        for i, (f, a) in enumerate(zip(fixed, self.cpu_s_per_sample)):
            if f + a < 0:
                raise ValueError(f"cpu_fixed_s[{i}] = {f} makes the latency of one sample negative")
        put(self, "cpu_fixed_s", fixed)
        if isinstance(self.max_batch, bool) or scalar("max_batch", self.max_batch) != int(self.max_batch) \
                or int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be a positive integer, got {self.max_batch!r}")
        put(self, "max_batch", int(self.max_batch))
        if self.dataset_size is not None:
            sizes = vector("dataset_size", self.dataset_size, k, positive=True)
            if any(s != int(s) for s in sizes):
                raise ValueError(f"dataset_size must hold integers, got {self.dataset_size!r}")
            put(self, "dataset_size", tuple(int(s) for s in sizes))
        for name in ("min_global_batch", "max_global_batch"):
            if getattr(self, name) is not None:
                put(self, name, scalar(name, getattr(self, name)))
        for name in ("uplink_frame_s", "downlink_frame_s", "loss_decay_coef"):
            put(self, name, scalar(name, getattr(self, name), positive=name == "loss_decay_coef"))
        put(self, "loss_decay_exponent", scalar("loss_decay_exponent", self.loss_decay_exponent,
                                                positive=True, upper=1.0))
        given = [getattr(self, name) is not None for name in _GPU]
        if any(given) and not all(given):
            missing = [name for name, g in zip(_GPU, given) if not g]
            raise ValueError(f"the GPU model (eq. 27) needs {', '.join(_GPU)}; missing {missing}")
        for name in _GPU + ("gpu_update_s",):
            if getattr(self, name) is not None:
                put(self, name, vector(name, getattr(self, name), k))

    @property
    def num_devices(self) -> int:
        return len(self.cpu_s_per_sample)

    @property
    def has_gpu(self) -> bool:
        """Whether the GPU model of Assumption 1 is given."""
        return self.gpu_flat_s is not None

    def batch_caps(self) -> np.ndarray:
        """Per-device upper bound on B_k: B^max (17e), and N_k when given."""
        cap = np.full(self.num_devices, float(self.max_batch))
        return cap if self.dataset_size is None else np.minimum(cap, self.dataset_size)


@dataclass(frozen=True)
class RelaxedAllocation:
    """The continuous optimum a solver found (B_k real, eq. (17) relaxed)."""

    batch_size: Tuple[float, ...]        #: B_k*, eq. (22)
    uplink_share: Tuple[float, ...]      #: tau_k^U* / T_f^U, eq. (22)
    downlink_share: Tuple[float, ...]    #: tau_k^D* / T_f^D, eq. (26)
    global_batch_size: float             #: B*
    uplink_phase_s: float                #: Delta L E^U* = max_k (t^L + t^U)
    downlink_phase_s: float              #: Delta L E^D* = max_k (t^D + t^M)
    efficiency: float                    #: E = xi B^alpha / T, eq. (16)


@dataclass(frozen=True)
class FeelSolution:
    """A round's decision and what the model predicts for it (per-device tuples).

    ``batch_size`` is what devices execute: integers. For the optimizing
    schemes it is the relaxed optimum rounded (see :func:`round_batches`)
    and then re-evaluated: slots re-optimized for the integer batches
    (Theorem 1's tau for fixed B_k, Theorem 2), latency and efficiency
    recomputed; ``relaxed`` keeps the continuous optimum. Rule-based schemes
    have ``relaxed = None``.
    """

    scheme: str
    scenario: str                        #: "cpu" (eq. 9) or "gpu" (eq. 27)
    batch_size: Tuple[int, ...]          #: B_k
    uplink_share: Tuple[float, ...]      #: tau_k^U / T_f^U, sums to <= 1 (17b)
    downlink_share: Tuple[float, ...]    #: tau_k^D / T_f^D, sums to <= 1 (17c)
    uplink_bps: Tuple[float, ...]   #: share x R_k^U: the average rate to pace uploads to
    downlink_bps: Tuple[float, ...]  #: share x R_k^D
    global_batch_size: int               #: B = sum_k B_k, eq. (17d)
    compute_s: Tuple[float, ...]         #: t_k^L, eq. (9) or (27)
    upload_s: Tuple[float, ...]          #: t_k^U, eq. (10)
    download_s: Tuple[float, ...]        #: t_k^D, eq. (11)
    update_s: Tuple[float, ...]          #: t_k^M, eq. (12) or (28)
    device_latency_s: Tuple[float, ...]  #: T_k, eq. (13)
    uplink_phase_s: float                #: max_k (t^L + t^U)
    downlink_phase_s: float              #: max_k (t^D + t^M)
    round_latency_s: float               #: T, eq. (15)
    loss_decay: float                    #: Delta L = xi B^alpha, eq. (8)
    efficiency: float                    #: E = Delta L / T, eq. (16)
    relaxed: Optional[RelaxedAllocation] = None

    @property
    def efficiency_relaxed(self) -> float:
        """E of the continuous optimum (``efficiency`` for rule-based schemes)."""
        return self.efficiency if self.relaxed is None else self.relaxed.efficiency


class RoundModel:
    """One scenario's per-device arrays, checked for feasibility (``SolverError``).

    Compute latency is ``max(flat, fixed + per_sample B)``: CPU ``flat = -inf``;
    GPU eq. (27) rewritten as ``fixed = t_l - c B_th``, ``per_sample = c``,
    ``flat = t_l``.
    """

    def __init__(self, p: FeelProblem, scenario: str = "cpu") -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
        self.problem, self.scenario, self.K = p, scenario, p.num_devices
        for frame, what in ((p.uplink_frame_s, "uplink"), (p.downlink_frame_s, "downlink")):
            if frame <= 0:
                raise SolverError(f"the {what} frame is 0 s: there are no {what} time slots to allocate")
        for name, what in (("uplink_bps", "uplink"), ("downlink_bps", "downlink")):
            zero = np.flatnonzero(np.asarray(getattr(p, name)) <= 0)
            if zero.size:
                verb = "uploaded" if what == "uplink" else "delivered"
                raise SolverError(f"device {zero[0]} has zero {what} rate ({name}[{zero[0]}] = 0): "
                                  f"its gradient can never be {verb}")
        self.c_up = p.gradient_bits / np.asarray(p.uplink_bps)    # s / R^U: t^U at x = 1, eq. (10)
        self.c_dn = p.gradient_bits / np.asarray(p.downlink_bps)  # eq. (11)
        for arr, what in ((self.c_up, "upload"), (self.c_dn, "download")):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise SolverError(f"device {bad[0]} needs an infinite {what} time (rate underflows)")
        self.caps = p.batch_caps()
        if scenario == "cpu":
            self.per_sample = np.asarray(p.cpu_s_per_sample)
            self.fixed = np.asarray(p.cpu_fixed_s)
            self.flat = np.full(self.K, -np.inf)
            self.update = np.asarray(p.update_s)
        else:
            if not p.has_gpu:
                raise SolverError("the GPU scenario needs the GPU model of eq. (27): "
                                  "gpu_flat_s, gpu_threshold_batch and gpu_s_per_sample")
            self.per_sample = np.asarray(p.gpu_s_per_sample)
            self.flat = np.asarray(p.gpu_flat_s)
            self.fixed = self.flat - self.per_sample * np.asarray(p.gpu_threshold_batch)
            self.update = np.asarray(p.update_s if p.gpu_update_s is None else p.gpu_update_s)

    def compute_s(self, batch: np.ndarray) -> np.ndarray:
        """t_k^L for real or integer batches, eq. (9) or (27)."""
        return np.maximum(self.flat, self.fixed + self.per_sample * np.asarray(batch, dtype=float))

    def global_bounds(self, lo: np.ndarray, hi: np.ndarray) -> Tuple[float, float]:
        """The range of B allowed by (17d)-(17e) with bounds ``lo``/``hi`` and the problem's B bounds."""
        p = self.problem
        b_lo = max(float(lo.sum()), p.min_global_batch or 0.0)
        b_hi = float(hi.sum()) if p.max_global_batch is None else min(float(hi.sum()), p.max_global_batch)
        if p.min_global_batch is not None and p.max_global_batch is not None \
                and p.min_global_batch > p.max_global_batch:
            raise SolverError(f"min_global_batch = {p.min_global_batch:g} exceeds "
                              f"max_global_batch = {p.max_global_batch:g}")
        if b_lo > b_hi:
            raise SolverError(
                f"no global batch size B satisfies the bounds: the per-device bounds allow "
                f"{lo.sum():g} <= B <= {hi.sum():g} (eq. 17e, K = {self.K}), the problem asks for "
                f"{p.min_global_batch or 0:g} <= B <= "
                f"{'inf' if p.max_global_batch is None else format(p.max_global_batch, 'g')}")
        return b_lo, b_hi

    def loss_decay(self, global_batch: float) -> float:
        p = self.problem
        return p.loss_decay_coef * float(global_batch) ** p.loss_decay_exponent   # eq. (8)


def optimal_shares(fixed_s: np.ndarray, airtime_s: np.ndarray) -> Tuple[float, np.ndarray]:
    """Min-max split of one frame: Theorem 1's tau for fixed B_k, Theorem 2's tau (26).

    Every device finishes at the returned ``T``: ``x_k = airtime_k / (T - fixed_k)``.
    """
    T, w = equal_finish_shares(np.asarray(fixed_s, float), np.asarray(airtime_s, float),
                               np.ones((1, len(fixed_s)), dtype=bool))
    return float(T[0]), w[0]


def build_solution(m: RoundModel, batch: Sequence[int], up: Optional[Sequence[float]],
                   down: Optional[Sequence[float]], scheme: str,
                   relaxed: Optional[RelaxedAllocation] = None) -> FeelSolution:
    """Evaluate a decision with eqs. (8)-(16); ``None`` shares are the optimal ones."""
    b = np.asarray(batch)
    if b.shape != (m.K,) or np.any(b != np.round(b)) or np.any(b < 1):
        raise ValueError(f"batch_size must be {m.K} positive integers, got {list(batch)!r}")
    b = b.astype(np.int64)
    compute = m.compute_s(b)
    x = optimal_shares(compute, m.c_up)[1] if up is None else _shares("uplink_share", up, m.K)
    y = optimal_shares(m.update, m.c_dn)[1] if down is None else _shares("downlink_share", down, m.K)
    upload, download = m.c_up / x, m.c_dn / y                    # eqs. (10), (11)
    up_phase = float(np.max(compute + upload))
    down_phase = float(np.max(download + m.update))
    total = up_phase + down_phase                                # eq. (15)
    gb = int(b.sum())
    decay = m.loss_decay(gb)
    p = m.problem

    def tup(a: np.ndarray) -> tuple:
        return tuple(float(v) for v in a)
    return FeelSolution(
        scheme=scheme, scenario=m.scenario, batch_size=tuple(int(v) for v in b),
        uplink_share=tup(x), downlink_share=tup(y),
        uplink_bps=tup(x * np.asarray(p.uplink_bps)),
        downlink_bps=tup(y * np.asarray(p.downlink_bps)), global_batch_size=gb,
        compute_s=tup(compute), upload_s=tup(upload), download_s=tup(download), update_s=tup(m.update),
        device_latency_s=tup(up_phase + download + m.update), uplink_phase_s=up_phase,    # eq. (13)
        downlink_phase_s=down_phase, round_latency_s=total, loss_decay=decay,
        efficiency=decay / total, relaxed=relaxed)                                         # eq. (16)


def _shares(name: str, values: Sequence[float], k: int) -> np.ndarray:
    x = np.asarray(vector(name, values, k))
    if x.sum() > 1.0 + 1e-9:
        raise ValueError(f"{name} sums to {x.sum()}, more than one frame")
    zero = np.flatnonzero(x <= 0)
    if zero.size:
        raise SolverError(f"device {zero[0]} has no time slot ({name}[{zero[0]}] = 0): "
                          "its transfer would never finish")
    return x


def round_batches(relaxed: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: int) -> np.ndarray:
    """Integers within ``[lo, hi]`` summing to ``total``, closest to ``relaxed`` by largest remainders.

    Start from ``floor`` (clipped to the bounds), then add one to the devices
    with the largest fractional remainders (or remove one from those with the
    smallest) until the sum is ``total``. ``lo``/``hi`` are integers with
    ``sum(lo) <= total <= sum(hi)``.
    """
    lo_i, hi_i = lo.astype(np.int64), hi.astype(np.int64)
    assert lo_i.sum() <= total <= hi_i.sum(), "total outside the per-device bounds"
    b = np.clip(np.floor(relaxed + 1e-9).astype(np.int64), lo_i, hi_i)
    while b.sum() != total:
        rem = relaxed - b
        if b.sum() < total:
            j = int(np.argmax(np.where(b < hi_i, rem, -np.inf)))
            b[j] += 1
        else:
            j = int(np.argmin(np.where(b > lo_i, rem, np.inf)))
            b[j] -= 1
    return b


def integer_total_range(m: RoundModel, lo: np.ndarray, hi: np.ndarray) -> Tuple[int, int]:
    """Integer global batch sizes allowed: ``[ceil(B_lo), floor(B_hi)]`` (SolverError if empty)."""
    b_lo, b_hi = m.global_bounds(lo, hi)
    n_lo, n_hi = math.ceil(b_lo - 1e-9), math.floor(b_hi + 1e-9)
    if n_lo > n_hi:
        raise SolverError(f"no integer global batch size lies in [{b_lo:g}, {b_hi:g}]")
    return n_lo, n_hi
