"""Cohort tracking: CDNOW against the published tracking figures, a per-buyer sum, hand-counted days."""

import datetime as dt
import gzip
from importlib import resources
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy.special import hyp2f1

from builders import order, rows_frame, table
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.errors import InputError
from userstrata.features import btyd_summary
from userstrata.features._time import Clock
from userstrata.models import BetaGeo, ModifiedBetaGeo, ParetoNBD
from userstrata.models import plots
from userstrata.models.backtest import backtest
from userstrata.models.plots import plot_tracking
from userstrata.models.tracking import (
    TRACKING_COLUMNS,
    cohort_tracking,
    tracking_counts,
    tracking_table,
    weekly_tracking,
)
from userstrata.schema import ORDERS

COHORT_START = dt.date(1997, 1, 1)  # CDNOW's cohort made its first purchases in 1997 Q1
CUTOFF = dt.date(1997, 9, 30)  # end of week 39
END = dt.date(1998, 6, 30)  # end of week 78
DATA = Path(__file__).parent.parent / "data"
SHANGHAI = Clock("Asia/Shanghai", "duckdb")


def _duckdb():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


@pytest.fixture(scope="module")
def cdnow():
    """CDNOW orders, their calibration summary in days and a DuckDB connection."""
    con = _duckdb()
    orders = ibis.memtable(load_cdnow(sample=True), schema=ORDERS.schema)
    summary = con.execute(btyd_summary(orders, as_of=CUTOFF, clock=SHANGHAI))
    cols = [summary[c].astype("float64") for c in ("frequency", "recency", "T")]
    return con, orders, cols


def _track(model, cdnow):
    con, orders, _ = cdnow
    return cohort_tracking(model, orders, cutoff=CUTOFF, end=END, clock=SHANGHAI, execute=con.execute)


def _weekly_repeats_from_the_raw_file() -> np.ndarray:
    """Repeat transactions per week 1..78 counted from the bundled file with plain Python:
    distinct (customer, day) pairs, the first day of each customer left out."""
    path = resources.files("userstrata.datasets").joinpath("data", "CDNOW_sample.txt.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        pairs = {(f[1], f[2]) for f in map(str.split, text) if f}
    first = {}
    for user, day in pairs:
        first[user] = min(first.get(user, day), day)
    weeks = np.zeros(78)
    for user, day in pairs:
        if day != first[user]:
            weeks[(dt.datetime.strptime(day, "%Y%m%d").date() - COHORT_START).days // 7] += 1
    return weeks


# -- CDNOW: published tracking figures ----------------------------------------------------------


def test_cdnow_actual_counts_match_the_btyd_walkthrough_and_the_raw_file(cdnow):
    weekly = weekly_tracking(_track(BetaGeo().fit(*cdnow[2]), cdnow))
    assert len(weekly) == 78 and (weekly["days"] == 7).all()
    assert weekly.loc[weekly["week"] == 39, "period"].item() == "calibration"
    assert weekly.loc[weekly["week"] == 40, "period"].item() == "holdout"
    # McCarthy & Wadsworth, "Buy 'Til You Die - A Walkthrough" (BTYD vignette, 2014), Pareto/NBD
    # section, cum.tracking[, 20:25]: actual 1359 1414 1484 1517 1573 1672 (weeks 20-25)
    cum = weekly.set_index("week")["actual_cum"]
    assert cum.loc[20:25].tolist() == [1359, 1414, 1484, 1517, 1573, 1672]
    # ... and inc.tracking[, 20:25]: actual 73 55 70 33 56 99
    assert weekly.set_index("week")["actual"].loc[20:25].tolist() == [73, 55, 70, 33, 56, 99]
    # every week against a plain count of the raw file: 2,457 repeat transactions in weeks 1-39
    # (the calibration summary's total frequency) and 1,882 in weeks 40-78
    raw = _weekly_repeats_from_the_raw_file()
    np.testing.assert_array_equal(weekly["actual"].to_numpy(), raw)
    assert raw[:39].sum() == 2457 and raw[39:].sum() == 1882
    assert cum.loc[39] == 2457 and cum.loc[78] == 2457 + 1882


def test_cdnow_pareto_nbd_expected_tracking_matches_the_btyd_walkthrough(cdnow):
    model = ParetoNBD().fit(*cdnow[2])
    daily = _track(model, cdnow)
    # R BTYD evaluates week k at k weeks after the earliest birth (1997-01-01 + 7k days, the
    # start of week k + 1 here), our row for that day
    at = daily.set_index("day")["expected_cum"]
    r_weeks = np.array([at.loc[pd.Timestamp(COHORT_START) + pd.Timedelta(days=7 * k)] for k in range(19, 26)])
    # BTYD walkthrough (Pareto/NBD, CDNOW, 39-week calibration), cum.tracking[, 20:25]:
    # expected 1309 1385 1460 1533 1604 1674; inc.tracking[, 20:25]: 78.31 76.42 74.65 72.98 71.41 69.93
    np.testing.assert_array_equal(r_weeks[1:].round(), [1309, 1385, 1460, 1533, 1604, 1674])
    np.testing.assert_allclose(np.diff(r_weeks), [78.31, 76.42, 74.65, 72.98, 71.41, 69.93], atol=0.015)


def _bgnbd_new_customer(params, t):
    """E[X(t)] of a new customer, FHL 2005 eq. (9), with the plain 2F1."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))


def test_cdnow_bgnbd_expected_cumulative_at_weeks_39_and_78(cdnow):
    model = BetaGeo().fit(*cdnow[2])
    weekly = weekly_tracking(_track(model, cdnow)).set_index("week")
    # independent: FHL 2005 eq. (9) summed over the published customer summary (T in weeks to
    # 1997-09-30, rounded to 0.01: whole days / 7), at T (end of week 39) and T + 39 weeks
    summary = pd.read_csv(DATA / "cdnow_customers_summary.csv")
    T_days = (summary["T"].to_numpy() * 7).round()
    fitted = dict(model.params_)
    # with the fitted parameters the sums agree to rounding: every buyer's day is right
    # (one day off moves week 39 by 0.3%, week 78 by 0.1%)
    assert weekly.loc[39, "expected_cum"] == pytest.approx(_bgnbd_new_customer(fitted, T_days).sum(), rel=1e-9)
    assert weekly.loc[78, "expected_cum"] == pytest.approx(_bgnbd_new_customer(fitted, T_days + 273).sum(), rel=1e-9)
    # with FHL 2005's published estimates (r = 0.243, alpha = 4.414 weeks, a = 0.793, b = 2.426),
    # rounded to 3 decimals: 2,497.6 and 4,166.4 (ours: 2,494.0 and 4,160.6)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    T_weeks = summary["T"].to_numpy()
    assert weekly.loc[39, "expected_cum"] == pytest.approx(_bgnbd_new_customer(published, T_weeks).sum(), rel=3e-3)
    assert weekly.loc[78, "expected_cum"] == pytest.approx(
        _bgnbd_new_customer(published, T_weeks + 39.0).sum(), rel=3e-3
    )
    # FHL 2005, Figure 1: the BG/NBD curve tracks the actual cumulative repeat transactions,
    # within a few percent at the end of the calibration (2,457) and of the holdout (4,339)
    assert weekly.loc[39, "expected_cum"] == pytest.approx(2457, rel=0.03)
    assert weekly.loc[78, "expected_cum"] == pytest.approx(4339, rel=0.06)


# -- the expectation: a per-buyer sum -----------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        (BetaGeo, {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}),
        (ModifiedBetaGeo, {"r": 0.525, "alpha": 6.183 * 7, "a": 0.891, "b": 1.614}),
        (ParetoNBD, {"r": 0.553, "alpha": 10.578 * 7, "s": 0.606, "beta": 11.669 * 7}),
    ],
    ids=["bgnbd", "mbgnbd", "pareto"],
)
def test_expected_equals_a_direct_per_buyer_sum(model):
    cls, params = model
    fitted = cls()
    fitted.params_ = params
    first = [dt.date(2024, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 1, 4), dt.date(2024, 1, 9), dt.date(2024, 1, 10)]
    got = tracking_table(fitted, first, [], cutoff=dt.date(2024, 1, 10), end=dt.date(2024, 1, 31))
    assert len(got) == 31 and got["day"].iloc[0] == pd.Timestamp("2024-01-01")
    for row in got.itertuples():
        day = row.day.date()
        direct = sum(
            float(fitted.expected_purchases_new((day - t0).days)[0]) for t0 in first if day > t0
        )
        assert row.expected_cum == pytest.approx(direct, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(got["expected"].cumsum(), got["expected_cum"], rtol=1e-12)
    assert (got["expected"] >= 0).all()


def test_weights_stand_for_repeated_days():
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    days = [dt.date(2024, 3, 1)] * 3 + [dt.date(2024, 3, 5)] * 2
    each = tracking_table(fitted, days, ["2024-03-06", "2024-03-06"], cutoff="2024-03-10", end="2024-03-20")
    weighted = tracking_table(
        fitted, ["2024-03-01", "2024-03-05"], ["2024-03-06"], cutoff="2024-03-10", end="2024-03-20",
        first_purchase_weights=[3, 2], repeat_purchase_weights=[2],
    )
    pd.testing.assert_frame_equal(each, weighted)


def test_weeks_end_on_the_cutoff():
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    # 10 calibration days: a short first week of 3 days, then a full week ending on the cutoff
    got = tracking_table(fitted, ["2024-03-01"], [], cutoff="2024-03-10", end="2024-03-24")
    weekly = weekly_tracking(got)
    assert weekly["days"].tolist() == [3, 7, 7, 7]
    assert weekly["week_end"].iloc[1] == pd.Timestamp("2024-03-10")
    assert weekly["period"].tolist() == ["calibration", "calibration", "holdout", "holdout"]
    assert got["period"].eq("calibration").sum() == 10


def test_a_million_buyers_cost_one_curve():
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    rng = np.random.default_rng(7)
    first = np.datetime64("2023-01-01") + rng.integers(0, 365, 1_000_000).astype("timedelta64[D]")
    got = tracking_table(fitted, first, [], cutoff="2023-12-31", end="2024-06-30")
    # the last day by a per-day sum (365 evaluations): each first day once, times its buyers
    days, counts = np.unique(first, return_counts=True)
    lags = (np.datetime64("2024-06-30") - days).astype(np.int64).astype(np.float64)
    assert got["expected_cum"].iloc[-1] == pytest.approx(counts @ fitted.expected_purchases_new(lags), rel=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(first=["2024-03-01", "2024-03-12"]),
         r"first_purchase_days\[1\] = 2024-03-12; expected a day on or before the cutoff 2024-03-10"),
        (dict(repeat=["2024-04-01"]),
         r"repeat_purchase_days\[0\] = 2024-04-01; expected a day from 2024-03-01 to 2024-03-20"),
        (dict(first=["2024-03-01", None]), r"first_purchase_days\[1\] is missing"),
        (dict(end="2024-03-05"), r"out of order; expected start <= cutoff <= end"),
        (dict(first=[]), r"first_purchase_days is empty"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    args = dict(first=["2024-03-01"], repeat=[], end="2024-03-20") | kwargs
    with pytest.raises(InputError, match=match):
        tracking_table(fitted, args["first"], args["repeat"], cutoff="2024-03-10", end=args["end"])


# -- actual counts: same-day orders once, refunds as in the calibration summary -------------------


ORDERS_BY_HAND = [
    # u1: first 05-01 (two orders that day), repeats 05-03 (a refunded order is a purchase
    # occasion, as in btyd_summary) and 05-20 (holdout); a cancelled order is no purchase
    order("o1", "u1", "2024-05-01 02:00", 10),
    order("o2", "u1", "2024-05-01 09:00", 5),
    order("o3", "u1", "2024-05-03 03:00", 20, status="refunded", refund=20.0, refunded_at="2024-05-04 03:00"),
    order("o4", "u1", "2024-05-04 03:00", 20, status="cancelled"),
    order("o5", "u1", "2024-05-20 03:00", 8),
    # u2: 05-02 17:00 UTC is 05-03 01:00 in Shanghai, the same local day as the next order
    order("o6", "u2", "2024-05-02 17:00", 7),
    order("o7", "u2", "2024-05-03 10:00", 7),
    order("o8", "u2", "2024-05-06 10:00", 7, status="partially_refunded", refund=3.0, refunded_at="2024-05-07 10:00"),
    order("o9", "u2", "2024-06-30 10:00", 7),  # after the end: not counted
    # u3 arrives after the cutoff: not in the cohort, in neither period
    order("o10", "u3", "2024-05-12 10:00", 9),
    order("o11", "u3", "2024-05-15 10:00", 9),
]


def _pandas_count(rows, *, cutoff, end):
    """The cohort's repeat purchase days per local day, counted with plain pandas."""
    frame = rows_frame("orders", rows)
    frame = frame[frame["status"].isin(["paid", "completed", "refunding", "partially_refunded", "refunded"])]
    local = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    days = frame.assign(day=local.dt.normalize())[["user_id", "day"]].drop_duplicates()
    days = days[days["day"] <= pd.Timestamp(end)]
    first = days.groupby("user_id")["day"].transform("min")
    cohort = days[first <= pd.Timestamp(cutoff)]
    first = first[cohort.index]
    first_days = cohort.groupby("user_id")["day"].min()
    return cohort[cohort["day"] > first].groupby("day").size(), first_days.value_counts().sort_index()


def test_actual_counts_match_a_direct_pandas_count():
    cutoff, end = dt.date(2024, 5, 10), dt.date(2024, 5, 31)
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    con = _duckdb()
    got = cohort_tracking(fitted, table("orders", ORDERS_BY_HAND), cutoff=cutoff, end=end, clock=SHANGHAI,
                          execute=con.execute).set_index("day")
    repeats, acquired = _pandas_count(ORDERS_BY_HAND, cutoff=cutoff, end=end)
    want = repeats.reindex(got.index, fill_value=0)
    np.testing.assert_array_equal(got["actual"].to_numpy(), want.to_numpy())
    # by hand: u1 on 05-03 and 05-20, u2 on 05-06 (its 05-02 UTC order is local 05-03, its first day)
    assert want[want > 0].to_dict() == {pd.Timestamp("2024-05-03"): 1, pd.Timestamp("2024-05-06"): 1,
                                        pd.Timestamp("2024-05-20"): 1}
    assert got.index[0] == pd.Timestamp("2024-05-01") and got.index[-1] == pd.Timestamp(end)
    assert got["actual_cum"].iloc[-1] == 3
    # the expectation uses the cohort's first days only (u1 05-01, u2 05-03; u3 came later)
    assert acquired.to_dict() == {pd.Timestamp("2024-05-01"): 1, pd.Timestamp("2024-05-03"): 1}
    lags = np.array([(end - dt.date(2024, 5, 1)).days, (end - dt.date(2024, 5, 3)).days], dtype=float)
    assert got["expected_cum"].iloc[-1] == pytest.approx(fitted.expected_purchases_new(lags).sum(), rel=1e-12)


def test_tracking_counts_agree_with_the_calibration_summary():
    cutoff = dt.date(2024, 5, 10)
    con = _duckdb()
    orders = table("orders", ORDERS_BY_HAND)
    counts = con.execute(tracking_counts(orders, cutoff=cutoff, end=cutoff, clock=SHANGHAI))
    summary = con.execute(btyd_summary(orders, as_of=cutoff, clock=SHANGHAI))
    assert counts["new_buyers"].sum() == len(summary)
    assert counts["repeat_purchases"].sum() == summary["frequency"].sum()


# -- the backtest carries the table and writes the chart -----------------------------------------


@pytest.mark.slow
def test_backtest_carries_the_tracking_and_writes_the_chart(tmp_path):
    con = _duckdb()
    result = backtest(
        users=table("users"), orders=ibis.memtable(load_cdnow(sample=True), schema=ORDERS.schema),
        order_items=table("order_items"), events=table("events"), cutoff=CUTOFF, horizon_days=273,
        settings=Settings(), engine="duckdb", execute=con.execute, out_dir=tmp_path, churn_horizon_days=90,
    )
    tracking, m = result.tracking, result.metrics
    assert list(tracking.columns) == list(TRACKING_COLUMNS)
    assert tracking["day"].iloc[0] == pd.Timestamp(COHORT_START) and tracking["day"].iloc[-1] == pd.Timestamp(END)
    # the holdout's actual repeat transactions are the per-user holdout purchases summed
    assert m["tracking_holdout_actual"] == m["total_actual"] == 1882
    assert m["tracking_actual_cum_cutoff"] == 2457 and m["tracking_actual_cum_end"] == 4339
    end = tracking.iloc[-1]
    assert m["tracking_cum_error_pct"] == pytest.approx(100 * (end["expected_cum"] - 4339) / 4339)
    holdout = tracking[tracking["period"] == "holdout"]
    assert m["tracking_holdout_expected"] == pytest.approx(holdout["expected"].sum())
    assert result.plots["tracking"] == tmp_path / "tracking.png"
    assert result.plots["tracking"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_result_defaults_to_an_empty_tracking_table():
    from userstrata.models.backtest import BacktestResult

    empty = BacktestResult(metrics={}, by_frequency=pd.DataFrame(), per_user=pd.DataFrame())
    assert len(empty.tracking) == 0 and list(empty.tracking.columns) == list(TRACKING_COLUMNS)


# -- the chart ------------------------------------------------------------------------------------


def _small_tracking():
    fitted = BetaGeo()
    fitted.params_ = {"r": 0.243, "alpha": 30.9, "a": 0.793, "b": 2.426}
    first = ["2024-01-01"] * 50 + ["2024-01-15"] * 30
    repeat = ["2024-01-20", "2024-02-03", "2024-02-03", "2024-03-01"]
    return tracking_table(fitted, first, repeat, cutoff="2024-02-11", end="2024-03-31")


def test_plot_tracking_draws_both_panels_with_the_cutoff():
    tracking = _small_tracking()
    fig = plot_tracking(tracking)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    cum, weekly = fig.axes
    want = weekly_tracking(tracking)
    np.testing.assert_allclose(cum.lines[0].get_ydata(), want["actual_cum"])
    np.testing.assert_allclose(cum.lines[1].get_ydata(), want["expected_cum"])
    np.testing.assert_allclose(weekly.lines[1].get_ydata(), want["expected"])
    # the cutoff between the last calibration week (6: 2024-02-05..11) and the first holdout week
    assert cum.lines[2].get_xdata()[0] == 6.5 and weekly.lines[2].get_xdata()[0] == 6.5
    own = Figure()
    axes = own.subplots(2, 1)
    assert plot_tracking(tracking, ax=axes) is own
    with pytest.raises(InputError, match="expected None or two Axes"):
        plot_tracking(tracking, ax=own.axes[0])


def test_plot_tracking_in_chinese(monkeypatch):
    monkeypatch.setattr(plots, "cjk_font", lambda: "DejaVu Sans")  # stands in for an installed CJK font
    fig = plot_tracking(_small_tracking(), lang="zh")
    assert fig.axes[0].get_title() == "累计复购次数：实际 vs 模型"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["实际", "模型预期", "校准期截止"]
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    with pytest.warns(UserWarning, match="no font with Chinese glyphs"):
        fig = plot_tracking(_small_tracking(), lang="zh")
    assert fig.axes[0].get_title() == "Cumulative repeat transactions: actual vs model"
    with pytest.raises(InputError, match="lang = 'fr'"):
        plot_tracking(_small_tracking(), lang="fr")
