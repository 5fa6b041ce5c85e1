"""Orchestrators: run one workload across real agents (configure / run /
aggregate), feed the solvers measured inputs and enforce their decisions."""
