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

This module is the model: the problem and solution records, the cost of
any decision under an allocator ("optimal": Theorem 1, eqs. (14)-(15);
"equal"), and :func:`evaluate`. ``solve`` decides rho; ``reference`` is the
brute-force oracle of the tests; ``params`` holds Table II.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from edgebed.server.solvers.base import SolverError, equal_finish_shares, scalar, vector

ALLOCATORS = ("optimal", "equal")

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
    #: The most each device's link carries (its measured capacity; empty: no
    #: bound). A device never sends faster than its link, so the full-band
    #: rate of eq. (6) is capped there, and so is every share of it.
    rate_cap_bps: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        m = len(self.samples) if hasattr(self.samples, "__len__") else None
        if not m:
            raise ValueError("samples must list at least one device")
        if self.rate_cap_bps:
            caps = tuple(float(c) for c in self.rate_cap_bps)
            if len(caps) != m or not all(c > 0 for c in caps):
                raise ValueError(f"rate_cap_bps needs {m} positive rates (inf: no bound), got "
                                 f"{self.rate_cap_bps!r}")
            object.__setattr__(self, "rate_cap_bps", caps)
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
    uplink_bps: Tuple[float, ...]      #: eq. (6), 0 for non-uploaders
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
        self.modeled_rate_bps = p.bandwidth_hz * spectral                  # eq. (6), w = 1
        self.full_rate_bps = (np.minimum(self.modeled_rate_bps, p.rate_cap_bps)
                              if p.rate_cap_bps else self.modeled_rate_bps)
        self.airtime_s = a["upload_bits"] / self.full_rate_bps            # b_i, eq. (7)
        bad = np.flatnonzero(~np.isfinite(self.airtime_s))
        if bad.size:
            raise SolverError(f"device {bad[0]} needs an infinite upload time (rate underflows)")
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
        w=tuple(float(x) for x in w), uplink_bps=tuple(float(x) for x in w * m.full_rate_bps),
        latency_s=float(r["T"][0]), edge_training_s=float(r["train"][0]),
        device_latency_s=tuple(float(x) for x in r["busy"][0]),
        energy_j=tuple(float(x) for x in r["energy"][0]), cost=cost)


def _check_allocator(allocator: str) -> None:
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")


def evaluate(problem: JudbaProblem, rho: Sequence[int], allocator: str = "optimal") -> JudbaSolution:
    """The model's prediction for a given decision ``rho`` (decider "given")."""
    _check_allocator(allocator)
    arr = np.asarray(rho)
    if arr.shape != (problem.num_devices,) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"rho must be {problem.num_devices} zeros and ones, got {rho!r}")
    return _solution(_Model(problem), arr.astype(bool), "given", allocator)


def clipped_rates(problem: JudbaProblem) -> Dict[int, Tuple[float, float]]:
    """Devices whose modeled full-band rate (eq. 6) is above their link's
    capacity: index -> (modeled rate, the capacity it was clipped to)."""
    m = _Model(problem)
    return {i: (float(m.modeled_rate_bps[i]), float(m.full_rate_bps[i]))
            for i in range(problem.num_devices) if m.full_rate_bps[i] < m.modeled_rate_bps[i]}


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
