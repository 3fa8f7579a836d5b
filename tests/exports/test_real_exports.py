"""A year of a shop's real-looking exports, loaded in the order they were taken, against the truth.

The shop (``shopgen``) sells on Youzan (item-level GBK CSV with a title line and a totals row),
Douyin (xlsx whose first sheet is notes, ¥ amounts) and 小鹅通 (UTF-8 BOM CSV); its exports
overlap, so orders come back with later statuses, payments and refunds. Members and two event
logs with Chinese event names complete it. Per user, as of two days, the profile must equal
what the exports tell exactly: purchase orders, net spend, refunded orders, interaction depth
and lifecycle stage.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd
import pytest

from userstrata import Workspace

from .shopgen import (
    Export,
    Known,
    Shop,
    expected_order_items,
    expected_orders,
    export_schedule,
    generate_shop,
    known_from,
    load_effects,
    orders_in,
    truth_as_of,
    write_export,
)

AS_OF = (dt.date(2024, 6, 30), dt.date(2024, 12, 31))
SHOW = 8  # mismatches shown in a failure message


@dataclass
class Loaded:
    ws: Workspace
    shop: Shop
    loads: list[tuple[Export, object]]  # (export, LoadReport) of the loads that went through
    errors: list[tuple[Export, Exception]]  # loads that raised (the workspace is left as it was)
    known: Known  # what the loaded exports tell
    profiles: dict[dt.date, pd.DataFrame] = field(default_factory=dict)

    def profile(self, as_of: dt.date) -> pd.DataFrame:
        if as_of not in self.profiles:
            self.profiles[as_of] = self.ws.profile(as_of).to_pandas().set_index("user_id")
        return self.profiles[as_of]


@pytest.fixture(scope="module", params=[
    (2024, False),  # Youzan every fourth week: about 55 loads
    pytest.param((7, True), marks=pytest.mark.slow),  # weekly exports: about 110 loads
    pytest.param((31, True), marks=pytest.mark.slow),
], ids=lambda p: f"seed{p[0]}-{'dense' if p[1] else 'sparse'}")
def loaded(request, tmp_path_factory):
    seed, dense = request.param
    # more late payers than a shop usually has, so that exports catch orders still unpaid
    shop = generate_shop(seed, late_payment_rate=0.4)
    folder = tmp_path_factory.mktemp(f"exports-{seed}")
    ws = Workspace.open(folder / "w.duckdb")
    loads, errors = [], []
    for export in export_schedule(dense=dense):
        path = write_export(shop, export, folder)
        try:
            loads.append((export, ws.load(export.table, path)))
        except Exception as exc:  # noqa: BLE001 - reported by test_every_export_loads
            errors.append((export, exc))
    yield Loaded(ws, shop, loads, errors, known_from(shop, [export for export, _ in loads]))
    ws.close()


def _distinct_errors(errors) -> str:
    """One line per kind of error (file names and dates blanked), with a count and an example."""
    seen: dict[str, list[tuple[Export, Exception]]] = {}
    for export, exc in errors:
        message = str(exc).splitlines()[0].replace(export.file_name, "FILE")
        seen.setdefault(f"{type(exc).__name__}: {re.sub(r'[0-9]', '#', message)}", []).append((export, exc))
    return "\n".join(f"{len(v)} loads, e.g. {type(v[0][1]).__name__}: {str(v[0][1]).splitlines()[0]}"
                     for v in seen.values())


def test_every_export_loads(loaded):
    if loaded.errors:
        pytest.fail(f"{len(loaded.errors)} of {len(loaded.errors) + len(loaded.loads)} loads raised:\n"
                    + _distinct_errors(loaded.errors), pytrace=False)


# -- the profile equals the truth ---------------------------------------------------------------


def _cents(value) -> Decimal:
    return Decimal(f"{float(value):.2f}")


def _same(column: str, got, expected) -> bool:
    if got is None or (not isinstance(got, str) and pd.isna(got)):
        return False
    if column == "monetary":
        return _cents(got) == expected
    if column == "lifecycle":
        return got == expected
    return int(got) == expected


def test_profile_has_exactly_the_users_seen(loaded):
    for as_of in AS_OF:
        truth = truth_as_of(loaded.known, as_of, rules=loaded.ws.settings.lifecycle,
                            interaction_events=loaded.ws.settings.profile.interaction_events)
        got = set(loaded.profile(as_of).index)
        assert got == set(truth), (
            f"as of {as_of}: missing {sorted(set(truth) - got)[:SHOW]}, unexpected {sorted(got - set(truth))[:SHOW]}")


@pytest.mark.parametrize("as_of", AS_OF, ids=str)
@pytest.mark.parametrize("column", ["orders", "monetary", "refunded_orders", "interaction_depth", "lifecycle"])
def test_profile_equals_truth(loaded, column, as_of):
    truth = truth_as_of(loaded.known, as_of, rules=loaded.ws.settings.lifecycle,
                        interaction_events=loaded.ws.settings.profile.interaction_events)
    got = loaded.profile(as_of)
    wrong = {
        user_id: (got[column].get(user_id), getattr(expected, column))
        for user_id, expected in sorted(truth.items())
        if not _same(column, got[column].get(user_id), getattr(expected, column))
    }
    shown = ", ".join(f"{u}: got {g!r}, expected {e!r}" for u, (g, e) in list(wrong.items())[:SHOW])
    assert not wrong, f"{column} as of {as_of}: {len(wrong)} of {len(truth)} users differ: {shown}"


def test_the_exports_exercise_what_is_checked(loaded):
    # refunds made between the two days (a purchase refunded later still counts, with its
    # refund netted only from then on), and orders first exported unpaid, later paid
    early, late = (truth_as_of(loaded.known, d) for d in AS_OF)
    assert any(late[u].refunded_orders > early[u].refunded_orders for u in early)
    shown: dict[str, list[str]] = {}
    for export, _ in loaded.loads:
        if export.table == "orders":
            for order, state in orders_in(loaded.shop, export):
                shown.setdefault(order.order_id, []).append(state.status)
    assert sum(s[0] == "awaiting_payment" and s[-1] != "awaiting_payment" for s in shown.values()) >= 2
    assert sum(s[0] not in ("refunded", "partially_refunded") and s[-1] in ("refunded", "partially_refunded")
               for s in shown.values()) >= 10


# -- the canonical tables -----------------------------------------------------------------------


def _order_rows(frame: pd.DataFrame) -> dict[str, tuple]:
    def moment(value):
        return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()

    return {
        r.order_id: (r.user_id, moment(r.ts), _cents(r.amount), r.currency, r.status,
                     _cents(0 if pd.isna(r.refund_amount) else r.refund_amount), moment(r.refunded_at))
        for r in frame.itertuples()
    }


def _diff(got: dict, expected: dict) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [k for k in sorted(expected) if k in got and got[k] != expected[k]]
    lines = [f"{len(missing)} missing {missing[:SHOW]}", f"{len(extra)} unexpected {extra[:SHOW]}",
             f"{len(wrong)} differ:"]
    lines += [f"  {k}: got {got[k]}, expected {expected[k]}" for k in wrong[:SHOW]]
    return "\n".join(lines)


def test_orders_table_holds_the_last_known_state(loaded):
    expected = {
        r["order_id"]: (r["user_id"], r["ts"], r["amount"], r["currency"], r["status"], r["refund_amount"],
                        r["refunded_at"])
        for r in expected_orders(loaded.known)
    }
    got = _order_rows(loaded.ws.table("orders").to_pandas())
    assert got == expected, _diff(got, expected)


def test_order_items_hold_every_line_of_item_level_exports(loaded):
    expected = {(r["order_id"], r["line_no"]): (r["sku"], r["category"], r["quantity"], r["price"])
                for r in expected_order_items(loaded.known)}
    assert expected, "no item-level (Youzan) export loaded"
    item_level = {o.order_id for o, _ in loaded.known.orders.values() if o.platform == "youzan"}
    items = loaded.ws.table("order_items").to_pandas()
    got = {(r.order_id, int(r.line_no)): (r.sku, r.category, int(r.quantity), _cents(r.price))
           for r in items.itertuples() if r.order_id in item_level}
    assert got == expected, _diff(got, expected)


def test_multi_line_order_amount_is_the_sum_of_its_lines(loaded):
    # item-level (Youzan) exports only: the others carry no lines
    multi = {o.order_id: o for o, _ in loaded.known.orders.values() if o.platform == "youzan" and len(o.lines) > 1}
    assert multi, "no multi-line Youzan order loaded"
    orders = loaded.ws.table("orders").to_pandas().set_index("order_id")
    items = loaded.ws.table("order_items").to_pandas()
    line_sums = (items.price * items.quantity).groupby(items.order_id).sum()
    wrong = {
        order_id: (orders.amount.get(order_id), line_sums.get(order_id), order.amount)
        for order_id, order in multi.items()
        if orders.amount.get(order_id) is None or line_sums.get(order_id) is None
        or not _cents(orders.amount[order_id]) == _cents(line_sums[order_id]) == order.amount
    }
    assert not wrong, f"{len(wrong)} of {len(multi)} multi-line orders: (amount, sum of lines, truth): " + (
        str(list(wrong.items())[:SHOW]))


def test_events_table_holds_each_exported_event_once(loaded):
    expected = sorted((e.user_id, e.ts - dt.timedelta(hours=8), e.canonical) for e in loaded.known.events)
    events = loaded.ws.table("events").to_pandas()
    got = sorted(zip(events.user_id, (pd.Timestamp(t).to_pydatetime() for t in events.ts), events.event,
                     strict=True))
    assert got == expected, f"{len(got)} events, expected {len(expected)}; first differences: " + str(
        [(g, e) for g, e in zip(got, expected, strict=False) if g != e][:SHOW])


def test_users_table_holds_the_members(loaded):
    expected = {u.user_id: (u.registered_at - dt.timedelta(hours=8), u.channel) for u in loaded.known.users.values()}
    users = loaded.ws.table("users").to_pandas()
    got = {r.user_id: (pd.Timestamp(r.registered_at).to_pydatetime(), r.channel) for r in users.itertuples()}
    assert got == expected, _diff(got, expected)


# -- what the loads report ----------------------------------------------------------------------


def _counts(report) -> dict[str, int]:
    names = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected")
    missing = [n for n in names if not hasattr(report, n)]
    assert not missing, f"LoadReport has no {', '.join(missing)} (it has {sorted(vars(report))})"
    return {n: getattr(report, n) for n in names}


def test_every_load_report_adds_up(loaded):
    assert loaded.loads
    for export, report in loaded.loads:
        c = _counts(report)
        assert c["rows_read"] == c["rows_inserted"] + c["rows_updated"] + c["rows_unchanged"] + c["rows_rejected"], (
            f"{export.file_name}: {c}")


def test_reports_say_which_loads_add_or_change_orders(loaded):
    effects = load_effects(loaded.shop, [export for export, _ in loaded.loads])
    wrong = []
    for (export, report), (adds, changes) in zip(loaded.loads, effects, strict=True):
        if export.table == "orders" and (report.rows_inserted > 0, report.rows_updated > 0) != (adds, changes):
            wrong.append(f"{export.file_name}: adds {adds}, changes {changes}; report: {report.rows_inserted} "
                         f"inserted, {report.rows_updated} updated, {report.rows_unchanged} unchanged")
    assert not wrong, f"{len(wrong)} loads:\n" + "\n".join(wrong[:SHOW])


def test_the_totals_row_is_the_one_reject_of_a_youzan_export(loaded):
    youzan = [(export, report) for export, report in loaded.loads if export.source == "youzan"]
    assert youzan, "no Youzan export loaded"
    for export, report in youzan:
        rejects = loaded.ws.rejects(load_id=report.load_id)
        raws = [json.loads(raw) for raw in rejects.raw]
        assert len(raws) == 1 and "合计" in json.dumps(raws[0], ensure_ascii=False), (
            f"{export.file_name}: rejects {rejects[['row_number', 'reason']].to_dict('records')}")
        assert _counts(report)["rows_rejected"] == 1


def test_other_exports_have_no_rejects(loaded):
    for export, report in loaded.loads:
        if export.source != "youzan":
            reasons = loaded.ws.rejects(load_id=report.load_id).reason.tolist()
            assert not reasons, f"{export.file_name}: {len(reasons)} rejects, first: {reasons[:3]}"
