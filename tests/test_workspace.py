"""The Workspace facade: open, load, lazy profile on the engine, snapshots."""

import datetime as dt

import pytest

from userstrata import Workspace
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.errors import NotFoundError


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    path = tmp_path_factory.mktemp("ws") / "cdnow.duckdb"
    ws = Workspace.open(path, settings=Settings(currency="USD"))  # CDNOW sold in dollars
    report = ws.load_frame("orders", load_cdnow(sample=True), source="CDNOW_sample")
    assert report.rows_inserted == 6919
    yield ws
    ws.close()


def test_profile_is_lazy_and_runs_on_the_engine(ws):
    profile = ws.profile(as_of=dt.date(1997, 9, 30))
    assert type(profile).__module__.startswith("ibis")
    polars = profile.filter(profile.orders > 0).to_polars()
    assert polars.height == 2357  # every sample customer bought in Jan-Mar 1997
    assert ws.latest_date() == dt.date(1998, 6, 30)


def test_snapshots_replace_the_same_day_and_keep_others(ws):
    first = ws.save_profile(dt.date(1997, 9, 30))
    again = ws.save_profile(dt.date(1997, 9, 30))
    later = ws.save_profile(dt.date(1998, 6, 30))
    counts = ws.table("profiles").group_by("as_of").agg(n=ws.table("profiles").count()).to_pandas()
    assert first == again == later == 2357
    assert sorted(counts["n"]) == [2357, 2357]


def test_opening_a_missing_workspace_without_create(tmp_path):
    with pytest.raises(NotFoundError, match="nope.duckdb does not exist") as err:
        Workspace.open(tmp_path / "nope.duckdb", create=False)
    assert "userstrata init" in err.value.hint
    assert not (tmp_path / "nope.duckdb").exists()
    with pytest.raises(NotFoundError, match="no orders or events"):
        Workspace.open(tmp_path / "empty.duckdb").latest_date()


def test_export_tables_writes_every_table_as_loaded(ws, tmp_path):
    import pyarrow.parquet as pq

    written = ws.export_tables(tmp_path / "lake")
    orders = pq.read_table(written["orders"]).to_pandas()
    assert len(orders) == 6919  # the rows loaded above
    loaded = ws.table("orders").to_pandas()
    assert orders["amount"].sum() == pytest.approx(loaded["amount"].sum())
    assert pq.read_table(written["events"]).num_rows == 0  # nothing loaded: an empty file, same columns
    assert "ts" in pq.read_table(written["events"]).column_names


def test_the_fast_compile_gives_ibis_own_result_and_restores_its_settings(ws):
    import gc

    import ibis

    from userstrata import _engine

    profile = ws.profile(dt.date(1997, 12, 31))
    fast = _engine.to_arrow(ws.store.con, profile)  # unfused SELECTs, GC paused
    own = profile.to_pyarrow()  # Ibis's own compile and fetch
    assert fast.num_rows == own.num_rows > 0
    assert fast.equals(own)
    # the SQL differs (nested SELECTs are left to DuckDB), the settings are left as they were
    assert _engine.compile_sql(ws.store.con, profile) != ws.store.con.compile(profile)
    assert ibis.options.sql.fuse_selects and gc.isenabled()


def test_the_identity_map_is_stitched_once_until_a_load_or_unload_changes_the_data(tmp_path, monkeypatch):
    import pandas as pd

    import userstrata.workspace as workspace_module

    calls = []
    real = workspace_module.stitch
    monkeypatch.setattr(workspace_module, "stitch", lambda *a, **k: calls.append(1) or real(*a, **k))
    orders = pd.DataFrame({"order_id": ["o1", "o2"], "user_id": ["u1", "u2"], "amount": [10.0, 20.0],
                           "ts": pd.to_datetime(["2024-06-01 10:00", "2024-06-02 10:00"]), "status": "paid"})
    with Workspace.open(tmp_path / "w.duckdb") as ws:
        ws.load_frame("orders", orders, source="orders")
        ws.load_frame("identities", pd.DataFrame({"source": ["wechat"], "external_id": ["wx1"], "user_id": ["u1"]}),
                      source="ids-1")
        first = ws.identities()
        assert ws.identities() is first and len(calls) == 1  # nothing loaded in between: the same map
        ws.profile().count().execute()  # the stitched tables reuse it too
        assert len(calls) == 1
        second = ws.load_frame("identities", pd.DataFrame({"source": ["wechat"], "external_id": ["wx2"],
                                                           "user_id": ["u2"]}), source="ids-2")
        linked = ws.identities()
        assert len(calls) == 2 and set(linked.mapping["external_id"]) >= {"wx1", "wx2"}
        ws.unload(second.load_id)
        after = ws.identities()
        assert len(calls) == 3 and "wx2" not in set(after.mapping["external_id"])
        assert ws.identities(max_links=1) is not after  # another cap is another map


def test_no_query_keeps_a_plain_sub_plan_in_memory(ws, monkeypatch):
    # DuckDB materializes a CTE or a repeated sub-plan, and at 10M users the KPIs and the funnel
    # ran out of the 1GB limit that way: sub-plans that only scan and filter are read again where
    # used instead. CTEs that aggregate stay DuckDB's choice (recomputing them costs more).
    import re

    import sqlglot

    from userstrata import _engine

    sqls = []
    compile_sql = _engine.compile_sql
    monkeypatch.setattr(_engine, "compile_sql", lambda con, expr: sqls.append(compile_sql(con, expr)) or sqls[-1])
    ws.kpis(dt.date(1997, 1, 1), dt.date(1997, 3, 31), grain="month")
    ws.funnel(["purchase", "purchase"], dt.date(1997, 1, 1), dt.date(1997, 3, 31))
    duck = ws.store.con.con

    def plain_kept(sql: str) -> list[str]:
        """The CTEs DuckDB's plan materializes whose body has no aggregate (by hand: sqlglot)."""
        aggregating = {cte.alias for cte in sqlglot.parse_one(sql, read="duckdb").find_all(sqlglot.exp.CTE)
                       if cte.this.find(sqlglot.exp.AggFunc, sqlglot.exp.Distinct) is not None}
        plan = duck.execute("EXPLAIN " + sql).fetchall()[0][1]
        return [name for name in re.findall(r"CTE Name: *(\S+)", plan) if name not in aggregating]

    assert len(sqls) > 8 and not any(plain_kept(sql) for sql in sqls)
    # DuckDB's defaults keep some: the check above can see them
    default = duck.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
    duck.execute("SET disabled_optimizers = ''")
    try:
        assert any(plain_kept(sql.replace("AS NOT MATERIALIZED (", "AS (")) for sql in sqls)
    finally:
        duck.execute(f"SET disabled_optimizers = '{default}'")
