"""TL testbed: the transfer-learning pipeline on real agents.

"A Joint Energy and Latency Framework for Transfer Learning over 5G
Industrial Edge Networks", section III-A.

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
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional

from edgebed.benchmarks.options import Presets, add_options, between, option, positive, resolve, unit_interval
from edgebed.benchmarks.plots import bar_chart
from edgebed.results import Tagged, derived, format_table, given, measured, modeled, weakest
from edgebed.server.experiment import QuickPass, RunContext
from edgebed.server.workloads.tl.orchestrator import TLConfig, TLRun, TransferLearning
from edgebed.testbed import DeviceClass, add_testbed_arguments, run_experiment

logger = logging.getLogger(__name__)

# CPU cores and distance to the base station: compute and channel differ.
# The quotas add up to less than two cores, so concurrent phases do not
# measure contention on this two-core host instead of the emulated devices.
DEVICE_CLASSES = [DeviceClass(cores, f"distance={distance}m,power=0.3W,bandwidth=10MHz")
                  for cores, distance in ((0.8, 250), (0.5, 120), (0.4, 180), (0.25, 60))]
COLUMNS = ["device", "rho", "w", "uplink_bps", "t_comp_s", "t_comm_s", "finish_s",
           "finish_pred_s", "e_encode_j", "e_upload_j", "e_trans_modeled_j", "e_idle_j",
           "e_download_j", "e_tune_j", "e_infer_j", "accuracy", "provenance"]


@dataclass(frozen=True)
class Options:
    lam: int = option(4, "compression ratio lambda", check=positive)
    partition: str = option("noniid", "data partition", choices=("iid", "noniid"))
    dataset: str = option("mnist5k", "dataset (mnist5k ships offline)")
    data_root: Optional[str] = option(None, "root of a torchvision dataset")
    bandwidth_mhz: float = option(1.0, "uplink band B shared by the uploaders, MHz",
                                  check=between(0, 1e5, above=True))
    alpha: float = option(0.5, "weight alpha_i on energy in the cost (eq. 9)", check=unit_interval)
    ae_epochs: int = option(8, "autoencoder epochs", check=positive)
    cnn_epochs: int = option(15, "edge-CNN epochs", check=positive)
    tune_epochs: int = option(3, "fine-tuning epochs", check=positive)
    seed: int = option(0, "random seed")

    def config(self, run_id: str) -> TLConfig:
        return TLConfig(lam=self.lam, dataset=self.dataset, data_root=self.data_root,
                        partition=self.partition, seed=self.seed, ae_epochs=self.ae_epochs,
                        cnn_epochs=self.cnn_epochs, tune_epochs=self.tune_epochs,
                        bandwidth_hz=self.bandwidth_mhz * 1e6, alpha=self.alpha,
                        run_id=run_id)


PRESETS = Presets(quick=Options(ae_epochs=2, cnn_epochs=4, tune_epochs=1), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser)


async def passes(ctx: RunContext, config: TLConfig):
    """Three passes over the prepared devices.

    - "proposed": JUDBA's own decision and bandwidth (who uploads, who
      fine-tunes; accuracies).
    - "judba" and "equal": every device uploads, with Theorem 1's split and
      with an equal split of the band: the bandwidth comparison needs the
      same uploaders on both sides, and more than one of them.
    """
    async with TransferLearning(ctx.server, ctx.devices, config) as tl:
        proposed = await tl.run(tl.decide("proposed"), "proposed")
        everyone = [1] * len(tl.problem_devices)
        judba = await tl.run(tl.decide(rho=everyone, allocator="optimal"), "judba")
        equal = await tl.run(tl.decide(rho=everyone, allocator="equal"), "equal")
    return tl, proposed, judba, equal


def _decision_event(run: TLRun, run_id: str) -> Dict[str, Any]:
    return {"phase": "decision", "run_id": run_id, "tag": run.tag,
            "provenance": "modeled", "solution": asdict(run.solution),
            "T_pred_s": run.T_pred_s, "T_meas_s": run.T_meas_s,
            "per_device": [{"device": r.device, "finish_pred_s": r.finish_pred_s,
                            "finish_s": r.finish_s} for r in run.rows]}


async def experiment(ctx: RunContext, options: Options) -> None:
    tl, run_proposed, run_judba, run_equal = await passes(ctx, options.config(ctx.run_id))
    writer = ctx.writer
    for tagged in (run_proposed, run_judba, run_equal):
        writer.event(_decision_event(tagged, tl.config.run_id))
        writer.table(f"devices_{tagged.tag}", tagged.rows)
        ctx.say(f"\n{tagged.tag}: T predicted {tagged.T_pred_s:.3f} s, measured "
                f"{tagged.T_meas_s:.3f} s, finish spread {tagged.finish_spread_s:.3f} s")
        ctx.say(format_table(tagged.rows, COLUMNS))
    if tl.missing:
        ctx.say(f"missing devices: {tl.missing}")
    writer.plot("finish_times", bar_chart(
        [r.device for r in run_judba.rows],
        {"JUDBA measured": [r.finish_s for r in run_judba.rows],
         "JUDBA predicted": [r.finish_pred_s for r in run_judba.rows],
         "equal measured": [r.finish_s for r in run_equal.rows]},
        ylabel="t_comp + t_comm (s)", title="Finish times before edge-CNN training"))
    writer.summary({
        "T_pred_s": modeled(run_judba.T_pred_s, "JUDBA, eq. 8, on measured inputs"),
        "T_judba_s": measured(run_judba.T_meas_s),
        "T_pred_equal_s": modeled(run_equal.T_pred_s, "eq. 8, equal split"),
        "T_equal_s": measured(run_equal.T_meas_s),
        "T_rel_error": derived(abs(run_judba.T_meas_s - run_judba.T_pred_s) / run_judba.T_pred_s,
                               "|measured - modeled| / modeled"),
        "finish_spread_judba_s": measured(run_judba.finish_spread_s),
        "finish_spread_equal_s": measured(run_equal.finish_spread_s),
        "bandwidth_comparison_uploaders": given(run_judba.devices),
        "accuracy_uploaders": measured(run_proposed.accuracy_uploaders),
        "accuracy_finetuned": measured(run_proposed.accuracy_finetuned),
        "proposed_rho": modeled(dict(zip(run_proposed.devices, run_proposed.solution.rho)),
                                "JUDBA's decision"),
        "T_pred_proposed_s": modeled(run_proposed.T_pred_s, "JUDBA, eq. 8"),
        "T_proposed_s": measured(run_proposed.T_meas_s),
        "energy_per_device_j": Tagged(
            {r.device: {k: v for k, v in asdict(r).items() if k.startswith("e_")}
             for r in run_judba.rows}, weakest([*(r.provenance for r in run_judba.rows), "modeled"]),
            "the devices' meters; e_trans_modeled_j is modeled (no radio here)"),
        "missing": given(tl.missing),
        "clipped_rates": modeled(run_judba.clipped, "eq. (6) rates above a link's measured "
                                                    "capacity, capped at it"),
        **ctx.link_figures({r.device: (r.uplink_bps, None) for r in run_judba.rows},
                           "JUDBA's w_i B log2(1 + P_i h_i / N0), everyone uploading; the CNN "
                           "broadcast is not allocated"),
    })
    ctx.say(f"\nsummary: {writer.path / 'summary.json'}")


def run(args: argparse.Namespace) -> int:
    options = resolve(args, PRESETS)
    run_experiment(args, experiment, options, DEVICE_CLASSES, "tl")
    return 0


# A short transfer-learning pass for quickstart: tiny data, few epochs.
QUICK_PASS = TLConfig(lam=8, max_samples=2000, ae_epochs=3, cnn_epochs=8, tune_epochs=2,
                      partition="iid", bandwidth_hz=2e6)


async def quick_pass(ctx: RunContext, rates: Dict[str, Any]) -> QuickPass:
    """JUDBA's own decision on the quickstart fleet, measured beside eq. (8)."""
    config = replace(QUICK_PASS, run_id=f"{ctx.run_id}-tl")
    async with TransferLearning(ctx.server, ctx.devices, config) as tl:
        run = await tl.run(tl.decide("proposed"), "quickstart")
    return QuickPass(
        title=f"transfer learning (paper 000, JUDBA): T predicted {run.T_pred_s:.3f} s, "
              f"measured {run.T_meas_s:.3f} s",
        table="transfer_learning", rows=run.rows,
        columns=["device", "rho", "w", "t_comp_s", "t_comm_s", "finish_s", "finish_pred_s",
                 "accuracy", "provenance"],
        summary={"tl_T_pred_s": modeled(run.T_pred_s, "JUDBA, eq. 8"),
                 "tl_T_meas_s": measured(run.T_meas_s),
                 "tl_accuracy_uploaders": measured(run.accuracy_uploaders),
                 "tl_accuracy_finetuned": measured(run.accuracy_finetuned)})
