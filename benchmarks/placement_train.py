"""DRL placement (Zhang et al., DNN inference in IIoT), Fig. 4: reward per episode of TD3, DDPG, Random.

The light and heavy DNN of every task type are trained once on real digits
(cached), and their accuracy (clean and noisy), size and inference time are
measured on this host. The system of Section V-A is built on them: Table IV's
resources, kept per task for smaller systems and anchored to Table III's
catalogue (see ``edgebed.server.workloads.placement.solver.params``). Each scheme
then learns in model mode (eqs. 1-14 with DCPU). An episode's reward is its mean
slot reward of eq. (14): the average inference accuracy, 0 for late tasks.
``--quick``: 4 IGWs x 4 devices, 6 runs of 60 episodes per scheme, small networks
and learning rates of 1e-3 (``agents.QUICK``, whose docstring says why each differs
from Table IV); default: 10 x 35 devices, 3 runs of 300 episodes, the paper's
networks and rates. ``--seed`` draws the system and seeds the learners;
``--model-seed`` the DNNs. The measured inference times enter the system, so two
runs with the same seeds on a busy host can differ a little.

Each scheme learns ``--runs`` times with different learner seeds; the curve and
the final reward are means over the runs (the mean, not the median: what training a
scheme once yields, collapses included). Single runs of these learners vary a lot
(a DDPG run can collapse and recover), and Fig. 4 is about what a scheme reaches,
not what one seed did.

summary.json: ``episodes``, ``reward`` (per scheme, list), ``final_reward``
(mean of the last tenth of the episodes; mean over the runs), ``final_runs``,
``margin_over_ddpg`` and ``margin_over_random`` of TD3 (the paper: 31.5 % and
74.5 %), ``eval`` (the median run's policy run deterministically), ``order_ok``.
The trained policies are saved under ``policies/<scheme>/run<r>/``; the median
run's is what ``--policies`` of the other placement suites loads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgebed.benchmarks.options import (MAX_SEED, MAX_THREADS, Presets, add_options, between, non_negative,
                                        option, positive, resolve)
from edgebed.benchmarks.parallel import parallel_map
from edgebed.benchmarks.plots import bar_chart, line_chart
from edgebed.results import RunWriter, derived, format_table, given, measured, modeled, progress
from edgebed.server.workloads.placement.agents import PRESETS as AGENT_PRESETS
from edgebed.server.workloads.placement.agents import SCHEMES
from edgebed.server.workloads.placement.experiment import System, TrainJob, measure_profile, run_train_job
from edgebed.server.workloads.placement.solver.params import LEARNING, resource_summary

logger = logging.getLogger(__name__)

PAPER_MARGINS = {"over_ddpg": 0.315, "over_random": 0.745}
#: In a policies folder: scheme -> the median run's folder (what --policies loads).
MEDIAN_FILE = "median.json"
HOW = "eqs. 1-14 with DCPU on the measured model profile"


@dataclass(frozen=True)
class Options:
    """The options every placement suite shares."""

    gateways: int = option(10, "IGWs", check=positive)
    devices: int = option(35, "devices per IGW", check=positive)
    models: str = option("full", "model zoo preset", choices=("tiny", "quick", "full"))
    agents: str = option("paper", "agent preset", choices=tuple(sorted(AGENT_PRESETS)))
    episodes: int = option(LEARNING["episodes"], "training episodes", check=positive)
    slots: int = option(LEARNING["steps"], "slots per episode", check=positive)
    anchor: str = option(
        "paper",
        "scale resources to Table III's catalogue (paper) or use the measured values as they are (none)",
        choices=("paper", "none"),
    )
    cache_dir: Optional[str] = option(
        None, "model weight cache (default ~/.cache/edgebed/placement)", metavar="DIR"
    )
    dataset: str = option(
        "mnist5k", "digits: mnist5k (offline) or mnist (needs --data-root)", choices=("mnist5k", "mnist")
    )
    data_root: Optional[str] = option(None, "torchvision data root", metavar="DIR")
    model_seed: int = option(0, "seed of the DNNs' data split and training", check=non_negative,
                             most=MAX_SEED)
    runs: int = option(3, "learning runs per scheme (mean reported)", check=positive)
    workers: int = option(
        min(2, os.cpu_count() or 1), "processes training schemes side by side",
        check=between(1, MAX_THREADS)
    )


#: Why these episodes and runs: the ``agents`` module's docstring (QUICK).
QUICK = dict(gateways=4, devices=4, models="quick", agents="quick", episodes=60)
PRESETS = Presets(quick=Options(**QUICK, runs=6), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def build_system(opts: Any, seed: int) -> Tuple[System, List[Dict[str, Any]], Any]:
    """Measure the profile (training the zoo if it is not cached) and describe the system."""
    import torch

    torch.set_num_threads(1)  # small networks on a shared 2-core host: one thread is fastest
    if opts.dataset != "mnist5k" and not opts.data_root:
        raise ValueError(f"--dataset {opts.dataset} needs --data-root (nothing is downloaded)")
    profile, records, zoo = measure_profile(
        opts.models, opts.cache_dir, data_root=opts.data_root, dataset=opts.dataset, seed=opts.model_seed
    )
    return System(profile, opts.gateways, opts.devices, seed, opts.anchor), records, zoo


def train_schemes(
    opts: Any, seed: int, system: System, save_dir: str, schemes: Tuple[str, ...] = SCHEMES
) -> Dict[str, Dict[str, Any]]:
    """Train every scheme ``opts.runs`` times (learner seeds ``100 seed + r``) and summarize each.

    Per scheme: ``rewards`` is the per-episode mean over the runs (Fig. 4's curve),
    ``final_runs`` each run's mean over its last tenth of episodes and ``final`` their mean
    (the expected converged reward: a run that collapses late counts, as it would for whoever
    trains the scheme once); ``path`` / ``eval`` are those of the median run, the typical
    policy the other suites load.
    """
    config = AGENT_PRESETS[opts.agents]
    jobs = [
        TrainJob(s, system, config, opts.episodes, opts.slots, 100 * seed + r, save_dir, run=r)
        for s in schemes
        for r in range(opts.runs)
    ]
    done: Dict[str, List[Dict[str, Any]]] = {s: [] for s in schemes}
    trained = parallel_map(run_train_job, jobs, opts.workers, start_method="spawn")  # torch ran here
    for res in progress(trained, total=len(jobs), desc="runs"):
        done[res["scheme"]].append(res)
        logger.info("%s run %d trained in %.1f s", res["scheme"], res["run"], res["train_s"])
    tail = max(1, opts.episodes // 10)
    results = {}
    for s, runs in done.items():
        finals = [float(np.mean(r["rewards"][-tail:])) for r in runs]
        middle = sorted(range(len(runs)), key=lambda i: finals[i])[(len(runs) - 1) // 2]
        results[s] = {
            "scheme": s,
            "rewards": [float(v) for v in np.mean([r["rewards"] for r in runs], axis=0)],
            "runs": [r["rewards"] for r in runs],
            "final_runs": finals,
            "final": float(np.mean(finals)),
            "median_run": middle,
            "eval": runs[middle]["eval"],
            "path": runs[middle]["path"],
            "train_s": float(sum(r["train_s"] for r in runs)),
            "seeds": [r["seed"] for r in runs],
        }
    os.makedirs(save_dir, exist_ok=True)
    with open(os.path.join(save_dir, MEDIAN_FILE), "w", encoding="utf-8") as fh:
        json.dump({s: os.path.relpath(results[s]["path"], save_dir) for s in results}, fh, indent=2)
    return results


def median_policies(folder: str) -> Optional[Dict[str, str]]:
    """Scheme -> the median run's policy directory, as a placement-train ``policies`` folder's
    :data:`MEDIAN_FILE` names them; None when ``folder`` has no such file."""
    index = os.path.join(folder, MEDIAN_FILE)
    if not os.path.isfile(index):
        return None
    with open(index, encoding="utf-8") as fh:
        return {s: os.path.join(folder, p) for s, p in json.load(fh).items()}


def policies_for(opts: Any, seed: int, system: System, run_dir: str) -> Dict[str, str]:
    """Saved policy directories per scheme: ``--policies`` (a placement-train run's
    ``policies`` folder) or trained now at the system's resources."""
    if getattr(opts, "policies", None):
        paths = median_policies(opts.policies)
        if paths is None:
            raise ValueError(
                f"--policies {opts.policies}: no {MEDIAN_FILE} (a placement-train run's "
                "policies folder has one)"
            )
        missing = [
            p for s, p in paths.items() if s in SCHEMES and not os.path.isfile(os.path.join(p, "agent.json"))
        ]
        lacking = missing or sorted(set(SCHEMES) - set(paths))
        if lacking:
            raise ValueError(f"--policies {opts.policies}: no saved agent for {lacking}")
        return paths
    results = train_schemes(opts, seed, system, os.path.join(run_dir, "policies"))
    return {s: results[s]["path"] for s in SCHEMES}


def model_rows(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        {k: r[k] for k in ("key", "depth", "parameters", "size_bytes", "acc_clean", "acc_noisy", "infer_s")}
        for r in records
    ]


def models_summary(records: List[Dict[str, Any]], zoo: Any) -> Dict[str, Any]:
    """The measured model inputs, tagged (P_UL/P_UH clean, P_DL/P_DH noisy, S^n, Q's time)."""
    host = records[0]["host"] if records else "this host"
    return {
        "acc_clean": measured(
            {r["key"]: r["acc_clean"] for r in records},
            f"P_UL / P_UH on {records[0]['test_images']} held-out digits" if records else "",
        ),
        "acc_noisy": measured(
            {r["key"]: r["acc_noisy"] for r in records}, "P_DL / P_DH, same digits through the noise model"
        ),
        "size_bytes": measured({r["key"]: r["size_bytes"] for r in records}, "torch.save(state_dict) bytes"),
        "infer_s": measured(
            {r["key"]: r["infer_s"] for r in records}, f"median time of one 50 KB task on {host}"
        ),
        "zoo": given({"key": zoo.config.key(), "trained_now": zoo.trained, "path": zoo.path}),
    }


def run_record(
    opts: Any,
    args: argparse.Namespace,
    system: System,
    records: List[Dict[str, Any]],
    zoo: Any,
    started: float,
) -> Dict[str, Any]:
    """The summary entries every placement suite writes: its inputs, settings and wall time."""
    return {
        "models": models_summary(records, zoo),
        "profile": given(system.profile.label),
        "settings": given({**opts.__dict__, "seed": args.seed}),
        "quick": given(bool(args.quick)),
        "elapsed_s": measured(time.perf_counter() - started, "wall time of the run"),
    }


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    writer = RunWriter.from_args(args, config={**vars(args), "resolved": opts})
    started = time.perf_counter()
    with writer:
        system, records, zoo = build_system(opts, args.seed)
        writer.table("models", model_rows(records))
        print(format_table(model_rows(records), ["key", "size_bytes", "acc_clean", "acc_noisy", "infer_s"]))
        results = train_schemes(opts, args.seed, system, os.path.join(str(writer.path), "policies"))
        episodes = list(range(1, opts.episodes + 1))
        reward = {s: results[s]["rewards"] for s in SCHEMES}
        tail = max(1, opts.episodes // 10)
        final = {s: results[s]["final"] for s in SCHEMES}
        margins = {
            "over_ddpg": final["td3"] / final["ddpg"] - 1 if final["ddpg"] > 0 else None,
            "over_random": final["td3"] / final["random"] - 1 if final["random"] > 0 else None,
        }
        writer.table("reward", [{"episode": e, **{s: reward[s][e - 1] for s in SCHEMES}} for e in episodes])
        rows = [
            {
                "scheme": s,
                "final_reward": final[s],
                "final_runs": results[s]["final_runs"],
                "train_s": results[s]["train_s"],
                **{f"eval_{k}": v for k, v in results[s]["eval"].items()},
            }
            for s in SCHEMES
        ]
        writer.table("schemes", rows)
        print(
            format_table(
                rows,
                [
                    "scheme",
                    "final_reward",
                    "eval_reward",
                    "eval_completion",
                    "eval_heavy",
                    "eval_tasks_igw",
                    "train_s",
                ],
            )
        )
        writer.plot(
            "reward",
            line_chart(
                episodes,
                reward,
                "episode",
                "average accuracy per slot (modeled)",
                f"Fig. 4: {opts.gateways} IGWs x {opts.devices} devices",
            ),
        )
        writer.plot(
            "final_reward",
            bar_chart(
                list(SCHEMES),
                {"final reward": [final[s] for s in SCHEMES]},
                "mean of the last tenth (modeled)",
                "Fig. 4: converged reward",
            ),
        )
        order_ok = final["td3"] > final["ddpg"] > final["random"]
        print(
            "final reward: "
            + ", ".join(f"{s} {final[s]:.3f}" for s in SCHEMES)
            + f"; TD3 over DDPG {margins['over_ddpg']:+.1%} (paper +31.5%), over random "
            f"{margins['over_random']:+.1%} (paper +74.5%); order td3 > ddpg > random: {order_ok}"
        )
        margin_note = "TD3's final reward over the scheme's, minus 1"
        writer.summary(
            {
                "episodes": given(opts.episodes),
                "reward": modeled(
                    reward,
                    f"mean slot reward (eq. 14) per training episode, mean over {opts.runs} runs; {HOW}",
                ),
                "final_reward": modeled(
                    final, f"mean over the runs of each run's mean over its last {tail} episodes"
                ),
                "final_runs": modeled(
                    {s: results[s]["final_runs"] for s in SCHEMES}, "each run's final reward"
                ),
                "learner_seeds": given({s: results[s]["seeds"] for s in SCHEMES}),
                "margin_over_ddpg": derived(margins["over_ddpg"], margin_note),
                "margin_over_random": derived(margins["over_random"], margin_note),
                "paper_margins": given(PAPER_MARGINS, "Section V-B 1 and 2 of the paper"),
                "order_ok": derived(order_ok, "final_reward td3 > ddpg > random"),
                "eval": modeled(
                    {s: results[s]["eval"] for s in SCHEMES},
                    "the median run's deterministic policy, fresh episodes: mean slot metrics",
                ),
                "train_s": measured(
                    {s: results[s]["train_s"] for s in SCHEMES}, "wall time of each scheme's training"
                ),
                "resources": derived(
                    resource_summary(system.problem()), "Table IV, scaled per task and anchored"
                ),
                "policies": given({s: results[s]["path"] for s in SCHEMES}),
                **run_record(opts, args, system, records, zoo, started),
            }
        )
        print(f"results: {writer.path}")
    return 0
