"""Pure allocation solvers: typed Problem/Solution dataclasses in, numbers out."""
