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
from edgebed.benchmarks.placement_resources import (
    PRESETS,
    Options,
    evaluate_points,
    sweep_inputs,
    sweep_record,
)
from edgebed.benchmarks.plots import line_chart
from edgebed.results import RunWriter, format_table, given, modeled, progress
from edgebed.server.workloads.placement.agents import SCHEMES

logger = logging.getLogger(__name__)

RATES_MBPS = {"R_c_bps": (100, 150, 200, 250, 300, 350), "R_e_bps": (50, 100, 150, 200, 250)}
LABELS = {"R_c_bps": "R^c, CCaS -> ECaS (Mbps)", "R_e_bps": "R^e, ECaS -> IGW (Mbps)"}
#: Per-slot counts reported at every rate: column -> the slot metric (``env.slot_metrics``) it is.
COUNTS = {
    "placed_igw": "placed_igw",
    "placed_bs": "placed_edge",
    "resident_igw": "cached_igw",
    "resident_bs": "cached_edge",
    "completed_igw": "completed_igw",
    "completed_bs": "completed_bs",
    "heavy": "heavy",
    "completed_heavy": "completed_heavy",
    "accuracy": "accuracy",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    writer = RunWriter.from_args(args, config={**vars(args), "resolved": opts, "rates_mbps": RATES_MBPS})
    started = time.perf_counter()
    with writer:
        system, records, zoo, paths, agents = sweep_inputs(opts, args.seed, str(writer.path))
        rows: List[Dict[str, Any]] = []
        by_scheme: Dict[str, Dict[str, Any]] = {s: {} for s in SCHEMES}
        for name, values in progress(list(RATES_MBPS.items()), desc="rates"):
            series: Dict[str, Dict[str, List[float]]] = {s: {} for s in SCHEMES}
            points = evaluate_points(
                opts, args.seed, system, agents, str(writer.path), name, values, 1e6, 30_000 + args.seed
            )
            for v, s, m in points:
                row = {"rate": name, "mbps": v, "scheme": s, **{c: m[k] for c, k in COUNTS.items()}}
                rows.append({**row, "tasks_igw": m["tasks_igw"], "tasks_bs": m["tasks_bs"]})
                for c in COUNTS:
                    series[s].setdefault(c, []).append(row[c])
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
                ["rate", "mbps", *COUNTS],
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
                **sweep_record(opts, args, system, records, zoo, paths, started),
            }
        )
        print(f"results: {writer.path}")
    return 0
