"""Interaction depth and category preference, hand-computed."""

import pytest

from builders import event, order, run_profile


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
        ("o1", "skin-1", "皮肤", 2, 30.0),  # 60
        ("o1", "vip", "会员", 1, 70.0),  # 70
        ("o2", "skin-2", "皮肤", 1, 10.0),  # 10 -> 皮肤 70 total, tie with 会员 70
        ("o9", "x", "课程", 1, 999.0),  # order unknown: ignored
    ]
    got = run_profile(orders=orders, items=items).loc["u1"]
    assert got.top_category == "会员"  # tie broken alphabetically: 会员 < 皮肤
    assert got.category_share == pytest.approx(0.5)
