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
