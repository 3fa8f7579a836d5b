"""Next purchase: the closed form against a Monte-Carlo simulation of BG/NBD customers."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from userstrata.errors import InputError
from userstrata.models import BetaGeo, ParetoNBD
from userstrata.models.btyd import simulate_bgnbd, simulate_paretonbd
from userstrata.models.next_purchase import (
    median_days_to_purchase,
    next_purchase,
    probability_purchase_within,
)

# CDNOW-like parameters in days (FHL 2005: r=0.243, alpha=4.414 weeks, a=0.793, b=2.426)
TRUE = {"r": 0.243, "alpha": 7 * 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def bgnbd():
    x, t_x, T = simulate_bgnbd(30_000, TRUE, T=270.0, random_state=1)
    return BetaGeo().fit(x, t_x, T)


def _simulate_given_history(params, x, t_x, T, t, n, seed):
    """Monte Carlo P(purchase in (T, T+t] | x, t_x, T) and the median wait, from the BG/NBD story.

    Independent of the closed form: customers are drawn from the prior (lambda ~ Gamma(r, alpha),
    p ~ Beta(a, b)); the history is imposed by weighting each draw with the density of its x-th
    purchase falling at t_x (Gamma(x, lambda) density, x > 0) times the chance of surviving the
    x - 1 earlier dropout coins, and by rejecting draws that buy again in (t_x, T]. The future
    is then simulated: the coin after the x-th purchase (none for x = 0: BG/NBD customers only
    drop out after a repeat purchase) and the next exponential gap.
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    if x > 0:
        log_w = x * np.log(lam) + (x - 1) * np.log(t_x) - lam * t_x + (x - 1) * np.log1p(-p)
        w = np.exp(log_w - log_w.max())
        alive = rng.random(n) > p  # the coin tossed right after the x-th purchase
    else:
        w = np.ones(n)
        alive = np.ones(n, dtype=bool)
    gap = rng.exponential(1.0 / lam)  # from t_x to the next purchase (if alive)
    keep = ~alive | (t_x + gap > T)  # observed: no purchase in (t_x, T]
    wait = np.where(alive, t_x + gap - T, np.inf)[keep]
    w = w[keep]
    prob = float(np.sum(w * (wait <= t)) / np.sum(w))
    order = np.argsort(wait)
    cum = np.cumsum(w[order]) / np.sum(w)
    median = float(wait[order][np.searchsorted(cum, 0.5)])
    ess = float(np.sum(w) ** 2 / np.sum(w**2))
    return prob, median, ess


@pytest.mark.parametrize(
    "x, t_x, T",
    [(0, 0.0, 60.0), (2, 150.0, 200.0), (6, 190.0, 200.0)],
    ids=["no-repeats", "two-repeats", "six-recent-repeats"],
)
def test_closed_form_matches_monte_carlo(bgnbd, x, t_x, T):
    params = bgnbd.params_
    t = 60.0
    closed = probability_purchase_within(bgnbd, t, [x], [t_x], [T])[0]
    t_star = median_days_to_purchase(bgnbd, [x], [t_x], [T])[0]
    mc_prob, mc_median, ess = _simulate_given_history(params, x, t_x, T, t, 1_500_000, seed=7)
    se = np.sqrt(closed * (1 - closed) / ess)
    print(f"x={x}: P(within {t:.0f} d) closed {closed:.4f} vs MC {mc_prob:.4f} (ESS {ess:.0f}); "
          f"median closed {t_star:.2f} d vs MC {mc_median:.2f} d")
    assert abs(closed - mc_prob) < max(4 * se, 0.004)
    if np.isfinite(t_star):
        # the MC median is a noisy quantile: compare through P at the MC median instead
        p_at_mc_median = probability_purchase_within(bgnbd, mc_median, [x], [t_x], [T])[0]
        assert abs(p_at_mc_median - 0.5) < max(4 * np.sqrt(0.25 / ess), 0.004)
    else:
        assert mc_median == np.inf or mc_prob < 0.5


def test_closed_form_formula(bgnbd):
    """P = P(alive) (1 - ((alpha+T)/(alpha+T+t))^(r+x)); t* solves P = 1/2 and is NaN where P(alive) <= 1/2."""
    r, alpha = bgnbd.params_["r"], bgnbd.params_["alpha"]
    x = np.array([0.0, 1.0, 3.0, 8.0, 2.0])
    t_x = np.array([0.0, 20.0, 150.0, 199.0, 10.0])
    T = np.array([30.0, 200.0, 200.0, 200.0, 250.0])
    p_alive = bgnbd.probability_alive(x, t_x, T)
    expected = p_alive * (1 - ((alpha + T) / (alpha + T + 45.0)) ** (r + x))
    np.testing.assert_allclose(probability_purchase_within(bgnbd, 45.0, x, t_x, T), expected, rtol=1e-12)
    t_star = median_days_to_purchase(bgnbd, x, t_x, T)
    ok = p_alive > 0.5
    assert np.isnan(t_star[~ok]).all() and ok.any() and (~ok).any()
    p_at = probability_purchase_within(bgnbd, t_star[ok], x[ok], t_x[ok], T[ok])
    np.testing.assert_allclose(p_at, 0.5, rtol=1e-10)


def test_next_purchase_frame_respects_horizon(bgnbd):
    x = pd.Series([0.0, 5.0, 8.0, 1.0], index=["a", "b", "c", "d"])
    t_x = pd.Series([0.0, 100.0, 199.0, 5.0], index=x.index)
    T = pd.Series([10.0, 200.0, 200.0, 250.0], index=x.index)
    out = next_purchase(bgnbd, x, t_x, T, horizon=30.0)
    assert list(out.columns) == ["next_purchase_days", "next_purchase_within_horizon"]
    assert list(out.index) == list(x.index)
    unbounded = median_days_to_purchase(bgnbd, x, t_x, T)
    for user in x.index:
        days, within = out.loc[user]
        if np.isfinite(days):
            assert days <= 30.0 and within >= 0.5 - 1e-12
            assert days == pytest.approx(unbounded[list(x.index).index(user)])
        else:
            assert within < 0.5 + 1e-12  # unlikely within the horizon
    assert ((out["next_purchase_within_horizon"] >= 0) & (out["next_purchase_within_horizon"] <= 1)).all()
    with pytest.raises(InputError):
        next_purchase(bgnbd, x, t_x, T, horizon=0)


def test_pareto_quadrature_matches_direct_integration():
    x, t_x, T = simulate_paretonbd(8000, {"r": 0.55, "alpha": 74.0, "s": 0.61, "beta": 82.0}, T=270.0, random_state=3)
    model = ParetoNBD().fit(x, t_x, T)
    r, alpha, s, beta = (model.params_[k] for k in ("r", "alpha", "s", "beta"))
    cases = [(0.0, 0.0, 40.0), (3.0, 200.0, 260.0), (12.0, 255.0, 260.0)]
    for xi, txi, Ti in cases:
        ra, aa, bb = r + xi, alpha + Ti, beta + Ti

        def density(u):
            return (ra / aa) * (aa / (aa + u)) ** (ra + 1) * (bb / (bb + u)) ** s

        direct = integrate.quad(density, 0.0, 90.0, epsabs=1e-13, epsrel=1e-12)[0]
        p_alive = model.probability_alive([xi], [txi], [Ti])[0]
        got = probability_purchase_within(model, 90.0, [xi], [txi], [Ti])[0]
        assert got == pytest.approx(p_alive * direct, rel=1e-9)
        t_star = median_days_to_purchase(model, [xi], [txi], [Ti], horizon=90.0)[0]
        if np.isfinite(t_star):
            p_at = probability_purchase_within(model, t_star, [xi], [txi], [Ti])[0]
            assert p_at == pytest.approx(0.5, abs=1e-9)
        else:
            assert p_alive * direct < 0.5
    with pytest.raises(InputError):
        median_days_to_purchase(model, [1.0], [1.0], [2.0])  # no horizon: Pareto/NBD needs one
