"""Realisation, tags and the density grid give the same frames on DuckDB and on Spark."""

import pandas as pd
import pytest
from parity import END, _same_frames

from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.features.realisation import purchase_usage, realisation_index, unused_purchases
from userstrata.features.tags import tags_wide, user_tags
from userstrata.segments.density import active_days, density_counts, density_grid

pytestmark = pytest.mark.spark


def _clock(ws):
    return Clock(ws.settings.timezone, ws.store.engine)


def _usage(ws):
    return purchase_usage(ws.table("orders"), ws.table("order_items"), ws.table("events"),
                          as_of=END, clock=_clock(ws), rules=ws.settings.realisation)  # fmt: skip


def _tags(ws):
    bought = purchases(ws.table("orders"), as_of=END, clock=_clock(ws))
    return user_tags(bought, ws.table("order_items"), ws.table("events"),
                     as_of=END, clock=_clock(ws), rules=ws.settings.tags)  # fmt: skip


def _grid(ws, predictions=None):
    activity = active_days(ws.table("orders"), ws.table("events"), as_of=END, clock=_clock(ws),
                           rules=ws.settings.density)  # fmt: skip
    return density_grid(ws.profile(END), activity, rules=ws.settings.density, predictions=predictions)


def test_purchase_usage_and_index_are_identical(on_duckdb, on_spark):
    duck, spark = _usage(on_duckdb).to_pandas(), _usage(on_spark).to_pandas()
    assert len(duck) > 0
    _same_frames(duck, spark, ["order_id", "line_no"])
    _same_frames(realisation_index(_usage(on_duckdb)).to_pandas(), realisation_index(_usage(on_spark)).to_pandas())
    _same_frames(unused_purchases(_usage(on_duckdb)).to_pandas(), unused_purchases(_usage(on_spark)).to_pandas(),
                 ["order_id", "line_no"])  # fmt: skip


def test_tags_are_identical(on_duckdb, on_spark):
    duck, spark = _tags(on_duckdb).to_pandas(), _tags(on_spark).to_pandas()
    assert duck.tag.nunique() >= 5
    _same_frames(duck, spark, ["user_id", "tag"])
    _same_frames(tags_wide(_tags(on_duckdb)).to_pandas(), tags_wide(_tags(on_spark)).to_pandas())


def test_density_grid_is_identical(on_duckdb, on_spark):
    _same_frames(_grid(on_duckdb).to_pandas(), _grid(on_spark).to_pandas())
    users = _grid(on_duckdb).user_id.to_pandas()
    pred = pd.DataFrame({"user_id": users, "clv": [float(i % 7) for i in range(len(users))]})
    duck, spark = _grid(on_duckdb, pred), _grid(on_spark, pred)
    _same_frames(duck.to_pandas(), spark.to_pandas())
    _same_frames(density_counts(duck).to_pandas(), density_counts(spark).to_pandas(), ["density_band", "value_band"])
