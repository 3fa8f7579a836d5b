"""Customer lifetime value: the lifetimes-style discounting, intervals, argument checks."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from userstrata.errors import InputError, NotFittedError
from userstrata.models import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD, clv

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def cdnow():
    return pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def models(cdnow):
    bg = BetaGeo().fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    gg = GammaGamma().fit(cdnow["x"], cdnow["zbar"])
    return bg, gg


def history(frame):
    return frame["x"], frame["t_x"], frame["T"], frame["zbar"]


def test_point_value_equals_hand_written_lifetimes_loop(models, cdnow):
    # lifetimes.utils._customer_lifetime_value: for i in 1..months,
    #   clv += margin * spend * (E[X(i)] - E[X(i-1)]) / (1 + d)^i
    # with E[X(.)] the conditional expectation; here a month is 365.25/12 days and T is in weeks.
    bg, gg = models
    three = cdnow.iloc[[0, 1, 2]]  # a repeat buyer, a one-repeat buyer, a non-repeater
    x, t_x, T, z = (three[c].to_numpy(float) for c in ("x", "t_x", "T", "zbar"))
    month = 365.25 / 12 / 7.0
    spend = gg.expected_spend(x, z)
    expected = np.zeros(3)
    for i in range(1, 13):
        bought = bg.expected_purchases(i * month, x, t_x, T) - bg.expected_purchases((i - 1) * month, x, t_x, T)
        expected += 0.3 * spend * bought / 1.01**i
    got = clv(bg, gg, *history(three), margin=0.3, n_draws=0)
    np.testing.assert_allclose(got["clv"].to_numpy(), expected, rtol=1e-12)
    assert got["clv_low"].isna().all() and got["clv_high"].isna().all()  # no draws, no interval


def test_zero_discount_is_margin_times_spend_times_expected_purchases(models, cdnow):
    bg, gg = models
    some = cdnow.iloc[:50]
    got = clv(bg, gg, *history(some), horizon_months=6, discount_rate=0.0, margin=0.5, n_draws=0)
    horizon = 6 * 365.25 / 12 / 7.0
    spend = gg.expected_spend(some["x"], some["zbar"])
    expected = 0.5 * spend * bg.expected_purchases(horizon, some["x"], some["t_x"], some["T"])
    np.testing.assert_allclose(got["clv"].to_numpy(), expected, rtol=1e-12)


def test_interval_brackets_point_and_scales_with_margin(models, cdnow):
    bg, gg = models
    full = clv(bg, gg, *history(cdnow), n_draws=100, random_state=3)
    assert (full["clv_low"] <= full["clv"]).all() and (full["clv"] <= full["clv_high"]).all()
    assert (full["clv_low"] < full["clv_high"]).all()
    half = clv(bg, gg, *history(cdnow), n_draws=100, random_state=3, margin=0.5)
    np.testing.assert_allclose(half.to_numpy(), 0.5 * full.to_numpy(), rtol=1e-12)  # linear, so monotone
    again = clv(bg, gg, *history(cdnow), n_draws=100, random_state=3)
    pd.testing.assert_frame_equal(again, full)  # reproducible with the same random_state


def test_zero_parameter_uncertainty_collapses_the_interval(models, cdnow):
    bg, gg = (copy.deepcopy(m) for m in models)
    bg.log_params_cov_ = np.zeros((4, 4))
    gg.log_params_cov_ = np.zeros((3, 3))
    got = clv(bg, gg, *history(cdnow.iloc[:200]), n_draws=20, random_state=0)
    np.testing.assert_allclose(got["clv_low"], got["clv"], rtol=1e-10)
    np.testing.assert_allclose(got["clv_high"], got["clv"], rtol=1e-10)


def test_longer_horizon_and_lower_discount_are_worth_more(models, cdnow):
    bg, gg = models
    some = cdnow.iloc[:100]
    short = clv(bg, gg, *history(some), horizon_months=6, n_draws=0)["clv"]
    long = clv(bg, gg, *history(some), horizon_months=24, n_draws=0)["clv"]
    cheap = clv(bg, gg, *history(some), horizon_months=24, discount_rate=0.0, n_draws=0)["clv"]
    assert (long > short).all() and (cheap > long).all()


def test_days_as_time_unit_gives_the_same_value(cdnow):
    # Same data in days instead of weeks: alpha scales by 7, CLV is unchanged.
    days = cdnow.assign(t_x=cdnow["t_x"] * 7, T=cdnow["T"] * 7)
    bg_w = BetaGeo().fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    bg_d = BetaGeo().fit(days["x"], days["t_x"], days["T"])
    gg = GammaGamma().fit(cdnow["x"], cdnow["zbar"])
    weeks = clv(bg_w, gg, *history(cdnow.iloc[:20]), n_draws=0)
    daily = clv(bg_d, gg, *history(days.iloc[:20]), time_unit_days=1.0, n_draws=0)
    np.testing.assert_allclose(daily["clv"], weeks["clv"], rtol=1e-6)


@pytest.mark.parametrize("purchase_model", [ParetoNBD, ModifiedBetaGeo])
def test_other_purchase_models(purchase_model, models, cdnow):
    _, gg = models
    model = purchase_model().fit(cdnow["x"], cdnow["t_x"], cdnow["T"])
    got = clv(model, gg, *history(cdnow.iloc[:100]), n_draws=30, random_state=1)
    assert (got["clv"] > 0).all()
    assert (got["clv_low"] <= got["clv"]).all() and (got["clv"] <= got["clv_high"]).all()


def test_index_follows_the_input_series(models, cdnow):
    bg, gg = models
    some = cdnow.iloc[:5].set_index("ID")
    got = clv(bg, gg, *history(some), n_draws=0)
    assert list(got.index) == list(some.index) and list(got.columns) == ["clv", "clv_low", "clv_high"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"horizon_months": 0}, "horizon_months = 0"),
        ({"horizon_months": 1.5}, "horizon_months = 1.5"),
        ({"discount_rate": -0.1}, "discount_rate = -0.1"),
        ({"interval": 1.0}, "interval = 1.0"),
        ({"time_unit_days": 0}, "time_unit_days = 0"),
        ({"n_draws": -1}, "n_draws = -1"),
        ({"margin": float("nan")}, "margin = nan"),
    ],
)
def test_invalid_arguments(models, cdnow, kwargs, fragment):
    bg, gg = models
    with pytest.raises(InputError) as err:
        clv(bg, gg, *history(cdnow.iloc[:5]), **kwargs)
    assert fragment in str(err.value)


def test_invalid_customer_rows(models):
    bg, gg = models
    with pytest.raises(InputError, match=r"monetary\[0\] = 0.0"):
        clv(bg, gg, [1], [2.0], [10.0], [0.0])
    with pytest.raises(InputError, match=r"recency\[0\] = 20.0 is greater than T\[0\] = 10.0"):
        clv(bg, gg, [1], [20.0], [10.0], [5.0])


def test_unfitted_models_are_refused(models):
    bg, _ = models
    with pytest.raises(NotFittedError, match=r"^GammaGamma is not fitted yet"):
        clv(bg, GammaGamma(), [1], [2.0], [10.0], [5.0])


def test_large_bases_linearise_the_interval_and_agree_with_exact_draws(monkeypatch):
    # the same draws (same seed), the purchase part evaluated exactly at each draw vs to first
    # order around the estimate: on a base of 30,000 the draws are close enough for both to agree
    import importlib

    from userstrata.models.btyd import simulate_bgnbd, simulate_gammagamma

    clv_module = importlib.import_module("userstrata.models.clv")  # the module, not the function

    rng = np.random.default_rng(5)
    T = rng.uniform(30, 400, 30_000).round()
    x, t_x, T = simulate_bgnbd(30_000, dict(r=0.24, alpha=30.0, a=0.8, b=2.4), T, random_state=5, resolution=1.0)
    z = np.where(x > 0, simulate_gammagamma(x, dict(p=6.25, q=3.74, v=15.44), random_state=5), np.nan)
    bg, gg = BetaGeo().fit(x, t_x, T), GammaGamma().fit(x, z)
    args = (bg, gg, x, t_x, T, z)
    options = dict(horizon_months=6, time_unit_days=1.0, random_state=1)
    monkeypatch.setattr(clv_module, "_EXACT_EVALUATIONS", 10**12)
    exact = clv(*args, **options)
    monkeypatch.setattr(clv_module, "_EXACT_EVALUATIONS", 0)
    linear = clv(*args, **options)
    np.testing.assert_array_equal(exact["clv"], linear["clv"])  # the point value is never approximated
    width = exact["clv_high"] - exact["clv_low"]
    for bound in ("clv_low", "clv_high"):
        gap = np.abs(exact[bound] - linear[bound])
        # measured: at most 1.5% of the value, median 0.04%; 99% within 3.5% of the width
        assert np.max(gap / exact["clv"]) < 0.02 and np.median(gap / exact["clv"]) < 0.002
        assert np.quantile(gap / width, 0.99) < 0.05  # and, nearly everywhere, 5% of the interval's width
