"""Pareto/NBD: published CDNOW estimates, likelihood forms, predictions, gradient, recovery."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.optimize import approx_fprime
from scipy.special import gammaln

from userstrata.errors import NotFittedError
from userstrata.models import ParetoNBD
from userstrata.models._base import compress_rows
from userstrata.models.btyd import paretonbd, simulate_paretonbd

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def cdnow():
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def fitted(cdnow):
    return ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def sig3(v: float) -> float:
    return float(f"{v:.3g}")


def loglik_by_integration(params, x, t_x, T):
    """ln L from the model's definition, integrating over the death time with scipy.quad:
    L = G(r+x) a^r b^s / G(r) [ (a+T)^-(r+x) (b+T)^-s + s int_{t_x}^T (a+tau)^-(r+x) (b+tau)^-(s+1) dtau ]
    (Fader & Hardie 2005, "A Note on Deriving the Pareto/NBD Model", eqs. 2-4 before 2F1)."""
    r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
    log_f0 = -(r + x) * np.log(alpha + t_x) - (s + 1) * np.log(beta + t_x)  # scale: integrand at t_x

    def f(tau):
        return np.exp(-(r + x) * np.log(alpha + tau) - (s + 1) * np.log(beta + tau) - log_f0)

    integral, _ = integrate.quad(f, t_x, T, epsabs=0, epsrel=1e-13, limit=500)
    log_e = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    log_si = np.log(s * integral) + log_f0 if integral > 0 else -np.inf
    log_c = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return log_c + np.logaddexp(log_e, log_si), np.exp(log_e - np.logaddexp(log_e, log_si))


# --------------------------------------------------------------------------- published figures


def test_cdnow_estimates_match_published(fitted):
    # Fader, Hardie & Lee (2005), Marketing Science 24(2) (the Pareto/NBD benchmark for the
    # BG/NBD), on CDNOW: r = 0.553, alpha = 10.578, s = 0.606, beta = 11.669, LL = -9595.0.
    published = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
    for name, value in published.items():
        assert sig3(fitted.params_[name]) == sig3(value), name
    assert abs(fitted.log_likelihood_ - (-9595.0)) < 0.05
    # R CLVTools on the same data (tests/testthat/test_correctness_pnbd_nocovstaticcov.R):
    # r 0.55315, alpha 10.57633, s 0.60625, beta 11.67150, LL -9594.976, and standard errors
    # r 0.0476264, alpha 0.8427222, s 0.1872594, beta 6.2105448.
    clvtools = {"r": 0.55315, "alpha": 10.57633, "s": 0.60625, "beta": 11.67150}
    for name, value in clvtools.items():
        assert fitted.params_[name] == pytest.approx(value, rel=5e-4), name
    assert abs(fitted.log_likelihood_ - (-9594.976)) < 0.01
    se = {"r": 0.0476264, "alpha": 0.8427222, "s": 0.1872594, "beta": 6.2105448}
    for name, value in se.items():
        assert fitted.standard_errors_[name] == pytest.approx(value, rel=2e-3), name


def test_predictions_match_r_btyd(fitted):
    # R BTYD walkthrough vignette (as quoted in lifetimes' tests/test_estimation.py):
    # customer x=26, t_x=30.86, T=31 expects 25.46 purchases in 52 weeks ...
    assert fitted.expected_purchases(52, 26, 30.86, 31)[0] == pytest.approx(25.46, abs=0.01)
    # ... and is alive with probability 0.9979 at r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562.
    model = ParetoNBD()
    model.params_ = {"r": 0.5534, "alpha": 10.5802, "s": 0.6061, "beta": 11.6562}
    assert model.probability_alive(26, 30.86, 31)[0] == pytest.approx(0.9979, abs=1e-3)
    # BTYD manual, pnbd.Expectation(params, t = 0..9) (BTYD's own, slightly different estimates)
    expected = [0.0, 0.05077821, 0.09916088, 0.14542507, 0.18979930,
                0.23247466, 0.27361274, 0.31335159, 0.35181024, 0.38909211]
    np.testing.assert_allclose(fitted.expected_purchases_new(np.arange(10)), expected, atol=0.005)


# --------------------------------------------------------------------------- likelihood forms


ROWS = (
    np.array([0, 0, 1, 2, 5, 26, 50, 200, 200, 3.0]),
    np.array([0, 0, 1.71, 30.43, 30.0, 30.86, 38.0, 5.0, 38.8, 38.86]),
    np.array([38.86, 27.0, 38.86, 38.86, 38.86, 31.0, 38.86, 38.86, 38.86, 38.86]),
)


@pytest.mark.parametrize(
    "params",
    [
        {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},  # alpha < beta
        {"r": 0.553, "alpha": 150.0, "s": 0.606, "beta": 1.0},  # alpha >> beta
        {"r": 0.553, "alpha": 1.0, "s": 0.606, "beta": 150.0},  # beta >> alpha
        {"r": 2.0, "alpha": 0.5, "s": 3.0, "beta": 40.0},
    ],
)
def test_closed_form_and_quadrature_equal_direct_integration(params):
    theta = np.array([params[k] for k in ("r", "alpha", "s", "beta")])
    x, t_x, T = ROWS
    reference = np.array([loglik_by_integration(params, *row)[0] for row in zip(x, t_x, T)])
    np.testing.assert_allclose(paretonbd._loglik(theta, x, t_x, T), reference, rtol=1e-11, atol=1e-10)
    quad, _ = paretonbd._quadrature(theta, x, t_x, T, gradient=False)
    np.testing.assert_allclose(quad, reference, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gradient_matches_finite_differences(cdnow, seed):
    model = ParetoNBD(penalizer=0.05 * (seed % 2))
    (x, t_x, T), w = compress_rows([cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T")])
    data = model._prepare(x, t_x, T, w)
    phi = np.random.default_rng(seed).normal(0.0, 1.2, 4)
    _, g = model._objective(phi, data, model.penalizer)
    # differentiate the closed-form (2F1) likelihood, not the quadrature the gradient uses
    def f(p):
        theta = np.exp(p)
        return -(w @ model._loglik(theta, x, t_x, T)) / w.sum() + model.penalizer * theta @ theta

    numeric = approx_fprime(phi, f, 1e-7)
    np.testing.assert_allclose(g, numeric, atol=2e-6 * max(1.0, np.abs(g).max()))


# --------------------------------------------------------------------------- predictions


def test_probability_alive_equals_integral_definition(fitted):
    # P(alive | x, t_x, T) = E / (E + s I) with I integrated numerically (FH 2005 note, eq. 18).
    x, t_x, T = ROWS
    expected = [loglik_by_integration(fitted.params_, *row)[1] for row in zip(x, t_x, T)]
    np.testing.assert_allclose(fitted.probability_alive(x, t_x, T), expected, rtol=1e-10)
    assert np.all((fitted.probability_alive(x, t_x, T) > 0) & (fitted.probability_alive(x, t_x, T) <= 1))


def test_conditional_expectation_by_hand(fitted):
    # FH 2005 note, eq. 22: (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)
    r, alpha, s, beta = (fitted.params_[k] for k in ("r", "alpha", "s", "beta"))
    x, t_x, T, t = 2.0, 30.43, 38.86, 39.0
    p_alive = loglik_by_integration(fitted.params_, x, t_x, T)[1]
    expected = (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1)) * p_alive
    assert fitted.expected_purchases(t, x, t_x, T)[0] == pytest.approx(expected, rel=1e-10)


def test_unconditional_expectation_by_hand_and_by_simulation(fitted):
    # FH 2005 note, eq. 17: E[X(t)] = r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)]
    r, alpha, s, beta = (fitted.params_[k] for k in ("r", "alpha", "s", "beta"))
    t = 39.0
    expected = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    assert fitted.expected_purchases_new(t)[0] == pytest.approx(expected, rel=1e-12)
    x, _, _ = simulate_paretonbd(200_000, fitted.params_, t, random_state=3)
    assert abs(x.mean() - expected) < 4 * x.std() / np.sqrt(len(x))


def test_a_customer_who_bought_first_now_gets_the_unconditional_expectation(cdnow, fitted):
    # T = 0: E[X(T, T+t] | 0, 0, 0] = r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)] (FH 2005
    # note, eq. 17) and P(alive) = 1. Before: InputError "T[0] = 0.0".
    r, alpha, s, beta = (fitted.params_[k] for k in ("r", "alpha", "s", "beta"))
    t = np.array([1.0, 39.0, 78.0])
    eq17 = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    zero = np.zeros_like(t)
    np.testing.assert_allclose(fitted.expected_purchases(t, zero, zero, zero), eq17, rtol=1e-12)
    assert fitted.probability_alive(0, 0, 0)[0] == 1.0
    # L(0, 0, 0) = C E = G(r) alpha^r beta^s / G(r) alpha^-r beta^-s = 1: no information, so the
    # fit leaves such rows out and is the same with or without them
    assert fitted.log_likelihood([0], [0], [0])[0] == pytest.approx(0.0, abs=1e-12)
    n = 40
    with_new = ParetoNBD().fit(np.r_[cdnow["frequency"], np.zeros(n)], np.r_[cdnow["recency"], np.zeros(n)],
                               np.r_[cdnow["T"], np.zeros(n)])
    assert with_new.params_ == fitted.params_


def test_s_equal_one_is_the_continuous_limit():
    near, at = ParetoNBD(), ParetoNBD()
    near.params_ = {"r": 0.5, "alpha": 10.0, "s": 1.0 + 1e-7, "beta": 12.0}
    at.params_ = {"r": 0.5, "alpha": 10.0, "s": 1.0, "beta": 12.0}
    t = [5.0, 50.0]
    np.testing.assert_allclose(at.expected_purchases_new(t), near.expected_purchases_new(t), rtol=1e-6)
    np.testing.assert_allclose(at.expected_purchases(10, 3, 20, 30), near.expected_purchases(10, 3, 20, 30), rtol=1e-6)


def test_extreme_inputs_stay_finite():
    # lifetimes' overflow cases: params (10.465, 0.00799, 3.0516, 2.820), heavy buyers.
    model = ParetoNBD()
    model.params_ = {"r": 10.465, "alpha": 7.98565181e-03, "s": 3.0516, "beta": 2.820}
    p = model.probability_alive([40.0, 50.0, 50.0], [5.0, 1.0, 4.0], [6.0, 37.0, 37.0])
    assert np.all(np.isfinite(p) & (p >= 0) & (p <= 1))
    rows = ([400.0, 500.0, 500.0], [5.0, 1.0, 4.0], [6.0, 37.0, 37.0])
    reference = [loglik_by_integration(model.params_, *row)[0] for row in zip(*rows)]
    np.testing.assert_allclose(model.log_likelihood(*rows), reference, rtol=1e-10)  # a density: may exceed 0
    # lifetimes' underflow case: a one-purchase change must not jump the prediction
    model.params_ = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
    left, right = model.expected_purchases(10, [132.0, 133.0], [200.0, 200.0], [200.0, 200.0])
    assert abs(left - right) < 0.05


# --------------------------------------------------------------------------- fitting


def test_weights_equal_repeated_rows(cdnow, fitted):
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    weighted = ParetoNBD().fit(grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"])
    for name in fitted.params_:
        assert weighted.params_[name] == pytest.approx(fitted.params_[name], rel=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-11)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_from_simulation(seed):
    truth = {"r": 0.6, "alpha": 8.0, "s": 1.2, "beta": 20.0}
    T = np.random.default_rng(100 + seed).integers(26, 105, 50_000).astype(float)
    x, t_x, T = simulate_paretonbd(50_000, truth, T, random_state=seed)
    model = ParetoNBD().fit(x, t_x, T)
    for name, value in truth.items():
        assert model.params_[name] == pytest.approx(value, rel=0.15), name


def test_not_fitted():
    with pytest.raises(NotFittedError, match=r"^ParetoNBD is not fitted yet; call fit\(\) first$"):
        ParetoNBD().expected_purchases(1, [1], [1.0], [2.0])
