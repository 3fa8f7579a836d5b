"""Shared machinery for the BTYD models: input checks, row compression, maximum likelihood.

Every model here is fitted the same way: validate the per-customer arrays once
(:func:`check_btyd_arrays`), collapse identical rows into weights
(:func:`compress_rows`), then maximise the weighted log-likelihood in
log-parameter space with an analytic gradient (:func:`maximize_loglik`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from userstrata.errors import InputError, NotFittedError

__all__ = [
    "MLEResult",
    "PurchaseModel",
    "check_btyd_arrays",
    "check_fitted",
    "check_horizon",
    "compress_rows",
    "maximize_loglik",
    "search_box",
]

# recency may exceed T by float noise when both come from date arithmetic
_RECENCY_RTOL = 1e-9
_RECENCY_ATOL = 1e-12


# --------------------------------------------------------------------------- input checks


def _to_float_array(name: str, values) -> np.ndarray:
    """``values`` as a 1-D float64 array (no copy when already one); InputError otherwise."""
    if isinstance(values, (pd.Series, pd.Index)):
        if not (pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)):
            raise InputError(f"{name} must be numeric; got dtype {values.dtype}")
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = np.asarray(values)
        if arr.dtype.kind not in "biuf":
            raise InputError(
                f"{name} must be numeric; got dtype {arr.dtype}",
                hint="pass numbers (int or float), e.g. a pandas column converted with pd.to_numeric",
            )
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional; got shape {arr.shape}")
    return arr


def _first_bad(name: str, arr: np.ndarray, bad: np.ndarray, expected: str) -> None:
    """Raise InputError naming the first index where ``bad`` holds, its value and what was expected."""
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{name}[{i}] = {float(arr[i])!r}; expected {expected}")


def _check_finite(name: str, arr: np.ndarray) -> None:
    _first_bad(name, arr, ~np.isfinite(arr), "a finite number")


def _check_frequency(arr: np.ndarray, name: str = "frequency") -> None:
    _check_finite(name, arr)
    _first_bad(name, arr, arr < 0, "a count of repeat purchases >= 0")
    _first_bad(name, arr, np.floor(arr) != arr, "a whole number of repeat purchases (0, 1, 2, ...)")


def _check_weights(weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = _to_float_array("weights", weights)
    if len(w) != n:
        raise InputError(f"weights has length {len(w)} but there are {n} customers; expected equal lengths")
    _check_finite("weights", w)
    _first_bad("weights", w, w < 0, "a weight >= 0")
    if not w.sum() > 0:
        raise InputError("weights sum to 0; expected at least one customer with a positive weight")
    return w


def check_btyd_arrays(frequency, recency, T, weights=None):
    """Validate per-customer BTYD inputs and return them as float64 arrays.

    Parameters
    ----------
    frequency
        Repeat purchases per customer (whole numbers >= 0).
    recency
        Time of the last repeat purchase, measured from the first purchase (0 when
        ``frequency`` is 0).
    T
        Time from the first purchase to the end of the observation period (>= 0; 0 for a
        customer whose first purchase falls at the end of it, who then has frequency 0).
    weights
        Optional non-negative weight per customer (e.g. how many customers a row stands for).

    Returns
    -------
    tuple
        ``(x, t_x, T, w)``; ``w`` is None when no weights were given. ``t_x`` is clipped
        to ``T`` where it exceeded it by float noise only.

    Raises
    ------
    InputError
        Naming the argument, the first offending index and value, and what was expected.
    """
    x = _to_float_array("frequency", frequency)
    t_x = _to_float_array("recency", recency)
    T_ = _to_float_array("T", T)
    if not (len(x) == len(t_x) == len(T_)):
        raise InputError(
            f"frequency, recency and T must have the same length; got {len(x)}, {len(t_x)} and {len(T_)}"
        )
    if len(x) == 0:
        raise InputError("no customers: frequency, recency and T are empty")
    _check_frequency(x)
    _check_finite("recency", t_x)
    _check_finite("T", T_)
    _first_bad("T", T_, T_ < 0, "an observation period T >= 0")
    _first_bad("recency", t_x, t_x < 0, "a recency >= 0 (time of the last repeat purchase)")
    over = t_x > T_ * (1 + _RECENCY_RTOL) + _RECENCY_ATOL
    if over.any():
        i = int(np.argmax(over))
        raise InputError(
            f"recency[{i}] = {float(t_x[i])!r} is greater than T[{i}] = {float(T_[i])!r}; "
            "expected recency <= T (the last purchase lies inside the observation period)"
        )
    _first_bad(
        "recency", t_x, (x == 0) & (t_x != 0), "recency 0 for a customer with frequency 0 (no repeat purchases)"
    )
    _first_bad(
        "frequency", x, (T_ == 0) & (x > 0), "0 for a customer with T = 0 (no time yet for a repeat purchase)"
    )
    if (t_x > T_).any():  # only float noise is left (checked above): clip so formulas see t_x <= T
        t_x = np.minimum(t_x, T_)
    return x, t_x, T_, _check_weights(weights, len(x))


def check_horizon(name: str, t) -> np.ndarray:
    """A prediction horizon ``t`` (scalar or array) as float64, finite and >= 0."""
    arr = _to_float_array(name, np.atleast_1d(t) if np.isscalar(t) else t)
    _check_finite(name, arr)
    _first_bad(name, arr, arr < 0, f"{name} >= 0")
    return arr


def check_fitted(model, attribute: str = "params_") -> None:
    """Raise NotFittedError unless ``model`` has the learned ``attribute``."""
    if getattr(model, attribute, None) is None:
        name = type(model).__name__
        raise NotFittedError(f"{name} is not fitted yet; call fit() first", hint=f"{name}().fit(...)")


# --------------------------------------------------------------------------- compression


def _codes(col: np.ndarray):
    """Dense integer codes for ``col``, the number of codes, and a decoder code -> value."""
    lo, hi = float(col.min()), float(col.max())
    # Day- or count-valued columns (the common case) need no sort or hash: code = value - min.
    if hi - lo < max(2 * len(col), 1 << 16) and np.array_equal(np.floor(col), col):
        codes = col.astype(np.int64)
        codes -= int(lo)  # in place: one array of this size per column is enough
        return codes, int(hi - lo) + 1, lambda code: code + lo
    codes, levels = pd.factorize(col + 0.0, sort=False)  # + 0.0 folds -0.0 into 0.0
    levels = np.asarray(levels, dtype=np.float64)
    return codes.astype(np.int64, copy=False), len(levels), lambda code: levels[code]


def compress_rows(
    columns: Sequence[np.ndarray], weights: np.ndarray | None = None, *, return_inverse: bool = False
):
    """Collapse identical rows of ``columns`` into unique rows with summed weights.

    Same result as ``np.unique(np.column_stack(columns), axis=0, return_inverse=True)``
    followed by a weighted ``np.bincount`` of the inverse, but rows are matched through an
    exact mixed-radix integer key instead: on 10M rows ``np.unique(axis=0)`` takes ~25 s
    (it sorts a void view of the rows), the key takes ~0.1 s for day-valued inputs.

    Returns
    -------
    tuple
        ``(unique_columns, row_weights)``: a list of float64 arrays (one per input column,
        rows in no particular order) and the summed weight (the count when ``weights`` is
        None) of each unique row. Rows whose total weight is 0 are dropped. With
        ``return_inverse`` (weights must be None) a third item maps each input row to its
        unique row, so ``unique_columns[j][inverse]`` rebuilds column ``j``.
    """
    if return_inverse and weights is not None:
        raise ValueError("return_inverse needs weights=None (zero-weight rows would be dropped)")
    n = len(columns[0])
    parts = [_codes(col) for col in columns]
    radix = [r for _, r, _ in parts]
    if float(np.prod([float(r) for r in radix])) >= 2.0**62:
        # a key would overflow int64: fall back to the plain (slow, but exact) row sort
        uniq, inverse = np.unique(np.column_stack([c for c, _, _ in parts]), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        sums = np.bincount(inverse, weights=weights, minlength=len(uniq))
        keep = sums > 0
        cols = [np.asarray(dec(uniq[keep, j]), dtype=np.float64) for j, (_, _, dec) in enumerate(parts)]
        return (cols, sums[keep].astype(np.float64)) + ((inverse,) if return_inverse else ())
    key = parts[0][0]  # our own array (made by _codes): safe to update in place
    for j, (c, r, _) in enumerate(parts[1:], start=1):
        key *= r  # mixed radix, in place: one key per distinct row
        key += c
        parts[j] = (None, r, parts[j][2])  # free the column's codes early
    parts[0] = (None, parts[0][1], parts[0][2])
    span = int(key.max()) + 1
    inverse = None
    if span <= 2 * n + (1 << 20):  # dense keys: counting beats sorting or hashing
        sums = np.bincount(key, weights=weights, minlength=span)
        ukeys = np.flatnonzero(sums > 0)
        sums = sums[ukeys]
        if return_inverse:
            inverse = np.searchsorted(ukeys, key)
    else:
        inverse, ukeys = pd.factorize(key, sort=False)
        sums = np.bincount(inverse, weights=weights, minlength=len(ukeys))
        keep = sums > 0
        ukeys, sums = np.asarray(ukeys)[keep], sums[keep]
    del key
    out = []
    for (_, r, dec) in reversed(parts):
        ukeys, digit = np.divmod(ukeys, r)
        out.append(np.asarray(dec(digit), dtype=np.float64))
    result = (out[::-1], np.asarray(sums, dtype=np.float64))
    return result + (np.asarray(inverse),) if return_inverse else result


# --------------------------------------------------------------------------- maximum likelihood


# The search box of the fit, in log-parameter space: a shape parameter (r, a, b, s, p, q), or
# a scale parameter (alpha, beta, v) divided by the data's own scale (mean T, mean spend),
# stays in [1 / SEARCH_LIMIT, SEARCH_LIMIT]. Beyond it a shape parameter only says
# "every customer alike", which 1e6 says already, and the likelihood loses digits
# (gammaln(1e6) = 1.3e7, so its rounding error is ~3e-9, about the size of the slopes left).
SEARCH_LIMIT = 1e6
# A first, unbounded optimum is kept only if it lies well inside the box (by this factor).
_INNER_MARGIN = 100.0


@dataclass(frozen=True)
class MLEResult:
    """Outcome of :func:`maximize_loglik`."""

    params: dict[str, float]
    log_params: np.ndarray
    standard_errors: dict[str, float]
    log_params_cov: np.ndarray  # inverse Hessian of the total objective in log-parameter space
    converged: bool
    message: str
    n_evaluations: int
    at_boundary: tuple[str, ...] = ()  # parameters stopped at the search box


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def search_box(units: Sequence[float]) -> np.ndarray:
    """The ``(k, 2)`` log-space box for parameters with the given scales (1 for a shape parameter)."""
    centre = np.log(np.asarray(units, dtype=np.float64))
    half = np.log(SEARCH_LIMIT)
    return np.column_stack([centre - half, centre + half])


def _hessian(objective: Objective, phi: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Hessian by central differences of the analytic gradient (symmetrised)."""
    k = len(phi)
    H = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = step
        H[:, j] = (objective(phi + e)[1] - objective(phi - e)[1]) / (2 * step)
    return (H + H.T) / 2


def _newton_polish(objective, phi, f, H, steps, box=None):
    """Newton steps with the finite-difference Hessian; with ``box``, on the free parameters only
    (those not held at a bound by a gradient pointing out of the box), clipped into the box."""
    for _ in range(steps):
        g = objective(phi)[1]
        free = np.ones(len(phi), dtype=bool) if box is None else ~_held(phi, g, box)
        if not free.any() or np.max(np.abs(g[free])) < 1e-11:
            break
        step = np.zeros_like(phi)
        try:
            step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        cand = phi - step
        if box is not None:
            cand = np.clip(cand, box[:, 0], box[:, 1])
        f_cand = objective(cand)[0]
        if not (np.isfinite(f_cand) and f_cand <= f + 1e-14 * abs(f)):
            break
        phi, f = cand, f_cand
        if np.max(np.abs(step)) < 1e-4:
            break  # H is still accurate at the polished point (relative change ~ the step)
        H = _hessian(objective, phi)
    return phi, f, H


def _held(phi, g, box) -> np.ndarray:
    """Parameters on a bound of ``box`` whose descent direction (-g) points out of it."""
    return ((phi <= box[:, 0]) & (g > 0)) | ((phi >= box[:, 1]) & (g < 0))


def _inverse_hessian(H_total):
    """The inverse of a positive definite Hessian; None when it is not (a flat or saddle direction),
    so that no one samples from a "covariance" with negative variances."""
    if not np.all(np.isfinite(H_total)):
        return None
    try:
        np.linalg.cholesky(H_total)  # raises unless positive definite
        cov = np.linalg.inv(H_total)
    except np.linalg.LinAlgError:
        return None
    if np.any(np.diag(cov) <= 0) or not np.all(np.isfinite(cov)):
        return None
    return cov


def maximize_loglik(
    objective: Objective,
    x0: np.ndarray,
    names: Sequence[str],
    *,
    total_weight: float,
    model_name: str,
    newton_steps: int = 2,
    box: np.ndarray | None = None,
) -> MLEResult:
    """Minimise a mean negative log-likelihood in log-parameter space.

    ``objective(phi)`` returns the weighted *mean* negative log-likelihood (plus any
    penalty) and its gradient with respect to ``phi = log(params)``. Working with the mean
    keeps tolerances independent of the number of customers (as lifetimes does).
    BFGS gets close; Newton steps with the finite-difference Hessian of the analytic
    gradient then polish the optimum to near machine precision, and that Hessian (times
    ``total_weight``) gives the asymptotic covariance of ``phi``.

    That optimum is kept when it converged, its Hessian is positive definite and it lies
    well inside ``box`` (a ``(k, 2)`` array of log bounds, default ``search_box([1] * k)``,
    see ``SEARCH_LIMIT``). Otherwise (typically a likelihood that keeps rising along a ridge
    towards infinite parameters, where an unbounded search stops wherever rounding makes it
    stop, which differs between BLAS builds) the fit is redone from the same start by
    L-BFGS-B inside ``box`` and polished on the parameters not held at a bound. Parameters
    that end on a bound are named in ``at_boundary``; their standard errors are NaN.

    Standard errors of the natural parameters follow by the delta method,
    ``se(theta) = theta * se(phi)`` (exact at a stationary point).
    """
    x0 = np.asarray(x0, dtype=np.float64)
    k = len(x0)
    box = search_box([1.0] * k) if box is None else np.asarray(box, dtype=np.float64)
    n_eval = [0]

    def counted(phi):
        n_eval[0] += 1
        if np.max(np.abs(phi)) > 50:  # parameters beyond e^50: let the line search back off
            return np.inf, np.zeros_like(phi)
        f, g = objective(phi)
        if not np.isfinite(f):
            return np.inf, np.zeros_like(phi)
        return f, g

    # BFGS rather than L-BFGS-B: with 3-4 parameters its dense update is cheaper per step
    # (scipy's L-BFGS-B costs ~0.5 ms per iteration in setulb), and log space needs no bounds.
    res = optimize.minimize(counted, x0, jac=True, method="BFGS", options={"maxiter": 1000, "gtol": 1e-6})
    phi, f, H = _newton_polish(counted, res.x, res.fun, _hessian(counted, res.x), newton_steps)
    grad = counted(phi)[1]
    converged = bool(np.all(np.isfinite(phi)) and np.max(np.abs(grad)) < 1e-5)
    cov = _inverse_hessian(H * total_weight)
    margin = np.log(_INNER_MARGIN)
    inside = bool(np.all(phi > box[:, 0] + margin) and np.all(phi < box[:, 1] - margin))
    message, at_boundary = str(res.message), ()
    if not (converged and cov is not None and inside):
        start = np.clip(x0, box[:, 0], box[:, 1])
        res = optimize.minimize(
            counted, start, jac=True, method="L-BFGS-B", bounds=list(map(tuple, box)),
            # run on to the bound: along a ridge the slopes left are tiny but their sign is not
            options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-12},
        )
        phi = np.clip(res.x, box[:, 0], box[:, 1])
        phi, f, H = _newton_polish(counted, phi, counted(phi)[0], _hessian(counted, phi), 8, box)
        grad = counted(phi)[1]
        held = _held(phi, grad, box)
        converged = bool(np.all(np.isfinite(phi)) and np.max(np.abs(np.where(held, 0.0, grad))) < 1e-5)
        at_boundary = tuple(n for n, lo, hi, p in zip(names, box[:, 0], box[:, 1], phi) if p <= lo or p >= hi)
        cov = None if at_boundary else _inverse_hessian(H * total_weight)
        message = f"bounded search: {res.message}"
    theta = np.exp(phi)
    if not converged:
        warnings.warn(
            f"{model_name} fit did not converge (max |gradient| {np.max(np.abs(grad)):.2e}; {message}); "
            "the data may not pin down the parameters (few customers, little variation): "
            "more customers or a longer history help",
            RuntimeWarning,
            stacklevel=3,
        )
    if at_boundary:
        where = ", ".join(f"{n} = {theta[names.index(n)]:.4g}" for n in at_boundary)
        warnings.warn(
            f"{model_name}: the fit stopped at the edge of the parameter search box ({where}): the "
            "likelihood keeps rising beyond it, so the data do not pin these down (few customers, or "
            "customers too much alike); predictions use these values and standard errors are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    elif cov is None:
        warnings.warn(
            f"{model_name}: Hessian at the optimum is singular or not positive definite; "
            "standard errors are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    if cov is None:
        cov = np.full((k, k), np.nan)
    se_phi = np.sqrt(np.diag(cov))
    return MLEResult(
        params={n: float(v) for n, v in zip(names, theta)},
        log_params=phi,
        standard_errors={n: float(v) for n, v in zip(names, theta * se_phi)},
        log_params_cov=cov,
        converged=converged,
        message=message,
        n_evaluations=n_eval[0],
        at_boundary=at_boundary,
    )


def penalty(theta: np.ndarray, penalizer: float) -> tuple[float, np.ndarray]:
    """``penalizer * sum(theta**2)`` (lifetimes' L2 penalty) and its gradient in log space."""
    if penalizer == 0:
        return 0.0, np.zeros_like(theta)
    return penalizer * float(theta @ theta), 2 * penalizer * theta * theta


# --------------------------------------------------------------------------- estimator base


class _MLEModel:
    """Common learned state and ``summary()`` of the maximum-likelihood models."""

    _param_names: tuple[str, ...] = ()
    # parameters measured in the data's units (time, money): their search box follows the data
    _scale_params: tuple[str, ...] = ()

    params_: dict[str, float] | None = None
    standard_errors_: dict[str, float] | None = None
    log_params_cov_: np.ndarray | None = None
    at_boundary_: tuple[str, ...] = ()  # parameters set by hand are not at any boundary

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    def _check_penalizer(self) -> float:
        p = self.penalizer
        if not (isinstance(p, (int, float, np.floating, np.integer)) and np.isfinite(p) and p >= 0):
            raise InputError(f"penalizer = {p!r}; expected a finite number >= 0")
        return float(p)

    def _store(self, result: MLEResult, log_likelihood: float, n_customers: int) -> None:
        self.params_ = result.params
        self.standard_errors_ = result.standard_errors
        self.log_params_cov_ = result.log_params_cov
        self.log_likelihood_ = float(log_likelihood)
        self.n_customers_ = int(n_customers)
        self.converged_ = result.converged
        self.at_boundary_ = result.at_boundary

    def _params_array(self) -> np.ndarray:
        check_fitted(self)
        return np.array([self.params_[k] for k in self._param_names])

    def summary(self) -> pd.DataFrame:
        """Estimates with standard errors and 95% intervals, one row per parameter.

        ``lower_95``/``upper_95`` are ``exp(log(coef) -/+ 1.96 se_log)``: the Wald interval
        on the log scale the model is fitted on, so they stay positive.
        """
        check_fitted(self)
        coef = self._params_array()
        if self.log_params_cov_ is None:  # parameters set by hand: no uncertainty known
            se = se_log = np.full(len(coef), np.nan)
        else:
            se = np.array([self.standard_errors_[k] for k in self._param_names])
            se_log = np.sqrt(np.diag(self.log_params_cov_))
        return pd.DataFrame(
            {
                "coef": coef,
                "se": se,
                "lower_95": coef * np.exp(-1.959963984540054 * se_log),
                "upper_95": coef * np.exp(1.959963984540054 * se_log),
            },
            index=pd.Index(self._param_names, name="param"),
        )

    def __repr__(self) -> str:
        fitted = "" if self.params_ is None else ", " + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}(penalizer={self.penalizer!r}{fitted})"


class PurchaseModel(_MLEModel):
    """Base of the purchase (transaction-count) models: BG/NBD, MBG/NBD, Pareto/NBD.

    Subclasses provide ``_param_names``, ``_prepare`` (precompute per-row data),
    ``_objective`` (mean negative log-likelihood and gradient in log space),
    ``_loglik`` (per-row log-likelihood for given parameters) and the prediction
    formulas ``_expected_purchases_at`` / ``_expected_purchases_new_at`` /
    ``_probability_alive_at`` taking a parameter array, so :func:`~userstrata.models.clv`
    can re-evaluate them at sampled parameters.
    """

    def fit(self, frequency, recency, T, weights=None):
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency, recency, T
            Per-customer repeat purchases, time of the last repeat purchase and length
            of the observation period (recency and T in the same time unit).
        weights
            Optional non-negative weight per row (e.g. the number of customers it stands for).

        Customers with ``T = 0`` (first purchase at the end of the observation period) are
        accepted and left out of the fit: their history ``(0, 0, 0)`` has likelihood 1 under
        every model here, whatever the parameters (BG/NBD: ``alpha^r / alpha^r``; MBG/NBD:
        ``b/(a+b) + a/(a+b)``; Pareto/NBD: ``E = alpha^-r beta^-s`` and no death interval),
        so they carry no information about the parameters.

        Returns
        -------
        self
        """
        penalizer = self._check_penalizer()
        x, t_x, T_, w = check_btyd_arrays(frequency, recency, T, weights)
        n = len(x)
        informative = T_ > 0
        if not informative.all():
            x, t_x, T_ = x[informative], t_x[informative], T_[informative]
            w = None if w is None else w[informative]
            if len(x) == 0 or (w is not None and not w.sum() > 0):
                raise InputError(
                    "every customer has T = 0 (first purchase at the end of the period); "
                    "expected at least one with T > 0 to fit on"
                )
        (x, t_x, T_), w = compress_rows([x, t_x, T_], w)
        data = self._prepare(x, t_x, T_, w)
        total = float(w.sum())
        time_scale = float(np.einsum("i,i->", w, T_)) / total  # mean T: the unit of alpha (and beta)
        result = maximize_loglik(
            lambda phi: self._objective(phi, data, penalizer),
            self._start(data),
            self._param_names,
            total_weight=total,
            model_name=type(self).__name__,
            box=search_box([time_scale if k in self._scale_params else 1.0 for k in self._param_names]),
        )
        theta = np.exp(result.log_params)
        ll = float(w @ self._loglik(theta, x, t_x, T_))
        self._store(result, ll, n)
        return self

    def _start(self, data) -> np.ndarray:
        return np.zeros(len(self._param_names))  # all parameters 1, as lifetimes and CLVTools do

    # ------------------------------------------------------------------ predictions

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` given each customer's history.

        For ``(0, 0, 0)`` (a customer whose first purchase is now) this is
        :meth:`expected_purchases_new` ``(t)``: nothing has been observed beyond the first purchase.
        """
        theta = self._params_array()
        x, t_x, T_, _ = check_btyd_arrays(frequency, recency, T)
        t = check_horizon("t", t)
        return self._expected_purchases_at(theta, t, x, t_x, T_)

    def expected_purchases_new(self, t) -> np.ndarray:
        """Expected repeat purchases in ``(0, t]`` of a newly acquired customer."""
        theta = self._params_array()
        return self._expected_purchases_new_at(theta, check_horizon("t", t))

    def probability_alive(self, frequency, recency, T) -> np.ndarray:
        """Probability that each customer is still active at ``T``."""
        theta = self._params_array()
        x, t_x, T_, _ = check_btyd_arrays(frequency, recency, T)
        return self._probability_alive_at(theta, x, t_x, T_)

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters (constants included)."""
        theta = self._params_array()
        x, t_x, T_, _ = check_btyd_arrays(frequency, recency, T)
        return self._loglik(theta, x, t_x, T_)
