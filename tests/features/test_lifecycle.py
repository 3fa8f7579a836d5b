"""Lifecycle stages with the DESIGN.md defaults (new <=7d, growth <=30d, dormant >30d idle,
churned >90d idle, returning = active again after being dormant, within the last 30 days)."""

import datetime as dt

import pytest

from builders import AS_OF, event, order, run_profile
from features.lifecycle_reference import simulate
from userstrata.config import Settings


def stage(orders=(), events=(), users=()):
    got = run_profile(orders=list(orders), events=list(events), users=list(users))
    return got["lifecycle"].to_dict()


def test_stage_by_tenure_and_inactivity():
    got = stage(orders=[
        order("n", "new", "2024-06-25 04:00", 1.0),  # first seen 5 days ago
        order("g", "growth", "2024-06-10 04:00", 1.0),  # 20 days
        order("g2", "growth", "2024-06-28 04:00", 1.0),
        order("m", "mature", "2024-04-01 04:00", 1.0),
        order("m2", "mature", "2024-05-15 04:00", 1.0),  # back after 44 days, but 46 days ago
        order("m3", "mature", "2024-06-10 04:00", 1.0),  # gap 26: no new return
        order("r", "returning", "2024-05-14 04:00", 1.0),
        order("r2", "returning", "2024-06-15 04:00", 1.0),  # 31 silent days between, back 15 days ago
        order("d", "dormant", "2024-05-01 04:00", 1.0),  # idle 60 days
        order("c", "churned", "2024-03-01 04:00", 1.0),  # idle 121 days
    ])
    assert got["new"] == "new"
    assert got["growth"] == "growth"
    assert got["dormant"] == "dormant"
    assert got["churned"] == "churned"
    assert got["mature"] == "mature"
    assert got["returning"] == "returning"


def test_boundaries_are_inclusive_as_documented():
    got = stage(orders=[
        order("a", "idle30", "2024-05-31 04:00", 1.0),  # idle exactly 30 days: still active (tenure 30: growth)
        order("b", "idle31", "2024-05-30 04:00", 1.0),  # 31 days: dormant
        order("c", "idle90", "2024-04-01 04:00", 1.0),  # 90 days: dormant
        order("d", "idle91", "2024-03-31 04:00", 1.0),  # 91 days: churned
        order("e", "tenure7", "2024-06-23 04:00", 1.0),  # 7 days: new
        order("f", "tenure8", "2024-06-22 04:00", 1.0),  # 8 days: growth
    ])
    assert got == {
        "idle30": "growth", "idle31": "dormant", "idle90": "dormant", "idle91": "churned",
        "tenure7": "new", "tenure8": "growth",
    }


def test_events_keep_a_buyer_active_and_registration_counts_as_first_seen():
    got = stage(
        orders=[order("o", "u1", "2024-03-01 04:00", 1.0)],
        events=[event("e", "u1", "2024-06-29 04:00", "login"), event("e2", "u1", "2024-05-20 04:00", "login")],
        users=[("u2", "2024-06-27 04:00", "wechat", None)],
    )
    # active days 03-01, 05-20, 06-29: the 40-day gap ends on 06-29, a return 1 day ago
    assert got["u1"] == "returning"
    assert got["u2"] == "potential"


def test_registered_never_bought_is_potential():
    got = stage(users=[("u2", "2024-06-27 04:00", "wechat", None)])
    assert got == {"u2": "potential"}


def test_returning_window_longer_than_the_dormant_gap():
    # window 60 days, dormant after 30: a return between two days inside the window must be
    # found, and one whose silence started before the window too
    settings = Settings.from_dict({"lifecycle": {"returning_window_days": 60}})
    got = run_profile(settings=settings, orders=[
        order("a1", "inside", "2024-05-05 04:00", 1.0),  # 56 days ago: in the window
        order("a2", "inside", "2024-06-20 04:00", 1.0),  # 46-day gap, both days in the window
        order("b1", "across", "2024-01-10 04:00", 1.0),  # long before the window
        order("b2", "across", "2024-05-20 04:00", 1.0),  # back after 131 days, 41 days ago
        order("b3", "across", "2024-06-10 04:00", 1.0),  # 21 days later: no new return
        order("c1", "steady", "2024-01-10 04:00", 1.0),
        order("c2", "steady", "2024-02-05 04:00", 1.0),
        order("c3", "steady", "2024-03-01 04:00", 1.0),
        order("c4", "steady", "2024-03-28 04:00", 1.0),
        order("c5", "steady", "2024-04-25 04:00", 1.0),  # the last gap before the window: 28 days
        order("c6", "steady", "2024-05-20 04:00", 1.0),
        order("c7", "steady", "2024-06-15 04:00", 1.0),
    ])
    assert got.loc["inside", "lifecycle"] == "returning" and got.loc["inside", "days_since_return"] == 10
    assert got.loc["across", "lifecycle"] == "returning" and got.loc["across", "days_since_return"] == 41
    assert got.loc["steady", "lifecycle"] == "mature"


def _day(days_ago: int) -> str:
    return f"{AS_OF - dt.timedelta(days=days_ago)} 04:00"  # 12:00 in Shanghai: the same local day


def test_returning_needs_more_silent_days_than_dormant_after_days():
    # silent days lie strictly between two active days: 05-01 and 06-01 have 30 between them.
    # After 30 silent days the user never was dormant (inactive_days reached 30, not > 30).
    rows = []
    for silent in (29, 30, 31):
        back = AS_OF - dt.timedelta(days=5)
        before = back - dt.timedelta(days=silent + 1)
        user = f"s{silent}"
        rows += [order(f"{user}a", user, f"{before} 04:00", 1.0), order(f"{user}b", user, f"{back} 04:00", 1.0)]
    got = run_profile(orders=rows)
    assert got.loc["s29", "lifecycle"] == "mature" and got.loc["s30", "lifecycle"] == "mature"
    assert got.loc["s31", "lifecycle"] == "returning" and got.loc["s31", "days_since_return"] == 5


def _compare_with_day_by_day(users: dict[str, list[int]], settings: Settings) -> None:
    """Each user buys on the given days-ago; stages against the day-by-day reference."""
    rows = [order(f"{u}-{d}", u, _day(d), 1.0) for u, days_ago in users.items() for d in days_ago]
    got = run_profile(orders=rows, settings=settings)
    rules = settings.lifecycle
    for user, days_ago in users.items():
        ref = simulate({AS_OF - dt.timedelta(days=d) for d in days_ago}, bought=True, as_of=AS_OF, rules=rules)
        row = got.loc[user]
        assert row.lifecycle == ref["lifecycle"], (user, days_ago, row.lifecycle, ref)
        assert row.inactive_days == ref["inactive_days"], user
        in_window = ref["days_since_return"] is not None and ref["days_since_return"] <= rules.returning_window_days
        if in_window:
            assert row.days_since_return == ref["days_since_return"], user
        else:
            assert row.days_since_return != row.days_since_return, user  # NaN: no return in the window


@pytest.mark.parametrize(
    "lifecycle",
    [{}, {"dormant_after_days": 10, "returning_window_days": 15, "new_days": 3, "growth_days": 12}],
    ids=["defaults", "short"],
)
def test_lifecycle_equals_the_day_by_day_rules(lifecycle):
    settings = Settings.from_dict({"lifecycle": lifecycle})
    dormant, window = settings.lifecycle.dormant_after_days, settings.lifecycle.returning_window_days
    users = {}
    # every silence around the dormancy threshold, ending around the edge of the window
    for silent in range(dormant - 2, dormant + 3):
        for back in (0, 1, window - 1, window, window + 1):
            users[f"s{silent}-b{back}"] = [back + silent + 1, back]
    # several returns; a return followed by more purchases; silences near churn
    users["twice"] = [150, 100, 50, 3]
    users["after"] = [window + dormant + 5, window - 5, window - 8, 1]
    users["churn-edge"] = [settings.lifecycle.churned_after_days, 0]
    users["churned"] = [settings.lifecycle.churned_after_days + 1]
    users["dormant"] = [dormant + 1]
    _compare_with_day_by_day(users, settings)


def test_day_by_day_reference_reads_the_rules():
    # the reference itself, on hand-worked cases: 30 silent days are not dormancy, 31 are
    rules = Settings().lifecycle
    day = lambda n: AS_OF - dt.timedelta(days=n)  # noqa: E731
    assert simulate({day(36), day(5)}, bought=True, as_of=AS_OF, rules=rules)["lifecycle"] == "mature"
    assert simulate({day(37), day(5)}, bought=True, as_of=AS_OF, rules=rules) == {
        "lifecycle": "returning", "inactive_days": 5, "days_since_return": 5,
    }
    assert simulate({day(31)}, bought=True, as_of=AS_OF, rules=rules)["lifecycle"] == "dormant"
    assert simulate({day(30)}, bought=False, as_of=AS_OF, rules=rules)["lifecycle"] == "potential"
