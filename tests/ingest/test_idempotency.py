"""Loads are idempotent, atomic and independent of the chunk size; rows in = out."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from userstrata.ingest import list_rejects, load_file, load_frame
from userstrata.store import Store

from .conftest import cut_power_at_the_load_record, assert_adds_up, open_store, rows, snapshot, write_csv

HEADER = ["order_id", "user_id", "ts", "amount"]


def hundred_rows() -> list[list[str]]:
    """100 rows: mostly new orders, with repeats and conflicts that cross 7-row chunk borders."""
    out = []
    for i in range(100):
        if i % 10 == 9:
            out.append([f"O{i - 8}", f"u{i - 8}", "2024-06-30 10:00:00", f"{i - 8}.5"])  # repeat of row i-8
        elif i % 10 == 8:
            out.append([f"O{i - 7}", "someone-else", "2024-06-30 10:00:00", "1"])  # conflict with row i-7
        elif i % 17 == 0:
            out.append([f"O{i}", f"u{i}", "not a date", "1"])
        else:
            out.append([f"O{i}", f"u{i}", "2024-06-30 10:00:00", f"{i}.5"])
    return out


def test_loading_twice_changes_nothing(store, tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, hundred_rows())
    first = load_file(store, "orders", path)
    assert_adds_up(first)
    before = snapshot(store)
    second = load_file(store, "orders", path)
    # the bad rows are bad again, and reported in this load's own rejects
    assert (second.rows_read, second.rows_inserted, second.rows_updated, second.rows_rejected,
            second.rows_unchanged) == (100, 0, 0, first.rows_rejected, 100 - first.rows_rejected)
    after = snapshot(store)
    assert after["orders"] == before["orders"]
    by_load = list_rejects(store).groupby("load_id")[["row_number", "column_name", "reason"]]
    first_rejects, second_rejects = (g.reset_index(drop=True) for _, g in by_load)
    assert first_rejects.equals(second_rejects)
    assert len(after["loads"]) == 2  # the load itself is recorded
    assert any("already loaded" in w for w in second.warnings)


def test_chunk_size_does_not_change_the_result(tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, hundred_rows())
    small, whole = open_store(chunk_rows=7), open_store(chunk_rows=1000)
    calls: list[int] = []
    by7 = load_file(small, "orders", path, progress=calls.append)
    by1000 = load_file(whole, "orders", path)
    assert calls == [7] * 14 + [2]
    counts = lambda r: (r.rows_read, r.rows_inserted, r.rows_rejected, r.rows_unchanged)  # noqa: E731
    # 100 rows, worked by hand: bad dates at data rows 0, 17, 34, 51, 85 (5); conflicts at
    # 8, 18, ..., 98 with rows 1, 11, ..., 91 (9, since row 51 is bad and so row 58 is the
    # first valid O51 and is kept); repeats at 9, 19, ..., 99 of rows 1, 11, ..., 91 are
    # duplicates (9) except row 59, which now conflicts with row 58 (1)
    assert counts(by7) == counts(by1000) == (100, 76, 15, 9)
    assert rows(small, "orders") == rows(whole, "orders")
    strip = lambda s: list(zip(*[list_rejects(s)[c] for c in ("row_number", "column_name", "reason")], strict=True))  # noqa: E731
    assert strip(small) == strip(whole)
    # a conflict whose first version sits in an earlier chunk still names its row
    assert "order_id 'O1' appears twice in this file with different content (kept the first, orders.csv row 3)" in (
        list_rejects(small).reason.tolist())


def test_crash_in_third_chunk_leaves_workspace_unchanged(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))  # where the staging file goes
    store = open_store(chunk_rows=7)
    load_file(store, "orders", write_csv(tmp_path / "old.csv", HEADER, [["X1", "u", "2024-01-01", "x"],
                                                                       ["X2", "u", "2024-01-01", "2"]]))
    before = snapshot(store)
    seen = []

    def boom(n):
        seen.append(n)
        if len(seen) == 3:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, hundred_rows()), progress=boom)
    assert snapshot(store) == before
    assert list(scratch.iterdir()) == []  # the staging file is gone
    # and the workspace still works: the same file loads cleanly afterwards
    report = load_file(store, "orders", tmp_path / "orders.csv")
    assert report.rows_inserted == 76
    assert list(scratch.iterdir()) == []


def test_failure_inside_the_final_transaction_rolls_back(tmp_path, monkeypatch):
    store = open_store(chunk_rows=7)
    before = snapshot(store)
    cut_power_at_the_load_record(monkeypatch, store)
    with pytest.raises(RuntimeError, match="power cut"):
        load_file(store, "orders", write_csv(tmp_path / "orders.csv", HEADER, hundred_rows()))
    monkeypatch.undo()
    assert snapshot(store) == before


def test_file_backed_workspace_persists_and_stays_idempotent(tmp_path):
    path = write_csv(tmp_path / "orders.csv", HEADER, hundred_rows())
    with_file = Store.open(tmp_path / "ws.duckdb")
    load_file(with_file, "orders", path)
    with_file.close()
    reopened = Store.open(tmp_path / "ws.duckdb")
    assert reopened.count("orders") == 76
    again = load_file(reopened, "orders", path)
    assert (again.rows_unchanged, again.rows_rejected) == (85, 15) and reopened.count("orders") == 76
    assert [t for t in reopened.con.list_tables() if t.startswith("_us")] == []


# -- property: random dirty rows --------------------------------------------------------------

KEYS = [f"K{i}" for i in range(6)]
GOOD_AMOUNTS = ["0", "10", "10.0", "7.25", "1,000"]
GOOD_DATES = ["2024-06-30 10:00:00", "2024/6/30 10:00", "2024-07-01"]
row_kind = st.sampled_from(["good", "good", "good", "bad_amount", "bad_date", "empty_id", "repeat", "conflict"])


@st.composite
def dirty_rows(draw):
    out: list[list[str]] = []
    for kind in draw(st.lists(row_kind, min_size=1, max_size=30)):
        if kind in ("repeat", "conflict") and out:
            earlier = list(draw(st.sampled_from(out)))
            if kind == "conflict":
                earlier[1] = earlier[1] + "x"  # same key, other user
            out.append(earlier)
            continue
        row = [draw(st.sampled_from(KEYS)), draw(st.sampled_from(["u1", "u2"])),
               draw(st.sampled_from(GOOD_DATES)), draw(st.sampled_from(GOOD_AMOUNTS))]
        if kind == "bad_amount":
            row[3] = draw(st.sampled_from(["abc", "-1", "1,2", ""]))
        elif kind == "bad_date":
            row[2] = draw(st.sampled_from(["2024-13-01", "yesterday", ""]))
        elif kind == "empty_id":
            row[0] = ""
        out.append(row)
    return out


def expected_outcome(data: list[list[str]]) -> tuple[int, int, int]:
    """Independent model of the rules: (inserted, rejected, unchanged); every bad row is
    rejected in its own load, a repeat of a kept row within the file is unchanged."""
    def amount(text):
        text = text.replace(",", "") if text.count(",") == 0 or text in ("1,000",) else None
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value >= 0 else None

    def when(text):
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d"):
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                pass
        return None

    kept: dict[str, tuple] = {}
    accepted = rejected = duplicate = 0
    for row in data:
        key, user, ts, amt = row
        failing = ("order_id" if not key else "ts" if when(ts) is None else "amount" if amount(amt) is None else None)
        if failing is None:
            content = (user, when(ts), amount(amt))
            if key not in kept:
                kept[key] = content
                accepted += 1
                continue
            if kept[key] == content:
                duplicate += 1
                continue
            failing = "order_id"
        rejected += 1
    return accepted, rejected, duplicate


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=dirty_rows(), chunk_rows=st.sampled_from([3, 7, 1000]))
def test_random_dirty_rows_add_up_and_reload_adds_nothing(data, chunk_rows):
    store = open_store(chunk_rows=chunk_rows)
    frame = pa.table({name: [r[i] for r in data] for i, name in enumerate(HEADER)})
    first = load_frame(store, "orders", frame, source="dirty")
    assert first.rows_read == len(data)
    assert_adds_up(first)
    assert (first.rows_inserted, first.rows_rejected, first.rows_unchanged) == expected_outcome(data)
    assert store.count("orders") == first.rows_inserted
    assert store.count("rejects") == first.rows_rejected
    before = snapshot(store)
    second = load_frame(store, "orders", frame, source="dirty")
    assert (second.rows_inserted, second.rows_updated, second.rows_rejected, second.rows_unchanged) == (
        0, 0, first.rows_rejected, len(data) - first.rows_rejected)
    after = snapshot(store)
    assert after["orders"] == before["orders"]
    assert store.count("rejects") == 2 * first.rows_rejected
    store.close()
