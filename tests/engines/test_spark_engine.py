"""The engine helpers on Spark against an independent reference (Python's zoneinfo), as
tests/test_engine.py checks them on DuckDB."""

import datetime as dt
import random
import zoneinfo

import ibis
import pytest

from userstrata import _engine

pytestmark = [
    pytest.mark.spark,
    # pyspark 4.0's toPandas under pandas 3; nothing of ours to change
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def con(spark):
    backend, engine = _engine.connect(spark.newSession())
    assert engine == "spark"
    return backend


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_local_time_matches_zoneinfo_including_offset_changes(con, zone):
    rng = random.Random(7)
    values = [dt.datetime(1975, 1, 1) + dt.timedelta(seconds=rng.randint(0, 55 * 365 * 86400)) for _ in range(3000)]
    _, changes = _engine._offset_changes(zone)
    values += [at + dt.timedelta(seconds=s) for at, _ in changes[:30] for s in (-1, 0, 1)]
    t = ibis.memtable({"ts": values})
    got = con.execute(t.mutate(local=_engine.local_time(t.ts, zone, "spark")))["local"]
    tz = zoneinfo.ZoneInfo(zone)
    expected = [v.replace(tzinfo=dt.timezone.utc).astimezone(tz).replace(tzinfo=None) for v in values]
    assert [g.to_pydatetime() for g in got] == expected


def test_days_between_is_calendar_days(con):
    assert con.execute(_engine.days_between(dt.date(2024, 2, 27), dt.date(2024, 3, 1))) == 3  # leap year
    days = [dt.date(1969, 12, 31), dt.date(2000, 3, 1), dt.date(2024, 6, 30)]
    t = ibis.memtable({"day": days})
    got = con.execute(t.mutate(n=_engine.days_between(t.day, dt.date(2024, 7, 1))))["n"].tolist()
    assert got == [(dt.date(2024, 7, 1) - d).days for d in days]
