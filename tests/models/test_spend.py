"""Expected spend per buyer: never flat while buyers' own means differ.

Two ways a shop used to get one expected spend for every buyer (845.007, std 0.001, for a buyer
averaging 44.95 and one averaging 2,268.83): repeaters whose repeat orders were all refunded
entered the Gamma-Gamma fit with a mean of one cent and pulled it to q -> inf; and on a shop
whose buyers really spend alike the fit itself runs to q -> inf.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy.stats import chi2

from userstrata.errors import Notice
from userstrata.models import GammaGamma
from userstrata.models.btyd import simulate_gammagamma
from userstrata.models.btyd.gammagamma import _loglik
from userstrata.models.predict import _spend


def _homogeneous(n=900, seed=1, p=0.8, mean=180.0):
    """Every buyer's orders drawn from one gamma distribution (mean ``mean``): no heterogeneity.

    With no heterogeneity about half of all samples have means that vary a little less than
    chance alone makes them, and their likelihood keeps rising to q -> inf; seed 1 draws one of
    those (seeds 0, 2, 4 do not: their q is large but finite).
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 9, n).astype(float)
    nu = p / mean  # the same rate for everyone
    return x, rng.gamma(p * x, 1.0 / (x * nu))


def _heterogeneous(n=900, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, n).astype(float)
    return x, simulate_gammagamma(x, dict(p=6.25, q=3.74, v=15.44 * 50), random_state=rng)


def _fit(x, z) -> GammaGamma:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GammaGamma().fit(x, z)


def test_a_heterogeneous_shop_is_identified_a_homogeneous_one_is_not():
    assert _fit(*_heterogeneous()).heterogeneity_identified()
    flat = _fit(*_homogeneous())
    assert not flat.heterogeneity_identified()
    x, z = _homogeneous()
    spend = flat.expected_spend(x, z)
    assert spend.std() < 1e-2 * spend.mean()  # what the operator saw: the same number for everyone


def test_least_shrinkage_sits_on_the_95_percent_profile_likelihood_bound():
    x, z = _homogeneous()
    flat = _fit(x, z)
    refit = flat.least_shrinkage(x, z)
    q = refit.params_["q"]
    assert refit.q_fixed_ and 2.0 < q < flat.params_["q"]

    def profile(q_):  # a second method: Nelder-Mead over (log p, log v) on the plain log-likelihood
        res = optimize.minimize(lambda pv: -_loglik((np.exp(pv[0]), q_, np.exp(pv[1])), x, z).sum(),
                                np.log([refit.params_["p"], refit.params_["v"]]), method="Nelder-Mead",
                                options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 4000})
        return -res.fun

    ll_max = _loglik(np.array([flat.params_[k] for k in "pqv"]), x, z).sum()
    assert ll_max - profile(q) == pytest.approx(chi2.ppf(0.95, 1) / 2, abs=2e-3)
    assert refit.log_likelihood_ == pytest.approx(profile(q), abs=1e-3)
    # a smaller q would be rejected, a larger one is not
    assert ll_max - profile(q * 0.8) > chi2.ppf(0.95, 1) / 2


def test_after_least_shrinkage_expected_spend_follows_each_buyers_own_mean():
    x, z = _homogeneous()
    refit = _fit(x, z).least_shrinkage(x, z)
    p, q, v = (refit.params_[k] for k in "pqv")
    spend = refit.expected_spend(x, z)
    # FHL (2005) eq. 5, by hand: a weighted average of the population mean and the buyer's own
    weight = p * x / (p * x + q - 1)
    np.testing.assert_allclose(spend, (1 - weight) * v * p / (q - 1) + weight * z, rtol=1e-10)
    for k in (1.0, 4.0, 8.0):  # among buyers with as many repeat purchases, the order of their own means
        same = x == k
        order = np.argsort(z[same])
        assert np.all(np.diff(spend[same][order]) > 0)


def _summary(x, z, zero_share=0.0, seed=1):
    rng = np.random.default_rng(seed)
    z = z.copy()
    z[rng.random(len(z)) < zero_share] = 0.0  # repeat orders all refunded: net mean spend 0
    return pd.DataFrame({"frequency": x, "monetary_mean": z, "recency": x, "T": x + 10, "first_order_value": z})


def test_repeaters_refunded_in_full_stay_out_of_the_fit():
    x, z = _heterogeneous()
    summary = _summary(x, z, zero_share=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, spend, _ = _spend(summary)
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    kept = summary.monetary_mean > 0
    alone = _fit(x[kept], summary.monetary_mean[kept].to_numpy())
    for k in "pqv":  # the fit is the one on the buyers who kept their purchases
        assert model.params_[k] == pytest.approx(alone.params_[k], rel=1e-9)
    # not flat: the spread follows the buyers' own means
    assert spend.std() > 0.2 * spend.mean()
    assert np.corrcoef(spend[kept], summary.monetary_mean[kept])[0, 1] > 0.5
    # a refunded-in-full repeater sits below the population mean
    assert spend[~kept].max() < model.expected_spend([0], [np.nan])[0]


def test_a_homogeneous_shop_is_told_in_both_languages():
    x, z = _homogeneous()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, spend, _ = _spend(_summary(x, z))
    notices = [w.message for w in caught if isinstance(w.message, Notice)]
    assert len(notices) == 1 and not [w for w in caught if not isinstance(w.message, Notice)]
    assert "finds no spend differences between buyers beyond chance" in notices[0].text("en")
    assert "95% 轮廓似然界" in notices[0].text("zh")
    assert model.q_fixed_ and len(np.unique(spend.round(6))) > len(spend) // 2


def test_a_shop_where_nobody_bought_twice_yet_gets_the_mean_first_purchase():
    # before: NaN spend and CLV for every buyer of a new shop
    summary = pd.DataFrame({"frequency": [0.0, 0.0, 0.0], "monetary_mean": [np.nan] * 3, "recency": [0.0] * 3,
                            "T": [3.0, 9.0, 20.0], "first_order_value": [10.0, 20.0, 60.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, spend, _ = _spend(summary)
    assert model is None and np.array_equal(spend, [30.0, 30.0, 30.0])
    (notice,) = [w.message for w in caught]
    assert "mean spend of a first purchase day (30.00)" in notice.text("en") and "30.00" in notice.text("zh")
