"""Backtest on the CDNOW 39-week holdout (Fader, Hardie & Lee 2005) and its plots."""

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

from builders import table
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.errors import InputError
from userstrata.models.backtest import FREQUENCY_GROUPS, backtest
from userstrata.models.plots import plot_calibration, plot_frequency_conditional
from userstrata.schema import ORDERS

CUTOFF = dt.date(1997, 9, 30)  # end of week 39: the calibration period of FHL 2005
HOLDOUT_DAYS = 273  # weeks 40-78, to 1998-06-30
CHURN_DAYS = 90  # the classifier trains on 1997-07-02 -> 09-30: the cohort began in Q1 1997
DATA = Path(__file__).parent.parent / "data"
# BG/NBD on the CDNOW summary in weeks, by R CLVTools (tests/testthat/test_correctness_bgnbd.R);
# FHL (2005) print r = 0.243, alpha = 4.414, a = 0.793, b = 2.426
CLVTOOLS_WEEKS = {"r": 0.2425945, "alpha": 4.4136019, "a": 0.7929199, "b": 2.4258881}


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    out_dir = tmp_path_factory.mktemp("backtest")
    result = backtest(
        users=table("users"),
        orders=ibis.memtable(load_cdnow(sample=True), schema=ORDERS.schema),
        order_items=table("order_items"),
        events=table("events"),
        cutoff=CUTOFF,
        horizon_days=HOLDOUT_DAYS,
        settings=Settings(),
        engine="duckdb",
        execute=con.execute,
        out_dir=out_dir,
        churn_horizon_days=CHURN_DAYS,
        model="bgnbd",  # the published figures below are BG/NBD's
    )
    m = result.metrics
    print(
        f"\nCDNOW holdout: predicted {m['total_predicted']:.1f} vs actual {m['total_actual']:.0f} repeat "
        f"transactions ({m['total_error_pct']:+.1f}%), MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}\n"
        f"churn in {CHURN_DAYS} d (rate {m['churn_rate']:.3f}): "
        f"classifier AUC {m['classifier_auc']:.3f} PR-AUC {m['classifier_pr_auc']:.3f} Brier {m['classifier_brier']:.4f}; "
        f"1-P(alive) AUC {m['palive_auc']:.3f} PR-AUC {m['palive_pr_auc']:.3f} Brier {m['palive_brier']:.4f}; "
        f"1-P(purchase) AUC {m['ppurchase_auc']:.3f} PR-AUC {m['ppurchase_pr_auc']:.3f} Brier {m['ppurchase_brier']:.4f}"
    )
    print(result.by_frequency.to_string(index=False))
    return result


def _fhl_eq10(params, t, x, t_x, T):
    """E[Y(t) | x, t_x, T], FHL 2005 eq. (10), written out with the plain 2F1."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    z = t / (alpha + T + t)
    numerator = (a + b + x - 1) / (a - 1) * (
        1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    )
    denominator = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return numerator / denominator


def test_fit_in_days_reproduces_the_published_weekly_estimates(cdnow):
    m = cdnow.metrics
    # FHL 2005, Marketing Science 24(2), Section 4: r = 0.243, alpha = 4.414 (weeks), a = 0.793, b = 2.426
    assert round(m["param_r"], 3) == 0.243
    assert round(m["param_a"], 3) == 0.793
    assert round(m["param_b"], 3) == 2.426
    assert round(m["param_alpha"] / 7, 3) == 4.414  # alpha per day = 7 x alpha per week
    assert m["n_buyers"] == 2357


def test_per_user_predictions_equal_the_closed_form(cdnow):
    buyers = cdnow.per_user[cdnow.per_user["is_buyer"]]
    assert len(buyers) == 2357
    assert buyers["frequency"].sum() == 2457  # repeat transactions in weeks 1-39
    params = {k: cdnow.metrics[f"param_{k}"] for k in ("r", "alpha", "a", "b")}
    expected = _fhl_eq10(params, float(HOLDOUT_DAYS), buyers["frequency"].to_numpy(),
                         buyers["recency"].to_numpy(), buyers["T"].to_numpy())
    np.testing.assert_allclose(buyers["predicted_purchases"].to_numpy(), expected, rtol=1e-8)
    assert cdnow.metrics["total_predicted"] == pytest.approx(expected.sum(), rel=1e-10)


def holdout_days_from_the_raw_file(first: str = "19971001", last: str = "19980630") -> pd.Series:
    """Distinct purchase days per sample customer in weeks 40-78 (1997-10-01 .. 1998-06-30),
    read from the bundled file with plain Python: customer id, sample id, yyyymmdd, CDs, dollars."""
    path = resources.files("userstrata.datasets").joinpath("data", "CDNOW_sample.txt.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        days = {(int(f[1]), f[2]) for f in map(str.split, text) if f and first <= f[2] <= last}
    return pd.Series([user for user, _ in days]).value_counts()


@pytest.fixture(scope="module")
def independent():
    """The holdout predicted from the published summary with CLVTools' published estimates
    (FHL 2005 eq. 10, t = 39 weeks), and the actual purchase days from the raw file."""
    summary = pd.read_csv(DATA / "cdnow_customers_summary.csv").set_index("ID")
    # the file has weeks rounded to 0.01, i.e. whole days / 7: back to the exact days
    x, t_x, T = summary["frequency"].to_numpy(), (summary["recency"] * 7).round(), (summary["T"] * 7).round()
    params = dict(CLVTOOLS_WEEKS, alpha=CLVTOOLS_WEEKS["alpha"] * 7)  # per day
    predicted = pd.Series(_fhl_eq10(params, 39.0 * 7, x, t_x.to_numpy(), T.to_numpy()), index=summary.index)
    actual = holdout_days_from_the_raw_file().reindex(summary.index, fill_value=0)
    return summary.assign(predicted=predicted, actual=actual)


def test_holdout_totals_and_errors_match_an_independent_computation(cdnow, independent):
    m = cdnow.metrics
    # 1,882 repeat transactions (distinct customer-days) in weeks 40-78 of the 2,357-customer sample
    assert independent["actual"].sum() == 1882
    assert m["total_actual"] == 1882
    predicted = independent["predicted"].sum()  # 1,653 (the published estimates are 1e-4 from ours)
    assert m["total_predicted"] == pytest.approx(predicted, rel=1e-4)
    assert m["total_error_pct"] == pytest.approx(100 * (predicted - 1882) / 1882, abs=0.05)
    err = independent["predicted"] - independent["actual"]
    assert m["mae"] == pytest.approx(err.abs().mean(), rel=1e-4)
    assert m["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-4)
    # per customer too: the backtest's rows are the same customers with the same values
    per_user = cdnow.per_user.set_index("user_id").loc[independent.index.astype(str)]
    np.testing.assert_array_equal(per_user["actual_purchases"].to_numpy(), independent["actual"].to_numpy())
    np.testing.assert_allclose(per_user["predicted_purchases"].to_numpy(), independent["predicted"].to_numpy(),
                               rtol=1e-4)


def test_by_frequency_table(cdnow):
    table_ = cdnow.by_frequency
    assert list(table_["frequency_group"]) == list(FREQUENCY_GROUPS)
    assert table_["n_users"].sum() == 2357
    buyers = cdnow.per_user[cdnow.per_user["is_buyer"]]
    zero = buyers[buyers["frequency"] == 0]
    row = table_.set_index("frequency_group").loc["0"]
    assert row["n_users"] == len(zero)
    assert row["actual_mean"] == pytest.approx(zero["actual_purchases"].mean())
    assert row["predicted_mean"] == pytest.approx(zero["predicted_purchases"].mean())
    seven = table_.set_index("frequency_group").loc["7+"]
    assert seven["n_users"] == (buyers["frequency"] >= 7).sum()


def test_by_frequency_table_matches_the_independent_computation(cdnow, independent):
    group = np.minimum(independent["frequency"], 7)
    want = independent.groupby(group).agg(n=("actual", "size"), actual=("actual", "mean"),
                                          predicted=("predicted", "mean"))
    got = cdnow.by_frequency
    np.testing.assert_array_equal(got["n_users"].to_numpy(), want["n"].to_numpy())
    np.testing.assert_allclose(got["actual_mean"].to_numpy(), want["actual"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["predicted_mean"].to_numpy(), want["predicted"].to_numpy(), rtol=1e-4)


def test_churn_metrics_against_the_btyd_baselines(cdnow):
    m, per_user = cdnow.metrics, cdnow.per_user
    assert m["churn_horizon_days"] == CHURN_DAYS
    # churned = no purchase in (cutoff, cutoff + 90 days]; on CDNOW everyone profiled is a buyer
    assert m["churn_rate"] == pytest.approx(per_user["churned"].mean())
    assert per_user["churn_probability"].between(0, 1).all()
    for who in ("classifier", "palive", "ppurchase"):
        assert 0 <= m[f"{who}_auc"] <= 1 and 0 <= m[f"{who}_brier"] <= 1
    assert m["classifier_auc"] > 0.6
    # 1 - P(alive) answers "gone for good?": BG/NBD gives P(alive) = 1 to every customer without
    # a repeat purchase, the likeliest not to buy, so it ranks worse than chance here; the fair
    # baseline 1 - P(purchase within the horizon) does not
    assert m["palive_auc"] < 0.5 < m["ppurchase_auc"]


def test_plots_are_written(cdnow):
    assert set(cdnow.plots) == {"frequency_conditional", "churn_calibration", "tracking"}
    for path in cdnow.plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_functions_return_figures(cdnow):
    fig = plot_frequency_conditional(cdnow.by_frequency)
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 2
    own = Figure()
    ax = own.add_subplot()
    per_user = cdnow.per_user
    assert plot_calibration(per_user["churned"], per_user["churn_probability"], ax=ax) is own
    assert len(ax.lines) == 2  # the diagonal and one curve


# -- a holdout that runs past the data ------------------------------------------------------------


def _cdnow_backtest(cutoff, horizon_days, **options):
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return backtest(
        users=table("users"), orders=ibis.memtable(load_cdnow(sample=True), schema=ORDERS.schema),
        order_items=table("order_items"), events=table("events"), cutoff=cutoff, horizon_days=horizon_days,
        settings=Settings(), engine="duckdb", execute=con.execute, **{"model": "bgnbd", **options},
    )


def test_a_horizon_past_the_last_day_is_cut_to_the_observed_days_and_says_so():
    # CDNOW ends on 1998-06-30: from a 1998-04-01 cutoff, 90 of 120 days are observed. Before,
    # the 30 missing days counted as days without purchases, without a word.
    with pytest.warns(UserWarning) as caught:
        result = _cdnow_backtest(dt.date(1998, 4, 1), 120, churn_horizon_days=60)
    notes = [str(w.message) for w in caught if "past the last day" in str(w.message)]
    assert notes == [
        "the horizon runs 30 days past the last day in the data (1998-06-30): only 90 of 120 days are "
        "observed, so the backtest covers those 90 days (1998-04-02 to 1998-06-30)"
    ]  # the 60-day churn horizon is observed in full: no word about it
    m = result.metrics
    assert m["horizon_days"] == 90 and m["churn_horizon_days"] == 60
    # actual: distinct purchase days in the 90 observed days, counted from the raw file
    assert m["total_actual"] == holdout_days_from_the_raw_file("19980402", "19980630").sum()
    # predicted: FHL (2005) eq. 10 over 90 days with the fitted parameters
    buyers = result.per_user[result.per_user["is_buyer"]]
    params = {k: m[f"param_{k}"] for k in ("r", "alpha", "a", "b")}
    expected = _fhl_eq10(params, 90.0, *(buyers[c].to_numpy() for c in ("frequency", "recency", "T")))
    assert m["total_predicted"] == pytest.approx(expected.sum(), rel=1e-8)


def test_a_churn_horizon_past_the_last_day_is_cut_too():
    with pytest.warns(UserWarning, match=r"the churn horizon runs 10 days past .* only 30 of 40 days"):
        result = _cdnow_backtest(dt.date(1998, 5, 31), 30, churn_horizon_days=40)
    assert result.metrics["horizon_days"] == 30 and result.metrics["churn_horizon_days"] == 30


@pytest.mark.parametrize("cutoff", [dt.date(1998, 6, 30), dt.date(1999, 1, 1)])
def test_a_cutoff_with_no_observed_day_after_it_is_refused(cutoff):
    with pytest.raises(InputError, match=r"not before the last day in the data \(1998-06-30\)") as err:
        _cdnow_backtest(cutoff, 90)
    assert "--cutoff" in err.value.hint
