"""Statuses and event names as shops export them map to the canonical vocabulary."""

from __future__ import annotations

import datetime as dt

import pytest

from userstrata.config import Settings
from userstrata.ingest import list_rejects, load_file
from userstrata.store import Store

from .conftest import assert_adds_up, rows, write_csv

HEADER = ["订单号", "买家ID", "下单时间", "实付金额", "订单状态", "退款金额"]

# (status as exported, canonical status, counted as a purchase) - from the list and
# the Taobao/Youzan open-platform state names
CASES = [
    ("交易成功", "completed", True),
    ("已付款", "paid", True),
    ("待发货", "paid", True),
    ("TRADE_FINISHED", "completed", True),
    ("交易关闭", "cancelled", False),
    ("已关闭", "cancelled", False),
    ("已取消", "cancelled", False),
    ("TRADE_CLOSED", "cancelled", False),
    ("待付款", "awaiting_payment", False),
    ("等待买家付款", "awaiting_payment", False),
    ("未支付", "awaiting_payment", False),
    ("WAIT_BUYER_PAY", "awaiting_payment", False),
    ("已退款", "refunded", True),
    ("部分退款", "partially_refunded", True),
    ("退款中", "refunding", True),
]


def test_chinese_and_platform_statuses_are_understood(store, tmp_path):
    data = [[f"O{i}", f"u{i}", "2024-06-01 10:00:00", "100", status, "0"] for i, (status, _, _) in enumerate(CASES)]
    report = load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, data, encoding="gbk"))
    assert report.rows_rejected == 0
    stored = {r[0]: r[5] for r in rows(store, "orders")}
    assert stored == {f"O{i}": canonical for i, (_, canonical, _) in enumerate(CASES)}


def test_closed_or_unpaid_orders_are_not_purchases(tmp_path):
    from userstrata.workspace import Workspace

    ws = Workspace.open(tmp_path / "w.duckdb")
    data = [[f"O{i}", "u1", f"2024-06-{i + 1:02d} 10:00:00", "100", status, "0"]
            for i, (status, _, _) in enumerate(CASES)]
    ws.load("orders", write_csv(tmp_path / "orders.csv", HEADER, data))
    profile = ws.profile(dt.date(2024, 6, 30)).to_pandas().set_index("user_id")
    purchases = sum(counted for _, _, counted in CASES)
    assert profile.loc["u1", "orders"] == purchases == 7
    assert profile.loc["u1", "monetary"] == 100 * purchases
    ws.close()


def test_unknown_status_is_reported_and_never_counted(store, tmp_path):
    data = [["O1", "u1", "2024-06-01", "10", "交易成功", "0"]] + [
        [f"X{i}", "u2", "2024-06-01", "10", "交易挂起", "0"] for i in range(3)
    ] + [["Y1", "u3", "2024-06-01", "10", "拼团中", "0"]]
    report = load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, data))
    assert_adds_up(report)
    assert (report.rows_inserted, report.rows_rejected) == (1, 4)
    assert [r[0] for r in rows(store, "orders")] == ["O1"]
    warning = next(w for w in report.warnings if "unknown status values" in w)
    assert "交易挂起 (3 rows), 拼团中 (1 row)" in warning and "[ingest.status_map]" in warning
    reasons = list_rejects(store)
    assert set(reasons.column_name) == {"status"}
    assert reasons.reason_zh.iloc[0].startswith("status '交易挂起' 不是已知的订单状态")


def test_status_map_in_settings_extends_the_vocabulary(tmp_path):
    store = Store.open(":memory:", settings=Settings.from_dict({"ingest": {"status_map": {"交易挂起": "awaiting_payment",
                                                                                         "交易成功": "paid"}}}))
    data = [["O1", "u1", "2024-06-01", "10", "交易挂起", "0"], ["O2", "u1", "2024-06-01", "10", "交易成功", "0"]]
    report = load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, data))
    assert report.rows_rejected == 0
    assert [r[5] for r in rows(store, "orders")] == ["awaiting_payment", "paid"]  # the shop's map wins


def test_status_map_rejects_a_non_canonical_target():
    from userstrata.errors import ConfigError

    with pytest.raises(ConfigError, match="ingest.status_map.*must be one of"):
        Settings.from_dict({"ingest": {"status_map": {"挂起": "on_hold"}}})


def test_closed_after_payment_with_a_refund_counts_as_refunded(store, tmp_path):
    # Youzan's 交易关闭 covers unpaid orders and orders refunded in full
    data = [["O1", "u1", "2024-06-01", "100", "交易关闭", "100"], ["O2", "u1", "2024-06-01", "100", "交易关闭", "30"],
            ["O3", "u1", "2024-06-01", "100", "交易关闭", "0"]]
    load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, data))
    assert [r[5] for r in rows(store, "orders")] == ["refunded", "partially_refunded", "cancelled"]


EVENTS = ["用户ID", "时间", "行为类型"]


def test_chinese_event_names_count_as_interactions(tmp_path):
    from userstrata.workspace import Workspace

    names = ["浏览", "加购", "签到", "分享", "评价", "发帖", "收藏", "邀请", "使用", "观看"]
    canonical = ["page_view", "add_to_cart", "checkin", "share", "review", "post", "favorite", "invite", "use", "watch"]
    ws = Workspace.open(tmp_path / "w.duckdb")
    data = [["u1", f"2024-06-{i + 1:02d} 10:00:00", name] for i, name in enumerate(names)]
    report = ws.load("events", write_csv(tmp_path / "events.csv", EVENTS, data))
    assert not [w for w in report.warnings if "event names" in w]
    stored = ws.store.duckdb.execute("SELECT event FROM events ORDER BY ts").fetchall()
    assert [e for (e,) in stored] == canonical
    profile = ws.profile(dt.date(2024, 6, 30)).to_pandas().set_index("user_id")
    interactions = set(ws.settings.profile.interaction_events)
    assert profile.loc["u1", "interaction_depth"] == sum(c in interactions for c in canonical) == 9
    ws.close()


def test_a_load_whose_event_names_match_nothing_says_so(store, tmp_path):
    data = [["u1", "2024-06-01 10:00", "看直播间"], ["u1", "2024-06-02 10:00", "看直播间"], ["u2", "2024-06-02", "拆盲盒"]]
    report = load_file(store, "events", write_csv(tmp_path / "events.csv", EVENTS, data))
    warning = next(w for w in report.warnings if "event" in w)
    assert "none of the event names is a known event" in warning and "看直播间 (2 rows)" in warning
    mixed = load_file(store, "events", write_csv(tmp_path / "mixed.csv", EVENTS, [["u1", "2024-06-01", "分享"],
                                                                                  ["u1", "2024-06-01", "拆盲盒"]]))
    assert any("kept as they are" in w and "拆盲盒 (1 row)" in w for w in mixed.warnings)


def test_event_map_in_settings(tmp_path):
    store = Store.open(":memory:", settings=Settings.from_dict({"ingest": {"event_map": {"看直播间": "watch"}}}))
    report = load_file(store, "events", write_csv(tmp_path / "e.csv", EVENTS, [["u1", "2024-06-01", "看直播间"]]))
    assert not report.warnings
    assert store.duckdb.execute("SELECT event FROM events").fetchall() == [("watch",)]
