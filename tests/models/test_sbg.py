"""Shifted-beta-geometric (sBG): published estimates, closed forms against sums, simulation, inputs."""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy.optimize import approx_fprime

from userstrata.errors import InputError, NotFittedError
from userstrata.models.renewals import ShiftedBetaGeo, _objective, simulate_sbg

# Fader & Hardie (2007), "How to project customer retention", Journal of Interactive Marketing
# 21(1), 76-90, Table 1: customers (of 1000) still active at the start of years 0..12. The same
# figures appear in the R package foretell (data customer_retention) and in PyMC-Marketing's
# sBG notebook and tests.
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241, 223, 207, 194, 183, 173]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491, 468, 445, 427, 409, 394]
# The paper's estimates on years 0..7: Regular alpha = 0.704, beta = 1.182; High End
# alpha = 0.668, beta = 3.806. (Some secondary sources swap the two segments' estimates; the
# data decide: the steep Regular curve needs the smaller beta, its mean churn
# alpha / (alpha + beta) = 0.37 matching the 37% lost in year 1.)
PUBLISHED = {"regular": (REGULAR, 0.704, 1.182), "high_end": (HIGH_END, 0.668, 3.806)}


def hand_pmf(alpha, beta, t_max):
    """P(T = t), t = 1..t_max, by the paper's recursion (eq. 7 ff.):
    P(1) = alpha / (alpha + beta), P(t) = (beta + t - 2) / (alpha + beta + t - 1) P(t - 1)."""
    p = [alpha / (alpha + beta)]
    for t in range(2, t_max + 1):
        p.append((beta + t - 2) / (alpha + beta + t - 1) * p[-1])
    return np.array(p)


def hand_survival(alpha, beta, t_max):
    """S(t) = 1 - sum_{i <= t} P(i), t = 0..t_max."""
    return np.concatenate([[1.0], 1.0 - np.cumsum(hand_pmf(alpha, beta, t_max))])


def hand_loglik(alpha, beta, alive):
    """FH 2007 eq. 9: lapses in year t times ln P(t), survivors at the end times ln S(T)."""
    alive = np.asarray(alive, dtype=float)
    T = len(alive) - 1
    lost = alive[:-1] - alive[1:]
    return float(lost @ np.log(hand_pmf(alpha, beta, T)) + alive[-1] * math.log(hand_survival(alpha, beta, T)[-1]))


# --------------------------------------------------------------------------- published figures


@pytest.mark.parametrize("segment", sorted(PUBLISHED))
def test_fit_on_years_0_to_7_reproduces_fader_hardie_2007(segment):
    data, alpha, beta = PUBLISHED[segment]
    model = ShiftedBetaGeo().fit(data[:8])
    assert round(model.params_["alpha"], 3) == alpha
    assert round(model.params_["beta"], 3) == beta
    assert model.converged_ and model.at_boundary_ == () and model.n_customers_ == 1000
    # the optimum's log-likelihood is the hand-written one at the optimum, and no lower than at
    # the published (rounded) estimates
    ll_published = hand_loglik(alpha, beta, data[:8])
    assert model.log_likelihood_ == pytest.approx(hand_loglik(model.params_["alpha"], model.params_["beta"], data[:8]),
                                                  abs=1e-8)
    assert ll_published - 1e-3 <= model.log_likelihood_ <= ll_published + 0.01


@pytest.mark.parametrize("segment", sorted(PUBLISHED))
def test_projection_of_years_8_to_12(segment):
    data, alpha, beta = PUBLISHED[segment]
    model = ShiftedBetaGeo().fit(data[:8])
    projected = 1000 * model.survival(np.arange(8, 13))
    # against the projection from the published parameters by the paper's recursion
    by_hand = 1000 * hand_survival(alpha, beta, 12)[8:]
    assert projected == pytest.approx(by_hand, abs=0.5)
    # and against what happened: within 2% (Regular) and 4.5% (High End) of the actual counts,
    # where the best homogeneous (geometric) model, fitted the same way, is off by over 25%
    actual = np.array(data[8:], dtype=float)
    error = np.abs(projected - actual) / actual
    assert error.max() < {"regular": 0.02, "high_end": 0.045}[segment]
    lost = np.asarray(data[:8], float)[:-1] - np.asarray(data[:8], float)[1:]
    theta = lost.sum() / np.asarray(data[:7], float).sum()  # geometric MLE: lapses / member-years at risk
    geometric = 1000 * (1 - theta) ** np.arange(8, 13)
    assert (np.abs(geometric - actual) / actual).max() > 0.25


def test_retention_rises_with_tenure_as_published():
    # FH 2007: r(t) = (beta + t - 1) / (alpha + beta + t - 1); Regular r(1) = 1.182 / 1.886 = 0.627
    model = ShiftedBetaGeo().fit(REGULAR[:8])
    r = model.retention(np.arange(1, 13))
    assert r[0] == pytest.approx(0.627, abs=5e-4)
    assert np.all(np.diff(r) > 0)
    s = hand_survival(model.params_["alpha"], model.params_["beta"], 12)
    assert r == pytest.approx(s[1:] / s[:-1], rel=1e-10)
    pmf = hand_pmf(model.params_["alpha"], model.params_["beta"], 12)
    assert model.churn_pmf(np.arange(1, 13)) == pytest.approx(pmf, rel=1e-10)
    assert model.survival(0)[0] == 1.0


# --------------------------------------------------------------------------- likelihood machinery


def test_gradient_is_the_derivative_of_the_objective():
    t_l, w_l = np.array([1.0, 2.0, 5.0]), np.array([30.0, 12.0, 4.0])
    t_c, w_c = np.array([3.0, 7.0]), np.array([9.0, 50.0])
    total = w_l.sum() + w_c.sum()
    for phi in (np.array([0.3, -0.7]), np.array([-1.2, 1.5])):
        f, g = _objective(phi, t_l, w_l, t_c, w_c, total, 0.0)
        numeric = approx_fprime(phi, lambda p: _objective(p, t_l, w_l, t_c, w_c, total, 0.0)[0], 1e-7)
        assert g == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_several_cohorts_fit_jointly_like_their_sum():
    # the likelihood depends on the counts per period only, so two cohorts observed for the same
    # periods give the same fit as one cohort of their sums
    a = [400, 250, 180, 140, 120]
    b = [600, 380, 290, 240, 200]
    joint = ShiftedBetaGeo().fit([a, b])
    summed = ShiftedBetaGeo().fit(np.add(a, b))
    assert joint.params_ == pytest.approx(summed.params_, rel=1e-7)
    assert joint.n_cohorts_ == 2 and joint.n_customers_ == 1000


def test_cohorts_of_different_lengths_and_mid_way_censoring_match_a_direct_maximisation():
    # three cohorts started one year apart (FH 2007 section "multiple cohorts"), and one
    # cohort where 40 members' terms were still running after year 2
    cohorts = [[1000, 631, 468, 382], [800, 500, 380], [900, 560]]
    censored = [[0, 0, 0, 382], [0, 0, 380], [0, 560]]
    extra_alive, extra_cens = [500, 400, 300, 200], [0, 0, 40, 200]

    def negative_ll(phi):
        a, b = np.exp(phi)
        total = sum(hand_loglik(a, b, c) for c in cohorts)
        pmf, surv = hand_pmf(a, b, 3), hand_survival(a, b, 3)
        # extra cohort: lapses in years 1, 2, 3 = 100, 100, 60; 40 censored after year 2; 200 after 3
        total += 100 * math.log(pmf[0]) + 100 * math.log(pmf[1]) + 60 * math.log(pmf[2])
        total += 40 * math.log(surv[2]) + 200 * math.log(surv[3])
        return -total

    direct = optimize.minimize(negative_ll, [0.0, 0.0], method="Nelder-Mead",
                               options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
    model = ShiftedBetaGeo().fit(cohorts + [extra_alive], censored=censored + [extra_cens])
    assert [model.params_["alpha"], model.params_["beta"]] == pytest.approx(np.exp(direct.x), rel=1e-5)
    assert model.log_likelihood_ == pytest.approx(-direct.fun, abs=1e-6)


def test_default_censoring_is_the_last_count():
    explicit = ShiftedBetaGeo().fit(REGULAR[:8], censored=[0] * 7 + [REGULAR[7]])
    default = ShiftedBetaGeo().fit(REGULAR[:8])
    assert explicit.params_ == pytest.approx(default.params_, rel=1e-12)


def test_standard_errors_from_the_hessian_match_a_numerical_one():
    model = ShiftedBetaGeo().fit(HIGH_END[:8])
    a, b = model.params_["alpha"], model.params_["beta"]

    def ll(theta):
        return hand_loglik(theta[0], theta[1], HIGH_END[:8])

    h = 1e-4
    H = np.empty((2, 2))
    x0 = np.array([a, b])
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = (ll(x0 + ei + ej) - ll(x0 + ei - ej) - ll(x0 - ei + ej) + ll(x0 - ei - ej)) / (4 * h * h)
    se = np.sqrt(np.diag(np.linalg.inv(-H)))
    assert [model.standard_errors_["alpha"], model.standard_errors_["beta"]] == pytest.approx(se, rel=1e-3)
    summary = model.summary()
    assert list(summary.index) == ["alpha", "beta"]
    assert (summary["lower_95"] < summary["coef"]).all() and (summary["coef"] < summary["upper_95"]).all()


# --------------------------------------------------------------------------- DERL and renewal odds


def fitted(alpha, beta):
    model = ShiftedBetaGeo()
    model.params_ = {"alpha": alpha, "beta": beta}  # set by hand: predictions need only these
    return model


def direct_derl(alpha, beta, d, n, terms=20_000):
    """sum_{j>=1} S(n + j) / S(n) / (1 + d)^(j - 1), truncated: the ratio is a product of retentions."""
    j = np.arange(1, terms + 1)
    ratio = np.cumprod((beta + n + j - 1) / (alpha + beta + n + j - 1))
    return float(np.sum(ratio * np.exp(-(j - 1) * math.log1p(d))))


@pytest.mark.parametrize("alpha, beta", [(0.704, 1.182), (0.668, 3.806), (3.2, 0.9)])
@pytest.mark.parametrize("d", [0.01, 0.1, 0.5])
def test_derl_closed_form_equals_the_discounted_sum(alpha, beta, d):
    model = fitted(alpha, beta)
    n = np.array([0, 1, 4, 25])
    got = model.derl(d, n)
    expected = [direct_derl(alpha, beta, d, k) for k in n]
    assert got == pytest.approx(expected, rel=1e-8)


def test_derl_of_the_high_end_cohort_after_seven_years():
    # A peer implementation (the "sBG model of customer retention" Python package README) reports
    # DERL = 7.530 for the High End survivors after 7 years at d = 10%, with FH 2007's estimates;
    # FH 2010's eq. for a customer with n - 1 = 7 renewals.
    assert fitted(0.668, 3.806).derl(0.10, 7)[0] == pytest.approx(7.530, abs=5e-4)


def test_derl_without_discount_is_the_expected_number_of_renewals():
    # E[renewals still to come | n] = (beta + n) / (alpha - 1) for alpha > 1; infinite otherwise
    assert fitted(3.2, 0.9).derl(0.0, [0, 3]) == pytest.approx([0.9 / 2.2, 3.9 / 2.2], rel=1e-12)
    assert np.isinf(fitted(0.7, 1.2).derl(0.0, 2)).all()
    # and expected_renewals over a horizon is the plain (undiscounted) partial sum
    model = fitted(0.704, 1.182)
    for n in (0, 3):
        s = hand_survival(0.704, 1.182, n + 10)
        assert model.expected_renewals(10, n)[0] == pytest.approx(s[n + 1 :].sum() / s[n], rel=1e-10)
    assert model.expected_renewals(0, [0, 2]) == pytest.approx([0.0, 0.0])


def test_p_renew_next_matches_simulated_members():
    # members who survived n renewals renew once more with (beta + n) / (alpha + beta + n)
    alpha, beta = 0.9, 2.5
    _, lifetimes = simulate_sbg(400_000, {"alpha": alpha, "beta": beta}, 8, random_state=7, return_lifetimes=True)
    model = fitted(alpha, beta)
    for n in (0, 1, 3, 6):
        at_risk = lifetimes > n  # paying in period n + 1
        renewed = (lifetimes[at_risk] > n + 1).mean()
        expected = model.p_renew_next(n)[0]
        se = math.sqrt(expected * (1 - expected) / at_risk.sum())
        assert abs(renewed - expected) < 4 * se, n
    assert model.p_renew_next([0, 1, 2]) == pytest.approx(model.retention([1, 2, 3]), rel=1e-14)


# --------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("alpha, beta", [(0.704, 1.182), (2.0, 6.0)])
def test_simulated_cohorts_recover_the_parameters(alpha, beta):
    cohorts = [simulate_sbg(4000, {"alpha": alpha, "beta": beta}, periods, random_state=seed)
               for seed, periods in ((1, 10), (2, 6), (3, 3))]  # fmt: skip
    model = ShiftedBetaGeo().fit(cohorts)
    for name, true in (("alpha", alpha), ("beta", beta)):
        assert abs(model.params_[name] - true) < 4 * model.standard_errors_[name], name


def test_simulated_counts_follow_the_survival_function():
    alive = simulate_sbg(200_000, {"alpha": 0.668, "beta": 3.806}, 12, random_state=3)
    expected = 200_000 * hand_survival(0.668, 3.806, 12)
    se = np.sqrt(expected * (1 - expected / 200_000))
    assert np.all(np.abs(alive - expected) <= 4 * se + 1e-9)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    "alive, censored, match",
    [
        ([1000, 631, 700], None, r"alive\[2\] = 700 is more than alive\[1\] = 631"),
        ([1000, 631.5], None, r"alive\[1\] = 631.5; expected a whole number"),
        ([1000, -1], None, r"alive\[1\] = -1.0"),
        ([0, 0], None, r"alive\[0\] = 0; expected the cohort size"),
        ([], None, "alive is empty"),
        (["a", "b"], None, "counts of customers"),
        ([[1000, 600], [500, 600]], None, r"alive\[1\]\[1\] = 600 is more than"),
        ([1000, 600], [0, 500], r"censored\[1\] = 500; expected 600"),
        ([1000, 600, 500], [450, 0, 500], r"censored\[0\] = 450 is more than the 400"),
        ([1000, 600], [0, 0, 600], "censored has length 3"),
        ([5], None, "no cohort has a period whose outcome is known"),
    ],
)
def test_bad_counts_are_refused_with_the_place(alive, censored, match):
    with pytest.raises(InputError, match=match):
        ShiftedBetaGeo().fit(alive, censored=censored)


def test_predictions_need_a_fit_and_valid_periods():
    with pytest.raises(NotFittedError, match="ShiftedBetaGeo is not fitted yet"):
        ShiftedBetaGeo().survival(3)
    model = fitted(0.7, 1.2)
    with pytest.raises(InputError, match=r"t = 0.0; expected a whole number of periods >= 1"):
        model.retention(0)
    with pytest.raises(InputError, match=r"renewals_so_far = 1.5"):
        model.p_renew_next([1, 1.5])
    with pytest.raises(InputError, match=r"discount_rate = -0.1"):
        model.derl(-0.1)
    with pytest.raises(InputError, match=r"periods = 2.5"):
        model.expected_renewals(2.5)


def test_fit_replaces_the_previous_one():
    model = ShiftedBetaGeo().fit(REGULAR[:8])
    model.fit(HIGH_END[:8])
    assert round(model.params_["beta"], 3) == 3.806
    assert "alpha=0.668" in repr(model)
