"""One SparkSession for the whole test run: it takes seconds to start (DESIGN.md pitfalls)."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.schema import CANONICAL
from userstrata.workspace import Workspace


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local Spark session: 2 cores, few shuffle partitions, no UI, session time zone UTC."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # selected with -m spark: a missing extra is a failure, not a skip
        pytest.fail("the spark tests need the spark extra: pip install -e '.[dev,spark]'", pytrace=False)

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("userstrata-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# The seeded shop every parity module compares: loaded into DuckDB through ingest, then the
# same tables as Parquet registered as Spark views (one of each per test run).
from parity import SEED, END, N_USERS  # noqa: E402


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """The seeded simulated shop's files: {table: path}."""
    folder = tmp_path_factory.mktemp("shop")
    return simulate_shop(N_USERS, folder / "files", seed=SEED, end=END)


@pytest.fixture(scope="session")
def on_duckdb(shop, tmp_path_factory):
    """The shop loaded through ingest, as a user would load it."""
    ws = Workspace.open(tmp_path_factory.mktemp("duckdb") / "shop.duckdb", settings=Settings())
    for name, path in shop.items():
        if name in CANONICAL:
            report = ws.load(name, path)
            assert report.rows_rejected == 0, report.summary()
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def parquet(on_duckdb, tmp_path_factory):
    """The DuckDB workspace's canonical tables as ``<table>.parquet`` files: naive UTC
    timestamps in microseconds, as stored (Spark cannot read nanoseconds)."""
    return _to_parquet(on_duckdb, tmp_path_factory.mktemp("parquet"))


@pytest.fixture(scope="session")
def on_spark(spark, parquet):
    """The Parquet files registered as views of the canonical names, in a Spark session of
    their own (views belong to a session; the SparkContext is shared)."""
    session = spark.newSession()
    for name in CANONICAL:
        session.read.parquet(str(parquet / f"{name}.parquet")).createOrReplaceTempView(name)
    ws = Workspace.open(session, settings=Settings())
    assert ws.store.engine == "spark"
    return ws


# The same shop with the whole user (simulate_shop(whole_user=True)): discounts, coupons, list
# prices and brands, several ids per person. Only the modules that need those use it.
def _to_parquet(ws, folder):
    for name, spec in CANONICAL.items():
        table = ws.table(name).select(*spec.columns).to_pyarrow()
        us = pa.schema([
            pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema
        ])
        pq.write_table(table.cast(us), folder / f"{name}.parquet")
    return folder


@pytest.fixture(scope="session")
def whole_on_duckdb(tmp_path_factory):
    files = simulate_shop(N_USERS, tmp_path_factory.mktemp("whole") / "files", seed=SEED, end=END, whole_user=True)
    ws = Workspace.open(tmp_path_factory.mktemp("whole-duckdb") / "shop.duckdb", settings=Settings())
    for name, path in files.items():
        if name in CANONICAL:
            report = ws.load(name, path)
            assert report.rows_rejected == 0, report.summary()
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def whole_on_spark(spark, whole_on_duckdb, tmp_path_factory):
    folder = _to_parquet(whole_on_duckdb, tmp_path_factory.mktemp("whole-parquet"))
    session = spark.newSession()
    for name in CANONICAL:
        session.read.parquet(str(folder / f"{name}.parquet")).createOrReplaceTempView(name)
    return Workspace.open(session, settings=Settings())
