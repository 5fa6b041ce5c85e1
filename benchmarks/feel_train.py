"""FEEL train: Table II of the federated-edge-learning paper on real agents.

"Accelerating DNN Training in Wireless Federated Edge Learning Systems".

K devices of different speeds at random distances in a 200 m cell train one
model by each scheme, all in the same round loop with different allocators
(on the local fleet, three speed classes of CPU quotas in the ratio
0.7 : 1.4 : 2.1, like the paper's GHz classes; on a standing server, the
claimed devices as they are, sorted into three classes by their measured
eq. (9) profiles):
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
device's measured compute, upload, download and update; median),
speed_classes, links, allocated, clipped_rates.
"""
import argparse
import logging
import os
import statistics
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional

import numpy as np

from edgebed.benchmarks.options import Presets, add_options, between, fraction, option, positive, resolve
from edgebed.benchmarks.plots import bar_chart
from edgebed.proto.link_model import channel_gain, dbm_to_w, noise_power_w
from edgebed.results import RunWriter, derived, format_table, given, measured, modeled
from edgebed.server.experiment import QuickPass, RunContext
from edgebed.server.workloads.feel.orchestrator import SCHEMES as TABLE2_SCHEMES
from edgebed.server.workloads.feel.orchestrator import FederatedLearning, FeelConfig
from edgebed.server.workloads.feel.solver.params import (
    BANDWIDTH_HZ,
    CELL_RADIUS_M,
    NOISE_PSD_DBM_PER_HZ,
    TX_POWER_DBM,
    ergodic_rate_bps,
)
from edgebed.testbed import DeviceClass, add_testbed_arguments, local_fleets
from edgebed.testbed.local import MAX_AGENTS

logger = logging.getLogger(__name__)

SCHEMES = list(TABLE2_SCHEMES)  # proposed, gradient-based, model-based, individual
SPEED_RATIO = (0.7, 1.4, 2.1)  # the paper's CPU classes (GHz), as quota ratios


@dataclass(frozen=True)
class Options:
    k: List[int] = option([6, 12], "K values: one local fleet of K agents each (with --server, "
                                   "K is the number of claimed devices)", check=between(1, MAX_AGENTS))
    partitions: List[str] = option(["iid", "noniid"], "data partitions")
    target: float = option(0.85, "test accuracy to reach", check=fraction)
    budget_s: float = option(240.0, "wall-clock budget per scheme, s",
                            check=between(0, 86400, above=True))
    model: str = option("cnn", "model (cnn: the FedAvg MNIST CNN)")
    bits: int = option(32, "gradient quantization bits b", check=between(1, 32))
    fixed_batch: Optional[int] = option(None, "per-device batch of gradient-based FEEL (default: "
                                              "all its local data up to B^max = 128)",
                                        check=positive)
    local_batch: int = option(64, "local SGD batch of model-based FEEL and individual learning",
                              check=positive)
    individual_epochs: int = option(5, "local epochs of individual learning", check=positive)
    base_lr: float = option(0.02, "learning rate at --reference-batch; scaled with sqrt(B)",
                            check=positive)
    reference_batch: int = option(32, "the batch of --base-lr", check=positive)
    cores: float = option(1.8, "CPU cores shared by all local agents' quotas (at most "
                                    "this host's)", check=between(0, os.cpu_count() or 1, above=True))
    seed: int = option(0, "random seed")


PRESETS = Presets(quick=Options(k=[6], partitions=["iid"], target=0.8, budget_s=75.0,
                                bits=8, individual_epochs=2),
                  full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser, agents=None)  # --k lists the fleets' K


def _rates(distances: List[float]) -> List[float]:
    """Average Rayleigh rates of eqs. (5)-(6) with the Section VI-A radio."""
    noise = noise_power_w(BANDWIDTH_HZ, NOISE_PSD_DBM_PER_HZ)
    power = dbm_to_w(TX_POWER_DBM)
    return [ergodic_rate_bps(BANDWIDTH_HZ, power * channel_gain(d) / noise) for d in distances]


async def train(ctx: RunContext, config: FeelConfig, scheme: str, rates: Dict[str, float],
                options: Options, profiles: Dict[str, Any]) -> Dict[str, Any]:
    """One scheme from the same initial weights until target or budget.

    ``profiles`` carries the devices' eq. (9) profiles from scheme to scheme:
    the same model on the same devices needs profiling only once."""
    run_id = f"{ctx.run_id}-K{len(ctx.devices)}-{config.partition}-{scheme}"
    async with FederatedLearning(ctx.server, ctx.devices, replace(config, run_id=run_id),
                                 profiles) as fl:
        profiles.update(fl.profiles)
        plan = fl.decide(scheme, uplink_bps=rates, downlink_bps=rates,
                         fixed_batch=options.fixed_batch, local_batch=options.local_batch,
                         individual_epochs=options.individual_epochs)
        elapsed, curve, overheads, hashes_ok, reached = 0.0, [], [], True, None
        while elapsed < options.budget_s:
            record = await fl.run(plan)
            elapsed += record.seconds
            overheads.append(record.seconds - record.slowest_work_s)
            hashes_ok &= record.hashes_agree
            accuracy = await ctx.offload(fl.test_accuracy)
            curve.append({"scheme": scheme, "partition": config.partition, "K": len(ctx.devices),
                          "round": record.round, "elapsed_s": elapsed,
                          "accuracy": accuracy, "loss": record.loss,
                          "round_s": record.seconds, "predicted_s": record.predicted_s,
                          "global_batch": record.global_batch, "arrived": len(record.arrived)})
            ctx.writer.event({"phase": "feel_round", **curve[-1]})
            if reached is None and accuracy >= options.target:
                reached = elapsed
            if scheme == "individual" or reached is not None:
                break
    return {"scheme": scheme, "accuracy": curve[-1]["accuracy"], "time_s": elapsed,
            "time_to_target_s": reached, "rounds": len(curve), "curve": curve,
            "batch": plan.batch, "global_batch": sum(plan.batch.values()),
            "hashes_agree": hashes_ok, "round_overhead_ms": 1e3 * statistics.median(overheads),
            "predicted_round_s": plan.predicted_s, "missing": dict(fl.missing),
            "allocated": {d: (plan.uplink_bps[d], plan.downlink_bps[d]) for d in plan.batch},
            "clipped": dict(fl.clipped)}


async def train_fleet(ctx: RunContext, options: Options,
                      speeds: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Every partition and scheme on this fleet of K = len(ctx.devices) devices,
    placed at random distances in a 200 m cell (the Section VI-A radio)."""
    k = len(ctx.devices)
    rng = np.random.default_rng(options.seed + k)
    distances = [float(np.sqrt(rng.uniform(10 ** 2, CELL_RADIUS_M ** 2))) for _ in ctx.devices]
    rates = dict(zip(ctx.devices, _rates(distances)))
    config = FeelConfig(model=options.model, bits=options.bits, seed=options.seed,
                        base_lr=options.base_lr, reference_batch=options.reference_batch)
    profiles: Dict[str, Any] = {}
    results: Dict[str, Dict[str, Any]] = {}
    steps, done = len(options.partitions) * len(SCHEMES), 0
    for partition in options.partitions:
        cell = results.setdefault(partition, {})
        for scheme in SCHEMES:
            cell[scheme] = await train(ctx, replace(config, partition=partition), scheme, rates,
                                       options, profiles)
            done += 1
            ctx.progress(done, steps, f"K={k} {partition} {scheme}")
    # The devices' speed classes, as the paper's: thirds of the measured eq. (9) slopes.
    order = sorted(profiles, key=lambda d: profiles[d].seconds_per_sample)
    speeds[f"K{k}"] = {d: {"class": ("fast", "medium", "slow")[3 * i // len(order)],
                           "seconds_per_sample": profiles[d].seconds_per_sample}
                       for i, d in enumerate(order)}
    return results


async def experiment(ctx: RunContext, options: Options) -> None:
    """On a standing server: K is the number of claimed devices."""
    speeds: Dict[str, Any] = {}
    results = {f"K{len(ctx.devices)}": await train_fleet(ctx, options, speeds)}
    report(ctx.writer, results, speeds, options, ctx.say, _link_figures(ctx, results))


def _link_figures(ctx: RunContext, results) -> Dict[str, Any]:
    """``links``, ``allocated`` (the proposed scheme's slot rates) of this fleet."""
    proposed = next(iter(next(iter(results.values())).values()))["proposed"]
    return ctx.link_figures(proposed["allocated"], "the proposed scheme's time-slot rates "
                                                   "(Theorems 1-2) on Section VI-A radio rates "
                                                   "capped at each link's capacity")


def fleet_classes(k: int, cores: float) -> List[DeviceClass]:
    """K emulated devices in three speed classes whose quotas share ``cores``."""
    unit = cores / (sum(SPEED_RATIO) * k / 3)
    return [DeviceClass(SPEED_RATIO[i % 3] * unit, power_backend="null") for i in range(k)]


def run(args: argparse.Namespace) -> int:
    options = resolve(args, PRESETS)
    if args.external:  # boards started elsewhere: K is how many
        options = replace(options, k=[args.external])
    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    links: Dict[str, Any] = {}
    speeds: Dict[str, Any] = {}
    with local_fleets(args, options) as fleets:
        for k in options.k:
            with fleets.start(fleet_classes(k, options.cores), k, "feel",
                              benchmark_s=0.2) as (srv, ctx):
                results[f"K{k}"] = srv.call(train_fleet(ctx, options, speeds))
                links = _link_figures(ctx, {f"K{k}": results[f"K{k}"]})  # the last fleet's
        report(fleets.writer, results, speeds, options, print, links)
    return 0


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


def report(writer: RunWriter, results, speeds: Dict[str, Any], options: Options, say,
           links: Dict[str, Any]) -> None:
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
    say(format_table(rows, ["K", "partition", "scheme", "accuracy", "time_to_target_s",
                            "time_s", "rounds", "global_batch", "speedup", "round_overhead_ms",
                            "hashes_agree"]))
    writer.plot("speedup", bar_chart(
        [f"{r['K']} {r['partition']}" for r in rows if r["scheme"] == "proposed"],
        {s: [r["speedup"] for r in rows if r["scheme"] == s] for s in SCHEMES},
        ylabel="speedup vs individual (measured)", title="Training speedup"))
    cells = [(k, p, c) for k, v in results.items() for p, c in v.items()]
    accuracy = "on the server's held-out test set"
    writer.summary({
        "schemes": given(SCHEMES),
        "target_accuracy": given(options.target),
        "accuracy": {k: {p: {s: measured(r["accuracy"], accuracy) for s, r in c.items()}
                         for p, c in v.items()} for k, v in results.items()},
        "speedup": {k: {p: {s: derived(x, "measured times, Table II's definition")
                            for s, x in _speedups(c).items()} for p, c in v.items()}
                    for k, v in results.items()},
        "time_to_target_s": {k: {p: {s: measured(r["time_to_target_s"], "wall clock, server")
                                     for s, r in c.items()} for p, c in v.items()}
                             for k, v in results.items()},
        "round_overhead_ms": derived(statistics.median(
            r["round_overhead_ms"] for _, _, c in cells for s, r in c.items()
            if s != "individual"), "round time minus the slowest device's own work; median"),
        "hashes_agree": measured(all(r["hashes_agree"] for _, _, c in cells for r in c.values())),
        "missing": given({f"{k} {p} {s}": r["missing"] for k, p, c in cells
                          for s, r in c.items() if r["missing"]}),
        "clipped_rates": modeled({f"{k} {p} {s}": r["clipped"] for k, p, c in cells
                                  for s, r in c.items() if r["clipped"]},
                                 "radio rates above a link's measured capacity, capped at it"),
        "speed_classes": measured(speeds, "thirds of the devices' measured eq. (9) slopes"),
        **links,
    })
    say(f"results: {writer.path}")


# A short federated pass for quickstart: LeNet on 1,200 digits, 8-bit
# gradients, a few rounds under the proposed batch sizes and time slots,
# planned on the devices' measured gradient profiles and link rates.
QUICK_PASS = FeelConfig(model="lenet", bits=8, max_samples=1200, deadline_s=120.0)
QUICK_ROUNDS = 10


async def quick_pass(ctx: RunContext, rates: Dict[str, Any]) -> QuickPass:
    """Ten rounds of the proposed allocation on the rates quickstart measured."""
    config = replace(QUICK_PASS, run_id=f"{ctx.run_id}-feel")
    async with FederatedLearning(ctx.server, ctx.devices, config) as fl:
        plan = fl.decide("proposed", uplink_bps={n: r[0] for n, r in rates.items()},
                         downlink_bps={n: r[1] for n, r in rates.items()})
        rows = []
        for _ in range(QUICK_ROUNDS):
            record = await fl.run(plan)
            rows.append({"round": record.round, "global_batch": record.global_batch,
                         "round_s": record.seconds, "predicted_s": record.predicted_s,
                         "slowest_work_s": record.slowest_work_s,
                         "accuracy": await ctx.offload(fl.test_accuracy),
                         "hashes_agree": record.hashes_agree, "missing": record.missing})
    return QuickPass(
        title="federated edge learning (paper 003, proposed batch sizes and slots; LeNet, b = 8):",
        table="federated", rows=rows,
        columns=["round", "global_batch", "round_s", "predicted_s", "slowest_work_s", "accuracy",
                 "hashes_agree"],
        summary={"feel_round_s": measured([r["round_s"] for r in rows]),
                 "feel_predicted_round_s": modeled(plan.predicted_s, "Theorems 1-2"),
                 "feel_hashes_agree": measured(all(r["hashes_agree"] for r in rows)),
                 "feel_accuracy": measured(rows[-1]["accuracy"], "server's held-out set")})
