"""Paths: hand-worked small cases, an independent pandas computation on a simulated shop,
the Sankey chart and the CLI."""

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
from userstrata.measure.paths import paths, user_paths
from userstrata.schema import CANONICAL, PURCHASE_STATUSES
from userstrata.workspace import Workspace

JUNE = dict(start=dt.date(2024, 6, 1), end=dt.date(2024, 6, 30))


def ev(user, ts, name, eid=None):
    ts = ts if len(ts) > 16 else f"{ts}:00"
    return event(eid or f"{user}-{ts}-{name}", user, ts, name)


ROWS = [
    # u1: repeats in a row count once; the order is a purchase
    ev("u1", "2024-06-01 10:00", "page_view"), ev("u1", "2024-06-01 10:01", "page_view"),
    ev("u1", "2024-06-01 10:02", "add_to_cart"),
    # u2: the first page_view of the period is the anchor; a May one is not
    ev("u2", "2024-05-20 10:00", "page_view"), ev("u2", "2024-05-20 10:01", "search"),
    ev("u2", "2024-06-03 10:00", "search"), ev("u2", "2024-06-03 10:01", "page_view"),
    ev("u2", "2024-06-03 10:02", "add_to_cart"), ev("u2", "2024-06-05 10:00", "page_view"),
    # u3: nothing after the anchor; same second as a share ordered by event_id
    ev("u3", "2024-06-02 10:00", "share", "e1"), ev("u3", "2024-06-02 10:00", "page_view", "e2"),
]  # fmt: skip
ORDERS = [order("o1", "u1", "2024-06-01 10:03:00", 30), order("o2", "u2", "2024-06-20 10:00:00", 30),
          order("o3", "u3", "2024-06-02 11:00:00", 30, status="cancelled")]


def per_user(**options):
    expr = user_paths(table("events", ROWS), "page_view", orders=table("orders", ORDERS), **{**JUNE, **options})
    return expr.to_pandas().set_index("user_id").sort_index()


def test_paths_after_an_event():
    got = per_user(steps=3)
    assert got.loc["u1", ["step_1", "step_2", "step_3"]].tolist() == ["add_to_cart", "purchase", "(end)"]
    assert got.loc["u2", ["step_1", "step_2", "step_3"]].tolist() == ["add_to_cart", "page_view", "purchase"]
    assert got.loc["u3", ["step_1", "step_2", "step_3"]].tolist() == ["(end)", "(end)", "(end)"]
    # converted: a paid order within 7 days after the anchor (u2's comes 17 days later)
    assert got["converted"].tolist() == [True, False, False]
    assert per_user(window=dt.timedelta(days=17))["converted"].tolist() == [True, True, False]


def test_paths_before_an_event_nearest_first():
    got = per_user(direction="before", steps=2)
    assert got.loc["u2", ["step_1", "step_2"]].tolist() == ["search", "page_view"]  # the two searches are one
    assert got.loc["u3", ["step_1", "step_2"]].tolist() == ["share", "(start)"]
    assert got.loc["u1", ["step_1", "step_2"]].tolist() == ["(start)", "(start)"]


def test_without_collapsing_repeats_each_event_is_a_step():
    got = per_user(steps=2, collapse_repeats=False)
    assert got.loc["u1", ["step_1", "step_2"]].tolist() == ["page_view", "add_to_cart"]


def test_counts_shares_top_and_flows():
    result = paths(table("events", ROWS), "page_view", orders=table("orders", ORDERS), steps=1, **JUNE)
    nxt = result.next.set_index("event")
    assert nxt["users"].to_dict() == {"add_to_cart": 2, "(end)": 1}
    assert nxt.loc["add_to_cart", "share"] == pytest.approx(2 / 3)
    assert result.paths["step_1"].tolist() == ["add_to_cart", "(end)"]  # most users first
    conv = result.by_conversion.set_index(["converted", "step_1"])["share"]
    assert conv[(True, "add_to_cart")] == 1.0 and conv[(False, "add_to_cart")] == 0.5
    assert result.flows[["from_event", "to_event", "users"]].values.tolist() == [
        ["page_view", "(end)", 1], ["page_view", "add_to_cart", 2]]
    hidden = paths(table("events", ROWS), "page_view", orders=table("orders", ORDERS), steps=1, min_count=2, **JUNE)
    assert hidden.next.set_index("event")["users"].isna().tolist() == [False, True]
    assert hidden.flows["users"].tolist() == [2]  # hidden paths stay out of the Sankey


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="direction"):
        per_user(direction="sideways")
    with pytest.raises(InputError, match="steps"):
        per_user(steps=0)


# -- simulated shop ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths_shop")
    files = simulate_shop(300, folder / "files", seed=5, end=dt.date(2024, 6, 30))
    ws = Workspace.open(folder / "shop.duckdb")
    for name, path in files.items():
        if name in CANONICAL:
            ws.load(name, path)
    yield ws
    ws.close()


def reference(events, orders, anchor, *, start, end, steps, direction, window):
    """Each user's path in plain pandas: (steps..., converted) per user."""
    paid = orders[orders["status"].isin(PURCHASE_STATUSES)]
    rows = pd.concat([events[events["user_id"].notna()][["user_id", "ts", "event", "event_id"]],
                      pd.DataFrame({"user_id": paid["user_id"], "ts": paid["ts"], "event": "purchase",
                                    "event_id": "order:" + paid["order_id"]})])
    rows = rows.sort_values(["user_id", "ts", "event_id"])
    out = {}
    for user, g in rows.groupby("user_id"):
        conv_times = g.loc[g["event"] == "purchase", "ts"]
        g = g[g["event"] != g["event"].shift()]  # repeats in a row once
        names, times = g["event"].tolist(), g["ts"].tolist()
        days = [(t + pd.Timedelta(hours=8)).date() for t in times]
        hits = [i for i, (n, d) in enumerate(zip(names, days)) if n == anchor and start <= d <= end]
        if not hits:
            continue
        i = hits[0]
        seq = names[i + 1:i + 1 + steps] if direction == "after" else names[max(i - steps, 0):i][::-1]
        seq += ["(end)" if direction == "after" else "(start)"] * (steps - len(seq))
        converted = bool(((conv_times > times[i]) & (conv_times <= times[i] + window)).any())
        out[user] = (*seq, converted)
    return out


@pytest.mark.parametrize("direction", ["after", pytest.param("before", marks=pytest.mark.slow)])
def test_matches_an_independent_pandas_computation(sim, direction):
    period = dict(start=dt.date(2024, 3, 1), end=dt.date(2024, 6, 30))
    anchor = "add_to_cart"
    want = reference(sim.table("events").to_pandas(), sim.table("orders").to_pandas(), anchor, steps=3,
                     direction=direction, window=pd.Timedelta(days=7), **period)
    got = user_paths(sim.table("events"), anchor, orders=sim.table("orders"), steps=3, direction=direction,
                     **period).to_pandas()
    got = {r.user_id: (r.step_1, r.step_2, r.step_3, bool(r.converted)) for r in got.itertuples()}
    assert len(want) > 50 and got == want
    result = paths(sim.table("events"), anchor, orders=sim.table("orders"), steps=3, direction=direction, top=5,
                   **period)
    top = pd.Series([v[:3] for v in want.values()]).value_counts()
    assert result.paths["users"].tolist() == top.head(5).tolist()
    first = pd.Series([v[0] for v in want.values()]).value_counts()
    assert result.next.set_index("event")["users"].to_dict() == first.to_dict()


def test_sankey_chart_in_both_languages(sim, tmp_path):
    result = paths(sim.table("events"), "page_view", orders=sim.table("orders"), steps=3, top=5,
                   start=dt.date(2024, 3, 1), end=dt.date(2024, 6, 30))
    fig = result.chart("zh")
    assert fig.data[0].type == "sankey" and "浏览" in fig.data[0].node.label
    assert sum(fig.data[0].link.value[: len(result.next)]) > 0
    # the links out of the anchor carry every user of the shown paths
    out_of_anchor = result.flows[result.flows["from_step"] == 0]["users"].sum()
    assert out_of_anchor == result.paths["users"].sum()
    assert "paths after" in result.chart("en").layout.title.text.lower()
    for name in ("paths.html", "paths.png"):
        assert charts.save(fig, tmp_path / name).stat().st_size > 1000


def test_cli_paths(sim, tmp_path, monkeypatch):
    from userstrata.cli import _app

    monkeypatch.setattr(_app.console, "width", 200)
    runner = CliRunner()
    path = str(Path(sim.store.location))
    res = runner.invoke(app, ["paths", "--after", "page_view", "--steps", "2", "--start", "2024-03-01", "--end",
                              "2024-06-30", "--chart", str(tmp_path / "p.html"), "-w", path], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    want = paths(sim.table("events"), "page_view", orders=sim.table("orders"), steps=2,
                 start=dt.date(2024, 3, 1), end=dt.date(2024, 6, 30))
    first = want.paths.iloc[0]
    shown = f"page_view → {first.step_1} → {first.step_2}"
    line = next(x for x in res.output.splitlines() if shown in x)
    assert f"{int(first.users):,}" in line
    assert (tmp_path / "p.html").exists()
    res = runner.invoke(app, ["paths", "--steps", "2", "-w", path])
    assert res.exit_code == 2 and "--after or --before" in res.output
