"""Oracle for the tests: JUDBA by brute force (paper 000)."""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Tuple

import numpy as np

from edgebed.server.workloads.tl.solver.model import (
    JudbaProblem,
    JudbaSolution,
    _check_allocator,
    _Model,
    _solution,
)


def solve_brute_force(problem: JudbaProblem, allocator: str = "optimal") -> JudbaSolution:
    """Reference for tests: every rho in {0,1}^M, each scored by a plain scalar
    transcription of eqs. (5)-(9) with T* of eq. (15) found by scipy's brentq."""
    from scipy.optimize import brentq

    _check_allocator(allocator)
    m = _Model(problem)  # feasibility checks only
    p, size = problem, problem.num_devices
    t = [p.samples[i] * p.cycles_per_sample / p.cpu_hz[i] for i in range(size)]
    # eq. (6) at w = 1, no faster than the link's measured capacity (inf or absent: no cap)
    cap = p.rate_cap_bps or (math.inf,) * size
    b = [p.upload_bits[i] / min(p.bandwidth_hz * math.log2(1 + p.tx_power_w[i] * p.gain[i] / p.noise_w),
                                cap[i])
         for i in range(size)]

    def score(rho: Tuple[int, ...]) -> Tuple[float, list, float]:
        up = [i for i in range(size) if rho[i]]
        w = [0.0] * size
        T = 0.0
        if up and allocator == "optimal":
            def g(x: float) -> float:
                return sum(b[i] / (x - t[i]) for i in up) - 1.0
            lo, hi = max(t[i] + b[i] for i in up), max(t[i] for i in up) + sum(b[i] for i in up)
            if g(lo) <= 0 or g(hi) >= 0:  # a root at an end (one uploader, or rounding)
                T = lo if g(lo) <= 0 else hi
            else:
                T = brentq(g, lo, hi, xtol=1e-14 * hi, rtol=1e-15)
            for i in up:
                w[i] = b[i] / (T - t[i])
        for i in up:
            w[i] = w[i] if allocator == "optimal" else 1.0 / len(up)
            T = max(T, t[i] + b[i] / w[i])
        ready = T + sum(p.samples[i] * p.server_cycles_per_sample / p.server_hz for i in up)
        cost = 0.0
        for i in range(size):
            fixed = p.encode_energy_j[i] + p.download_energy_j[i] + p.inference_energy_j[i]
            if rho[i]:
                e = fixed + p.idle_power_w[i] * max(0.0, ready - t[i] - b[i] / w[i]) + p.tx_power_w[i] * b[i]
            else:
                e = fixed + p.idle_power_w[i] * max(0.0, ready - t[i]) + p.tune_energy_j[i]
            cost += p.alpha[i] * e + (1 - p.alpha[i]) * T
        return cost, w, T

    best = min(itertools.product((0, 1), repeat=size), key=lambda rho: score(rho)[0])
    sol = _solution(m, np.asarray(best, dtype=bool), "brute-force", allocator)
    cost, w, T = score(best)
    return dataclasses.replace(sol, cost=cost, w=tuple(w), latency_s=T)
