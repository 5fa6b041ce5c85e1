"""JUDBA (paper 000): uploading decision and bandwidth allocation. Pure.

``model`` (problem, solution, cost of a decision, Theorem 1's split),
``solve`` (the deciders' table), ``reference`` (brute-force oracle),
``params`` (Table II instances).
"""
from edgebed.server.workloads.tl.solver.model import (
    ALLOCATORS,
    JudbaProblem,
    JudbaSolution,
    clipped_rates,
    cpu_hz_from_encode_time,
    evaluate,
)
from edgebed.server.workloads.tl.solver.params import problem_from_table2
from edgebed.server.workloads.tl.solver.reference import solve_brute_force
from edgebed.server.workloads.tl.solver.solve import (
    DECIDERS,
    DEFAULT_ALLOCATOR,
    EXACT_MAX_DEVICES,
    solve,
)

__all__ = ["ALLOCATORS", "DECIDERS", "DEFAULT_ALLOCATOR", "EXACT_MAX_DEVICES", "JudbaProblem",
           "JudbaSolution", "clipped_rates", "cpu_hz_from_encode_time", "evaluate", "problem_from_table2",
           "solve", "solve_brute_force"]
