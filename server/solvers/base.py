"""What every solver family shares: the error, scheme tables, input
validation, and the numerical building blocks that recur across the papers.

- :class:`SolverError`: an invalid or infeasible problem (no bandwidth, a zero
  rate, ...). Solvers raise it with the cause instead of returning NaN.
- :func:`resolve`: a family's variants (its proposed scheme, its baselines)
  are entries of one table, name -> function (SB3's ``policy_aliases``);
  this looks a name up or names the known ones.
- ``vector`` / ``scalar``: coerce and validate dataclass fields, raising
  ``ValueError`` that names the field.
- ``equal_finish_shares``: the min-max completion time split of one shared
  resource (bandwidth, time slots) among users with fixed start-up times.
- ``all_binary`` / ``exhaustive_binary`` / ``local_search_binary``: exact and
  heuristic search over binary decision vectors with a batched cost function.

Everything here is pure numpy: no I/O, no clocks.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np

from edgebed import EdgebedError

F = TypeVar("F")

#: A batched cost: a (K, M) boolean matrix of decisions -> K costs.
BatchCost = Callable[[np.ndarray], np.ndarray]


class SolverError(EdgebedError, ValueError):
    """The problem is invalid or infeasible; the message names the cause."""


def resolve(table: Mapping[str, F], name: str, what: str = "scheme") -> F:
    """``table[name]``, or ValueError naming the known entries."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"{what} must be one of {', '.join(table)}, got {name!r}") from None


# --------------------------------------------------------------------------- validation


def _check(name: str, x: float, positive: bool, nonneg: bool, upper: Optional[float]) -> None:
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be positive, got {x!r}")
    if nonneg and x < 0:
        raise ValueError(f"{name} must be non-negative, got {x!r}")
    if upper is not None and x > upper:
        raise ValueError(f"{name} must be at most {upper}, got {x!r}")


def scalar(name: str, value: float, positive: bool = False, nonneg: bool = True,
           upper: Optional[float] = None) -> float:
    """``value`` as a float, finite and within the bounds, else ``ValueError`` naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    _check(name, x, positive, nonneg, upper)
    return x


def vector(name: str, values: Sequence[float], length: Optional[int] = None,
           positive: bool = False, nonneg: bool = True,
           upper: Optional[float] = None) -> Tuple[float, ...]:
    """``values`` as a tuple of floats (one per device), each checked like :func:`scalar`.

    ``length`` (if given) is the required number of entries.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"{name} must be a sequence with one value per device, got {values!r}")
    out = tuple(scalar(f"{name}[{i}]", v, positive, nonneg, upper) for i, v in enumerate(values))
    if length is not None and len(out) != length:
        raise ValueError(f"{name} has {len(out)} entries but there are {length} devices")
    return out


# --------------------------------------------------------------------------- min-max split


def equal_finish_shares(fixed_s: np.ndarray, airtime_s: np.ndarray, mask: np.ndarray,
                        rtol: float = 1e-14, max_iter: int = 200) -> Tuple[np.ndarray, np.ndarray]:
    """Split one resource so that the last active user finishes as early as possible.

    User ``i`` is busy ``fixed_s[i]`` on its own, then needs ``airtime_s[i] / w_i``
    with a share ``w_i`` of the resource. For each row of ``mask`` (K, M) the
    minimal ``T`` with ``sum_i airtime_i / (T - fixed_i) <= 1`` over the active
    users is found (every active user then finishes exactly at ``T``), with
    ``w_i = airtime_i / (T - fixed_i)`` (paper 000, Theorem 1, eqs. (14)-(15)).

    The root is bracketed by ``max_i(fixed_i + airtime_i)`` (a user alone with
    the whole resource) and ``max_i fixed_i + sum_i airtime_i``; the constraint
    function is convex and decreasing, so Newton steps from the lower end never
    overshoot the root and are clipped to the bracket. Shares are rescaled so
    ``sum w <= 1`` holds exactly, and ``T`` is recomputed from them.

    Returns ``(T, w)``: shape (K,) and (K, M); rows without active users get
    ``T = 0`` and zero shares. ``airtime_s`` must be positive and finite.
    """
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    t = np.asarray(fixed_s, dtype=float)
    b = np.asarray(airtime_s, dtype=float)
    assert np.all(b > 0) and np.all(np.isfinite(b)), "airtimes must be positive and finite"
    active = mask.any(axis=1)
    lo = np.where(mask, t + b, -np.inf).max(axis=1)
    hi = np.where(mask, t, -np.inf).max(axis=1) + np.where(mask, b, 0.0).sum(axis=1)
    x = np.where(active, lo, 0.0)
    todo = active.copy()
    for _ in range(max_iter):
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        m, xr = mask[rows], x[rows]
        d = xr[:, None] - t
        q = np.divide(b, d, out=np.zeros(d.shape), where=m)   # the terms of eq. (15)
        f = q.sum(axis=1) - 1.0
        slope = np.divide(q, d, out=np.zeros(d.shape), where=m).sum(axis=1)
        step = np.where(f > 0, f / slope, 0.0)
        x[rows] = np.minimum(xr + step, hi[rows])
        todo[rows] = (step > rtol * xr) & (x[rows] < hi[rows])
    w = np.divide(b, x[:, None] - t, out=np.zeros(mask.shape), where=mask)
    total = w.sum(axis=1)
    w /= np.where(total > 1.0, total, 1.0)[:, None]
    tau = np.divide(b, w, out=np.zeros(mask.shape), where=mask)
    T = np.where(mask, t + tau, 0.0).max(axis=1)
    return T, w


# --------------------------------------------------------------------------- binary search


def all_binary(m: int, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Rows ``start..stop-1`` of the ``2**m`` binary vectors of length ``m`` (bit i = device i)."""
    stop = 2 ** m if stop is None else stop
    codes = np.arange(start, stop, dtype=np.int64)
    return ((codes[:, None] >> np.arange(m, dtype=np.int64)) & 1).astype(bool)


def exhaustive_binary(cost: BatchCost, m: int, chunk: int = 1 << 14) -> Tuple[np.ndarray, float]:
    """The cheapest of all ``2**m`` binary vectors (first one on ties) and its cost."""
    best_rho: Optional[np.ndarray] = None
    best = math.inf
    for start in range(0, 2 ** m, chunk):
        rows = all_binary(m, start, min(2 ** m, start + chunk))
        costs = cost(rows)
        j = int(np.argmin(costs))
        if costs[j] < best:
            best, best_rho = float(costs[j]), rows[j]
    assert best_rho is not None
    return best_rho.copy(), best


def local_search_binary(cost: BatchCost, start: np.ndarray,
                        rtol: float = 1e-12) -> Tuple[np.ndarray, float]:
    """Single-flip local improvement from ``start`` until no flip lowers the cost.

    Each sweep scores every single flip in one batch, then tries the improving
    ones best first, each re-scored against the current vector before it is
    accepted. Ends at a vector none of whose single flips is cheaper (by more
    than ``rtol`` relative), so the result is never worse than ``start``.
    """
    rho = np.asarray(start, dtype=bool).copy()
    current = float(cost(rho[None, :])[0])
    flips = np.eye(rho.size, dtype=bool)
    while True:
        scores = cost(rho[None, :] ^ flips)
        order = np.argsort(scores, kind="stable")
        order = order[scores[order] < current - rtol * abs(current)]
        if order.size == 0:
            return rho, current
        for j in order:
            trial = rho.copy()
            trial[j] = not trial[j]
            value = float(cost(trial[None, :])[0])
            if value < current - rtol * abs(current):
                rho, current = trial, value
