"""Recommendations: the next step of a path first, never an item the user has, lift lifts, the
shop's best sellers for the rest; hit rate counted by hand."""

from __future__ import annotations

import datetime as dt

from builders import order, table

from userstrata.activate.recommend import hit_rate, recommend

AS_OF = dt.date(2024, 6, 30)


def _shop(lines):
    """``lines``: (order_id, user, 'YYYY-MM-DD HH:MM', sku, category)."""
    orders = table("orders", [order(o, u, ts, 10.0) for o, u, ts, _, _ in {(o, u, ts, None, None) for o, u, ts, _, _ in lines}])
    items = table("order_items", [(o, i + 1, sku, cat, 1, 10.0) for i, (o, _, _, sku, cat) in enumerate(lines)])
    return orders, items


LINES = [
    # five users buy the game pack; four of them the skin too (same day): pack -> skin has lift
    *[(f"g{i}", f"p{i}", "2024-06-01 02:00", "pack", "游戏") for i in range(5)],
    *[(f"s{i}", f"p{i}", "2024-06-01 03:00", "skin", "游戏") for i in range(4)],
    # course path: intro -> python -> data
    ("c1", "learner", "2024-06-02 02:00", "course-intro", "课程"),
    ("c2", "learner", "2024-06-03 02:00", "course-python", "课程"),
    ("c3", "newbie", "2024-06-03 02:00", "course-intro", "课程"),
    # best sellers: coupon bought by many
    *[(f"k{i}", f"p{i}", "2024-06-05 02:00", "coupon", "点券") for i in range(5)],
    ("k9", "learner", "2024-06-05 02:00", "coupon", "点券"),
]


def test_paths_come_first_and_owned_items_never_come():
    orders, items = _shop(LINES)
    rec = recommend(orders, items, as_of=AS_OF, k=2, min_support=0.05,
                    sequences={"courses": ["course-intro", "course-python", "course-data"]}).items
    by_user = {u: list(g.sort_values("rank")["sku"]) for u, g in rec.groupby("user_id")}
    assert by_user["learner"][0] == "course-data"  # after the furthest step she has
    assert by_user["newbie"][0] == "course-python"
    top = rec[rec["rank"] == 1].set_index("user_id")
    assert top.loc["learner", "source"] == "sequence" and "course-python" in top.loc["learner", "reason_en"]
    owned = {(u, sku) for _, u, _, sku, _ in LINES}
    assert not any((u, s) in owned for u, s in zip(rec["user_id"], rec["sku"]))
    assert rec.groupby("user_id")["rank"].max().max() <= 2


def test_the_item_bought_with_hers_comes_before_a_best_seller():
    orders, items = _shop(LINES)
    rec = recommend(orders, items, as_of=AS_OF, k=1, min_support=0.05).items.set_index("user_id")
    # p4 has pack and coupon; skin goes with pack (4 of 5 pack buyers), course-intro is another category
    assert rec.loc["p4", "sku"] == "skin" and rec.loc["p4", "source"] == "co_purchase"
    assert "pack" in rec.loc["p4", "reason_zh"] and "提升度" in rec.loc["p4", "reason_zh"]


def test_hit_rate_by_hand():
    lines = LINES + [
        ("n1", "p4", "2024-06-10 02:00", "skin", "游戏"),          # p4 then buys skin: a hit for co-purchase
        ("n2", "newbie", "2024-06-10 02:00", "course-data", "课程"),  # not in newbie's top 1 (course-python is)
    ]
    orders, items = _shop(lines)
    got = hit_rate(orders, items, cutoff=dt.date(2024, 6, 6), horizon_days=10, k=1, min_support=0.05,
                   sequences={"courses": ["course-intro", "course-python", "course-data"]}).set_index("method")
    assert got.loc["userstrata", "users"] == 2 and got.loc["userstrata", "hits"] == 1
    # popular baseline for k=1, by buyers before the cutoff (coupon 6, pack 5, skin 4): the best
    # seller each does not have: skin for p4 (a hit), pack for newbie (a miss)
    assert got.loc["popular", "hits"] == 1 and got.loc["userstrata", "hit_rate"] == 0.5
