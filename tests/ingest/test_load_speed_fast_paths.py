"""The loader's fast paths give exactly what the general expressions give, on tricky values:
cells with full-width and no-break spaces, every timestamp format, Asia/Shanghai's summer
time (1986-1991) and the days around its end, zones with summer time now, status lookups."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import duckdb
import pytest

from userstrata.ingest import vocab
from userstrata.ingest.validate import _WS, _lookup, _parse_ts, _plain_ts, _trim, fixed_offset, lit, to_utc

CELLS = [
    "a", " a", "a ", "\u3000a\u3000", "\u00a0a\u00a0", "\ta\r\n", "a b", "a\u3000b", "\u3000", " ", "",
    "\u00a0 \u3000", "\fa\f", "\u0600 ", "x\u3000\u0301", "已付款\u3000", "\u3000 已付款 \u00a0", "a\n", "\n",
]

TIMES = [
    # plain, as TRY_CAST reads them
    "2024-06-30 14:05:00", "2024-06-30T14:05:00", "2024-06-30 14:05:00.123456", "2024/6/30 14:05", "2024-6-3 4:05:00",
    "2024-06-30", "2024/06/30", "2024-02-30 10:00:00", "2024-13-45 10:00:00", "2024-06-30 24:00:00",
    # other formats
    "20240630", "20240630140500", "202406301405", "20240630 14:05:00", "2024.06.30 14:05:00", "2024.06.30",
    "2024年6月30日 14:05:00", "2024年06月30日", "1719727500", "1719727500.25", "1719727500123", "abc", "14:05",
    # zones and offsets
    "2024-06-30T14:05:00+08:00", "2024-06-30 14:05:00 +0800", "2024-06-30 14:05:00Z", "2024-06-30 14:05:00 UTC",
    "2024-06-30 14:05:00 GMT", "2024-06-30T14:05:00-05", "2024-06-30 14:05-08:00", "2024-06-30 14:05:00+08",
    # Asia/Shanghai summer time 1986-1991 (UTC+9 from mid-April to mid-September), the gaps and
    # repeated hours, and the days around its last end (1991-09-15)
    "1986-05-04 02:30:00", "1986-07-01 12:00:00", "1988-04-10 02:30:00", "1988-09-11 00:30:00",
    "1988-09-11 01:30:00", "1990-06-01 08:00:00", "1991-04-14 02:30:00", "1991-07-15 23:59:59",
    "1991-09-14 23:00:00", "1991-09-15 00:30:00", "1991-09-15 01:30:00", "1991-09-16 12:00:00",
    "1991-09-17 00:00:00", "1991-09-17 02:00:00", "1991-09-18 00:00:00", "1985-12-31 23:00:00",
    # summer time elsewhere, and the far future
    "2024-03-10 02:30:00", "2024-11-03 01:30:00", "2024-03-31 02:30:00", "2024-10-27 02:30:00",
    "2099-12-31 23:59:59", "2100-01-01 00:00:00", "2150-06-01 12:00:00", "1900-01-01 00:00:00",
]
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Europe/Moscow", "Asia/Kolkata", "UTC",
         "Australia/Lord_Howe", "Asia/Tokyo"]


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    return c


def _values(con, sql: str, values: list[str]):
    con.execute("CREATE OR REPLACE TEMP TABLE v (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)) + [(len(values), None)])
    return con.execute(f"SELECT i, {sql} FROM v ORDER BY i").fetchall()


def test_the_trim_fast_path_is_the_general_trim(con):
    fast = _values(con, _trim("x"), CELLS)
    general = _values(con, f"nullif(trim(x, {lit(_WS)}), '')", CELLS)
    assert fast == general
    # and the general trim does what it says (independently of SQL)
    for (i, got) in general[:-1]:
        expected = CELLS[i].strip(_WS) or None
        assert got == expected, CELLS[i]


@pytest.mark.parametrize("zone", ZONES)
def test_timestamps_fast_and_general_agree(con, zone):
    _values(con, "1", TIMES)
    fast = con.execute(
        f"SELECT i, {_parse_ts('x', zone, plain='l')} FROM (SELECT *, {_plain_ts('x')} AS l FROM v) ORDER BY i"
    ).fetchall()
    general = _values(con, _parse_ts("x", zone), TIMES)
    assert fast == general
    assert sum(v is not None for _, v in general) > 40  # most of them are times


def test_shanghai_against_the_time_zone_database(con):
    """Independent: Python's zoneinfo gives the UTC time of each Shanghai wall-clock time
    outside the gaps and repeated hours."""
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    plain = [t for t in TIMES if t[:2] in ("19", "20") and len(t) == 19 and t[4] == "-" and t[:4] < "2100"]
    got = dict(_values(con, to_utc("TRY_CAST(x AS TIMESTAMP)", "Asia/Shanghai"), plain))
    checked = 0
    for i, text in enumerate(plain):
        try:
            local = dt.datetime.fromisoformat(text)
        except ValueError:  # 2024-02-30 (NULL) or 24:00 (the next day): compared with the general path above
            continue
        first, second = local.replace(tzinfo=tz, fold=0), local.replace(tzinfo=tz, fold=1)
        if first.utcoffset() != second.utcoffset():
            continue  # in a gap or a repeated hour: the database decides
        assert got[i] == first.astimezone(dt.UTC).replace(tzinfo=None), text
        checked += 1
    assert checked >= 20
    assert got[plain.index("1991-07-15 23:59:59")] == dt.datetime(1991, 7, 15, 14, 59, 59)  # UTC+9 then
    assert got[plain.index("2024-06-30 14:05:00")] == dt.datetime(2024, 6, 30, 6, 5)


def test_fixed_offset_stretches():
    start, until, offset = fixed_offset("Asia/Shanghai")
    assert offset == dt.timedelta(hours=8)
    assert dt.datetime(1991, 9, 15) < start <= dt.datetime(1991, 9, 20)  # summer time ended 1991-09-15
    assert until <= dt.datetime(2100, 1, 1)
    ny = fixed_offset("America/New_York")
    assert ny is None or ny[0] > dt.datetime(2099, 1, 1)  # summer time every year: no stretch before then
    assert fixed_offset("Not/AZone") is None


def test_status_lookup_matches_the_vocabulary(con):
    pairs = tuple(vocab.status_lookup({"Weird": "paid"}).items())
    table = dict(pairs)
    values = [*table, "unknown", "PAID", "已付款", "已退款", "Weird"]
    got = _values(con, _lookup("lower(x)", pairs), values)
    for i, value in got[:-1]:
        assert value == table.get(values[i].lower()), values[i]
    assert got[-1][1] is None
