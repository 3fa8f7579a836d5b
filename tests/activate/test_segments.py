"""Segments: conditions compiled to the engine, errors that name what exists, carts left behind,
members exported with their definition and without formula cells."""

from __future__ import annotations

import datetime as dt

import ibis
import openpyxl
import pandas as pd
import pytest
from builders import event, order, table
from typer.testing import CliRunner

from userstrata import Workspace
from userstrata.activate.segments import BUILT_IN, Segment, cart_abandonment, columns_used, compile_condition
from userstrata.cli import app
from userstrata.config import Settings
from userstrata.errors import InputError
from userstrata.export import write_table
from userstrata.features._time import Clock

PROFILE = pd.DataFrame({
    "user_id": ["a", "b", "c", "d", "e"],
    "monetary": [6000.0, 5000.0, 4999.99, 12000.0, 0.0],
    "lifecycle": ["dormant", "churned", "dormant", "mature", "new"],
    "tier": ["regular", "explorer", "regular", "co_builder", "explorer"],
    "orders": [16, 3, 2, 40, 0],
    "tenure_days": [400, 300, 200, 900, 3],
    "rfm_m": [5, 4, 4, 5, 1],
})  # fmt: skip


def _members(where: str) -> list[str]:
    got = Segment("t", where).members(ibis.memtable(PROFILE)).to_pandas()
    return sorted(got["user_id"])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # the lapsed big spender the issue reports: a regular-tier churned user with ¥6,000
        ("monetary >= 5000 and lifecycle in ['dormant', 'churned']", lambda p: (p.monetary >= 5000) & p.lifecycle.isin(["dormant", "churned"])),
        ("monetary > 5000 or tier == 'co_builder'", lambda p: (p.monetary > 5000) | (p.tier == "co_builder")),
        ("not (tier in ['explorer']) and orders >= 3", lambda p: (p.tier != "explorer") & (p.orders >= 3)),
        ("tier not in ['explorer', 'regular']", lambda p: ~p.tier.isin(["explorer", "regular"])),
        ("monetary / orders >= 300", lambda p: p.monetary / p.orders.where(p.orders > 0) >= 300),
        ("2 <= orders <= 16", lambda p: (p.orders >= 2) & (p.orders <= 16)),
        ("orders == 0 and tenure_days <= 30", lambda p: (p.orders == 0) & (p.tenure_days <= 30)),
    ],
)
def test_conditions_select_what_pandas_selects(where, expected):
    assert _members(where) == sorted(PROFILE.loc[expected(PROFILE), "user_id"])


def test_the_lapsed_high_value_segment_finds_the_big_spender_a_tier_filter_misses():
    lapsed = _members(BUILT_IN["lapsed_high_value"].where)
    assert "a" in lapsed and PROFILE.set_index("user_id").loc["a", "tier"] == "regular"
    assert lapsed == ["a", "b", "c"]  # rfm_m >= 4 and dormant/churned, by hand


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("monetry > 1", ["'monetry'", "did you mean 'monetary'", "columns: user_id, monetary"]),
        ("tier == 'vip'", ["['vip']", "explorer, regular, engaged, co_builder"]),
        ("lifecycle in ['sleeping']", ["['sleeping']", "dormant"]),
        ("__import__('os').system('x')", ["Call", "only columns"]),
        ("monetary.__class__ == 1", ["Attribute"]),
        ("monetary >", ["is not a condition"]),
        ("monetary", ["not a yes/no condition"]),
    ],
)
def test_bad_conditions_are_refused_with_what_exists(where, says):
    with pytest.raises(InputError) as err:
        compile_condition(where, ibis.memtable(PROFILE), name="vip")
    text = str(err.value)
    assert text.startswith("segment 'vip': ") and all(s in text for s in says), text
    assert err.value.text("zh").startswith("人群 'vip'：")


def test_columns_used():
    assert columns_used("monetary >= 5000 and lifecycle in ['dormant'] and cart_abandoned == True") == {
        "monetary", "lifecycle", "cart_abandoned"}


def test_cart_abandonment_by_hand():
    as_of = dt.date(2024, 6, 30)  # shop time Asia/Shanghai = UTC+8
    events = table("events", [
        event("e1", "u1", "2024-06-29 02:00", "add_to_cart"),   # abandoned: bought before, not after
        event("e2", "u2", "2024-06-29 02:00", "add_to_cart"),   # bought at the same instant: not abandoned
        event("e3", "u3", "2024-06-23 16:00", "add_to_cart"),   # local 06-24 00:00: the 7th day back, in
        event("e4", "u4", "2024-06-23 15:59", "add_to_cart"),   # local 06-23 23:59: 8 days back, out
        event("e5", "u5", "2024-06-30 16:00", "add_to_cart"),   # local 07-01: after as_of, out
        event("e6", "u6", "2024-06-29 02:00", "page_view"),     # not a cart
        event("e7", "u7", "2024-06-28 02:00", "add_to_cart"),   # bought later, but the order was cancelled
    ])  # fmt: skip
    orders = table("orders", [
        order("o1", "u1", "2024-06-28 02:00", 10.0),
        order("o2", "u2", "2024-06-29 02:00", 10.0),
        order("o7", "u7", "2024-06-29 02:00", 10.0, status="cancelled"),
    ])
    got = cart_abandonment(events, orders, as_of=as_of, clock=Clock()).to_pandas().set_index("user_id")
    assert sorted(got.index) == ["u1", "u2", "u3", "u7"]
    assert got["cart_abandoned"].to_dict() == {"u1": True, "u2": False, "u3": True, "u7": True}


def test_csv_and_xlsx_cells_never_run_as_formulas(tmp_path):
    evil = "=cmd|' /C calc'!A0"
    frame = pd.DataFrame({"user_id": [evil, "+86 138", "-x", "@sum", "\tx", "plain"], "orders": [1, -2, 3, 4, 5, 6]})
    csv = write_table(frame, tmp_path / "s.csv", title="=title")
    text = csv.read_text(encoding="utf-8-sig").splitlines()
    assert text[0] == "'=title"
    cells = [line.split(",")[0].strip('"') for line in text[2:]]
    assert cells[:4] == ["'" + evil.split(",")[0], "'+86 138", "'-x", "'@sum"]
    assert text[3].endswith(",-2")  # numbers stay numbers
    xlsx = write_table(frame, tmp_path / "s.xlsx", title=evil)
    sheet = openpyxl.load_workbook(xlsx).active
    assert sheet["A1"].value == evil and sheet["A1"].data_type == "s"  # text, not a formula
    assert sheet["A3"].value == evil and sheet["A3"].data_type == "s"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Three buyers loaded through ingest: a lapsed big spender, a recent small one, a cart left behind."""
    path = tmp_path_factory.mktemp("seg") / "shop.duckdb"
    settings = Settings.from_dict({"segments": {"big_lapsed": {"where": "monetary >= 5000 and recency_days > 60",
                                                               "label_zh": "大额久未购", "label_en": "Big, lapsed"}}})
    ws = Workspace.open(path, settings=settings)
    ws.load_frame("orders", pd.DataFrame({
        "order_id": ["o1", "o2", "o3"], "user_id": ["big", "small", "cart"],
        "ts": pd.to_datetime(["2024-01-02 02:00", "2024-06-20 02:00", "2024-05-01 02:00"]),
        "amount": [21660.0, 30.0, 68.0]}), source="orders")  # fmt: skip
    ws.load_frame("events", pd.DataFrame({
        "event_id": ["e1"], "user_id": ["cart"], "ts": pd.to_datetime(["2024-06-29 02:00"]), "event": ["add_to_cart"]}),
        source="events")  # fmt: skip
    ws.close()
    return path, settings


def test_workspace_segment_from_settings_and_built_in(shop):
    path, settings = shop
    with Workspace.open(path, settings=settings) as ws:
        assert list(ws.segment("big_lapsed", dt.date(2024, 6, 30))["user_id"]) == ["big"]
        carts = ws.segment("cart_abandoners", dt.date(2024, 6, 30))
        assert list(carts["user_id"]) == ["cart"] and carts["cart_abandoned"].all()
        with pytest.raises(InputError, match="did you mean 'big_lapsed'"):
            ws.segment("big_lapse")


def test_cli_exports_members_with_the_definition_on_top(shop, tmp_path):
    path, _ = shop
    (tmp_path / "userstrata.toml").write_text('[segments.big_lapsed]\nwhere = "monetary >= 5000 and recency_days > 60"\n'
                                              'label_zh = "大额久未购"\n', encoding="utf-8")
    out = tmp_path / "list.csv"
    result = CliRunner().invoke(app, ["segment", "big_lapsed", "--as-of", "2024-06-30", "--out", str(out), "--lang", "zh",
                                      "--workspace", str(path), "--config", str(tmp_path / "userstrata.toml")])
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert "大额久未购" in lines[0] and "monetary >= 5000 and recency_days > 60" in lines[0] and "共 1 人" in lines[0]
    assert lines[1].startswith("用户ID") and len(lines) == 3 and lines[2].startswith("big,")
    assert "1 人" in result.output
