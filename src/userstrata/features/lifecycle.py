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
    users: ir.Table,
    purchases: ir.Table,
    events: ir.Table,
    *,
    as_of: dt_.date,
    clock: Clock,
    rules: LifecycleRules,
) -> ir.Table:
    """One row per known user: first/last activity and the last return after a dormant gap.

    Activity is registering, buying or any event of the user's, on local calendar days up to
    ``as_of``. A *return* is an active day after the user was dormant: the silent days
    between it and the previous active day (``gap - 1``; 30 silent days lie between 05-01
    and 05-31) exceed ``dormant_after_days``, which is exactly when ``inactive_days`` passed
    that threshold on some day in between. ``days_since_return`` is set only for returns in
    the last ``returning_window_days`` (the only ones the lifecycle rules look at).
    """
    u = users.filter(users.registered_at.notnull())
    e = events.filter(events.user_id.notnull())
    # purchases() already gives each order's local day: reuse it rather than convert again
    bought_day = purchases.order_date if "order_date" in purchases.columns else clock.local_date(purchases.ts)
    days = ibis.union(
        u.select("user_id", ts=u.registered_at, day=clock.local_date(u.registered_at)),
        purchases.select("user_id", "ts", day=bought_day),
        e.select("user_id", "ts", day=clock.local_date(e.ts)),
        distinct=False,
    )
    days = days.filter(days.day <= as_of)
    bounds = days.group_by("user_id").agg(
        first_ts=days.ts.min(), last_ts=days.ts.max(),
        first_day=days.day.min(), last_day=days.day.max(),
    )
    # A return in the window follows either an earlier day in the window or the user's last
    # day before it, so the gap window only needs those days, not the whole history
    # (7x fewer rows to sort on the simulated 1M-user shop).
    window_from = as_of - dt_.timedelta(days=rules.returning_window_days)
    recent = days.filter(days.day >= window_from).select("user_id", "day").distinct()
    early = days.filter(days.day < window_from)
    before = early.group_by("user_id").agg(day=early.day.max())
    candidates = ibis.union(recent, before, distinct=False)
    prev = candidates.day.lag().over(group_by=candidates.user_id, order_by=candidates.day)
    gaps = candidates.mutate(silent_days=_engine.days_between(prev, candidates.day) - 1)
    returns = gaps.filter(gaps.silent_days > rules.dormant_after_days, gaps.day >= window_from)
    last_return = returns.group_by("user_id").agg(last_return_day=returns.day.max())
    out = bounds.left_join(last_return, "user_id").drop("user_id_right")
    return out.mutate(
        tenure_days=clock.days_before(out.first_day, as_of),
        inactive_days=clock.days_before(out.last_day, as_of),
        days_since_return=clock.days_before(out.last_return_day, as_of),
    ).drop("first_day", "last_day", "last_return_day")


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
