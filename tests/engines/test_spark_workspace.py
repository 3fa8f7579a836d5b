"""The Spark workspace as a user meets it: ``ws.load`` of lake files through the facade, and the
DuckDB workspace's validated tables handed to Spark by ``export_tables``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userstrata.config import Settings
from userstrata.errors import InputError
from userstrata.schema import CANONICAL
from userstrata.workspace import Workspace

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

ORDERS = {
    "order_id": ["o1", "o2", "o3", "o1"],
    "user_id": ["u1", "u2", "", "u1"],          # o3 has no user: rejected
    "amount": ["10.50", "¥1,200", "3", "10.50"],  # o1 twice: one duplicate
    "ts": ["2024-06-01 10:00:00", "2024/6/2 11:00", "2024-06-03", "2024-06-01 10:00:00"],
    "status": ["paid", "已完成", "paid", "paid"],
}


def _lake_settings(folder) -> Settings:
    s = Settings()
    spark = s.engine.spark.model_copy(update={"tables": str(folder)})
    return s.model_copy(update={"engine": s.engine.model_copy(update={"spark": spark})})


def test_ws_load_on_spark_validates_appends_and_keeps_rejects(spark, tmp_path):
    source = tmp_path / "raw" / "orders.parquet"
    source.parent.mkdir()
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in ORDERS.items()}), source)
    duck = Workspace.open(":memory:")
    want = duck.load("orders", source)

    ws = Workspace.open(spark.newSession(), settings=_lake_settings(tmp_path / "lake"))
    got = ws.load("orders", source)
    assert (got.rows_read, got.rows_inserted, got.rows_rejected) == (want.rows_read, want.rows_inserted,
                                                                      want.rows_rejected) == (4, 2, 1)
    assert got.rows_read == got.rows_inserted + got.rows_duplicate + got.rows_rejected
    assert sorted(ws.table("orders").order_id.execute()) == ["o1", "o2"]
    assert float(ws.table("orders").amount.sum().execute()) == pytest.approx(1210.50)
    rejects = ws.rejects()
    assert rejects["row_number"].tolist() == duck.rejects()["row_number"].tolist()
    assert rejects["column_name"].tolist() == ["user_id"]
    again = ws.load("orders", source)
    assert again.rows_inserted == 0 and ws.table("orders").count().execute() == 2  # never double counted
    with pytest.raises(InputError, match="mapping and format"):
        ws.load("orders", source, keep_pii=True)


def test_ws_load_on_spark_needs_a_lake_folder(spark, tmp_path):
    ws = Workspace.open(spark.newSession(), settings=Settings())
    with pytest.raises(InputError, match=r"\[engine.spark\] tables"):
        ws.load("orders", tmp_path / "orders.parquet")


def test_exported_tables_read_on_spark_as_loaded(spark, on_duckdb, tmp_path):
    written = on_duckdb.export_tables(tmp_path / "lake")
    assert set(written) == set(CANONICAL)
    session = spark.newSession()
    for name, path in written.items():
        session.read.parquet(str(path)).createOrReplaceTempView(name)
    ws = Workspace.open(session, settings=Settings())
    for name in ("orders", "events", "order_items"):
        assert ws.table(name).count().execute() == on_duckdb.table(name).count().execute(), name
    # money and instants survive the trip: totals and the last day equal the DuckDB workspace's
    assert ws.table("orders").amount.sum().execute() == pytest.approx(on_duckdb.table("orders").amount.sum().execute())
    assert ws.latest_date() == on_duckdb.latest_date()


def test_demo_on_spark_prints_the_same_tables_as_on_duckdb(spark, tmp_path):
    """`userstrata demo --engine spark`: loaded and validated on DuckDB, analysed on Spark over the
    exported tables; every table and line it prints equals the DuckDB run's (paths aside)."""
    from typer.testing import CliRunner

    from userstrata.cli import app

    runner = CliRunner()
    runs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / engine
        result = runner.invoke(app, ["demo", "--users", "300", "--out", str(out), "--engine", engine, "--lang", "zh"],
                               catch_exceptions=False, env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        runs[engine] = result.stdout.replace(str(out), "OUT")
    assert (tmp_path / "spark" / "lake" / "orders.parquet").exists()  # Spark read the exported tables
    assert "价值分层" in runs["duckdb"] and "马尔可夫预测" in runs["duckdb"]
    assert runs["spark"].splitlines() == runs["duckdb"].splitlines()
