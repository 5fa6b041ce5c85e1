"""GTPOS (paper 004, Case 2): the server picks every split point to minimize the average delay.

No slot model and no prices (Section 5): the server has B lanes (Rule 3: at
most B subtasks at once, the rest wait) and runs each device's offloaded layers
one after another on one lane (Rule 4). Device n's tail is released when its
upload ends, at ``r_n = sum_{m<=m*} T^lo + T^up_{m*}``, and takes
``p_n = sum_{m>m*} T^se`` on the server; its delay is
``r_n + wait_n + p_n + T^do_n`` (24 with the slot term replaced by the queue).
Energy (25) is reported but not optimized ("Case 2 does not consider energy").

What we compute, for a split vector: a non-preemptive, non-delay schedule that
gives a free lane to the shortest released tail (SPT). Exact when at most B
devices offload (nobody waits); a heuristic for P|r_j|sum C_j otherwise.
Search over split vectors, minimizing (total breach of (26), average delay):

- exhaustive when (M+1)^N <= ``exact_limit``;
- otherwise coordinate descent (one device's split at a time over all splits,
  and pairs of devices when N <= ``pair_limit`` over the splits not dominated in
  (release, server time), plus all-local) from several starts: each device's
  fastest split alone, all local, and any ``seeds`` the caller gives (e.g. the
  TPOS splits), keeping the best.
"""
from __future__ import annotations

import heapq
import itertools
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgebed.server.workloads.split.solver.cost import (
    CAP_RTOL,
    DeviceOutcome,
    DeviceStrategy,
    InfeasibleError,
    SplitProblem,
    SplitSolution,
    device_terms,
)

logger = logging.getLogger(__name__)

Key = Tuple[float, float]


def queue_delays(release_s: np.ndarray, proc_s: np.ndarray, lanes: int) -> np.ndarray:
    """Server time (wait + processing) of each job under non-delay SPT dispatch on ``lanes`` lanes:
    whenever a lane frees, it takes the shortest job released by then (or the next release)."""
    release_s, proc_s = np.asarray(release_s, dtype=float), np.asarray(proc_s, dtype=float)
    if release_s.size <= lanes:
        return proc_s.copy()
    out = np.zeros(release_s.size)
    left = list(range(release_s.size))
    free = [0.0] * lanes
    while left:
        t = max(heapq.heappop(free), min(release_s[j] for j in left))
        j = min((j for j in left if release_s[j] <= t), key=lambda j: (proc_s[j], release_s[j], j))
        left.remove(j)
        out[j] = t + proc_s[j] - release_s[j]
        heapq.heappush(free, t + proc_s[j])
    return out


class _Global:
    def __init__(self, problem: SplitProblem) -> None:
        self.problem = problem
        self.terms = [device_terms(d) for d in problem.devices]
        self.m = np.array([d.num_layers for d in problem.devices])
        self.tau = np.array([d.tau_s for d in problem.devices]) * (1.0 + CAP_RTOL)
        self.cache: Dict[Tuple[int, ...], Key] = {}
        self.front = [self._front(t) for t in self.terms]

    @staticmethod
    def _front(t) -> List[int]:
        """Splits not dominated in (release, server time), plus all-local: the pair-move candidates."""
        m = t.local_s.size - 1
        rel = t.local_s[:m] + t.upload_s[:m]
        proc = t.server_cum_s[-1] - t.server_cum_s[:m]
        keep = [s for s in range(m) if not np.any((rel <= rel[s]) & (proc <= proc[s])
                                                  & ((rel < rel[s]) | (proc < proc[s])))]
        return keep + [m]

    def delays(self, splits: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """(delay, server time) per device for a split vector."""
        off = [n for n, s in enumerate(splits) if s < self.m[n]]
        server = np.zeros(len(splits))
        if off:
            t = [(self.terms[n], splits[n]) for n in off]
            rel = np.array([x.local_s[s] + x.upload_s[s] for x, s in t])
            proc = np.array([x.server_cum_s[-1] - x.server_cum_s[s] for x, s in t])
            server[off] = queue_delays(rel, proc, self.problem.parallel_limit)
        base = np.array([t.base_delay_s[s] for t, s in zip(self.terms, splits)])
        return base + server, server

    def key(self, splits: Sequence[int]) -> Key:
        code = tuple(int(s) for s in splits)
        if code not in self.cache:
            delay, _ = self.delays(code)
            self.cache[code] = (float(np.maximum(delay - self.tau, 0.0).sum()), float(delay.mean()))
        return self.cache[code]

    def descend(self, splits: List[int], pair_limit: int) -> Tuple[List[int], Key]:
        best = self.key(splits)
        n_dev = len(splits)
        improved = True
        while improved:
            improved = False
            moves = [((n,), [range(self.m[n] + 1)]) for n in range(n_dev)]
            if n_dev <= pair_limit:
                moves += [(pair, [self.front[n] for n in pair])
                          for pair in itertools.combinations(range(n_dev), 2)]
            for move, options in moves:
                for choice in itertools.product(*options):
                    trial = list(splits)
                    for n, s in zip(move, choice):
                        trial[n] = s
                    k = self.key(trial)
                    if k[0] < best[0] - 1e-12 or (k[0] <= best[0] + 1e-12 and k[1] < best[1] * (1 - 1e-12)):
                        splits, best, improved = trial, k, True
        return splits, best


def gtpos(problem: SplitProblem, seeds: Sequence[Sequence[int]] = (), exact_limit: int = 20000,
          pair_limit: int = 6) -> SplitSolution:
    """Case 2 of Section 5 (see the module docstring); raises :class:`InfeasibleError`
    when no split vector found meets (26) for every device."""
    g = _Global(problem)
    n_dev = problem.num_devices
    sizes = [int(m) + 1 for m in g.m]
    best_splits: Optional[List[int]] = None
    best: Key = (np.inf, np.inf)
    if float(np.prod(sizes, dtype=float)) <= exact_limit:
        for splits in itertools.product(*(range(s) for s in sizes)):
            k = g.key(splits)
            if k < best:
                best_splits, best = list(splits), k
    else:
        starts = [[int(np.argmin(t.base_delay_s + np.append(t.server_cum_s[-1] - t.server_cum_s[:-1], 0.0)))
                   for t in g.terms], [int(m) for m in g.m]]
        for seed in seeds:
            if len(seed) != n_dev or any(not 0 <= int(s) <= m for s, m in zip(seed, g.m)):
                raise ValueError(f"GTPOS seed {list(seed)} is not a split vector for {n_dev} devices")
            if [int(s) for s in seed] not in starts:
                starts.append([int(s) for s in seed])
        for start in starts:
            splits, k = g.descend(start, pair_limit)
            if k < best:
                best_splits, best = splits, k
    assert best_splits is not None
    if best[0] > 0:
        raise InfeasibleError(f"GTPOS: no split vector found meets every device's delay bound (26); "
                              f"the best breaches them by {best[0]:.4g} s in total")
    delay, server = g.delays(best_splits)
    outcomes = []
    for n, (dev, t, s) in enumerate(zip(problem.devices, g.terms, best_splits)):
        energy = float(t.energy_j[s])
        cost = dev.alpha * dev.c_t * float(delay[n]) + dev.beta * dev.c_e * energy
        outcomes.append(DeviceOutcome(float(delay[n]), energy, 0.0, cost, float(t.local_s[s]),
                                      float(t.upload_s[s]), float(server[n]),
                                      t.download_s if s < g.m[n] else 0.0, True))
    avg = float(np.mean([o.cost for o in outcomes]))
    return SplitSolution(tuple(DeviceStrategy(s) for s in best_splits), tuple(outcomes), 0, (avg,),
                         True, "gtpos")
