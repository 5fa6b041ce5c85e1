"""The wireless link model every solver and emulated link uses (one copy).

Path loss 128.1 + 37.6 log10(d / km) dB (3GPP macro cell, used by papers 000,
003 and 004), optional Rayleigh fading (|g|^2 ~ Exp(1)), and the Shannon rate
W log2(1 + P h / N) with N the noise power over the occupied band.
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

THERMAL_NOISE_DBM_PER_HZ = -174.0


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** (dbm / 10.0) / 1000.0


def path_loss_db(distance_m: float) -> float:
    """128.1 + 37.6 log10(d in km)."""
    if distance_m <= 0:
        raise ValueError(f"distance must be positive, got {distance_m} m")
    return 128.1 + 37.6 * math.log10(distance_m / 1000.0)


def channel_gain(
    distance_m: float, rng: Optional[np.random.Generator] = None
) -> float:
    """Linear power gain h; with ``rng``, times an Exp(1) Rayleigh fading draw."""
    gain = 10.0 ** (-path_loss_db(distance_m) / 10.0)
    if rng is not None:
        gain *= float(rng.exponential(1.0))
    return gain


def noise_power_w(bandwidth_hz: float, psd_dbm_per_hz: float = THERMAL_NOISE_DBM_PER_HZ) -> float:
    """Noise power over ``bandwidth_hz`` for a noise density in dBm/Hz."""
    return dbm_to_w(psd_dbm_per_hz) * bandwidth_hz


def shannon_rate_bps(
    bandwidth_hz: float, tx_power_w: float, gain: float, noise_w: float
) -> float:
    """W log2(1 + P h / N)."""
    if bandwidth_hz < 0 or tx_power_w < 0 or gain < 0:
        raise ValueError(
            f"bandwidth, power and gain must be non-negative, got "
            f"W={bandwidth_hz}, P={tx_power_w}, h={gain}"
        )
    if noise_w <= 0:
        raise ValueError(f"noise power must be positive, got {noise_w} W")
    return bandwidth_hz * math.log2(1.0 + tx_power_w * gain / noise_w)


@dataclass(frozen=True)
class WirelessLink:
    """A device's radio link: distance, transmit power and band."""

    distance_m: float
    tx_power_w: float
    bandwidth_hz: float
    noise_psd_dbm_per_hz: float = THERMAL_NOISE_DBM_PER_HZ

    def gain(self, rng: Optional[np.random.Generator] = None) -> float:
        return channel_gain(self.distance_m, rng)

    def rate_bps(self, share: float = 1.0, gain: Optional[float] = None) -> float:
        """Rate with a fraction ``share`` of the band (noise scales with the band).

        ``gain`` defaults to the path-loss-only gain (no fading).
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"bandwidth share must be in [0, 1], got {share}")
        band = share * self.bandwidth_hz
        if band == 0.0:
            return 0.0
        h = self.gain() if gain is None else gain
        return shannon_rate_bps(band, self.tx_power_w, h, noise_power_w(band, self.noise_psd_dbm_per_hz))
