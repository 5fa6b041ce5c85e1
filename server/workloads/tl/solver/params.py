"""Table II of paper 000 and the random instances of its Fig. 4."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from edgebed.proto.link_model import channel_gain
from edgebed.server.workloads.tl.solver.model import JudbaProblem


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
