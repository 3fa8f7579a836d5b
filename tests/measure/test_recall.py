"""Recall success rate (召回成功率): hand-made boundary cases, textbook intervals, pandas on a
simulated shop, the command line."""

import datetime as dt
import math

import ibis
import pandas as pd
import pytest
from builders import canonical_frames, event, order, table

from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.recall import HOLDOUT, TREATED, recall, recall_users
from userstrata.measure.stats import normal_mean, wilson
from userstrata.measure import stats as st
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

# The touch: 2024-06-01 10:00 in Shanghai (02:00 UTC); its local day T = 06-01.
TOUCH = "2024-06-01 02:00"


def touch(tid, user, ts=TOUCH, *, campaign="c1", variant="A", channel="sms"):
    return (tid, user, ts, channel, campaign, variant, None)


def states(touches, orders, events=None, **options):
    got = recall_users(table("touches", touches), table("orders", orders),
                       table("events", events or []), **options).to_pandas()
    return got.set_index("user_id")


# -- dormancy at contact ----------------------------------------------------------------------
def test_dormant_boundary_30_silent_days_vs_29():
    orders = [
        order("o1", "u30", "2024-05-01 02:00", 10.0),  # 05-01: 30 silent days (05-02..05-31) before T
        order("o2", "u29", "2024-05-02 02:00", 10.0),  # 05-02: 29 silent days
        order("o3", "u31", "2024-04-30 15:59", 10.0),  # 23:59 on 04-30 local: 31 silent days
    ]
    got = states([touch("t1", "u30"), touch("t2", "u29"), touch("t3", "u31")], orders)
    assert got.loc["u30", "state"] == "dormant"
    assert got.loc["u29", "state"] == "active"
    assert got.loc["u31", "state"] == "dormant"
    # with a 29-day rule the 29-day user is dormant too
    got = states([touch("t2", "u29")], orders, dormant_days=29)
    assert got.loc["u29", "state"] == "dormant"


def test_purchases_on_the_touch_day_before_it_make_the_user_active_after_it_a_return():
    orders = [
        order("o0", "u1", "2024-04-01 02:00", 10.0),
        order("o1", "u1", "2024-06-01 01:00", 10.0),  # 09:00 local, an hour before the touch
        order("o2", "u2", "2024-04-01 02:00", 10.0),
        order("o3", "u2", "2024-06-01 03:00", 7.5),  # an hour after the touch, same day
        order("o4", "u3", "2024-04-01 02:00", 10.0),
        order("o5", "u3", "2024-05-31 17:00", 8.0),  # 01:00 local on 06-01: the touch's day, before it
    ]
    got = states([touch("t1", "u1"), touch("t2", "u2"), touch("t3", "u3")], orders)
    assert got.loc["u1", "state"] == "active"
    assert got.loc["u2", "state"] == "dormant" and got.loc["u2", "returned"] == 1
    assert got.loc["u2", "return_cents"] == 750
    assert got.loc["u3", "state"] == "active"


def test_return_on_day_14_counts_day_15_does_not():
    orders = [
        order("o1", "u14", "2024-04-01 02:00", 10.0), order("o2", "u14", "2024-06-15 15:59", 20.0),  # 23:59 06-15
        order("o3", "u15", "2024-04-01 02:00", 10.0), order("o4", "u15", "2024-06-15 16:00", 20.0),  # 00:00 06-16
    ]
    got = states([touch("t1", "u14"), touch("t2", "u15")], orders)
    assert got.loc["u14", "returned"] == 1 and got.loc["u15", "returned"] == 0
    got = states([touch("t2", "u15")], orders, window_days=15)
    assert got.loc["u15", "returned"] == 1


def test_a_user_touched_twice_counts_once_from_the_first_touch():
    orders = [order("o1", "u1", "2024-04-01 02:00", 10.0),
              order("o2", "u1", "2024-06-20 03:00", 30.0)]  # 19 days after the first touch
    touches = [touch("t2", "u1", "2024-06-20 02:00"), touch("t1", "u1", TOUCH)]
    got = states(touches, orders)
    assert len(got) == 1 and str(got.loc["u1", "touch_ts"]) == "2024-06-01 02:00:00"
    assert got.loc["u1", "returned"] == 0
    # the tie on ts is broken by touch_id, and the first touch's variant sets the arm
    tied = states([touch("tb", "u1", variant=HOLDOUT), touch("ta", "u1", variant="B")], orders)
    assert tied.loc["u1", "arm"] == TREATED


def test_never_buyers_and_active_users_are_outside_the_denominator():
    orders = [
        order("o1", "u1", "2024-05-25 02:00", 10.0), order("o1b", "u1", "2024-06-02 02:00", 10.0),  # active
        order("o2", "u2", "2024-04-01 02:00", 10.0), order("o2b", "u2", "2024-06-03 02:00", 12.0),  # dormant, back
        order("o3", "u3", "2024-04-01 02:00", 10.0),  # dormant, not back
        order("o4", "u4", "2024-06-02 02:00", 99.0),  # never bought before: a first purchase, not a recall
        order("o5", "u5", "2024-04-01 02:00", 10.0, status="cancelled"),  # never paid: never bought
    ]
    touches = [touch(f"t{i}", f"u{i}") for i in range(1, 6)]
    r = recall(table("touches", touches), table("orders", orders))
    row = r.table.iloc[0]
    assert (row.touched, row.active_at_touch, row.never_active, row.dormant, row.returned) == (5, 1, 2, 2, 1)
    assert row.rate == 0.5 and row.revenue == 12.0 and row.revenue_per_dormant == 6.0
    assert len(r.effects) == 0  # no holdout arm


def test_refunds_are_netted_from_the_returners_revenue():
    orders = [order("o1", "u1", "2024-04-01 02:00", 10.0),
              order("o2", "u1", "2024-06-02 02:00", 50.0, status="partially_refunded", refund=20.0,
                    refunded_at="2024-06-03 02:00")]
    r = recall(table("touches", [touch("t1", "u1")]), table("orders", orders))
    assert r.table.iloc[0].revenue == 30.0


def test_activity_any_counts_events_for_dormancy_and_return():
    orders = [order("o1", "u1", "2024-03-01 02:00", 10.0), order("o2", "u2", "2024-03-01 02:00", 10.0)]
    events = [event("e1", "u1", "2024-05-20 02:00", "login"),  # active by events
              event("e2", "u2", "2024-06-05 02:00", "login")]  # back by an event
    by_purchase = states([touch("t1", "u1"), touch("t2", "u2")], orders, events)
    assert list(by_purchase.state) == ["dormant", "dormant"] and by_purchase.returned.sum() == 0
    any_ = states([touch("t1", "u1"), touch("t2", "u2")], orders, events, activity="any")
    assert any_.loc["u1", "state"] == "active"
    assert any_.loc["u2", "state"] == "dormant" and any_.loc["u2", "returned"] == 1
    assert any_.loc["u2", "return_cents"] == 0  # an event brings no money


# -- intervals -------------------------------------------------------------------------------
def test_wilson_textbook_values():
    # Wilson score interval for 7/20, z = 1.96 (Newcombe 1998, method 3): 0.1812 to 0.5671
    low, high = wilson(7, 20)
    assert (round(low, 4), round(high, 4)) == (0.1812, 0.5671)
    # 0/10: lower bound 0, upper z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775
    low, high = wilson(0, 10)
    assert low == 0 and round(high, 4) == 0.2775
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_normal_mean_interval_by_hand():
    values = [0, 0, 10, 20, 0, 30]
    n, mean = 6, 10.0
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5  # 12.649...
    low, high = normal_mean(st.MeanStat(n, sum(values), sum(v * v for v in values)))
    assert low == pytest.approx(mean - 1.959964 * sd / n**0.5, abs=1e-5)
    assert high == pytest.approx(mean + 1.959964 * sd / n**0.5, abs=1e-5)


def _arms(n_treated, back_treated, n_holdout, back_holdout):
    touches, orders = [], []
    for arm, n, back in ((TREATED, n_treated, back_treated), (HOLDOUT, n_holdout, back_holdout)):
        for i in range(n):
            u = f"{arm}{i}"
            touches.append(touch(f"t{u}", u, variant="A" if arm == TREATED else HOLDOUT,
                                 channel="sms" if i % 2 else "wechat"))
            orders.append(order(f"a{u}", u, "2024-04-01 02:00", 10.0))
            if i < back:
                orders.append(order(f"b{u}", u, "2024-06-05 02:00", 20.0))
    return table("touches", touches), table("orders", orders)


def test_incremental_recall_against_the_holdout():
    touches, orders = _arms(40, 14, 20, 3)
    r = recall(touches, orders)
    t = r.table.set_index("arm")
    assert (t.loc[TREATED, "dormant"], t.loc[TREATED, "returned"]) == (40, 14)
    assert (t.loc[HOLDOUT, "dormant"], t.loc[HOLDOUT, "returned"]) == (20, 3)
    assert t.loc[TREATED, "rate_low"] == pytest.approx(wilson(14, 40)[0])
    e = r.effects.iloc[0]
    assert e.incremental == pytest.approx(0.35 - 0.15)
    # Welch on 0/1 outcomes with per-unit variance p(1-p), written out
    va, vb = 0.15 * 0.85, 0.35 * 0.65
    se = (va / 20 + vb / 40) ** 0.5
    dof = (va / 20 + vb / 40) ** 2 / ((va / 20) ** 2 / 19 + (vb / 40) ** 2 / 39)
    from scipy import stats as sps

    half = sps.t.ppf(0.975, dof) * se
    assert e.incremental_low == pytest.approx(0.2 - half) and e.incremental_high == pytest.approx(0.2 + half)
    assert e.p_value == pytest.approx(2 * sps.t.sf(0.2 / se, dof))


def test_by_channel_splits_add_up_and_min_count_hides_small_cells():
    touches, orders = _arms(40, 14, 20, 3)
    whole = recall(touches, orders).table.set_index("arm")
    split = recall(touches, orders, by="channel")
    sums = split.table.groupby("arm")[["dormant", "returned", "touched"]].sum()
    assert (sums.loc[TREATED].tolist() == whole.loc[TREATED, ["dormant", "returned", "touched"]].tolist())
    assert set(split.table.group) == {"sms", "wechat"} and len(split.effects) == 2
    hidden = recall(touches, orders, by="channel", min_count=15).table.set_index(["group", "arm"])
    assert math.isnan(hidden.loc[("sms", HOLDOUT), "rate"])  # 10 dormant users
    assert hidden.loc[("sms", TREATED), "rate"] == pytest.approx(7 / 20)


def test_bad_options_say_what_was_expected():
    touches, orders = _arms(2, 1, 0, 0)
    with pytest.raises(InputError, match="dormant_days"):
        recall(touches, orders, dormant_days=0)
    with pytest.raises(InputError, match="by 'cohort'"):
        recall(touches, orders, by="cohort")
    with pytest.raises(InputError, match="has no touches") as info:
        recall(touches, orders, campaign="nope")
    assert "没有" in info.value.text("zh")


def test_chart_has_bars_with_error_bars_in_both_languages():
    touches, orders = _arms(40, 14, 20, 3)
    fig = recall(touches, orders).chart(lang="zh")
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert "召回" in fig.layout.title.text and fig.data[0].error_y.array is not None


# -- simulated shop: the engine against plain pandas ------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    files = simulate_shop(200, tmp_path_factory.mktemp("sim"), seed=3, end=dt.date(2024, 6, 30), days=150)
    frames = canonical_frames(files, ("orders", "touches"))
    return frames


def _pandas_recall(orders, touches, dormant_days=30, window=14):
    local = lambda ts: (pd.to_datetime(ts) + pd.Timedelta(hours=8)).dt.normalize()  # noqa: E731
    t = touches[touches.user_id.notna() & touches.campaign.notna()].sort_values(["ts", "touch_id"])
    first = t.groupby(["campaign", "user_id"], as_index=False).first()
    paid = orders[orders.status.isin(PURCHASE_STATUSES) & orders.user_id.notna()].copy()
    paid["day"] = local(paid.ts)
    paid["net"] = (paid.amount * 100).round().astype("int64") - (paid.refund_amount.fillna(0) * 100).round().astype("int64")
    rows = []
    for c in first.itertuples():
        mine = paid[paid.user_id == c.user_id]
        tday = local(pd.Series([c.ts])).iloc[0]
        before = mine[mine.ts < c.ts]
        if not len(before):
            continue
        if (tday - before.day.max()).days - 1 < dormant_days:
            continue
        back = mine[(mine.ts >= c.ts) & ((mine.day - tday).dt.days <= window)]
        rows.append((c.campaign, "holdout" if c.variant == "holdout" else "treated", 1, int(len(back) > 0),
                     int(back.net.sum())))
    f = pd.DataFrame(rows, columns=["campaign", "arm", "dormant", "returned", "cents"])
    return f.groupby(["campaign", "arm"]).sum()


def test_simulated_shop_matches_pandas(sim):
    orders = ibis.memtable(sim["orders"], schema=CANONICAL["orders"].schema)
    touches = ibis.memtable(sim["touches"], schema=CANONICAL["touches"].schema)
    got = recall(touches, orders).table.set_index(["campaign", "arm"]).sort_index()
    want = _pandas_recall(sim["orders"], sim["touches"])
    got = got[got.dormant > 0]
    assert len(want) > 5 and want.returned.sum() > 0
    assert got.dormant.tolist() == want.dormant.tolist()
    assert got.returned.tolist() == want.returned.tolist()
    assert (got.revenue * 100).round().astype("int64").tolist() == want.cents.tolist()


# -- the command line -------------------------------------------------------------------------
def test_cli_recall(tmp_path, monkeypatch):
    import userstrata.cli.recall  # noqa: F401 - registers the commands
    from userstrata.cli import _app

    monkeypatch.setattr(_app.console, "width", 250)
    from typer.testing import CliRunner

    from userstrata.cli import app
    from userstrata.workspace import Workspace

    touches, orders = _arms(40, 14, 20, 3)
    path = tmp_path / "shop.duckdb"
    with Workspace.open(path) as ws:
        ws.load_frame("orders", orders.to_pandas(), source="orders")
        ws.load_frame("touches", touches.to_pandas(), source="touches")
    runner = CliRunner()
    result = runner.invoke(app, ["recall", "c1", "-w", str(path), "--lang", "zh", "--by", "channel",
                                 "--chart", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "召回成功率" in result.output and "增量" in result.output and (tmp_path / "r.html").exists()
    assert "35.0%" in runner.invoke(app, ["recall", "-w", str(path)]).output
    missing = runner.invoke(app, ["recall", "nope", "-w", str(path)])
    assert missing.exit_code == 2 and "no touches" in missing.output


def test_a_return_window_past_the_last_day_in_the_data_is_said_once_not_before():
    from userstrata.errors import Notice

    base = [order("o1", "u1", "2024-04-01 02:00", 10.0), order("o2", "u2", "2024-04-01 02:00", 10.0)]
    touches = table("touches", [touch("t1", "u1"), touch("t2", "u2")])
    # the window of a touch on 06-01 ends on 06-15: data to 06-14 do not cover it, to 06-15 they do
    for last, expected in (("2024-06-14 02:00", 1), ("2024-06-15 02:00", 0)):
        orders = table("orders", [*base, order("o9", "other", last, 5.0)])
        with pytest.warns(Notice) if expected else _no_notice() as caught:
            recall(touches, orders, table("events", []), campaign="c1")
        said = [w for w in caught if issubclass(w.category, Notice)]
        assert len(said) == expected
        if expected:
            assert "2 dormant users" in str(said[0].message) and "2024-06-14" in str(said[0].message)


def _no_notice():
    import warnings

    class _Catch(warnings.catch_warnings):
        def __enter__(self):
            caught = super().__enter__()
            warnings.simplefilter("always")
            return caught

    return _Catch(record=True)


def test_touches_under_another_systems_ids_are_stitched_to_the_buyers(tmp_path):
    # the touches name each user by a WeChat-side id, linked to the shop's id in the identities
    from userstrata.workspace import Workspace

    touches, orders = _arms(40, 14, 20, 3)
    frame = touches.to_pandas()
    frame["user_id"] = "wx-" + frame["user_id"]
    links = pd.DataFrame({"source": "user_id", "external_id": frame["user_id"],
                          "user_id": frame["user_id"].str.removeprefix("wx-")})
    with Workspace.open(tmp_path / "w.duckdb") as ws:
        ws.load_frame("orders", orders.to_pandas(), source="orders")
        ws.load_frame("touches", frame, source="touches")
        ws.load_frame("identities", links, source="identities")
        t = ws.recall("c1").table.set_index("arm")
    assert (t.loc[TREATED, "dormant"], t.loc[TREATED, "returned"]) == (40, 14)
    assert (t.loc[HOLDOUT, "dormant"], t.loc[HOLDOUT, "returned"]) == (20, 3)
