"""The profile is identical on DuckDB and Spark: ties, exact money, shares and reasons.

Runs with ``pytest -m spark`` (needs pyspark 4.0 and Java 17; DESIGN.md pitfalls).
"""

import datetime as dt
import os

import ibis
import numpy as np
import pandas as pd
import pytest

from userstrata import _engine
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.schema import CANONICAL
from userstrata.segments import build_profile

pytestmark = pytest.mark.spark


def _canonical(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    spec = CANONICAL[name]
    out = pd.DataFrame({c: frame[c] if c in frame else None for c in spec.columns}, index=frame.index)
    for col, typ in spec.schema.items():
        if typ.is_timestamp():  # naive UTC in microseconds (Spark cannot read nanoseconds)
            out[col] = pd.to_datetime(out[col], utc=True).dt.tz_localize(None).astype("datetime64[us]")
        elif typ.is_string():  # a missing text is None: Spark would read a float NaN as "NaN"
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _shop() -> dict[str, pd.DataFrame]:
    """CDNOW's sample (many ties) and 60 users with cent-level amounts, refunds, statuses, events."""
    cdnow = load_cdnow(sample=True)
    rng = np.random.default_rng(0)
    n = 400
    extra = pd.DataFrame({
        "order_id": [f"x{i}" for i in range(n)],
        "user_id": [f"x{i % 60}" for i in range(n)],
        "ts": pd.Timestamp("1997-08-01") + pd.to_timedelta(rng.integers(0, 60 * 24, n), unit="h"),
        "amount": rng.integers(0, 300, n) / 100,
        "currency": "USD",
        "status": rng.choice(["paid", "refunded", "cancelled", "closed", None, "completed"], n),
        "refund_amount": np.where(rng.random(n) < 0.2, 0.01, 0.0),
    })
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(300)],
        "user_id": [f"x{i % 45}" for i in range(300)],
        "ts": pd.Timestamp("1997-08-01") + pd.to_timedelta(rng.integers(0, 60 * 24, 300), unit="h"),
        "event": rng.choice(["post", "share", "checkin", "watch", "page_view"], 300),
    })
    return {
        "users": _canonical("users", pd.DataFrame()),
        "orders": _canonical("orders", pd.concat([cdnow, extra], ignore_index=True)),
        "order_items": _canonical("order_items", pd.DataFrame()),
        "events": _canonical("events", events),
    }


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """The running Spark session if there is one (it takes seconds to start), else a local one."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # selected with -m spark: a missing extra is a failure, not a skip
        pytest.fail("the spark tests need pyspark 4.0 (ibis-framework[pyspark])", pytrace=False)

    running = SparkSession.getActiveSession()
    if running is not None:
        yield running
        return
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .config("spark.driver.extraJavaOptions", "-Dderby.system.home=" + str(tmp_path_factory.mktemp("derby")))
        .getOrCreate()
    )
    yield session
    session.stop()


def _profile(target, tables, lang):
    con, engine = _engine.connect(target)
    t = {name: ibis.memtable(frame, schema=CANONICAL[name].schema) for name, frame in tables.items()}
    expr = build_profile(
        users=t["users"], orders=t["orders"], order_items=t["order_items"], events=t["events"],
        as_of=dt.date(1997, 9, 30), settings=Settings(), engine=engine, lang=lang,
    )
    return con.execute(expr).set_index("user_id").sort_index()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_profile_is_identical_on_duckdb_and_spark(spark, lang):
    tables = _shop()
    on_duckdb, on_spark = _profile(":memory:", tables, lang), _profile(spark, tables, lang)
    assert list(on_duckdb.index) == list(on_spark.index)
    for col in on_duckdb.columns:
        a, b = on_duckdb[col], on_spark[col]
        if a.dtype.kind == "M" or b.dtype.kind == "M":
            a, b = pd.to_datetime(a).astype("datetime64[us]"), pd.to_datetime(b).astype("datetime64[us]")
        same = (a.isna() & b.isna()) | (a.astype(object) == b.astype(object))
        assert same.all(), (col, a[~same].head(3).tolist(), b[~same].head(3).tolist())
