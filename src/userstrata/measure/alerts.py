"""Early warnings (流失预警): rules evaluated as of a day, kept as alerts that open and close.

Each rule is a function of the canonical tables (and the profile, for tier and lifecycle) that
returns the *current* findings as of ``as_of``: an Ibis expression with the rule's numbers,
one row per user (or per segment and day for the segment rule). :func:`current_alerts` runs
them all and writes what was seen in words (zh and en); :func:`evaluate_alerts` keeps them in
the workspace's ``alerts`` table: a finding that still holds keeps its alert (one row, same
id), a new one opens an alert, an open alert that no longer holds is closed on ``as_of``.

Days are shop-local (Clock). A user is *active* on a day with any event or purchase.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine, i18n
from userstrata.config import AlertSettings, Settings
from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._money import to_cents
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES, TIERS

__all__ = [
    "ALERT_COLUMNS", "FINDING_COLUMNS", "RULES", "AlertReport", "activity_days", "activity_drop",
    "current_alerts", "evaluate_alerts", "expiring_memberships", "list_alerts", "no_login_after_course",
    "segment_metric_drop", "silent_high_tier", "streak_at_risk", "unused_purchase",
]  # fmt: skip

ALERTS = "alerts"
ALERT_RUNS = "alert_runs"
SEGMENT_METRICS = ("active_users", "orders", "conversion", "gmv")
RULES = (
    "activity_drop", "silent_high_tier", "unused_purchase", "no_login_after_course", "streak_at_risk",
    "membership_expiring", *(f"segment_{m}" for m in SEGMENT_METRICS),
)  # fmt: skip
FINDING_COLUMNS = ("rule", "subject_type", "subject", "severity", "tier", "since", "seen", "seen_zh", "seen_en")
ALERT_COLUMNS = ("alert_id", *FINDING_COLUMNS, "opened_on", "last_seen_on", "closed_on")
SEVERITIES = ("high", "medium", "low")
# user rules are weighted by tier: an engaged or co-builder user first
_TIER_SEVERITY = {"co_builder": "high", "engaged": "high", "regular": "medium", "explorer": "low"}

Execute = Callable[[ir.Expr], pd.DataFrame]

RULE_LABELS: dict[str, tuple[str, str]] = {
    "activity_drop": ("活跃度骤降", "Activity drop"),
    "silent_high_tier": ("高价值用户沉默", "High-tier user silent"),
    "unused_purchase": ("购买后未使用", "Bought, not used"),
    "no_login_after_course": ("购课后未登录", "No login after buying a course"),
    "streak_at_risk": ("连续签到即将中断", "Check-in streak at risk"),
    "membership_expiring": ("会员将到期且续费可能低", "Membership expiring, renewal unlikely"),
    "segment_active_users": ("分群活跃用户下滑", "Segment active users down"),
    "segment_orders": ("分群订单数下滑", "Segment orders down"),
    "segment_conversion": ("分群转化率下滑", "Segment conversion down"),
    "segment_gmv": ("分群 GMV 下滑", "Segment GMV down"),
}
SEVERITY_LABELS = {"high": ("高", "high"), "medium": ("中", "medium"), "low": ("低", "low")}
_METRIC_LABELS = {
    "active_users": ("活跃用户数", "active users"),
    "orders": ("订单数", "orders"),
    "conversion": ("转化率", "conversion"),
    "gmv": ("GMV", "GMV"),
}


def rule_label(rule: str, lang: str = "en") -> str:
    zh, en = RULE_LABELS.get(rule, (rule, rule))
    return zh if lang == "zh" else en


# --------------------------------------------------------------------------- building blocks


def _bought(orders: ir.Table, clock: Clock, as_of: dt_.date, start: dt_.date | None = None) -> ir.Table:
    o = orders.filter(clock.on_or_before(orders.ts, as_of), orders.status.isin(PURCHASE_STATUSES) | orders.status.isnull())
    if start is not None:
        o = o.filter(clock.on_or_after(o.ts, start))
    return o.mutate(day=clock.local_date(o.ts))


def activity_days(events: ir.Table, orders: ir.Table, *, clock: Clock, start: dt_.date | None,
                  end: dt_.date) -> ir.Table:
    """``user_id, day``: each local day from ``start`` (None: the first) to ``end`` with any event
    or purchase of a known user, once."""
    # the window in each part, on the stored timestamps: the distinct pairs are only those of the window
    e = events.filter(events.user_id.notnull(), clock.on_or_before(events.ts, end))
    if start is not None:
        e = e.filter(clock.on_or_after(e.ts, start))
    e = e.select("user_id", day=clock.local_date(e.ts))
    o = _bought(orders, clock, end, start).select("user_id", "day")
    return ibis.union(e, o, distinct=True)


def _last_active(events: ir.Table, orders: ir.Table, *, clock: Clock, end: dt_.date) -> ir.Table:
    """``user_id, last_active``: the last local day up to ``end`` with any event or purchase.

    The latest of each source's own latest day: the same as the maximum over ``activity_days``
    without first making every (user, day) pair distinct, a hash table of the whole history."""
    e = events.filter(events.user_id.notnull(), clock.on_or_before(events.ts, end))
    e = e.select("user_id", day=clock.local_date(e.ts))
    e = e.group_by("user_id").agg(day=e.day.max())
    o = _bought(orders, clock, end)
    o = o.group_by("user_id").agg(day=o.day.max())
    both = ibis.union(e, o)
    return both.group_by("user_id").agg(last_active=both.day.max())


def _tiers(profile: ir.Table) -> ir.Table:
    return profile.select("user_id", "tier")


def _with_tier(t: ir.Table, profile: ir.Table) -> ir.Table:
    """``t`` with each user's tier (null for a user the profile does not know)."""
    tiers = _tiers(profile).rename(_tier_user="user_id")
    j = t.join(tiers, t.user_id == tiers._tier_user, how="left")
    return j.drop("_tier_user")


def _day(value: dt_.date) -> ir.DateValue:
    return ibis.literal(value, type="date")


def activity_drop(events: ir.Table, orders: ir.Table, profile: ir.Table, *, as_of: dt_.date, clock: Clock,
                  rules: AlertSettings) -> ir.Table:
    """Users whose active days in the last ``drop_recent_days`` are under ``drop_ratio`` of their
    rate in the ``drop_baseline_days`` before (scaled to the same length).

    ``user_id, tier, recent_days, baseline_days``; fires when ``recent_days * B < ratio *
    baseline_days * R`` and ``baseline_days >= drop_min_baseline_days``.
    """
    r, b = rules.drop_recent_days, rules.drop_baseline_days
    recent_start = as_of - dt_.timedelta(days=r - 1)
    base_start = recent_start - dt_.timedelta(days=b)
    days = activity_days(events, orders, clock=clock, start=base_start, end=as_of)
    per_user = days.group_by("user_id").agg(
        recent_days=(days.day >= recent_start).sum().cast("int64"),
        baseline_days=(days.day < recent_start).sum().cast("int64"),
    )
    hit = per_user.filter(
        per_user.baseline_days >= rules.drop_min_baseline_days,
        per_user.recent_days * b < rules.drop_ratio * per_user.baseline_days * r,
    )
    return _with_tier(hit, profile).select(
        "user_id", "tier", "recent_days", "baseline_days"
    )


def silent_high_tier(events: ir.Table, orders: ir.Table, profile: ir.Table, *, as_of: dt_.date, clock: Clock,
                     rules: AlertSettings) -> ir.Table:
    """Users of ``silent_tiers`` with no activity for ``silent_days`` days or more
    (``as_of - last active day``): ``user_id, tier, last_active, silent_days``."""
    last = _last_active(events, orders, clock=clock, end=as_of)
    top = _tiers(profile).filter(profile.tier.isin(rules.silent_tiers))
    out = top.join(last, "user_id")
    out = out.mutate(silent_days=_engine.days_between(out.last_active, as_of))
    return out.filter(out.silent_days >= rules.silent_days).select("user_id", "tier", "last_active", "silent_days")


def _category_purchases(orders: ir.Table, order_items: ir.Table, categories: list[str], *, as_of: dt_.date,
                        clock: Clock, lookback_days: int) -> ir.Table:
    """One row per order and SKU of ``categories`` bought in the ``lookback_days`` up to ``as_of``
    (orders refunded in full left out): ``order_id, user_id, ts, day, sku``."""
    o = purchases(orders, as_of=as_of, clock=clock)
    o = o.filter(o.status.isnull() | (o.status != "refunded"),
                 o.order_date > _day(as_of - dt_.timedelta(days=lookback_days)))
    items = order_items.filter(order_items.category.isin(categories)).select("order_id", "sku").distinct()
    return o.join(items, "order_id").select("order_id", "user_id", "ts", day=o.order_date, sku=items.sku)


def _first_per_user(t: ir.Table, *order: Any) -> ir.Table:
    w = ibis.window(group_by=t.user_id, order_by=list(order))
    ranked = t.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def unused_purchase(events: ir.Table, orders: ir.Table, order_items: ir.Table, profile: ir.Table, *,
                    as_of: dt_.date, clock: Clock, rules: AlertSettings) -> ir.Table:
    """Users with a course or membership (``unused_categories``) bought ``unused_days`` days ago
    or more (within ``purchase_lookback_days``) and no usage event (``usage_events``) since the
    purchase: ``user_id, tier, sku, bought_on, days_unused, unused_purchases`` (the earliest one)."""
    bought = _category_purchases(orders, order_items, rules.unused_categories, as_of=as_of, clock=clock,
                                 lookback_days=rules.purchase_lookback_days)
    bought = bought.filter(_engine.days_between(bought.day, as_of) >= rules.unused_days)
    use = events.filter(events.user_id.notnull(), events.event.isin(rules.usage_events))
    use = use.filter(clock.on_or_before(use.ts, as_of)).select(use_user=use.user_id, use_ts=use.ts)
    # one anti join: a purchase with any usage event of its buyer at or after it is used
    unused = bought.anti_join(use, [bought.user_id == use.use_user, use.use_ts >= bought.ts])
    counts = unused.group_by("user_id").agg(unused_purchases=unused.order_id.nunique().cast("int64"))
    first = _first_per_user(unused, unused.ts, unused.order_id, unused.sku)
    out = _with_tier(first.join(counts, "user_id"), profile)
    return out.select("user_id", "tier", "sku", bought_on=out.day,
                      days_unused=_engine.days_between(out.day, as_of), unused_purchases=out.unused_purchases)


def no_login_after_course(events: ir.Table, orders: ir.Table, order_items: ir.Table, profile: ir.Table, *,
                          as_of: dt_.date, clock: Clock, rules: AlertSettings) -> ir.Table:
    """Users who bought a course (``course_categories``, within ``purchase_lookback_days``) and
    have not logged in for ``no_login_days`` days since: counted from their last login after
    the latest course purchase, else from that purchase's day.

    ``user_id, tier, bought_on, last_login, days_without_login``.
    """
    bought = _category_purchases(orders, order_items, rules.course_categories, as_of=as_of, clock=clock,
                                 lookback_days=rules.purchase_lookback_days)
    latest = bought.group_by("user_id").agg(bought_on=bought.day.max(), bought_ts=bought.ts.max())
    logins = events.filter(events.user_id.notnull(), events.event == "login", clock.on_or_before(events.ts, as_of))
    logins = logins.select(login_user=logins.user_id, login_ts=logins.ts, day=clock.local_date(logins.ts))
    after = latest.join(logins, (latest.user_id == logins.login_user) & (logins.login_ts >= latest.bought_ts))
    last_login = after.group_by("user_id").agg(last_login=after.day.max())
    last_login = last_login.rename(_login_user="user_id")
    out = latest.join(last_login, latest.user_id == last_login._login_user, how="left").drop("_login_user")
    out = _with_tier(out, profile)
    anchor = ibis.coalesce(out.last_login, out.bought_on)
    out = out.mutate(days_without_login=_engine.days_between(anchor, as_of))
    out = out.filter(out.days_without_login >= rules.no_login_days)
    return out.select("user_id", "tier", "bought_on", "last_login", "days_without_login")


def streak_at_risk(events: ir.Table, profile: ir.Table, *, as_of: dt_.date, clock: Clock,
                   rules: AlertSettings) -> ir.Table:
    """Users who checked in on each of the ``streak_days`` (or more) days up to the day before
    ``as_of`` and not yet on ``as_of``: ``user_id, tier, streak_days`` (the run's length, counted
    over the last 400 days)."""
    c = events.filter(events.user_id.notnull(), events.event == "checkin", clock.on_or_before(events.ts, as_of),
                      clock.on_or_after(events.ts, as_of - dt_.timedelta(days=399)))
    c = c.select("user_id", day=clock.local_date(c.ts)).distinct()
    today = c.filter(c.day == _day(as_of)).select("user_id")
    before = c.filter(c.day < _day(as_of))
    # gaps and islands: within a run of consecutive days, day - position is constant
    w = ibis.window(group_by=before.user_id, order_by=[before.day])
    runs = before.mutate(run=_engine.epoch_day(before.day) - ibis.row_number().over(w))
    runs = runs.group_by("user_id", "run").agg(streak_days=runs.day.count().cast("int64"), run_end=runs.day.max())
    runs = runs.filter(runs.run_end == _day(as_of - dt_.timedelta(days=1)), runs.streak_days >= rules.streak_days)
    out = _with_tier(runs.anti_join(today, "user_id"), profile)
    return out.select("user_id", "tier", "streak_days")


def expiring_memberships(members: pd.DataFrame, tiers: pd.DataFrame, *, rules: AlertSettings) -> pd.DataFrame:
    """Current memberships (``renewals(...).members``) ending within ``expiry_days`` whose
    P(renew next term) is below ``renew_probability_below`` (members of a plan the model could
    not fit have no probability and are left out): ``user_id, tier, plan, term_end,
    days_to_expiry, p_renew_next`` (one row per user: the soonest)."""
    m = members[
        (members["status"] != "lapsed")
        & (members["days_to_expiry"] >= 0)
        & (members["days_to_expiry"] <= rules.expiry_days)
        & (members["p_renew_next"] < rules.renew_probability_below)
    ]
    m = m.sort_values(["user_id", "days_to_expiry", "plan"], kind="stable").drop_duplicates("user_id")
    m = m.merge(tiers[["user_id", "tier"]], on="user_id", how="left")
    return m[["user_id", "tier", "plan", "term_end", "days_to_expiry", "p_renew_next"]].reset_index(drop=True)


def _segment_of(by: str, profile: ir.Table, users: ir.Table) -> ir.Table:
    if by in profile.columns:
        t = profile
    elif by in users.columns and by != "user_id":
        t = users
    else:
        raise InputError(
            f"alerts.segment_by: {by!r} is neither a profile nor a users column",
            hint="use tier, lifecycle, rfm_cell or a users column such as channel",
            zh=f"alerts.segment_by：{by!r} 既不是画像字段也不是用户表字段",
            hint_zh="可用 tier、lifecycle、rfm_cell 或用户表字段（如 channel）",
        )
    t = t.filter(t[by].notnull())
    return t.select("user_id", segment=t[by].cast("string"))


def segment_metric_drop(events: ir.Table, orders: ir.Table, users: ir.Table, profile: ir.Table, *, by: str,
                        as_of: dt_.date, clock: Clock, rules: AlertSettings) -> ir.Table:
    """Segments (users grouped by ``by`` as of ``as_of``) whose metric is down more than
    ``segment_drop`` on each of the last ``segment_days`` days against the mean of the same
    weekday in the ``baseline_weeks`` weeks before, with a baseline volume of ``min_volume``.

    Metrics per day (``segment_metrics``): ``active_users`` (users active that day),
    ``orders`` (purchase orders), ``gmv`` (their amount, in cents; volume = orders) and
    ``conversion`` (users with event B / users with event A that day, ``conversion_events``;
    the baseline is the ratio of the weeks' sums; volume = users with A).

    Returns one row per firing segment, metric and day: ``by, segment, metric, day, value,
    baseline, volume`` (volume and baseline per day at baseline).
    """
    n_days, weeks = rules.segment_days, rules.baseline_weeks
    first = as_of - dt_.timedelta(days=7 * weeks + 6)
    seg = _segment_of(by, profile, users)
    metrics = list(dict.fromkeys(rules.segment_metrics))
    parts = []

    def _daily(t: ir.Table, metric: str, num: ir.Value, den: ir.Value, vol: ir.Value) -> ir.Table:
        return t.select(metric=ibis.literal(metric), segment=t.segment, day=t.day, num=num.cast("float64"),
                        den=den.cast("float64"), vol=vol.cast("float64"))

    if "active_users" in metrics:
        act = activity_days(events, orders, clock=clock, start=first, end=as_of).join(seg, "user_id")
        act = act.group_by("segment", "day").agg(n=act.user_id.nunique())
        parts.append(_daily(act, "active_users", act.n, ibis.literal(1), act.n))
    if "orders" in metrics or "gmv" in metrics:
        o = _bought(orders, clock, as_of, first).join(seg, "user_id")
        o = o.group_by("segment", "day").agg(n=o.order_id.nunique(), cents=to_cents(o.amount).sum())
        if "orders" in metrics:
            parts.append(_daily(o, "orders", o.n, ibis.literal(1), o.n))
        if "gmv" in metrics:
            parts.append(_daily(o, "gmv", o.cents, ibis.literal(1), o.n))
    if "conversion" in metrics:
        a_event, b_event = rules.conversion_events
        e = events.filter(events.user_id.notnull(), events.event.isin([a_event, b_event]),
                          clock.on_or_after(events.ts, first), clock.on_or_before(events.ts, as_of))
        e = e.mutate(day=clock.local_date(e.ts)).join(seg, "user_id")
        e = e.group_by("segment", "day").agg(
            a=e.user_id.nunique(where=e.event == a_event), b=e.user_id.nunique(where=e.event == b_event)
        )
        parts.append(_daily(e, "conversion", e.b, e.a, e.a))
    if not parts:
        raise InputError("alerts.segment_metrics is empty", zh="alerts.segment_metrics 为空")
    daily = ibis.union(*parts) if len(parts) > 1 else parts[0]
    k = _engine.days_between(daily.day, as_of)
    daily = daily.mutate(phase=k % 7, week=(k - k % 7) // 7)
    daily = daily.filter(daily.phase < n_days)
    base = daily.filter(daily.week >= 1, daily.week <= weeks)
    base = base.group_by("metric", "segment", "phase").agg(
        b_num=base.num.sum() / weeks, b_den=base.den.sum() / weeks, b_vol=base.vol.sum() / weeks
    )
    now = daily.filter(daily.week == 0).select("metric", "segment", "phase", "num", "den")
    j = base.join(now, ["metric", "segment", "phase"], how="left")
    is_ratio = j.metric == "conversion"
    num, den = j.num.fill_null(0.0), j.den.fill_null(0.0)
    value = ibis.ifelse(is_ratio, ibis.ifelse(den > 0, num / den, ibis.null("float64")), num)
    baseline = ibis.ifelse(is_ratio, ibis.ifelse(j.b_den > 0, j.b_num / j.b_den, ibis.null("float64")), j.b_num)
    j = j.mutate(value=value, baseline=baseline, volume=j.b_vol)
    down = (j.volume >= rules.min_volume) & (j.value < j.baseline * (1 - rules.segment_drop))
    j = j.mutate(down=down.fill_null(False).cast("int64"))
    w = ibis.window(group_by=[j.metric, j.segment])
    j = j.mutate(days_down=j.down.sum().over(w))
    hit = j.filter(j.days_down == n_days)
    return hit.select(
        by=ibis.literal(by), segment=hit.segment, metric=hit.metric,
        day=_days_before(as_of, hit.phase),
        value=hit.value, baseline=hit.baseline, volume=hit.volume,
    )


def _days_before(as_of: dt_.date, n: ir.IntegerValue) -> ir.DateValue:
    # a date minus a number of days, portably: as_of is a constant, so pick among the few values
    return ibis.cases(*[(n == i, _day(as_of - dt_.timedelta(days=i))) for i in range(7)], else_=ibis.null("date"))


# --------------------------------------------------------------------------- words


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x == x else "n/a"


def _tier_text(tier: Any, lang: str) -> str:
    return i18n.label(str(tier), lang) if isinstance(tier, str) else ""


def _user_rows(frame: pd.DataFrame, rule: str, since, seen, zh, en) -> list[dict]:
    rows = []
    for r in frame.to_dict("records"):
        tier = r.get("tier") if isinstance(r.get("tier"), str) else None
        rows.append(dict(
            rule=rule, subject_type="user", subject=str(r["user_id"]),
            severity=_TIER_SEVERITY.get(tier, "low"), tier=tier, since=since(r),
            seen=json.dumps(seen(r), ensure_ascii=False, sort_keys=True, default=str), seen_zh=zh(r), seen_en=en(r),
        ))  # fmt: skip
    return rows


def _as_date(value: Any) -> dt_.date | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).date()


def _describe_users(rule: str, frame: pd.DataFrame, *, as_of: dt_.date, rules: AlertSettings) -> list[dict]:
    d = dt_.timedelta
    r, b = rules.drop_recent_days, rules.drop_baseline_days
    if rule == "activity_drop":
        def per(x):
            return x["baseline_days"] * r / b
        return _user_rows(
            frame, rule, lambda x: None,
            lambda x: {"recent_days": int(x["recent_days"]), "baseline_days": int(x["baseline_days"]),
                       "window_days": r, "baseline_window_days": b, "baseline_per_window": round(per(x), 1)},
            lambda x: f"活跃天数近{r}天 {int(x['recent_days'])} 天，此前 {b} 天平均每 {r} 天 {_fmt(per(x))} 天",
            lambda x: f"active days: {int(x['recent_days'])} in the last {r} days; "
                      f"{_fmt(per(x))} per {r} days over the {b} days before",
        )
    if rule == "silent_high_tier":
        return _user_rows(
            frame, rule, lambda x: _as_date(x["last_active"]) + d(days=rules.silent_days),
            lambda x: {"last_active": str(_as_date(x["last_active"])), "silent_days": int(x["silent_days"])},
            lambda x: f"{_tier_text(x['tier'], 'zh')}已 {int(x['silent_days'])} 天无任何行为"
                      f"（最后活跃 {_as_date(x['last_active'])}）",
            lambda x: f"{_tier_text(x['tier'], 'en')} with no activity for {int(x['silent_days'])} days "
                      f"(last active {_as_date(x['last_active'])})",
        )
    if rule == "unused_purchase":
        usage = "/".join(rules.usage_events)

        def more(x, lang):
            n = int(x["unused_purchases"]) - 1
            if n <= 0:
                return ""
            return f"，另有 {n} 笔同类购买未使用" if lang == "zh" else f"; {n} more such purchase(s) unused"
        return _user_rows(
            frame, rule, lambda x: _as_date(x["bought_on"]) + d(days=rules.unused_days),
            lambda x: {"sku": x["sku"], "bought_on": str(_as_date(x["bought_on"])),
                       "days_unused": int(x["days_unused"]), "unused_purchases": int(x["unused_purchases"])},
            lambda x: f"{_as_date(x['bought_on'])} 购买 {x['sku']}，{int(x['days_unused'])} 天内无 {usage} 行为"
                      + more(x, "zh"),
            lambda x: f"bought {x['sku']} on {_as_date(x['bought_on'])}; no {usage} in "
                      f"{int(x['days_unused'])} days" + more(x, "en"),
        )
    if rule == "no_login_after_course":
        def last(x, lang):
            day = _as_date(x["last_login"])
            if day is None:
                return "购课后未登录过" if lang == "zh" else "no login since"
            return f"最后登录 {day}" if lang == "zh" else f"last login {day}"
        return _user_rows(
            frame, rule,
            lambda x: (_as_date(x["last_login"]) or _as_date(x["bought_on"])) + d(days=rules.no_login_days),
            lambda x: {"bought_on": str(_as_date(x["bought_on"])), "last_login": str(_as_date(x["last_login"]))
                       if _as_date(x["last_login"]) else None, "days_without_login": int(x["days_without_login"])},
            lambda x: f"{_as_date(x['bought_on'])} 购课，已连续 {int(x['days_without_login'])} 天未登录（{last(x, 'zh')}）",
            lambda x: f"bought a course on {_as_date(x['bought_on'])}; no login for "
                      f"{int(x['days_without_login'])} days ({last(x, 'en')})",
        )
    if rule == "streak_at_risk":
        return _user_rows(
            frame, rule, lambda x: as_of,
            lambda x: {"streak_days": int(x["streak_days"]), "checked_in_today": False},
            lambda x: f"已连续签到 {int(x['streak_days'])} 天，今天（{as_of}）还没签到",
            lambda x: f"checked in {int(x['streak_days'])} days in a row; not yet today ({as_of})",
        )
    if rule == "membership_expiring":
        return _user_rows(
            frame, rule, lambda x: _as_date(x["term_end"]) - d(days=rules.expiry_days),
            lambda x: {"plan": x["plan"], "term_end": str(_as_date(x["term_end"])),
                       "days_to_expiry": round(float(x["days_to_expiry"]), 1),
                       "p_renew_next": round(float(x["p_renew_next"]), 3)},
            lambda x: f"会员 {x['plan']} {_fmt(x['days_to_expiry'])} 天后到期（{_as_date(x['term_end'])}），"
                      f"续费概率 {x['p_renew_next']:.0%}",
            lambda x: f"membership {x['plan']} ends in {_fmt(x['days_to_expiry'])} days "
                      f"({_as_date(x['term_end'])}); P(renew) {x['p_renew_next']:.0%}",
        )
    raise ValueError(rule)


def _metric_value(metric: str, v: float) -> str:
    if v != v:
        return "n/a"
    if metric == "conversion":
        return f"{v:.1%}"
    if metric == "gmv":
        return f"{v / 100:,.0f}"
    return _fmt(v)


def _describe_segments(frame: pd.DataFrame, *, rules: AlertSettings) -> list[dict]:
    rows = []
    a_event, b_event = rules.conversion_events
    for (by, segment, metric), g in frame.groupby(["by", "segment", "metric"], sort=True):
        g = g.assign(day=[_as_date(x) for x in g["day"]]).sort_values("day")
        drops = [1 - v / base if base else float("nan") for v, base in zip(g["value"], g["baseline"])]
        mean_drop = sum(drops) / len(drops)
        severity = "high" if mean_drop >= 0.5 else "medium" if mean_drop >= 0.3 else "low"
        vals = " / ".join(_metric_value(metric, v) for v in g["value"])
        bases = " / ".join(_metric_value(metric, v) for v in g["baseline"])
        downs = " / ".join(f"{x:.0%}" for x in drops)
        zh_m, en_m = _METRIC_LABELS[metric]
        if metric == "conversion":
            zh_m, en_m = f"{zh_m}（{a_event}→{b_event}）", f"{en_m} ({a_event}→{b_event})"
        if metric == "gmv":
            zh_m, en_m = f"{zh_m}（元）", f"{en_m} (yuan)"
        seg_zh = f"{i18n.label(by, 'zh')}={i18n.label(segment, 'zh')}"
        seg_en = f"{by}={segment}"
        n, w = len(g), rules.baseline_weeks
        rows.append(dict(
            rule=f"segment_{metric}", subject_type="segment", subject=f"{by}={segment}", severity=severity,
            tier=segment if by == "tier" else None, since=g["day"].iloc[0],
            seen=json.dumps({"by": by, "segment": segment, "metric": metric,
                             "days": [str(x) for x in g["day"]],
                             "values": [round(float(v), 4) for v in g["value"]],
                             "baselines": [round(float(v), 4) for v in g["baseline"]],
                             "baseline_volume": [round(float(v), 1) for v in g["volume"]]},
                            ensure_ascii=False, sort_keys=True),
            seen_zh=f"{seg_zh} 的{zh_m}近 {n} 天 {vals}，前 {w} 周同星期平均 {bases}（降 {downs}）",
            seen_en=f"{seg_en}: {en_m} on the last {n} days {vals}; same weekday of the {w} weeks before "
                    f"{bases} (down {downs})",
        ))  # fmt: skip
    return rows


# --------------------------------------------------------------------------- all rules


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    tier_rank = {t: i for i, t in enumerate(reversed(TIERS))}  # co_builder first
    key = pd.DataFrame({
        "s": frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)}),
        "t": frame["tier"].map(tier_rank).fillna(len(TIERS)),
        "r": frame["rule"].map({r: i for i, r in enumerate(RULES)}).fillna(len(RULES)),
        "u": frame["subject"],
    })
    order = key.sort_values(["s", "t", "r", "u"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def current_alerts(
    users: ir.Table, orders: ir.Table, order_items: ir.Table, events: ir.Table, *, as_of: dt_.date,
    settings: Settings, engine: str, execute: Execute, profile: ir.Table | pd.DataFrame,
    members: pd.DataFrame | None = None, rules: list[str] | None = None,
) -> pd.DataFrame:
    """Every rule's findings as of ``as_of`` (``FINDING_COLUMNS``), highest severity and tier first.

    ``profile`` gives each user's tier and lifecycle as of ``as_of`` (``build_profile``);
    ``members`` is ``renewals(...).members`` (None: no membership rule); ``rules`` keeps a few.
    """
    keep = set(rules or RULES)
    unknown = keep - set(RULES)
    if unknown:
        raise InputError(f"unknown alert rule(s) {sorted(unknown)}; use {', '.join(RULES)}",
                         zh=f"没有这样的预警规则：{sorted(unknown)}；可选 {', '.join(RULES)}")
    a, clock = settings.alerts, Clock(settings.timezone, engine)
    if isinstance(profile, pd.DataFrame):
        tiers = profile[["user_id", "tier"]]
        profile = ibis.memtable(profile[[c for c in profile.columns if c in ("user_id", "tier", "lifecycle",
                                                                              "rfm_cell", *a.segment_by)]])
    else:
        tiers = None
    common = dict(as_of=as_of, clock=clock, rules=a)
    exprs = {
        "activity_drop": lambda: activity_drop(events, orders, profile, **common),
        "silent_high_tier": lambda: silent_high_tier(events, orders, profile, **common),
        "unused_purchase": lambda: unused_purchase(events, orders, order_items, profile, **common),
        "no_login_after_course": lambda: no_login_after_course(events, orders, order_items, profile, **common),
        "streak_at_risk": lambda: streak_at_risk(events, profile, **common),
    }
    rows: list[dict] = []
    for rule, build in exprs.items():
        if rule in keep:
            rows += _describe_users(rule, execute(build()), as_of=as_of, rules=a)
    if "membership_expiring" in keep and members is not None and len(members):
        if tiers is None:
            tiers = execute(profile.select("user_id", "tier"))
        rows += _describe_users("membership_expiring", expiring_memberships(members, tiers, rules=a),
                                as_of=as_of, rules=a)
    metrics = [m for m in a.segment_metrics if f"segment_{m}" in keep]
    if metrics:
        seg_rules = a.model_copy(update={"segment_metrics": metrics})
        for by in a.segment_by:
            found = execute(segment_metric_drop(events, orders, users, profile, by=by, as_of=as_of, clock=clock,
                                                rules=seg_rules))
            rows += _describe_segments(found, rules=a)
    frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    return _sorted(frame) if len(frame) else frame


def memberships_or_none(orders: ir.Table, order_items: ir.Table, *, as_of: dt_.date, settings: Settings,
                        engine: str, execute: Execute) -> pd.DataFrame | None:
    """``renewals(...).members`` when the shop sells memberships, else None (no membership rule)."""
    from userstrata.models.renewal_data import renewals  # noqa: PLC0415 - SciPy only when needed

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plans without a fit simply get no probability
            return renewals(orders, order_items, as_of=as_of, settings=settings, engine=engine,
                            execute=execute).members
    except InputError:
        return None


# --------------------------------------------------------------------------- the alerts table


def alert_id(rule: str, subject_type: str, subject: str, opened_on: dt_.date) -> str:
    """Deterministic: the same rule, subject and opening day give the same id."""
    return hashlib.sha256(f"{rule}|{subject_type}|{subject}|{opened_on}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AlertReport:
    as_of: dt_.date
    opened: int
    kept: int
    closed: int
    open_total: int
    repeated: bool  # this day had been evaluated before

    def summary(self, lang: str = "en") -> str:
        if lang == "zh":
            again = "（该日期已评估过，结果按当前数据更新）" if self.repeated else ""
            return (f"{self.as_of} 预警评估：新增 {self.opened}，持续 {self.kept}，关闭 {self.closed}，"
                    f"当前未关闭 {self.open_total}{again}")
        again = " (this day was evaluated before; updated from the data as it is now)" if self.repeated else ""
        return (f"alerts as of {self.as_of}: {self.opened} opened, {self.kept} still holding, {self.closed} closed, "
                f"{self.open_total} open{again}")


def _ensure_tables(raw: Any) -> None:
    raw.execute(
        f"CREATE TABLE IF NOT EXISTS {ALERTS} (alert_id VARCHAR PRIMARY KEY, rule VARCHAR, subject_type VARCHAR, "
        "subject VARCHAR, severity VARCHAR, tier VARCHAR, since DATE, seen VARCHAR, seen_zh VARCHAR, "
        "seen_en VARCHAR, opened_on DATE, last_seen_on DATE, closed_on DATE)"
    )
    raw.execute(
        f"CREATE TABLE IF NOT EXISTS {ALERT_RUNS} (as_of DATE PRIMARY KEY, evaluated_at TIMESTAMP, "
        "opened BIGINT, kept BIGINT, closed BIGINT)"
    )


def evaluate_alerts(store: Any, as_of: dt_.date, settings: Settings, *, profile: ir.Table | pd.DataFrame | None = None,
                    members: pd.DataFrame | None | bool = True, rules: list[str] | None = None,
                    source: Any = None) -> AlertReport:
    """Evaluate every rule as of ``as_of`` and update the ``alerts`` table in one transaction.

    An open alert whose finding still holds is kept (same row; its numbers and ``last_seen_on``
    updated), a new finding opens an alert (``opened_on = as_of``), an open alert that no longer
    holds is closed (``closed_on = as_of``). Evaluating the same day again changes nothing when
    the data has not changed. A day before the last one evaluated is refused: alerts closed or
    opened later would be rewritten out of order.

    ``profile`` defaults to ``build_profile`` as of ``as_of``; ``members`` True computes the
    renewals model when the shop has memberships, None or False leaves the membership rule out.
    ``rules`` evaluates only those rules (default: all): only their alerts are opened or closed.
    ``source`` is the store the rules read (e.g. a Spark workspace's); the alerts are kept in ``store``.
    """
    from userstrata.segments import build_profile  # noqa: PLC0415

    store.require_duckdb("keeping alerts")
    raw = store.duckdb
    _ensure_tables(raw)
    last = raw.execute(f"SELECT max(as_of) FROM {ALERT_RUNS}").fetchone()[0]
    if last is not None and as_of < last:
        raise InputError(
            f"alerts were last evaluated as of {last}; {as_of} is earlier",
            hint=f"evaluate {last} or a later day; alerts open and close in date order",
            zh=f"预警已评估到 {last}，{as_of} 更早，不能倒回去评估",
            hint_zh=f"请评估 {last} 或之后的日期：预警按日期顺序开启和关闭",
        )
    reader = source or store
    tables = {name: reader.table(name) for name in ("users", "orders", "order_items", "events")}
    execute = reader.con.execute
    if profile is None:
        profile = execute(build_profile(**tables, as_of=as_of, settings=settings, engine=reader.engine))
    if members is True:
        members = memberships_or_none(tables["orders"], tables["order_items"], as_of=as_of, settings=settings,
                                      engine=reader.engine, execute=execute)
    found = current_alerts(**tables, as_of=as_of, settings=settings, engine=reader.engine, execute=execute,
                           profile=profile, members=members if isinstance(members, pd.DataFrame) else None,
                           rules=rules)
    return _upsert(store, found, as_of, repeated=last == as_of, rules=list(rules or RULES))


def _upsert(store: Any, found: pd.DataFrame, as_of: dt_.date, *, repeated: bool, rules: list[str]) -> AlertReport:
    raw = store.duckdb
    open_now = raw.execute(
        f"SELECT alert_id, rule, subject_type, subject FROM {ALERTS} WHERE closed_on IS NULL "
        "AND rule IN (SELECT unnest(?))", [rules]
    ).fetchdf()
    key = ["rule", "subject_type", "subject"]
    merged = found.merge(open_now, on=key, how="left")
    new = merged[merged["alert_id"].isna()].copy()
    kept = merged[merged["alert_id"].notna()].copy()
    held = set(kept["alert_id"])
    gone = [i for i in open_now["alert_id"] if i not in held]
    new["alert_id"] = [alert_id(r, t, s, as_of) for r, t, s in zip(new["rule"], new["subject_type"], new["subject"])]
    new["opened_on"], new["last_seen_on"], new["closed_on"] = as_of, as_of, None
    new["since"] = [x if x is not None and x == x else as_of for x in new["since"]]
    new = new[list(ALERT_COLUMNS)].astype({"closed_on": "object"})
    with store.transaction():
        for r in kept.itertuples(index=False):
            raw.execute(
                f"UPDATE {ALERTS} SET severity = ?, tier = ?, seen = ?, seen_zh = ?, seen_en = ?, last_seen_on = ? "
                "WHERE alert_id = ?",
                [r.severity, r.tier, r.seen, r.seen_zh, r.seen_en, as_of, r.alert_id],
            )
        if gone:
            raw.execute(f"UPDATE {ALERTS} SET closed_on = ? WHERE alert_id IN (SELECT unnest(?))", [as_of, gone])
        if len(new):
            raw.register("_new_alerts", new)
            try:
                raw.execute(
                    f"INSERT INTO {ALERTS} SELECT alert_id, rule, subject_type, subject, severity, tier, "
                    "CAST(since AS DATE), seen, seen_zh, seen_en, CAST(opened_on AS DATE), CAST(last_seen_on AS DATE), "
                    f"CAST(closed_on AS DATE) FROM _new_alerts"
                )
            finally:
                raw.unregister("_new_alerts")
        raw.execute(f"DELETE FROM {ALERT_RUNS} WHERE as_of = ?", [as_of])
        raw.execute(f"INSERT INTO {ALERT_RUNS} VALUES (?, now()::TIMESTAMP, ?, ?, ?)",
                    [as_of, len(new), len(kept), len(gone)])
    total = raw.execute(f"SELECT count(*) FROM {ALERTS} WHERE closed_on IS NULL").fetchone()[0]
    return AlertReport(as_of, len(new), len(kept), len(gone), int(total), repeated)


def list_alerts(store: Any, *, open_only: bool = False, rule: str | None = None) -> pd.DataFrame:
    """The ``alerts`` table (``ALERT_COLUMNS``), highest severity and tier first."""
    store.require_duckdb("listing alerts")
    if ALERTS not in store.con.list_tables():
        return pd.DataFrame(columns=list(ALERT_COLUMNS))
    where, params = [], []
    if open_only:
        where.append("closed_on IS NULL")
    if rule:
        where.append("rule = ?")
        params.append(rule)
    sql = f"SELECT {', '.join(ALERT_COLUMNS)} FROM {ALERTS}" + (f" WHERE {' AND '.join(where)}" if where else "")
    frame = store.duckdb.execute(sql, params).fetchdf()
    for col in ("since", "opened_on", "last_seen_on", "closed_on"):
        frame[col] = [_as_date(x) for x in frame[col]]
    return _sorted(frame) if len(frame) else frame
