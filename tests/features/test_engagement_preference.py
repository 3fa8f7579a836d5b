"""Interaction depth and category preference, hand-computed."""

from fractions import Fraction

import pytest

from builders import event, order, run_profile
from userstrata.config import Settings
from userstrata.schema import CANONICAL


def item(order_id, sku, category, quantity, price):
    """An order_items row by column name (other columns, e.g. the line number, left empty)."""
    given = {"order_id": order_id, "sku": sku, "category": category, "quantity": quantity, "price": price}
    return tuple(given.get(c) for c in CANONICAL["order_items"].columns)


def test_interaction_depth_counts_interaction_events_only():
    events = [
        event("e1", "u1", "2024-06-01 02:00", "page_view"),  # not an interaction
        event("e2", "u1", "2024-06-01 03:00", "checkin"),
        event("e3", "u1", "2024-06-02 03:00", "SHARE"),  # names are case-insensitive
        event("e4", "u1", "2024-06-03 03:00", "post"),
        event("e5", "u1", "2024-07-03 03:00", "post"),  # after as_of
        ("e6", None, "anon-1", None, "2024-06-03 03:00", "share", None),  # anonymous
    ]
    got = run_profile(events=events).loc["u1"]
    assert got.interaction_depth == 3
    assert got.community_actions == 2
    assert got.orders == 0 and got.monetary == 0


def test_users_with_only_events_are_profiled():
    got = run_profile(events=[event("e1", "u7", "2024-06-20 02:00", "page_view")])
    assert list(got.index) == ["u7"]
    row = got.loc["u7"]
    assert row.lifecycle == "potential" and row.tier == "explorer"
    assert row.rfm_cell == "general_retain"
    assert row.tier_reason.startswith("no purchase yet")


def test_top_category_by_spend_with_share():
    orders = [order("o1", "u1", "2024-06-01 02:00", 130.0), order("o2", "u1", "2024-06-05 02:00", 10.0)]
    items = [
        item("o1", "skin-1", "皮肤", 2, 30.0),  # 60
        item("o1", "vip", "会员", 1, 70.0),  # 70
        item("o2", "skin-2", "皮肤", 1, 10.0),  # 10 -> 皮肤 70 total, tie with 会员 70
        item("o9", "x", "课程", 1, 999.0),  # order unknown: ignored
    ]
    got = run_profile(orders=orders, items=items).loc["u1"]
    assert got.top_category == "会员"  # tie broken alphabetically: 会员 < 皮肤
    assert got.category_share == pytest.approx(0.5)


def test_category_spend_is_exact_cents():
    # 会员: 0.1 x 3 = 0.30 and 皮肤: 0.3 tie exactly (floats: 0.30000000000000004 vs 0.3);
    # 课程 0.10 + 0.20. Share of 会员 = 30 / 90 cents, the float nearest to 1/3.
    orders = [order("o1", "u1", "2024-06-01 02:00", 0.9)]
    items = [
        item("o1", "a", "皮肤", 1, 0.3),
        item("o1", "b", "会员", 3, 0.1),
        item("o1", "c", "课程", 1, 0.1),
        item("o1", "d", "课程", 1, 0.2),
    ]
    got = run_profile(orders=orders, items=items).loc["u1"]
    assert got.top_category == "会员"  # ties (30 cents each) go to the alphabetically first
    assert got.category_share == float(Fraction(30, 90))


def test_interaction_events_come_from_the_settings():
    # canonical names from ingest (观看 -> watch, 兑换 -> redeem) count when listed
    events = [
        event("e1", "u1", "2024-06-01 02:00", "watch"),
        event("e2", "u1", "2024-06-01 03:00", "redeem"),
        event("e3", "u1", "2024-06-01 04:00", "checkin"),
    ]
    listed = Settings.from_dict({"profile": {"interaction_events": ["watch", "redeem", "checkin"]}})
    assert run_profile(events=events, settings=listed).loc["u1", "interaction_depth"] == 3
    only_checkin = Settings.from_dict({"profile": {"interaction_events": ["checkin"]}})
    assert run_profile(events=events, settings=only_checkin).loc["u1", "interaction_depth"] == 1
