"""Value tiers: ordered rules, data-relative thresholds, readable reasons, shares vs targets."""

import datetime as dt

import pandas as pd
import pytest

from builders import event, order, run_profile
from userstrata.config import Settings
from userstrata.errors import ConfigError
from userstrata.segments import tier_shares


def _shop(n=20):
    """u00..u19: u_i has i+1 orders on consecutive days ending 06-29, spend 10*(i+1)."""
    rows = []
    for i in range(n):
        for k in range(i + 1):
            day = dt.date(2024, 6, 29) - dt.timedelta(days=k)
            rows.append(order(f"o{i}-{k}", f"u{i:02d}", f"{day} 04:00", 10.0))
    return rows


def test_top_rule_is_relative_to_the_shop():
    # one rule: top 10% by orders -> engaged; everyone else with an order -> regular
    settings = Settings.from_dict({"tiers": {"tiers": [
        {"name": "co_builder", "target_share": [0, 0.1], "rules": [{"when": [{"feature": "orders", "min": 1000}]}]},
        {"name": "engaged", "target_share": [0.1, 0.1], "rules": [{"when": [{"feature": "orders", "top": 0.10}]}]},
        {"name": "regular", "target_share": [0.9, 0.9], "rules": [{"when": [{"feature": "orders", "min": 1}]}]},
        {"name": "explorer", "target_share": [0, 0]},
    ]}})
    got = run_profile(orders=_shop(), settings=settings)
    assert sorted(got.index[got.tier == "engaged"]) == ["u18", "u19"]  # 2 of 20 users
    assert got.loc["u19", "tier_reason"] == "orders in top 5%"
    assert got.loc["u18", "tier_reason"] == "orders in top 10%"
    assert got.loc["u00", "tier_reason"] == "1 orders"
    shares = tier_shares(got.reset_index(), settings.tiers).set_index("tier")
    assert shares.loc["engaged", "share"] == pytest.approx(0.1) and shares.loc["engaged", "on_target"]
    assert shares["share"].sum() == pytest.approx(1.0)


def test_first_matching_tier_wins_and_reason_names_the_facts():
    events = [event(f"e{k}", "u05", f"2024-06-{10 + k:02d} 04:00", "post") for k in range(4)]
    got = run_profile(orders=_shop(), events=events)
    # u05: 6 orders, 4 community actions (the only poster: top 5%), bought 1 day ago ->
    # the co-builder community rule of the defaults
    assert got.loc["u05", "tier"] == "co_builder"
    assert got.loc["u05", "tier_reason"] == (
        "community actions in top 5%, 6 orders, bought in the last 90 days"
    )


def test_ties_at_zero_are_never_top():
    # nobody posts: "top 10% by community actions" must match no one
    settings = Settings.from_dict({"tiers": {"tiers": [
        {"name": "co_builder", "target_share": [0, 1], "rules": [{"when": [{"feature": "community_actions", "top": 0.5}]}]},
        {"name": "engaged", "target_share": [0, 1]},
        {"name": "regular", "target_share": [0, 1]},
        {"name": "explorer", "target_share": [0, 1]},
    ]}})
    got = run_profile(orders=_shop(), settings=settings)
    assert (got.tier == "explorer").all()


def test_default_rules_give_every_user_one_tier_in_order_of_value():
    got = run_profile(orders=_shop(40))
    assert got.tier.isin(["explorer", "regular", "engaged", "co_builder"]).all()
    rank = {"explorer": 0, "regular": 1, "engaged": 2, "co_builder": 3}
    # with a single signal (more orders = more spend = more recent), tiers never decrease
    tiers = got.sort_values("orders").tier.map(rank)
    assert tiers.is_monotonic_increasing
    assert got.tier_reason.str.len().gt(0).all()


def test_unknown_feature_in_a_rule_is_a_config_error():
    settings = Settings.from_dict({"tiers": {"tiers": [
        {"name": "co_builder", "target_share": [0, 1], "rules": [{"when": [{"feature": "vip_level", "min": 1}]}]},
        {"name": "engaged", "target_share": [0, 1]},
        {"name": "regular", "target_share": [0, 1]},
        {"name": "explorer", "target_share": [0, 1]},
    ]}})
    with pytest.raises(ConfigError, match="vip_level"):
        run_profile(orders=_shop(3), settings=settings)


def test_tier_shares_reports_every_tier_even_when_empty():
    frame = pd.DataFrame({"tier": ["explorer"] * 3 + ["regular"]})
    shares = tier_shares(frame, Settings().tiers).set_index("tier")
    assert shares.loc["co_builder", "users"] == 0
    assert shares.loc["explorer", "share"] == 0.75
    assert not shares.loc["explorer", "on_target"]  # target 40-50%
