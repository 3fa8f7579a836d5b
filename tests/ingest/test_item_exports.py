"""Item-level order exports (one line per item, order fields repeated) build orders and items."""

from __future__ import annotations

from userstrata.ingest import load_file

from .conftest import assert_adds_up, rows, write_csv

LINES = [  # order A1 has three lines, two of them the same product: 299 + 2 x 569.90 + 299 = 1,737.80
    ["A1", "u1", "2024-03-01 10:00", "交易成功", "S1", "课程", "1", "299", "299"],
    ["A1", "u1", "2024-03-01 10:00", "交易成功", "S2", "会员", "2", "569.90", "1139.80"],
    ["A1", "u1", "2024-03-01 10:00", "交易成功", "S1", "课程", "1", "299", "299"],
    ["A2", "u2", "2024-03-02 11:00", "交易成功", "S3", "道具", "3", "10", "30"],
]
ITEM_HEADER = ["订单号", "会员ID", "下单时间", "订单状态", "商品编码", "类目", "数量", "单价"]


def _amounts(store):
    return {r[0]: r[3] for r in rows(store, "orders")}


def test_per_line_amounts_are_summed_and_repeated_products_survive(store, tmp_path):
    path = write_csv(tmp_path / "youzan.csv", ITEM_HEADER + ["实付金额"], LINES, encoding="gbk")
    report = load_file(store, "orders", path)
    assert_adds_up(report)
    assert _amounts(store) == {"A1": 1737.8, "A2": 30.0}
    assert report.tables["orders"]["inserted"] == 2 and report.tables["order_items"]["inserted"] == 4
    assert any("sum of the item lines" in n and "实付金额" in n for n in report.notes)
    items = [(r[0], r[1], r[2], r[4], r[5]) for r in rows(store, "order_items")]
    assert items == [("A1", 1, "S1", 1, 299.0), ("A1", 2, "S2", 2, 569.9), ("A1", 3, "S1", 1, 299.0),
                     ("A2", 1, "S3", 3, 10.0)]
    again = load_file(store, "orders", path)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 4)
    assert again.tables["orders"] == {"inserted": 0, "updated": 0, "unchanged": 2}


def test_an_order_total_column_wins_over_the_lines(store, tmp_path):
    # the total includes shipping, so it differs from the sum of the lines: the total is what was paid
    data = [row + ["1745.80" if row[0] == "A1" else "30"] for row in LINES]
    path = write_csv(tmp_path / "items.csv", ITEM_HEADER + ["商品实付金额", "订单实付金额"], data)
    report = load_file(store, "orders", path)
    assert _amounts(store) == {"A1": 1745.8, "A2": 30.0}
    assert any("order total column '订单实付金额'" in n for n in report.notes)


def test_without_any_amount_column_price_times_quantity_is_used(store, tmp_path):
    path = write_csv(tmp_path / "items.csv", ITEM_HEADER, [row[:-1] for row in LINES])
    report = load_file(store, "orders", path)
    assert _amounts(store) == {"A1": 1737.8, "A2": 30.0}
    assert any("unit price x quantity" in n for n in report.notes)


def test_a_later_item_export_with_a_refund_updates_the_order(store, tmp_path):
    header = ITEM_HEADER + ["实付金额", "退款金额", "退款时间"]
    week1 = [row + ["0", ""] for row in LINES]
    week2 = [row[:3] + ["已退款"] + row[4:] + ["1737.80", "2024-03-05 09:00"] if row[0] == "A1" else row + ["0", ""]
             for row in LINES]
    load_file(store, "orders", write_csv(tmp_path / "w1.csv", header, week1))
    report = load_file(store, "orders", write_csv(tmp_path / "w2.csv", header, week2))
    assert report.tables["orders"] == {"inserted": 0, "updated": 1, "unchanged": 1}
    got = {r[0]: (r[5], r[6]) for r in rows(store, "orders")}
    assert got == {"A1": ("refunded", 1737.8), "A2": ("completed", 0.0)}
