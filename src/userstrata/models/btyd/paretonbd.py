"""Pareto/NBD purchase model (Schmittlein, Morrison & Colombo 1987), fitted by maximum likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, hyp2f1

from userstrata.models._base import PurchaseModel, penalty

__all__ = ["ParetoNBD", "simulate_paretonbd"]


# --------------------------------------------------------------------------- likelihood
#
# Given the rates, L = lambda^x e^{-(lambda+mu) T} + int_{t_x}^{T} lambda^x e^{-lambda tau} mu e^{-mu tau} dtau
# (alive at T, or died at tau in (t_x, T]); integrating lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta):
#
#   L = C [E + s I],  C = G(r+x) alpha^r beta^s / G(r),  E = (alpha+T)^-(r+x) (beta+T)^-s,
#   I = int_{t_x}^{T} f(tau) dtau,  f(tau) = (alpha+tau)^-(r+x) (beta+tau)^-(s+1).
#
# Fader & Hardie (2005) write s*I with 2F1 (the closed form below). Its derivatives in r and s
# are derivatives of 2F1 in its parameters, which have no closed form, so the gradient is
# taken under the integral sign (d/dr f = -ln(alpha+tau) f, d/dalpha f = -(r+x) f/(alpha+tau), ...)
# and the five resulting integrals are evaluated by one tanh-sinh quadrature (below). Without
# autodiff this is the analytic route that stays exact up to quadrature error (~1e-13 here).


def _tanh_sinh(h: float = 1 / 8, t_max: float = 3.25):
    """Tanh-sinh nodes and weights on (0, 1); exponentially accurate even with endpoint singularities."""
    t = np.arange(-round(t_max / h), round(t_max / h) + 1) * h
    s = np.pi * np.sinh(t)
    u = 1.0 / (1.0 + np.exp(-s))  # (1 + tanh(s/2)) / 2, computed without cancellation near 0
    w = h * np.pi / 4 * np.cosh(t) / np.cosh(s / 2) ** 2
    return u, w


_NODES, _WEIGHTS = _tanh_sinh()
_CHUNK = 1 << 13  # rows per quadrature block: five (rows x nodes) buffers of ~3.5 MB each


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)  # row sums of a * b without the temporary


def _quadrature(theta, x, t_x, T, *, gradient: bool, work: np.ndarray | None = None):
    """Per-row log-likelihood (and its gradient on the natural scale) by quadrature.

    With c = max(alpha, beta), d = min(alpha, beta) and K = r+s+x, substitute
    y = (c+t_x)/(c+tau), v = y^K: then f dtau = (c+t_x)^-K / K * g(v) dv with
    g(v) = (1 - z y)^-e, z = (c-d)/(c+t_x) in [0, 1), e = s+1 (if c = alpha) or r+x.
    g is bounded and monotone on [v0, 1], v0 = ((c+t_x)/(c+T))^K, so the integral is smooth
    whatever x is (in tau the integrand is a spike of width ~1/K near t_x).
    Everything is scaled by (c+t_x)^-K g(1) to stay in floating range. ``work`` is an
    optional (5, rows, nodes) buffer reused across calls (fresh temporaries of this size
    cost page faults on every evaluation).
    """
    r, alpha, s, beta = theta
    alpha_big = alpha >= beta
    c, d = (alpha, beta) if alpha_big else (beta, alpha)
    n = len(x)
    if work is None:
        work = np.empty((5, n, len(_NODES)))
    lnv, y, L1, g, tmp = (buf[:n] for buf in work)
    K = r + s + x
    inv_K = (1.0 / K)[:, None]
    e = np.full_like(x, s + 1.0) if alpha_big else r + x
    P = np.log(c + t_x)
    v0 = np.exp(K * (P - np.log(c + T)))
    z = (c - d) / (c + t_x)
    L1max = np.log1p(-z)
    log_scale = -K * P - e * L1max  # log of (c+t_x)^-K g(1)
    A1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    e_rel = np.exp(A1 - log_scale)  # E in units of the scale

    span = (1.0 - v0)[:, None]
    np.multiply(span, _NODES, out=lnv)
    np.add(lnv, v0[:, None], out=lnv)
    np.log(lnv, out=lnv)  # ln v
    np.multiply(lnv, inv_K, out=y)
    np.exp(y, out=y)  # y = v^(1/K)
    np.multiply(y, -z[:, None], out=L1)
    np.log1p(L1, out=L1)  # ln(1 - z y)
    np.subtract(L1, L1max[:, None], out=g)
    np.multiply(g, -e[:, None], out=g)
    np.exp(g, out=g)
    np.multiply(g, span * _WEIGHTS, out=g)  # g(v)/g(1) times the quadrature weight
    J0 = g.sum(axis=1)
    bracket = e_rel + s * J0 / K
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + log_scale + np.log(bracket)
    if not gradient:
        return ll, None
    # ln(c + tau) = P - ln(v)/K;  ln(d + tau) = ln(c + tau) + ln(1 - z y)
    J_lnv = _rowdot(g, lnv)
    J_lnc = P * J0 - J_lnv / K
    J_lnd = J_lnc + _rowdot(g, L1)
    # 1/(c + tau) = y/(c + t_x);  1/(d + tau) = y / ((c + t_x)(1 - z y))
    np.multiply(g, y, out=tmp)
    J_ic = tmp.sum(axis=1) / (c + t_x)
    np.negative(L1, out=L1)
    np.exp(L1, out=L1)
    J_id = _rowdot(tmp, L1) / (c + t_x)
    J_lna, J_lnb, J_ia, J_ib = (J_lnc, J_lnd, J_ic, J_id) if alpha_big else (J_lnd, J_lnc, J_id, J_ic)
    sK = s / K
    grad = np.stack(
        [
            digamma(r + x) - digamma(r) + np.log(alpha) - (np.log(alpha + T) * e_rel + sK * J_lna) / bracket,
            r / alpha - (r + x) * (e_rel / (alpha + T) + sK * J_ia) / bracket,
            np.log(beta) + (J0 / K - np.log(beta + T) * e_rel - sK * J_lnb) / bracket,
            s / beta - (s * e_rel / (beta + T) + sK * (s + 1) * J_ib) / bracket,
        ]
    )
    return ll, grad


def _log_bracket_closed_form(theta, x, t_x, T):
    """ln(E + s I) by Fader & Hardie's (2005) 2F1 expressions, cases alpha >= beta / alpha < beta.

    s I = s/K [2F1(K, e'; K+1; (c-d)/(c+t_x)) / (c+t_x)^K - 2F1(K, e'; K+1; (c-d)/(c+T)) / (c+T)^K]
    with e' = s+1 when alpha >= beta (c = alpha) and e' = r+x otherwise (c = beta); the
    three terms are combined by log-sum-exp. Rows where 2F1 fails (overflow) fall back to
    the quadrature.
    """
    r, alpha, s, beta = theta
    K = r + s + x
    if alpha >= beta:
        c, d, e = alpha, beta, s + 1.0
    else:
        c, d, e = beta, alpha, r + x
    A1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        A2 = np.log(s / K) + np.log(hyp2f1(K, e, K + 1, (c - d) / (c + t_x))) - K * np.log(c + t_x)
        A3 = np.log(s / K) + np.log(hyp2f1(K, e, K + 1, (c - d) / (c + T))) - K * np.log(c + T)
        M = np.maximum(A1, A2)
        out = M + np.log(np.exp(A1 - M) + np.exp(A2 - M) - np.exp(A3 - M))
    bad = ~np.isfinite(out)
    if bad.any():
        ll_q, _ = _quadrature(theta, x[bad], t_x[bad], T[bad], gradient=False)
        out[bad] = ll_q - _log_c(theta, x[bad])
    return out, A1


def _log_c(theta, x):
    r, alpha, s, beta = theta
    return gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)


def _loglik(theta, x, t_x, T) -> np.ndarray:
    """Per-row log-likelihood, constants included (Fader & Hardie 2005 closed form)."""
    log_bracket, _ = _log_bracket_closed_form(theta, x, t_x, T)
    return _log_c(theta, x) + log_bracket


@dataclass(frozen=True)
class _Rows:
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    w: np.ndarray
    W: float
    work: np.ndarray  # quadrature buffers, reused by every evaluation


def _objective(phi, d: _Rows, penalizer: float):
    """Weighted mean negative log-likelihood and gradient in log space, by quadrature."""
    theta = np.exp(phi)
    ll = 0.0
    g = np.zeros(4)
    for lo in range(0, len(d.w), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        ll_c, g_c = _quadrature(theta, d.x[sl], d.t_x[sl], d.T[sl], gradient=True, work=d.work)
        # einsum, not BLAS: the same summation order on every CPU
        ll += np.einsum("i,i->", d.w[sl], ll_c)
        g += np.einsum("ji,i->j", g_c, d.w[sl])
    pen, pen_grad = penalty(theta, penalizer)
    return -ll / d.W + pen, -g * theta / d.W + pen_grad


def _one_minus_power(base_log, q):
    """(1 - exp(-q * base_log)) / q, continuous at q = 0 (where it is base_log)."""
    q = np.asarray(q, dtype=np.float64)
    small = np.abs(q) < 1e-10
    return np.where(small, base_log, -np.expm1(-q * base_log) / np.where(small, 1.0, q))


class ParetoNBD(PurchaseModel):
    """Pareto/NBD purchase model fitted by maximum likelihood.

    While active a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
    their lifetime is exponential with rate ``mu ~ Gamma(s, beta)``.

    The likelihood is Fader & Hardie's (2005) 2F1 form (``log_likelihood_`` uses it); the
    optimiser works on an equivalent integral form whose analytic gradient is evaluated by
    tanh-sinh quadrature (see the module comment): derivatives of 2F1 in its parameters have
    no closed form.

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``s``, ``beta`` (alpha and beta in the time unit of recency/T).
    standard_errors_, log_params_cov_, log_likelihood_, n_customers_, converged_, at_boundary_
        As for :class:`~userstrata.models.BetaGeo`.

    References
    ----------
    Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting Your Customers: Who Are
    They and What Will They Do Next? Management Science, 33(1), 1-24.
    Fader, P. S. & Hardie, B. G. S. (2005). A Note on Deriving the Pareto/NBD Model and Related
    Expressions. http://brucehardie.com/notes/009/
    """

    _param_names = ("r", "alpha", "s", "beta")
    _scale_params = ("alpha", "beta")

    def _prepare(self, x, t_x, T, w):
        work = np.empty((5, min(len(x), _CHUNK), len(_NODES)))
        return _Rows(x=x, t_x=t_x, T=T, w=w, W=float(w.sum()), work=work)

    def _objective(self, phi, data, penalizer):
        return _objective(phi, data, penalizer)

    def _loglik(self, theta, x, t_x, T):
        return _loglik(theta, x, t_x, T)

    def _probability_alive_at(self, theta, x, t_x, T):
        """P(alive at T | x, t_x, T) = E / (E + s I) (Fader & Hardie 2005, eq. 18)."""
        log_bracket, A1 = _log_bracket_closed_form(theta, x, t_x, T)
        return np.exp(np.minimum(A1 - log_bracket, 0.0))

    def _expected_purchases_at(self, theta, t, x, t_x, T):
        """E[X(T, T+t] | x, t_x, T] (Fader & Hardie 2005, eq. 21):
        (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)."""
        r, alpha, s, beta = theta
        ratio = (r + x) * (beta + T) / (alpha + T)
        return ratio * _one_minus_power(np.log1p(t / (beta + T)), s - 1) * self._probability_alive_at(theta, x, t_x, T)

    def _expected_purchases_new_at(self, theta, t):
        """E[X(t)] = r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)] (Fader & Hardie 2005, eq. 17)."""
        r, alpha, s, beta = theta
        return r * beta / alpha * _one_minus_power(np.log1p(t / beta), s - 1)


def simulate_paretonbd(n: int, params: dict, T, random_state=None, *, resolution: float | None = None):
    """Simulate ``(frequency, recency, T)`` for ``n`` customers from the Pareto/NBD model.

    ``lambda ~ Gamma(r, scale=1/alpha)``, ``mu ~ Gamma(s, scale=1/beta)``, lifetime
    ``tau ~ Exponential(mu)``; purchases are Poisson(lambda) on ``(0, min(tau, T)]``, so
    ``x ~ Poisson(lambda min(tau, T))`` and recency is the largest of x uniform times on that
    interval. ``resolution`` rounds recency down to a multiple of it.
    """
    r, alpha, s, beta = (float(params[k]) for k in ("r", "alpha", "s", "beta"))
    rng = np.random.default_rng(random_state)
    T_all = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    x_all, t_all = np.empty(n), np.empty(n)
    chunk = 1 << 20
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        lam = rng.gamma(r, 1.0 / alpha, hi - lo)
        mu = rng.gamma(s, 1.0 / beta, hi - lo)
        seen = np.minimum(rng.exponential(1.0, hi - lo) / mu, T_all[lo:hi])
        x = rng.poisson(lam * seen)
        t_x = np.where(x > 0, seen * rng.random(hi - lo) ** (1.0 / np.maximum(x, 1)), 0.0)
        if resolution:
            t_x = np.floor(t_x / resolution) * resolution
        x_all[lo:hi], t_all[lo:hi] = x, t_x
    return x_all, t_all, T_all
