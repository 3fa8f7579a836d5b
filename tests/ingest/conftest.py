"""Helpers for ingest tests: stores, small files written into tmp_path, table snapshots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from userstrata.config import Settings
from userstrata.schema import CANONICAL
from userstrata.store import Store


def open_store(**ingest) -> Store:
    settings = Settings.from_dict({"ingest": ingest}) if ingest else Settings()
    return Store.open(":memory:", settings=settings)


@pytest.fixture
def store():
    st = open_store()
    yield st
    st.close()


def write_csv(path: Path, header, rows, *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rows(store: Store, table: str) -> list[tuple]:
    """Every row of ``table``, sorted, for exact comparisons (of canonical tables: without the
    ``load_id`` bookkeeping column, which differs from load to load)."""
    # the optional columns most files lack are left out of the comparison (tests of them read them)
    optional = {"orders": ("discount_amount", "coupon_id"), "order_items": ("list_price", "brand")}
    skip = ", ".join(("load_id", *optional.get(table, ())))
    columns = f"* EXCLUDE ({skip})" if table in CANONICAL else "*"
    return store.duckdb.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()


def snapshot(store: Store) -> dict[str, list[tuple]]:
    return {name: rows(store, name) for name in ("orders", "order_items", "users", "events", "rejects", "loads")}


def assert_adds_up(report) -> None:
    assert report.rows_read == report.rows_inserted + report.rows_updated + report.rows_unchanged + report.rows_rejected


def cut_power_at_the_load_record(monkeypatch, store: Store) -> None:
    """Make the last statement of a load's final transaction (recording the load) fail."""
    real = store.con.con

    class FailingLoadsInsert:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO loads"):
                raise RuntimeError("power cut")
            return real.execute(sql, *args)

    monkeypatch.setattr(Store, "duckdb", property(lambda self: FailingLoadsInsert()))
