"""BG/NBD with static customer covariates (Fader & Hardie 2007), and a held-out test that keeps them.

Each customer's BG/NBD parameters follow from their covariates ``z`` (acquisition channel,
first-order value, member level...) through log-links::

    alpha_i = alpha0 exp(-gamma_purchase' z_i)     purchase rate lambda ~ Gamma(r, alpha_i)
    a_i     = a0     exp( gamma_dropout_a' z_i)    dropout p ~ Beta(a_i, b_i)
    b_i     = b0     exp( gamma_dropout_b' z_i)

Given ``(r, alpha_i, a_i, b_i)`` every BG/NBD closed form holds per customer, so the
likelihood, P(alive) and the conditional expectation are those of FHL (2005) evaluated
row by row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from userstrata.errors import InputError
from userstrata.models._base import (
    _MLEModel,
    check_btyd_arrays,
    check_fitted,
    check_horizon,
    compress_rows,
    maximize_loglik,
    search_box,
)
from userstrata.models.btyd.bgnbd import BetaGeo, _probability_alive

__all__ = [
    "BetaGeoCovariates",
    "CovariateSelection",
    "select_covariates",
    "simulate_bgnbd_covariates",
]

PROCESSES = ("purchase", "dropout_a", "dropout_b")
_Z95 = 1.959963984540054
# a^-1 near 1: as in bgnbd.py, c/(a-1) (1 - tail) is 0/0 at a = 1; the mean of its values at
# 1 -/+ _A_STEP is the limit with an error ~_A_STEP^2.
_NEAR_ONE = 1e-7
_A_STEP = 1e-6


# --------------------------------------------------------------------------- covariate design


@dataclass(frozen=True)
class _Column:
    """How one input column becomes design columns: standardised, a 0/1 dummy, or one-hot."""

    name: str
    kind: str  # "numeric" (standardised), "dummy" (0/1 kept as is) or "categorical"
    mean: float = 0.0
    scale: float = 1.0
    levels: tuple = ()  # categorical: all levels, the first is the reference (dropped)

    @property
    def encoded(self) -> tuple[str, ...]:
        if self.kind == "categorical":
            return tuple(f"{self.name}={level}" for level in self.levels[1:])
        return (self.name,)


@dataclass(frozen=True)
class _Design:
    """The covariate transform learned at fit, applied unchanged to new customers."""

    columns: tuple[_Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for c in self.columns for n in c.encoded)

    @property
    def raw_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def subset(self, raw_names) -> "_Design":
        keep = set(raw_names)
        return _Design(tuple(c for c in self.columns if c.name in keep))

    def encode(self, covariates, n: int) -> np.ndarray:
        frame = _as_frame(covariates, n)
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise InputError(
                f"covariates lack column(s) {missing}; expected the columns the model was fitted on: "
                f"{list(self.raw_names)}"
            )
        parts = []
        for col in self.columns:
            values = frame[col.name]
            if col.kind == "categorical":
                labels = _categorical_values(col.name, values)
                codes = pd.Index(list(col.levels), dtype=object).get_indexer(labels)  # -1: unseen
                if (codes < 0).any():
                    unseen = labels[int(np.argmax(codes < 0))]
                    raise InputError(
                        f"covariates[{col.name!r}] has level {unseen!r}, unseen at fit; "
                        f"expected one of {list(col.levels)}",
                        hint="map new levels to a known one (e.g. the reference level "
                        f"{col.levels[0]!r}) or refit on data that has them",
                    )
                block = np.zeros((n, len(col.levels) - 1))
                rows = np.flatnonzero(codes > 0)
                block[rows, codes[rows] - 1] = 1.0
                parts.append(block)
            else:
                arr = _numeric_values(col.name, values)
                parts.append(((arr - col.mean) / col.scale)[:, None])
        return np.hstack(parts) if parts else np.zeros((n, 0))


def _as_frame(covariates, n: int) -> pd.DataFrame:
    if isinstance(covariates, pd.Series):
        frame = covariates.to_frame(name=covariates.name if covariates.name is not None else "x0")
    elif isinstance(covariates, pd.DataFrame):
        frame = covariates
    else:
        arr = np.asarray(covariates)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise InputError(
                f"covariates must be a DataFrame or a 2-D array (customers x covariates); got shape {arr.shape}"
            )
        frame = pd.DataFrame(arr, columns=[f"x{j}" for j in range(arr.shape[1])])
    if len(frame) != n:
        raise InputError(f"covariates has {len(frame)} rows but there are {n} customers; expected one row each")
    if frame.shape[1] == 0:
        raise InputError("covariates has no columns; expected at least one", hint="use BetaGeo for no covariates")
    return frame


def _is_categorical(values: pd.Series) -> bool:
    dtype = values.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or not pd.api.types.is_numeric_dtype(dtype)
    )


def _categorical_values(name: str, values: pd.Series) -> np.ndarray:
    if values.isna().any():
        i = int(np.argmax(values.isna().to_numpy()))
        raise InputError(
            f"covariates[{name!r}][{i}] is missing; expected a level",
            hint="fill missing values with a level of their own, e.g. 'unknown'",
        )
    return values.astype(object).to_numpy()


def _numeric_values(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"covariates[{name!r}] must be numeric or categorical; got {values.dtype}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"covariates[{name!r}][{i}] = {float(arr[i])!r}; expected a finite number",
            hint="fill or drop missing values before fitting",
        )
    return arr


def _learn_design(covariates, n: int) -> _Design:
    """Categorical columns (text, category, bool) one-hot with the first level dropped; numeric
    0/1 columns kept as dummies; other numeric columns standardised (mean 0, sd 1)."""
    frame = _as_frame(covariates, n)
    columns = []
    for name in frame.columns:
        values = frame[name]
        label = str(name)
        if _is_categorical(values):
            labels = _categorical_values(label, values)
            if isinstance(values.dtype, pd.CategoricalDtype):
                present = set(labels)
                levels = tuple(c for c in values.cat.categories if c in present)
            else:
                levels = tuple(sorted(pd.unique(labels), key=lambda v: (str(type(v)), v)))
            if len(levels) < 2:
                raise InputError(
                    f"covariates[{label!r}] has a single level {levels[0]!r}; expected at least two",
                    hint="drop the column: a constant says nothing about customers",
                )
            columns.append(_Column(label, "categorical", levels=levels))
            continue
        arr = _numeric_values(label, values)
        distinct = np.unique(arr)
        if len(distinct) < 2:
            raise InputError(
                f"covariates[{label!r}] is constant ({float(distinct[0])!r}); expected variation",
                hint="drop the column: a constant says nothing about customers",
            )
        if len(distinct) == 2 and distinct[0] == 0.0 and distinct[1] == 1.0:
            columns.append(_Column(label, "dummy"))
        else:
            columns.append(_Column(label, "numeric", mean=float(arr.mean()), scale=float(arr.std())))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise InputError(f"covariates has duplicate column names {names}; expected unique names")
    return _Design(tuple(columns))


# --------------------------------------------------------------------------- likelihood


def _individual(phi: np.ndarray, Z: np.ndarray):
    """``(r, alpha_i, a_i, b_i)`` from ``phi = [ln r, ln alpha0, ln a0, ln b0, gammas...]``."""
    k = Z.shape[1]
    g = phi[4:].reshape(3, k)
    eta = np.einsum("ij,pj->pi", Z, g) if k else np.zeros((3, len(Z)))
    return (
        np.exp(phi[0]),
        np.exp(phi[1] - eta[0]),
        np.exp(phi[2] + eta[1]),
        np.exp(phi[3] + eta[2]),
    )


def _row_loglik(r, alpha, a, b, x, t_x, T, *, gradient: bool = False):
    """Per-row BG/NBD log-likelihood (FHL 2005 eq. 6) with per-row ``alpha, a, b``.

    Factored on ``(alpha + T)`` as in bgnbd.py so the correction term is a log-sum-exp:
    ln L = ln G(r+x) - ln G(r) + r ln alpha - (r+x) ln(alpha+T) + ln B(a, b+x) - ln B(a, b)
    + [x>0] softplus(A4), A4 = ln a - ln(b+x-1) + (r+x)(ln(alpha+T) - ln(alpha+t_x)).
    With ``gradient``, also d ln L / d(r, alpha, a, b) per row (sigma = expit(A4)):
      d/dr     = psi(r+x) - psi(r) + ln alpha - ln(alpha+T) + sigma (ln(alpha+T) - ln(alpha+t_x))
      d/dalpha = r/alpha - (r+x)/(alpha+T) + sigma (r+x) (1/(alpha+T) - 1/(alpha+t_x))
      d/da     = psi(a+b) - psi(a+b+x) + sigma/a
      d/db     = psi(b+x) - psi(a+b+x) - psi(b) + psi(a+b) - sigma/(b+x-1)
    """
    repeat = x > 0
    log_alpha = np.log(alpha)
    log_aT = np.log(alpha + T)
    delta = log_aT - np.log(alpha + t_x)
    denom = np.where(repeat, b + x - 1, 1.0)  # b+x-1 may be <= 0 at x = 0, where there is no term
    A4 = np.log(a) - np.log(denom) + (r + x) * delta
    ll = (
        gammaln(r + x)
        - gammaln(r)
        + r * log_alpha
        - (r + x) * log_aT
        + betaln(a, b + x)
        - betaln(a, b)
        + np.where(repeat, np.logaddexp(0.0, A4), 0.0)
    )
    if not gradient:
        return ll
    sig = np.where(repeat, expit(A4), 0.0)
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + log_alpha - log_aT + sig * delta
    d_alpha = r / alpha - (r + x) / (alpha + T) + sig * (r + x) * (1 / (alpha + T) - 1 / (alpha + t_x))
    d_a = psi_ab - psi_abx + sig / a
    d_b = digamma(b + x) - psi_abx - digamma(b) + psi_ab - sig / denom
    return ll, d_r, d_alpha, d_a, d_b


@dataclass(frozen=True)
class _Rows:
    """Compressed rows sorted so that the repeaters (x > 0) are the slice ``[k:]``."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    Z: np.ndarray
    w: np.ndarray
    W: float
    k: int


def _prepare_rows(x, t_x, T, Z, w) -> _Rows:
    order = np.argsort(x, kind="stable")
    x, t_x, T, Z, w = x[order], t_x[order], T[order], Z[order], w[order]
    k = int(np.searchsorted(x, 0.0, side="right"))
    return _Rows(x, t_x, T, np.ascontiguousarray(Z), w, float(w.sum()), k)


def _objective(phi: np.ndarray, d: _Rows, penalizer: float):
    """Weighted mean negative log-likelihood and its analytic gradient.

    Chain rule from the per-row gradient: d/d ln alpha0 = sum alpha_i dL/dalpha_i and
    d/d gamma_purchase = -sum alpha_i dL/dalpha_i z_i (alpha falls as gamma'z rises);
    likewise for a and b with a plus sign. The penalty ``penalizer * sum(gamma**2)`` acts on
    the coefficients only. Customers without repeat purchases (often half of them) only
    need ``r ln(alpha/(alpha+T))``: their beta and digamma terms cancel, and a and b do
    not enter, so the special functions run on the repeaters only.
    """
    k = d.k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r, alpha, a, b = _individual(phi, d.Z)
        al0, T0, w0 = alpha[:k], d.T[:k], d.w[:k]
        log_ratio0 = np.log(al0) - np.log(al0 + T0)
        ll_rep, d_r, d_alpha, d_a, d_b = _row_loglik(
            r, alpha[k:], a[k:], b[k:], d.x[k:], d.t_x[k:], d.T[k:], gradient=True
        )
        w1 = d.w[k:]
        total = r * float(w0 @ log_ratio0) + float(w1 @ ll_rep)
        g_alpha = np.concatenate([w0 * r * T0 / (al0 + T0), w1 * d_alpha * alpha[k:]])  # d ll / d ln alpha_i
        g_a = w1 * d_a * a[k:]
        g_b = w1 * d_b * b[k:]
        Z1 = d.Z[k:]
        grad = np.concatenate(
            [
                [r * (float(w0 @ log_ratio0) + float(w1 @ d_r)), g_alpha.sum(), g_a.sum(), g_b.sum()],
                -(d.Z.T @ g_alpha),
                Z1.T @ g_a,
                Z1.T @ g_b,
            ]
        )
    gammas = phi[4:]
    pen = penalizer * float(gammas @ gammas)
    pen_grad = np.concatenate([np.zeros(4), 2 * penalizer * gammas])
    if not np.isfinite(total) or not np.all(np.isfinite(grad)):
        return np.inf, np.zeros_like(phi)
    return -total / d.W + pen, -grad / d.W + pen_grad


# --------------------------------------------------------------------------- predictions


def _expectation_core(r, alpha, a, b, t, x, t_x, T):
    """E[X(T, T+t] | x, t_x, T] (FHL 2005 eq. 10) per row, Euler-transformed as in bgnbd.py:
    ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(c-r-x, a-1; c; z)."""
    c = a + b + x - 1
    log_1mz = np.log(alpha + T) - np.log(alpha + T + t)
    z = -np.expm1(log_1mz)
    tail = np.exp((a - 1) * log_1mz) * hyp2f1(c - r - x, a - 1, c, z)
    failed = ~np.isfinite(tail)
    if failed.any():  # the transformed series can alternate with huge terms: use the original
        tail = np.where(failed, np.exp((r + x) * log_1mz) * hyp2f1(r + x, b + x, c, z), tail)
    alive = _probability_alive((r, alpha, a, b), x, t_x, T, modified=False)
    return c / (a - 1) * (1 - tail) * alive


def _conditional_expectation(r, alpha, a, b, t, x, t_x, T) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = _expectation_core(r, alpha, a, b, t, x, t_x, T)
        near = np.abs(a - 1.0) < _NEAR_ONE
        if np.any(near):
            lo = _expectation_core(r, alpha, a - _A_STEP, b, t, x, t_x, T)
            hi = _expectation_core(r, alpha, a + _A_STEP, b, t, x, t_x, T)
            out = np.where(near, (lo + hi) / 2, out)
    return np.where(np.isfinite(out), out, np.nan)


# --------------------------------------------------------------------------- the estimator


class BetaGeoCovariates(_MLEModel):
    """BG/NBD with time-invariant customer covariates, fitted by maximum likelihood.

    Why BG/NBD and not Pareto/NBD: with individual ``(alpha_i, a_i, b_i)`` the BG/NBD
    likelihood stays elementary per row (gamma and beta functions, no 2F1), so its gradient
    is analytic and a fit on hundreds of thousands of rows takes seconds; Pareto/NBD needs
    a 2F1 per row whose parameters now differ per customer, with no exact cheap gradient.

    Links (Fader & Hardie 2007, note 019): ``alpha_i = alpha0 exp(-gamma_purchase' z_i)``,
    so a positive purchase coefficient means *more* purchases (the mean rate is
    ``r / alpha_i``); ``a_i = a0 exp(gamma_dropout_a' z_i)`` and
    ``b_i = b0 exp(gamma_dropout_b' z_i)``, so a positive ``dropout_a`` coefficient or a
    negative ``dropout_b`` one means a higher mean dropout probability ``a_i / (a_i + b_i)``.
    CLVTools' ``bgnbd`` ties the two dropout coefficients (``gamma_dropout_a = gamma_dropout_b``),
    which moves only the concentration ``a_i + b_i`` of the Beta and keeps its mean fixed;
    here they are free, so a covariate can shift the mean dropout.

    Every covariate enters all three links. Categorical columns (text, category, bool) are
    one-hot encoded with their first level (sorted, or the category order) as reference;
    numeric 0/1 columns are kept as dummies; other numeric columns are standardised with the
    mean and sd seen at fit, and predictions apply the same transform.

    Parameters
    ----------
    penalizer
        L2 penalty ``penalizer * sum(gamma**2)`` on the covariate coefficients, added to the
        mean negative log-likelihood (as CLVTools' ``reg.lambdas``); 0 gives the plain MLE.

    Attributes
    ----------
    params_ : dict
        Base parameters ``r``, ``alpha`` (alpha0, in the time unit of recency/T), ``a``, ``b``:
        those of a customer whose design row is all zeros (reference levels, mean numerics).
    standard_errors_ : dict
        Of the base parameters (delta method from log scale).
    coefficients_ : DataFrame
        One row per process and design column: ``process`` (purchase, dropout_a, dropout_b),
        ``covariate``, ``coef``, ``se``, ``z``, ``p_value`` (two-sided Wald).
    log_params_cov_ : ndarray
        Asymptotic covariance of ``[ln r, ln alpha0, ln a0, ln b0, gammas...]`` (inverse
        Hessian by central differences of the analytic gradient).
    log_likelihood_ : float
        Total log-likelihood at the optimum, constants included.
    covariate_names_ : tuple of str
        Design columns (``"channel=wechat"``, ``"first_order_value"``...).
    n_customers_, converged_, at_boundary_
        As for :class:`~userstrata.models.BetaGeo`.

    References
    ----------
    Fader, P. S. & Hardie, B. G. S. (2007). Incorporating time-invariant covariates into the
    Pareto/NBD and BG/NBD models. http://www.brucehardie.com/notes/019/
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting Your Customers" the Easy Way:
    An Alternative to the Pareto/NBD Model. Marketing Science, 24(2), 275-284.
    """

    _param_names = ("r", "alpha", "a", "b")
    coefficients_: pd.DataFrame | None = None

    def fit(self, frequency, recency, T, covariates, weights=None) -> "BetaGeoCovariates":
        """Fit by maximum likelihood; ``covariates`` has one row per customer (DataFrame or 2-D array).

        Customers with ``T = 0`` carry no information (likelihood 1 whatever the parameters)
        and are left out of the fit, as in :class:`~userstrata.models.BetaGeo`.
        """
        x, t_x, T_, w = check_btyd_arrays(frequency, recency, T, weights)
        design = _learn_design(covariates, len(x))
        return self._fit_design(x, t_x, T_, design.encode(covariates, len(x)), design, w)

    def _fit_design(self, x, t_x, T_, Z, design: _Design, w=None) -> "BetaGeoCovariates":
        penalizer = self._check_penalizer()
        n = len(x)
        keep = T_ > 0
        if w is not None:
            keep &= w > 0
        if not keep.any():
            raise InputError(
                "every customer has T = 0 (first purchase at the end of the period); "
                "expected at least one with T > 0 to fit on"
            )
        w_in = None if w is None else w[keep]
        cols, w_rows = compress_rows([x[keep], t_x[keep], T_[keep], *Z[keep].T], w_in)
        k = Z.shape[1]
        Z_rows = np.column_stack(cols[3:]) if k else np.zeros((len(cols[0]), 0))
        rows = _prepare_rows(cols[0], cols[1], cols[2], Z_rows, w_rows)
        names = list(self._param_names) + [f"{p}:{c}" for p in PROCESSES for c in design.names]
        time_scale = float(rows.w @ rows.T) / rows.W
        units = [1.0, time_scale, 1.0, 1.0] + [1.0] * (3 * k)
        result = maximize_loglik(
            lambda phi: _objective(phi, rows, penalizer),
            self._start(rows, k),
            names,
            total_weight=rows.W,
            model_name=type(self).__name__,
            box=search_box(units),
        )
        phi = result.log_params
        r, alpha, a, b = _individual(phi, rows.Z)
        ll = float(rows.w @ _row_loglik(r, alpha, a, b, rows.x, rows.t_x, rows.T))
        cov = result.log_params_cov
        se_phi = np.sqrt(np.diag(cov))
        base = np.exp(phi[:4])
        self.params_ = {n_: float(v) for n_, v in zip(self._param_names, base)}
        self.standard_errors_ = {n_: float(v) for n_, v in zip(self._param_names, base * se_phi[:4])}
        self.log_params_cov_ = cov
        self.log_likelihood_ = ll
        self.n_customers_ = n
        self.converged_ = result.converged
        self.at_boundary_ = result.at_boundary
        self.covariate_names_ = design.names
        self._design = design
        self._gammas = phi[4:].reshape(3, k).copy()
        coef, se = phi[4:], se_phi[4:]
        with np.errstate(divide="ignore", invalid="ignore"):
            zval = coef / se
        self.coefficients_ = pd.DataFrame(
            {
                "process": np.repeat(PROCESSES, k),
                "covariate": list(design.names) * 3,
                "coef": coef,
                "se": se,
                "z": zval,
                "p_value": 2 * stats.norm.sf(np.abs(zval)),
            }
        )
        return self

    def _start(self, rows: _Rows, k: int) -> np.ndarray:
        """The plain BG/NBD optimum with all coefficients 0: close to the answer, and cheap."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                plain = BetaGeo().fit(rows.x, rows.t_x, rows.T, weights=rows.w)
                base = np.log([plain.params_[p] for p in self._param_names])
            except Exception:  # a start value only; the fit itself reports real problems
                base = np.zeros(4)
        if not np.all(np.isfinite(base)):
            base = np.zeros(4)
        return np.concatenate([base, np.zeros(3 * k)])

    # ------------------------------------------------------------------ parameters per customer

    def _phi(self) -> np.ndarray:
        check_fitted(self)
        base = np.log([self.params_[p] for p in self._param_names])
        return np.concatenate([base, np.asarray(self._gammas, dtype=np.float64).ravel()])

    def _inputs(self, frequency, recency, T, covariates):
        check_fitted(self)
        x, t_x, T_, _ = check_btyd_arrays(frequency, recency, T)
        Z = self._design.encode(covariates, len(x))
        return x, t_x, T_, _individual(self._phi(), Z)

    def individual_params(self, covariates) -> pd.DataFrame:
        """Each customer's BG/NBD parameters ``r, alpha, a, b`` implied by their covariates."""
        check_fitted(self)
        n = len(_as_frame(covariates, len(covariates)))
        r, alpha, a, b = _individual(self._phi(), self._design.encode(covariates, n))
        return pd.DataFrame({"r": np.full(n, r), "alpha": alpha, "a": a, "b": b})

    # ------------------------------------------------------------------ predictions

    def log_likelihood(self, frequency, recency, T, covariates) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters (constants included)."""
        x, t_x, T_, (r, alpha, a, b) = self._inputs(frequency, recency, T, covariates)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _row_loglik(r, alpha, a, b, x, t_x, T_)

    def probability_alive(self, frequency, recency, T, covariates) -> np.ndarray:
        """Probability that each customer is still active at ``T``."""
        x, t_x, T_, theta = self._inputs(frequency, recency, T, covariates)
        return _probability_alive(theta, x, t_x, T_, modified=False)

    def expected_purchases(self, t, frequency, recency, T, covariates) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` given each customer's history and covariates."""
        x, t_x, T_, (r, alpha, a, b) = self._inputs(frequency, recency, T, covariates)
        t_arr = _broadcast_horizon(t, len(x))
        return _conditional_expectation(r, alpha, a, b, t_arr, x, t_x, T_)

    def expected_purchases_new(self, t, covariates) -> np.ndarray:
        """Expected repeat purchases in ``(0, t]`` of a newly acquired customer with these covariates."""
        check_fitted(self)
        frame = _as_frame(covariates, len(covariates))
        n = len(frame)
        r, alpha, a, b = _individual(self._phi(), self._design.encode(frame, n))
        t_arr = _broadcast_horizon(t, n)
        zero = np.zeros(n)
        return _conditional_expectation(r, alpha, a, b, t_arr, zero, zero, zero)

    # ------------------------------------------------------------------ report

    def summary(self) -> pd.DataFrame:
        """Base parameters and coefficients with standard errors, Wald z, p-value and 95% intervals.

        Base parameters (process ``base``) have intervals ``exp(ln coef -/+ 1.96 se_log)``
        and no z (they are positive by construction); coefficients have ``coef -/+ 1.96 se``.
        """
        check_fitted(self)
        base = np.array([self.params_[p] for p in self._param_names])
        k = len(self.covariate_names_)
        cov = self.log_params_cov_
        se_log = np.full(4, np.nan) if cov is None else np.sqrt(np.diag(cov))[:4]
        base_rows = pd.DataFrame(
            {
                "process": "base",
                "term": list(self._param_names),
                "coef": base,
                "se": base * se_log,
                "z": np.nan,
                "p_value": np.nan,
                "lower_95": base * np.exp(-_Z95 * se_log),
                "upper_95": base * np.exp(_Z95 * se_log),
            }
        )
        c = self.coefficients_
        coef_rows = pd.DataFrame(
            {
                "process": c["process"],
                "term": c["covariate"],
                "coef": c["coef"],
                "se": c["se"],
                "z": c["z"],
                "p_value": c["p_value"],
                "lower_95": c["coef"] - _Z95 * c["se"],
                "upper_95": c["coef"] + _Z95 * c["se"],
            }
        )
        out = pd.concat([base_rows, coef_rows], ignore_index=True) if k else base_rows
        return out.set_index(["process", "term"])


def _broadcast_horizon(t, n: int) -> np.ndarray:
    t_arr = check_horizon("t", t)
    if len(t_arr) == 1:
        return np.full(n, t_arr[0])
    if len(t_arr) != n:
        raise InputError(f"t has {len(t_arr)} values but there are {n} customers; expected 1 or {n}")
    return t_arr


# --------------------------------------------------------------------------- simulation


def simulate_bgnbd_covariates(Z, params: dict, coefficients: dict, T, random_state=None):
    """Simulate ``(frequency, recency, T)`` from BG/NBD with per-customer parameters.

    ``Z`` is the design matrix (customers x design columns, already encoded),
    ``params`` the base ``r, alpha, a, b`` and ``coefficients`` maps ``purchase``,
    ``dropout_a``, ``dropout_b`` to one coefficient per column (missing: zeros). Per
    customer ``lambda ~ Gamma(r, scale=1/alpha_i)``, ``p ~ Beta(a_i, b_i)``; as
    :func:`~userstrata.models.btyd.simulate_bgnbd` otherwise: ``x = min(K, N)`` with
    ``K ~ Poisson(lambda T)``, ``N ~ Geometric(p)``, and the x-th of K uniform arrival
    times ``T * Beta(x, K - x + 1)``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    n, k = Z.shape
    gam = np.array([np.asarray(coefficients.get(p, np.zeros(k)), dtype=np.float64) for p in PROCESSES])
    phi = np.concatenate([np.log([params[p] for p in ("r", "alpha", "a", "b")]), gam.ravel()])
    r, alpha, a, b = _individual(phi, Z)
    rng = np.random.default_rng(random_state)
    T_all = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha)
    p = np.clip(rng.beta(a, b), 1e-12, 1.0)
    K = rng.poisson(lam * T_all)
    N = rng.geometric(p)
    x = np.minimum(K, N)
    t_x = np.zeros(n)
    pos = x > 0
    t_x[pos] = T_all[pos] * rng.beta(x[pos], K[pos] - x[pos] + 1)
    return x.astype(np.float64), t_x, T_all


# --------------------------------------------------------------------------- selection on held-out customers

_REASONS = {
    "kept": {
        "zh": "{names} 让留出集对数似然提高 {gain:.1f}（纯噪声时约 ±{noise:.1f}），保留协变量",
        "en": "covariates kept ({names}): held-out log-likelihood +{gain:.1f} (noise level ±{noise:.1f})",
    },
    "none": {
        "zh": "协变量未让留出集对数似然明显提高（{gain:+.1f}，纯噪声时约 ±{noise:.1f}），不使用协变量",
        "en": "covariates dropped: held-out log-likelihood {gain:+.1f} (noise level ±{noise:.1f}), "
        "not a clear improvement",
    },
    "dropped": {"zh": "；剔除 {names}", "en": "; dropped {names}"},
}
_SEP = {"zh": "、", "en": ", "}


@dataclass(frozen=True)
class CovariateSelection:
    """Outcome of :func:`select_covariates`.

    ``model`` is refitted on all customers: a :class:`BetaGeoCovariates` on the ``kept``
    columns, or a plain :class:`~userstrata.models.BetaGeo` when none is kept.
    ``holdout_ll_plain`` and ``holdout_ll_covariates`` are log-likelihoods summed over the
    held-out customers, each model fitted on the others (the covariate model is the kept
    one, or the one with every column when none is kept); ``holdout_gain`` is their
    difference and ``noise_sd`` the standard deviation that gain would have if its
    coefficients were pure noise. ``coefficients`` is the kept model's table (empty if none).
    """

    model: object
    kept: tuple[str, ...]
    dropped: tuple[str, ...]
    holdout_ll_plain: float
    holdout_ll_covariates: float
    holdout_gain: float
    noise_sd: float
    coefficients: pd.DataFrame = field(repr=False)
    reason_zh: str
    reason_en: str

    def reason(self, lang: str = "zh") -> str:
        """The decision in one line, in ``lang`` ("zh" or "en")."""
        if lang not in ("zh", "en"):
            raise InputError(f"lang = {lang!r}; expected 'zh' or 'en'")
        return self.reason_zh if lang == "zh" else self.reason_en


def _noise_sd(n_coefs: int, n_hold: int, n_fit: int) -> float:
    """Standard deviation of the held-out log-likelihood gain of ``n_coefs`` coefficients that are
    pure noise: sqrt(n_coefs n_hold / n_fit).

    The fitted noise coefficients are off by delta ~ N(0, I^-1 / n_fit); on held-out customers
    the gain is s'delta - n_hold delta' I delta / 2 with the held-out score s ~ N(0, n_hold I),
    whose variance is n_coefs n_hold / n_fit to first order (mean -n_coefs n_hold / (2 n_fit)).
    A real effect's gain grows in proportion to n_hold, so a fixed multiple of this bar keeps
    noise out at any size while real effects clear it more easily the more customers there are.
    """
    return float(np.sqrt(n_coefs * n_hold / n_fit))


def select_covariates(
    summary: pd.DataFrame,
    covariates,
    *,
    holdout_share: float = 0.3,
    random_state=0,
    min_z: float = 2.0,
) -> CovariateSelection:
    """Keep the covariates that raise the held-out log-likelihood of BG/NBD; drop the others.

    Customers are split at random (``holdout_share`` held out, seeded by ``random_state``):
    a customer split, so each held-out customer's calibration history is scored by models
    fitted on the other customers. Backward elimination over the input columns: starting from
    all of them, a column's held-out gain is the held-out log-likelihood of the current model
    minus that of the same model without the column (its one-hot columns in all three
    processes); the column with the weakest gain is dropped while that gain is below
    ``min_z`` times :func:`_noise_sd` for its coefficients. A bare "gain > 0" would keep
    pure noise about one time in five (with six noise coefficients and 30% held out); two
    noise standard deviations make that rare. The kept columns are refitted on all customers.

    Parameters
    ----------
    summary
        One row per customer with ``frequency``, ``recency`` and ``T``
        (:func:`~userstrata.features.btyd_summary`).
    covariates
        One row per customer: a DataFrame indexed like ``summary`` (reordered to match), or
        rows in the same order (DataFrame or 2-D array). Money is best passed on a log scale.
    holdout_share
        Share of customers held out, in (0, 1).
    random_state
        Seed of the split.
    min_z
        Held-out gain, in noise standard deviations, a column must bring to be kept.
    """
    missing = [c for c in ("frequency", "recency", "T") if c not in getattr(summary, "columns", ())]
    if missing:
        raise InputError(
            f"summary lacks column(s) {missing}; expected frequency, recency and T",
            hint="build it with userstrata.features.btyd_summary",
        )
    if not (isinstance(holdout_share, (int, float)) and 0 < holdout_share < 1):
        raise InputError(f"holdout_share = {holdout_share!r}; expected a number in (0, 1), e.g. 0.3")
    if not (isinstance(min_z, (int, float)) and np.isfinite(min_z) and min_z >= 0):
        raise InputError(f"min_z = {min_z!r}; expected a finite number >= 0, e.g. 2.0")
    if isinstance(covariates, (pd.DataFrame, pd.Series)) and not covariates.index.equals(summary.index):
        if len(covariates.index) == len(summary.index) and set(covariates.index) == set(summary.index):
            covariates = covariates.reindex(summary.index)
        else:
            raise InputError(
                "covariates index does not match summary index; expected one covariate row per customer",
                hint="index both by user_id, or pass rows in the same order as a numpy array",
            )
    x, t_x, T_, _ = check_btyd_arrays(summary["frequency"], summary["recency"], summary["T"])
    n = len(x)
    # levels and standardisation from all customers (no outcome is used), so a rare level
    # that falls wholly into the held-out part still encodes
    design = _learn_design(covariates, n)
    Z_all = design.encode(covariates, n)
    n_hold = int(round(n * holdout_share))
    if n_hold < 2 or n - n_hold < 20:
        raise InputError(
            f"{n} customers with holdout_share = {holdout_share}: {n - n_hold} to fit on and {n_hold} "
            "held out; expected at least 20 and 2",
            hint="use more customers or a holdout_share nearer 0.3",
        )
    order = np.random.default_rng(random_state).permutation(n)
    hold, train = order[:n_hold], order[n_hold:]
    n_fit = n - n_hold

    def columns_of(raw):
        sub = design.subset(raw)
        return sub, [design.names.index(c) for c in sub.names]

    def held_out_loglik(raw) -> np.ndarray:
        with warnings.catch_warnings():  # a candidate that fits badly simply scores badly
            warnings.simplefilter("ignore", RuntimeWarning)
            if not raw:
                plain = BetaGeo().fit(x[train], t_x[train], T_[train])
                return plain.log_likelihood(x[hold], t_x[hold], T_[hold])
            sub, idx = columns_of(raw)
            Z = Z_all[:, idx]
            m = BetaGeoCovariates()._fit_design(x[train], t_x[train], T_[train], Z[train], sub)
        r, alpha, a, b = _individual(m._phi(), Z[hold])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _row_loglik(r, alpha, a, b, x[hold], t_x[hold], T_[hold])

    n_coefs = {c.name: 3 * len(c.encoded) for c in design.columns}
    ll_plain = held_out_loglik(())
    current = design.raw_names
    ll_full = ll_current = held_out_loglik(current)
    dropped: list[str] = []
    while current:
        trials = {}
        for col in current:
            rest = tuple(c for c in current if c != col)
            ll_rest = ll_plain if not rest else held_out_loglik(rest)
            gain = float((ll_current - ll_rest).sum())
            trials[col] = (gain / _noise_sd(n_coefs[col], n_hold, n_fit), ll_rest)
        weakest = min(current, key=lambda c: trials[c][0])
        if trials[weakest][0] >= min_z:
            break
        dropped.append(weakest)
        current = tuple(c for c in current if c != weakest)
        ll_current = trials[weakest][1]
    kept = tuple(current)
    ll_cov = ll_current if kept else ll_full
    gain = float((ll_cov - ll_plain).sum())
    noise = _noise_sd(sum(n_coefs[c] for c in (kept or design.raw_names)), n_hold, n_fit)
    if kept:
        sub, idx = columns_of(kept)
        model = BetaGeoCovariates()._fit_design(x, t_x, T_, Z_all[:, idx], sub)
        coefficients = model.coefficients_
        reasons = {
            lang: _REASONS["kept"][lang].format(names=_SEP[lang].join(kept), gain=gain, noise=noise)
            + (_REASONS["dropped"][lang].format(names=_SEP[lang].join(dropped)) if dropped else "")
            for lang in ("zh", "en")
        }
    else:
        model = BetaGeo().fit(x, t_x, T_)
        coefficients = pd.DataFrame(columns=["process", "covariate", "coef", "se", "z", "p_value"])
        reasons = {lang: _REASONS["none"][lang].format(gain=gain, noise=noise) for lang in ("zh", "en")}
    return CovariateSelection(
        model=model,
        kept=kept,
        dropped=tuple(dropped),
        holdout_ll_plain=float(ll_plain.sum()),
        holdout_ll_covariates=float(ll_cov.sum()),
        holdout_gain=gain,
        noise_sd=noise,
        coefficients=coefficients,
        reason_zh=reasons["zh"],
        reason_en=reasons["en"],
    )
