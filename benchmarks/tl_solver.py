"""JUDBA (paper 000, Fig. 4): modeled cost vs devices M and edge-server speed F, plus solver time.

Random Table II instances (``problem_from_table2``; its docstring lists what
was assumed where the paper is silent), lambda = 4, averaged over ``--draws``
draws (1,000; ``--quick``: 100). Fig. 4(a): M = 10..60 at F = 2.5 GHz, fresh
devices per M. Fig. 4(b): M = 30, F = 1..5 GHz, the same devices (and the
same random decisions) at every F. Schemes: proposed (Theorem 1 bandwidth,
exact search for M <= 16, Observation 2 + local improvement above), fully
uploading and randomly uploading (both with equal bandwidth). Costs are model
outputs ("modeled"), normalized per figure by the largest mean; the raw means
are in the CSV tables. Solver time (proposed, median wall time) is measured
for M up to 1,000.

summary.json keys: ``M``, ``cost_vs_M`` and ``cost_vs_F`` (one list per
scheme), ``F`` (GHz), ``solve_ms_M1000``, ``proposed_le_baselines``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np

from edgebed.benchmarks.plots import line_chart
from edgebed.benchmarks.results import RunWriter, format_table, progress
from edgebed.server.workloads.tl.solver.judba import EXACT_MAX_DEVICES, problem_from_table2, solve

SCHEMES = ("proposed", "full", "random")
M_VALUES = (10, 20, 30, 40, 50, 60)
F_GHZ = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
FIG_A_GHZ = 2.5
FIG_B_DEVICES = 30
COMPRESSION_RATIO = 4.0
TIMING_M = (10, 16, 20, 50, 100, 200, 500, 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--draws", type=int, default=None,
                        help="random instances per point (default 1000, --quick 100)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes drawing instances (default: %(default)s)")
    parser.add_argument("--timing-repeats", type=int, default=None,
                        help="solves per M for the solver time, median reported (default 5, --quick 2)")
    parser.add_argument("--max-timing-devices", type=int, default=1000,
                        help="largest M whose solve time is measured (default: %(default)s)")


def _costs(problem, rng_seed: Sequence[int]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for scheme in SCHEMES:
        sol = solve(problem, scheme, rng=np.random.default_rng(list(rng_seed)))
        out[scheme] = sol.cost
        out[f"{scheme}_n"] = sol.uploaders
    return out


def _draw(task: tuple) -> Dict[str, List[Dict[str, Any]]]:
    """One draw: every Fig. 4(a) point and every Fig. 4(b) point (pure function of ``task``)."""
    seed, k = task
    fig_a = [_costs(problem_from_table2(m, np.random.default_rng([seed, 0, m, k]), FIG_A_GHZ * 1e9,
                                        COMPRESSION_RATIO), (seed, 2, m, k)) for m in M_VALUES]
    base = problem_from_table2(FIG_B_DEVICES, np.random.default_rng([seed, 1, k]), 1e9, COMPRESSION_RATIO)
    fig_b = [_costs(dataclasses.replace(base, server_hz=f * 1e9), (seed, 3, k)) for f in F_GHZ]
    return {"a": fig_a, "b": fig_b}


def _points(xname: str, xs: Sequence[float], draws: List[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    rows = []
    for i, x in enumerate(xs):
        samples = [d[i] for d in draws]
        row: Dict[str, Any] = {xname: x}
        for s in SCHEMES:
            values = np.array([d[s] for d in samples])
            row[f"{s}_mean"] = float(values.mean())
            row[f"{s}_sem"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
            row[f"{s}_uploaders"] = float(np.mean([d[f"{s}_n"] for d in samples]))
        row["proposed_le_both_frac"] = float(np.mean(
            [d["proposed"] <= min(d["full"], d["random"]) * (1 + 1e-9) for d in samples]))
        rows.append(row)
    top = max(row[f"{s}_mean"] for row in rows for s in SCHEMES)
    for row in rows:
        for s in SCHEMES:
            row[f"{s}_norm"] = row[f"{s}_mean"] / top
    return rows


def _timings(max_m: int, repeats: int, seed: int) -> List[Dict[str, Any]]:
    rows = []
    for m in progress([m for m in TIMING_M if m <= max_m], desc="solver time"):
        ms, uploaders = [], []
        for r in range(repeats):
            problem = problem_from_table2(m, np.random.default_rng([seed, 4, m, r]), FIG_A_GHZ * 1e9)
            start = time.perf_counter()
            sol = solve(problem)
            ms.append((time.perf_counter() - start) * 1e3)
            uploaders.append(sol.uploaders)
        rows.append({"M": m, "method": "exhaustive" if m <= EXACT_MAX_DEVICES else "obs2+local",
                     "median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
                     "repeats": repeats, "mean_uploaders": float(np.mean(uploaders))})
    return rows


def _map(tasks: List[tuple], workers: int) -> Iterable[Dict[str, Any]]:
    if workers <= 1:
        yield from map(_draw, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_draw, tasks, chunksize=max(1, len(tasks) // (8 * workers)))


def _series(rows: List[Dict[str, Any]], suffix: str) -> Dict[str, List[float]]:
    return {s: [row[f"{s}_{suffix}"] for row in rows] for s in SCHEMES}


def run(args: argparse.Namespace) -> int:
    draws = args.draws or (100 if args.quick else 1000)
    repeats = args.timing_repeats or (2 if args.quick else 5)
    if draws < 1 or repeats < 1 or args.workers < 1:
        raise SystemExit("--draws, --timing-repeats and --workers must be at least 1")
    config = {**vars(args), "draws": draws, "timing_repeats": repeats, "M": M_VALUES, "F_ghz": F_GHZ,
              "fig_a_ghz": FIG_A_GHZ, "fig_b_devices": FIG_B_DEVICES, "lambda": COMPRESSION_RATIO}
    writer = RunWriter.from_args(args, config=config)
    started = time.perf_counter()
    with writer:
        results = list(progress(_map([(args.seed, k) for k in range(draws)], args.workers),
                                total=draws, desc="draws"))
        rows_m = _points("M", M_VALUES, [r["a"] for r in results])
        rows_f = _points("F_ghz", F_GHZ, [r["b"] for r in results])
        timing = _timings(args.max_timing_devices, repeats, args.seed)
        for name, rows in (("cost_vs_M", rows_m), ("cost_vs_F", rows_f), ("solve_time", timing)):
            writer.table(name, rows)
            for row in rows:
                writer.event({"kind": name, "provenance": "measured" if name == "solve_time"
                              else "modeled", **row})
        cols = ["proposed_norm", "full_norm", "random_norm", "proposed_uploaders", "proposed_le_both_frac"]
        print(format_table(rows_m, ["M"] + cols))
        print(format_table(rows_f, ["F_ghz"] + cols))
        print(format_table(timing, ["M", "method", "median_ms", "min_ms", "mean_uploaders"]))
        writer.plot("cost_vs_M", line_chart(M_VALUES, _series(rows_m, "norm"), "devices M",
                                            "normalized weighted-sum cost (modeled)",
                                            f"Fig. 4(a): F = {FIG_A_GHZ} GHz, {draws} draws"))
        writer.plot("cost_vs_F", line_chart(F_GHZ, _series(rows_f, "norm"), "edge-server speed F (GHz)",
                                            "normalized weighted-sum cost (modeled)",
                                            f"Fig. 4(b): M = {FIG_B_DEVICES}, {draws} draws"))
        writer.plot("solve_time", line_chart([r["M"] for r in timing],
                                             {"proposed": [r["median_ms"] for r in timing]},
                                             "devices M", "solve time (ms, measured median)",
                                             "JUDBA solver time", logx=True))
        at_1000 = [r["median_ms"] for r in timing if r["M"] == 1000]
        le = all(row["proposed_mean"] <= min(row["full_mean"], row["random_mean"])
                 for row in rows_m + rows_f)
        writer.summary({
            "M": list(M_VALUES),
            "cost_vs_M": _series(rows_m, "norm"),
            "F": list(F_GHZ),
            "cost_vs_F": _series(rows_f, "norm"),
            "solve_ms_M1000": at_1000[0] if at_1000 else None,
            "proposed_le_baselines": le,
            "proposed_le_both_per_draw_min": min(r["proposed_le_both_frac"] for r in rows_m + rows_f),
            "uploaders_vs_M": _series(rows_m, "uploaders"),
            "uploaders_vs_F": _series(rows_f, "uploaders"),
            "raw_cost_vs_M": _series(rows_m, "mean"),
            "raw_cost_vs_F": _series(rows_f, "mean"),
            "solve_ms_vs_M": {"M": [r["M"] for r in timing], "median_ms": [r["median_ms"] for r in timing]},
            "draws": draws,
            "quick": bool(args.quick),
            "units": {"F": "GHz", "solve_ms_M1000": "ms (median wall time of one proposed solve)",
                      "cost": "weighted-sum cost (eq. 9, J and s mixed by alpha); cost_vs_* are "
                              "normalized by the largest scheme mean in the figure"},
            "provenance": {"cost_vs_M": "modeled", "cost_vs_F": "modeled", "uploaders_vs_M": "modeled",
                           "uploaders_vs_F": "modeled", "raw_cost_vs_*": "modeled",
                           "proposed_le_*": "derived from the modeled costs",
                           "solve_ms_M1000": "measured", "solve_ms_vs_M": "measured"},
            "settings": {"fig_a_F_ghz": FIG_A_GHZ, "fig_b_M": FIG_B_DEVICES, "lambda": COMPRESSION_RATIO,
                         "exact_max_devices": EXACT_MAX_DEVICES, "workers": args.workers},
            "elapsed_s": time.perf_counter() - started,
        })
        print(f"results: {writer.path}")
    return 0
