"""The newer triggers (browse without buying, review thanks, birthday, check-in streak at risk,
membership expiring, purchase not used) on hand-made tables: the day before, the day and the
day after each one falls due, 29 February, a streak broken yesterday or kept today; then
through the plan (the trigger is the contact's reason; quiet hours and caps hold) and through
``make_plan`` on a workspace's tables (DuckDB)."""

from __future__ import annotations

import datetime as dt_
import json

import ibis
import pandas as pd
import pytest

from builders import order, table
from userstrata.activate.plan import build_plan, make_plan
from userstrata.activate.playbooks import DEFAULT_PLAYBOOKS, TRIGGERS, Playbook, playbooks_from, trigger_times
from userstrata.config import AlertSettings, CadenceSettings, Settings
from userstrata.errors import ConfigError
from userstrata.features._time import Clock
from userstrata.segments import build_profile

START = dt_.date(2024, 7, 1)  # a Monday
CLOCK = Clock("Asia/Shanghai", "duckdb")


def run(expr) -> pd.DataFrame:
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr)


def utc(local: str) -> pd.Timestamp:
    """Shanghai wall-clock time -> the naive UTC the tables hold."""
    return pd.Timestamp(local) - pd.Timedelta(hours=8)


def ev(i: int, user: str, local: str, name: str, properties: dict | None = None) -> tuple:
    return (f"e{i}", user, None, None, utc(local), name, json.dumps(properties) if properties else None)


def trig(name: str, **extra) -> Playbook:
    return Playbook(name=name, trigger=name, channel="app_push", template=name, goal="care", **extra)


def fired(books, *, users=None, orders=None, events=None, items=None, start=START, days=7, **kw) -> dict:
    """{(user, playbook): (due_at, exact)} (one row per user and playbook here)."""
    got = run(trigger_times(table("users", users), table("orders", orders), table("events", events), books,
                            start=start, days=days, clock=CLOCK, order_items=table("order_items", items), **kw))
    assert not got.duplicated(["user_id", "playbook"]).any()
    return {(r.user_id, r.playbook): (r.due_at, bool(r.exact)) for r in got.itertuples()}


# -- every trigger has a default playbook, and the new keys are checked -------------------------
def test_every_trigger_has_a_complete_default_playbook():
    by_trigger = {b.trigger: b for b in DEFAULT_PLAYBOOKS if b.trigger}
    assert set(by_trigger) == set(TRIGGERS)
    for b in by_trigger.values():
        assert b.label_zh and b.label_en and b.channel and b.goal
    assert by_trigger["membership_expiring"].goal == "renewal"
    assert by_trigger["browse_no_buy"].trigger_hours == 24
    assert (by_trigger["membership_expiring"].trigger_days, by_trigger["purchase_unused"].trigger_days) == (3, 7)


@pytest.mark.parametrize(("extra", "english", "chinese"), [
    ({"trigger": "streak_at_risk", "trigger_days": 1}, "trigger_days >= 2", "至少为 2"),
    ({"trigger": "birthday", "trigger_days": 3}, "birthday does not use trigger_days", "不使用 trigger_days"),
    ({"trigger": "review_thanks", "trigger_hours": 6}, "only browse_no_buy does", "不使用 trigger_hours"),
    ({"trigger": "birthday", "trigger_event": "login"}, "does not use trigger_event", "不使用 trigger_event"),
    ({"trigger": "cross_sell"}, "needs trigger_days", "需要 trigger_days"),
])  # fmt: skip
def test_a_trigger_with_a_key_it_does_not_use_or_without_one_it_needs_is_refused(extra, english, chinese):
    book = Playbook(name="bad_one", channel="sms", template="t", goal="care", **extra)
    with pytest.raises(ConfigError) as err:
        playbooks_from([book])
    assert english in str(err.value) and "bad_one" in str(err.value)
    assert chinese in err.value.text("zh") and "bad_one" in err.value.text("zh")


# -- browse_no_buy ---------------------------------------------------------------------------
def test_browse_no_buy_fires_hours_after_the_last_view_unless_something_was_bought_since():
    events = [
        ev(1, "v_day", "2024-06-30 10:00", "page_view", {"page": "item"}),      # due 1 July 10:00
        ev(2, "v_edge", "2024-06-30 00:00", "page_view"),                       # due 1 July 00:00: the plan's start
        ev(3, "v_before", "2024-06-29 23:59", "page_view"),                     # due 30 June 23:59: before the plan
        ev(4, "v_bought", "2024-06-30 10:00", "page_view", {"page": "item"}),
        ev(5, "v_old_order", "2024-06-30 11:00", "page_view", {"page": "item"}),
        ev(6, "v_home", "2024-06-30 10:00", "page_view", {"page": "home"}),     # not an item page
        ev(7, "v_today", "2024-07-01 09:00", "page_view", {"page": "item"}),    # not known when planning
        ev(8, "v_two", "2024-06-29 08:00", "page_view", {"page": "item"}),
        ev(9, "v_two", "2024-06-30 21:30", "page_view", {"page": "course"}),    # the last view counts
        ev(10, "v_cart", "2024-06-30 10:00", "add_to_cart"),                    # not a view
    ]  # fmt: skip
    orders = [order("o1", "v_bought", str(utc("2024-06-30 10:00")), 9.0),   # at the view: bought since
              order("o2", "v_old_order", str(utc("2024-06-30 10:59")), 9.0)]  # before the view
    got = fired([trig("browse_no_buy")], events=events, orders=orders)
    assert got == {
        ("v_day", "browse_no_buy"): (pd.Timestamp("2024-07-01 10:00"), True),
        ("v_edge", "browse_no_buy"): (pd.Timestamp("2024-07-01 00:00"), True),
        ("v_old_order", "browse_no_buy"): (pd.Timestamp("2024-07-01 11:00"), True),
        ("v_two", "browse_no_buy"): (pd.Timestamp("2024-07-01 21:30"), True),
    }


def test_browse_no_buy_hours_and_event_are_configurable():
    events = [ev(1, "a", "2024-06-30 20:00", "view_item"), ev(2, "b", "2024-06-30 20:00", "page_view")]
    got = fired([trig("browse_no_buy", trigger_hours=6, trigger_event="view_item")], events=events)
    assert got == {("a", "browse_no_buy"): (pd.Timestamp("2024-07-01 02:00"), True)}
    # 6 hours after a view at 17:59 on 30 June is before the plan; at 18:00 it is the start
    events = [ev(1, "early", "2024-06-30 17:59", "page_view"), ev(2, "edge", "2024-06-30 18:00", "page_view")]
    assert set(fired([trig("browse_no_buy", trigger_hours=6)], events=events)) == {("edge", "browse_no_buy")}


# -- review_thanks ---------------------------------------------------------------------------
def test_review_thanks_go_out_the_day_after_the_review_once_a_day():
    events = [
        ev(1, "r_day", "2024-06-30 23:30", "review"),      # local 30 June -> thanks on 1 July
        ev(2, "r_day", "2024-06-30 08:00", "review"),      # a second review the same day: one thanks
        ev(3, "r_before", "2024-06-29 23:59", "review"),   # thanks were due on 30 June
        ev(4, "r_today", "2024-07-01 09:00", "review"),    # not known when planning
        ev(5, "r_other", "2024-06-30 12:00", "share"),
    ]  # fmt: skip
    got = fired([trig("review_thanks")], events=events)
    assert got == {("r_day", "review_thanks"): (pd.Timestamp("2024-07-01"), False)}
    # a shop whose reviews arrive under another name
    events = [ev(1, "x", "2024-06-30 12:00", "rate_order"), ev(2, "y", "2024-06-30 12:00", "review")]
    got = fired([trig("review_thanks", trigger_event="rate_order")], events=events)
    assert set(got) == {("x", "review_thanks")}


# -- birthday --------------------------------------------------------------------------------
def user(uid: str, attributes: dict | None) -> tuple:
    text = json.dumps(attributes, ensure_ascii=False) if attributes is not None else None
    return (uid, utc("2023-01-01 10:00"), None, text)


def test_birthday_fires_on_the_local_day_in_any_common_spelling():
    users = [
        user("b_day", {"birthday": "1990-07-01", "city_tier": 2}),
        user("b_before", {"birthday": "1990-06-30"}),
        user("b_after", {"birthday": "1995-07-02"}),
        user("b_slash", {"birthday": "1990/7/1"}),
        user("b_zh", {"生日": "1990年7月1日"}),
        user("b_compact", {"birthday": "19900701"}),
        user("b_monthday", {"birthday": "07-01"}),
        user("b_bad", {"birthday": "unknown"}),
        user("b_none", None),
        user("b_other", {"birth_place": "07-01"}),
    ]  # fmt: skip
    one_day = fired([trig("birthday")], users=users, days=1)
    assert set(one_day) == {(u, "birthday") for u in ("b_day", "b_slash", "b_zh", "b_compact", "b_monthday")}
    assert one_day[("b_day", "birthday")] == (pd.Timestamp("2024-07-01"), False)
    week = fired([trig("birthday")], users=users, days=7)
    assert week[("b_after", "birthday")] == (pd.Timestamp("2024-07-02"), False)
    assert ("b_before", "birthday") not in week  # 30 June is the day before the plan


@pytest.mark.parametrize(("start", "expected"), [
    (dt_.date(2023, 2, 27), "2023-02-28"),   # no 29 February in 2023: the 28th
    (dt_.date(2024, 2, 27), "2024-02-29"),   # a leap year: the day itself, not the 28th
    (dt_.date(2025, 2, 28), "2025-02-28"),   # the window starts on the 28th
])  # fmt: skip
def test_a_29_february_birthday(start, expected):
    users = [user("leap", {"birthday": "2000-02-29"}), user("on_28", {"birthday": "2001-02-28"})]
    got = fired([trig("birthday")], users=users, start=start, days=3)
    assert got[("leap", "birthday")] == (pd.Timestamp(expected), False)
    assert got[("on_28", "birthday")][0] == pd.Timestamp(f"{start.year}-02-28")


# -- streak_at_risk --------------------------------------------------------------------------
def checkins(user: str, *days: str, start: int = 0) -> list[tuple]:
    return [ev(start + i, user, f"{d} 09:00", "checkin") for i, d in enumerate(days)]


def test_streak_at_risk_a_streak_ending_yesterday_without_a_checkin_today():
    events = [
        *checkins("s_risk", "2024-06-28", "2024-06-29", "2024-06-30"),
        *checkins("s_short", "2024-06-29", "2024-06-30", start=10),                 # 2 days < 3
        *checkins("s_broken", "2024-06-27", "2024-06-28", "2024-06-29", start=20),  # broken yesterday
        *checkins("s_today", "2024-06-28", "2024-06-29", "2024-06-30", "2024-07-01", start=30),  # kept today
        *checkins("s_gap", "2024-06-26", "2024-06-27", "2024-06-29", "2024-06-30", start=40),  # run of 2
    ]  # fmt: skip
    got = fired([trig("streak_at_risk", trigger_days=3)], events=events)
    assert got == {("s_risk", "streak_at_risk"): (pd.Timestamp("2024-07-01 20:00"), True)}
    # the default length (7 days) is the alerts rule's
    assert fired([trig("streak_at_risk")], events=events) == {}
    week = [*checkins("w", *(f"2024-06-{d}" for d in range(24, 31)))]
    assert set(fired([trig("streak_at_risk")], events=week)) == {("w", "streak_at_risk")}


# -- membership_expiring ---------------------------------------------------------------------
def test_membership_expiring_fires_n_days_before_the_term_ends():
    members = pd.DataFrame({
        "user_id": ["m_day", "m_before", "m_after", "m_lapsed", "m_late_evening"],
        "status": ["active", "active", "active", "lapsed", "grace"],
        "term_end": [utc("2024-07-04 10:00"), utc("2024-07-03 23:59"), utc("2024-07-05 00:00"),
                     utc("2024-07-04 10:00"), utc("2024-07-04 23:30")],  # 23:30 local is 15:30 UTC: local day counts
    })  # fmt: skip
    book = trig("membership_expiring")  # default 3 days
    one_day = fired([book], memberships=members, days=1)
    assert one_day == {("m_day", "membership_expiring"): (pd.Timestamp("2024-07-01"), False),
                       ("m_late_evening", "membership_expiring"): (pd.Timestamp("2024-07-01"), False)}
    week = fired([book], memberships=members, days=7)
    assert week[("m_after", "membership_expiring")] == (pd.Timestamp("2024-07-02"), False)
    assert ("m_before", "membership_expiring") not in week and ("m_lapsed", "membership_expiring") not in week
    # no memberships known: the trigger stays silent
    assert fired([book]) == {}


# -- purchase_unused -------------------------------------------------------------------------
def test_purchase_unused_fires_n_days_after_an_unused_course_or_membership():
    orders, items = [], []
    for i, (uid, local, category) in enumerate([
        ("p_day", "2024-06-24 10:00", "课程"),      # + 7 days = 1 July
        ("p_before", "2024-06-23 23:00", "课程"),   # 30 June: the day before the plan
        ("p_after", "2024-06-25 00:30", "会员"),    # 2 July
        ("p_used", "2024-06-24 10:00", "课程"),
        ("p_used_before", "2024-06-24 10:00", "课程"),
        ("p_skin", "2024-06-24 10:00", "皮肤"),     # not a course or membership
    ]):  # fmt: skip
        orders.append(order(f"o{i}", uid, str(utc(local)), 99.0))
        items.append((f"o{i}", 1, f"sku{i}", category, 1, 99.0))
    orders.append(order("o9", "p_refunded", str(utc("2024-06-24 10:00")), 99.0, status="refunded", refund=99.0,
                        refunded_at=str(utc("2024-06-25 10:00"))))
    items.append(("o9", 1, "sku9", "课程", 1, 99.0))
    events = [ev(1, "p_used", "2024-06-26 20:00", "watch"), ev(2, "p_used_before", "2024-06-20 20:00", "watch"),
              ev(3, "p_day", "2024-06-26 20:00", "share")]  # a share is not a use
    book = trig("purchase_unused")  # default 7 days
    one_day = fired([book], orders=orders, items=items, events=events, days=1)
    assert one_day == {("p_day", "purchase_unused"): (pd.Timestamp("2024-07-01"), False),
                       ("p_used_before", "purchase_unused"): (pd.Timestamp("2024-07-01"), False)}
    week = fired([book], orders=orders, items=items, events=events, days=7)
    assert week[("p_after", "purchase_unused")] == (pd.Timestamp("2024-07-02"), False)
    assert {u for u, _ in week} == {"p_day", "p_used_before", "p_after"}
    # the usage events are the alerts rule's setting
    rules = AlertSettings(usage_events=["share"])
    got = fired([book], orders=orders, items=items, events=events, days=1, alerts=rules)
    assert {u for u, _ in got} == {"p_used", "p_used_before"}


# -- through the plan ------------------------------------------------------------------------
def test_new_triggers_become_contacts_with_their_reason_under_quiet_hours_and_caps():
    events = [
        ev(1, "a", "2024-06-30 23:30", "page_view", {"page": "item"}),   # browse due 1 July 23:30: quiet hours
        *checkins("b", "2024-06-28", "2024-06-29", "2024-06-30", start=10),
        ev(20, "b", "2024-06-30 12:00", "review"),                       # thanks on 1 July
        *[ev(30 + i, "b", f"2024-06-{d} 14:00", "login") for i, d in enumerate((24, 25, 26))],  # best hour 14
    ]  # fmt: skip
    users = [user("a", None), user("b", {"birthday": "1990-07-03"})]
    books = [trig("browse_no_buy", trigger_hours=24), trig("streak_at_risk", trigger_days=3, priority=55),
             trig("review_thanks", priority=40), trig("birthday", priority=70)]
    due = run(trigger_times(table("users", users), table("orders"), table("events", events), books, start=START,
                            days=7, clock=CLOCK))
    prof = pd.DataFrame({"user_id": ["a", "b"], "tier": ["regular", "explorer"], "lifecycle": ["mature", "mature"],
                         "best_hour_weekday": [None, 14], "best_hour_weekend": [None, 14]})
    cadence = CadenceSettings(weekly_caps={"explorer": 2, "regular": 3, "engaged": 5, "co_builder": 5})
    plan = build_plan(prof, books, start=START, days=7, cadence=cadence, members=prof[["user_id"]], triggers=due)
    c = plan.contacts.set_index(["user_id", "playbook"])
    a = c.loc[("a", "browse_no_buy")]
    assert a["source"] == "trigger:browse_no_buy" and a["status"] == "moved"
    assert a["send_at"] == pd.Timestamp("2024-07-02 08:00") and a["reason_en"] == "quiet hours, moved to 08:00"
    assert a["why_en"] == "trigger browse_no_buy (24 hours) → browse_no_buy"
    assert a["why_zh"] == "触发 browse_no_buy (24小时) → browse_no_buy"
    # b: birthday (70) and streak (55) fit the explorer cap of 2; the review thanks (40) do not
    assert c.loc[("b", "birthday"), "send_at"] == pd.Timestamp("2024-07-03 14:00")
    assert c.loc[("b", "streak_at_risk"), "send_at"] == pd.Timestamp("2024-07-01 20:00")
    assert c.loc[("b", "streak_at_risk"), "status"] == "planned"
    thanks = c.loc[("b", "review_thanks")]
    assert thanks["status"] == "dropped" and thanks["reason_en"] == "cap reached: 2/2 this week"
    assert thanks["source"] == "trigger:review_thanks"


def test_make_plan_feeds_the_purchase_and_membership_triggers_from_order_items():
    users = [("m", utc("2024-01-01 10:00"), None, None), ("p", utc("2024-01-01 10:00"), None, None)]
    # a monthly membership bought on 4 June 10:00 ends 30 days later, 4 July 10:00: 3 days before is 1 July
    orders = [order("o1", "m", str(utc("2024-06-04 10:00")), 30.0),
              order("o2", "p", str(utc("2024-06-24 10:00")), 99.0)]
    items = [("o1", 1, "vip-month", "会员", 1, 30.0), ("o2", 1, "python-101", "课程", 1, 99.0)]
    events = [ev(1, "m", "2024-06-10 14:00", "login"), ev(2, "p", "2024-06-20 15:00", "login")]
    tables = {"users": table("users", users), "orders": table("orders", orders),
              "order_items": table("order_items", items), "events": table("events", events)}
    settings = Settings()
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    profile = build_profile(**tables, as_of=START - dt_.timedelta(days=1), settings=settings)
    plan = make_plan(**tables, settings=settings, engine="duckdb", execute=con.execute, profile=profile,
                     start=START, days=7)
    c = plan.contacts
    got = c[c["source"].astype(str).isin(["trigger:membership_expiring", "trigger:purchase_unused"])]
    assert sorted(zip(got["user_id"], got["playbook"].astype(str), got["send_at"].dt.date)) == [
        ("m", "membership_renewal", dt_.date(2024, 7, 1)),
        ("p", "purchase_unused_guide", dt_.date(2024, 7, 1)),
    ]
    assert (got["status"].astype(str) != "dropped").all()
    # without order_items neither can be known: no such contact
    bare = make_plan(**{k: v for k, v in tables.items() if k != "order_items"}, settings=settings, engine="duckdb",
                     execute=con.execute, profile=profile, start=START, days=7)
    assert not bare.contacts["source"].astype(str).isin(["trigger:membership_expiring",
                                                          "trigger:purchase_unused"]).any()



def test_the_new_triggers_are_accepted_from_userstrata_toml(tmp_path):
    from userstrata.activate.playbooks import playbooks_from
    from userstrata.config import Settings

    path = tmp_path / "userstrata.toml"
    path.write_text('[[playbooks]]\nname = "browse_reminder"\ntrigger_hours = 6\n\n'
                    '[[playbooks]]\nname = "gift"\ntrigger = "birthday"\nchannel = "sms"\ngoal = "care"\ntemplate = "SMS_1"\n',
                    encoding="utf-8")
    books = {b.name: b for b in playbooks_from(Settings.load(path))}
    assert books["browse_reminder"].trigger == "browse_no_buy" and books["browse_reminder"].trigger_hours == 6
    assert books["gift"].trigger == "birthday"
    path.write_text('[[playbooks]]\nname = "x"\ntrigger = "birthdays"\nchannel = "sms"\n', encoding="utf-8")
    with pytest.raises(Exception, match="birthday"):
        Settings.load(path)
