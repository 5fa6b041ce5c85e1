"""Eq. (5) delay model: terms, NNLS, fitting and pruning, R^2 / MAE, prediction of layers, and the
synthetic sweep it is fitted to."""
import math

import numpy as np
import pytest

from edgebed.models.split.delay_model import (TERMS, DelayModel, KindFit, design_matrix, evaluate,
                                              fit_delay_model, fit_kind, mean_abs_error, nnls, r2_score)
from edgebed.models.split.layer_profile import LayerTiming
from edgebed.models.split.layer_sweep import SWEEP_KINDS, sweep_layers
from edgebed.models.split.nets import LayerInfo


def _info(kind, G, K, O, I, parts=()):  # noqa: E741 - paper's names
    return LayerInfo(1, f"{kind}", kind, (O, G, G), (I, G, G), 4 * I * G * G, 0, G, K, O, I, tuple(parts))


def test_eq5_has_sixteen_terms_in_the_papers_order():
    assert len(TERMS) == 16 == len(set(TERMS))
    assert TERMS[:3] == ("G2K2OI", "G2K2I", "G2K2O") and TERMS[-1] == "1"
    X = design_matrix([2], [3], [5], [7])
    assert X.shape == (1, 16)
    assert X[0, 0] == 4 * 9 * 5 * 7 and X[0, TERMS.index("K2O")] == 45 and X[0, -1] == 1
    with pytest.raises(ValueError, match="unknown term"):
        design_matrix([1], [1], [1], [1], ["G3"])
    with pytest.raises(ValueError, match="equal lengths"):
        design_matrix([1, 2], [1], [1], [1])


def test_r2_and_mae_follow_footnote_1():
    y, y_hat = np.array([1.0, 2.0, 3.0, 6.0]), np.array([1.5, 2.0, 2.0, 6.0])
    ss_res, ss_tot = 0.25 + 0 + 1 + 0, np.sum((y - 3.0) ** 2)
    assert r2_score(y, y_hat) == pytest.approx(1 - ss_res / ss_tot)
    assert mean_abs_error(y, y_hat) == pytest.approx(1.5 / 4)
    assert r2_score(y, y) == 1.0
    with pytest.raises(ValueError):
        r2_score([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        mean_abs_error([1.0], [1.0, 2.0])


def test_nnls_matches_an_unconstrained_solution_when_it_is_feasible_and_clips_otherwise():
    rng = np.random.default_rng(0)
    A = rng.random((40, 5))
    x_true = np.array([0.5, 0.0, 2.0, 1.0, 0.0])
    assert np.allclose(nnls(A, A @ x_true), x_true, atol=1e-9)
    b = A @ np.array([1.0, -3.0, 0.5, 0.0, 0.0])
    x = nnls(A, b)
    assert np.all(x >= 0)
    # KKT: zero gradient on the free variables, non-positive gradient (no descent) on the bound ones.
    g = A.T @ (b - A @ x)
    assert np.all(np.abs(g[x > 0]) < 1e-8) and np.all(g[x == 0] < 1e-8)
    scipy_opt = pytest.importorskip("scipy.optimize")
    assert np.allclose(x, scipy_opt.nnls(A, b)[0], atol=1e-8)


def _synthetic(n=120, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    G = rng.integers(7, 112, n)
    K = rng.choice([1, 3, 5], n)
    O = rng.choice([16, 32, 64, 128, 256], n)  # noqa: E741
    I = rng.choice([16, 32, 64, 128, 256], n)  # noqa: E741
    # The shape of eqs. (6)-(7): three terms plus a per-call overhead.
    y = 3e-11 * G**2 * K**2 * O * I + 2.6e-10 * G**2 * K**2 * I + 4.8e-10 * G**2 * O + 2e-5
    return G, K, O, I, y * (1 + noise * rng.standard_normal(n))


def test_fit_recovers_known_coefficients_and_prunes_the_rest():
    g, k, o, i, y = _synthetic()
    fit = fit_kind("conv", g, k, o, i, y)
    assert set(fit.terms) == {"G2K2OI", "G2K2I", "G2O", "1"}
    coef = dict(zip(fit.terms, fit.coef_s))
    assert coef["G2K2OI"] == pytest.approx(3e-11, rel=1e-6)
    assert coef["G2K2I"] == pytest.approx(2.6e-10, rel=1e-6)
    assert coef["G2O"] == pytest.approx(4.8e-10, rel=1e-6)
    assert coef["1"] == pytest.approx(2e-5, rel=1e-6)
    assert fit.train_r2 == pytest.approx(1.0) and fit.rows == len(y)
    assert np.allclose(fit.predict(g, k, o, i), y)


def test_fit_with_noise_generalizes_to_held_out_rows():
    g, k, o, i, y = _synthetic(n=200, seed=1, noise=0.05)
    train, test = slice(0, 150), slice(150, None)
    fit = fit_kind("conv", g[train], k[train], o[train], i[train], y[train])
    assert all(c > 0 for c in fit.coef_s) and len(fit.terms) <= 8
    assert r2_score(y[test], fit.predict(g[test], k[test], o[test], i[test])) > 0.98
    unpruned = fit_kind("conv", g[train], k[train], o[train], i[train], y[train], prune=False)
    assert len(unpruned.terms) >= len(fit.terms)


def test_identical_terms_collapse_to_the_simplest_one():
    rng = np.random.default_rng(2)
    O = rng.integers(16, 4096, 30)  # noqa: E741
    I = rng.integers(10, 1000, 30)  # noqa: E741
    fit = fit_kind("fc", np.ones(30), np.ones(30), O, I, 2e-10 * O * I + 5e-6)
    assert set(fit.terms) == {"OI", "1"}  # G = K = 1: G2K2OI == OI, G2K2 == 1


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        fit_kind("relu", [1, 2], [1, 1], [3, 3], [3, 3], [1e-5, 2e-5])
    with pytest.raises(ValueError, match="positive"):
        fit_kind("relu", [1, 2, 3], [1, 1, 1], [3, 3, 3], [3, 3, 3], [1e-5, 0.0, 2e-5])
    with pytest.raises(ValueError, match="delays"):
        fit_delay_model([_info("relu", 1, 1, 3, 3)], [1e-5, 2e-5])


def test_delay_model_fits_per_kind_and_sums_block_parts():
    rng = np.random.default_rng(3)
    infos, ys = [], []
    for _ in range(30):
        g, o = int(rng.integers(1, 60)), int(rng.integers(3, 300))
        infos.append(_info("relu", g, 1, o, o))
        ys.append(1e-10 * g * g * o + 4e-6)
        infos.append(_info("conv", g, 3, o, 2 * o))
        ys.append(2e-11 * g * g * 9 * o * 2 * o + 1e-5)
    model = fit_delay_model(infos, ys)
    assert set(model.fits) == {"relu", "conv"}
    conv, relu = _info("conv", 10, 3, 8, 16), _info("relu", 10, 1, 16, 16)
    block = _info("block", 10, 3, 8, 16, parts=(conv, relu))
    assert model.predict(block) == pytest.approx(model.predict(conv) + model.predict(relu))
    assert model.predict(relu) == pytest.approx(1e-10 * 100 * 16 + 4e-6, rel=1e-6)
    with pytest.raises(ValueError, match="no delay model for layer kind 'pool'"):
        model.predict(_info("pool", 5, 2, 4, 4))
    metrics = evaluate(model, infos, ys)
    assert metrics["r2"] == pytest.approx(1.0) and metrics["mae_s"] < 1e-9 and metrics["n"] == 60


def test_delay_model_round_trips_through_a_dict():
    fit = KindFit("fc", ("OI", "1"), (2e-10, 5e-6), 10, 0.01, 0.99, 1e-6)
    model = DelayModel({"fc": fit}, host="h")
    again = DelayModel.from_dict(model.to_dict())
    info = _info("fc", 1, 1, 100, 10)
    assert again.predict(info) == model.predict(info) == pytest.approx(2e-10 * 1000 + 5e-6)
    bad = model.to_dict()
    bad["fits"]["fc"]["terms"] = ["X"]
    with pytest.raises(ValueError, match="unknown term"):
        DelayModel.from_dict(bad)


def test_absolute_and_relative_weighting_agree_on_exact_data():
    g, k, o, i, y = _synthetic(n=60, seed=4)
    for floor in (0.0, math.inf):
        fit = fit_kind("conv", g, k, o, i, y, floor_s=floor)
        assert r2_score(y, fit.predict(g, k, o, i)) == pytest.approx(1.0)


# --------------------------------------------------------------------------- the sweep


def _tiny_sweep(counts, seed=1):
    return sweep_layers(counts, repeats=1, warmup=0, seed=seed, max_macs=2e6, max_elems=1 << 16,
                        max_fc_params=200_000, min_sample_s=0.0, flush_bytes=1 << 20)


def test_sweep_draws_the_requested_layers_within_the_caps():
    rows = _tiny_sweep({"conv": 3, "fc": 2, "relu": 2, "add": 1})
    assert [r.info.kind for r in rows] == ["conv"] * 3 + ["fc"] * 2 + ["relu"] * 2 + ["add"]
    assert all(isinstance(r, LayerTiming) and r.median_s > 0 for r in rows)
    assert all(r.info.macs <= 2e6 for r in rows)
    assert all(r.info.O * r.info.I <= 200_000 for r in rows if r.info.kind == "fc")


def test_sweep_is_seeded_and_its_rows_fit_a_delay_model():
    counts = {"relu": 4, "pool": 4}
    first, again = _tiny_sweep(counts, seed=3), _tiny_sweep(counts, seed=3)
    assert [r.info for r in first] == [r.info for r in again]  # the same layers; timings differ
    model = fit_delay_model([r.info for r in first], [r.median_s for r in first])
    assert set(model.fits) == {"relu", "pool"}
    assert all(model.predict(r.info) >= 0 for r in first)


def test_sweep_refuses_unknown_kinds_and_bad_counts():
    assert "conv" in SWEEP_KINDS and "lstm" not in SWEEP_KINDS
    with pytest.raises(ValueError, match="unknown sweep kinds"):
        sweep_layers({"lstm": 1})
    with pytest.raises(ValueError, match="sweep counts"):
        sweep_layers({"conv": -1})
    with pytest.raises(ValueError, match="repeats"):
        sweep_layers({"conv": 1}, repeats=0)
