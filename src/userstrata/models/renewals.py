"""Contract renewals: the shifted-beta-geometric (sBG) model of how long members keep renewing.

A member pays for one period (a month, a quarter, a year) at a time. At the end of each
period she renews or lapses; her chance of lapsing, ``theta``, stays the same from period to
period but differs between members, ``theta ~ Beta(alpha, beta)``. The lapse rate of a cohort
then falls over time, not because anyone becomes more loyal but because the members likely
to lapse leave first (Fader & Hardie 2007).

Periods are counted from 1: period 1 is the first paid term, ``T`` the period at whose end
the member lapses (``T = 1``: she never renewed).

- ``churn_pmf(t) = P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta)``
- ``survival(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta)``: the share of a cohort
  still paying in period ``t + 1`` (``survival(0) = 1``).
- ``retention(t) = survival(t) / survival(t - 1) = (beta + t - 1) / (alpha + beta + t - 1)``:
  the share of those in period ``t`` who renew at its end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, hyp2f1

from userstrata.errors import InputError
from userstrata.models._base import _MLEModel, maximize_loglik, penalty, search_box

__all__ = ["ShiftedBetaGeo", "simulate_sbg"]


# --------------------------------------------------------------------------- input checks


def _whole_numbers(name: str, values) -> np.ndarray:
    """``values`` as a 1-D float array of whole numbers >= 0; InputError naming the first bad entry."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{name} must hold counts of customers; got dtype {arr.dtype}",
            hint="pass whole numbers such as [1000, 631, 468]",
        )
    arr = np.atleast_1d(arr.astype(np.float64))
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional; got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0) | (np.floor(arr) != arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{name}[{i}] = {float(arr[i])!r}; expected a whole number of customers >= 0")
    return arr


def _cohorts(alive) -> tuple[list, str]:
    """One cohort (a 1-D array-like of counts) or several (a list or tuple of them)."""
    if isinstance(alive, (list, tuple)) and len(alive) and all(np.ndim(a) >= 1 for a in alive):
        return list(alive), "alive[{c}]"
    return [alive], "alive"


def _check_cohort(name: str, alive, censored) -> tuple[np.ndarray, np.ndarray]:
    """Validate one cohort; return its lapses per period (index t = 1..) and its censored counts
    per number of periods survived (index t = 0..)."""
    n = _whole_numbers(name, alive)
    if len(n) == 0:
        raise InputError(f"{name} is empty; expected the cohort size first, e.g. [1000, 631, 468]")
    if n[0] <= 0:
        raise InputError(f"{name}[0] = {n[0]:g}; expected the cohort size (> 0) at the start of period 1")
    rising = np.diff(n) > 0
    if rising.any():
        i = int(np.argmax(rising)) + 1
        raise InputError(
            f"{name}[{i}] = {n[i]:g} is more than {name}[{i - 1}] = {n[i - 1]:g}; "
            "expected counts that never rise (members who lapse do not come back to the cohort)",
            hint="a member who lapses and later buys again starts a new spell in a later cohort",
        )
    cname = name.replace("alive", "censored")
    if censored is None:
        c = np.zeros_like(n)
        c[-1] = n[-1]
    else:
        c = _whole_numbers(cname, censored)
        if len(c) != len(n):
            raise InputError(f"{cname} has length {len(c)} but {name} has {len(n)}; expected equal lengths")
        if c[-1] != n[-1]:
            raise InputError(
                f"{cname}[{len(c) - 1}] = {c[-1]:g}; expected {n[-1]:g} = {name}[{len(n) - 1}]: "
                "members alive at the last count are observed no further"
            )
    lapsed = n[:-1] - n[1:] - c[:-1]  # lapsed at the end of period t = k + 1
    if (lapsed < 0).any():
        k = int(np.argmax(lapsed < 0))
        raise InputError(
            f"{cname}[{k}] = {c[k]:g} is more than the {n[k] - n[k + 1]:g} members who left the count "
            f"between {name}[{k}] and {name}[{k + 1}]; expected censored <= alive[k] - alive[k + 1]"
        )
    return np.concatenate([[0.0], lapsed]), c


# --------------------------------------------------------------------------- likelihood


def _objective(phi, t_lapse, w_lapse, t_cens, w_cens, total, penalizer):
    """Mean negative log-likelihood and its gradient in ``phi = log(alpha, beta)``.

    ln P(T = t) = ln B(alpha + 1, beta + t - 1) - ln B(alpha, beta)
    ln S(t)     = ln B(alpha, beta + t) - ln B(alpha, beta)
    with d ln B(a, b)/da = psi(a) - psi(a + b) (likewise for b), so
      d ln P/d alpha = psi(alpha + 1) - psi(alpha) + psi(alpha + beta) - psi(alpha + beta + t)
      d ln P/d beta  = psi(beta + t - 1) - psi(beta) + psi(alpha + beta) - psi(alpha + beta + t)
      d ln S/d alpha = psi(alpha + beta) - psi(alpha + beta + t)
      d ln S/d beta  = psi(beta + t) - psi(beta) + psi(alpha + beta) - psi(alpha + beta + t)
    (psi(alpha + 1) - psi(alpha) = 1 / alpha).
    """
    theta = np.exp(phi)
    a, b = theta
    base = betaln(a, b)
    psi_ab, psi_b = digamma(a + b), digamma(b)
    ll = float(w_lapse @ (betaln(a + 1, b + t_lapse - 1) - base)) + float(w_cens @ (betaln(a, b + t_cens) - base))
    tail_l = psi_ab - digamma(a + b + t_lapse)
    tail_c = psi_ab - digamma(a + b + t_cens)
    g = np.array(
        [
            float(w_lapse @ (1.0 / a + tail_l)) + float(w_cens @ tail_c),
            float(w_lapse @ (digamma(b + t_lapse - 1) - psi_b + tail_l))
            + float(w_cens @ (digamma(b + t_cens) - psi_b + tail_c)),
        ]
    )
    pen, pen_grad = penalty(theta, penalizer)
    return -ll / total + pen, -g * theta / total + pen_grad


def _periods(name: str, t, *, first: int) -> np.ndarray:
    """Period numbers as float64: whole numbers >= ``first`` (scalar or array)."""
    arr = np.asarray(t, dtype=np.float64) if np.ndim(t) else np.array([t], dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr < first) | (np.floor(arr) != arr)
    if bad.any():
        i = int(np.argmax(bad.ravel()))
        raise InputError(f"{name} = {float(arr.ravel()[i])!r}; expected a whole number of periods >= {first}")
    return arr


class ShiftedBetaGeo(_MLEModel):
    """Shifted-beta-geometric (sBG) model of contract renewals, fitted by maximum likelihood.

    Each member lapses at the end of each period with her own probability
    ``theta ~ Beta(alpha, beta)``, constant over time. See the module docstring for the
    formulas and the period convention (period 1 = the first paid term).

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * (alpha**2 + beta**2)`` on the mean negative
        log-likelihood (as the BTYD models); 0 gives the plain MLE.

    Attributes
    ----------
    params_ : dict
        ``alpha``, ``beta``.
    standard_errors_ : dict
        From the inverse Hessian at the optimum (delta method from log scale).
    log_params_cov_ : ndarray
        Asymptotic covariance of ``log(alpha, beta)``.
    log_likelihood_ : float
        Total log-likelihood at the optimum (the counts' multinomial coefficient left out,
        as in Fader & Hardie 2007).
    n_customers_ : int
        Members in all cohorts together (the sum of the cohort sizes).
    n_cohorts_ : int
        Cohorts passed to ``fit``.

    References
    ----------
    Fader, P. S. & Hardie, B. G. S. (2007). How to project customer retention. Journal of
    Interactive Marketing, 21(1), 76-90.
    Fader, P. S. & Hardie, B. G. S. (2010). Customer-base valuation in a contractual setting:
    the perils of ignoring heterogeneity. Marketing Science, 29(1), 85-93.
    """

    _param_names = ("alpha", "beta")

    def fit(self, alive, censored=None) -> "ShiftedBetaGeo":
        """Fit on the members alive at the start of each period, one or several cohorts.

        Parameters
        ----------
        alive
            ``alive[k]``: members still paying at the start of period ``k + 1`` (``alive[0]``,
            the cohort size, at the start of period 1), whole numbers that never rise. Several
            cohorts (fitted jointly, e.g. one per start month): a list of such arrays, of any
            lengths.
        censored
            Optional, like ``alive``: ``censored[k]`` of the ``alive[k]`` members are seen no
            further (their current period is still running), so they only tell that ``T > k``.
            By default everyone in the last count is censored and nobody before it, as in a
            cohort observed for ``len(alive) - 1`` periods; ``censored[-1]`` must equal
            ``alive[-1]``. The others who leave the count between ``k`` and ``k + 1`` lapsed
            at the end of period ``k + 1``.

        Returns
        -------
        self
        """
        penalizer = self._check_penalizer()
        cohorts, pattern = _cohorts(alive)
        if censored is None:
            cens = [None] * len(cohorts)
        else:
            cens, _ = _cohorts(censored)
            if len(cens) != len(cohorts):
                raise InputError(f"censored has {len(cens)} cohorts but alive has {len(cohorts)}; expected one each")
        longest = max(np.size(c) for c in cohorts)
        lapse_w = np.zeros(longest)
        cens_w = np.zeros(longest)
        size = 0.0
        for i, (a_c, c_c) in enumerate(zip(cohorts, cens, strict=True)):
            lapsed, cen = _check_cohort(pattern.format(c=i), a_c, c_c)
            lapse_w[: len(lapsed)] += lapsed
            cens_w[: len(cen)] += cen
            size += float(np.asarray(a_c, dtype=np.float64).ravel()[0])
        # rows compressed by period: weights per lapse period t and per censoring point t;
        # a member censored at t = 0 has S(0) = 1 whatever the parameters: no information
        t_all = np.arange(longest, dtype=np.float64)
        keep_l, keep_c = lapse_w > 0, (cens_w > 0) & (t_all > 0)
        t_lapse, w_lapse = t_all[keep_l], lapse_w[keep_l]
        t_cens, w_cens = t_all[keep_c], cens_w[keep_c]
        total = float(w_lapse.sum() + w_cens.sum())
        if total == 0:
            raise InputError(
                "no cohort has a period whose outcome is known (every count is a single, censored start); "
                "expected at least one member who renewed or lapsed",
                hint="use a later as-of date so that some terms have ended",
            )
        result = maximize_loglik(
            lambda phi: _objective(phi, t_lapse, w_lapse, t_cens, w_cens, total, penalizer),
            np.zeros(2),
            self._param_names,
            total_weight=total,
            model_name=type(self).__name__,
            box=search_box([1.0, 1.0]),
        )
        a, b = np.exp(result.log_params)
        base = betaln(a, b)
        ll = float(w_lapse @ (betaln(a + 1, b + t_lapse - 1) - base) + w_cens @ (betaln(a, b + t_cens) - base))
        self._store(result, ll, int(size))
        self.n_cohorts_ = len(cohorts)
        return self

    # ------------------------------------------------------------------ predictions

    def survival(self, t) -> np.ndarray:
        """``S(t) = P(T > t)``: the share of a new cohort still paying in period ``t + 1`` (``t >= 0``)."""
        a, b = self._params_array()
        t = _periods("t", t, first=0)
        return np.exp(betaln(a, b + t) - betaln(a, b))

    def retention(self, t) -> np.ndarray:
        """``r(t) = (beta + t - 1) / (alpha + beta + t - 1)``: of the members in period ``t``
        (``t >= 1``), the share who renew at its end."""
        a, b = self._params_array()
        t = _periods("t", t, first=1)
        return (b + t - 1) / (a + b + t - 1)

    def churn_pmf(self, t) -> np.ndarray:
        """``P(T = t)``: the share of a new cohort that lapses at the end of period ``t`` (``t >= 1``)."""
        a, b = self._params_array()
        t = _periods("t", t, first=1)
        return np.exp(betaln(a + 1, b + t - 1) - betaln(a, b))

    def p_renew_next(self, renewals_so_far) -> np.ndarray:
        """Probability that a member who has renewed ``n`` times renews once more.

        Having renewed ``n`` times she is in period ``n + 1`` (``T > n``), and by Bayes' rule
        her lapse probability is now ``theta | T > n ~ Beta(alpha, beta + n)``: each renewal
        is evidence of a low ``theta``. The chance that she renews at the end of period
        ``n + 1`` is then ``E[1 - theta | T > n] = (beta + n) / (alpha + beta + n)``, which is
        ``retention(n + 1)``: ``n = 0`` is a member in her first paid term.
        """
        a, b = self._params_array()
        n = _periods("renewals_so_far", renewals_so_far, first=0)
        return (b + n) / (a + b + n)

    def expected_renewals(self, periods, renewals_so_far=0) -> np.ndarray:
        """Expected renewals within the next ``periods`` renewal dates of a member who has renewed
        ``n`` times: ``sum_{j=1..periods} S(n + j) / S(n)`` (undiscounted, finite horizon)."""
        a, b = self._params_array()
        if not (isinstance(periods, (int, np.integer)) and periods >= 0):
            raise InputError(f"periods = {periods!r}; expected one whole number of periods >= 0")
        h = int(periods)
        n = _periods("renewals_so_far", renewals_so_far, first=0)
        j = np.arange(1, h + 1, dtype=np.float64).reshape((-1,) + (1,) * n.ndim)
        # S(n + j) / S(n) = prod_{i=1..j} (beta + n + i - 1) / (alpha + beta + n + i - 1)
        ratios = np.cumprod((b + n + j - 1) / (a + b + n + j - 1), axis=0)
        return ratios.sum(axis=0) if h else np.zeros_like(n)

    def derl(self, discount_rate: float, renewals_so_far=0) -> np.ndarray:
        """Discounted expected residual lifetime of a member who has renewed ``n`` times.

        The expected number of renewal payments still to come, the one at the end of her
        current period (period ``n + 1``) undiscounted and each later one discounted by
        ``1 + discount_rate`` per period:

            DERL(d | n) = sum_{j >= 1} S(n + j) / S(n) / (1 + d)^(j - 1)
                        = (beta + n) / (alpha + beta + n) * 2F1(1, beta + n + 1; alpha + beta + n + 1; 1 / (1 + d))

        Fader & Hardie (2010) state it for a customer "who has made n - 1 renewals" (there
        ``n`` counts periods alive); here ``n`` counts renewals, hence the shift by one.
        Multiply by the price of a period for a residual value. With ``discount_rate = 0``
        it is the expected number of further renewals, ``(beta + n) / (alpha - 1)``, finite
        only for ``alpha > 1`` (``inf`` otherwise: a heavy tail of members who never lapse).
        """
        a, b = self._params_array()
        d = float(discount_rate) if np.ndim(discount_rate) == 0 else np.nan
        if not (np.isfinite(d) and d >= 0):
            raise InputError(f"discount_rate = {discount_rate!r}; expected one number >= 0 (e.g. 0.1 for 10% a period)")
        n = _periods("renewals_so_far", renewals_so_far, first=0)
        if d == 0:
            value = (b + n) / (a - 1) if a > 1 else np.inf
            return np.broadcast_to(value, n.shape).astype(np.float64)
        lead = (b + n) / (a + b + n)
        with np.errstate(over="ignore", invalid="ignore"):
            return lead * hyp2f1(1.0, b + n + 1, a + b + n + 1, 1.0 / (1.0 + d))

    def __repr__(self) -> str:
        fitted = "" if self.params_ is None else ", " + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}(penalizer={self.penalizer!r}{fitted})"


def simulate_sbg(
    n: int, params: dict, periods: int, random_state=None, *, return_lifetimes: bool = False
):
    """Simulate a cohort of ``n`` members for ``periods`` periods under the sBG model.

    Each member draws ``theta ~ Beta(alpha, beta)`` and lapses at the end of period
    ``T ~ Geometric(theta)`` (support 1, 2, ...). Returns the counts alive at the start of
    periods 1..``periods + 1`` (``alive[0] = n``), the input of :meth:`ShiftedBetaGeo.fit`;
    with ``return_lifetimes`` also each member's ``T``.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise InputError(f"n = {n!r}; expected a whole number of members >= 1")
    if not (isinstance(periods, (int, np.integer)) and periods >= 1):
        raise InputError(f"periods = {periods!r}; expected a whole number of periods >= 1")
    a, b = float(params["alpha"]), float(params["beta"])
    rng = np.random.default_rng(random_state)
    theta = np.clip(rng.beta(a, b, n), 1e-300, 1.0)
    lifetimes = rng.geometric(theta)
    alive = np.array([(lifetimes > k).sum() for k in range(periods + 1)], dtype=np.int64)
    return (alive, lifetimes) if return_lifetimes else alive
