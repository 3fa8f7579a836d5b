"""Every supported format and encoding loads with correctly typed values."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userstrata.errors import InputError
from userstrata.ingest import detect_encoding, load_file, load_frame

from .conftest import rows, write_csv

HEADER = ["order_id", "user_id", "ts", "amount"]
# Shanghai is UTC+8 all year: 10:00 local is 02:00 UTC
DATA = [["A1", "u1", "2024-06-30 10:00:00", "12.50"], ["A2", "u2", "2024-07-01 08:30:00", "99"]]
EXPECTED = [
    ("A1", "u1", dt.datetime(2024, 6, 30, 2, 0), 12.5, "CNY", "paid", 0.0, None),
    ("A2", "u2", dt.datetime(2024, 7, 1, 0, 30), 99.0, "CNY", "paid", 0.0, None),
]


@pytest.mark.parametrize("encoding, reported", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig")])
def test_csv_utf8_with_and_without_bom(store, tmp_path, encoding, reported):
    path = write_csv(tmp_path / "orders.csv", HEADER, DATA, encoding=encoding)
    report = load_file(store, "orders", path)
    assert report.encoding == reported
    assert (report.rows_read, report.rows_inserted) == (2, 2)
    assert rows(store, "orders") == EXPECTED


def test_csv_gbk_from_chinese_excel(store, tmp_path):
    header = ["订单号", "商品ID", "类目", "数量", "单价"]
    data = [["D1", "S1", "游戏道具", "2", "￥30.00"], ["D1", "S2", "点卡", "1", "50"]]
    path = write_csv(tmp_path / "明细.csv", header, data, encoding="gbk")
    assert detect_encoding(path) == "gb18030"
    report = load_file(store, "order_items", path)
    assert report.encoding == "gb18030"
    assert dict(report.column_map) == {
        "order_id": "订单号", "sku": "商品ID", "category": "类目", "quantity": "数量", "price": "单价",
    }
    assert rows(store, "order_items") == [("D1", 1, "S1", "游戏道具", 2, 30.0), ("D1", 2, "S2", "点卡", 1, 50.0)]


def test_chinese_shop_export_headers_map_and_extras_are_reported(store, tmp_path):
    header = ["订单编号", "买家ID", "支付时间", "实付金额", "订单状态", "备注"]
    data = [["T1", "b1", "2024/6/30 10:00", "1,299.00", "已付款", "尽快发货"]]
    path = write_csv(tmp_path / "taobao.csv", header, data, encoding="gbk")
    report = load_file(store, "orders", path)
    assert report.ignored_columns == ("备注",)
    assert rows(store, "orders") == [
        ("T1", "b1", dt.datetime(2024, 6, 30, 2, 0), 1299.0, "CNY", "paid", 0.0, None)
    ]


@pytest.mark.parametrize("delimiter, suffix", [("\t", ".tsv"), (";", ".csv"), ("|", ".txt"), ("\t", ".txt")])
def test_delimiter_is_sniffed(store, tmp_path, delimiter, suffix):
    path = write_csv(tmp_path / f"orders{suffix}", HEADER, DATA, delimiter=delimiter)
    load_file(store, "orders", path)
    assert rows(store, "orders") == EXPECTED


def test_xlsx_streamed_with_typed_cells(store, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["订单号", "用户ID", "下单时间", "实付金额"])
    sheet.append([1001, "u1", dt.datetime(2024, 6, 30, 10, 0), 12.5])  # numeric id, real date cell
    sheet.append([None, None, None, None])  # an empty sheet row keeps its number
    sheet.append(["A2", "u2", "2024-07-01 08:30", "abc"])
    book.save(tmp_path / "orders.xlsx")
    report = load_file(store, "orders", tmp_path / "orders.xlsx")
    assert report.encoding is None
    assert (report.rows_read, report.rows_inserted, report.rows_rejected) == (2, 1, 1)
    assert rows(store, "orders") == [("1001", "u1", dt.datetime(2024, 6, 30, 2, 0), 12.5, "CNY", "paid", 0.0, None)]
    reject = rows(store, "rejects")[0]
    assert reject[3:7] == (4, "amount", "abc", "amount 'abc' is not a number")  # sheet row 4, after the empty row 3


def test_parquet_with_typed_columns(store, tmp_path):
    table = pa.table({
        "order_id": ["P1", "P2"],
        "user_id": ["u1", "u2"],
        "ts": pa.array([dt.datetime(2024, 6, 30, 10, 0), dt.datetime(2024, 7, 1, 8, 30)], pa.timestamp("us")),
        "amount": pa.array([12.5, 99.0], pa.float64()),
        "refund_amount": pa.array([None, 9.0], pa.float64()),
    })
    pq.write_table(table, tmp_path / "orders.parquet", row_group_size=1)
    report = load_file(store, "orders", tmp_path / "orders.parquet")
    assert report.encoding is None and report.rows_inserted == 2
    assert rows(store, "orders") == [
        ("P1", "u1", dt.datetime(2024, 6, 30, 2, 0), 12.5, "CNY", "paid", 0.0, None),
        ("P2", "u2", dt.datetime(2024, 7, 1, 0, 30), 99.0, "CNY", "paid", 9.0, None),
    ]


def test_parquet_timestamp_with_zone_keeps_its_instant(store, tmp_path):
    table = pa.table({
        "order_id": ["Z1"], "user_id": ["u1"], "amount": [1.0],
        "ts": pa.array([dt.datetime(2024, 6, 30, 23, 59, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, tmp_path / "orders.parquet")
    load_file(store, "orders", tmp_path / "orders.parquet")
    assert rows(store, "orders")[0][2] == dt.datetime(2024, 6, 30, 23, 59)


def test_jsonl_events_with_nested_properties(store, tmp_path):
    lines = [
        {"user_id": "u1", "ts": "2024-06-30T10:00:00+08:00", "event": "Page_View", "properties": {"page": "home"}},
        {"anonymous_id": "d9", "ts": 1719712800, "event": "search", "keyword": "耳机"},
        "not json",
        {"user_id": "u2", "ts": "2024-06-30 10:00:00", "event": "login"},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines)
    (tmp_path / "events.jsonl").write_text(text + "\n", encoding="utf-8")
    report = load_file(store, "events", tmp_path / "events.jsonl")
    assert report.encoding == "utf-8"
    assert (report.rows_read, report.rows_inserted, report.rows_rejected) == (4, 3, 1)
    got = {r[4]: r for r in store.duckdb.execute(
        "SELECT event_id, user_id, anonymous_id, ts, event, properties FROM events").fetchall()}
    assert got["page_view"][1:4] == ("u1", None, dt.datetime(2024, 6, 30, 2, 0))
    assert json.loads(got["page_view"][5]) == {"page": "home"}
    # epoch seconds are an instant: 1719712800 = 2024-06-30 02:00:00 UTC
    assert got["search"][1:4] == (None, "d9", dt.datetime(2024, 6, 30, 2, 0))
    assert json.loads(got["search"][5]) == {"keyword": "耳机"}
    assert got["login"][3] == dt.datetime(2024, 6, 30, 2, 0) and got["login"][5] is None
    assert len({r[0] for r in got.values()}) == 3  # derived event ids are distinct
    bad = rows(store, "rejects")[0]
    assert bad[3] == 3 and "not valid JSON" in bad[6] and json.loads(bad[7]) == "not json"
    again = load_file(store, "events", tmp_path / "events.jsonl")
    assert (again.rows_inserted, again.rows_updated, again.rows_rejected, again.rows_unchanged) == (0, 0, 1, 3)


def test_json_array_file(store, tmp_path):
    records = [{"order_id": "J1", "user_id": "u1", "ts": "2024-06-30 10:00:00", "amount": 5}]
    (tmp_path / "orders.json").write_text(json.dumps(records), encoding="utf-8")
    report = load_file(store, "orders", tmp_path / "orders.json")
    assert report.rows_inserted == 1 and rows(store, "orders")[0][:4] == ("J1", "u1", dt.datetime(2024, 6, 30, 2), 5.0)


def test_load_frame_pandas(store):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"order_id": ["F1"], "user_id": ["u1"], "ts": [pd.Timestamp("2024-06-30 10:00")],
                          "amount": [3.25]})
    report = load_frame(store, "orders", frame, source="frame")
    assert report.file == "frame" and report.encoding is None
    assert rows(store, "orders") == [("F1", "u1", dt.datetime(2024, 6, 30, 2), 3.25, "CNY", "paid", 0.0, None)]


def test_detect_encoding_survives_a_character_cut_at_the_sample_end(tmp_path):
    path = tmp_path / "cut.csv"
    # '中' is 3 bytes in UTF-8; it starts one byte before the 1 MiB sample ends
    path.write_bytes(b"a" * (2**20 - 1) + "中文\n".encode())
    assert detect_encoding(path) == "utf-8"


def test_utf16_excel_unicode_text(store, tmp_path):
    path = write_csv(tmp_path / "orders.txt", HEADER, DATA, encoding="utf-16", delimiter="\t")
    report = load_file(store, "orders", path)
    assert report.encoding == "utf-16"
    assert rows(store, "orders") == EXPECTED


def test_explicit_wrong_encoding_names_file_and_encoding(store, tmp_path):
    path = write_csv(tmp_path / "gbk.csv", ["订单号", "用户ID", "下单时间", "金额"], [["A", "u", "2024-06-30", "1"]],
                     encoding="gbk")
    with pytest.raises(InputError, match=r"gbk\.csv: cannot decode the file as utf-8"):
        load_file(store, "orders", path, encoding="utf-8")
    assert rows(store, "orders") == [] and rows(store, "loads") == []


def test_bad_bytes_after_the_sample_fail_the_whole_load(store, tmp_path):
    path = tmp_path / "late.csv"
    good = "".join(f"A{i},u{i},2024-06-30 10:00:00,1\n" for i in range(40_000))  # > 1 MiB of UTF-8
    path.write_bytes(("order_id,user_id,ts,amount\n" + good).encode() + "B1,用户,2024-06-30,1\n".encode("gbk"))
    with pytest.raises(InputError, match=r"late\.csv: bytes that are not valid utf-8"):
        load_file(store, "orders", path)
    assert rows(store, "orders") == [] and rows(store, "loads") == []


def test_a_properties_cell_that_is_not_json_rejects_its_row_only(store, tmp_path):
    """DuckDB evaluates both sides of an AND: the JSON type of a cell is only asked of valid JSON,
    so one malformed cell is a reject, not a failed load."""
    path = write_csv(tmp_path / "events.csv", ["event_id", "user_id", "ts", "event", "properties"], [
        ["e1", "u1", "2024-06-01 10:00:00", "login", '{"a": 1}'],
        ["e2", "u1", "2024-06-01 10:01:00", "login", "{oops"],
        ["e3", "u2", "2024-06-01 10:02:00", "login", "[1, 2]"],
        ["e4", "u2", "2024-06-01 10:03:00", "login", ""],
    ])
    report = load_file(store, "events", path)
    assert (report.rows_read, report.rows_inserted, report.rows_rejected) == (4, 2, 2)
    rejected = {r[3]: r[6] for r in rows(store, "rejects")}  # file line -> reason
    assert set(rejected) == {3, 4} and all("not a JSON object" in why for why in rejected.values())
    assert dict(store.duckdb.execute("SELECT event_id, properties FROM events").fetchall()) == {"e1": '{"a":1}', "e4": None}
