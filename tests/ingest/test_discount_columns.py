"""Discount columns of Chinese shop exports (优惠金额, 店铺优惠, 优惠券, 商品原价, 划线价, 品牌): mapped to
discount_amount, coupon_id, list_price and brand, checked row by row, NULL when a file has none."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from userstrata.ingest import load_file

from .conftest import write_csv

TITLE = ["有赞 订单明细导出"]
EXPORTED = ["导出时间：2024-07-02 09:00:00"]
YOUZAN_HEADER = ["订单号", "买家ID", "下单时间", "订单状态", "商品名称", "商品编码", "品牌", "商品原价", "单价", "数量",
                 "商品实付金额", "店铺优惠", "优惠券", "订单实付金额"]
# Y1: two lines, a 20.00 shop discount repeated on both, a coupon named on the first line only;
# Y2: one line at its list price, no discount (0), no coupon
YOUZAN_LINES = [
    ["Y1", "b1", "2024-06-30 10:00", "交易成功", "Python 入门课", "C-101", "青木学堂", "199.00", "159.00", "1", "159.00",
     "20.00", "满100减20", "278.00"],
    ["Y1", "b1", "2024-06-30 10:00", "交易成功", "月卡", "M-30", "云端会员", "30.00", "30.00", "4", "120.00",
     "20.00", "", "278.00"],
    ["Y2", "b2", "2024-06-30 11:00", "交易成功", "月卡", "M-30", "云端会员", "30.00", "30.00", "1", "30.00",
     "0", "", "30.00"],
]


def _write_export(path: Path, header, lines, *, encoding="gbk") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows([TITLE, [], EXPORTED, header, *lines])
    return path


def _orders(store):
    return store.duckdb.execute(
        "SELECT order_id, amount, discount_amount, coupon_id FROM orders ORDER BY order_id").fetchall()


def _items(store):
    return store.duckdb.execute(
        "SELECT order_id, line_no, sku, price, list_price, brand FROM order_items ORDER BY order_id, line_no"
    ).fetchall()


def test_youzan_item_export_with_title_rows_fills_the_discount_columns(store, tmp_path):
    path = _write_export(tmp_path / "youzan.csv", YOUZAN_HEADER, YOUZAN_LINES)
    report = load_file(store, "orders", path)
    assert report.rows_rejected == 0 and report.rows_inserted == 3
    mapped = dict(report.column_map)
    assert (mapped["discount_amount"], mapped["coupon_id"], mapped["list_price"], mapped["brand"]) == (
        "店铺优惠", "优惠券", "商品原价", "品牌")
    # the shop discount repeated on every line is the order's (not 2 x 20); the first coupon named
    assert _orders(store) == [("Y1", 278.0, 20.0, "满100减20"), ("Y2", 30.0, 0.0, None)]
    assert _items(store) == [("Y1", 1, "C-101", 159.0, 199.0, "青木学堂"), ("Y1", 2, "M-30", 30.0, 30.0, "云端会员"),
                             ("Y2", 1, "M-30", 30.0, 30.0, "云端会员")]


def test_a_discount_per_line_is_summed_into_the_order(store, tmp_path):
    header = ["订单号", "用户ID", "下单时间", "商品编码", "划线价", "单价", "数量", "优惠金额", "优惠券ID"]
    lines = [["D1", "u1", "2024-06-30 10:00", "S1", "100", "90", "1", "10", "CP-9"],
             ["D1", "u1", "2024-06-30 10:00", "S2", "50", "45", "2", "5", "CP-9"]]
    path = _write_export(tmp_path / "douyin.csv", header, lines, encoding="utf-8")
    load_file(store, "orders", path)
    assert _orders(store) == [("D1", 180.0, 15.0, "CP-9")]  # amount: 90 + 2 x 45
    assert [(r[0], r[3], r[4]) for r in _items(store)] == [("D1", 90.0, 100.0), ("D1", 45.0, 50.0)]


def test_order_file_discounts_and_a_negative_discount_is_rejected(store, tmp_path):
    header = ["订单编号", "用户ID", "支付时间", "实付金额", "优惠金额", "优惠券编号"]
    rows = [["W1", "u1", "2024-06-30 10:00", "90.00", "10.00", "Q1"],
            ["W2", "u2", "2024-06-30 11:00", "50.00", "-5", ""],
            ["W3", "u3", "2024-06-30 12:00", "50.00", "", ""]]
    report = load_file(store, "orders", write_csv(tmp_path / "weidian.csv", header, rows))
    assert (report.rows_inserted, report.rows_rejected) == (2, 1)
    assert _orders(store) == [("W1", 90.0, 10.0, "Q1"), ("W3", 50.0, None, None)]
    reject = store.duckdb.execute("SELECT row_number, column_name, reason, reason_zh FROM rejects").fetchone()
    assert reject == (3, "discount_amount", "discount_amount '-5' is negative", "discount_amount '-5' 是负数")


def test_a_list_price_below_the_price_paid_is_rejected(store, tmp_path):
    header = ["订单号", "行号", "商品编码", "单价", "划线价", "品牌"]
    rows = [["A1", "1", "S1", "100", "120", "星河"],
            ["A1", "2", "S2", "100", "99.99", "星河"],  # the two columns swapped
            ["A1", "3", "S3", "100", "100", ""]]  # equal: no discount, accepted
    report = load_file(store, "order_items", write_csv(tmp_path / "items.csv", header, rows))
    assert (report.rows_inserted, report.rows_rejected) == (2, 1)
    assert [(r[1], r[4], r[5]) for r in _items(store)] == [(1, 120.0, "星河"), (3, 100.0, None)]
    reject = store.duckdb.execute("SELECT row_number, column_name, value, reason, reason_zh FROM rejects").fetchone()
    assert reject[:3] == (3, "list_price", "99.99")
    assert reject[3] == ("list_price '99.99' is below the price paid '100'; a list price is the price before discount")
    assert reject[4] == "list_price '99.99' 低于成交单价 '100'；原价（划线价）应是优惠前的价格"


def test_files_without_the_columns_load_as_before_with_nulls(store, tmp_path):
    report = load_file(store, "orders", write_csv(tmp_path / "o.csv", ["订单号", "用户ID", "下单时间", "实付金额"],
                                                  [["P1", "u1", "2024-06-30 10:00", "12.50"]]))
    assert report.rows_inserted == 1 and report.ignored_columns == ()
    row = store.duckdb.execute("SELECT order_id, ts, amount, refund_amount, discount_amount, coupon_id FROM orders")
    assert row.fetchall() == [("P1", dt.datetime(2024, 6, 30, 2, 0), 12.5, 0.0, None, None)]
