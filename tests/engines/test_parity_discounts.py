"""Discounts, coupons, list prices and brands (the whole-user shop): tags and price sensitivity on both engines."""

import datetime as dt

import pytest
from parity import END, _same_frames

from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.features.tags import tags_wide, user_tags
from userstrata.measure.price import price_sensitivity

pytestmark = pytest.mark.spark


def _clock(ws):
    return Clock(ws.settings.timezone, ws.store.engine)


def _tags(ws):
    bought = purchases(ws.table("orders"), as_of=END, clock=_clock(ws))
    return user_tags(bought, ws.table("order_items"), ws.table("events"), as_of=END, clock=_clock(ws),
                     rules=ws.settings.tags)


def test_tags_with_discount_columns(whole_on_duckdb, whole_on_spark):
    duck, spark = _tags(whole_on_duckdb).to_pandas(), _tags(whole_on_spark).to_pandas()
    assert {"price_sensitive", "brand_loyal"} <= set(duck.tag)
    assert duck.loc[duck.tag == "price_sensitive", "reason_en"].str.contains("below the list price").all()
    _same_frames(duck, spark, ["user_id", "tag"])
    _same_frames(tags_wide(_tags(whole_on_duckdb)).to_pandas(), tags_wide(_tags(whole_on_spark)).to_pandas())


def test_price_with_list_price(whole_on_duckdb, whole_on_spark):
    start, end = END - dt.timedelta(days=60), END
    out = [price_sensitivity(ws.table("orders"), ws.table("order_items"), ws.table("events"), start=start, end=end,
                             resamples=50, seed=3, clock=_clock(ws), execute=ws.store.con.execute)
           for ws in (whole_on_duckdb, whole_on_spark)]
    duck, spark = out
    assert duck.list_source == "list_price" and (duck.lines, duck.list_price_lines) == (spark.lines, spark.list_price_lines)
    assert set(duck.table.bucket) > {"0"}
    _same_frames(duck.table, spark.table, ["group", "item", "bucket_index"])
