"""What every parity module shares: the seeded shop's size and dates, and exact frame equality."""

import datetime as dt

import pandas as pd

N_USERS = 2500
SEED = 20240630
END = dt.date(2024, 6, 30)  # the simulator's last local day
HORIZON = 90
# the churn classifier for END trains on the profile as of END - HORIZON: both are compared
DATES = (END - dt.timedelta(days=HORIZON), END)


def _same_frames(duck: pd.DataFrame, spark: pd.DataFrame, key: str | list[str] = "user_id") -> None:
    """Exactly equal, column by column, after sorting by ``key`` (timestamps compared in us:
    both engines hold microseconds, they only hand them to pandas in different units)."""
    assert list(spark.columns) == list(duck.columns)
    duck, spark = (f.sort_values(key, kind="stable").reset_index(drop=True) for f in (duck, spark))
    for frame in (duck, spark):
        for col in frame.columns:
            if frame[col].dtype.kind == "M":
                frame[col] = frame[col].astype("datetime64[us]")
    for col in duck.columns:
        # a column with no value at all: DuckDB hands pandas NaN (float64), Spark None (object)
        if duck[col].isna().all() and spark[col].isna().all() and duck[col].dtype != spark[col].dtype:
            duck[col] = spark[col] = pd.Series(float("nan"), index=duck.index)
    assert len(duck) == len(spark)
    pd.testing.assert_frame_equal(spark, duck, check_exact=True)
