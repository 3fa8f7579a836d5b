"""Gamma-Gamma spend model: published CDNOW estimates, formulas, gradient, recovery, inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime
from scipy.special import gammaln

from userstrata.errors import InputError, NotFittedError
from userstrata.models import GammaGamma
from userstrata.models._base import compress_rows
from userstrata.models.btyd import gammagamma, simulate_gammagamma

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def cdnow():
    # columns ID, x, t_x, T, zbar (average repeat-purchase value in USD, 0 when x = 0)
    return pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def fitted(cdnow):
    return GammaGamma().fit(cdnow["x"], cdnow["zbar"])


def sig3(v: float) -> float:
    return float(f"{v:.3g}")


def test_cdnow_estimates_match_published(fitted):
    # Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves", JMR 42(4), and
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", on the 946 CDNOW
    # repeat buyers: p = 6.25, q = 3.74, gamma (our v) = 15.44.
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert sig3(fitted.params_[name]) == sig3(value), name
        assert fitted.params_[name] == pytest.approx(value, rel=2e-3), name
    # R CLVTools (tests/testthat/test_correctness_gg.R) reports LL -4055.9177 for these
    # estimates; our zbar is rounded to cents, hence the 0.02 tolerance.
    assert abs(fitted.log_likelihood_ - (-4055.9177)) < 0.02
    assert fitted.n_repeaters_ == 946 and fitted.n_customers_ == 2357


def test_loglik_matches_fhl_density(fitted, cdnow):
    # FHL (2005) eq. 3 / Fader & Hardie (2013) eq. 3, written out directly:
    # f(zbar | x) = G(px+q)/(G(px)G(q)) v^q x^(px) zbar^(px-1) / (v + x zbar)^(px+q)
    p, q, v = fitted.params_["p"], fitted.params_["q"], fitted.params_["v"]
    rep = cdnow[cdnow["x"] > 0]
    x, z = rep["x"].to_numpy(float), rep["zbar"].to_numpy(float)
    log_f = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + p * x * np.log(x)
             + (p * x - 1) * np.log(z) - (p * x + q) * np.log(v + x * z))
    assert fitted.log_likelihood_ == pytest.approx(log_f.sum(), rel=1e-12)


def test_expected_spend_by_hand(fitted):
    # FHL (2005) eq. 5: E(M | x, zbar) = (q-1)/(px+q-1) * v p/(q-1) + px/(px+q-1) * zbar;
    # with no repeat purchases it is the population mean v p / (q-1).
    p, q, v = fitted.params_["p"], fitted.params_["q"], fitted.params_["v"]
    x, z = np.array([0, 1, 2, 10.0]), np.array([0, 11.77, 22.35, 40.0])
    pop = v * p / (q - 1)
    expected = np.where(x > 0, (q - 1) / (p * x + q - 1) * pop + p * x / (p * x + q - 1) * z, pop)
    np.testing.assert_allclose(fitted.expected_spend(x, z), expected, rtol=1e-12)
    # shrinkage: the estimate lies between the customer's own mean and the population mean
    assert pop < fitted.expected_spend(1, 1e3)[0] < 1e3


def test_frequency_zero_rows_are_dropped_and_monetary_ignored(cdnow, fitted):
    repeaters = cdnow[cdnow["x"] > 0]
    only = GammaGamma().fit(repeaters["x"], repeaters["zbar"])
    assert only.params_ == pytest.approx(fitted.params_, rel=1e-9)
    monetary = cdnow["zbar"].where(cdnow["x"] > 0, np.nan)  # NaN is fine where x == 0
    assert GammaGamma().fit(cdnow["x"], monetary).params_ == pytest.approx(fitted.params_, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(cdnow, seed):
    rep = cdnow[cdnow["x"] > 0]
    (x, z), w = compress_rows([rep["x"].to_numpy(float), rep["zbar"].to_numpy(float)])
    data = gammagamma._prepare(x, z, w)
    phi = np.random.default_rng(seed).normal(1.0, 0.8, 3)
    penalizer = 0.01 * seed
    f, g = gammagamma._objective(phi, data, penalizer)
    numeric = approx_fprime(phi, lambda p: gammagamma._objective(p, data, penalizer)[0], 1e-7)
    np.testing.assert_allclose(g, numeric, atol=2e-6 * max(1.0, np.abs(g).max()))
    theta = np.exp(phi)
    assert f == pytest.approx(-(w @ gammagamma._loglik(theta, x, z)) / w.sum() + penalizer * theta @ theta, rel=1e-12)


def test_weights_equal_repeated_rows(cdnow, fitted):
    rep = cdnow[cdnow["x"] > 0]
    grouped = rep.groupby(["x", "zbar"]).size().rename("n").reset_index()
    assert (grouped["n"] > 1).any()
    weighted = GammaGamma().fit(grouped["x"], grouped["zbar"], weights=grouped["n"])
    assert weighted.params_ == pytest.approx(fitted.params_, rel=1e-7)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_from_simulation(seed):
    truth = {"p": 6.0, "q": 4.0, "v": 15.0}
    x = np.random.default_rng(seed).integers(1, 15, 50_000).astype(float)
    monetary = simulate_gammagamma(x, truth, random_state=seed)
    model = GammaGamma().fit(x, monetary)
    for name, value in truth.items():
        assert model.params_[name] == pytest.approx(value, rel=0.15), name


@pytest.mark.parametrize(
    ("frequency", "monetary", "fragment"),
    [
        ([1, 2], [10.0, 0.0], "monetary[1] = 0.0"),
        ([1, 2], [10.0, np.nan], "monetary[1] = nan"),
        ([1, 2], [-5.0, 3.0], "monetary[0] = -5.0"),
        ([1, 2.5], [10.0, 3.0], "frequency[1] = 2.5"),
        ([1, 2], [10.0], "same length; got 2 and 1"),
        ([0, 0], [0.0, 0.0], "no customer has frequency > 0"),
    ],
)
def test_invalid_inputs(frequency, monetary, fragment):
    with pytest.raises(InputError) as err:
        GammaGamma().fit(frequency, monetary)
    assert fragment in str(err.value)


def test_not_fitted():
    with pytest.raises(NotFittedError, match=r"^GammaGamma is not fitted yet; call fit\(\) first$"):
        GammaGamma().expected_spend([1], [10.0])
