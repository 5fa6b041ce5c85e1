"""Paper 003 solver (edgebed.server.workloads.feel.solver.solve): agreement with scipy's general
solver, the structure of Theorems 1-2 and Corollaries 1-2, Lemma 2, time
sharing, infeasible inputs, and every allocation scheme."""
import dataclasses
import math

import numpy as np
import pytest

from edgebed.server.workloads.feel.solver.solve import (
    SCHEMES,
    FeelProblem,
    SolverError,
    allocate,
    corollary1_bounds,
    evaluate,
    payload_bits,
    problem_from_section6,
    round_batches,
    solve_cpu,
    solve_gpu,
    solve_reference,
)
from edgebed.server.workloads.feel.solver.params import MODEL_PARAMS, ergodic_rate_bps


def section6(k, rng, **kw):
    """A Section VI-A instance with a random model, backward cost and fading mode."""
    kw.setdefault("model", str(rng.choice(sorted(MODEL_PARAMS))))
    kw.setdefault("cycles_per_sample", float(10 ** rng.uniform(8.5, 10)))
    kw.setdefault("fading", str(rng.choice(["average", "draw"])))
    return problem_from_section6(k, rng, **kw)


def hetero(k, rng, gpu=False):
    """Every field varied: offsets, caps, global bounds, exponents, GPU fits with c = 0."""
    kw = {}
    if rng.random() < 0.5:
        kw["cpu_fixed_s"] = tuple(rng.uniform(0, 2, k))
    if rng.random() < 0.4:
        kw["dataset_size"] = tuple(int(v) for v in rng.integers(1, 200, k))
    max_batch = int(rng.choice([8, 64, 128, 256]))
    caps = np.minimum(max_batch, kw.get("dataset_size", max_batch))
    if rng.random() < 0.3:
        kw["min_global_batch"] = float(rng.uniform(k, np.sum(caps)))
    if rng.random() < 0.3:
        kw["max_global_batch"] = float(rng.uniform(kw.get("min_global_batch", k), np.sum(caps)))
    if gpu:
        kw.update(gpu_flat_s=tuple(rng.uniform(0.01, 2, k)),
                  gpu_threshold_batch=tuple(rng.integers(1, 48, k).astype(float)),
                  gpu_s_per_sample=tuple(np.where(rng.random(k) < 0.1, 0.0, 10 ** rng.uniform(-4, -1, k))))
        kw.pop("max_global_batch", None)  # Lemma 2's region must be reachable
    return FeelProblem(
        cpu_s_per_sample=tuple(10 ** rng.uniform(-3, 0, k)), update_s=tuple(rng.uniform(0, 1, k)),
        uplink_bps=tuple(10 ** rng.uniform(5, 8, k)),
        downlink_bps=tuple(10 ** rng.uniform(5, 8, k)),
        gradient_bits=float(10 ** rng.uniform(5, 8)), max_batch=max_batch,
        loss_decay_exponent=float(rng.choice([0.5, 0.5, 1.0, rng.uniform(0.1, 1)])), **kw)


def small(k=3, **kw):
    base = dict(cpu_s_per_sample=(0.01, 0.02, 0.05)[:k], update_s=(0.1,) * k,
                uplink_bps=(1e7, 2e7, 5e6)[:k], downlink_bps=(2e7,) * k, gradient_bits=1e6)
    base.update(kw)
    return FeelProblem(**base)


def gap(ref, got):
    """How much better the reference's learning efficiency is (> 0: ours is worse)."""
    return (ref.relaxed.efficiency - got.relaxed.efficiency) / ref.relaxed.efficiency


# --------------------------------------------------------------------------- optimality


def test_cpu_matches_general_solver_on_random_instances():
    rng = np.random.default_rng(3)
    for i in range(36):
        k = int(rng.choice([1, 2, 3, 5, 8, 12]))
        p = section6(k, rng) if i % 2 else hetero(k, rng)
        got, ref = solve_cpu(p), solve_reference(p)
        assert gap(ref, got) <= 1e-3, (i, k, got.relaxed, ref.relaxed)
        if i % 2:  # the paper's instances: SLSQP converges, so the two agree both ways
            assert abs(gap(ref, got)) <= 1e-3, (i, k)


def test_gpu_matches_general_solver_on_full_problem_p6():
    # The reference solves P6 (B_k anywhere in [1, B^max]); agreement confirms Lemma 2 / P7.
    rng = np.random.default_rng(11)
    for i in range(14):
        k = int(rng.choice([1, 2, 4, 6]))
        p = section6(k, rng, gpu=True) if i % 2 else hetero(k, rng, gpu=True)
        got, ref = solve_gpu(p), solve_reference(p, "gpu")
        assert gap(ref, got) <= 1e-3, (i, k, got.relaxed, ref.relaxed)


def test_global_batch_is_the_best_one():
    # E(B) is unimodal: nudging B* either way (best allocation for that B) cannot help.
    p = section6(6, np.random.default_rng(5), fading="average", cycles_per_sample=3e9)
    best = solve_cpu(p).relaxed
    assert 6 < best.global_batch_size < 6 * 128
    for delta in (-5.0, -1.0, 0.0, 1.0, 5.0):   # integer global batches: the solution is executable
        b = round(best.global_batch_size) + delta
        nudged = solve_cpu(dataclasses.replace(p, min_global_batch=b, max_global_batch=b)).relaxed
        assert nudged.global_batch_size == pytest.approx(b)
        assert nudged.efficiency <= best.efficiency * (1 + 1e-12)


# --------------------------------------------------------------------------- structure


def _check_theorem1(p, sol):
    """Eq. (22) in the paper's notation, with mu* recovered from one interior device."""
    r = sol.relaxed
    bk, x = np.array(r.batch_size), np.array(r.uplink_share)
    a, s, R = np.array(p.cpu_s_per_sample), p.gradient_bits, np.array(p.uplink_bps)
    V = 1.0 / a                                    # local training speed V_k = f_k / C
    rho = V / V.sum()                              # training priority ratio rho_k
    dL = p.loss_decay_coef * r.global_batch_size ** p.loss_decay_exponent
    E = r.uplink_phase_s / dL                      # E^U*
    Tf = p.uplink_frame_s
    finish = a * bk + s / (x * R)                  # t^L + t^U, eqs. (9)-(10)
    assert np.allclose(finish, r.uplink_phase_s, rtol=1e-9)          # all gradients arrive together
    assert x.sum() == pytest.approx(1.0, rel=1e-12)                    # (17b) active
    assert bk.sum() == pytest.approx(r.global_batch_size, rel=1e-12)  # (17d)
    interior = (bk > 1 + 1e-7) & (bk < p.max_batch - 1e-7)
    assert interior.any()
    j = int(np.flatnonzero(interior)[0])
    mu = (dL * E - bk[j] / V[j]) ** 2 * rho[j] * R[j] / (dL * s * Tf)
    b22 = np.clip((dL * E - np.sqrt(dL * s * Tf * mu / (rho * R))) * V, 1, p.max_batch)
    assert np.allclose(bk, b22, rtol=1e-7, atol=1e-7)                  # eq. (22), B_k*
    tau22 = s / R / (dL * E - bk / V) * Tf
    assert np.allclose(x * Tf, tau22, rtol=1e-9)                      # eq. (22), tau_k*
    # Corollary 2 (44)-(45), with a device that cannot reach B^max contributing 0 to mu_l.
    mu_l = np.min(np.maximum(0, dL * V * E - p.max_batch) ** 2 * rho * R / (dL * s * Tf * V ** 2))
    mu_h = np.max((dL * V * E - 1) ** 2 * rho * R / (dL * s * Tf * V ** 2))
    assert mu_l * (1 - 1e-9) <= mu <= mu_h * (1 + 1e-9)
    return interior


def test_theorem1_closed_form_and_equal_finish():
    rng = np.random.default_rng(8)
    seen_clipped = False
    for k in (3, 6, 12, 30):
        p = section6(k, rng, cycles_per_sample=float(10 ** rng.uniform(8.7, 9.5)))
        interior = _check_theorem1(p, solve_cpu(p))
        seen_clipped |= not interior.all()
    assert seen_clipped  # the threshold structure was exercised, not only interior devices


def test_threshold_structure_with_both_clips():
    # Fast devices on good links hit B^max; slow ones on bad links sit at 1.
    p = small(4, cpu_s_per_sample=(1e-4, 2e-4, 0.5, 1.0), uplink_bps=(5e7, 5e7, 1e5, 2e5),
              downlink_bps=(5e7,) * 4, update_s=(0.0,) * 4, max_batch=64)
    sol = solve_cpu(p)
    assert sol.relaxed.batch_size[:2] == pytest.approx((64.0, 64.0))
    assert sol.relaxed.batch_size[2] == pytest.approx(1.0) and sol.relaxed.batch_size[3] == pytest.approx(1.0)
    assert sol.batch_size == (64, 64, 1, 1)


def test_theorem2_downlink_equal_finish():
    p = section6(8, np.random.default_rng(2))
    sol = solve_cpu(p)
    y = np.array(sol.downlink_share)
    finish = p.gradient_bits / (y * np.array(p.downlink_bps)) + np.array(p.update_s)   # eq. (26)
    assert np.allclose(finish, sol.downlink_phase_s, rtol=1e-9)
    assert y.sum() == pytest.approx(1.0, rel=1e-12)
    # eq. (13): every device is done at the uplink phase plus its own downlink and update
    assert np.allclose(sol.device_latency_s, sol.round_latency_s, rtol=1e-9)


def test_corollary1_bounds_bracket_the_uplink_phase():
    rng = np.random.default_rng(4)
    for k in (2, 5, 12):
        p = section6(k, rng)
        for b in (k, k * 10 + 1, k * 64, k * 128):
            lower, upper = corollary1_bounds(p, b)
            fixed = solve_cpu(dataclasses.replace(p, min_global_batch=b, max_global_batch=b)).relaxed
            assert lower * (1 - 1e-12) <= fixed.uplink_phase_s <= upper * (1 + 1e-12)


def test_time_sharing_and_consistency_of_every_scheme():
    rng = np.random.default_rng(6)
    for i in range(6):
        k = int(rng.integers(1, 10))
        p = section6(k, rng, gpu=True) if i % 2 else hetero(k, rng, gpu=True)
        caps = np.floor(p.batch_caps())
        for scheme in SCHEMES:
            sol = allocate(p, scheme, np.random.default_rng(i))
            b = np.array(sol.batch_size)
            assert all(isinstance(v, int) for v in sol.batch_size)
            assert np.all(b >= 1) and np.all(b <= caps) and b.sum() == sol.global_batch_size
            for shares in (sol.uplink_share, sol.downlink_share):
                assert min(shares) > 0 and sum(shares) <= 1 + 1e-12
            assert np.allclose(sol.uplink_bps, np.array(sol.uplink_share) * p.uplink_bps)
            t_k = sol.uplink_phase_s + np.array(sol.download_s) + np.array(sol.update_s)     # eq. (13)
            assert np.allclose(sol.device_latency_s, t_k)
            assert sol.round_latency_s == pytest.approx(max(sol.device_latency_s))            # eq. (14)
            assert sol.uplink_phase_s == pytest.approx(max(np.add(sol.compute_s, sol.upload_s)))
            assert sol.efficiency == pytest.approx(p.loss_decay_coef * sol.global_batch_size
                                                   ** p.loss_decay_exponent / sol.round_latency_s)
            assert math.isfinite(sol.efficiency) and sol.efficiency > 0
            again = evaluate(p, sol.batch_size, sol.uplink_share, sol.downlink_share, sol.scenario)
            assert again.round_latency_s == pytest.approx(sol.round_latency_s, rel=1e-12)


def test_proposed_beats_the_baselines_in_the_model():
    rng = np.random.default_rng(9)
    for _ in range(5):
        p = section6(6, rng, gpu=True)
        cpu, gpu = solve_cpu(p), solve_gpu(p)
        assert solve_cpu(p).efficiency >= allocate(p, "gradient-fixed").efficiency * (1 - 1e-9)
        for scheme in ("online", "full-batch", "random-batch"):
            other = allocate(p, scheme, rng)
            assert other.scenario == "gpu"
            assert gpu.relaxed.efficiency >= other.efficiency * (1 - 1e-9), scheme
        assert cpu.scenario == "cpu" and gpu.scenario == "gpu"


def test_gpu_batches_sit_in_the_compute_bound_region():
    rng = np.random.default_rng(12)
    for _ in range(8):
        p = hetero(int(rng.integers(1, 8)), rng, gpu=True)
        sol = solve_gpu(p)
        caps = np.floor(p.batch_caps())
        floor_ = np.minimum(np.ceil(p.gpu_threshold_batch), caps)
        assert np.all(np.array(sol.batch_size) >= floor_)                       # Lemma 2
        assert np.all(np.array(sol.relaxed.batch_size) >= floor_ - 1e-9)
        flat = np.array(p.gpu_s_per_sample) == 0                                # flat to B^max: take it all
        assert np.all(np.array(sol.batch_size)[flat] == caps[flat])


def test_rounding_is_integer_feasible_and_close():
    rng = np.random.default_rng(10)
    for _ in range(10):
        p = section6(int(rng.integers(2, 15)), rng)
        sol = solve_cpu(p)
        assert sol.efficiency <= sol.relaxed.efficiency * (1 + 1e-9)
        assert sol.efficiency >= 0.99 * sol.relaxed.efficiency
        assert abs(sol.global_batch_size - sol.relaxed.global_batch_size) < 1
    b = round_batches(np.array([1.4, 2.6, 3.5, 7.9]), np.ones(4), np.full(4, 8.0), 15)
    assert b.tolist() == [1, 3, 3, 8] or b.tolist() == [1, 3, 4, 7]
    assert round_batches(np.array([1.0, 8.0]), np.ones(2), np.full(2, 8.0), 9).tolist() == [1, 8]


def test_frame_length_and_coefficient_do_not_change_the_decision():
    p = section6(5, np.random.default_rng(1))
    a = solve_cpu(p)
    b = solve_cpu(dataclasses.replace(p, uplink_frame_s=0.001, downlink_frame_s=0.5, loss_decay_coef=7.0))
    assert a.batch_size == b.batch_size
    assert np.allclose(a.uplink_share, b.uplink_share) and np.allclose(a.downlink_share, b.downlink_share)
    assert b.efficiency == pytest.approx(7.0 * a.efficiency)


def test_single_device_takes_the_whole_frame():
    p = small(1)
    sol = solve_cpu(p)
    assert sol.uplink_share == pytest.approx((1.0,)) and sol.downlink_share == pytest.approx((1.0,))
    # sqrt(B) / (a B + rest) peaks at a B = rest: 0.01 B = 0.1 upload + 0.05 download + 0.1 update
    assert sol.relaxed.global_batch_size == pytest.approx(25.0) and sol.batch_size == (25,)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, cause", [
    (dict(uplink_bps=(1e7, 0.0, 5e6)), "device 1 has zero uplink rate"),
    (dict(downlink_bps=(0.0, 2e7, 2e7)), "device 0 has zero downlink rate"),
    (dict(uplink_frame_s=0.0), "uplink frame is 0 s"),
    (dict(downlink_frame_s=0.0), "downlink frame is 0 s"),
    (dict(min_global_batch=500.0), "no global batch size B satisfies the bounds"),
    (dict(max_global_batch=2.0), "no global batch size B satisfies the bounds"),
    (dict(min_global_batch=50.0, max_global_batch=40.0), "min_global_batch = 50 exceeds"),
    (dict(min_global_batch=10.2, max_global_batch=10.8), "no integer global batch size"),
    (dict(dataset_size=(1, 1, 1), min_global_batch=4.0), "no global batch size B satisfies"),
])
def test_infeasible_problems_raise_solver_error(change, cause):
    p = small(3, **change)
    for solve in (solve_cpu, solve_reference):
        with pytest.raises(SolverError, match=cause):
            solve(p)
    if "rate" in cause or "frame" in cause:
        for scheme in ("gradient-fixed", "online"):
            with pytest.raises(SolverError, match=cause):
                allocate(p, scheme)


def test_gpu_errors_name_the_cause():
    with pytest.raises(SolverError, match="GPU model of eq. \\(27\\)"):
        solve_gpu(small(3))
    p = small(3, gpu_flat_s=(0.1,) * 3, gpu_threshold_batch=(32.0,) * 3, gpu_s_per_sample=(1e-3,) * 3,
              max_global_batch=50.0)
    with pytest.raises(SolverError, match="Lemma 2 .* needs B >= 96"):
        solve_gpu(p)
    with pytest.raises(SolverError, match="zero uplink rate"):
        solve_gpu(dataclasses.replace(p, uplink_bps=(0.0, 1e6, 1e6), max_global_batch=None))


@pytest.mark.parametrize("change, field", [
    (dict(cpu_s_per_sample=(0.01, 0.0, 0.05)), "cpu_s_per_sample\\[1\\]"),
    (dict(cpu_s_per_sample=()), "cpu_s_per_sample"),
    (dict(update_s=(0.1, 0.1)), "update_s has 2 entries"),
    (dict(uplink_bps=(1e7, -1.0, 5e6)), "uplink_bps\\[1\\]"),
    (dict(downlink_bps=(1e7, float("nan"), 1.0)), "downlink_bps\\[1\\]"),
    (dict(gradient_bits=0.0), "gradient_bits"),
    (dict(cpu_fixed_s=(0.0, -1.0, 0.0)), "cpu_fixed_s\\[1\\]"),
    (dict(max_batch=12.5), "max_batch"),
    (dict(dataset_size=(10, 2.5, 3)), "dataset_size"),
    (dict(loss_decay_exponent=1.5), "loss_decay_exponent"),
    (dict(loss_decay_coef=0.0), "loss_decay_coef"),
    (dict(uplink_frame_s=-0.01), "uplink_frame_s"),
    (dict(gpu_flat_s=(0.1,) * 3), "gpu_threshold_batch"),
])
def test_bad_inputs_raise_value_error_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        small(3, **change)


def test_scheme_arguments():
    p = small(3)
    with pytest.raises(ValueError, match="scheme must be one of"):
        allocate(p, "greedy")
    with pytest.raises(ValueError, match="needs rng"):
        allocate(p, "random-batch")
    with pytest.raises(ValueError, match="fixed_batch"):
        allocate(p, "gradient-fixed", fixed_batch=0)
    fixed = allocate(p, "gradient-fixed", fixed_batch=16)
    assert fixed.batch_size == (16, 16, 16) and fixed.uplink_share == pytest.approx((1 / 3,) * 3)
    assert fixed.relaxed is None and fixed.efficiency_relaxed == fixed.efficiency
    assert allocate(p, "online").batch_size == (1, 1, 1) and allocate(p, "online").scenario == "cpu"
    capped = dataclasses.replace(p, dataset_size=(5, 200, 200))
    assert allocate(capped, "full-batch").batch_size == (5, 128, 128)
    assert set(SCHEMES) == {"proposed", "proposed-gpu", "gradient-fixed", "online", "full-batch",
                            "random-batch"}  # one table, no if-chain
    eq = allocate(p, "full-batch", slots="equal")
    assert eq.uplink_share == pytest.approx((1 / 3,) * 3)
    assert allocate(p, "full-batch").efficiency >= eq.efficiency


# --------------------------------------------------------------------------- Section VI-A


def test_section6_instances():
    rng = np.random.default_rng(0)
    p = problem_from_section6(12, rng)
    assert p.gradient_bits == payload_bits(8_062_504, 32) and p.max_batch == 128
    assert p.uplink_frame_s == p.downlink_frame_s == 0.01
    hz = 3e8 / np.array(p.cpu_s_per_sample)
    assert np.allclose(sorted(set(np.round(hz / 1e8))), [7, 14, 21]) and np.sum(np.isclose(hz, 7e8)) == 4
    # 28 dBm at 10..200 m over 10 MHz: SNR about 30..80 dB, i.e. roughly 100..270 Mbit/s
    assert 8e7 < min(p.uplink_bps) and max(p.uplink_bps) < 3e8
    assert p.uplink_bps == p.downlink_bps  # same path loss and power, averaged fading
    drawn = problem_from_section6(12, rng, fading="draw")
    assert drawn.uplink_bps != drawn.downlink_bps  # independent fading draws
    gpu = problem_from_section6(3, rng, gpu=True)
    assert gpu.has_gpu and solve_gpu(gpu).scenario == "gpu"
    with pytest.raises(ValueError, match="num_devices"):
        problem_from_section6(0, rng)


def test_ergodic_rate_matches_monte_carlo():
    rng = np.random.default_rng(1)
    for snr in (0.5, 10.0, 1000.0):
        mc = 10e6 * np.mean(np.log2(1 + snr * rng.exponential(size=400_000)))
        assert ergodic_rate_bps(10e6, snr) == pytest.approx(mc, rel=5e-3)
    assert ergodic_rate_bps(10e6, 1e-4) == pytest.approx(10e6 * 1e-4 / math.log(2), rel=1e-3)
