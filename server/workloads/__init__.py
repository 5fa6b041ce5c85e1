"""Workloads on the server: one package per paper (its orchestrator, its pure solver),
all filling the template in :mod:`edgebed.server.workloads.template`."""
