"""Pure allocation solvers: typed Problem/Solution dataclasses in, numbers out.

``base`` holds what the solver families share: :class:`SolverError` (an
invalid or infeasible problem, never a NaN), the :class:`Solver` abstract
class, field validation, the min-max split of one resource, and exact/local
search over binary decisions. One module per paper's solver, e.g. ``judba``
(paper 000: latent-vector uploading decision and bandwidth allocation).
"""
from edgebed.server.solvers.base import Solver, SolverError

__all__ = ["Solver", "SolverError"]
