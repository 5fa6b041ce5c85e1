"""Paper 004's numbers: the fitted delay model (eqs. 6-7) and the parameters of Fig. 4.

Per-layer delays (:func:`paper_layer_delays_s`, labelled "modeled"): eqs. (6) and
(7) in milliseconds (the paper reports their MAE, 2.78 ms; read as seconds,
AlexNet's first convolution alone would take 14 minutes on the Orange Pi),
applied to the layer factors G (output side), K (kernel), O (input channels),
I (output channels). The paper fitted them on convolutional layers; we apply
them to "conv", "fc" (G = K = 1) and "block" layers, and give layers without
weights (relu, pool, norm, dropout, flatten, ...) only the terms that scale
with the data they touch, ``4.8e-5 G^2 O`` ms and ``25.8e-7 G^2 O`` ms.

Fig. 4 as used by :func:`problem_from_fig4`, and what we had to change:

- a_h = 1, b_h = 2, B = 4, tau = 5 s, c^T = c^E = 3400, delta ~ U[2000, 2500]
  cycles/bit per device, f_s = 3400 "cycles/s" (sic; kept: it only scales the
  price), P^up = 4 W, P^lo = 4.05 W, N0 = -30 dBm/kHz = 1e-9 W/Hz,
  G = 1.2e6 (sic: a gain above 1; kept, it makes the SNR about 1e12 so the
  rate is W x 31..45 bit/s/Hz), H = 5, T_d = 0.75 s, W = 2 kHz (default only).
- Price unit (changed): with single cycles, S_{n,m} = delta f_s T^se is about
  4e5 for 50 ms of server time and the price term gamma sum_h p_h S_{n,h} of
  (23) about 1e11, eight orders above the delay cost c^T T (about 1e4), so every
  device would compute locally for every gamma of Figs. 5-10, contradicting
  them. We count cycles in units of ``PRICE_UNIT_CYCLES`` = 1e5 in (19) and
  (23): then the price is comparable to one slot's delay cost at Fig. 5's
  weights and negligible at Fig. 6's gamma = 0.001, as the paper describes.
- Server transmit power P_s of eq. (11): not in Fig. 4; we use 4 W (= P^up).
- Bandwidth: the caller chooses W (the benchmark sweeps it and says why);
  activations are real float32 sizes, so Fig. 4's 2 kHz (82 kbit/s) would take
  a minute to upload one 224 x 224 image.
- ``time_scale`` multiplies T_d and tau, for DNNs much heavier than AlexNet
  (whose whole tail takes 0.24 s on the server by eq. (7), within T_d).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from edgebed.proto.link_model import dbm_to_w
from edgebed.server.workloads.split.solver.cost import SplitDevice, SplitProblem, link_rate_bps, nonneg_array

logger = logging.getLogger(__name__)

#: Coefficients of eqs. (6) and (7) for G^2 K^2 O I, G^2 K^2 I and G^2 O, in seconds.
ETA_LOCAL_S = (0.3e-5 * 1e-3, 2.6e-5 * 1e-3, 4.8e-5 * 1e-3)
ETA_SERVER_S = (3e-7 * 1e-3, 7.4e-7 * 1e-3, 25.8e-7 * 1e-3)
#: Layer kinds the full polynomial applies to; other kinds keep only the G^2 O term.
WEIGHTED_KINDS = ("conv", "fc", "block")

FIG4 = {
    "a_h": 1.0, "b_h": 2.0, "parallel_limit": 4, "tau_s": 5.0, "c_t": 3400.0, "c_e": 3400.0,
    "delta": (2000.0, 2500.0), "f_s_hz": 3400.0, "p_up_w": 4.0, "p_local_w": 4.05,
    "bandwidth_hz": 2e3, "n0_dbm_per_khz": -30.0, "gain": 1.2e6, "slots_h": 5, "t_d_s": 0.75,
}
#: N0 of Fig. 4, -30 dBm/kHz, in W/Hz.
N0_W_PER_HZ = dbm_to_w(FIG4["n0_dbm_per_khz"]) / 1e3
#: Cycles per priced unit in eqs. (19), (23) (see the module docstring).
PRICE_UNIT_CYCLES = 1e5
#: P_s of eq. (11), not given in Fig. 4.
SERVER_POWER_W = 4.0
#: (alpha, beta, gamma) of Figs. 5, 6 (delay), 7 (energy), 8 and 9.
WEIGHTS = {"fig5": (0.42, 0.17, 0.41), "fig6": (0.95, 0.049, 0.001), "fig7": (0.1, 0.75, 0.15),
           "fig8": (0.95, 0.049, 0.001), "fig9": (0.049, 0.95, 0.001)}


def paper_layer_delays_s(kind: str, g: float, k: float, o: float, i: float) -> Tuple[float, float]:
    """(T^lo, T^se) in seconds of one layer by eqs. (6) and (7) (see the module docstring)."""
    if min(g, k, o, i) < 0:
        raise ValueError(f"layer factors must be non-negative, got G={g}, K={k}, O={o}, I={i}")
    terms = (g * g * k * k * o * i, g * g * k * k * i, g * g * o)
    if kind not in WEIGHTED_KINDS:
        terms = (0.0, 0.0, terms[2])
    return (float(np.dot(ETA_LOCAL_S, terms)), float(np.dot(ETA_SERVER_S, terms)))


@dataclass(frozen=True, eq=False)
class LayerProfile:
    """One DNN's per-layer delays and activation sizes (M layers, M+1 sizes)."""

    name: str
    t_local_s: np.ndarray
    t_server_s: np.ndarray
    out_bytes: np.ndarray      #: index 0: the raw input; index m: layer m's output
    provenance: str = "modeled"

    def __post_init__(self) -> None:
        t_lo = nonneg_array("t_local_s", self.t_local_s)
        object.__setattr__(self, "t_local_s", t_lo)
        object.__setattr__(self, "t_server_s", nonneg_array("t_server_s", self.t_server_s, t_lo.size))
        object.__setattr__(self, "out_bytes", nonneg_array("out_bytes", self.out_bytes, t_lo.size + 1))

    @property
    def num_layers(self) -> int:
        return int(self.t_local_s.size)


def modeled_profile(name: str, kinds: Sequence[str], factors: Sequence[Tuple[float, float, float, float]],
                    out_bytes: Sequence[float]) -> LayerProfile:
    """A :class:`LayerProfile` from layer kinds and (G, K, O, I) factors by eqs. (6)-(7)."""
    if len(kinds) != len(factors):
        raise ValueError(f"{name}: {len(kinds)} kinds but {len(factors)} factor tuples")
    delays = np.array([paper_layer_delays_s(kd, *f) for kd, f in zip(kinds, factors)]).reshape(-1, 2)
    return LayerProfile(name, delays[:, 0], delays[:, 1], out_bytes, "modeled")


def problem_from_fig4(profiles: Union[LayerProfile, Sequence[LayerProfile]], n_devices: Optional[int] = None,
                      *, bandwidth_hz: float = FIG4["bandwidth_hz"],
                      weights: Tuple[float, float, float] = WEIGHTS["fig5"],
                      rng: Optional[np.random.Generator] = None, time_scale: float = 1.0,
                      price_unit_cycles: float = PRICE_UNIT_CYCLES,
                      server_power_w: float = SERVER_POWER_W) -> SplitProblem:
    """A :class:`SplitProblem` with Fig. 4's parameters (and the changes listed above).

    ``profiles``: one profile for ``n_devices`` identical DNNs, or one per device.
    ``rng`` draws each device's delta from U[2000, 2500] (default: a fixed seed).
    """
    if isinstance(profiles, LayerProfile):
        if n_devices is None or n_devices < 1:
            raise ValueError("n_devices must be a positive integer when one profile is given")
        profiles = [profiles] * int(n_devices)
    profiles = list(profiles)
    if not profiles or (n_devices is not None and len(profiles) != n_devices):
        raise ValueError(f"need one profile per device, got {len(profiles)} for n_devices={n_devices}")
    if time_scale <= 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    rng = np.random.default_rng(0) if rng is None else rng
    up = link_rate_bps(bandwidth_hz, FIG4["p_up_w"], FIG4["gain"], N0_W_PER_HZ)       # eq. (9)
    down = link_rate_bps(bandwidth_hz, server_power_w, FIG4["gain"], N0_W_PER_HZ)     # eq. (11)
    alpha, beta, gamma = weights
    deltas = rng.uniform(*FIG4["delta"], size=len(profiles))
    devices = tuple(
        SplitDevice(p.t_local_s, p.t_server_s, p.out_bytes, float(p.out_bytes[-1]), up, down,
                    FIG4["p_up_w"], FIG4["p_local_w"], alpha, beta, gamma, FIG4["c_t"], FIG4["c_e"],
                    float(d), FIG4["tau_s"] * time_scale)
        for p, d in zip(profiles, deltas))
    h = FIG4["slots_h"]
    return SplitProblem(devices, h, FIG4["t_d_s"] * time_scale, FIG4["parallel_limit"],
                        np.full(h, FIG4["a_h"]), np.full(h, FIG4["b_h"]), FIG4["f_s_hz"],
                        price_unit_cycles)
