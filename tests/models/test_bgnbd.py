"""BG/NBD: published CDNOW estimates, closed forms, gradient, weights, recovery, input checks.

Also covers the machinery shared by all models (input checks, row compression).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats
from scipy.optimize import approx_fprime
from scipy.special import betaln, expit, gammaln, hyp2f1

from userstrata.errors import InputError, NotFittedError
from userstrata.models import BetaGeo
from userstrata.models._base import SEARCH_LIMIT, compress_rows
from userstrata.models.btyd import simulate_bgnbd

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def cdnow():
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def fitted(cdnow):
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def sig3(v: float) -> float:
    return float(f"{v:.3g}")


# --------------------------------------------------------------------------- published figures


def test_cdnow_estimates_match_fhl_2005(fitted):
    # Fader, Hardie & Lee (2005), "Counting Your Customers" the Easy Way, Marketing Science
    # 24(2), p. 280: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4.
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert sig3(fitted.params_[name]) == sig3(value), name
    assert abs(fitted.log_likelihood_ - (-9582.4)) < 0.05
    # Higher-precision optimum on the same data from R CLVTools
    # (tests/testthat/test_correctness_bgnbd.R): LL -9582.429, r 0.2425945, alpha 4.4136019,
    # a 0.7929199, b 2.4258881. Our CSV rounds recency/T to 0.01 week, hence 1e-4.
    clvtools = {"r": 0.2425945, "alpha": 4.4136019, "a": 0.7929199, "b": 2.4258881}
    for name, value in clvtools.items():
        assert fitted.params_[name] == pytest.approx(value, rel=1e-4), name
    assert abs(fitted.log_likelihood_ - (-9582.429)) < 0.01
    assert fitted.n_customers_ == 2357 and fitted.converged_


def test_conditional_expectation_matches_hardie_excel_sheet(fitted):
    # Hardie's BG/NBD Excel note, CDNOW customer 1 (x=2, t_x=30.43, T=38.86): 1.226 expected
    # purchases in the next 39 weeks (as quoted in lifetimes' tests/test_estimation.py).
    assert fitted.expected_purchases(39, 2, 30.43, 38.86)[0] == pytest.approx(1.226, abs=1e-3)


def test_unconditional_expectation_matches_hardie_excel_sheet(fitted):
    # Hardie's Excel note, E[X(t)] for a new customer (quoted in lifetimes' tests).
    times = [0.1429, 1.0, 3.00, 31.8571, 32.00, 78.00]
    expected = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576]
    np.testing.assert_allclose(fitted.expected_purchases_new(times), expected, atol=5e-4)


def test_pmf_matches_r_btyd():
    # R BTYD manual (bgnbd.pmf) at r=0.243, alpha=4.414, a=0.793, b=2.426, as quoted in
    # lifetimes' tests: P(X(2)=10), P(X(39)=0), P(X(30)=n) for n = 11..20.
    model = BetaGeo()
    model.params_ = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert model.probability_of_purchases(10, 2)[0] == pytest.approx(1.07869e-07, rel=1e-4)
    assert model.probability_of_purchases(0, 39)[0] == pytest.approx(0.5737864, abs=1e-7)
    expected = [0.0019995214, 0.0015170236, 0.0011633150, 0.0009003148, 0.0007023638,
                0.0005517902, 0.0004361913, 0.0003467171, 0.0002769613, 0.0002222260]
    np.testing.assert_allclose(model.probability_of_purchases(np.arange(11, 21), 30), expected, rtol=1e-6)


# --------------------------------------------------------------------------- closed forms by hand


def fhl_conditional_expectation(params, t, x, t_x, T):
    """FHL (2005) eq. 10, written out directly (no Euler transform, no library code)."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    correction = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return head * body / correction


def test_conditional_expectation_equals_fhl_formula(fitted):
    x = np.array([0, 1, 2, 7, 15.0])
    t_x = np.array([0, 1.71, 30.43, 35.0, 38.0])
    T = np.array([38.86, 38.86, 38.86, 37.0, 38.5])
    for t in (1.0, 39.0, 104.0):
        expected = fhl_conditional_expectation(fitted.params_, t, x, t_x, T)
        np.testing.assert_allclose(fitted.expected_purchases(t, x, t_x, T), expected, rtol=1e-10)


def test_unconditional_expectation_equals_fhl_formula(fitted):
    # FHL (2005) eq. 7: E[X(t)] = (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]
    r, alpha, a, b = (fitted.params_[k] for k in ("r", "alpha", "a", "b"))
    t = np.array([0.5, 10.0, 39.0, 78.0])
    expected = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    np.testing.assert_allclose(fitted.expected_purchases_new(t), expected, rtol=1e-10)


def test_a_customer_who_bought_first_now_gets_the_unconditional_expectation(fitted):
    # T = 0 (first purchase on the as-of day): nothing is known beyond the first purchase, so
    # E[X(T, T+t] | 0, 0, 0] is FHL (2005) eq. 7 and P(alive) = 1. Before: InputError "T[0] = 0.0".
    r, alpha, a, b = (fitted.params_[k] for k in ("r", "alpha", "a", "b"))
    t = np.array([0.5, 10.0, 39.0, 78.0])
    eq7 = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    zero = np.zeros_like(t)
    np.testing.assert_allclose(fitted.expected_purchases(t, zero, zero, zero), eq7, rtol=1e-10)
    np.testing.assert_array_equal(fitted.probability_alive([0, 2], [0, 5.0], [0, 10.0])[:1], [1.0])


def test_customers_with_T_zero_carry_no_likelihood_and_leave_the_fit_unchanged(cdnow, fitted):
    # L(0, 0, 0) = G(r) alpha^r / (G(r) alpha^r) B(a, b) / B(a, b) = 1 (FHL 2005 eq. 6) whatever the parameters
    for params in ({"r": 0.3, "alpha": 5.0, "a": 0.8, "b": 2.4}, {"r": 4.0, "alpha": 0.2, "a": 9.0, "b": 0.1}):
        model = BetaGeo()
        model.params_ = params
        assert model.log_likelihood([0], [0], [0])[0] == pytest.approx(0.0, abs=1e-12)
    n = 50
    x = np.r_[cdnow["frequency"], np.zeros(n)]
    t_x = np.r_[cdnow["recency"], np.zeros(n)]
    T = np.r_[cdnow["T"], np.zeros(n)]
    with_new = BetaGeo().fit(x, t_x, T)
    assert with_new.params_ == fitted.params_  # the very same rows are fitted
    assert with_new.n_customers_ == len(cdnow) + n
    with pytest.raises(InputError, match="every customer has T = 0"):
        BetaGeo().fit([0, 0], [0, 0], [0, 0])


def test_probability_alive_is_one_without_repeat_purchases(fitted):
    # BG/NBD: dropout can only happen right after a repeat purchase (FHL 2005, assumption iv).
    np.testing.assert_array_equal(fitted.probability_alive([0, 0], [0, 0], [1.0, 38.86]), [1.0, 1.0])


def test_probability_alive_by_hand():
    # FHL (2005) eq. 11 with r=0.5, alpha=6, a=0.9, b=1.5, x=2, t_x=20, T=30:
    # 1 / (1 + 0.9/2.5 * (36/26)^2.5) = 1 / (1 + 0.36 * 2.255921) = 1 / 1.812132 = 0.551837
    model = BetaGeo()
    model.params_ = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 1.5}
    assert model.probability_alive(2, 20, 30)[0] == pytest.approx(0.551837, abs=1e-6)


def test_probability_alive_in_unit_interval_and_stable_for_heavy_buyers(fitted):
    x, t_x = np.meshgrid(np.arange(0, 100, 10.0), np.arange(0, 100, 10.0))
    x, t_x = x.ravel(), t_x.ravel()
    t_x = np.where(x == 0, 0.0, t_x)
    p = fitted.probability_alive(x, t_x, np.full_like(x, 100.0))
    assert np.all((p >= 0) & (p <= 1))
    # lifetimes issue: x=1000, t_x=10, T=100 overflowed; the answer is "certainly gone"
    assert fitted.probability_alive(1000, 10, 100)[0] == pytest.approx(0.0, abs=1e-300)
    heavy = fitted.expected_purchases(52, 500, 38.0, 38.86)
    assert np.isfinite(heavy).all() and heavy[0] > 0


def test_pmf_sums_to_one_and_matches_the_mean(fitted):
    n = np.arange(0, 600)
    p = fitted.probability_of_purchases(n, 39.0)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert (n * p).sum() == pytest.approx(fitted.expected_purchases_new(39.0)[0], rel=1e-6)


def test_simulator_agrees_with_expected_purchases_new(fitted):
    # Monte Carlo: mean repeat purchases of 200k simulated customers observed for 39 weeks.
    x, _, _ = simulate_bgnbd(200_000, fitted.params_, 39.0, random_state=7)
    expected = fitted.expected_purchases_new(39.0)[0]
    assert abs(x.mean() - expected) < 4 * x.std() / np.sqrt(len(x))


# --------------------------------------------------------------------------- likelihood machinery


def test_loglik_matches_fhl_eq6(fitted):
    # FHL (2005) eq. 6 (the un-factored form), for a few customers.
    r, alpha, a, b = (fitted.params_[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T = np.array([0, 1, 4.0]), np.array([0, 2.0, 30.0]), np.array([30.0, 38.0, 38.86])
    A = np.exp(gammaln(r + x) - gammaln(r) + r * np.log(alpha))
    L = np.exp(betaln(a, b + x) - betaln(a, b)) * A / (alpha + T) ** (r + x)
    L += (x > 0) * np.exp(betaln(a + 1, np.maximum(b + x - 1, 1e-9)) - betaln(a, b)) * A / (alpha + t_x) ** (r + x)
    np.testing.assert_allclose(fitted.log_likelihood(x, t_x, T), np.log(L), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("penalizer", [0.0, 0.1])
def test_gradient_matches_finite_differences(cdnow, seed, penalizer):
    model = BetaGeo(penalizer=penalizer)
    (x, t_x, T), w = compress_rows([cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T")])
    data = model._prepare(x, t_x, T, w)
    phi = np.random.default_rng(seed).normal(0.0, 1.0, 4)
    f, g = model._objective(phi, data, penalizer)
    numeric = approx_fprime(phi, lambda p: model._objective(p, data, penalizer)[0], 1e-7)
    np.testing.assert_allclose(g, numeric, atol=2e-6 * max(1.0, np.abs(g).max()))
    # and the objective is the weighted mean negative log-likelihood (plus the penalty)
    theta = np.exp(phi)
    mean_nll = -(w @ model._loglik(theta, x, t_x, T)) / w.sum()
    assert f == pytest.approx(mean_nll + penalizer * theta @ theta, rel=1e-12)


def test_weights_equal_repeated_rows(cdnow, fitted):
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    assert (grouped["n"] > 1).any()
    weighted = BetaGeo().fit(grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"])
    for name in fitted.params_:
        assert weighted.params_[name] == pytest.approx(fitted.params_[name], rel=1e-7)
        assert weighted.standard_errors_[name] == pytest.approx(fitted.standard_errors_[name], rel=1e-5)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-12)
    assert weighted.n_customers_ == len(grouped)


def test_penalizer_shrinks_parameters(cdnow, fitted):
    shrunk = BetaGeo(penalizer=0.1).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    squares = lambda m: sum(v**2 for v in m.params_.values())  # noqa: E731
    assert squares(shrunk) < squares(fitted)
    assert shrunk.log_likelihood_ < fitted.log_likelihood_


def test_second_fit_replaces_first_and_keeps_no_data(cdnow):
    model = BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    first = dict(model.params_)
    head = cdnow.iloc[:500]
    model.fit(head["frequency"], head["recency"], head["T"])
    assert model.n_customers_ == 500 and model.params_ != first
    for value in vars(model).values():  # only small learned arrays, never the training data
        assert not isinstance(value, (pd.Series, pd.DataFrame))
        assert not isinstance(value, np.ndarray) or value.size <= 16


def test_summary_has_estimates_errors_and_intervals(fitted):
    table = fitted.summary()
    assert list(table.columns) == ["coef", "se", "lower_95", "upper_95"]
    assert list(table.index) == ["r", "alpha", "a", "b"]
    assert (table["lower_95"] < table["coef"]).all() and (table["coef"] < table["upper_95"]).all()
    assert (table["se"] > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_from_simulation(seed):
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    T = np.random.default_rng(100 + seed).integers(26, 105, 50_000).astype(float)
    x, t_x, T = simulate_bgnbd(50_000, truth, T, random_state=seed)
    model = BetaGeo().fit(x, t_x, T)
    for name, value in truth.items():
        assert model.params_[name] == pytest.approx(value, rel=0.15), name


# --------------------------------------------------------------------------- input checks (shared)


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "fragment"),
    [
        ([1, 2], [1.0, 50.0], [10.0, 40.0], "recency[1] = 50.0 is greater than T[1] = 40.0"),
        ([1, -1], [1.0, 0.0], [10.0, 40.0], "frequency[1] = -1.0"),
        ([1.5, 2], [1.0, 3.0], [10.0, 40.0], "frequency[0] = 1.5"),
        ([1, 2, 3], [1.0, 3.0], [10.0, 40.0, 5.0], "same length; got 3, 2 and 3"),
        ([1, 2], [1.0, 3.0], [10.0, np.nan], "T[1] = nan"),
        ([0, 2], [3.0, 3.0], [10.0, 40.0], "recency[0] = 3.0"),
        ([1, 2], [1.0, 3.0], [-1.0, 40.0], "T[0] = -1.0"),
        ([1, 2], [0.0, 3.0], [0.0, 40.0], "frequency[0] = 1.0; expected 0 for a customer with T = 0"),
        ([1, 2], [-1.0, 3.0], [10.0, 40.0], "recency[0] = -1.0"),
        (["1", "2"], [1.0, 3.0], [10.0, 40.0], "frequency must be numeric"),
    ],
)
def test_invalid_inputs_raise_input_error_naming_the_row(frequency, recency, T, fragment):
    with pytest.raises(InputError) as err:
        BetaGeo().fit(frequency, recency, T)
    assert fragment in str(err.value)
    assert err.value.code == "invalid_input"


FOUR = ([1, 2, 0, 3], [10.0, 5.0, 0.0, 7.0], [10.0, 40.0, 20.0, 30.0])


def test_recency_equal_to_T_up_to_float_noise_is_accepted():
    frequency, recency, T = FOUR
    noisy = [recency[0] + 1e-12, *recency[1:]]  # recency > T by float noise only
    with pytest.warns(RuntimeWarning, match="edge of the parameter search box"):
        model = BetaGeo().fit(frequency, noisy, T)
    with pytest.warns(RuntimeWarning, match="edge of the parameter search box"):
        exact = BetaGeo().fit(frequency, recency, T)
    assert model.params_ == exact.params_  # clipped to T: the very same fit
    assert all(np.isfinite(v) for v in model.params_.values())
    assert np.isfinite(model.expected_purchases(39.0, frequency, noisy, T)).all()


def limit_terms(r, alpha, p, x, t_x, T):
    """BG/NBD as a, b -> infinity with a / (a + b) -> p: every customer drops out with the same
    probability p after each repeat purchase. FHL (2005) eq. 6 with a point mass at p:
    L = G(r+x) alpha^r / G(r) [alive + dead]; returns (log of the prefactor, alive, dead)."""
    nbd = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    alive = (1 - p) ** x / (alpha + T) ** (r + x)
    dead = (x > 0) * p * (1 - p) ** np.maximum(x - 1, 0) / (alpha + t_x) ** (r + x)
    return nbd, alive, dead


def limit_loglik(r, alpha, p, x, t_x, T):
    nbd, alive, dead = limit_terms(r, alpha, p, x, t_x, T)
    return nbd + np.log(alive + dead)


def test_a_likelihood_rising_to_infinity_stops_at_a_flagged_boundary():
    # Four customers: the likelihood keeps rising as a and b grow together (a homogeneous
    # dropout probability). An unbounded search stops wherever rounding stops it, which moves
    # with the BLAS kernel; the fit now stops at the edge of its search box, b = 1e6.
    x, t_x, T = (np.array(v, dtype=float) for v in FOUR)
    with pytest.warns(RuntimeWarning, match=r"edge of the parameter search box \(b = 1e\+06\)"):
        model = BetaGeo().fit(x, t_x, T)
    assert model.at_boundary_ == ("b",) and model.converged_
    assert model.params_["b"] == pytest.approx(SEARCH_LIMIT, rel=1e-12)
    assert 1e3 < model.params_["a"] < SEARCH_LIMIT  # a follows b along the ridge, inside the box
    assert all(np.isnan(v) for v in model.standard_errors_.values())
    with pytest.warns(RuntimeWarning):
        again = BetaGeo().fit(x, t_x, T)
    assert again.params_ == model.params_  # the same start and path: identical on re-run
    # Second method: the limit model maximised by Nelder-Mead (no gradient, no box). With
    # a, b ~ 1e6 the Beta has sd ~ 5e-4 around p, so BG/NBD is that limit to ~1e-6.
    best = optimize.minimize(
        lambda v: -limit_loglik(np.exp(v[0]), np.exp(v[1]), expit(v[2]), x, t_x, T).sum(),
        np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20_000},
    )
    r, alpha, p = np.exp(best.x[0]), np.exp(best.x[1]), expit(best.x[2])
    got = model.params_
    assert got["r"] == pytest.approx(r, rel=1e-4) and got["alpha"] == pytest.approx(alpha, rel=1e-4)
    assert got["a"] / (got["a"] + got["b"]) == pytest.approx(p, rel=1e-4)
    assert model.log_likelihood_ == pytest.approx(-best.fun, abs=1e-5)
    # predictions at the boundary are finite, without numpy warnings, and match the limit:
    # E[X(T, T+t)] = P(alive) (1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = model.expected_purchases(39.0, x, t_x, T)
        p_alive = model.probability_alive(x, t_x, T)
    _, alive, dead = limit_terms(r, alpha, p, x, t_x, T)
    alive_limit = alive / (alive + dead)
    np.testing.assert_allclose(p_alive, alive_limit, rtol=1e-4)
    limit = alive_limit * (1 - ((alpha + T) / (alpha + T + p * 39.0)) ** (r + x)) / p
    np.testing.assert_allclose(expected, limit, rtol=1e-4)


def test_expected_purchases_at_a_equal_to_one_is_the_limit_not_a_division_by_zero():
    # A fit on buyers without repeat purchases leaves a and b at their start, 1 (the
    # likelihood does not depend on them), where c / (a - 1) (1 - 2F1 term) is 0 / 0.
    # Second method: E = P(alive) E_p[(1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p],
    # p ~ Beta(a, b + x), by numerical integration.
    model = BetaGeo()
    model.params_ = {"r": 0.5, "alpha": 6.0, "a": 1.0, "b": 2.5}
    x, t_x, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 20.0, 25.0]), np.array([30.0, 30.0, 30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = model.expected_purchases(26.0, x, t_x, T)
    p_alive = model.probability_alive(x, t_x, T)
    for i in range(3):
        density = stats.beta(1.0, 2.5 + x[i]).pdf

        def inner(p, i=i, density=density):
            return density(p) * (1 - ((6.0 + T[i]) / (6.0 + T[i] + p * 26.0)) ** (0.5 + x[i])) / p

        want = p_alive[i] * integrate.quad(inner, 0, 1, epsabs=0, epsrel=1e-12)[0]
        assert got[i] == pytest.approx(want, rel=1e-7)  # the limit is taken to ~1e-9


def test_invalid_weights_and_penalizer():
    with pytest.raises(InputError, match=r"weights\[1\] = -1.0"):
        BetaGeo().fit([1, 2], [1.0, 3.0], [10.0, 40.0], weights=[1.0, -1.0])
    with pytest.raises(InputError, match="penalizer"):
        BetaGeo(penalizer=-1.0).fit([1, 2], [1.0, 3.0], [10.0, 40.0])


def test_predictions_before_fit_raise_not_fitted():
    model = BetaGeo()
    with pytest.raises(NotFittedError, match=r"^BetaGeo is not fitted yet; call fit\(\) first$"):
        model.probability_alive([1], [1.0], [2.0])
    for call in (lambda: model.expected_purchases(1, [1], [1.0], [2.0]), lambda: model.expected_purchases_new(1),
                 model.summary, lambda: model.probability_of_purchases(1, 2)):
        with pytest.raises(NotFittedError):
            call()
    assert isinstance(NotFittedError("x"), AttributeError)  # hasattr-style checks keep working


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.25, 7.0, 1e6]), st.integers(1, 4)),
        min_size=1,
        max_size=40,
    ),
    weighted=st.booleans(),
)
def test_compress_rows_equals_np_unique(rows, weighted):
    # Property: the mixed-radix compression gives exactly np.unique(axis=0) + summed weights.
    arr = np.array(rows, dtype=float)
    weights = np.arange(1.0, len(arr) + 1) if weighted else None
    cols, sums = compress_rows([arr[:, 0], arr[:, 1], arr[:, 2]], weights)
    uniq, inverse = np.unique(arr, axis=0, return_inverse=True)
    expected = np.bincount(inverse.ravel(), weights=weights)
    got = pd.DataFrame({"a": cols[0], "b": cols[1], "c": cols[2], "w": sums}).sort_values(["a", "b", "c"])
    np.testing.assert_array_equal(got[["a", "b", "c"]].to_numpy(), uniq)
    np.testing.assert_allclose(got["w"].to_numpy(), expected)
    _, _, inv = compress_rows([arr[:, 0], arr[:, 1], arr[:, 2]], return_inverse=True)
    back = np.column_stack([c[inv] for c in cols])
    np.testing.assert_array_equal(back, arr)
