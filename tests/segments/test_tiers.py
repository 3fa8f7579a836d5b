"""Value tiers: ordered rules, data-relative thresholds, readable reasons, shares vs targets."""

import datetime as dt

import ibis
import pandas as pd
import pytest

from builders import AS_OF, event, order, run_profile, table
from userstrata.config import Settings
from userstrata.errors import ConfigError, InputError
from userstrata.segments import build_profile, tier_shares


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
    assert got.loc["u00", "tier_reason"] == "1 order"
    assert got.loc["u01", "tier_reason"] == "2 orders"
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
    zh = _profile_in("zh", orders=_shop(), events=events)
    assert zh.loc["u05", "tier_reason"] == "社区互动前 5%，6 笔订单，最近 90 天内购买过"


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


def _profile_in(lang, *, orders=(), events=(), settings=None):
    expr = build_profile(
        users=table("users"), orders=table("orders", list(orders)), order_items=table("order_items"),
        events=table("events", list(events)), as_of=AS_OF, settings=settings or Settings(), lang=lang,
    )
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr).set_index("user_id")


def _one_rule(feature, top):
    return Settings.from_dict({"tiers": {"tiers": [
        {"name": "co_builder", "target_share": [0, 1], "rules": [{"when": [{"feature": feature, "top": top}]}]},
        {"name": "engaged", "target_share": [0, 1]},
        {"name": "regular", "target_share": [0, 1]},
        {"name": "explorer", "target_share": [0, 1]},
    ]}})


def _ceil_percent(count: int, users: int) -> int:
    return -(-100 * count // users)


@pytest.mark.parametrize(("top", "first"), [(0.55, 9), (0.3, 14), (0.15, 17)])
def test_top_percent_is_exact_and_never_above_the_threshold(top, first):
    # 20 users; u_i has i+1 orders, so i+1..20 orders are held by 20-i users: u09 is in the
    # top 11/20 = 55% exactly (a float 0.55 * 100 is 55.00000000000001, not 56), u14 in the
    # top 30% and u17 in the top 15% (whose binary floats lie just below 0.3 and 0.15)
    got = run_profile(orders=_shop(20), settings=_one_rule("orders", top))
    matched = got.index[got.tier == "co_builder"]
    assert sorted(matched) == [f"u{i:02d}" for i in range(first, 20)]
    for i in range(first, 20):
        assert got.loc[f"u{i:02d}", "tier_reason"] == f"orders in top {_ceil_percent(20 - i, 20)}%"
    assert got.loc[f"u{first:02d}", "tier_reason"] == f"orders in top {round(top * 100)}%"


def test_top_percent_of_a_fractional_threshold():
    # top 12.5% of 40 users: 5 users. u35 is in the top 5/40 = 12.5%: said as 12.5, not 13
    got = run_profile(orders=_shop(40), settings=_one_rule("orders", 0.125))
    reasons = got.loc[got.tier == "co_builder", "tier_reason"].to_dict()
    assert reasons == {
        "u35": "orders in top 12.5%", "u36": "orders in top 10%", "u37": "orders in top 8%",
        "u38": "orders in top 5%", "u39": "orders in top 3%",
    }


def _language_shop():
    orders = [
        order("a1", "a", "2024-06-29 04:00", 10.0),
        order("b1", "b", "2024-06-28 04:00", 10.0), order("b2", "b", "2024-06-29 04:00", 10.0),
        order("e1", "e", "2024-06-20 04:00", 10.0),
        order("f1", "f", "2024-06-27 04:00", 10.0), order("f2", "f", "2024-06-28 04:00", 10.0),
        order("f3", "f", "2024-06-29 04:00", 10.0),
        order("g1", "g", "2024-06-20 04:00", 10.0), order("g2", "g", "2024-06-29 04:00", 10.0),
        order("h1", "h", "2024-06-29 04:00", 10.0),
    ]
    events = [event("a-post", "a", "2024-06-20 04:00", "post"), event("c-in", "c", "2024-06-20 04:00", "checkin")]
    events += [event(f"b-post{k}", "b", f"2024-06-2{k} 04:00", "post") for k in range(3)]
    events += [event(f"d-in{k}", "d", f"2024-06-2{k} 04:00", "checkin") for k in range(3)]
    settings = Settings.from_dict({"tiers": {"tiers": [
        {"name": "co_builder", "target_share": [0, 1], "rules": [{"when": [
            {"feature": "community_actions", "top": 0.4}, {"feature": "orders", "min": 2}]}]},
        {"name": "engaged", "target_share": [0, 1], "rules": [{"when": [
            {"feature": "community_actions", "min": 1}, {"feature": "recency_days", "max": 1}]}]},
        {"name": "regular", "target_share": [0, 1], "rules": [{"when": [
            {"feature": "frequency", "min": 1}, {"feature": "orders", "min": 1},
            {"feature": "recency_days", "max": 5}]}]},
        {"name": "explorer", "target_share": [0, 1]},
    ]}})
    return {"orders": orders, "events": events, "settings": settings}


# 8 users; community actions: b 3, a 1, the others 0. b is in the top 1/8 = 12.5% -> 13%
_REASONS = {
    "en": {
        "b": "community actions in top 13%, 2 orders",
        "a": "1 community action, bought in the last 1 day",
        "f": "2 repeat purchase days, 3 orders, bought in the last 5 days",
        "g": "1 repeat purchase day, 2 orders, bought in the last 5 days",
        "c": "no purchase yet, 1 interaction",
        "d": "no purchase yet, 3 interactions",
        "e": "1 order, last bought 10 days ago; below the rules of higher tiers",
        "h": "1 order, last bought 1 day ago; below the rules of higher tiers",
    },
    "zh": {
        "b": "社区互动前 13%，2 笔订单",
        "a": "1 次社区互动，最近 1 天内购买过",
        "f": "复购 2 天，3 笔订单，最近 5 天内购买过",
        "g": "复购 1 天，2 笔订单，最近 5 天内购买过",
        "c": "尚未购买，1 次互动",
        "d": "尚未购买，3 次互动",
        "e": "1 笔订单，最近一次购买在 10 天前；未达到更高层级的规则",
        "h": "1 笔订单，最近一次购买在 1 天前；未达到更高层级的规则",
    },
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_reasons_in_both_languages(lang):
    got = _profile_in(lang, **_language_shop())
    assert got["tier"].to_dict() == {
        "a": "engaged", "b": "co_builder", "c": "explorer", "d": "explorer",
        "e": "explorer", "f": "regular", "g": "regular", "h": "explorer",
    }
    assert got["tier_reason"].to_dict() == _REASONS[lang]


def test_reasons_default_to_english_and_other_languages_are_refused():
    assert run_profile(**_language_shop())["tier_reason"].to_dict() == _REASONS["en"]
    with pytest.raises(InputError, match="'fr'"):
        _profile_in("fr", **_language_shop())


def test_value_score_reason_in_both_languages():
    # default rules on 40 one-signal users: u39 has the best value score of all (top 1/40)
    en, zh = _profile_in("en", orders=_shop(40)), _profile_in("zh", orders=_shop(40))
    assert en.loc["u39", "tier_reason"] == "value score in top 3%, bought in the last 180 days"
    assert zh.loc["u39", "tier_reason"] == "价值得分前 3%，最近 180 天内购买过"
