"""Gamma-Gamma model of average spend per transaction (Fader, Hardie & Lee 2005)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import digamma, gammaln
from scipy.stats import chi2

from userstrata.errors import InputError
from userstrata.models._base import (
    _INNER_MARGIN,
    SEARCH_LIMIT,
    _check_frequency,
    _check_weights,
    _first_bad,
    _MLEModel,
    _to_float_array,
    check_fitted,
    compress_rows,
    maximize_loglik,
    penalty,
    search_box,
)

__all__ = ["GammaGamma", "check_spend_arrays", "simulate_gammagamma"]

# Below this q the population mean spend v p / (q - 1) is barely finite (and infinite at 1):
# the least-shrinkage refit never goes lower.
Q_FLOOR = 2.0


def check_spend_arrays(frequency, monetary, weights=None):
    """Validate per-customer ``frequency`` and ``monetary`` (mean spend per repeat purchase).

    ``monetary`` must be finite and > 0 where ``frequency > 0``; for ``frequency == 0`` it is
    ignored (any value, NaN included) and returned as NaN.

    Returns
    -------
    tuple
        ``(x, zbar, w)`` as float64 arrays (``w`` None when no weights were given).
    """
    x = _to_float_array("frequency", frequency)
    m = _to_float_array("monetary", monetary)
    if len(x) != len(m):
        raise InputError(f"frequency and monetary must have the same length; got {len(x)} and {len(m)}")
    if len(x) == 0:
        raise InputError("no customers: frequency and monetary are empty")
    _check_frequency(x)
    repeat = x > 0
    zbar = np.where(repeat, m, np.nan)
    _first_bad(
        "monetary",
        m,
        repeat & ~(np.isfinite(m) & (m > 0)),
        "a finite average spend > 0 for a customer with repeat purchases",
    )
    return x, zbar, _check_weights(weights, len(x))


def _loglik(theta, x, zbar) -> np.ndarray:
    """ln f(zbar | p, q, v; x) for repeaters: zbar | nu ~ Gamma(p x, x nu), nu ~ Gamma(q, v).

    f = G(px+q) / (G(px) G(q)) v^q x^(px) zbar^(px-1) / (v + x zbar)^(px+q)
    (Fader, Hardie & Lee 2005, JMR, eq. 3; Fader & Hardie 2013, eq. 3), constants included.
    """
    p, q, v = theta
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + px * np.log(x)
        + (px - 1) * np.log(zbar)
        - (px + q) * np.log(v + x * zbar)
    )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("i,i->", a, b))  # no temporary, no BLAS: same sum on every CPU


@dataclass(frozen=True)
class _Rows:
    """Compressed repeater rows with the sums that do not depend on the parameters."""

    xz: np.ndarray  # x * zbar
    w: np.ndarray
    wx: np.ndarray  # w * x
    W: float
    xs: np.ndarray  # distinct frequencies
    Wx: np.ndarray  # total weight per distinct frequency
    sum_w_logz: float
    sum_wx_logz: float
    buf: np.ndarray  # (2, n) work space


def _prepare(x, zbar, w) -> _Rows:
    xs, xi = np.unique(x, return_inverse=True)
    log_z = np.log(zbar)
    return _Rows(
        xz=x * zbar,
        w=w,
        wx=w * x,
        W=float(w.sum()),
        xs=xs,
        Wx=np.bincount(xi, weights=w, minlength=len(xs)),
        sum_w_logz=_dot(w, log_z),
        sum_wx_logz=_dot(w * x, log_z),
        buf=np.empty((2, len(x))),
    )


def _objective(phi, d: _Rows, penalizer: float):
    """Weighted mean negative log-likelihood and analytic gradient in log space.

    d/dp = x [psi(px+q) - psi(px) + ln x + ln zbar - ln(v + x zbar)]
    d/dq = psi(px+q) - psi(q) + ln v - ln(v + x zbar)
    d/dv = q/v - (px+q)/(v + x zbar)
    The gamma-function terms depend on x only, so they run once per distinct frequency;
    per row only ln(v + x zbar) and its reciprocal are needed.
    """
    theta = np.exp(phi)
    p, q, v = theta
    xs, Wx = d.xs, d.Wx
    pxs = p * xs
    log_v = np.log(v)
    log_vxz, inv_vxz = d.buf
    np.add(d.xz, v, out=inv_vxz)
    np.log(inv_vxz, out=log_vxz)
    np.reciprocal(inv_vxz, out=inv_vxz)
    s_L, s_Lx = _dot(d.w, log_vxz), _dot(d.wx, log_vxz)
    s_R, s_Rx = _dot(d.w, inv_vxz), _dot(d.wx, inv_vxz)
    psi_pxq = digamma(pxs + q)
    ll = (
        _dot(Wx, gammaln(pxs + q) - gammaln(pxs) + pxs * np.log(xs))
        + d.W * (q * log_v - gammaln(q))
        + p * d.sum_wx_logz
        - d.sum_w_logz
        - p * s_Lx
        - q * s_L
    )
    g = np.array(
        [
            _dot(Wx * xs, psi_pxq - digamma(pxs) + np.log(xs)) + d.sum_wx_logz - s_Lx,
            _dot(Wx, psi_pxq) + d.W * (log_v - digamma(q)) - s_L,
            d.W * q / v - p * s_Rx - q * s_R,
        ]
    )
    pen, pen_grad = penalty(theta, penalizer)
    return -ll / d.W + pen, -g * theta / d.W + pen_grad


class GammaGamma(_MLEModel):
    """Gamma-Gamma model of a customer's average spend per repeat transaction.

    A customer's transaction values are ``Gamma(p, nu)`` around their own mean ``p/nu``, with
    ``nu ~ Gamma(q, v)`` across customers; spend is assumed independent of purchase frequency.
    Only repeaters carry information: rows with ``frequency == 0`` are dropped from ``fit``
    (their ``monetary`` is ignored) and counted in ``n_customers_`` only.

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``p``, ``q``, ``v``.
    standard_errors_, log_params_cov_, log_likelihood_, converged_, at_boundary_
        As for :class:`~userstrata.models.BetaGeo` (log-likelihood over the repeaters).
    n_customers_ : int
        Rows passed to ``fit``; ``n_repeaters_`` of them had ``frequency > 0``.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV: Using Iso-Value Curves for
    Customer Base Analysis. Journal of Marketing Research, 42(4), 415-430.
    Fader, P. S. & Hardie, B. G. S. (2013). The Gamma-Gamma Model of Monetary Value.
    http://brucehardie.com/notes/025/
    """

    _param_names = ("p", "q", "v")

    def fit(self, frequency, monetary, weights=None) -> "GammaGamma":
        """Fit by maximum likelihood on the customers with ``frequency > 0``.

        Parameters
        ----------
        frequency
            Repeat purchases per customer.
        monetary
            Average value of the repeat purchases (ignored where ``frequency`` is 0).
        weights
            Optional non-negative weight per row.
        """
        penalizer = self._check_penalizer()
        x, zbar, w = check_spend_arrays(frequency, monetary, weights)
        n = len(x)
        repeat = x > 0
        if not repeat.any():
            raise InputError("no customer has frequency > 0; the Gamma-Gamma model is fitted on repeat buyers")
        (x, zbar), w = compress_rows([x[repeat], zbar[repeat]], None if w is None else w[repeat])
        if len(w) == 0:
            raise InputError("all repeat buyers have weight 0; expected at least one with a positive weight")
        data = _prepare(x, zbar, w)
        result = maximize_loglik(
            lambda phi: _objective(phi, data, penalizer),
            np.zeros(3),
            self._param_names,
            total_weight=data.W,
            model_name=type(self).__name__,
            # v is in money: its search box follows the mean spend
            box=search_box([1.0, 1.0, float(np.einsum("i,i->", w, zbar)) / data.W]),
        )
        ll = float(w @ _loglik(np.exp(result.log_params), x, zbar))
        self._store(result, ll, n)
        self.n_repeaters_ = int(repeat.sum())
        self.q_fixed_ = False
        return self

    def heterogeneity_identified(self) -> bool:
        """Whether the fit pins down how much customers' mean spend differs.

        Not when ``q`` (or ``v``) stopped at or near the edge of the search box (``q`` above
        ``SEARCH_LIMIT / 100``, where only a bounded search lands) or the Hessian is singular: the
        likelihood then keeps rising towards ``q, v -> inf`` with ``v / q`` fixed, the limit in
        which every customer has the same mean spend, so every posterior mean is the population
        mean whatever the customer's own spend.
        """
        check_fitted(self)
        cov = self.log_params_cov_
        return not (
            {"q", "v"} & set(self.at_boundary_)
            or self.params_["q"] > SEARCH_LIMIT / _INNER_MARGIN  # the bounded search ran towards the edge
            or cov is None
            or not np.all(np.isfinite(np.diag(cov)))
        )

    def least_shrinkage(self, frequency, monetary, *, level: float = 0.95) -> "GammaGamma":
        """A copy refitted with ``q`` held at the smallest value the data do not reject.

        That is the lower end of the ``level`` profile-likelihood interval of ``q`` (the
        likelihood-ratio bound ``chi2(1).ppf(level) / 2`` below the optimum), at least
        ``Q_FLOOR``; ``p`` and ``v`` are re-estimated at that ``q``. A smaller ``q`` means more
        spread between customers, so each posterior mean leans further towards the customer's own
        mean (weight ``p x / (p x + q - 1)``) while staying the model's own shrinkage estimate.
        Meant for fits where :meth:`heterogeneity_identified` is False, whose ``q -> inf`` gives
        every customer the population mean. The copy has ``q_fixed_`` True and a covariance with
        zero variance for ``q``.
        """
        check_fitted(self)
        penalizer = self._check_penalizer()
        x, zbar, _ = check_spend_arrays(frequency, monetary)
        repeat = x > 0
        (xr, zr), w = compress_rows([x[repeat], zbar[repeat]])
        data = _prepare(xr, zr, w)
        phi_hat = np.log(self._params_array())
        f_hat = _objective(phi_hat, data, penalizer)[0]
        box = search_box([1.0, 1.0, float(np.einsum("i,i->", w, zr)) / data.W])

        def profile(log_q: float):
            """Mean negative log-likelihood maximised over (log p, log v) at fixed log q."""
            def objective(pv):
                phi = np.array([pv[0], log_q, pv[1]])
                if np.max(np.abs(phi)) > 50:
                    return np.inf, np.zeros(2)
                f, g = _objective(phi, data, penalizer)
                return (f, g[[0, 2]]) if np.isfinite(f) else (np.inf, np.zeros(2))

            res = optimize.minimize(objective, phi_hat[[0, 2]], jac=True, method="L-BFGS-B",
                                    bounds=[tuple(box[0]), tuple(box[2])])
            return res.fun, res.x

        excess = chi2.ppf(level, 1) / 2 / data.W  # the bound on the mean scale of the objective
        lo, hi = np.log(Q_FLOOR), float(phi_hat[1])
        if hi <= lo:
            log_q = hi  # already at or below the floor: nothing to relax
        elif profile(lo)[0] - f_hat <= excess:
            log_q = lo  # even q at the floor is not rejected
        else:
            log_q = optimize.brentq(lambda lq: profile(lq)[0] - f_hat - excess, lo, hi, xtol=1e-6)
        f, pv = profile(log_q)
        phi = np.array([pv[0], log_q, pv[1]])
        refit = GammaGamma(penalizer=self.penalizer)
        refit.params_ = dict(zip(self._param_names, np.exp(phi).tolist()))
        refit.standard_errors_ = {"p": np.nan, "q": 0.0, "v": np.nan}
        cov = np.zeros((3, 3))
        H = np.empty((2, 2))
        for j in (0, 1):  # the (log p, log v) block, by central differences of the gradient
            e = np.zeros(3)
            e[(0, 2)[j]] = 1e-5
            H[:, j] = (_objective(phi + e, data, penalizer)[1] - _objective(phi - e, data, penalizer)[1])[[0, 2]] / 2e-5
        try:
            block = np.linalg.inv((H + H.T) / 2 * data.W)
            if np.all(np.diag(block) > 0):
                cov[np.ix_([0, 2], [0, 2])] = block
                refit.standard_errors_.update(p=float(refit.params_["p"] * np.sqrt(block[0, 0])),
                                              v=float(refit.params_["v"] * np.sqrt(block[1, 1])))
            else:
                cov[:] = np.nan
        except np.linalg.LinAlgError:
            cov[:] = np.nan
        refit.log_params_cov_ = cov
        refit.log_likelihood_ = float(w @ _loglik(np.exp(phi), xr, zr))
        refit.n_customers_, refit.n_repeaters_ = len(x), int(repeat.sum())
        refit.converged_, refit.at_boundary_, refit.q_fixed_ = True, (), True
        return refit

    def expected_spend(self, frequency, monetary) -> np.ndarray:
        """E[M | x, zbar]: posterior mean spend per transaction.

        ``(q-1)/(px+q-1) * v p/(q-1) + px/(px+q-1) * zbar`` (FHL 2005, eq. 5), a weighted
        average of the population mean ``v p/(q-1)`` and the customer's own mean; for
        ``frequency == 0`` it is the population mean (infinite when ``q <= 1``).
        """
        theta = self._params_array()
        x, zbar, _ = check_spend_arrays(frequency, monetary)
        return self._expected_spend_at(theta, x, zbar)

    @staticmethod
    def _expected_spend_at(theta, x, zbar) -> np.ndarray:
        p, q, v = theta
        population = v * p / (q - 1) if q > 1 else np.inf
        px = p * x
        with np.errstate(invalid="ignore"):
            individual = p * (v + x * np.where(x > 0, zbar, 0.0)) / (px + q - 1)
        return np.where(x > 0, individual, population)


def simulate_gammagamma(frequency, params: dict, random_state=None) -> np.ndarray:
    """Average spend per customer from the Gamma-Gamma model, given ``frequency``.

    ``nu ~ Gamma(q, scale=1/v)``; the mean of x draws from ``Gamma(p, scale=1/nu)`` is
    ``Gamma(p x, scale=1/(x nu))``. Rows with ``frequency == 0`` get 0.
    """
    p, q, v = (float(params[k]) for k in ("p", "q", "v"))
    x = np.asarray(frequency, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    nu = rng.gamma(q, 1.0 / v, len(x))
    pos = x > 0
    out = np.zeros(len(x))
    out[pos] = rng.gamma(p * x[pos], 1.0 / (x[pos] * nu[pos]))
    return out
