"""DRL placement (Zhang et al.), Figs. 5-6: accuracy and completion vs IGW and BS resources.

TD3, DDPG and Random are trained at Table IV's resources (``--runs`` times, the
median run's policy kept: a single run of DDPG can be one that collapsed), or loaded
with ``--policies`` (a ``placement-train`` run's ``policies`` folder), and each policy is
then run, deterministically, on the same system with one resource changed: the
IGWs' band B, cache S^l and computing C^l (Fig. 5), the BS's band B^e, cache S^e
and computing C^e (Fig. 6). Values are in the paper's units; the system applies
them after the per-task scaling and catalogue anchoring of
``edgebed.server.workloads.placement.solver.params``. ``--retrain`` trains every
scheme anew at every point instead (slow; closer to the paper, which does not say).

Fig. 5 averages over the tasks assigned to the IGWs, Fig. 6 over those assigned to
the BS; the system-wide values are in the tables too. A task's accuracy is 0 when
it misses its deadline (eq. 14). Everything is modeled (model mode) on measured
model inputs.

summary.json: ``accuracy_vs`` and ``completion_vs``, one entry per swept resource
(``x``: its values; one list per scheme), ``system_accuracy_vs``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from edgebed.benchmarks import placement_train
from edgebed.benchmarks.options import Presets, add_options, option, positive, resolve
from edgebed.benchmarks.placement_train import build_system, policies_for
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, format_table, given, modeled, progress
from edgebed.server.workloads.placement.agents import SCHEMES
from edgebed.server.workloads.placement.experiment import System, evaluate_policy, load_policies

logger = logging.getLogger(__name__)

#: (resource, side, axis label, paper-unit values, unit factor). Table IV's value is in each list.
SWEEPS = (
    ("B_hz", "igw", "IGW spectrum B (MHz)", (4, 6, 8, 10, 12), 1e6),
    ("S_l_bytes", "igw", "IGW cache S^l (GB)", (0.1, 0.2, 0.3, 0.4, 0.5), 1e9),
    ("C_l_hz", "igw", "IGW computing C^l (GHz)", (0.5, 1.0, 1.5, 2.0, 2.5), 1e9),
    ("B_e_hz", "bs", "BS spectrum B^e (MHz)", (6, 10, 15, 20, 25), 1e6),
    ("S_e_bytes", "bs", "ECaS cache S^e (GB)", (0.6, 1.2, 1.8, 2.4, 3.0), 1e9),
    ("C_e_hz", "bs", "ECoS computing C^e (GHz)", (2, 3, 4, 5, 6), 1e9),
)


@dataclass(frozen=True)
class Options(placement_train.Options):
    policies: Optional[str] = option(
        None, "a placement-train run's policies folder (skip training)", metavar="DIR"
    )
    eval_episodes: int = option(5, "evaluation episodes per point", check=positive)
    retrain: bool = option(False, "train every scheme anew at every point")


PRESETS = Presets(quick=Options(**placement_train.QUICK, eval_episodes=2), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def sweep_inputs(
    opts: Any, seed: int, run_dir: str
) -> Tuple[System, List[Dict[str, Any]], Any, Optional[Dict[str, str]], Optional[Dict[str, Any]]]:
    """``(system, records, zoo, paths, agents)``: the measured system and the policies to
    sweep (``--policies``, or trained now under ``run_dir``; None with ``--retrain``),
    ``agents`` those policies loaded once for every point."""
    system, records, zoo = build_system(opts, seed)
    if opts.retrain:
        return system, records, zoo, None, None
    paths = policies_for(opts, seed, system, run_dir)
    return system, records, zoo, paths, load_policies(paths, system.problem(), opts.slots)


def evaluate_points(
    opts: Any,
    seed: int,
    system: System,
    agents: Optional[Dict[str, Any]],
    run_dir: str,
    name: str,
    values: Sequence[float],
    unit: float,
    eval_seed: int,
) -> Iterator[Tuple[float, str, Dict[str, float]]]:
    """``(value, scheme, metrics)``: each scheme's loaded policy (``agents``), run
    deterministically with the resource ``name`` set to each of ``values`` (paper units) times
    ``unit``; ``agents`` None (``--retrain``) trains every scheme anew at each point under
    ``run_dir/retrained``."""
    for v in values:
        point = system.with_resources(**{name: v * unit})
        problem = point.problem()
        here = agents
        if here is None:
            retrained = os.path.join(run_dir, "retrained", f"{name}_{v}")
            here = load_policies(policies_for(opts, seed, point, retrained), problem, opts.slots)
        for s in SCHEMES:
            yield v, s, evaluate_policy(here[s], problem, opts.eval_episodes, opts.slots, eval_seed)


def sweep_record(
    opts: Any,
    args: argparse.Namespace,
    system: System,
    records: List[Dict[str, Any]],
    zoo: Any,
    paths: Optional[Dict[str, str]],
    started: float,
) -> Dict[str, Any]:
    """The summary entries both sweep suites (resources, rates) write besides their curves."""
    return {
        "eval_episodes": given(opts.eval_episodes),
        "retrain": given(bool(opts.retrain)),
        "policies": given(paths or "retrained per point"),
        **placement_train.run_record(opts, args, system, records, zoo, started),
    }


def side_metrics(m: Dict[str, float], side: str) -> Dict[str, float]:
    """Average accuracy and completion ratio over the tasks assigned to ``side`` (igw or bs)."""
    tasks = m[f"tasks_{side}"]
    return {
        "accuracy": m[f"accuracy_sum_{side}"] / tasks if tasks > 0 else 0.0,
        "completion": m[f"completed_{side}"] / tasks if tasks > 0 else 0.0,
    }


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    writer = RunWriter.from_args(args, config={**vars(args), "resolved": opts, "sweeps": SWEEPS})
    started = time.perf_counter()
    with writer:
        system, records, zoo, paths, agents = sweep_inputs(opts, args.seed, str(writer.path))
        rows: List[Dict[str, Any]] = []
        accuracy_vs: Dict[str, Any] = {}
        completion_vs: Dict[str, Any] = {}
        system_vs: Dict[str, Any] = {}
        for name, side, label, values, unit in progress(SWEEPS, desc="resources"):
            acc = {s: [] for s in SCHEMES}
            comp = {s: [] for s in SCHEMES}
            sys_acc = {s: [] for s in SCHEMES}
            points = evaluate_points(
                opts, args.seed, system, agents, str(writer.path), name, values, unit, 20_000 + args.seed
            )
            for v, s, m in points:
                sm = side_metrics(m, side)
                acc[s].append(sm["accuracy"])
                comp[s].append(sm["completion"])
                sys_acc[s].append(m["accuracy"])
                rows.append(
                    {
                        "resource": name,
                        "value": v,
                        "side": side,
                        "scheme": s,
                        **sm,
                        "system_accuracy": m["accuracy"],
                        "system_completion": m["completion"],
                        "tasks_igw": m["tasks_igw"],
                        "tasks_bs": m["tasks_bs"],
                        "heavy": m["heavy"],
                    }
                )
            accuracy_vs[name] = {"x": list(values), "side": side, **acc}
            completion_vs[name] = {"x": list(values), "side": side, **comp}
            system_vs[name] = {"x": list(values), **sys_acc}
            where = "IGWs" if side == "igw" else "BS"
            writer.plot(
                f"accuracy_vs_{name}",
                line_chart(
                    values,
                    acc,
                    label,
                    f"average accuracy at the {where}",
                    f"Fig. {5 if side == 'igw' else 6}: accuracy vs {label}",
                ),
            )
            writer.plot(
                f"completion_vs_{name}",
                line_chart(values, comp, label, f"completion ratio at the {where}", f"completion vs {label}"),
            )
        writer.table("resources", rows)
        print(
            format_table(
                rows,
                ["resource", "value", "scheme", "accuracy", "completion", "system_accuracy", "tasks_igw"],
            )
        )
        how = "deterministic policies in model mode (eqs. 1-14, DCPU) on the measured profile"
        writer.summary(
            {
                "accuracy_vs": modeled(
                    accuracy_vs, f"average accuracy over the tasks at the side swept; {how}"
                ),
                "completion_vs": modeled(
                    completion_vs, f"tasks completed in time over tasks at that side; {how}"
                ),
                "system_accuracy_vs": modeled(system_vs, f"average accuracy over all tasks (eq. 11); {how}"),
                "units": given(
                    {
                        "B_hz": "MHz",
                        "B_e_hz": "MHz",
                        "S_l_bytes": "GB",
                        "S_e_bytes": "GB",
                        "C_l_hz": "GHz",
                        "C_e_hz": "GHz",
                        "note": "paper units, before per-task scaling and anchoring",
                    }
                ),
                **sweep_record(opts, args, system, records, zoo, paths, started),
            }
        )
        print(f"results: {writer.path}")
    return 0
