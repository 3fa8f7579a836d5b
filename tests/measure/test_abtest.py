"""A/B statistics against published reference cases and textbook formulas; the engine part
(assignment, outcome windows, sums per variant) against hand-worked tables and plain pandas."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from builders import order, table
from userstrata.measure import abtest as ab
from userstrata.measure import stats as st

# -- published reference cases ----------------------------------------------------------------
# GrowthBook gbstats (MIT), packages/stats/tests/frequentist/test_tests.py: inputs as
# (n, sum, sum of squares); expected values to 5 decimals as published there.
A_3407 = st.MeanStat(3407, 1396.87, 52377.9767)
A_3000 = st.MeanStat(3000, 1396.87, 52377.9767)
B_3461 = st.MeanStat(3461, 2422.7, 134698.29)


def _r(effect: st.Effect) -> tuple:
    return tuple(round(float(x), 5) for x in (effect.estimate, effect.ci_low, effect.ci_high, effect.stddev,
                                              effect.p_value))


def test_gbstats_two_sided_ttest_relative():  # test_two_sided_ttest
    assert _r(st.compare(A_3407, B_3461, relative=True)) == (0.70732, -0.03526, 1.44989, 0.37879, 0.06191)


def test_gbstats_two_sided_ttest_absolute():  # test_two_sided_ttest_absolute
    assert _r(st.compare(A_3407, B_3461)) == (0.29, 0.04538, 0.53462, 0.12478, 0.02016)


def test_gbstats_two_sided_ttest_binomial():  # test_two_sided_ttest_binom
    got = st.compare(st.ProportionStat(28, 14), st.ProportionStat(30, 16), relative=True)
    assert _r(got) == (round((16 / 30 - 0.5) / 0.5, 5), -0.47767, 0.61101, 0.2717, 0.80707)


def test_gbstats_sequential_mean():  # TestSequentialTTest.test_sequential_test_runs
    got = st.compare(A_3000, B_3461, relative=True, sequential=True, tuning=1000)
    assert _r(got) == (0.50336, -0.55844, 1.56516, 0.33341, 1.0)


def test_gbstats_sequential_proportion():  # test_sequential_test_runs_prop (default tuning 5000)
    got = st.compare(st.ProportionStat(3000, 1396), st.ProportionStat(3461, 2422), relative=True, sequential=True)
    assert _r(got) == (0.50386, 0.40098, 0.60675, 0.03386, 0.0)


def test_gbstats_sequential_cuped_with_given_theta():  # test_sequential_test_runs_ra (theta=0.5 version)
    a = st.AdjustedStat(3000, A_3000, st.MeanStat(3000, 16.87, 527.9767), 12525, theta=0.5)
    b = st.AdjustedStat(3461, B_3461, st.MeanStat(3461, 22.7, 1348.29), 3333, theta=0.5)
    assert _r(st.compare(a, b, relative=True, sequential=True)) == (0.50236, -0.43745, 1.44217, 0.3093, 1.0)


def test_gbstats_sequential_cuped_with_pooled_theta():  # test_sequential_test_runs_ra (theta=None version)
    a = st.AdjustedStat(3000, A_3000, st.MeanStat(3000, 16.87, 527.9767), 1)
    b = st.AdjustedStat(3461, B_3461, st.MeanStat(3461, 22.7, 1348.29), 1)
    assert _r(st.compare(a, b, relative=True, sequential=True)) == (0.50338, -0.50969, 1.51646, 0.33341, 1.0)


def test_gbstats_srm():  # packages/stats/tests/test_gbstats.py::test_srm, 9 decimals
    assert round(st.srm_p_value([1000, 1200], [0.5, 0.5]), 9) == 0.000020079


def test_sequential_tuning_is_tightest_near_the_sample_size():  # test_sequential_test_tuning_as_expected
    width = {t: (lambda e: e.ci_high - e.ci_low)(st.compare(A_3000, B_3461, sequential=True, tuning=t))
             for t in (10, 6461, 10000)}
    assert width[6461] < width[10000] < width[10]
    assert width[6461] > (lambda e: e.ci_high - e.ci_low)(st.compare(A_3000, B_3461))  # the price of peeking


# -- textbook checks on raw values --------------------------------------------------------------
def _mean_stat(x: np.ndarray) -> st.MeanStat:
    return st.MeanStat(len(x), float(x.sum()), float((x**2).sum()))


def test_welch_matches_scipy_on_raw_values():
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 3, 40), rng.normal(11.5, 6, 55)
    ref = sps.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    got = st.compare(_mean_stat(a), _mean_stat(b))
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert got.estimate == pytest.approx(b.mean() - a.mean())


def test_ratio_metric_delta_method_by_linearisation():
    # Var(sum M / sum D) ~ Var(M - R D) / (n mean(D)^2): the linearised form of the delta method
    rng = np.random.default_rng(2)
    orders = rng.poisson(2, 500) + 1
    revenue = orders * rng.gamma(4, 25, 500)
    stat = st.RatioStat(500, _mean_stat(revenue), _mean_stat(orders.astype(float)), float((revenue * orders).sum()))
    ratio = revenue.sum() / orders.sum()
    assert stat.mean == pytest.approx(ratio)
    linear = revenue - ratio * orders
    assert stat.variance / 500 == pytest.approx(linear.var(ddof=1) / 500 / orders.mean() ** 2, rel=1e-9)


def test_cuped_theta_is_the_pooled_regression_slope_and_reduces_variance():
    rng = np.random.default_rng(3)
    pre_a, pre_b = rng.gamma(2, 50, 300), rng.gamma(2, 50, 320)
    post_a, post_b = 0.8 * pre_a + rng.normal(0, 20, 300), 0.8 * pre_b + 5 + rng.normal(0, 20, 320)
    a = st.AdjustedStat(300, _mean_stat(post_a), _mean_stat(pre_a), float((post_a * pre_a).sum()))
    b = st.AdjustedStat(320, _mean_stat(post_b), _mean_stat(pre_b), float((post_b * pre_b).sum()))
    slope = np.polyfit(np.r_[pre_a, pre_b], np.r_[post_a, post_b], 1)[0]
    assert st.pooled_theta(a, b) == pytest.approx(slope, rel=1e-9)
    adjusted, plain = st.compare(a, b), st.compare(a.post, b.post)
    theta = slope
    expected = (post_b - theta * pre_b).mean() - (post_a - theta * pre_a).mean()
    assert adjusted.estimate == pytest.approx(expected, rel=1e-9)
    assert adjusted.stddev < plain.stddev / 2


def test_holm_textbook_example():
    # Holm (1979): p sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1, running maximum
    got = st.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])


def test_srm_flags_52_48_on_100k_and_not_50_50():
    assert st.srm_p_value([52_000, 48_000], [1, 1]) < 1e-6
    assert st.srm_p_value([50_000, 50_000], [1, 1]) == pytest.approx(1.0)
    assert st.srm_p_value([50_150, 49_850], [1, 1]) > ab.SRM_ALPHA
    # a planned 45/45/10 split is not a mismatch; read as 1:1:1 it is
    assert st.srm_p_value([4_500, 4_480, 1_020], [45, 45, 10]) > 0.05
    assert st.srm_p_value([4_500, 4_480, 1_020], [1, 1, 1]) < 1e-6


def test_users_for_power_textbook():
    # two proportions 10% vs 12%, 80% power, alpha 0.05: (1.96 + 0.8416)^2 (0.09 + 0.1056) / 0.02^2 per arm
    per_arm = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2 * (0.09 + 0.1056) / 0.02**2
    assert st.users_for_power(0.09, 0.1056, 0.02) == pytest.approx(2 * per_arm)
    assert round(per_arm) == 3838


@pytest.mark.slow
def test_interval_covers_a_known_effect_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    reps, hits, rel_hits = 4000, 0, 0
    for _ in range(reps):
        a, b = rng.exponential(10, 400), rng.exponential(12, 380)  # true difference 2, lift 0.2
        da, db = _mean_stat(a), _mean_stat(b)
        e, r = st.compare(da, db), st.compare(da, db, relative=True)
        hits += e.ci_low <= 2 <= e.ci_high
        rel_hits += r.ci_low <= 0.2 <= r.ci_high
    assert 0.94 <= hits / reps <= 0.96
    assert 0.935 <= rel_hits / reps <= 0.965


# -- the engine part ---------------------------------------------------------------------------
def _touch(tid, user, ts, variant, campaign="spring"):
    return (tid, user, ts, "sms", campaign, variant, None)


TOUCHES = [
    _touch("t1", "u1", "2024-06-01 10:00", "A"),
    _touch("t2", "u1", "2024-06-03 10:00", "B"),       # mixed: stays in A (first touch)
    _touch("t3", "u2", "2024-06-01 12:00", "B"),
    _touch("t4", "u3", "2024-06-02 00:00", "A"),
    _touch("t5", "u4", "2024-06-02 00:00", "holdout"),
    _touch("t6", "u5", "2024-06-02 00:00", "B", campaign="other"),
]
ORDERS = [
    order("o1", "u1", "2024-06-01 10:00", 100.0),                  # at assignment: in the window
    order("o2", "u1", "2024-06-15 09:59", 50.0, refund=20.0),      # last minute of 14 days: net 30
    order("o3", "u1", "2024-06-15 10:00", 70.0),                   # window closed
    order("o4", "u2", "2024-06-01 11:59", 40.0),                   # before: pre-period
    order("o5", "u2", "2024-06-05 00:00", 19.99, status="cancelled"),  # not a purchase
    order("o6", "u3", "2024-05-18 23:59", 10.0),                   # 14 d + 1 min before: neither
    order("o7", "u3", "2024-06-03 00:00", 25.5),
    order("o8", "u4", "2024-06-03 00:00", 8.0),
    order("o9", "u5", "2024-06-03 00:00", 8.0),                    # other campaign
]


def _run(expr):
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr)


def test_assignment_takes_each_users_first_touch():
    got = _run(ab.campaign_assignments(table("touches", TOUCHES), "spring")).set_index("user_id").sort_index()
    assert list(got.index) == ["u1", "u2", "u3", "u4"]
    assert list(got["variant"]) == ["A", "B", "A", "holdout"]
    assert list(got["n_variants"]) == [2, 1, 1, 1]
    assert got.loc["u1", "assigned_at"] == pd.Timestamp("2024-06-01 10:00")


def test_outcome_windows_and_refunds():
    units = ab.campaign_assignments(table("touches", TOUCHES), "spring")
    got = _run(ab.user_outcomes(units, table("orders", ORDERS), window_days=14)).set_index("user_id").sort_index()
    assert got.loc["u1", ["post_orders", "post_cents", "pre_orders"]].tolist() == [2, 13000, 0]
    assert got.loc["u2", ["post_orders", "post_cents", "pre_orders", "pre_cents"]].tolist() == [0, 0, 1, 4000]
    assert got.loc["u3", ["post_orders", "post_cents", "pre_orders"]].tolist() == [1, 2550, 0]
    assert got.loc["u4", ["post_orders", "post_cents"]].tolist() == [1, 800]


def test_results_on_a_small_table():
    units = ab.campaign_assignments(table("touches", TOUCHES), "spring")
    res = ab.ab_test(units, table("orders", ORDERS), experiment="spring", cost=10.0, execute=_run)
    v = res.variants.set_index("variant")
    assert v.loc["A", "users"] == 2 and v.loc["A", "converters"] == 2
    assert v.loc["A", "revenue_per_user"] == pytest.approx((130 + 25.5) / 2)
    assert v.loc["A", "revenue_per_order"] == pytest.approx((130 + 25.5) / 3)
    assert v.loc["B", "conversion_rate"] == 0
    assert res.mixed_users == 1
    assert list(res.effects["variant"]) == ["B"] * 4 and set(res.effects["control"]) == {"A"}
    conv = res.effects.set_index("metric").loc["conversion"]
    assert conv["effect"] == pytest.approx(-1.0)
    roi = res.roi.iloc[0]  # treated: u1 130, u2 0, u3 25.5 -> 51.83 per user; holdout 8
    assert roi["incremental_revenue"] == pytest.approx(((130 + 25.5) / 3 - 8) * 3)
    assert roi["net_revenue"] == pytest.approx(roi["incremental_revenue"] - 10)
    excluded = ab.ab_test(units, table("orders", ORDERS), mixed="exclude", execute=_run)
    assert excluded.variants.set_index("variant").loc["A", "users"] == 1


def test_file_assignments_validate_and_fill_start():
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "variant": ["A", "B"]})
    got = _run(ab.file_assignments(frame, start=dt.datetime(2024, 5, 31, 16)))
    assert (got["assigned_at"] == pd.Timestamp("2024-05-31 16:00")).all()
    with pytest.raises(Exception, match="assigned_at"):
        ab.file_assignments(frame)
    with pytest.raises(Exception, match="2 variants"):
        ab.file_assignments(pd.DataFrame({"user_id": ["u1", "u1"], "variant": ["A", "B"]}), start=dt.datetime(2024, 6, 1))
    with pytest.raises(Exception, match="variant"):
        ab.file_assignments(pd.DataFrame({"user_id": ["u1"]}), start=dt.datetime(2024, 6, 1))


def _simulated(n=4000, seed=11, lift=0.06):
    """Users assigned 50/50 at noon; B converts 6 points more than A; a pre-period order predicts spend."""
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(n)]
    variant = rng.choice(["A", "B"], n)
    touches, orders = [], []
    for i, (u, v) in enumerate(zip(users, variant)):
        touches.append(_touch(f"t{i}", u, "2024-06-10 12:00", v))
        loyal = rng.random() < 0.3
        if loyal:
            orders.append(order(f"p{i}", u, "2024-06-05 08:00", float(rng.integers(50, 300))))
        if rng.random() < (0.10 if v == "A" else 0.10 + lift) + 0.2 * loyal:
            for k in range(int(rng.integers(1, 3))):
                orders.append(order(f"o{i}_{k}", u, f"2024-06-1{2 + k} 09:00", round(float(rng.gamma(3, 30)), 2),
                                    refund=5.0 if k else 0.0))
    return table("touches", touches), table("orders", orders)


def test_variant_sums_match_plain_pandas():
    touches, orders = _simulated(1500)
    sums = _run(ab.variant_sums(ab.user_outcomes(ab.campaign_assignments(touches, "spring"), orders))).set_index("variant")
    t, o = touches.to_pandas(), orders.to_pandas()
    o["net"] = (o["amount"] * 100).round() - (o["refund_amount"] * 100).round()
    post = o[(o["ts"] >= pd.Timestamp("2024-06-10 12:00")) & (o["ts"] < pd.Timestamp("2024-06-24 12:00"))]
    per = t.set_index("user_id")[["variant"]].join(post.groupby("user_id").agg(cents=("net", "sum"), orders=("net", "size")))
    per = per.fillna(0)
    for v, g in per.groupby("variant"):
        assert sums.loc[v, "users"] == len(g)
        assert sums.loc[v, "converters"] == (g["orders"] > 0).sum()
        assert sums.loc[v, "cents"] == g["cents"].sum()
        assert sums.loc[v, "cents_squares"] == (g["cents"] ** 2).sum()
        assert sums.loc[v, "cents_orders_products"] == (g["cents"] * g["orders"]).sum()


def test_simulated_effect_is_found_and_cuped_narrows_revenue():
    touches, orders = _simulated()
    units = ab.campaign_assignments(touches, "spring")
    plain = ab.ab_test(units, orders, execute=_run).effects.set_index("metric")
    adjusted = ab.ab_test(units, orders, cuped=True, execute=_run).effects.set_index("metric")
    assert plain.loc["conversion", "significant"] and plain.loc["conversion", "effect"] > 0
    assert plain.loc["conversion", "effect_low"] < 0.06 < plain.loc["conversion", "effect_high"]
    width = lambda e: e["effect_high"] - e["effect_low"]  # noqa: E731
    assert width(adjusted.loc["revenue"]) < width(plain.loc["revenue"])


def test_verdict_and_chart(tmp_path):
    touches, orders = _simulated()
    res = ab.ab_test(ab.campaign_assignments(touches, "spring"), orders, execute=_run)
    zh, en = res.verdict("zh"), res.verdict("en")
    assert zh[0].startswith("B 的转化率比 A 高") and "个百分点（95% 区间" in zh[0] and zh[0].count("显著") == 1
    assert en[0].startswith("B's conversion is") and "higher than A's" in en[0]
    fig = res.chart("conversion", "zh")
    assert fig.layout.title.text.startswith("相对 A 的提升") and fig.data[0].y[0] == pytest.approx(
        res.effects.iloc[0]["relative"] * 100)
    for name in ("lift.html", "lift.png"):
        from userstrata import charts

        assert charts.save(fig, tmp_path / name).stat().st_size > 1000


def test_no_difference_verdict_says_how_many_more_users():
    touches, orders = _simulated(600, seed=5, lift=0.0)  # no true effect
    res = ab.ab_test(ab.campaign_assignments(touches, "spring"), orders, metrics=["orders"], execute=_run)
    row = res.effects.iloc[0]
    assert not row["significant"] and row["users_needed"] > 0
    assert "no significant difference" in res.verdict("en")[0]
    assert f"{row['users_needed']:,.0f} more users" in res.verdict("en")[0]
    assert "无显著差异" in res.verdict("zh")[0]


def test_srm_is_part_of_the_result():
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(1000)], "variant": ["A"] * 560 + ["B"] * 440})
    res = ab.ab_test(ab.file_assignments(frame, start=dt.datetime(2024, 6, 1)), table("orders", []), execute=_run)
    assert res.srm_flagged and res.verdict("en")[0].startswith("sample ratio mismatch")
    ok = ab.ab_test(ab.file_assignments(frame, start=dt.datetime(2024, 6, 1)), table("orders", []),
                    weights={"A": 56, "B": 44}, execute=_run)
    assert not ok.srm_flagged


def test_cli_abtest(tmp_path):
    import userstrata.cli.abtest  # noqa: F401 - registers the command
    from userstrata.cli import app
    from userstrata.workspace import Workspace

    touches, orders = _simulated(800)
    path = tmp_path / "shop.duckdb"
    with Workspace.open(path) as ws:
        ws.load_frame("orders", orders.to_pandas(), source="orders")
        ws.load_frame("touches", touches.to_pandas(), source="touches")
    runner = CliRunner()
    result = runner.invoke(app, ["abtest", "spring", "-w", str(path), "--lang", "zh", "--chart",
                                 str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "结论" in result.output and "转化率" in result.output and (tmp_path / "c.png").exists()
    missing = runner.invoke(app, ["abtest", "nope", "-w", str(path)])
    assert missing.exit_code == 2 and "no assigned users" in missing.output


def test_the_command_module_starts_without_scipy():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-X", "importtime", "-c", "import userstrata.cli.abtest"],
                         capture_output=True, text=True, check=True)
    heavy = [line for line in run.stderr.splitlines() if line.startswith("import time:")
             and line.split("|")[-1].strip().split(".")[0] in ("scipy", "sklearn", "matplotlib")]
    assert heavy == []


def _workspace_with_aliases(path, touches):
    """A workspace whose touches name u1 and u3 by the ids another system gave them (wx1, wx3),
    linked to u1 and u3 in the identities table; orders are under u1 and u3."""
    from userstrata.workspace import Workspace

    alias = {"u1": "wx1", "u3": "wx3"}
    aliased = [(t[0], alias.get(t[1], t[1]), *t[2:]) for t in touches]
    ws = Workspace.open(path)
    ws.load_frame("orders", table("orders", ORDERS).to_pandas(), source="orders")
    ws.load_frame("touches", table("touches", aliased).to_pandas(), source="touches")
    ws.load_frame("identities", pd.DataFrame({"source": ["user_id", "user_id"], "external_id": ["wx1", "wx3"],
                                              "user_id": ["u1", "u3"]}), source="identities")
    return ws


def test_touches_and_assignment_files_are_stitched_like_the_orders(tmp_path):
    # the same campaign as test_results_on_a_small_table, its touches under the other system's ids
    with _workspace_with_aliases(tmp_path / "w.duckdb", TOUCHES) as ws:
        res = ws.abtest("spring")
        v = res.variants.set_index("variant")
        assert v.loc["A", "users"] == 2 and v.loc["A", "converters"] == 2
        assert v.loc["A", "revenue_per_user"] == pytest.approx((130 + 25.5) / 2)
        assert res.mixed_users == 1  # wx1 (A) then u1 (B) is one person touched with two variants
        # an assignment file naming one person by both ids, in two variants: one mixed user, kept
        # in the smaller variant name when both were assigned at once
        frame = pd.DataFrame({"user_id": ["wx1", "u1", "u2", "wx3", "u4"], "variant": ["B", "A", "B", "A", "holdout"]})
        filed = ws.abtest("spring", assignments=frame, start=dt.datetime(2024, 6, 1, 10))
        assert filed.mixed_users == 1
        assert filed.variants.set_index("variant").loc["A", "users"] == 2  # u1 and u3 (as wx3)
        assert filed.variants.set_index("variant").loc["A", "converters"] == 2
        dropped = ws.abtest("spring", assignments=frame, start=dt.datetime(2024, 6, 1, 10), mixed="exclude")
        assert dropped.variants.set_index("variant").loc["A", "users"] == 1
