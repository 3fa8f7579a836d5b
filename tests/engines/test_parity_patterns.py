"""Purchase patterns, bundles and refunds give the same tables on DuckDB and on Spark."""

import pytest

from userstrata.features._time import Clock
from userstrata.measure.bundles import bundles
from userstrata.measure.patterns import purchase_patterns
from userstrata.measure.refunds import refunds

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

from parity import _same_frames  # noqa: E402


def _ctx(ws):
    return dict(clock=Clock(ws.settings.timezone, ws.store.engine), execute=ws.store.con.execute)


def test_purchase_patterns_by_category(on_duckdb, on_spark):
    duck, spark = (purchase_patterns(ws.table("orders"), ws.table("order_items"), by="category", **_ctx(ws))
                   for ws in (on_duckdb, on_spark))
    assert duck.cells["orders"].sum() > 0
    _same_frames(duck.cells, spark.cells, key=["category", "weekday", "hour"])


@pytest.mark.parametrize("basket", ["order", "user_day"])
def test_bundles(on_duckdb, on_spark, basket):
    duck, spark = (bundles(ws.table("orders"), ws.table("order_items"), basket=basket, min_support=0.002,
                           max_size=3, **_ctx(ws)) for ws in (on_duckdb, on_spark))
    assert duck.n_baskets == spark.n_baskets and len(duck.pairs) > 0
    _same_frames(duck.items, spark.items, key="item")
    _same_frames(duck.pairs, spark.pairs, key=["item_a", "item_b"])
    _same_frames(duck.triples, spark.triples, key=["item_a", "item_b", "item_c"])


def test_refunds(on_duckdb, on_spark):
    duck, spark = (refunds(ws.table("orders"), ws.table("order_items"), ws.table("events"), min_count=10, **_ctx(ws))
                   for ws in (on_duckdb, on_spark))
    _same_frames(duck.rates, spark.rates, key="item")
    _same_frames(duck.timing, spark.timing, key="bucket")
    _same_frames(duck.behaviour, spark.behaviour, key=["item", "group"])
