"""Early warnings give the same findings on DuckDB and on Spark (``pytest -m spark``)."""

import datetime as dt

import pytest

from userstrata.config import Settings
from userstrata.measure.alerts import current_alerts, segment_metric_drop
from userstrata.features._time import Clock
from userstrata.segments import build_profile

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

from parity import END, _same_frames  # noqa: E402

# a low volume floor so that the small shop's segments are compared too, not only skipped
SETTINGS = Settings.from_dict({"alerts": {"min_volume": 3, "segment_by": ["tier", "lifecycle", "channel"]}})


def _inputs(ws):
    return {name: ws.table(name) for name in ("users", "orders", "order_items", "events")}


@pytest.mark.parametrize("as_of", [END, END - dt.timedelta(days=45)])
def test_alerts_identical_on_both_engines(on_duckdb, on_spark, as_of):
    profile = on_duckdb.store.con.execute(
        build_profile(**_inputs(on_duckdb), as_of=as_of, settings=SETTINGS, engine="duckdb")
    )[["user_id", "tier", "lifecycle"]]
    found = {}
    for ws in (on_duckdb, on_spark):
        found[ws.store.engine] = current_alerts(
            **_inputs(ws), as_of=as_of, settings=SETTINGS, engine=ws.store.engine, execute=ws.store.con.execute,
            profile=profile,
        )
    duck, spark = found["duckdb"], found["spark"]
    assert set(duck["rule"]) >= {"activity_drop", "silent_high_tier", "unused_purchase", "no_login_after_course"}
    _same_frames(duck, spark, key=["rule", "subject"])


def test_segment_days_identical_on_both_engines(on_duckdb, on_spark):
    """The per-day rows behind the segment rule (values and baselines), with no floor on volume."""
    rules = SETTINGS.alerts.model_copy(update={"min_volume": 0.0, "segment_drop": 0.01, "segment_days": 1})
    frames = []
    for ws in (on_duckdb, on_spark):
        t = _inputs(ws)
        expr = segment_metric_drop(t["events"], t["orders"], t["users"], t["users"], by="channel", as_of=END,
                                   clock=Clock(SETTINGS.timezone, ws.store.engine), rules=rules)
        frames.append(ws.store.con.execute(expr))
    assert len(frames[0]) > 0
    _same_frames(frames[0], frames[1], key=["segment", "metric", "day"])
