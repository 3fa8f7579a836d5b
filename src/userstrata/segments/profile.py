"""The user value profile: features, lifecycle, RFM grid and tier for every user, as of a date."""

from __future__ import annotations

import datetime as dt_

import ibis
import ibis.expr.types as ir

from userstrata.config import Settings
from userstrata.features import (
    activity_features,
    assign_lifecycle,
    category_preference,
    engagement_features,
    purchases,
    rfm_features,
)
from userstrata.features._time import Clock
from userstrata.i18n import Lang
from userstrata.schema import PROFILE_COLUMNS
from userstrata.segments.rfm_grid import rfm_columns, rfm_windows
from userstrata.segments.tiers import tier_columns, top_windows, value_score_column, value_windows

# counts a user without orders or events has: 0, not missing
_ZERO_IF_NONE = {"frequency": 0, "orders": 0, "monetary": 0.0, "interaction_depth": 0, "community_actions": 0,
                 "event_days": 0, "refunded_orders": 0}
_EXTRAS = ("as_of", "community_actions", "event_days", "inactive_days", "days_since_return",
           "value_score", "first_order_ts", "last_order_ts", "refunded_orders")


def build_profile(
    *,
    users: ir.Table,
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    as_of: dt_.date,
    settings: Settings,
    engine: str = "duckdb",
    lang: Lang = "en",
) -> ir.Table:
    """One row per user seen on or before ``as_of`` (an Ibis expression; nothing runs yet).

    Columns: ``schema.PROFILE_COLUMNS`` first, then supporting ones (``as_of``,
    ``community_actions``, ``inactive_days``, ``value_score``...). ``tier_reason`` is
    written in ``lang`` ("zh" or "en").
    """
    clock = Clock(settings.timezone, engine)
    bought = purchases(orders, as_of=as_of, clock=clock)
    rfm = rfm_features(bought, as_of=as_of, monetary_window_days=settings.profile.monetary_window_days)
    engagement = engagement_features(
        events,
        as_of=as_of,
        clock=clock,
        interaction_events=settings.profile.interaction_events,
        community_events=settings.profile.community_events,
    )
    preference = category_preference(order_items, bought)
    registered = users.filter(users.registered_at.notnull(), clock.on_or_before(users.registered_at, as_of))
    registered = registered.group_by("user_id").agg(registered_at=registered.registered_at.min())
    # Each step below is one projection of a join or of the step before: every projection
    # carries all ~30 columns, in the SQL and in the compile (BENCHMARKS.md "Profile").
    # Every user registered, buying or with events by as_of: one chain of two outer joins.
    # ``view()`` makes it a relation of its own, which the joins after it can join on.
    who = ibis.coalesce(registered.user_id, rfm.user_id)
    known = registered.outer_join(rfm, registered.user_id == rfm.user_id).outer_join(
        engagement, who == engagement.user_id, rname="{name}_events")
    known = known.select(ibis.coalesce(who, engagement.user_id).name("user_id"),
                         *(c for c in known.columns if c not in ("user_id", "user_id_right", "user_id_events"))).view()
    p = activity_features(known, users, bought, events, as_of=as_of, clock=clock, rules=settings.lifecycle)
    p = p.left_join(preference, "user_id")
    p = p.select(*(p[c].fill_null(_ZERO_IF_NONE[c]).name(c) if c in _ZERO_IF_NONE else p[c]
                   for c in p.columns if c != "user_id_right"), as_of=ibis.literal(as_of))
    # every window that reads only the features, in one step: each runs once, and the
    # columns after it read plain values
    windows = {**rfm_windows(p, rules=settings.rfm), **value_windows(p), **top_windows(p, settings.tiers)}
    p = p.mutate(**windows)
    p = p.mutate(
        lifecycle=assign_lifecycle(p.tenure_days, p.inactive_days, p.orders, p.days_since_return, rules=settings.lifecycle),
        value_score=value_score_column(p),
        **rfm_columns(p, rules=settings.rfm),
    )
    if counts := top_windows(p, settings.tiers):  # the value score's own rank needs the score first
        p = p.mutate(**counts)
    tiers = tier_columns(p, rules=settings.tiers, lang=lang)
    return p.select(**{c: tiers[c] if c in tiers else p[c] for c in (*PROFILE_COLUMNS, *_EXTRAS)}).order_by("user_id")


# columns the profile gains with ``depth=True`` (docs/profile.md, docs/tags.md)
REALISATION_COLUMNS = ("realisation_index", "purchases_unused", "realisation_reason")


def with_depth(profile: ir.Table, *, orders: ir.Table, order_items: ir.Table, events: ir.Table,
               as_of: dt_.date, settings: Settings, engine: str = "duckdb", lang: Lang = "en") -> ir.Table:
    """``profile`` plus value realisation (index 0-100, purchases not used in time, the reason in
    ``lang``) and one boolean per behaviour tag with ``tag_count`` (users without usage-bearing
    purchases get a missing index; users without tags get False and 0)."""
    from userstrata.features.realisation import purchase_usage, realisation_index  # noqa: PLC0415
    from userstrata.features.tags import TAGS, tags_wide, user_tags  # noqa: PLC0415

    clock = Clock(settings.timezone, engine)
    usage = purchase_usage(orders, order_items, events, as_of=as_of, clock=clock, rules=settings.realisation)
    realised = realisation_index(usage)
    realised = realised.select("user_id", "realisation_index", "purchases_unused",
                               realisation_reason=realised[f"realisation_reason_{lang}"])
    bought = purchases(orders, as_of=as_of, clock=clock)
    tags = tags_wide(user_tags(bought, order_items, events, as_of=as_of, clock=clock, rules=settings.tags))
    out = profile.left_join(realised, "user_id").drop("user_id_right")
    out = out.left_join(tags, "user_id").drop("user_id_right")
    return out.mutate(
        purchases_unused=out.purchases_unused.fill_null(0),
        tag_count=out.tag_count.fill_null(0),
        **{t: out[t].fill_null(False) for t in TAGS},
    )
