"""KPIs (核心指标): users, activity, money and conversion per day, week or month.

Every number is defined once, in docs/metrics.md; this module is that definition. In short:

- Days are shop-local calendar days (``Clock``). A user is **active** on a day with any event
  or purchase of theirs (rows without ``user_id`` are anonymous and never count).
- **Periods** are calendar days, Monday-based weeks or calendar months, clipped to
  ``[start, end]``: a period that starts before ``start`` or ends after ``end`` only counts the
  days inside (``days`` says how many).
- **Purchases** are orders whose status is in ``schema.PURCHASE_STATUSES``; money is summed in
  whole cents. GMV counts a purchase on its day; a refund counts on its ``refunded_at`` day
  (the order's day when that is missing), so net revenue of a period is GMV of the period minus
  refunds paid out in it.
- ``by`` splits users into groups: ``channel`` (users.channel), ``cohort`` (the period of
  registration), ``tier`` or ``lifecycle`` (the profile as of each period's last day, so a user
  is in exactly one group per period and the groups add up to the total).
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
from collections.abc import Callable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine, i18n
from userstrata.errors import InputError
from userstrata.measure.privacy import MIN_COUNT  # noqa: F401 (re-exported)
from userstrata.features._money import floor_divide, to_cents
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES

GRAINS = ("day", "week", "month")
BY = ("tier", "lifecycle", "channel", "cohort")
CONVERSION_DAYS = (1, 7, 30)
NO_GROUP = "(none)"  # the group of users who have none (no channel, no profile yet)
MAX_PROFILE_PERIODS = 62  # by tier/lifecycle builds one profile per period
_EPOCH = dt_.date(1970, 1, 1)

# zh / en labels an operator reads
TEXT: dict[str, tuple[str, str]] = {
    "period": ("周期", "Period"),
    "period_start": ("开始日", "From"),
    "period_end": ("结束日", "To"),
    "days": ("天数", "Days"),
    "group": ("分组", "Group"),
    "new_users": ("新增用户", "New users"),
    "active_users": ("活跃用户", "Active users"),
    "dau": ("日活（日均）", "DAU (daily mean)"),
    "wau": ("周活（近7天）", "WAU (last 7 days)"),
    "mau": ("月活（近30天）", "MAU (last 30 days)"),
    "stickiness": ("粘性（日活/月活）", "Stickiness (DAU/MAU)"),
    "paying_users": ("付费用户", "Paying users"),
    "orders": ("订单数", "Orders"),
    "gmv": ("成交额（GMV）", "GMV"),
    "refunds": ("退款额", "Refunds"),
    "net_revenue": ("净收入", "Net revenue"),
    "arpu": ("ARPU（人均收入）", "ARPU"),
    "arppu": ("ARPPU（付费用户人均）", "ARPPU"),
    "aov": ("客单价", "AOV"),
    "conversion_1d": ("首单转化率（1天内）", "First-order conversion (1 day)"),
    "conversion_7d": ("首单转化率（7天内）", "First-order conversion (7 days)"),
    "conversion_30d": ("首单转化率（30天内）", "First-order conversion (30 days)"),
    "repurchase_rate": ("复购率", "Repurchase rate"),
    "refund_rate": ("退款率", "Refund rate"),
    "churn_rate": ("流失率", "Churn rate"),
    "cohort": ("获客批次", "Acquisition cohort"),
    "cohort_users": ("批次用户数", "Cohort users"),
    "age": ("经过周期数", "Periods since acquisition"),
    "ltv": ("人均累计净收入（LTV）", "Cumulative net revenue per user (LTV)"),
    "kpi_title": ("核心指标（{start} 至 {end}，按{grain}）", "KPIs ({start} to {end}, by {grain})"),
    "ltv_title": ("获客批次历史 LTV（按{grain}）", "Historical LTV by acquisition cohort (by {grain})"),
    "value": ("数值", "Value"),
    "day": ("日", "day"),
    "week": ("周", "week"),
    "month": ("月", "month"),
    "suppressed": ("少于 {n} 人的格子已隐藏", "cells under {n} users hidden"),
}

# The metric columns of ``Kpis.table``, in order, and the count of users behind each: a cell
# whose count is under ``min_count`` is hidden (set to NaN).
METRICS: dict[str, str] = {
    "new_users": "new_users",
    "active_users": "active_users",
    "dau": "active_users",
    "wau": "wau",
    "mau": "mau",
    "stickiness": "mau",
    "paying_users": "paying_users",
    "orders": "paying_users",
    "gmv": "paying_users",
    "refunds": "paying_users",
    "net_revenue": "paying_users",
    "arpu": "active_users",
    "arppu": "paying_users",
    "aov": "paying_users",
    "conversion_1d": "eligible_1d",
    "conversion_7d": "eligible_7d",
    "conversion_30d": "eligible_30d",
    "repurchase_rate": "paying_users",
    "refund_rate": "paying_users",
    "churn_rate": "previous_active",
}
MONEY = ("gmv", "refunds", "net_revenue", "arpu", "arppu", "aov")
RATES = ("stickiness", "conversion_1d", "conversion_7d", "conversion_30d", "repurchase_rate", "refund_rate",
         "churn_rate")  # fmt: skip


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def _default_execute(expr: ir.Expr) -> pd.DataFrame:
    return expr.to_pandas()


# -- periods -------------------------------------------------------------------------------
# A period is an integer index: the epoch day (day), the Monday-based week number since
# 1969-12-29 (week) or year * 12 + month - 1 (month); k periods later is index + k.
def check_grain(grain: str, option: str = "grain") -> str:
    if grain not in GRAINS:
        raise InputError(
            f"{option} {grain!r} is not a period; use one of: {', '.join(GRAINS)}",
            zh=f"{option} {grain!r} 不是可用的周期；可选：day（日）、week（周）、month（月）",
        )
    return grain


def period_index(day: ir.DateValue, grain: str) -> ir.IntegerValue:
    """The period of a local day (an Ibis date) as an integer index."""
    if grain == "month":
        return day.year() * 12 + day.month() - 1
    eday = _engine.epoch_day(day)
    if grain == "week":
        return floor_divide(eday + 3, ibis.literal(7))  # 1970-01-01 was a Thursday
    return eday


def index_of(day: dt_.date, grain: str) -> int:
    """``period_index`` of a Python date."""
    if grain == "month":
        return day.year * 12 + day.month - 1
    eday = (day - _EPOCH).days
    return (eday + 3) // 7 if grain == "week" else eday


def first_day(index: int, grain: str) -> dt_.date:
    if grain == "month":
        return dt_.date(index // 12, index % 12 + 1, 1)
    return _EPOCH + dt_.timedelta(days=index * 7 - 3 if grain == "week" else index)


def last_day(index: int, grain: str) -> dt_.date:
    return first_day(index + 1, grain) - dt_.timedelta(days=1)


def periods_between(start: dt_.date, end: dt_.date, grain: str) -> pd.DataFrame:
    """One row per period overlapping ``[start, end]``: ``period`` (index), ``period_start`` and
    ``period_end`` clipped to the range, ``days``."""
    rows = []
    for index in range(index_of(start, grain), index_of(end, grain) + 1):
        lo, hi = max(first_day(index, grain), start), min(last_day(index, grain), end)
        rows.append((index, lo, hi, (hi - lo).days + 1))
    return pd.DataFrame(rows, columns=["period", "period_start", "period_end", "days"])


def check_range(start: dt_.date, end: dt_.date) -> None:
    if start > end:
        raise InputError(
            f"the range {start} to {end} is empty: the start is after the end",
            hint="swap --from and --to",
            zh=f"时间范围 {start} 至 {end} 为空：开始日晚于结束日",
            hint_zh="交换 --from 与 --to",
        )


# -- shared inputs -------------------------------------------------------------------------
def paid(orders: ir.Table) -> ir.Table:
    """Purchases of known users."""
    return orders.filter(orders.status.isin(list(PURCHASE_STATUSES)), orders.user_id.notnull())


def active_days(events: ir.Table, orders: ir.Table, clock: Clock) -> ir.Table:
    """``(user_id, day, eday)``: each local day (also as an epoch day) a user had an event or a purchase."""
    e = events.filter(events.user_id.notnull())
    p = paid(orders)
    both = ibis.union(e.select("user_id", "ts"), p.select("user_id", "ts"), distinct=False)
    days = both.select("user_id", day=clock.local_date(both.ts)).distinct()
    return days.mutate(eday=_engine.epoch_day(days.day))


def registrations(users: ir.Table, events: ir.Table, orders: ir.Table, clock: Clock) -> ir.Table:
    """``(user_id, reg_day, reg_eday)``: the local day of ``registered_at``; for users without one (or
    not in ``users``), their first active day."""
    act = active_days(events, orders, clock)
    first = act.group_by("user_id").agg(first_day=act.day.min())
    u = users.filter(users.user_id.notnull()).select("user_id", reg=clock.local_date(users.registered_at))
    joined = first.outer_join(u, "user_id")
    regs = joined.select(
        user_id=ibis.coalesce(joined.user_id, joined.user_id_right),
        reg_day=ibis.coalesce(joined.reg, joined.first_day),
    )
    regs = regs.filter(regs.reg_day.notnull())
    return regs.mutate(reg_eday=_engine.epoch_day(regs.reg_day))


# -- groups --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Groups:
    """How users fall into groups: ``attach(t)`` adds ``group`` to a table with ``user_id`` and
    ``period`` (a static lookup or the profile as of each period's last day)."""

    by: str | None
    lookup: ir.Table | None = None  # (user_id, [period,] group)

    def attach(self, t: ir.Table) -> ir.Table:
        if self.by is None:
            return t.mutate(group=ibis.literal(NO_GROUP))
        keys = ["user_id", "period"] if "period" in self.lookup.columns else ["user_id"]
        j = t.left_join(self.lookup, keys)
        j = j.drop(*[f"{k}_right" for k in keys if f"{k}_right" in j.columns])
        return j.mutate(group=j.group.fill_null(NO_GROUP))


def _groups(by: str | None, periods: pd.DataFrame, grain: str, *, users: ir.Table, regs: ir.Table,
            profile_at: Callable[[dt_.date], ir.Table] | None) -> _Groups:
    if by is None:
        return _Groups(None)
    if by not in BY:
        raise InputError(
            f"by {by!r} is not a grouping; use one of: {', '.join(BY)}",
            zh=f"分组 {by!r} 不可用；可选：tier（分层）、lifecycle（生命周期）、channel（渠道）、cohort（获客批次）",
        )
    if by == "channel":
        return _Groups(by, users.select("user_id", group=users.channel.cast("string")))
    if by == "cohort":
        return _Groups(by, regs.select("user_id", group=period_index(regs.reg_day, grain).cast("string")))
    if len(periods) > MAX_PROFILE_PERIODS:
        raise InputError(
            f"by {by} needs the profile as of each of the {len(periods)} periods; at most "
            f"{MAX_PROFILE_PERIODS} are computed",
            hint="use a coarser grain (week or month) or a shorter range",
            zh=f"按{by}分组需要计算每个周期末的用户画像，共 {len(periods)} 个周期，最多支持 {MAX_PROFILE_PERIODS} 个",
            hint_zh="改用更粗的周期（周或月）或缩短时间范围",
        )
    parts = [
        profile_at(row.period_end).select("user_id", period=ibis.literal(int(row.period), type="int64"),
                                          group=ibis._[by].cast("string"))
        for row in periods.itertuples()
    ]
    lookup = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    # computed once and kept by the engine: every metric joins it (one profile per period)
    return _Groups(by, lookup.cache())


# -- the result ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Kpis:
    """KPIs per period (and group): ``table`` has ``period_start, period_end, days, [group]`` and
    the ``METRICS`` columns (money in currency units, rates as shares 0..1) plus the counts
    behind them; ``ltv`` is the historical LTV by acquisition cohort (long: cohort, age)."""

    table: pd.DataFrame
    ltv: pd.DataFrame
    start: dt_.date
    end: dt_.date
    grain: str
    by: str | None
    min_count: int | None

    def labelled(self, lang: str = "en") -> pd.DataFrame:
        """The metric table with headers in ``lang`` (the supporting counts left out)."""
        cols = ["period_start", "period_end", *(["group"] if self.by else []), *METRICS]
        return self.table[cols].rename(columns={c: text(c, lang) for c in cols})

    def chart(self, metrics: Sequence[str] = ("active_users", "paying_users"), lang: str = "en") -> Any:
        """Lines over periods: one per metric (and group)."""
        import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked

        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise InputError(
                f"metric {unknown[0]!r} is not a KPI; use one of: {', '.join(METRICS)}",
                zh=f"指标 {unknown[0]!r} 不存在；可选：{', '.join(METRICS)}",
            )
        fig = go.Figure()
        groups = self.table.groupby("group", sort=True) if self.by else [(None, self.table)]
        for group, part in groups:
            for metric in metrics:
                name = text(metric, lang) if group is None else f"{text(metric, lang)} · {group}"
                fig.add_trace(go.Scatter(x=[str(d) for d in part["period_start"]], y=part[metric],
                                         mode="lines+markers", name=name))
        title = text("kpi_title", lang).format(start=self.start, end=self.end, grain=text(self.grain, lang))
        if self.min_count:
            title += f" ({text('suppressed', lang).format(n=self.min_count)})"
        fig.update_layout(title=title, xaxis_title=text("period_start", lang), yaxis_title=text("value", lang))
        return fig

    def ltv_chart(self, lang: str = "en") -> Any:
        """Cumulative net revenue per user by periods since acquisition, one line per cohort."""
        import plotly.graph_objects as go  # noqa: PLC0415

        fig = go.Figure()
        for cohort, part in self.ltv.groupby("cohort_start", sort=True):
            fig.add_trace(go.Scatter(x=part["age"], y=part["ltv"], mode="lines+markers", name=str(cohort)))
        fig.update_layout(title=text("ltv_title", lang).format(grain=text(self.grain, lang)),
                          xaxis_title=text("age", lang), yaxis_title=text("ltv", lang))
        return fig


# -- the analysis ----------------------------------------------------------------------------
def kpis(
    *,
    users: ir.Table,
    orders: ir.Table,
    events: ir.Table,
    start: dt_.date,
    end: dt_.date,
    grain: str = "day",
    by: str | None = None,
    min_count: int | None = None,
    ltv_periods: int = 12,
    settings: Any = None,
    engine: str = "duckdb",
    order_items: ir.Table | None = None,
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> Kpis:
    """KPIs from ``start`` to ``end`` (local days, both included) per ``grain`` period.

    Parameters
    ----------
    by
        None, "tier", "lifecycle" (the profile as of each period's last day; needs
        ``settings`` and ``order_items``), "channel" or "cohort" (registration period).
    min_count
        Hide cells resting on fewer users than this (docs/metrics.md lists the count behind
        each metric); None hides nothing.
    ltv_periods
        Periods since acquisition shown in the LTV table (0 = the acquisition period).
    settings, engine, order_items, execute
        As ``Workspace`` hands them over: the shop's time zone, and what runs the queries.
    """
    check_grain(grain)
    check_range(start, end)
    if min_count is not None and min_count < 0:
        raise InputError(f"min_count {min_count} is negative", zh=f"min_count {min_count} 不能为负数")
    execute = execute or _default_execute
    clock = Clock(settings.timezone if settings is not None else "Asia/Shanghai", engine)
    periods = periods_between(start, end, grain)
    start_e, end_e = (start - _EPOCH).days, (end - _EPOCH).days
    first_period = int(periods.period.iloc[0])
    prev_first_e = (first_day(first_period - 1, grain) - _EPOCH).days  # the whole period before
    window_lo = min(prev_first_e, (periods.period_end.iloc[0] - _EPOCH).days - 29)  # MAU of the first period

    act = active_days(events, orders, clock)
    regs = registrations(users, events, orders, clock)
    profile_at = None
    if by in ("tier", "lifecycle"):
        if settings is None or order_items is None:
            raise InputError(f"by {by} needs settings and order_items (the profile's inputs)")
        from userstrata.segments import build_profile  # noqa: PLC0415 - only for tier/lifecycle

        def _profile(day: dt_.date) -> ir.Table:
            return build_profile(users=users, orders=orders, order_items=order_items, events=events,
                                 as_of=day, settings=settings, engine=engine)

        profile_at = _profile

    groups = _groups(by, periods, grain, users=users, regs=regs, profile_at=profile_at)
    keys = ["period", "group"]

    def in_window(eday: ir.IntegerValue) -> ir.BooleanValue:
        return (eday >= start_e) & (eday <= end_e)

    # activity: distinct users per period, user-days (for the daily mean)
    recent = act.filter(act.eday >= window_lo, act.eday <= end_e)
    inside = recent.filter(in_window(recent.eday))
    inside = groups.attach(inside.mutate(period=period_index(inside.day, grain)))
    active = inside.group_by(keys).agg(active_users=inside.user_id.nunique(), user_days=inside.count())

    # WAU / MAU: distinct users active in the 7 / 30 days ending on each period's last day
    ends = ibis.memtable(pd.DataFrame({"period": periods.period.astype("int64"),
                                       "end_eday": [(d - _EPOCH).days for d in periods.period_end]}))
    rolling = []
    for name, span in (("wau", 7), ("mau", 30)):
        j = recent.join(ends, [recent.eday <= ends.end_eday, recent.eday > ends.end_eday - span])
        j = groups.attach(j.select("user_id", "period"))
        rolling.append(j.group_by(keys).agg(**{name: j.user_id.nunique()}))

    # new users and first-order conversion within N days (registration day = day 1)
    first_buy = paid(orders)
    first_buy = first_buy.mutate(eday=_engine.epoch_day(clock.local_date(first_buy.ts)))
    first_buy = first_buy.group_by("user_id").agg(first_buy_eday=first_buy.eday.min())
    new = regs.filter(in_window(regs.reg_eday))
    new = new.left_join(first_buy, "user_id").drop("user_id_right")
    new = groups.attach(new.mutate(period=period_index(new.reg_day, grain)))
    conv: dict[str, ir.Value] = {"new_users": new.count()}
    for n in CONVERSION_DAYS:
        eligible = new.reg_eday + (n - 1) <= end_e
        converted = eligible & new.first_buy_eday.notnull() & (new.first_buy_eday - new.reg_eday <= n - 1)
        conv[f"eligible_{n}d"] = eligible.cast("int64").sum()
        conv[f"converted_{n}d"] = converted.cast("int64").sum()
    newness = new.group_by(keys).agg(**conv)

    # purchases: paying users, orders, GMV, refunds of these orders; repeat buyers
    buys = paid(orders)
    buys = buys.select("user_id", day=clock.local_date(buys.ts), cents=to_cents(buys.amount),
                       refund_cents=to_cents(buys.refund_amount.fill_null(0.0)),
                       refund_day=clock.local_date(ibis.coalesce(buys.refunded_at, buys.ts)))
    buys = buys.mutate(eday=_engine.epoch_day(buys.day), refund_eday=_engine.epoch_day(buys.refund_day))
    sold = buys.filter(in_window(buys.eday))
    sold = groups.attach(sold.mutate(period=period_index(sold.day, grain)))
    money = sold.group_by(keys).agg(
        paying_users=sold.user_id.nunique(), orders=sold.count(), gmv_cents=sold.cents.sum(),
        refunded_cents=sold.refund_cents.sum(),
    )
    last_in = sold.group_by(["user_id", *keys]).agg(last_eday=sold.eday.max())
    last_in = last_in.left_join(first_buy, "user_id").drop("user_id_right")
    repeat = last_in.group_by(keys).agg(
        repeat_buyers=(last_in.last_eday > last_in.first_buy_eday).cast("int64").sum()
    )
    back = buys.filter(buys.refund_cents != 0)
    back = back.filter(in_window(back.refund_eday))
    back = groups.attach(back.mutate(period=period_index(back.refund_day, grain)))
    refunds = back.group_by(keys).agg(refunds_cents=back.refund_cents.sum())

    # churn: active in the previous period (a whole one, even before start), not in this one
    b = act.filter(act.eday >= prev_first_e, act.eday <= end_e)
    b = b.filter((b.eday >= start_e) | (b.eday < (first_day(first_period, grain) - _EPOCH).days))
    b = b.select("user_id", period=period_index(b.day, grain)).distinct()
    prev = b.filter(b.period < int(periods.period.iloc[-1])).mutate(period=lambda t: t.period + 1)
    cur = b.select("user_id", "period", here=ibis.literal(1))
    lost = prev.left_join(cur, ["user_id", "period"])
    lost = groups.attach(lost.select("user_id", "period", here=lost.here))
    churn = lost.group_by(keys).agg(previous_active=lost.count(), churned=lost.here.isnull().cast("int64").sum())

    frames = [execute(e) for e in (active, *rolling, newness, money, repeat, refunds, churn)]
    if by == "cohort":  # the registration period's first day, as the group's name
        for f in frames:
            f["group"] = [g if g == NO_GROUP else str(first_day(int(g), grain)) for g in f["group"]]
    table = _assemble(periods, frames, by, min_count)
    ltv = _ltv(regs, buys, start_e, end_e, grain, ltv_periods, execute, min_count)
    return Kpis(table=table, ltv=ltv, start=start, end=end, grain=grain, by=by, min_count=min_count)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num, den = num.astype("float64"), den.astype("float64")
    return (num / den.where(den > 0)).astype("float64")


def _money_per(cents: pd.Series, count: pd.Series) -> pd.Series:
    """``cents / count`` in currency units, rounded to the cent half away from zero (exact ints)."""
    out = []
    for c, n in zip(cents.astype("int64"), count.astype("int64")):
        if n <= 0:
            out.append(float("nan"))
            continue
        q = (abs(int(c)) * 2 + int(n)) // (2 * int(n))
        out.append((-q if c < 0 else q) / 100)
    return pd.Series(out, index=cents.index, dtype="float64")


def _assemble(periods: pd.DataFrame, frames: list[pd.DataFrame], by: str | None,
              min_count: int | None) -> pd.DataFrame:
    keys = ["period", "group"]
    if by is None:
        base = periods.assign(group=NO_GROUP)
    else:
        seen = pd.concat([f[keys] for f in frames if len(f)], ignore_index=True).drop_duplicates()
        base = periods.merge(seen.astype({"period": "int64"}), on="period", how="inner")
    out = base
    for f in frames:
        out = out.merge(f.astype({"period": "int64"}), on=keys, how="left")
    counts = ["active_users", "user_days", "wau", "mau", "new_users", "paying_users", "orders", "gmv_cents",
              "refunded_cents", "repeat_buyers", "refunds_cents", "previous_active", "churned",
              *[f"{k}_{n}d" for n in CONVERSION_DAYS for k in ("eligible", "converted")]]
    for col in counts:
        out[col] = out[col].fillna(0).astype("int64")
    out["dau"] = out["user_days"] / out["days"]
    out["stickiness"] = _ratio(out["dau"], out["mau"])
    out["gmv"] = out["gmv_cents"] / 100
    out["refunds"] = out["refunds_cents"] / 100
    net = out["gmv_cents"] - out["refunds_cents"]
    out["net_revenue"] = net / 100
    out["arpu"] = _money_per(net, out["active_users"])
    out["arppu"] = _money_per(net, out["paying_users"])
    out["aov"] = _money_per(out["gmv_cents"], out["orders"])
    for n in CONVERSION_DAYS:
        out[f"conversion_{n}d"] = _ratio(out[f"converted_{n}d"], out[f"eligible_{n}d"])
    out["repurchase_rate"] = _ratio(out["repeat_buyers"], out["paying_users"])
    out["refund_rate"] = _ratio(out["refunded_cents"], out["gmv_cents"])
    out["churn_rate"] = _ratio(out["churned"], out["previous_active"])
    support = [c for c in counts if c not in METRICS]
    out = out[["period", "period_start", "period_end", "days", *(["group"] if by else []), *METRICS, *support]]
    out = out.sort_values(["period", *(["group"] if by else [])], kind="stable").reset_index(drop=True)
    if min_count:
        small = {col: out[col] < min_count for col in set(METRICS.values())}  # before any is hidden
        out = out.astype({m: "float64" for m in METRICS})
        for metric, base_col in METRICS.items():
            out.loc[small[base_col], metric] = float("nan")
        out.loc[small["paying_users"], "arpu"] = float("nan")  # ARPU also rests on the buyers' money
        out = out.drop(columns=support)  # the raw counts would undo the hiding
    return out


def _ltv(regs: ir.Table, buys: ir.Table, start_e: int, end_e: int, grain: str, ltv_periods: int,
         execute: Callable[[ir.Expr], pd.DataFrame], min_count: int | None) -> pd.DataFrame:
    """Cumulative net revenue per cohort user, ``age`` periods after the registration period,
    for cohorts registered in the range and ages whose period has ended by ``end``."""
    cohort = regs.filter(regs.reg_eday >= start_e, regs.reg_eday <= end_e)
    cohort = cohort.select("user_id", cohort=period_index(cohort.reg_day, grain))
    sizes = execute(cohort.group_by("cohort").agg(cohort_users=cohort.count()))
    flows = ibis.union(
        buys.select("user_id", day=buys.day, eday=buys.eday, cents=buys.cents),
        buys.filter(buys.refund_cents != 0).select("user_id", day=buys.refund_day, eday=buys.refund_eday,
                                                   cents=-buys.refund_cents),
        distinct=False,
    )
    flows = flows.filter(flows.eday <= end_e)
    j = cohort.join(flows, "user_id")
    j = j.mutate(age=ibis.greatest(period_index(j.day, grain) - j.cohort, 0))
    net = execute(j.filter(j.age <= ltv_periods).group_by(["cohort", "age"]).agg(net_cents=j.cents.sum()))
    end = _EPOCH + dt_.timedelta(days=end_e)
    rows = []
    for c, users in zip(sizes["cohort"].astype("int64"), sizes["cohort_users"].astype("int64")):
        for age in range(ltv_periods + 1):
            if last_day(int(c) + age, grain) > end:
                break
            rows.append((int(c), age, int(users)))
    grid = pd.DataFrame(rows, columns=["cohort", "age", "cohort_users"])
    net = net.astype({"cohort": "int64", "age": "int64"})
    grid = grid.merge(net, on=["cohort", "age"], how="left").sort_values(["cohort", "age"], kind="stable")
    grid["net_cents"] = grid["net_cents"].fillna(0).astype("int64").groupby(grid["cohort"]).cumsum()
    grid["ltv"] = _money_per(grid["net_cents"], grid["cohort_users"])
    grid.insert(1, "cohort_start", [first_day(int(c), grain) for c in grid["cohort"]])
    grid = grid.reset_index(drop=True)[["cohort", "cohort_start", "age", "cohort_users", "net_cents", "ltv"]]
    if min_count:
        grid.loc[grid["cohort_users"] < min_count, "ltv"] = float("nan")
        grid = grid.drop(columns=["net_cents"])
    return grid
