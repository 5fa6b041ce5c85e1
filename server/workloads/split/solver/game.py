"""Split DNN inference, paper 004: TPOS-CAI / TPOS-UAI (Algorithms 1 and 2) and the baselines.

The model and the slot constraints are in :mod:`split_cost`, the exact best
response of one device in :mod:`split_response`, GTPOS in :mod:`split_global`
and Fig. 4's instances in :mod:`split_params`; this module plays the game.

Algorithms 1 and 2 as implemented (``_play``):

- step 3: devices draw random strategies meeting (28b) one after another, each
  seeing the slots the earlier ones took (the server admits them in turn);
- steps 5-6: at every tick each device wakes with probability ``wake_prob``;
  the devices awake in a tick update one after another in random order
  (asynchronous best response: a potential game, see below, so it terminates);
  a device keeps its strategy unless the best response is strictly cheaper by
  its own prediction (inertia: ties never make it move);
- step 10, CAI: the server feeds back the others' per-slot load T^h_Sigma, their
  priced cycles S^h_Sigma (eq. 22 with each device's own delta) and which slots
  already hold B devices (27), so the best response is exact and always admitted;
- step 10, UAI: the device prices each slot with the estimate (29),
  ``min(B T_d/H, N (w_nn x_n + sum_q w_nq x_q))``, as a function of its own
  candidate load x_n (so its own load weighs N w_nn in the aggregate) and of
  its neighbours' loads x_q, heard when both are awake (the last heard value is
  kept; all exchange once at initialisation). It knows only its own limit
  T_d/H per slot; the server stays the owner of its slots: an update that
  breaks (17) or (27) is refused with the full slots named, and the device
  retries without them (counted in ``SplitSolution.rejections``).
  (Subtracting the device's current load from the estimate instead counts
  N w_nn - 1 times its own load as other devices' and makes it flee every slot
  it occupies, a cycle we observed.)
- steps 11-12: the average cost of eq. (23) is computed after every tick; with
  random wake-ups one quiet tick says little, so the run stops when the change
  stayed <= ``eps`` (relative to max(1, cost)) for as long as it took every
  device to wake at least once.

With affine prices (19) the game is an exact potential game for the costs C_n / gamma_n (gamma_n > 0):
Phi = sum_n own_n / gamma_n + sum_h [a_h S_h + b_h / (2h) (S_h^2 + sum_n S_{n,h}^2)],
so CAI's strict best-response moves of one device at a time cannot cycle. UAI
prices with an estimate and has no such guarantee: ``SplitSolution.converged``
says whether the stopping rule was met within ``max_iter`` ticks.

Baselines of Section 5: all-local (Case 4), all-offload with random feasible
slots (Case 3; (26) not required), and GTPOS (Case 2, :func:`gtpos`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgebed.server.solvers.base import resolve
from edgebed.server.workloads.split.solver.cost import (
    DeviceOutcome,
    DeviceStrategy,
    InfeasibleError,
    SplitDevice,
    SplitProblem,
    SplitSolution,
    device_loads,
    evaluate,
    link_rate_bps,
)
from edgebed.server.workloads.split.solver.gtpos import gtpos
from edgebed.server.workloads.split.solver.params import problem_from_fig4
from edgebed.server.workloads.split.solver.response import (
    SlotView,
    best_response,
    best_response_view,
    empty_view,
    random_strategy,
    strategy_cost_view,
)

logger = logging.getLogger(__name__)

__all__ = ["SplitDevice", "SplitProblem", "DeviceStrategy", "DeviceOutcome", "SplitSolution",
           "InfeasibleError", "best_response", "tpos_cai", "tpos_uai", "gtpos", "all_local",
           "all_offload", "evaluate", "link_rate_bps", "problem_from_fig4", "random_initial",
           "SCHEMES", "solve"]

Neighbours = Union[int, Sequence[Sequence[int]]]

#: A device moves only if its best response beats its current strategy by this much (relative).
IMPROVE_RTOL = 1e-9


class _State:
    """The joint strategy with per-slot bookkeeping, as the server sees it."""

    def __init__(self, problem: SplitProblem) -> None:
        self.problem = problem
        n, h = problem.num_devices, problem.slots_h
        self.loads = np.zeros((n, h))
        self.used = np.zeros((n, h), dtype=bool)
        self.ups = np.array([problem.cycles_per_second(i) for i in range(n)])
        self.strategies: List[Optional[DeviceStrategy]] = [None] * n

    def set(self, n: int, s: DeviceStrategy) -> None:
        self.strategies[n] = s
        self.loads[n] = device_loads(self.problem, n, s)
        self.used[n] = np.isin(np.arange(1, self.problem.slots_h + 1), s.slots)

    def exact_view(self, n: int) -> SlotView:
        others = self.loads.sum(axis=0) - self.loads[n]
        units = (self.loads * self.ups[:, None]).sum(axis=0) - self.loads[n] * self.ups[n]
        count = self.used.sum(axis=0) - self.used[n]
        return SlotView(np.maximum(others, 0.0), np.maximum(units, 0.0), count < self.problem.parallel_limit)

    def refused_slots(self, n: int, s: DeviceStrategy) -> np.ndarray:
        """Slots (bool, (H,)) where ``s`` would break (17) or (27) given the others."""
        view = self.exact_view(n)
        own = device_loads(self.problem, n, s)
        used = np.isin(np.arange(1, self.problem.slots_h + 1), s.slots)
        return used & (own > view.capacity_s(self.problem))

    def done(self) -> Tuple[DeviceStrategy, ...]:
        assert all(s is not None for s in self.strategies), "every device has a strategy"
        return tuple(self.strategies)  # type: ignore[arg-type]


def _check_alone(problem: SplitProblem) -> None:
    """InfeasibleError naming the first device that cannot meet (26) even on an empty server."""
    rng = np.random.default_rng(0)
    for n in range(problem.num_devices):
        try:
            random_strategy(problem, n, empty_view(problem), rng)
        except InfeasibleError as exc:
            raise InfeasibleError(f"{exc} (even with the server to itself)") from None


def random_initial(problem: SplitProblem, rng: np.random.Generator,
                   attempts: int = 20) -> Tuple[DeviceStrategy, ...]:
    """Random joint strategies meeting (28b) (step 3 of Algorithms 1 and 2)."""
    _check_alone(problem)
    for _ in range(attempts):
        state = _State(problem)
        try:
            for n in rng.permutation(problem.num_devices):
                state.set(int(n), random_strategy(problem, int(n), state.exact_view(int(n)), rng))
            return state.done()
        except InfeasibleError:
            continue
    state = _State(problem)          # fallback: the devices that cannot stay local choose first
    local = [d.t_local_s.sum() <= d.tau_s for d in problem.devices]
    for n in sorted(range(problem.num_devices), key=lambda i: local[i]):
        try:
            state.set(n, best_response_view(problem, n, state.exact_view(n))[0])
        except InfeasibleError as exc:
            raise InfeasibleError(f"no joint strategy meets (26) and the slot limits (17), (27) "
                                  f"for all {problem.num_devices} devices: {exc}") from None
    return state.done()


def _neighbour_lists(n_dev: int, neighbours: Neighbours) -> List[List[int]]:
    if isinstance(neighbours, (int, np.integer)):
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        k = min(int(neighbours), n_dev - 1)
        offsets = [d for i in range(1, n_dev) for d in (i, -i)]
        out = []
        for n in range(n_dev):
            seen: List[int] = []
            for d in offsets:
                q = (n + d) % n_dev
                if len(seen) < k and q != n and q not in seen:
                    seen.append(q)
            out.append(seen)
        return out
    out = [sorted({int(q) for q in row}) for row in neighbours]
    if len(out) != n_dev or any(q == n or not 0 <= q < n_dev for n, row in enumerate(out) for q in row):
        raise ValueError(f"neighbours must list, for each of the {n_dev} devices, other device indices")
    return out


def _weight_lists(nbrs: List[List[int]], weights: Optional[Sequence[Sequence[float]]]) -> List[np.ndarray]:
    """w_{n,n} first, then w_{n,q} per neighbour; non-negative, summing to 1 (eq. 29)."""
    if weights is None:
        return [np.full(len(row) + 1, 1.0 / (len(row) + 1)) for row in nbrs]
    out = [np.asarray(w, dtype=float) for w in weights]
    for n, (row, w) in enumerate(zip(nbrs, out)):
        if w.shape != (len(row) + 1,) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(f"weights[{n}] must hold {len(row) + 1} non-negative values summing to 1 "
                             f"(self first), got {w!r}")
    if len(out) != len(nbrs):
        raise ValueError(f"weights must have one row per device ({len(nbrs)})")
    return out


def _play(problem: SplitProblem, rng: np.random.Generator, scheme: str, wake_prob: float,
          eps: float, max_iter: int, nbrs: Optional[List[List[int]]] = None,
          weights: Optional[List[np.ndarray]] = None) -> SplitSolution:
    if not 0.0 < wake_prob <= 1.0:
        raise ValueError(f"wake_prob must be in (0, 1], got {wake_prob}")
    if eps < 0 or max_iter < 1:
        raise ValueError(f"eps must be >= 0 and max_iter >= 1, got {eps}, {max_iter}")
    n_dev, cap_total = problem.num_devices, problem.parallel_limit * problem.slot_s
    state = _State(problem)
    for n, s in enumerate(random_initial(problem, rng)):
        state.set(n, s)
    known: Dict[Tuple[int, int], np.ndarray] = {}
    if nbrs is not None:                                   # initial exchange with every neighbour
        known = {(n, q): state.loads[q].copy() for n in range(n_dev) for q in nbrs[n]}
    history = [float(np.mean([o.cost for o in evaluate(problem, state.done())]))]
    woke = np.zeros(n_dev, dtype=bool)
    rejections, converged, ticks = 0, False, 0
    for tick in range(1, max_iter + 1):
        ticks = tick
        active = np.flatnonzero(rng.random(n_dev) < wake_prob)
        rng.shuffle(active)
        awake = set(active.tolist())
        for n in active:
            n = int(n)
            if nbrs is None:                               # CAI: exact feedback from the server
                view = state.exact_view(n)
            else:                                          # UAI: eq. (29)
                for q in nbrs[n]:
                    if q in awake:
                        known[(n, q)], known[(q, n)] = state.loads[q].copy(), state.loads[n].copy()
                assert weights is not None
                heard = n_dev * sum((w * known[(n, q)] for w, q in zip(weights[n][1:], nbrs[n])),
                                    np.zeros(problem.slots_h))
                view = SlotView(np.zeros(problem.slots_h), state.ups[n] * heard,
                                np.ones(problem.slots_h, dtype=bool), n_dev * float(weights[n][0]),
                                state.ups[n] * cap_total)
            c_cur = strategy_cost_view(problem, n, state.strategies[n], view)  # type: ignore[arg-type]
            for _ in range(problem.slots_h + 1):
                try:
                    s, c_new = best_response_view(problem, n, view)
                except InfeasibleError:
                    break                                  # nothing fits: keep the current strategy
                if s == state.strategies[n] or c_new >= c_cur - IMPROVE_RTOL * max(1.0, abs(c_cur)):
                    break                                  # inertia: only a strict improvement moves
                refused = state.refused_slots(n, s)
                if not refused.any():
                    state.set(n, s)
                    break
                rejections += 1                            # UAI only: the server names the full slots
                view = dataclasses.replace(view, usable=view.usable & ~refused)
        avg = float(np.mean([o.cost for o in evaluate(problem, state.done())]))
        quiet = abs(avg - history[-1]) <= eps * max(1.0, abs(history[-1]))
        history.append(avg)
        woke = (woke | np.isin(np.arange(n_dev), active)) if quiet else np.zeros(n_dev, dtype=bool)
        if woke.all():
            converged = True
            break
    if not converged:
        logger.warning("%s did not converge in %d ticks (last change %.3g)", scheme, max_iter,
                       abs(history[-1] - history[-2]) if len(history) > 1 else 0.0)
    strategies = state.done()
    return SplitSolution(strategies, evaluate(problem, strategies), ticks, tuple(history), converged,
                         scheme, rejections)


def tpos_cai(problem: SplitProblem, rng: np.random.Generator, wake_prob: float = 0.5,
             eps: float = 1e-6, max_iter: int = 1000) -> SplitSolution:
    """Algorithm 1 (TPOS-CAI): best responses to the server's feedback of T^h_Sigma."""
    return _play(problem, rng, "tpos-cai", wake_prob, eps, max_iter)


def tpos_uai(problem: SplitProblem, rng: np.random.Generator, neighbours: Neighbours = 2,
             weights: Optional[Sequence[Sequence[float]]] = None, wake_prob: float = 0.5,
             eps: float = 1e-6, max_iter: int = 1000) -> SplitSolution:
    """Algorithm 2 (TPOS-UAI): best responses to the neighbour estimate of eq. (29).

    ``neighbours``: an int k (the k nearest devices on a ring, alternating sides)
    or one list of neighbour indices per device; ``weights``: per device, w_{n,n}
    then w_{n,q} in neighbour order (default uniform).
    """
    nbrs = _neighbour_lists(problem.num_devices, neighbours)
    return _play(problem, rng, "tpos-uai", wake_prob, eps, max_iter, nbrs, _weight_lists(nbrs, weights))


def _fixed(problem: SplitProblem, strategies: Tuple[DeviceStrategy, ...], scheme: str) -> SplitSolution:
    outcomes = evaluate(problem, strategies)
    avg = float(np.mean([o.cost for o in outcomes]))
    return SplitSolution(strategies, outcomes, 0, (avg,), True, scheme)


def all_local(problem: SplitProblem) -> SplitSolution:
    """Case 4: every device computes its whole DNN (``outcomes[n].feasible`` reports (26))."""
    return _fixed(problem, tuple(DeviceStrategy(d.num_layers) for d in problem.devices), "all-local")


def all_offload(problem: SplitProblem, rng: Optional[np.random.Generator] = None,
                attempts: int = 20) -> SplitSolution:
    """Case 3: every device uploads its raw input (m* = 0) into random feasible slots
    (``rng`` defaults to a fixed seed).

    The slot limits (17), (27) are kept; the delay bound (26) is not required.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    last: Optional[InfeasibleError] = None
    for _ in range(max(1, attempts)):
        state = _State(problem)
        try:
            for n in rng.permutation(problem.num_devices):
                state.set(int(n), random_strategy(problem, int(n), state.exact_view(int(n)), rng,
                                                  split=0, respect_tau=False))
            return _fixed(problem, state.done(), "all-offload")
        except InfeasibleError as exc:
            last = exc
    raise InfeasibleError(f"all-offload: the whole DNNs of {problem.num_devices} devices do not fit "
                          f"in {problem.slots_h} slots of {problem.slot_s:.4g} s with B = "
                          f"{problem.parallel_limit} ({last})")


#: scheme -> solver(problem, rng, **options): the game's two algorithms and
#: the paper's baselines, all on one problem (an unknown option raises TypeError).
SCHEMES: Dict[str, Callable[..., SplitSolution]] = {
    "tpos-uai": tpos_uai,
    "tpos-cai": tpos_cai,
    "gtpos": lambda problem, rng, **options: gtpos(problem, **options),
    "all-local": lambda problem, rng, **options: all_local(problem, **options),
    "all-offload": all_offload,
}


def solve(problem: SplitProblem, scheme: str, rng: np.random.Generator, **options) -> SplitSolution:
    """The decision of ``scheme`` (one of :data:`SCHEMES`)."""
    return resolve(SCHEMES, scheme)(problem, rng, **options)
