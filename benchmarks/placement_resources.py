"""DRL placement (Zhang et al.), Figs. 5-6: accuracy and completion vs IGW and BS resources.

TD3, DDPG and Random are trained at Table IV's resources (``--runs`` times, the
median run's policy kept; --quick: one run), or loaded with ``--policies`` (a
``placement-train`` run's ``policies`` folder), and each policy is
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
from typing import Any, Dict, List

from dataclasses import dataclass
from typing import Optional

from edgebed.benchmarks import placement_train
from edgebed.benchmarks.options import Presets, add_options, option, positive, resolve
from edgebed.benchmarks.placement_train import build_system, models_summary, policies_for
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, format_table, given, measured, modeled, progress
from edgebed.server.workloads.placement.agents import SCHEMES
from edgebed.server.workloads.placement.experiment import evaluate_saved

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


PRESETS = Presets(quick=Options(**placement_train.QUICK, eval_episodes=2, runs=1), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


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
        system, records, zoo = build_system(opts, args.seed)
        paths = None if opts.retrain else policies_for(opts, args.seed, system, str(writer.path))
        rows: List[Dict[str, Any]] = []
        accuracy_vs: Dict[str, Any] = {}
        completion_vs: Dict[str, Any] = {}
        system_vs: Dict[str, Any] = {}
        for name, side, label, values, unit in progress(SWEEPS, desc="resources"):
            acc = {s: [] for s in SCHEMES}
            comp = {s: [] for s in SCHEMES}
            sys_acc = {s: [] for s in SCHEMES}
            for v in values:
                point = system.with_resources(**{name: v * unit})
                point_paths = paths or policies_for(
                    opts, args.seed, point, os.path.join(str(writer.path), "retrained", f"{name}_{v}")
                )
                for s in SCHEMES:
                    m = evaluate_saved(
                        point_paths[s],
                        point.problem(),
                        opts.eval_episodes,
                        opts.slots,
                        seed=20_000 + args.seed,
                    )
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
                "eval_episodes": given(opts.eval_episodes),
                "retrain": given(bool(opts.retrain)),
                "policies": given(paths or "retrained per point"),
                "models": models_summary(records, zoo),
                "profile": given(system.profile.label),
                "settings": given({**opts.__dict__, "seed": args.seed}),
                "quick": given(bool(args.quick)),
                "elapsed_s": measured(time.perf_counter() - started, "wall time of the run"),
            }
        )
        print(f"results: {writer.path}")
    return 0
