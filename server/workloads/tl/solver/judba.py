"""JUDBA, paper 000 (Yang et al., Sec. III-IV): which devices upload their
latent vectors (rho_i) and how the uplink band is split among them (w_i).

Model, per device i of M (equation numbers of the paper):

- encoding time ``t_i = |D_i| c / f_i`` (5);
- rate ``r_i = w_i B log2(1 + P_i h_i / N0)`` (6), upload time
  ``v_i / r_i = b_i / w_i`` with the full-band airtime
  ``b_i = v_i / (B log2(1 + P_i h_i / N0))`` (7);
- completion latency ``T = max over uploaders of (t_i + b_i / w_i)`` (8),
  0 when nobody uploads;
- energy ``E_i = rho_i E_U+ + (1 - rho_i) E_U-`` (1)-(3), with
  ``E_U+ = e_encode + e_trans + e_idle + e_down + e_inf`` and
  ``E_U- = e_encode + e_idle + e_down + e_tune + e_inf``;
- cost ``sum over all M devices of alpha_i E_i + (1 - alpha_i) T`` (9),
  the "weighted-sum system cost" of Fig. 4.

Where the paper is silent (assumptions, see also the module's dataclasses):

- e_encode, e_down, e_tune and e_inf are inputs (measured on a testbed).
- e_trans: eq. (6) keeps the SNR ``P_i h_i / N0`` independent of ``w_i``
  although the noise in a ``w_i B`` sub-band is ``w_i N0``; that holds when a
  device radiates ``w_i P_i`` in its sub-band (constant spectral density,
  ``P_i`` being the full-band power). Then ``e_trans = w_i P_i b_i / w_i =
  P_i b_i`` for any split, so Delta_e = e_trans - e_tune (eq. 4) is a per-device
  constant, as Observation 2 uses it.
- e_idle = P_I x waiting, waiting being the time from the end of the device's
  own encoding (and upload, if it uploads) until the edge-CNN is trained at
  ``T + t_train``, with ``t_train = sum_{uploaders} |D_j| c_edge / F`` (edge
  server speed F, ``c_edge`` training cycles per uploaded sample). This is how
  F enters the cost (Fig. 4(b)). With it, Theorem 1 is exact for P1.1: any
  other split gives a larger T and longer waits.

P1.1 (fixed rho): Theorem 1, bisection on T* of eq. (15), shares from eq.
(14) (:func:`~edgebed.server.solvers.base.equal_finish_shares`). P1.2:
exhaustive search for M <= 16; above, the Observation 2 rule (upload iff
Delta_e <= 0) followed by single-flip local improvement. Baselines are the
same solver with other deciders: "full" (all rho = 1) and "random"
(rho ~ Bernoulli(1/2)), both with the "equal" allocator.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from edgebed.proto.link_model import channel_gain
from edgebed.server.solvers.base import (
    Solver,
    SolverError,
    equal_finish_shares,
    exhaustive_binary,
    local_search_binary,
    scalar,
    vector,
)

DECIDERS = ("proposed", "full", "random")
ALLOCATORS = ("optimal", "equal")
#: Default allocator per decider (the paper's baselines split the band equally).
DEFAULT_ALLOCATOR = {"proposed": "optimal", "full": "equal", "random": "equal"}
#: Largest M searched exhaustively by the "proposed" decider.
EXACT_MAX_DEVICES = 16

_VECTORS = ("samples", "cpu_hz", "tx_power_w", "idle_power_w", "gain", "upload_bits", "alpha",
            "encode_energy_j", "download_energy_j", "tune_energy_j", "inference_energy_j")
_POSITIVE = ("samples", "upload_bits")


@dataclass(frozen=True)
class JudbaProblem:
    """One JUDBA instance. Per-device fields have one entry per device.

    Zero CPU speeds, gains, powers, bandwidth or server speed are accepted here
    and make :func:`solve` raise :class:`SolverError` naming the cause.
    """

    samples: Tuple[float, ...]              #: |D_i|, samples encoded by device i
    cycles_per_sample: float                #: c, encoder cycles per sample (eq. 5)
    cpu_hz: Tuple[float, ...]               #: f_i
    tx_power_w: Tuple[float, ...]           #: P_i, transmit power over the full band
    idle_power_w: Tuple[float, ...]         #: P_I, power while waiting
    gain: Tuple[float, ...]                 #: h_i, linear channel power gain
    noise_w: float                          #: N0, noise power (eq. 6)
    bandwidth_hz: float                     #: B
    upload_bits: Tuple[float, ...]          #: v_i = |D_i| s_i / lambda_i (eq. 7)
    alpha: Tuple[float, ...]                #: alpha_i in [0, 1], weight on energy (eq. 9)
    encode_energy_j: Tuple[float, ...]      #: e_encode
    download_energy_j: Tuple[float, ...]    #: e_down, receiving the trained edge-CNN
    tune_energy_j: Tuple[float, ...]        #: e_tune, local fine-tuning when not uploading
    inference_energy_j: Tuple[float, ...]   #: e_inf
    server_hz: float                        #: F, edge-server speed
    server_cycles_per_sample: float         #: c_edge, edge-CNN training cycles per uploaded sample

    def __post_init__(self) -> None:
        m = len(self.samples) if hasattr(self.samples, "__len__") else None
        if not m:
            raise ValueError("samples must list at least one device")
        for name in _VECTORS:
            upper = 1.0 if name == "alpha" else None
            object.__setattr__(self, name, vector(name, getattr(self, name), m,
                                                  positive=name in _POSITIVE, upper=upper))
        for name in ("cycles_per_sample", "bandwidth_hz", "server_hz", "server_cycles_per_sample"):
            object.__setattr__(self, name, scalar(name, getattr(self, name)))
        object.__setattr__(self, "noise_w", scalar("noise_w", self.noise_w, positive=True))

    @property
    def num_devices(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class JudbaSolution:
    """A decision and what the model predicts for it (all per-device tuples)."""

    decider: str                       #: "proposed", "full", "random", "given" or "brute-force"
    allocator: str                     #: "optimal" (Theorem 1) or "equal"
    rho: Tuple[int, ...]               #: uploading decision (Definition 1)
    w: Tuple[float, ...]               #: bandwidth ratio, 0 for non-uploaders
    rate_bps: Tuple[float, ...]        #: eq. (6), 0 for non-uploaders
    latency_s: float                   #: T, completion latency (eq. 8)
    edge_training_s: float             #: edge-CNN training time on the uploaded samples
    device_latency_s: Tuple[float, ...]  #: t_i + rho_i t_comm_i, the terms of eq. (8)
    energy_j: Tuple[float, ...]        #: E_i (eq. 3)
    cost: float                        #: weighted-sum cost (eq. 9 summed over devices)

    @property
    def uploaders(self) -> int:
        """N, the number of devices that upload."""
        return int(sum(self.rho))

    @property
    def T(self) -> float:  # noqa: N802 - the paper's name
        return self.latency_s


class _Model:
    """Per-device quantities of a problem as arrays, checked for feasibility."""

    def __init__(self, p: JudbaProblem) -> None:
        a = {name: np.asarray(getattr(p, name), dtype=float) for name in _VECTORS}
        if p.bandwidth_hz <= 0:
            raise SolverError("no bandwidth: bandwidth_hz is 0")
        if p.server_hz <= 0:
            raise SolverError("edge server has zero speed: server_hz is 0")
        for name, what in (("cpu_hz", "CPU speed"), ("gain", "channel gain"),
                           ("tx_power_w", "transmit power")):
            zero = np.flatnonzero(a[name] <= 0)
            if zero.size:
                raise SolverError(f"device {zero[0]} has zero {what} ({name}[{zero[0]}] = 0)")
        spectral = np.log2(1.0 + a["tx_power_w"] * a["gain"] / p.noise_w)   # eq. (6) per Hz
        bad = np.flatnonzero(~(spectral > 0))
        if bad.size:
            raise SolverError(f"device {bad[0]} has zero rate (P h / N0 underflows)")
        self.airtime_s = a["upload_bits"] / (p.bandwidth_hz * spectral)    # b_i, eq. (7)
        bad = np.flatnonzero(~np.isfinite(self.airtime_s))
        if bad.size:
            raise SolverError(f"device {bad[0]} needs an infinite upload time (rate underflows)")
        self.full_rate_bps = p.bandwidth_hz * spectral
        self.t_comp_s = a["samples"] * p.cycles_per_sample / a["cpu_hz"]   # eq. (5)
        self.train_s = a["samples"] * p.server_cycles_per_sample / p.server_hz
        self.trans_j = a["tx_power_w"] * self.airtime_s                   # e_trans (module doc)
        self.tune_j = a["tune_energy_j"]
        self.fixed_j = a["encode_energy_j"] + a["download_energy_j"] + a["inference_energy_j"]
        self.idle_w = a["idle_power_w"]
        self.alpha = a["alpha"]
        self.delta_e = self.trans_j - self.tune_j                          # Delta_e, eq. (4)


def _evaluate(m: _Model, rho: np.ndarray, allocator: str) -> dict:
    """Cost and its parts for each row of ``rho`` (K, M) under ``allocator``."""
    rho = np.atleast_2d(rho).astype(bool)
    n = rho.sum(axis=1)
    if allocator == "optimal":
        T, w = equal_finish_shares(m.t_comp_s, m.airtime_s, rho)          # eqs. (14)-(15)
    else:
        w = np.where(rho, 1.0 / np.maximum(n, 1)[:, None], 0.0)
        T = None
    tau = np.divide(m.airtime_s, w, out=np.zeros(rho.shape), where=rho)   # t_comm, eq. (7)
    busy = m.t_comp_s + tau
    if T is None:
        T = np.where(rho, busy, 0.0).max(axis=1)                           # eq. (8)
    train = (rho * m.train_s).sum(axis=1)
    ready = (T + train)[:, None]
    wait = np.where(rho, np.maximum(ready - busy, 0.0), np.maximum(ready - m.t_comp_s, 0.0))
    energy = m.fixed_j + m.idle_w * wait + np.where(rho, m.trans_j, m.tune_j)  # eqs. (1)-(3)
    cost = (m.alpha * energy).sum(axis=1) + (1.0 - m.alpha).sum() * T           # eq. (9)
    return {"cost": cost, "T": T, "w": w, "train": train, "busy": np.where(rho, busy, m.t_comp_s),
            "energy": energy}


def _batch_cost(m: _Model, allocator: str, min_uploaders: int = 0,
                rows_per_call: int = 1 << 20):
    def cost(rho: np.ndarray) -> np.ndarray:
        step = max(1, rows_per_call // rho.shape[1])
        costs = np.concatenate([_evaluate(m, rho[i:i + step], allocator)["cost"]
                                for i in range(0, rho.shape[0], step)])
        return np.where(rho.sum(axis=1) >= min_uploaders, costs, math.inf)
    return cost


def _solution(m: _Model, rho: np.ndarray, decider: str, allocator: str) -> JudbaSolution:
    r = _evaluate(m, rho[None, :], allocator)
    cost = float(r["cost"][0])
    if not math.isfinite(cost):  # internal invariant: feasibility was checked in _Model
        raise SolverError(f"cost is not finite ({cost}) for decision {rho.astype(int).tolist()}")
    w = r["w"][0]
    return JudbaSolution(
        decider=decider, allocator=allocator, rho=tuple(int(x) for x in rho),
        w=tuple(float(x) for x in w), rate_bps=tuple(float(x) for x in w * m.full_rate_bps),
        latency_s=float(r["T"][0]), edge_training_s=float(r["train"][0]),
        device_latency_s=tuple(float(x) for x in r["busy"][0]),
        energy_j=tuple(float(x) for x in r["energy"][0]), cost=cost)


def _check_allocator(allocator: str) -> None:
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")


def solve(problem: JudbaProblem, decider: str = "proposed",
          rng: Optional[np.random.Generator] = None, allocator: Optional[str] = None,
          exact_max_devices: int = EXACT_MAX_DEVICES, min_uploaders: int = 0) -> JudbaSolution:
    """Solve ``problem`` with a decider ("proposed", "full", "random") and an
    allocator ("optimal": Theorem 1; "equal"; default per :data:`DEFAULT_ALLOCATOR`).

    "proposed" is exact for ``M <= exact_max_devices`` and the Observation 2
    rule plus local improvement above; "random" needs ``rng``.
    ``min_uploaders`` adds the constraint N >= min_uploaders: a real pipeline
    needs at least one upload to train the edge CNN on, while the cost of
    eq. (9) alone can favour "nobody uploads" (T = 0).
    """
    if not 0 <= min_uploaders <= problem.num_devices:
        raise ValueError(f"min_uploaders must be in 0..{problem.num_devices}, got {min_uploaders}")
    if decider not in DECIDERS:
        raise ValueError(f"decider must be one of {DECIDERS}, got {decider!r}")
    allocator = DEFAULT_ALLOCATOR[decider] if allocator is None else allocator
    _check_allocator(allocator)
    m = _Model(problem)
    size = problem.num_devices
    if decider == "full":
        rho = np.ones(size, dtype=bool)
    elif decider == "random":
        if rng is None:
            raise ValueError("decider 'random' needs rng (a numpy Generator)")
        rho = rng.random(size) < 0.5
        short = min_uploaders - int(rho.sum())
        if short > 0:
            rho[rng.choice(np.flatnonzero(~rho), short, replace=False)] = True
    elif size <= exact_max_devices:
        rho, _ = exhaustive_binary(_batch_cost(m, allocator, min_uploaders), size)  # P1.2, exact
    else:
        # Observation 2: upload iff Delta_e <= 0; a second start from "nobody
        # uploads" (greedy additions) catches the cases where removals stall.
        cost = _batch_cost(m, allocator, min_uploaders)
        runs = [local_search_binary(cost, start) for start in (m.delta_e <= 0.0, np.zeros(size, bool))]
        rho = min(runs, key=lambda run: run[1])[0]
    return _solution(m, rho, decider, allocator)


def evaluate(problem: JudbaProblem, rho: Sequence[int], allocator: str = "optimal") -> JudbaSolution:
    """The model's prediction for a given decision ``rho`` (decider "given")."""
    _check_allocator(allocator)
    arr = np.asarray(rho)
    if arr.shape != (problem.num_devices,) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"rho must be {problem.num_devices} zeros and ones, got {rho!r}")
    return _solution(_Model(problem), arr.astype(bool), "given", allocator)


def cpu_hz_from_encode_time(samples: Sequence[float], cycles_per_sample: float,
                            encode_s: Sequence[float]) -> Tuple[float, ...]:
    """f_i that reproduces measured encoding times through eq. (5): ``|D_i| c / t_i``.

    For a testbed, where the encoding phase is timed: with ``c = 1`` the result
    is simply samples per second, and eq. (5) returns the measured times.
    """
    c = scalar("cycles_per_sample", cycles_per_sample, positive=True)
    d = vector("samples", samples, positive=True)
    t = vector("encode_s", encode_s, len(d), positive=True)
    return tuple(di * c / ti for di, ti in zip(d, t))


class JudbaSolver(Solver[JudbaProblem, JudbaSolution]):
    """:func:`solve` with its parameters fixed: ``JudbaSolver("full").solve(p)``."""

    def __init__(self, decider: str = "proposed", allocator: Optional[str] = None,
                 rng: Optional[np.random.Generator] = None,
                 exact_max_devices: int = EXACT_MAX_DEVICES) -> None:
        if decider not in DECIDERS:
            raise ValueError(f"decider must be one of {DECIDERS}, got {decider!r}")
        self.decider, self.allocator, self.rng = decider, allocator, rng
        self.exact_max_devices = exact_max_devices
        self.name = f"judba-{decider}"

    def solve(self, problem: JudbaProblem) -> JudbaSolution:
        return solve(problem, self.decider, self.rng, self.allocator, self.exact_max_devices)


# --------------------------------------------------------------------------- reference


def solve_brute_force(problem: JudbaProblem, allocator: str = "optimal") -> JudbaSolution:
    """Reference for tests: every rho in {0,1}^M, each scored by a plain scalar
    transcription of eqs. (5)-(9) with T* of eq. (15) found by scipy's brentq."""
    from scipy.optimize import brentq

    _check_allocator(allocator)
    m = _Model(problem)  # feasibility checks only
    p, size = problem, problem.num_devices
    t = [p.samples[i] * p.cycles_per_sample / p.cpu_hz[i] for i in range(size)]
    b = [p.upload_bits[i] / (p.bandwidth_hz * math.log2(1 + p.tx_power_w[i] * p.gain[i] / p.noise_w))
         for i in range(size)]

    def score(rho: Tuple[int, ...]) -> Tuple[float, list, float]:
        up = [i for i in range(size) if rho[i]]
        w = [0.0] * size
        T = 0.0
        if up and allocator == "optimal":
            def g(x: float) -> float:
                return sum(b[i] / (x - t[i]) for i in up) - 1.0
            lo, hi = max(t[i] + b[i] for i in up), max(t[i] for i in up) + sum(b[i] for i in up)
            if g(lo) <= 0 or g(hi) >= 0:  # a root at an end (one uploader, or rounding)
                T = lo if g(lo) <= 0 else hi
            else:
                T = brentq(g, lo, hi, xtol=1e-14 * hi, rtol=1e-15)
            for i in up:
                w[i] = b[i] / (T - t[i])
        for i in up:
            w[i] = w[i] if allocator == "optimal" else 1.0 / len(up)
            T = max(T, t[i] + b[i] / w[i])
        ready = T + sum(p.samples[i] * p.server_cycles_per_sample / p.server_hz for i in up)
        cost = 0.0
        for i in range(size):
            fixed = p.encode_energy_j[i] + p.download_energy_j[i] + p.inference_energy_j[i]
            if rho[i]:
                e = fixed + p.idle_power_w[i] * max(0.0, ready - t[i] - b[i] / w[i]) + p.tx_power_w[i] * b[i]
            else:
                e = fixed + p.idle_power_w[i] * max(0.0, ready - t[i]) + p.tune_energy_j[i]
            cost += p.alpha[i] * e + (1 - p.alpha[i]) * T
        return cost, w, T

    best = min(itertools.product((0, 1), repeat=size), key=lambda rho: score(rho)[0])
    sol = _solution(m, np.asarray(best, dtype=bool), "brute-force", allocator)
    cost, w, T = score(best)
    return dataclasses.replace(sol, cost=cost, w=tuple(w), latency_s=T)


# --------------------------------------------------------------------------- Table II


#: Table II of the paper.
TABLE2 = {"bandwidth_hz": 10e6, "cpu_hz": (0.1e9, 1.0e9), "tx_power_w": 0.3, "idle_power_w": 0.1,
          "noise_w": 7.9e-13, "image_bits": 800e3, "alpha": 0.5}
#: Assumed where Table II is silent (see problem_from_table2).
SAMPLES_PER_DEVICE = 100
DISTANCE_M = (50.0, 200.0)
ENCODE_CYCLES_PER_SAMPLE = 1e7
TUNE_CYCLES_PER_SAMPLE = 2e10
EDGE_TRAIN_CYCLES_PER_SAMPLE = 3e8
KAPPA = 1e-28                          # effective switched capacitance, energy = KAPPA f^2 per cycle
MODEL_BITS = 619.18e3 * 32             # Table I, lambda = 4: edge-CNN parameters as float32


def problem_from_table2(num_devices: int, rng: np.random.Generator, server_hz: float = 2.5e9,
                        compression_ratio: float = 4.0,
                        samples: Union[int, float] = SAMPLES_PER_DEVICE,
                        fading: bool = False) -> JudbaProblem:
    """A random instance with the Table II parameters (B = 10 MHz, f ~ U[0.1, 1] GHz,
    P = 0.3 W, P_I = 0.1 W, N0 = 7.9e-13 W, s = 800 kbit, alpha = 0.5) and ``lambda``.

    Assumed (not in the paper): ``samples`` images per device, so
    ``v = samples s / lambda``; distance ~ U[50, 200] m, gain from
    ``edgebed.proto.link_model.channel_gain`` (3GPP path loss with Rayleigh
    fading); c = 1e7 encoder cycles per image; compute energy KAPPA f^2 per
    cycle (KAPPA = 1e-28) for encoding (c), inference (c) and fine-tuning
    (TUNE_CYCLES_PER_SAMPLE per image); e_down = P_I x model bits (Table I's
    lambda = 4 edge CNN, MODEL_BITS, whatever ``lambda`` is) / full-band rate;
    edge-CNN training EDGE_TRAIN_CYCLES_PER_SAMPLE per uploaded image.
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be at least 1, got {num_devices}")
    m = num_devices
    f = rng.uniform(*TABLE2["cpu_hz"], size=m)
    dist = rng.uniform(*DISTANCE_M, size=m)
    gain = np.array([channel_gain(float(d), rng if fading else None) for d in dist])
    snr = TABLE2["tx_power_w"] * gain / TABLE2["noise_w"]
    per_cycle_j = KAPPA * f ** 2
    enc = per_cycle_j * ENCODE_CYCLES_PER_SAMPLE * samples

    def const(x: float) -> Tuple[float, ...]:
        return (float(x),) * m
    return JudbaProblem(
        samples=const(samples), cycles_per_sample=ENCODE_CYCLES_PER_SAMPLE, cpu_hz=tuple(f),
        tx_power_w=const(TABLE2["tx_power_w"]), idle_power_w=const(TABLE2["idle_power_w"]),
        gain=tuple(gain), noise_w=TABLE2["noise_w"], bandwidth_hz=TABLE2["bandwidth_hz"],
        upload_bits=const(samples * TABLE2["image_bits"] / compression_ratio),
        alpha=const(TABLE2["alpha"]), encode_energy_j=tuple(enc),
        download_energy_j=tuple(TABLE2["idle_power_w"] * MODEL_BITS
                                / (TABLE2["bandwidth_hz"] * np.log2(1 + snr))),
        tune_energy_j=tuple(per_cycle_j * TUNE_CYCLES_PER_SAMPLE * samples),
        inference_energy_j=tuple(enc), server_hz=server_hz,
        server_cycles_per_sample=EDGE_TRAIN_CYCLES_PER_SAMPLE)
