"""Split-DNN offloading game (paper 004): cost model on hand-computed instances, exact best
response vs brute force, constraints in every output, convergence, baselines, GTPOS, bad input."""
import itertools
import math

import numpy as np
import pytest

from edgebed.server.workloads.split.solver.cost import (
    DeviceStrategy,
    InfeasibleError,
    SplitDevice,
    SplitProblem,
    device_loads,
    evaluate,
    link_rate_bps,
    slot_violations,
)
from edgebed.server.workloads.split.solver.game import (
    all_local,
    all_offload,
    best_response,
    gtpos,
    random_initial,
    tpos_cai,
    tpos_uai,
)
from edgebed.server.workloads.split.solver.gtpos import _Global, queue_delays
from edgebed.server.workloads.split.solver.params import (
    PRICE_UNIT_CYCLES,
    LayerProfile,
    paper_layer_delays_s,
    problem_from_fig4,
)
from edgebed.server.workloads.split.solver.response import (
    SlotView,
    best_response_view,
    empty_view,
    random_strategy,
)


def device(t_lo=(1.0, 2.0), t_se=(0.1, 0.2), out=(1000, 500, 125), tau=100.0, delta=5.0,
           weights=(0.5, 0.3, 0.2), up=4000.0, down=2000.0):
    return SplitDevice(np.array(t_lo), np.array(t_se), np.array(out), out[-1], up, down, 3.0, 2.0,
                       *weights, 10.0, 1.0, delta, tau)


def problem(devices, h=4, t_d=2.0, b=2, f_s=10.0):
    return SplitProblem(tuple(devices), h, t_d, b, np.ones(h), np.full(h, 2.0), f_s)


def all_strategies(m, h):
    yield DeviceStrategy(m)
    for split in range(m):
        for slots in itertools.combinations_with_replacement(range(1, h + 1), m - split):
            yield DeviceStrategy(split, slots)


def random_problem(rng, n, m, h, b):
    devs = [device(t_lo=rng.uniform(0.05, 1.0, m), t_se=rng.uniform(0.01, 0.3, m),
                   out=rng.integers(100, 4000, m + 1), tau=float(rng.uniform(1.5, 6.0)),
                   delta=float(rng.uniform(1, 3)), weights=tuple(rng.dirichlet([1, 1, 1])),
                   up=float(rng.uniform(2e3, 2e4)))
            for _ in range(n)]
    return SplitProblem(tuple(devs), h, float(rng.uniform(0.6, 1.5)), b, rng.uniform(0.5, 2, h),
                        rng.uniform(0.5, 3, h), 10.0)


def exact_view(p, strategies, n):
    loads = np.array([device_loads(p, q, s) for q, s in enumerate(strategies)])
    used = np.array([[h in s.slots for h in range(1, p.slots_h + 1)] for s in strategies])
    ups = np.array([p.cycles_per_second(q) for q in range(p.num_devices)])
    mask = np.arange(p.num_devices) != n
    return SlotView(loads[mask].sum(0), (loads * ups[:, None])[mask].sum(0),
                    used[mask].sum(0) < p.parallel_limit)


# --------------------------------------------------------------------------- eqs. (8)-(13), (19)-(25)


def test_link_rate_is_eq_9():
    assert link_rate_bps(1e3, 1.0, 1.0, 1e-3) == pytest.approx(1e3)           # SNR 1 -> log2(2)
    assert link_rate_bps(2e3, 4.0, 1.2e6, 1e-9) == pytest.approx(2e3 * math.log2(1 + 2.4e12))


def test_outcome_of_one_device_by_hand():
    p = problem([device()])
    (o,) = evaluate(p, [DeviceStrategy(1, (2,))])
    # local 1 s, upload 500 B * 8 / 4000 = 1 s, slot 2 of 0.5 s, download 125 * 8 / 2000 = 0.5 s
    assert (o.local_s, o.upload_s, o.server_s, o.download_s) == pytest.approx((1.0, 1.0, 1.0, 0.5))
    assert o.delay_s == pytest.approx(3.5) and o.energy_j == pytest.approx(2 * 1 + 3 * 1)
    # S = delta f_s T^se = 5 * 10 * 0.2 = 10; p_2 = 1 + 2 / 2 * 10 = 11
    assert o.price == pytest.approx(110.0)
    assert o.cost == pytest.approx(0.5 * 10 * 3.5 + 0.3 * 1 * 5 + 0.2 * 110)


def test_prices_couple_devices_by_hand():
    p = problem([device(), device()])
    a, b = evaluate(p, [DeviceStrategy(1, (2,)), DeviceStrategy(0, (1, 2))])
    # S^1 = 5 (B's layer 1), S^2 = 10 + 10; p_1 = 1 + 2 * 5 = 11, p_2 = 1 + 1 * 20 = 21
    assert a.price == pytest.approx(21 * 10) and b.price == pytest.approx(11 * 5 + 21 * 10)
    assert b.delay_s == pytest.approx(0 + 2.0 + 1.0 + 0.5) and b.energy_j == pytest.approx(3 * 2.0)
    assert a.cost == pytest.approx(17.5 + 1.5 + 0.2 * 210)
    assert b.cost == pytest.approx(17.5 + 0.3 * 6 + 0.2 * 265)


def test_all_local_and_all_offload_terms():
    p = problem([device()])
    (o,) = all_local(p).outcomes
    assert (o.delay_s, o.energy_j, o.price, o.upload_s, o.download_s) == pytest.approx((3.0, 6.0, 0, 0, 0))
    assert o.cost == pytest.approx(0.5 * 10 * 3 + 0.3 * 6)
    sol = all_offload(p, np.random.default_rng(0))
    (s,), (o,) = sol.strategies, sol.outcomes
    assert s.split == 0 and len(s.slots) == 2 and o.local_s == 0
    assert o.upload_s == pytest.approx(8000 / 4000) and o.energy_j == pytest.approx(3 * 2.0)
    assert o.delay_s == pytest.approx(2.0 + s.last_slot * 0.5 + 0.5)


def test_price_unit_scales_cycles():
    dev = device()
    p1 = problem([dev])
    p2 = SplitProblem((dev,), 4, 2.0, 2, np.ones(4), np.full(4, 2.0), 10.0, price_unit_cycles=10.0)
    s = [DeviceStrategy(1, (2,))]
    assert evaluate(p1, s)[0].price == pytest.approx(110.0)
    assert evaluate(p2, s)[0].price == pytest.approx((1 + 1.0) * 1.0)        # S = 1 unit


def test_paper_delay_model_eqs_6_7():
    lo, se = paper_layer_delays_s("conv", 2, 3, 4, 5)
    assert lo == pytest.approx((0.3 * 720 + 2.6 * 180 + 4.8 * 16) * 1e-5 * 1e-3)
    assert se == pytest.approx((3 * 720 + 7.4 * 180 + 25.8 * 16) * 1e-7 * 1e-3)
    assert paper_layer_delays_s("relu", 2, 1, 4, 4) == pytest.approx((4.8 * 16e-8, 25.8 * 16e-10))


def test_problem_from_fig4_parameters():
    prof = LayerProfile("toy", [0.5, 0.5], [0.05, 0.05], [800, 400, 40])
    p = problem_from_fig4(prof, 3, bandwidth_hz=2e3, rng=np.random.default_rng(1))
    d = p.devices[0]
    assert (p.slots_h, p.t_d_s, p.parallel_limit, p.f_s_hz) == (5, 0.75, 4, 3400.0)
    assert p.price_unit_cycles == PRICE_UNIT_CYCLES and d.tau_s == 5.0
    assert d.uplink_bps == pytest.approx(2e3 * math.log2(1 + 4 * 1.2e6 / (2e3 * 1e-9)))
    assert all(2000 <= x.delta <= 2500 for x in p.devices)
    assert (d.c_t, d.c_e, d.p_up_w, d.p_local_w) == (3400, 3400, 4, 4.05)
    scaled = problem_from_fig4(prof, 3, time_scale=2.0)
    assert scaled.t_d_s == 1.5 and scaled.devices[0].tau_s == 10.0


# --------------------------------------------------------------------------- best response


def test_best_response_is_optimal_against_brute_force():
    rng = np.random.default_rng(11)
    checked = infeasible = 0
    for k in range(60):
        m, h, b = int(rng.integers(2, 5)), int(rng.integers(2, 4)), int(rng.integers(1, 3))
        p = random_problem(rng, 3, m, h, b)
        try:
            strategies = list(random_initial(p, rng))
        except InfeasibleError:
            continue
        n = int(rng.integers(3))
        best = math.inf
        for s in all_strategies(m, h):
            trial = strategies[:n] + [s] + strategies[n + 1:]
            o = evaluate(p, trial)[n]
            if o.feasible and not slot_violations(p, trial):
                best = min(best, o.cost)
        view = exact_view(p, strategies, n)
        if best == math.inf:
            with pytest.raises(InfeasibleError):
                best_response_view(p, n, view)
            infeasible += 1
            continue
        got, predicted = best_response_view(p, n, view)
        trial = strategies[:n] + [got] + strategies[n + 1:]
        assert not slot_violations(p, trial)
        o = evaluate(p, trial)[n]
        assert o.feasible and o.cost == pytest.approx(best, rel=1e-9), (k, got)
        assert predicted == pytest.approx(o.cost, rel=1e-9)
        assert best_response(p, n, view.others_load_s, view.others_units, view.usable) == got
        checked += 1
    assert checked >= 40


def test_random_strategies_are_feasible_and_varied():
    rng = np.random.default_rng(3)
    p = problem([device(t_lo=(0.3, 0.3, 0.3), t_se=(0.2, 0.2, 0.2), out=(100, 100, 100, 10), tau=3.0)],
                h=3, t_d=1.5)
    splits = set()
    for _ in range(200):
        s = random_strategy(p, 0, empty_view(p), rng)
        splits.add(s.split)
        assert not slot_violations(p, [s]) and evaluate(p, [s])[0].feasible
    assert splits == {0, 1, 2, 3}


# --------------------------------------------------------------------------- algorithms


@pytest.mark.parametrize("algorithm", ["cai", "uai"])
def test_games_converge_and_keep_constraints(algorithm):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        p = random_problem(rng, 4, 4, 3, 2)
        try:
            random_initial(p, np.random.default_rng(0))
        except InfeasibleError:
            continue
        sol = tpos_cai(p, rng) if algorithm == "cai" else tpos_uai(p, rng, neighbours=2)
        assert sol.converged and sol.iterations >= 1
        assert len(sol.avg_cost_history) == sol.iterations + 1
        assert not slot_violations(p, sol.strategies)
        assert all(o.feasible for o in sol.outcomes)
        for s, d in zip(sol.strategies, p.devices):                            # eq. (16)
            assert list(s.slots) == sorted(s.slots) and len(s.slots) == d.num_layers - s.split
        if algorithm == "cai":                                                 # a Nash equilibrium
            for n, o in enumerate(sol.outcomes):
                _, c = best_response_view(p, n, exact_view(p, list(sol.strategies), n))
                assert c >= o.cost * (1 - 1e-9)


def test_no_more_than_b_devices_per_slot_on_a_crowded_server():
    prof = LayerProfile("toy", [2.0, 2.0], [0.1, 0.1], [800, 400, 40])
    p = problem_from_fig4(prof, 8, bandwidth_hz=1e6, weights=(0.95, 0.049, 0.001))  # 16 of 20 places
    for sol in (tpos_cai(p, np.random.default_rng(0)), tpos_uai(p, np.random.default_rng(0)),
                all_offload(p, np.random.default_rng(0))):
        assert not slot_violations(p, sol.strategies), sol.scheme
        for h in range(1, p.slots_h + 1):                                      # eq. (27)
            assert sum(h in s.slots for s in sol.strategies) <= p.parallel_limit


def test_uai_weights_and_neighbours_are_validated():
    p = problem([device(), device(), device()])
    with pytest.raises(ValueError, match="summing to 1"):
        tpos_uai(p, np.random.default_rng(0), neighbours=1, weights=[[0.5, 0.6]] * 3)
    with pytest.raises(ValueError, match="neighbour"):
        tpos_uai(p, np.random.default_rng(0), neighbours=[[0], [0], [1]])
    sol = tpos_uai(p, np.random.default_rng(0), neighbours=[[1], [0, 2], [1]],
                   weights=[[0.5, 0.5], [0.4, 0.3, 0.3], [0.5, 0.5]])
    assert sol.converged
    assert tpos_uai(p, np.random.default_rng(0), neighbours=0).converged   # only eq. (29)'s own term


# --------------------------------------------------------------------------- GTPOS


def test_queue_delays_by_hand():
    assert list(queue_delays(np.array([0.0, 0.0]), np.array([2.0, 1.0]), 1)) == [3.0, 1.0]  # SPT
    assert list(queue_delays(np.array([0.0, 5.0]), np.array([2.0, 1.0]), 1)) == [2.0, 1.0]
    assert list(queue_delays(np.array([0.0, 0.0]), np.array([2.0, 1.0]), 2)) == [2.0, 1.0]


def test_gtpos_is_no_slower_than_any_slot_strategy_when_n_le_b():
    rng = np.random.default_rng(5)
    done = 0
    for _ in range(25):
        p = random_problem(rng, 2, 3, 2, 2)
        try:
            g = gtpos(p)
        except InfeasibleError:
            continue
        best = math.inf
        for pair in itertools.product(list(all_strategies(3, 2)), repeat=2):
            out = evaluate(p, pair)
            if all(o.feasible for o in out) and not slot_violations(p, pair):
                best = min(best, float(np.mean([o.delay_s for o in out])))
        assert g.avg_delay_s <= best + 1e-12
        schemes = [tpos_cai(p, rng), tpos_uai(p, rng), all_local(p)]
        try:
            schemes.append(all_offload(p, rng))
        except InfeasibleError:
            pass
        for sol in schemes:
            assert g.avg_delay_s <= sol.avg_delay_s + 1e-12
        done += 1
    assert done >= 10


def test_gtpos_search_matches_exhaustive_enumeration_with_a_queue():
    rng = np.random.default_rng(9)
    for _ in range(15):
        p = random_problem(rng, 3, 3, 2, 1)                                    # B = 1 < N: queueing
        g = _Global(p)
        best = min(g.key(s) for s in itertools.product(range(4), repeat=3))
        try:
            sol = gtpos(p, exact_limit=0)
        except InfeasibleError:
            assert best[0] > 0
            continue
        assert sol.avg_delay_s == pytest.approx(best[1], rel=1e-9)
        assert sol.avg_delay_s == pytest.approx(gtpos(p).avg_delay_s, rel=1e-12)


# --------------------------------------------------------------------------- bad input


def test_infeasible_instance_raises_with_a_clear_message():
    p = problem([device(tau=0.5), device()])
    for run in (lambda: tpos_cai(p, np.random.default_rng(0)), lambda: tpos_uai(p, np.random.default_rng(0)),
                lambda: gtpos(p), lambda: best_response(p, 0, np.zeros(4))):
        with pytest.raises(InfeasibleError, match=r"device 0.*tau|delay bound") as info:
            run()
        assert isinstance(info.value, ValueError)


def test_crowded_all_offload_raises():
    prof = LayerProfile("toy", [1.0], [0.2], [800, 40])
    p = problem_from_fig4(prof, 21, bandwidth_hz=1e6)            # 21 devices, 5 slots x B = 4 places
    with pytest.raises(InfeasibleError, match="all-offload"):
        all_offload(p, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs, match", [
    ({"t_se": (0.1,)}, "t_server_s has 1 entries"),
    ({"out": (1, 2)}, "out_bytes has 2 entries"),
    ({"t_lo": (1.0, float("nan"))}, "finite"),
    ({"weights": (0.5, 0.5, 0.5)}, "alpha \\+ beta \\+ gamma"),
    ({"up": 0.0}, "uplink_bps must be positive"),
])
def test_bad_device_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        device(**kwargs)


def test_bad_problem_and_strategy_input():
    with pytest.raises(ValueError, match="slots_h"):
        problem([device()], h=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        DeviceStrategy(0, (2, 1))
    p = problem([device()])
    with pytest.raises(ValueError, match="offloads 1 layers but 2 slots"):
        evaluate(p, [DeviceStrategy(1, (1, 2))])
    with pytest.raises(ValueError, match="outside 1..4"):
        evaluate(p, [DeviceStrategy(1, (5,))])
    with pytest.raises(ValueError, match="t_sigma_s"):
        best_response(p, 0, np.zeros(3))
    with pytest.raises(ValueError, match="wake_prob"):
        tpos_cai(p, np.random.default_rng(0), wake_prob=0.0)


def test_bandwidth_for_rate_inverts_eq_9():
    from edgebed.benchmarks.split_game import bandwidth_for_rate
    from edgebed.server.workloads.split.solver.params import FIG4, N0_W_PER_HZ

    w = bandwidth_for_rate(1e6)
    assert link_rate_bps(w, FIG4["p_up_w"], FIG4["gain"], N0_W_PER_HZ) == pytest.approx(1e6, rel=1e-9)
