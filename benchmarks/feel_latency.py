"""FEEL latency: measured local-gradient latency vs batch size and the fitted latency models (Fig. 2).

Reproduces Fig. 2 of Ren et al., "Accelerating DNN Training in Wireless
Federated Edge Learning Systems" on this host: how long one local gradient
takes as the batch grows, and how well the paper's linear CPU model and
piecewise GPU model fit it.

For each model the suite times real local gradients on this host (zero
grads, forward, cross-entropy, backward in train mode; random inputs of the
model's real input shape; ``--warmup`` untimed calls per batch size, then
``--repeats`` timed rounds going round-robin over the batch sizes so load
from other work on a shared host hits every batch size alike; median
reported) and fits the paper's two latency models to the medians:

- CPU, eq. (9): ``t = s * B + t0`` by least squares (``fit_r2``); eq. (9)
  proper has no intercept, so the through-origin fit is reported too;
- GPU, Assumption 1 / eq. (27): flat up to a threshold batch, then linear
  (threshold scanned over the integers). On a CPU host the paper expects
  the linear model to hold; the piecewise fit shows whether a flat region
  (per-call overhead dominating small batches) exists here.

Models: ``cnn`` (small MNIST CNN) on 1x28x28, the torchvision ResNet18,
MobileNetV2 and DenseNet121 (CIFAR stems, see ``edgebed.models.feel.nets``)
on 3x32x32. Default (full): all four, batches 1..128 (the paper's B_max).
``--quick`` (about 2 minutes on one thread): cnn, resnet18, mobilenetv2,
batches 1..64; the full run takes 10-15 minutes. Each model first
runs untimed gradients for ``--model-warmup-s`` (1 s; the first gradients
of a process are slow), then each batch size gets its own warm-up.

What is measured is what a device would see, allocator included: with
glibc's default malloc, activations above its mmap threshold (up to 32 MiB)
are mapped and page-faulted anew on every call, which makes MobileNetV2's
per-sample cost rise at batch 64 on CIFAR-10 (``MALLOC_MMAP_THRESHOLD_``
removes it). ``--threads`` defaults to 1: eq. (9) models a serial CPU, and
on a shared host extra threads spin against other work; the suite warns
when the load average leaves fewer idle cores than threads.

Outputs: ``latency.csv`` (per model and batch: measured median and both
fitted values), ``fits.csv`` (coefficients), ``fig2_latency.png`` (all
models, log-log), ``fig2_<model>.png`` (linear axes, measured points and the
fitted lines), ``summary.json`` with ``batch``, ``latency_s`` {model:
[seconds]} (measured), ``fit_r2`` {model: R^2 of the CPU linear fit}
(derived) and the fitted coefficients under ``fits``; each key's provenance
is in ``provenance``.
"""
from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional

import torch

from edgebed.benchmarks.options import (MAX_THREADS, Presets, add_options, at_least, between, non_negative,
                                        option, positive, resolve)
from edgebed.benchmarks.plots import line_chart
from edgebed.models.feel.latency import fit_cpu_linear, fit_gpu_piecewise, time_gradients
from edgebed.models.feel.nets import DEFAULT_IN_SHAPES, MODEL_NAMES, build_model, num_parameters
from edgebed.proto.records import Span
from edgebed.results import RunWriter, derived, format_table, given, measured, progress
from edgebed.results.host import busy_warning, load_average

logger = logging.getLogger(__name__)

FULL_MODELS = ("cnn", "resnet18", "mobilenetv2", "densenet121")
QUICK_MODELS = ("cnn", "resnet18", "mobilenetv2")
FULL_BATCHES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)  # B_max = 128 (paper 003, Table I)
QUICK_BATCHES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
#: Seconds of untimed gradients per model before its sweep (thread pools, allocator, kernels).
MODEL_WARMUP_S = 1.0
COLUMNS = ["model", "batch", "latency_s", "min_s", "max_s", "per_sample_ms", "cpu_fit_s",
           "cpu_origin_fit_s", "gpu_fit_s"]
FIT_KINDS = ("cpu_linear", "cpu_through_origin", "gpu_piecewise")
FIT_COLUMNS = ["model", "in_shape", "params", "cpu_s_per_sample", "cpu_fixed_s", "cpu_r2",
               "origin_s_per_sample", "origin_r2", "gpu_flat_s", "gpu_threshold", "gpu_s_per_sample",
               "gpu_r2"]


def model_name(name: str) -> Optional[str]:
    return None if name in MODEL_NAMES else f"must be among {', '.join(MODEL_NAMES)}"


@dataclass(frozen=True)
class Options:
    models: List[str] = option(list(FULL_MODELS), "comma-separated models", check=model_name)
    batches: List[int] = option(list(FULL_BATCHES), "comma-separated batch sizes (at least 2 distinct)",
                                check=positive)
    repeats: int = option(5, "timed gradients per batch size (median)", check=positive)
    warmup: int = option(2, "untimed gradients before each batch size", check=non_negative)
    model_warmup_s: float = option(MODEL_WARMUP_S, "seconds of untimed gradients per model before its "
                                                   "sweep", check=between(0, 600))
    threads: int = option(1, "torch intra-op threads (1: the serial CPU of eq. (9), and two threads spin "
                             "against other work on a shared 2-core host)",
                          check=between(1, MAX_THREADS))
    device: str = option("cpu", "where the gradients run", choices=("cpu", "cuda"))
    num_classes: int = option(10, "output classes (CIFAR-10/MNIST: 10)", check=at_least(2))


PRESETS = Presets(quick=Options(models=list(QUICK_MODELS), batches=list(QUICK_BATCHES)), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def _configure(opts: Options) -> Options:
    """``opts`` with models and batches in order and without repeats; a ValueError (exit 2
    from edgebed-bench) for what no single option's check can see."""
    batches = sorted(set(opts.batches))
    if len(batches) < 2:
        raise ValueError("--batches needs at least 2 distinct batch sizes to fit a latency model")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available to torch")
    return replace(opts, models=list(dict.fromkeys(opts.models)), batches=batches)


def _fit_record(batches: List[int], seconds: List[float]) -> Dict[str, Any]:
    cpu = fit_cpu_linear(batches, seconds)
    origin = fit_cpu_linear(batches, seconds, through_origin=True)
    gpu = fit_gpu_piecewise(batches, seconds)
    return {"cpu_linear": {"seconds_per_sample": cpu.seconds_per_sample, "fixed_s": cpu.fixed_s,
                           "r2": cpu.r2},
            "cpu_through_origin": {"seconds_per_sample": origin.seconds_per_sample, "r2": origin.r2},
            "gpu_piecewise": {"flat_s": gpu.flat_s, "threshold_batch": gpu.threshold_batch,
                              "seconds_per_sample": gpu.seconds_per_sample, "r2": gpu.r2},
            "_objects": (cpu, origin, gpu)}


def profile_model(name: str, opts: Options, seed: int, writer: RunWriter) -> Dict[str, Any]:
    """Time one model's gradients over the whole batch sweep (one span) and fit both models."""
    shape = DEFAULT_IN_SHAPES[name]
    torch.manual_seed(seed)
    model = build_model(name, opts.num_classes, shape).to(opts.device)
    # Warm the whole model up first (the first gradients of a process are slow); every
    # batch size still gets its own --warmup calls.
    t_end = time.perf_counter() + opts.model_warmup_s
    while time.perf_counter() < t_end:
        time_gradients(model, shape, [opts.batches[0], opts.batches[-1]], repeats=1, warmup=0,
                       num_classes=opts.num_classes, seed=seed)
    t0 = time.perf_counter()
    samples = time_gradients(model, shape, opts.batches, repeats=opts.repeats, warmup=opts.warmup,
                             num_classes=opts.num_classes, seed=seed, interleave=True)
    t1 = time.perf_counter()
    latency = [statistics.median(samples[b]) for b in opts.batches]
    writer.event(Span(run_id=writer.run_id, phase="local_gradient_profile",
                      device=f"{socket.gethostname()}:{opts.device}",
                      start_s=t0, end_s=t1, start_unix_s=time.time() - (time.perf_counter() - t0),
                      provenance="measured",
                      extra={"model": name, "in_shape": list(shape), "batches": opts.batches,
                             "samples_s": [samples[b] for b in opts.batches],
                             "median_latency_s": latency, "repeats": opts.repeats,
                             "warmup": opts.warmup, "threads": torch.get_num_threads(),
                             "order": "interleaved"}))
    logger.info("%s: %s", name, dict(zip(opts.batches, latency)))
    fits = _fit_record(opts.batches, latency)
    return {"model": name, "in_shape": shape, "params": num_parameters(model), "latency_s": latency,
            "samples_s": [samples[b] for b in opts.batches], **fits}


def _rows(result: Dict[str, Any], batches: List[int]) -> List[Dict[str, Any]]:
    cpu, origin, gpu = result["_objects"]
    return [{"model": result["model"], "batch": b, "latency_s": t, "min_s": min(ts), "max_s": max(ts),
             "per_sample_ms": 1e3 * t / b, "cpu_fit_s": cpu.predict(b),
             "cpu_origin_fit_s": origin.predict(b), "gpu_fit_s": gpu.predict(b),
             "provenance": "latency_s/min_s/max_s measured; *_fit_s fitted"}
            for b, t, ts in zip(batches, result["latency_s"], result["samples_s"])]


def _fit_row(r: Dict[str, Any]) -> Dict[str, Any]:
    c, o, g = r["cpu_linear"], r["cpu_through_origin"], r["gpu_piecewise"]
    return {"model": r["model"], "in_shape": "x".join(map(str, r["in_shape"])), "params": r["params"],
            "cpu_s_per_sample": c["seconds_per_sample"], "cpu_fixed_s": c["fixed_s"], "cpu_r2": c["r2"],
            "origin_s_per_sample": o["seconds_per_sample"], "origin_r2": o["r2"],
            "gpu_flat_s": g["flat_s"], "gpu_threshold": g["threshold_batch"],
            "gpu_s_per_sample": g["seconds_per_sample"], "gpu_r2": g["r2"]}


def _style_fitted(fig: Any, match_color: bool) -> None:
    """Fitted series (label contains 'fitted') dashed without markers; with ``match_color``
    in the color of the measured series before them."""
    ax = fig.axes[0]
    last_color = None
    for line in ax.get_lines():
        if "fitted" in str(line.get_label()):
            line.set_linestyle("--")
            line.set_marker("")
            if match_color and last_color is not None:
                line.set_color(last_color)
        else:
            last_color = line.get_color()
    if ax.get_legend() is not None:
        ax.legend(fontsize="small")


def _plots(writer: RunWriter, results: List[Dict[str, Any]], batches: List[int], host: str) -> None:
    series: Dict[str, List[Optional[float]]] = {}
    for r in results:
        cpu = r["_objects"][0]
        series[f"{r['model']} (measured)"] = r["latency_s"]
        # Log axes: a fitted value <= 0 (negative intercept) is left out as a gap.
        series[f"{r['model']} (fitted eq. 9, R²={cpu.r2:.3f})"] = [
            cpu.predict(b) if cpu.predict(b) > 0 else None for b in batches]
    fig = line_chart(batches, series, "batch size B", "local gradient latency (s)",
                     f"Fig. 2: gradient latency vs batch, {host}", logx=True)
    fig.axes[0].set_yscale("log")
    _style_fitted(fig, match_color=True)
    writer.plot("fig2_latency", fig)
    for r in results:
        cpu, _, gpu = r["_objects"]
        fig = line_chart(batches, {
            "measured (median)": r["latency_s"],
            f"fitted CPU eq. 9 (R²={cpu.r2:.3f})": [cpu.predict(b) for b in batches],
            f"fitted GPU eq. 27 (B_th={gpu.threshold_batch}, R²={gpu.r2:.3f})":
                [gpu.predict(b) for b in batches]},
            "batch size B", "local gradient latency (s)", f"{r['model']}: gradient latency, {host}")
        _style_fitted(fig, match_color=False)
        fig.axes[0].get_lines()[2].set_linestyle(":")  # the GPU fit often lies on the CPU fit
        writer.plot(f"fig2_{r['model']}", fig)


def run(args: argparse.Namespace) -> int:
    opts = _configure(resolve(args, PRESETS))
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    load_before = load_average()
    config = {"options": opts, "seed": args.seed, "quick": args.quick,
              "threads_set": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
              "in_shapes": {m: DEFAULT_IN_SHAPES[m] for m in opts.models}}
    writer = RunWriter.from_args(args, config=config)
    n = torch.get_num_threads()
    host = f"{opts.device}, {n} thread{'' if n == 1 else 's'}"
    with writer:
        busy = busy_warning("feel-latency", load_before, opts.threads,
                            "latencies are inflated and noisier")
        if busy:
            print(busy, file=sys.stderr)
        print(f"feel-latency: models {','.join(opts.models)}, batches {opts.batches}, "
              f"{opts.warmup} warm-up + {opts.repeats} timed gradients each, {host}")
        results = []
        bar = progress(opts.models, desc="models")
        for name in bar:
            bar.set_postfix(model=name)
            results.append(profile_model(name, opts, args.seed, writer))
        rows = [row for r in results for row in _rows(r, opts.batches)]
        fit_rows = [_fit_row(r) for r in results]
        writer.table("latency", rows, COLUMNS)
        writer.table("fits", fit_rows, FIT_COLUMNS)
        print(format_table(rows, COLUMNS))
        print(format_table(fit_rows, ["model", "params", "cpu_s_per_sample", "cpu_fixed_s", "cpu_r2",
                                      "origin_r2", "gpu_threshold", "gpu_r2"]))
        _plots(writer, results, opts.batches, host)
        elapsed = time.perf_counter() - started
        writer.summary({
            "batch": given(opts.batches),
            "latency_s": measured({r["model"]: r["latency_s"] for r in results},
                                  "s, median of the repeats on this host"),
            "fit_r2": derived({r["model"]: r["cpu_linear"]["r2"] for r in results},
                              "R^2 of the CPU linear model t = s*B + t0 (eq. 9) fitted to latency_s"),
            "fits": derived({r["model"]: {k: r[k] for k in FIT_KINDS} for r in results},
                            "fitted to latency_s: eq. 9 with intercept, eq. 9 through the origin, "
                            "eq. 27 piecewise (threshold scanned over integers)"),
            "params": derived({r["model"]: r["params"] for r in results}, "counted in the network"),
            "in_shape": given({r["model"]: list(r["in_shape"]) for r in results}),
            "device": given(opts.device),
            "threads": given(torch.get_num_threads()),
            "interop_threads": given(torch.get_num_interop_threads()),
            "repeats": given(opts.repeats),
            "warmup": given(opts.warmup),
            "quick": given(bool(args.quick)),
            "loadavg_before": measured(load_before),
            "host_busy_warning": derived(busy, "from loadavg_before"),
            "loadavg_after": measured(load_average()),
            "elapsed_s": measured(round(elapsed, 1), "wall time of the run"),
        })
        print("R² of the CPU linear fit (eq. 9): " + ", ".join(
            f"{r['model']} {r['cpu_linear']['r2']:.4f}" for r in results))
        print(f"{elapsed:.0f} s; results in {writer.path}")
    return 0
