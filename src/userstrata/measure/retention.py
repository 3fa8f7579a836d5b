"""Retention cohorts (留存): of the users who started in a period, how many came back k periods later.

The definitions follow PostHog's retention insight (docs/metrics.md quotes them):

- **Start**: registering (``cohort_by="registration"``), buying (``"first_purchase"``) or any
  named ``start_event``. **Return**: any activity (an event or a purchase) or a named
  ``return_event``. The names ``purchase`` and ``order`` also match paid orders.
- **first_time**: a user belongs to the cohort of the period of their *first ever* start
  (before ``start`` included: a user who first started earlier is in no cohort of the range).
- **recurring**: a user belongs to the cohort of *every* period in which they started.
- Period k (k >= 1) counts cohort users who returned in the k-th period after the cohort's
  (exactly that one, not "on or after"); a return in the cohort's own period (the same day for
  daily cohorts) is period 0, which is the cohort itself (100 %).
- Only periods that have ended by ``end`` are filled; the rest are left empty (NaN), so every
  rate counts only users old enough for it. D1 / D7 / D30 (次日/7日/30日留存) are counted from
  each user's start day, over users whose day N has passed.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine, i18n
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure.kpis import (
    _EPOCH,
    _default_execute,
    active_days,
    check_grain,
    check_range,
    first_day,
    index_of,
    last_day,
    paid,
    period_index,
    registrations,
)

COHORT_BY = ("registration", "first_purchase")
MODES = ("first_time", "recurring")
ORDER_EVENTS = ("purchase", "order")  # event names that also match paid orders
DAY_MARKS = (1, 7, 30)

TEXT: dict[str, tuple[str, str]] = {
    "cohort": ("批次", "Cohort"),
    "users": ("用户数", "Users"),
    "period_n": ("第 {k} {unit}", "{unit} {k}"),
    "day": ("天", "Day"),
    "week": ("周", "Week"),
    "month": ("月", "Month"),
    "mark": ("指标", "Measure"),
    "eligible": ("满龄用户", "Users old enough"),
    "returned": ("回访用户", "Returned"),
    "rate": ("留存率", "Retention"),
    "d1": ("次日留存", "D1 retention"),
    "d7": ("7日留存", "D7 retention"),
    "d30": ("30日留存", "D30 retention"),
    "title": ("{mode}留存（按{start}{unit}分批）", "{mode} retention (cohorts by {start} {unit})"),
    "first_time": ("首次", "First-time"),
    "recurring": ("重复", "Recurring"),
    "registration": ("注册", "registration"),
    "first_purchase": ("首购", "first purchase"),
    "event": ("{name}", "{name}"),
    "periods_after": ("之后的周期", "Periods after"),
    "suppressed": ("少于 {n} 人的格子已隐藏", "cells under {n} users hidden"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


@dataclasses.dataclass(frozen=True)
class Retention:
    """A retention table.

    ``counts`` is long: ``cohort_start, cohort_users, k, returned, rate`` (k = 0 is the cohort;
    cells not yet complete are absent). ``table`` is wide: one row per cohort, ``users`` and the
    rate of each period ``0..periods`` (NaN where too young or hidden). ``summary`` has D1 / D7 /
    D30: ``mark, days, eligible, returned, rate``.
    """

    counts: pd.DataFrame
    table: pd.DataFrame
    summary: pd.DataFrame
    period: str
    mode: str
    cohort_by: str
    start_event: str | None
    min_count: int | None

    def labelled(self, lang: str = "en") -> pd.DataFrame:
        unit = text(self.period, lang)
        names = {"cohort_start": text("cohort", lang), "users": text("users", lang)}
        names |= {k: text("period_n", lang).format(k=k, unit=unit) for k in self.table.columns if isinstance(k, int)}
        return self.table.rename(columns=names)

    def chart(self, lang: str = "en") -> Any:
        """A heatmap: cohorts down, periods across, the retention rate in each cell."""
        import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked

        ks = [k for k in self.table.columns if isinstance(k, int)]
        z = self.table[ks].to_numpy(dtype="float64")
        labels = [[("" if v != v else f"{v:.0%}") for v in row] for row in z]
        y = [f"{d} ({n:,})" if n == n else str(d) for d, n in zip(self.table["cohort_start"], self.table["users"])]
        fig = go.Figure(go.Heatmap(z=z, x=[str(k) for k in ks], y=y, text=labels, texttemplate="%{text}",
                                   colorscale="Blues", zmin=0, zmax=1))
        start = text(self.cohort_by, lang) if self.start_event is None else self.start_event
        title = text("title", lang).format(mode=text(self.mode, lang), start=start, unit=text(self.period, lang))
        if self.min_count:
            title += f" ({text('suppressed', lang).format(n=self.min_count)})"
        fig.update_layout(title=title, xaxis_title=f"{text('periods_after', lang)} ({text(self.period, lang)})",
                          yaxis_title=text("cohort", lang), yaxis_autorange="reversed")
        return fig


def _check(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} {value!r}: use one of {', '.join(allowed)}",
                         zh=f"{name} {value!r} 不可用；可选：{', '.join(allowed)}")


def _event_days(name: str, events: ir.Table, orders: ir.Table, clock: Clock) -> ir.Table:
    """``(user_id, day)`` distinct: days a user did ``name`` (paid orders too for purchase/order)."""
    e = events.filter(events.user_id.notnull(), events.event == name).select("user_id", "ts")
    if name in ORDER_EVENTS:
        e = ibis.union(e, paid(orders).select("user_id", "ts"), distinct=False)
    return e.select("user_id", day=clock.local_date(e.ts)).distinct()


def start_days(*, users: ir.Table, orders: ir.Table, events: ir.Table, clock: Clock, cohort_by: str,
               start_event: str | None) -> ir.Table:
    """``(user_id, day)``: every local day a user started (registered, bought, or did ``start_event``)."""
    if start_event is not None:
        return _event_days(start_event, events, orders, clock)
    if cohort_by == "registration":
        regs = registrations(users, events, orders, clock)
        return regs.select("user_id", day=regs.reg_day)
    bought = paid(orders)
    return bought.select("user_id", day=clock.local_date(bought.ts)).distinct()


def return_days(*, orders: ir.Table, events: ir.Table, clock: Clock, return_event: str | None) -> ir.Table:
    """``(user_id, day)``: every local day a user returned (any activity, or ``return_event``)."""
    if return_event is None:
        return active_days(events, orders, clock).select("user_id", "day")
    return _event_days(return_event, events, orders, clock)


def retention(
    *,
    users: ir.Table,
    orders: ir.Table,
    events: ir.Table,
    start: dt_.date,
    end: dt_.date,
    cohort_by: str = "registration",
    period: str = "day",
    start_event: str | None = None,
    return_event: str | None = None,
    mode: str = "first_time",
    periods: int = 30,
    min_count: int | None = None,
    settings: Any = None,
    engine: str = "duckdb",
    order_items: ir.Table | None = None,
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> Retention:
    """Retention of the cohorts whose period starts from ``start`` to ``end``, returns up to ``end``.

    Parameters
    ----------
    cohort_by
        "registration" or "first_purchase": the start when ``start_event`` is not given.
    period
        "day", "week" (Monday-based) or "month": the cohorts' and the returns' period.
    mode
        "first_time" (each user once, in the period of their first start) or "recurring".
    periods
        The last period after the cohort's shown.
    min_count
        Hide the rates of cohorts with fewer users (None hides nothing).
    """
    check_grain(period, "period")
    check_range(start, end)
    _check(cohort_by, "cohort_by", COHORT_BY)
    _check(mode, "mode", MODES)
    if periods < 0:
        raise InputError(f"periods {periods} is negative", zh=f"periods {periods} 不能为负数")
    execute = execute or _default_execute
    clock = Clock(settings.timezone if settings is not None else "Asia/Shanghai", engine)
    cohort_lo = first_day(index_of(start, period), period)  # cohorts of the period holding start on
    starts = start_days(users=users, orders=orders, events=events, clock=clock, cohort_by=cohort_by,
                        start_event=start_event)
    if mode == "first_time":
        starts = starts.group_by("user_id").agg(day=starts.day.min())
    starts = starts.filter(starts.day >= cohort_lo, starts.day <= end)
    returns = return_days(orders=orders, events=events, clock=clock, return_event=return_event)
    returns = returns.filter(returns.day >= cohort_lo, returns.day <= end)

    # cohort entries (user, cohort period) and return periods (user, period), each distinct
    entries = starts.select("user_id", cohort=period_index(starts.day, period))
    back = returns.select("user_id", at=period_index(returns.day, period))
    if period != "day":  # days are distinct already; weeks and months gather several
        entries, back = entries.distinct(), back.distinct()
    j = entries.join(back, "user_id")
    j = j.mutate(k=j.at - j.cohort)
    j = j.filter(j.k >= 1, j.k <= periods)
    sizes = entries.group_by("cohort").agg(cohort_users=entries.count())
    hits = j.group_by(["cohort", "k"]).agg(returned=j.count())

    # D1 / D7 / D30 from each start day s (s + N <= end; returned on day s + N). With daily
    # cohorts these are the cells (cohort, k = N) already counted; other marks need one more join.
    end_e = (end - _EPOCH).days
    extra = [n for n in DAY_MARKS if period != "day" or n > periods]
    s_days = starts.select("user_id", s=_engine.epoch_day(starts.day)).distinct()
    eligible = s_days.aggregate(**{f"eligible_{n}": (s_days.s + n <= end_e).cast("int64").sum() for n in DAY_MARKS})
    exprs = [sizes, hits, eligible]
    if extra:
        r_days = returns.select("user_id", r=_engine.epoch_day(returns.day))
        m = s_days.join(r_days, "user_id")
        m = m.filter((m.r - m.s).isin(extra), m.r <= end_e)
        exprs.append(m.group_by(days=m.r - m.s).agg(returned=m.count()))
    sizes_df, hits_df, eligible_df, *rest = (execute(e) for e in exprs)
    found = {int(d): int(n) for d, n in zip(rest[0]["days"], rest[0]["returned"])} if rest else {}
    if period == "day":
        by_k = hits_df.groupby("k")["returned"].sum() if len(hits_df) else pd.Series(dtype="int64")
        found |= {n: int(by_k.get(n, 0)) for n in DAY_MARKS if n not in extra}
    summary = pd.DataFrame({"days": list(DAY_MARKS),
                            "eligible": [int(eligible_df[f"eligible_{n}"].fillna(0).iloc[0]) for n in DAY_MARKS],
                            "returned": [found.get(n, 0) for n in DAY_MARKS]})
    return _assemble(sizes_df, hits_df, summary, end=end, period=period, mode=mode, cohort_by=cohort_by,
                     start_event=start_event, periods=periods, min_count=min_count)


def _assemble(sizes: pd.DataFrame, hits: pd.DataFrame, summary: pd.DataFrame, *, end: dt_.date, period: str,
              mode: str, cohort_by: str, start_event: str | None, periods: int,
              min_count: int | None) -> Retention:
    sizes = sizes.astype({"cohort": "int64", "cohort_users": "int64"}).sort_values("cohort")
    returned = {(int(c), int(k)): int(n) for c, k, n in zip(hits["cohort"], hits["k"], hits["returned"])}
    rows = []
    for c, users in zip(sizes["cohort"], sizes["cohort_users"]):
        rows.append((int(c), 0, int(users), int(users)))
        for k in range(1, periods + 1):
            if last_day(int(c) + k, period) > end:  # not everyone could have come back yet
                break
            rows.append((int(c), k, int(users), returned.get((int(c), k), 0)))
    counts = pd.DataFrame(rows, columns=["cohort", "k", "cohort_users", "returned"])
    counts["rate"] = counts["returned"] / counts["cohort_users"]
    counts.insert(1, "cohort_start", [first_day(int(c), period) for c in counts["cohort"]])
    counts = counts.drop(columns="cohort")
    if min_count:
        counts.loc[counts["cohort_users"] < min_count, ["returned", "rate"]] = float("nan")
    wide = counts.pivot(index="cohort_start", columns="k", values="rate").reindex(columns=range(periods + 1))
    wide.columns = [int(k) for k in wide.columns]
    users = counts.drop_duplicates("cohort_start").set_index("cohort_start")["cohort_users"]
    table = wide.reset_index()
    table.insert(1, "users", table["cohort_start"].map(users).astype("int64") if len(table) else pd.Series(dtype="int64"))
    summary = summary.astype({"days": "int64", "eligible": "int64", "returned": "int64"})
    summary = summary.sort_values("days").reset_index(drop=True)
    summary.insert(0, "mark", [f"d{n}" for n in summary["days"]])
    summary["rate"] = summary["returned"] / summary["eligible"].where(summary["eligible"] > 0)
    summary = summary[["mark", "days", "eligible", "returned", "rate"]]
    if min_count:
        summary.loc[summary["eligible"] < min_count, ["returned", "rate"]] = float("nan")
    return Retention(counts=counts, table=table, summary=summary, period=period, mode=mode, cohort_by=cohort_by,
                     start_event=start_event, min_count=min_count)
