"""JUDBA solver (paper 000): brute-force agreement, Theorem 1 constraints,
infeasible inputs, baselines vs proposed (edgebed.server.workloads.tl.solver)."""
import dataclasses
import math

import numpy as np
import pytest

from edgebed import EdgebedError
from edgebed.server.solvers import base
from edgebed.server.solvers.base import SolverError
from edgebed.server.workloads.tl.solver import (
    DECIDERS,
    JudbaProblem,
    evaluate,
    problem_from_table2,
    solve,
    solve_brute_force,
)
from edgebed.server.workloads.tl.solver.model import _Model
from edgebed.server.workloads.tl.solver.params import TABLE2


def hetero_problem(m, rng):
    """A random instance with every per-device field varied (beyond Table II)."""
    f = rng.uniform(0.1e9, 1e9, m)
    return JudbaProblem(
        samples=tuple(rng.integers(20, 200, m)), cycles_per_sample=float(rng.uniform(5e6, 2e7)),
        cpu_hz=tuple(f), tx_power_w=tuple(rng.uniform(0.1, 0.5, m)),
        idle_power_w=tuple(rng.uniform(0.0, 0.3, m)),
        gain=tuple(10 ** rng.uniform(-12, -9, m)), noise_w=7.9e-13, bandwidth_hz=10e6,
        upload_bits=tuple(rng.uniform(2e6, 4e7, m)), alpha=tuple(rng.uniform(0, 1, m)),
        encode_energy_j=tuple(rng.uniform(0, 1, m)), download_energy_j=tuple(rng.uniform(0, 1, m)),
        tune_energy_j=tuple(rng.uniform(0, 300, m)), inference_energy_j=tuple(rng.uniform(0, 1, m)),
        server_hz=float(rng.uniform(1e9, 5e9)), server_cycles_per_sample=float(rng.uniform(0, 5e8)))


def random_problem(m, rng, k):
    if k % 3 == 0:
        return hetero_problem(m, rng)
    return problem_from_table2(m, rng, server_hz=float(rng.uniform(1e9, 5e9)), fading=k % 3 == 1)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


# --------------------------------------------------------------------------- exactness


def test_proposed_matches_brute_force_on_200_instances():
    rng = np.random.default_rng(2024)
    sizes = [int(rng.integers(1, 9)) for _ in range(190)] + [9, 10, 10, 11, 11, 12, 12, 12, 12, 12]
    for k, m in enumerate(sizes):
        problem = random_problem(m, rng, k)
        got, ref = solve(problem), solve_brute_force(problem)
        assert rel(got.cost, ref.cost) <= 1e-6, (k, m, got.rho, ref.rho)


def test_a_capped_problem_matches_brute_force():
    """With measured link capacities below eq. (6)'s rates, solver and oracle agree."""
    rng = np.random.default_rng(11)
    for k in range(20):
        problem = random_problem(int(rng.integers(1, 8)), rng, k)
        modeled = _Model(problem).modeled_rate_bps
        caps = tuple(float(r) * rng.choice([0.2, 0.5, np.inf]) for r in modeled)
        capped = dataclasses.replace(problem, rate_cap_bps=caps)
        got, ref = solve(capped), solve_brute_force(capped)
        assert rel(got.cost, ref.cost) <= 1e-6, (k, got.rho, ref.rho)


def test_equal_allocator_search_matches_brute_force():
    rng = np.random.default_rng(7)
    for k in range(20):
        problem = random_problem(int(rng.integers(1, 7)), rng, k)
        got = solve(problem, "proposed", allocator="equal")
        ref = solve_brute_force(problem, allocator="equal")
        assert rel(got.cost, ref.cost) <= 1e-6


def test_theorem1_closed_form():
    # two users, t = (0, 1), b = (1, 1): 1/T + 1/(T - 1) = 1, T = (3 + sqrt 5) / 2
    T, w = base.equal_finish_shares(np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.ones((1, 2), bool))
    assert T[0] == pytest.approx((3 + math.sqrt(5)) / 2, rel=1e-12)
    assert w[0].sum() == pytest.approx(1.0, rel=1e-12) and w[0].sum() <= 1.0
    assert w[0, 1] > w[0, 0]  # the slower user gets more band (Observation 1)
    T, w = base.equal_finish_shares(np.zeros(3), np.ones(3), np.array([[1, 1, 1], [0, 0, 0]], bool))
    assert T[0] == pytest.approx(3.0, rel=1e-12) and T[1] == 0.0 and not w[1].any()


def test_optimal_allocation_meets_constraints_and_equalizes_finish_times():
    rng = np.random.default_rng(11)
    for k in range(60):
        m = int(rng.integers(1, 30))
        problem = random_problem(m, rng, k)
        rho = (rng.random(m) < 0.6).astype(int)
        sol = evaluate(problem, rho, "optimal")
        w = np.array(sol.w)
        assert np.all(w >= 0) and w.sum() <= 1.0 + 1e-12          # C1, C2 (10a-b)
        assert np.all(w[rho == 0] == 0)
        up = rho == 1
        lat = np.array(sol.device_latency_s)
        assert np.all(lat[up] <= sol.T * (1 + 1e-12))                 # deadlines (eq. 8)
        if up.any():
            assert w.sum() == pytest.approx(1.0, rel=1e-9)
            assert np.allclose(lat[up], sol.T, rtol=1e-9)               # all finish at T* (16)
            bits = np.array(problem.upload_bits)[up]
            t_comp = (np.array(problem.samples) * problem.cycles_per_sample / np.array(problem.cpu_hz))[up]
            assert np.allclose(bits / np.array(sol.uplink_bps)[up], lat[up] - t_comp, rtol=1e-9)
        else:
            assert sol.T == 0.0
        equal = evaluate(problem, rho, "equal")
        assert sol.T <= equal.T * (1 + 1e-12)
        assert sol.cost <= equal.cost * (1 + 1e-12)
        assert all(math.isfinite(x) for x in sol.energy_j + (sol.cost, sol.T))


# --------------------------------------------------------------------------- baselines


def test_baselines_never_beat_proposed():
    rng = np.random.default_rng(3)
    for k in range(40):
        m = int(rng.choice([2, 5, 8, 12, 20, 30]))
        problem = random_problem(m, rng, k)
        best = solve(problem).cost
        for decider in ("full", "random"):
            other = solve(problem, decider, rng=rng)
            assert best <= other.cost * (1 + 1e-9), (k, m, decider)
            assert other.allocator == "equal"


def test_observation2_path_beats_baselines_and_is_locally_optimal():
    rng = np.random.default_rng(5)
    for k in range(12):
        m = int(rng.integers(17, 41))
        problem = random_problem(m, rng, k)
        sol = solve(problem)
        assert sol.decider == "proposed" and sol.allocator == "optimal"
        assert sol.cost <= solve(problem, "full").cost
        assert sol.cost <= solve(problem, "random", rng=rng).cost
        if k < 3:  # no single flip is cheaper
            for j in range(m):
                flipped = list(sol.rho)
                flipped[j] = 1 - flipped[j]
                assert evaluate(problem, flipped).cost >= sol.cost * (1 - 1e-12)


def test_heuristic_close_to_exact_where_both_run():
    rng = np.random.default_rng(9)
    for k in range(15):
        problem = random_problem(int(rng.integers(6, 13)), rng, k)
        exact, heuristic = solve(problem), solve(problem, exact_max_devices=0)
        assert heuristic.cost >= exact.cost * (1 - 1e-9)
        assert heuristic.cost <= solve(problem, "full").cost


def test_deciders_as_parameters():
    rng = np.random.default_rng(1)
    problem = problem_from_table2(6, rng)
    full = solve(problem, "full")
    assert full.rho == (1,) * 6 and full.w == pytest.approx((1 / 6,) * 6)
    assert solve(problem, "full", allocator="optimal").cost <= full.cost
    a = solve(problem, "random", rng=np.random.default_rng(4))
    b = solve(problem, "random", rng=np.random.default_rng(4))
    assert a == b and b.decider == "random"
    assert set(DECIDERS) == {"proposed", "full", "random"}  # one table, no if-chain
    with pytest.raises(ValueError, match="rng"):
        solve(problem, "random")
    with pytest.raises(ValueError, match="decider"):
        solve(problem, "greedy")
    with pytest.raises(ValueError, match="allocator"):
        solve(problem, allocator="proportional")
    with pytest.raises(ValueError, match="rho"):
        evaluate(problem, [1, 0])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, message", [
    ({"bandwidth_hz": 0.0}, "no bandwidth"),
    ({"server_hz": 0.0}, "edge server has zero speed"),
    ({"gain": 3}, "device 3 has zero channel gain"),
    ({"tx_power_w": 1}, "device 1 has zero transmit power"),
    ({"cpu_hz": 2}, "device 2 has zero CPU speed"),
])
@pytest.mark.parametrize("decider", ["proposed", "full", "random", "brute-force"])
def test_infeasible_problems_raise_solver_error(change, message, decider):
    problem = problem_from_table2(5, np.random.default_rng(0))
    (name, value), = change.items()
    if isinstance(value, int):  # zero out one device's entry
        entries = list(getattr(problem, name))
        entries[value] = 0.0
        value = tuple(entries)
    problem = dataclasses.replace(problem, **{name: value})
    with pytest.raises(SolverError, match=message) as info:
        if decider == "brute-force":
            solve_brute_force(problem)
        else:
            solve(problem, decider, rng=np.random.default_rng(0))
    assert isinstance(info.value, EdgebedError) and isinstance(info.value, ValueError)


def test_underflowing_rate_is_a_solver_error():
    problem = problem_from_table2(3, np.random.default_rng(0))
    problem = dataclasses.replace(problem, gain=(1e-300,) + problem.gain[1:])
    with pytest.raises(SolverError, match="device 0 has zero rate"):
        solve(problem)


@pytest.mark.parametrize("change, field", [
    ({"alpha": (0.5, 1.5, 0.5)}, "alpha"),
    ({"gain": (1e-10, float("nan"), 1e-10)}, "gain"),
    ({"cpu_hz": (1e9, -1.0, 1e9)}, "cpu_hz"),
    ({"tune_energy_j": (1.0, 2.0)}, "tune_energy_j"),
    ({"noise_w": 0.0}, "noise_w"),
    ({"bandwidth_hz": -1.0}, "bandwidth_hz"),
    ({"upload_bits": (0.0, 1.0, 1.0)}, "upload_bits"),
    ({"samples": ()}, "samples"),
    ({"server_cycles_per_sample": float("inf")}, "server_cycles_per_sample"),
])
def test_invalid_fields_raise_value_error_naming_them(change, field):
    problem = problem_from_table2(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(problem, **change)


def test_problem_is_frozen_and_coerced():
    problem = problem_from_table2(3, np.random.default_rng(0))
    assert all(isinstance(x, float) for x in problem.samples)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.bandwidth_hz = 1.0


# --------------------------------------------------------------------------- Table II


def test_table2_instances():
    a = problem_from_table2(40, np.random.default_rng(8), server_hz=3e9)
    b = problem_from_table2(40, np.random.default_rng(8), server_hz=3e9)
    assert a == b and a.num_devices == 40 and a.server_hz == 3e9
    assert a.bandwidth_hz == TABLE2["bandwidth_hz"] == 10e6 and a.noise_w == 7.9e-13
    assert set(a.tx_power_w) == {0.3} and set(a.idle_power_w) == {0.1} and set(a.alpha) == {0.5}
    assert all(0.1e9 <= f <= 1e9 for f in a.cpu_hz)
    assert set(a.upload_bits) == {100 * 800e3 / 4}
    assert all(g > 0 for g in a.gain)


# --------------------------------------------------------------------------- base helpers


def test_binary_search_helpers():
    rows = base.all_binary(4)
    assert rows.shape == (16, 4) and len({tuple(r) for r in rows.tolist()}) == 16
    weights = np.array([3.0, -1.0, 2.0, -4.0])

    def cost(r):
        return r @ weights + 0.5 * r.sum(axis=1) ** 2
    rho, value = base.exhaustive_binary(cost, 4, chunk=3)
    assert value == min(cost(rows)) and cost(rho[None])[0] == value
    rho2, value2 = base.local_search_binary(cost, np.ones(4, bool))
    assert value2 <= cost(np.ones((1, 4), bool))[0] and value2 == pytest.approx(value)


def test_vector_and_scalar_validation():
    assert base.vector("x", [1, 2]) == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"x\[1\]"):
        base.vector("x", [1, -2])
    with pytest.raises(ValueError, match="x has 2 entries"):
        base.vector("x", [1, 2], length=3)
    with pytest.raises(ValueError, match="y must be a number"):
        base.scalar("y", "fast")


def test_cpu_speed_from_measured_encoding_time_reproduces_it():
    from edgebed.server.workloads.tl.solver import cpu_hz_from_encode_time

    problem = problem_from_table2(3, np.random.default_rng(0))
    f = cpu_hz_from_encode_time((100, 50, 10), 1.0, (2.0, 0.5, 4.0))
    assert f == (50.0, 100.0, 2.5)
    problem = dataclasses.replace(problem, samples=(100, 50, 10), cycles_per_sample=1.0, cpu_hz=f)
    sol = evaluate(problem, [0, 0, 0])
    assert sol.device_latency_s == pytest.approx((2.0, 0.5, 4.0))
    with pytest.raises(ValueError, match="encode_s"):
        cpu_hz_from_encode_time((1, 2), 1.0, (1.0, 0.0))


def test_min_uploaders_is_honoured_by_every_decider():
    rng = np.random.default_rng(5)
    for m_devices in (4, 20):
        problem = problem_from_table2(m_devices, rng)
        for decider in ("proposed", "random"):
            for k in (1, 3):
                sol = solve(problem, decider, rng=rng, min_uploaders=k)
                assert sum(sol.rho) >= k
    with pytest.raises(ValueError, match="min_uploaders"):
        solve(problem_from_table2(3, rng), min_uploaders=4)
