"""Engine differences live here and only here (DuckDB embedded by default; Spark through Ibis).

Pitfalls these helpers encode (DESIGN.md): session time zone must be UTC so that naive UTC
timestamps are not shifted; day differences by date subtraction (``epoch_days``), not
``delta(unit="day")``; every rank needs a unique tie-breaker. What else keeps an expression
portable (money in cents, no engine-only SQL functions outside this module, ...) is listed in
docs/engines.md; ``pytest -m spark`` compares the results on both engines.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from userstrata.errors import InputError, OutOfMemoryError

DEFAULT_WORKSPACE = "userstrata.duckdb"


def connect(target: Any = None) -> tuple[ibis.BaseBackend, str]:
    """Open an Ibis backend for ``target``: a DuckDB file path, ``":memory:"``, a URL or a SparkSession."""
    if target is None:
        target = DEFAULT_WORKSPACE
    if type(target).__name__ == "SparkSession":
        # for the whole session: Spark reads TIMESTAMP values in the session zone
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
    # DuckDB materializes a sub-plan found twice in a query: at 10M users the KPIs' paid orders
    # (read by the activity and by the first purchases) ran out of the 1GB limit that way;
    # without it that query runs in 54 s at 1.3 GB. The profile's plan is the same either way
    # (BENCHMARKS.md "Scale run"). Ibis's own CTEs: compile_sql.
    con.raw_sql("SET disabled_optimizers = 'common_subplan'")
    return con, "duckdb"


def to_arrow(con: ibis.BaseBackend, expr: ir.Table) -> Any:
    """The result of ``expr`` as a pyarrow Table, in the types Ibis gives it.

    On DuckDB through a cursor's ``execute``: Ibis's own ``to_pyarrow`` goes through a DuckDB
    relation, which holds the whole result a second time while converting it (measured: +335 MB
    at peak for the 1M-user profile, 271 MB of Arrow)."""
    if con.name != "duckdb":
        return con.to_pyarrow(expr)
    from ibis.backends.duckdb.converter import DuckDBPyArrowData  # noqa: PLC0415

    return expr.__pyarrow_result__(_duckdb_arrow(con, expr), data_mapper=DuckDBPyArrowData)


def _duckdb_arrow(con: ibis.BaseBackend, expr: ir.Expr) -> Any:
    """DuckDB's Arrow result of ``expr``, run on a cursor (both fetches above and below)."""
    con._run_pre_execute_hooks(expr)  # registers the expression's memtables, as Ibis's own path does
    with _memory_limit_named(con):
        return con.con.execute(compile_sql(con, expr)).to_arrow_table()


@contextlib.contextmanager
def _memory_limit_named(con: ibis.BaseBackend):
    """DuckDB's out-of-memory error as one that names the setting to raise (docs/engines.md
    "Memory")."""
    import duckdb  # noqa: PLC0415

    try:
        yield
    except duckdb.OutOfMemoryException as err:
        limit = con.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        raise OutOfMemoryError(
            f"DuckDB ran out of memory within its limit of {limit} ({str(err).splitlines()[0]})",
            hint='raise [engine] memory_limit in userstrata.toml, e.g. memory_limit = "4GB" (docs/engines.md "Memory")',
            zh=f"DuckDB 在内存上限 {limit} 内内存不足",
            hint_zh='请在 userstrata.toml 的 [engine] 中调高 memory_limit，例如 memory_limit = "4GB"（见 docs/engines.md 的 Memory 一节）',
        ) from err


def _as_objects(col: Any) -> bool:
    """Whether Ibis's fetch of this Arrow column must go through Python objects: nested and
    dictionary columns, columns of nulls only (Ibis keeps them as objects), and nulls in a type
    whose ``to_pandas`` would not give, after Ibis's conversion, what ``to_pylist`` gives."""
    import pyarrow.types as pat  # noqa: PLC0415

    if pat.is_nested(col.type) or pat.is_dictionary(col.type) or (len(col) and col.null_count == len(col)):
        return True
    plain = (pat.is_integer, pat.is_floating, pat.is_boolean, pat.is_string, pat.is_large_string,
             pat.is_timestamp, pat.is_date, pat.is_decimal)
    return bool(col.null_count) and not any(test(col.type) for test in plain)


def to_pandas(con: ibis.BaseBackend, expr: ir.Expr) -> Any:
    """``expr.to_pandas()`` (a DataFrame, Series or scalar, in Ibis's dtypes), fetched leaner.

    On DuckDB through a cursor (see ``to_arrow``), and a column holding nulls goes to pandas
    through Arrow: Ibis's own path turns every such column into Python objects first
    (``to_pylist``), which for the 1M-user profile is tens of millions of objects. Nested and
    dictionary columns still take Ibis's path."""
    if con.name != "duckdb":
        return con.execute(expr)
    import pandas as pd  # noqa: PLC0415
    from ibis.backends.duckdb.converter import DuckDBPandasData  # noqa: PLC0415

    table = expr.as_table()
    arrow = _duckdb_arrow(con, table)
    frame = pd.DataFrame({
        name: col.to_pylist() if _as_objects(col) else col.to_pandas()
        for name, col in zip(arrow.column_names, arrow.columns)
    })
    return expr.__pandas_result__(DuckDBPandasData.convert_table(frame, table.schema()))


def compile_sql(con: ibis.BaseBackend, expr: ir.Expr) -> str:
    """``expr`` as SQL text, compiled faster than ``con.compile``: with Python's cyclic garbage
    collector paused (compiling creates tens of thousands of short-lived Ibis nodes, each
    collection walks them all) and without Ibis's merging of nested SELECTs, which DuckDB's
    optimizer does anyway. Measured on the whole profile: 0.44-0.73 -> 0.39 s of CPU, the
    query's own time unchanged (BENCHMARKS.md "Profile")."""
    import gc  # noqa: PLC0415

    fuse, enabled = ibis.options.sql.fuse_selects, gc.isenabled()
    ibis.options.sql.fuse_selects = False
    gc.disable()
    try:
        if con.name != "duckdb":
            return con.compile(expr)
        import sqlglot as sg  # noqa: PLC0415

        query = con.compiler.to_sqlglot(expr)
        _inline_plain_ctes(query)
        try:
            return query.sql(dialect=con.dialect, copy=False, unsupported_level=sg.ErrorLevel.RAISE)
        except sg.UnsupportedError as err:
            raise ibis.common.exceptions.UnsupportedOperationError(
                f"Operation not supported in {con.name} backend: {err}") from err
    finally:
        ibis.options.sql.fuse_selects = fuse
        if enabled:
            gc.enable()


def _inline_plain_ctes(query: Any) -> None:
    """Mark the CTEs that only scan, filter and project ``NOT MATERIALIZED``.

    Ibis names a sub-expression used twice as a CTE, and DuckDB (1.4 on) materializes such a
    CTE: at 10M users the funnel's stream of events and the KPIs' paid orders (tens of millions
    of rows each) ran out of the 1GB limit that way. Read again where used instead, each use
    gets its own filters pushed into the scan: the 300k-user funnel runs in 0.9 s within 60 MB,
    where materialized it failed after 2.2 s. CTEs that aggregate, join or rank are left to
    DuckDB, as recomputing them can cost more than keeping them."""
    from sqlglot import exp  # noqa: PLC0415

    costly = (exp.AggFunc, exp.Window, exp.Join, exp.Group, exp.Distinct, exp.Order)
    for cte in query.find_all(exp.CTE):
        if cte.args.get("materialized") is None and not any(cte.this.find_all(*costly)):
            cte.set("materialized", False)


SPARK_PREFIX = "spark"  # a workspace named "spark" or "spark:MASTER" runs on a Spark session


def spark_session(master: str | None, tables: str | None, table_format: str, names: tuple[str, ...]) -> Any:
    """A SparkSession (``master`` such as ``local[2]``, ``yarn``, ``spark://host:7077``; None: the
    one spark-submit configured) with each of ``names`` found under ``tables`` registered as a view:
    ``tables`` is a folder holding ``<name>`` or ``<name>.parquet`` (Parquet, or Delta with
    ``table_format="delta"``), or ``db:NAME`` for the tables of a Hive database."""
    import os  # noqa: PLC0415

    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415
    except ImportError:
        raise InputError("the Spark engine needs pyspark", hint="pip install 'userstrata[spark]' (and Java 17)",
                         zh="Spark 引擎需要 pyspark", hint_zh="pip install 'userstrata[spark]'（并安装 Java 17）") from None
    if master and master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName("userstrata").config("spark.sql.session.timeZone", "UTC")
    if master:
        builder = builder.master(master).config("spark.ui.enabled", "false")
    if master and master.startswith("local"):  # our own session: its stage bars and warnings would bury the output
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    session = builder.getOrCreate()
    if master and master.startswith("local"):
        session.sparkContext.setLogLevel("ERROR")
    if tables is None:
        return session
    if tables.startswith("db:"):
        session.catalog.setCurrentDatabase(tables.removeprefix("db:"))
        return session
    folder = Path(tables).expanduser()
    if "://" not in tables and not folder.is_dir():
        raise InputError(f"[engine.spark] tables = {tables!r} is not a folder",
                         hint="a folder with orders.parquet, events.parquet ... (or db:NAME for a Hive database)",
                         zh=f"[engine.spark] tables = {tables!r} 不是文件夹")
    for name in names:
        for candidate in (f"{tables.rstrip('/')}/{name}", f"{tables.rstrip('/')}/{name}.parquet"):
            if "://" in candidate or Path(candidate).exists():
                try:
                    session.read.format(table_format).load(candidate).createOrReplaceTempView(name)
                except Exception:  # noqa: BLE001 - a path that is not a table of this format: try the next
                    continue
                break
    return session


@ibis.udf.scalar.builtin(name="timezone")
def _duckdb_timezone(zone: str, ts: dt.timestamp) -> dt.timestamp:  # pragma: no cover - SQL
    """DuckDB ``timezone(zone, timestamptz)``: wall-clock time in ``zone``."""


@ibis.udf.scalar.builtin(name="from_utc_timestamp")
def _spark_from_utc(ts: dt.timestamp, zone: str) -> dt.timestamp:  # pragma: no cover - SQL
    """Spark ``from_utc_timestamp(ts, zone)``."""


# Zones with few offset changes are converted by plain arithmetic: DuckDB's ICU time zone
# conversion costs ~7x more per row (0.23 s vs 0.03 s on 200k rows here).
_MAX_ARITHMETIC_CHANGES = 24
# zones are scanned for offset changes in steps this long (no zone changes twice within it),
# then bisected to the second: a first profile in a process pays this scan
_SCAN_STEP = _dt.timedelta(days=3)


def _changes(zone: str, since: _dt.datetime):
    """Each offset change of ``zone`` from ``since`` until 2100: (naive-UTC instant, offset
    before, offset after, in seconds), found by stepping and bisecting to the second."""
    tz, utc = ZoneInfo(zone), _dt.timezone.utc
    t = since.replace(tzinfo=utc)
    prev = t.astimezone(tz).utcoffset()
    while t.year < 2100:
        nxt = t + _SCAN_STEP
        offset = nxt.astimezone(tz).utcoffset()
        if offset != prev:
            lo, hi = t, nxt
            while hi - lo > _dt.timedelta(seconds=1):  # bisect to the second
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == prev else (lo, mid)
            at = hi.replace(tzinfo=None, microsecond=0)
            at = at.replace(second=0) + _dt.timedelta(minutes=at.second >= 30)  # changes fall on minutes
            yield at, int(prev.total_seconds()), int(offset.total_seconds())
            prev = offset
        t = nxt


_SCAN_FROM = _dt.datetime(1970, 1, 1)


@functools.lru_cache(maxsize=32)
def _zone_changes(zone: str) -> tuple[tuple[_dt.datetime, int, int], ...]:
    """Every offset change of ``zone`` from 1970 until 2100 (``_changes``), scanned once per
    zone and process for both of its readers below."""
    return tuple(_changes(zone, _SCAN_FROM))


def _offset_changes(zone: str) -> tuple[int, tuple[tuple[_dt.datetime, int], ...]]:
    """UTC offset (seconds) of ``zone`` at 1970-01-01 and its changes until 2100 (naive UTC),
    at most ``_MAX_ARITHMETIC_CHANGES + 1`` of them."""
    first = int(_SCAN_FROM.replace(tzinfo=_dt.timezone.utc).astimezone(ZoneInfo(zone)).utcoffset().total_seconds())
    return first, tuple((at, after) for at, _, after in _zone_changes(zone)[:_MAX_ARITHMETIC_CHANGES + 1])


def local_time(ts: ir.TimestampValue, zone: str, engine: str) -> ir.TimestampValue:
    """Wall-clock time in the shop's ``zone`` for a naive-UTC timestamp column."""
    if engine == "spark":
        return _spark_from_utc(ts, zone)
    first, changes = _offset_changes(zone)
    if len(changes) > _MAX_ARITHMETIC_CHANGES:  # zones with daylight saving: ICU
        return _duckdb_timezone(zone, ts.cast(dt.Timestamp(timezone="UTC")))
    if not changes:
        return ts + ibis.interval(seconds=first) if first else ts
    # newest change first: recent data (the bulk) takes the first branch
    branches = [(ts >= ibis.literal(at), ts + ibis.interval(seconds=offset)) for at, offset in reversed(changes)]
    return ibis.cases(*branches, else_=ts + ibis.interval(seconds=first))


@functools.lru_cache(maxsize=32)
def _dates_monotone(zone: str) -> bool:
    """Whether the local date never goes back as UTC time goes on (1990-2100, the years a load
    accepts): true unless a clock set back crosses midnight. Then "local day <= D" is "ts
    before the first instant of D + 1", a filter on the stored timestamp that engines push
    into the scan instead of converting every row."""
    for at, before, after in (c for c in _zone_changes(zone) if c[0] > _dt.datetime(1990, 1, 1)):
        last_before = at - _dt.timedelta(seconds=1) + _dt.timedelta(seconds=before)  # local, just before
        first_after = at + _dt.timedelta(seconds=after)  # local, at the change
        if first_after.date() < last_before.date():
            return False
    return True


def local_day_start(day: _dt.date, zone: str) -> _dt.datetime:
    """The first naive-UTC instant whose local date in ``zone`` is ``day`` (a midnight that a
    clock change skips resolves, with fold=0, to the instant of the change)."""
    local = _dt.datetime.combine(day, _dt.time(), tzinfo=ZoneInfo(zone))
    return local.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def on_or_before(ts: ir.TimestampValue, day: _dt.date, zone: str, engine: str) -> ir.BooleanValue:
    """``ts`` (naive UTC) falls on a local day up to ``day`` in ``zone``."""
    if _dates_monotone(zone):
        return ts < ibis.literal(local_day_start(day + _dt.timedelta(days=1), zone))
    return local_time(ts, zone, engine).date() <= day


def on_or_after(ts: ir.TimestampValue, day: _dt.date, zone: str, engine: str) -> ir.BooleanValue:
    """``ts`` (naive UTC) falls on a local day from ``day`` on in ``zone``."""
    if _dates_monotone(zone):
        return ts >= ibis.literal(local_day_start(day, zone))
    return local_time(ts, zone, engine).date() >= day


def epoch_day(value: ir.DateValue | _dt.date) -> ir.IntegerValue:
    """Days since 1970-01-01, the one portable way to subtract dates."""
    if isinstance(value, _dt.date):
        value = ibis.literal(value, type=dt.date)
    return value.epoch_days()


def days_between(start: ir.DateValue | _dt.date, end: ir.DateValue | _dt.date) -> ir.IntegerValue:
    """Whole days from ``start`` to ``end`` (date subtraction, engine independent)."""
    return epoch_day(end) - epoch_day(start)
