"""Purchase patterns: hand-placed orders land in the right local weekday × hour cell, and on a
simulated shop the grid equals an independent pandas computation."""

import datetime as dt

import ibis
import pandas as pd
import pytest
from typer.testing import CliRunner

from builders import order, rows_frame, table
from userstrata.charts import save
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure.patterns import ALL, purchase_patterns
from userstrata.schema import CANONICAL, PURCHASE_STATUSES


def sim_frames(folder) -> dict[str, pd.DataFrame]:
    """A small simulated shop as canonical pandas frames (naive UTC timestamps)."""
    paths = simulate_shop(400, folder, seed=11, days=200)
    frames = {}
    for name in ("orders", "order_items", "events"):
        frame = pd.read_parquet(paths[name])
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)
        frames[name] = frame[list(CANONICAL[name].columns)]
    return frames


def as_table(name: str, frame: pd.DataFrame) -> ibis.Table:
    return ibis.memtable(frame, schema=CANONICAL[name].schema)


def cell(result, weekday, hour, category=ALL):
    c = result.cells
    return c[(c.category == category) & (c.weekday == weekday) & (c.hour == hour)].iloc[0]


ORDERS = [
    order("o1", "u1", "2024-06-01 12:30", 10),  # Sat 20:30 in Shanghai
    order("o2", "u1", "2024-06-02 15:59", 10),  # Sun 23:59
    order("o3", "u2", "2024-06-02 16:00", 10),  # Mon 00:00: the local day turns at 16:00 UTC
    order("o4", "u2", "2024-06-01 12:10", 10, status="cancelled"),  # never paid
    order("o5", "u3", "2024-06-01 12:59", 10, status="refunded", refund=10.0, refunded_at="2024-06-02 00:00"),
]


def test_orders_fall_in_the_local_weekday_and_hour():
    result = purchase_patterns(table("orders", ORDERS))
    assert len(result.cells) == 7 * 24
    assert cell(result, 5, 20).orders == 2  # o1 and the refunded o5 (still a purchase); not the cancelled o4
    assert cell(result, 6, 23).orders == 1
    assert cell(result, 0, 0).orders == 1
    assert result.cells.orders.sum() == 4
    assert cell(result, 5, 20).share == pytest.approx(2 / 4)
    assert result.cells.share.sum() == pytest.approx(1.0)
    assert result.peaks(1).iloc[0][["weekday", "hour"]].tolist() == [5, 20]


def test_the_shop_time_zone_decides_the_cell():
    result = purchase_patterns(table("orders", ORDERS), clock=Clock("UTC"))
    assert cell(result, 5, 12).orders == 2 and cell(result, 6, 15).orders == 1 and cell(result, 6, 16).orders == 1


def test_start_and_end_are_local_days():
    # o3 is placed on 2024-06-02 UTC but on Monday 2024-06-03 in Shanghai
    result = purchase_patterns(table("orders", ORDERS), start=dt.date(2024, 6, 3), end=dt.date(2024, 6, 3))
    assert result.cells.orders.sum() == 1 and cell(result, 0, 0).orders == 1
    with pytest.raises(InputError, match="before the start"):
        purchase_patterns(table("orders", ORDERS), start=dt.date(2024, 6, 3), end=dt.date(2024, 6, 2))


def test_by_category_counts_an_order_once_per_category():
    items = [("o1", 1, "card-6", "game", 1, 5.0), ("o1", 2, "card-30", "game", 1, 5.0),
             ("o1", 3, "py", "course", 1, 5.0), ("o2", 1, "py", "course", 1, 10.0)]
    result = purchase_patterns(table("orders", ORDERS), table("order_items", items), by="category")
    assert sorted(result.totals.category) == ["course", "game"]
    assert cell(result, 5, 20, "game").orders == 1  # two game lines, one order
    assert cell(result, 5, 20, "course").orders == 1 and cell(result, 6, 23, "course").orders == 1
    assert cell(result, 6, 23, "course").share == pytest.approx(0.5)
    assert dict(zip(result.totals.category, result.totals.orders)) == {"course": 2, "game": 1}
    with pytest.raises(InputError, match="order_items"):
        purchase_patterns(table("orders", ORDERS), by="category")
    with pytest.raises(InputError, match="category"):
        purchase_patterns(table("orders", ORDERS), by="sku")


def test_min_count_hides_small_cells_but_not_empty_ones():
    rows = [order(f"a{i}", "u", "2024-06-01 12:30", 1) for i in range(3)]
    rows += [order(f"b{i}", "u", "2024-06-03 02:00", 1) for i in range(2)]  # Mon 10:00
    result = purchase_patterns(table("orders", rows), min_count=3)
    assert cell(result, 5, 20).orders == 3 and cell(result, 5, 20).share == pytest.approx(0.6)
    assert pd.isna(cell(result, 0, 10).orders) and pd.isna(cell(result, 0, 10).share)
    assert cell(result, 1, 1).orders == 0
    with pytest.raises(InputError, match="min_count"):
        purchase_patterns(table("orders", rows), min_count=0)


def test_the_grid_matches_pandas_on_a_simulated_shop(tmp_path):
    frames = sim_frames(tmp_path)
    orders, items = frames["orders"], frames["order_items"]
    result = purchase_patterns(as_table("orders", orders), as_table("order_items", items), by="category")
    paid = orders[orders.status.isin(PURCHASE_STATUSES)].copy()
    local = paid.ts.dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai")
    paid["weekday"], paid["hour"] = local.dt.day_of_week, local.dt.hour
    expected = (paid.merge(items[["order_id", "category"]].drop_duplicates(), on="order_id")
                .groupby(["category", "weekday", "hour"]).size())
    got = result.cells.set_index(["category", "weekday", "hour"])["orders"]
    assert got[got > 0].astype("int64").sort_index().to_dict() == expected.sort_index().to_dict()
    overall = purchase_patterns(as_table("orders", orders))
    assert overall.grid().to_numpy().sum() == len(paid)
    expected_grid = paid.groupby(["weekday", "hour"]).size().unstack(fill_value=0).reindex(
        index=range(7), columns=range(24), fill_value=0)
    assert (overall.grid().to_numpy() == expected_grid.to_numpy()).all()
    # the simulator's hour weights peak at 20-22h local
    assert overall.grid().sum(axis=0).idxmax() in (20, 21, 22)


def test_chart_and_table_speak_the_language(tmp_path):
    result = purchase_patterns(table("orders", ORDERS))
    fig = result.chart("zh")
    assert [t.type for t in fig.data] == ["heatmap"]
    assert "下单时段" in fig.layout.title.text and fig.layout.yaxis.title.text == "星期"
    assert list(fig.data[0].y) == ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
    assert fig.data[0].z[5][20] == 2
    assert "Orders by weekday" in result.chart("en").layout.title.text
    assert list(result.table("zh").columns) == ["品类", "星期", "小时", "订单数", "占比"]
    for suffix in (".html", ".png"):
        assert save(fig, tmp_path / f"p{suffix}").stat().st_size > 1000


def test_cli_patterns(tmp_path, monkeypatch):
    import userstrata.cli.patterns  # noqa: F401  (registers the commands)
    from userstrata.cli import _app, app
    from userstrata.workspace import Workspace

    monkeypatch.setattr(_app.console, "width", 200)  # no folded cells
    path = tmp_path / "shop.duckdb"
    with Workspace.open(path) as ws:
        frame = rows_frame("orders", ORDERS)
        for col in ("ts", "refunded_at"):
            frame[col] = pd.to_datetime(frame[col])
        ws.load_frame("orders", frame, source="test")
    runner = CliRunner()
    out = runner.invoke(app, ["patterns", "-w", str(path), "--lang", "zh", "--chart", str(tmp_path / "p.html")],
                        catch_exceptions=False)
    assert out.exit_code == 0, out.output
    # a file's naive times are read as shop time: o1 and o5 were placed on Saturday 12:xx
    assert "│ 全部 │ 周六 │ 12:00–12:59 │ 2" in out.output and (tmp_path / "p.html").exists()
    bad = runner.invoke(app, ["patterns", "-w", str(path), "--by", "sku"])
    assert bad.exit_code == 2
