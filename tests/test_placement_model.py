"""The placement system model (eqs. 1-11, C1-C7), DCPU (Algorithm 1, lines 12-33) and the
paper's parameters, checked against hand-worked cases."""

import math

import numpy as np
import pytest
from edgebed.server.workloads.placement.solver import params
from edgebed.server.workloads.placement.solver.dcpu import CacheError, CachePool, dcpu, place
from edgebed.server.workloads.placement.solver.model import (
    CacheState,
    Decision,
    Device,
    Gateway,
    ModelSpec,
    PlacementProblem,
    SlotTasks,
    average_accuracy,
    check_constraints,
    predict,
)
from edgebed.proto.link_model import shannon_rate_bps


def small_problem(gateway_cache=250.0, edge_cache=150.0, devices=None):
    """1 IGW; sizes in bytes, R^c = 8 kbit/s and R^e = 4 kbit/s so a 100 B model takes 0.1 s / 0.2 s."""
    models = (
        ModelSpec("a", 0, 100.0, 0.90, 0.80, 1e6),
        ModelSpec("a", 1, 200.0, 0.95, 0.85, 2e6),
        ModelSpec("b", 0, 100.0, 0.90, 0.80, 1e6),
        ModelSpec("b", 1, 200.0, 0.95, 0.85, 2e6),
    )
    devices = devices or (Device(0, "a", 2.0), Device(0, "b", 2.0))
    return PlacementProblem(
        models=models,
        gateways=(Gateway(gateway_cache, 1e7, 4.0),),
        devices=tuple(devices),
        edge_cache_bytes=edge_cache,
        edge_compute_hz=4e7,
        bandwidth_hz=1e6,
        edge_bandwidth_hz=1e6,
        cloud_rate_bps=8e3,
        edge_rate_bps=4e3,
    )


def two_tasks(noisy=(False, True)):
    return SlotTasks(np.array([10_000.0, 10_000.0]), np.array([2.0, 2.0]), np.array(noisy))


def decision(m=(1, 0), phi=(1, 0), keep=1):
    return Decision(
        on_gateway=np.array(m),
        heavy=np.array(phi),
        alpha_l=np.array([0.5, 0.5]),
        alpha_e=np.array([0.0, 1.0]),
        beta_l=np.array([1.0, 0.0]),
        beta_e=np.array([0.0, 1.0]),
        keep=np.full((2, 4), keep),
    )


def test_spectral_efficiency_is_eq_1():
    # Eq. (1) is the shared link model's Shannon rate over 1 Hz.
    assert shannon_rate_bps(1.0, 1.0, 3.0, 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        shannon_rate_bps(1.0, 1.0, 1.0, 0.0)
    # Table IV: p = 30 dBm (1 W), sigma^2 = -104 dBm; at 1 km the path loss is 128.1 dB.
    assert params.spectral_efficiency(30.0, 1000.0) == pytest.approx(
        math.log2(1.0 + 1.0 * 10 ** -12.81 / 10 ** -13.4))


def test_hand_worked_delays_eqs_2_to_10():
    p = small_problem()
    pred = predict(p, two_tasks(), CacheState.empty(1), decision())
    # Task 0 on the IGW, heavy, cold caches: R = 0.5 * 1 MHz * 2 = 1 Mbit/s, t^l = 80 kbit / 1 Mbit/s (eq. 3);
    # model from the cloud: tau^l = tau^c + tau^e = 1600/8000 + 1600/4000 (eq. 5); c^l = 2e6 / 1e7 (eq. 6).
    assert pred.upload_s[0] == pytest.approx(0.08)
    assert pred.transfer_s[0] == pytest.approx(0.6)
    assert pred.compute_s[0] == pytest.approx(0.2)
    assert pred.delay_s[0] == pytest.approx(0.8)  # eq. (7): max(0.08, 0.6) + 0.2
    # Task 1 on the ECoS, light: t^e = 0.08 + 80 kbit / (1 MHz * 4) (eq. 4); tau^c = 800/8000; c^e = 1e6/4e7.
    assert pred.upload_s[1] == pytest.approx(0.1)
    assert pred.transfer_s[1] == pytest.approx(0.1)
    assert pred.delay_s[1] == pytest.approx(0.125)  # eq. (8) with tau^c
    assert pred.accuracy.tolist() == pytest.approx([0.95, 0.80])  # eq. (10): clean heavy, noisy light
    assert pred.meets_deadline.all()
    assert average_accuracy(pred.accuracy, pred.meets_deadline) == pytest.approx(0.875)  # eq. (11)


def test_cached_models_cost_no_transfer_and_edge_copy_shortens_the_route():
    p = small_problem()
    cache = CacheState((frozenset({"a/heavy"}),), frozenset({"b/light"}))
    pred = predict(p, two_tasks(), cache, decision())
    assert pred.transfer_s.tolist() == [0.0, 0.0]
    assert pred.delay_s[0] == pytest.approx(0.08 + 0.2)
    # The IGW lacks a/heavy but the ECaS has it: tau^e only (eq. 7's second term).
    pred = predict(p, two_tasks(), CacheState((frozenset(),), frozenset({"a/heavy"})), decision())
    assert pred.transfer_s[0] == pytest.approx(0.4)


def test_a_task_with_no_share_never_finishes():
    d = decision()
    d = Decision(d.on_gateway, d.heavy, np.array([1.0, 0.0]), d.alpha_e, d.beta_l, d.beta_e, d.keep)
    pred = predict(small_problem(), two_tasks(), CacheState.empty(1), d)
    assert math.isinf(pred.delay_s[1])
    assert not pred.meets_deadline[1]


def test_constraints_c2_to_c7():
    p = small_problem()
    assert check_constraints(p, decision()) == []
    d = decision()
    over = Decision(d.on_gateway, d.heavy, np.array([0.7, 0.7]), d.alpha_e, d.beta_l, d.beta_e, d.keep)
    assert any(v.startswith("C4") for v in check_constraints(p, over))
    both_gw = Decision(
        np.array([1, 1]), d.heavy, d.alpha_l, d.alpha_e, np.array([0.6, 0.6]), d.beta_e, d.keep
    )
    assert any(v.startswith("C5") for v in check_constraints(p, both_gw))
    heavy_gw = Decision(
        np.array([1, 1]), np.array([1, 1]), d.alpha_l, d.alpha_e, np.array([0.5, 0.5]), d.beta_e, d.keep
    )
    assert any(v.startswith("C6 gateway 0") for v in check_constraints(p, heavy_gw))  # 400 B > 250 B
    assert check_constraints(p, heavy_gw, capacity=False) == []  # C6 left to DCPU
    bad_bits = Decision(np.array([2, 0]), d.heavy, d.alpha_l, d.alpha_e, d.beta_l, d.beta_e, d.keep)
    assert any(v.startswith("C2") for v in check_constraints(p, bad_bits))


def test_each_gateway_shares_its_own_band_and_processor():
    p = small_problem()
    two = PlacementProblem(
        p.models,
        p.gateways * 2,
        (Device(0, "a", 2.0), Device(1, "b", 2.0)),
        p.edge_cache_bytes,
        p.edge_compute_hz,
        p.bandwidth_hz,
        p.edge_bandwidth_hz,
        p.cloud_rate_bps,
        p.edge_rate_bps,
    )
    d = Decision(
        np.array([1, 1]),
        np.array([0, 0]),
        np.array([0.7, 0.7]),
        np.zeros(2),
        np.array([0.9, 0.9]),
        np.zeros(2),
        np.ones((2, 4)),
    )
    assert check_constraints(two, d) == []
    # Task 0 gets 0.7 of gateway 0's band: R = 0.7 * 1 MHz * 2 (eq. 2).
    pred = predict(two, two_tasks(), CacheState.empty(2), d)
    assert pred.upload_s[0] == pytest.approx(80_000 / 1.4e6)


def test_dcpu_places_then_runs_out_of_space():
    p = small_problem()
    pool = CachePool(p)
    first = pool.step(two_tasks(), decision())
    assert [o.completed for o in first.outcomes] == [True, True]
    assert [o.reason for o in first.outcomes] == ["ok", "ok"]
    assert pool.state == CacheState((frozenset({"a/heavy"}),), frozenset({"b/light"}))
    assert set(first.placed) == {("gateway0", "a/heavy"), ("edge", "b/light")}
    # Next slot asks the IGW for a/light: 200 B held + 100 B > 250 B, so it cannot be placed (Step 2).
    second = pool.step(two_tasks(), decision(phi=(0, 0)))
    assert second.outcomes[0].reason == "no-space"
    assert not second.outcomes[0].completed
    assert second.outcomes[0].accuracy == 0.0
    assert second.outcomes[1].completed  # b/light is cached at the ECaS: no transfer


def test_dcpu_step_2_skips_models_that_arrive_after_the_deadline():
    p = small_problem()
    tasks = SlotTasks(np.array([10_000.0, 10_000.0]), np.array([0.5, 2.0]), np.array([False, False]))
    out = dcpu(p, tasks, CacheState.empty(1), decision())
    assert out.outcomes[0].reason == "late-model"  # tau^l = 0.6 s > T^max = 0.5 s
    assert "a/heavy" not in out.cache.gateways[0]


def test_dcpu_step_4_omega_deletes_and_a_shared_model_keeps_by_majority():
    p = small_problem()
    out = dcpu(p, two_tasks(), CacheState.empty(1), decision(keep=0))
    assert out.cache == CacheState.empty(1)
    assert set(out.evicted) == {("gateway0", "a/heavy"), ("edge", "b/light")}
    # Two devices of type a share a/heavy at the IGW: one votes keep, one delete -> a tie keeps it.
    shared = small_problem(devices=(Device(0, "a", 2.0), Device(0, "a", 2.0)))
    d = Decision(
        np.array([1, 1]),
        np.array([1, 1]),
        np.array([0.5, 0.5]),
        np.zeros(2),
        np.array([0.5, 0.5]),
        np.zeros(2),
        np.array([[1, 1, 1, 1], [0, 0, 0, 0]]),
    )
    out = dcpu(shared, two_tasks(), CacheState.empty(1), d)
    assert out.cache.gateways[0] == frozenset({"a/heavy"})
    assert len(out.placed) == 1  # moved once, used by both tasks
    assert all(o.completed for o in out.outcomes)


def test_cache_errors_leave_the_pool_as_it_was():
    p = small_problem()
    pool = CachePool(p)
    pool.place(0, "a/heavy")
    before = pool.state
    with pytest.raises(CacheError, match="needs 400 B"):
        pool.place(0, "b/heavy")
    with pytest.raises(CacheError, match="unknown model"):
        pool.place(0, "c/light")
    with pytest.raises(CacheError, match="unknown gateway"):
        pool.place(3, "a/light")
    with pytest.raises(ValueError):
        pool.step(
            two_tasks(),
            Decision(
                np.array([1]), np.array([1]), np.ones(1), np.ones(1), np.ones(1), np.ones(1), np.ones((1, 4))
            ),
        )
    assert pool.state == before
    with pytest.raises(CacheError, match="unknown models"):
        dcpu(p, two_tasks(), CacheState((frozenset({"zzz"}),), frozenset()), decision())
    with pytest.raises(CacheError, match="gateways"):
        dcpu(p, two_tasks(), CacheState.empty(2), decision())
    with pytest.raises(CacheError, match="capacity"):
        place(p, CacheState((frozenset({"a/heavy", "b/heavy"}),), frozenset()), 0, "a/light")


def test_a_device_under_an_unknown_gateway_is_rejected():
    with pytest.raises(ValueError, match="gateway 2"):
        small_problem(devices=(Device(2, "a", 2.0),))
    with pytest.raises(ValueError, match="no light model"):
        small_problem(devices=(Device(0, "zzz", 2.0),))


def test_problem_keeps_the_paper_resources_per_task_and_anchors_the_catalogue():
    profile = params.paper_profile(["digit", "parity", "high", "lowres"], np.random.default_rng(0))
    p = params.problem_from_profile(profile, 2, 4, np.random.default_rng(1))
    assert p.n_tasks == 8
    assert p.bandwidth_hz == pytest.approx(10e6 * 4 / 35)
    assert p.edge_compute_hz == pytest.approx(5e9 * 8 / 350)
    assert p.gateways[0].compute_hz == pytest.approx(1.5e9 * 4 / 35)
    # A model of the catalogue's mean size moves CCaS -> ECaS in Table III's mean time (7.5 MB at 300 Mbps).
    mean_size = np.mean([m.size_bytes for m in p.models])
    assert 8 * mean_size / p.cloud_rate_bps == pytest.approx(8 * 7.5e6 / 300e6)
    # Caches keep Table IV's capacity-to-catalogue ratio.
    catalogue = sum(m.size_bytes for m in p.models)
    assert p.gateways[0].cache_bytes == pytest.approx(params.GATEWAY_CACHE_RATIO * catalogue)
    assert params.GATEWAY_CACHE_RATIO == pytest.approx(0.3e9 / (35 * 15e6))
    # Spectral efficiencies follow eq. (1) with Table IV's powers and noise.
    assert 10 < p.devices[0].gamma < 30
    same = params.problem_from_profile(profile, 2, 4, np.random.default_rng(1))
    assert same.devices == p.devices


def test_unanchored_problem_uses_table_4_as_is():
    profile = params.paper_profile(["digit", "parity"], np.random.default_rng(0))
    p = params.problem_from_profile(profile, 10, 35, np.random.default_rng(1), anchor="none")
    assert p.bandwidth_hz == pytest.approx(10e6)
    assert p.edge_cache_bytes == pytest.approx(2.4e9)
    assert p.cloud_rate_bps == pytest.approx(300e6)
    with pytest.raises(ValueError, match="anchor"):
        params.problem_from_profile(profile, 1, 1, np.random.default_rng(1), anchor="bogus")
