"""The generator's truth on a hand-built shop whose answers are worked out by hand, and the
shape of the files it writes."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal

import openpyxl
import pytest

from .shopgen import (
    Event,
    Export,
    Line,
    Order,
    Shop,
    User,
    expected_order_items,
    expected_orders,
    export_schedule,
    generate_shop,
    known_from,
    lifecycle_stage,
    orders_in,
    truth_as_of,
    write_export,
)

D = dt.date.fromisoformat


def T(text: str) -> dt.datetime:  # noqa: N802 - reads like a literal
    return dt.datetime.fromisoformat(text)


def order(order_id, user_id, created, amount, *, paid=None, closed=None, refund=None, refunded_at=None,
          lines=None, platform="youzan") -> Order:
    timeline = [(T(created), "awaiting_payment")]
    if paid:
        timeline.append((T(paid), "paid"))
    if closed:
        timeline.append((T(closed), "cancelled"))
    refund = Decimal(refund) if refund else Decimal("0.00")
    if refunded_at:
        timeline.append((T(refunded_at), "refunded" if refund == Decimal(amount) else "partially_refunded"))
    lines = lines or (Line("S1", "测试商品", "美妆", 1, Decimal(amount)),)
    return Order(order_id, user_id, platform, T(created), tuple(lines), tuple(timeline), refund,
                 T(refunded_at) if refunded_at else None)


def event(user_id, ts, name) -> Event:
    return Event(user_id, T(ts), name, "首页")


HAND_SHOP = Shop(
    users=(
        User("u1", T("2024-01-01 10:00:00"), "小程序", "小鱼", "138****0001"),
        User("u2", T("2024-03-01 09:00:00"), "公众号", "阿杰", "138****0002"),
    ),
    orders=(
        # created late on 01-02, paid just after midnight: a purchase of 01-02; 30 refunded on 02-10
        order("A", "u1", "2024-01-02 23:30:00", "100.00", paid="2024-01-03 00:10:00", refund="30.00",
              refunded_at="2024-02-10 12:00:00"),
        order("B", "u2", "2024-03-03 10:00:00", "50.00", closed="2024-03-04 10:00:00"),  # closed unpaid
        order("C", "u3", "2024-05-01 10:00:00", "20.00", paid="2024-05-01 10:01:00"),
        order("D", "u4", "2024-05-01 10:00:00", "20.00", paid="2024-05-01 10:01:00"),
        # refunded after the last export that lists it: never known
        order("E", "u5", "2024-07-01 12:00:00", "80.00", paid="2024-07-01 12:05:00", refund="80.00",
              refunded_at="2024-08-20 09:00:00"),
        # unpaid when the first export is taken, paid before the second
        order("F", "u5", "2024-07-01 23:50:00", "40.00", paid="2024-07-02 10:00:00",
              lines=[Line("S1", "测试商品", "美妆", 1, Decimal("10.00")), Line("S2", "别的", "食品", 2, Decimal("5.00")),
                     Line("S1", "测试商品", "美妆", 2, Decimal("10.00"))]),
    ),
    events=(
        event("u1", "2024-01-05 09:00:00", "签到"),  # checkin: an interaction
        event("u1", "2024-01-06 20:00:00", "浏览"),  # page_view: activity, not an interaction
        event("u1", "2024-01-06 21:00:00", "分享"),  # share
        event("u2", "2024-03-02 09:00:00", "浏览"),
        event("u3", "2024-06-01 09:00:00", "签到"),  # 31 days after 05-01: never dormant
        event("u4", "2024-06-02 09:00:00", "签到"),  # 32 days after 05-01: dormant on 06-01, back
    ),
)
FIRST = Export("youzan", D("2024-01-01"), D("2024-07-01"), T("2024-07-02 09:00:00"))
SECOND = Export("youzan", D("2024-07-01"), D("2024-07-07"), T("2024-07-08 09:30:00"))
EVERYTHING = [
    FIRST, SECOND,
    Export("behaviour", D("2024-01-01"), D("2024-12-31"), T("2025-01-02 07:00:00")),
    Export("community", D("2024-01-01"), D("2024-12-31"), T("2025-01-03 07:00:00")),
    Export("members", D("2023-01-01"), D("2024-12-31"), T("2025-01-06 18:00:00")),
]


@pytest.mark.parametrize("as_of, user_id, expected", [
    # (orders, monetary, refunded_orders, refund_total, interaction_depth, lifecycle)
    ("2024-01-02", "u1", (1, "100.00", 0, "0.00", 0, "new")),  # seen 01-01, bought 01-02
    ("2024-01-31", "u1", (1, "100.00", 0, "0.00", 2, "growth")),  # idle 25 days, tenure 30
    ("2024-02-09", "u1", (1, "100.00", 0, "0.00", 2, "dormant")),  # idle 34: dormant; refund not yet
    ("2024-02-10", "u1", (1, "70.00", 1, "30.00", 2, "dormant")),  # the refund's day includes it
    ("2024-04-05", "u1", (1, "70.00", 1, "30.00", 2, "dormant")),  # idle 90: still dormant
    ("2024-04-06", "u1", (1, "70.00", 1, "30.00", 2, "churned")),  # idle 91
    ("2024-03-10", "u2", (0, "0.00", 0, "0.00", 0, "potential")),  # a closed order is no purchase
    ("2024-06-01", "u3", (1, "20.00", 0, "0.00", 1, "mature")),  # no return: idle only 30 on 05-31
    ("2024-06-01", "u4", (1, "20.00", 0, "0.00", 0, "dormant")),  # idle 31
    ("2024-06-02", "u4", (1, "20.00", 0, "0.00", 1, "returning")),
    ("2024-07-02", "u4", (1, "20.00", 0, "0.00", 1, "returning")),  # 30 days after the return
    ("2024-07-03", "u4", (1, "20.00", 0, "0.00", 1, "dormant")),  # idle 31 again
    ("2024-12-31", "u5", (2, "120.00", 0, "0.00", 0, "churned")),  # E's refund is never exported
])
def test_truth_of_hand_worked_users(as_of, user_id, expected):
    truth = truth_as_of(known_from(HAND_SHOP, EVERYTHING), D(as_of))[user_id]
    got = (truth.orders, truth.monetary, truth.refunded_orders, truth.refund_total, truth.interaction_depth,
           truth.lifecycle)
    n, money, refunded, refund_total, depth, stage = expected
    assert got == (n, Decimal(money), refunded, Decimal(refund_total), depth, stage)


def test_users_not_seen_yet_are_not_in_the_truth():
    truth = truth_as_of(known_from(HAND_SHOP, EVERYTHING), D("2024-01-31"))
    assert set(truth) == {"u1"}
    # u2 registered 03-01 and browsed 03-02: seen from 03-01, though never a buyer
    assert set(truth_as_of(known_from(HAND_SHOP, EVERYTHING), D("2024-03-01"))) == {"u1", "u2"}


def test_an_order_unpaid_at_the_only_export_is_no_purchase():
    only_first = known_from(HAND_SHOP, [FIRST])
    assert only_first.orders["F"][1].status == "awaiting_payment"
    assert truth_as_of(only_first, D("2024-07-05"))["u5"].orders == 1  # E only
    both = known_from(HAND_SHOP, [FIRST, SECOND])
    assert both.orders["F"][1].status == "paid"
    assert truth_as_of(both, D("2024-07-01"))["u5"].orders == 2  # F is a purchase of 07-01


def test_expected_tables_use_utc_canonical_status_and_keep_every_line():
    known = known_from(HAND_SHOP, EVERYTHING)
    rows = {r["order_id"]: r for r in expected_orders(known)}
    assert rows["A"]["ts"] == T("2024-01-02 15:30:00") and rows["A"]["status"] == "partially_refunded"
    assert rows["A"]["refunded_at"] == T("2024-02-10 04:00:00") and rows["A"]["refund_amount"] == Decimal("30.00")
    assert rows["B"]["status"] == "cancelled" and rows["E"]["status"] == "paid"
    assert rows["E"]["refund_amount"] == 0 and rows["E"]["refunded_at"] is None
    items = [(r["line_no"], r["sku"], r["quantity"], r["price"]) for r in expected_order_items(known)
             if r["order_id"] == "F"]
    assert items == [(1, "S1", 1, Decimal("10.00")), (2, "S2", 2, Decimal("5.00")), (3, "S1", 2, Decimal("10.00"))]
    assert rows["F"]["amount"] == Decimal("40.00")


@pytest.mark.parametrize("days, bought, as_of, expected", [
    (["2024-05-01", "2024-06-01"], ["2024-05-01"], "2024-06-01", "mature"),
    (["2024-05-01", "2024-06-02"], ["2024-05-01"], "2024-06-02", "returning"),
    (["2024-01-01", "2024-05-01"], ["2024-01-01"], "2024-05-01", "returning"),  # back from churned
    (["2024-01-01", "2024-05-01"], [], "2024-05-01", "potential"),  # never bought: potential first
    (["2024-01-01", "2024-05-01"], ["2024-05-01"], "2024-05-01", "returning"),  # first purchase on return
    (["2024-05-01"], ["2024-05-01"], "2024-05-08", "new"),
    (["2024-05-01"], ["2024-05-01"], "2024-05-09", "growth"),
    (["2024-05-01"], ["2024-05-01"], "2024-04-30", None),
])
def test_lifecycle_walk(days, bought, as_of, expected):
    assert lifecycle_stage([D(d) for d in days], [D(d) for d in bought], D(as_of)) == expected


def test_youzan_file_has_a_title_a_header_item_lines_and_a_totals_row(tmp_path):
    path = write_export(HAND_SHOP, SECOND, tmp_path)
    with open(path, encoding="gbk", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["订单导出 2024-07-01 至 2024-07-07"]
    assert rows[1][:4] == ["订单号", "买家ID", "下单时间", "订单状态"]
    assert [r[0] for r in rows[2:]] == ["E", "F", "F", "F", "合计"]
    assert {r[rows[1].index("订单实付金额")] for r in rows[3:6]} == {"40.00"}
    assert [r[rows[1].index("商品实付金额")] for r in rows[3:6]] == ["10.00", "10.00", "20.00"]
    assert rows[3][2:4] == ["2024-07-01 23:50:00", "待发货"]
    first = write_export(HAND_SHOP, FIRST, tmp_path)
    with open(first, encoding="gbk", newline="") as fh:
        shown = {r[0]: r[3] for r in csv.reader(fh) if r and r[0] in {"A", "B", "C", "D", "E", "F"}}
    assert shown == {"A": "部分退款", "B": "交易关闭", "C": "待发货", "D": "待发货", "E": "待发货", "F": "待付款"}


def test_a_year_of_exports_has_the_cases_the_tests_rely_on(tmp_path):
    shop = generate_shop(2024)
    schedule = export_schedule(dense=True)
    assert 80 <= len(shop.users) <= 150 and 300 <= len(shop.orders) <= 500
    shown = {}
    for export in schedule:
        if export.table == "orders":
            for o, state in orders_in(shop, export):
                shown.setdefault(o.order_id, []).append(state.status)
    # orders seen unpaid first and paid later; refunds that appear in a later export only
    assert sum(s[0] == "awaiting_payment" and s[-1] != "awaiting_payment" for s in shown.values()) >= 3
    assert sum(s[0] not in ("refunded", "partially_refunded") and s[-1] in ("refunded", "partially_refunded")
               for s in shown.values()) >= 5
    assert sum(len({line.sku for line in o.lines}) < len(o.lines) for o in shop.orders) >= 5
    assert sum(o.created_at.hour < 8 for o in shop.orders) >= 10  # local day != UTC day
    douyin = next(e for e in schedule if e.source == "douyin")
    book = openpyxl.load_workbook(write_export(shop, douyin, tmp_path), read_only=True)
    assert book.sheetnames == ["说明", "订单明细"]
    rows = list(book["订单明细"].iter_rows(values_only=True))
    assert rows[1][0].isdigit() and len(rows[1][0]) == 19 and rows[1][6].startswith("¥")
