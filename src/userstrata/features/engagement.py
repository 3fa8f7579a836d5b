"""Interaction depth: how much a user does besides buying (check-ins, shares, posts, use...)."""

from __future__ import annotations

import datetime as dt_

import ibis.expr.types as ir

from userstrata.features._time import Clock


def engagement_features(
    events: ir.Table,
    *,
    as_of: dt_.date,
    clock: Clock,
    interaction_events: list[str],
    community_events: list[str],
) -> ir.Table:
    """One row per user with events: ``interaction_depth`` (count of interaction events),
    ``community_actions`` (shares, reviews, posts...), ``event_days`` and first/last event.

    Events with only an ``anonymous_id`` are not a user's until identities stitch them.
    """
    e = events.filter(events.user_id.notnull(), clock.on_or_before(events.ts, as_of))
    e = e.mutate(event_date=clock.local_date(e.ts), event_name=e.event.lower())
    return e.group_by("user_id").agg(
        first_event_ts=e.ts.min(),
        last_event_ts=e.ts.max(),
        event_days=e.event_date.nunique(),
        # counted, not summed: a 64-bit integer on every engine (DuckDB sums booleans to a
        # 128-bit decimal, which Ibis then converts in a copy of the result)
        interaction_depth=e.count(where=e.event_name.isin(interaction_events)),
        community_actions=e.count(where=e.event_name.isin(community_events)),
    )
