"""Loading lake files on Spark (ingest/lake.py): the same rows accepted and the same rejects
(row, column, value, reason) as a DuckDB file load of the same file, and re-loading never
double counts."""

import datetime as dt
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userstrata.config import Settings
from userstrata.errors import InputError
from userstrata.ingest import lake
from userstrata.schema import CANONICAL
from userstrata.workspace import Workspace

REJECT_COLUMNS = ["row_number", "column_name", "value", "reason", "reason_zh", "raw"]

# each line is one record; the comment says what a DuckDB load does with it
ORDER_ROWS = [
    # order_id, user_id, ts, amount, status, refund_amount, currency
    ("o1", "u1", "2024-06-01 10:00:00", "100", "paid", None, None),            # ok
    ("o2", "u1", "2024/6/2 9:05", "¥1,234.50", "已付款", "", "cny"),              # ok: '/' date, thousands, 已付款
    ("o3", "u2", "20240603", " 12.5 ", "completed", "0", None),                 # ok: compact date, spaces
    ("o4", "u2", "2024-06-04T10:00:00+08:00", "1e2", "交易成功", None, None),      # ok: offset, exponent
    ("o5", "u3", "2024-06-05 10:00:00 +0800", "50", "TRADE_CLOSED", "50", None),  # ok: closed + refund -> refunded
    ("o6", "u3", "1717200000", "20", None, None, None),                         # ok: epoch seconds, default status
    ("o7", "u3", "1717200000123", "20", "paid", None, None),                    # ok: epoch milliseconds
    ("o8", "u4", "2024年6月6日 10:00", "30", "paid", None, None),                 # ok: Chinese date
    ("o9", "u4", "2024.06.07", "30", "paid", None, None),                       # ok: dotted date
    ("o10", "u4", "2024-06-08 10:00:00.5", "30", "paid", None, None),           # ok: fractional seconds
    ("o11", "u5", "2024-06-09", "abc", "paid", None, None),                     # amount not a number
    ("o12", "u5", "2024-06-09", "-5", "paid", None, None),                      # amount negative
    ("o13", "u5", "2024-06-09", "1.5d", "paid", None, None),                    # not a number (Spark casts it)
    ("o14", "u5", "2024-06-09", "inf", "paid", None, None),                     # not a finite number
    ("o15", "u5", "2024-06-09", "10", "weird", None, None),                     # unknown status
    ("o16", "u5", "2024-06-09", "10", "paid", "20", None),                      # refund above amount
    (None, "u6", "2024-06-09", "10", "paid", None, None),                       # order_id empty
    ("o17", "  ", "2024-06-09", "10", "paid", None, None),                      # user_id blank
    ("o18", "u6", "yesterday", "10", "paid", None, None),                       # not a date
    ("o19", "u6", "2099-01-01", "10", "paid", None, None),                      # future
    ("o20", "u6", "1980-01-01", "10", "paid", None, None),                      # before earliest_date
    ("o21", "u6", "2024-06-09", "10", "paid", None, "USD"),                     # currency without a rate
    ("o1", "u1", "2024-06-01 10:00:00", "100", "paid", None, None),            # repeat of o1: duplicate
    ("o2", "u9", "2024-06-02 09:05:00", "7", "paid", None, None),               # o2 again, different: rejected
    (None, None, None, None, None, None, None),                                 # blank: skipped
    ("o22", "u7", "2024-6-3 7:05:09", "8.8", "paid", None, None),               # ok: one-digit fields
]
ORDER_NAMES = ["order_id", "user_id", "ts", "amount", "status", "refund_amount", "currency"]

EVENT_ROWS = [
    # event_id, user_id, anonymous_id, ts, event, properties
    ("e1", "u1", None, "2024-06-01 10:00:00", "浏览", '{"sku":"a"}'),          # ok: mapped to page_view
    (None, "u1", None, "2024-06-01 10:01:00", "search", None),               # ok: derived id
    (None, "u1", None, "2024-06-01 10:01:00", "search", None),               # the same again: a second event
    (None, None, "anon1", "2024-06-01 10:02:00", "custom_thing", '{"a":1}'),  # ok: unknown name kept
    ("e2", None, None, "2024-06-01 10:03:00", "login", None),                # no user_id nor anonymous_id
    ("e3", "u2", None, "not a time", "login", None),                         # not a date
    ("e4", "u2", None, "2024-06-01 10:04:00", None, None),                   # event empty
    ("e6", "u2", None, "2024-06-01 10:06:00", "share", "[1, 2]"),            # JSON but not an object
    ("e1", "u1", None, "2024-06-01 10:00:00", "浏览", '{"sku":"a"}'),          # repeat of e1
    ("e1", "u3", None, "2024-06-01 10:00:00", "浏览", None),                   # e1 again, different: rejected
]
EVENT_NAMES = ["event_id", "user_id", "anonymous_id", "ts", "event", "properties"]

SETTINGS = Settings()
SPARK = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _write(folder, name, names, rows):
    path = folder / f"{name}.parquet"
    columns = {n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)}
    pq.write_table(pa.table(columns), path)
    return path


def _on_duckdb(table, path):
    ws = Workspace.open(":memory:", settings=SETTINGS)
    report = ws.load(table, path)
    return ws, report


def _sorted(frame, key):
    return frame.sort_values(key).reset_index(drop=True)


def _values(column):
    """A column as a list with every missing value None (timestamps in microseconds)."""
    if column.dtype.kind == "M":
        column = column.astype("datetime64[us]")
    return [None if v is None or v != v else v for v in column.tolist()]


def _same_columns(have, want, columns):
    for col in columns:
        assert _values(have[col]) == _values(want[col]), col


# -- pure translation checks (no Spark needed) ------------------------------------------------

def test_java_patterns():
    assert lake._java_pattern("%Y%m%d %H:%M") == "yyyyMMdd HH:mm"
    assert lake._java_pattern("%Y.%m.%d") == "yyyy.M.d"
    assert lake._java_pattern("%Y年%m月%d日") == "yyyy'年'M'月'd'日'"


def test_spark_literal_escapes_quotes_and_backslashes():
    assert lake.spark_literal("it's \\d") == "'it\\'s \\\\d'"


@pytest.mark.parametrize("table", ["orders", "events", "touches"])
def test_translated_query_has_no_duckdb_only_function(table):
    from userstrata.ingest.load import _rules
    from userstrata.ingest.mapping import plan_columns
    from userstrata.ingest.validate import stage_query

    spec = CANONICAL[table]
    plan = plan_columns(spec, spec.columns, None, file="x")
    sql = lake._to_spark(stage_query(spec, plan, _rules(SETTINGS, dt.datetime(2024, 7, 1)), chunk="c"),
                         spec, "Asia/Shanghai")
    for duckdb_only in ("REGEXP_FULL_MATCH", "TRY_STRPTIME", "TIMEZONE", "ISFINITE", "JSON_VALID", "STRUCT_PACK",
                        "JSON_TYPE", "__US_PIECE_"):
        assert not re.search(rf"(?<![A-Z_]){duckdb_only}\b", sql.upper()), duckdb_only


# -- on Spark -----------------------------------------------------------------------------------

@SPARK[0]
@SPARK[1]
def test_orders_match_a_duckdb_load_and_reload_changes_nothing(spark, tmp_path):
    path = _write(tmp_path, "orders", ORDER_NAMES, ORDER_ROWS)
    ws, duck = _on_duckdb("orders", path)
    session = spark.newSession()
    got = lake.load_lake(session, "orders", path, settings=SETTINGS, target=tmp_path / "lake")

    # the same counts: read, new, duplicate (DuckDB: unchanged), rejected
    assert (got.rows_read, got.rows_inserted, got.rows_duplicate, got.rows_rejected) == (
        duck.rows_read, duck.rows_inserted, duck.rows_unchanged, duck.rows_rejected)
    assert got.rows_read == len(ORDER_ROWS) - 1  # the blank line
    # the same accepted rows, value for value
    cols = list(CANONICAL["orders"].columns)
    want = _sorted(ws.table("orders").select(*cols).to_pandas(), "order_id")
    have = _sorted(session.table("orders").select(*cols).toPandas(), "order_id")
    assert have["order_id"].tolist() == want["order_id"].tolist()
    _same_columns(have, want, cols)
    # the same rejects: row, column, value, reason (both languages), raw row
    want_rej = ws.rejects()[REJECT_COLUMNS].reset_index(drop=True)
    have_rej = session.table("rejects").orderBy("row_number").toPandas()[REJECT_COLUMNS]
    assert have_rej["row_number"].tolist() == want_rej["row_number"].tolist()
    _same_columns(have_rej, want_rej, REJECT_COLUMNS)

    again = lake.load_lake(session, "orders", path, settings=SETTINGS, target=tmp_path / "lake")
    assert again.rows_inserted == 0
    assert again.rows_duplicate == got.rows_inserted + got.rows_duplicate
    assert again.rows_read == again.rows_inserted + again.rows_duplicate + again.rows_rejected
    assert session.table("orders").count() == got.rows_inserted
    # the workspace on that session reads the loaded table as its orders
    on_spark = Workspace.open(session, settings=SETTINGS)
    assert int(on_spark.table("orders").amount.sum().execute() * 100) == int(round(want["amount"].sum() * 100))
    ws.close()


@SPARK[0]
@SPARK[1]
def test_typed_lake_columns_read_as_a_duckdb_load_reads_them(spark, tmp_path):
    """A lake file has typed columns: a double amount, a naive timestamp (shop-local time)
    and a time-zone-aware one (an instant); both engines read the same values."""
    aware = pa.array([dt.datetime(2024, 6, 3, 2, 0), None, dt.datetime(2024, 6, 1, 16, 30)], pa.timestamp("us", "UTC"))
    data = pa.table({
        "order_id": ["t1", "t2", "t3"],
        "user_id": ["u1", "u2", "u3"],
        "ts": pa.array([dt.datetime(2024, 6, 1, 10, 0), dt.datetime(2024, 6, 2, 23, 59, 59, 500000),
                        dt.datetime(2024, 6, 1, 0, 0)], pa.timestamp("us")),
        "amount": pa.array([100.0, 12.345, 1e7]),
        "refund_amount": pa.array([10.0, 0.0, 5.0]),
        "refunded_at": aware,
        "status": ["partially_refunded", "paid", "partially_refunded"],
    })
    path = tmp_path / "typed.parquet"
    pq.write_table(data, path)
    ws, duck = _on_duckdb("orders", path)
    assert duck.rows_inserted == 3
    session = spark.newSession()
    got = lake.load_lake(session, "orders", path, settings=SETTINGS, target=tmp_path / "lake")
    assert (got.rows_inserted, got.rows_rejected) == (3, 0)
    cols = list(CANONICAL["orders"].columns)
    want = _sorted(ws.table("orders").select(*cols).to_pandas(), "order_id")
    have = _sorted(session.table("orders").select(*cols).toPandas(), "order_id")
    _same_columns(have, want, cols)
    # shop-local 2024-06-01 10:00 (UTC+8) is 02:00 UTC; the aware refund time stays as it was
    assert _values(have["ts"])[0] == dt.datetime(2024, 6, 1, 2, 0)
    assert _values(have["refunded_at"])[0] == dt.datetime(2024, 6, 3, 2, 0)
    ws.close()


@SPARK[0]
@SPARK[1]
def test_touches_match_a_duckdb_load(spark, tmp_path):
    names = ["touch_id", "user_id", "ts", "channel", "campaign"]
    rows = [
        ("t1", "u1", "2024-06-01 10:00:00", "sms", "618"),
        ("t2", "u1", "2024-06-01 10:00:00", None, "618"),   # channel empty
        ("t3", None, "2024-06-01 10:00:00", "sms", None),   # user_id empty
        ("t1", "u1", "2024-06-01 10:00:00", "sms", "618"),  # repeat
        ("t4", "u2", "2024-13-01", "push", None),           # month 13: not a date
    ]
    path = _write(tmp_path, "touches", names, rows)
    ws, duck = _on_duckdb("touches", path)
    session = spark.newSession()
    got = lake.load_lake(session, "touches", path, settings=SETTINGS, target=tmp_path / "lake")
    assert (got.rows_read, got.rows_inserted, got.rows_duplicate, got.rows_rejected) == (
        duck.rows_read, duck.rows_inserted, duck.rows_unchanged, duck.rows_rejected) == (5, 1, 1, 3)
    cols = list(CANONICAL["touches"].columns)
    _same_columns(session.table("touches").select(*cols).toPandas(), ws.table("touches").select(*cols).to_pandas(),
                  cols)
    have_rej = session.table("rejects").orderBy("row_number").toPandas()[REJECT_COLUMNS]
    _same_columns(have_rej, ws.rejects()[REJECT_COLUMNS].reset_index(drop=True), REJECT_COLUMNS)
    ws.close()


@SPARK[0]
@SPARK[1]
def test_events_match_a_duckdb_load(spark, tmp_path):
    path = _write(tmp_path, "events", EVENT_NAMES, EVENT_ROWS)
    ws, duck = _on_duckdb("events", path)
    session = spark.newSession()
    got = lake.load_lake(session, "events", path, settings=SETTINGS, target=tmp_path / "lake")
    assert (got.rows_read, got.rows_inserted, got.rows_duplicate, got.rows_rejected) == (
        duck.rows_read, duck.rows_inserted, duck.rows_unchanged, duck.rows_rejected)
    cols = list(CANONICAL["events"].columns)
    want = _sorted(ws.table("events").select(*cols).to_pandas(), "event_id")
    have = _sorted(session.table("events").select(*cols).toPandas(), "event_id")
    # derived ids (md5 of the content, numbered repeats) are the same on both engines
    assert have["event_id"].tolist() == want["event_id"].tolist()
    _same_columns(have, want, cols)
    want_rej = ws.rejects()[REJECT_COLUMNS].reset_index(drop=True)
    have_rej = session.table("rejects").orderBy("row_number").toPandas()[REJECT_COLUMNS]
    _same_columns(have_rej, want_rej, REJECT_COLUMNS)
    ws.close()


@SPARK[0]
@SPARK[1]
def test_text_that_is_not_json_is_rejected(spark, tmp_path):
    # not in the parity file: a DuckDB load of it fails in json() (the CASE does not guard it)
    path = _write(tmp_path, "events", EVENT_NAMES, [("e5", "u2", None, "2024-06-01 10:05:00", "share", "{oops")])
    session = spark.newSession()
    got = lake.load_lake(session, "events", path, settings=SETTINGS, target=tmp_path / "lake")
    assert (got.rows_read, got.rows_inserted, got.rows_rejected) == (1, 0, 1)
    rej = session.table("rejects").toPandas()
    assert rej[["row_number", "column_name", "value", "reason"]].values.tolist() == [
        [1, "properties", "{oops", "properties '{oops' is not a JSON object"]]


@SPARK[0]
@SPARK[1]
def test_what_spark_cannot_load_is_named(spark, tmp_path):
    session = spark.newSession()
    path = _write(tmp_path, "orders", ORDER_NAMES, ORDER_ROWS[:2])
    with pytest.raises(InputError, match="users"):
        lake.load_lake(session, "users", path, settings=SETTINGS, target=tmp_path / "lake")
    with pytest.raises(InputError, match="delta"):
        lake.load_lake(session, "orders", tmp_path, settings=SETTINGS, target=tmp_path / "lake", format="delta")
    items = _write(tmp_path, "items", ["order_id", "user_id", "ts", "sku", "price"],
                   [("o1", "u1", "2024-06-01", "A", "3")])
    with pytest.raises(InputError, match="item-level"):
        lake.load_lake(session, "orders", items, settings=SETTINGS, target=tmp_path / "lake")
    with pytest.raises(InputError, match="does not exist|cannot read"):
        lake.load_lake(session, "orders", tmp_path / "missing.parquet", settings=SETTINGS, target=tmp_path / "lake")


@SPARK[0]
@SPARK[1]
def test_row_numbers_are_record_positions_across_partitions(spark, tmp_path):
    bad = {1, 777, 1501, 2999}
    rows = [(f"o{i}", f"u{i % 7}", "2024-06-01 10:00:00", "bad" if i in bad else str(i)) for i in range(1, 3001)]
    path = tmp_path / "many.parquet"
    columns = {n: pa.array([r[k] for r in rows], pa.string()) for k, n in enumerate(ORDER_NAMES[:4])}
    pq.write_table(pa.table(columns), path, row_group_size=250)
    session = spark.newSession()
    session.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    session.conf.set("spark.sql.files.openCostInBytes", "0")
    assert session.read.parquet(str(path)).rdd.getNumPartitions() > 1  # the numbering is put to the test
    got = lake.load_lake(session, "orders", path, settings=SETTINGS, target=tmp_path / "lake")
    assert (got.rows_read, got.rows_inserted, got.rows_rejected) == (3000, 3000 - len(bad), len(bad))
    rej = session.table("rejects").orderBy("row_number").toPandas()
    assert rej["row_number"].tolist() == sorted(bad)
    assert rej["value"].tolist() == ["bad"] * len(bad)
    assert rej["raw"].tolist()[1] == '{"order_id":"o777","user_id":"u0","ts":"2024-06-01 10:00:00","amount":"bad"}'
