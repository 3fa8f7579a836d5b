"""KPIs and retention are the same on DuckDB and on Spark, cell for cell (money in cents)."""

import datetime as dt

import pytest

from userstrata.measure.kpis import kpis
from userstrata.measure.retention import retention

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

from parity import END, _same_frames  # noqa: E402


def both(fn, on_duckdb, on_spark, **options):
    return [fn(**ws._inputs(), **options) for ws in (on_duckdb, on_spark)]


@pytest.mark.parametrize(("grain", "by", "days"), [("day", None, 45), ("week", "channel", 120),
                                                   ("month", "tier", 60), ("month", "cohort", 150)])
def test_kpis_match(on_duckdb, on_spark, grain, by, days):
    duck, spark = both(kpis, on_duckdb, on_spark, start=END - dt.timedelta(days=days), end=END, grain=grain, by=by)
    keys = ["period", "group"] if by else "period"
    assert len(duck.table) > 1 and duck.table["active_users"].sum() > 0
    _same_frames(duck.table, spark.table, keys)
    _same_frames(duck.ltv, spark.ltv, ["cohort", "age"])


@pytest.mark.parametrize(("period", "mode", "cohort_by", "start_event"), [
    ("day", "first_time", "registration", None),
    ("week", "recurring", "first_purchase", None),
    ("month", "first_time", "registration", "page_view"),
])
def test_retention_match(on_duckdb, on_spark, period, mode, cohort_by, start_event):
    duck, spark = both(retention, on_duckdb, on_spark, start=END - dt.timedelta(days=120), end=END, period=period,
                       mode=mode, cohort_by=cohort_by, start_event=start_event, periods=6)
    assert duck.counts["returned"].sum() > 0
    _same_frames(duck.counts, spark.counts, ["cohort_start", "k"])
    _same_frames(duck.summary, spark.summary, "mark")
    _same_frames(duck.table, spark.table, "cohort_start")
