"""Validation rules found wrong by reading the code: digits as times, implausible dates,
foreign currencies, repeated events without ids, repeated bad rows."""

from __future__ import annotations

import datetime as dt

from userstrata.config import Settings
from userstrata.ingest import list_rejects, load_file
from userstrata.store import Store

from .conftest import assert_adds_up, rows, write_csv

HEADER = ["order_id", "user_id", "ts", "amount"]


def test_twelve_digits_are_a_compact_local_time_and_thirteen_are_epoch_milliseconds(store, tmp_path):
    data = [["A1", "u1", "202406301405", "1"],     # yyyymmddHHMM, Shanghai time
            ["A2", "u1", "1719727500000", "1"],    # epoch ms: 2024-06-30 06:05:00 UTC
            ["A3", "u1", "20240630140501", "1"]]   # yyyymmddHHMMSS
    load_file(store, "orders", write_csv(tmp_path / "o.csv", HEADER, data))
    got = {r[0]: r[2] for r in rows(store, "orders")}
    assert got == {"A1": dt.datetime(2024, 6, 30, 6, 5), "A2": dt.datetime(2024, 6, 30, 6, 5),
                   "A3": dt.datetime(2024, 6, 30, 6, 5, 1)}


def test_dates_before_the_plausible_window_are_rejected(tmp_path):
    data = [["A1", "u1", "1899-12-30", "1"], ["A2", "u1", "1970-01-01 08:00", "1"], ["A3", "u1", "1997-01-01", "1"]]
    path = write_csv(tmp_path / "o.csv", HEADER, data)
    store = Store.open(":memory:")
    report = load_file(store, "orders", path)
    assert (report.rows_inserted, report.rows_rejected) == (1, 2)
    assert list_rejects(store).reason.iloc[0] == (
        "ts '1899-12-30' is before 1990-01-01, the earliest plausible date ([ingest] earliest_date)")
    later = Store.open(":memory:", settings=Settings.from_dict({"ingest": {"earliest_date": "2000-01-01"}}))
    assert load_file(later, "orders", path).rows_rejected == 3


def test_other_currencies_are_converted_or_refused(tmp_path):
    header = HEADER + ["currency", "refund_amount"]
    data = [["A1", "u1", "2024-06-30", "100", "CNY", "0"], ["A2", "u1", "2024-06-30", "10", "USD", "5"],
            ["A3", "u1", "2024-06-30", "10", "jpy", "0"]]
    path = write_csv(tmp_path / "o.csv", header, data)
    plain = Store.open(":memory:")
    report = load_file(plain, "orders", path)
    assert (report.rows_inserted, report.rows_rejected) == (1, 2)
    assert list_rejects(plain).reason.iloc[0].startswith("currency 'USD' differs from the shop currency CNY")
    rated = Store.open(":memory:", settings=Settings.from_dict({"ingest": {"currency_rates": {"usd": 7.1234}}}))
    report = load_file(rated, "orders", path)
    assert (report.rows_inserted, report.rows_rejected) == (2, 1)
    got = {r[0]: (r[3], r[4], r[6]) for r in rows(rated, "orders")}
    assert got == {"A1": (100.0, "CNY", 0.0), "A2": (71.23, "CNY", 35.62)}  # to the cent


def test_events_without_ids_that_really_repeat_are_kept_and_reloading_stays_idempotent(store, tmp_path):
    header = ["user_id", "ts", "event"]
    data = [["u1", "2024-06-30 10:00:00", "share"]] * 3 + [["u1", "2024-06-30 10:00:01", "share"]]
    path = write_csv(tmp_path / "e.csv", header, data)
    first = load_file(store, "events", path)
    assert (first.rows_inserted, first.rows_unchanged) == (4, 0)
    assert store.count("events") == 4
    assert load_file(store, "events", path).rows_unchanged == 4
    # an overlapping export holding the same moment once: the first occurrence, already there
    overlap = load_file(store, "events", write_csv(tmp_path / "e2.csv", header, data[:1]))
    assert (overlap.rows_inserted, overlap.rows_unchanged) == (0, 1)
    # split over chunks: the occurrence count carries over
    small = Store.open(":memory:", settings=Settings.from_dict({"ingest": {"chunk_rows": 1}}))
    load_file(small, "events", path)
    assert sorted(rows(small, "events")) == sorted(rows(store, "events"))


def test_a_bad_row_repeated_in_a_later_load_is_in_that_load_s_rejects(store, tmp_path):
    bad = [["A1", "u1", "2024-06-30", "abc"]]
    first = load_file(store, "orders", write_csv(tmp_path / "a.csv", HEADER, bad))
    second = load_file(store, "orders", write_csv(tmp_path / "b.csv", HEADER, bad + [["A2", "u1", "2024-06-30", "1"]]))
    assert_adds_up(second)
    assert (first.rows_rejected, second.rows_rejected, second.rows_inserted) == (1, 1, 1)
    assert len(list_rejects(store, load_id=second.load_id)) == 1
