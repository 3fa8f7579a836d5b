"""Cohort tracking: expected vs actual repeat transactions per calendar day and week.

The classic check of a BTYD model (Fader, Hardie & Lee 2005, Figure 1; R BTYD's
``bgnbd.PlotTrackingCum`` / ``PlotTrackingInc``): the buyers acquired up to the cutoff are
followed over the calibration period and the holdout, and on each local calendar day their
actual repeat purchase days are set against what the model expects of buyers acquired on
those days, ``sum_i E[X(day - first_day_i)]``. The expectation is unconditional (it uses
only when each buyer was acquired, not their history), so the calibration part shows how
well the model describes the data it was fitted on and the holdout part how well it
forecasts the cohort's sales.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way:
an alternative to the Pareto/NBD model. Marketing Science 24(2), 275-284 (Figure 1).
"""

from __future__ import annotations

import datetime as dt_

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.models._base import PurchaseModel, check_fitted

__all__ = [
    "TRACKING_COLUMNS",
    "WEEKLY_COLUMNS",
    "cohort_tracking",
    "tracking_counts",
    "tracking_table",
    "weekly_tracking",
]

TRACKING_COLUMNS = ("day", "week", "period", "actual", "expected", "actual_cum", "expected_cum")
WEEKLY_COLUMNS = (
    "week", "week_start", "week_end", "days", "period", "actual", "expected", "actual_cum", "expected_cum",
)


def tracking_counts(orders: ir.Table, *, cutoff: dt_.date, end: dt_.date, clock: Clock) -> ir.Table:
    """``day, new_buyers, repeat_purchases`` of the cohort of buyers acquired on or before ``cutoff``.

    Per local day up to ``end``: how many buyers made their first purchase that day and how
    many of the cohort's repeat purchase days fall on it. Purchases are those of the
    calibration summary (:func:`~userstrata.features.btyd_summary`): the same statuses
    (a refunded order is still a purchase occasion), and several orders of one user on one
    day count once. Days with neither are absent; :func:`tracking_table` fills them.
    """
    p = purchases(orders, as_of=end, clock=clock)
    days = p.select("user_id", "order_date").distinct()
    days = days.mutate(first_day=days.order_date.min().over(group_by=days.user_id))
    cohort = days.filter(days.first_day <= cutoff)
    return cohort.group_by(day=cohort.order_date).agg(
        new_buyers=(cohort.order_date == cohort.first_day).sum().cast("int64"),
        repeat_purchases=(cohort.order_date > cohort.first_day).sum().cast("int64"),
    )


def _to_days(name: str, values) -> np.ndarray:
    """``values`` (dates, timestamps or ISO strings) as ``datetime64[D]``; InputError on a missing or bad one."""
    arr = np.asarray(values).reshape(-1)
    try:
        if arr.dtype.kind != "M":  # dates, Timestamps or strings; datetime64 needs no parsing
            arr = pd.to_datetime(pd.Series(arr, dtype=object)).to_numpy()
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} holds a value that is not a date ({exc}); expected calendar days") from None
    missing = np.isnat(arr)
    if missing.any():
        raise InputError(f"{name}[{int(np.argmax(missing))}] is missing; expected a calendar day")
    return arr.astype("datetime64[D]")


def _weights(name: str, weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise InputError(f"{name} has length {len(w)} but there are {n} days; expected equal lengths")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{name}[{i}] = {float(w[i])!r}; expected a count >= 0")
    return w


def _day(name: str, value) -> np.datetime64:
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError):
        day = pd.NaT
    if pd.isna(day):
        raise InputError(f"{name} = {value!r}; expected a calendar day")
    return np.datetime64(day.date(), "D")


def _first_outside(name: str, days: np.ndarray, counted: np.ndarray, lo, hi, expected: str) -> None:
    bad = counted & ((days < lo) | (days > hi))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{name}[{i}] = {days[i]}; expected {expected}")


def tracking_table(
    model: PurchaseModel,
    first_purchase_days,
    repeat_purchase_days,
    *,
    cutoff,
    end,
    start=None,
    first_purchase_weights=None,
    repeat_purchase_weights=None,
) -> pd.DataFrame:
    """Expected vs actual repeat transactions of a cohort, per local calendar day.

    Parameters
    ----------
    model
        A fitted purchase model (BG/NBD, MBG/NBD, Pareto/NBD) in days.
    first_purchase_days
        Each buyer's first purchase day, all on or before ``cutoff`` (the buyers the model
        was fitted on). With ``first_purchase_weights``: distinct days and how many buyers
        each stands for.
    repeat_purchase_days
        The day of each repeat transaction of these buyers (one per buyer and day: several
        orders on one day are one transaction), up to ``end``; with
        ``repeat_purchase_weights``: distinct days and the count on each.
    cutoff, end
        The last day of the calibration period and of the holdout.
    start
        First day of the table (default: the earliest first purchase).

    Returns
    -------
    pandas.DataFrame
        One row per day from ``start`` to ``end``: ``day``; ``week`` (1, 2, ...; weeks end on
        the cutoff, so none straddles it and the first may be short); ``period``
        (``"calibration"`` up to ``cutoff``, ``"holdout"`` after); ``actual`` and
        ``expected`` repeat transactions that day; ``actual_cum`` and ``expected_cum`` from
        ``start`` to the end of that day.

    Notes
    -----
    A buyer first seen on day ``t0`` has ``d - t0`` days of model time at the end of day
    ``d`` (the calibration ``T`` counts the same way), so ``expected_cum(d) =
    sum_i E[X(d - t0_i)]``. Every buyer shares the same curve ``E[X(k)]``, ``k = 0, 1, ...``:
    it is evaluated once per day of the table and convolved with the number of buyers
    acquired per day, so the cost does not grow with the number of buyers.
    """
    check_fitted(model)
    first = _to_days("first_purchase_days", first_purchase_days)
    repeat = _to_days("repeat_purchase_days", repeat_purchase_days)
    n_first = _weights("first_purchase_weights", first_purchase_weights, len(first))
    n_repeat = _weights("repeat_purchase_weights", repeat_purchase_weights, len(repeat))
    if not n_first.sum() > 0:
        raise InputError("first_purchase_days is empty; expected the first purchase day of at least one buyer")
    cut, last = _day("cutoff", cutoff), _day("end", end)
    counted = n_first > 0  # a day with weight 0 stands for no one: its place does not matter
    _first_outside("first_purchase_days", first, counted, first.min(), cut,
                   f"a day on or before the cutoff {cut} (the buyers the model was fitted on)")
    begin = first[counted].min() if start is None else _day("start", start)
    if not begin <= cut <= last:
        raise InputError(
            f"start {begin}, cutoff {cut} and end {last} are out of order; expected start <= cutoff <= end",
            hint="end is the last day of the holdout, after the cutoff",
        )
    _first_outside("first_purchase_days", first, counted, begin, cut,
                   f"a day from the start {begin} to the cutoff {cut}")
    _first_outside("repeat_purchase_days", repeat, n_repeat > 0, begin, last, f"a day from {begin} to {last}")
    first, n_first = first[n_first > 0], n_first[n_first > 0]
    repeat, n_repeat = repeat[n_repeat > 0], n_repeat[n_repeat > 0]

    n_days = int((last - begin).astype(np.int64)) + 1
    acquired = np.bincount((first - begin).astype(np.int64), weights=n_first, minlength=n_days)
    actual = np.bincount((repeat - begin).astype(np.int64), weights=n_repeat, minlength=n_days)
    if np.array_equal(actual, np.round(actual)):
        actual = actual.astype(np.int64)  # counts (the usual case) print as counts in tracking.csv
    curve = model.expected_purchases_new(np.arange(n_days, dtype=np.float64))  # E[X(k)], k = 0..n_days-1
    expected_cum = np.convolve(acquired, curve)[:n_days]
    expected = np.diff(expected_cum, prepend=0.0)

    offset = np.arange(n_days)
    n_calib = int((cut - begin).astype(np.int64)) + 1
    # weeks aligned on the cutoff: calibration and holdout never share one
    week = (offset + (-n_calib) % 7) // 7 + 1
    return pd.DataFrame(
        {
            "day": pd.to_datetime(begin + offset.astype("timedelta64[D]")),
            "week": week.astype(np.int64),
            "period": np.where(offset < n_calib, "calibration", "holdout"),
            "actual": actual,
            "expected": expected,
            "actual_cum": np.cumsum(actual),
            "expected_cum": expected_cum,
        },
        columns=list(TRACKING_COLUMNS),
    )


def weekly_tracking(tracking: pd.DataFrame) -> pd.DataFrame:
    """:func:`tracking_table` summed per week: ``week, week_start, week_end, days, period,
    actual, expected`` and the cumulative values at the end of each week."""
    if len(tracking) == 0:
        return pd.DataFrame(columns=list(WEEKLY_COLUMNS))
    return (
        tracking.groupby("week", sort=True)
        .agg(
            week_start=("day", "min"),
            week_end=("day", "max"),
            days=("day", "size"),
            period=("period", "last"),
            actual=("actual", "sum"),
            expected=("expected", "sum"),
            actual_cum=("actual_cum", "last"),
            expected_cum=("expected_cum", "last"),
        )
        .reset_index()[list(WEEKLY_COLUMNS)]
    )


def cohort_tracking(
    model: PurchaseModel, orders: ir.Table, *, cutoff: dt_.date, end: dt_.date, clock: Clock, execute
) -> pd.DataFrame:
    """:func:`tracking_table` of the buyers acquired up to ``cutoff``, counted by the engine
    (:func:`tracking_counts`): only one row per day leaves it."""
    counts = execute(tracking_counts(orders, cutoff=cutoff, end=end, clock=clock))
    if len(counts) == 0 or not counts["new_buyers"].sum() > 0:
        raise InputError(f"no buyers on or before {cutoff}", hint="choose a later cutoff")
    days = pd.to_datetime(counts["day"])
    return tracking_table(
        model,
        days,
        days,
        cutoff=cutoff,
        end=end,
        first_purchase_weights=counts["new_buyers"].to_numpy(dtype=np.float64),
        repeat_purchase_weights=counts["repeat_purchases"].to_numpy(dtype=np.float64),
    )

