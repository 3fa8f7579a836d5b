"""Funnels: hand-worked small cases of each rule (PostHog's published behaviour), the same
numbers as an independent pandas computation on a simulated shop, a simulated incident seen
in the weekly funnel, and the CLI."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import userstrata.cli.funnels  # noqa: F401 - registers the commands
from builders import event, order, table
from userstrata import charts
from userstrata.cli import app
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure.funnels import funnel, funnel_units
from userstrata.schema import CANONICAL, PURCHASE_STATUSES
from userstrata.workspace import Workspace

JUNE = dict(start=dt.date(2024, 6, 1), end=dt.date(2024, 6, 30))
ABC = ["a", "b", "c"]


def counts(rows, steps=ABC, orders=None, users=None, **options):
    """Units at each step, as a list."""
    options = {**JUNE, **options}
    result = funnel(table("events", rows), steps, orders=table("orders", orders), users=users, **options)
    return result.steps["count"].astype(int).tolist()


def ev(user, ts, name, eid=None):
    ts = ts if len(ts) > 16 else f"{ts}:00"  # one format for every row, seconds included
    return event(eid or f"{user}-{ts}-{name}", user, ts, name)


# -- the rules, one small case each ------------------------------------------------------------
def test_ordered_steps_may_have_other_events_between_but_not_go_backwards():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:01", "x"), ev("u1", "2024-06-01 10:02", "b"),
            ev("u1", "2024-06-01 10:03", "c"),
            # u2 does c before b: reaches b, never c after it
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:01", "c"), ev("u2", "2024-06-01 10:02", "b"),
            # u3 does b before a: step 2 not reached
            ev("u3", "2024-06-01 09:00", "b"), ev("u3", "2024-06-01 10:00", "a")]  # fmt: skip
    assert counts(rows) == [3, 2, 1]


def test_conversion_window_is_inclusive_and_counts_from_step_one():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-08 10:00", "b"),        # exactly 7 days: in
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-08 10:00:01", "b"),     # one second late: out
            # b within a day of a, but c 7 days after b: the window runs from step 1, not from b
            ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-02 10:00", "b"), ev("u3", "2024-06-09 10:00", "c")]
    assert counts(rows, window=dt.timedelta(days=7)) == [3, 2, 0]
    assert counts(rows, window=dt.timedelta(days=8)) == [3, 3, 1]


def test_same_timestamp_counts_as_in_order_but_one_event_fills_one_step():
    rows = [ev("u1", "2024-06-01 10:00", "b", "e1"), ev("u1", "2024-06-01 10:00", "a", "e2"),  # same second
            ev("u2", "2024-06-01 10:00", "a", "e3")]
    assert counts(rows, steps=["a", "b"]) == [2, 1]
    # a funnel a -> a needs two events: u2 has one, u3 two at the same second
    rows += [ev("u3", "2024-06-01 11:00", "a", "e4"), ev("u3", "2024-06-01 11:00", "a", "e5")]
    assert counts(rows, steps=["a", "a"]) == [3, 1]


def test_strict_order_allows_no_other_event_between_steps():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:01", "b"), ev("u1", "2024-06-01 10:02", "c"),
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:01", "x"), ev("u2", "2024-06-01 10:02", "b"),
            ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-01 10:01", "b"), ev("u3", "2024-06-01 10:02", "x"),
            ev("u3", "2024-06-01 10:03", "c")]  # fmt: skip
    assert counts(rows) == [3, 3, 2]
    assert counts(rows, order="strict") == [3, 2, 1]


def test_any_order_needs_all_steps_after_entry_in_the_window():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:01", "c"), ev("u1", "2024-06-01 10:02", "b"),
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:01", "c"),
            ev("u3", "2024-06-01 09:00", "b"), ev("u3", "2024-06-01 10:00", "a")]  # b before entry: not counted
    assert counts(rows) == [3, 1, 0]
    assert counts(rows, order="any") == [3, 1, 1]
    units = funnel_units(table("events", rows), ABC, order="any", **JUNE).to_pandas().set_index("user_id")
    # reached step 3 when the last of a, b, c happened
    assert units.loc["u1", "at_3"] == pd.Timestamp("2024-06-01 10:02")


def test_exclusion_between_steps_removes_the_user_from_every_step():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:01", "x"), ev("u1", "2024-06-01 10:02", "b"),
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:01", "b"), ev("u2", "2024-06-01 10:02", "x"),
            # u3 never reaches b: x in the window drops it, x after the window does not (u4)
            ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-03 10:00", "x"),
            ev("u4", "2024-06-01 10:00", "a"), ev("u4", "2024-06-20 10:00", "x")]  # fmt: skip
    assert counts(rows, steps=["a", "b"]) == [4, 2]
    assert counts(rows, steps=["a", "b"], exclude=["x"]) == [2, 1]  # u2 and u4 stay
    units = funnel_units(table("events", rows), ["a", "b"], exclude=["x"], **JUNE).to_pandas()
    assert sorted(units["user_id"]) == ["u2", "u4"]


def test_exclusion_at_the_same_second_as_a_step_is_not_between():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:00", "x"), ev("u1", "2024-06-01 10:05", "b"),
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:05", "x"), ev("u2", "2024-06-01 10:05", "b"),
            ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-01 10:00:01", "x"), ev("u3", "2024-06-01 10:05", "b")]
    assert counts(rows, steps=["a", "b"], exclude=["x"]) == [2, 2]  # only u3's x is strictly between


def test_exclusion_only_between_the_steps_it_names():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:01", "x"), ev("u1", "2024-06-01 10:02", "b"),
            ev("u1", "2024-06-01 10:03", "c")]
    assert counts(rows, exclude=[("x", 2, 3)]) == [1, 1, 1]
    assert counts(rows, exclude=[("x", 1, 2)]) == [0, 0, 0]


def test_entry_is_the_first_step_one_in_the_period_on_local_days():
    rows = [
        # 2024-05-31 17:00 UTC is 06-01 01:00 in Shanghai: a June entry
        ev("u1", "2024-05-31 17:00", "a"), ev("u1", "2024-05-31 17:30", "b"),
        # 2024-05-31 15:00 UTC is 05-31 23:00 local: before the period; the June a enters
        ev("u2", "2024-05-31 15:00", "a"), ev("u2", "2024-06-10 10:00", "a"), ev("u2", "2024-06-10 11:00", "b"),
        # first entry rule: the 06-01 a does not convert, the 06-20 a would but is not the entry
        ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-20 10:00", "a"), ev("u3", "2024-06-20 10:30", "b"),
    ]  # fmt: skip
    assert counts(rows, steps=["a", "b"]) == [3, 2]
    weekly = funnel(table("events", rows), ["a", "b"], weekly=True, **JUNE).weekly
    # weekly: u3 enters again in the week of 06-17 and converts there
    june17 = weekly[(weekly["entry_week"] == pd.Timestamp("2024-06-17"))].set_index("step")["count"]
    assert june17.tolist() == [1, 1]
    assert weekly.groupby("step")["count"].sum().tolist() == [4, 3]


def test_purchase_step_is_a_paid_order():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 10:00", "a"), ev("u3", "2024-06-01 10:00", "a")]
    orders = [order("o1", "u1", "2024-06-01 12:00:00", 30),
              order("o2", "u2", "2024-06-01 12:00:00", 30, status="cancelled"),
              order("o3", "u3", "2024-06-01 09:00:00", 30)]  # before the entry
    assert counts(rows, steps=["a", "purchase"], orders=orders) == [3, 1]
    assert "cancelled" not in PURCHASE_STATUSES


def test_per_session_steps_must_share_a_session():
    rows = [(f"e{i}", u, None, s, ts, name, None) for i, (u, s, ts, name) in enumerate([
        ("u1", "s1", "2024-06-01 10:00:00", "a"), ("u1", "s1", "2024-06-01 10:05:00", "b"),
        ("u2", "s2", "2024-06-01 10:00:00", "a"), ("u2", "s3", "2024-06-01 12:00:00", "b"),
    ])]  # fmt: skip
    assert counts(rows, steps=["a", "b"]) == [2, 2]
    assert counts(rows, steps=["a", "b"], per="session") == [2, 1]
    with pytest.raises(InputError, match="orders carry no session"):
        counts(rows, steps=["a", "purchase"], per="session")


def test_by_a_users_column_and_min_count():
    rows = [ev(f"u{i}", "2024-06-01 10:00", "a") for i in range(14)]
    rows += [ev(f"u{i}", "2024-06-01 11:00", "b") for i in range(0, 14, 2)]  # even users convert
    users = table("users", [(f"u{i}", None, "ads" if i < 12 else None, None) for i in range(14)])
    result = funnel(table("events", rows), ["a", "b"], users=users, by="channel", **JUNE)
    got = result.steps.set_index(["group", "step"])["count"]
    assert got[("ads", 1)] == 12 and got[("ads", 2)] == 6
    assert got[("(none)", 1)] == 2 and got[("(none)", 2)] == 1
    hidden = funnel(table("events", rows), ["a", "b"], users=users, by="channel", min_count=10, **JUNE).steps
    hidden = hidden.set_index(["group", "step"])
    assert hidden.loc[("ads", 1), "count"] == 12
    assert pd.isna(hidden.loc[("ads", 2), "count"]) and pd.isna(hidden.loc[("ads", 2), "step_conversion"])
    assert pd.isna(hidden.loc[("(none)", 1), "count"])
    with pytest.raises(InputError, match="not a column of the users table"):
        funnel(table("events", rows), ["a", "b"], users=users, by="city", **JUNE)


def test_rates_and_time_to_convert():
    rows = [ev("u1", "2024-06-01 10:00", "a"), ev("u1", "2024-06-01 10:00:30", "b"),   # 30 s
            ev("u2", "2024-06-01 10:00", "a"), ev("u2", "2024-06-01 12:00", "b"),      # 2 h
            ev("u3", "2024-06-01 10:00", "a"), ev("u3", "2024-06-02 16:00", "b"),      # 30 h
            ev("u4", "2024-06-01 10:00", "a")]  # fmt: skip
    result = funnel(table("events", rows), ["a", "b"], **JUNE)
    step2 = result.steps.set_index("step").loc[2]
    assert step2["step_conversion"] == pytest.approx(3 / 4) and step2["drop_off"] == 1
    assert step2["median_seconds"] == 2 * 3600
    buckets = result.time_to_convert.set_index("bucket")["count"]
    assert buckets["lt_1m"] == 1 and buckets["1h_6h"] == 1 and buckets["1d_3d"] == 1 and buckets.sum() == 3


def test_bad_definitions_are_refused():
    rows = [ev("u1", "2024-06-01 10:00", "a")]
    with pytest.raises(InputError, match="at least 2 steps"):
        counts(rows, steps=["a"])
    with pytest.raises(InputError, match="also a step"):
        counts(rows, exclude=["b"])
    with pytest.raises(InputError, match="between steps 3 and 2"):
        counts(rows, exclude=[("x", 3, 2)])


# -- simulated shop: an independent pandas computation -----------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("funnel_shop")
    files = simulate_shop(500, folder / "files", seed=11, end=dt.date(2024, 6, 30))
    ws = Workspace.open(folder / "shop.duckdb")
    for name, path in files.items():
        if name in CANONICAL:
            ws.load(name, path)
    yield ws
    ws.close()


def reference(events: pd.DataFrame, orders: pd.DataFrame, steps, *, start, end, window, order="ordered",
              exclude=(), weekly=False) -> pd.DataFrame:
    """Units per (week,) step, computed one user at a time in plain pandas."""
    paid = orders[orders["status"].isin(PURCHASE_STATUSES)]
    rows = events[events["user_id"].notna()][["user_id", "ts", "event", "event_id"]]
    extra = pd.DataFrame({"user_id": paid["user_id"], "ts": paid["ts"], "event": "purchase",
                          "event_id": "order:" + paid["order_id"]})
    rows = pd.concat([rows, extra]) if "purchase" in steps else rows
    rows = rows.sort_values(["user_id", "ts", "event_id"]).reset_index(drop=True)
    rows["day"] = (rows["ts"] + pd.Timedelta(hours=8)).dt.date  # Asia/Shanghai has no DST since 1991
    reached = []
    for user, g in rows.groupby("user_id", sort=False):
        g = g.reset_index(drop=True)
        entries = g[(g["event"] == steps[0]) & (g["day"] >= start) & (g["day"] <= end)]
        if weekly:
            week = pd.to_datetime(entries["day"]) - pd.to_timedelta(pd.to_datetime(entries["day"]).dt.weekday, "D")
            entries = entries.assign(week=week).groupby("week").head(1)
        else:
            entries = entries.head(1).assign(week=None)
        for i, entry in entries.iterrows():
            deadline = entry["ts"] + window
            times, ids = [entry["ts"]], {entry["event_id"]}
            if order == "strict":
                nxt = g.iloc[i + 1:i + len(steps)]
                for step, (_, e) in zip(steps[1:], nxt.iterrows()):
                    if e["event"] != step or e["ts"] > deadline:
                        break
                    times.append(e["ts"])
            elif order == "ordered":
                for step in steps[1:]:
                    c = g[(g["event"] == step) & (g["ts"] >= times[-1]) & (g["ts"] <= deadline)]
                    c = c[(c["ts"] > times[-1]) | ~c["event_id"].isin(ids)]
                    if c.empty:
                        break
                    times.append(c["ts"].iloc[0])
                    ids.add(c["event_id"].iloc[0])
            else:  # any order
                for step in steps[1:]:
                    c = g[(g["event"] == step) & (g["ts"] >= entry["ts"]) & (g["ts"] <= deadline)
                          & (g["event_id"] != entry["event_id"])]
                    if c.empty:
                        break
                    times.append(max(times[-1], c["ts"].iloc[0]))
            dropped = False
            for name, a, b in exclude:
                if len(times) >= a:
                    hi = times[b - 1] if len(times) >= b else None
                    x = g[(g["event"] == name) & (g["ts"] > times[a - 1])]
                    x = x[x["ts"] < hi] if hi is not None else x[x["ts"] <= deadline]
                    dropped = dropped or not x.empty
            if not dropped:
                reached.append((entry["week"], len(times)))
    frame = pd.DataFrame(reached, columns=["week", "steps"])
    out = [(w, k, int((part["steps"] >= k).sum())) for w, part in frame.groupby("week", dropna=False)
           for k in range(1, len(steps) + 1)]
    return pd.DataFrame(out, columns=["week", "step", "count"])


SLOW = pytest.mark.slow


@pytest.mark.parametrize("order, exclude", [("ordered", ()), pytest.param("strict", (), marks=SLOW),
                                            pytest.param("any", (), marks=SLOW),
                                            pytest.param("ordered", (("login", 1, 2),), marks=SLOW)])
def test_matches_an_independent_pandas_computation(sim, order, exclude):
    events, orders = sim.table("events").to_pandas(), sim.table("orders").to_pandas()
    steps = ["page_view", "add_to_cart", "purchase"] if order != "strict" else ["login", "page_view", "add_to_cart"]
    period = dict(start=dt.date(2024, 1, 1), end=dt.date(2024, 6, 30))
    got = funnel(sim.table("events"), steps, orders=sim.table("orders"), window=dt.timedelta(days=3), order=order,
                 exclude=exclude, execute=sim.store.con.execute, **period)
    want = reference(events, orders, steps, window=pd.Timedelta(days=3), order=order, exclude=exclude, **period)
    assert got.steps["count"].astype(int).tolist() == want["count"].tolist()
    assert want["count"].iloc[-1] > 20  # the data exercise every step


@pytest.mark.slow
def test_weekly_matches_an_independent_pandas_computation(sim):
    events, orders = sim.table("events").to_pandas(), sim.table("orders").to_pandas()
    steps = ["page_view", "add_to_cart", "purchase"]
    period = dict(start=dt.date(2024, 4, 1), end=dt.date(2024, 6, 30))
    got = funnel(sim.table("events"), steps, orders=sim.table("orders"), weekly=True, execute=sim.store.con.execute,
                 **period).weekly
    want = reference(events, orders, steps, window=pd.Timedelta(days=7), weekly=True, **period)
    got = got.assign(week=pd.to_datetime(got["entry_week"]))[["week", "step", "count"]]
    merged = want.merge(got, on=["week", "step"], how="outer", suffixes=("_want", "_got"))
    assert len(merged) == len(want) == 13 * 3
    assert (merged["count_want"] == merged["count_got"].astype(int)).all()


def test_weekly_funnel_shows_an_incident(sim):
    """Half of the users lose their add_to_cart events for three weeks: the weekly step
    conversion of add_to_cart drops in those weeks and only there."""
    events = sim.table("events").to_pandas()
    local = events["ts"] + pd.Timedelta(hours=8)
    incident = (local >= "2024-05-06") & (local < "2024-05-27") & (events["event"] == "add_to_cart")
    half = events["user_id"].fillna("").str[-1].isin(list("02468"))
    broken = events[~(incident & half)]
    result = funnel(table("events", list(broken[list(CANONICAL["events"].columns)].itertuples(index=False))),
                    ["page_view", "add_to_cart"], start=dt.date(2024, 3, 4), end=dt.date(2024, 6, 16),
                    window=dt.timedelta(days=1), weekly=True)
    weekly = result.weekly[result.weekly["step"] == 2].set_index("entry_week")["step_conversion"]
    hit = weekly[(weekly.index >= "2024-05-06") & (weekly.index < "2024-05-27")]
    rest = weekly[(weekly.index < "2024-05-06") | (weekly.index >= "2024-05-27")]
    assert len(hit) == 3 and len(rest) == 12
    print(weekly.round(3).to_dict())
    assert hit.mean() < 0.7 * rest.mean()  # about half of the converters are gone
    assert hit.max() < rest.median()  # each incident week is below an ordinary week
    # the lowest three weeks in a row are the incident's
    assert weekly.rolling(3).mean().idxmin() == pd.Timestamp("2024-05-20")


# -- CLI -----------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_funnel_prints_the_counts_and_writes_charts(sim, tmp_path, monkeypatch):
    from userstrata.cli import _app

    monkeypatch.setattr(_app.console, "width", 200)
    path = Path(sim.store.location)
    chart = tmp_path / "funnel.png"
    res = runner.invoke(app, ["funnel", "page_view", "add_to_cart", "purchase", "--window", "7d", "--weekly",
                              "--start", "2024-04-01", "--end", "2024-06-30", "--chart", str(chart), "-w", str(path),
                              "--lang", "zh"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    want = funnel(sim.table("events"), ["page_view", "add_to_cart", "purchase"], orders=sim.table("orders"),
                  start=dt.date(2024, 4, 1), end=dt.date(2024, 6, 30), clock=Clock(), execute=sim.store.con.execute)
    rows = [line for line in res.output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in r.strip("│").split("│")] for r in rows[:3]]
    assert [c[1] for c in cells] == ["浏览", "加购", "购买"]
    assert [int(c[2].replace(",", "")) for c in cells] == want.steps["count"].astype(int).tolist()
    assert chart.exists() and (tmp_path / "funnel_weekly.png").exists()


def test_cli_errors_are_one_line_with_exit_code_2(sim):
    path = str(sim.store.location)
    res = runner.invoke(app, ["funnel", "page_view", "-w", path])
    assert res.exit_code == 2 and "at least 2 steps" in res.output
    res = runner.invoke(app, ["funnel", "page_view", "purchase", "--window", "7x", "-w", path])
    assert res.exit_code == 2 and "--window" in res.output


def test_charts_show_the_counts_in_both_languages(tmp_path):
    rows = [ev("u1", "2024-06-03 10:00", "a"), ev("u1", "2024-06-03 10:05", "b"),
            ev("u2", "2024-06-10 10:00", "a")]
    users = table("users", [("u1", None, "ads", None), ("u2", None, "ads", None)])
    result = funnel(table("events", rows), ["a", "b"], weekly=True, **JUNE)
    bars = result.chart("zh")
    assert bars.data[0].type == "bar" and list(bars.data[0].y) == [2, 1]
    assert bars.layout.title.text.startswith("转化漏斗") and bars.layout.yaxis.title.text == "用户数"
    lines = result.weekly_chart("en")
    assert [t.type for t in lines.data] == ["scatter"]  # one line: step 2
    assert list(lines.data[0].y) == [1.0, 0.0] and lines.layout.title.text.startswith("Weekly")
    grouped = funnel(table("events", rows), ["a", "b"], users=users, by="channel", weekly=True, **JUNE)
    assert [t.name for t in grouped.weekly_chart("zh").data] == ["ads"]
    for name in ("funnel.html", "funnel.png"):
        assert charts.save(bars, tmp_path / name).stat().st_size > 1000
