"""CDNOW calibration summary through userstrata equals the published one for all 2,357 customers.

Reference: cdnow_customers_summary.csv as shipped with lifetimes 0.11.3 (Fader, Hardie & Lee
2005): calibration ends 1997-09-30; frequency = repeat purchase days; recency (t_x) and T in
weeks = days / 7 (the file rounds to 2 decimals).
"""

import datetime as dt
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from userstrata.datasets import load_cdnow
from userstrata.features import btyd_summary
from userstrata.features._time import Clock

SUMMARY = Path(__file__).resolve().parents[1] / "data" / "cdnow_customers_summary.csv"


def test_cdnow_calibration_summary_matches_published():
    orders = load_cdnow(sample=True)
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    got = con.execute(
        btyd_summary(ibis.memtable(orders), as_of=dt.date(1997, 9, 30), clock=Clock("Asia/Shanghai"))
    ).set_index("user_id")
    published = pd.read_csv(SUMMARY)
    published.index = published["ID"].astype(str)
    assert len(got) == len(published) == 2357
    got = got.loc[published.index]
    np.testing.assert_array_equal(got["frequency"].to_numpy(), published["frequency"].to_numpy())
    # the file rounds weeks to 2 decimals
    np.testing.assert_allclose((got["recency"] / 7).round(2), published["recency"], atol=1e-9)
    np.testing.assert_allclose((got["T"] / 7).round(2), published["T"], atol=1e-9)
