"""A general-purpose reference for paper 003's allocation: scipy's SLSQP on the
continuous problem, sharing nothing with the closed-form solver but the model.

Variables: ``B_k`` (scaled by the largest cap), log-shares ``u_k = log x_k``
and ``v_k = log y_k``, and the two phase latencies ``T^U``, ``T^D`` (scaled
by a feasible round latency). Problem (P1 (17), or P6 (30) in the GPU
scenario, i.e. without Lemma 2's restriction):

    min  log(T^U + T^D) - alpha log(sum_k B_k)           (-log of E, eq. (16))
    s.t. T^U >= t_k^L(B_k) + c_k e^{-u_k}                (eqs. (9)/(27), (10))
         T^D >= t_k^M + c_k^D e^{-v_k}                   (eqs. (11), (12))
         sum_k e^{u_k} <= 1,  sum_k e^{v_k} <= 1         ((17b), (17c))
         B_lo <= sum_k B_k <= B_hi,  1 <= B_k <= cap_k   ((17d), (17e))

GPU compute ``max(t_l, t_l + c (B - B_th))`` is convex: two constraints per
device. The constraints are convex and the objective is a monotone transform
of a positive concave function over a positive affine one (pseudoconvex), so
a KKT point is a global minimum. The returned decision is re-evaluated with
the model (shares renormalized to fit a frame), so its efficiency is always
achievable: a proposed solution can only be "worse" if it truly is.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Tuple, Union

import numpy as np
from scipy.optimize import minimize

from edgebed.server.solvers.base import SolverError
from edgebed.server.workloads.feel.solver.model import (
    FeelProblem,
    FeelSolution,
    RelaxedAllocation,
    RoundModel,
    build_solution,
    integer_total_range,
    round_batches,
)

try:  # optional: scipy's SLSQP calls LAPACK on tiny matrices, and OpenBLAS threads
    from threadpoolctl import threadpool_limits  # make that ~30x slower on a busy 2-core host
except ImportError:  # pragma: no cover - then BLAS keeps its own thread count
    threadpool_limits = None

logger = logging.getLogger(__name__)

_MIN_LOG_SHARE = -60.0


def solve_reference(problem: FeelProblem, scenario: str = "cpu", maxiter: int = 2000, ftol: float = 1e-15,
                    restarts: int = 3,
                    full_output: bool = False) -> Union[FeelSolution, Tuple[FeelSolution, Any]]:
    """The continuous optimum by SLSQP (scheme "reference"); rounded like the solvers.

    ``restarts``: SLSQP runs again from the best feasible point it reached, at
    most this many times, while it reports no convergence. ``full_output``
    also returns scipy's last ``OptimizeResult``.
    """
    m = RoundModel(problem, scenario)
    K, alpha = m.K, problem.loss_decay_exponent
    lo, hi = np.ones(K), np.floor(m.caps)
    b_lo, b_hi = m.global_bounds(lo, hi)
    gpu = scenario == "gpu"
    s_b = float(hi.max())

    # A feasible start: batches filled evenly towards the middle of [B_lo, B_hi], equal slots.
    span = float((hi - lo).sum())
    b0 = lo + (0.5 * (b_lo + b_hi) - lo.sum()) * (hi - lo) / span if span > 0 else lo.copy()
    t_up0 = float(np.max(m.compute_s(b0) + K * m.c_up))
    t_dn0 = float(np.max(m.update + K * m.c_dn))
    s_t = t_up0 + t_dn0
    log_share = np.full(K, -np.log(K))
    times0 = [t_up0 / s_t * (1 + 1e-9), t_dn0 / s_t * (1 + 1e-9)]
    z0 = np.concatenate([b0 / s_b, log_share, log_share, times0])
    iu, iv, itu, itd = slice(K, 2 * K), slice(2 * K, 3 * K), 3 * K, 3 * K + 1
    n = 3 * K + 2
    eye = np.eye(K)

    def objective(z: np.ndarray) -> Tuple[float, np.ndarray]:
        tot, sb = z[itu] + z[itd], z[:K].sum()
        grad = np.zeros(n)
        grad[:K] = -alpha / sb
        grad[itu] = grad[itd] = 1.0 / tot
        return float(np.log(tot) - alpha * np.log(sb)), grad

    def cons(z: np.ndarray) -> np.ndarray:
        eu, ev = np.exp(-z[iu]), np.exp(-z[iv])
        parts = [z[itu] - (m.fixed + m.per_sample * s_b * z[:K] + m.c_up * eu) / s_t]
        if gpu:
            parts.append(z[itu] - (m.flat + m.c_up * eu) / s_t)
        parts += [z[itd] - (m.update + m.c_dn * ev) / s_t,
                  [1.0 - np.exp(z[iu]).sum(), 1.0 - np.exp(z[iv]).sum(), z[:K].sum() - b_lo / s_b]]
        if np.isfinite(b_hi):
            parts.append([b_hi / s_b - z[:K].sum()])
        return np.concatenate(parts)

    def cons_jac(z: np.ndarray) -> np.ndarray:
        eu, ev = np.exp(-z[iu]), np.exp(-z[iv])
        rows = []
        up = np.zeros((K, n))
        up[:, :K] = -eye * (m.per_sample * s_b / s_t)
        up[:, iu] = eye * (m.c_up * eu / s_t)
        up[:, itu] = 1.0
        rows.append(up)
        if gpu:
            up2 = np.zeros((K, n))
            up2[:, iu] = eye * (m.c_up * eu / s_t)
            up2[:, itu] = 1.0
            rows.append(up2)
        dn = np.zeros((K, n))
        dn[:, iv] = eye * (m.c_dn * ev / s_t)
        dn[:, itd] = 1.0
        rows.append(dn)
        tail = np.zeros((4 if np.isfinite(b_hi) else 3, n))
        tail[0, iu] = -np.exp(z[iu])
        tail[1, iv] = -np.exp(z[iv])
        tail[2, :K] = 1.0
        if np.isfinite(b_hi):
            tail[3, :K] = -1.0
        rows.append(tail)
        return np.vstack(rows)

    bounds = ([(lo[k] / s_b, hi[k] / s_b) for k in range(K)] + [(_MIN_LOG_SHARE, 0.0)] * (2 * K)
              + [(1e-15, None), (1e-15, None)])

    def achieved(z: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray, float, float]:
        """The model's efficiency of the decision in ``z``, made feasible: shares
        renormalized to fit a frame, batches moved towards their bounds to meet (17d)."""
        bk = np.clip(z[:K] * s_b, lo, hi)
        total = float(bk.sum())
        if total > b_hi:
            bk = lo + (bk - lo) * (b_hi - lo.sum()) / (total - lo.sum())
        elif total < b_lo:
            bk = hi - (hi - bk) * (hi.sum() - b_lo) / (hi.sum() - total)
        x = np.exp(z[iu])
        x /= max(1.0, float(x.sum()))
        y = np.exp(z[iv])
        y /= max(1.0, float(y.sum()))
        t_up = float(np.max(m.compute_s(bk) + m.c_up / x))
        t_dn = float(np.max(m.update + m.c_dn / y))
        return m.loss_decay(float(bk.sum())) / (t_up + t_dn), bk, x, y, t_up, t_dn

    # SLSQP stops early now and then ("inequality constraints incompatible",
    # a failed line search); restart from the feasible point it reached until
    # it converges or a restart gains nothing.
    best_run, res, z = None, None, z0
    limit = threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()
    with limit:
        for _ in range(restarts + 1):
            res = minimize(objective, z, jac=True, method="SLSQP", bounds=bounds,
                           constraints=[{"type": "ineq", "fun": cons, "jac": cons_jac}],
                           options={"maxiter": maxiter, "ftol": ftol})
            run = achieved(res.x)
            stalled = best_run is not None and run[0] <= best_run[0] * (1 + 1e-12)
            if best_run is None or run[0] > best_run[0]:
                best_run = run
            if res.status == 0 or stalled:
                break
            logger.info("SLSQP (K = %d, %s): %s; restarting", K, scenario, res.message)
            _, bk, x, y, t_up, t_dn = best_run
            z = np.concatenate([bk / s_b, np.log(x), np.log(y), [t_up / s_t, t_dn / s_t]])
    assert best_run is not None and res is not None
    eff, bk, x, y, t_up, t_dn = best_run
    gb = float(bk.sum())
    if not np.isfinite(eff):
        raise SolverError(f"the reference solver found no finite solution ({res.message})")
    relaxed = RelaxedAllocation(
        batch_size=tuple(float(v) for v in bk), uplink_share=tuple(float(v) for v in x),
        downlink_share=tuple(float(v) for v in y), global_batch_size=gb, uplink_phase_s=t_up,
        downlink_phase_s=t_dn, efficiency=eff)
    n_lo, n_hi = integer_total_range(m, lo, hi)
    best = None
    for total in sorted({min(max(int(np.floor(gb)), n_lo), n_hi), min(max(int(np.ceil(gb)), n_lo), n_hi)}):
        b_int = round_batches(bk, lo, hi, total)
        sol = build_solution(m, b_int, None, None, "reference", relaxed)
        if best is None or sol.efficiency > best.efficiency:
            best = sol
    assert best is not None
    return (best, res) if full_output else best
