"""Lifecycle stages with the DESIGN.md defaults (new <=7d, growth <=30d, dormant >30d idle,
churned >90d idle, returning = back after a >30-day gap within the last 30 days)."""

from builders import event, order, run_profile


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
        order("r", "returning", "2024-05-15 04:00", 1.0),
        order("r2", "returning", "2024-06-15 04:00", 1.0),  # 31 idle days, back 15 days ago
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
    # window 60 days, gap 30: a return between two days inside the window must be found,
    # and one whose gap started before the window too
    from userstrata.config import Settings

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
