"""Recall success rate after a campaign (召回成功率): of the users a campaign reached while they
were dormant, how many came back, and how many more than in the holdout.

- **Contact**: a user's first touch of the campaign (earliest ``ts``, ties by ``touch_id``);
  later touches of the same user in the campaign change nothing. Its ``variant`` puts the user
  in the holdout arm (``variant == "holdout"``) or the treated arm (any other variant, or none).
- **Dormant at contact**: the user bought before the touch (``activity="any"``: was active:
  bought or had an event), and the ``dormant_days`` local days before the touch's day, and that
  day up to the touch, hold none of it: ``T - L - 1 >= dormant_days`` silent days, with ``L``
  the last local day with a purchase before the touch and ``T`` the touch's day. Users active
  at contact, and users who never bought (never active) before it, are counted apart and are
  not in the denominator.
- **Returned**: a purchase (any activity) at or after the touch's time, on a local day at most
  ``window_days`` after the touch's day (a return later on the touch's day counts, one earlier
  that day does not: it makes the user active at contact).
- **Revenue** of the returners: their paid orders in that window, net of the orders' refunds,
  summed in cents.

Rates carry a Wilson score interval; the incremental recall rate (treated minus holdout) a Welch
interval and p-value from ``measure/stats.py``. docs/metrics.md states every edge case.
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine, i18n
from userstrata.errors import InputError, Notice
from userstrata.features._money import to_cents
from userstrata.features._time import Clock
from userstrata.measure import stats as st
from userstrata.measure.privacy import check_min_count, hide
from userstrata.schema import PURCHASE_STATUSES

HOLDOUT = "holdout"
TREATED = "treated"
BY = ("tier", "lifecycle", "channel")
ACTIVITY = ("purchase", "any")
NO_GROUP = "(none)"
MAX_PROFILES = 24  # by tier/lifecycle builds one profile per campaign
_EPOCH = dt_.date(1970, 1, 1)

TEXT: dict[str, tuple[str, str]] = {
    "campaign": ("活动", "Campaign"),
    "group": ("分组", "Group"),
    "arm": ("组别", "Arm"),
    "treated": ("触达组", "Treated"),
    "holdout": ("对照组（未触达）", "Holdout"),
    "touched": ("触达用户", "Touched users"),
    "active_at_touch": ("触达时活跃", "Active at contact"),
    "never_active": ("此前从未购买", "Never bought before"),
    "never_active_any": ("此前从未活跃", "Never active before"),
    "dormant": ("沉睡/流失用户", "Dormant users"),
    "returned": ("回流用户", "Returned"),
    "rate": ("召回成功率", "Recall rate"),
    "rate_low": ("区间下限", "CI low"),
    "rate_high": ("区间上限", "CI high"),
    "revenue": ("回流用户收入", "Returners' revenue"),
    "revenue_per_dormant": ("人均召回收入", "Revenue per dormant user"),
    "holdout_rate": ("对照组召回率", "Holdout rate"),
    "treated_rate": ("触达组召回率", "Treated rate"),
    "incremental": ("增量召回率", "Incremental recall rate"),
    "incremental_low": ("增量下限", "Increment low"),
    "incremental_high": ("增量上限", "Increment high"),
    "p_value": ("p 值", "p-value"),
    "chart_title": ("召回成功率（沉睡 {dormant} 天以上，{window} 天内回流，{level:.0%} 区间）",
                    "Recall rate (dormant {dormant}+ days, back within {window} days, {level:.0%} interval)"),
    "chart_y": ("召回成功率", "Recall rate"),
    "suppressed": ("少于 {n} 人的格子已隐藏", "cells under {n} users hidden"),
}

text = functools.partial(i18n.pick, TEXT)  # text in zh or en


# -- checks ----------------------------------------------------------------------------------
def _check(dormant_days: int, window_days: int, by: str | None, activity: str) -> None:
    if dormant_days < 1:
        raise InputError(f"dormant_days {dormant_days}: expected at least 1 day",
                         zh=f"沉睡天数 dormant_days={dormant_days}：至少 1 天")
    if window_days < 0:
        raise InputError(f"window_days {window_days}: expected 0 days or more",
                         zh=f"回流窗口 window_days={window_days}：不能为负数")
    if by is not None and by not in BY:
        raise InputError(f"by {by!r} is not a grouping; use one of: {', '.join(BY)}",
                         zh=f"分组 {by!r} 不可用；可选：tier（分层）、lifecycle（生命周期）、channel（触达渠道）")
    if activity not in ACTIVITY:
        raise InputError(f"activity {activity!r}: use one of {', '.join(ACTIVITY)}",
                         zh=f"活跃口径 activity={activity!r}：可选 purchase（购买）或 any（任何行为）")


# -- the per-user table ----------------------------------------------------------------------
def first_contacts(touches: ir.Table, campaign: str | None = None) -> ir.Table:
    """``(campaign, user_id, touch_ts, channel, arm)``: each user's first touch of each campaign
    (of ``campaign`` only when given; ties by ``touch_id``)."""
    t = touches.filter(touches.user_id.notnull(), touches.campaign.notnull())
    if campaign is not None:
        t = t.filter(t.campaign == campaign)
    w = ibis.window(group_by=[t.campaign, t.user_id], order_by=[t.ts, t.touch_id])
    t = t.mutate(contact_rank=ibis.row_number().over(w))
    t = t.filter(t.contact_rank == 0)
    arm = ibis.ifelse(t.variant.fill_null("") == HOLDOUT, HOLDOUT, TREATED)
    return t.select("campaign", "user_id", touch_ts=t.ts, channel=t.channel.cast("string"), arm=arm)


def recall_users(
    touches: ir.Table, orders: ir.Table, events: ir.Table | None = None, *, campaign: str | None = None,
    dormant_days: int = 30, window_days: int = 14, activity: str = "purchase", clock: Clock | None = None,
) -> ir.Table:
    """One row per contacted user and campaign: ``campaign, user_id, touch_ts, touch_day, channel,
    arm, last_before`` (the last local day active before the touch, null if never),
    ``state`` (``dormant``, ``active`` or ``never``), ``returned`` (0/1) and ``return_cents``."""
    _check(dormant_days, window_days, None, activity)
    clock = clock or Clock()
    contacts = first_contacts(touches, campaign)
    contacts = contacts.mutate(touch_eday=_engine.epoch_day(clock.local_date(contacts.touch_ts)))
    paid = orders.filter(orders.status.isin(list(PURCHASE_STATUSES)), orders.user_id.notnull())
    paid = paid.select("user_id", "ts", cents=to_cents(paid.amount) - to_cents(paid.refund_amount.fill_null(0.0)),
                       bought=ibis.literal(1, type="int64"))
    moments = paid
    if activity == "any":
        if events is None:
            raise InputError("activity 'any' needs the events table", zh="活跃口径 any 需要行为事件表 events")
        e = events.filter(events.user_id.notnull())
        moments = ibis.union(paid, e.select("user_id", "ts", cents=ibis.literal(0, type="int64"),
                                            bought=ibis.literal(0, type="int64")), distinct=False)
    moments = moments.mutate(eday=_engine.epoch_day(clock.local_date(moments.ts)))
    j = contacts.join(moments, "user_id")
    before = j.filter(j.ts < j.touch_ts)
    last = before.group_by(["campaign", "user_id"]).agg(last_eday=before.eday.max())
    after = j.filter(j.ts >= j.touch_ts, j.eday - j.touch_eday <= window_days)
    back = after.group_by(["campaign", "user_id"]).agg(
        return_moments=after.count(), return_cents=(after.cents * after.bought).sum(),
    )
    u = contacts.left_join(last, ["campaign", "user_id"]).drop("campaign_right", "user_id_right")
    u = u.left_join(back, ["campaign", "user_id"]).drop("campaign_right", "user_id_right")
    silent = u.touch_eday - u.last_eday - 1
    state = ibis.cases((u.last_eday.isnull(), "never"), (silent >= dormant_days, "dormant"), else_="active")
    return u.select(
        "campaign", "user_id", "touch_ts", "channel", "arm",
        touch_eday=u.touch_eday, last_eday=u.last_eday, state=state,
        returned=(u.return_moments.fill_null(0) > 0).cast("int64"),
        return_cents=u.return_cents.fill_null(0).cast("int64"),
    )


# -- the result ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Recall:
    """Recall per campaign (and group) and arm: ``table`` has ``campaign, [group], arm, touched,
    active_at_touch, never_active, dormant, returned, rate, rate_low, rate_high, revenue,
    revenue_per_dormant``; ``effects`` the treated arm against the holdout per campaign (and
    group): ``holdout_rate, treated_rate, incremental, incremental_low, incremental_high,
    p_value`` (empty when no campaign has a holdout)."""

    table: pd.DataFrame
    effects: pd.DataFrame
    dormant_days: int
    window_days: int
    activity: str
    by: str | None
    level: float
    min_count: int | None

    def labelled(self, lang: str = "en") -> pd.DataFrame:
        out = self.table.copy()
        out["arm"] = [text(a, lang) for a in out["arm"]]
        if self.activity == "any":
            out = out.rename(columns={"never_active": "never_active_any"})
        return out.rename(columns={c: text(c, lang) for c in out.columns if c in TEXT})

    def chart(self, lang: str = "en") -> Any:
        """Recall rate per campaign (and group), one bar series per arm, with Wilson error bars."""
        import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked

        fig = go.Figure()
        for arm in (TREATED, HOLDOUT):
            part = self.table[self.table["arm"] == arm]
            if not len(part):
                continue
            x = [c if not self.by else f"{c} · {g}" for c, g in
                 zip(part["campaign"], part["group"] if self.by else part["campaign"])]
            fig.add_trace(go.Bar(
                x=x, y=part["rate"], name=text(arm, lang),
                error_y={"type": "data", "symmetric": False, "array": (part["rate_high"] - part["rate"]).tolist(),
                         "arrayminus": (part["rate"] - part["rate_low"]).tolist()},
            ))
        title = text("chart_title", lang).format(dormant=self.dormant_days, window=self.window_days, level=self.level)
        if self.min_count:
            title += f" ({text('suppressed', lang).format(n=self.min_count)})"
        fig.update_layout(title=title, barmode="group", xaxis_title=text("campaign", lang),
                          yaxis_title=text("chart_y", lang))
        return fig


def _default_execute(expr: ir.Expr) -> pd.DataFrame:
    return expr.to_pandas()


def recall(
    touches: ir.Table,
    orders: ir.Table,
    events: ir.Table | None = None,
    *,
    campaign: str | None = None,
    dormant_days: int = 30,
    window_days: int = 14,
    activity: str = "purchase",
    by: str | None = None,
    profile_at: Callable[[dt_.date], ir.Table] | None = None,
    level: float = 0.95,
    min_count: int | None = None,
    clock: Clock | None = None,
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> Recall:
    """Recall success rate of ``campaign`` (every campaign when None): see the module's docstring.

    ``by``: ``channel`` (the first touch's channel), ``tier`` or ``lifecycle`` (the profile as of
    the day before the campaign's first touch, from ``profile_at(day)``, e.g.
    ``lambda d: build_profile(..., as_of=d)``). ``min_count`` hides rates and money of cells
    with fewer dormant users (``privacy.hide``).
    """
    _check(dormant_days, window_days, by, activity)
    check_min_count(min_count)
    execute = execute or _default_execute
    clock = clock or Clock()
    users = recall_users(touches, orders, events, campaign=campaign, dormant_days=dormant_days,
                         window_days=window_days, activity=activity, clock=clock)
    if campaign is not None:
        found = execute(touches.filter(touches.campaign == campaign).count())
        if not int(found):
            raise InputError(f"campaign {campaign!r} has no touches",
                             hint="`userstrata recall` without a campaign lists every campaign",
                             zh=f"活动 {campaign!r} 没有任何触达记录",
                             hint_zh="不带活动名运行 `userstrata recall` 可列出全部活动")
    _warn_unobserved(users, orders, events, window_days=window_days, clock=clock, execute=execute)
    users = _attach_group(users, by, profile_at, clock, execute)
    keys = ["campaign", "group", "arm"]
    agg = users.group_by(keys).agg(
        touched=users.count(),
        active_at_touch=(users.state == "active").cast("int64").sum(),
        never_active=(users.state == "never").cast("int64").sum(),
        dormant=(users.state == "dormant").cast("int64").sum(),
        returned=((users.state == "dormant").cast("int64") * users.returned).sum(),
        revenue_cents=((users.state == "dormant").cast("int64") * users.return_cents).sum(),
    )
    frame = execute(agg)
    return _assemble(frame, dormant_days=dormant_days, window_days=window_days, activity=activity, by=by,
                     level=level, min_count=min_count)


def _warn_unobserved(users: ir.Table, orders: ir.Table, events: ir.Table | None, *, window_days: int, clock: Clock,
                     execute: Callable[[ir.Expr], pd.DataFrame]) -> None:
    """Say so when dormant users' return windows run past the last day in the data: their
    returns are not all observed yet, so the rate is a lower bound for them."""
    days = [orders.select(eday=_engine.epoch_day(clock.local_date(orders.ts)))]
    if events is not None:
        days.append(events.select(eday=_engine.epoch_day(clock.local_date(events.ts))))
    last = ibis.union(*days, distinct=False).eday.max() if len(days) > 1 else days[0].eday.max()
    dormant = users.filter(users.state == "dormant")
    late = dormant.filter(dormant.touch_eday + window_days > last)
    n = int(execute(late.count()) or 0)
    if n:
        last_day = dt_.date(1970, 1, 1) + dt_.timedelta(days=int(execute(last)))
        warnings.warn(Notice(
            f"the {window_days}-day return window of {n:,} dormant users runs past the last day in the data "
            f"({last_day}): their returns are not all observed yet, so their recall rate is a lower bound",
            f"{n:,} 位沉睡用户的 {window_days} 天回访窗口超出数据最后一天（{last_day}）：他们的回访尚未完全观察到，"
            "召回率对他们只是下限",
        ), stacklevel=3)


def _attach_group(users: ir.Table, by: str | None, profile_at: Callable[[dt_.date], ir.Table] | None,
                  clock: Clock, execute: Callable[[ir.Expr], pd.DataFrame]) -> ir.Table:
    if by is None:
        return users.mutate(group=ibis.literal(NO_GROUP))
    if by == "channel":
        return users.mutate(group=users.channel.fill_null(NO_GROUP))
    if profile_at is None:
        raise InputError(f"by {by} needs the profile (profile_at)", zh=f"按{by}分组需要用户画像（profile_at）")
    starts = execute(users.group_by("campaign").agg(first_eday=users.touch_eday.min()))
    if len(starts) > MAX_PROFILES:
        raise InputError(
            f"by {by} needs one profile per campaign, {len(starts)} campaigns; at most {MAX_PROFILES}",
            hint="name one campaign",
            zh=f"按{by}分组需要为每个活动计算一次用户画像，共 {len(starts)} 个活动，最多支持 {MAX_PROFILES} 个",
            hint_zh="请指定一个活动",
        )
    parts = []
    for row in starts.sort_values("campaign").itertuples():
        day = _EPOCH + dt_.timedelta(days=int(row.first_eday) - 1)  # the day before the first touch
        p = profile_at(day)
        parts.append(p.select("user_id", campaign=ibis.literal(str(row.campaign)), group=p[by].cast("string")))
    lookup = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    j = users.left_join(lookup, ["campaign", "user_id"]).drop("campaign_right", "user_id_right")
    return j.mutate(group=j.group.fill_null(NO_GROUP))


def _assemble(frame: pd.DataFrame, *, dormant_days: int, window_days: int, activity: str, by: str | None,
              level: float, min_count: int | None) -> Recall:
    counts = ["touched", "active_at_touch", "never_active", "dormant", "returned", "revenue_cents"]
    out = frame.copy()
    for c in counts:
        out[c] = out[c].fillna(0).astype("int64")
    out["arm_order"] = (out["arm"] == HOLDOUT).astype(int)
    out = out.sort_values(["campaign", "group", "arm_order"], kind="stable").drop(columns="arm_order")
    out = out.reset_index(drop=True)
    out["rate"] = [r / d if d else math.nan for r, d in zip(out["returned"], out["dormant"])]
    bounds = [st.wilson(int(r), int(d), level) for r, d in zip(out["returned"], out["dormant"])]
    out["rate_low"] = [b[0] for b in bounds]
    out["rate_high"] = [b[1] for b in bounds]
    out["revenue"] = out["revenue_cents"] / 100
    out["revenue_per_dormant"] = [round(c / d) / 100 if d else math.nan
                                  for c, d in zip(out["revenue_cents"], out["dormant"])]
    effects = _effects(out, level)
    cols = ["campaign", *(["group"] if by else []), "arm", "touched", "active_at_touch", "never_active", "dormant",
            "returned", "rate", "rate_low", "rate_high", "revenue", "revenue_per_dormant"]
    if min_count:
        small = hide(out["dormant"], min_count)
        for c in ("returned", "rate", "rate_low", "rate_high", "revenue", "revenue_per_dormant"):
            out[c] = out[c].astype("float64")
            out.loc[small, c] = math.nan
        for c in ("touched", "active_at_touch", "never_active", "dormant"):
            out[c] = out[c].astype("float64")
            out.loc[hide(out[c], min_count), c] = math.nan
        if len(effects):
            effects = effects.merge(out.loc[small, ["campaign", "group"]].drop_duplicates().assign(_small=True),
                                    on=["campaign", "group"], how="left")
            gone = effects.pop("_small").fillna(False).astype(bool)
            for c in ("holdout_rate", "treated_rate", "incremental", "incremental_low", "incremental_high",
                      "p_value"):
                effects.loc[gone, c] = math.nan
    if not by:
        effects = effects.drop(columns=["group"])
    return Recall(table=out[cols], effects=effects, dormant_days=dormant_days, window_days=window_days,
                  activity=activity, by=by, level=level, min_count=min_count)


def _effects(table: pd.DataFrame, level: float) -> pd.DataFrame:
    rows = []
    for (camp, group), part in table.groupby(["campaign", "group"], sort=True):
        arms = {a: r for a, r in zip(part["arm"], part.itertuples())}
        if HOLDOUT not in arms or TREATED not in arms:
            continue
        h, t = arms[HOLDOUT], arms[TREATED]
        eff = st.compare(st.ProportionStat(int(h.dormant), int(h.returned)),
                         st.ProportionStat(int(t.dormant), int(t.returned)), alpha=1 - level)
        rows.append((camp, group, h.rate, t.rate, eff.estimate, eff.ci_low, eff.ci_high, eff.p_value))
    return pd.DataFrame(rows, columns=["campaign", "group", "holdout_rate", "treated_rate", "incremental",
                                       "incremental_low", "incremental_high", "p_value"])
