"""MBG/NBD: properties, closed forms against numerical integration, gradient, recovery."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.optimize import approx_fprime
from scipy.special import betaln, gammaln, hyp2f1
from scipy.stats import beta as beta_dist

from userstrata.errors import NotFittedError
from userstrata.models import BetaGeo, ModifiedBetaGeo
from userstrata.models._base import compress_rows
from userstrata.models.btyd import simulate_mbgnbd

DATA = Path(__file__).parent.parent / "data"
PARAMS = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 1.5}


@pytest.fixture(scope="module")
def cdnow():
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def fitted(cdnow):
    return ModifiedBetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture()
def model():
    m = ModifiedBetaGeo()
    m.params_ = dict(PARAMS)
    return m


def test_cdnow_estimates_match_btydplus(fitted):
    # BTYDplus (Platzer), mbgnbd on CDNOW, as quoted in lifetimes' tests/test_estimation.py
    # (test_params_out_is_close_to_BTYDplus): r 0.525, alpha 6.183, a 0.891, b 1.614.
    # No peer-reviewed CDNOW estimates exist for MBG/NBD; this is a cross-implementation check.
    for name, value in {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}.items():
        assert fitted.params_[name] == pytest.approx(value, abs=1e-3), name
    assert fitted.converged_ and np.isfinite(fitted.log_likelihood_)


def test_probability_alive_by_hand(model):
    # Batislam et al. (2007): P(alive) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)), also at x = 0.
    # x=0, T=30:            1 / (1 + 0.9/1.5 * (36/6)^0.5)        = 1 / (1 + 0.6 * 2.449490) = 0.404908
    # x=2, t_x=20, T=30:    1 / (1 + 0.9/3.5 * (36/26)^2.5)       = 1 / (1 + 0.257143 * 2.255916) = 0.632874
    got = model.probability_alive([0, 2], [0.0, 20.0], [30.0, 30.0])
    np.testing.assert_allclose(got, [0.404908, 0.632874], atol=1e-6)


def test_probability_alive_in_unit_interval_and_below_one_without_purchases(fitted):
    x, t_x = np.meshgrid(np.arange(0, 100, 10.0), np.arange(0, 100, 10.0))
    x, t_x = x.ravel(), np.where(x.ravel() == 0, 0.0, t_x.ravel())
    p = fitted.probability_alive(x, t_x, np.full_like(x, 100.0))
    assert np.all((p > 0) & (p <= 1))
    # unlike BG/NBD, a customer may drop out right after the first purchase
    assert fitted.probability_alive(0, 0, 1.0)[0] < 1.0


def test_loglik_matches_batislam_formula(model):
    # L = B(a,b+x+1)/B(a,b) G(r+x) alpha^r / (G(r)(alpha+T)^(r+x))
    #   + B(a+1,b+x)/B(a,b) G(r+x) alpha^r / (G(r)(alpha+t_x)^(r+x))     (Batislam et al. 2007)
    r, alpha, a, b = PARAMS.values()
    x, t_x, T = np.array([0, 1, 4.0]), np.array([0, 2.0, 30.0]), np.array([30.0, 38.0, 38.86])
    A = np.exp(gammaln(r + x) - gammaln(r) + r * np.log(alpha))
    L = np.exp(betaln(a, b + x + 1) - betaln(a, b)) * A / (alpha + T) ** (r + x)
    L += np.exp(betaln(a + 1, b + x) - betaln(a, b)) * A / (alpha + t_x) ** (r + x)
    np.testing.assert_allclose(model.log_likelihood(x, t_x, T), np.log(L), rtol=1e-12)


def posterior_expectation_by_integration(params, t, x, t_x, T):
    """E[purchases in (T, T+t] | x, t_x, T] from the model's definition: integrate lambda in
    closed form (gamma) and p numerically. Alive at T with (1-p)^(x+1) lambda^x e^(-lambda T);
    while alive, E[purchases in t | lambda, p] = (1 - exp(-lambda p t)) / p."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    prior = beta_dist(a, b).pdf
    def alive(p):  # (1-p)^(x+1) lambda^x e^(-lambda T), lambda integrated out (common factor dropped)
        return (1 - p) ** (x + 1) * (alpha + T) ** -(r + x)

    def died(p):  # dropped right after the x-th purchase at t_x
        return p * (1 - p) ** x * (alpha + t_x) ** -(r + x)

    def future(p):  # alive at T times E[purchases in (T, T+t]]
        return (1 - p) ** (x + 1) / p * ((alpha + T) ** -(r + x) - (alpha + T + p * t) ** -(r + x))

    num = integrate.quad(lambda p: future(p) * prior(p), 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]
    den = integrate.quad(lambda p: (alive(p) + died(p)) * prior(p), 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]
    return num / den


@pytest.mark.parametrize(("x", "t_x", "T", "t"), [(0, 0.0, 30.0, 10.0), (2, 20.0, 30.0, 39.0), (7, 35.0, 38.0, 52.0)])
def test_conditional_expectation_equals_integral_definition(model, x, t_x, T, t):
    expected = posterior_expectation_by_integration(PARAMS, t, x, t_x, T)
    assert model.expected_purchases(t, x, t_x, T)[0] == pytest.approx(expected, rel=1e-8)


def test_unconditional_expectation_equals_integral_definition(model):
    # E[X(t)] = int (1-p)/p (1 - (alpha/(alpha+p t))^r) Beta(p; a, b) dp: the coin is tossed at
    # time 0 too, so (1-p) of new customers are active; lambda integrated in closed form.
    r, alpha, a, b = PARAMS.values()
    prior = beta_dist(a, b).pdf
    for t in (1.0, 39.0, 78.0):
        expected = integrate.quad(
            lambda p: (1 - p) / p * (1 - (alpha / (alpha + p * t)) ** r) * prior(p), 0, 1, epsabs=0, epsrel=1e-12
        )[0]
        assert model.expected_purchases_new(t)[0] == pytest.approx(expected, rel=1e-8)


def test_a_customer_who_bought_first_now_gets_the_unconditional_expectation(model):
    # T = 0: E[X(T, T+t] | 0, 0, 0] is a new customer's E[X(t)] = b/(a-1) [1 - (alpha/(alpha+t))^r
    # 2F1(r, b+1; a+b; t/(alpha+t))] (Batislam et al. 2007), and P(alive) = b/(a+b): the coin
    # tossed right after the first purchase already fell. Before: InputError "T[0] = 0.0".
    r, alpha, a, b = PARAMS.values()
    t = np.array([1.0, 39.0, 78.0])
    closed = b / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b + 1, a + b, t / (alpha + t)))
    zero = np.zeros_like(t)
    np.testing.assert_allclose(model.expected_purchases(t, zero, zero, zero), closed, rtol=1e-10)
    assert model.probability_alive(0, 0, 0)[0] == pytest.approx(b / (a + b), rel=1e-14)
    # L(0, 0, 0) = B(a, b+1)/B(a, b) + B(a+1, b)/B(a, b) = b/(a+b) + a/(a+b) = 1: no information
    assert model.log_likelihood([0], [0], [0])[0] == pytest.approx(0.0, abs=1e-12)


def test_pmf_sums_to_one_and_matches_the_mean(model):
    n = np.arange(0, 600)
    p = model.probability_of_purchases(n, 39.0)
    assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (n * p).sum() == pytest.approx(model.expected_purchases_new(39.0)[0], rel=1e-6)
    # P(X(t)=0) at t=0 is 1; customers dropping at time 0 never buy: P(X(t)=0) -> a/(a+b) as t grows
    assert model.probability_of_purchases(0, 0.0)[0] == pytest.approx(1.0)


def test_simulator_agrees_with_expected_purchases_new(model):
    x, _, _ = simulate_mbgnbd(200_000, PARAMS, 39.0, random_state=11)
    expected = model.expected_purchases_new(39.0)[0]
    assert abs(x.mean() - expected) < 4 * x.std() / np.sqrt(len(x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(cdnow, seed):
    m = ModifiedBetaGeo(penalizer=0.1 * (seed == 2))
    (x, t_x, T), w = compress_rows([cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T")])
    data = m._prepare(x, t_x, T, w)
    phi = np.random.default_rng(seed).normal(0.0, 1.0, 4)
    f, g = m._objective(phi, data, m.penalizer)
    numeric = approx_fprime(phi, lambda p: m._objective(p, data, m.penalizer)[0], 1e-7)
    np.testing.assert_allclose(g, numeric, atol=2e-6 * max(1.0, np.abs(g).max()))
    theta = np.exp(phi)
    assert f == pytest.approx(-(w @ m._loglik(theta, x, t_x, T)) / w.sum() + m.penalizer * theta @ theta, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_from_simulation(seed):
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    T = np.random.default_rng(100 + seed).integers(26, 105, 50_000).astype(float)
    x, t_x, T = simulate_mbgnbd(50_000, truth, T, random_state=seed)
    m = ModifiedBetaGeo().fit(x, t_x, T)
    for name, value in truth.items():
        assert m.params_[name] == pytest.approx(value, rel=0.15), name


def test_differs_from_bgnbd_only_where_it_should(cdnow, fitted):
    # Same data, different model: both fit, and MBG/NBD gives P(alive) < 1 at x = 0 where BG/NBD gives 1.
    bg = BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    zero = cdnow[cdnow["frequency"] == 0].head(5)
    assert np.all(bg.probability_alive(zero["frequency"], zero["recency"], zero["T"]) == 1.0)
    assert np.all(fitted.probability_alive(zero["frequency"], zero["recency"], zero["T"]) < 1.0)


def test_not_fitted():
    with pytest.raises(NotFittedError, match=r"^ModifiedBetaGeo is not fitted yet; call fit\(\) first$"):
        ModifiedBetaGeo().expected_purchases_new(1.0)
