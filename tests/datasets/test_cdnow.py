"""The bundled CDNOW data against the raw file text and the published 2,357-customer summary."""

from __future__ import annotations

import gzip
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from userstrata import Workspace, _engine
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.schema import ORDERS

SUMMARY = Path(__file__).parents[1] / "data" / "cdnow_customers_summary.csv"
# Fader, Hardie & Lee (2005): calibration period of the 1997 cohort ends on 1997-09-30
CALIBRATION_END = pd.Timestamp("1997-09-30")


def raw_lines(name: str) -> list[list[str]]:
    """The bundled file split on whitespace, parsed with plain Python (no pandas)."""
    path = resources.files("userstrata.datasets").joinpath("data", name)
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        rows = [line.split() for line in text if line.strip()]
    return [r for r in rows if r[0].isdigit()]  # the master file has a header line


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_cdnow(sample=True)


def test_sample_has_the_published_size(sample):
    assert len(sample) == 6_919
    assert sample["user_id"].nunique() == 2_357
    assert sample["order_id"].is_unique


def test_master_has_the_published_size():
    master = load_cdnow(sample=False)
    assert len(master) == 69_659
    assert master["user_id"].nunique() == 23_570
    assert master["order_id"].is_unique
    assert (master["amount"] >= 0).all()


def test_columns_and_dtypes_are_canonical(sample):
    assert tuple(sample.columns) == ORDERS.columns
    for col in ("order_id", "user_id", "currency", "status"):
        assert pd.api.types.is_string_dtype(sample[col]), col
    for col in ("ts", "refunded_at"):
        # UTC instants in microseconds: ingest converts an instant, but reads a naive
        # timestamp as shop-local time
        assert sample[col].dtype == "datetime64[us, UTC]", col
    assert sample["amount"].dtype == "float64"
    assert sample["refund_amount"].dtype == "float64"
    assert (sample["currency"] == "USD").all() and (sample["status"] == "paid").all()
    assert (sample["refund_amount"] == 0).all() and sample["refunded_at"].isna().all()


def test_total_amount_equals_the_raw_file(sample):
    lines = raw_lines("CDNOW_sample.txt.gz")
    assert len(lines) == 6_919
    total = sum(Decimal(r[-1]) for r in lines)
    assert round(sample["amount"].sum(), 2) == float(total)
    # zero-value purchase lines are kept, as in the file
    assert (sample["amount"] == 0).sum() == sum(Decimal(r[-1]) == 0 for r in lines) > 0


def test_user_is_the_sample_id_without_leading_zeros(sample):
    lines = raw_lines("CDNOW_sample.txt.gz")
    assert sample["user_id"].tolist() == [str(int(r[1])) for r in lines]
    assert sample["order_id"].iloc[0] == "cdnow-1-19970101-1"


def test_same_day_lines_are_numbered():
    master = load_cdnow(sample=False)
    # customer 00002 bought twice on 1997-01-12 (first lines of the master file)
    assert master.loc[master["user_id"] == "2", "order_id"].tolist()[:2] == [
        "cdnow-2-19970112-1",
        "cdnow-2-19970112-2",
    ]


@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "America/New_York", "UTC"])
def test_local_day_of_ts_is_the_file_date(timezone):
    orders = load_cdnow(sample=True, timezone=timezone)
    local = orders["ts"].dt.tz_convert(timezone)
    file_dates = [r[2] for r in raw_lines("CDNOW_sample.txt.gz")]
    assert local.dt.strftime("%Y%m%d").tolist() == file_dates
    assert (local.dt.hour == 12).all()


def calibration_summary(
    orders: pd.DataFrame, *, end: pd.Timestamp, include_end: bool
) -> pd.DataFrame:
    """x, t_x, T in weeks as of ``end``, same-day purchases counted once (plain pandas)."""
    day = orders["ts"].dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    day = day.dt.normalize()
    in_calibration = day <= CALIBRATION_END if include_end else day < CALIBRATION_END
    per_user = (
        orders.assign(day=day)[in_calibration]
        .groupby("user_id")["day"]
        .agg(first="min", last="max", days="nunique")
    )
    return pd.DataFrame(
        {
            "frequency": per_user["days"] - 1,
            "recency": (per_user["last"] - per_user["first"]).dt.days / 7,
            "T": (end - per_user["first"]).dt.days / 7,
        }
    )


def published() -> pd.DataFrame:
    return pd.read_csv(SUMMARY, dtype={"ID": str}).set_index("ID")


def test_calibration_summary_matches_the_published_one(sample):
    """FHL (2005) / lifetimes' cdnow_customers_summary.csv, all 2,357 customers.

    Convention that matches: purchases dated up to and including 1997-09-30 are in the
    calibration period; several purchases on one day are one transaction; frequency =
    distinct purchase days - 1; recency = (last - first purchase day) / 7 and
    T = (1997-09-30 - first purchase day) / 7, both in days / 7, rounded to 2 decimals in
    the file (so T = 38.86 = 272 / 7 for a customer who first bought on 1997-01-01).
    """
    want = published()
    got = calibration_summary(sample, end=CALIBRATION_END, include_end=True).reindex(want.index)
    assert len(want) == 2_357 and got.notna().all().all()  # every customer is in the cohort
    assert (got["frequency"] == want["frequency"]).all()
    tolerance = 0.005 + 1e-9  # the file is rounded to 2 decimals
    assert (got["recency"] - want["recency"]).abs().max() <= tolerance
    assert (got["T"] - want["T"]).abs().max() <= tolerance
    assert got["recency"].round(2).eq(want["recency"]).all()
    assert got["T"].round(2).eq(want["T"]).all()


def test_first_purchases_are_all_in_the_first_quarter(sample):
    first = sample.groupby("user_id")["ts"].min()
    assert first.min() >= pd.Timestamp("1996-12-31", tz="UTC") and first.max() < pd.Timestamp("1997-04-01", tz="UTC")


@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "America/New_York"])
def test_loaded_purchases_land_on_their_local_day_at_local_noon(tmp_path, timezone):
    """Through Workspace.load_frame (where a naive timestamp is read as shop-local time), a
    purchase dated 1997-01-01 in the file is on local day 1997-01-01 at 12:00."""
    settings = Settings(timezone=timezone, currency="USD")
    with Workspace.open(tmp_path / "cdnow.duckdb", settings=settings) as ws:
        assert ws.load_frame("orders", load_cdnow(timezone=timezone), source="CDNOW").rows_rejected == 0
        orders = ws.table("orders")
        hours = orders.select(hour=_engine.local_time(orders.ts, timezone, "duckdb").hour()).to_pandas()
        profile = ws.profile(as_of=date(1997, 1, 1)).to_pandas().set_index("user_id")
        latest = ws.latest_date()
    assert (hours["hour"] == 12).all()
    assert latest == date(1998, 6, 30)  # the file's last date
    # sample customer 1 bought on 1997-01-01 (the first line of the file), and again only later
    assert raw_lines("CDNOW_sample.txt.gz")[0][1:3] == ["0001", "19970101"]
    one = profile.loc["1"]
    assert one["orders"] == 1 and one["recency_days"] == 0 and one["tenure_days"] == 0
    noon = pd.Timestamp("1997-01-01 12:00", tz=timezone).tz_convert("UTC").tz_localize(None)
    assert one["first_order_ts"] == noon
    # everyone in the profile on 1997-01-01 bought on that local day, as the file says
    first_day = {r[1].lstrip("0") for r in raw_lines("CDNOW_sample.txt.gz") if r[2] == "19970101"}
    assert set(profile.index[profile["orders"] > 0]) == first_day


@pytest.mark.parametrize(
    ("end", "include_end", "column"),
    [
        (pd.Timestamp("1997-10-01"), True, "T"),  # counting 1997-09-30 as a whole day: no
        (CALIBRATION_END, False, "frequency"),  # leaving out purchases dated 1997-09-30: no
    ],
)
def test_other_conventions_do_not_match(sample, end, include_end, column):
    want = published()
    got = calibration_summary(sample, end=end, include_end=include_end).reindex(want.index)
    assert not got[column].round(2).eq(want[column]).all()
