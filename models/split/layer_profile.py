"""Per-layer latency on this host: the timing recipe, and the layers of real split networks.

What section 2.2.1 of Gao et al., "Task Partitioning and Offloading in
DNN-Task Enabled Mobile Edge Computing Networks" measures to fit its layer
delay model, and what a device measures for the split decision.

Everything is measured with ``time.perf_counter`` around real forward calls
(batch of one by default, ``torch.no_grad``, eval mode) under whatever
``torch.set_num_threads`` the caller set; nothing here changes the thread count.

Timing recipe (:func:`time_calls`): each callable first runs ``warmup`` untimed
calls; one more call sizes the sample so that a sample lasts at least
``min_sample_s`` (a sample of a microsecond layer is the mean of ``inner``
back-to-back calls, so timer granularity and scheduling jitter do not
dominate); then ``repeats`` samples per callable, round-robin over all the
callables when ``interleave`` is set, so a burst of load from other work on a
shared host hits every layer alike instead of one. The result is the median.
On a shared host, ``discount_preemption`` takes out the time other tenants held
the CPU (see :func:`time_calls`); off by default, since on a device under a CPU
quota that time is real delay.

- :func:`profile_split_model`: every layer of a :class:`SplitModel` on real
  inputs from :func:`example_inputs`, timed inside whole forward passes (a
  clock read between layers), so each layer sees the caches a real forward
  pass leaves it; or each layer in isolation on its stored input activation.
- :func:`layer_delays_in_context`: per-layer delays as a device sees them,
  rescaled to add up to the median whole pass.

The synthetic layers the delay model is fitted to are drawn and timed by
:mod:`.layer_sweep` with the same recipe.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from edgebed.models.split.nets import LayerInfo, SplitModel, example_inputs

logger = logging.getLogger(__name__)

MIN_SAMPLE_S = 1e-3
MAX_INNER = 1000
#: A sample whose thread CPU time is below (1 - PREEMPT_TOL) x its wall time was preempted.
PREEMPT_TOL = 0.1


@dataclass(frozen=True)
class Samples:
    """What :func:`time_calls` measured for one callable."""

    samples_s: Tuple[float, ...]   # wall seconds per call of each sample
    inner: int                     # calls averaged into one sample
    preempted: int                 # samples whose preempted time was discounted

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)


@dataclass(frozen=True)
class LayerTiming:
    """A measured layer: its description, the median and every sample (seconds per call)."""

    info: LayerInfo
    median_s: float
    samples_s: Tuple[float, ...]
    inner: int = 1
    preempted: int = 0
    extra: Dict[str, int] = field(default_factory=dict, compare=False)  # e.g. sweep stride

    @classmethod
    def of(cls, info: LayerInfo, s: Samples, **extra: int) -> "LayerTiming":
        return cls(info, s.median_s, s.samples_s, s.inner, s.preempted, dict(extra))

    def row(self) -> Tuple[str, int, int, int, int, float]:
        i = self.info
        return (i.kind, i.G, i.K, i.O, i.I, self.median_s)


def check_counts(repeats: int, warmup: int) -> None:
    """``ValueError`` unless ``repeats`` is an int >= 1 and ``warmup`` an int >= 0."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")


def time_calls(calls: Sequence[Callable[[], object]], repeats: int = 5, warmup: int = 2,
               interleave: bool = True, min_sample_s: float = MIN_SAMPLE_S, flush_bytes: int = 0,
               discount_preemption: bool = False,
               touch: Optional[Sequence[Callable[[], object]]] = None) -> List[Samples]:
    """Wall seconds per call of each callable (see the module docstring).

    ``flush_bytes`` > 0 writes a buffer of that size before every sample, evicting the
    caches, so a layer's weights come from memory as in a forward pass through a big model;
    then ``touch[k]()`` (if given) runs, e.g. to read the input back into the caches.

    ``discount_preemption`` (only with one intra-op thread, so the work runs in the
    calling thread): a sample whose thread CPU time is below ``1 - PREEMPT_TOL`` of
    its wall time spent part of it waiting for a CPU that other work on a shared
    host held; that sample is replaced by the thread's CPU time, i.e. its wall time
    minus the time the thread was not running. Leave it off on a device under a CPU
    quota: there the throttled time is part of the device's real delay.
    """
    check_counts(repeats, warmup)
    if min_sample_s < 0 or flush_bytes < 0:
        raise ValueError(f"min_sample_s and flush_bytes must be >= 0, got {min_sample_s} and {flush_bytes}")
    if discount_preemption and torch.get_num_threads() != 1:
        raise ValueError("discount_preemption needs torch.set_num_threads(1): with more threads the "
                         f"calling thread's CPU time is not the layer's (got {torch.get_num_threads()})")
    flush = torch.zeros(flush_bytes // 4) if flush_bytes else None
    inners: List[int] = []
    for fn in calls:
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inners.append(int(min(MAX_INNER, max(1, math.ceil(min_sample_s / one)))))
    samples: List[List[float]] = [[] for _ in calls]
    preempted = [0] * len(calls)

    def sample(k: int) -> None:
        fn, inner = calls[k], inners[k]
        if flush is not None:
            flush.add_(1.0)
        if touch is not None:
            touch[k]()
        c0, t0 = time.thread_time(), time.perf_counter()
        for _ in range(inner):
            fn()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if _preempted(wall, cpu, discount_preemption):
            preempted[k] += 1
            wall = cpu
        samples[k].append(wall / inner)

    order = ([k for _ in range(repeats) for k in range(len(calls))] if interleave
             else [k for k in range(len(calls)) for _ in range(repeats)])
    for k in order:
        sample(k)
    return [Samples(tuple(s), n, p) for s, n, p in zip(samples, inners, preempted)]


def no_grad_call(layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A callable that runs ``layer(x)`` under ``torch.no_grad`` (what :func:`time_calls` times)."""
    def call() -> object:
        with torch.no_grad():
            return layer(x)
    return call


def _preempted(wall: float, cpu: float, discount: bool) -> bool:
    return discount and cpu < (1.0 - PREEMPT_TOL) * wall


def profile_split_model(model: SplitModel, repeats: int = 5, warmup: int = 2, batch: int = 1,
                        seed: int = 0, isolated: bool = False, min_sample_s: float = MIN_SAMPLE_S,
                        discount_preemption: bool = False) -> List[LayerTiming]:
    """Median seconds of every layer 1..M of ``model`` on real activations of ``batch`` inputs.

    By default each sample is one whole forward pass with a clock read between
    layers, so every layer runs as it does in real (split) inference: its input
    was just written by the layer before and is still in cache, its weights are
    not (unless the whole model fits). ``isolated=True`` instead times each layer
    on its own stored input activation with :func:`time_calls` (interleaved).
    ``discount_preemption`` as in :func:`time_calls`.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    check_counts(repeats, warmup)
    if discount_preemption and torch.get_num_threads() != 1:
        raise ValueError("discount_preemption needs torch.set_num_threads(1), got "
                         f"{torch.get_num_threads()} threads")
    x = example_inputs(model, batch, seed)
    if isolated:
        calls = []
        with torch.no_grad():
            for layer in model.layers:
                calls.append(no_grad_call(layer, x))
                x = layer(x)
        measured = time_calls(calls, repeats, warmup, True, min_sample_s,
                              discount_preemption=discount_preemption)
        return [LayerTiming.of(info, s) for info, s in zip(model.infos, measured)]
    samples, preempted, _ = forward_pass_samples(model, x, repeats, warmup,
                                                 discount_preemption=discount_preemption)
    return [LayerTiming.of(info, Samples(tuple(s), 1, p))
            for info, s, p in zip(model.infos, samples, preempted)]


def forward_pass_samples(model: SplitModel, x: torch.Tensor, repeats: int, warmup: int,
                         gap_s: float = 0.0, discount_preemption: bool = False
                         ) -> Tuple[List[List[float]], List[int], List[float]]:
    """Time ``repeats`` whole forward passes of ``x``, reading the clock between layers.

    Returns per-layer samples (s), per-layer preempted-sample counts and the
    whole passes' times. ``gap_s`` idles before each pass, as a device does
    between inferences (a throttled CPU quota refills in the gap).
    """
    check_counts(repeats, warmup)
    if gap_s < 0:
        raise ValueError(f"gap_s must be >= 0, got {gap_s}")
    for _ in range(warmup):
        model.run_layers(x, 0, model.num_layers)
    samples: List[List[float]] = [[] for _ in model.layers]
    preempted = [0] * model.num_layers
    totals: List[float] = []
    with torch.no_grad():
        for _ in range(repeats):
            if gap_s:
                time.sleep(gap_s)
            h = x
            start = t0 = time.perf_counter()
            c0 = time.thread_time()
            for k, layer in enumerate(model.layers):
                h = layer(h)
                t1, c1 = time.perf_counter(), time.thread_time()
                wall = t1 - t0
                if _preempted(wall, c1 - c0, discount_preemption):
                    preempted[k] += 1
                    wall = c1 - c0
                samples[k].append(wall)
                t0, c0 = t1, c1
            totals.append(time.perf_counter() - start)
    return samples, preempted, totals


def layer_delays_in_context(model: SplitModel, x: torch.Tensor, repeats: int = 15, warmup: int = 3,
                            gap_s: float = 0.0) -> Tuple[List[float], float]:
    """Per-layer delay (s) as a device sees it, and the median whole pass.

    Medians do not add up: a stall (a throttled CFS period, a busy host) lands
    in one layer of a pass, so every layer's median misses it while the whole
    pass's median does not. The per-layer medians are rescaled to add up to the
    median pass, keeping their shares, so every head's sum stays consistent.
    """
    samples, _, totals = forward_pass_samples(model, x, repeats, warmup, gap_s)
    medians = [statistics.median(s) for s in samples]
    whole = statistics.median(totals)
    scale = whole / sum(medians) if sum(medians) > 0 else 1.0
    return [m * scale for m in medians], whole


def merge_timings(runs: Sequence[Sequence[LayerTiming]]) -> List[LayerTiming]:
    """One timing per layer from several profiles of the same model: all samples pooled,
    their median (for the per-sample ``inner``, the first run's)."""
    if not runs:
        raise ValueError("no profiles to merge")
    if len({len(r) for r in runs}) != 1 or any(a.info != b.info for r in runs for a, b in zip(runs[0], r)):
        raise ValueError("profiles to merge must describe the same layers in the same order")
    out = []
    for same in zip(*runs):
        samples = tuple(s for t in same for s in t.samples_s)
        out.append(LayerTiming(same[0].info, statistics.median(samples), samples, same[0].inner,
                               sum(t.preempted for t in same), dict(same[0].extra)))
    return out


def measure_forward(model: SplitModel, repeats: int = 5, warmup: int = 2, batch: int = 1,
                    seed: int = 0, discount_preemption: bool = False) -> float:
    """Median seconds of one whole forward pass (layers 1..M back to back)."""
    x = example_inputs(model, batch, seed)
    return time_calls([lambda: model.run_layers(x, 0, model.num_layers)], repeats, warmup,
                      min_sample_s=0.0, discount_preemption=discount_preemption)[0].median_s
