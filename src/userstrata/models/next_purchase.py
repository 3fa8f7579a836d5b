"""When will a customer buy next? P(purchase within t) and the median wait, from a BTYD model.

Conditional on being alive at ``T``, a BG/NBD (or MBG/NBD) customer's purchase rate has the
posterior ``lambda ~ Gamma(r + x, alpha + T)``, and nobody drops out without purchasing, so::

    P(purchase in (T, T + t] | x, t_x, T) = P(alive) * (1 - ((alpha + T) / (alpha + T + t))^(r + x))

Setting it to 1/2 gives the median wait in closed form::

    t* = (alpha + T) * ((1 - 0.5 / P(alive))^(-1 / (r + x)) - 1)

defined only when ``P(alive) > 1/2`` (a dead customer never buys, so otherwise the
probability never reaches 1/2).

For Pareto/NBD, death competes with the next purchase during the wait. Given alive, the
posteriors are independent, ``lambda ~ Gamma(r + x, alpha + T)`` and ``mu ~ Gamma(s, beta + T)``,
and the first purchase comes at ``u`` with density ``E[lambda e^(-lambda u)] E[e^(-mu u)]``::

    P(purchase in (T, T + t] | alive) = int_0^t (r'/alpha') (alpha'/(alpha'+u))^(r'+1) (beta'/(beta'+u))^s du

(``r' = r + x``, ``alpha' = alpha + T``, ``beta' = beta + T``), evaluated by Gauss-Legendre in
``v = ln(1 + u/alpha')``, where the integrand is ``r' e^(-r' v) (beta'/(beta'+u))^s``: smooth,
and exactly the BG/NBD expression when ``s = 0``. The median is then found by bisection.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting Your Customers" the Easy Way:
An Alternative to the Pareto/NBD Model. Marketing Science, 24(2), 275-284.
Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting Your Customers: Who Are
They and What Will They Do Next? Management Science, 33(1), 1-24.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from userstrata.errors import InputError
from userstrata.models._base import check_btyd_arrays, check_fitted, check_horizon
from userstrata.models.btyd import BetaGeo, ModifiedBetaGeo, ParetoNBD

__all__ = ["median_days_to_purchase", "next_purchase", "probability_purchase_within"]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)
_BISECTION_STEPS = 60  # halves the bracket to 2^-60 of the horizon: float precision
_CHUNK = 1 << 14  # customers per quadrature block: (customers x nodes) temporaries stay small


def _kind(purchase_model) -> str:
    check_fitted(purchase_model)
    if isinstance(purchase_model, (BetaGeo, ModifiedBetaGeo)):
        return "bg"
    if isinstance(purchase_model, ParetoNBD):
        return "pareto"
    raise InputError(
        f"purchase_model is a {type(purchase_model).__name__}; expected BetaGeo, ModifiedBetaGeo or ParetoNBD"
    )


def _alive_purchase_bg(params: dict, t, x, T) -> np.ndarray:
    """P(purchase in (T, T+t] | alive at T) for BG/NBD and MBG/NBD."""
    r, alpha = params["r"], params["alpha"]
    # -expm1(k log q) = 1 - q^k without cancellation for short waits
    return -np.expm1((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))


def _alive_purchase_pareto(params: dict, t, x, T) -> np.ndarray:
    """P(purchase in (T, T+t] | alive at T) for Pareto/NBD, by quadrature (module docstring)."""
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    t, x, T = np.broadcast_arrays(np.asarray(t, dtype=np.float64), x, T)
    out = np.empty(t.shape, dtype=np.float64)
    flat_t, flat_x, flat_T, flat_out = t.ravel(), x.ravel(), T.ravel(), out.ravel()
    for lo in range(0, flat_t.size, _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        a_, b_, rx = alpha + flat_T[sl], beta + flat_T[sl], r + flat_x[sl]
        v_max = np.log1p(flat_t[sl] / a_)[:, None]
        v = (_GL_NODES + 1.0) / 2.0 * v_max  # nodes mapped to [0, v_max]
        u = a_[:, None] * np.expm1(v)
        log_f = np.log(rx)[:, None] - rx[:, None] * v - s * np.log1p(u / b_[:, None])
        flat_out[sl] = (np.exp(log_f) @ _GL_WEIGHTS) * v_max[:, 0] / 2.0
    return out


def _arrays(purchase_model, frequency, recency, T):
    kind = _kind(purchase_model)
    x, t_x, T_, _ = check_btyd_arrays(frequency, recency, T)
    p_alive = purchase_model.probability_alive(x, t_x, T_)
    return kind, x, T_, p_alive


def probability_purchase_within(purchase_model, t, frequency, recency, T) -> np.ndarray:
    """P(at least one purchase in ``(T, T + t]``) given each customer's history.

    Parameters
    ----------
    purchase_model
        A fitted ``BetaGeo``, ``ModifiedBetaGeo`` or ``ParetoNBD``.
    t
        Wait, in the time unit the model was fitted in (days in ``predict``); a scalar or one
        value per customer.
    frequency, recency, T
        Per-customer history in the same unit.
    """
    kind, x, T_, p_alive = _arrays(purchase_model, frequency, recency, T)
    t = check_horizon("t", t)
    within = (_alive_purchase_bg if kind == "bg" else _alive_purchase_pareto)(purchase_model.params_, t, x, T_)
    return p_alive * within


def median_days_to_purchase(purchase_model, frequency, recency, T, *, horizon: float = np.inf) -> np.ndarray:
    """The wait ``t*`` with P(purchase within ``t*``) = 1/2; NaN where that is not within ``horizon``.

    BG/NBD and MBG/NBD use the closed form of the module docstring (NaN where
    ``P(alive) <= 1/2``); Pareto/NBD needs a finite ``horizon`` and solves by bisection.
    The result is in the model's time unit (days when fitted in days).
    """
    kind, x, T_, p_alive = _arrays(purchase_model, frequency, recency, T)
    params = purchase_model.params_
    if kind == "bg":
        # P(alive) <= 1/2 (no median: NaN below) and r + x near 0 (a wait beyond any float:
        # inf, NaN below as beyond the horizon) are expected here, not errors
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            base = 1.0 - 0.5 / p_alive
            t_star = (params["alpha"] + T_) * np.expm1(-np.log(base) / (params["r"] + x))
        t_star = np.where(p_alive > 0.5, t_star, np.nan)
        return np.where(t_star <= horizon, t_star, np.nan)
    if not np.isfinite(horizon):
        raise InputError(
            "median_days_to_purchase needs a finite horizon for Pareto/NBD",
            hint="pass horizon=, e.g. the prediction horizon in days",
        )
    reachable = p_alive * _alive_purchase_pareto(params, horizon, x, T_) >= 0.5
    lo = np.zeros_like(x)
    hi = np.full_like(x, float(horizon))
    for _ in range(_BISECTION_STEPS):  # P is increasing in t: vectorised bisection
        mid = (lo + hi) / 2.0
        above = p_alive * _alive_purchase_pareto(params, mid, x, T_) >= 0.5
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(reachable, (lo + hi) / 2.0, np.nan)


def next_purchase(purchase_model, frequency, recency, T, *, horizon: float) -> pd.DataFrame:
    """Median wait to the next purchase and the chance of one within ``horizon``.

    Returns
    -------
    pandas.DataFrame
        ``next_purchase_days`` (the median wait; NaN when it is "unlikely within the horizon":
        P(alive) <= 1/2 or the median lies beyond ``horizon``) and
        ``next_purchase_within_horizon`` (P(purchase in ``(T, T + horizon]``)), one row per
        customer, indexed like ``frequency`` when it is a pandas Series.
    """
    h = check_horizon("horizon", horizon)
    if h.size != 1 or not h[0] > 0:
        raise InputError(f"horizon = {horizon!r}; expected one number > 0 (days when fitted in days)")
    days = median_days_to_purchase(purchase_model, frequency, recency, T, horizon=float(h[0]))
    within = probability_purchase_within(purchase_model, float(h[0]), frequency, recency, T)
    index = frequency.index if isinstance(frequency, pd.Series) else None
    return pd.DataFrame({"next_purchase_days": days, "next_purchase_within_horizon": within}, index=index)
