"""BG/NBD with static covariates: likelihood, gradient, recovery, standard errors, selection, inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime
from scipy.special import betaln, gammaln

from userstrata.errors import InputError, NotFittedError
from userstrata.models import BetaGeo
from userstrata.models.btyd.covariates import (
    BetaGeoCovariates,
    _objective,
    _prepare_rows,
    select_covariates,
    simulate_bgnbd_covariates,
)

DATA = Path(__file__).parent.parent / "data"
BASE = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
# binary "paid channel" and a standardised first-order value move both processes
TRUE = {"purchase": [0.6, 0.3], "dropout_a": [-0.5, 0.0], "dropout_b": [0.3, -0.2]}
# for selection: effects large enough that 1,200 held-out customers show them every time
# (40 of 40 seeds kept both; at TRUE's 0.3 per sd first_value is kept in about 9 of 10 splits,
# as a held-out comparison on 30% of the customers is a much weaker test than a Wald test)
STRONG = {"purchase": [0.7, 0.5], "dropout_a": [-0.5, 0.0], "dropout_b": [0.3, -0.2]}


@pytest.fixture(scope="module")
def cdnow():
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


def shop(seed: int, n: int = 4000, coefficients=TRUE):
    """Simulated customers whose purchase rate and dropout depend on channel and first-order value."""
    rng = np.random.default_rng(seed)
    paid = rng.random(n) < 0.4
    # money enters on the log scale: a raw, right-skewed amount would put a few customers
    # many sd out, and their likelihood then swings the held-out comparison
    first_value = np.log(rng.lognormal(3.0, 0.5, n))
    z_value = (first_value - first_value.mean()) / first_value.std()  # what the model's design does
    Z = np.column_stack([paid, z_value]).astype(float)
    x, t_x, T = simulate_bgnbd_covariates(Z, BASE, coefficients, rng.uniform(20, 52, n), random_state=seed + 1)
    summary = pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
    covariates = pd.DataFrame({"channel": np.where(paid, "paid", "organic"), "first_value": first_value})
    return summary, covariates, Z


def fit(summary, covariates, **kw):
    return BetaGeoCovariates(**kw).fit(summary["frequency"], summary["recency"], summary["T"], covariates)


def fhl_likelihood(r, alpha, a, b, x, t_x, T):
    """FHL (2005) eq. 6 written out directly (no log-sum-exp), with per-customer alpha, a, b."""
    common = np.exp(gammaln(r + x) - gammaln(r) + r * np.log(alpha))
    alive = np.exp(betaln(a, b + x) - betaln(a, b)) * common / (alpha + T) ** (r + x)
    dead = np.where(
        x > 0,
        np.exp(betaln(a + 1, np.maximum(b + x - 1, 1e-9)) - betaln(a, b)) * common / (alpha + t_x) ** (r + x),
        0.0,
    )
    return alive + dead


# --------------------------------------------------------------------------- likelihood


def test_zero_coefficients_give_the_plain_bgnbd_likelihood(cdnow):
    # second implementation: BetaGeo's own per-customer likelihood at the same base parameters
    rng = np.random.default_rng(0)
    cov = pd.DataFrame({"group": rng.choice(["a", "b", "c"], len(cdnow)), "v": rng.normal(size=len(cdnow))})
    model = fit(cdnow, cov)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005, CDNOW
    model.params_ = dict(published)
    model._gammas = np.zeros_like(model._gammas)
    plain = BetaGeo()
    plain.params_ = dict(published)
    args = (cdnow["frequency"], cdnow["recency"], cdnow["T"])
    np.testing.assert_allclose(model.log_likelihood(*args, cov), plain.log_likelihood(*args), rtol=1e-12)
    # FHL (2005) p. 280: LL = -9582.4 at these (rounded) estimates
    assert model.log_likelihood(*args, cov).sum() == pytest.approx(-9582.4, abs=0.5)


def test_likelihood_matches_fhl_formula_with_individual_parameters():
    summary, covariates, Z = shop(3, n=500)
    model = fit(summary, covariates)
    r = model.params_["r"]
    g = model._gammas
    # links of Fader & Hardie (2007): alpha falls, a and b rise with gamma'z
    alpha = model.params_["alpha"] * np.exp(-Z @ g[0])
    a = model.params_["a"] * np.exp(Z @ g[1])
    b = model.params_["b"] * np.exp(Z @ g[2])
    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    expected = np.log(fhl_likelihood(r, alpha, a, b, x, t_x, T))
    np.testing.assert_allclose(model.log_likelihood(x, t_x, T, covariates), expected, rtol=1e-10)
    assert model.log_likelihood_ == pytest.approx(expected.sum(), rel=1e-10)


def test_analytic_gradient_matches_finite_differences():
    summary, _, Z = shop(4, n=800)
    rows = _prepare_rows(
        summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy(),
        Z, np.random.default_rng(1).uniform(0.5, 2, len(Z)),
    )
    assert 0 < rows.k < len(Z)  # both the non-repeater and the repeater paths are checked
    phi = np.r_[np.log([0.4, 6.0, 1.3, 2.0]), 0.2, -0.1, 0.3, 0.25, -0.4, 0.1]
    for penalizer in (0.0, 0.1):
        f, g = _objective(phi, rows, penalizer)
        numeric = approx_fprime(phi, lambda p: _objective(p, rows, penalizer)[0], 1e-7)
        np.testing.assert_allclose(g, numeric, atol=2e-6)


def test_noise_covariate_on_cdnow_is_a_nested_model(cdnow):
    # the plain optimum (FHL 2005: LL -9582.4) is the zero-coefficient point of this model, so
    # the covariate model's LL is at least it; with a pure-noise covariate (3 coefficients)
    # 2 * gain is chi2(3): above 20 with probability 2e-4
    rng = np.random.default_rng(7)
    model = fit(cdnow, pd.DataFrame({"noise": rng.normal(size=len(cdnow))}))
    gain = model.log_likelihood_ - (-9582.429)  # CLVTools' optimum, see test_bgnbd.py
    assert -0.01 < gain < 10
    assert model.params_["r"] == pytest.approx(0.243, rel=0.1)
    assert model.params_["alpha"] == pytest.approx(4.414, rel=0.1)


def test_weights_equal_duplicated_rows():
    summary, covariates, _ = shop(5, n=600)
    covariates = covariates[["channel"]]
    twice = fit(pd.concat([summary, summary]), pd.concat([covariates, covariates]))
    weighted = BetaGeoCovariates().fit(
        summary["frequency"], summary["recency"], summary["T"], covariates, weights=np.full(len(summary), 2.0)
    )
    for k, v in twice.params_.items():
        assert weighted.params_[k] == pytest.approx(v, rel=1e-6)
    np.testing.assert_allclose(weighted.coefficients_["coef"], twice.coefficients_["coef"], atol=1e-6)


# --------------------------------------------------------------------------- recovery and standard errors


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fit_recovers_coefficients_within_a_few_standard_errors(seed):
    summary, covariates, _ = shop(seed)
    model = fit(summary, covariates)
    assert model.converged_
    c = model.coefficients_.set_index(["process", "covariate"])
    for process, values in TRUE.items():
        for name, true in zip(["channel=paid", "first_value"], values):
            est, se = c.loc[(process, name), ["coef", "se"]]
            assert abs(est - true) < 3.5 * se, (process, name, est, se)
    for name, true in BASE.items():
        assert abs(model.params_[name] - true) < 3.5 * model.standard_errors_[name], name


def test_standard_errors_match_a_numerical_hessian_of_the_likelihood():
    # second method: Hessian of the total log-likelihood by second differences of its values
    summary, covariates, _ = shop(21, n=2000)
    model = fit(summary, covariates)
    args = (summary["frequency"], summary["recency"], summary["T"], covariates)
    phi0 = np.r_[np.log(list(model.params_.values())), model._gammas.ravel()]

    def total(phi):
        m = BetaGeoCovariates()
        m.__dict__.update(model.__dict__)
        m.params_ = dict(zip(("r", "alpha", "a", "b"), np.exp(phi[:4])))
        m._gammas = phi[4:].reshape(model._gammas.shape)
        return m.log_likelihood(*args).sum()

    k, h = len(phi0), 1e-3
    H = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            corners = total(phi0 + ei + ej) - total(phi0 + ei - ej) - total(phi0 - ei + ej) + total(phi0 - ei - ej)
            H[i, j] = corners / (4 * h * h)
    se_phi = np.sqrt(np.diag(np.linalg.inv(-H)))
    np.testing.assert_allclose(model.coefficients_["se"], se_phi[4:], rtol=0.02)
    base_se = np.exp(phi0[:4]) * se_phi[:4]
    np.testing.assert_allclose(list(model.standard_errors_.values()), base_se, rtol=0.02)


@pytest.mark.slow
def test_standard_errors_match_the_spread_over_replications():
    # 40 seeded replications: the sd of the estimates against the mean reported se (the sd of
    # a 40-sample sd is ~11% of it, so 0.7..1.4 is a loose band of about 3 of those)
    estimates, ses = [], []
    for seed in range(40):
        summary, covariates, _ = shop(1000 + seed, n=2000)
        model = fit(summary, covariates)
        estimates.append(model.coefficients_["coef"].to_numpy())
        ses.append(model.coefficients_["se"].to_numpy())
    ratio = np.std(estimates, axis=0, ddof=1) / np.mean(ses, axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio
    bias = np.mean(estimates, axis=0) - np.concatenate(list(TRUE.values()))
    assert np.all(np.abs(bias) < 4 * np.mean(ses, axis=0) / np.sqrt(40)), bias


# --------------------------------------------------------------------------- predictions


def test_predictions_equal_betageo_at_each_customers_parameters():
    # a customer's prediction is plain BG/NBD at their own (alpha_i, a_i, b_i)
    summary, covariates, _ = shop(31, n=1500)
    model = fit(summary, covariates)
    rows = summary.iloc[:40]
    own = model.individual_params(covariates.iloc[:40])
    got_alive = model.probability_alive(rows["frequency"], rows["recency"], rows["T"], covariates.iloc[:40])
    got_exp = model.expected_purchases(26, rows["frequency"], rows["recency"], rows["T"], covariates.iloc[:40])
    got_new = model.expected_purchases_new(26, covariates.iloc[:40])
    for i in range(40):
        plain = BetaGeo()
        plain.params_ = own.iloc[i].to_dict()
        x, t_x, T = rows.iloc[i][["frequency", "recency", "T"]]
        assert got_alive[i] == pytest.approx(plain.probability_alive(x, t_x, T)[0], rel=1e-12)
        assert got_exp[i] == pytest.approx(plain.expected_purchases(26, x, t_x, T)[0], rel=1e-9)
        assert got_new[i] == pytest.approx(plain.expected_purchases_new(26)[0], rel=1e-9)


def test_expected_purchases_new_matches_simulation():
    # E[X(t)] of a new customer in each channel against the mean count of 200,000 simulated ones
    summary, covariates, _ = shop(41)
    model = fit(summary, covariates)
    t = 30.0
    for channel in ("organic", "paid"):
        row = pd.DataFrame({"channel": [channel], "first_value": [covariates["first_value"].mean()]})
        own = model.individual_params(row).iloc[0]
        expected = model.expected_purchases_new(t, row)[0]
        Z = np.zeros((200_000, 1))
        x, _, _ = simulate_bgnbd_covariates(Z, own.to_dict(), {}, t, random_state=5)
        assert expected == pytest.approx(x.mean(), abs=4 * x.std() / np.sqrt(len(x)))


def test_numeric_covariates_are_standardised_with_the_fit_transform():
    summary, covariates, _ = shop(51, n=1000)
    model = fit(summary, covariates)
    at_mean = pd.DataFrame({"channel": ["organic"], "first_value": [covariates["first_value"].mean()]})
    own = model.individual_params(at_mean).iloc[0]
    for k in ("alpha", "a", "b"):  # reference level and the mean value: the base parameters
        assert own[k] == pytest.approx(model.params_[k], rel=1e-12)
    one_sd = at_mean.assign(first_value=covariates["first_value"].mean() + covariates["first_value"].std(ddof=0))
    g = model.coefficients_.set_index(["process", "covariate"])["coef"]
    alpha_1sd = model.individual_params(one_sd)["alpha"].iloc[0]
    assert alpha_1sd == pytest.approx(model.params_["alpha"] * np.exp(-g[("purchase", "first_value")]), rel=1e-12)


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("seed", [61, 62, 63])
def test_select_keeps_covariates_that_matter(seed):
    summary, covariates, _ = shop(seed, coefficients=STRONG)
    # split seed apart from the simulation's: the same stream would tie the split to the covariates
    result = select_covariates(summary, covariates, random_state=seed + 500)
    assert result.kept == ("channel", "first_value") and result.dropped == ()
    assert isinstance(result.model, BetaGeoCovariates)
    assert result.holdout_gain == pytest.approx(result.holdout_ll_covariates - result.holdout_ll_plain)
    assert result.holdout_gain > 2 * result.noise_sd
    assert "保留协变量" in result.reason("zh") and "kept" in result.reason("en")
    assert set(result.coefficients.columns) >= {"process", "covariate", "coef", "se", "z", "p_value"}


@pytest.mark.parametrize("seed", [71, 72, 73, 74, 75])
def test_select_drops_pure_noise(seed):
    summary, covariates, _ = shop(seed, coefficients={})
    result = select_covariates(summary, covariates, random_state=seed + 500)
    assert result.kept == () and set(result.dropped) == {"channel", "first_value"}
    assert isinstance(result.model, BetaGeo) and not isinstance(result.model, BetaGeoCovariates)
    assert "不使用协变量" in result.reason("zh") and "dropped" in result.reason("en")


def test_select_keeps_the_real_covariate_and_drops_the_noisy_one():
    summary, covariates, _ = shop(81, coefficients={"purchase": [0.6, 0.0], "dropout_a": [-0.5, 0.0]})
    result = select_covariates(summary, covariates, random_state=581)
    assert result.kept == ("channel",) and result.dropped == ("first_value",)
    assert list(result.model.covariate_names_) == ["channel=paid"]


# --------------------------------------------------------------------------- inputs


def test_input_errors_name_the_column_and_value():
    summary, covariates, _ = shop(91, n=300)
    model = fit(summary, covariates)
    new = covariates.iloc[:2].assign(channel=["tiktok", "paid"])
    with pytest.raises(InputError, match=r"covariates\['channel'\] has level 'tiktok'"):
        model.probability_alive([0, 0], [0, 0], [1, 1], new)
    with pytest.raises(InputError, match="constant"):
        fit(summary, covariates.assign(first_value=3.0))
    with pytest.raises(InputError, match="single level"):
        fit(summary, covariates.assign(channel="paid"))
    with pytest.raises(InputError, match=r"covariates\['first_value'\]\[4\] = nan"):
        fit(summary, covariates.assign(first_value=np.where(np.arange(300) == 4, np.nan, 1.0 + np.arange(300))))
    with pytest.raises(InputError, match="299 rows but there are 300 customers"):
        fit(summary, covariates.iloc[:299])
    with pytest.raises(InputError, match="index does not match"):
        select_covariates(summary, covariates.set_index(covariates.index + 1000))
    with pytest.raises(InputError, match="holdout_share"):
        select_covariates(summary, covariates, holdout_share=1.5)
    with pytest.raises(NotFittedError):
        BetaGeoCovariates().probability_alive([0], [0], [1], covariates.iloc[:1])


def test_numeric_array_and_dummy_columns():
    # a 2-D array works; a 0/1 column stays a dummy (not standardised), other numbers are
    summary, _, Z = shop(92, n=1500)
    model = fit(summary, Z)
    assert model.covariate_names_ == ("x0", "x1")
    design = model._design
    assert design.columns[0].kind == "dummy" and design.columns[1].kind == "numeric"


def test_category_order_sets_the_reference_and_bools_are_categories():
    summary, covariates, _ = shop(93, n=1500)
    ordered = covariates.assign(
        channel=pd.Categorical(covariates["channel"], categories=["paid", "organic"]),
        member=np.arange(1500) % 3 == 0,
    )
    model = fit(summary, ordered)
    assert model.covariate_names_ == ("channel=organic", "first_value", "member=True")
    # reversing the reference flips the sign of the channel effect on the purchase rate
    plain_order = fit(summary, ordered.assign(channel=covariates["channel"]))
    c1 = model.coefficients_.set_index(["process", "covariate"])["coef"]
    c2 = plain_order.coefficients_.set_index(["process", "covariate"])["coef"]
    assert c1[("purchase", "channel=organic")] == pytest.approx(-c2[("purchase", "channel=paid")], abs=1e-4)


def test_customers_who_bought_first_today_do_not_move_the_fit():
    # (x, t_x, T) = (0, 0, 0) has likelihood 1 under any parameters (FHL 2005 eq. 6 at T = 0)
    summary, covariates, _ = shop(94, n=1000)
    covariates = covariates[["channel"]]  # a numeric column's standardisation would see the new rows
    base = fit(summary, covariates)
    today = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": np.zeros(50)})
    more = fit(pd.concat([summary, today]), pd.concat([covariates, covariates.iloc[:50]]))
    for k, v in base.params_.items():
        assert more.params_[k] == pytest.approx(v, rel=1e-8)
    assert more.n_customers_ == 1050 and more.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-12)
    rows = covariates.iloc[:5]
    np.testing.assert_allclose(more.probability_alive(np.zeros(5), np.zeros(5), np.zeros(5), rows), 1.0)
