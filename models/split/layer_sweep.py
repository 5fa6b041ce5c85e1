"""Synthetic layer sweeps: the seeded random layers the eq. (5) delay model is fitted to.

Section 2.2.1 of Gao et al., "Task Partitioning and Offloading in DNN-Task
Enabled Mobile Edge Computing Networks" fits its layer delay model to layers
timed on the host. :func:`sweep_layers` times seeded random synthetic layers
of the kinds :mod:`.delay_model` knows, one kind after another: convolutions over output
side G, kernel K, input channels O and output channels I (and stride, with
the input side G x stride), depthwise convolutions, fully connected layers
(O inputs, I outputs), and the cheap layers (ReLU, batch norm, max/adaptive
pooling, dropout, flatten, residual add) over channels and sides. Each
synthetic layer is built, timed and freed before the next (big fc weights
would not fit all at once), so sweeps are not interleaved; each sample
starts with the caches flushed and the layer's input read again, i.e. cold
weights and a hot input as in a forward pass. Configurations above
``max_macs`` multiply-accumulates, ``max_elems`` activation elements or
``max_fc_params`` weights are skipped. Timing follows
:func:`.layer_profile.time_calls`; how many layers of each kind a run draws
is the caller's choice (the split-profile suite's presets).

:meth:`.layer_profile.LayerTiming.row` gives the ``(kind, G, K, O, I,
median_s)`` rows of the fit. Device-safe (Python 3.8, torch >= 1.10).
"""
from __future__ import annotations

import math
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from edgebed.models.split.layer_profile import (MIN_SAMPLE_S, LayerTiming, check_counts, no_grad_call,
                                               time_calls)
from edgebed.models.split.nets import LayerInfo, ResidualAdd, describe_layer

SWEEP_KINDS = ("conv", "dwconv", "fc", "relu", "norm", "pool", "dropout", "flatten", "add")
#: Smallest output side of swept convolutions: the smallest of the supported networks at
#: 224 x 224 inputs. Below it, CPU convolution libraries switch to weight-bound code paths
#: that eq. (5) cannot follow, so such layers would only blur the fit.
MIN_CONV_SIDE = 7
#: Bytes written before each sweep sample (more than the last-level caches of boards and hosts).
FLUSH_BYTES = 64 << 20


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


def sweep_layers(counts: Mapping[str, int], repeats: int = 5, warmup: int = 2,
                 seed: int = 0, max_macs: float = 2e9, max_elems: int = 1 << 23,
                 max_fc_params: int = 110_000_000, min_sample_s: float = MIN_SAMPLE_S,
                 flush_bytes: int = FLUSH_BYTES, discount_preemption: bool = False,
                 anchors: Sequence[LayerInfo] = (), anchor_fraction: float = 0.0,
                 progress: Optional[Callable[[int], None]] = None) -> List[LayerTiming]:
    """Time seeded random synthetic layers: ``counts`` maps kind -> number of layers, in
    the order drawn (kinds among :data:`SWEEP_KINDS`).

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
    counts = dict(counts)
    bad = [k for k in counts if k not in SWEEP_KINDS]
    if bad:
        raise ValueError(f"unknown sweep kinds {bad}; known kinds: {', '.join(SWEEP_KINDS)}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts.values()):
        raise ValueError(f"sweep counts must be ints >= 0, got {counts}")
    check_counts(repeats, warmup)
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
            measured = time_calls([no_grad_call(module, x)], repeats, warmup, False, min_sample_s,
                                  flush_bytes, discount_preemption, [x.sum])[0]
            out.append(LayerTiming.of(info, measured, stride=stride, anchored=int(anchored)))
            done += 1
            del module, x, y
            if progress is not None:
                progress(len(out))
    return out
