"""JUDBA's uploading decision (P1.2 of paper 000): which devices upload.

Deciders are entries of one table (:data:`DECIDERS`), each paired with the
band allocator of :mod:`.model`: "proposed" (exhaustive search for
M <= 16; above, the Observation 2 rule, upload iff Delta_e <= 0, followed by
single-flip local improvement; Theorem 1's split), and the paper's
baselines "full" (all rho = 1) and "random" (rho ~ Bernoulli(1/2)), both
splitting the band equally by default.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

from edgebed.server.solvers.base import exhaustive_binary, local_search_binary, resolve
from edgebed.server.workloads.tl.solver.model import (
    JudbaProblem,
    JudbaSolution,
    _batch_cost,
    _check_allocator,
    _Model,
    _solution,
)

#: Largest M searched exhaustively by the "proposed" decider.
EXACT_MAX_DEVICES = 16

# A decider: (model, allocator, min_uploaders, rng, exact_max_devices) -> rho.
Decider = Callable[[_Model, str, int, Optional[np.random.Generator], int], np.ndarray]


def _full(m: _Model, allocator: str, min_uploaders: int, rng, exact_max: int) -> np.ndarray:
    return np.ones(m.alpha.size, dtype=bool)


def _random(m: _Model, allocator: str, min_uploaders: int, rng, exact_max: int) -> np.ndarray:
    if rng is None:
        raise ValueError("decider 'random' needs rng (a numpy Generator)")
    rho = rng.random(m.alpha.size) < 0.5
    short = min_uploaders - int(rho.sum())
    if short > 0:
        rho[rng.choice(np.flatnonzero(~rho), short, replace=False)] = True
    return rho


def _proposed(m: _Model, allocator: str, min_uploaders: int, rng, exact_max: int) -> np.ndarray:
    size = m.alpha.size
    cost = _batch_cost(m, allocator, min_uploaders)
    if size <= exact_max:
        return exhaustive_binary(cost, size)[0]  # P1.2, exact
    # Observation 2: upload iff Delta_e <= 0; a second start from "nobody
    # uploads" (greedy additions) catches the cases where removals stall.
    runs = [local_search_binary(cost, start) for start in (m.delta_e <= 0.0, np.zeros(size, bool))]
    return min(runs, key=lambda run: run[1])[0]


#: decider name -> decider, and the allocator it uses unless told (the baselines split equally).
DECIDERS: Dict[str, Decider] = {"proposed": _proposed, "full": _full, "random": _random}
DEFAULT_ALLOCATOR = {"proposed": "optimal", "full": "equal", "random": "equal"}


def solve(problem: JudbaProblem, decider: str = "proposed",
          rng: Optional[np.random.Generator] = None, allocator: Optional[str] = None,
          exact_max_devices: int = EXACT_MAX_DEVICES, min_uploaders: int = 0) -> JudbaSolution:
    """Solve ``problem`` with a decider ("proposed", "full", "random") and an
    allocator ("optimal": Theorem 1; "equal"; default per :data:`DEFAULT_ALLOCATOR`).

    "proposed" is exact for ``M <= exact_max_devices`` and the Observation 2
    rule plus local improvement above; "random" needs ``rng``.
    ``min_uploaders`` adds the constraint N >= min_uploaders: a real pipeline
    needs at least one upload to train the edge CNN on, while the cost of
    eq. (9) alone can favour "nobody uploads" (T = 0).
    """
    if not 0 <= min_uploaders <= problem.num_devices:
        raise ValueError(f"min_uploaders must be in 0..{problem.num_devices}, got {min_uploaders}")
    choose = resolve(DECIDERS, decider, "decider")
    allocator = DEFAULT_ALLOCATOR[decider] if allocator is None else allocator
    _check_allocator(allocator)
    m = _Model(problem)
    rho = choose(m, allocator, min_uploaders, rng, exact_max_devices)
    return _solution(m, rho, decider, allocator)
