"""predict(): one row per profiled user with BTYD, CLV, churn and next-purchase columns."""

import datetime as dt
import warnings

import ibis
import numpy as np
import pandas as pd
import pytest

from builders import order, table
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.features import btyd_summary
from userstrata.features._time import Clock
from userstrata.models.predict import PREDICTION_COLUMNS, predict
from userstrata.schema import CANONICAL
from userstrata.segments import build_profile

AS_OF = dt.date(2024, 6, 30)
HORIZON = 90


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    paths = simulate_shop(2000, tmp_path_factory.mktemp("shop"), seed=21)
    return {k: ibis.memtable(pd.read_parquet(paths[k]), schema=CANONICAL[k].schema)
            for k in ("users", "orders", "order_items", "events")}


@pytest.fixture(scope="module")
def predicted(shop):
    con = _con()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = predict(**shop, as_of=AS_OF, horizon_days=HORIZON, settings=Settings(), engine="duckdb",
                      execute=con.execute)
    ours = [str(w.message) for w in caught if w.category is UserWarning]
    assert not ours  # a healthy shop fits every model without falling back
    profile = con.execute(build_profile(**shop, as_of=AS_OF, settings=Settings())).set_index("user_id")
    return out, profile


def test_one_row_per_profiled_user_with_the_documented_columns(predicted):
    out, profile = predicted
    assert list(out.columns) == list(PREDICTION_COLUMNS)
    assert out["user_id"].is_unique
    assert sorted(out["user_id"]) == sorted(profile.index)


def test_values_are_in_range(predicted):
    out, profile = predicted
    for col in ("p_alive", "churn_probability", "next_purchase_within_horizon"):
        values = out[col].dropna()
        assert ((values >= 0) & (values <= 1)).all(), col
    assert out["churn_probability"].notna().all()  # the classifier covers never-buyers too
    buyers = out.set_index("user_id").loc[profile.index[profile["orders"] > 0]]
    assert buyers[["p_alive", "expected_purchases", "expected_spend", "clv", "clv_low", "clv_high"]].notna().all().all()
    assert (buyers["clv_low"] <= buyers["clv"] + 1e-9).all() and (buyers["clv"] <= buyers["clv_high"] + 1e-9).all()
    assert (buyers["expected_purchases"] >= 0).all() and (buyers["expected_spend"] > 0).all()
    days = out["next_purchase_days"].dropna()
    assert len(days) and ((days > 0) & (days <= HORIZON)).all()
    # a median wait exists exactly where a purchase within the horizon is at least even odds
    has_days = out["next_purchase_days"].notna()
    assert (out.loc[has_days, "next_purchase_within_horizon"] >= 0.5 - 1e-9).all()
    assert (out.loc[~has_days & out["p_alive"].notna(), "next_purchase_within_horizon"] < 0.5 + 1e-9).all()
    reasons = out["churn_reasons"]
    assert reasons.map(lambda s: isinstance(s, str)).all() and (reasons != "").any()
    assert reasons[reasons != ""].str.contains(r"\(\+0\.\d\d\)").all()


def test_never_buyers_have_no_btyd_predictions(predicted):
    out, profile = predicted
    never = out.set_index("user_id").loc[profile.index[profile["orders"] == 0]]
    assert len(never) > 0
    cols = ["p_alive", "expected_purchases", "expected_spend", "clv", "clv_low", "clv_high",
            "next_purchase_days", "next_purchase_within_horizon"]
    assert never[cols].isna().all().all()
    assert never["churn_probability"].notna().all()


def test_pareto_and_mbgnbd_run(shop):
    con = _con()
    for model in ("pareto", "mbgnbd"):
        out = predict(**shop, as_of=AS_OF, horizon_days=30, settings=Settings(), engine="duckdb",
                      execute=con.execute, model=model)
        assert out["p_alive"].notna().any() and out["next_purchase_within_horizon"].dropna().between(0, 1).all()
    with pytest.raises(InputError, match="model"):
        predict(**shop, as_of=AS_OF, horizon_days=30, settings=Settings(), engine="duckdb",
                execute=con.execute, model="lstm")


def test_few_repeat_buyers_fall_back_to_mean_spend_with_a_warning(shop, monkeypatch):
    import userstrata.models.predict as predict_module

    monkeypatch.setattr(predict_module, "MIN_REPEATERS", 10**9)  # as if the shop had too few repeaters
    con = _con()
    with pytest.warns(UserWarning, match="mean spend per repeat purchase day"):
        out = predict(**shop, as_of=AS_OF, horizon_days=HORIZON, settings=Settings(), engine="duckdb",
                      execute=con.execute)
    summary = con.execute(btyd_summary(shop["orders"], as_of=AS_OF, clock=Clock()))
    buyers = out[out["p_alive"].notna()]
    repeat_mean = summary.loc[summary["frequency"] > 0, "monetary_mean"].mean()
    assert np.allclose(buyers["expected_spend"], repeat_mean)
    assert buyers["clv"].notna().all() and out["clv_low"].isna().all() and out["clv_high"].isna().all()
    # point CLV = spend x discounted expected purchases: positive wherever purchases are expected
    assert (buyers["clv"] > 0).all()


def test_a_degenerate_fit_warns():
    # 30 one-off buyers in May, 4 of whom came back on the same day: the MLE runs off to the boundary
    rows = [order(f"a{i}", f"u{i}", f"2024-05-{1 + i % 28:02d} 04:00", 10.0 + i) for i in range(30)]
    rows += [order(f"b{i}", f"u{i}", "2024-06-20 04:00", 40.0) for i in range(4)]
    tables = dict(users=table("users"), orders=table("orders", rows), order_items=table("order_items"),
                  events=table("events"))
    with pytest.warns(UserWarning, match="degenerate"):
        out = predict(**tables, as_of=AS_OF, horizon_days=30, settings=Settings(), engine="duckdb",
                      execute=_con().execute)
    assert len(out) == 30 and out["churn_probability"].notna().all()


def test_with_profile_puts_the_profile_columns_first(shop, predicted):
    plain, profile = predicted
    con = _con()
    both = predict(**shop, as_of=AS_OF, horizon_days=HORIZON, settings=Settings(), engine="duckdb",
                   execute=con.execute, with_profile=True)
    assert list(both.columns) == ["user_id", *profile.columns, *PREDICTION_COLUMNS[1:]]
    pd.testing.assert_frame_equal(both[list(PREDICTION_COLUMNS)], plain, check_dtype=False)
    pd.testing.assert_frame_equal(both.set_index("user_id")[list(profile.columns)], profile, check_dtype=False)
