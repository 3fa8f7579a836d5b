"""Funnels (转化漏斗): how many users go through an ordered list of events within a window.

The definition follows PostHog's funnels (docs/funnels.md gives every rule with an example):

- **Entry**: a unit (a user, or a session with ``per="session"``) enters at its *first* step-1
  event whose shop-local day lies in ``[start, end]``; the conversion window starts there.
  With ``weekly`` a unit may enter once per local week (the first step-1 event of that week).
- **ordered** (default): step k is the earliest step-k event at or after the step k-1 event
  (the same timestamp counts as in order; one event never fills two steps) and no later than
  ``window`` after entry. Other events may happen in between.
- **strict**: each step must be the unit's very next event after the previous step (events of
  the same timestamp are ordered by ``event_id``).
- **any**: steps 2..k may come in any order within the window; step k is reached when all of
  steps 1..k have happened, at the latest of their first times.
- **exclusions** ``(event, a, b)``: a unit that does ``event`` after reaching step a and before
  reaching step b (before the window closes when it never reaches b) leaves the funnel entirely
  (every step's count), as PostHog removes it.
- The step names ``purchase`` and ``order`` also match paid orders (``schema.PURCHASE_STATUSES``),
  unioned with the events as ``(user_id, ts, event)``.
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

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.measure.privacy import MIN_COUNT, hide  # noqa: F401 (MIN_COUNT re-exported)
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES

ORDERS = ("ordered", "strict", "any")
PER = ("user", "session")
ORDER_STEPS = ("purchase", "order")  # step names that also match paid orders
NO_GROUP = "(none)"  # the --by value of units whose user has none
# time-to-convert buckets: upper bounds in seconds (the last one open)
TIME_BUCKETS = (
    ("lt_1m", 60), ("1m_10m", 600), ("10m_1h", 3600), ("1h_6h", 6 * 3600), ("6h_1d", 86400),
    ("1d_3d", 3 * 86400), ("3d_7d", 7 * 86400), ("7d_plus", None),
)  # fmt: skip

# zh / en labels an operator reads (headers, chart titles, bucket names, event names)
TEXT: dict[str, tuple[str, str]] = {
    "step": ("步骤", "Step"),
    "event": ("事件", "Event"),
    "group": ("分组", "Group"),
    "week": ("周（周一）", "Week (Monday)"),
    "count_user": ("用户数", "Users"),
    "count_session": ("会话数", "Sessions"),
    "step_conversion": ("环节转化率", "Step conversion"),
    "overall_conversion": ("总转化率", "Overall conversion"),
    "drop_off": ("流失数", "Dropped"),
    "median_seconds": ("转化时长中位数", "Median time from previous"),
    "median_seconds_from_start": ("自首步时长中位数", "Median time from step 1"),
    "bucket": ("转化时长", "Time to convert"),
    "funnel_title": ("转化漏斗（{start} 至 {end}，窗口 {window}）", "Funnel ({start} to {end}, window {window})"),
    "weekly_title": ("每周环节转化率（按进入周）", "Weekly step conversion (by week of entry)"),
    "time_title": ("转化时长分布", "Time to convert"),
    "lt_1m": ("1 分钟内", "< 1 min"),
    "1m_10m": ("1–10 分钟", "1–10 min"),
    "10m_1h": ("10 分钟–1 小时", "10 min–1 h"),
    "1h_6h": ("1–6 小时", "1–6 h"),
    "6h_1d": ("6 小时–1 天", "6 h–1 day"),
    "1d_3d": ("1–3 天", "1–3 days"),
    "3d_7d": ("3–7 天", "3–7 days"),
    "7d_plus": ("7 天以上", "7 days +"),
    "suppressed": ("少于 {n} 的格子已隐藏", "cells under {n} hidden"),
}
EVENT_LABELS: dict[str, str] = {
    "page_view": "浏览", "search": "搜索", "add_to_cart": "加购", "checkout": "结算", "purchase": "购买",
    "order": "下单", "checkin": "签到", "share": "分享", "review": "评价", "post": "发帖", "comment": "评论",
    "like": "点赞", "favorite": "收藏", "invite": "邀请", "use": "使用", "watch": "观看", "redeem": "兑换",
    "login": "登录", "register": "注册",
}  # fmt: skip


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def event_label(name: Any, lang: str = "en") -> str:
    """An event's name as an operator reads it (Chinese for the canonical names)."""
    if name is None or (isinstance(name, float) and pd.isna(name)):
        return ""
    return EVENT_LABELS.get(str(name), str(name)) if lang == "zh" else str(name)


def _default_execute(expr: ir.Expr) -> pd.DataFrame:
    return expr.to_pandas()


# -- inputs ------------------------------------------------------------------------------------
def event_stream(
    events: ir.Table, orders: ir.Table | None, *, names: Sequence[str] | None, order_names: Sequence[str] = (),
    per: str = "user",
) -> ir.Table:
    """``(user_id, session_id, ts, event, event_id)`` of the events named (all when ``names`` is
    None), plus paid orders as events named after each of ``order_names`` (``order:<id>`` ids).

    Anonymous events (no ``user_id``) are left out; with ``per="session"`` so are events without
    a session, and orders (they carry no session) are refused.
    """
    stream = events.filter(events.user_id.notnull()).select(
        "user_id", "session_id", "ts", "event", event_id=events.event_id.cast("string")
    )
    if names is not None:
        stream = stream.filter(stream.event.isin(list(names)))
    if per == "session":
        stream = stream.filter(stream.session_id.notnull())
    parts = [stream]
    if order_names:
        if per == "session":
            raise InputError(
                f"step {order_names[0]!r} means a paid order, and orders carry no session; "
                "a per-session funnel can only use events",
                hint="use per='user' (--per user), or a purchase event of the events table",
                zh=f"步骤 {order_names[0]!r} 指已支付订单，而订单没有会话；按会话的漏斗只能用事件",
                hint_zh="改用按用户（--per user），或使用事件表中的购买事件",
            )
        if orders is None:
            raise InputError(f"step {order_names[0]!r} needs the orders table", zh=f"步骤 {order_names[0]!r} 需要订单表")
        paid = orders.filter(orders.status.isin(list(PURCHASE_STATUSES)) & orders.user_id.notnull())
        for name in order_names:
            parts.append(paid.select(
                "user_id", session_id=ibis.null("string"), ts=paid.ts, event=ibis.literal(name),
                event_id=ibis.literal("order:") + paid.order_id.cast("string"),
            ))  # fmt: skip
    return ibis.union(*parts) if len(parts) > 1 else stream


def check_steps(steps: Sequence[str], exclude: Sequence[Any], *, order: str, per: str,
                window: dt_.timedelta) -> list[tuple[str, int, int]]:
    """Validate the funnel's definition; exclusions as ``(event, from_step, to_step)`` (1-based)."""
    steps = list(steps)
    if len(steps) < 2:
        raise InputError(
            f"a funnel needs at least 2 steps, got {len(steps)}: {steps}",
            hint="e.g. userstrata funnel page_view add_to_cart purchase",
            zh=f"漏斗至少需要 2 个步骤，现在是 {len(steps)} 个：{steps}",
            hint_zh="例如 userstrata funnel page_view add_to_cart purchase",
        )
    if order not in ORDERS:
        raise InputError(f"funnel order {order!r}: use one of {', '.join(ORDERS)}",
                         zh=f"漏斗顺序 {order!r} 无效：可选 {', '.join(ORDERS)}")
    if per not in PER:
        raise InputError(f"funnel unit {per!r}: use one of {', '.join(PER)}",
                         zh=f"漏斗单位 {per!r} 无效：可选 {', '.join(PER)}")
    if window <= dt_.timedelta(0):
        raise InputError(f"conversion window {window} must be positive", hint="e.g. --window 7d",
                         zh=f"转化窗口 {window} 必须大于 0", hint_zh="例如 --window 7d")
    rules = []
    for item in exclude:
        name, a, b = (item, 1, len(steps)) if isinstance(item, str) else tuple(item)
        if not (1 <= a < b <= len(steps)):
            raise InputError(
                f"exclusion {name!r} between steps {a} and {b}: expected 1 <= from < to <= {len(steps)}",
                zh=f"排除事件 {name!r} 的步骤区间 {a}–{b} 无效：应满足 1 <= 起 < 止 <= {len(steps)}",
            )
        if name in steps:
            raise InputError(
                f"exclusion {name!r} is also a step of the funnel {steps}",
                hint="an event cannot be both a step and an exclusion",
                zh=f"排除事件 {name!r} 同时是漏斗步骤 {steps}", hint_zh="同一事件不能既是步骤又被排除",
            )
        rules.append((name, int(a), int(b)))
    return rules


# -- the funnel per unit -----------------------------------------------------------------------
def funnel_units(
    events: ir.Table, steps: Sequence[str], *, start: dt_.date, end: dt_.date,
    window: dt_.timedelta = dt_.timedelta(days=7), orders: ir.Table | None = None, order: str = "ordered",
    exclude: Sequence[Any] = (), per: str = "user", weekly: bool = False, clock: Clock = Clock(),
) -> ir.Table:
    """One row per unit that entered the funnel: its keys (``user_id``, ``session_id`` when per
    session, ``entry_week`` when weekly) and ``at_1 .. at_n``, when it reached each step (null
    when it did not). Units dropped by an exclusion are not in the table.
    """
    rules = check_steps(steps, exclude, order=order, per=per, window=window)
    n = len(steps)
    order_names = [s for s in ORDER_STEPS if s in steps]
    keys = ["user_id"] + (["session_id"] if per == "session" else [])
    names = None if order == "strict" else list(dict.fromkeys([*steps, *(r[0] for r in rules)]))
    stream = event_stream(events, orders, names=names, order_names=order_names, per=per)
    unit = keys + (["entry_week"] if weekly else [])
    seconds = int(window.total_seconds())

    if order == "strict":  # step k is the (k-1)-th event after entry: leads, no joins
        w = ibis.window(group_by=keys, order_by=[stream.ts, stream.event_id])
        stream = stream.mutate(**{
            f"{what}_lead{j}": stream[what].lead(j).over(w) for j in range(1, n) for what in ("event", "ts", "event_id")
        })  # fmt: skip
    firsts = stream.filter(stream.event == steps[0], clock.on_or_after(stream.ts, start), clock.on_or_before(stream.ts, end))
    if weekly:
        firsts = firsts.mutate(entry_week=clock.local_date(firsts.ts).truncate("W"))
    if order == "strict":  # the entry's own row: its leads are the next events
        first_w = ibis.window(group_by=unit, order_by=[firsts.ts, firsts.event_id])
        firsts = firsts.mutate(_rank=ibis.row_number().over(first_w)).filter(lambda t: t._rank == 0)
        units = firsts.select(*unit, t_1=firsts.ts, id_1=firsts.event_id,
                              deadline=firsts.ts + ibis.interval(seconds=seconds),
                              **{c: firsts[c] for c in firsts.columns if "_lead" in c})
    else:
        # a hash aggregate, not a sort: events of the same name at the same second are
        # interchangeable, so which one's id is kept (argmin on a tie) changes no count or time
        units = firsts.group_by(unit).aggregate(t_1=firsts.ts.min(), id_1=firsts.event_id.argmin(firsts.ts))
        units = units.mutate(deadline=units.t_1 + ibis.interval(seconds=seconds))

    if order == "strict":
        reached = ibis.literal(True)
        cols = {}
        for k in range(2, n + 1):
            j = k - 1
            reached = reached & (units[f"event_lead{j}"] == steps[k - 1]) & (units[f"ts_lead{j}"] <= units.deadline)
            cols[f"t_{k}"] = ibis.ifelse(reached, units[f"ts_lead{j}"], ibis.null("timestamp"))
            cols[f"id_{k}"] = ibis.ifelse(reached, units[f"event_id_lead{j}"], ibis.null("string"))
        units = units.mutate(**cols).drop(*[c for c in units.columns if "_lead" in c])
    else:
        for k in range(2, n + 1):
            cand = stream.filter(stream.event == steps[k - 1]).select("ts", "event_id", *keys)
            cand = cand.rename(**{f"_c_{c}": c for c in cand.columns})
            preds = [units[c] == cand[f"_c_{c}"] for c in keys] + [cand._c_ts <= units.deadline]
            prev_t = units[f"t_{k - 1}"] if order == "ordered" else units.t_1
            preds.append(cand._c_ts >= prev_t)
            if order == "ordered":  # at the previous step's second: another event than those used
                not_used = ibis.and_(*(cand._c_event_id != units[f"id_{i}"] for i in range(1, k)))
            else:  # any order: from entry on, another event than the entry
                not_used = cand._c_event_id != units.id_1
            # the OR is applied after the join: DuckDB runs a left join whose condition holds an
            # OR as a nested loop, not a hash join
            joined = units.left_join(cand, preds)
            valid = (cand._c_ts > prev_t) | not_used
            joined = joined.select(*[units[c] for c in units.columns],
                                   _t=ibis.ifelse(valid, cand._c_ts, ibis.null("timestamp")),
                                   _id=ibis.ifelse(valid, cand._c_event_id, ibis.null("string")))
            # the earliest valid candidate (none: null); an aggregate, as for the entry
            units = joined.group_by(list(units.columns)).aggregate(**{
                f"t_{k}": joined._t.min(), f"id_{k}": joined._id.argmin(joined._t)})

    # when each step was reached
    at = {"at_1": units.t_1}
    for k in range(2, n + 1):
        if order == "any":
            done = ibis.and_(*(units[f"t_{i}"].notnull() for i in range(2, k + 1)))
            latest = ibis.greatest(*(units[f"t_{i}"] for i in range(1, k + 1)))
            at[f"at_{k}"] = ibis.ifelse(done, latest, ibis.null("timestamp"))
        else:
            at[f"at_{k}"] = units[f"t_{k}"]
    units = units.mutate(**at)

    never = ibis.literal(dt_.datetime(9999, 12, 31), type="timestamp")
    for name, a, b in rules:
        bad = stream.filter(stream.event == name).select("ts", *keys)
        bad = bad.rename(**{f"_x_{c}": c for c in bad.columns})
        # before step b (< at_b), or up to the deadline (<=) when b is never reached, written as
        # plain column comparisons: a condition computed across both sides, or with an OR,
        # makes DuckDB run the join as a nested loop
        at_b = units[f"at_{b}"]
        units = units.mutate(_x_upto=at_b.fill_null(units.deadline), _x_not=at_b.fill_null(never))
        preds = [units[c] == bad[f"_x_{c}"] for c in keys] + [
            bad._x_ts > units[f"at_{a}"], bad._x_ts <= units._x_upto, bad._x_ts != units._x_not]
        units = units.anti_join(bad, preds).drop("_x_upto", "_x_not")
    return units.select(*unit, *(f"at_{k}" for k in range(1, n + 1)))


# -- the result --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FunnelResult:
    """A funnel's numbers: ``steps`` (one row per step, per group with ``by``), ``weekly`` (per
    week of entry; empty unless asked), ``time_to_convert`` (units per step and time bucket)."""

    steps: pd.DataFrame
    weekly: pd.DataFrame
    time_to_convert: pd.DataFrame
    definition: dict[str, Any]

    def table(self, lang: str = "en") -> pd.DataFrame:
        """``steps`` with headers and event names in ``lang`` (rates as fractions)."""
        return _localize(self.steps, self.definition, lang)

    def weekly_table(self, lang: str = "en") -> pd.DataFrame:
        return _localize(self.weekly, self.definition, lang)

    def chart(self, lang: str = "en") -> Any:
        """Funnel bars: units at each step (one bar per group with ``by``), conversion on the bars."""
        import plotly.graph_objects as go  # noqa: PLC0415 - only charts need it

        d = self.definition
        fig = go.Figure()
        groups = [None] if "group" not in self.steps else list(dict.fromkeys(self.steps["group"]))
        for group in groups:
            part = self.steps if group is None else self.steps[self.steps["group"] == group]
            labels = [f"{k}. {event_label(e, lang)}" for k, e in zip(part["step"], part["event"])]
            fig.add_trace(go.Bar(
                x=labels, y=part["count"].astype("float").tolist(), name=None if group is None else str(group),
                text=[("" if pd.isna(r) else f"{r:.1%}") for r in part["overall_conversion"]],
            ))  # fmt: skip
        count_key = "count_session" if d["per"] == "session" else "count_user"
        fig.update_layout(
            title=text("funnel_title", lang).format(start=d["start"], end=d["end"], window=d["window"]),
            xaxis_title=text("step", lang), yaxis_title=text(count_key, lang), barmode="group",
        )
        return fig

    def weekly_chart(self, lang: str = "en") -> Any:
        """Weekly lines by week of entry: the step conversion of each step (2..n); with ``by``,
        the overall conversion to the last step of each group."""
        import plotly.graph_objects as go  # noqa: PLC0415

        fig = go.Figure()
        frame = self.weekly
        n = len(self.definition["steps"])
        if "group" in frame:
            lines = [(str(g), frame[(frame["group"] == g) & (frame["step"] == n)], "overall_conversion")
                     for g in dict.fromkeys(frame["group"])]
            y_title = "overall_conversion"
        else:
            lines = [(f"{k}. {event_label(self.definition['steps'][k - 1], lang)}", frame[frame["step"] == k],
                      "step_conversion") for k in range(2, n + 1)]
            y_title = "step_conversion"
        for name, part, col in lines:
            part = part.sort_values("entry_week")
            fig.add_trace(go.Scatter(x=[str(pd.Timestamp(w).date()) for w in part["entry_week"]],
                                     y=part[col].astype("float").tolist(), mode="lines+markers", name=name))
        fig.update_layout(title=text("weekly_title", lang), xaxis_title=text("week", lang),
                          yaxis_title=text(y_title, lang), yaxis_tickformat=".0%")
        return fig


def _localize(frame: pd.DataFrame, definition: dict[str, Any], lang: str) -> pd.DataFrame:
    out = frame.copy()
    out["event"] = [event_label(e, lang) for e in out["event"]]
    count_key = "count_session" if definition["per"] == "session" else "count_user"
    names = {c: text(c, lang) for c in out.columns if c in TEXT}
    names.update(count=text(count_key, lang), entry_week=text("week", lang))
    return out.rename(columns=names)


def funnel(
    events: ir.Table, steps: Sequence[str], *, start: dt_.date, end: dt_.date,
    window: dt_.timedelta = dt_.timedelta(days=7), orders: ir.Table | None = None, users: ir.Table | None = None,
    order: str = "ordered", exclude: Sequence[Any] = (), per: str = "user", by: str | None = None,
    weekly: bool = False, min_count: int | None = None, clock: Clock = Clock(),
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> FunnelResult:
    """Counts, step conversion and time to convert of the funnel ``steps`` entered in
    ``[start, end]`` (shop-local days), optionally by a column of ``users`` and by week of entry.

    Parameters
    ----------
    window
        The conversion window from entry (step 1).
    order
        ``ordered`` (other events may come between steps), ``strict`` (none may) or ``any``.
    exclude
        Event names (between step 1 and the last step) or ``(event, from_step, to_step)``.
    per
        ``user`` or ``session`` (steps within one session).
    by
        A column of ``users`` (e.g. ``channel``): one funnel per value.
    min_count
        When given, counts below it (and the rates and times built on them) are hidden.
    """
    execute = execute or _default_execute
    if end < start:
        raise InputError(f"funnel period {start} to {end}: the end is before the start",
                         zh=f"漏斗时间段 {start} 至 {end}：结束日早于开始日")
    options = dict(start=start, end=end, window=window, orders=orders, order=order, exclude=exclude, per=per,
                   clock=clock)
    n = len(steps)
    units = _with_group(funnel_units(events, steps, **options), users, by)
    group = ["group"] if by else []
    counts = execute(_step_counts(units, n, group)).sort_values([*group, "step"]) if n >= 2 else None
    step_frame = _rates(counts, steps, group, min_count)
    times = execute(_time_buckets(units, n, group))
    times = _bucket_frame(times, steps, group, min_count)
    if weekly:
        week_units = _with_group(funnel_units(events, steps, weekly=True, **options), users, by)
        wk = execute(_step_counts(week_units, n, ["entry_week", *group], medians=False))
        weekly_frame = _rates(wk, steps, ["entry_week", *group], min_count)
    else:
        weekly_frame = pd.DataFrame(columns=["entry_week", *group, "step", "event", "count", "step_conversion",
                                             "overall_conversion", "drop_off"])
    definition = dict(steps=list(steps), start=start, end=end, window=_window_text(window), order=order,
                      exclude=[tuple(r) for r in check_steps(steps, exclude, order=order, per=per, window=window)],
                      per=per, by=by, min_count=min_count)
    return FunnelResult(step_frame, weekly_frame, times, definition)


def _window_text(window: dt_.timedelta) -> str:
    s = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _with_group(units: ir.Table, users: ir.Table | None, by: str | None) -> ir.Table:
    if by is None:
        return units
    if users is None or by not in users.columns or by == "user_id":
        allowed = [c for c in (users.columns if users is not None else ()) if c != "user_id"]
        raise InputError(
            f"--by {by!r} is not a column of the users table; expected one of {', '.join(allowed)}",
            zh=f"--by {by!r} 不是用户表的列；可选 {', '.join(allowed)}",
        )
    groups = users.select("user_id", _group=users[by].cast("string")).distinct(on="user_id", keep="first")
    joined = units.left_join(groups, units.user_id == groups.user_id)
    joined = joined.select(*[units[c] for c in units.columns], group=groups._group.fill_null(NO_GROUP))
    return joined


def _seconds(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    return later.epoch_seconds() - earlier.epoch_seconds()


def _step_counts(units: ir.Table, n: int, group: list[str], *, medians: bool = True) -> ir.Table:
    """Long table: one row per (group..., step) with ``count`` and the median times."""
    parts = []
    for k in range(1, n + 1):
        at = units[f"at_{k}"]
        aggs = {"count": at.count()}
        if medians:
            prev = units[f"at_{k - 1}"] if k > 1 else units.at_1
            aggs["median_seconds"] = ibis.ifelse(at.notnull(), _seconds(at, prev), ibis.null("int64")).median()
            aggs["median_seconds_from_start"] = ibis.ifelse(
                at.notnull(), _seconds(at, units.at_1), ibis.null("int64")).median()
        part = units.group_by(group).aggregate(**aggs) if group else units.aggregate(**aggs)
        parts.append(part.mutate(step=ibis.literal(k)))
    return ibis.union(*parts)


def _time_buckets(units: ir.Table, n: int, group: list[str]) -> ir.Table:
    """Units per (group..., step, bucket) of the time from the previous step (steps 2..n)."""
    parts = []
    for k in range(2, n + 1):
        reached = units.filter(units[f"at_{k}"].notnull())
        secs = _seconds(reached[f"at_{k}"], reached[f"at_{k - 1}"])
        branches = [(secs < bound, ibis.literal(i)) for i, (_, bound) in enumerate(TIME_BUCKETS) if bound]
        reached = reached.mutate(bucket=ibis.cases(*branches, else_=ibis.literal(len(TIME_BUCKETS) - 1)))
        parts.append(reached.group_by([*group, "bucket"]).aggregate(count=reached.count()).mutate(step=ibis.literal(k)))
    return ibis.union(*parts)


def _rates(counts: pd.DataFrame, steps: Sequence[str], group: list[str], min_count: int | None) -> pd.DataFrame:
    frame = counts.copy()
    frame["step"] = frame["step"].astype(int)
    frame["count"] = frame["count"].astype("int64")
    frame = frame.sort_values([*group, "step"], kind="stable").reset_index(drop=True)
    frame.insert(len(group) + 1, "event", [steps[k - 1] for k in frame["step"]])
    keyed = frame.set_index([*group, "step"])["count"] if group else frame.set_index("step")["count"]

    def lookup(step_no: pd.Series) -> pd.Series:
        idx = list(zip(*[frame[g] for g in group], step_no)) if group else list(step_no)
        return pd.Series(keyed.reindex(idx).to_numpy(dtype=float), index=frame.index)

    previous = lookup(frame["step"] - 1).where(frame["step"] > 1, frame["count"].astype(float))
    first = lookup(pd.Series(1, index=frame.index))
    count = frame["count"].astype(float)
    frame["step_conversion"] = (count / previous).where(previous > 0)
    frame["overall_conversion"] = (count / first).where(first > 0)
    frame["drop_off"] = (previous - count).astype("Int64")
    hidden = hide(frame["count"], min_count) | hide(previous.fillna(0).astype("int64"), min_count)
    for col in frame.columns:
        if col in ("count", "drop_off"):
            frame[col] = frame[col].astype("Int64").mask(hidden)
        elif col in ("step_conversion", "overall_conversion", "median_seconds", "median_seconds_from_start"):
            frame[col] = frame[col].astype(float).mask(hidden)
    cols = [*group, "step", "event", "count", "step_conversion", "overall_conversion", "drop_off"]
    cols += [c for c in ("median_seconds", "median_seconds_from_start") if c in frame]
    return frame[cols]


def _bucket_frame(times: pd.DataFrame, steps: Sequence[str], group: list[str], min_count: int | None) -> pd.DataFrame:
    """Every (group..., step, bucket), zeros included, in bucket order."""
    names = [b for b, _ in TIME_BUCKETS]
    groups = [tuple(g) for g in times[group].drop_duplicates().itertuples(index=False)] if group else [()]
    full = pd.DataFrame(
        [(*g, k, i) for g in groups for k in range(2, len(steps) + 1) for i in range(len(names))],
        columns=[*group, "step", "bucket"],
    )
    times = times.assign(step=times["step"].astype(int), bucket=times["bucket"].astype(int))
    out = full.merge(times, on=[*group, "step", "bucket"], how="left")
    out["count"] = out["count"].fillna(0).astype("Int64")
    out["count"] = out["count"].mask(hide(out["count"], min_count))
    out["event"] = [steps[k - 1] for k in out["step"]]
    out["bucket"] = [names[i] for i in out["bucket"]]
    return out[[*group, "step", "event", "bucket", "count"]]
