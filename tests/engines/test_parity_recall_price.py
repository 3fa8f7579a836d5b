"""Recall success rate and price sensitivity are the same on DuckDB and on Spark, cell for cell."""

import datetime as dt

import ibis
import pytest

from userstrata.features._time import Clock
from userstrata.measure.price import price_cells, price_sensitivity
from userstrata.measure.recall import recall, recall_users

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

from parity import END, _same_frames  # noqa: E402


def _clock(ws):
    return Clock(ws.settings.timezone, ws.store.engine)


def test_recall_users_match(on_duckdb, on_spark):
    duck, spark = [
        ws.store.con.execute(recall_users(ws.table("touches"), ws.table("orders"), ws.table("events"),
                                          activity="any", clock=_clock(ws)))
        for ws in (on_duckdb, on_spark)
    ]
    assert (duck["state"] == "dormant").sum() > 0 and duck["returned"].sum() > 0
    _same_frames(duck, spark, ["campaign", "user_id"])


@pytest.mark.parametrize("by", [None, "channel", "tier"])
def test_recall_match(on_duckdb, on_spark, by):
    results = []
    for ws in (on_duckdb, on_spark):
        campaign = "winback_202405" if by == "tier" else None
        results.append(recall(ws.table("touches"), ws.table("orders"), ws.table("events"), campaign=campaign, by=by,
                              profile_at=lambda day, ws=ws: ws.profile(day), clock=_clock(ws),
                              execute=ws.store.con.execute))
    duck, spark = results
    keys = ["campaign", *(["group"] if by else []), "arm"]
    assert duck.table["dormant"].sum() > 0
    _same_frames(duck.table, spark.table, keys)
    _same_frames(duck.effects, spark.effects, keys[:-1])


def _views(ws):
    """Views of the SKUs just before every order (cancelled ones too: exposed non-buyers), with
    the price on every other line: both exposure paths on each engine."""
    o, it = ws.table("orders"), ws.table("order_items")
    j = o.join(it, "order_id")
    priced = (j.line_no % 2) == 1
    props = ibis.ifelse(priced, ibis.literal('{"sku":"') + j.sku + '","price":' + j.price.cast("string") + "}",
                        ibis.literal('{"sku":"') + j.sku + '"}')
    return j.select(event_id=j.order_id, user_id=j.user_id, anonymous_id=ibis.null("string"),
                    session_id=ibis.null("string"), ts=j.ts - ibis.interval(minutes=5),
                    event=ibis.literal("page_view"), properties=props)


@pytest.mark.parametrize(("level", "views"), [("sku", True), ("category", False)])
def test_price_sensitivity_match(on_duckdb, on_spark, level, views):
    start, end = END - dt.timedelta(days=60), END
    results = []
    for ws in (on_duckdb, on_spark):
        profile = ws.profile(start - dt.timedelta(days=1))
        groups = profile.select("user_id", group=profile.tier.cast("string"))
        events = _views(ws) if views else ws.table("events")
        cells = price_cells(ws.table("orders"), ws.table("order_items"), events, start=start, end=end, level=level,
                            groups=groups, clock=_clock(ws))
        per_user = ws.store.con.execute(cells.cells)
        result = price_sensitivity(ws.table("orders"), ws.table("order_items"), events, start=start, end=end,
                                   level=level, groups=groups, by="tier", resamples=100, seed=3, clock=_clock(ws),
                                   execute=ws.store.con.execute)
        results.append((per_user, result))
    (duck_cells, duck), (spark_cells, spark) = results
    assert duck.exposure == ("views" if views else "buyers")
    assert len(duck.table) > 3
    _same_frames(duck_cells, spark_cells, ["group", "item", "bucket", "user_id"])
    _same_frames(duck.table, spark.table, ["group", "item", "bucket_index"])
    _same_frames(duck.elasticity, spark.elasticity, ["group", "item", "from_bucket", "to_bucket"])
    assert (duck.views, duck.unpriced_views) == (spark.views, spark.unpriced_views)
