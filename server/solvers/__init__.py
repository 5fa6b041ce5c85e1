"""Pure allocation solvers: typed Problem/Solution dataclasses in, numbers out.

``base`` holds what the solver families share: :class:`SolverError` (an
invalid or infeasible problem, never a NaN), the :class:`Solver` abstract
class, field validation, the min-max split of one resource, and exact/local
search over binary decisions. One module per paper's solver: ``judba``
(paper 000: latent-vector uploading decision and bandwidth allocation) and
``feel`` with ``feel_model``, ``feel_reference`` and ``feel_section6``
(paper 003: batch sizes and TDMA time slots, with a scipy reference).
Paper 004 (split DNN inference as an aggregative game): ``split_cost``
(delay, energy, slots and prices, eqs. (8)-(25)), ``split_response`` (one
device's best response, eq. (28)), ``split_game`` (TPOS-CAI/UAI, Algorithms
1-2, and the all-local/all-offload cases), ``split_global`` (GTPOS) and
``split_params`` (Fig. 4's parameters).
"""
from edgebed.server.solvers.base import Solver, SolverError

__all__ = ["Solver", "SolverError"]
