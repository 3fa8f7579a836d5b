"""A/B results on DuckDB and on Spark: the per-user outcomes, the per-variant sums and the
results computed from them are the same on both engines."""

import pandas as pd
import pytest
from parity import _same_frames

from userstrata.measure import abtest as ab

pytestmark = pytest.mark.spark


def _campaign(ws) -> str:
    """The campaign with the most assigned users (ties by name)."""
    t = ws.table("touches")
    counts = t.filter(t.variant.notnull()).group_by("campaign").agg(users=t.user_id.nunique()).to_pandas()
    return counts.sort_values(["users", "campaign"], ascending=[False, True]).iloc[0]["campaign"]


def _outcomes(ws, campaign, window_days=14) -> pd.DataFrame:
    units = ab.campaign_assignments(ws.table("touches"), campaign)
    return ws.store.con.execute(ab.user_outcomes(units, ws.table("orders"), window_days=window_days))


def test_user_outcomes_identical(on_duckdb, on_spark):
    campaign = _campaign(on_duckdb)
    assert _campaign(on_spark) == campaign
    duck, spark = _outcomes(on_duckdb, campaign), _outcomes(on_spark, campaign)
    assert len(duck) > 100 and duck["post_orders"].sum() > 0
    for frame in (duck, spark):
        for col in ("post_orders", "post_cents", "pre_orders", "pre_cents", "n_variants"):
            frame[col] = frame[col].astype("int64")
    _same_frames(duck, spark)


@pytest.mark.parametrize("options", [{}, {"cuped": True, "sequential": True, "mixed": "exclude"}])
def test_results_identical(on_duckdb, on_spark, options):
    campaign = _campaign(on_duckdb)
    results = []
    for ws in (on_duckdb, on_spark):
        units = ab.campaign_assignments(ws.table("touches"), campaign)
        results.append(ab.ab_test(units, ws.table("orders"), experiment=campaign, cost=100.0,
                                  execute=ws.store.con.execute, **options))
    duck, spark = results
    _same_frames(duck.variants, spark.variants, key="variant")
    _same_frames(duck.effects, spark.effects, key=["metric", "variant"])
    _same_frames(duck.roi, spark.roi, key="treated_users")
    assert duck.srm_p_value == spark.srm_p_value and duck.verdict("zh") == spark.verdict("zh")
