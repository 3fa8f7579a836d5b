"""Bundles: support, confidence and lift on hand-built baskets, and pair counts equal to a
brute-force enumeration of every basket's pairs on a simulated shop."""

import itertools
from collections import Counter
from fractions import Fraction

import ibis
import pandas as pd
import pytest

from builders import order, table
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.measure.bundles import bundles
from userstrata.schema import CANONICAL, PURCHASE_STATUSES

BASKETS = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b", "c"], ["a", "b", "c"], ["d"]]


def shop(baskets, *, user="u1"):
    orders, items = [], []
    for i, basket in enumerate(baskets):
        orders.append(order(f"o{i}", user, f"2024-06-{i + 1:02d} 02:00", 10))
        items += [(f"o{i}", j + 1, sku, f"cat-{sku}", 1, 1.0) for j, sku in enumerate(basket)]
    return table("orders", orders), table("order_items", items)


def pair(result, a, b):
    return result.pairs[(result.pairs.item_a == a) & (result.pairs.item_b == b)].iloc[0]


def test_support_confidence_and_lift_by_hand():
    result = bundles(*shop(BASKETS), min_support=0.3)
    assert result.n_baskets == 6 and result.definition["threshold"] == 2  # ceil(0.3 * 6)
    assert sorted(result.items.item) == ["a", "b", "c"]  # d is in 1 basket: pruned
    assert len(result.pairs) == 3
    ab = pair(result, "a", "b")
    assert ab.baskets == 3
    assert ab.support == pytest.approx(3 / 6) and ab.support_a == pytest.approx(4 / 6)
    assert ab.confidence_ab == pytest.approx(3 / 4) and ab.confidence_ba == pytest.approx(3 / 4)
    assert ab.lift == pytest.approx(float(Fraction(3, 6) / (Fraction(4, 6) * Fraction(4, 6))))


def test_min_support_boundary_is_inclusive():
    # pairs are in 3 of 6 baskets: kept at exactly 3/6, dropped just above
    assert len(bundles(*shop(BASKETS), min_support=0.5).pairs) == 3
    assert len(bundles(*shop(BASKETS), min_support=0.51).pairs) == 0
    assert len(bundles(*shop(BASKETS), min_support=0.3, min_count=4).pairs) == 0


def test_asymmetric_rules():
    baskets = [["x", "y"], ["x", "y"], ["x"], ["x"], ["y"], ["z"]] + [["w"]] * 4
    result = bundles(*shop(baskets), min_support=0.1)
    xy = pair(result, "x", "y")
    assert xy.confidence_ab == pytest.approx(2 / 4) and xy.confidence_ba == pytest.approx(2 / 3)
    assert xy.lift == pytest.approx((2 / 10) / ((4 / 10) * (3 / 10)))
    rules = result.rules().set_index(["antecedent", "consequent"])
    assert rules.loc[("y", "x"), "confidence"] == pytest.approx(2 / 3)
    assert rules.loc[("x", "y"), "lift"] == pytest.approx(rules.loc[("y", "x"), "lift"])


def test_an_item_twice_in_a_basket_counts_once_and_unpaid_orders_do_not_count():
    orders = table("orders", [order("o1", "u", "2024-06-01 10:00", 1), order("o2", "u", "2024-06-02 10:00", 1),
                              order("o3", "u", "2024-06-03 10:00", 1, status="cancelled")])
    items = table("order_items", [("o1", 1, "a", "k", 1, 1.0), ("o1", 2, "a", "k", 1, 1.0), ("o1", 3, "b", "k", 1, 1.0),
                                  ("o2", 1, "a", "k", 1, 1.0), ("o3", 1, "a", "k", 1, 1.0), ("o3", 2, "b", "k", 1, 1.0)])
    result = bundles(orders, items, min_support=0.5)
    assert result.n_baskets == 2
    assert dict(zip(result.items.item, result.items.baskets)) == {"a": 2, "b": 1}
    assert pair(result, "a", "b").baskets == 1 and pair(result, "a", "b").confidence_ab == pytest.approx(0.5)


def test_user_day_baskets_use_the_local_day():
    # 15:00 and 17:00 UTC fall on different Shanghai days; 17:00 and next day 03:00 UTC on the same one
    orders = table("orders", [order("o1", "u", "2024-06-01 15:00", 1), order("o2", "u", "2024-06-01 17:00", 1),
                              order("o3", "u", "2024-06-02 03:00", 1), order("o4", "v", "2024-06-02 03:00", 1)])
    items = table("order_items", [("o1", 1, "a", "k", 1, 1.0), ("o2", 1, "b", "k", 1, 1.0),
                                  ("o3", 1, "c", "k", 1, 1.0), ("o4", 1, "a", "k", 1, 1.0)])
    by_order = bundles(orders, items, min_support=0.01)
    assert by_order.n_baskets == 4 and len(by_order.pairs) == 0
    by_day = bundles(orders, items, basket="user_day", min_support=0.01)
    assert by_day.n_baskets == 3
    assert list(zip(by_day.pairs.item_a, by_day.pairs.item_b, by_day.pairs.baskets)) == [("b", "c", 1)]


def test_category_level_and_triples_match_brute_force():
    result = bundles(*shop(BASKETS), level="category", min_support=0.3, max_size=3)
    assert set(result.items.item) == {"cat-a", "cat-b", "cat-c"}
    counts = Counter(t for b in BASKETS for t in itertools.combinations(sorted(set(b)), 3))
    assert [tuple(r) for r in result.triples[["item_a", "item_b", "item_c", "baskets"]].itertuples(index=False)] == [
        ("cat-" + a, "cat-" + b, "cat-" + c, n) for (a, b, c), n in counts.items() if n >= 2]
    rules = result.rules()
    rule = rules[(rules.antecedent == "cat-a + cat-b") & (rules.consequent == "cat-c")].iloc[0]
    assert rule.confidence == pytest.approx(2 / 3) and rule.lift == pytest.approx((2 / 3) / (4 / 6))


def test_bad_parameters_are_named():
    for kwargs, word in ((dict(level="brand"), "level"), (dict(basket="week"), "basket"),
                         (dict(min_support=0), "min_support"), (dict(max_size=4), "max_size")):
        with pytest.raises(InputError, match=word):
            bundles(*shop(BASKETS), **kwargs)


def test_pairs_match_brute_force_on_a_simulated_shop(tmp_path):
    paths = simulate_shop(400, tmp_path, seed=5, days=200)
    orders, items = pd.read_parquet(paths["orders"]), pd.read_parquet(paths["order_items"])
    for frame in (orders,):
        for col in ("ts", "refunded_at"):
            frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)
    o_t = ibis.memtable(orders[list(CANONICAL["orders"].columns)], schema=CANONICAL["orders"].schema)
    i_t = ibis.memtable(items[list(CANONICAL["order_items"].columns)], schema=CANONICAL["order_items"].schema)
    result = bundles(o_t, i_t, min_support=0.002)
    paid = set(orders.order_id[orders.status.isin(PURCHASE_STATUSES)])
    baskets = items[items.order_id.isin(paid)].groupby("order_id")["sku"].apply(lambda s: sorted(set(s)))
    n = len(baskets)
    singles = Counter(s for b in baskets for s in b)
    pairs = Counter(p for b in baskets for p in itertools.combinations(b, 2))
    threshold = -(-2 * n // 1000)  # ceil(0.002 n)
    expected = {p: c for p, c in pairs.items() if c >= threshold and singles[p[0]] >= threshold
                and singles[p[1]] >= threshold}
    assert result.n_baskets == n and len(expected) > 5
    got = {(r.item_a, r.item_b): r.baskets for r in result.pairs.itertuples()}
    assert got == expected
    for r in result.pairs.itertuples():
        assert r.lift == pytest.approx(r.baskets * n / (singles[r.item_a] * singles[r.item_b]))
