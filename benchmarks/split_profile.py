"""Split profile: per-layer latency on this host, the eq. (5) delay model, R^2 and MAE on held-out layers.

Reproduces the layer delay prediction of Gao et al., "Task Partitioning and
Offloading in DNN-Task Enabled Mobile Edge Computing Networks" (section
2.2.1, eqs. 5-7) on this host: synthetic layers are timed and the
polynomial delay model is fitted to them, then judged on every layer of the
real split networks, none of which is in the fit.

1. Builds the split models (``--models``, default all six of
   ``edgebed.models.split.nets``; ImageNet networks at ``--input-size`` 224).
2. Measures on this host, torch at ``--threads`` (default 1) intra-op threads,
   batch of one, in ``--rounds`` alternating rounds so that load from other
   work on a shared host falls on the fitted and the held-out layers alike.
   Each round takes its share of a seeded synthetic sweep
   (``layer_sweep.sweep_layers``: convolutions over G, K, O, I and stride,
   depthwise convolutions, fully connected layers, ReLU, batch norm,
   pooling, dropout, flatten, residual add; each sample starts with the
   caches flushed and the input read, as in a forward pass) and ``--repeats``
   whole forward passes of every model on real inputs with a clock read
   between layers (``profile_split_model``). A layer's delay is the median of
   all its samples. With one thread, samples during which other tenants held
   the CPU count only the time this thread ran (``--wall-only`` turns that
   off; see ``layer_profile.time_calls``). Whole forward passes are timed
   too, to compare with the sum of the layers.
3. Fits the delay model (``delay_model.fit_delay_model``: eq. (5) per layer
   kind, NNLS with relative errors above a 1 ms floor, backward
   elimination as in eqs. (6)-(7)) to the sweep rows only.
4. Held-out layers: ``r2`` and ``mae_ms`` (footnote 1 of the paper) over
   every layer of the real networks, none of which is in the fit (a residual
   or inverted-residual block is predicted as the sum of its parts). A second
   fit without a seeded ``--holdout-fraction`` of the sweep rows gives
   ``sweep_holdout_r2`` and ``sweep_holdout_mae_ms`` on those rows.

``--quick``: 3 rounds of 2 samples per real layer, a 328-layer sweep with 3
samples each (about a minute on two cores); the default: 5 rounds
of 3 samples, 710 sweep layers. ``--sweep kind=N,...`` changes the counts of
the kinds it names; the others keep the preset's.

Outputs: ``layers.csv`` (every real layer: shapes, bytes, MACs, G/K/O/I,
measured and predicted ms), ``sweep.csv``, ``fits.csv``, ``delay_model.json``
(the fitted model, ``DelayModel.from_dict`` reads it back),
``predicted_vs_measured.png``, ``layers_<model>.png`` and ``summary.json``
with ``r2`` and ``mae_ms`` (held-out real layers), ``r2_by_model``,
``mae_ms_by_model``, ``sweep_holdout_r2``, ``sweep_holdout_mae_ms``,
``model_ms`` (per model: measured forward, sum of measured layers, sum of
predicted layers), ``fits`` and a ``provenance`` entry per key.
"""
from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from edgebed.benchmarks.options import (MAX_IMAGE_SIDE, MAX_INT, MAX_THREADS, Presets, add_options, at_least,
                                        between, non_negative, option, positive, resolve, unit_interval)
from edgebed.benchmarks.plots import line_chart
from edgebed.models.split.delay_model import DelayModel, evaluate, fit_delay_model
from edgebed.models.split.layer_profile import (LayerTiming, measure_forward, merge_timings,
                                                profile_split_model)
from edgebed.models.split.layer_sweep import SWEEP_KINDS, sweep_layers
from edgebed.models.split.nets import (MIN_INPUT_SIZE, SPLIT_MODEL_NAMES, LayerInfo, SplitModel,
                                       build_split_model)
from edgebed.proto.records import Span
from edgebed.results import RunWriter, derived, format_table, given, measured, modeled, progress
from edgebed.results.host import busy_warning, load_average

logger = logging.getLogger(__name__)

TARGET_R2 = 0.95  # issue 5: "split-profile --quick reports R^2 >= 0.95 on held-out layers"
LAYER_COLUMNS = ["model", "m", "name", "kind", "G", "K", "O", "I", "in_shape", "out_shape", "out_bytes",
                 "macs", "measured_ms", "predicted_ms", "samples", "preempted"]
SWEEP_COLUMNS = ["kind", "G", "K", "O", "I", "stride", "macs", "measured_ms", "predicted_ms", "holdout",
                 "samples", "inner", "preempted"]


#: Synthetic layers per kind (drawn in this order): the quick sweep and the default one.
QUICK_SWEEP: Dict[str, int] = {"conv": 150, "dwconv": 30, "fc": 30, "relu": 24, "norm": 24,
                               "pool": 30, "dropout": 8, "flatten": 8, "add": 24}
FULL_SWEEP: Dict[str, int] = {"conv": 300, "dwconv": 80, "fc": 80, "relu": 50, "norm": 50,
                              "pool": 60, "dropout": 20, "flatten": 20, "add": 50}


def split_model(name: str) -> Optional[str]:
    return None if name in SPLIT_MODEL_NAMES else f"must be among {', '.join(SPLIT_MODEL_NAMES)}"


def sweep_pair(text: str) -> Optional[str]:
    """A ``kind=count`` pair of ``--sweep``."""
    kind, sep, n = text.partition("=")
    if not sep or kind.strip() not in SWEEP_KINDS or not n.strip().isdigit():
        return f"expected kind=count pairs with kinds among {', '.join(SWEEP_KINDS)}"
    if int(n) > MAX_INT:
        return f"a count must be at most {MAX_INT}"
    return None


def holdout_fraction(value: float) -> Optional[str]:
    return None if 0.0 <= value < 0.75 else "must be in [0, 0.75)"


def sweep_pairs(counts: Mapping[str, int]) -> Tuple[str, ...]:
    return tuple(f"{kind}={n}" for kind, n in counts.items())


def sweep_counts(pairs: Sequence[str]) -> Dict[str, int]:
    """``("conv=3", ...)`` -> ``{"conv": 3, ...}``."""
    return {kind.strip(): int(n) for kind, _, n in (p.partition("=") for p in pairs)}


@dataclass(frozen=True)
class Options:
    models: List[str] = option(list(SPLIT_MODEL_NAMES), "comma-separated split models", check=split_model)
    input_size: int = option(224, "image side of the ImageNet networks (LeNet takes 28)",
                             check=between(MIN_INPUT_SIZE, MAX_IMAGE_SIDE))
    threads: int = option(1, "torch intra-op threads (two threads spin against other work on a "
                             "shared 2-core host)", check=between(1, MAX_THREADS))
    rounds: int = option(5, "alternating measurement rounds", check=positive)
    repeats: int = option(3, "samples per real layer and round", check=positive)
    sweep_repeats: int = option(3, "samples per sweep layer (median)", check=positive)
    warmup: int = option(1, "untimed calls before each layer's samples", check=non_negative)
    sweep: Tuple[str, ...] = option(sweep_pairs(FULL_SWEEP), "synthetic layers per kind, e.g. "
                                    "conv=90,fc=30 (kinds not named keep the preset's count)",
                                    check=sweep_pair, metavar="KIND=N,...")
    max_macs: float = option(2e9, "largest synthetic layer in multiply-accumulates (fc: weights)",
                             check=at_least(1e3))
    anchor_fraction: float = option(0.0, "share of swept (depthwise) convolutions that keep K, O, I and "
                                         "stride of a layer of the models and vary G, as in the "
                                         "paper's Fig. 2", check=unit_interval)
    holdout_fraction: float = option(0.25, "share of the sweep rows held out of the fit",
                                     check=holdout_fraction)
    prune: bool = option(True, "backward elimination of eq. (5) terms; --no-prune keeps every term "
                               "NNLS keeps")
    wall_only: bool = option(False, "plain wall-clock samples, even those during which other work "
                                    "held the CPU")


PRESETS = Presets(quick=Options(rounds=3, repeats=2, sweep=sweep_pairs(QUICK_SWEEP)), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def _needed_kinds(infos: Sequence[LayerInfo]) -> set:
    out = set()
    for info in infos:
        out |= _needed_kinds(info.parts) if info.parts else {info.kind}
    return out


def _check_kinds(models: Sequence[SplitModel], counts: Dict[str, int], holdout: float) -> None:
    need = _needed_kinds([i for m in models for i in m.infos])
    short = sorted(k for k in need if counts.get(k, 0) - int(counts.get(k, 0) * holdout) < 3)
    if short:
        raise ValueError(f"the models have layers of kinds {short} that the sweep does not cover with "
                         "at least 3 fitted layers each; raise them with --sweep kind=N")


def _share(counts: Dict[str, int], r: int, rounds: int) -> Dict[str, int]:
    return {k: n // rounds + (1 if r < n % rounds else 0) for k, n in counts.items()}


def _holdout(sweep: List[LayerTiming], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out sweep rows: a seeded ``fraction`` of each kind."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(sweep), dtype=bool)
    kinds = np.array([t.info.kind for t in sweep])
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        mask[rng.permutation(idx)[:int(len(idx) * fraction)]] = True
    return mask


def _span(writer: RunWriter, phase: str, t0: float, provenance: str = "measured", round_: int = 0,
          **extra: Any) -> None:
    now = time.perf_counter()
    writer.event(Span(run_id=writer.run_id, phase=phase, device=f"{socket.gethostname()}:cpu", round=round_,
                      start_s=t0, end_s=now, start_unix_s=time.time() - (now - t0), provenance=provenance,
                      extra=extra))


def _measure(opts: Options, counts: Dict[str, int], seed: int, discount: bool, models: List[SplitModel],
             writer: RunWriter):
    sweep: List[LayerTiming] = []
    runs: Dict[str, List[List[LayerTiming]]] = {m.name: [] for m in models}
    anchors = list({(p.kind, p.G, p.K, p.O, p.I, p.in_shape): p for m in models for i in m.infos
                    for p in (i.parts or (i,)) if p.kind in ("conv", "dwconv")}.values())
    bar = progress(total=opts.rounds * (1 + len(models)), desc="rounds")
    for r in range(opts.rounds):
        t0 = time.perf_counter()
        chunk = sweep_layers(_share(counts, r, opts.rounds), opts.sweep_repeats, opts.warmup,
                             seed=seed * 1009 + r, max_macs=opts.max_macs,
                             max_fc_params=int(min(110e6, opts.max_macs)), discount_preemption=discount,
                             anchors=anchors, anchor_fraction=opts.anchor_fraction)
        sweep += chunk
        _span(writer, "layer_sweep", t0, round_=r, layers=len(chunk))
        bar.update(1)
        for model in models:
            t0 = time.perf_counter()
            runs[model.name].append(profile_split_model(model, opts.repeats, opts.warmup, seed=seed,
                                                        discount_preemption=discount))
            _span(writer, "layer_profile", t0, round_=r, model=model.name, layers=model.num_layers,
                  median_ms=[1e3 * t.median_s for t in runs[model.name][-1]])
            bar.update(1)
    bar.close()
    forward = {m.name: measure_forward(m, max(3, opts.repeats), opts.warmup, seed=seed,
                                       discount_preemption=discount) for m in models}
    return sweep, {name: merge_timings(rs) for name, rs in runs.items()}, forward


def _layer_cells(dm: DelayModel, t: LayerTiming) -> Dict[str, Any]:
    i = t.info
    return {"kind": i.kind, "G": i.G, "K": i.K, "O": i.O, "I": i.I, "macs": i.macs,
            "measured_ms": 1e3 * t.median_s, "predicted_ms": 1e3 * dm.predict(i),
            "samples": len(t.samples_s), "preempted": t.preempted}


def _scatter(points: Dict[str, tuple], title: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.inf, 0.0
    for label, (meas, pred) in points.items():
        meas, pred = np.maximum(meas, 1e-4), np.maximum(pred, 1e-4)
        ax.scatter(meas, pred, s=10, label=label)
        lo, hi = min(lo, meas.min(), pred.min()), max(hi, meas.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured delay (ms)")
    ax.set_ylabel("predicted delay, eq. (5) (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _metrics(dm: DelayModel, timings: Sequence[LayerTiming]) -> Optional[Dict[str, float]]:
    if len(timings) < 2 or np.ptp([t.median_s for t in timings]) == 0:
        return None
    e = evaluate(dm, [t.info for t in timings], [t.median_s for t in timings])
    return {"r2": e["r2"], "mae_ms": 1e3 * e["mae_s"], "n": e["n"], "median_rel_error": e["median_rel_error"]}


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    # Kinds --sweep does not name keep the preset's count (in the preset's order: it seeds the draws).
    counts = {**sweep_counts(PRESETS.pick(args.quick).sweep), **sweep_counts(opts.sweep)}
    discount = not opts.wall_only and opts.threads == 1
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    load_before = load_average()
    names = list(dict.fromkeys(opts.models))
    models = [build_split_model(n, seed=args.seed, input_size=None if n == "lenet" else opts.input_size)
              for n in names]
    _check_kinds(models, counts, opts.holdout_fraction)  # a ValueError: edgebed-bench says so (exit 2)
    writer = RunWriter.from_args(args, config={"options": opts, "seed": args.seed, "quick": args.quick,
                                               "sweep_counts": counts, "discount_preemption": discount,
                                               "threads_set": torch.get_num_threads()})
    with writer:
        busy = busy_warning("split-profile", load_before, opts.threads,
                            "delays are noisier")
        if busy:
            print(busy, file=sys.stderr)
        print(f"split-profile: {', '.join(f'{m.name} (M={m.num_layers})' for m in models)}; "
              f"{opts.rounds} rounds, {opts.repeats} samples per layer and round, "
              f"{sum(counts.values())} sweep layers, {opts.threads} thread(s)")
        sweep, real, forward = _measure(opts, counts, args.seed, discount, models, writer)
        held = _holdout(sweep, opts.holdout_fraction, args.seed)
        t0 = time.perf_counter()
        dm = fit_delay_model([t.info for t in sweep], [t.median_s for t in sweep], host=socket.gethostname(),
                             prune=opts.prune)
        dm.meta.update({"threads": opts.threads, "discount_preemption": discount,
                        "sweep_rows": len(sweep)})
        train = [t for t, h in zip(sweep, held) if not h]
        dm_part = fit_delay_model([t.info for t in train], [t.median_s for t in train], prune=opts.prune)
        _span(writer, "delay_model_fit", t0, provenance="modeled",
              **{k: f.formula() for k, f in dm.fits.items()})
        all_real = [t for m in models for t in real[m.name]]
        overall = _metrics(dm, all_real)
        sweep_held = _metrics(dm_part, [t for t, h in zip(sweep, held) if h])
        per_model = {m.name: _metrics(dm, real[m.name]) for m in models}

        rows = [{"model": m.name, "m": t.info.index, "name": t.info.name, **_layer_cells(dm, t),
                 "in_shape": "x".join(map(str, t.info.in_shape)),
                 "out_shape": "x".join(map(str, t.info.out_shape)), "out_bytes": t.info.out_bytes,
                 "provenance": "measured_ms measured; predicted_ms modeled (eq. 5)"}
                for m in models for t in real[m.name]]
        writer.table("layers", rows, LAYER_COLUMNS)
        writer.table("sweep", [{**_layer_cells(dm, t), "stride": t.extra.get("stride", 1),
                                "holdout": bool(h), "inner": t.inner}
                               for t, h in zip(sweep, held)], SWEEP_COLUMNS)
        writer.table("fits", [{"kind": k, "term": term, "coef_s": c, "rows": f.rows,
                               "cv_error": f.cv_error if np.isfinite(f.cv_error) else None}
                              for k, f in dm.fits.items() for term, c in zip(f.terms, f.coef_s)])
        with open(writer.path / "delay_model.json", "w", encoding="utf-8") as fh:
            json.dump(dm.to_dict(), fh, indent=2)
        points = {m.name: (np.array([1e3 * t.median_s for t in real[m.name]]),
                           1e3 * dm.predict_many([t.info for t in real[m.name]])) for m in models}
        writer.plot("predicted_vs_measured", _scatter(
            points, f"held-out layers: R²={overall['r2']:.3f}, MAE={overall['mae_ms']:.2f} ms"
            if overall else "held-out layers"))
        for m in models:
            meas, pred = points[m.name]
            fig = line_chart(list(range(1, m.num_layers + 1)),
                             {"measured": list(meas), "predicted (eq. 5)": list(pred)}, "layer m",
                             "delay (ms)", f"{m.name}: per-layer delay on {socket.gethostname()}")
            fig.axes[0].set_yscale("log")
            writer.plot(f"layers_{m.name}", fig)
        model_ms = {m.name: {"forward_measured": 1e3 * forward[m.name],
                             "layers_measured_sum": float(points[m.name][0].sum()),
                             "layers_predicted_sum": float(points[m.name][1].sum())} for m in models}
        print(format_table([{"model": n, **(v or {}), **model_ms[n]} for n, v in per_model.items()],
                           ["model", "n", "r2", "mae_ms", "median_rel_error", "forward_measured",
                            "layers_measured_sum", "layers_predicted_sum"]))
        for kind, f in dm.fits.items():
            print(f"  {kind:8s} ({f.rows} rows): t = {f.formula()} s")
        preempted = sum(t.preempted for t in all_real + sweep)
        total = sum(len(t.samples_s) for t in all_real + sweep)
        elapsed = time.perf_counter() - started
        held_out = ("eq. (5) fitted to the sweep, against every measured layer of the real networks "
                    "(none in the fit; footnote 1)")
        sweep_out = "a second fit without a seeded share of the sweep rows, against those rows"
        writer.summary({
            "r2": derived(overall["r2"] if overall else None, f"R^2 of {held_out}"),
            "mae_ms": derived(overall["mae_ms"] if overall else None, f"ms, mean |error| of {held_out}"),
            "n_layers": given(len(all_real), "real layers held out"),
            "r2_by_model": derived({n: v["r2"] if v else None for n, v in per_model.items()},
                                   "as r2, per model"),
            "mae_ms_by_model": derived({n: v["mae_ms"] if v else None for n, v in per_model.items()},
                                       "as mae_ms, per model"),
            "sweep_holdout_r2": derived(sweep_held["r2"] if sweep_held else None, f"R^2 of {sweep_out}"),
            "sweep_holdout_mae_ms": derived(sweep_held["mae_ms"] if sweep_held else None,
                                            f"ms, mean |error| of {sweep_out}"),
            "sweep_rows": given({"total": len(sweep), "holdout": int(held.sum())}),
            "model_ms": {n: {"forward_measured": measured(v["forward_measured"], "median whole pass"),
                             "layers_measured_sum": measured(v["layers_measured_sum"],
                                                             "sum of the layers' medians"),
                             "layers_predicted_sum": modeled(v["layers_predicted_sum"], "eq. (5)")}
                         for n, v in model_ms.items()},
            "fits": derived(dm.to_dict()["fits"], "eq. (5) per kind fitted to the measured sweep: NNLS, "
                                                  "relative errors above 1 ms, backward elimination"),
            "target_r2": given(TARGET_R2),
            "input_size": given(opts.input_size),
            "threads": given(torch.get_num_threads()),
            "rounds": given(opts.rounds),
            "repeats": given(opts.repeats),
            "discount_preemption": given(discount),
            "preempted_fraction": measured(preempted / max(1, total),
                                           "share of samples during which other work held the CPU"),
            "quick": given(bool(args.quick)),
            "loadavg_before": measured(load_before),
            "host_busy_warning": derived(busy, "from loadavg_before"),
            "loadavg_after": measured(load_average()),
            "elapsed_s": measured(round(elapsed, 1), "wall time of the run"),
        })
        if overall:
            verdict = "meets" if overall["r2"] >= TARGET_R2 else "is BELOW"
            print(f"held-out layers ({overall['n']}): R² = {overall['r2']:.4f} ({verdict} the "
                  f"{TARGET_R2} target), MAE = {overall['mae_ms']:.3f} ms; held-out sweep rows: R² = "
                  f"{sweep_held['r2'] if sweep_held else float('nan'):.4f}")
        print(f"{elapsed:.0f} s; results in {writer.path}")
    return 0
