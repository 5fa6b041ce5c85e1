"""TL solver: JUDBA's modeled cost vs devices M and edge-server speed F, and its solve time (Fig. 4).

Reproduces Fig. 4 of Yang et al., "A Joint Energy and Latency Framework for
Transfer Learning over 5G Industrial Edge Networks": the weighted-sum cost of
the proposed uploading decision and bandwidth allocation (JUDBA) against
fully and randomly uploading, on random Table II instances, plus the measured
time of one proposed solve for M up to 1,000.

Random Table II instances (``problem_from_table2``; its docstring lists what
was assumed where the paper is silent), lambda = 4, averaged over ``--draws``
draws. Fig. 4(a): M = 10..60 at F = 2.5 GHz, fresh devices per M. Fig. 4(b):
M = 30, F = 1..5 GHz, the same devices (and the same random decisions) at
every F. Schemes: proposed (Theorem 1 bandwidth, exact search for M <= 16,
Observation 2 + local improvement above), fully uploading and randomly
uploading (both with equal bandwidth). Costs are model outputs ("modeled"),
normalized per figure by the largest mean; the raw means are in the CSV
tables. Solver time (proposed, median wall time) is measured for M up to
``--max-timing-devices``.

summary.json keys: ``M``, ``cost_vs_M`` and ``cost_vs_F`` (one list per
scheme), ``F`` (GHz), ``solve_ms_M1000``, ``proposed_le_baselines``; each
key's provenance is in ``provenance``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import numpy as np

from edgebed.benchmarks.options import MAX_THREADS, Presets, add_options, between, option, positive, resolve
from edgebed.benchmarks.parallel import parallel_map
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, derived, format_table, given, measured, modeled, progress
from edgebed.server.workloads.tl.solver import EXACT_MAX_DEVICES, problem_from_table2, solve

SCHEMES = ("proposed", "full", "random")
M_VALUES = (10, 20, 30, 40, 50, 60)
F_GHZ = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
FIG_A_GHZ = 2.5
FIG_B_DEVICES = 30
COMPRESSION_RATIO = 4.0
TIMING_M = (10, 16, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True)
class Options:
    draws: int = option(1000, "random instances per point", check=positive)
    workers: int = option(min(2, os.cpu_count() or 1), "processes drawing instances",
                          check=between(1, MAX_THREADS))
    timing_repeats: int = option(5, "solves per M for the solver time, median reported", check=positive)
    max_timing_devices: int = option(max(TIMING_M), "largest M whose solve time is measured "
                                     f"(M among {','.join(map(str, TIMING_M))})",
                                     check=positive)


PRESETS = Presets(quick=Options(draws=100, timing_repeats=2), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


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


def _series(rows: List[Dict[str, Any]], suffix: str) -> Dict[str, List[float]]:
    return {s: [row[f"{s}_{suffix}"] for row in rows] for s in SCHEMES}


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    config = {"options": opts, "seed": args.seed, "quick": args.quick, "M": M_VALUES, "F_ghz": F_GHZ,
              "fig_a_ghz": FIG_A_GHZ, "fig_b_devices": FIG_B_DEVICES, "lambda": COMPRESSION_RATIO}
    writer = RunWriter.from_args(args, config=config)
    started = time.perf_counter()
    with writer:
        tasks = [(args.seed, k) for k in range(opts.draws)]
        results = list(progress(parallel_map(_draw, tasks, opts.workers), total=opts.draws, desc="draws"))
        rows_m = _points("M", M_VALUES, [r["a"] for r in results])
        rows_f = _points("F_ghz", F_GHZ, [r["b"] for r in results])
        timing = _timings(opts.max_timing_devices, opts.timing_repeats, args.seed)
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
                                            f"Fig. 4(a): F = {FIG_A_GHZ} GHz, {opts.draws} draws"))
        writer.plot("cost_vs_F", line_chart(F_GHZ, _series(rows_f, "norm"), "edge-server speed F (GHz)",
                                            "normalized weighted-sum cost (modeled)",
                                            f"Fig. 4(b): M = {FIG_B_DEVICES}, {opts.draws} draws"))
        writer.plot("solve_time", line_chart([r["M"] for r in timing],
                                             {"proposed": [r["median_ms"] for r in timing]},
                                             "devices M", "solve time (ms, measured median)",
                                             "JUDBA solver time", logx=True))
        at_1000 = [r["median_ms"] for r in timing if r["M"] == 1000]
        le = all(row["proposed_mean"] <= min(row["full_mean"], row["random_mean"])
                 for row in rows_m + rows_f)
        cost = "weighted-sum cost (eq. 9), mean over draws"
        writer.summary({
            "M": given(list(M_VALUES)),
            "cost_vs_M": modeled(_series(rows_m, "norm"), f"{cost}, normalized by the largest in Fig. 4(a)"),
            "F": given(list(F_GHZ), "GHz"),
            "cost_vs_F": modeled(_series(rows_f, "norm"), f"{cost}, normalized by the largest in Fig. 4(b)"),
            "solve_ms_M1000": measured(at_1000[0] if at_1000 else None,
                                       "ms, median wall time of one proposed solve"),
            "proposed_le_baselines": derived(le, "proposed mean <= both baselines' at every point"),
            "proposed_le_both_per_draw_min": derived(
                min(r["proposed_le_both_frac"] for r in rows_m + rows_f),
                "smallest share of draws in which proposed <= both baselines"),
            "uploaders_vs_M": modeled(_series(rows_m, "uploaders"), "mean uploaders"),
            "uploaders_vs_F": modeled(_series(rows_f, "uploaders"), "mean uploaders"),
            "raw_cost_vs_M": modeled(_series(rows_m, "mean"), cost),
            "raw_cost_vs_F": modeled(_series(rows_f, "mean"), cost),
            "solve_ms_vs_M": {"M": given([r["M"] for r in timing]),
                              "median_ms": measured([r["median_ms"] for r in timing],
                                                    "ms, median wall time of one proposed solve")},
            "draws": given(opts.draws),
            "quick": given(bool(args.quick)),
            "settings": given({"fig_a_F_ghz": FIG_A_GHZ, "fig_b_M": FIG_B_DEVICES,
                               "lambda": COMPRESSION_RATIO, "exact_max_devices": EXACT_MAX_DEVICES,
                               "workers": opts.workers}),
            "elapsed_s": measured(time.perf_counter() - started, "wall time of the run"),
        })
        print(f"results: {writer.path}")
    return 0
