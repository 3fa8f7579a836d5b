"""Validation: time zones, timestamp formats, every kind of bad input and its reject row."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from userstrata.errors import InputError
from userstrata.ingest import list_rejects, load_file, load_frame

from .conftest import assert_adds_up, open_store, rows, write_csv

HEADER = ["order_id", "user_id", "ts", "amount"]


def load_ts(store, tmp_path, value: str) -> dt.datetime | None:
    path = write_csv(tmp_path / "orders.csv", HEADER, [["T1", "u1", value, "1"]])
    load_file(store, "orders", path)
    got = rows(store, "orders")
    return got[0][2] if got else None


def test_shanghai_wall_clock_is_stored_as_utc(store, tmp_path):
    # 07:59 on 30 June in Shanghai (UTC+8) is 23:59 on 29 June in UTC
    assert load_ts(store, tmp_path, "2024-06-30 07:59:00") == dt.datetime(2024, 6, 29, 23, 59)


def test_other_shop_time_zone(tmp_path):
    from userstrata.config import Settings
    from userstrata.store import Store

    st = Store.open(":memory:", settings=Settings.from_dict({"timezone": "America/New_York"}))
    # New York is UTC-4 in summer (EDT)
    assert load_ts(st, tmp_path, "2024-06-30 20:00:00") == dt.datetime(2024, 7, 1, 0, 0)


@pytest.mark.parametrize(
    "value, expected_utc",
    [
        ("2024-06-30 08:00:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024-06-30T08:00:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024-06-30 08:00:00.250", dt.datetime(2024, 6, 30, 0, 0, 0, 250_000)),
        ("2024-06-30T08:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024-06-30T08:00:00Z", dt.datetime(2024, 6, 30, 8, 0)),
        ("2024-06-30T08:00:00+08:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024-06-30 09:00:00+0900", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024-06-30T02:00:00.5-05:00", dt.datetime(2024, 6, 30, 7, 0, 0, 500_000)),
        ("2024-06-30 08:00:00 +08:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024/6/30 8:00", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024/6/30 8:00:30", dt.datetime(2024, 6, 30, 0, 0, 30)),
        ("2024-6-3 8:05", dt.datetime(2024, 6, 3, 0, 5)),
        ("2024-06-30", dt.datetime(2024, 6, 29, 16, 0)),
        ("2024/06/30", dt.datetime(2024, 6, 29, 16, 0)),
        ("20240630", dt.datetime(2024, 6, 29, 16, 0)),
        ("20240630080000", dt.datetime(2024, 6, 30, 0, 0)),
        ("2024年6月30日 08:00", dt.datetime(2024, 6, 30, 0, 0)),
        # epoch values are instants: 1719705600 s = 2024-06-30 00:00:00 UTC
        ("1719705600", dt.datetime(2024, 6, 30, 0, 0)),
        ("1719705600000", dt.datetime(2024, 6, 30, 0, 0)),
        ("  2024-06-30 08:00:00\u3000", dt.datetime(2024, 6, 30, 0, 0)),
    ],
)
def test_timestamp_formats(store, tmp_path, value, expected_utc):
    assert load_ts(store, tmp_path, value) == expected_utc


def test_epoch_constant_is_what_the_test_says():
    assert dt.datetime(2024, 6, 30, tzinfo=dt.UTC).timestamp() == 1719705600


@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30", "abc", "30/06/2024x", "0000-00-00 00:00:00"])
def test_unparseable_dates_are_rejected(store, tmp_path, value):
    assert load_ts(store, tmp_path, value) is None
    reject = list_rejects(store).iloc[0]
    assert (reject.row_number, reject.column_name, reject.value) == (2, "ts", value)
    assert reject.reason.startswith(f"ts '{value}' is not a date/time (expected e.g.")


BAD = [
    ["A1", "u1", "2024-06-30 10:00:00", "100", "0"],     # row 2: kept
    ["A2", "u2", "2024-13-45 10:00", "50", ""],          # row 3: bad date
    ["A3", "u3", "2024-06-30 10:00:00", "-5", ""],       # row 4: negative amount
    ["A4", "u4", "2024-06-30 10:00:00", "abc", ""],      # row 5: not a number
    ["A5", "u5", "2099-01-01 00:00:00", "10", ""],       # row 6: in the future
    ["A1", "u1", "2024-06-30 10:00:00", "100.00", "0"],  # row 7: same order, same content -> duplicate
    ["A1", "u9", "2024-06-30 10:00:00", "100", "0"],     # row 8: same order, other user -> conflict
    ["", "u6", "2024-06-30 10:00:00", "10", ""],         # row 9: empty id
    ["A6", "u6", "2024-06-30 10:00:00", "1,234.50", ""],  # row 10: kept, thousands separator
    ["A7", "u7", "2024-06-30 10:00:00", "100", "150"],   # row 11: refund above amount
    ["A8", "u8", "2024-06-30 10:00:00", "￥88", ""],      # row 12: kept, currency symbol
    ["A9", "u9", "2024-06-30 10:00:00", "1,2", ""],      # row 13: not a thousands grouping
]


def test_each_bad_row_gets_one_reject_with_file_row_column_and_reason(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER + ["refund_amount"], BAD)
    report = load_file(store, "orders", path)
    assert_adds_up(report)
    assert (report.rows_read, report.rows_inserted, report.rows_rejected, report.rows_unchanged) == (12, 3, 8, 1)
    assert [r[0] for r in rows(store, "orders")] == ["A1", "A6", "A8"]
    assert [r[3] for r in rows(store, "orders")] == [100.0, 1234.5, 88.0]

    got = list_rejects(store, load_id=report.load_id)
    assert set(got.file) == {str(path)} and set(got.table_name) == {"orders"}
    triples = list(zip(got.row_number, got.column_name, got.reason, strict=True))
    assert triples == [
        (3, "ts", "ts '2024-13-45 10:00' is not a date/time (expected e.g. 2024-06-30 14:05:00, "
                  "2024-06-30T14:05:00+08:00, 2024/6/30 14:05, 20240630 or epoch seconds)"),
        (4, "amount", "amount '-5' is negative; refunds belong in refund_amount"),
        (5, "amount", "amount 'abc' is not a number"),
        (6, "ts", "ts '2099-01-01 00:00:00' is a timestamp in the future (later than now + 24 h)"),
        (8, "order_id", "order_id 'A1' appears twice in this file with different content (kept the first, "
                        "orders.csv row 2)"),
        (9, "order_id", "order_id is empty"),
        (11, "refund_amount", "refund_amount '150' is more than amount '100'"),
        (13, "amount", "amount '1,2' is not a number"),
    ]
    raw = json.loads(got.raw[got.row_number == 5].iloc[0])
    assert raw == {"order_id": "A4", "user_id": "u4", "ts": "2024-06-30 10:00:00", "amount": "abc",
                   "refund_amount": ""}
    load_row = rows(store, "loads")[0]
    assert load_row[1:3] == ("orders", str(path)) and load_row[5:10] == (12, 3, 0, 1, 8)
    assert len(load_row[3]) == 64  # sha256 of the file


def test_a_later_export_updates_the_order_and_keeps_the_old_version(store, tmp_path):
    first = load_file(store, "orders", write_csv(tmp_path / "jan.csv", HEADER, [["A1", "u1", "2024-01-05", "10"]]))
    report = load_file(store, "orders", write_csv(tmp_path / "feb.csv", HEADER, [["A1", "u1", "2024-01-05", "11"]]))
    assert (report.rows_inserted, report.rows_updated, report.rows_rejected) == (0, 1, 0)
    assert rows(store, "orders")[0][3] == 11.0  # the later export wins
    old = store.duckdb.execute("SELECT amount, load_id, superseded_by FROM orders_versions").fetchall()
    assert old == [(10.0, first.load_id, report.load_id)]


def test_item_lines_are_numbered_so_a_repeated_product_survives(store, tmp_path):
    path = write_csv(tmp_path / "items.csv", ["order_id", "sku", "price", "quantity"],
                     [["O1", "S1", "5", "1"], ["O1", "S2", "5", "1"], ["O1", "S1", "5", "1"], ["O2", "S1", "5", "0"]])
    report = load_file(store, "order_items", path)
    assert (report.rows_inserted, report.rows_rejected) == (3, 1)
    assert [r[:3] for r in rows(store, "order_items")] == [("O1", 1, "S1"), ("O1", 2, "S2"), ("O1", 3, "S1")]
    assert list(list_rejects(store).reason) == ["quantity '0' is not a whole number >= 1"]
    again = load_file(store, "order_items", path)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 3)


def test_future_tolerance_comes_from_settings(tmp_path):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lenient = open_store(future_tolerance_hours=48)
    assert load_ts(lenient, tmp_path, soon) is not None
    strict = open_store(future_tolerance_hours=24)
    assert load_ts(strict, tmp_path, soon) is None
    assert "timestamp in the future" in list_rejects(strict).reason.iloc[0]


def test_defaults_and_normalisation(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER + ["status", "currency"],
                     [[" A1 ", " u1", "2024-06-30", "1", "", ""], ["A2", "u2", "2024-06-30", "1", "REFUNDED", "cny"]])
    load_file(store, "orders", path)
    got = rows(store, "orders")
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in got] == [
        ("A1", "u1", "CNY", "paid", 0.0), ("A2", "u2", "CNY", "refunded", 0.0),
    ]


def test_ragged_rows_are_rejected_whole_and_short_rows_padded(store, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,user_id,ts,amount,status\n"
        "A1,u1,2024-06-30,1,paid\n"
        "A2,u2,2024-06-30,2,paid,extra\n"   # row 3: one field too many
        "A3,u3,2024-06-30,3\n"              # row 4: status missing -> default
        '"A4","u4","2024-06-30","4","pa\nid"\n'  # row 5: a quoted line break is one record
        "A5,u5,2024-06-30,bad,paid\n",      # row 6
        encoding="utf-8",
    )
    report = load_file(store, "orders", path)
    assert_adds_up(report)
    assert (report.rows_read, report.rows_inserted, report.rows_rejected) == (5, 2, 3)
    assert [(r[0], r[5]) for r in rows(store, "orders")] == [("A1", "paid"), ("A3", "paid")]
    got = list_rejects(store)
    assert list(zip(got.row_number, got.reason, strict=True)) == [
        (3, "row has 6 fields but the header has 5"),
        (5, "status 'pa\nid' is not a known order status; map it in [ingest.status_map] to one of paid, "
            "completed, refunding, partially_refunded, refunded, cancelled, awaiting_payment"),
        (6, "amount 'bad' is not a number"),
    ]
    assert json.loads(got.raw.iloc[0]) == ["A2", "u2", "2024-06-30", "2", "paid", "extra"]
    assert any("fewer fields than the header" in w for w in report.warnings)


def test_users_extras_go_to_attributes(store, tmp_path):
    path = write_csv(tmp_path / "users.csv", ["会员ID", "注册时间", "渠道", "城市", "年龄"],
                     [["m1", "2024-06-30 08:00:00", "抖音", "上海", "30"], ["m2", "", "", "", ""]])
    report = load_file(store, "users", path)
    assert report.ignored_columns == ()
    got = rows(store, "users")
    assert got[0][:3] == ("m1", dt.datetime(2024, 6, 30, 0, 0), "抖音")
    assert json.loads(got[0][3]) == {"城市": "上海", "年龄": "30"}
    assert got[1] == ("m2", None, None, None)


def test_events_need_a_user_or_anonymous_id(store, tmp_path):
    path = write_csv(tmp_path / "events.csv", ["user_id", "anonymous_id", "ts", "event"],
                     [["", "", "2024-06-30", "login"], ["u1", "", "2024-06-30", "LOGIN"]])
    report = load_file(store, "events", path)
    assert (report.rows_inserted, report.rows_rejected) == (1, 1)
    assert list_rejects(store).reason.iloc[0] == "user_id and anonymous_id are both empty; an event needs one of them"
    assert rows(store, "events")[0][5] == "login"


# -- errors before anything is written -------------------------------------------------------


def test_missing_required_column(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", ["order_id", "user_id", "ts"], [["A1", "u1", "2024-06-30"]])
    with pytest.raises(InputError) as err:
        load_file(store, "orders", path)
    assert str(err.value) == "orders.csv: missing required column 'amount' (file has: order_id, user_id, ts)"
    assert err.value.hint == "map one with --map amount=COLUMN"
    assert rows(store, "loads") == [] and rows(store, "rejects") == []


def test_mapping_names_a_column_the_file_lacks(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", ["单据", "客户", "时间", "钱"], [["A1", "u1", "2024-06-30", "1"]])
    with pytest.raises(InputError, match=r"orders\.csv: --map order_id=单号: the file has no column '单号' "
                                         r"\(file has: 单据, 客户, 时间, 钱\)"):
        load_file(store, "orders", path, mapping={"order_id": "单号"})
    report = load_file(store, "orders", path, mapping={"order_id": "单据", "user_id": "客户", "amount": "钱"})
    assert dict(report.column_map) == {"order_id": "单据", "user_id": "客户", "ts": "时间", "amount": "钱"}
    assert rows(store, "orders")[0][:4] == ("A1", "u1", dt.datetime(2024, 6, 29, 16), 1.0)


def test_mapping_to_an_unknown_canonical_column(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, [["A1", "u1", "2024-06-30", "1"]])
    with pytest.raises(InputError, match="orders has no column 'price'"):
        load_file(store, "orders", path, mapping={"price": "amount"})


def test_empty_file(store, tmp_path):
    (tmp_path / "orders.csv").write_bytes(b"")
    with pytest.raises(InputError, match=r"^orders\.csv is empty$"):
        load_file(store, "orders", tmp_path / "orders.csv")


def test_header_only_file(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, [])
    report = load_file(store, "orders", path)
    assert (report.rows_read, report.rows_inserted, report.rows_rejected, report.rows_unchanged) == (0, 0, 0, 0)
    assert any("a header but no data rows" in w for w in report.warnings)
    assert len(rows(store, "loads")) == 1


def test_missing_path_and_unknown_extension(store, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_file(store, "orders", tmp_path / "nope.csv")
    (tmp_path / "orders.numbers").write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"unsupported file type '\.numbers' \(allowed: \.csv, "):
        load_file(store, "orders", tmp_path / "orders.numbers")
    (tmp_path / "orders.xls").write_bytes(b"\xd0\xcf\x11\xe0")  # a broken Excel 97-2003 file
    with pytest.raises(InputError, match="legacy Excel 97-2003 .xls workbook"):
        load_file(store, "orders", tmp_path / "orders.xls")
    with pytest.raises(InputError, match="unknown table 'order'"):
        load_frame(store, "order", None, source="x")


def test_blank_rows_are_skipped_not_counted(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, [["A1", "u1", "2024-06-30", "1"], ["", "", " ", ""]])
    report = load_file(store, "orders", path)
    assert (report.rows_read, report.rows_inserted) == (1, 1)
    assert any("skipped 1 row with every cell empty" in w for w in report.warnings)


def test_empty_workbook_and_unknown_encoding(store, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    openpyxl.Workbook().save(tmp_path / "orders.xlsx")
    with pytest.raises(InputError, match=r"orders\.xlsx is empty"):
        load_file(store, "orders", tmp_path / "orders.xlsx")
    path = write_csv(tmp_path / "orders.csv", HEADER, [["A1", "u1", "2024-06-30", "1"]])
    with pytest.raises(InputError, match="unknown encoding 'klingon'"):
        load_file(store, "orders", path, encoding="klingon")
    report = load_file(store, "orders", path, encoding="GBK")  # ASCII content decodes as GBK too
    assert report.encoding == "gbk" and report.rows_inserted == 1
