"""BG/NBD purchase model (Fader, Hardie & Lee 2005), fitted by maximum likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, betaln, digamma, expit, gammaln, hyp2f1, xlogy

from userstrata.models._base import PurchaseModel, _first_bad, check_horizon, penalty

__all__ = ["BetaGeo", "simulate_bgnbd"]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum's own loop: no temporary, no BLAS thread start-up (which costs more than the sum
    # itself on a busy 2-core machine), and the same summation order on every CPU (BLAS
    # picks its kernel by CPU, which moves the last bits and, on a flat likelihood, the fit)
    return float(np.einsum("i,i->", a, b))


@dataclass(frozen=True)
class _Rows:
    """Compressed rows sorted by frequency (repeaters are the slice ``[k:]``), plus
    preallocated work buffers: fresh temporaries of this size cost page faults on
    every evaluation."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    w: np.ndarray
    wx: np.ndarray  # w * x
    W: float  # total weight
    xs: np.ndarray  # distinct frequencies
    xi: np.ndarray  # index of each row's frequency in xs
    Wx: np.ndarray  # total weight per distinct frequency
    k: int  # first row with x > 0
    buf: np.ndarray  # (2, n) work space over all rows
    buf_r: np.ndarray  # (5, n) work space over rows with a correction term


def _prepare_rows(x, t_x, T, w) -> _Rows:
    order = np.argsort(x, kind="stable")
    x, t_x, T, w = x[order], t_x[order], T[order], w[order]
    xs, xi = np.unique(x, return_inverse=True)
    n = len(x)
    return _Rows(
        x=x,
        t_x=t_x,
        T=T,
        w=w,
        wx=w * x,
        W=float(w.sum()),
        xs=xs,
        xi=xi.astype(np.intp),
        Wx=np.bincount(xi, weights=w, minlength=len(xs)),
        k=int(np.searchsorted(x, 0.0, side="right")),
        buf=np.empty((2, n)),
        buf_r=np.empty((5, n)),
    )


def _loglik_rows(theta, x, t_x, T, *, modified: bool) -> np.ndarray:
    """Per-row log-likelihood of BG/NBD (``modified=False``) or MBG/NBD (``True``).

    BG/NBD (FHL 2005, eq. 6), factored on ``(alpha + T)`` so the correction term is a
    log-sum-exp:  ln L = ln G(r+x) - ln G(r) + r ln(alpha) - (r+x) ln(alpha+T)
    + ln B(a, b+x) - ln B(a, b) + ln(1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)).
    MBG/NBD (Batislam et al. 2007) replaces B(a, b+x) by B(a, b+x+1), a/(b+x-1) by
    a/(b+x), and keeps the correction for x = 0 (a customer may drop at time 0).
    """
    r, alpha, a, b = theta
    shift = 1.0 if modified else 0.0
    base = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        - (r + x) * np.log(alpha + T)
        + betaln(a, b + x + shift)
        - betaln(a, b)
    )
    has_term = np.ones_like(x, dtype=bool) if modified else x > 0
    denom = np.where(has_term, b + x - 1 + shift, 1.0)  # b+x-1 may be <= 0 at x = 0 in BG/NBD
    A4 = np.log(a) - np.log(denom) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return base + np.where(has_term, np.logaddexp(0.0, A4), 0.0)


def _objective(phi: np.ndarray, d: _Rows, penalizer: float, *, modified: bool = False):
    """Weighted mean negative log-likelihood and its analytic gradient in log space.

    Terms that depend on the frequency only are evaluated once per distinct frequency and
    weighted by ``Wx``; only the logs of ``alpha + T`` and ``alpha + t_x`` run per row.
    Gradient (natural scale; sigma = expit(A4) weights the correction term):
      d/dr     = psi(r+x) - psi(r) + ln alpha - ln(alpha+T) + sigma (ln(alpha+T) - ln(alpha+t_x))
      d/dalpha = r/alpha - (r+x)/(alpha+T) + sigma (r+x) (1/(alpha+T) - 1/(alpha+t_x))
      d/da     = psi(a+b) - psi(a+b+x') + sigma/a
      d/db     = psi(b+x') - psi(a+b+x') - psi(b) + psi(a+b) - sigma/(b+x'-1+shift)
    with x' = x (BG/NBD) or x+1 (MBG/NBD).
    """
    theta = np.exp(phi)
    r, alpha, a, b = theta
    shift = 1.0 if modified else 0.0
    xs, Wx, W = d.xs, d.Wx, d.W
    rx, bx = r + xs, b + xs + shift
    log_alpha = np.log(alpha)
    ll = _dot(Wx, gammaln(rx) - gammaln(r) + betaln(a, bx) - betaln(a, b)) + W * r * log_alpha
    log_aT, inv_aT = d.buf
    np.add(d.T, alpha, out=inv_aT)
    np.log(inv_aT, out=log_aT)
    np.reciprocal(inv_aT, out=inv_aT)
    s_log, s_logx = _dot(d.w, log_aT), _dot(d.wx, log_aT)
    s_inv, s_invx = _dot(d.w, inv_aT), _dot(d.wx, inv_aT)
    ll -= r * s_log + s_logx
    psi_abx = digamma(a + bx)
    g = np.array(
        [
            _dot(Wx, digamma(rx) - digamma(r)) + W * log_alpha - s_log,
            W * r / alpha - r * s_inv - s_invx,
            _dot(Wx, digamma(a + b) - psi_abx),
            _dot(Wx, digamma(bx) - psi_abx) + W * (digamma(a + b) - digamma(b)),
        ]
    )
    k = 0 if modified else d.k  # MBG/NBD: the correction applies to every row
    m = len(d.w) - k
    if m > 0:
        w_r = d.w[k:]
        delta, A4, sig, tmp, inv_b = (row[:m] for row in d.buf_r)
        # per distinct frequency: 1/(b+x-1+shift) (guarded where BG/NBD has no term, x = 0)
        inv_bx = 1.0 / np.where(xs + shift > 0, b + xs - 1 + shift, 1.0)
        np.take(inv_bx, d.xi[k:], out=inv_b)
        np.take(np.log(a) + np.log(inv_bx), d.xi[k:], out=A4)
        np.add(d.t_x[k:], alpha, out=tmp)
        np.log(tmp, out=delta)
        np.subtract(log_aT[k:], delta, out=delta)  # ln(alpha+T) - ln(alpha+t_x)
        np.reciprocal(tmp, out=tmp)
        np.subtract(inv_aT[k:], tmp, out=tmp)  # 1/(alpha+T) - 1/(alpha+t_x)
        np.add(d.x[k:], r, out=sig)  # r + x
        np.multiply(tmp, sig, out=tmp)
        np.multiply(sig, delta, out=sig)
        np.add(A4, sig, out=A4)  # ln a - ln(b+x-1) + (r+x) delta
        expit(A4, out=sig)
        # softplus(A4) = A4 - ln expit(A4): one log, absolute error ~ eps |A4|
        ll += _dot(w_r, A4)
        ll -= _dot(w_r, np.log(sig, out=A4))
        np.multiply(sig, w_r, out=sig)  # weight times sigma
        g[0] += _dot(sig, delta)
        g[1] += _dot(sig, tmp)
        g[2] += sig.sum() / a
        g[3] -= _dot(sig, inv_b)
    pen, pen_grad = penalty(theta, penalizer)
    return -ll / W + pen, -g * theta / W + pen_grad


def _conditional_expectation(theta, t, x, t_x, T, *, modified: bool) -> np.ndarray:
    """E[X(T, T+t] | x, t_x, T] (FHL 2005 eq. 10; Batislam et al. 2007 for MBG/NBD).

    The 2F1 term is used in its Euler-transformed form
    ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x'; c; z) = (1-z)^(a-1) 2F1(c-r-x, a-1; c; z)
    with z = t/(alpha+T+t), c = a+b+x'-1: the transformed 2F1 stays O(1) for large x,
    where the original one overflows while its prefactor underflows. Where the transformed
    one fails instead (a and b of a million, an almost homogeneous dropout: its series
    alternates with huge terms), the original one converges fast and is used.
    """
    r, alpha, a, b = theta
    if abs(a - 1.0) < _NEAR_ONE:
        return _limit_at_a_one(_conditional_expectation, theta, t, x, t_x, T, modified=modified)
    shift = 1.0 if modified else 0.0
    bx = b + x + shift  # b + x' with x' = x (BG/NBD) or x + 1 (MBG/NBD)
    c = a + bx - 1
    log_1mz = np.log(alpha + T) - np.log(alpha + T + t)
    z = -np.expm1(log_1mz)
    # Far from any data (a fit at the edge of its search box) 2F1 can overflow while its
    # prefactor underflows: 0 * inf. The value is then unknown, and said so with NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.exp((a - 1) * log_1mz) * hyp2f1(c - r - x, a - 1, c, z)
        failed = ~np.isfinite(tail)
        if failed.any():
            original = np.exp((r + x) * log_1mz) * hyp2f1(r + x, bx, c, z)
            tail = np.where(failed, original, tail)
        out = c / (a - 1) * (1 - tail) * _probability_alive(theta, x, t_x, T, modified=modified)
    return np.where(np.isfinite(out), out, np.nan)


# c/(a-1) * (1 - tail) is 0/0 at a = 1 (a fit on buyers without repeat purchases keeps a at
# its start, 1). It is analytic in a, so the mean of its values at 1 -/+ _A_STEP gives the
# limit with an error ~_A_STEP^2; the cancellation in 1 - tail costs ~eps/_A_STEP (1e-10).
_NEAR_ONE = 1e-7
_A_STEP = 1e-6


def _limit_at_a_one(formula, theta, *args, **kwargs):
    r, alpha, _, b = theta
    below = formula(np.array([r, alpha, 1.0 - _A_STEP, b]), *args, **kwargs)
    above = formula(np.array([r, alpha, 1.0 + _A_STEP, b]), *args, **kwargs)
    return (below + above) / 2


def _new_customer_expectation_mbg(theta, t) -> np.ndarray:
    """E[X(t)] of a new MBG/NBD customer: b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; z)]
    (Batislam et al. 2007), Euler-transformed as in ``_conditional_expectation``."""
    r, alpha, a, b = theta
    if abs(a - 1.0) < _NEAR_ONE:
        return _limit_at_a_one(_new_customer_expectation_mbg, theta, t)
    log_1mz = np.log(alpha) - np.log(alpha + t)
    z = -np.expm1(log_1mz)
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.exp((a - 1) * log_1mz) * hyp2f1(a + b - r, a - 1, a + b, z)
        failed = ~np.isfinite(tail)
        if failed.any():  # the untransformed form, as in _conditional_expectation
            tail = np.where(failed, np.exp(r * log_1mz) * hyp2f1(r, b + 1, a + b, z), tail)
        out = b / (a - 1) * (1 - tail)
    return np.where(np.isfinite(out), out, np.nan)


def _probability_alive(theta, x, t_x, T, *, modified: bool) -> np.ndarray:
    r, alpha, a, b = theta
    shift = 1.0 if modified else 0.0
    has_term = np.ones_like(x, dtype=bool) if modified else x > 0
    denom = np.where(has_term, b + x - 1 + shift, 1.0)
    A4 = np.log(a) - np.log(denom) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(has_term, expit(-A4), 1.0)


def _probability_of_purchases(theta, n, t, *, modified: bool) -> np.ndarray:
    """P(X(t) = n) for a new customer (FHL 2005 eq. 8; the MBG/NBD analogue)."""
    r, alpha, a, b = theta
    shift = 1.0 if modified else 0.0
    p0 = alpha / (alpha + t)  # NB "success" probability of the purchase count while alive
    log_nb = gammaln(r + n) - gammaln(r) - gammaln(n + 1) + r * np.log(p0) + xlogy(n, t / (alpha + t))
    alive = np.exp(betaln(a, b + n + shift) - betaln(a, b) + log_nb)
    # died right after the n-th purchase (MBG/NBD: n = 0 means at time 0), which happened by t
    reached = np.where(n > 0, 1 - betainc(r, np.maximum(n, 1), p0), 1.0)  # P(NB >= n)
    log_dead = betaln(a + 1, np.maximum(b + n - 1 + shift, 1e-300)) - betaln(a, b)  # guard: BG/NBD at n = 0
    dead = np.where((n > 0) | modified, np.exp(log_dead), 0.0)
    return alive + dead * reached


class _BetaGeoFamily(PurchaseModel):
    _param_names = ("r", "alpha", "a", "b")
    _scale_params = ("alpha",)
    _modified = False

    def _prepare(self, x, t_x, T, w):
        return _prepare_rows(x, t_x, T, w)

    def _objective(self, phi, data, penalizer):
        return _objective(phi, data, penalizer, modified=self._modified)

    def _loglik(self, theta, x, t_x, T):
        return _loglik_rows(theta, x, t_x, T, modified=self._modified)

    def _expected_purchases_at(self, theta, t, x, t_x, T):
        return _conditional_expectation(theta, t, x, t_x, T, modified=self._modified)

    def _expected_purchases_new_at(self, theta, t):
        if self._modified:  # MBG/NBD: a new customer may already be gone at time 0
            return _new_customer_expectation_mbg(theta, t)
        zero = np.zeros_like(t)
        return _conditional_expectation(theta, t, zero, zero, zero, modified=False)

    def _probability_alive_at(self, theta, x, t_x, T):
        return _probability_alive(theta, x, t_x, T, modified=self._modified)

    def probability_of_purchases(self, n, t) -> np.ndarray:
        """P(X(t) = n): probability that a new customer makes ``n`` repeat purchases in ``(0, t]``."""
        theta = self._params_array()
        n_arr = check_horizon("n", n)
        _first_bad("n", n_arr, np.floor(n_arr) != n_arr, "a whole number of purchases (0, 1, 2, ...)")
        return _probability_of_purchases(theta, n_arr, check_horizon("t", t), modified=self._modified)


class BetaGeo(_BetaGeoFamily):
    """BG/NBD purchase model fitted by maximum likelihood.

    While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
    after each repeat purchase they drop out with probability ``p ~ Beta(a, b)``.

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood
        (as in lifetimes); 0 gives the plain MLE.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha`` (in the time unit of recency/T), ``a``, ``b``.
    standard_errors_ : dict
        From the inverse Hessian of the (penalised) negative log-likelihood at the optimum,
        by central differences of the analytic gradient; delta method from log scale.
    log_params_cov_ : ndarray
        Asymptotic covariance of ``log(params)`` (what :func:`userstrata.models.clv` samples from).
    log_likelihood_ : float
        Total log-likelihood at the optimum, constants included (comparable with published values).
    n_customers_ : int
        Rows passed to ``fit``.
    converged_ : bool
        Whether the optimum was reached (the gradient vanishes, but for parameters held at
        the edge of the search box).
    at_boundary_ : tuple of str
        Parameters that stopped at the edge of the search box (shape parameters within
        1e-6..1e6, alpha within that factor of the mean T): the likelihood keeps rising
        beyond it, so the data do not pin them down; empty for an interior optimum. See
        :func:`userstrata.models._base.maximize_loglik`.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting Your Customers" the Easy Way:
    An Alternative to the Pareto/NBD Model. Marketing Science, 24(2), 275-284.
    """

    _modified = False


def simulate_bgnbd(n: int, params: dict, T, random_state=None, *, resolution: float | None = None):
    """Simulate ``(frequency, recency, T)`` for ``n`` customers from the BG/NBD model.

    Per customer ``lambda ~ Gamma(r, scale=1/alpha)`` and ``p ~ Beta(a, b)``; the lifetime
    number of repeat purchases is ``N ~ Geometric(p)`` (dropout right after the N-th), the
    purchases follow a Poisson(lambda) process, and only those in ``(0, T]`` are seen:
    ``x = min(K, N)`` with ``K ~ Poisson(lambda T)``; given K arrivals the x-th arrival time is
    ``T * Beta(x, K - x + 1)`` (order statistic of uniforms). ``resolution`` rounds recency
    down to a multiple of it (e.g. 1 day), as day-stamped data would. Vectorised in chunks.
    """
    return _simulate(n, params, T, random_state, resolution, modified=False)


def _simulate(n, params, T, random_state, resolution, *, modified):
    r, alpha, a, b = (float(params[k]) for k in ("r", "alpha", "a", "b"))
    rng = np.random.default_rng(random_state)
    T_all = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    x_all = np.empty(n)
    t_all = np.empty(n)
    chunk = 1 << 20  # bounds the temporaries' memory for tens of millions of customers
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        T_c = T_all[lo:hi]
        lam = rng.gamma(r, 1.0 / alpha, hi - lo)
        p = np.clip(rng.beta(a, b, hi - lo), 1e-12, 1.0)
        K = rng.poisson(lam * T_c)
        N = rng.geometric(p) - (1 if modified else 0)  # MBG/NBD: the coin is also tossed at time 0
        x = np.minimum(K, N)
        pos = x > 0
        t_x = np.zeros(hi - lo)
        t_x[pos] = T_c[pos] * rng.beta(x[pos], K[pos] - x[pos] + 1)
        if resolution:
            t_x = np.floor(t_x / resolution) * resolution
        x_all[lo:hi] = x
        t_all[lo:hi] = t_x
    return x_all, t_all, T_all
