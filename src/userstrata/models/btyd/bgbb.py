"""BG/BB purchase model for discrete transaction opportunities (Fader, Hardie & Shang 2010).

Where activity can only happen at fixed opportunities (a daily check-in, a weekly class, a
yearly donation drive), a customer's history is a string of 0/1 per opportunity. The
beta-geometric/beta-Bernoulli (BG/BB) model summarises it by ``(x, t_x, n)``: ``x``
opportunities with a transaction among the ``n`` after the first one, the last of them at
opportunity ``t_x``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln

from userstrata.errors import InputError
from userstrata.models._base import (
    _check_weights,
    _first_bad,
    _MLEModel,
    _to_float_array,
    compress_rows,
    maximize_loglik,
    penalty,
    search_box,
)

__all__ = ["BetaGeoBetaBinom", "check_discrete_arrays", "discrete_summary", "simulate_bgbb"]

_SUMMARY_HINT = "build (frequency, recency, n_periods) from active period indices with discrete_summary(...)"


# --------------------------------------------------------------------------- input checks


def _check_whole(name: str, arr: np.ndarray, what: str) -> None:
    _first_bad(name, arr, ~np.isfinite(arr), f"a finite {what}")
    _first_bad(name, arr, arr < 0, f"a {what} >= 0")
    _first_bad(name, arr, np.floor(arr) != arr, f"a whole number ({what}: 0, 1, 2, ...)")


def check_discrete_arrays(frequency, recency, n_periods, weights=None):
    """Validate per-customer BG/BB inputs ``(x, t_x, n)`` and return them as float64 arrays.

    Parameters
    ----------
    frequency
        ``x``: opportunities after the first transaction in which the customer transacted.
    recency
        ``t_x``: the opportunity of the last of them (0 when ``x`` is 0).
    n_periods
        ``n``: opportunities after the first transaction up to the end of the period.
        Any of the three may be a scalar (e.g. one ``n`` for a whole cohort).
    weights
        Optional non-negative weight per row (e.g. how many customers share the pattern).

    Returns
    -------
    tuple
        ``(x, t_x, n, w)``; ``w`` is None when no weights were given.

    Raises
    ------
    InputError
        Naming the argument, the first offending index and value, and what was expected:
        whole numbers with ``x <= t_x <= n`` and ``t_x = 0`` when ``x = 0``.
    """
    x = _to_float_array("frequency", frequency)
    t_x = _to_float_array("recency", recency)
    n = _to_float_array("n_periods", n_periods)
    size = max(len(x), len(t_x), len(n))
    if any(len(a) not in (1, size) for a in (x, t_x, n)):
        raise InputError(
            f"frequency, recency and n_periods must have the same length (or length 1, e.g. one n_periods "
            f"for a whole cohort); got {len(x)}, {len(t_x)} and {len(n)}"
        )
    if size > 1:
        x, t_x, n = (np.broadcast_to(a, (size,)) for a in (x, t_x, n))
    if len(x) == 0:
        raise InputError("no customers: frequency, recency and n_periods are empty")
    _check_whole("frequency", x, "count of opportunities with a transaction")
    _check_whole("recency", t_x, "opportunity index")
    _check_whole("n_periods", n, "count of opportunities")
    for bad, message in (
        (t_x > n, "recency[{i}] = {t:g} is greater than n_periods[{i}] = {n:g}; expected recency <= n_periods "
                  "(the last transaction lies inside the observed opportunities)"),
        (x > t_x, "frequency[{i}] = {x:g} is greater than recency[{i}] = {t:g}; expected frequency <= recency "
                  "(x transactions need x opportunities up to the last one)"),
        ((x == 0) & (t_x != 0), "recency[{i}] = {t:g} for frequency[{i}] = 0; expected recency 0 for a customer "
                                "without repeat transactions"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(message.format(i=i, x=x[i], t=t_x[i], n=n[i]), hint=_SUMMARY_HINT)
    return x, t_x, n, _check_weights(weights, len(x))


def _check_count(name: str, values, what: str) -> np.ndarray:
    arr = _to_float_array(name, np.atleast_1d(values) if np.isscalar(values) else values)
    _check_whole(name, arr, what)
    return arr


# --------------------------------------------------------------------------- likelihood


@dataclass(frozen=True)
class _Terms:
    """The likelihood of each compressed row as a sum of beta-function terms (FHS 2010 eq. 5).

    Row ``(x, t_x, n)`` has one "alive through n" term, B(a+x, b+n-x) B(g, d+n), and one
    "dropped out at opportunity t_x+i+1" term, B(a+x, b+t_x-x+i) B(g+1, d+t_x+i), for each
    ``i = 0 .. n-t_x-1`` (all over B(a, b) B(g, d)). Every term is then
    ``G(a+ia) G(b+ib) / G(a+b+ia+ib) * G(g+ig) G(d+id) / G(g+d+ig+id)`` with integer offsets,
    so a fit evaluates ``gammaln``/``digamma`` on ``0 .. max(n)+1`` only and gathers.
    """

    w: np.ndarray  # row weights
    W: float
    row: np.ndarray  # row of each term
    starts: np.ndarray  # first term of each row (terms are contiguous per row)
    ia: np.ndarray  # offsets of the term (int)
    ib: np.ndarray
    iab: np.ndarray  # ia + ib
    ig: np.ndarray
    id: np.ndarray
    igd: np.ndarray  # ig + id
    size: int  # length of the lookup tables


def _build_terms(x, t_x, n, w) -> _Terms:
    xi, ti, ni = (np.asarray(a, dtype=np.int64) for a in (x, t_x, n))
    counts = ni - ti + 1
    starts = np.zeros(len(xi), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    row = np.repeat(np.arange(len(xi)), counts)
    i = np.arange(int(counts.sum())) - starts[row] - 1  # -1: the alive term, first in each row
    alive = i < 0
    x_r, t_r, n_r = xi[row], ti[row], ni[row]
    ib = np.where(alive, n_r - x_r, t_r - x_r + i)
    ig = np.where(alive, 0, 1)
    id_ = np.where(alive, n_r, t_r + i)
    return _Terms(
        w=np.asarray(w, dtype=np.float64),
        W=float(np.sum(w)),
        row=row,
        starts=starts,
        ia=x_r,
        ib=ib,
        iab=x_r + ib,
        ig=ig,
        id=id_,
        igd=ig + id_,
        size=int(ni.max()) + 2,
    )


def _log_terms(theta, d: _Terms) -> np.ndarray:
    alpha, beta, gamma, delta = theta
    k = np.arange(d.size)
    lg = [gammaln(v + k) for v in (alpha, beta, alpha + beta, gamma, delta, gamma + delta)]
    const = betaln(alpha, beta) + betaln(gamma, delta)
    return lg[0][d.ia] + lg[1][d.ib] - lg[2][d.iab] + lg[3][d.ig] + lg[4][d.id] - lg[5][d.igd] - const


def _row_loglik(lt: np.ndarray, d: _Terms):
    """Per-row log of the sum of its terms (a log-sum-exp per row) and each term's share."""
    top = np.maximum.reduceat(lt, d.starts)
    share = np.exp(lt - top[d.row])
    total = np.add.reduceat(share, d.starts)
    share /= total[d.row]
    return top + np.log(total), share


def _objective(phi: np.ndarray, d: _Terms, penalizer: float):
    """Weighted mean negative log-likelihood and its analytic gradient in log space.

    With ``s_k`` the share of term ``k`` in its row's likelihood, the derivative of the row's
    log-likelihood is ``sum_k s_k d ln(term_k)``, and for a term with offsets as in ``_Terms``
      d/dalpha = psi(a+ia) - psi(a+b+ia+ib) - [psi(a) - psi(a+b)],
      d/dbeta  = psi(b+ib) - psi(a+b+ia+ib) - [psi(b) - psi(a+b)],
    and likewise for gamma, delta with ``ig``, ``id``. The weighted shares are summed per
    offset (``bincount``), so digamma runs on the lookup tables only.
    """
    theta = np.exp(phi)
    alpha, beta, gamma, delta = theta
    ll_rows, share = _row_loglik(_log_terms(theta, d), d)
    ll = float(np.einsum("i,i->", d.w, ll_rows))
    q = share * d.w[d.row]
    k = np.arange(d.size)

    def weighted(idx, value):
        return float(np.bincount(idx, weights=q, minlength=d.size) @ digamma(value + k))

    W = d.W
    psi_ab, psi_gd = weighted(d.iab, alpha + beta), weighted(d.igd, gamma + delta)
    g = np.array(
        [
            weighted(d.ia, alpha) - psi_ab - W * (digamma(alpha) - digamma(alpha + beta)),
            weighted(d.ib, beta) - psi_ab - W * (digamma(beta) - digamma(alpha + beta)),
            weighted(d.ig, gamma) - psi_gd - W * (digamma(gamma) - digamma(gamma + delta)),
            weighted(d.id, delta) - psi_gd - W * (digamma(delta) - digamma(gamma + delta)),
        ]
    )
    pen, pen_grad = penalty(theta, penalizer)
    return -ll / W + pen, -g * theta / W + pen_grad


def _loglik_at(theta, x, t_x, n) -> np.ndarray:
    """Per-customer log-likelihood (FHS 2010 eq. 5), computed once per distinct row."""
    (xu, tu, nu), _, inverse = compress_rows([x, t_x, n], return_inverse=True)
    d = _build_terms(xu, tu, nu, np.ones(len(xu)))
    return _row_loglik(_log_terms(theta, d), d)[0][inverse]


# --------------------------------------------------------------------------- predictions


def _log_alive_sum_formula(gamma, delta, n, n_star):
    # ln sum_{s=1..n*} B(g, d+n+s)/B(g, d)
    #   = ln[ d/(g-1) G(g+d)/G(1+d) (G(1+d+n)/G(g+d+n) - G(1+d+n+n*)/G(g+d+n+n*)) ]
    # written as ln(d) + ln(A) + ln(-expm1(D)/(g-1)): A is the first ratio, D = ln(second/first)
    # has the sign of 1-g, so -expm1(D)/(g-1) > 0 on both sides of g = 1.
    log_a = gammaln(gamma + delta) - gammaln(1 + delta) + gammaln(1 + delta + n) - gammaln(gamma + delta + n)
    D = (
        gammaln(1 + delta + n + n_star) - gammaln(gamma + delta + n + n_star)
        - gammaln(1 + delta + n) + gammaln(gamma + delta + n)
    )
    with np.errstate(divide="ignore"):  # n* = 0: an empty sum, ln 0 = -inf
        return np.log(delta) + log_a + np.log(-np.expm1(D) / (gamma - 1))


# The closed form divides 0 by 0 at gamma = 1 (and loses digits to cancellation near it).
# It is analytic in gamma, so near 1 it is interpolated linearly between 1 -/+ _G_STEP:
# error ~ _G_STEP^2 (1e-8 relative), cancellation ~ eps / _G_STEP (1e-12).
_G_NEAR = 1e-4
_G_STEP = 1e-4


def _log_alive_sum(gamma, delta, n, n_star):
    """ln of the expected number of opportunities a customer alive at ``n`` (and so far unseen
    as to dropout) is still alive at among ``n+1 .. n+n*``, under the Beta(g, d) prior:
    ``sum_{s=1..n*} B(g, d+n+s) / B(g, d)``."""
    if abs(gamma - 1) >= _G_NEAR:
        return _log_alive_sum_formula(gamma, delta, n, n_star)
    lo = _log_alive_sum_formula(1 - _G_STEP, delta, n, n_star)
    hi = _log_alive_sum_formula(1 + _G_STEP, delta, n, n_star)
    frac = (gamma - (1 - _G_STEP)) / (2 * _G_STEP)
    with np.errstate(divide="ignore", invalid="ignore"):  # ln 0 for n* = 0
        out = np.log((1 - frac) * np.exp(lo) + frac * np.exp(hi))
    return np.where(n_star == 0, -np.inf, out)


def _expected_purchases_new_at(theta, n):
    """E[X(n)] for a new customer (FHS 2010 eq. 7)."""
    alpha, beta, gamma, delta = theta
    return alpha / (alpha + beta) * np.exp(_log_alive_sum(gamma, delta, 0.0, n))


def _expected_purchases_at(theta, n_star, x, t_x, n):
    """E[X(n, n+n*) | x, t_x, n] (FHS 2010 eq. 13)."""
    alpha, beta, gamma, delta = theta
    log = (
        betaln(alpha + x + 1, beta + n - x) - betaln(alpha, beta)
        + _log_alive_sum(gamma, delta, n, n_star)
        - _loglik_at(theta, x, t_x, n)
    )
    return np.exp(log)


def _probability_alive_at(theta, x, t_x, n):
    """P(alive at opportunity n+1 | x, t_x, n) (FHS 2010 eq. 11)."""
    alpha, beta, gamma, delta = theta
    log = (
        betaln(alpha + x, beta + n - x) - betaln(alpha, beta)
        + betaln(gamma, delta + n + 1) - betaln(gamma, delta)
        - _loglik_at(theta, x, t_x, n)
    )
    return np.exp(np.minimum(log, 0.0))  # <= 1 up to rounding


def _probability_of_x_at(theta, x, n):
    """P(X(n) = x) (FHS 2010 eq. 8): alive through n with x of n, or dropped out after
    opportunity i (``x <= i <= n-1``) with x of the first i; computed once per distinct (x, n)."""
    alpha, beta, gamma, delta = theta
    (xu, nu), _, inverse = compress_rows([x, n], return_inverse=True)
    out = np.zeros(len(xu))
    ok = xu <= nu
    xv, nv = xu[ok], nu[ok]
    counts = (nv - xv + 1).astype(np.int64)  # the alive term, then i = x .. n-1
    starts = np.zeros(len(xv), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    row = np.repeat(np.arange(len(xv)), counts)
    j = np.arange(int(counts.sum())) - starts[row]
    alive = j == 0
    xr, nr = xv[row], nv[row]
    i = np.where(alive, nr, xr + j - 1)  # opportunities while alive
    log_binom = gammaln(i + 1) - gammaln(xr + 1) - gammaln(i - xr + 1)
    lt = (
        log_binom
        + betaln(alpha + xr, beta + i - xr) - betaln(alpha, beta)
        + np.where(alive, betaln(gamma, delta + nr), betaln(gamma + 1, delta + i)) - betaln(gamma, delta)
    )
    if len(lt):
        top = np.maximum.reduceat(lt, starts)
        out[ok] = np.exp(top + np.log(np.add.reduceat(np.exp(lt - top[row]), starts)))
    return out[inverse]


# --------------------------------------------------------------------------- estimator


class BetaGeoBetaBinom(_MLEModel):
    """BG/BB purchase model for discrete transaction opportunities, fitted by maximum likelihood.

    While alive, a customer transacts at each opportunity with probability ``p ~ Beta(alpha,
    beta)``; at the start of each opportunity after the first transaction they drop out for good
    with probability ``theta ~ Beta(gamma, delta)``. A history of ``n`` opportunities after the
    first transaction is summarised by ``x`` (opportunities with a transaction, ``frequency``)
    and ``t_x`` (the last of them, ``recency``).

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood
        (as in lifetimes); 0 gives the plain MLE.

    Attributes
    ----------
    params_ : dict
        ``alpha``, ``beta`` (transaction probability), ``gamma``, ``delta`` (dropout probability).
    standard_errors_ : dict
        From the inverse Hessian (central differences of the analytic gradient) at the
        optimum; delta method from log scale.
    log_params_cov_ : ndarray
        Asymptotic covariance of ``log(params)``.
    log_likelihood_ : float
        Total log-likelihood at the optimum (FHS 2010 eq. 5; comparable with published values).
    n_customers_ : int
        Rows passed to ``fit`` (each standing for its weight in customers).
    converged_ : bool
        Whether the optimum was reached.
    at_boundary_ : tuple of str
        Parameters that stopped at the edge of the search box (1e-6..1e6); see
        :func:`userstrata.models._base.maximize_loglik`.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Shang, J. (2010). Customer-Base Analysis in a Discrete-Time
    Noncontractual Setting. Marketing Science, 29(6), 1086-1108.
    """

    _param_names = ("alpha", "beta", "gamma", "delta")

    def fit(self, frequency, recency, n_periods, weights=None) -> "BetaGeoBetaBinom":
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency, recency, n_periods
            Per customer ``x``, ``t_x`` and ``n`` (whole numbers, ``x <= t_x <= n``); see
            :func:`discrete_summary` to build them from active period indices.
        weights
            Optional non-negative weight per row (e.g. the number of customers it stands for).

        Customers with ``n_periods = 0`` (first transaction at the last opportunity) are
        accepted and left out of the fit: their likelihood is 1 whatever the parameters.

        Returns
        -------
        self
        """
        penalizer = self._check_penalizer()
        x, t_x, n, w = check_discrete_arrays(frequency, recency, n_periods, weights)
        n_rows = len(x)
        informative = n > 0
        if not informative.all():
            x, t_x, n = x[informative], t_x[informative], n[informative]
            w = None if w is None else w[informative]
        if len(x) == 0 or (w is not None and not w.sum() > 0):
            raise InputError(
                "every customer has n_periods = 0 (first transaction at the last opportunity); "
                "expected at least one with n_periods > 0 to fit on",
                hint="move last_period of discrete_summary(...) later, or fit on an older cohort",
            )
        (x, t_x, n), w = compress_rows([x, t_x, n], w)
        data = _build_terms(x, t_x, n, w)
        result = maximize_loglik(
            lambda phi: _objective(phi, data, penalizer),
            np.zeros(4),  # all parameters 1, as BTYD and lifetimes start
            self._param_names,
            total_weight=data.W,
            model_name=type(self).__name__,
            box=search_box([1.0] * 4),  # all four are shape parameters of beta distributions
        )
        theta = np.exp(result.log_params)
        ll = float(w @ _row_loglik(_log_terms(theta, data), data)[0])
        self._store(result, ll, n_rows)
        return self

    # ------------------------------------------------------------------ predictions

    def probability_alive(self, frequency, recency, n_periods) -> np.ndarray:
        """P(alive at opportunity ``n+1`` | x, t_x, n) (FHS 2010 eq. 11)."""
        theta = self._params_array()
        x, t_x, n, _ = check_discrete_arrays(frequency, recency, n_periods)
        return _probability_alive_at(theta, x, t_x, n)

    def expected_purchases(self, n_star, frequency, recency, n_periods) -> np.ndarray:
        """Expected transactions in the next ``n_star`` opportunities, ``n+1 .. n+n_star``,
        given each customer's history (FHS 2010 eq. 13).

        ``n_star`` is a whole number, scalar or one per customer.
        """
        theta = self._params_array()
        x, t_x, n, _ = check_discrete_arrays(frequency, recency, n_periods)
        n_star = _check_count("n_star", n_star, "count of future opportunities")
        if len(n_star) not in (1, len(x)):
            raise InputError(
                f"n_star has length {len(n_star)} but there are {len(x)} customers; expected 1 or {len(x)}"
            )
        return _expected_purchases_at(theta, n_star, x, t_x, n)

    def expected_purchases_new(self, n_periods) -> np.ndarray:
        """Expected repeat transactions of a newly acquired customer in their first ``n``
        opportunities after the first transaction (FHS 2010 eq. 7)."""
        theta = self._params_array()
        return _expected_purchases_new_at(theta, _check_count("n_periods", n_periods, "count of opportunities"))

    def probability_of_x(self, frequency, n_periods) -> np.ndarray:
        """P(X(n) = x): probability that a new customer transacts at ``x`` of their first ``n``
        opportunities (FHS 2010 eq. 8); 0 where ``x > n``."""
        theta = self._params_array()
        x = _check_count("frequency", frequency, "count of opportunities with a transaction")
        n = _check_count("n_periods", n_periods, "count of opportunities")
        if len(x) != len(n) and 1 not in (len(x), len(n)):
            raise InputError(
                f"frequency has length {len(x)} and n_periods {len(n)}; expected equal lengths or one of length 1"
            )
        x, n = (np.ascontiguousarray(a) for a in np.broadcast_arrays(x, n))
        return _probability_of_x_at(theta, x, n)

    def log_likelihood(self, frequency, recency, n_periods) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters (FHS 2010 eq. 5)."""
        theta = self._params_array()
        x, t_x, n, _ = check_discrete_arrays(frequency, recency, n_periods)
        return _loglik_at(theta, x, t_x, n)


# --------------------------------------------------------------------------- simulation


def simulate_bgbb(n_customers: int, params: dict, n_periods, random_state=None, *, holdout_periods: int = 0):
    """Simulate ``(frequency, recency, n_periods)`` for ``n_customers`` from the BG/BB model.

    Per customer ``p ~ Beta(alpha, beta)`` and ``theta ~ Beta(gamma, delta)``; the customer is
    alive at opportunity ``s`` with probability ``(1-theta)^s`` (the number of opportunities
    alive is ``Geometric(theta) - 1``) and, while alive, transacts at each with probability
    ``p``. With ``holdout_periods = m > 0`` a fourth array gives the transactions at the
    following opportunities ``n+1 .. n+m``. ``n_periods`` is a whole number or one per customer.
    """
    alpha, beta, gamma, delta = (float(params[k]) for k in ("alpha", "beta", "gamma", "delta"))
    rng = np.random.default_rng(random_state)
    n_all = np.broadcast_to(np.asarray(n_periods, dtype=np.int64), (n_customers,)).copy()
    m = int(holdout_periods)
    span = int(n_all.max(initial=0)) + m
    x_all, t_all, star_all = (np.zeros(n_customers) for _ in range(3))
    chunk = max(1, (1 << 22) // max(span, 1))  # bounds the (customers x opportunities) temporaries
    opportunity = np.arange(1, span + 1)
    for lo in range(0, n_customers, chunk):
        hi = min(n_customers, lo + chunk)
        p = rng.beta(alpha, beta, hi - lo)
        theta = np.clip(rng.beta(gamma, delta, hi - lo), 1e-300, 1.0)
        alive_for = rng.geometric(theta) - 1  # opportunities 1 .. alive_for are lived
        buys = (rng.random((hi - lo, span)) < p[:, None]) & (opportunity <= alive_for[:, None])
        n_c = n_all[lo:hi, None]
        cal = buys & (opportunity <= n_c)
        x_all[lo:hi] = cal.sum(axis=1)
        t_all[lo:hi] = np.max(np.where(cal, opportunity, 0), axis=1)
        star_all[lo:hi] = (buys & (opportunity > n_c) & (opportunity <= n_c + m)).sum(axis=1)
    out = (x_all, t_all, n_all.astype(np.float64))
    return out + (star_all,) if m > 0 else out


# --------------------------------------------------------------------------- data preparation


def _long_periods(purchase_periods):
    """``(users, periods)`` from a mapping user -> periods or a Series of periods indexed by user."""
    if isinstance(purchase_periods, pd.Series):
        return purchase_periods.index.to_numpy(), purchase_periods.to_numpy(), purchase_periods.index.name
    if isinstance(purchase_periods, Mapping):
        users, periods = [], []
        for user, values in purchase_periods.items():
            values = [values] if np.isscalar(values) else list(values)
            users.extend([user] * len(values))
            periods.extend(values)
        return np.asarray(users, dtype=object), np.asarray(periods), None
    raise InputError(
        f"purchase_periods is a {type(purchase_periods).__name__}; expected a mapping user -> active "
        "period indices or a pandas Series of period indices indexed by user",
        hint="e.g. orders.set_index('user_id')['week'] with week = (order_date - origin).days // 7",
    )


def _check_period(name: str, value) -> int:
    ok = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    if isinstance(value, bool) or not ok:
        raise InputError(f"{name} = {value!r}; expected a whole period index")
    return int(value)


def discrete_summary(purchase_periods, *, last_period, first_period=None, holdout_end=None) -> pd.DataFrame:
    """Per-user BG/BB summary ``(frequency, recency, n_periods)`` from active period indices.

    Each user's first active period in the window ``[first_period, last_period]`` is their
    first transaction (opportunity 0); the opportunities after it up to ``last_period`` are
    the ``n_periods``. ``frequency`` counts those with activity (a period with several orders
    counts once) and ``recency`` is the last of them, counted from the first (0 without any).

    Parameters
    ----------
    purchase_periods
        A mapping ``user -> iterable of period indices`` or a pandas Series of period indices
        indexed by user (one row per order or per active period).
    last_period
        The last period of the calibration window (inclusive).
    first_period
        The first period of the window (inclusive); periods before it are ignored. Default:
        no lower limit.
    holdout_end
        If given, also count active periods in ``(last_period, holdout_end]`` per user
        (column ``holdout_frequency``), for checking predictions afterwards.

    Returns
    -------
    DataFrame
        Indexed by user (users active in the window only, sorted), with ``frequency``,
        ``recency``, ``n_periods`` and ``first_active_period`` (plus ``holdout_frequency``).
    """
    last = _check_period("last_period", last_period)
    first = None if first_period is None else _check_period("first_period", first_period)
    if first is not None and first > last:
        raise InputError(f"first_period = {first} is after last_period = {last}; expected first_period <= last_period")
    end = None if holdout_end is None else _check_period("holdout_end", holdout_end)
    if end is not None and end < last:
        raise InputError(f"holdout_end = {end} is before last_period = {last}; expected holdout_end >= last_period")
    users, periods, index_name = _long_periods(purchase_periods)
    if periods.dtype.kind not in "biuf":
        raise InputError(f"purchase_periods must hold numeric period indices; got dtype {periods.dtype}")
    periods = periods.astype(np.float64)
    bad = ~np.isfinite(periods) | (np.floor(periods) != periods)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"purchase_periods of user {users[i]!r} holds {float(periods[i])!r}; expected whole period indices",
            hint="turn dates into periods first, e.g. (order_date - origin).days // 7 for weeks",
        )
    frame = pd.DataFrame({"user": users, "period": periods.astype(np.int64)}).drop_duplicates()
    in_window = frame["period"] <= last
    if first is not None:
        in_window &= frame["period"] >= first
    by_user = frame[in_window].groupby("user", sort=True)["period"]
    first_active = by_user.min()
    out = pd.DataFrame(
        {
            "frequency": by_user.size() - 1,
            "recency": by_user.max() - first_active,
            "n_periods": last - first_active,
            "first_active_period": first_active,
        }
    )
    if end is not None:
        later = frame[(frame["period"] > last) & (frame["period"] <= end)]
        out["holdout_frequency"] = later.groupby("user")["period"].size().reindex(out.index, fill_value=0)
    out.index.name = index_name or "user_id"
    return out.astype(np.int64)
