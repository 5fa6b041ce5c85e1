"""Per-layer latency on this host (paper 004, section 2.2.1): real layers and synthetic sweeps.

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
- :func:`sweep_layers`: synthetic layers of the kinds the delay model knows,
  with seeded random configurations: convolutions over output side G, kernel
  K, input channels O and output channels I (and stride, with the input side
  G x stride), depthwise convolutions, fully connected layers (O inputs, I
  outputs), and the cheap layers (ReLU, batch norm, max/adaptive pooling,
  dropout, flatten, residual add) over channels and sides. Each synthetic
  layer is built, timed and freed before the next (big fc weights would not fit
  all at once), so sweeps are not interleaved; each sample starts with the
  caches flushed and the layer's input read again, i.e. cold weights and a
  hot input as in a forward pass. Configurations above
  ``max_macs`` multiply-accumulates, ``max_elems`` activation elements or
  ``max_fc_params`` weights are skipped.

:meth:`LayerTiming.row` gives the ``(kind, G, K, O, I, median_s)`` rows of the fit.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from edgebed.models.split.nets import LayerInfo, ResidualAdd, SplitModel, describe_layer, example_inputs

logger = logging.getLogger(__name__)

SWEEP_KINDS = ("conv", "dwconv", "fc", "relu", "norm", "pool", "dropout", "flatten", "add")
#: Synthetic layers per kind: a quick sweep and the default one.
QUICK_COUNTS: Dict[str, int] = {"conv": 150, "dwconv": 30, "fc": 30, "relu": 24, "norm": 24,
                                "pool": 30, "dropout": 8, "flatten": 8, "add": 24}
FULL_COUNTS: Dict[str, int] = {"conv": 300, "dwconv": 80, "fc": 80, "relu": 50, "norm": 50,
                               "pool": 60, "dropout": 20, "flatten": 20, "add": 50}
MIN_SAMPLE_S = 1e-3
MAX_INNER = 1000
#: A sample whose thread CPU time is below (1 - PREEMPT_TOL) x its wall time was preempted.
PREEMPT_TOL = 0.1
#: Smallest output side of swept convolutions: the smallest of the supported networks at
#: 224 x 224 inputs. Below it, CPU convolution libraries switch to weight-bound code paths
#: that eq. (5) cannot follow, so such layers would only blur the fit.
MIN_CONV_SIDE = 7
#: Bytes written before each sweep sample (more than the last-level caches of boards and hosts).
FLUSH_BYTES = 64 << 20


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


def _check_counts(repeats: int, warmup: int) -> None:
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
    _check_counts(repeats, warmup)
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


def _caller(layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
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
    _check_counts(repeats, warmup)
    if discount_preemption and torch.get_num_threads() != 1:
        raise ValueError("discount_preemption needs torch.set_num_threads(1), got "
                         f"{torch.get_num_threads()} threads")
    x = example_inputs(model, batch, seed)
    if isolated:
        calls = []
        with torch.no_grad():
            for layer in model.layers:
                calls.append(_caller(layer, x))
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
    _check_counts(repeats, warmup)
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


# --------------------------------------------------------------------------- synthetic sweeps


def _log_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


#: Channel widths common in CNNs (VGG, ResNet, MobileNet, ...): vectorized kernels run
#: multiples of 16 much faster than other widths, so sweeps use these.
WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 144, 160, 192, 256, 320, 384, 512, 576, 768, 960,
          1024, 1280, 2048)


def _channels(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A random common channel width in [lo, hi]."""
    return int(rng.choice([w for w in WIDTHS if lo <= w <= hi]))


def _anchored(a: LayerInfo, rng: np.random.Generator) -> Tuple[nn.Module, Tuple[int, ...], int]:
    """A convolution with the kernel, channels and stride of ``a`` and another output side."""
    s = max(1, int(round(a.in_shape[-1] / max(1, a.out_shape[-1]))))
    lo, hi = max(1, a.G // 4), min(224, 4 * a.G)
    g = a.G
    while g == a.G and hi > lo:
        g = _log_int(rng, lo, hi)
    groups = a.O if a.kind == "dwconv" else 1
    return nn.Conv2d(a.O, a.I, a.K, stride=s, padding=a.K // 2, groups=groups), (a.O, g * s, g * s), s


def _config(kind: str, rng: np.random.Generator,
            anchors: Sequence[LayerInfo] = ()) -> Tuple[nn.Module, Tuple[int, ...], int]:
    """A random synthetic layer of ``kind``: ``(module, input shape per sample, stride)``;
    one anchored on a random layer of ``anchors`` when they are given (see :func:`sweep_layers`)."""
    if anchors:
        return _anchored(anchors[int(rng.integers(len(anchors)))], rng)
    if kind == "conv":
        if rng.random() < 0.15:  # a network's first layer: 1 or 3 input channels, wide kernels
            k = int(rng.choice([3, 5, 7, 11]))
            s = {3: int(rng.choice([1, 2])), 5: 1, 7: 2, 11: 4}[k]
            o, i, g = int(rng.choice([1, 3])), _channels(rng, 8, 96), _log_int(rng, 14, 224)
        else:  # body layers: 1x1 and 3x3 (some 5x5), common channel widths
            k = int(rng.choice([1, 3, 5], p=[0.35, 0.55, 0.1]))
            s = int(rng.choice([1, 2], p=[0.8, 0.2]))
            o = _channels(rng, 8, 1024)
            i = _channels(rng, max(8, o // 6), min(2048, 6 * o))
            g = _log_int(rng, MIN_CONV_SIDE, 224)
        return nn.Conv2d(o, i, k, stride=s, padding=k // 2), (o, g * s, g * s), s
    if kind == "dwconv":
        k = int(rng.choice([3, 5], p=[0.8, 0.2]))
        s = int(rng.choice([1, 2], p=[0.75, 0.25]))
        g, c = _log_int(rng, MIN_CONV_SIDE, 112), _channels(rng, 8, 1024)
        return nn.Conv2d(c, c, k, stride=s, padding=k // 2, groups=c), (c, g * s, g * s), s
    if kind == "fc":  # weights log-uniform over 1e3..1e8, shared between O and I
        w = math.exp(rng.uniform(math.log(1e3), math.log(1.1e8)))
        o = int(min(25088, max(16, round(math.exp(rng.uniform(0.3, 0.8) * math.log(w))))))
        i = int(min(4096, max(10, round(w / o))))
        return nn.Linear(o, i), (o,), 1
    # Activations with log-uniform element counts (up to a VGG's first ReLU), split into
    # channels and a side, so large and small activations are both well represented.
    elems = math.exp(rng.uniform(math.log(64), math.log(4e6)))
    c = min(_log_int(rng, 3, 1024), int(elems))
    g = max(1, min(224, int(round(math.sqrt(elems / c)))))
    if kind == "pool":
        if rng.random() < 0.6:
            k = int(rng.choice([2, 3]))
            return nn.MaxPool2d(k, stride=2), (c, max(k, 2 * g), max(k, 2 * g)), 2
        out = int(rng.choice([1, 6, 7]))
        side = max(out, min(g, 28))
        return nn.AdaptiveAvgPool2d((out, out)), (c, side, side), 1
    if kind == "norm":
        return nn.BatchNorm2d(c).eval(), (c, g, g), 1
    if kind == "add":
        return ResidualAdd(torch.rand(1, c, g, g)), (c, g, g), 1
    vector = rng.random() < (0.7 if kind == "dropout" else 0.3)
    shape = (int(min(25088, max(16, elems))),) if vector else (c, g, g)
    if kind == "relu":
        return nn.ReLU(), shape, 1
    if kind == "dropout":
        return nn.Dropout(0.5).eval(), shape, 1
    if kind == "flatten":
        return nn.Flatten(), (c, g, g), 1
    raise ValueError(f"unknown sweep kind {kind!r}; known kinds: {', '.join(SWEEP_KINDS)}")


def sweep_layers(counts: Optional[Dict[str, int]] = None, repeats: int = 5, warmup: int = 2,
                 seed: int = 0, max_macs: float = 2e9, max_elems: int = 1 << 23,
                 max_fc_params: int = 110_000_000, min_sample_s: float = MIN_SAMPLE_S,
                 flush_bytes: int = FLUSH_BYTES, discount_preemption: bool = False,
                 anchors: Sequence[LayerInfo] = (), anchor_fraction: float = 0.0,
                 progress: Optional[Callable[[int], None]] = None) -> List[LayerTiming]:
    """Time seeded random synthetic layers: ``counts`` maps kind -> number (default the full sweep).

    Each sample starts as a layer does in a forward pass: ``flush_bytes`` are
    written (evicting the layer's weights from the caches, as the layers before
    it would; 0 disables) and then its input is read (it was just written by the
    layer before). Fully connected layers at batch one are bound by reading
    their weights, so this matters most for them.

    ``anchors`` (layers of the networks to be predicted) with ``anchor_fraction``
    > 0: that share of the convolutions and depthwise convolutions keep the
    kernel, channels and stride of a random anchor of their kind and draw
    another output side G (a quarter to four times the anchor's), as the
    paper's Fig. 2 varies G under AlexNet's K, O and I. A draw that lands on
    the configuration (G, K, O, I) of any anchor is discarded, so no layer of
    the networks is ever timed here.
    ``progress(n)`` is called after each layer with the number done so far.
    """
    counts = dict(FULL_COUNTS if counts is None else counts)
    bad = [k for k in counts if k not in SWEEP_KINDS]
    if bad:
        raise ValueError(f"unknown sweep kinds {bad}; known kinds: {', '.join(SWEEP_KINDS)}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts.values()):
        raise ValueError(f"sweep counts must be ints >= 0, got {counts}")
    _check_counts(repeats, warmup)
    rng = np.random.default_rng(seed)
    out: List[LayerTiming] = []
    if not 0.0 <= anchor_fraction <= 1.0:
        raise ValueError(f"anchor_fraction must be in [0, 1], got {anchor_fraction}")
    for kind, n in counts.items():
        near = [a for a in anchors if a.kind == kind] if kind in ("conv", "dwconv") else []
        done, attempts = 0, 0
        while done < n:
            attempts += 1
            if attempts > 200 * max(n, 1):
                raise ValueError(f"could not draw {n} {kind} layers within max_macs={max_macs:g}, "
                                 f"max_elems={max_elems}, max_fc_params={max_fc_params}")
            anchored = bool(near) and rng.random() < anchor_fraction
            module, in_shape, stride = _config(kind, rng, near if anchored else ())
            n_params = sum(p.numel() for p in module.parameters())
            if int(np.prod(in_shape)) > max_elems or (kind == "fc" and n_params > max_fc_params):
                continue
            x = torch.rand((1,) + in_shape)
            module.eval()
            info, y = describe_layer(0, f"sweep.{kind}.{len(out)}", module, x)
            if info.macs > max_macs or y.numel() > max_elems or (anchored and any(
                    (info.G, info.K, info.O, info.I) == (a.G, a.K, a.O, a.I) for a in near)):
                continue  # too big, or the very configuration of a held-out layer
            measured = time_calls([_caller(module, x)], repeats, warmup, False, min_sample_s,
                                  flush_bytes, discount_preemption, [x.sum])[0]
            out.append(LayerTiming.of(info, measured, stride=stride, anchored=int(anchored)))
            done += 1
            del module, x, y
            if progress is not None:
                progress(len(out))
    return out
