"""Early warnings: every rule on hand-made histories (boundary days included), the alerts table
(no duplicates on a re-run, closing, refusing an earlier day), the CLI, and the simulator's
injected incident against a plain-pandas reference of the segment rule."""

import datetime as dt
import json

import ibis
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from builders import event, order, rows_frame, table
from userstrata.config import AlertSettings, Settings
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure import alerts as al
from userstrata.workspace import Workspace

AS_OF = dt.date(2024, 6, 30)  # a Sunday
CLOCK = Clock("Asia/Shanghai", "duckdb")
RULES = AlertSettings()


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    c.raw_sql("SET TimeZone = 'UTC'")
    return c


def day(text: str, hour: int = 4) -> str:
    """A UTC timestamp at ``hour`` (04:00 UTC is noon in Shanghai: the same local day)."""
    return f"{text} {hour:02d}:00"


def profile(*rows) -> ibis.Table:
    return ibis.memtable(pd.DataFrame(rows, columns=["user_id", "tier", "lifecycle"]))


def days_range(first: str, n: int) -> list[str]:
    start = dt.date.fromisoformat(first)
    return [str(start + dt.timedelta(days=i)) for i in range(n)]


def events_on(user, dates, name="page_view"):
    return [event(f"{user}-{name}-{d}", user, day(d), name) for d in dates]


# ------------------------------------------------------------------------------ activity drop


def test_activity_drop_boundaries(con):
    # recent window 06-17..06-30 (14 days); baseline 04-18..06-16 (60 days)
    base30 = days_range("2024-05-01", 30)  # 30 baseline days: 7 per 14 days, half = 3.5
    rows = (
        events_on("u3", base30) + events_on("u3", days_range("2024-06-20", 3))  # 3 < 3.5: fires
        + events_on("u4", base30) + events_on("u4", days_range("2024-06-20", 4))  # 4: does not
        + events_on("u0", days_range("2024-05-01", 4))  # baseline 4 (the minimum), recent 0: fires
        + events_on("m3", days_range("2024-05-01", 3))  # baseline 3: too thin
        # 04-17 is outside the baseline, 04-18 inside: baseline 4 days -> fires
        + events_on("edge", ["2024-04-18", "2024-05-01", "2024-05-02", "2024-05-03"])
        + events_on("out", ["2024-04-17", "2024-05-01", "2024-05-02", "2024-05-03"])
    )
    # 2024-06-16 17:00 UTC is 06-17 01:00 in Shanghai: a recent day, not a baseline day
    rows += events_on("u0b", days_range("2024-05-01", 4)) + [event("late", "u0b", "2024-06-16 17:00", "login")]
    orders = [order("o1", "buyer", day("2024-06-25"), 10)]  # a purchase is activity too
    rows += events_on("buyer", days_range("2024-05-01", 8))
    got = con.execute(al.activity_drop(table("events", rows), table("orders", orders),
                                       profile(("u3", "engaged", "mature")), as_of=AS_OF, clock=CLOCK, rules=RULES))
    got = got.set_index("user_id")
    assert set(got.index) == {"u3", "u0", "edge"}
    assert got.loc["u3", "recent_days"] == 3 and got.loc["u3", "baseline_days"] == 30
    assert got.loc["u3", "tier"] == "engaged" and pd.isna(got.loc["u0", "tier"])
    # buyer: 8 baseline days -> 1.87 per 14, half 0.93; 1 recent day (the order) -> no alert


def test_activity_drop_text_says_what_was_seen():
    frame = pd.DataFrame({"user_id": ["u1"], "tier": ["co_builder"], "recent_days": [2], "baseline_days": [39]})
    (row,) = al._describe_users("activity_drop", frame, as_of=AS_OF, rules=RULES)
    assert row["seen_zh"] == "活跃天数近14天 2 天，此前 60 天平均每 14 天 9.1 天"
    assert row["seen_en"] == "active days: 2 in the last 14 days; 9.1 per 14 days over the 60 days before"
    assert json.loads(row["seen"])["baseline_per_window"] == 9.1  # 39 * 14 / 60 = 9.1
    assert row["severity"] == "high"


# ------------------------------------------------------------------------------ silent high tier


def test_silent_high_tier(con):
    rows = (events_on("e14", ["2024-06-16"]) + events_on("e13", ["2024-06-17"])
            + events_on("c40", ["2024-05-21"]) + events_on("r40", ["2024-05-21"]))
    p = profile(("e14", "engaged", "mature"), ("e13", "engaged", "mature"), ("c40", "co_builder", "dormant"),
                ("r40", "regular", "dormant"))
    got = con.execute(al.silent_high_tier(table("events", rows), table("orders"), p, as_of=AS_OF, clock=CLOCK,
                                          rules=RULES)).set_index("user_id")
    assert set(got.index) == {"e14", "c40"}  # 14 silent days fire, 13 do not; regular is not watched
    assert got.loc["e14", "silent_days"] == 14 and got.loc["c40", "silent_days"] == 40


# ------------------------------------------------------------------------------ purchases not used

ITEMS = [
    ("c16", 1, "course-python", "课程", 1, 299.0), ("c17", 1, "course-python", "课程", 1, 299.0),
    ("c10", 1, "course-data", "课程", 1, 999.0), ("c10b", 1, "vip-month", "会员", 1, 15.0),
    ("g01", 1, "item-pet", "游戏道具", 1, 68.0), ("old", 1, "course-intro", "课程", 1, 99.0),
    ("ref", 1, "course-intro", "课程", 1, 99.0),
]  # fmt: skip


def test_unused_purchase_boundaries(con):
    orders = [
        order("c16", "a", day("2024-06-16"), 299),  # 14 days unused: fires
        order("c17", "b", day("2024-06-17"), 299),  # 13 days: not yet
        order("c10", "c", day("2024-06-10"), 999),  # watched two days later: used
        order("c10b", "d", day("2024-06-10", 6), 15),  # logged in before the purchase only: fires
        order("g01", "e", day("2024-06-01"), 68),  # a game item: not watched by this rule
        order("old", "f", day("2024-03-01"), 99),  # beyond the 90-day look-back
        order("ref", "g", day("2024-06-01"), 99, status="refunded", refund=99, refunded_at=day("2024-06-02")),
    ]
    rows = [event("w", "c", day("2024-06-12"), "watch"), event("l", "d", day("2024-06-10", 2), "login"),
            event("x", "a", day("2024-06-20"), "page_view")]  # browsing is not using
    got = con.execute(al.unused_purchase(table("events", rows), table("orders", orders), table("order_items", ITEMS),
                                         profile(("a", "regular", "new")), as_of=AS_OF, clock=CLOCK, rules=RULES))
    got = got.set_index("user_id")
    assert set(got.index) == {"a", "d"}
    assert got.loc["a", "days_unused"] == 14 and got.loc["a", "sku"] == "course-python"
    assert got.loc["d", "days_unused"] == 20 and got.loc["d", "unused_purchases"] == 1


def test_no_login_after_course(con):
    orders = [order("c16", "a", day("2024-06-01"), 299), order("c17", "b", day("2024-06-01"), 299),
              order("c10", "c", day("2024-06-17"), 999), order("old", "d", day("2024-06-16"), 99),
              order("c10b", "e", day("2024-06-01"), 15)]  # a membership, not a course
    rows = [event("la", "a", day("2024-06-16"), "login"),  # 14 days since: fires
            event("lb", "b", day("2024-06-17"), "login"),  # 13 days: not
            event("ld", "d", day("2024-06-15"), "login")]  # before the course: d has none since -> 14 days
    got = con.execute(al.no_login_after_course(table("events", rows), table("orders", orders),
                                               table("order_items", ITEMS), profile(), as_of=AS_OF, clock=CLOCK,
                                               rules=RULES)).set_index("user_id")
    assert set(got.index) == {"a", "d"}
    assert got.loc["a", "days_without_login"] == 14 and pd.isna(got.loc["d", "last_login"])
    assert str(pd.Timestamp(got.loc["a", "last_login"]).date()) == "2024-06-16"


# ------------------------------------------------------------------------------ check-in streak


def test_streak_at_risk(con):
    rows = (
        events_on("s7", days_range("2024-06-23", 7), "checkin")  # 06-23..06-29, not 06-30: fires
        + events_on("done", days_range("2024-06-23", 8), "checkin")  # checked in today too
        + events_on("s6", days_range("2024-06-24", 6), "checkin")  # 6 days: too short
        + events_on("gap", days_range("2024-06-15", 7) + days_range("2024-06-23", 6), "checkin")  # 06-22 missed
        + events_on("s10", days_range("2024-06-20", 10), "checkin")
        + events_on("old", days_range("2024-06-20", 7), "checkin")  # the run ended 06-26
    )
    got = con.execute(al.streak_at_risk(table("events", rows), profile(("s7", "co_builder", "mature")), as_of=AS_OF,
                                        clock=CLOCK, rules=RULES)).set_index("user_id")
    assert set(got.index) == {"s7", "s10"}
    assert got.loc["s7", "streak_days"] == 7 and got.loc["s10", "streak_days"] == 10


# ------------------------------------------------------------------------------ memberships


def test_expiring_memberships():
    members = pd.DataFrame({
        "user_id": ["a", "b", "c", "d", "e"], "plan": ["vip-month"] * 5,
        "status": ["active", "active", "grace", "active", "active"],
        "term_end": pd.to_datetime(["2024-07-03"] * 5),
        "days_to_expiry": [2.5, 7.0, 0.0, 7.5, 3.0], "p_renew_next": [0.2, 0.49, 0.1, 0.1, 0.5],
    })  # fmt: skip
    got = al.expiring_memberships(members, pd.DataFrame({"user_id": ["a"], "tier": ["engaged"]}), rules=RULES)
    # d: beyond 7 days; e: P(renew) 0.5 is not below 0.5
    assert list(got["user_id"]) == ["a", "b", "c"] and got["tier"].iloc[0] == "engaged"


# ------------------------------------------------------------------------------ segment metric


def _segment_history(daily_active: dict[str, list[int]]) -> list[tuple]:
    """Page views of ``n`` distinct users of each segment on each of the 35 days up to AS_OF."""
    rows = []
    for seg, counts in daily_active.items():
        for offset, n in enumerate(counts):  # offset 0 = the first day
            d = AS_OF - dt.timedelta(days=len(counts) - 1 - offset)
            rows += [event(f"{seg}{i}-{d}", f"{seg}{i}", day(str(d)), "page_view") for i in range(n)]
    return rows


def _tiers_of(daily_active):
    users = [(f"{seg}{i}", seg, "mature") for seg, c in daily_active.items() for i in range(max(c))]
    return profile(*users)


def test_segment_metric_drop_needs_all_days_down_and_volume(con):
    flat = [30] * 32
    daily = {
        "engaged": flat + [25, 25, 25],  # down 16.7% on each of the last 3 days: fires
        "regular": flat + [30, 25, 25],  # only 2 days down
        "explorer": flat + [26, 26, 26],  # down 13.3%: within the 15%
        "co_builder": [19] * 32 + [0, 0, 0],  # 19 a day at baseline: under the minimum volume of 20
    }
    rules = RULES.model_copy(update={"segment_metrics": ["active_users"]})
    got = con.execute(al.segment_metric_drop(table("events", _segment_history(daily)), table("orders"),
                                             table("users"), _tiers_of(daily), by="tier", as_of=AS_OF,
                                             clock=CLOCK, rules=rules))
    assert set(got["segment"]) == {"engaged"}
    got = got.sort_values("day")
    assert [str(pd.Timestamp(d).date()) for d in got["day"]] == ["2024-06-28", "2024-06-29", "2024-06-30"]
    assert list(got["value"]) == [25.0] * 3 and list(got["baseline"]) == [30.0] * 3


def test_segment_metric_compares_the_same_weekday(con):
    # weekends (Sat/Sun) are quiet every week; the last 3 days are Fri, Sat, Sun
    weekly = [15 if (AS_OF - dt.timedelta(days=34 - i)).weekday() >= 5 else 40 for i in range(35)]
    dropped = weekly[:-3] + [30, 11, 11]  # Fri 40 -> 30, weekend 15 -> 11: each down > 15%
    daily = {"engaged": weekly, "regular": dropped}
    rules = RULES.model_copy(update={"segment_metrics": ["active_users"], "min_volume": 10})
    got = con.execute(al.segment_metric_drop(table("events", _segment_history(daily)), table("orders"),
                                             table("users"), _tiers_of(daily), by="tier", as_of=AS_OF,
                                             clock=CLOCK, rules=rules))
    assert set(got["segment"]) == {"regular"}  # the weekly dip of "engaged" is no alarm
    assert sorted(got["baseline"]) == [15.0, 15.0, 40.0]


def test_segment_conversion_and_orders(con):
    rows, orders = [], []
    for offset in range(35):
        d = str(AS_OF - dt.timedelta(days=34 - offset))
        carts = 10 if offset < 32 else 4  # 40 viewers a day: 25% -> 10% on the last 3 days
        for i in range(40):
            rows.append(event(f"v{i}-{d}", f"g{i}", day(d), "page_view"))
            if i < carts:
                rows.append(event(f"c{i}-{d}", f"g{i}", day(d), "add_to_cart"))
        for i in range(20 if offset < 32 else 30):  # orders up: no order alert
            orders.append(order(f"o{i}-{d}", f"g{i}", day(d), 10))
    p = profile(*[(f"g{i}", "engaged", "mature") for i in range(40)])
    rules = RULES.model_copy(update={"segment_metrics": ["conversion", "orders", "gmv"]})
    got = con.execute(al.segment_metric_drop(table("events", rows), table("orders", orders), table("users"), p,
                                             by="lifecycle", as_of=AS_OF, clock=CLOCK, rules=rules))
    assert set(got["metric"]) == {"conversion"} and set(got["segment"]) == {"mature"}
    assert np.allclose(got["value"], 0.1) and np.allclose(got["baseline"], 0.25)
    (row,) = al._describe_segments(got, rules=RULES)
    assert row["subject"] == "lifecycle=mature" and row["severity"] == "high"  # down 60%
    assert "10.0% / 10.0% / 10.0%" in row["seen_en"] and "25.0%" in row["seen_zh"]


def test_segment_by_unknown_column_is_an_input_error(con):
    with pytest.raises(InputError, match="segment_by"):
        al.segment_metric_drop(table("events"), table("orders"), table("users"), profile(), by="nope", as_of=AS_OF,
                               clock=CLOCK, rules=RULES)


# ------------------------------------------------------------------------------ the alerts table


def _frame(rows: list[tuple], name: str) -> pd.DataFrame:
    frame = rows_frame(name, rows)
    return frame.drop(columns=[c for c in ("anonymous_id", "session_id", "properties") if c in frame])


# one segment query instead of eight keeps these tests quick (each query costs its compile)
LIGHT = Settings.from_dict({"alerts": {"segment_by": ["tier"], "segment_metrics": ["active_users"]}})
LIGHT_TOML = '''[alerts]
segment_by = ["tier"]
segment_metrics = ["active_users"]
silent_tiers = ["explorer", "regular", "engaged", "co_builder"]
'''


@pytest.fixture
def store_ws(tmp_path):
    """u1 (engaged) active until 06-16, u2 (regular) checking in every day from 06-20."""
    ws = Workspace.open(tmp_path / "a.duckdb", settings=LIGHT)
    rows = events_on("u1", days_range("2024-05-01", 30) + ["2024-06-16"]) + events_on(
        "u2", days_range("2024-06-20", 12), "checkin")
    ws.load_frame("events", _frame(rows, "events"), source="test")
    ws.load_frame("orders", _frame([order("o1", "u1", day("2024-05-01"), 10)], "orders"), source="test")
    yield ws
    ws.close()


PROFILE = pd.DataFrame({"user_id": ["u1", "u2"], "tier": ["engaged", "regular"], "lifecycle": ["mature", "new"]})


def _evaluate(ws, as_of):
    return al.evaluate_alerts(ws.store, as_of, ws.settings, profile=PROFILE, members=None, rules=USER_RULES)


USER_RULES = ["activity_drop", "silent_high_tier", "streak_at_risk"]


def test_evaluating_a_day_twice_adds_nothing_and_closes_what_stops(store_ws):
    first = _evaluate(store_ws, AS_OF)
    table1 = al.list_alerts(store_ws.store)
    # u1: activity drop (0 days in 06-17..06-30 against 31 in the 60 days before) and silent 14 days
    assert set(zip(table1["rule"], table1["subject"])) == {("activity_drop", "u1"), ("silent_high_tier", "u1")}
    assert first.opened == 2 and first.kept == 0 and first.closed == 0
    again = _evaluate(store_ws, AS_OF)
    assert (again.opened, again.kept, again.closed, again.repeated) == (0, 2, 0, True)
    pd.testing.assert_frame_equal(al.list_alerts(store_ws.store), table1)
    # u1 comes back on 07-02: the silence ends (closed on 07-02); 1 active day in 06-19..07-02 against
    # 31 in the 60 days before (7.2 per 14 days) is still a drop (kept). u2 has checked in 06-20..07-01
    # and not yet on 07-02: a new streak alert.
    store_ws.load_frame("events", _frame(events_on("u1", ["2024-07-02"]) + events_on("u2", ["2024-07-01"],
                                                                                        "checkin"), "events"),
                        source="test2")
    later = _evaluate(store_ws, dt.date(2024, 7, 2))
    after = al.list_alerts(store_ws.store)
    assert (later.opened, later.kept, later.closed) == (1, 1, 1) and len(after) == 3
    closed = after[after["closed_on"].notna()]
    assert closed["rule"].tolist() == ["silent_high_tier"]
    assert closed["closed_on"].tolist() == [dt.date(2024, 7, 2)] and closed["opened_on"].tolist() == [AS_OF]
    drop = after[after["rule"] == "activity_drop"].iloc[0]
    assert drop["opened_on"] == AS_OF and drop["last_seen_on"] == dt.date(2024, 7, 2)
    assert json.loads(drop["seen"])["baseline_days"] == 31
    streak = after[after["rule"] == "streak_at_risk"].iloc[0]
    assert streak["subject"] == "u2" and json.loads(streak["seen"])["streak_days"] == 12
    assert sorted(al.list_alerts(store_ws.store, open_only=True)["rule"]) == ["activity_drop", "streak_at_risk"]


def test_alert_ids_are_deterministic_and_an_earlier_day_is_refused(store_ws):
    _evaluate(store_ws, AS_OF)
    ids = al.list_alerts(store_ws.store).set_index("rule")["alert_id"]
    assert ids["silent_high_tier"] == al.alert_id("silent_high_tier", "user", "u1", AS_OF)
    with pytest.raises(InputError, match="earlier") as err:
        _evaluate(store_ws, AS_OF - dt.timedelta(days=1))
    assert "更早" in err.value.text("zh")


@pytest.mark.slow  # ~15 s: the profile and the renewals model are computed
def test_cli_alerts(store_ws, tmp_path, monkeypatch):
    import userstrata.cli.alerts  # noqa: F401 - registers the command
    from userstrata.cli import _app, app

    monkeypatch.setattr(_app.console, "width", 250)
    path = store_ws.store.location
    store_ws.close()
    out = tmp_path / "alerts.csv"
    config = tmp_path / "userstrata.toml"
    config.write_text(LIGHT_TOML, encoding="utf-8")  # every tier watched for silence: u1's tier does not matter
    res = CliRunner().invoke(app, ["alerts", "--as-of", "2024-06-30", "-w", str(path), "-c", str(config),
                                   "--out", str(out), "--lang", "zh"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "新增 2" in res.output and "高价值用户沉默" in res.output
    assert "活跃天数近14天 0 天，此前 60 天平均每 14 天 7.2 天" in res.output  # 31 days * 14 / 60
    written = pd.read_csv(out, encoding="utf-8-sig")
    assert len(written) == 2 and "观察到的情况" in written.columns
    res = CliRunner().invoke(app, ["alerts", "--as-of", "2024-06-29", "-w", str(path), "-c", str(config)])
    assert res.exit_code == 2 and "earlier" in res.output


# ------------------------------------------------------------------------------ the injected incident


def _reference_conversion_fires(events: pd.DataFrame, users: pd.DataFrame, as_of: dt.date, rules) -> set[str]:
    """The segment conversion rule in plain pandas, by channel."""
    e = events[events["event"].isin(rules.conversion_events) & events["user_id"].notna()]
    e = e.assign(day=(e["ts"] + pd.Timedelta(hours=8)).dt.date).merge(users[["user_id", "channel"]], on="user_id")
    a_event, b_event = rules.conversion_events
    per = e.groupby(["channel", "day", "event"])["user_id"].nunique().unstack("event", fill_value=0)
    fired = set()
    for channel, g in per.groupby(level="channel"):
        g = g.droplevel("channel")
        down = 0
        for k in range(rules.segment_days):
            d = as_of - dt.timedelta(days=k)
            base_days = [d - dt.timedelta(days=7 * w) for w in range(1, rules.baseline_weeks + 1)]
            base = g.reindex(base_days, fill_value=0)
            a_base, b_base = base[a_event].sum(), base[b_event].sum()
            now = g.reindex([d], fill_value=0).iloc[0]
            if a_base / rules.baseline_weeks < rules.min_volume or a_base == 0 or now[a_event] == 0:
                break
            if now[b_event] / now[a_event] < (b_base / a_base) * (1 - rules.segment_drop):
                down += 1
        if down == rules.segment_days:
            fired.add(channel)
    return fired


@pytest.mark.slow
def test_incident_fires_inside_its_window(tmp_path, con):
    from userstrata.datasets import simulate_shop
    from userstrata.schema import CANONICAL

    paths = simulate_shop(3000, tmp_path / "shop", seed=7, end=AS_OF, days=180, events_per_user=30, incident=True)
    truth = json.loads(paths["incident"].read_text(encoding="utf-8"))
    assert truth["segment_by"] == "channel" and truth["metric"] == "conversion" and truth["days"] == 21
    ws = Workspace.open(":memory:", settings=Settings())
    for name, path in paths.items():
        if name in CANONICAL:
            ws.load(name, path)
    users, events = ws.table("users"), ws.table("events")
    users_df, events_df = users.to_pandas(), events.filter(events.event.isin(["page_view", "add_to_cart"])).to_pandas()
    rules = RULES.model_copy(update={"segment_metrics": ["conversion"]})
    start, end = dt.date.fromisoformat(truth["start"]), dt.date.fromisoformat(truth["end"])
    inside = [start + dt.timedelta(days=i) for i in range(2, 21)]  # 3 days of the incident seen
    outside = [start - dt.timedelta(days=i) for i in range(1, 31)] + [end + dt.timedelta(days=i) for i in (3, 10, 20)]
    fired = {}
    for d in inside + outside:
        got = ws.store.con.execute(al.segment_metric_drop(events, ws.table("orders"), users, users, by="channel",
                                                          as_of=d, clock=CLOCK, rules=rules))
        fired[d] = set(got["segment"])
        assert fired[d] == _reference_conversion_fires(events_df, users_df, d, rules), d
    hits = sum(truth["segment"] in fired[d] for d in inside)
    false_alarms = sum(truth["segment"] in fired[d] for d in outside)
    any_false = sum(len(fired[d]) for d in outside)
    print(f"incident days with the alert: {hits}/{len(inside)}; outside: {false_alarms}/{len(outside)} "
          f"(any channel: {any_false}/{len(outside) * 6})")
    assert any(truth["segment"] in fired[d] for d in inside[:7])  # seen within its first week
    assert hits >= len(inside) // 2
    assert false_alarms / len(outside) <= 0.05
