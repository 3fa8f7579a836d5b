"""KPIs: hand-worked small shops (window edges, grains, rounding) and pandas on a simulated shop."""

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import event, order, table

from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.kpis import METRICS, NO_GROUP, kpis, periods_between
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

D = dt.date
USERS = [
    ("u1", "2024-05-01 02:00", "a", None),
    ("u2", "2024-05-01 03:00", "a", None),
    ("u3", "2024-05-02 04:00", "b", None),
    ("u4", "2024-04-20 04:00", None, None),
]
ORDERS = [
    order("o1", "u1", "2024-05-01 03:00", 100.0),
    order("o2", "u1", "2024-05-03 03:00", 50.0, status="partially_refunded", refund=20.0,
          refunded_at="2024-05-04 03:00"),
    order("o3", "u2", "2024-05-02 03:00", 30.0, status="cancelled"),  # never paid: not a purchase
    order("o4", "u4", "2024-05-02 03:00", 10.01),
    order("o5", "u4", "2024-04-25 03:00", 5.0),
]
EVENTS = [
    event("e1", "u3", "2024-05-02 04:00", "page_view"),
    event("e2", "u2", "2024-05-01 10:00", "login"),
    event("e3", None, "2024-05-01 10:00", "page_view"),  # anonymous: nobody is active
    event("e4", "u2", "2024-05-31 15:59", "login"),  # 23:59 on 05-31 in Shanghai
    event("e5", "u1", "2024-05-31 16:00", "login"),  # 00:00 on 06-01 in Shanghai
]


def run(*, users=USERS, orders=ORDERS, events=EVENTS, **options):
    return kpis(users=table("users", users), orders=table("orders", orders), events=table("events", events),
                order_items=table("order_items"), settings=Settings(), **options)


# each run compiles a dozen queries: the ones several tests read are run once
@pytest.fixture(scope="module")
def daily():
    return run(start=D(2024, 5, 1), end=D(2024, 5, 3), grain="day")


@pytest.fixture(scope="module")
def monthly():
    return run(start=D(2024, 4, 1), end=D(2024, 5, 31), grain="month")


def row(result, period_start, group=None):
    t = result.table
    hit = t[t.period_start == period_start]
    if group is not None:
        hit = hit[hit.group == group]
    assert len(hit) == 1
    return hit.iloc[0]


def test_daily_counts_money_and_repeat_buyers(daily):
    got = daily
    assert list(got.table.period_start) == [D(2024, 5, 1), D(2024, 5, 2), D(2024, 5, 3)]
    first, second, third = (row(got, D(2024, 5, d)) for d in (1, 2, 3))
    # 05-01: u1 bought, u2 logged in; the anonymous event counts nobody
    assert (first.active_users, first.new_users, first.paying_users, first.orders) == (2, 2, 1, 1)
    assert (first.gmv, first.net_revenue, first.arpu, first.arppu, first.aov) == (100, 100, 50, 100, 100)
    assert first.repurchase_rate == 0  # u1's first purchase ever
    # 05-02: u3's event, u4's purchase; u2's cancelled order is no activity and no purchase
    assert (second.active_users, second.new_users, second.paying_users, second.gmv) == (2, 1, 1, 10.01)
    assert second.repurchase_rate == 1  # u4 bought before, on 04-25
    # 05-03: the refund of o2 is paid out on 05-04: outside the range, but o2's refund rate counts it
    assert (third.gmv, third.refunds, third.net_revenue, third.refund_rate) == (50, 0, 50, 0.4)
    # churn: active the day before and not that day
    assert pd.isna(first.churn_rate)
    assert (second.churn_rate, third.churn_rate) == (1.0, 1.0)
    # first order on the registration day (day 1): u1 yes, u2 no; 7 days have not passed yet
    assert first.conversion_1d == 0.5 and pd.isna(first.conversion_7d)


def test_monthly_edges_rounding_and_stickiness(monthly):
    got = monthly
    april, may = row(got, D(2024, 4, 1)), row(got, D(2024, 5, 1))
    assert (april.active_users, april.new_users, april.paying_users, april.gmv) == (1, 1, 1, 5)
    assert april.repurchase_rate == 0
    # u4 registered 04-20, first bought 04-25: day 6 of its life
    assert (april.conversion_1d, april.conversion_7d, april.conversion_30d) == (0, 1, 1)
    # e4 (23:59 local on 05-31) is in May, e5 (00:00 local on 06-01) is not
    assert may.active_users == 4
    assert may.dau == pytest.approx(6 / 31)  # user-days: u1 x2, u2 x2, u3, u4
    assert (may.wau, may.mau) == (1, 4)  # 05-25..05-31: only u2; 05-02..05-31: everyone
    assert may.stickiness == pytest.approx(6 / 31 / 4)
    assert (may.gmv, may.refunds, may.net_revenue, may.orders) == (160.01, 20, 140.01, 3)
    assert may.arppu == 70.01  # 140.01 / 2 = 70.005, rounded half away from zero
    assert may.arpu == 35.0  # 140.01 / 4 = 35.0025
    assert may.aov == 53.34  # 160.01 / 3
    assert may.refund_rate == pytest.approx(20 / 160.01)
    assert may.repurchase_rate == 1
    assert may.churn_rate == 0  # u4, April's only active user, came back in May
    assert may.conversion_30d == pytest.approx(1 / 3) and may.conversion_1d == pytest.approx(1 / 3)


def test_period_window_clips_and_looks_back_for_churn():
    got = run(start=D(2024, 5, 2), end=D(2024, 5, 2), grain="day")
    only = got.table.iloc[0]
    assert (only.previous_active, only.churned, only.churn_rate) == (2, 2, 1.0)  # u1, u2 on 05-01
    weeks = periods_between(D(2024, 5, 1), D(2024, 5, 13), "week")
    assert list(weeks.period_start) == [D(2024, 5, 1), D(2024, 5, 6), D(2024, 5, 13)]
    assert list(weeks.period_end) == [D(2024, 5, 5), D(2024, 5, 12), D(2024, 5, 13)]
    assert list(weeks.days) == [5, 7, 1]
    got = run(start=D(2024, 5, 2), end=D(2024, 5, 6), grain="week")
    first = row(got, D(2024, 5, 2))
    assert (first.days, first.active_users) == (4, 3)  # u1 05-03, u3 and u4 05-02; u2's 05-01 is outside
    assert first.new_users == 1  # u3
    assert row(got, D(2024, 5, 6)).active_users == 0


def test_rolling_wau_mau_reach_before_the_range():
    got = run(start=D(2024, 5, 1), end=D(2024, 6, 1), grain="day", ltv_periods=0)
    first, last = row(got, D(2024, 5, 1)), row(got, D(2024, 6, 1))
    # 05-01: u1 and u2 that day, u4 on 04-25 (inside both the 7 and the 30 days)
    assert (first.active_users, first.wau, first.mau) == (2, 3, 3)
    # 06-01: u1; u2 on 05-31; the 30 days start on 05-03, so u3 and u4 (05-02) are out
    assert (last.active_users, last.wau, last.mau) == (1, 2, 2)
    assert len(got.table) == 32


def test_by_channel_groups_add_up_and_min_count_hides(monthly):
    got = run(start=D(2024, 5, 1), end=D(2024, 5, 31), grain="month", by="channel")
    t = got.table.set_index("group")
    assert t.loc["a", "active_users"] == 2 and t.loc["b", "active_users"] == 1
    assert t.loc[NO_GROUP, "active_users"] == 1  # u4 has no channel
    total = monthly.table.iloc[1]  # May
    for col in ("active_users", "new_users", "paying_users", "orders", "gmv_cents", "refunds_cents"):
        assert t[col].sum() == total[col]
    hidden = run(start=D(2024, 5, 1), end=D(2024, 5, 31), grain="month", by="channel", min_count=2)
    h = hidden.table.set_index("group")
    assert h.loc["a", "active_users"] == 2 and pd.isna(h.loc["b", "active_users"])
    assert pd.isna(h.loc["a", "gmv"])  # a's money rests on one paying user
    assert "gmv_cents" not in h.columns  # the raw counts would undo the hiding


def test_by_cohort_names_the_registration_period():
    got = run(start=D(2024, 5, 1), end=D(2024, 5, 31), grain="month", by="cohort", ltv_periods=0)
    t = got.table.set_index("group")
    assert t.loc["2024-05-01", "active_users"] == 3 and t.loc["2024-04-01", "active_users"] == 1


def test_ltv_by_acquisition_cohort_counts_complete_periods_only(monthly):
    ltv = monthly.ltv.set_index(["cohort_start", "age"])["ltv"]
    assert ltv[(D(2024, 4, 1), 0)] == 5 and ltv[(D(2024, 4, 1), 1)] == 15.01
    assert ltv[(D(2024, 5, 1), 0)] == 43.33  # (100 + 50 - 20) / 3
    assert (D(2024, 5, 1), 1) not in ltv.index  # June has not ended


@pytest.mark.slow  # one profile per period
def test_by_tier_uses_the_profile_at_period_end():
    from builders import run_profile  # noqa: PLC0415

    got = run(start=D(2024, 5, 1), end=D(2024, 5, 31), grain="month", by="tier")
    profile = run_profile(users=USERS, orders=ORDERS, events=EVENTS, as_of=D(2024, 5, 31))
    active = {"u1", "u2", "u3", "u4"}
    expected = profile.loc[sorted(active), "tier"].value_counts()
    t = got.table.set_index("group")
    for tier, n in expected.items():
        assert t.loc[tier, "active_users"] == n
    assert t["active_users"].sum() == 4


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="grain 'year'"):
        run(start=D(2024, 5, 1), end=D(2024, 5, 3), grain="year")
    with pytest.raises(InputError, match="empty"):
        run(start=D(2024, 5, 3), end=D(2024, 5, 1))
    with pytest.raises(InputError, match="by 'city'"):
        run(start=D(2024, 5, 1), end=D(2024, 5, 3), by="city")
    with pytest.raises(InputError, match="at most"):
        run(start=D(2024, 1, 1), end=D(2024, 5, 3), by="tier")


def test_chart_has_a_line_per_metric_in_both_languages(daily):
    got = daily
    fig = got.chart(["active_users", "gmv"], lang="zh")
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    assert "核心指标" in fig.layout.title.text and fig.data[0].name == "活跃用户"
    assert list(fig.data[1].y) == [100, 10.01, 50]
    assert "KPIs" in got.chart(lang="en").layout.title.text
    assert set(got.labelled("zh").columns) >= {"客单价", "复购率"}
    assert set(METRICS) <= set(got.table.columns)


# -- simulated shop: the engine against plain pandas ---------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    files = simulate_shop(150, tmp_path_factory.mktemp("sim"), seed=7, end=D(2024, 6, 30))
    frames = {}
    for name in ("users", "orders", "events", "order_items"):
        spec = CANONICAL[name]
        f = pd.read_parquet(files[name])
        for col in spec.columns:
            if col not in f:
                f[col] = None
        frames[name] = f[list(spec.columns)]
    return frames


def _local_day(ts: pd.Series) -> pd.Series:
    return (pd.to_datetime(ts) + pd.Timedelta(hours=8)).dt.date  # Asia/Shanghai has no DST since 1991


@pytest.mark.parametrize("grain", ["day", pytest.param("week", marks=pytest.mark.slow), "month"])
def test_simulated_shop_matches_pandas(sim, grain):
    tables = {n: ibis.memtable(f, schema=CANONICAL[n].schema) for n, f in sim.items()}
    start, end = D(2024, 3, 6), D(2024, 6, 30)
    got = kpis(**tables, start=start, end=end, grain=grain, settings=Settings()).table

    def period(days: pd.Series) -> pd.Series:
        d = pd.to_datetime(days)
        if grain == "week":
            d = d - pd.to_timedelta(d.dt.day_of_week, unit="D")
        elif grain == "month":
            d = d.dt.to_period("M").dt.start_time
        return d.dt.date.clip(lower=start)

    o, e = sim["orders"], sim["events"]
    bought = o[o.status.isin(PURCHASE_STATUSES) & o.user_id.notna()].assign(day=lambda f: _local_day(f.ts))
    acts = pd.concat([bought[["user_id", "day"]],
                      e[e.user_id.notna()].assign(day=lambda f: _local_day(f.ts))[["user_id", "day"]]])
    acts = acts[(acts.day >= start) & (acts.day <= end)].assign(p=lambda f: period(f.day))
    inside = bought[(bought.day >= start) & (bought.day <= end)].assign(p=lambda f: period(f.day))
    want_active = acts.groupby("p").user_id.nunique()
    want_gmv = inside.groupby("p").amount.apply(lambda a: (a * 100).round().sum() / 100)
    want_paying = inside.groupby("p").user_id.nunique()
    t = got.set_index("period_start")
    assert (t.active_users[t.active_users > 0] == want_active.reindex(t.index[t.active_users > 0])).all()
    assert t.active_users.sum() == want_active.sum()
    pd.testing.assert_series_equal(t.gmv[t.orders > 0], want_gmv, check_names=False, check_index_type=False)
    assert t.paying_users.sum() == want_paying.sum()


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop_file(tmp_path_factory):
    from userstrata.workspace import Workspace  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("cli")
    files = simulate_shop(120, folder / "files", seed=5, end=D(2024, 6, 30))
    with Workspace.open(folder / "shop.duckdb", settings=Settings()) as ws:
        for name in ("users", "orders", "events"):
            ws.load(name, files[name])
    return folder / "shop.duckdb"


def invoke(*args):
    from typer.testing import CliRunner  # noqa: PLC0415

    import userstrata.cli.kpis  # noqa: F401, PLC0415 - registers the commands
    from userstrata.cli import _app, app  # noqa: PLC0415

    _app.console.width = 250
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cli_kpis_prints_writes_and_draws(shop_file, tmp_path):
    from userstrata.workspace import Workspace  # noqa: PLC0415

    res = invoke("kpis", "--from", "2024-04-01", "--to", "2024-06-30", "--grain", "month", "--lang", "zh",
                 "--chart", tmp_path / "kpis.html", "--out", tmp_path / "kpis.csv", "-w", shop_file)
    assert res.exit_code == 0, res.output
    assert "核心指标" in res.output and "客单价" in res.output and "获客批次" in res.output
    written = pd.read_csv(tmp_path / "kpis.csv")
    assert "活跃用户" in written.columns and len(written) == 3
    with Workspace.open(shop_file, settings=Settings()) as ws:
        want = kpis(**ws._inputs(), start=D(2024, 4, 1), end=D(2024, 6, 30), grain="month").table
    assert written["活跃用户"].tolist() == want["active_users"].tolist()
    assert (tmp_path / "kpis.html").read_text(encoding="utf-8").count("plotly") > 1
    bad = invoke("kpis", "--grain", "year", "-w", shop_file)
    assert bad.exit_code == 2


def test_cli_retention_table_summary_and_heatmap(shop_file, tmp_path):
    res = invoke("retention", "--from", "2024-05-01", "--to", "2024-06-30", "--period", "week", "--periods", "4",
                 "--mode", "recurring", "--cohort-by", "first_purchase", "--chart", tmp_path / "r.png",
                 "--min-count", "3", "-w", shop_file)
    assert res.exit_code == 0, res.output
    assert "Retention (Recurring" in res.output and "D7 retention" in res.output
    assert "Cells under 3 users hidden" in res.output
    assert (tmp_path / "r.png").stat().st_size > 1000
    bad = invoke("retention", "--mode", "sticky", "-w", shop_file)
    assert bad.exit_code == 2 and "first_time" in bad.output
