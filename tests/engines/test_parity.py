"""The same shop on DuckDB and on Spark gives the same profile, BTYD summary and predictions.

A seeded simulated shop is loaded into a DuckDB workspace through ingest; each canonical table
is then exported to Parquet (naive UTC timestamps in microseconds, as stored) and registered in
the Spark session as a view of the canonical name, and ``Workspace.open(spark)`` runs the same
Ibis expressions there. Results are compared exactly, every column: money is summed in
cents on both engines, so even the float columns must be bit-identical; only the model
predictions (numpy on the collected per-user summaries) get a 1e-9 relative tolerance.

Runs with ``pytest -m spark`` (the spark extra and Java 17; docs/engines.md).
"""

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest

from userstrata.config import Settings
from userstrata.errors import InputError, NotFoundError
from userstrata.features import btyd_summary
from userstrata.features._time import Clock
from userstrata.models.churn import churn_labels
from userstrata.schema import CANONICAL, PROFILE_COLUMNS
from userstrata.store import Store
from userstrata.workspace import Workspace

pytestmark = [
    pytest.mark.spark,
    # pyspark 4.0's toPandas under pandas 3; nothing of ours to change
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

from parity import DATES, END, HORIZON, N_USERS, _same_frames  # noqa: E402,F401


def test_spark_views_hold_the_duckdb_tables(on_duckdb, on_spark):
    for name, spec in CANONICAL.items():
        duck = on_duckdb.table(name).select(*spec.columns).to_pandas()
        spark = on_spark.table(name).to_pandas()
        assert list(spark.columns) == list(spec.columns)
        if name != "identities":  # the simulator writes no identities
            assert len(duck) > 0, name
        _same_frames(duck, spark, key=list(spec.key))


def test_views_are_read_in_the_canonical_schema(spark, on_duckdb, parquet):
    """A view with other types (DECIMAL money, session-zone TIMESTAMP), extra columns and a
    missing optional column is read as the canonical table; a missing required column is named."""
    session = spark.newSession()
    session.read.parquet(str(parquet / "orders.parquet")).createOrReplaceTempView("orders_raw")
    session.sql(
        "SELECT order_id, user_id, CAST(ts AS TIMESTAMP) AS ts, CAST(amount AS DECIMAL(12, 2)) AS amount, status,"
        " CAST(refund_amount AS DECIMAL(12, 2)) AS refund_amount, refunded_at, 'web' AS source FROM orders_raw"
    ).createOrReplaceTempView("orders")
    ws = Workspace.open(session, settings=Settings())
    duck = on_duckdb.table("orders").select(*CANONICAL["orders"].columns).mutate(currency=ibis.null(str))
    _same_frames(duck.to_pandas(), ws.table("orders").to_pandas(), key="order_id")

    session.sql("SELECT order_id, ts, amount FROM orders_raw").createOrReplaceTempView("orders")
    with pytest.raises(InputError, match=r"Spark table 'orders' has no column 'user_id' \(has: order_id, ts, amount\)"):
        ws.table("orders")


def test_latest_date(on_duckdb, on_spark):
    assert on_spark.latest_date() == on_duckdb.latest_date() == END


@pytest.mark.parametrize("as_of", DATES, ids=str)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_profile(on_duckdb, on_spark, as_of, lang):
    duck = on_duckdb.profile(as_of, lang=lang).to_pandas()
    spark = on_spark.profile(as_of, lang=lang).to_pandas()
    assert set(PROFILE_COLUMNS) <= set(duck.columns)
    # a shop worth comparing: every tier, most stages, a reason for everyone
    assert duck["tier"].nunique() == 4 and duck["lifecycle"].nunique() >= 5 and duck["tier_reason"].notna().all()
    _same_frames(duck, spark)


def test_profile_with_other_settings(on_duckdb, on_spark):
    """A zone with daylight saving (DuckDB's ICU vs Spark's from_utc_timestamp), the median RFM
    split and a monetary window: the branches the default settings leave unused."""
    settings = Settings.from_dict(
        {"timezone": "America/New_York", "rfm": {"split": "median"}, "profile": {"monetary_window_days": 180}}
    )
    duck, spark = (
        Workspace(Store(ws.store.con, ws.store.engine, settings, ws.store.location)) for ws in (on_duckdb, on_spark)
    )
    _same_frames(duck.profile(END).to_pandas(), spark.profile(END).to_pandas())


def _btyd(ws: Workspace, as_of: dt.date) -> pd.DataFrame:
    clock = Clock(ws.settings.timezone, ws.store.engine)
    return btyd_summary(ws.table("orders"), as_of=as_of, clock=clock).to_pandas()


@pytest.mark.parametrize("as_of", DATES, ids=str)
def test_btyd_summary(on_duckdb, on_spark, as_of):
    duck = _btyd(on_duckdb, as_of)
    assert (duck["frequency"] > 0).sum() > 100  # repeat buyers for Gamma-Gamma
    _same_frames(duck, _btyd(on_spark, as_of))


def test_churn_labels(on_duckdb, on_spark):
    """The classifier's labels for END (population from the profile as of END - HORIZON)."""
    cutoff = DATES[0]

    def labels(ws):
        clock = Clock(ws.settings.timezone, ws.store.engine)
        population = ws.profile(cutoff).select("user_id")
        return churn_labels(
            ws.table("orders"), ws.table("events"), cutoff=cutoff, horizon_days=HORIZON, clock=clock,
            population=population,
        ).to_pandas()

    duck = labels(on_duckdb)
    assert 0 < duck["churned"].mean() < 1
    _same_frames(duck, labels(on_spark))


def test_predictions(on_duckdb, on_spark):
    # the models see only the per-user summaries: those must be identical first
    for as_of in DATES:
        _same_frames(_btyd(on_duckdb, as_of), _btyd(on_spark, as_of))
    duck = on_duckdb.predict(END, horizon_days=HORIZON)
    spark = on_spark.predict(END, horizon_days=HORIZON)
    assert list(spark.columns) == list(duck.columns)
    assert duck.attrs["purchase_model"] == spark.attrs["purchase_model"]  # the same model, chosen the same way
    duck, spark = (f.sort_values("user_id").reset_index(drop=True) for f in (duck, spark))
    assert duck["p_alive"].notna().sum() > 1000 and duck["churn_probability"].notna().all()
    for col in duck.columns:
        if duck[col].dtype.kind == "f":
            np.testing.assert_allclose(spark[col], duck[col], rtol=1e-9, atol=0, equal_nan=True, err_msg=col)
        else:
            pd.testing.assert_series_equal(spark[col], duck[col], check_exact=True)


def test_backtest(on_duckdb, on_spark):
    """Fit as of the earlier date, score the next 90 days: the holdout counts and the scores."""
    duck = on_duckdb.backtest(DATES[0], horizon_days=HORIZON)
    spark = on_spark.backtest(DATES[0], horizon_days=HORIZON)
    assert duck.metrics.keys() == spark.metrics.keys()
    np.testing.assert_allclose(list(spark.metrics.values()), list(duck.metrics.values()), rtol=1e-9, equal_nan=True)
    assert len(duck.per_user) > 1000 and len(duck.by_frequency) > 1
    for got, expected in ((spark.per_user, duck.per_user), (spark.by_frequency, duck.by_frequency)):
        pd.testing.assert_frame_equal(got.sort_index().reset_index(), expected.sort_index().reset_index(), rtol=1e-9)
    # the cohort tracking: counted by the engine per day, expected from the same model
    assert len(duck.tracking) > 100 and duck.purchase_model == spark.purchase_model
    pd.testing.assert_frame_equal(spark.tracking, duck.tracking, rtol=1e-9)


def test_renewals(on_duckdb, on_spark):
    duck, spark = on_duckdb.renewals(END), on_spark.renewals(END)
    assert len(duck.members) > 100 and duck.fits["alpha"].notna().any()
    for name in ("fits", "members", "cohorts", "backtest"):
        got, expected = getattr(spark, name), getattr(duck, name)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-9,
                                      obj=name)


def test_purchase_covariates(on_duckdb, on_spark):
    duck, spark = on_duckdb.purchase_covariates(END), on_spark.purchase_covariates(END)
    assert (duck.kept, duck.dropped) == (spark.kept, spark.dropped)
    assert duck.holdout_gain == pytest.approx(spark.holdout_gain, rel=1e-9)
    pd.testing.assert_frame_equal(spark.coefficients, duck.coefficients, rtol=1e-9)


# -- what a Spark workspace refuses, with a message naming it -------------------------------


def test_loading_needs_duckdb_or_a_lake_folder(on_spark, shop):
    # files load on Spark only into the lake folder of [engine.spark] tables (docs/lake.md)
    with pytest.raises(InputError, match=r"^loading on Spark writes under \[engine.spark\] tables") as raised:
        on_spark.load("orders", shop["orders"])
    assert "docs/lake.md" in raised.value.hint
    with pytest.raises(InputError, match="^loading data needs the DuckDB engine"):
        on_spark.load_frame("orders", pd.DataFrame({"order_id": ["o1"]}), source="frame")


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (lambda ws: ws.save_profile(END), "saving profile snapshots"),
        (lambda ws: ws.loads(), "listing loads"),
        (lambda ws: ws.rejects(), "listing rejected rows"),
        (lambda ws: ws.unload("20240101T000000-abcdef12"), "undoing a load"),
        (lambda ws: ws.profile(END, known_at=dt.datetime(2024, 7, 1)), "known_at"),
    ],
    ids=["save_profile", "loads", "rejects", "unload", "known_at"],
)
def test_duckdb_only_operations_say_so(on_spark, call, operation):
    with pytest.raises(InputError, match=f"^{operation}.* needs the DuckDB engine"):
        call(on_spark)


def test_tables_not_registered_are_empty_but_orders(spark, parquet):
    """Only orders registered: users, order_items, events and identities read as empty (with a
    warning), as in a DuckDB workspace where only orders were loaded."""
    session = spark.newSession()
    session.read.parquet(str(parquet / "orders.parquet")).createOrReplaceTempView("orders")
    on_spark = Workspace.open(session, settings=Settings())
    on_duckdb = Workspace.open(":memory:", settings=Settings())
    orders = parquet / "orders.parquet"
    on_duckdb.store.con.raw_sql(f"INSERT INTO orders BY NAME SELECT * FROM read_parquet('{orders}')")
    with pytest.warns(UserWarning, match="it is read as empty") as warned:
        spark_profile = on_spark.profile(END).to_pandas()
    empty = sorted(str(w.message).split("'")[1] for w in warned if "read as empty" in str(w.message))
    assert empty == ["events", "identities", "order_items", "users"]
    _same_frames(on_duckdb.profile(END).to_pandas(), spark_profile)
    assert spark_profile["top_category"].isna().all()


def test_a_session_without_orders_is_told_how_to_register_them(spark):
    ws = Workspace.open(spark.newSession(), settings=Settings())
    with pytest.raises(NotFoundError, match="no table or view named 'orders'") as raised:
        ws.latest_date()
    assert "createOrReplaceTempView" in raised.value.hint


@pytest.mark.parametrize("by", ["tier", "lifecycle", "rfm_cell"])
def test_migration(on_duckdb, on_spark, by):
    duck, spark = on_duckdb.migration(DATES[0], END, by=by), on_spark.migration(DATES[0], END, by=by)
    assert duck.counts.to_numpy().sum() > 1000
    pd.testing.assert_frame_equal(spark.counts, duck.counts)
    assert (spark.changed_share, spark.upgrades, spark.downgrades) == (duck.changed_share, duck.upgrades, duck.downgrades)
    key = ["user_id"]
    pd.testing.assert_frame_equal(spark.moves.sort_values(key).reset_index(drop=True),
                                  duck.moves.sort_values(key).reset_index(drop=True))


def test_clusters(on_duckdb, on_spark):
    duck, spark = on_duckdb.clusters(END), on_spark.clusters(END)
    assert duck.k >= 3 and len(duck.labels) == N_USERS
    assert duck.k == spark.k and (duck.reason_en, duck.reason_zh) == (spark.reason_en, spark.reason_zh)
    pd.testing.assert_series_equal(spark.labels, duck.labels, check_exact=True)
    pd.testing.assert_frame_equal(spark.clusters, duck.clusters, rtol=1e-9)
    pd.testing.assert_series_equal(spark.silhouette, duck.silhouette, rtol=1e-9)


def test_migration_forecast(on_duckdb, on_spark):
    start = END - dt.timedelta(days=180)
    duck = on_duckdb.migration_forecast(start, END, "1q", periods=2, n_boot=20)
    spark = on_spark.migration_forecast(start, END, "1q", periods=2, n_boot=20)
    for name in ("matrix", "shares", "low", "high", "flows", "counts"):
        pd.testing.assert_frame_equal(getattr(spark, name), getattr(duck, name), obj=name)
    pd.testing.assert_series_equal(spark.entries, duck.entries)
    assert (spark.stability, spark.backtest) == (duck.stability, duck.backtest)
    assert (spark.absorbing, spark.reentry) == (duck.absorbing, duck.reentry)
