"""Random instances of paper 003's Section VI-A setup (Table I).

From the paper: a cell of radius 200 m with the BS at the centre and devices
uniform in it; path loss 128.1 + 37.6 log10(d / km) dB with Rayleigh fading;
28 dBm on both links; W = 10 MHz; N0 = -174 dBm/Hz; T_f = 10 ms; b = 32 bits;
B^max = 128; CPUs at 0.7 / 1.4 / 2.1 GHz in equal numbers (Sec. VI-B);
DenseNet121's 8,062,504 parameters (Sec. VI-A).

Rates follow eqs. (5)-(6): the average over Rayleigh fading of
``W log2(1 + P h / N)``, which for ``h = g X`` with ``X ~ Exp(1)`` is
``W e^{1/snr} E1(1/snr) / ln 2`` (``fading="average"``, the default);
``"draw"`` uses one fading draw per link instead (an instantaneous rate),
``"none"`` the path loss alone. Gains, noise and rates come from
:mod:`edgebed.proto.link_model`.

Assumed where the paper gives no number (each an option):

- ``min_distance_m = 10``: the path-loss law is not used closer than that;
- ``cycles_per_sample = 3e8``: C, CPU cycles for one sample's backward pass
  (about three DenseNet121 forward passes on a 32x32 image at a few FLOPs per
  cycle), so ``C / f`` is 0.14-0.43 s;
- ``update_cycles = 2 p``: M^C, about two operations per parameter for eq. (2);
- GPU (``gpu=True``, Assumption 1): ``t_l = 30 ms`` flat up to ``B_th = 32``,
  then 1 ms per sample, on the fastest class (a desktop GPU like the paper's
  GTX 1080 Ti); slower classes scale both times by ``2.1 GHz / f_k``, and
  ``gpu_slowdown`` scales them all (e.g. 30-100 for an embedded GPU);
  M^G / f^G with ``f^G = 1e12`` FLOP/s.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy.special import exp1

from edgebed.proto.link_model import channel_gain, dbm_to_w, noise_power_w, shannon_rate_bps
from edgebed.server.workloads.feel.solver.model import (
    PAPER_FRAME_S,
    PAPER_MAX_BATCH,
    PAPER_QUANT_BITS,
    FeelProblem,
    payload_bits,
)

CELL_RADIUS_M = 200.0
BANDWIDTH_HZ = 10e6
TX_POWER_DBM = 28.0
NOISE_PSD_DBM_PER_HZ = -174.0
CPU_CLASSES_HZ = (0.7e9, 1.4e9, 2.1e9)
#: Parameter counts of the paper's three models (Sec. VI-A, as printed).
MODEL_PARAMS = {"densenet121": 8_062_504, "resnet18": 33_161_024, "mobilenetv2": 3_538_984}
CYCLES_PER_SAMPLE = 3e8
GPU_FLAT_S, GPU_THRESHOLD, GPU_S_PER_SAMPLE, GPU_FLOPS = 0.030, 32, 0.001, 1e12


def ergodic_rate_bps(bandwidth_hz: float, mean_snr: float) -> float:
    """``W E[log2(1 + snr X)]`` for ``X ~ Exp(1)`` (Rayleigh), eqs. (5)-(6)."""
    if mean_snr <= 0:
        return 0.0
    x = 1.0 / mean_snr
    if x < 500.0:
        scaled = math.exp(x) * float(exp1(x))
    else:  # e^x E1(x) ~ (1/x) sum (-1)^n n! / x^n; exp(x) would overflow
        scaled = sum((-1) ** n * math.factorial(n) / x ** (n + 1) for n in range(6))
    return bandwidth_hz * scaled / math.log(2.0)


def _rate(distance_m: float, fading: str, rng: np.random.Generator, noise_w: float, power_w: float) -> float:
    if fading == "average":
        return ergodic_rate_bps(BANDWIDTH_HZ, power_w * channel_gain(distance_m) / noise_w)
    gain = channel_gain(distance_m, rng if fading == "draw" else None)
    return shannon_rate_bps(BANDWIDTH_HZ, power_w, gain, noise_w)


def problem_from_section6(num_devices: int, rng: np.random.Generator, *, model: str = "densenet121",
                          num_params: Optional[int] = None, quant_bits: int = PAPER_QUANT_BITS,
                          cpu_hz: Optional[Sequence[float]] = None,
                          cycles_per_sample: float = CYCLES_PER_SAMPLE,
                          update_cycles: Optional[float] = None, fading: str = "average",
                          min_distance_m: float = 10.0, gpu: bool = False, gpu_slowdown: float = 1.0,
                          max_batch: int = PAPER_MAX_BATCH, **fields) -> FeelProblem:
    """A random instance: positions (and fading draws) from ``rng``.

    CPU speeds cycle through 0.7 / 1.4 / 2.1 GHz (``cpu_hz`` overrides them);
    ``num_params`` overrides ``model``'s count. Extra keyword arguments are
    :class:`FeelProblem` fields (``min_global_batch``, ``loss_decay_coef``, ...).
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be at least 1, got {num_devices}")
    if fading not in ("average", "draw", "none"):
        raise ValueError(f"fading must be 'average', 'draw' or 'none', got {fading!r}")
    if num_params is None:
        if model not in MODEL_PARAMS:
            raise ValueError(f"model must be one of {sorted(MODEL_PARAMS)}, got {model!r}")
        num_params = MODEL_PARAMS[model]
    if not 0 < min_distance_m < CELL_RADIUS_M:
        raise ValueError(f"min_distance_m must be in (0, {CELL_RADIUS_M}), got {min_distance_m}")
    k = num_devices
    f = np.asarray(cpu_hz if cpu_hz is not None else [CPU_CLASSES_HZ[i % 3] for i in range(k)], dtype=float)
    if f.shape != (k,) or np.any(f <= 0):
        raise ValueError(f"cpu_hz must hold {k} positive speeds, got {cpu_hz!r}")
    # Uniform in the annulus min_distance_m..CELL_RADIUS_M (area-uniform radius).
    r2 = rng.uniform(min_distance_m ** 2, CELL_RADIUS_M ** 2, size=k)
    dist = np.sqrt(r2)
    noise_w = noise_power_w(BANDWIDTH_HZ, NOISE_PSD_DBM_PER_HZ)
    power_w = dbm_to_w(TX_POWER_DBM)
    up = [_rate(float(d), fading, rng, noise_w, power_w) for d in dist]
    down = [_rate(float(d), fading, rng, noise_w, power_w) for d in dist]
    update_cycles = 2.0 * num_params if update_cycles is None else update_cycles
    if gpu:
        if not gpu_slowdown > 0:
            raise ValueError(f"gpu_slowdown must be positive, got {gpu_slowdown}")
        scale = gpu_slowdown * max(CPU_CLASSES_HZ) / f
        fields.setdefault("gpu_flat_s", tuple(GPU_FLAT_S * scale))
        fields.setdefault("gpu_threshold_batch", (float(GPU_THRESHOLD),) * k)
        fields.setdefault("gpu_s_per_sample", tuple(GPU_S_PER_SAMPLE * scale))
        fields.setdefault("gpu_update_s", (2.0 * num_params / GPU_FLOPS,) * k)
    fields.setdefault("uplink_frame_s", PAPER_FRAME_S)
    fields.setdefault("downlink_frame_s", PAPER_FRAME_S)
    return FeelProblem(
        cpu_s_per_sample=tuple(cycles_per_sample / f), update_s=tuple(update_cycles / f),
        uplink_bps=tuple(up), downlink_bps=tuple(down),
        gradient_bits=payload_bits(num_params, quant_bits), max_batch=max_batch, **fields)
