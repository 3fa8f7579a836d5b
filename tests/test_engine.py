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
