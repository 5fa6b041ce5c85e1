"""Placement testbed: TD3, DDPG and random policies decide DNN task assignment, model level,
caching and resource shares slot by slot, and real agents execute every decision.

"Deep Reinforcement Learning Based Resource Management for DNN Inference in Industrial IoT",
Sections III-V. At least four gateway agents with different CPU quotas and links, this
server as ECoS and ECaS, and a cloud model store agent (``role=cloud``). The store trains
and measures the models; every gateway times them (Q on that node); the problem is built
from those measurements and the measured links. Policies are loaded with ``--policies``
(a folder of ``<scheme>/agent.json``, or a placement-train run's ``policies`` folder) or
trained now in the model mode of this testbed's problem and saved under the run's
``policies/``. Each scheme then decides one episode of ``--slots`` slots on the testbed, from
the same task draws and empty caches; every slot's DCPU and eqs. (1)-(10) prediction is
recorded beside what was measured.

summary.json: ``completion_ratio`` and ``accuracy`` (each ``{scheme: {measured,
predicted}}``), ``model_bytes_moved``, ``cache_violations`` (times a cache held more than its
capacity), ``decision_ms`` (the policy's time per slot), the measured models and links.
"""
import argparse
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from edgebed.benchmarks.options import Presets, add_options, between, option, positive, resolve
from edgebed.benchmarks.placement_train import median_policies
from edgebed.benchmarks.plots import bar_chart
from edgebed.proto.contracts.placement import CLOUD_ROLE, ROLE_LABEL
from edgebed.results import derived, format_table, given, measured, modeled
from edgebed.server.experiment import QuickPass, RunContext
from edgebed.server.workloads.placement.agents import SCHEMES
from edgebed.server.workloads.placement.orchestrator import Placement, PlacementConfig, PlacementRun
from edgebed.testbed import DeviceClass, add_testbed_arguments, local_fleets

logger = logging.getLogger(__name__)

#: Gateways differ in compute (CPU quota, cores) and links (down: R^e is capped by it; up:
#: their ECoS tasks' uplink). The quotas keep the fleet within this two-core host.
GATEWAY_CLASSES = [DeviceClass(0.6, ""), DeviceClass(0.4, "up=16Mbit,down=1.2Mbit"),
                   DeviceClass(0.3, "up=12Mbit,down=2Mbit"),
                   DeviceClass(0.25, "up=10Mbit,down=0.9Mbit")]
CLOUD_CLASS = DeviceClass(0.5, "", labels=(f"{ROLE_LABEL}={CLOUD_ROLE}",))
#: A cloud store and one gateway at the least (a standing server's runs claim this many).
MIN_DEVICES = 2
SLOT_COLUMNS = ["scheme", "slot", "completion", "completion_pred", "accuracy", "accuracy_pred",
                "model_bytes", "decision_ms", "seconds"]


@dataclass(frozen=True)
class Options:
    slots: int = option(50, "slots each scheme decides on the testbed (Table IV: 50)", check=positive,
                        most=10_000)
    episodes: int = option(300, "model-mode training episodes of td3 and ddpg (without --policies)",
                           check=positive)
    train_slots: int = option(50, "slots per training episode", check=positive, most=10_000)
    agents_preset: str = option("paper", "agent preset (network sizes)", choices=("paper", "quick"))
    models: str = option("full", "model zoo preset", choices=("tiny", "quick", "full"))
    devices_per_gateway: int = option(4, "task sources per gateway", check=positive, most=64)
    band_khz: float = option(200.0, "B of each gateway's device network, kHz",
                             check=between(0, 1e6, above=True))
    edge_band_khz: float = option(400.0, "B^e from the gateways to the BS, kHz",
                                  check=between(0, 1e6, above=True))
    cloud_mbps: float = option(2.0, "R^c cloud store -> edge, Mbit/s", check=between(0, 1e5, above=True))
    edge_mbps: float = option(1.6, "R^e edge -> gateway, Mbit/s", check=between(0, 1e5, above=True))
    cache_scale: float = option(1.0, "S^l and S^e relative to Table IV's ratios",
                                check=between(0, 100, above=True))
    policies: Optional[str] = option(None, "load saved policies instead of training", metavar="DIR")
    dataset: str = option("mnist5k", "digits: mnist5k (offline) or mnist (needs --data-root)",
                          choices=("mnist5k", "mnist"))
    data_root: Optional[str] = option(None, "torchvision data root", metavar="DIR")
    seed: int = option(0, "seed of the system, the task draws and the learners")

    def config(self, run_id: str) -> PlacementConfig:
        return PlacementConfig(run_id=run_id, preset=self.models, dataset=self.dataset,
                               data_root=self.data_root, seed=self.seed,
                               devices_per_gateway=self.devices_per_gateway,
                               band_hz=self.band_khz * 1e3, edge_band_hz=self.edge_band_khz * 1e3,
                               cloud_rate_bps=self.cloud_mbps * 1e6, edge_rate_bps=self.edge_mbps * 1e6,
                               cache_scale=self.cache_scale)


PRESETS = Presets(quick=Options(slots=10, episodes=60, agents_preset="quick", models="quick"),
                  full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser)


# ---------------------------------------------------------------- policies

def policy_paths(folder: str) -> Dict[str, str]:
    """Saved policies per scheme in ``folder``: the median runs a placement-train ``policies``
    folder names (:func:`~edgebed.benchmarks.placement_train.median_policies`), or
    ``<scheme>/agent.json``."""
    median = median_policies(folder)
    if median is not None:
        return median
    return {s: os.path.join(folder, s) for s in SCHEMES
            if os.path.isfile(os.path.join(folder, s, "agent.json"))}


def trained_policies(pm: Placement, options: Options, save_dir: str,
                     say: List[str]) -> Dict[str, Any]:
    """td3 and ddpg trained in the model mode of ``pm``'s problem (saved), and random.
    Runs in a worker thread: what it has to say is appended to ``say``, for the caller to
    print on the server's loop."""
    from edgebed.server.workloads.placement.agents import config_from, make_agent, save_agent, train

    config = config_from(options.agents_preset)
    out = {"random": pm.decide("random")}
    for scheme in ("td3", "ddpg"):
        started = time.perf_counter()
        agent = make_agent(scheme, pm.env(slots=options.train_slots), config, seed=100 * options.seed)
        rewards = train(agent, options.episodes, options.train_slots)
        tail = rewards[-max(1, len(rewards) // 10):]
        say.append(f"{scheme}: trained {options.episodes} episodes in model mode in "
                   f"{time.perf_counter() - started:.0f} s, final reward {np.mean(tail):.3f} (modeled)")
        save_agent(agent, os.path.join(save_dir, scheme), scheme, config)
        out[scheme] = agent
    return out


# ---------------------------------------------------------------- figures

def _mean(values: List[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def run_figures(run: PlacementRun) -> Dict[str, Any]:
    """Per scheme: measured and predicted completion ratio and accuracy (eq. 11), bytes moved,
    cache violations, decision times."""
    measured_tasks = [o for r in run.records for o in r.measured]
    predicted_tasks = [o for r in run.records for o in r.predicted]
    return {
        "completion": _mean([float(o.completed) for o in measured_tasks]),
        "completion_pred": _mean([float(o.completed) for o in predicted_tasks]),
        "accuracy": _mean([o.accuracy for o in measured_tasks]),
        "accuracy_pred": _mean([o.accuracy for o in predicted_tasks]),
        "model_bytes": int(sum(r.model_bytes_moved for r in run.records)),
        "violations": sum(peak > capacity for r in run.records for peak, capacity in r.cache_peak.values()),
        "decision_ms": _mean(run.decision_ms),
        "lost": sorted({name for r in run.records for name in r.lost}),
        "refused": [why for r in run.records for why in r.refused],
    }


def slot_rows(run: PlacementRun) -> List[Dict[str, Any]]:
    rows = []
    for r, ms in zip(run.records, run.decision_ms):
        rows.append({"scheme": run.tag, "slot": r.slot,
                     "completion": _mean([float(o.completed) for o in r.measured]),
                     "completion_pred": _mean([float(o.completed) for o in r.predicted]),
                     "accuracy": _mean([o.accuracy for o in r.measured]),
                     "accuracy_pred": _mean([o.accuracy for o in r.predicted]),
                     "model_bytes": r.model_bytes_moved, "decision_ms": ms, "seconds": r.seconds})
    return rows


def task_rows(run: PlacementRun) -> List[Dict[str, Any]]:
    rows = []
    for r in run.records:
        for detail, pred in zip(r.tasks, r.predicted):
            rows.append({"scheme": run.tag, "slot": r.slot, **detail,
                         "delay_pred_s": pred.delay_s, "completed_pred": pred.completed,
                         "reason_pred": pred.reason})
    return rows


async def experiment(ctx: RunContext, options: Options) -> None:
    writer = ctx.writer
    async with Placement(ctx.server, ctx.devices, options.config(ctx.run_id)) as pm:
        models = [m.to_args() for m in pm.catalogue]
        writer.table("models", models)
        ctx.say(format_table(models, ["key", "size_bytes", "acc_clean", "acc_noisy", "infer_s"]))
        ctx.say(f"cloud store {pm.cloud}; gateways {pm.problem_devices}; R^e "
                f"{ {g: round(r / 1e6, 3) for g, r in pm.rates.items()} } Mbit/s")
        if options.policies:
            paths = policy_paths(options.policies)
            policies = {s: pm.decide(s, path=paths[s]) if s in paths else pm.decide("random")
                        for s in SCHEMES if s in paths or s == "random"}
        else:
            lines: List[str] = []
            policies = await ctx.offload(trained_policies, pm, options,
                                         os.path.join(str(writer.path), "policies"), lines)
            for line in lines:
                ctx.say(line)
        figures, slots, tasks = {}, [], []
        for i, scheme in enumerate(s for s in SCHEMES if s in policies):
            run = await pm.run(policies[scheme], scheme, options.slots, episode_seed=options.seed)
            figures[scheme] = run_figures(run)
            slots += slot_rows(run)
            tasks += task_rows(run)
            f = figures[scheme]
            ctx.say(f"{scheme}: completion {f['completion']:.3f} (predicted {f['completion_pred']:.3f}), "
                    f"accuracy {f['accuracy']:.3f} (predicted {f['accuracy_pred']:.3f}), "
                    f"{f['model_bytes']} model bytes moved, decision {f['decision_ms']:.2f} ms")
            ctx.progress(i + 1, len(policies), scheme)
        problem = pm.problem
    writer.table("slots", slots)
    writer.table("tasks", tasks)
    ctx.say(format_table(slots, SLOT_COLUMNS))
    schemes = list(figures)
    writer.plot("completion", bar_chart(schemes, {
        "measured": [figures[s]["completion"] for s in schemes],
        "predicted": [figures[s]["completion_pred"] for s in schemes]},
        "completion ratio", "Tasks completed within T^max"))
    writer.plot("accuracy", bar_chart(schemes, {
        "measured": [figures[s]["accuracy"] for s in schemes],
        "predicted": [figures[s]["accuracy_pred"] for s in schemes]},
        "average accuracy (eq. 11)", "Average inference accuracy"))
    how = "DCPU and eqs. (1)-(10) on the measured problem, each slot from its measured state"
    writer.summary({
        "completion_ratio": _measured_beside_predicted(figures, "completion", how),
        "accuracy": _measured_beside_predicted(figures, "accuracy", how),
        "model_bytes_moved": measured({s: figures[s]["model_bytes"] for s in schemes},
                                      "cloud -> edge plus edge -> gateways, per scheme"),
        "cache_violations": measured(sum(figures[s]["violations"] for s in schemes),
                                     "slots x nodes whose cache's peak exceeded its capacity"),
        "decision_ms": measured({s: figures[s]["decision_ms"] for s in schemes},
                                "mean policy time per slot (observation to action)"),
        "models": measured({m["key"]: {k: m[k] for k in ("size_bytes", "acc_clean", "acc_noisy",
                                                          "infer_s")} for m in models},
                           "the cloud store's measurements"),
        "gateway_infer_s": measured(pm.gateway_times, "each gateway's own timing, share 1"),
        "edge_infer_s": measured(pm.edge_times, "this server's timing, share 1"),
        "cache_bytes": derived({"S_l": problem.gateways[0].cache_bytes, "S_e": problem.edge_cache_bytes},
                               "Table IV's capacity-to-catalogue ratios"),
        "lost": measured({s: figures[s]["lost"] for s in schemes}, "gateways that failed a slot"),
        "refused": measured({s: figures[s]["refused"] for s in schemes}, "placements refused"),
        "slots": given(options.slots),
        "policies": given(options.policies or "trained now in model mode (policies/)"),
        **ctx.link_figures({g: (None, r) for g, r in pm.rates.items()},
                           "R^e of each gateway: as asked, capped by its measured downlink"),
    })
    ctx.say(f"\nsummary: {writer.path / 'summary.json'}")


def _measured_beside_predicted(figures: Dict[str, Dict[str, Any]], name: str, how: str) -> Dict[str, Any]:
    return {s: {"measured": measured(f[name]), "predicted": modeled(f[f"{name}_pred"], how)}
            for s, f in figures.items()}


def run(args: argparse.Namespace) -> int:
    options = resolve(args, PRESETS)
    classes = [CLOUD_CLASS] + [GATEWAY_CLASSES[i % len(GATEWAY_CLASSES)] for i in range(args.agents)]
    with local_fleets(args, options) as fleets:
        with fleets.start(classes, len(classes), "placement") as (srv, ctx):
            srv.call(experiment(ctx, options))
    return 0


# ---------------------------------------------------------------- quickstart

async def quick_pass(ctx: RunContext, rates: Dict[str, Any]) -> QuickPass:
    """A few random-policy slots on the quickstart fleet (the device labelled the cloud store,
    else the first, plays it), measured beside DCPU's prediction."""
    labelled = [d for d in ctx.devices
                if ctx.server.profile(d).labels.get(ROLE_LABEL) == CLOUD_ROLE]
    config = PlacementConfig(run_id=f"{ctx.run_id}-placement", preset="tiny", devices_per_gateway=2,
                             cloud=(labelled or ctx.devices)[0])
    async with Placement(ctx.server, ctx.devices, config) as pm:
        run = await pm.run(pm.decide("random"), "random", slots=3)
    f = run_figures(run)
    rows = slot_rows(run)
    return QuickPass(
        title=f"placement (paper 002, random policy): completion {f['completion']:.2f} "
              f"(predicted {f['completion_pred']:.2f}), accuracy {f['accuracy']:.2f} "
              f"(predicted {f['accuracy_pred']:.2f})",
        table="placement", rows=rows, columns=SLOT_COLUMNS,
        summary={"placement_completion": measured(f["completion"]),
                 "placement_completion_pred": modeled(f["completion_pred"], "DCPU, eqs. 1-10"),
                 "placement_accuracy": measured(f["accuracy"]),
                 "placement_accuracy_pred": modeled(f["accuracy_pred"], "DCPU, eqs. 1-10"),
                 "placement_model_bytes": measured(f["model_bytes"]),
                 "placement_cache_violations": measured(f["violations"])})
