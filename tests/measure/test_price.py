"""Price sensitivity (价格敏感度): discount buckets at their edges, exposure from views or buyers,
hand-computed cells and elasticity, a seeded bootstrap, pandas on a simulated shop, the CLI."""

import datetime as dt
import json
import math

import ibis
import numpy as np
import pandas as pd
import pytest
from builders import canonical_frames, order, table

from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.price import BUCKETS, arc_elasticity, price_sensitivity
from userstrata.measure.stats import wilson
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

DAY = dt.date(2024, 6, 1)
TS = "2024-06-01 02:00"  # 10:00 in Shanghai


def view(eid, user, props, ts="2024-06-01 01:00"):
    return (eid, user, None, None, ts, "page_view", json.dumps(props))


def run(orders, items, events=None, **options):
    options.setdefault("start", DAY)
    options.setdefault("end", DAY)
    return price_sensitivity(table("orders", orders), table("order_items", items),
                             None if events is None else table("events", events), **options)


# -- buckets -----------------------------------------------------------------------------------
def test_discount_buckets_at_their_edges():
    prices = {"u0": 100.0, "u1": 90.0, "u2": 89.99, "u3": 70.0, "u4": 69.99, "u5": 100.0}
    orders = [order(f"o{u}", u, TS, p) for u, p in prices.items()]
    items = [(f"o{u}", 1, "s1", "c", 1, p) for u, p in prices.items()]
    got = run(orders, items, resamples=0).table
    want = {"0": 2, "0-10%": 1, "10-30%": 2, ">30%": 1}  # 90 is exactly 10% off; 70 exactly 30%
    assert dict(zip(got.bucket, got.buyers)) == want
    assert list(got.bucket) == [b for b in BUCKETS if b in want]


def test_list_price_is_the_highest_in_the_period_only():
    # the 100 price is sold on 05-31, outside the period: 80 is the list price of 06-01
    orders = [order("o1", "u1", "2024-05-31 02:00", 100.0), order("o2", "u2", TS, 80.0)]
    items = [("o1", 1, "s1", "c", 1, 100.0), ("o2", 1, "s1", "c", 1, 80.0)]
    assert run(orders, items, resamples=0).table.bucket.tolist() == ["0"]
    wide = run(orders, items, resamples=0, start=dt.date(2024, 5, 31))
    assert wide.table.bucket.tolist() == ["0", "10-30%"]


# -- a hand-computed shop with views -----------------------------------------------------------
ORDERS = [order(f"o{i}", f"u{i}", TS, 10.0) for i in range(6)]
ORDERS.append(order("ox", "u9", TS, 80.0, status="cancelled"))  # never paid: not a buyer
ITEMS = [(f"o{i}", 1, "s1", "c", 1 if i < 4 else 2, 100.0 if i < 2 else 80.0) for i in range(6)]
ITEMS.append(("ox", 1, "s1", "c", 1, 80.0))
VIEWS = [view(f"e{i}", f"u{i}", {"sku": "s1", "price": 100 if i % 2 else 80}) for i in range(10)]


def test_cells_by_hand():
    r = run(ORDERS, ITEMS, VIEWS, resamples=0)
    assert r.exposure == "views" and r.views == 10
    t = r.table.set_index("bucket")
    # full price: viewers u1 u3 u5 u7 u9 and buyers u0 u1 -> 6 exposed, 2 buyers, 2 units, 200.00
    assert (t.loc["0", "exposed"], t.loc["0", "buyers"]) == (6, 2)
    assert t.loc["0", "conversion"] == pytest.approx(2 / 6)
    assert (t.loc["0", "conversion_low"], t.loc["0", "conversion_high"]) == pytest.approx(wilson(2, 6))
    assert t.loc["0", "revenue_per_exposed"] == pytest.approx(200 / 6)
    # 20% off: viewers u0 u2 u4 u6 u8 and buyers u2..u5 -> 7 exposed, 4 buyers, 6 units, 480.00
    assert (t.loc["10-30%", "exposed"], t.loc["10-30%", "buyers"]) == (7, 4)
    assert t.loc["10-30%", "units_per_buyer"] == 1.5
    assert t.loc["10-30%", "revenue_per_exposed"] == pytest.approx(480 / 7)
    values = [80, 80, 160, 160, 0, 0, 0]  # per exposed user, in currency units
    sd = float(np.std(values, ddof=1))
    assert t.loc["10-30%", "revenue_low"] == pytest.approx(480 / 7 - 1.959964 * sd / 7**0.5, abs=1e-5)
    assert t.loc["10-30%", "price_index"] == pytest.approx(0.8) and t.loc["0", "price_index"] == 1.0


def test_arc_elasticity_by_hand():
    r = run(ORDERS, ITEMS, VIEWS, resamples=0)
    e = r.elasticity.iloc[0]
    assert (e.from_bucket, e.to_bucket) == ("0", "10-30%")
    q_a, q_b, p_a, p_b = 2 / 6, 6 / 7, 1.0, 0.8
    want = ((q_b - q_a) / ((q_a + q_b) / 2)) / ((p_b - p_a) / ((p_a + p_b) / 2))
    assert e.elasticity == pytest.approx(want) and want < 0  # more discount, more units
    assert math.isnan(float(arc_elasticity(0.0, 0.0, 1.0, 0.8)))
    assert math.isnan(float(arc_elasticity(0.2, 0.3, 1.0, 1.0)))


def test_bootstrap_is_seeded_deterministic_and_brackets_the_estimate():
    a = run(ORDERS, ITEMS, VIEWS, resamples=300, seed=7).elasticity
    b = run(ORDERS, ITEMS, VIEWS, resamples=300, seed=7).elasticity
    c = run(ORDERS, ITEMS, VIEWS, resamples=300, seed=8).elasticity
    pd.testing.assert_frame_equal(a, b)
    assert (a.elasticity_low.iloc[0], a.elasticity_high.iloc[0]) != (c.elasticity_low.iloc[0], c.elasticity_high.iloc[0])
    assert a.elasticity_low.iloc[0] <= a.elasticity.iloc[0] <= a.elasticity_high.iloc[0]
    assert a.elasticity_low.iloc[0] < a.elasticity_high.iloc[0]


def test_unpriced_views_take_the_days_lowest_sale_or_are_left_out():
    views = [view("e1", "v1", {"sku": "s1"}),  # 06-01: lowest sale 80 -> 20% off
             view("e2", "v2", {"sku": "s1"}, ts="2024-06-02 02:00"),  # 06-02: no sale -> unpriced
             view("e3", "v3", {"page": "home"})]  # names no item
    r = run(ORDERS, ITEMS, views, resamples=0, end=dt.date(2024, 6, 2))
    assert (r.views, r.unpriced_views) == (2, 1)
    t = r.table.set_index("bucket")
    assert t.loc["10-30%", "exposed"] == 5 and t.loc["0", "exposed"] == 2  # v1 on top of the 4 buyers


def test_buyers_only_when_events_name_no_item():
    r = run(ORDERS, ITEMS, None, resamples=0)
    assert r.exposure == "buyers" and r.notes("zh") and "购买者" in r.notes("zh")[0]
    t = r.table.set_index("bucket")
    assert t.conversion.isna().all()
    assert t.loc["10-30%", "exposed"] == 4 and t.loc["10-30%", "revenue_per_exposed"] == pytest.approx(120.0)
    fig = r.chart(lang="en")
    assert "buyer" in fig.layout.title.text.lower() and fig.data[0].type == "scatter"


def test_groups_category_level_and_min_count():
    groups = ibis.memtable(pd.DataFrame({"user_id": ["u0", "u1", "u2"], "group": ["vip", "vip", "vip"]}))
    r = run(ORDERS, ITEMS, VIEWS, resamples=0, groups=groups, by="tier", level="category")
    t = r.table.set_index(["group", "bucket"])
    # vip: u0 (viewed at 80, bought at 100), u1 (bought at 100), u2 (viewed and bought at 80)
    assert t.loc[("vip", "0"), "exposed"] == 2 and t.loc[("vip", "10-30%"), "exposed"] == 2
    assert set(r.table.item) == {"c"}
    assert r.table.exposed.sum() == 13  # every exposed user in exactly one group
    hidden = run(ORDERS, ITEMS, VIEWS, resamples=50, groups=groups, min_count=3)
    h = hidden.table.set_index(["group", "bucket"])
    assert math.isnan(h.loc[("vip", "0"), "conversion"]) and math.isnan(h.loc[("vip", "0"), "exposed"])
    assert h.loc[("(none)", "0"), "conversion"] == 0  # 4 exposed, no buyer: a 0 identifies nobody
    assert h.loc[("(none)", "10-30%"), "exposed"] == 5 and h.loc[("(none)", "10-30%"), "buyers"] == 3
    el = hidden.elasticity.set_index("group")
    assert math.isnan(el.loc["vip", "elasticity"]) and not math.isnan(el.loc["(none)", "elasticity"])


def test_chart_one_line_per_group_with_error_bars_in_chinese():
    groups = ibis.memtable(pd.DataFrame({"user_id": ["u0", "u1", "u2"], "group": ["vip"] * 3}))
    fig = run(ORDERS, ITEMS, VIEWS, resamples=0, groups=groups).chart(lang="zh")
    assert len(fig.data) == 2 and all(t.type == "scatter" for t in fig.data)
    assert "折扣" in fig.layout.title.text and fig.data[0].error_y.array is not None
    assert fig.data[0].x[0] == "原价"


def test_bad_options_say_what_was_expected():
    with pytest.raises(InputError, match="level 'brand'"):
        run(ORDERS, ITEMS, level="brand")
    with pytest.raises(InputError, match="empty") as info:
        run(ORDERS, ITEMS, start=DAY, end=dt.date(2024, 5, 1))
    assert "为空" in info.value.text("zh")


# -- simulated shop: the engine against plain pandas ------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    files = simulate_shop(200, tmp_path_factory.mktemp("sim"), seed=4, end=dt.date(2024, 6, 30), days=150)
    frames = canonical_frames(files, ("orders", "order_items"))
    # the simulator sells at list price: mark down every third line of even orders by 25% or 5%
    items = frames["order_items"].copy()
    pos = np.arange(len(items))
    items.loc[pos % 3 == 0, "price"] = (items.loc[pos % 3 == 0, "price"] * 0.75).round(2)
    items.loc[pos % 3 == 1, "price"] = (items.loc[pos % 3 == 1, "price"] * 0.95).round(2)
    frames["order_items"] = items
    return frames


def test_simulated_shop_matches_pandas(sim):
    start, end = dt.date(2024, 4, 1), dt.date(2024, 6, 30)
    o, it = sim["orders"], sim["order_items"]
    r = price_sensitivity(ibis.memtable(o, schema=CANONICAL["orders"].schema),
                          ibis.memtable(it, schema=CANONICAL["order_items"].schema), start=start, end=end,
                          level="category", resamples=20)
    paid = o[o.status.isin(PURCHASE_STATUSES) & o.user_id.notna()].copy()
    paid["day"] = (pd.to_datetime(paid.ts) + pd.Timedelta(hours=8)).dt.date
    paid = paid[(paid.day >= start) & (paid.day <= end)]
    lines = paid[["order_id", "user_id"]].merge(it, on="order_id")
    lines["cents"] = (lines.price * 100).round().astype("int64")
    lines["list"] = lines.groupby("sku").cents.transform("max")
    d = 1 - lines.cents / lines["list"]
    lines["bucket"] = np.select([(lines["list"] <= 0) | (d <= 1e-9), d <= 0.1 + 1e-9, d <= 0.3 + 1e-9],
                                ["0", "0-10%", "10-30%"], ">30%")
    lines["qty"] = lines.quantity.fillna(1).astype("int64")
    want = lines.groupby(["category", "bucket"]).agg(
        buyers=("user_id", "nunique"), units=("qty", "sum"),
        cents=("cents", lambda c: int((c * lines.loc[c.index, "qty"]).sum())))
    got = r.table.set_index(["item", "bucket"]).sort_index()
    want = want.sort_index()
    assert len(want) >= 6 and set(want.index.get_level_values(1)) >= {"0", "0-10%", "10-30%"}
    assert got.buyers.tolist() == want.buyers.tolist() == got.exposed.tolist()
    assert (got.units_per_buyer * got.buyers).round().astype("int64").tolist() == want.units.tolist()
    assert (got.revenue_per_exposed * got.exposed * 100).round().astype("int64").tolist() == want.cents.tolist()


# -- the command line -------------------------------------------------------------------------
def test_cli_price_sensitivity(tmp_path, monkeypatch):
    import userstrata.cli.recall  # noqa: F401 - registers the commands
    from userstrata.cli import _app

    monkeypatch.setattr(_app.console, "width", 250)
    from typer.testing import CliRunner

    from userstrata.cli import app
    from userstrata.workspace import Workspace

    path = tmp_path / "shop.duckdb"
    with Workspace.open(path) as ws:
        ws.load_frame("orders", table("orders", ORDERS).to_pandas(), source="orders")
        ws.load_frame("order_items", table("order_items", ITEMS).to_pandas(), source="order_items")
        ws.load_frame("events", table("events", VIEWS).to_pandas(), source="events")
    runner = CliRunner()
    result = runner.invoke(app, ["price-sensitivity", "--from", "2024-06-01", "--to", "2024-06-01", "--by", "none",
                                 "-w", str(path), "--lang", "zh", "--chart", str(tmp_path / "p.html")])
    assert result.exit_code == 0, result.output
    assert "转化率" in result.output and "弧弹性" in result.output and (tmp_path / "p.html").exists()
    assert "33.3%" in result.output  # 2 of 6 exposed users bought at full price
    tiers = runner.invoke(app, ["price-sensitivity", "--from", "2024-06-01", "-w", str(path), "--lang", "en"])
    assert tiers.exit_code == 0, tiers.output
    bad = runner.invoke(app, ["price-sensitivity", "--from", "2024-06-01", "--level", "brand", "-w", str(path)])
    assert bad.exit_code == 2
