"""DRL placement (Zhang et al.), Fig. 7: placed models and completed tasks vs R^c and R^e.

The policies (trained once at Table IV's rates, or ``--policies``) run
deterministically on the same system with the backhaul rate R^c (CCaS -> ECaS,
R^e = 200 Mbps) or R^e (ECaS -> IGW, R^c = 300 Mbps) changed. Per slot, averaged
over the evaluation episodes: models placed (moved into a cache) at the IGWs and
at the ECaS, models resident in the caches at the end of the slot, tasks completed
at the IGWs and at the BS, heavy models selected. Rates are in the paper's Mbps,
applied after the catalogue anchoring of
``edgebed.server.workloads.placement.solver.params`` (so a model of the
catalogue's mean size moves as fast as a Table III model of mean size would).
Everything is modeled on measured model inputs.

summary.json: ``placed_vs`` and ``completed_vs`` (per rate: ``x`` in Mbps, then
``igw`` and ``bs`` lists for TD3), ``resident_vs``, ``heavy_vs``, and ``by_scheme``
with the same numbers for every scheme.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any, Dict, List

from edgebed.benchmarks.options import add_options, resolve
from edgebed.benchmarks.placement_resources import PRESETS, Options
from edgebed.benchmarks.placement_train import build_system, models_summary, policies_for
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, format_table, given, measured, modeled, progress
from edgebed.server.workloads.placement.agents import SCHEMES
from edgebed.server.workloads.placement.experiment import evaluate_saved

logger = logging.getLogger(__name__)

RATES_MBPS = {"R_c_bps": (100, 150, 200, 250, 300, 350), "R_e_bps": (50, 100, 150, 200, 250)}
LABELS = {"R_c_bps": "R^c, CCaS -> ECaS (Mbps)", "R_e_bps": "R^e, ECaS -> IGW (Mbps)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    writer = RunWriter.from_args(args, config={**vars(args), "resolved": opts, "rates_mbps": RATES_MBPS})
    started = time.perf_counter()
    with writer:
        system, records, zoo = build_system(opts, args.seed)
        paths = None if opts.retrain else policies_for(opts, args.seed, system, str(writer.path))
        rows: List[Dict[str, Any]] = []
        by_scheme: Dict[str, Dict[str, Any]] = {s: {} for s in SCHEMES}
        for name, values in progress(list(RATES_MBPS.items()), desc="rates"):
            series: Dict[str, Dict[str, List[float]]] = {s: {} for s in SCHEMES}
            for v in values:
                point = system.with_resources(**{name: v * 1e6})
                point_paths = paths or policies_for(
                    opts, args.seed, point, f"{writer.path}/retrained/{name}_{v}"
                )
                for s in SCHEMES:
                    m = evaluate_saved(
                        point_paths[s],
                        point.problem(),
                        opts.eval_episodes,
                        opts.slots,
                        seed=30_000 + args.seed,
                    )
                    row = {
                        "rate": name,
                        "mbps": v,
                        "scheme": s,
                        "placed_igw": m["placed_igw"],
                        "placed_bs": m["placed_edge"],
                        "resident_igw": m["cached_igw"],
                        "resident_bs": m["cached_edge"],
                        "completed_igw": m["completed_igw"],
                        "completed_bs": m["completed_bs"],
                        "tasks_igw": m["tasks_igw"],
                        "tasks_bs": m["tasks_bs"],
                        "heavy": m["heavy"],
                        "completed_heavy": m["completed_heavy"],
                        "accuracy": m["accuracy"],
                    }
                    rows.append(row)
                    for key in (
                        "placed_igw",
                        "placed_bs",
                        "resident_igw",
                        "resident_bs",
                        "completed_igw",
                        "completed_bs",
                        "heavy",
                        "completed_heavy",
                        "accuracy",
                    ):
                        series[s].setdefault(key, []).append(row[key])
            for s in SCHEMES:
                by_scheme[s][name] = {"x": list(values), **series[s]}
            td3 = series["td3"]
            writer.plot(
                f"placed_vs_{name}",
                line_chart(
                    values,
                    {"IGWs": td3["placed_igw"], "ECaS": td3["placed_bs"]},
                    LABELS[name],
                    "models placed per slot (TD3)",
                    f"Fig. 7 (upper): placed models vs {name[:3]}",
                ),
            )
            writer.plot(
                f"completed_vs_{name}",
                line_chart(
                    values,
                    {"IGWs": td3["completed_igw"], "BS": td3["completed_bs"]},
                    LABELS[name],
                    "tasks completed per slot (TD3)",
                    f"Fig. 7 (lower): completed tasks vs {name[:3]}",
                ),
            )
        writer.table("rates", rows)
        print(
            format_table(
                [r for r in rows if r["scheme"] == "td3"],
                [
                    "rate",
                    "mbps",
                    "placed_igw",
                    "placed_bs",
                    "resident_igw",
                    "resident_bs",
                    "completed_igw",
                    "completed_bs",
                    "heavy",
                ],
            )
        )

        def pick(a: str, b: str) -> Dict[str, Any]:
            return {
                name: {"x": list(v), "igw": by_scheme["td3"][name][a], "bs": by_scheme["td3"][name][b]}
                for name, v in RATES_MBPS.items()
            }

        how = "per slot, mean over the evaluation slots; TD3's deterministic policy in model mode"
        writer.summary(
            {
                "placed_vs": modeled(
                    pick("placed_igw", "placed_bs"), f"models moved into IGW / ECaS caches; {how}"
                ),
                "completed_vs": modeled(
                    pick("completed_igw", "completed_bs"),
                    f"tasks completed in time at the IGWs / the BS; {how}",
                ),
                "resident_vs": modeled(
                    pick("resident_igw", "resident_bs"), f"models cached after the slot; {how}"
                ),
                "heavy_vs": modeled(
                    {
                        name: {
                            "x": list(v),
                            "heavy": by_scheme["td3"][name]["heavy"],
                            "completed_heavy": by_scheme["td3"][name]["completed_heavy"],
                        }
                        for name, v in RATES_MBPS.items()
                    },
                    f"heavy models selected; {how}",
                ),
                "by_scheme": modeled(by_scheme, "the same counts for every scheme"),
                "tasks_per_slot": given(opts.gateways * opts.devices),
                "units": given({"x": "Mbps (paper units, before anchoring)", "counts": "per slot"}),
                "eval_episodes": given(opts.eval_episodes),
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
