"""BG/BB: published donations estimates, brute-force enumeration of the model, simulation,
gradient, weights, parameter recovery, input checks and the discrete summary helper."""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import approx_fprime
from scipy.special import betaln, comb

from userstrata.errors import InputError, NotFittedError
from userstrata.models._base import compress_rows
from userstrata.models.btyd.bgbb import (
    BetaGeoBetaBinom,
    _build_terms,
    _objective,
    discrete_summary,
    simulate_bgbb,
)

# Fader, Hardie & Shang (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual
# Setting", Marketing Science 29(6): the 11,104 first-time supporters of 1995 by their
# repeat-donation pattern over the six annual opportunities 1996-2001 (x = years with a
# donation, t_x = the last of them, 1996 = 1; n = 6). Counts as distributed with Hardie's data
# (lifetimes' datasets/donations.csv, BTYD's donationsSummary); they sum to 11,104.
DONATIONS = pd.DataFrame(
    [
        (0, 0, 3464), (1, 1, 1091), (1, 2, 277), (1, 3, 129), (1, 4, 78), (1, 5, 119), (1, 6, 129),
        (2, 2, 613), (2, 3, 255), (2, 4, 155), (2, 5, 173), (2, 6, 234), (3, 3, 322), (3, 4, 181),
        (3, 5, 225), (3, 6, 357), (4, 4, 240), (4, 5, 284), (4, 6, 512), (5, 5, 335), (5, 6, 728),
        (6, 6, 1203),
    ],
    columns=["frequency", "recency", "count"],
).assign(n_periods=6)


@pytest.fixture(scope="module")
def fitted():
    d = DONATIONS
    return BetaGeoBetaBinom().fit(d["frequency"], d["recency"], d["n_periods"], weights=d["count"])


def model_with(params):
    model = BetaGeoBetaBinom()
    model.params_ = dict(params)
    return model


# --------------------------------------------------------------------------- published figures


def test_donations_data_are_the_published_cohort():
    assert DONATIONS["count"].sum() == 11_104 and len(DONATIONS) == 22


def test_donations_estimates_match_fhs_2010(fitted):
    # FHS (2010), maximum likelihood estimates on the donations data: alpha = 1.204,
    # beta = 0.750, gamma = 0.657, delta = 2.783, LL = -33,225.6.
    published = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
    for name, value in published.items():
        assert round(fitted.params_[name], 3) == value, name
    assert abs(fitted.log_likelihood_ - (-33_225.6)) < 0.1
    assert fitted.converged_ and fitted.at_boundary_ == () and fitted.n_customers_ == 22


def test_probability_alive_matches_fhs_2010_table_6(fitted):
    # FHS (2010) Table 6, P(alive in 2002) by recency and frequency (as quoted in lifetimes'
    # tests): no repeat donation 0.11; two, the last in 1999 (t_x = 4) 0.59; six of six 0.93.
    p = fitted.probability_alive([0, 2, 6], [0, 4, 6], [6, 6, 6])
    np.testing.assert_allclose(p, [0.11, 0.59, 0.93], atol=0.005)


def test_expected_donations_2002_2006_match_hardie_spreadsheet(fitted):
    # Hardie's BG/BB spreadsheet for FHS (2010) (brucehardie.com/notes/010), sheet
    # "Conditional Expectations (II)": 12,884.2 expected repeat donations in 2002-2006 (n* = 5)
    # summed over the 11,104 supporters.
    d = DONATIONS
    per_pattern = fitted.expected_purchases(5, d["frequency"], d["recency"], d["n_periods"])
    assert per_pattern @ d["count"] == pytest.approx(12_884.2, abs=0.1)


def test_in_sample_histogram_matches_hardie_spreadsheet(fitted):
    # Hardie's spreadsheet, sheet "In-Sample Fit": expected supporters with 0 and with 6 repeat
    # donations in 1996-2001, 3,454.9 and 1,253.1 (FHS 2010 Figure 3 plots the whole histogram).
    expected = fitted.probability_of_x([0, 6], 6) * 11_104
    np.testing.assert_allclose(expected, [3454.9, 1253.1], atol=0.1)


# --------------------------------------------------------------------------- brute force


def enumerate_model(params, n, n_star):
    """Exact joint law of the calibration summary and the future, by enumerating every
    lifetime and every 0/1 string of transactions (no formula of the module).

    Returns a dict (x, t_x) -> [P(summary), E[future count; summary], P(alive at n+1; summary)].
    With theta ~ Beta(g, d) the customer is alive for exactly l opportunities with probability
    B(g+1, d+l)/B(g, d) and for at least H with B(g, d+H)/B(g, d); a given string with k ones
    among l lived opportunities has probability B(a+k, b+l-k)/B(a, b).
    """
    a, b, g, d = (params[k] for k in ("alpha", "beta", "gamma", "delta"))
    H = n + n_star
    out = {}
    for lived in range(H + 1):
        if lived < H:
            p_life = np.exp(betaln(g + 1, d + lived) - betaln(g, d))
        else:
            p_life = np.exp(betaln(g, d + H) - betaln(g, d))
        for string in itertools.product((0, 1), repeat=lived):
            k = sum(string)
            p = p_life * np.exp(betaln(a + k, b + lived - k) - betaln(a, b))
            cal = string[:n]
            x = sum(cal)
            t_x = max((i + 1 for i, s in enumerate(cal) if s), default=0)
            acc = out.setdefault((x, t_x), [0.0, 0.0, 0.0])
            acc[0] += p
            acc[1] += p * sum(string[n:])
            acc[2] += p * (lived >= n + 1)
    return out


BRUTE_PARAMS = [
    {"alpha": 0.8, "beta": 1.7, "gamma": 1.3, "delta": 2.2},
    {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783},
    {"alpha": 3.0, "beta": 0.4, "gamma": 0.2, "delta": 6.0},
]


@pytest.mark.parametrize("params", BRUTE_PARAMS)
def test_likelihood_equals_brute_force_enumeration(params):
    # every 0/1 string with the same (x, t_x) has the likelihood of eq. 5; there are
    # C(t_x - 1, x - 1) of them (x > 0), one for x = 0
    n = 5
    table = enumerate_model(params, n, 1)
    keys = sorted(table)
    x, t_x = (np.array(v, dtype=float) for v in zip(*keys))
    strings = np.where(x > 0, comb(np.maximum(t_x - 1, 0), np.maximum(x - 1, 0)), 1.0)
    got = np.exp(model_with(params).log_likelihood(x, t_x, np.full_like(x, n))) * strings
    np.testing.assert_allclose(got, [table[k][0] for k in keys], rtol=1e-12)
    assert sum(v[0] for v in table.values()) == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("params", BRUTE_PARAMS)
def test_conditional_predictions_equal_brute_force_enumeration(params):
    n, n_star = 4, 3
    table = enumerate_model(params, n, n_star)
    keys = sorted(table)
    x, t_x = (np.array(v, dtype=float) for v in zip(*keys))
    model, n_arr = model_with(params), np.full_like(x, n)
    prob = np.array([table[k][0] for k in keys])
    expected_future = np.array([table[k][1] for k in keys]) / prob
    alive_next = np.array([table[k][2] for k in keys]) / prob
    np.testing.assert_allclose(model.expected_purchases(n_star, x, t_x, n_arr), expected_future, rtol=1e-10)
    np.testing.assert_allclose(model.probability_alive(x, t_x, n_arr), alive_next, rtol=1e-10)


@pytest.mark.parametrize("params", BRUTE_PARAMS)
def test_unconditional_predictions_equal_brute_force_enumeration(params):
    model = model_with(params)
    for n in range(0, 8):
        table = enumerate_model(params, n, 0)
        pmf = np.zeros(n + 1)
        for (x, _), (p, _, _) in table.items():
            pmf[x] += p
        np.testing.assert_allclose(model.probability_of_x(np.arange(n + 1), n), pmf, rtol=1e-10, atol=1e-16)
        assert model.expected_purchases_new(n)[0] == pytest.approx(np.arange(n + 1) @ pmf, rel=1e-10, abs=1e-15)


def test_a_customer_first_seen_at_the_last_opportunity_gets_the_new_customer_expectation(fitted):
    # (0, 0, 0): nothing is known beyond the first transaction, so eq. 13 reduces to eq. 7
    n_star = np.array([1.0, 5, 10])
    np.testing.assert_allclose(
        fitted.expected_purchases(n_star, [0] * 3, [0] * 3, [0] * 3), fitted.expected_purchases_new(n_star), rtol=1e-12
    )
    assert fitted.log_likelihood([0], [0], [0])[0] == pytest.approx(0.0, abs=1e-15)


def test_pmf_sums_to_one_and_matches_the_mean(fitted):
    for n in (0, 1, 6, 30, 200):
        p = fitted.probability_of_x(np.arange(n + 1), n)
        assert p.sum() == pytest.approx(1.0, abs=1e-12), n
        assert np.arange(n + 1) @ p == pytest.approx(fitted.expected_purchases_new(n)[0], rel=1e-10), n
    assert fitted.probability_of_x(7, 6)[0] == 0.0


@pytest.mark.parametrize("gamma", [1.0, 1 - 1e-5, 1 + 1e-5, 1 + 3e-4, 0.999, 0.5, 2.5])
def test_alive_sums_are_right_at_and_near_gamma_one(gamma):
    # eq. 7 and eq. 13 divide by gamma - 1; compare with the plain sums
    # E[X(n)] = a/(a+b) sum_{s=1..n} B(g, d+s)/B(g, d) and, for (x, t_x, n),
    # E = B(a+x+1, b+n-x)/B(a, b) / L sum_{s=1..n*} B(g, d+n+s)/B(g, d).
    params = {"alpha": 1.2, "beta": 0.75, "gamma": gamma, "delta": 2.8}
    model = model_with(params)
    a, b, d = 1.2, 0.75, 2.8
    alive = lambda s: np.exp(betaln(gamma, d + s) - betaln(gamma, d))  # noqa: E731
    for n in (1, 6, 40):
        direct = a / (a + b) * sum(alive(s) for s in range(1, n + 1))
        assert model.expected_purchases_new(n)[0] == pytest.approx(direct, rel=1e-7)
    x, t_x, n, n_star = 3, 5, 6, 10
    lik = np.exp(model.log_likelihood(x, t_x, n)[0])
    direct = np.exp(betaln(a + x + 1, b + n - x) - betaln(a, b)) / lik * sum(alive(n + s) for s in range(1, n_star + 1))
    assert model.expected_purchases(n_star, x, t_x, n)[0] == pytest.approx(direct, rel=1e-7)


# --------------------------------------------------------------------------- simulation


def test_simulation_agrees_with_probability_of_x(fitted):
    n = 6
    x, t_x, n_arr = simulate_bgbb(200_000, fitted.params_, n, random_state=3)
    assert np.all((x <= t_x) & (t_x <= n_arr)) and np.all((x > 0) | (t_x == 0))
    counts = np.bincount(x.astype(int), minlength=n + 1)
    p = fitted.probability_of_x(np.arange(n + 1), n)
    sd = np.sqrt(len(x) * p * (1 - p))
    assert np.all(np.abs(counts - len(x) * p) < 4.5 * sd)


def test_conditional_expectation_matches_monte_carlo_from_the_posterior(fitted):
    # Discrete histories make exact conditioning possible: among simulated customers with a
    # given calibration pattern, the (p, theta) are posterior draws, so their mean number of
    # transactions in the next n* opportunities estimates eq. 13.
    n, n_star = 6, 5
    x, t_x, _, future = simulate_bgbb(400_000, fitted.params_, n, random_state=11, holdout_periods=n_star)
    for pattern in [(0, 0), (2, 4), (3, 6), (5, 5), (6, 6)]:
        match = (x == pattern[0]) & (t_x == pattern[1])
        sample = future[match]
        assert match.sum() > 2_000
        expected = fitted.expected_purchases(n_star, *pattern, n)[0]
        assert abs(sample.mean() - expected) < 4 * sample.std() / np.sqrt(len(sample)), pattern


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_from_a_simulated_cohort(seed):
    # 5,000 customers acquired at different times (4 to 12 opportunities observed). The error
    # of log(params) is judged against the fit's own covariance: each within 5 standard
    # errors, and jointly below the 1 - 1e-6 quantile of chi-square(4) (alpha and beta are
    # strongly correlated, so their errors tend to go together).
    truth = {"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.8}
    n = np.random.default_rng(100 + seed).integers(4, 13, 5_000)
    x, t_x, n = simulate_bgbb(5_000, truth, n, random_state=seed)
    model = BetaGeoBetaBinom().fit(x, t_x, n)
    assert model.converged_ and model.at_boundary_ == ()
    error = np.log([model.params_[k] / v for k, v in truth.items()])
    cov = model.log_params_cov_
    assert np.all(np.sqrt(np.diag(cov)) < 0.3)  # informative: each parameter within ~30%
    assert np.all(np.abs(error) < 5 * np.sqrt(np.diag(cov)))
    assert error @ np.linalg.solve(cov, error) < stats.chi2.ppf(1 - 1e-6, 4)


# --------------------------------------------------------------------------- likelihood machinery


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("penalizer", [0.0, 0.1])
def test_gradient_matches_finite_differences(seed, penalizer):
    rng = np.random.default_rng(seed)
    params = {"alpha": 1.0, "beta": 2.0, "gamma": 0.7, "delta": 3.0}
    x, t_x, n = simulate_bgbb(500, params, rng.integers(0, 9, 500), random_state=seed)
    (x, t_x, n), w = compress_rows([x, t_x, n])
    data = _build_terms(x, t_x, n, w)
    phi = rng.normal(0.0, 1.0, 4)
    f, g = _objective(phi, data, penalizer)
    numeric = approx_fprime(phi, lambda p: _objective(p, data, penalizer)[0], 1e-7)
    np.testing.assert_allclose(g, numeric, atol=2e-6 * max(1.0, np.abs(g).max()))
    theta = np.exp(phi)
    at_phi = model_with(dict(zip(("alpha", "beta", "gamma", "delta"), theta)))
    mean_nll = -(w @ at_phi.log_likelihood(x, t_x, n)) / w.sum()
    assert f == pytest.approx(mean_nll + penalizer * theta @ theta, rel=1e-12)


def test_weights_equal_repeated_rows(fitted):
    d = DONATIONS
    rows = d.loc[d.index.repeat(d["count"])]
    assert len(rows) == 11_104
    plain = BetaGeoBetaBinom().fit(rows["frequency"], rows["recency"], rows["n_periods"])
    for name in fitted.params_:
        assert plain.params_[name] == pytest.approx(fitted.params_[name], rel=1e-7)
        assert plain.standard_errors_[name] == pytest.approx(fitted.standard_errors_[name], rel=1e-5)
    assert plain.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-12)


def test_a_scalar_n_periods_serves_a_whole_cohort(fitted):
    d = DONATIONS
    one_by_one = fitted.probability_alive(d["frequency"], d["recency"], d["n_periods"])
    np.testing.assert_array_equal(fitted.probability_alive(d["frequency"], d["recency"], 6), one_by_one)


def test_customers_with_no_opportunity_yet_leave_the_fit_unchanged(fitted):
    d = DONATIONS
    with_new = BetaGeoBetaBinom().fit(
        np.r_[d["frequency"], 0], np.r_[d["recency"], 0], np.r_[d["n_periods"], 0], weights=np.r_[d["count"], 500]
    )
    assert with_new.params_ == fitted.params_
    with pytest.raises(InputError, match="every customer has n_periods = 0"):
        BetaGeoBetaBinom().fit([0, 0], [0, 0], [0, 0])


def test_summary_and_penalizer(fitted):
    table = fitted.summary()
    assert list(table.index) == ["alpha", "beta", "gamma", "delta"]
    assert (table["se"] > 0).all() and (table["lower_95"] < table["coef"]).all()
    d = DONATIONS
    shrunk = BetaGeoBetaBinom(penalizer=0.1).fit(d["frequency"], d["recency"], d["n_periods"], weights=d["count"])
    squares = lambda m: sum(v**2 for v in m.params_.values())  # noqa: E731
    assert squares(shrunk) < squares(fitted) and shrunk.log_likelihood_ < fitted.log_likelihood_


def test_long_histories_stay_finite_and_quiet(fitted):
    x = np.array([0, 1, 150, 300, 300, 299])
    t_x = np.array([0, 1, 300, 300, 300, 300])
    n = np.array([300, 300, 300, 300, 1000, 300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = fitted.probability_alive(x, t_x, n)
        e = fitted.expected_purchases(52, x, t_x, n)
        pmf = fitted.probability_of_x(np.arange(401), 400)
    assert np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(e)) and np.all(e >= 0)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-10)
    # a buyer at every one of 300 opportunities is almost surely alive; one who stopped after
    # the first opportunity, 299 ago, almost surely not
    assert p[3] > 0.99 and p[1] < 1e-3


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "frequency, recency, n_periods, fragment",
    [
        ([1, 3], [2, 2], [6, 6], r"frequency\[1\] = 3 is greater than recency\[1\] = 2"),
        ([1], [7], [6], r"recency\[0\] = 7 is greater than n_periods\[0\] = 6"),
        ([0], [2], [6], r"recency\[0\] = 2 for frequency\[0\] = 0"),
        ([1.5], [2], [6], r"frequency\[0\] = 1.5; expected a whole number"),
        ([1], [2], [6.5], r"n_periods\[0\] = 6.5; expected a whole number"),
        ([-1], [0], [6], r"frequency\[0\] = -1.0; expected a count"),
        ([1], [np.nan], [6], r"recency\[0\] = nan; expected a finite"),
        ([1, 2, 3], [2, 3], [6], "same length"),
        ([], [], [], "no customers"),
        (["a"], [1], [2], "must be numeric"),
    ],
)
def test_invalid_inputs_raise_input_error_naming_the_row(frequency, recency, n_periods, fragment):
    with pytest.raises(InputError, match=fragment):
        BetaGeoBetaBinom().fit(frequency, recency, n_periods)


def test_prediction_inputs_are_checked(fitted):
    with pytest.raises(InputError, match=r"frequency\[0\] = 4 is greater than recency\[0\] = 3") as err:
        fitted.probability_alive([4], [3], [6])
    assert "discrete_summary" in err.value.hint
    with pytest.raises(InputError, match=r"n_star\[0\] = 2.5"):
        fitted.expected_purchases(2.5, [1], [2], [6])
    with pytest.raises(InputError, match="n_star has length 2"):
        fitted.expected_purchases([1, 2], [1, 1, 1], [2, 2, 2], [6, 6, 6])
    with pytest.raises(InputError, match=r"weights\[1\] = -1.0"):
        BetaGeoBetaBinom().fit([0, 1], [0, 1], [2, 2], weights=[1, -1])
    with pytest.raises(InputError, match="penalizer"):
        BetaGeoBetaBinom(penalizer=-1).fit([0, 1], [0, 1], [2, 2])
    with pytest.raises(NotFittedError, match="BetaGeoBetaBinom is not fitted yet"):
        BetaGeoBetaBinom().probability_alive([0], [0], [1])


# --------------------------------------------------------------------------- discrete_summary


def test_discrete_summary_by_hand():
    periods = {
        "a": [0, 2, 2, 5],  # first at 0; active again at 2 (twice: counts once) and 5
        "b": [3],  # only the first transaction, 3 opportunities before the end (6)
        "c": [7],  # first seen after the window: not a customer yet
        "d": [1, 7, 8, 9],  # nothing more in the window; two active periods in (6, 8]
    }
    got = discrete_summary(periods, last_period=6, holdout_end=8)
    expected = pd.DataFrame(
        {
            "frequency": [2, 0, 0],
            "recency": [5, 0, 0],
            "n_periods": [6, 3, 5],
            "first_active_period": [0, 3, 1],
            "holdout_frequency": [0, 0, 2],
        },
        index=pd.Index(["a", "b", "d"], name="user_id"),
    )
    pd.testing.assert_frame_equal(got, expected)
    # a window that starts at period 1: a's first transaction is now at 2, then one at 5
    later = discrete_summary(periods, last_period=6, first_period=1)
    assert later.loc["a", ["frequency", "recency", "n_periods"]].tolist() == [1, 3, 4]


def test_discrete_summary_of_a_long_series_feeds_the_model():
    orders = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u1", "u2"], "week": [0, 3, 1, 3, 4]})
    got = discrete_summary(orders.set_index("user_id")["week"], last_period=4)
    assert got.loc["u1"].tolist() == [1, 3, 4, 0] and got.loc["u2"].tolist() == [1, 3, 3, 1]
    assert got.index.name == "user_id"
    model = model_with({"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.8})
    assert np.all(np.isfinite(model.probability_alive(got["frequency"], got["recency"], got["n_periods"])))


def test_discrete_summary_rejects_bad_periods():
    with pytest.raises(InputError, match=r"user 'u1' holds 1.5"):
        discrete_summary({"u1": [0, 1.5]}, last_period=3)
    with pytest.raises(InputError, match="first_period = 5 is after last_period = 3"):
        discrete_summary({"u1": [0]}, last_period=3, first_period=5)
    with pytest.raises(InputError, match="last_period"):
        discrete_summary({"u1": [0]}, last_period=2.5)
    with pytest.raises(InputError, match="expected a mapping"):
        discrete_summary([0, 1, 2], last_period=3)
