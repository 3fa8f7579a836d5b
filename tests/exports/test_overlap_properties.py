"""Random sequences of overlapping order exports, loaded in the order they were taken.

- after all loads, the ``orders`` table holds the last-known state of every order (and
  ``order_items`` every line of the item-level ones);
- ``unload`` of the last load restores the state before it exactly;
- reloading any file of the sequence changes nothing;
- every load reports rows read = inserted + updated + unchanged + rejected, with rows
  inserted exactly when it brings a new order and rows updated exactly when it changes one.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from userstrata import Workspace

from .shopgen import (
    Export,
    expected_order_items,
    expected_orders,
    generate_shop,
    known_from,
    load_effects,
    write_export,
)

START, END = dt.date(2024, 3, 1), dt.date(2024, 3, 31)
ORDER_SOURCES = ("youzan", "douyin", "xiaoetong")
CANONICAL_TABLES = ("orders", "order_items", "events", "users")


@st.composite
def export_sequences(draw, max_exports: int = 3):
    """(seed, exports): a small shop and 2..max_exports order exports, in the order taken,
    a few hours to days apart, whose windows end near their moment and mostly overlap."""
    seed = draw(st.integers(0, 2**16))
    sources = draw(st.lists(st.sampled_from(ORDER_SOURCES), min_size=1, max_size=2, unique=True))
    at = dt.datetime.combine(START, dt.time()) + dt.timedelta(days=draw(st.integers(5, 25)),
                                                              minutes=draw(st.integers(0, 24 * 60 - 1)))
    exports = []
    for _ in range(draw(st.integers(2, max_exports))):
        source = draw(st.sampled_from(sources))
        end = at.date() - dt.timedelta(days=draw(st.integers(0, 1)))
        start = end - dt.timedelta(days=draw(st.integers(4, 20)))
        style = draw(st.sampled_from(["weekly", "quarterly"])) if source == "youzan" else "monthly"
        exports.append(Export(source, start, end, at, style=style))
        at += dt.timedelta(minutes=draw(st.integers(2 * 60, 8 * 24 * 60)))
    return seed, exports


def small_shop(seed: int):
    # many late payments and refunds, so that overlapping exports disagree often
    return generate_shop(seed, n_users=25, start=START, end=END, buy_rate=0.8, late_payment_rate=0.6,
                         refund_rate=0.5, refund_within_days=8)


def snapshot(ws: Workspace) -> dict[str, pd.DataFrame]:
    """Every canonical table's rows, sorted, for exact comparisons."""
    out = {}
    for name in CANONICAL_TABLES:
        frame = ws.table(name).to_pandas()
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def assert_same_state(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame], what: str) -> None:
    for name in CANONICAL_TABLES:
        try:
            pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=False)
        except AssertionError as exc:
            raise AssertionError(f"{what}: table {name} differs: {exc}") from None


def assert_adds_up(report, export: Export) -> None:
    c = {n: getattr(report, n) for n in ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged",
                                         "rows_rejected")}
    assert c["rows_read"] == c["rows_inserted"] + c["rows_updated"] + c["rows_unchanged"] + c["rows_rejected"], (
        f"{export.file_name}: {c}")


def load_all(ws: Workspace, shop, exports, folder: Path) -> list:
    reports = []
    for export in exports:
        report = ws.load("orders", write_export(shop, export, folder))
        assert_adds_up(report, export)
        reports.append(report)
    return reports


def _cents(value) -> str:
    return f"{float(value):.2f}"


def _moment(value):
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def check_last_known_state(seed, exports) -> None:
    shop = small_shop(seed)
    with tempfile.TemporaryDirectory() as folder, Workspace.open(":memory:") as ws:
        reports = load_all(ws, shop, exports, Path(folder))
        known = known_from(shop, exports)
        expected = sorted(
            (r["order_id"], r["user_id"], r["ts"], _cents(r["amount"]), r["currency"], r["status"],
             _cents(r["refund_amount"]), r["refunded_at"])
            for r in expected_orders(known)
        )
        orders = ws.table("orders").to_pandas()
        got = sorted(
            (r.order_id, r.user_id, _moment(r.ts), _cents(r.amount), r.currency, r.status,
             _cents(0 if pd.isna(r.refund_amount) else r.refund_amount), _moment(r.refunded_at))
            for r in orders.itertuples()
        )
        diff = [(g, e) for g, e in zip(got, expected, strict=False) if g != e]
        assert got == expected, f"{len(got)} orders, expected {len(expected)}; first (got, expected): {diff[:3]}"
        item_level = {o.order_id for o, _ in known.orders.values() if o.platform == "youzan"}
        expected_items = sorted((r["order_id"], r["line_no"], r["sku"], r["category"], r["quantity"],
                                 _cents(r["price"])) for r in expected_order_items(known))
        items = ws.table("order_items").to_pandas()
        got_items = sorted((r.order_id, int(r.line_no), r.sku, r.category, int(r.quantity), _cents(r.price))
                           for r in items.itertuples() if r.order_id in item_level)
        assert got_items == expected_items
        # after the state: what each load said it did
        for export, report, (adds, changes) in zip(exports, reports, load_effects(shop, exports), strict=True):
            said = (report.rows_inserted > 0, report.rows_updated > 0)
            assert said == (adds, changes), (
                f"{export.file_name}: adds a new order: {adds}, changes a known one: {changes}; the report says "
                f"{report.rows_inserted} inserted, {report.rows_updated} updated, {report.rows_unchanged} unchanged")


def check_unload_restores(seed, exports) -> None:
    shop = small_shop(seed)
    with tempfile.TemporaryDirectory() as folder, Workspace.open(":memory:") as ws:
        load_all(ws, shop, exports[:-1], Path(folder))
        before = snapshot(ws)
        last = load_all(ws, shop, exports[-1:], Path(folder))[0]
        ws.unload(last.load_id)
        assert_same_state(snapshot(ws), before, f"after unloading {exports[-1].file_name}")


def check_reload_changes_nothing(seed, exports, which: int) -> None:
    shop = small_shop(seed)
    with tempfile.TemporaryDirectory() as folder, Workspace.open(":memory:") as ws:
        load_all(ws, shop, exports, Path(folder))
        before = snapshot(ws)
        export = exports[which]
        again = ws.load("orders", Path(folder) / export.file_name)
        assert_adds_up(again, export)
        assert (again.rows_inserted, again.rows_updated) == (0, 0), (
            f"reloading {export.file_name} (load {which + 1} of {len(exports)}): {again}")
        assert_same_state(snapshot(ws), before, f"after reloading {export.file_name}")


_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
# each example loads several files (~0.3 s each): no shrinking by default, so that a failure
# costs one example, not minutes; the slow variants shrink to a minimal sequence
QUICK = settings(max_examples=5, deadline=None, suppress_health_check=_SLOW_OK,
                 phases=(Phase.explicit, Phase.reuse, Phase.generate))
THOROUGH = settings(max_examples=60, deadline=None, suppress_health_check=_SLOW_OK)


@QUICK
@given(export_sequences())
def test_workspace_holds_the_last_known_state(case):
    check_last_known_state(*case)


@QUICK
@given(export_sequences())
def test_unloading_the_last_load_restores_the_state_before_it(case):
    check_unload_restores(*case)


@QUICK
@given(export_sequences(), st.data())
def test_reloading_any_file_changes_nothing(case, data):
    seed, exports = case
    check_reload_changes_nothing(seed, exports, data.draw(st.integers(0, len(exports) - 1), label="reloaded"))


@pytest.mark.slow
@THOROUGH
@given(export_sequences(max_exports=7))
def test_workspace_holds_the_last_known_state_thoroughly(case):
    check_last_known_state(*case)


@pytest.mark.slow
@THOROUGH
@given(export_sequences(max_exports=7))
def test_unloading_the_last_load_restores_the_state_thoroughly(case):
    check_unload_restores(*case)


@pytest.mark.slow
@THOROUGH
@given(export_sequences(max_exports=7), st.data())
def test_reloading_any_file_changes_nothing_thoroughly(case, data):
    seed, exports = case
    check_reload_changes_nothing(seed, exports, data.draw(st.integers(0, len(exports) - 1), label="reloaded"))
