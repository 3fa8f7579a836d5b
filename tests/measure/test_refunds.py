"""Refunds: rates, refund shares per line, time to refund (24 h inclusive) and pre-purchase
behaviour on hand-built orders, and the same numbers from plain pandas on a simulated shop."""

import ibis
import numpy as np
import pandas as pd
import pytest

from builders import order, table
from userstrata.charts import save
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.refunds import ALL, refunds
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

ORDERS = [
    order("o1", "u1", "2024-06-01 10:00", 30, status="refunded", refund=30, refunded_at="2024-06-02 10:00"),  # 24 h
    order("o2", "u2", "2024-06-01 10:00", 20, status="partially_refunded", refund=5,
          refunded_at="2024-06-02 10:01"),  # 24 h 1 min
    order("o3", "u3", "2024-06-01 10:00", 10),
    order("o4", "u3", "2024-06-01 11:00", 10, status="refunding"),  # asked, no amount yet
    order("o5", "u3", "2024-06-01 12:00", 10, status="cancelled", refund=10, refunded_at="2024-06-01 13:00"),
]
ITEMS = [("o1", 1, "a", "X", 1, 10.0), ("o1", 2, "b", "Y", 2, 10.0), ("o2", 1, "a", "X", 1, 20.0),
         ("o3", 1, "b", "Y", 1, 10.0), ("o4", 1, "b", "Y", 1, 10.0), ("o5", 1, "a", "X", 1, 10.0)]
EVENTS = [
    ("e1", "u1", None, None, "2024-06-01 09:59", "page_view", '{"dwell_seconds": 12.5}'),
    ("e2", "u1", None, None, "2024-05-31 09:59", "page_view", '{"dwell_seconds": 100}'),  # 24 h 1 min before
    ("e3", "u2", None, None, "2024-05-31 10:00", "page_view", '{"page":"item","duration":"40"}'),  # exactly 24 h
    ("e4", "u2", None, None, "2024-06-01 09:30", "search", None),
    ("e5", "u3", None, None, "2024-06-01 10:00", "page_view", '{"dwell_seconds": 5}'),  # at o3's time: after
    ("e6", None, "anon", None, "2024-06-01 09:00", "page_view", '{"dwell_seconds": 1}'),
]


def run(**kw):
    return refunds(table("orders", ORDERS), table("order_items", ITEMS), table("events", EVENTS), **kw)


def row(frame, item, group=None):
    part = frame[frame["item"] == item]
    return (part if group is None else part[part["group"] == group]).iloc[0]


def test_rates_by_item_and_overall():
    rates = run().rates
    assert rates["item"].iloc[0] == ALL
    every = row(rates, ALL)
    # o1..o4 are paid; o5 was cancelled; o4 has no refund amount yet
    assert (every.orders, every.refunded_orders) == (4, 2)
    assert every.paid_amount == pytest.approx(70) and every.refunded_amount == pytest.approx(35)
    a, b = row(rates, "a"), row(rates, "b")
    # o1's 30 refund is shared 10 : 20 over its lines a (10) and b (2 x 10)
    assert (a.orders, a.refunded_orders, a.paid_amount, a.refunded_amount) == (2, 2, 30.0, 15.0)
    assert (b.orders, b.refunded_orders, b.paid_amount, b.refunded_amount) == (3, 1, 40.0, 20.0)
    assert a.order_refund_rate == pytest.approx(1.0) and b.order_refund_rate == pytest.approx(1 / 3)
    assert b.amount_refund_rate == pytest.approx(0.5)
    assert list(rates["item"]) == [ALL, "a", "b"]  # then by refund rate


def test_within_24_hours_is_inclusive():
    rates = run().rates
    assert (row(rates, ALL).within_24h, row(rates, ALL).refunds_timed) == (1, 2)
    assert row(rates, "b").share_within_24h == pytest.approx(1.0)  # o1: exactly 24 h
    assert row(rates, "a").share_within_24h == pytest.approx(0.5)
    assert row(rates, "a").median_hours_to_refund == pytest.approx((24 + 24 + 1 / 60) / 2)
    timing = run().timing.set_index("bucket")
    assert timing.loc["6h_24h", "refunds"] == 1 and timing.loc["1d_3d", "refunds"] == 1
    assert timing["refunds"].sum() == 2 and timing["cumulative_share"].iloc[-1] == pytest.approx(1)


def test_refund_shares_are_whole_cents_and_add_up():
    orders = table("orders", [order("o1", "u", "2024-06-01 10:00", 30, status="partially_refunded", refund=10,
                                    refunded_at="2024-06-01 11:00")])
    items = table("order_items", [(f"o1", i, s, "k", 1, 10.0) for i, s in enumerate("xyz", 1)])
    rates = refunds(orders, items).rates.set_index("item")
    # 10 / 3 = 3.333.. -> 3.33 each (half away from zero, per line)
    assert rates.loc[["x", "y", "z"], "refunded_amount"].tolist() == [3.33, 3.33, 3.33]


def test_behaviour_before_buying():
    behaviour = run().behaviour
    refunded, kept = row(behaviour, ALL, "refunded"), row(behaviour, ALL, "kept")
    # o1: e1 only (e2 is 1 minute too early); o2: e3 (window start included) and e4
    assert refunded.orders == 2 and refunded.mean_page_views == pytest.approx(1.0)
    assert refunded.mean_events == pytest.approx(1.5) and refunded.median_events == pytest.approx(1.5)
    assert refunded.orders_with_dwell == 2 and refunded.mean_dwell_seconds == pytest.approx((12.5 + 40) / 2)
    assert refunded.share_short_dwell == pytest.approx(0.5)
    # o3 and o4 (u3): e5 at o3's very time is not before it, but is 1 h before o4
    assert kept.orders == 2 and kept.mean_page_views == pytest.approx(0.5)
    assert kept.orders_with_dwell == 1 and kept.median_dwell_seconds == pytest.approx(5.0)
    b_kept = row(behaviour, "b", "kept")
    assert b_kept.orders == 2
    assert len(run(before_hours=0.5).behaviour) and row(run(before_hours=0.5).behaviour, ALL, "refunded").mean_events == 1


def test_min_count_hides_small_rows():
    result = run(min_count=3)
    assert pd.isna(row(result.rates, "a").orders) and pd.isna(row(result.rates, "a").order_refund_rate)
    assert row(result.rates, "b").orders == 3
    assert pd.isna(row(result.behaviour, ALL, "kept").mean_page_views)
    assert pd.isna(result.timing.set_index("bucket").loc["6h_24h", "refunds"])
    assert result.timing.set_index("bucket").loc["le_1h", "refunds"] == 0
    with pytest.raises(InputError, match="level"):
        run(level="brand")


def test_charts_and_labels(tmp_path):
    result = run()
    for kind in ("rates", "timing", "behaviour"):
        fig = result.chart("zh", kind)
        assert {t.type for t in fig.data} == {"bar"} and fig.layout.title.text
        assert save(fig, tmp_path / f"{kind}.png").stat().st_size > 1000
    assert "退款率（单数）" in result.table("zh").columns and "Refund rate (orders)" in result.table("en").columns
    assert "退款用户" in set(result.behaviour_table("zh")["分组"])


def test_rates_and_behaviour_match_pandas_on_a_simulated_shop(tmp_path):
    paths = simulate_shop(400, tmp_path, seed=9, days=200)
    frames = {}
    for name in ("orders", "order_items", "events"):
        frame = pd.read_parquet(paths[name])
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)
        frames[name] = frame[list(CANONICAL[name].columns)]
    t = {k: ibis.memtable(v, schema=CANONICAL[k].schema) for k, v in frames.items()}
    result = refunds(t["orders"], t["order_items"], t["events"], level="category")
    orders, items, events = frames["orders"], frames["order_items"], frames["events"]
    paid = orders[orders.status.isin(PURCHASE_STATUSES)].copy()
    paid["refunded"] = paid.refund_amount.fillna(0) > 0
    hours = (paid.refunded_at - paid.ts).dt.total_seconds()
    # overall
    every = row(result.rates, ALL)
    assert every.orders == len(paid) and every.refunded_orders == paid.refunded.sum() > 0
    assert every.within_24h == ((hours <= 86400) & paid.refunded).sum()
    # per category: orders and refunded orders holding it
    lines = items.merge(paid[["order_id", "refunded"]], on="order_id")
    per = lines.groupby("category").agg(orders=("order_id", "nunique"),
                                        refunded=("order_id", lambda s: lines.loc[s.index].drop_duplicates(
                                            "order_id").refunded.sum()))
    got = result.rates[result.rates.item != ALL].set_index("item")
    assert got.orders.astype(int).to_dict() == per.orders.to_dict()
    assert got.refunded_orders.astype(int).to_dict() == per.refunded.astype(int).to_dict()
    # refund money: per category it adds up to the refunds of orders with lines (to a cent per line)
    n_lines = lines[lines.refunded].groupby(["order_id", "category"]).ngroups
    assert abs(got.refunded_amount.sum() - paid.refund_amount[paid.refunded].sum()) <= 0.005 * n_lines + 1e-6
    # page views in the 24 h before each order, by group
    pv = events[(events.event == "page_view") & events.user_id.notna()][["user_id", "ts"]]
    m = paid[["order_id", "user_id", "ts", "refunded"]].merge(pv, on="user_id", how="left", suffixes=("", "_e"))
    inside = (m.ts_e < m.ts) & (m.ts_e >= m.ts - pd.Timedelta(hours=24))
    views = inside.groupby(m.order_id).sum().rename("views")
    per_order = paid.set_index("order_id").join(views)
    for flag, group in ((True, "refunded"), (False, "kept")):
        part = per_order[per_order.refunded == flag]
        r = row(result.behaviour, ALL, group)
        assert r.orders == len(part)
        assert r.mean_page_views == pytest.approx(part.views.mean())
        assert r.median_page_views == pytest.approx(np.median(part.views))
