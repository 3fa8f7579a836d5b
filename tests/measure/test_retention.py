"""Retention cohorts: PostHog's first-time / recurring rules on hand-worked cases, and an
independent pandas computation on a simulated shop."""

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import event, order, table

from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.retention import retention
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

D = dt.date


def run(*, users=(), orders=(), events=(), **options):
    return retention(users=table("users", list(users)), orders=table("orders", list(orders)),
                     events=table("events", list(events)), settings=Settings(), **options)


def cell(result, cohort, k):
    row = result.table.set_index("cohort_start").loc[cohort]
    return row[k]


# Registrations at 02:00 UTC = 10:00 in Shanghai, the same local day.
SIGNUPS = [("a", "2024-05-01 02:00", None, None), ("b", "2024-05-01 02:00", None, None),
           ("c", "2024-05-02 02:00", None, None), ("d", "2024-05-03 02:00", None, None)]
VISITS = [
    event("1", "a", "2024-05-01 05:00", "login"),  # the registration day: period 0, not a return
    event("2", "a", "2024-05-02 05:00", "login"),
    event("3", "a", "2024-05-04 05:00", "login"),
    event("4", "b", "2024-05-03 05:00", "login"),
    event("5", "c", "2024-05-03 05:00", "login"),
    event("6", "c", "2024-05-03 09:00", "page_view"),  # the same day twice: one return
    event("7", "d", "2024-05-03 06:00", "login"),  # only the same day: d never returns
    event("8", "d", "2024-05-04 16:30", "login"),  # 00:30 on 05-05 local: after the end
]


@pytest.fixture(scope="module")
def by_signup():
    return run(users=SIGNUPS, events=VISITS, start=D(2024, 5, 1), end=D(2024, 5, 4), period="day", periods=3)


def test_registration_cohorts_count_returns_on_exactly_day_k(by_signup):
    got = by_signup
    assert list(got.table["users"]) == [2, 1, 1]
    assert [cell(got, D(2024, 5, 1), k) for k in range(4)] == [1.0, 0.5, 0.5, 0.5]
    assert [cell(got, D(2024, 5, 2), k) for k in range(3)] == [1.0, 1.0, 0.0]
    assert pd.isna(cell(got, D(2024, 5, 2), 3))  # 05-05 has not ended: nobody is old enough
    assert cell(got, D(2024, 5, 3), 1) == 0.0  # d's same-day visit is no return
    counts = got.counts.set_index(["cohort_start", "k"])
    assert counts.loc[(D(2024, 5, 3), 1), "returned"] == 0
    assert (D(2024, 5, 3), 2) not in counts.index


def test_day_n_marks_count_only_users_old_enough(by_signup):
    s = by_signup.summary.set_index("mark")
    # day 1 has passed for a, b (05-02), c (05-03), d (05-04); back on day 1: a and c
    assert (s.loc["d1", "eligible"], s.loc["d1", "returned"], s.loc["d1", "rate"]) == (4, 2, 0.5)
    assert s.loc["d7", "eligible"] == 0 and pd.isna(s.loc["d7", "rate"])


BUYS = [
    order("x1", "x", "2024-05-01 03:00", 10), order("x2", "x", "2024-05-02 03:00", 10),
    order("x3", "x", "2024-05-04 03:00", 10),
    order("y1", "y", "2024-05-02 03:00", 10), order("y2", "y", "2024-05-03 03:00", 10),
    order("z0", "z", "2024-04-20 03:00", 10), order("z1", "z", "2024-05-02 03:00", 10),
    order("w1", "w", "2024-05-02 03:00", 10, status="cancelled"),  # never paid
]


def test_first_time_puts_each_user_in_the_period_of_their_first_start():
    got = run(orders=BUYS, start=D(2024, 5, 1), end=D(2024, 5, 4), cohort_by="first_purchase",
              return_event="purchase", periods=3)
    # z first bought in April (before the range): in no cohort; w never paid
    assert list(got.table["users"]) == [1, 1]
    assert [cell(got, D(2024, 5, 1), k) for k in (1, 2, 3)] == [1.0, 0.0, 1.0]
    assert [cell(got, D(2024, 5, 2), k) for k in (1, 2)] == [1.0, 0.0]


def test_recurring_puts_a_user_in_every_period_they_start():
    got = run(orders=BUYS, start=D(2024, 5, 1), end=D(2024, 5, 4), start_event="purchase",
              return_event="purchase", mode="recurring", periods=3)
    t = got.table.set_index("cohort_start")
    assert t["users"].to_dict() == {D(2024, 5, 1): 1, D(2024, 5, 2): 3, D(2024, 5, 3): 1, D(2024, 5, 4): 1}
    assert (t.loc[D(2024, 5, 2), 1], t.loc[D(2024, 5, 2), 2]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert t.loc[D(2024, 5, 3), 1] == 0.0  # y did not buy on 05-04


def test_weekly_cohorts_same_week_return_is_period_zero():
    buys = [order("1", "x", "2024-04-29 03:00", 1), order("2", "x", "2024-05-05 03:00", 1),  # Mon, Sun
            order("3", "x", "2024-05-06 03:00", 1), order("4", "y", "2024-05-01 03:00", 1),
            order("5", "y", "2024-05-05 03:00", 1)]
    got = run(orders=buys, start=D(2024, 4, 29), end=D(2024, 5, 12), cohort_by="first_purchase",
              period="week", periods=2)
    assert list(got.table["cohort_start"]) == [D(2024, 4, 29)]
    assert got.table.iloc[0]["users"] == 2
    assert got.table.iloc[0][1] == 0.5  # x in the week of 05-06; y's Sunday is its own week
    assert pd.isna(got.table.iloc[0][2])  # the week of 05-13 has not ended


def test_min_count_hides_small_cohorts_and_chart_is_a_heatmap(by_signup):
    hidden = run(users=SIGNUPS, events=VISITS, start=D(2024, 5, 1), end=D(2024, 5, 4), periods=3, min_count=2)
    t = hidden.table.set_index("cohort_start")
    assert t.loc[D(2024, 5, 1), 1] == 0.5 and pd.isna(t.loc[D(2024, 5, 2), 1])
    fig = by_signup.chart("zh")
    assert [tr.type for tr in fig.data] == ["heatmap"] and "留存" in fig.layout.title.text
    assert "retention" in by_signup.chart("en").layout.title.text
    assert "第 1 天" in by_signup.labelled("zh").columns


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="mode 'sticky'"):
        run(start=D(2024, 5, 1), end=D(2024, 5, 4), mode="sticky")
    with pytest.raises(InputError, match="cohort_by"):
        run(start=D(2024, 5, 1), end=D(2024, 5, 4), cohort_by="login")
    with pytest.raises(InputError, match="period 'hour'"):
        run(start=D(2024, 5, 1), end=D(2024, 5, 4), period="hour")


# -- simulated shop: the engine against plain pandas ---------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    files = simulate_shop(150, tmp_path_factory.mktemp("sim"), seed=11, end=D(2024, 6, 30))
    frames = {}
    for name in ("users", "orders", "events"):
        spec = CANONICAL[name]
        f = pd.read_parquet(files[name])
        for col in spec.columns:
            if col not in f:
                f[col] = None
        frames[name] = f[list(spec.columns)]
    return frames


def _day(ts):
    return (pd.to_datetime(ts) + pd.Timedelta(hours=8)).dt.date  # Asia/Shanghai: UTC+8 since 1991


def pandas_retention(sim, *, start, end, period, mode, cohort_by, periods):
    """The same definition, written independently: cohort sizes and returns per (cohort, k)."""
    o, e, u = sim["orders"], sim["events"], sim["users"]
    paid = o[o.status.isin(PURCHASE_STATUSES) & o.user_id.notna()].assign(day=lambda f: _day(f.ts))
    active = pd.concat([paid[["user_id", "day"]],
                        e[e.user_id.notna()].assign(day=lambda f: _day(f.ts))[["user_id", "day"]]])
    if cohort_by == "registration":
        reg = u.dropna(subset=["registered_at"]).assign(day=lambda f: _day(f.registered_at))[["user_id", "day"]]
        first = active.groupby("user_id", as_index=False).day.min()
        starts = pd.concat([reg, first[~first.user_id.isin(reg.user_id)]])
    else:
        starts = paid[["user_id", "day"]]

    def index(days):
        d = pd.to_datetime(pd.Series(list(days), dtype="object"))
        if period == "month":
            return (d.dt.year * 12 + d.dt.month - 1).to_numpy()
        epoch = (d - pd.Timestamp("1970-01-01")).dt.days
        return ((epoch + 3) // 7).to_numpy() if period == "week" else epoch.to_numpy()

    if mode == "first_time":
        starts = starts.groupby("user_id", as_index=False).day.min()
    lo = {"day": start, "week": start - dt.timedelta(days=start.weekday()), "month": start.replace(day=1)}[period]
    starts = starts[(starts.day >= lo) & (starts.day <= end)]
    entries = starts.assign(c=index(starts.day))[["user_id", "c"]].drop_duplicates()
    back = active[active.day <= end]
    back = back.assign(p=index(back.day))[["user_id", "p"]].drop_duplicates()
    j = entries.merge(back, on="user_id").assign(k=lambda f: f.p - f.c)
    j = j[(j.k >= 1) & (j.k <= periods)]
    return entries.groupby("c").size(), j.groupby(["c", "k"]).size()


@pytest.mark.parametrize(("period", "mode", "cohort_by"), [
    ("day", "first_time", "registration"),
    ("week", "recurring", "first_purchase"),
    pytest.param("month", "first_time", "first_purchase", marks=pytest.mark.slow),
    pytest.param("week", "first_time", "registration", marks=pytest.mark.slow),
])
def test_simulated_shop_matches_pandas(sim, period, mode, cohort_by):
    tables = {n: ibis.memtable(f, schema=CANONICAL[n].schema) for n, f in sim.items()}
    start, end, periods = D(2024, 3, 1), D(2024, 6, 30), 8
    got = retention(**tables, start=start, end=end, period=period, mode=mode, cohort_by=cohort_by,
                    periods=periods, settings=Settings())
    sizes, hits = pandas_retention(sim, start=start, end=end, period=period, mode=mode, cohort_by=cohort_by,
                                   periods=periods)
    counts = got.counts
    assert counts[counts.k == 0].cohort_users.tolist() == sizes.tolist()
    assert len(sizes) > 3 and hits.sum() > 0
    first = {"day": lambda c: D(1970, 1, 1) + dt.timedelta(days=int(c)),
             "week": lambda c: D(1970, 1, 1) + dt.timedelta(days=int(c) * 7 - 3),
             "month": lambda c: D(int(c) // 12, int(c) % 12 + 1, 1)}[period]
    want = {(first(c), int(k)): int(n) for (c, k), n in hits.items()}
    seen = counts[counts.k >= 1]
    for cohort, k, returned in zip(seen.cohort_start, seen.k, seen.returned):
        assert returned == want.get((cohort, int(k)), 0), (cohort, k)
    # cells left out are exactly the ones whose period has not ended
    assert all(k <= periods for _, k in want)
