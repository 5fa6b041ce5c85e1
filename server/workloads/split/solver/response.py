"""One device's exact best response and random feasible strategies (paper 004, problem (28)).

Given what device n knows about the slots (:class:`SlotView`: the others' load
T^h_Sigma, their priced cycles S^h_Sigma and which slots still admit a device),
:func:`best_response_view` minimizes C_n of eq. (23) over every split point and
every slot assignment under (15), (16), (17), (26), (27) exactly:

- the offloaded layers m*+1..M occupy one contiguous block per used slot, in
  increasing slots (16); a block's cost is ``gamma_n p_h S_{n,h}`` (19), which
  depends only on the block's own load, so the cheapest placement of layers
  i..M into slots h..h_max is a DP over (slot, first layer), O(H^2 M^2) in all;
- the delay (24) depends only on m* and h_max, so every pair (m*, h_max) is
  scored as ``alpha c^T T + beta c^E E`` plus the cheapest placement of layers
  m*+1..M into slots <= h_max, and pairs breaking (26) are dropped. A placement
  ending before h_max is also scored under its own last slot, so the minimum
  over pairs is the optimum.

:func:`random_strategy` draws a split uniformly among the feasible ones and then
a placement uniformly among the feasible placements (counting DP), as the
random initial strategies of Algorithms 1 and 2 (step 3) need.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from edgebed.server.workloads.split.solver.cost import (
    CAP_RTOL,
    DeviceStrategy,
    DeviceTerms,
    InfeasibleError,
    SplitProblem,
    device_loads,
    device_terms,
    slot_price_cost,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SlotView:
    """Device n's knowledge of the slots when it updates (server feedback or eq. (29))."""

    others_load_s: np.ndarray   #: (H,) T^h_Sigma of the other devices, seconds (capacity)
    others_units: np.ndarray    #: (H,) S^h_Sigma of the other devices, priced units (price)
    usable: np.ndarray          #: (H,) bool, fewer than B other devices in the slot (27)
    self_weight: float = 1.0    #: weight of the own load in the priced aggregate (29: N w_nn)
    agg_cap_units: float = np.inf  #: cap of the priced aggregate (29: B T_d / H)

    def capacity_s(self, problem: SplitProblem) -> np.ndarray:
        """Own load the slot still takes: min(T_d/H, B T_d/H - others), see split_cost."""
        cap = np.minimum(problem.slot_s, problem.parallel_limit * problem.slot_s - self.others_load_s)
        return np.where(self.usable, np.maximum(cap, 0.0) * (1.0 + CAP_RTOL), -1.0)


def empty_view(problem: SplitProblem) -> SlotView:
    h = problem.slots_h
    return SlotView(np.zeros(h), np.zeros(h), np.ones(h, dtype=bool))


def _blocks(problem: SplitProblem, n: int, terms: DeviceTerms,
            view: SlotView) -> Tuple[np.ndarray, np.ndarray]:
    """(H, M, M) block costs F[h, i-1, j-1] of layers i..j in slot h+1 (inf if not allowed)
    and the matching feasibility mask."""
    cum = terms.server_cum_s
    m = cum.size - 1
    load = cum[None, 1:] - cum[:-1, None]                         # layers i..j, j >= i
    tri = np.triu(np.ones((m, m), dtype=bool))
    cap = view.capacity_s(problem)
    ok = tri[None, :, :] & (load[None, :, :] <= cap[:, None, None])
    cost = np.full(ok.shape, np.inf)
    for h in range(problem.slots_h):
        cost[h][ok[h]] = slot_price_cost(problem, n, h + 1, load[ok[h]], float(view.others_units[h]),
                                         view.self_weight, view.agg_cap_units)
    return cost, ok


def _placement_tables(cost: np.ndarray, h_max: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Cheapest placement of layers i..M (i = 1..M+1) into slots 1..h_max: values Q[i]
    (index 0 unused) and, per slot, the last layer of the block starting at i (0: skip)."""
    _, m, _ = cost.shape
    q = np.full(m + 2, np.inf)
    q[m + 1] = 0.0
    choices: List[np.ndarray] = [np.zeros(m, dtype=int)] * h_max
    for h in range(h_max, 0, -1):
        cand = cost[h - 1] + q[None, 2:]                          # block i..j, then j+1.. in later slots
        j = np.argmin(cand, axis=1)
        best = cand[np.arange(m), j]
        take = best < q[1:m + 1]
        new = q.copy()
        new[1:m + 1] = np.where(take, best, q[1:m + 1])
        choices[h - 1] = np.where(take, j + 1, 0)
        q = new
    return q, choices


def _trace(choices: List[np.ndarray], split: int, m: int) -> Tuple[int, ...]:
    slots: List[int] = []
    i, h = split + 1, 1
    while i <= m:
        j = int(choices[h - 1][i - 1])
        if j:
            slots.extend([h] * (j - i + 1))
            i = j + 1
        h += 1
    return tuple(slots)


def best_response_view(problem: SplitProblem, n: int, view: SlotView) -> Tuple[DeviceStrategy, float]:
    """Device n's cost-minimizing strategy given ``view`` and its predicted cost C_n.

    Raises :class:`InfeasibleError` when no strategy meets (26) within the free slots.
    """
    dev = problem.devices[n]
    terms = device_terms(dev)
    m = dev.num_layers
    wt, we = dev.alpha * dev.c_t, dev.beta * dev.c_e
    tol = dev.tau_s * (1.0 + CAP_RTOL)
    best: Optional[Tuple[float, float, int, int]] = None             # cost, delay, split, h_max
    if terms.base_delay_s[m] <= tol:                                  # all local
        best = (wt * terms.base_delay_s[m] + we * terms.energy_j[m], terms.base_delay_s[m], m, 0)
    cost, _ = _blocks(problem, n, terms, view)
    tables = {}
    entry = wt * terms.base_delay_s[:m] + we * terms.energy_j[:m]
    for h_max in range(1, problem.slots_h + 1):
        delay = terms.base_delay_s[:m] + h_max * problem.slot_s       # eq. (24)
        if not np.any(delay <= tol):
            continue
        q, choices = _placement_tables(cost, h_max)
        tables[h_max] = choices
        total = entry + wt * h_max * problem.slot_s + q[1:m + 1]
        total = np.where(delay <= tol, total, np.inf)
        for split in np.flatnonzero(np.isfinite(total)):
            key = (float(total[split]), float(delay[split]), int(split), h_max)
            if best is None or key[:2] < best[:2]:
                best = key
    if best is None:
        raise InfeasibleError(
            f"device {n}: no split meets its delay bound tau = {dev.tau_s:.4g} s (26) with the free "
            f"slots (all local takes {terms.base_delay_s[m]:.4g} s; fastest upload-and-return "
            f"{terms.base_delay_s[:m].min() + problem.slot_s:.4g} s before slot limits)")
    _, _, split, h_max = best
    slots = _trace(tables[h_max], split, m) if split < m else ()
    return DeviceStrategy(split, slots), best[0]


def strategy_cost_view(problem: SplitProblem, n: int, strategy: DeviceStrategy, view: SlotView) -> float:
    """C_n of ``strategy`` as device n predicts it from ``view`` (inf if it breaks (26) or the
    view's slot limits), on the same scale as :func:`best_response_view`'s cost."""
    dev = problem.devices[n]
    terms = device_terms(dev)
    delay = terms.base_delay_s[strategy.split] + strategy.last_slot * problem.slot_s
    if delay > dev.tau_s * (1.0 + CAP_RTOL):
        return float("inf")
    own = device_loads(problem, n, strategy)
    used = np.isin(np.arange(1, problem.slots_h + 1), strategy.slots)
    if np.any(used & (own > view.capacity_s(problem))):
        return float("inf")
    price = sum(float(slot_price_cost(problem, n, h, own[h - 1], float(view.others_units[h - 1]),
                                      view.self_weight, view.agg_cap_units))
                for h in range(1, problem.slots_h + 1) if used[h - 1])
    return dev.alpha * dev.c_t * delay + dev.beta * dev.c_e * terms.energy_j[strategy.split] + price


def best_response(problem: SplitProblem, n: int, t_sigma_s: np.ndarray,
                  others_units: Optional[np.ndarray] = None,
                  usable: Optional[np.ndarray] = None) -> DeviceStrategy:
    """Exact solution of (28) for device n given the others' per-slot load ``t_sigma_s``.

    ``others_units`` (priced cycles of the others) defaults to eq. (22) with the
    device's own delta; ``usable`` (slots with fewer than B other devices, (27))
    defaults to all slots.
    """
    t = np.asarray(t_sigma_s, dtype=float).reshape(-1)
    if t.size != problem.slots_h or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"t_sigma_s must hold {problem.slots_h} finite non-negative loads, got {t!r}")
    units = problem.cycles_per_second(n) * t if others_units is None else np.asarray(others_units, float)
    ok = np.ones(problem.slots_h, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    return best_response_view(problem, n, SlotView(t, units, ok))[0]


def _count_tables(ok: np.ndarray, h_max: int) -> List[np.ndarray]:
    """``later[h][i]``: number of feasible placements of layers i..M into slots h+1..h_max
    (float counts; ``later[0]`` counts all placements into slots 1..h_max)."""
    _, m, _ = ok.shape
    c = np.zeros(m + 2)
    c[m + 1] = 1.0
    later: List[np.ndarray] = [c] * (h_max + 1)
    for h in range(h_max, 0, -1):
        new = c.copy()
        new[1:m + 1] = c[1:m + 1] + (ok[h - 1] * c[None, 2:]).sum(axis=1)
        later[h - 1] = c = new
    return later


def random_strategy(problem: SplitProblem, n: int, view: SlotView, rng: np.random.Generator,
                    split: Optional[int] = None, respect_tau: bool = True) -> DeviceStrategy:
    """A random strategy of device n meeting the slot constraints of ``view`` (and (26)).

    The split is uniform over the feasible ones (or ``split`` if given), the
    placement uniform over that split's feasible placements.
    """
    dev = problem.devices[n]
    terms = device_terms(dev)
    m = dev.num_layers
    tol = dev.tau_s * (1.0 + CAP_RTOL) if respect_tau else np.inf
    room = np.floor((tol - terms.base_delay_s[:m]) / problem.slot_s + 1e-9)
    limit = np.clip(np.nan_to_num(room, posinf=problem.slots_h), 0, problem.slots_h).astype(int)
    _, ok = _blocks(problem, n, terms, view)
    counts = {h: _count_tables(ok, h) for h in set(limit.tolist()) if h > 0}
    options = [s for s in range(m) if limit[s] > 0 and counts[limit[s]][0][s + 1] > 0]
    if terms.base_delay_s[m] <= tol:
        options.append(m)
    if split is not None:
        options = [s for s in options if s == split]
    if not options:
        raise InfeasibleError(
            f"device {n}: no {'split' if split is None else f'strategy with split {split}'} fits the "
            f"free slots{' within tau = %.4g s (26)' % dev.tau_s if respect_tau else ''}")
    chosen = int(options[rng.integers(len(options))])
    if chosen == m:
        return DeviceStrategy(m)
    later = counts[int(limit[chosen])]
    slots: List[int] = []
    i = chosen + 1
    for h in range(1, int(limit[chosen]) + 1):
        if i > m:
            break
        after = later[h]                                              # placements of the rest in slots > h
        weights = np.concatenate([[after[i]], ok[h - 1][i - 1, i - 1:] * after[i + 1:m + 2]])
        k = int(rng.choice(weights.size, p=weights / weights.sum()))
        if k:                                                         # block i..i+k-1 in slot h
            slots.extend([h] * k)
            i += k
    assert i == m + 1, "sampled placement must cover every offloaded layer"
    return DeviceStrategy(chosen, tuple(slots))
