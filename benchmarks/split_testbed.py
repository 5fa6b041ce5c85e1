"""Split testbed: real split DNN inference on real agents.

"Task Partitioning and Offloading in DNN-Task Enabled Mobile Edge
Computing Networks".

At least four agents with different CPU quotas and links profile their layers
(T^lo measured in context), the server profiles the same layers (T^se), and
TPOS-UAI (Algorithm 2) picks every device's split point m* and slots on that
measured problem. Then the decision runs for real: each device runs its head
on real inputs and streams the activation at its uplink rate; the server's
split executor runs the tails in their slots, at most B at once, and returns
the results. The baselines all-local and all-offload run the same way.
Per device: measured end-to-end delay and energy beside eqs. (24), (25).

summary.json: ``pred_error`` (mean over devices of |measured - predicted| /
measured end-to-end delay, TPOS-UAI run; a device's measured delay is its
median inference, as its profile is made of medians), ``overhead_ms`` (median over
offloaded inferences of measured end-to-end minus measured head + upload +
server + download; see ``server/workloads/split/orchestrator.py`` for what
each term covers), ``chosen_splits``; provenance per key.

Quick mode uses AlexNet at a 64 x 64 input (21 layers, 61 M weights: its
classifier dominates; a split after the features uploads 1 KiB): on a
quarter core it still runs a whole inference in well under a second, and its
activation sizes make the links matter. LeNet is too small for the split to
matter: computing it all locally takes a millisecond, less than one slot.
"""
import argparse
import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, List, Optional

import torch

from edgebed.benchmarks.options import (MAX_IMAGE_SIDE, MAX_THREADS, Presets, add_options, between, option,
                                        positive, resolve)
from edgebed.benchmarks.plots import bar_chart
from edgebed.results import Tagged, derived, format_table, given, measured, modeled, weakest
from edgebed.server.experiment import QuickPass, RunContext
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference, SplitRun
from edgebed.server.workloads.split.solver.cost import InfeasibleError
from edgebed.testbed import DeviceClass, add_testbed_arguments, run_experiment

logger = logging.getLogger(__name__)

# CPU cores and link: compute and links differ. The quotas add up to well
# under two cores, leaving the server's tails a core on this two-core host.
DEVICE_CLASSES = [
    DeviceClass(0.5, "up=20Mbit,down=50Mbit"),
    DeviceClass(0.35, "up=8Mbit,down=20Mbit"),
    DeviceClass(0.25, "up=3Mbit,down=10Mbit"),
    DeviceClass(0.2, "up=1Mbit,down=5Mbit"),
]
BASELINES = ("all-local", "all-offload")
MIN_DEVICES = 4
COLUMNS = ["device", "split", "slots", "uplink_bps", "e2e_s", "e2e_pred_s", "head_s",
           "head_pred_s", "upload_s", "upload_pred_s", "server_s", "server_pred_s",
           "download_s", "energy_j", "energy_pred_j", "provenance"]


@dataclass(frozen=True)
class Options:
    model: str = option("alexnet", "split model")
    input_size: int = option(64, "image side of the ImageNet networks (LeNet: ignored)",
                             check=between(16, MAX_IMAGE_SIDE))
    inferences: int = option(40, "timed inferences per device and scheme", check=positive)
    slots: int = option(5, "H, slots per frame (Fig. 4: 5)", check=positive)
    parallel_limit: int = option(2, "B, tails the server runs at once", check=positive)
    t_d: Optional[float] = option(None, "T_d in s (default: H x 3 x the measured server "
                                        "forward)", check=between(0, 600, above=True))
    profile_repeats: int = option(41, "in-context profiling passes", check=positive)
    baselines: bool = option(True, "also run all-local and all-offload")
    server_threads: int = option(1, "torch threads of the server (1: B tails use B cores)",
                                 check=between(1, MAX_THREADS))
    seed: int = option(0, "random seed")

    def config(self, run_id: str) -> SplitConfig:
        return SplitConfig(model=self.model, input_size=None if self.model == "lenet" else
                           self.input_size, seed=self.seed, n_inferences=self.inferences,
                           slots_h=self.slots, t_d_s=self.t_d, parallel_limit=self.parallel_limit,
                           profile_repeats=self.profile_repeats, compare_isolated=True,
                           run_id=run_id)


PRESETS = Presets(quick=Options(inferences=20, profile_repeats=21), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser)


async def passes(ctx: RunContext, config: SplitConfig, baselines: bool):
    """TPOS-UAI, then each baseline the measured problem admits: a baseline that cannot
    serve these devices within T_d (all-offload on more devices than slots hold) is a
    result, recorded with why, not a failed run."""
    infeasible: Dict[str, str] = {}
    async with SplitInference(ctx.server, ctx.devices, config) as split:
        runs = [await split.run(split.decide("tpos-uai"), "tpos-uai")]
        for scheme in BASELINES if baselines else ():
            try:
                decision = split.decide(scheme)
            except InfeasibleError as exc:
                infeasible[scheme] = str(exc)
                ctx.say(f"\n{scheme}: infeasible on the measured problem: {exc}")
                continue
            runs.append(await split.run(decision, scheme))
    return split, runs, infeasible


def _decision_event(run: SplitRun, run_id: str) -> Dict[str, Any]:
    return {"phase": "decision", "run_id": run_id, "tag": run.tag,
            "provenance": "modeled", "scheme": run.solution.scheme,
            "iterations": run.solution.iterations, "converged": run.solution.converged,
            "strategies": [asdict(s) for s in run.solution.strategies],
            "predicted": [asdict(o) for o in run.solution.outcomes],
            "measured": [{"device": r.device, "e2e_s": r.e2e_s, "energy_j": r.energy_j}
                         for r in run.rows],
            "pred_error": run.pred_error, "overhead_ms": run.overhead_ms}


def _problem_inputs(split: SplitInference) -> Dict[str, Any]:
    """The measured solver inputs, per device."""
    p = split.problem
    return {"slots_h": p.slots_h, "t_d_s": p.t_d_s, "parallel_limit": p.parallel_limit,
            "t_server_s": p.devices[0].t_server_s.tolist(),
            "devices": {n: {"t_local_s": d.t_local_s.tolist(),
                            "t_local_isolated_s": split.profiles[n].t_local_isolated_s,
                            "out_bytes": d.out_bytes.tolist(), "uplink_bps": d.uplink_bps,
                            "downlink_bps": d.downlink_bps, "p_local_w": d.p_local_w,
                            "p_up_w": d.p_up_w}
                        for n, d in zip(split.problem_devices, p.devices)}}


async def experiment(ctx: RunContext, options: Options) -> None:
    if len(ctx.devices) < MIN_DEVICES:
        raise ValueError(f"split-testbed needs at least {MIN_DEVICES} devices, got "
                         f"{len(ctx.devices)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(options.server_threads)
    try:
        load = [os.getloadavg()[0]]
        split, runs, infeasible = await passes(ctx, options.config(ctx.run_id), options.baselines)
        load.append(os.getloadavg()[0])
    finally:
        torch.set_num_threads(threads)
    _report(ctx, split, runs, infeasible, load)


def _report(ctx: RunContext, split: SplitInference, runs: List[SplitRun],
            infeasible: Dict[str, str], load: List[float]) -> None:
    problem, writer = split.problem, ctx.writer
    writer.event({"phase": "problem", "run_id": split.config.run_id, "provenance": "measured",
                  **_problem_inputs(split)})
    for r in runs:
        writer.event(_decision_event(r, split.config.run_id))
        writer.table(f"devices_{r.tag}", r.rows)
        writer.table(f"inferences_{r.tag}", r.inferences)
        overhead = "n/a" if r.overhead_ms is None else f"{r.overhead_ms:.2f} ms"
        ctx.say(f"\n{r.tag}: pred_error {r.pred_error:.3f}, overhead {overhead}, splits "
                f"{r.chosen_splits}, at most {r.max_computing} tails at once (B = "
                f"{problem.parallel_limit})")
        ctx.say(format_table(r.rows, COLUMNS))
    main = runs[0]
    writer.plot("e2e_delay", bar_chart(
        [r.device for r in main.rows],
        {"measured": [r.e2e_s for r in main.rows],
         "predicted (eq. 24)": [r.e2e_pred_s for r in main.rows]},
        ylabel="end-to-end delay (s)", title=f"Split inference, {main.tag}"))
    if split.missing:
        ctx.say(f"missing devices: {split.missing}")
    vs = "measured end-to-end delay vs modeled eq. (24) on measured per-layer latencies"
    median = vs + "; a device's delay is its median inference"
    writer.summary({
        "pred_error": derived(main.pred_error, median),
        "overhead_ms": measured(main.overhead_ms, "device and server clocks, intervals only"),
        "chosen_splits": modeled(main.chosen_splits, "TPOS-UAI on the measured problem"),
        "chosen_slots": modeled({r.device: r.slots for r in main.rows}, "TPOS-UAI"),
        "pred_error_mean_inference": derived(main.pred_error_mean,
                                             vs + "; a device's delay is its mean inference"),
        "pred_error_isolated_profile": derived(main.pred_error_isolated,
                                               median + "; T^lo from isolated layer timings"),
        "by_scheme": {r.tag: {
            "pred_error": derived(r.pred_error, median),
            "overhead_ms": measured(r.overhead_ms),
            "chosen_splits": modeled(r.chosen_splits),
            "avg_e2e_s": measured(sum(x.e2e_s for x in r.rows) / len(r.rows)),
            "avg_e2e_pred_s": modeled(r.solution.avg_delay_s, "eq. (24)"),
            "max_tails_at_once": measured(r.max_computing)} for r in runs},
        "infeasible": modeled(infeasible, "schemes the measured problem does not admit, and why"),
        "energy_j": Tagged({r.device: r.energy_j for r in main.rows},
                           weakest([*(r.provenance for r in main.rows), "modeled"]),
                           "head: the device's meter; upload: modeled P_up x measured upload"),
        "model": given(split.config.model), "input_size": given(split.config.input_size),
        "slots_h": given(problem.slots_h),
        "t_d_s": Tagged(problem.t_d_s, "given" if split.config.t_d_s else "derived",
                        "" if split.config.t_d_s else "H x 3 x the measured server forward"),
        "parallel_limit": given(problem.parallel_limit),
        "game_iterations": modeled(main.solution.iterations),
        "game_converged": modeled(main.solution.converged),
        "missing": given(split.missing),
        # Other work on this host shows in every measured delay: say how busy it was.
        "host_load_avg_1min": measured({"start": load[0], "end": load[1],
                                        "cores": os.cpu_count()}),
        **ctx.link_figures(split.rates, "the rates the game assumed and the devices paced to: "
                                        "each link's measured capacity or its emulated rate, "
                                        "whichever is lower"),
    })
    ctx.say(f"\nsummary: {writer.path / 'summary.json'}")


def run(args: argparse.Namespace) -> int:
    if (args.external or args.agents) < MIN_DEVICES:
        raise ValueError(f"split-testbed needs at least {MIN_DEVICES} agents (--agents)")
    run_experiment(args, experiment, resolve(args, PRESETS), DEVICE_CLASSES, "split")
    return 0


# A short split-inference pass for quickstart: AlexNet on 64 x 64 inputs,
# TPOS-UAI picks each device's split point and slots, five timed inferences each.
QUICK_PASS = SplitConfig(model="alexnet", input_size=64, n_inferences=5, warmup=1,
                         profile_repeats=5)


async def quick_pass(ctx: RunContext, rates: Dict[str, Any]) -> QuickPass:
    """TPOS-UAI's decision run for real, measured beside eq. (24)."""
    config = replace(QUICK_PASS, run_id=f"{ctx.run_id}-split")
    async with SplitInference(ctx.server, ctx.devices, config) as split:
        run = await split.run(split.decide(), "quickstart")
    overhead = "n/a" if run.overhead_ms is None else f"{run.overhead_ms:.2f} ms"
    return QuickPass(
        title=f"split inference (paper 004, TPOS-UAI): prediction error {run.pred_error:.3f}, "
              f"overhead {overhead}",
        table="split_inference", rows=run.rows,
        columns=["device", "split", "slots", "e2e_s", "e2e_pred_s", "energy_j", "energy_pred_j",
                 "provenance"],
        summary={"split_pred_error": derived(run.pred_error,
                                             "measured end-to-end vs modeled eq. (24)"),
                 "split_overhead_ms": measured(run.overhead_ms),
                 "split_chosen_splits": modeled(run.chosen_splits, "TPOS-UAI")})
