"""Measured local-gradient latency vs batch size, and the paper's two latency models.

Paper 003 models the time of one local gradient (step 1 of a round) as

- CPU, eq. (9): ``t = B C / f``, linear in the batch size ``B``;
  :func:`fit_cpu_linear` fits ``t = seconds_per_sample * B + fixed_s`` by
  least squares (``fixed_s`` absorbs the per-call overhead a real framework
  has; ``through_origin=True`` fits eq. (9) exactly, ``fixed_s = 0``);
- GPU, Assumption 1, eq. (27): constant ``t_l`` up to a threshold batch
  ``B_th``, then ``t_l + c (B - B_th)``; :func:`fit_gpu_piecewise` fits it
  continuous at the threshold by scanning every integer ``B_th`` between the
  smallest and largest measured batch, least squares for ``(t_l, c)`` at
  each, with ``c >= 0``.

Both report R^2 = 1 - SS_res / SS_tot on the data they were fitted to
(1.0 when the data has no spread and the fit is exact).
:func:`measure_gradient_latency` measures real forward + backward passes
(medians of :func:`time_gradients`).
Only the measurement reads a clock; the fits are pure functions of the data.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: At most this many candidate thresholds (plus the measured batches) are scanned.
MAX_SCAN = 4096


@dataclass(frozen=True)
class CpuFit:
    """Eq. (9) as fitted: ``t(B) = seconds_per_sample * B + fixed_s`` (``C / f = seconds_per_sample``)."""

    seconds_per_sample: float
    fixed_s: float
    r2: float

    def predict(self, batch: float) -> float:
        return self.seconds_per_sample * float(batch) + self.fixed_s


@dataclass(frozen=True)
class GpuFit:
    """Eq. (27) as fitted: ``flat_s`` up to ``threshold_batch``, then slope ``seconds_per_sample``.

    ``seconds_per_sample`` is 0 when no measured batch exceeds the threshold.
    """

    flat_s: float
    threshold_batch: int
    seconds_per_sample: float
    r2: float

    def predict(self, batch: float) -> float:
        b = float(batch)
        if b <= self.threshold_batch:
            return self.flat_s
        return self.flat_s + self.seconds_per_sample * (b - self.threshold_batch)


# --------------------------------------------------------------------------- measurement


def _check_batches(batch_sizes: Iterable[int]) -> List[int]:
    out: List[int] = []
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or int(b) < 1:
            raise ValueError(f"batch sizes must be positive ints, got {b!r}")
        if int(b) not in out:
            out.append(int(b))
    if not out:
        raise ValueError("batch_sizes is empty")
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_gradients(model: nn.Module, in_shape: Sequence[int], batch_sizes: Iterable[int],
                   repeats: int = 5, warmup: int = 2, num_classes: int = 10, seed: int = 0,
                   interleave: bool = True) -> Dict[int, List[float]]:
    """Seconds of every timed local gradient: ``{batch: [seconds] * repeats}``.

    Each timed call zeroes the gradients, runs the forward pass, the
    cross-entropy loss and the backward pass in train mode on uniform random
    inputs of shape ``(batch, *in_shape)`` with random labels, on the model's
    device (CUDA is synchronized before and after each call), timed with
    ``time.perf_counter``. Every batch size first gets ``warmup`` untimed
    calls. With ``interleave`` (default) the timed calls go round-robin over
    the batch sizes, ``repeats`` rounds, so a burst of load from other work
    on a shared host hits all batch sizes alike instead of bending the curve;
    otherwise each batch size's calls run back to back. Batch sizes keep the
    given order (duplicates dropped). The model's parameters, buffers,
    gradients and train/eval mode are restored afterwards.
    """
    batches = _check_batches(batch_sizes)
    shape = tuple(int(v) for v in in_shape)
    if len(shape) < 1 or any(v < 1 for v in shape):
        raise ValueError(f"in_shape must be positive ints, got {in_shape!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    inputs = {b: (torch.rand((b,) + shape, generator=gen).to(device),
                  torch.randint(0, num_classes, (b,), generator=gen).to(device)) for b in batches}

    def one(b: int) -> float:
        x, y = inputs[b]
        _sync(device)
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()
        _sync(device)
        return time.perf_counter() - t0

    was_training = model.training
    saved_buffers = [b.detach().clone() for b in model.buffers()]
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    model.train()
    times: Dict[int, List[float]] = {b: [] for b in batches}
    try:
        if interleave:
            for b in batches:
                for _ in range(warmup):
                    one(b)
            for _ in range(repeats):
                for b in batches:
                    times[b].append(one(b))
        else:
            for b in batches:
                for _ in range(warmup):
                    one(b)
                times[b] = [one(b) for _ in range(repeats)]
    finally:
        with torch.no_grad():
            for buf, old in zip(model.buffers(), saved_buffers):
                buf.copy_(old)
        for p, g in zip(model.parameters(), saved_grads):
            p.grad = g
        model.train(was_training)
    return times


def measure_gradient_latency(model: nn.Module, in_shape: Sequence[int], batch_sizes: Iterable[int],
                             repeats: int = 5, warmup: int = 2, num_classes: int = 10,
                             seed: int = 0, interleave: bool = True) -> Dict[int, float]:
    """Median seconds of one local gradient per batch size: ``{batch: seconds}``
    (the medians of :func:`time_gradients`, which says what is timed)."""
    times = time_gradients(model, in_shape, batch_sizes, repeats, warmup, num_classes, seed, interleave)
    return {b: statistics.median(ts) for b, ts in times.items()}


# --------------------------------------------------------------------------- fits


def _check_data(batches: Sequence[float], seconds: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(list(batches), dtype=float)
        y = np.asarray(list(seconds), dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batches and seconds must be numbers: {exc}") from None
    if x.ndim != 1 or y.ndim != 1 or x.size != y.size:
        raise ValueError(f"need as many latencies as batch sizes, got {x.size} batch sizes "
                         f"and {y.size} latencies")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("batch sizes and latencies must be finite")
    if np.any(x <= 0):
        raise ValueError(f"batch sizes must be positive, got {x[x <= 0].tolist()}")
    if np.any(y < 0):
        raise ValueError(f"latencies must be non-negative, got {y[y < 0].tolist()}")
    if np.unique(x).size < 2:
        raise ValueError(f"need at least 2 distinct batch sizes to fit a latency model, "
                         f"got {np.unique(x).tolist()}")
    return x, y


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    scale = max(float(np.max(np.abs(y))), 1e-300) ** 2 * y.size
    if ss_tot <= 1e-24 * scale:  # no spread in the data: perfect iff the fit is exact
        return 1.0 if ss_res <= 1e-20 * scale else 0.0
    return 1.0 - ss_res / ss_tot


def fit_cpu_linear(batches: Sequence[float], seconds: Sequence[float],
                   through_origin: bool = False) -> CpuFit:
    """Least-squares fit of eq. (9): ``seconds = seconds_per_sample * batch + fixed_s``.

    ``through_origin`` forces ``fixed_s = 0`` (eq. (9) exactly). Raises
    ``ValueError`` for mismatched lengths, non-finite or non-positive batch
    sizes, negative latencies, or fewer than 2 distinct batch sizes.
    """
    x, y = _check_data(batches, seconds)
    if through_origin:
        slope, fixed = float(np.dot(x, y) / np.dot(x, x)), 0.0
    else:
        xm, ym = x.mean(), y.mean()
        slope = float(np.dot(x - xm, y - ym) / np.dot(x - xm, x - xm))
        fixed = float(ym - slope * xm)
    return CpuFit(slope, fixed, _r2(y, slope * x + fixed))


def _hinge_fit(x: np.ndarray, y: np.ndarray, threshold: float) -> Tuple[float, float, float]:
    """Least squares ``y = flat + c * max(0, x - threshold)`` with ``c >= 0``: (flat, c, sse)."""
    h = np.maximum(0.0, x - threshold)
    if np.any(h > 0):
        hm, ym = h.mean(), y.mean()
        c = float(np.dot(h - hm, y - ym) / np.dot(h - hm, h - hm)) if np.ptp(h) > 0 else 0.0
        c = max(c, 0.0)
    else:
        c = 0.0
    flat = float(np.mean(y - c * h))
    sse = float(np.sum((y - flat - c * h) ** 2))
    return flat, c, sse


def fit_gpu_piecewise(batches: Sequence[float], seconds: Sequence[float]) -> GpuFit:
    """Fit eq. (27): flat up to an integer threshold batch, then linear, continuous.

    Every integer threshold from the smallest to the largest measured batch
    is tried; the least squared error wins, ties going to the larger
    threshold (a longer flat region explains the same data with a flat
    model). Same ``ValueError`` checks as :func:`fit_cpu_linear`.
    """
    x, y = _check_data(batches, seconds)
    lo, hi = int(math.floor(x.min())), int(math.ceil(x.max()))
    best = None
    scale = float(np.sum(y ** 2)) + 1e-300
    if hi - lo <= MAX_SCAN:
        candidates = list(range(lo, hi + 1))
    else:  # a very wide range: the measured batches plus an even grid of integers
        grid = np.linspace(lo, hi, MAX_SCAN + 1).round().astype(int).tolist()
        candidates = sorted(set(grid) | {int(round(v)) for v in x})
    for threshold in candidates:
        flat, c, sse = _hinge_fit(x, y, float(threshold))
        if best is None or sse <= best[3] + 1e-12 * scale:
            best = (threshold, flat, c, sse)
    assert best is not None
    threshold, flat, c, _ = best
    if not np.any(x > threshold):
        c = 0.0
    pred = flat + c * np.maximum(0.0, x - threshold)
    return GpuFit(flat, threshold, c, _r2(y, pred))
