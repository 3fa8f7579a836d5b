"""One SparkSession for the whole test run: it takes seconds to start (DESIGN.md pitfalls)."""

import os

import pytest


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
