"""Engine helpers against an independent reference (Python's zoneinfo)."""

import datetime as dt
import random
import zoneinfo

import ibis
import pytest

from userstrata import _engine


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_local_time_matches_zoneinfo_including_offset_changes(zone):
    rng = random.Random(7)
    values = [dt.datetime(1975, 1, 1) + dt.timedelta(seconds=rng.randint(0, 55 * 365 * 86400)) for _ in range(3000)]
    first, changes = _engine._offset_changes(zone)
    values += [at + dt.timedelta(seconds=s) for at, _ in changes[:30] for s in (-1, 0, 1)]
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    t = ibis.memtable({"ts": values})
    got = con.execute(t.mutate(local=_engine.local_time(t.ts, zone, "duckdb")))["local"]
    tz = zoneinfo.ZoneInfo(zone)
    expected = [v.replace(tzinfo=dt.timezone.utc).astimezone(tz).replace(tzinfo=None) for v in values]
    assert [g.to_pydatetime() for g in got] == expected


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/Sao_Paulo", "America/Santiago", "Europe/London", "UTC"])
def test_day_filters_match_the_local_date(zone):
    # Sao Paulo skipped midnight when its clocks went forward; Santiago set them back at midnight
    first, changes = _engine._offset_changes(zone)
    if len(changes) > _engine._MAX_ARITHMETIC_CHANGES:  # the scan stops early for such zones: take all
        tz = zoneinfo.ZoneInfo(zone)
        t, changes = dt.datetime(1990, 1, 1), []
        prev = t.replace(tzinfo=dt.timezone.utc).astimezone(tz).utcoffset()
        while t.year < 2030:
            t += dt.timedelta(hours=1)
            off = t.replace(tzinfo=dt.timezone.utc).astimezone(tz).utcoffset()
            if off != prev:
                changes.append((t, off))
                prev = off
    rng = random.Random(3)
    values = [dt.datetime(1990, 1, 1) + dt.timedelta(seconds=rng.randint(0, 40 * 365 * 86400)) for _ in range(2000)]
    values += [at + dt.timedelta(seconds=s) for at, _ in changes for s in (-3601, -1, 0, 1, 3600)]
    tz = zoneinfo.ZoneInfo(zone)
    for day in (dt.date(2024, 6, 30), dt.date(2018, 11, 4), dt.date(1991, 9, 15)):  # one second either side of midnight
        midnight = dt.datetime.combine(day, dt.time(), tz).astimezone(dt.timezone.utc).replace(tzinfo=None)
        values += [midnight + dt.timedelta(seconds=s) for s in (-1, 0)]
    local = [v.replace(tzinfo=dt.timezone.utc).astimezone(tz).date() for v in values]
    days = sorted({d + dt.timedelta(days=k) for d in local[-66:] + local[:40] for k in (-1, 0, 1)})
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    t = ibis.memtable({"ts": values})
    for day in days:
        got = con.execute(t.select(a=_engine.on_or_before(t.ts, day, zone, "duckdb"),
                                   b=_engine.on_or_after(t.ts, day, zone, "duckdb")))
        assert got["a"].tolist() == [d <= day for d in local], day
        assert got["b"].tolist() == [d >= day for d in local], day


def test_a_zone_whose_date_goes_back_is_not_filtered_on_the_timestamp(monkeypatch):
    # no real zone sets its clock back across midnight since 1990; a made-up one must fall
    # back to converting each row
    assert _engine._dates_monotone("Asia/Shanghai")
    monkeypatch.setattr(_engine, "_dates_monotone", lambda zone: False)
    t = ibis.memtable({"ts": [dt.datetime(2024, 6, 29, 16, 0)]})
    expr = _engine.on_or_before(t.ts, dt.date(2024, 6, 29), "Asia/Shanghai", "duckdb")
    assert type(expr.op()).__name__ == "LessEqual"  # local date <= day, not ts < an instant
    assert ibis.duckdb.connect().execute(t.select(a=expr))["a"].tolist() == [False]


def test_days_between_is_calendar_days():
    con = ibis.duckdb.connect()
    expr = _engine.days_between(dt.date(2024, 2, 27), dt.date(2024, 3, 1))  # leap year
    assert con.execute(expr) == 3


def test_pinned_engine_versions_still_work():
    # ibis 12 breaks on duckdb 2 (con.sql/list_tables) and sqlglot >= 30.18 (create_table from
    # arrow); pyproject pins them. This notices if a resolver ever hands us the broken combination.
    import pandas as pd

    con = ibis.duckdb.connect()
    con.create_table("t", pd.DataFrame({"a": [1, 2]}))
    assert con.list_tables() == ["t"]
    assert con.sql("SELECT sum(a) AS s FROM t").execute()["s"][0] == 3


def _typed_rows_with_nulls():
    """A table of every column kind the library fetches, each with nulls, and nested ones."""
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("""
        CREATE TABLE t AS SELECT * FROM (VALUES
          (1, 7::INTEGER, 1.5, TRUE, 'a', TIMESTAMP '2024-01-02 03:04:05', DATE '2024-01-02', 12.34::DECIMAL(18,2),
           [1, 2], {'k': 1}, NULL::BIGINT, 'x'::VARCHAR),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (3, -3::INTEGER, 'nan'::DOUBLE, FALSE, '中文', TIMESTAMP '1999-12-31 23:59:59.123456', DATE '1990-01-01',
           -0.01::DECIMAL(18,2), [], {'k': NULL}, NULL, 'y')
        ) AS v(id, i32, f, b, s, ts, d, money, arr, st, all_null, no_null)""")
    return con, con.table("t")


def test_to_pandas_gives_what_ibis_gives_for_every_column_kind_with_nulls():
    import pandas as pd

    con, t = _typed_rows_with_nulls()
    for expr in (t.order_by("id"), t.filter(t.id > 5), t.order_by("id").mutate(lit=ibis.null().cast("int64"))):
        pd.testing.assert_frame_equal(_engine.to_pandas(con, expr), con.execute(expr))
    pd.testing.assert_series_equal(_engine.to_pandas(con, t.order_by("id").ts), con.execute(t.order_by("id").ts))
    assert _engine.to_pandas(con, t.money.sum()) == con.execute(t.money.sum())
    assert _engine.to_pandas(con, t.i32.max()) == 7


def test_to_pandas_takes_arrow_for_nullable_plain_columns_only():
    con, t = _typed_rows_with_nulls()
    arrow = con.con.execute("SELECT * FROM t").to_arrow_table()
    through_objects = {name for name, col in zip(arrow.column_names, arrow.columns) if _engine._as_objects(col)}
    # nested (with or without nulls) and all-null columns as Ibis does; nullable plain types through Arrow
    assert through_objects == {"arr", "st", "all_null"}


def test_running_out_of_memory_names_the_setting_to_raise():
    from userstrata.errors import OutOfMemoryError

    con = ibis.duckdb.connect()
    con.raw_sql("SET memory_limit = '20MB'")
    con.raw_sql("SET temp_directory = ''")  # no spilling: 3M groups cannot fit in 20MB
    expr = con.sql("SELECT i % 3000000 AS k, count(*) AS n FROM range(6000000) t(i) GROUP BY k")
    for fetch in (_engine.to_pandas, _engine.to_arrow):
        with pytest.raises(OutOfMemoryError) as caught:
            fetch(con, expr)
        assert "limit of 19.0 MiB" in str(caught.value)  # DuckDB writes 20MB as 19.0 MiB
        assert "memory_limit" in caught.value.hint and "memory_limit" in caught.value.hint_text("zh")
        assert "内存不足" in caught.value.text("zh")


def test_ctes_that_only_filter_are_read_again_and_aggregating_ones_left_to_duckdb():
    import sqlglot

    con = ibis.duckdb.connect()
    con.raw_sql("CREATE TABLE t AS SELECT i AS id, i % 7 AS k, 'e' || i AS s FROM range(1000) r(i)")
    t = con.table("t")
    # a filtered stream used twice (as the funnel's events are), and a per-key count used twice
    stream = ibis.union(t.filter(t.k < 3).select("id", "k", "s"), t.filter(t.k == 6).select("id", "k", "s"))
    per_key = t.group_by("k").aggregate(n=t.count())
    expr = ibis.union(stream.filter(stream.k == 0).select("id", "k"), stream.filter(stream.k > 1).select("id", "k"))
    again = per_key.select(k2="k", n2="n")
    expr = expr.join(per_key, "k")
    expr = expr.join(again, expr.k == again.k2)
    expr = expr.select("id", "k", "n", "n2").order_by("id")
    sql = _engine.compile_sql(con, expr)
    ctes = {cte.this.find(sqlglot.exp.AggFunc) is not None: cte.args.get("materialized")
            for cte in sqlglot.parse_one(sql, read="duckdb").find_all(sqlglot.exp.CTE)}
    assert ctes == {False: False, True: None}  # NOT MATERIALIZED for the plain one only
    rows = con.con.execute(sql).fetchall()
    assert rows == con.con.execute(con.compile(expr)).fetchall()
    # by hand: ids with k == 0 or k == 2 or k == 6, each with its key's count (143 or 142 of 1,000)
    expected = [(i, i % 7, 143 if i % 7 < 6 else 142) for i in range(1000) if i % 7 in (0, 2, 6)]
    assert [(r[0], r[1], r[2]) for r in rows] == expected and all(r[2] == r[3] for r in rows)
