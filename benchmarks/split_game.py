"""Split game: the offloading game's convergence, and delay and energy vs bandwidth and per DNN (Figs. 5-9).

Reproduces Figs. 5-9 of Gao et al., "Task Partitioning and Offloading in
DNN-Task Enabled Mobile Edge Computing Networks", all modeled: how fast
TPOS-CAI and TPOS-UAI converge, and the average delay and energy of TPOS-UAI
against GTPOS, all-offload and all-local over the uplink bandwidth and across
DNN types.

The solvers of ``edgebed.server.workloads.split.solver.game`` run on Fig. 4's
parameters (``problem_from_fig4``; its docstring lists the changes, e.g.
cycles priced in units of 1e5). Per-layer delays: eqs. (6)-(7) of the paper
applied to the real layer lists of ``edgebed.models.split.nets`` (composite
layers: the sum of their parts; depthwise convolutions with O = 1), labelled
"modeled"; ``--profile FILE`` takes measured ones instead, a JSON object
``{"<model>": {"t_local_s": [M floats], "t_server_s": [M floats]}}``.
Activation sizes are float32 bytes of the real layers.

Cases (Section 5): 1 TPOS-UAI (Algorithm 2), 2 GTPOS (global, delay only, no
slots), 3 all-offload into random feasible slots, 4 all-local. N = 5 devices,
each result the mean over ``--repeats`` random seeds (delta draws, initial
strategies, wake-ups, Case 3's slots).

Bandwidth (Figs. 6-7). Fig. 4's 2 kHz with real float32 activations would take a
minute to upload one AlexNet input, so the paper's kHz cannot be used as is. We
sweep the range in which the paper's trade-off lives, fixed before any game is
played from Fig. 4 and the raw-input size alone: from the W at which uploading
AlexNet's raw input takes tau (5 s: all-offload just stops being hopeless) to the
W at which it takes T_d (0.75 s: the upload is still longer than the server's
whole slot window), log-spaced (about 26-190 kHz, 1-6.4 Mbit/s with Fig. 4's
gain). ``extended`` rows add W/2 below and 2x, 5x, 10x above; they are reported
but not part of the done check: below, every device computes locally (Case 1 =
Case 4); above, the upload vanishes and Case 1's gap to GTPOS is the slot
rounding of eq. (24) ((h_max / H) T_d against GTPOS's bare processing time),
which exceeds 10 % once the average delay drops under about 0.8 s.
Figs. 5, 8, 9 use the geometric middle of the range (the paper: 2 and 1 kHz).

Weights (alpha, beta, gamma): Fig. 5 (0.42, 0.17, 0.41); Fig. 6 and 8 (0.95,
0.049, 0.001); Fig. 7 (0.1, 0.75, 0.15); Fig. 9 (0.049, 0.95, 0.001).
DNN types (Figs. 8-9): VGG13/16 need 3.5-4.8 s of server time by eq. (7) and
38-51 s locally, so with T_d = 0.75 s and tau = 5 s no VGG strategy meets (26)
and no VGG convolution fits a slot; T_d and tau are multiplied by
max(1, sum T^se(type) / sum T^se(AlexNet)) (``time_scale`` in the table).

summary.json: ``delay_vs_bw`` and ``energy_vs_bw`` (one list per case over
``bandwidth_hz``), ``uai_vs_gtpos_gap`` (max over the range of (T_1 - T_2) / T_2),
``iterations`` (mean ticks to the stopping rule per N), ``done``; each key's
provenance is in ``provenance``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgebed.benchmarks.options import (MAX_IMAGE_SIDE, Presets, add_options, at_least, between, non_negative,
                                        option, positive, resolve)
from edgebed.benchmarks.plots import bar_chart, line_chart
from edgebed.models.split.nets import MIN_INPUT_SIZE
from edgebed.results import RunWriter, derived, format_table, given, measured, modeled, progress
from edgebed.server.workloads.split.solver.cost import link_rate_bps
from edgebed.server.workloads.split.solver.game import all_local, all_offload, gtpos, tpos_cai, tpos_uai
from edgebed.server.workloads.split.solver.params import (
    FIG4,
    N0_W_PER_HZ,
    WEIGHTS,
    LayerProfile,
    paper_layer_delays_s,
    problem_from_fig4,
)

logger = logging.getLogger(__name__)

DNN_TYPES = ("vgg16", "vgg13", "alexnet", "lenet")
CASES = ("case1_tpos_uai", "case2_gtpos", "case3_all_offload", "case4_all_local")
GOAL_GAP = 0.10


def probability(value: float) -> Optional[str]:
    """A wake-up probability: in (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]"


@dataclass(frozen=True)
class Options:
    repeats: int = option(10, "seeds per point", check=positive)
    n_values: List[int] = option([5, 10, 20, 30, 40, 50], "comma-separated numbers of devices for Fig. 5",
                                 check=positive)
    bandwidth_points: int = option(8, "log-spaced bandwidths in the range", check=at_least(2))
    devices: int = option(5, "N for Figs. 6-9", check=positive)
    wake_prob: float = option(0.5, "wake-up probability per tick", check=probability)
    neighbours: int = option(2, "TPOS-UAI ring neighbours (eq. 29)", check=non_negative)
    input_size: int = option(224, "image side of the ImageNet DNNs",
                            check=between(MIN_INPUT_SIZE, MAX_IMAGE_SIDE))
    profile: Optional[str] = option(None, "JSON of measured per-layer delays (see above)", metavar="FILE")


PRESETS = Presets(quick=Options(repeats=3, n_values=[5, 20, 50], bandwidth_points=5), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def _infos_delay(info: Any) -> tuple:
    if info.parts:
        return tuple(np.sum([_infos_delay(p) for p in info.parts], axis=0))
    o = 1 if info.kind == "dwconv" else info.O
    kind = "conv" if info.kind == "dwconv" else info.kind
    return paper_layer_delays_s(kind, info.G, info.K, o, info.I)


def build_profiles(names: Sequence[str], input_size: int,
                   measured: Dict[str, Any]) -> Dict[str, LayerProfile]:
    from edgebed.models.split.nets import build_split_model

    out = {}
    for name in progress(names, desc="layer lists"):
        model = build_split_model(name, input_size=None if name == "lenet" else input_size)
        sizes = [model.activation_bytes(m) for m in range(model.num_layers + 1)]
        if name in measured:
            t_lo, t_se = measured[name]["t_local_s"], measured[name]["t_server_s"]
            if len(t_lo) != model.num_layers or len(t_se) != model.num_layers:
                raise ValueError(f"--profile: {name} has {model.num_layers} layers, got "
                                 f"{len(t_lo)} local and {len(t_se)} server delays")
            out[name] = LayerProfile(name, t_lo, t_se, sizes, "measured")
        else:
            d = np.array([_infos_delay(i) for i in model.infos])
            out[name] = LayerProfile(name, d[:, 0], d[:, 1], sizes, "modeled")
    return out


def bandwidth_for_rate(rate_bps: float) -> float:
    """The W at which eq. (9) with Fig. 4's P^up, G and N0 gives ``rate_bps`` (bisection)."""
    lo, hi = 1.0, 1e12
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        if link_rate_bps(mid, FIG4["p_up_w"], FIG4["gain"], N0_W_PER_HZ) < rate_bps:
            lo = mid
        else:
            hi = mid
    return hi


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def fig5(profile: LayerProfile, n_values: Sequence[int], bw: float, opts: Options,
         seed: int) -> List[Dict[str, Any]]:
    rows = []
    for n in progress(n_values, desc="Fig. 5"):
        for r in range(opts.repeats):
            p = problem_from_fig4(profile, n, bandwidth_hz=bw, weights=WEIGHTS["fig5"],
                                  rng=np.random.default_rng([seed, 5, n, r]))
            start = [seed, 5, n, r, 1]                # both start from the same random strategies
            cai_rng, uai_rng = np.random.default_rng(start), np.random.default_rng(start)
            for name, sol in (("tpos-cai", tpos_cai(p, cai_rng, wake_prob=opts.wake_prob)),
                              ("tpos-uai", tpos_uai(p, uai_rng, neighbours=opts.neighbours,
                                                    wake_prob=opts.wake_prob))):
                rows.append({"N": n, "repeat": r, "algorithm": name, "iterations": sol.iterations,
                             "converged": sol.converged, "final_avg_cost": sol.avg_cost,
                             "initial_avg_cost": sol.avg_cost_history[0], "rejections": sol.rejections,
                             "history": list(sol.avg_cost_history)})
    return rows


def cases(profile: LayerProfile, bw: float, opts: Options, seed: int, key: Sequence[int],
          delay_w: str, energy_w: str, time_scale: float = 1.0) -> Dict[str, Any]:
    """Cases 1-4 at one bandwidth for ``opts.devices`` devices: delays from the ``delay_w``
    game, energies from ``energy_w``."""
    delay: Dict[str, List[float]] = {c: [] for c in CASES}
    energy: Dict[str, List[float]] = {c: [] for c in CASES}
    seeds, splits = [], []
    n = opts.devices
    for r in range(opts.repeats):
        rng = np.random.default_rng([seed, *key, r])
        kw = dict(bandwidth_hz=bw, rng=np.random.default_rng([seed, *key, r, 1]), time_scale=time_scale)
        pd = problem_from_fig4(profile, n, weights=WEIGHTS[delay_w], **kw)
        pe = problem_from_fig4(profile, n, weights=WEIGHTS[energy_w], **kw)
        ud = tpos_uai(pd, rng, neighbours=opts.neighbours, wake_prob=opts.wake_prob)
        ue = tpos_uai(pe, rng, neighbours=opts.neighbours, wake_prob=opts.wake_prob)
        off, loc = all_offload(pd, rng), all_local(pd)
        for c, sd, se in ((CASES[0], ud, ue), (CASES[2], off, off), (CASES[3], loc, loc)):
            delay[c].append(sd.avg_delay_s)
            energy[c].append(se.avg_energy_j)
        seeds += [[s.split for s in ud.strategies], [s.split for s in ue.strategies]]
        splits.append([(s.split, s.last_slot) for s in ud.strategies])
    g = gtpos(pd, seeds=seeds)        # delta only changes prices: GTPOS is the same for every repeat
    delay[CASES[1]], energy[CASES[1]] = [g.avg_delay_s], [g.avg_energy_j]
    out: Dict[str, Any] = {f"delay_{c}": _mean(v) for c, v in delay.items()}
    out.update({f"energy_{c}": _mean(v) for c, v in energy.items()})
    out["gap"] = (out["delay_case1_tpos_uai"] - out["delay_case2_gtpos"]) / out["delay_case2_gtpos"]
    out["uai_split_slot_repeat0"] = splits[0]
    out["gtpos_splits"] = [s.split for s in g.strategies]
    return out


def _history_means(rows: List[Dict[str, Any]], n: int, alg: str) -> List[float]:
    hs = [r["history"] for r in rows if r["N"] == n and r["algorithm"] == alg]
    length = max(len(h) for h in hs)
    return list(np.mean([h + [h[-1]] * (length - len(h)) for h in hs], axis=0))


def _load_profile(path: Optional[str]) -> Dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--profile {path}: expected a JSON object of models, got {type(data).__name__}")
    return data


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    n_values = sorted(set(opts.n_values))
    measured_delays = _load_profile(opts.profile)
    writer = RunWriter.from_args(args, config={"options": opts, "seed": args.seed, "quick": args.quick,
                                               "fig4": FIG4, "weights": WEIGHTS})
    started = time.perf_counter()
    with writer:
        profiles = build_profiles(DNN_TYPES, opts.input_size, measured_delays)
        alex = profiles["alexnet"]
        raw_bits = 8.0 * alex.out_bytes[0]
        w_lo = bandwidth_for_rate(raw_bits / FIG4["tau_s"])
        w_hi = bandwidth_for_rate(raw_bits / FIG4["t_d_s"])
        main = list(np.geomspace(w_lo, w_hi, opts.bandwidth_points))
        extended = [w_lo / 2, 2 * w_hi, 5 * w_hi, 10 * w_hi]
        w_mid = float(np.sqrt(w_lo * w_hi))
        prov = "modeled" if not measured_delays else "modeled from measured per-layer delays"
        how = ("the game on measured per-layer delays (--profile)" if measured_delays
               else "the game on eqs. (6)-(7) per-layer delays")

        conv = fig5(alex, n_values, w_mid, opts, args.seed)
        for row in conv:
            writer.event({"kind": "convergence", "provenance": "modeled", **row})
        algs = ("tpos-cai", "tpos-uai")
        conv_rows = []
        for n in n_values:
            for alg in algs:
                sel = [r for r in conv if r["N"] == n and r["algorithm"] == alg]
                conv_rows.append({"N": n, "algorithm": alg,
                                  "mean_iterations": _mean([r["iterations"] for r in sel]),
                                  "mean_final_avg_cost": _mean([r["final_avg_cost"] for r in sel]),
                                  "converged": all(r["converged"] for r in sel),
                                  "mean_rejections": _mean([r["rejections"] for r in sel])})
        iterations = {a: [r["mean_iterations"] for r in conv_rows if r["algorithm"] == a] for a in algs}
        finals = {a: [r["mean_final_avg_cost"] for r in conv_rows if r["algorithm"] == a] for a in algs}
        writer.table("convergence", conv_rows)
        writer.table("convergence_runs", [{k: v for k, v in r.items() if k != "history"} for r in conv])
        hist = {f"{alg.upper()[5:]} N={n}": _history_means(conv, n, alg) for n in n_values for alg in algs}
        length = max(len(h) for h in hist.values())
        hist = {k: h + [None] * (length - len(h)) for k, h in hist.items()}
        writer.plot("fig5_convergence", line_chart(list(range(length)), hist, "iteration (tick)",
                                                   "average cost (eq. 23, modeled)",
                                                   f"Fig. 5: AlexNet, W = {w_mid / 1e3:.0f} kHz"))
        print(format_table(conv_rows, ["N", "algorithm", "mean_iterations", "mean_final_avg_cost",
                                       "converged", "mean_rejections"]))

        bw_rows = []
        for k, bw in enumerate(progress(main + extended, desc="Figs. 6-7")):
            res = cases(alex, bw, opts, args.seed, (6, k), "fig6", "fig7")
            rate = link_rate_bps(bw, FIG4["p_up_w"], FIG4["gain"], N0_W_PER_HZ)
            bw_rows.append({"bandwidth_hz": bw, "uplink_bps": rate, "extended": k >= len(main), **res})
            writer.event({"kind": "bandwidth_point", "provenance": prov, **bw_rows[-1]})
        writer.table("bandwidth", bw_rows)
        in_range = [r for r in bw_rows if not r["extended"]]
        outside = [r for r in bw_rows if r["extended"]]
        cols = ["bandwidth_hz", "uplink_bps", "extended"] + [f"delay_{c}" for c in CASES] + ["gap"]
        print(format_table(bw_rows, cols))
        print(format_table(bw_rows, ["bandwidth_hz"] + [f"energy_{c}" for c in CASES]))
        khz = [r["bandwidth_hz"] / 1e3 for r in in_range]
        for fig, what, unit in (("fig6_delay_vs_bw", "delay", "s"), ("fig7_energy_vs_bw", "energy", "J")):
            writer.plot(fig, line_chart(khz, {c: [r[f"{what}_{c}"] for r in in_range] for c in CASES},
                                        "bandwidth W (kHz)", f"average {what} ({unit}, {prov})",
                                        f"Fig. {fig[3]}: AlexNet, N = {opts.devices}", logx=True))

        type_rows = []
        se_alex = float(alex.t_server_s.sum())
        for k, name in enumerate(progress(DNN_TYPES, desc="Figs. 8-9")):
            scale = max(1.0, float(profiles[name].t_server_s.sum()) / se_alex)
            res = cases(profiles[name], w_mid, opts, args.seed, (8, k), "fig8", "fig9", scale)
            type_rows.append({"dnn": name, "layers": profiles[name].num_layers, "time_scale": scale,
                              "provenance": profiles[name].provenance, **res})
            writer.event({"kind": "dnn_type", "provenance": prov, **type_rows[-1]})
        writer.table("dnn_types", type_rows)
        print(format_table(type_rows, ["dnn", "layers", "time_scale"] + [f"delay_{c}" for c in CASES]
                           + ["gap"]))
        for fig, what, unit in (("fig8_delay_per_dnn", "delay", "s"), ("fig9_energy_per_dnn", "energy", "J")):
            series = {c: [r[f"{what}_{c}"] for r in type_rows] for c in CASES}
            writer.plot(fig, bar_chart(list(DNN_TYPES), series,
                                       f"average {what} ({unit}, {prov})",
                                       f"Fig. {fig[3]}: W = {w_mid / 1e3:.0f} kHz, N = {opts.devices}"))

        below = all(r["delay_case1_tpos_uai"] < min(r["delay_case3_all_offload"], r["delay_case4_all_local"])
                    for r in in_range)
        gap = max(r["gap"] for r in in_range)
        done = bool(below and gap <= GOAL_GAP)
        gap_note = "(T_UAI - T_GTPOS) / T_GTPOS of the modeled average delays"
        writer.summary({
            "bandwidth_hz": given([r["bandwidth_hz"] for r in in_range],
                                  "log-spaced over bandwidth_range_hz"),
            "delay_vs_bw": modeled({c: [r[f"delay_{c}"] for r in in_range] for c in CASES},
                                   f"s, mean over devices and repeats; {how}"),
            "energy_vs_bw": modeled({c: [r[f"energy_{c}"] for r in in_range] for c in CASES},
                                    f"J, mean over devices and repeats; {how}"),
            "uai_vs_gtpos_gap": derived(gap, f"{gap_note}, max over the range"),
            "uai_vs_gtpos_gap_per_bw": derived([r["gap"] for r in in_range], gap_note),
            "uai_below_local_and_offload": derived(below, "Case 1 below Cases 3 and 4 at every bandwidth"),
            "done": derived(done, f"uai_below_local_and_offload and uai_vs_gtpos_gap <= {GOAL_GAP}"),
            "iterations": modeled({"N": list(n_values), **iterations},
                                  "ticks until the stopping rule, mean over repeats, per N"),
            "final_avg_cost": modeled({"N": list(n_values), **finals},
                                      "average cost (eq. 23) at the end, mean over repeats, per N"),
            "extended": {
                "bandwidth_hz": given([r["bandwidth_hz"] for r in outside],
                                      "W/2 below and 2x, 5x, 10x above the range"),
                "delay_vs_bw": modeled({c: [r[f"delay_{c}"] for r in outside] for c in CASES}, how),
                "uai_vs_gtpos_gap": derived([r["gap"] for r in outside], gap_note)},
            "per_dnn": {r["dnn"]: {
                "delay": modeled({c: r[f"delay_{c}"] for c in CASES}, f"s; {how}"),
                "energy": modeled({c: r[f"energy_{c}"] for c in CASES}, f"J; {how}"),
                "gap": derived(r["gap"], gap_note),
                "time_scale": derived(r["time_scale"], "T_d and tau multiplier: the DNN's server time "
                                                       "over AlexNet's, at least 1")}
                for r in type_rows},
            "bandwidth_range_hz": derived([w_lo, w_hi], "W at which AlexNet's raw input uploads in tau "
                                                        "and in T_d (Fig. 4, eq. 9)"),
            "fig5_8_9_bandwidth_hz": derived(w_mid, "geometric middle of bandwidth_range_hz"),
            "devices": given(opts.devices),
            "repeats": given(opts.repeats),
            "quick": given(bool(args.quick)),
            "elapsed_s": measured(time.perf_counter() - started, "wall time of the run"),
        })
        print(f"UAI below Cases 3 and 4 at every bandwidth: {below}; max gap to GTPOS {gap:.3f} "
              f"(goal <= {GOAL_GAP}); done = {done}")
        print(f"results: {writer.path}")
    return 0
