"""Playbooks: the defaults per tier and stage, overrides from settings, segment members, the
triggers and the activity hours, on small hand-made tables (DuckDB)."""

from __future__ import annotations

import datetime as dt_

import ibis
import pandas as pd
import pytest

from builders import event, order, table
from userstrata.activate.plan import activity_hours
from userstrata.activate.playbooks import DEFAULT_PLAYBOOKS, playbook_members, playbooks_from, trigger_times
from userstrata.config import Settings
from userstrata.errors import ConfigError, InputError
from userstrata.features._time import Clock

START = dt_.date(2024, 7, 1)
CLOCK = Clock("Asia/Shanghai", "duckdb")


def run(expr) -> pd.DataFrame:
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr)


def utc(local: str) -> str:
    """Shanghai wall-clock time -> the naive UTC the tables hold."""
    return str(pd.Timestamp(local) - pd.Timedelta(hours=8))


# -- defaults and overrides ------------------------------------------------------------------
def test_defaults_give_every_active_tier_below_the_top_an_upgrade_playbook():
    prof = pd.DataFrame({"user_id": ["e", "r", "g", "c"], "tier": ["explorer", "regular", "engaged", "co_builder"],
                         "lifecycle": "mature", "orders": [1, 3, 6, 9], "tenure_days": 200, "rfm_m": 3})
    books = playbooks_from(Settings())
    members = run(playbook_members(ibis.memtable(prof), books)).set_index("user_id")
    goal = {b.name: b.goal for b in books}
    for user in ("e", "r", "g"):
        reached = [name for name in members.columns if members.loc[user, name]]
        assert any(goal[name] == "upgrade" for name in reached), (user, reached)
    assert members.loc["c", "co_builder_co_creation"]
    names = [b.name for b in DEFAULT_PLAYBOOKS]
    assert len(names) == len(set(names)) and len(books) == len(DEFAULT_PLAYBOOKS)


def test_churned_users_get_only_a_low_cost_channel_and_dormant_a_recall_gift():
    prof = pd.DataFrame({"user_id": ["x", "d"], "tier": ["regular", "regular"], "lifecycle": ["churned", "dormant"],
                         "orders": [2, 2], "tenure_days": 300, "rfm_m": [2, 2]})
    books = {b.name: b for b in playbooks_from()}
    members = run(playbook_members(ibis.memtable(prof), list(books.values()))).set_index("user_id")
    churned = [n for n in members.columns if members.loc["x", n]]
    assert churned == ["churned_low_cost"] and books["churned_low_cost"].channel == "app_push"
    assert [n for n in members.columns if members.loc["d", n]] == ["dormant_recall_gift"]
    assert books["dormant_recall_gift"].offer_type == "gift" and books["dormant_recall_gift"].goal == "recall"


def test_settings_override_by_name_switch_off_and_add():
    settings = Settings.from_dict({"playbooks": [
        {"name": "cart_reminder", "priority": 10},
        {"name": "churned_low_cost", "enabled": False},
        {"name": "explorer_onboarding", "segment": "new_no_first_order"},
        {"name": "vip_call", "segment": "lapsed_high_value", "channel": "wecom", "template": "call", "goal": "care"},
    ]})  # fmt: skip
    books = {b.name: b for b in playbooks_from(settings)}
    default = {b.name: b for b in DEFAULT_PLAYBOOKS}
    assert books["cart_reminder"].priority == 10
    assert books["cart_reminder"].channel == default["cart_reminder"].channel  # untouched keys stay
    assert "churned_low_cost" not in books
    assert books["explorer_onboarding"].segment == "new_no_first_order" and books["explorer_onboarding"].where is None
    assert books["vip_call"].channel == "wecom" and list(books)[-1] == "vip_call"


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "half", "where": "orders > 0", "channel": "sms"}, "'half' needs template, goal"),
    ({"name": "two", "where": "orders > 0", "trigger": "cart_abandoned", "channel": "sms", "template": "t",
      "goal": "care"}, "exactly one of segment, where, trigger"),
    ({"name": "dd", "trigger": "dormant_days", "channel": "sms", "template": "t", "goal": "recall"},
     "needs trigger_days"),
])  # fmt: skip
def test_incomplete_playbooks_are_config_errors_naming_them(entry, message):
    with pytest.raises(ConfigError) as err:
        playbooks_from(Settings.from_dict({"playbooks": [entry]}))
    assert message in str(err.value) and entry["name"] in err.value.text("zh")


def test_bad_shares_and_channels_are_refused_when_the_file_is_read():
    with pytest.raises(ConfigError, match="playbooks.0.variants"):
        Settings.from_dict({"playbooks": [{"name": "x", "variants": {"A": 0.5, "B": 0.6}}]})
    with pytest.raises(ConfigError, match="playbooks.0.channel"):
        Settings.from_dict({"playbooks": [{"name": "x", "channel": "fax"}]})


def test_a_condition_on_a_missing_column_names_it():
    entry = {"name": "bad", "where": "spend > 1", "channel": "sms", "template": "t", "goal": "care"}
    books = playbooks_from(Settings.from_dict({"playbooks": [entry]}))
    prof = ibis.memtable(pd.DataFrame({"user_id": ["a"], "tier": ["explorer"], "lifecycle": ["new"], "orders": [0],
                                       "tenure_days": [1], "rfm_m": [1.0]}))
    with pytest.raises(InputError, match="'spend', which does not exist"):
        playbook_members(prof, books)


# -- triggers --------------------------------------------------------------------------------
def test_registration_triggers_skip_users_who_bought_before_they_are_due():
    users = table("users", [("r1", pd.Timestamp(utc("2024-06-30 23:30")), None, None),
                            ("r2", pd.Timestamp(utc("2024-06-30 23:30")), None, None),
                            ("old", pd.Timestamp(utc("2024-06-01 10:00")), None, None)])
    orders = table("orders", [order("o1", "r2", utc("2024-06-30 23:50"), 10.0)])
    books = [b for b in playbooks_from() if b.trigger and b.trigger.startswith("registered")]
    got = run(trigger_times(users, orders, table("events"), books, start=START, days=7, clock=CLOCK))
    due = {(r.user_id, r.playbook): r.due_at for r in got.itertuples()}
    assert due == {
        ("r1", "welcome_1h"): pd.Timestamp("2024-07-01 00:30"),
        ("r1", "first_order_tip_6h"): pd.Timestamp("2024-07-01 05:30"),
        ("r1", "first_order_coupon_24h"): pd.Timestamp("2024-07-01 23:30"),
    }
    assert got["exact"].all()


def test_cart_dormant_and_cross_sell_triggers():
    events = table("events", [
        event("e1", "c1", utc("2024-06-30 10:00"), "add_to_cart"),
        event("e2", "c2", utc("2024-06-30 10:00"), "add_to_cart"),
        event("e3", "d1", utc("2024-06-01 12:00"), "page_view"),
        event("e4", "d2", utc("2024-06-10 12:00"), "page_view"),
    ])  # fmt: skip
    orders = table("orders", [order("o1", "c2", utc("2024-06-30 11:00"), 5.0),
                              order("o2", "x1", utc("2024-06-29 09:00"), 30.0),
                              order("o3", "x2", utc("2024-06-20 09:00"), 30.0)])
    books = {b.name: b for b in playbooks_from()}
    chosen = [books["cart_reminder"], books["dormant_30d"], books["cross_sell"]]
    got = run(trigger_times(table("users"), orders, events, chosen, start=START, days=7, clock=CLOCK))
    due = {(r.user_id, r.playbook): (r.due_at, r.exact) for r in got.itertuples()}
    # c1's cart (11:00 + 1h on 30 June) is overdue: due when the plan starts; c2 bought after the cart
    assert due.pop(("c1", "cart_reminder")) == (pd.Timestamp("2024-07-01 00:00"), True)
    # d1: last seen 1 June, 30 days later is 1 July; d2 reaches 30 days on 10 July, after the plan
    assert due.pop(("d1", "dormant_30d")) == (pd.Timestamp("2024-07-01"), False)
    # x1 bought on 29 June: cross-sell 3 days later; x2's day (23 June) is before the plan
    assert due.pop(("x1", "cross_sell")) == (pd.Timestamp("2024-07-02"), False)
    # c2 bought on 30 June: its cross-sell falls on 3 July; x2 reaches 30 days without activity on 20 July
    assert due.pop(("c2", "cross_sell")) == (pd.Timestamp("2024-07-03"), False)
    assert due == {}


# -- activity hours --------------------------------------------------------------------------
def test_activity_hours_mode_per_user_weekday_and_weekend_apart_outside_quiet_hours():
    rows = []
    for i, (local, n) in enumerate([("2024-07-01 10:15", 3), ("2024-07-02 21:05", 2), ("2024-07-03 23:30", 5),
                                    ("2024-07-06 14:00", 2), ("2024-07-07 09:40", 2)]):
        rows += [event(f"e{i}-{k}", "a", utc(local), "page_view") for k in range(n)]
    orders = table("orders", [order("o1", "a", utc("2024-07-02 21:30"), 1.0),
                              order("o2", "a", utc("2024-07-04 21:30"), 1.0)])
    got = run(activity_hours(table("events", rows), orders, CLOCK)).set_index("weekend")
    # weekdays: 21h has 2 events + 2 orders = 4 > 10h's 3; 23h (5) is in quiet hours
    assert got.loc[False, "best_hour"] == 21 and got.loc[False, "activity"] == 4
    # weekend: 14h and 9h tie at 2: the earlier hour
    assert got.loc[True, "best_hour"] == 9
