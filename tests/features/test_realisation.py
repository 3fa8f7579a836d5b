"""Value realisation index: each component and boundary on hand-worked cases, then a plain
pandas recount of use per purchase on the simulated shop."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import order, table

from userstrata.config import RealisationSettings, Settings
from userstrata.errors import ConfigError
from userstrata.features._time import Clock
from userstrata.features.realisation import (
    json_number,
    json_text,
    purchase_usage,
    realisation_index,
    unused_purchases,
)

AS_OF = dt.date(2024, 6, 30)
RULES = RealisationSettings()
# purchases at 02:00 UTC = 10:00 in Shanghai: day 0 is the same date in both


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


def ev(i, user, ts, name, props=None):
    return (f"e{i}", user, None, None, ts, name, props)


def usage(orders, items, events, as_of=AS_OF, rules=RULES) -> pd.DataFrame:
    expr = purchase_usage(table("orders", orders), table("order_items", items), table("events", events),
                          as_of=as_of, clock=Clock(), rules=rules)  # fmt: skip
    return _con().execute(expr).set_index("order_id")


def index(orders, items, events, as_of=AS_OF, rules=RULES) -> pd.DataFrame:
    expr = purchase_usage(table("orders", orders), table("order_items", items), table("events", events),
                          as_of=as_of, clock=Clock(), rules=rules)  # fmt: skip
    return _con().execute(realisation_index(expr)).set_index("user_id")


COURSE = [order("o1", "u1", "2024-06-01 02:00", 299.0)]
COURSE_ITEM = [("o1", 1, "course-python", "课程", 1, 299.0)]


def test_chapters_speed_and_index_by_hand():
    events = [
        ev(1, "u1", "2024-06-04 02:00", "watch", '{"chapter":1,"chapters_total":12}'),
        ev(2, "u1", "2024-06-05 02:00", "watch", '{"chapter": "2", "chapters_total": 12}'),
        ev(3, "u1", "2024-06-05 03:00", "watch", '{"chapter":2,"chapters_total":12}'),  # same chapter again
    ]
    row = usage(COURSE, COURSE_ITEM, events).loc["o1"]
    assert (row.used_days, row.first_use_days, row.chapters_seen, row.chapters_total) == (2, 3, 2, 12)
    assert row.status == "used" and row.used == 1 and row.derived == 0
    assert row.speed == pytest.approx(1 - 3 / 15)  # first use on day 3 of N = 14: 1 - 3/(N+1)
    assert row.depth == pytest.approx(2 / 12)
    expected = 100 * (0.3 * 1 + 0.2 * 0.8 + 0.4 * 2 / 12 + 0.1 * 0)  # 52.666...
    assert row.index_points == round(expected * 100)
    user = index(COURSE, COURSE_ITEM, events).loc["u1"]
    assert user.realisation_index == pytest.approx(52.67)
    assert user.purchases_judged == 1 and user.purchases_in_time == 1 and user.purchases_unused == 0
    assert "used 2 of 12 chapters in 29 days" in user.realisation_reason_en
    assert "first use after 3 days" in user.realisation_reason_en
    assert "no share or review" in user.realisation_reason_en
    assert "12 章中的 2 章" in user.realisation_reason_zh and "没有分享或评价" in user.realisation_reason_zh


@pytest.mark.parametrize(
    ("as_of", "status"),
    [(dt.date(2024, 6, 14), "pending"), (dt.date(2024, 6, 15), "unused")],  # 13 and 14 days after
)
def test_unused_only_once_n_days_have_passed(as_of, status):
    row = usage(COURSE, COURSE_ITEM, [], as_of=as_of).loc["o1"]
    assert row.status == status and row.days_since_purchase == (as_of - dt.date(2024, 6, 1)).days
    expr = unused_purchases(purchase_usage(
        table("orders", COURSE), table("order_items", COURSE_ITEM), table("events", []),
        as_of=as_of, clock=Clock(), rules=RULES))  # fmt: skip
    listed = _con().execute(expr)
    assert list(listed.order_id) == (["o1"] if status == "unused" else [])
    user = index(COURSE, COURSE_ITEM, [], as_of=as_of).loc["u1"]
    if status == "pending":  # too early: no index, the reason says so
        assert pd.isna(user.realisation_index) and user.purchases_pending == 1
        assert "too recent" in user.realisation_reason_en
    else:
        assert user.realisation_index == 0 and user.purchases_unused == 1
        assert "not used in 14 days" in user.realisation_reason_en


@pytest.mark.parametrize(
    ("ts", "status", "speed"),
    [
        ("2024-06-15 15:59", "used", 1 / 15),  # 23:59 on 06-15 in Shanghai: day 14, in time
        ("2024-06-15 16:00", "late", 0.0),  # 00:00 on 06-16 in Shanghai: day 15, late
    ],
)
def test_first_use_on_day_n_is_in_time_in_shop_days(ts, status, speed):
    row = usage(COURSE, COURSE_ITEM, [ev(1, "u1", ts, "watch")]).loc["o1"]
    assert row.status == status and row.used == 1
    assert row.speed == pytest.approx(speed)


def test_use_counts_only_after_the_purchase_and_inside_the_window():
    events = [
        ev(1, "u1", "2024-06-01 01:59", "watch"),  # a minute before the purchase
        ev(2, "u1", "2024-07-01 02:00", "watch"),  # day 30: inside the 30-day window
        ev(3, "u1", "2024-07-02 02:00", "watch"),  # day 31: outside
    ]
    row = usage(COURSE, COURSE_ITEM, events, as_of=dt.date(2024, 7, 5)).loc["o1"]
    assert row.used_days == 1 and row.first_use_days == 30 and row.status == "late"


def test_only_the_categorys_usage_events_count():
    events = [
        ev(1, "u1", "2024-06-02 02:00", "use", '{"feature":"play"}'),  # a game's use, not the course's
        ev(2, "u1", "2024-06-03 02:00", "login"),  # login counts for memberships only
        ev(3, "u1", "2024-06-04 02:00", "watch", '{"sku":"course-data"}'),  # another course's lesson
        ev(4, "u1", "2024-06-05 02:00", "use", '{"feature":"course_video"}'),  # counts
    ]
    row = usage(COURSE, COURSE_ITEM, events).loc["o1"]
    assert row.used_days == 1 and row.first_use_days == 4


def test_progress_and_percent_and_days_give_depth():
    orders = [order("o1", "u1", "2024-06-01 02:00", 299.0), order("o2", "u2", "2024-06-01 02:00", 299.0),
              order("o3", "u3", "2024-06-01 02:00", 15.0)]  # fmt: skip
    items = [("o1", 1, "course-python", "课程", 1, 299.0), ("o2", 1, "course-data", "课程", 1, 299.0),
             ("o3", 1, "vip-month", "会员", 1, 15.0)]  # fmt: skip
    events = [
        ev(1, "u1", "2024-06-02 02:00", "watch", '{"progress":0.25}'),
        ev(2, "u1", "2024-06-03 02:00", "watch", '{"progress":0.4}'),  # best progress 40%
        ev(3, "u2", "2024-06-02 02:00", "watch", '{"percent": 55}'),
        *[ev(10 + d, "u3", f"2024-06-{2 + d:02d} 02:00", "login") for d in range(4)],  # 4 of 8 target days
    ]
    got = usage(orders, items, events)
    assert got.loc["o1", "percent"] == 40 and got.loc["o1", "depth"] == pytest.approx(0.4)
    assert got.loc["o2", "percent"] == 55 and got.loc["o2", "depth"] == pytest.approx(0.55)
    assert pd.isna(got.loc["o3", "percent"]) and got.loc["o3", "depth"] == pytest.approx(4 / 8)
    reasons = index(orders, items, events)["realisation_reason_en"]
    assert "reached 40% in 29 days" in reasons["u1"] and "used on 4 of 29 days" in reasons["u3"]


def test_shares_and_reviews_after_the_purchase_are_derived_actions():
    events = [
        ev(1, "u1", "2024-05-31 02:00", "share"),  # before: not derived from this purchase
        ev(2, "u1", "2024-06-10 02:00", "review"),
        ev(3, "u1", "2024-06-11 02:00", "share"),
    ]
    row = usage(COURSE, COURSE_ITEM, events).loc["o1"]
    assert row.derived_actions == 2 and row.derived == 1 and row.used == 0
    assert row.index_points == round(100 * 0.1 * 100)  # only the derived weight
    assert "shares or reviews: 2" in index(COURSE, COURSE_ITEM, events).loc["u1", "realisation_reason_en"]


def test_refunded_cancelled_and_other_categories_are_not_purchases_to_use():
    orders = [
        order("o1", "u1", "2024-06-01 02:00", 299.0, status="refunded", refund=299.0),
        order("o2", "u1", "2024-06-01 02:00", 299.0, status="cancelled"),
        order("o3", "u1", "2024-06-01 02:00", 68.0),  # a skin: no use to track
        order("o4", "u1", "2024-06-01 02:00", 299.0, status="partially_refunded", refund=100.0),
    ]
    items = [("o1", 1, "course-python", "课程", 1, 299.0), ("o2", 1, "course-python", "课程", 1, 299.0),
             ("o3", 1, "skin-rare", "皮肤", 1, 68.0), ("o4", 1, "course-data", "课程", 1, 299.0)]  # fmt: skip
    assert list(usage(orders, items, []).index) == ["o4"]


def test_user_index_is_the_mean_of_judged_purchases():
    orders = [order("o1", "u1", "2024-06-01 02:00", 299.0), order("o2", "u1", "2024-06-02 02:00", 15.0),
              order("o3", "u1", "2024-06-28 02:00", 15.0)]  # fmt: skip
    items = [("o1", 1, "course-python", "课程", 1, 299.0), ("o2", 1, "vip-month", "会员", 1, 15.0),
             ("o3", 1, "vip-year", "会员", 1, 15.0)]  # fmt: skip
    events = [ev(1, "u1", "2024-06-01 03:00", "watch", '{"percent":100}')]  # the course, day 0, done
    user = index(orders, items, events).loc["u1"]
    # o1: 0.3 + 0.2 * 1 + 0.4 * 1 = 90; o2: not used = 0; o3: 2 days old, pending, left out
    assert user.realisation_index == pytest.approx(45.0)
    assert (user.purchases_judged, user.purchases_in_time, user.purchases_unused, user.purchases_pending) == (2, 1, 1, 1)
    assert user.used_share == 0.5 and user.depth_score == 0.5 and user.speed_score == 0.5
    assert user.first_use_days_mean == 0
    assert "1 of 2 purchases used in time; latest vip-month" in user.realisation_reason_en


def test_json_properties_are_read_portably():
    t = ibis.memtable(pd.DataFrame({"p": ['{"chapter":3,"feature":"play"}', '{"chapter" : "4.5"}', None, "{}"]}))
    got = _con().execute(t.select(n=json_number(t.p, "chapter"), f=json_text(t.p, "feature")))
    assert got.n.tolist()[:2] == [3.0, 4.5] and got.n.isna().tolist()[2:] == [True, True]
    assert got.f.tolist()[0] == "play" and got.f.isna().tolist()[1:] == [True, True, True]


def test_settings_reject_a_bad_rule_and_a_short_window():
    with pytest.raises(ConfigError, match="usage_events"):
        Settings.from_dict({"realisation": {"usage_events": {"课程": ["use:"]}}})
    with pytest.raises(ConfigError, match="unused_after_days"):
        Settings.from_dict({"realisation": {"unused_after_days": 40, "window_days": 30}})


# -- the simulated shop: a plain pandas recount --------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from userstrata.datasets import simulate_shop
    from userstrata.schema import CANONICAL
    from userstrata.workspace import Workspace

    folder = tmp_path_factory.mktemp("sim")
    files = simulate_shop(150, folder / "files", seed=7, end=AS_OF)
    ws = Workspace.open(":memory:", settings=Settings())
    for name, path in files.items():
        if name in CANONICAL:
            ws.load(name, path)
    yield ws
    ws.close()


def test_use_per_purchase_matches_a_pandas_recount(sim):
    rules = RULES
    got = purchase_usage(sim.table("orders"), sim.table("order_items"), sim.table("events"),
                         as_of=AS_OF, clock=Clock(), rules=rules).to_pandas()  # fmt: skip
    orders = sim.table("orders").to_pandas()
    items = sim.table("order_items").to_pandas()
    events = sim.table("events").to_pandas()
    shift = pd.Timedelta(hours=8)  # Asia/Shanghai has no daylight saving
    orders = orders[orders.status.isin(["paid", "completed", "refunding", "partially_refunded", "refunded"])]
    orders = orders[(orders.ts + shift).dt.date <= AS_OF]
    orders = orders[(orders.refund_amount.fillna(0) < orders.amount) | (orders.amount == 0)]  # free trials kept
    lines = items[items.category.isin(list(rules.usage_events))].merge(orders[["order_id", "user_id", "ts"]], on="order_id")
    events = events[events.user_id.notna()].copy()
    events["day"] = (events.ts + shift).dt.date
    events["feature"] = events.properties.str.extract(r'"feature":"([^"]*)"', expand=False)
    events = events[events.day <= AS_OF]
    rules_frame = pd.DataFrame(
        [(c, *r.split(":")) if ":" in r else (c, r, None) for c, rs in rules.usage_events.items() for r in rs],
        columns=["category", "event", "rule_feature"],
    )
    lines["day0"] = (lines.ts + shift).dt.date
    pairs = lines.merge(events[["user_id", "ts", "day", "event", "feature"]], on="user_id", suffixes=("", "_ev"))
    pairs = pairs[pairs.ts_ev >= pairs.ts]
    pairs["d"] = [(d - d0).days for d, d0 in zip(pairs.day, pairs.day0)]
    pairs = pairs[pairs.d <= rules.window_days]
    used = pairs.merge(rules_frame, on=["category", "event"])
    used = used[used.rule_feature.isna() | (used.rule_feature == used.feature)]
    used = used.drop_duplicates(["order_id", "line_no", "ts_ev", "event", "feature"])
    per_line = used.groupby(["order_id", "line_no"]).agg(used_days=("day", "nunique"), first_use_days=("d", "min"))
    derived = pairs[pairs.event.isin(rules.derived_events)].groupby(["order_id", "line_no"]).size()
    want = lines[["order_id", "line_no"]].set_index(["order_id", "line_no"])
    want = want.join(per_line).join(derived.rename("derived_actions")).reset_index()
    want = want.fillna({"used_days": 0, "derived_actions": 0})
    assert len(want) > 100
    cols = ["order_id", "line_no", "used_days", "first_use_days", "derived_actions"]
    got = got[cols].sort_values(["order_id", "line_no"]).reset_index(drop=True)
    want = want.sort_values(["order_id", "line_no"]).reset_index(drop=True)
    for frame in (got, want):
        frame["line_no"] = frame["line_no"].astype("int64")
        for col in cols[2:]:
            frame[col] = frame[col].astype("float64")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
