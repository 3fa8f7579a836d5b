"""Lifecycle stages: potential, new, growth, mature, dormant, churned, returning.

The one home of the dormancy rules (defaults in ``config.LifecycleRules``).
"""

from __future__ import annotations

import datetime as dt_

import ibis
import ibis.expr.types as ir

from userstrata import _engine
from userstrata.config import LifecycleRules
from userstrata.features._time import Clock


def activity_features(
    known: ir.Table,
    users: ir.Table,
    purchases: ir.Table,
    events: ir.Table,
    *,
    as_of: dt_.date,
    clock: Clock,
    rules: LifecycleRules,
) -> ir.Table:
    """``known`` plus first/last activity and the last return after a dormant gap.

    ``known`` has one row per user with ``registered_at``, ``first_order_ts`` /
    ``last_order_ts`` (of ``purchases``) and ``first_event_ts`` / ``last_event_ts`` (of the
    user's ``events``), each null where the user has none, all on days up to ``as_of``: the
    profile has these per-source aggregates already, so activity needs no pass over the
    whole history. Activity is registering (``users``), buying or any event of the user's, on
    local calendar days up to ``as_of``.

    A *return* is an active day after the user was dormant: the silent days between it and
    the previous active day (``gap - 1``; 30 silent days lie between 05-01 and 05-31) exceed
    ``dormant_after_days``, which is exactly when ``inactive_days`` passed that threshold on
    some day in between. ``days_since_return`` is set only for returns in the last
    ``returning_window_days`` (the only ones the lifecycle rules look at). So only the active
    days from ``dormant_after_days + 1`` days before that window on are read: a day in the
    window with no active day in reach before it is a return exactly when the user was first
    seen earlier.
    """
    window_from = as_of - dt_.timedelta(days=rules.returning_window_days)
    reach_from = window_from - dt_.timedelta(days=rules.dormant_after_days + 1)

    def reached(table: ir.Table, ts: str, day: str | None = None) -> ir.Table:
        t = table.filter(table.user_id.notnull(), table[ts].notnull(), clock.on_or_after(table[ts], reach_from),
                         clock.on_or_before(table[ts], as_of))
        return t.select("user_id", day=clock.local_date(t[ts]) if day is None else t[day])

    # purchases() already gives each order's local day: reuse it rather than convert again
    bought_day = "order_date" if "order_date" in purchases.columns else None
    days = ibis.union(reached(users, "registered_at"), reached(purchases, "ts", bought_day), reached(events, "ts"),
                      distinct=True)
    prev = days.day.lag().over(group_by=days.user_id, order_by=days.day)
    gaps = days.mutate(silent_days=_engine.days_between(prev, days.day) - 1, first_reached=prev.isnull())
    gaps = gaps.filter(gaps.day >= window_from)
    returns = gaps.group_by("user_id").agg(
        last_return_day=gaps.day.max(where=gaps.silent_days > rules.dormant_after_days),
        first_reached_day=gaps.day.min(where=gaps.first_reached),
    )
    # one projection of the join (known is read once: a second reference would repeat its joins)
    j = known.left_join(returns, "user_id")
    first_ts = ibis.least(j.registered_at, j.first_order_ts, j.first_event_ts)
    last_ts = ibis.greatest(j.registered_at, j.last_order_ts, j.last_event_ts)
    first_day = clock.local_date(first_ts)
    last_return = j.last_return_day.fill_null(ibis.ifelse(first_day < j.first_reached_day, j.first_reached_day, None))
    return j.select(
        *known.columns,
        first_ts=first_ts,
        last_ts=last_ts,
        tenure_days=clock.days_before(first_day, as_of),
        inactive_days=clock.days_before(clock.local_date(last_ts), as_of),
        days_since_return=clock.days_before(last_return, as_of),
    )


def assign_lifecycle(
    tenure_days: ir.IntegerValue,
    inactive_days: ir.IntegerValue,
    orders: ir.IntegerValue,
    days_since_return: ir.IntegerValue,
    *,
    rules: LifecycleRules,
) -> ir.StringValue:
    """The stage, checked in order: churned, dormant (inactivity first, buyers or not),
    potential (never bought), returning, then new / growth / mature by tenure."""
    return ibis.cases(
        (inactive_days > rules.churned_after_days, "churned"),
        (inactive_days > rules.dormant_after_days, "dormant"),
        (orders.fill_null(0) == 0, "potential"),
        (days_since_return.fill_null(10**9) <= rules.returning_window_days, "returning"),
        (tenure_days <= rules.new_days, "new"),
        (tenure_days <= rules.growth_days, "growth"),
        else_="mature",
    )
