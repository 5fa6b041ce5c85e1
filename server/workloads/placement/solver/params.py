"""Numbers of Zhang et al., "Deep Reinforcement Learning Based Resource Management for DNN
Inference in Industrial IoT" (Section V-A, Tables III and IV), and the ones we had to choose.

Quoted (Table III, pre-trained DNNs): P_UL in [0.915, 0.938], P_UH in [0.973, 0.992],
P_DL in [0.876, 0.897], P_DH in [0.929, 0.954], S^0 in [3.5, 5.5] MB, S^1 in [9, 12] MB,
Q^0 in [15, 20] "MHz" (read: megacycles), Q^1 in [25, 30].
Quoted (Table IV): p = 30 dBm, p^e = 40 dBm, sigma^2 = -104 dBm, B = 10 MHz, B^e = 20 MHz,
C^l = 1.5 GHz, C^e = 5 GHz, S^l = 0.3 GB, S^e = 2.4 GB, R^e = 200 Mbps, R^c = 300 Mbps,
D in [40, 60] KB, T^max in [1.5, 2] s; 300 episodes of 50 steps, replay D_r = 10,000,
minibatch D_b = 64, gamma = 0.95, learning rates 1e-4 (actor) and 3e-4 (critics),
tau = 0.01, d = 2; Section V-A: 10 IGWs x 35 devices, 30 % noisy tasks, exploration and
target-smoothing noise variance rho = 0.001, clip c = 0.03.

Chosen (the paper is silent):

- Channel gains: the project's path loss 128.1 + 37.6 log10(d / km) dB, devices
  :data:`DEVICE_DISTANCE_M` from their IGW, IGWs :data:`GATEWAY_DISTANCE_M` from the BS
  (uniform draws), no fading: gamma is about 18-23 bit/s/Hz on the first hop and 10-14 on
  the second. With B shared by an IGW's 35 devices a 50 KB task uploads in about 0.07 s,
  so model transfers (0.1-0.7 s for Table III sizes at Table IV's rates) and computing
  decide whether a task meets its deadline, as the paper's Fig. 7 shows.
- 1 GB = 1e9 B, 1 MB = 1e6 B, 1 KB = 1e3 B, Mbps = 1e6 bit/s.
- Smaller instances (``--quick``: fewer gateways and devices) keep the paper's resources
  *per task*: the BS's B^e and C^e scale with N / 350, each IGW's B and C^l with K / 35
  (devices per IGW).
- Catalogue anchoring (``anchor="paper"``, the default). Our measured MNIST models are
  about 100x smaller and faster than Table III's. To study the paper's regime with them
  we scale the *resources*, never the measurements: R^c and R^e are divided by
  mean(Table III S) / mean(measured S), so a model of the catalogue's mean size takes as
  long to move as a Table III model of mean size; Q^n = mean(Table III Q) x (measured
  time of model n) / (mean measured time), so relative workloads are measured; and each
  cache keeps Table IV's ratio of capacity to the catalogue it serves (S^l = 0.3 GB for
  35 devices x (4.5 + 10.5) MB: 0.571; S^e = 2.4 GB for 350 x 15 MB: 0.457), applied to
  the distinct models its tasks can ask for (models are shared by task type).
  ``anchor="none"`` uses the measured bytes and seconds with Table IV's resources as is
  (this host is the ECoS; an IGW is C^e / C^l times slower).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from edgebed.proto.link_model import channel_gain, dbm_to_w, shannon_rate_bps

from .model import (
    ECOS,
    HEAVY,
    IGW,
    LIGHT,
    Device,
    Gateway,
    ModelProfile,
    ModelSpec,
    PlacementProblem,
    PlacementProfile,
)

logger = logging.getLogger(__name__)

TABLE3 = {
    "P_UL": (0.915, 0.938),
    "P_UH": (0.973, 0.992),
    "P_DL": (0.876, 0.897),
    "P_DH": (0.929, 0.954),
    "S0_bytes": (3.5e6, 5.5e6),
    "S1_bytes": (9e6, 12e6),
    "Q0_cycles": (15e6, 20e6),
    "Q1_cycles": (25e6, 30e6),
}
TABLE4 = {
    "p_dbm": 30.0,
    "p_e_dbm": 40.0,
    "noise_dbm": -104.0,
    "B_hz": 10e6,
    "B_e_hz": 20e6,
    "C_l_hz": 1.5e9,
    "C_e_hz": 5e9,
    "S_l_bytes": 0.3e9,
    "S_e_bytes": 2.4e9,
    "R_e_bps": 200e6,
    "R_c_bps": 300e6,
    "D_bytes": (40e3, 60e3),
    "T_max_s": (1.5, 2.0),
}
#: Table IV's training length. The learners' own settings (replay, minibatch, rates, tau, d,
#: noise, layers) are ``edgebed.server.workloads.placement.agents.PAPER``.
LEARNING = {"episodes": 300, "steps": 50}
PAPER_GATEWAYS, PAPER_DEVICES_PER_GATEWAY = 10, 35
PAPER_TASKS = PAPER_GATEWAYS * PAPER_DEVICES_PER_GATEWAY
NOISY_FRACTION = 0.3
DEVICE_DISTANCE_M = (20.0, 50.0)
GATEWAY_DISTANCE_M = (200.0, 400.0)
#: Table IV's cache capacity over the catalogue the node serves (module docstring).
GATEWAY_CACHE_RATIO = TABLE4["S_l_bytes"] / (PAPER_DEVICES_PER_GATEWAY * (4.5e6 + 10.5e6))
EDGE_CACHE_RATIO = TABLE4["S_e_bytes"] / (PAPER_TASKS * (4.5e6 + 10.5e6))
ANCHORS = ("paper", "none")


def spectral_efficiency(tx_power_dbm: float, distance_m: float) -> float:
    """Eq. (1): gamma = log2(1 + p |h|^2 / sigma^2) in bit/s/Hz, for Table IV's noise sigma^2
    and the project's link model (:mod:`edgebed.proto.link_model`: path loss, no fading),
    i.e. its Shannon rate over 1 Hz."""
    return shannon_rate_bps(1.0, dbm_to_w(tx_power_dbm), channel_gain(distance_m),
                            dbm_to_w(TABLE4["noise_dbm"]))


def _mid(lo_hi: Tuple[float, float]) -> float:
    return 0.5 * (lo_hi[0] + lo_hi[1])


def paper_profile(task_types: Sequence[str], rng: np.random.Generator) -> PlacementProfile:
    """Table III drawn uniformly per model (all "modeled"): the paper's own simulation inputs.

    Times are Q / C of Table IV (full node, beta = 1).
    """
    models = []
    for t in task_types:
        for level, (pu, pd, s, q) in (
            (LIGHT, ("P_UL", "P_DL", "S0_bytes", "Q0_cycles")),
            (HEAVY, ("P_UH", "P_DH", "S1_bytes", "Q1_cycles")),
        ):
            cycles = rng.uniform(*TABLE3[q])
            models.append(
                ModelProfile(
                    t,
                    level,
                    rng.uniform(*TABLE3[s]),
                    rng.uniform(*TABLE3[pu]),
                    rng.uniform(*TABLE3[pd]),
                    {IGW: cycles / TABLE4["C_l_hz"], ECOS: cycles / TABLE4["C_e_hz"]},
                )
            )
    return PlacementProfile(tuple(models), "Table III (modeled)")


@dataclass(frozen=True)
class Resources:
    """The knobs Figs. 5-7 sweep, in the paper's units (per-IGW values are per gateway).

    ``None`` keeps Table IV's value. Applied by :func:`problem_from_profile` before the
    per-task scaling and the catalogue anchoring.
    """

    B_hz: Optional[float] = None
    B_e_hz: Optional[float] = None
    C_l_hz: Optional[float] = None
    C_e_hz: Optional[float] = None
    S_l_bytes: Optional[float] = None
    S_e_bytes: Optional[float] = None
    R_c_bps: Optional[float] = None
    R_e_bps: Optional[float] = None

    def value(self, name: str) -> float:
        v = getattr(self, name)
        return TABLE4[name] if v is None else float(v)


def problem_from_profile(
    profile: PlacementProfile,
    gateways: int,
    devices_per_gateway: int,
    rng: np.random.Generator,
    resources: Resources = Resources(),
    anchor: str = "paper",
) -> PlacementProblem:
    """A Section V-A system of ``gateways`` x ``devices_per_gateway`` devices on ``profile``'s models.

    Device k of every gateway runs task type ``k mod T`` (round robin over the profile's
    types), so each IGW serves every type when K >= T. ``rng`` draws the distances.
    """
    if gateways < 1 or devices_per_gateway < 1:
        raise ValueError(
            f"need at least one gateway and one device each, got {gateways}, {devices_per_gateway}"
        )
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    types = profile.task_types
    n = gateways * devices_per_gateway
    task_scale = n / PAPER_TASKS
    gateway_scale = devices_per_gateway / PAPER_DEVICES_PER_GATEWAY

    sizes = np.array([m.size_bytes for m in profile.models])
    c_l = resources.value("C_l_hz") * gateway_scale
    c_e = resources.value("C_e_hz") * task_scale
    if anchor == "paper":
        times = np.array([m.infer_s[ECOS] for m in profile.models])
        q_mean = _mid((_mid(TABLE3["Q0_cycles"]), _mid(TABLE3["Q1_cycles"])))
        workloads = q_mean * times / times.mean()
        size_scale = _mid((_mid(TABLE3["S0_bytes"]), _mid(TABLE3["S1_bytes"]))) / sizes.mean()
    else:
        workloads = np.array([m.infer_s[ECOS] * TABLE4["C_e_hz"] for m in profile.models])
        size_scale = 1.0
    models = tuple(
        ModelSpec(m.task_type, m.level, m.size_bytes, m.acc_clean, m.acc_noisy, float(q))
        for m, q in zip(profile.models, workloads)
    )
    by_type: Dict[str, float] = {}
    for m in profile.models:
        by_type[m.task_type] = by_type.get(m.task_type, 0.0) + m.size_bytes

    gws, devs = [], []
    for i in range(gateways):
        here = [types[k % len(types)] for k in range(devices_per_gateway)]
        if anchor == "paper":
            s_l = (
                GATEWAY_CACHE_RATIO
                * sum(by_type[t] for t in set(here))
                * resources.value("S_l_bytes")
                / TABLE4["S_l_bytes"]
            )
        else:
            s_l = resources.value("S_l_bytes")
        g_e = spectral_efficiency(TABLE4["p_e_dbm"], rng.uniform(*GATEWAY_DISTANCE_M))
        gws.append(Gateway(cache_bytes=float(s_l), compute_hz=c_l, gamma_e=g_e))
        for t in here:
            g = spectral_efficiency(TABLE4["p_dbm"], rng.uniform(*DEVICE_DISTANCE_M))
            devs.append(Device(i, t, g))
    if anchor == "paper":
        s_e = EDGE_CACHE_RATIO * sum(by_type.values()) * resources.value("S_e_bytes") / TABLE4["S_e_bytes"]
    else:
        s_e = resources.value("S_e_bytes")
    return PlacementProblem(
        models=models,
        gateways=tuple(gws),
        devices=tuple(devs),
        edge_cache_bytes=float(s_e),
        edge_compute_hz=c_e,
        bandwidth_hz=resources.value("B_hz") * gateway_scale,
        edge_bandwidth_hz=resources.value("B_e_hz") * task_scale,
        cloud_rate_bps=resources.value("R_c_bps") / size_scale,
        edge_rate_bps=resources.value("R_e_bps") / size_scale,
    )


def resource_summary(problem: PlacementProblem) -> Mapping[str, float]:
    """The problem's effective resources (after scaling and anchoring), for logs and summaries."""
    return {
        "B_hz": problem.bandwidth_hz,
        "B_e_hz": problem.edge_bandwidth_hz,
        "C_l_hz": problem.gateways[0].compute_hz,
        "C_e_hz": problem.edge_compute_hz,
        "S_l_bytes": problem.gateways[0].cache_bytes,
        "S_e_bytes": problem.edge_cache_bytes,
        "R_c_bps": problem.cloud_rate_bps,
        "R_e_bps": problem.edge_rate_bps,
    }
