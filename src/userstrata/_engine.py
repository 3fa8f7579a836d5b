"""Engine differences live here and only here (DuckDB embedded by default; Spark through Ibis).

Pitfalls these helpers encode (DESIGN.md): session time zone must be UTC so that naive UTC
timestamps are not shifted; day differences by date subtraction (``epoch_days``), not
``delta(unit="day")``; every rank needs a unique tie-breaker.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from userstrata.errors import InputError

DEFAULT_WORKSPACE = "userstrata.duckdb"


def connect(target: Any = None) -> tuple[ibis.BaseBackend, str]:
    """Open an Ibis backend for ``target``: a DuckDB file path, ``":memory:"``, a URL or a SparkSession."""
    if target is None:
        target = DEFAULT_WORKSPACE
    if type(target).__name__ == "SparkSession":
        target.conf.set("spark.sql.session.timeZone", "UTC")
        return ibis.pyspark.connect(target), "spark"
    if isinstance(target, str) and "://" in target and not target.startswith("duckdb://"):
        con = ibis.connect(target)
        return con, con.name
    path = str(target).removeprefix("duckdb://")
    if path != ":memory:":
        parent = Path(path).expanduser().resolve().parent
        if not parent.exists():
            raise InputError(f"workspace folder {parent} does not exist", hint="create it first")
        path = str(Path(path).expanduser())
    con = ibis.duckdb.connect(path)
    # naive timestamps are UTC; a session zone from the OS would shift them in casts
    con.raw_sql("SET TimeZone = 'UTC'")
    return con, "duckdb"


@ibis.udf.scalar.builtin(name="timezone")
def _duckdb_timezone(zone: str, ts: dt.timestamp) -> dt.timestamp:  # pragma: no cover - SQL
    """DuckDB ``timezone(zone, timestamptz)``: wall-clock time in ``zone``."""


@ibis.udf.scalar.builtin(name="from_utc_timestamp")
def _spark_from_utc(ts: dt.timestamp, zone: str) -> dt.timestamp:  # pragma: no cover - SQL
    """Spark ``from_utc_timestamp(ts, zone)``."""


def local_time(ts: ir.TimestampValue, zone: str, engine: str) -> ir.TimestampValue:
    """Wall-clock time in the shop's ``zone`` for a naive-UTC timestamp column."""
    if engine == "spark":
        return _spark_from_utc(ts, zone)
    return _duckdb_timezone(zone, ts.cast(dt.Timestamp(timezone="UTC")))


def epoch_day(value: ir.DateValue | _dt.date) -> ir.IntegerValue:
    """Days since 1970-01-01, the one portable way to subtract dates."""
    if isinstance(value, _dt.date):
        value = ibis.literal(value, type=dt.date)
    return value.epoch_days()


def days_between(start: ir.DateValue | _dt.date, end: ir.DateValue | _dt.date) -> ir.IntegerValue:
    """Whole days from ``start`` to ``end`` (date subtraction, engine independent)."""
    return epoch_day(end) - epoch_day(start)
