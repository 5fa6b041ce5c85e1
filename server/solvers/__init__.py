"""What every solver family shares (``base``): the error, scheme tables,
field validation, the min-max split of one resource, and exact/local search
over binary decisions. Each paper's solver lives with its workload, under
``edgebed.server.workloads.<name>.solver``; solvers are pure: typed
Problem/Solution dataclasses in, numbers out.
"""
from edgebed.server.solvers.base import SolverError, resolve

__all__ = ["SolverError", "resolve"]
