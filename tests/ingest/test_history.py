"""Overlapping exports update orders; every change is kept with its load; loads can be undone."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from userstrata.errors import InputError, NotFoundError
from userstrata.ingest import list_loads, load_file, table_known_at, unload

from .conftest import cut_power_at_the_load_record, assert_adds_up, rows, snapshot, write_csv

HEADER = ["订单号", "买家ID", "下单时间", "实付金额", "订单状态", "退款金额", "退款时间"]

WEEK1 = [
    ["A1", "u1", "2024-03-01 10:00", "100", "待付款", "0", ""],
    ["A2", "u2", "2024-03-02 10:00", "200", "交易成功", "0", ""],
    ["A3", "u3", "2024-03-03 10:00", "300", "交易成功", "0", ""],
]
# the next window overlaps: A1 got paid, A2 was refunded later, A3 unchanged, A4 is new
WEEK2 = [
    ["A1", "u1", "2024-03-01 10:00", "100", "交易成功", "0", ""],
    ["A2", "u2", "2024-03-02 10:00", "200", "已退款", "200", "2024-03-09 12:00"],
    ["A3", "u3", "2024-03-03 10:00", "300", "交易成功", "0", ""],
    ["A4", "u4", "2024-03-08 10:00", "50", "交易成功", "0", ""],
]


def _states(store):
    return {r[0]: (r[5], r[6]) for r in rows(store, "orders")}


def test_a_later_export_updates_status_and_refund(store, tmp_path):
    first = load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    second = load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    assert_adds_up(second)
    assert (second.rows_inserted, second.rows_updated, second.rows_unchanged, second.rows_rejected) == (1, 2, 1, 0)
    assert _states(store) == {"A1": ("completed", 0.0), "A2": ("refunded", 200.0), "A3": ("completed", 0.0),
                              "A4": ("completed", 0.0)}
    refunded_at = store.duckdb.execute("SELECT refunded_at FROM orders WHERE order_id = 'A2'").fetchone()[0]
    assert refunded_at == dt.datetime(2024, 3, 9, 4, 0)  # 12:00 in Shanghai
    history = store.duckdb.execute(
        "SELECT order_id, status, load_id, superseded_by FROM orders_versions ORDER BY order_id").fetchall()
    assert history == [("A1", "awaiting_payment", first.load_id, second.load_id),
                       ("A2", "completed", first.load_id, second.load_id)]
    again = load_file(store, "orders", tmp_path / "w2.csv")
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 4)


def test_unload_of_the_last_load_restores_the_previous_state_exactly(store, tmp_path):
    load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    before = snapshot(store)
    second = load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    done = unload(store, second.load_id)
    assert (done.removed, done.restored) == ({"orders": 3}, {"orders": 2})
    after = snapshot(store)
    assert after["orders"] == before["orders"] and after["rejects"] == before["rejects"]
    assert store.count("orders_versions") == 0
    loads = list_loads(store).set_index("load_id")
    assert not pd.isna(loads.loc[second.load_id, "undone_at"])
    with pytest.raises(InputError, match="already undone"):
        unload(store, second.load_id)
    # the file can be loaded again after its load was undone, with the same result
    redo = load_file(store, "orders", tmp_path / "w2.csv")
    assert (redo.rows_inserted, redo.rows_updated) == (1, 2)
    assert not any("already loaded" in w for w in redo.warnings)


def test_unload_is_refused_while_a_later_load_changed_its_rows(store, tmp_path):
    first = load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    second = load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    before = snapshot(store)
    with pytest.raises(InputError, match=f"later load changed rows it wrote: {second.load_id} .*w2.csv"):
        unload(store, first.load_id)
    assert snapshot(store) == before
    unload(store, second.load_id)
    unload(store, first.load_id)  # now nothing stands in its way
    assert store.count("orders") == 0 and store.count("orders_versions") == 0


def test_unload_of_an_unknown_load_names_the_command(store):
    with pytest.raises(NotFoundError, match="there is no load 'nope'"):
        unload(store, "nope")


def test_the_table_as_known_at_an_earlier_moment(store, tmp_path):
    load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    between = store.duckdb.execute("SELECT max(loaded_at) FROM loads").fetchone()[0] + dt.timedelta(microseconds=1)
    load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    then = table_known_at(store, "orders", between).to_pandas().set_index("order_id")
    assert then.status.to_dict() == {"A1": "awaiting_payment", "A2": "completed", "A3": "completed"}
    now = table_known_at(store, "orders", dt.datetime(2100, 1, 1)).to_pandas().set_index("order_id")
    assert now.status.to_dict() == {"A1": "completed", "A2": "refunded", "A3": "completed", "A4": "completed"}


def test_crash_in_the_final_transaction_of_an_update_changes_nothing(store, tmp_path, monkeypatch):

    load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    before = snapshot(store) | {"versions": rows(store, "orders_versions")}
    cut_power_at_the_load_record(monkeypatch, store)
    with pytest.raises(RuntimeError, match="power cut"):
        load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    monkeypatch.undo()
    assert snapshot(store) | {"versions": rows(store, "orders_versions")} == before


def test_reloading_an_older_export_after_a_newer_one_changes_nothing(store, tmp_path):
    load_file(store, "orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    load_file(store, "orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    before = snapshot(store) | {"versions": rows(store, "orders_versions")}
    again = load_file(store, "orders", tmp_path / "w1.csv")
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 3)
    after = snapshot(store) | {"versions": rows(store, "orders_versions")}
    assert after["orders"] == before["orders"] and after["versions"] == before["versions"]


def test_item_lines_count_as_updated_when_their_order_changed(store, tmp_path):
    header = ["订单号", "买家ID", "下单时间", "订单状态", "商品编码", "单价", "实付金额"]
    week1 = [["B1", "u1", "2024-03-01", "待付款", "S1", "10", "30"], ["B1", "u1", "2024-03-01", "待付款", "S2", "20", "30"],
             ["B2", "u2", "2024-03-01", "交易成功", "S1", "10", "10"]]
    week2 = [[*r[:3], "交易成功", *r[4:]] for r in week1]
    load_file(store, "orders", write_csv(tmp_path / "w1.csv", header, week1))
    report = load_file(store, "orders", write_csv(tmp_path / "w2.csv", header, week2))
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (0, 2, 1)
    assert report.tables["orders"] == {"inserted": 0, "updated": 1, "unchanged": 1}


def test_a_profile_from_the_data_as_it_was_loaded_then(tmp_path):
    from userstrata.workspace import Workspace

    ws = Workspace.open(tmp_path / "w.duckdb")
    ws.load("orders", write_csv(tmp_path / "w1.csv", HEADER, WEEK1))
    between = ws.store.duckdb.execute("SELECT max(loaded_at) FROM loads").fetchone()[0] + dt.timedelta(microseconds=1)
    ws.load("orders", write_csv(tmp_path / "w2.csv", HEADER, WEEK2))
    as_of = dt.date(2024, 3, 31)
    then = ws.profile(as_of, known_at=between).to_pandas().set_index("user_id")
    now = ws.profile(as_of).to_pandas().set_index("user_id")
    # by hand: in week 1's export A1 was unpaid (so u1 had done nothing yet) and A2 not yet refunded
    assert "u1" not in then.index and then.loc["u2", "monetary"] == 200.0
    assert (now.loc["u1", "orders"], now.loc["u2", "monetary"]) == (1, 0.0)
    assert "u4" not in then.index and now.loc["u4", "orders"] == 1
    ws.close()
