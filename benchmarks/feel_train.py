"""FEEL train: paper 003 Table II on real agents with heterogeneous CPUs.

K agents in three speed classes (CPU quotas in the ratio 0.7 : 1.4 : 2.1,
like the paper's GHz classes) at random distances in a 200 m cell train one
model by each scheme, all in the same round loop with different allocators:
- proposed: joint batch sizes and time slots (Theorems 1-2, Algorithm 1);
- gradient-based FEEL: every device's whole local data as its batch (the
  paper's "entire dataset"), bounded by the memory limit B^max = 128 of
  (17e) as every scheme is (``--fixed-batch`` overrides), equal time slots;
- model-based FEEL (FedAvg): one local epoch, model-delta upload at 32 bits
  (FedAvg does not quantize the model; gradients travel with b bits), equal slots;
- individual learning: every device trains alone for several epochs, then
  one averaging (section VI-C).
All schemes share one learning-rate law, eta = base_lr sqrt(B / 32)
(section III-A), with B the global batch of a gradient step or the local
batch of a FedAvg step; the devices' eq. (9) profiles are measured once per
K and reused by every scheme. Plain SGD on this CNN oscillates at the
rates large batches get, which the curves show.
Time to the target accuracy is measured wall-clock on the server (evaluation
excluded). Speedup is relative to individual learning: its wall time over
the scheme's time to reach the accuracy individual learning ended with.
summary.json keys: schemes, accuracy, speedup (by K and partition),
round_overhead_ms (measured round time minus the slowest
device's measured compute, upload, download and update; median).
"""
import argparse
import logging
import statistics
from dataclasses import replace
from typing import Any, Dict, List, Optional

import numpy as np

from edgebed.benchmarks.fleet import AgentSpec, Fleet, ServerThread
from edgebed.benchmarks.plots import bar_chart
from edgebed.benchmarks.results import RunWriter, format_table, progress
from edgebed.device.cgroup import detect_cgroup_support
from edgebed.proto.link_model import channel_gain, dbm_to_w, noise_power_w
from edgebed.server.core import ServerConfig
from edgebed.server.workloads.feel.orchestrator import FederatedLearning, FeelConfig, RoundPlan
from edgebed.server.workloads.feel.solver.solve import allocate
from edgebed.server.workloads.feel.solver.params import (
    BANDWIDTH_HZ,
    CELL_RADIUS_M,
    NOISE_PSD_DBM_PER_HZ,
    TX_POWER_DBM,
    ergodic_rate_bps,
)

logger = logging.getLogger(__name__)

SCHEMES = ["individual", "model-based", "gradient-based", "proposed"]
SPEED_RATIO = (0.7, 1.4, 2.1)  # the paper's CPU classes (GHz), as quota ratios


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, nargs="+", default=None,
                        help="K values (default 6 12; --quick 6)")
    parser.add_argument("--partitions", nargs="+", default=None,
                        help="data partitions (default iid noniid; --quick iid)")
    parser.add_argument("--target", type=float, default=None,
                        help="test accuracy to reach (default 0.85; --quick 0.8)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-clock budget per scheme (default 240; --quick 75)")
    parser.add_argument("--model", default="cnn",
                        help="model (default cnn, the FedAvg MNIST CNN)")
    parser.add_argument("--bits", type=int, default=None,
                        help="gradient quantization bits (default 32; --quick 8)")
    parser.add_argument("--fixed-batch", type=int, default=None,
                        help="per-device batch of gradient-based FEEL (default: all its local "
                             "data up to B^max = 128, as in the paper)")
    parser.add_argument("--local-batch", type=int, default=64,
                        help="local SGD batch of model-based FEEL and individual learning")
    parser.add_argument("--individual-epochs", type=int, default=None)
    parser.add_argument("--base-lr", type=float, default=0.02,
                        help="learning rate at --reference-batch; scaled with sqrt(B)")
    parser.add_argument("--reference-batch", type=int, default=32)
    parser.add_argument("--cores", type=float, default=1.8,
                        help="CPU cores shared by all agents' quotas")


def _rates(distances: List[float]) -> List[float]:
    """Average Rayleigh rates of eqs. (5)-(6) with the Section VI-A radio."""
    noise = noise_power_w(BANDWIDTH_HZ, NOISE_PSD_DBM_PER_HZ)
    power = dbm_to_w(TX_POWER_DBM)
    return [ergodic_rate_bps(BANDWIDTH_HZ, power * channel_gain(d) / noise) for d in distances]


def _plan(fl: FederatedLearning, distances: Dict[str, float], scheme: str, args) -> RoundPlan:
    """The scheme's allocator on this fleet's measured eq. (9) fits.

    Gradients travel with b bits; model-based FEEL and individual learning
    send model parameters, which FedAvg does not quantize (32 bits): that
    difference is the paper's argument for gradient-based FEEL (Sec. VI-C).
    """
    model_mode = scheme in ("model-based", "individual")
    bits = 32 if model_mode else args.bits
    names = list(fl.devices)  # the ones that set up and profiled
    rates = dict(zip(names, _rates([distances[n] for n in names])))
    problem = fl.problem(rates, rates, bits)  # measured eq. (9) fits, Sec. VI-A rates
    if scheme == "proposed":
        sol = allocate(problem, "proposed")
    elif model_mode:  # FedAvg: local batch, equal slots
        sol = allocate(problem, "gradient-fixed", fixed_batch=args.local_batch)
    else:
        # Gradient-based FEEL "trains each local model using the entire dataset"
        # (Sec. VI-C), bounded like every scheme by the memory limit B^max (17e).
        sol = allocate(problem, "gradient-fixed", fixed_batch=args.fixed_batch)
    return RoundPlan.from_solution(
        names, sol, mode="model" if model_mode else "gradient", bits=bits,
        local_epochs=args.individual_epochs if scheme == "individual" else 1)


def train(srv: ServerThread, names: List[str], config: FeelConfig, scheme: str,
          distances: Dict[str, float], args, target: float, budget_s: float,
          writer: RunWriter, profiles: Dict[str, dict]) -> Dict[str, Any]:
    """One scheme from the same initial weights until target or budget.

    ``profiles`` carries the devices' eq. (9) profiles from scheme to scheme:
    the same model on the same devices needs profiling only once."""
    run_id = f"feel-K{len(names)}-{config.scheme}-{scheme}"
    fl = FederatedLearning(srv.server, names, replace(config, run_id=run_id))
    try:
        srv.call(fl.configure(profiles), 600)
        profiles.update(fl.profiles)
        plan = _plan(fl, distances, scheme, args)
        elapsed, curve, overheads, hashes_ok, reached = 0.0, [], [], True, None
        while elapsed < budget_s:
            record = srv.call(fl.run(plan), 900)
            elapsed += record.seconds
            overheads.append(record.seconds - record.slowest_work_s)
            hashes_ok &= record.hashes_agree
            accuracy = fl.test_accuracy()
            curve.append({"scheme": scheme, "partition": config.scheme, "K": len(names),
                          "round": record.round, "elapsed_s": elapsed,
                          "accuracy": accuracy, "loss": record.loss,
                          "round_s": record.seconds, "predicted_s": record.predicted_s,
                          "global_batch": record.global_batch, "arrived": len(record.arrived)})
            writer.event({"phase": "feel_round", **curve[-1]})
            if reached is None and accuracy >= target:
                reached = elapsed
            if scheme == "individual" or reached is not None:
                break
        return {"scheme": scheme, "accuracy": curve[-1]["accuracy"], "time_s": elapsed,
                "time_to_target_s": reached, "rounds": len(curve), "curve": curve,
                "batch": plan.batch, "global_batch": sum(plan.batch.values()),
                "hashes_agree": hashes_ok,
                "round_overhead_ms": 1e3 * statistics.median(overheads),
                "predicted_round_s": plan.predicted_s}
    finally:
        fl.close()


def run(args: argparse.Namespace) -> int:
    ks = args.devices or ([6] if args.quick else [6, 12])
    target = args.target or (0.8 if args.quick else 0.85)
    budget = args.budget_s or (75.0 if args.quick else 240.0)
    args.partitions = args.partitions or (["iid"] if args.quick else ["iid", "noniid"])
    args.bits = args.bits or (8 if args.quick else 32)
    args.individual_epochs = args.individual_epochs or (2 if args.quick else 5)
    support = detect_cgroup_support()
    use_quota = not support.startswith("none")
    config = FeelConfig(model=args.model, bits=args.bits, seed=args.seed, max_samples=None,
                        base_lr=args.base_lr, reference_batch=args.reference_batch)
    writer = RunWriter.from_args(args, config={**vars(args), "cgroups": support,
                                               "target": target, "budget_s": budget})
    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    with writer:
        for k in ks:
            rng = np.random.default_rng(args.seed + k)
            names = [f"feel-{i}" for i in range(k)]
            unit = args.cores / (sum(SPEED_RATIO) * k / 3)
            distances = {n: float(np.sqrt(rng.uniform(10 ** 2, CELL_RADIUS_M ** 2)))
                         for n in names}
            specs = [AgentSpec(n, cpu_quota=SPEED_RATIO[i % 3] * unit if use_quota else 0.0,
                               link=f"distance={distances[n]:.0f}m,power={TX_POWER_DBM:g}dBm,"
                                    f"bandwidth={BANDWIDTH_HZ:g}",
                               power_backend="null") for i, n in enumerate(names)]
            srv = ServerThread(ServerConfig(listen="127.0.0.1:0"))
            srv.run(srv.server.add_span_sink, writer.event)
            fleet = Fleet(srv.address, specs, log_dir=writer.path / f"agents-{k}",
                          benchmark_s=0.2)
            try:
                fleet.start_sequentially(srv)
                profiles: Dict[str, dict] = {}
                for partition in args.partitions:
                    cell = results.setdefault(f"K{k}", {}).setdefault(partition, {})
                    for scheme in progress(SCHEMES, desc=f"K={k} {partition}"):
                        cell[scheme] = train(srv, names, replace(config, scheme=partition),
                                             scheme, distances, args, target, budget, writer,
                                             profiles)
            finally:
                fleet.stop()
                srv.stop()
        return _report(writer, results, target)


def _speedups(cell: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Training speed relative to individual learning (Table II): individual
    learning's wall time over the time the scheme took to reach the accuracy
    individual learning ended with (None if it never did)."""
    base = cell["individual"]
    out: Dict[str, Optional[float]] = {}
    for scheme, r in cell.items():
        if scheme == "individual":
            out[scheme] = 1.0
            continue
        t = next((p["elapsed_s"] for p in r["curve"] if p["accuracy"] >= base["accuracy"]), None)
        out[scheme] = base["time_s"] / t if t else None
    return out


def _report(writer: RunWriter, results, target: float) -> int:
    rows = []
    for k, by_partition in results.items():
        for partition, cell in by_partition.items():
            speed = _speedups(cell)
            for scheme, r in cell.items():
                rows.append({"K": k, "partition": partition, "scheme": scheme,
                             "accuracy": r["accuracy"], "time_to_target_s": r["time_to_target_s"],
                             "time_s": r["time_s"], "rounds": r["rounds"],
                             "speedup": speed[scheme], "global_batch": r["global_batch"],
                             "round_overhead_ms": r["round_overhead_ms"],
                             "hashes_agree": r["hashes_agree"]})
                writer.table(f"curve_{k}_{partition}_{scheme}", r["curve"])
    writer.table("table2", rows)
    print(format_table(rows, ["K", "partition", "scheme", "accuracy", "time_to_target_s",
                              "time_s", "rounds", "global_batch", "speedup", "round_overhead_ms",
                              "hashes_agree"]))
    writer.plot("speedup", bar_chart(
        [f"{r['K']} {r['partition']}" for r in rows if r["scheme"] == "proposed"],
        {s: [r["speedup"] for r in rows if r["scheme"] == s] for s in SCHEMES},
        ylabel="speedup vs individual (measured)", title="Training speedup"))
    writer.summary({
        "schemes": SCHEMES,
        "target_accuracy": target,
        "accuracy": {k: {p: {s: r["accuracy"] for s, r in c.items()} for p, c in v.items()}
                     for k, v in results.items()},
        "speedup": {k: {p: _speedups(c) for p, c in v.items()} for k, v in results.items()},
        "time_to_target_s": {k: {p: {s: r["time_to_target_s"] for s, r in c.items()}
                                 for p, c in v.items()} for k, v in results.items()},
        "round_overhead_ms": statistics.median(
            r["round_overhead_ms"] for v in results.values() for c in v.values()
            for s, r in c.items() if s != "individual"),
        "hashes_agree": all(r["hashes_agree"] for v in results.values() for c in v.values()
                            for r in c.values()),
        "provenance": "measured (wall clock on this host; accuracy on the server's held-out "
                      "test set)",
    })
    print(f"results: {writer.path}")
    return 0
