"""Paper 003 (Ren, Yu, Ding): joint batch-size selection and uplink/downlink
time-slot allocation for gradient-averaging FEEL rounds (Sec. III-V).

The model, :class:`FeelProblem` and :class:`FeelSolution` are in
:mod:`~edgebed.server.workloads.feel.solver.model` (re-exported here). Solvers:

- :func:`solve_cpu`, P1 (17): P1 splits into P2/P4 (uplink, eq. (21)) and
  P3/P5 (downlink, eq. (25)) for a given global batch B (Sec. IV-A).

  * Uplink, Theorem 1 (22): ``B_k = [(T - theta sqrt(c_k a_k)) / a_k]_lo^hi`` and
    ``x_k = c_k / (T - a_k B_k)``, writing ``a_k = C / f_k = 1 / V_k``,
    ``c_k = s / R_k^U`` and ``T = Delta L E^U``; the paper's multiplier is
    ``mu = theta^2 / (Delta L T_f^U sum_j V_j)`` (then ``theta sqrt(c_k a_k)`` is
    the square root in (22), with ``rho_k = V_k / sum_j V_j``). Algorithm 1: an
    outer search on ``T`` (i.e. E^U) in the Corollary 1 bracket (42)-(43)
    until the time-sharing constraint (17b) is tight, and for each ``T`` an
    inner search for ``theta`` (i.e. mu) in the Corollary 2 bracket (44)-(45)
    until ``sum B_k = B`` (17d). The inner one is exact: ``sum B_k(theta)`` is
    piecewise linear between the per-device breakpoints whose extremes are
    Corollary 2's bounds. The outer one is a Newton iteration from the left
    on ``g(T) = sum_k x_k(T)`` (convex and decreasing), safeguarded by bisection.
  * Downlink, Theorem 2 (26): every device finishes at ``Delta L E^D``; it does
    not depend on B.
  * B: ``E(B) = xi B^alpha / (T^U(B) + T^D)`` is a concave function over a
    convex one, hence unimodal; its derivative (``dT^U/dB = theta^-2 / sum_k
    c_k / d_k^2`` by the envelope theorem) is bracketed and its root found
    by Brent's method (the paper's "one-dimensional bisection").

- :func:`solve_gpu`, P7 (31): by Lemma 2 every ``B_k >= B_k^th``; there eq.
  (27) is affine, ``t_k^l - c_k B_k^th + c_k B_k``, so the same algorithm runs
  with per-device offsets and lower bounds. A device with ``c_k = 0`` (flat up
  to B^max) takes ``B_k = B^max`` by the same argument.
- :func:`solve_reference`: scipy SLSQP on the continuous problem (tests).
- :func:`allocate`: the schemes the FEEL round loop plugs in.

Integer batches: the paper relaxes B_k to reals and says one "can round up"
(Sec. III-C); rounding every B_k up would add up to K samples to B and
lengthen every device's compute. Instead the relaxed optimum is rounded by
largest remainders to ``floor(B*)`` and to ``ceil(B*)`` in total, within the
integer bounds; each candidate is re-evaluated with its own optimal slots and
the better one kept (``FeelSolution.relaxed`` keeps the continuous optimum).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from scipy.optimize import brentq

from edgebed.server.solvers.base import SolverError, resolve
from edgebed.server.workloads.feel.solver.model import (
    SCENARIOS,
    FeelProblem,
    FeelSolution,
    RelaxedAllocation,
    RoundModel,
    build_solution,
    integer_total_range,
    optimal_shares,
    payload_bits,
    round_batches,
)
from edgebed.server.workloads.feel.solver.reference import solve_reference
from edgebed.server.workloads.feel.solver.params import problem_from_section6

__all__ = ["FeelProblem", "FeelSolution", "RelaxedAllocation", "SCHEMES", "SCENARIOS",
           "SolverError", "allocate", "evaluate", "solve_cpu", "solve_gpu", "solve_reference",
           "problem_from_section6", "corollary1_bounds", "payload_bits", "round_batches"]

_RTOL = 1e-14


class _Uplink:
    """P4 for a given B (eq. (21)) on per-device arrays: compute ``o + a B_k`` for
    ``B_k`` in ``[lo, hi]``, upload ``c / x_k``. Devices with ``lo == hi`` are fixed."""

    def __init__(self, a: np.ndarray, o: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        self.a, self.o, self.c, self.lo, self.hi = a, o, c, lo, hi
        self.free = hi > lo
        assert np.all(a[self.free] > 0), "a free batch size needs a positive per-sample time"
        f = self.free
        self.af, self.of, self.lof, self.hif = a[f], o[f], lo[f], hi[f]
        self.q = np.sqrt(c[f] * a[f])          # theta q_k is the square root in (22)
        self.w = self.q / self.af              # -dB_k / dtheta for interior devices
        self.fixed_sum = float(lo[~f].sum())

    def bracket(self, B: float) -> Tuple[float, float]:
        """Corollary 1: ``Delta L`` times the bounds (43) and (42) on E^U*, generalized
        to offsets, per-device bounds and fixed devices (see :func:`corollary1_bounds`)."""
        a, o, c, lo, hi, f = self.a, self.o, self.c, self.lo, self.hi, self.free
        lower = float(np.max(o + a * lo + c))              # a device alone with the whole frame
        if f.any():                                        # (43): (17e) relaxed, fixed devices dropped
            lower = max(lower, (B - self.fixed_sum + np.sum(self.of / self.af)
                                + np.sum(np.sqrt(c[f] / self.af)) ** 2) / np.sum(1.0 / self.af))
        span = float((hi - lo).sum())                      # (42): equal slots, even batches
        even = lo + (B - lo.sum()) * (hi - lo) / span if span > 0 else lo
        upper = float(np.max(o + a * even + len(a) * c))
        return lower, max(lower, upper)

    def batches(self, T: float, B: float):
        """Theorem 1's B_k at ``T`` with theta from ``sum B_k = B`` (exact; Corollary 2
        brackets theta). ``None`` if no allocation finishes by ``T``; else
        ``(B_k, d_k, theta_lo, theta_hi)``, theta's range giving ``sum B_k = B``."""
        d_lo = T - self.o - self.a * self.lo
        if np.any(d_lo <= 0):
            return None
        f = self.free
        bk = self.lo.copy()
        th_lo = th_hi = math.inf
        if f.any():
            top = T - self.of
            t_hi = (top - self.af * self.hif) / self.q                  # B_k = hi for theta <= t_hi
            t_lo = d_lo[f] / self.q                                      # B_k = lo for theta >= t_lo
            # Corollary 2's bracket is [min t_hi, max t_lo] ((45), (44) in theta); (45) squares
            # T - a B^max, but a device with T < a B^max never reaches B^max: its t_hi is clipped to 0.
            pts = np.unique(np.concatenate(([0.0], np.maximum(0.0, t_hi), t_lo)))
            pts = np.append(pts, 2.0 * pts[-1] + 1.0)                   # beyond them all: every B_k = lo
            s = self.fixed_sum + _sum_clipped(pts, top / self.af, self.w, t_hi, t_lo, self.lof, self.hif)
            s[-1] = self.fixed_sum + self.lof.sum()
            if s[0] < B:
                return None                                              # theta would be negative
            j = int(np.argmax(s <= B))                                   # s[-1] = sum(lo) <= B
            th_lo = 0.0 if j == 0 else _cross(pts, s, j - 1, B)
            i = len(s) - 1 - int(np.argmax(s[::-1] >= B))
            th_hi = math.inf if i == len(s) - 1 else _cross(pts, s, i, B)
            bk[f] = np.clip((top - th_lo * self.q) / self.af, self.lof, self.hif)     # eq. (22)
        d = T - self.o - self.a * bk
        if np.any(d <= 0):
            return None
        return bk, d, th_lo, th_hi

    def solve(self, B: float, max_iter: int = 300):
        """Algorithm 1: the least ``T`` with ``sum_k c_k / d_k <= 1``; returns
        ``(T, B_k, x_k, theta_lo, theta_hi, sum c_k / d_k^2)``."""
        lo_t, hi_t = self.bracket(B)
        t, state = lo_t, self.batches(lo_t, B)
        for _ in range(max_iter):
            newton, step = False, 0.0
            if state is not None:
                g = float(np.sum(self.c / state[1]))
                if g <= 1.0:                      # already feasible: t is the least T
                    break
                step = (g - 1.0) / float(np.sum(self.c / state[1] ** 2))
                newton = g <= 4.0 or step >= 0.25 * (hi_t - t)
            nxt = min(t + step, hi_t) if newton else 0.5 * (t + hi_t)
            new = self.batches(nxt, B)
            ok = new is not None and float(np.sum(self.c / new[1])) <= 1.0
            if newton and (ok or step <= _RTOL * nxt):   # Newton from the left: converged
                t, state = nxt, new
                break
            if ok:
                hi_t = nxt
            else:
                t, state = nxt, new
            if hi_t - t <= _RTOL * hi_t:
                t, state = hi_t, self.batches(hi_t, B)
                break
        if state is None:                         # internal invariant: T_hi of (42) is feasible
            t, state = hi_t, self.batches(hi_t, B)
        assert state is not None, "the Corollary 1 upper bound must be feasible"
        bk, d, th_lo, th_hi = state
        x = self.c / d
        x /= max(1.0, float(x.sum()))             # (17b) exactly
        T = float(np.max(self.o + self.a * bk + self.c / x))
        return T, bk, x, th_lo, th_hi, float(np.sum(self.c / d ** 2))


def _sum_clipped(pts: np.ndarray, A: np.ndarray, w: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray,
                 lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``sum_k clip(A_k - w_k p, lo_k, hi_k)`` at every ``p`` in ``pts`` in O(K log K):
    device k is at ``hi`` for ``p <= t_hi[k]``, at ``lo`` for ``p >= t_lo[k]``, linear between."""
    oh, ol = np.argsort(t_hi), np.argsort(t_lo)

    def prefix(v: np.ndarray) -> np.ndarray:
        return np.concatenate(([0.0], np.cumsum(v)))
    hi_c, a_h, w_h = prefix(hi[oh]), prefix(A[oh]), prefix(w[oh])
    lo_c, a_l, w_l = prefix(lo[ol]), prefix(A[ol]), prefix(w[ol])
    ih = np.searchsorted(t_hi[oh], pts, side="left")     # devices that have left hi
    il = np.searchsorted(t_lo[ol], pts, side="right")    # devices that have reached lo
    linear = (a_h[ih] - a_l[il]) - pts * (w_h[ih] - w_l[il])
    return (hi_c[-1] - hi_c[ih]) + lo_c[il] + linear


def _cross(pts: np.ndarray, s: np.ndarray, i: int, B: float) -> float:
    """Where the linear piece of ``sum B_k(theta)`` between ``pts[i]`` and ``pts[i+1]`` equals B."""
    return float(pts[i] + (s[i] - B) / (s[i] - s[i + 1]) * (pts[i + 1] - pts[i]))


def _relaxed_bounds(m: RoundModel) -> Tuple[np.ndarray, np.ndarray]:
    hi = np.floor(m.caps)
    if m.scenario == "cpu":
        return np.ones(m.K), hi                                            # (17e)
    th = np.ceil(np.asarray(m.problem.gpu_threshold_batch) - 1e-9)         # Lemma 2 / P7
    lo = np.clip(th, 1.0, hi)
    return np.where(m.per_sample > 0, lo, hi), hi


def _uplink(m: RoundModel) -> Tuple[_Uplink, np.ndarray, np.ndarray]:
    """P4's arrays for ``m``; a fixed device (``lo == hi``, e.g. a GPU whose threshold
    exceeds its cap) gets its exact compute time as a constant."""
    lo, hi = _relaxed_bounds(m)
    fixed = lo >= hi
    a = np.where(fixed, 0.0, m.per_sample)
    o = np.where(fixed, m.compute_s(lo), m.fixed)
    return _Uplink(a, o, m.c_up, lo, hi), lo, hi


def _solve(problem: FeelProblem, scenario: str, scheme: str) -> FeelSolution:
    m = RoundModel(problem, scenario)
    up, lo, hi = _uplink(m)
    if scenario == "gpu" and problem.max_global_batch is not None and lo.sum() > problem.max_global_batch:
        raise SolverError(f"Lemma 2 puts every B_k in its compute-bound region, which needs "
                          f"B >= {lo.sum():g}, but max_global_batch = {problem.max_global_batch:g}")
    b_lo, b_hi = m.global_bounds(lo, hi)
    n_lo, n_hi = integer_total_range(m, lo, hi)
    t_down, y = optimal_shares(m.update, m.c_dn)                          # Theorem 2, eq. (26)
    alpha = problem.loss_decay_exponent

    def slope(B: float, side: int = 0) -> float:
        """d log E / dB (>0: grow B); side -1/+1 takes the left/right derivative."""
        T, _, _, th_lo, th_hi, curv = up.solve(B)
        theta = th_hi if side < 0 else th_lo
        dT = 0.0 if math.isinf(theta) else (math.inf if theta <= 0 else 1.0 / (theta ** 2 * curv))
        return alpha / B - dT / (T + t_down)

    if b_hi - b_lo <= _RTOL * b_hi or slope(b_lo, +1) <= 0:
        B = b_lo
    elif slope(b_hi, -1) >= 0:
        B = b_hi
    else:
        B = brentq(slope, b_lo, b_hi, xtol=1e-10, rtol=4 * np.finfo(float).eps, maxiter=200)
    T, bk, x, *_ = up.solve(B)
    relaxed = RelaxedAllocation(
        batch_size=tuple(float(v) for v in bk), uplink_share=tuple(float(v) for v in x),
        downlink_share=tuple(float(v) for v in y), global_batch_size=float(B), uplink_phase_s=T,
        downlink_phase_s=t_down, efficiency=m.loss_decay(B) / (T + t_down))
    best = None
    for n in sorted({min(max(math.floor(B), n_lo), n_hi), min(max(math.ceil(B), n_lo), n_hi)}):
        sol = build_solution(m, round_batches(bk, lo, hi, n), None, None, scheme, relaxed)
        if best is None or sol.efficiency > best.efficiency:
            best = sol
    assert best is not None
    return best


def solve_cpu(problem: FeelProblem) -> FeelSolution:
    """P1 (17): Theorem 1 + Algorithm 1 (uplink), Theorem 2 (downlink), 1-D search over B."""
    return _solve(problem, "cpu", "proposed")


def solve_gpu(problem: FeelProblem) -> FeelSolution:
    """P7 (31): the same algorithm on the compute-bound region of Lemma 2."""
    return _solve(problem, "gpu", "proposed-gpu")


def corollary1_bounds(problem: FeelProblem, global_batch: float,
                      scenario: str = "cpu") -> Tuple[float, float]:
    """Bounds on the uplink phase ``Delta L E^U*`` for a given B (Corollary 1, (42)-(43)).

    Generalized beyond the paper's CPU case: offsets, per-device caps, the
    GPU region of Lemma 2, and a device alone with the whole frame as a
    second lower bound. Divide by ``Delta L`` for the paper's E^U bounds.
    """
    return _uplink(RoundModel(problem, scenario))[0].bracket(float(global_batch))


def evaluate(problem: FeelProblem, batch_size, uplink_share=None, downlink_share=None,
             scenario: str = "cpu", scheme: str = "given") -> FeelSolution:
    """The model's prediction for a given decision; ``None`` shares are the optimal
    ones for these batches (Theorem 1's tau for fixed B_k, Theorem 2)."""
    return build_solution(RoundModel(problem, scenario), batch_size, uplink_share, downlink_share, scheme)


def _fixed_batch(problem: FeelProblem, caps: np.ndarray, rng, fixed_batch) -> np.ndarray:
    size = problem.max_batch if fixed_batch is None else fixed_batch
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"fixed_batch must be a positive integer, got {fixed_batch!r}")
    return np.minimum(int(size), caps)


def _online(problem: FeelProblem, caps: np.ndarray, rng, fixed_batch) -> np.ndarray:
    return np.ones(problem.num_devices, dtype=np.int64)


def _full_batch(problem: FeelProblem, caps: np.ndarray, rng, fixed_batch) -> np.ndarray:
    return caps


def _random_batch(problem: FeelProblem, caps: np.ndarray, rng, fixed_batch) -> np.ndarray:
    if rng is None:
        raise ValueError("scheme 'random-batch' needs rng (a numpy Generator)")
    return rng.integers(1, caps + 1)


#: The rule-based schemes: how each picks B_k (capped by the data); then the
#: slots are the optimal ones for those batches, or equal.
BATCH_RULES: Dict[str, Callable[..., np.ndarray]] = {
    "gradient-fixed": _fixed_batch, "online": _online, "full-batch": _full_batch,
    "random-batch": _random_batch,
}


def _rule_based(scheme: str, problem: FeelProblem, rng: Optional[np.random.Generator] = None, *,
                fixed_batch: Optional[int] = None, scenario: Optional[str] = None,
                slots: Optional[str] = None) -> FeelSolution:
    if slots not in (None, "optimal", "equal"):
        raise ValueError(f"slots must be 'optimal' or 'equal', got {slots!r}")
    if scenario is None:
        scenario = "cpu" if scheme == "gradient-fixed" or not problem.has_gpu else "gpu"
    if scheme == "gradient-fixed":
        slots = slots or "equal"  # gradient-based FEEL shares the frame equally (Sec. VI-C)
    caps = np.floor(problem.batch_caps()).astype(np.int64)
    batch = BATCH_RULES[scheme](problem, caps, rng, fixed_batch)
    equal = None if (slots or "optimal") == "optimal" else [1.0 / problem.num_devices] * problem.num_devices
    return build_solution(RoundModel(problem, scenario), batch, equal, equal, scheme)


#: scheme -> allocator(problem, rng, fixed_batch=, scenario=, slots=); see :func:`allocate`.
SCHEMES: Dict[str, Callable[..., FeelSolution]] = {
    "proposed": lambda problem, rng=None, **_: solve_cpu(problem),
    "proposed-gpu": lambda problem, rng=None, **_: solve_gpu(problem),
    **{name: functools.partial(_rule_based, name) for name in BATCH_RULES},
}


def allocate(problem: FeelProblem, scheme: str, rng: Optional[np.random.Generator] = None, *,
             fixed_batch: Optional[int] = None, scenario: Optional[str] = None,
             slots: Optional[str] = None) -> FeelSolution:
    """One round's allocation under ``scheme`` (one of :data:`SCHEMES`).

    - "proposed": :func:`solve_cpu`; "proposed-gpu": :func:`solve_gpu`.
    - "gradient-fixed" (gradient-based FEEL, Sec. VI-C): every device the same
      batch, ``fixed_batch`` (default B^max: the paper's devices use their whole
      local data, bounded by memory), with equal slots; CPU model.
    - "online" (B_k = 1), "full-batch" (B_k = B^max = 128) and "random-batch"
      (B_k uniform in 1..B^max, needs ``rng``): the GPU baselines of Sec. VI-D,
      which differ from the proposed scheme only in the batch sizes, so their
      slots are optimal for their batches; GPU model if given, else CPU.

    Batches are capped by ``dataset_size``; global-batch bounds bind only the
    optimizing schemes. ``scenario`` and ``slots`` ("optimal" or "equal")
    override the defaults of the rule-based schemes.
    """
    return resolve(SCHEMES, scheme)(problem, rng, fixed_batch=fixed_batch, scenario=scenario,
                                    slots=slots)
