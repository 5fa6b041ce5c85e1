"""FEEL solver: optimality gap against scipy's general solver, and solve time, for K up to 100.

Checks the joint batch-size selection and time-slot allocation of Ren et al.,
"Accelerating DNN Training in Wireless Federated Edge Learning Systems"
(Theorems 1-2, Algorithm 1, Lemma 2) against SLSQP on the same problems, and
measures how long one proposed solve takes.

Random Section VI-A instances (``problem_from_section6``: 200 m cell, 3GPP
path loss, Rayleigh fading, 10 MHz, 28 dBm, b = 32, B^max = 128, CPUs at
0.7/1.4/2.1 GHz), each with one of the paper's three models, a backward cost
C drawn log-uniformly in [3e8, 1e10] cycles per sample (so that batch sizes
range from all-at-B^max to all-interior) and averaged or drawn fading; GPU
instances scale the desktop-GPU times by a factor drawn log-uniformly in
[1, 1000] (a GTX 1080 Ti down to an embedded GPU) for the same reason. The
CPU scheme (Theorem 1 + Algorithm 1 + Theorem 2 + search over B) is compared
with SLSQP on P1; the GPU scheme (Lemma 2 / P7) with SLSQP on the full P6.

Gap = (E_ref - E_proposed) / E_ref on the continuous problem, E the learning
efficiency of eq. (16): > 0 when the reference found a better allocation.
It is derived from two modeled efficiencies, both decisions re-evaluated by
the same code. Solve times are measured: median wall time in one process
after the gap runs; the reference's times come from the gap runs, made by
``--workers`` processes side by side.

summary.json keys: ``max_rel_gap`` (done when <= 1e-3), ``solve_ms_K100``
(proposed CPU solver at K = 100), plus per-scenario and per-K detail; each
key's provenance is in ``provenance``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from edgebed.benchmarks.options import MAX_THREADS, Presets, add_options, between, option, positive, resolve
from edgebed.benchmarks.parallel import parallel_map
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, derived, format_table, given, measured, progress
from edgebed.server.workloads.feel.solver.params import MODEL_PARAMS, problem_from_section6
from edgebed.server.workloads.feel.solver.reference import solve_reference
from edgebed.server.workloads.feel.solver.solve import solve_cpu, solve_gpu

K_VALUES = (2, 5, 10, 20, 50, 100)
TIMING_K = (1, 2, 5, 10, 20, 50, 100)
LOG10_CYCLES = (8.5, 10.0)
LOG10_GPU_SLOWDOWN = (0.0, 3.0)
GOAL = 1e-3


@dataclass(frozen=True)
class Options:
    instances: int = option(20, "CPU instances per K; GPU gets half as many", check=positive)
    k_values: List[int] = option(list(K_VALUES), "comma-separated numbers of devices K", check=positive)
    timing_repeats: int = option(9, "timed solves per K and scenario, median reported", check=positive)
    workers: int = option(min(2, os.cpu_count() or 1), "processes running the gap instances",
                          check=between(1, MAX_THREADS))


PRESETS = Presets(quick=Options(instances=4, timing_repeats=5), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def _instance(k: int, rng: np.random.Generator, gpu: bool):
    return problem_from_section6(
        k, rng, model=str(rng.choice(sorted(MODEL_PARAMS))),
        cycles_per_sample=float(10 ** rng.uniform(*LOG10_CYCLES)),
        fading=str(rng.choice(["average", "draw"])), gpu=gpu,
        gpu_slowdown=float(10 ** rng.uniform(*LOG10_GPU_SLOWDOWN)))


def _gap_task(task: tuple) -> Dict[str, Any]:
    """One instance: proposed vs reference (a pure function of ``task``)."""
    seed, k, i, scenario = task
    rng = np.random.default_rng([seed, k, i, scenario == "gpu"])
    problem = _instance(k, rng, scenario == "gpu")
    start = time.perf_counter()
    sol = solve_gpu(problem) if scenario == "gpu" else solve_cpu(problem)
    mid = time.perf_counter()
    ref, res = solve_reference(problem, scenario, full_output=True)
    end = time.perf_counter()
    e_ref, e_prop = ref.relaxed.efficiency, sol.relaxed.efficiency
    b = np.asarray(sol.relaxed.batch_size)
    return {
        "K": k, "instance": i, "scenario": scenario, "rel_gap": (e_ref - e_prop) / e_ref,
        "efficiency": e_prop, "efficiency_ref": e_ref, "efficiency_int": sol.efficiency,
        "rounding_loss": (e_prop - sol.efficiency) / e_prop,
        "global_batch": sol.relaxed.global_batch_size, "global_batch_ref": ref.relaxed.global_batch_size,
        "interior_frac": float(np.mean((b > 1 + 1e-6) & (b < problem.max_batch - 1e-6))),
        "round_latency_s": sol.round_latency_s, "solve_ms": (mid - start) * 1e3, "ref_ms": (end - mid) * 1e3,
        "ref_status": int(res.status), "ref_message": str(res.message),
    }


def _timings(repeats: int, seed: int) -> List[Dict[str, Any]]:
    rows = []
    for k in progress(TIMING_K, desc="solve time"):
        for scenario, solve in (("cpu", solve_cpu), ("gpu", solve_gpu)):
            ms = []
            for r in range(repeats):
                problem = _instance(k, np.random.default_rng([seed, 99, k, r]), scenario == "gpu")
                start = time.perf_counter()
                solve(problem)
                ms.append((time.perf_counter() - start) * 1e3)
            rows.append({"K": k, "scenario": scenario, "median_ms": statistics.median(ms),
                         "min_ms": min(ms), "max_ms": max(ms), "repeats": repeats})
    return rows


def _per_k(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for scenario in ("cpu", "gpu"):
        for k in sorted({r["K"] for r in rows}):
            sel = [r for r in rows if r["K"] == k and r["scenario"] == scenario]
            if not sel:
                continue
            gaps = np.array([r["rel_gap"] for r in sel])
            out.append({"K": k, "scenario": scenario, "instances": len(sel), "max_rel_gap": float(gaps.max()),
                        "max_abs_rel_gap": float(np.abs(gaps).max()),
                        "median_abs_rel_gap": float(np.median(np.abs(gaps))),
                        "median_solve_ms": statistics.median(r["solve_ms"] for r in sel),
                        "median_ref_ms": statistics.median(r["ref_ms"] for r in sel),
                        "mean_interior_frac": float(np.mean([r["interior_frac"] for r in sel])),
                        "max_rounding_loss": max(r["rounding_loss"] for r in sel),
                        "ref_not_converged": sum(r["ref_status"] != 0 for r in sel)})
    return out


def _log_y(fig: Any, goal_line: bool = False) -> Any:
    """A :func:`line_chart` figure with a log y axis (and the done-criterion as a dashed line)."""
    ax = fig.axes[0]
    ax.set_yscale("log")
    if goal_line:
        ax.axhline(GOAL, color="grey", linestyle="--", linewidth=0.8)
    return fig


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    instances, k_values = opts.instances, sorted(set(opts.k_values))
    gpu_instances = max(1, instances // 2)
    config = {"options": opts, "seed": args.seed, "quick": args.quick, "gpu_instances": gpu_instances,
              "timing_K": TIMING_K, "log10_cycles_per_sample": LOG10_CYCLES,
              "log10_gpu_slowdown": LOG10_GPU_SLOWDOWN, "goal": GOAL}
    writer = RunWriter.from_args(args, config=config)
    started = time.perf_counter()
    with writer:
        tasks = [(args.seed, k, i, "cpu") for k in k_values for i in range(instances)]
        tasks += [(args.seed, k, i, "gpu") for k in k_values for i in range(gpu_instances)]
        tasks.sort(key=lambda t: -t[1])  # the slow K = 100 references first, for load balance
        rows = sorted(progress(parallel_map(_gap_task, tasks, opts.workers), total=len(tasks),
                               desc="gap instances"),
                      key=lambda r: (r["scenario"], r["K"], r["instance"]))
        for row in rows:
            writer.event({"kind": "gap", "provenance": "modeled", **row})
        per_k = _per_k(rows)
        timing = _timings(opts.timing_repeats, args.seed)
        for row in timing:
            writer.event({"kind": "solve_time", "provenance": "measured", **row})
        writer.table("instances", rows)
        writer.table("gap_vs_K", per_k)
        writer.table("solve_time", timing)
        print(format_table(per_k, ["K", "scenario", "instances", "max_rel_gap", "max_abs_rel_gap",
                                   "median_solve_ms", "median_ref_ms", "mean_interior_frac",
                                   "ref_not_converged"]))
        print(format_table(timing, ["K", "scenario", "median_ms", "min_ms", "max_ms"]))

        ks = sorted({r["K"] for r in per_k})
        floor = 1e-17

        def series(scenario: str, key: str) -> List[Any]:
            by_k = {r["K"]: r[key] for r in per_k if r["scenario"] == scenario}
            return [max(floor, by_k[k]) if k in by_k else None for k in ks]
        writer.plot("gap_vs_K", _log_y(line_chart(
            ks, {"CPU max |gap|": series("cpu", "max_abs_rel_gap"),
                 "GPU max |gap|": series("gpu", "max_abs_rel_gap")},
            "devices K", "relative efficiency gap vs SLSQP (modeled)",
            f"Proposed vs general solver, {instances} + {gpu_instances} instances per K", logx=True), True))
        tk = list(TIMING_K)
        writer.plot("solve_time", _log_y(line_chart(
            tk, {"proposed CPU": [r["median_ms"] for r in timing if r["scenario"] == "cpu"],
                 "proposed GPU": [r["median_ms"] for r in timing if r["scenario"] == "gpu"],
                 "SLSQP reference": [next((r["median_ref_ms"] for r in per_k
                                           if r["K"] == k and r["scenario"] == "cpu"), None) for k in tk]},
            "devices K", "solve time (ms, measured median)", "FEEL solver time", logx=True)))

        gaps = [r["rel_gap"] for r in rows]
        at100 = {r["scenario"]: r["median_ms"] for r in timing if r["K"] == 100}
        ref100 = [r["median_ref_ms"] for r in per_k if r["K"] == 100 and r["scenario"] == "cpu"]
        max_gap = max(gaps)
        gap = "(E_ref - E_proposed) / E_ref, E the modeled learning efficiency (eq. 16)"
        solve_note = "ms, median wall time of one proposed {} solve at K = 100"
        writer.summary({
            "max_rel_gap": derived(max_gap, f"{gap}; > 0: the scipy reference found a better allocation"),
            "solve_ms_K100": measured(at100.get("cpu"), solve_note.format("CPU")),
            "done": derived(bool(max_gap <= GOAL), f"max_rel_gap <= {GOAL:g}"),
            "max_rel_gap_cpu": derived(max(r["rel_gap"] for r in rows if r["scenario"] == "cpu"), gap),
            "max_rel_gap_gpu": derived(max(r["rel_gap"] for r in rows if r["scenario"] == "gpu"), gap),
            "max_abs_rel_gap": derived(max(abs(g) for g in gaps), f"largest |gap|, gap = {gap}"),
            "solve_ms_K100_gpu": measured(at100.get("gpu"), solve_note.format("GPU")),
            "reference_ms_K100": measured(ref100[0] if ref100 else None,
                                          "ms, median SLSQP solve in the gap runs (other instances, "
                                          f"{opts.workers} processes side by side)"),
            "max_rounding_loss": derived(max(r["rounding_loss"] for r in rows),
                                         "modeled efficiency lost by rounding B_k to integers, relative"),
            "reference_not_converged": derived(sum(r["ref_status"] != 0 for r in rows),
                                               "SLSQP runs that ended with a non-zero status"),
            "instances": given(len(rows)),
            "K": given(k_values),
            "quick": given(bool(args.quick)),
            "elapsed_s": measured(time.perf_counter() - started, "wall time of the run"),
        })
        print(f"max_rel_gap = {max_gap:.3e} (goal <= {GOAL:g}), "
              f"solve_ms_K100 = {at100.get('cpu', float('nan')):.2f}")
        print(f"results: {writer.path}")
    return 0
