"""Funnels and paths give exactly the same tables on DuckDB and on Spark."""

import datetime as dt

import pytest
from parity import END, _same_frames

from userstrata.features._time import Clock
from userstrata.measure.funnels import funnel, funnel_units
from userstrata.measure.paths import paths

pytestmark = pytest.mark.spark

START = END - dt.timedelta(days=119)
STEPS = ["page_view", "add_to_cart", "purchase"]


def _run(ws, fn, *args, **options):
    clock = Clock(ws.settings.timezone, ws.store.engine)
    return fn(ws.table("events"), *args, orders=ws.table("orders"), start=START, end=END, clock=clock,
              execute=ws.store.con.execute, **options)


@pytest.mark.parametrize("options", [
    dict(weekly=True, by="channel"),
    dict(order="strict", window=dt.timedelta(hours=1)),
    dict(order="any", exclude=[("login", 1, 2)]),
])  # fmt: skip
def test_funnel_same_on_both_engines(on_duckdb, on_spark, options):
    steps = ["login", "page_view", "add_to_cart"] if options.get("order") == "strict" else STEPS
    duck = _run(on_duckdb, funnel, steps, users=on_duckdb.table("users"), **options)
    spark = _run(on_spark, funnel, steps, users=on_spark.table("users"), **options)
    group = ["group"] if "by" in options else []
    _same_frames(duck.steps, spark.steps, key=[*group, "step"])
    _same_frames(duck.time_to_convert, spark.time_to_convert, key=[*group, "step", "bucket"])
    if options.get("weekly"):
        _same_frames(duck.weekly, spark.weekly, key=["entry_week", *group, "step"])
    assert duck.steps["count"].iloc[-1] > 0


def test_funnel_units_same_on_both_engines(on_duckdb, on_spark):
    def units(ws):
        clock = Clock(ws.settings.timezone, ws.store.engine)
        expr = funnel_units(ws.table("events"), STEPS, orders=ws.table("orders"), start=START, end=END, clock=clock)
        return ws.store.con.execute(expr)

    _same_frames(units(on_duckdb), units(on_spark), key="user_id")


@pytest.mark.parametrize("direction", ["after", "before"])
def test_paths_same_on_both_engines(on_duckdb, on_spark, direction):
    duck = _run(on_duckdb, paths, "add_to_cart", direction=direction, steps=3)
    spark = _run(on_spark, paths, "add_to_cart", direction=direction, steps=3)
    cols = ["step_1", "step_2", "step_3"]
    _same_frames(duck.next, spark.next, key="event")
    _same_frames(duck.paths, spark.paths, key=cols)
    _same_frames(duck.by_conversion, spark.by_conversion, key=["converted", *cols])
