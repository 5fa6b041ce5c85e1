"""TL testbed: the transfer-learning pipeline of paper 000 on real agents.

At least four agents with different CPU quotas and radio distances train
autoencoders, measure what JUDBA needs, and then run steps 3-5 three times:
JUDBA's decision and split; everyone uploading with Theorem 1's split; and
everyone uploading with an equal split of the band. JUDBA's own decision
gives the accuracies (uploaders vs fine-tuners); the bandwidth comparison has
every device upload. Reports per-device measured t_comp and t_comm, energy
per phase (estimated on this emulated fleet: a Raspberry Pi 4 utilization
model), completion latency predicted vs measured, the spread of finish
times, and accuracies. summary.json keys: T_pred_s, T_judba_s, T_equal_s,
finish_spread_judba_s, finish_spread_equal_s, accuracy_uploaders,
accuracy_finetuned.
"""
import argparse
import logging
from dataclasses import asdict
from typing import Any, Dict, List

from edgebed.benchmarks.fleet import AgentSpec, ServerThread, local_testbed, quota_support
from edgebed.benchmarks.plots import bar_chart
from edgebed.benchmarks.results import RunWriter, format_table
from edgebed.server.workloads.tl.orchestrator import TLConfig, TLRun, TransferLearning

logger = logging.getLogger(__name__)

# (CPU cores, distance to the base station in m): compute and channel differ.
# The quotas add up to less than two cores, so concurrent phases do not
# measure contention on this two-core host instead of the emulated devices.
DEVICE_CLASSES = [(0.8, 250), (0.5, 120), (0.4, 180), (0.25, 60)]
COLUMNS = ["device", "rho", "w", "rate_mbps", "t_comp_s", "t_comm_s", "finish_s",
           "finish_pred_s", "e_encode_j", "e_upload_j", "e_trans_modeled_j", "e_idle_j",
           "e_download_j", "e_tune_j", "e_infer_j", "accuracy", "provenance"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--lam", type=int, default=4, help="compression ratio lambda")
    parser.add_argument("--scheme", default="noniid", choices=["iid", "noniid"])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--bandwidth-mhz", type=float, default=1.0,
                        help="uplink band B shared by the uploaders (default 1 MHz)")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--external", type=int, default=0, metavar="N",
                        help="do not start agents; wait for N agents started elsewhere")
    parser.add_argument("--no-quota", action="store_true")


def _config(args: argparse.Namespace) -> TLConfig:
    quick = args.quick
    return TLConfig(lam=args.lam, dataset=args.dataset, data_root=args.data_root,
                    scheme=args.scheme, seed=args.seed, ae_epochs=2 if quick else 8,
                    cnn_epochs=4 if quick else 15, tune_epochs=1 if quick else 3,
                    bandwidth_hz=args.bandwidth_mhz * 1e6, alpha=args.alpha,
                    run_id="tl-testbed")


def fleet_specs(count: int, use_quota: bool) -> List[AgentSpec]:
    specs = []
    for i in range(count):
        cores, distance = DEVICE_CLASSES[i % len(DEVICE_CLASSES)]
        # Emulated boards are modeled as Raspberry Pi 4s (labelled estimated):
        # the host's own power says nothing about a quarter-core device.
        specs.append(AgentSpec(f"tl-{i}", cpu_quota=cores if use_quota else 0.0,
                               link=f"distance={distance}m,power=0.3W,bandwidth=10MHz",
                               power_backend="utilization:rpi4b"))
    return specs


async def _pipeline(srv: ServerThread, names: List[str], config: TLConfig):
    """Three passes over the prepared devices.

    - "proposed": JUDBA's own decision and bandwidth (who uploads, who
      fine-tunes; accuracies).
    - "judba" and "equal": every device uploads, with Theorem 1's split and
      with an equal split of the band: the bandwidth comparison needs the
      same uploaders on both sides, and more than one of them.
    """
    tl = TransferLearning(srv.server, names, config)
    try:
        await tl.configure()
        proposed = await tl.run(tl.decide("proposed"), "proposed")
        everyone = [1] * len(tl.problem_devices)
        judba = await tl.run(tl.decide(rho=everyone, allocator="optimal"), "judba")
        equal = await tl.run(tl.decide(rho=everyone, allocator="equal"), "equal")
        return tl, proposed, judba, equal
    finally:
        tl.close()


def _decision_event(run: TLRun) -> Dict[str, Any]:
    return {"phase": "decision", "run_id": "tl-testbed", "tag": run.tag,
            "provenance": "modeled", "solution": asdict(run.solution),
            "T_pred_s": run.T_pred_s, "T_meas_s": run.T_meas_s,
            "per_device": [{k: r[k] for k in ("device", "finish_pred_s", "finish_s")}
                           for r in run.rows]}


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    support, use_quota = quota_support(args.no_quota, args.external)
    writer = RunWriter.from_args(args, config={"tl": asdict(config), "cgroups": support,
                                               **vars(args)})
    with writer:
        with local_testbed(writer, fleet_specs(args.agents, use_quota), listen=args.listen,
                           external=args.external, timeout_s=300) as (srv, names):
            tl, run_proposed, run_judba, run_equal = srv.call(_pipeline(srv, names, config))
        for tagged in (run_proposed, run_judba, run_equal):
            writer.event(_decision_event(tagged))
            writer.table(f"devices_{tagged.tag}", tagged.rows)
            print(f"\n{tagged.tag}: T predicted {tagged.T_pred_s:.3f} s, measured "
                  f"{tagged.T_meas_s:.3f} s, finish spread {tagged.finish_spread_s:.3f} s")
            print(format_table(tagged.rows, COLUMNS))
        if tl.missing:
            print(f"missing devices: {tl.missing}")
        writer.plot("finish_times", bar_chart(
            [r["device"] for r in run_judba.rows],
            {"JUDBA measured": [r["finish_s"] for r in run_judba.rows],
             "JUDBA predicted": [r["finish_pred_s"] for r in run_judba.rows],
             "equal measured": [r["finish_s"] for r in run_equal.rows]},
            ylabel="t_comp + t_comm (s)", title="Finish times before edge-CNN training"))
        summary = {
            "T_pred_s": run_judba.T_pred_s,
            "T_judba_s": run_judba.T_meas_s,
            "T_pred_equal_s": run_equal.T_pred_s,
            "T_equal_s": run_equal.T_meas_s,
            "T_rel_error": abs(run_judba.T_meas_s - run_judba.T_pred_s) / run_judba.T_pred_s,
            "finish_spread_judba_s": run_judba.finish_spread_s,
            "finish_spread_equal_s": run_equal.finish_spread_s,
            "bandwidth_comparison_uploaders": run_judba.devices,
            "accuracy_uploaders": run_proposed.accuracy_uploaders,
            "accuracy_finetuned": run_proposed.accuracy_finetuned,
            "proposed_rho": dict(zip(run_proposed.devices, run_proposed.solution.rho)),
            "T_pred_proposed_s": run_proposed.T_pred_s,
            "T_proposed_s": run_proposed.T_meas_s,
            "missing": tl.missing,
            "provenance": {
                "T_judba_s, T_equal_s, T_proposed_s, finish_spread_*_s, accuracy_*": "measured",
                "T_pred_s, T_pred_equal_s, T_pred_proposed_s": "modeled (JUDBA, eq. 8)",
                "T_rel_error": "derived (measured vs modeled)",
                "per-device e_*_j": "see each row's provenance column (the emulated "
                                    "fleet's Raspberry Pi 4 utilization model: estimated)",
                "per-device e_trans_modeled_j, finish_pred_s": "modeled",
            },
        }
        writer.summary(summary)
        print(f"\nsummary: {writer.path / 'summary.json'}")
    return 0
