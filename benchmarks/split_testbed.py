"""Split testbed: real split DNN inference on real agents (paper 004).

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
server + download; see ``server/orchestrators/split_inference.py`` for what
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
from dataclasses import asdict
from typing import Any, Dict, List

import torch

from edgebed.benchmarks.fleet import AgentSpec, ServerThread, local_testbed, quota_support
from edgebed.benchmarks.plots import bar_chart
from edgebed.benchmarks.results import RunWriter, format_table
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference, SplitRun

logger = logging.getLogger(__name__)

# (CPU cores, link): compute and links differ. The quotas add up to well under
# two cores, leaving the server's tails a core on this two-core host.
DEVICE_CLASSES = [
    (0.5, "up=20Mbit,down=50Mbit"),
    (0.35, "up=8Mbit,down=20Mbit"),
    (0.25, "up=3Mbit,down=10Mbit"),
    (0.2, "up=1Mbit,down=5Mbit"),
]
BASELINES = ("all-local", "all-offload")
COLUMNS = ["device", "split", "slots", "rate_up_mbps", "e2e_s", "e2e_pred_s", "head_s",
           "head_pred_s", "upload_s", "upload_pred_s", "server_s", "server_pred_s",
           "download_s", "energy_j", "energy_pred_j", "provenance"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=4, help="agents to start (at least 4)")
    parser.add_argument("--model", default="alexnet")
    parser.add_argument("--input-size", type=int, default=64,
                        help="image side of the ImageNet networks (default 64; LeNet: ignored)")
    parser.add_argument("--inferences", type=int, default=None,
                        help="timed inferences per device and scheme (default 40, --quick 20)")
    parser.add_argument("--slots", type=int, default=5, help="H (Fig. 4: 5)")
    parser.add_argument("--parallel-limit", type=int, default=2, help="B")
    parser.add_argument("--t-d", type=float, default=None,
                        help="T_d in s (default: H x 3 x the measured server forward)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="run only TPOS-UAI's decision, not all-local and all-offload")
    parser.add_argument("--server-threads", type=int, default=1,
                        help="torch threads of the server process (default 1: B tails use B cores)")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--external", type=int, default=0, metavar="N",
                        help="do not start agents; wait for N agents started elsewhere")
    parser.add_argument("--no-quota", action="store_true")


def _config(args: argparse.Namespace) -> SplitConfig:
    n = args.inferences if args.inferences is not None else (20 if args.quick else 40)
    size = None if args.model == "lenet" else args.input_size
    return SplitConfig(model=args.model, input_size=size, seed=args.seed, n_inferences=n,
                       slots_h=args.slots, t_d_s=args.t_d, parallel_limit=args.parallel_limit,
                       profile_repeats=21 if args.quick else 41, compare_isolated=True,
                       run_id="split-testbed")


def fleet_specs(count: int, use_quota: bool) -> List[AgentSpec]:
    specs = []
    for i in range(count):
        cores, link = DEVICE_CLASSES[i % len(DEVICE_CLASSES)]
        # Emulated boards are modeled as Raspberry Pi 4s (estimated energy).
        specs.append(AgentSpec(f"split-{i}", cpu_quota=cores if use_quota else 0.0, link=link,
                               power_backend="utilization:rpi4b"))
    return specs


async def _pipeline(srv: ServerThread, names: List[str], config: SplitConfig, baselines: bool):
    split = SplitInference(srv.server, names, config)
    try:
        await split.configure()
        runs = [await split.run(split.decide("tpos-uai"), "tpos-uai")]
        for scheme in BASELINES if baselines else ():
            runs.append(await split.run(split.decide(scheme), scheme))
        return split, runs
    finally:
        split.close()


def _decision_event(run: SplitRun) -> Dict[str, Any]:
    return {"phase": "decision", "run_id": "split-testbed", "tag": run.tag,
            "provenance": "modeled", "scheme": run.solution.scheme,
            "iterations": run.solution.iterations, "converged": run.solution.converged,
            "strategies": [asdict(s) for s in run.solution.strategies],
            "predicted": [asdict(o) for o in run.solution.outcomes],
            "measured": [{k: r[k] for k in ("device", "e2e_s", "energy_j")} for r in run.rows],
            "pred_error": run.pred_error, "overhead_ms": run.overhead_ms}


def run(args: argparse.Namespace) -> int:
    if args.agents < 4 and not args.external:
        raise SystemExit("split-testbed needs at least 4 agents (--agents)")
    config = _config(args)
    support, use_quota = quota_support(args.no_quota, args.external)
    writer = RunWriter.from_args(args, config={"split": asdict(config), "cgroups": support,
                                               **vars(args)})
    threads = torch.get_num_threads()
    torch.set_num_threads(args.server_threads)
    try:
        with writer:
            load = [os.getloadavg()[0]]
            with local_testbed(writer, fleet_specs(args.agents, use_quota), listen=args.listen,
                               external=args.external, timeout_s=300) as (srv, names):
                split, runs = srv.call(_pipeline(srv, names, config, not args.no_baselines))
            load.append(os.getloadavg()[0])
            _report(writer, split, runs, support, load)
    finally:
        torch.set_num_threads(threads)
    return 0


def _problem_inputs(split: SplitInference) -> Dict[str, Any]:
    """The measured solver inputs, per device."""
    p = split.problem
    return {"slots_h": p.slots_h, "t_d_s": p.t_d_s, "parallel_limit": p.parallel_limit,
            "t_server_s": p.devices[0].t_server_s.tolist(),
            "devices": {n: {"t_local_s": d.t_local_s.tolist(),
                            "t_local_isolated_s": split.profiles[n].get("t_local_isolated_s"),
                            "out_bytes": d.out_bytes.tolist(), "rate_up_bps": d.rate_up_bps,
                            "rate_down_bps": d.rate_down_bps, "p_local_w": d.p_local_w,
                            "p_up_w": d.p_up_w}
                        for n, d in zip(split.problem_devices, p.devices)}}


def _report(writer: RunWriter, split: SplitInference, runs: List[SplitRun], support: str,
            load: List[float]) -> None:
    problem = split.problem
    writer.event({"phase": "problem", "run_id": "split-testbed", "provenance": "measured",
                  **_problem_inputs(split)})
    for r in runs:
        writer.event(_decision_event(r))
        writer.table(f"devices_{r.tag}", r.rows)
        writer.table(f"inferences_{r.tag}", r.inferences)
        overhead = "n/a" if r.overhead_ms is None else f"{r.overhead_ms:.2f} ms"
        print(f"\n{r.tag}: pred_error {r.pred_error:.3f}, overhead {overhead}, splits "
              f"{r.chosen_splits}, at most {r.max_computing} tails at once (B = "
              f"{problem.parallel_limit})")
        print(format_table(r.rows, COLUMNS))
    main = runs[0]
    writer.plot("e2e_delay", bar_chart(
        [r["device"] for r in main.rows],
        {"measured": [r["e2e_s"] for r in main.rows],
         "predicted (eq. 24)": [r["e2e_pred_s"] for r in main.rows]},
        ylabel="end-to-end delay (s)", title=f"Split inference, {main.tag}"))
    if split.missing:
        print(f"missing devices: {split.missing}")
    writer.summary({
        "pred_error": main.pred_error,
        "overhead_ms": main.overhead_ms,
        "chosen_splits": main.chosen_splits,
        "chosen_slots": {r["device"]: r["slots"] for r in main.rows},
        "pred_error_mean_inference": main.pred_error_mean,
        "pred_error_isolated_profile": main.pred_error_isolated,
        "by_scheme": {r.tag: {"pred_error": r.pred_error, "overhead_ms": r.overhead_ms,
                              "chosen_splits": r.chosen_splits,
                              "avg_e2e_s": sum(x["e2e_s"] for x in r.rows) / len(r.rows),
                              "avg_e2e_pred_s": r.solution.avg_delay_s,
                              "max_tails_at_once": r.max_computing} for r in runs},
        "model": split.config.model, "input_size": split.config.input_size,
        "slots_h": problem.slots_h, "t_d_s": problem.t_d_s, "parallel_limit": problem.parallel_limit,
        "game_iterations": main.solution.iterations, "game_converged": main.solution.converged,
        "cgroups": support, "missing": split.missing,
        # Other work on this host shows in every measured delay: say how busy it was.
        "host_load_avg_1min": {"start": load[0], "end": load[1], "cores": os.cpu_count()},
        "provenance": {
            "pred_error, pred_error_*": "derived: measured end-to-end (per device, its median "
                                        "inference; *_mean_inference: its mean) vs modeled eq. (24) "
                                        "on measured per-layer latencies (*_isolated_profile: "
                                        "T^lo from isolated layer timings)",
            "overhead_ms": "measured (device and server clocks, intervals only)",
            "chosen_splits, chosen_slots": "modeled (TPOS-UAI on the measured problem)",
            "by_scheme.*.avg_e2e_s": "measured", "by_scheme.*.avg_e2e_pred_s": "modeled",
            "per-device energy_j": "head: the agents' meter (estimated: Raspberry Pi 4 "
                                   "utilization model); upload: modeled P_up x measured upload",
            "t_d_s": "derived from the measured server forward unless given",
        },
    })
    print(f"\nsummary: {writer.path / 'summary.json'}")
