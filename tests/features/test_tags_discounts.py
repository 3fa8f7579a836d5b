"""Price sensitivity from discount columns (discount_amount, coupon_id, list_price), the fallback
without them, brand loyalty and repeat purchases: hand-worked cases at each threshold and just
below it. Rows are written out to every canonical column (discounts and brands included)."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import order, table

from userstrata.config import TagSettings
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.features.tags import TAGS, tag_label, tags_wide, user_tags

AS_OF = dt.date(2024, 6, 30)
RULES = TagSettings()
DAYS = ["2024-06-01 02:00", "2024-06-02 02:00", "2024-06-03 02:00", "2024-06-04 02:00", "2024-06-05 02:00"]


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


def run(orders, items, *, rules=RULES) -> pd.DataFrame:
    bought = purchases(table("orders", orders), as_of=AS_OF, clock=Clock())
    expr = user_tags(bought, table("order_items", items), table("events", []), as_of=AS_OF, clock=Clock(),
                     rules=rules)
    return _con().execute(expr)


def tagged(frame: pd.DataFrame, tag: str) -> dict[str, float]:
    rows = frame[frame.tag == tag]
    return dict(zip(rows.user_id, rows.value))


def reason(frame: pd.DataFrame, user: str, tag: str, lang: str = "en") -> str:
    row = frame[(frame.user_id == user) & (frame.tag == tag)].iloc[0]
    return row[f"reason_{lang}"]


def orders_of(user: str, discounts=None, coupons=None, *, n: int | None = None, amount: float = 100.0):
    """``n`` orders of ``user`` (one a day) with their discount amounts and coupons."""
    n = n or len(discounts or coupons)
    discounts = discounts or [None] * n
    coupons = coupons or [None] * n
    return [order(f"{user}-{i}", user, DAYS[i], amount) + (discounts[i], coupons[i]) for i in range(n)]


def items_of(orders, prices=None, lists=None, *, sku="sku-a", category="点券", brands=None):
    """One line per order: (order_id, line_no, sku, category, quantity, price, list_price, brand)."""
    n = len(orders)
    prices = prices or [o[3] for o in orders]
    lists = lists or [None] * n
    brands = brands or [None] * n
    return [(o[0], 1, sku, category, 1, p, lp, b) for o, p, lp, b in zip(orders, prices, lists, brands)]


# --- price sensitivity: discount columns ------------------------------------------------------

def test_discount_amount_at_the_share_and_just_below():
    u1 = orders_of("u1", [5.0, 0.0, 3.0, 0.0])  # 2 of 4 = 0.5: at the threshold
    u2 = orders_of("u2", [5.0, 0.0, 0.0, 0.0])  # 1 of 4
    # u2's lines at 50 while someone paid 100: the fallback would call them promotions, but the
    # data has discount amounts, so only they count
    got = run(u1 + u2, items_of(u1) + items_of(u2, prices=[50.0, 50.0, 50.0, 100.0]))
    assert tagged(got, "price_sensitive") == {"u1": 0.5}
    assert reason(got, "u1", "price_sensitive") == (
        "2 of 4 orders (50%) discounted: 0 with a coupon, 2 with a discount amount, 0 below the list price")
    assert reason(got, "u1", "price_sensitive", "zh") == (
        "4 单里有 2 单（50%）有优惠：用券 0 单，有优惠金额 2 单，低于原价 0 单")


def test_a_discount_column_of_zeros_still_switches_the_fallback_off():
    # every order recorded with no discount: the shop exports discounts, none were given
    u1 = orders_of("u1", [0.0, 0.0, 0.0, 0.0])
    top = orders_of("u0", [0.0])
    items = items_of(top) + items_of(u1, prices=[50.0, 50.0, 50.0, 50.0])
    assert tagged(run(top + u1, items), "price_sensitive") == {}
    # the same orders without the column: 4 of 4 lines half the top price
    no_column = [o[:8] + (None, None) for o in top + u1]
    got = run(no_column, items)
    assert tagged(got, "price_sensitive") == {"u1": 1.0}
    assert reason(got, "u1", "price_sensitive") == "4 of 4 orders (100%) at a promotion price or with a discount"


def test_coupons_count_and_blank_coupons_do_not():
    u1 = orders_of("u1", coupons=["c1", None, "c2", " "])  # 2 of 4
    u2 = orders_of("u2", coupons=["c3", " ", "", None])  # 1 of 4: blanks are no coupon
    got = run(u1 + u2, items_of(u1) + items_of(u2))
    assert tagged(got, "price_sensitive") == {"u1": 0.5}
    assert "2 with a coupon, 0 with a discount amount" in reason(got, "u1", "price_sensitive")


def test_list_price_one_cent_below_counts_equal_does_not():
    u1 = orders_of("u1", n=4)
    u2 = orders_of("u2", n=4)
    items = (items_of(u1, prices=[99.99, 100.0, 80.0, 100.0], lists=[100.0, 100.0, 100.0, None])  # 2 of 4
             + items_of(u2, prices=[99.99, 100.0, 100.0, 100.0], lists=[100.0, 100.0, 100.0, 100.0]))  # 1 of 4
    got = run(u1 + u2, items)
    assert tagged(got, "price_sensitive") == {"u1": 0.5}
    assert reason(got, "u1", "price_sensitive").endswith("0 with a discount amount, 2 below the list price")


def test_evidence_is_counted_once_per_order_and_per_kind():
    # order 0: a coupon and a discount amount; order 1: a line below list; 2, 3: nothing
    u1 = orders_of("u1", [4.0, 0.0, 0.0, 0.0], ["c1", None, None, None])
    items = items_of(u1, prices=[100.0, 90.0, 100.0, 100.0], lists=[100.0, 100.0, None, None])
    got = run(u1, items)
    assert tagged(got, "price_sensitive") == {"u1": 0.5}
    assert reason(got, "u1", "price_sensitive") == (
        "2 of 4 orders (50%) discounted: 1 with a coupon, 1 with a discount amount, 1 below the list price")


def test_threshold_and_min_orders_are_settings():
    u1 = orders_of("u1", [1.0, 1.0, 0.0])  # 2 of 3
    u2 = orders_of("u2", [1.0, 1.0])  # 2 of 2, but only 2 orders
    items = items_of(u1) + items_of(u2)
    assert tagged(run(u1 + u2, items), "price_sensitive") == {"u1": pytest.approx(2 / 3)}
    strict = TagSettings(price_sensitive_share=0.7)
    assert tagged(run(u1 + u2, items, rules=strict), "price_sensitive") == {}
    loose = TagSettings(min_orders=2)
    assert set(tagged(run(u1 + u2, items, rules=loose), "price_sensitive")) == {"u1", "u2"}


def test_cancelled_orders_are_not_counted():
    u1 = orders_of("u1", [5.0, 5.0, 0.0, 0.0, 0.0])
    # the two discounted orders were cancelled: 0 of 3 purchases
    u1 = [o[:5] + ("cancelled",) + o[6:] if i < 2 else o for i, o in enumerate(u1)]
    assert tagged(run(u1, items_of(u1)), "price_sensitive") == {}


# --- loyalty: brands and repeat purchases ---------------------------------------------------

def _branded(user: str, spend: list[tuple[float, str | None]]):
    o = orders_of(user, n=len(spend))
    return o, [(x[0], 1, f"sku-{i}", "点券", 1, price, None, brand) for i, (x, (price, brand)) in enumerate(zip(o, spend))]


def test_brand_loyal_at_the_share_and_just_below():
    o1, i1 = _branded("u1", [(40.0, "星河"), (40.0, "星河"), (20.0, "青木")])  # 80 of 100
    o2, i2 = _branded("u2", [(40.0, "星河"), (39.0, "星河"), (21.0, "青木")])  # 79 of 100
    got = run(o1 + o2, i1 + i2)
    assert tagged(got, "brand_loyal") == {"u1": pytest.approx(0.8)}
    assert reason(got, "u1", "brand_loyal") == "80% of spend on the brand 星河 (3 orders)"
    assert reason(got, "u1", "brand_loyal", "zh") == "80% 的消费在品牌「星河」（共 3 单）"


def test_unbranded_spend_counts_in_the_whole_and_ties_go_by_name():
    # 79 on 星河, 21 without a brand (blank): 0.79 of the whole, not 1.0 of the branded
    o1, i1 = _branded("u1", [(40.0, "星河"), (39.0, "星河"), (21.0, " ")])
    # 50/50 between two brands with threshold 0.5: the tie goes to the first name
    o2, i2 = _branded("u2", [(25.0, "青木"), (25.0, "青木"), (50.0, "云端")])
    got = run(o1 + o2, i1 + i2, rules=TagSettings(brand_loyal_share=0.5))
    assert tagged(got, "brand_loyal") == {"u1": pytest.approx(0.79), "u2": 0.5}
    assert "云端" in reason(got, "u2", "brand_loyal")


def test_no_brand_values_no_brand_tag_and_quantity_weighs_spend():
    o1, i1 = _branded("u1", [(40.0, None), (40.0, None), (20.0, None)])
    assert tagged(run(o1, i1), "brand_loyal") == {}
    # 2 units x 40 of 星河 against 1 x 20: 80 of 100
    o2 = orders_of("u2", n=3)
    i2 = [(o2[0][0], 1, "s1", "点券", 2, 40.0, None, "星河"), (o2[1][0], 1, "s2", "点券", 1, 20.0, None, "青木"),
          (o2[2][0], 1, "s3", "点券", 1, 0.0, None, "青木")]
    assert tagged(run(o2, i2), "brand_loyal") == {"u2": pytest.approx(0.8)}


def test_repeat_item_at_the_count_and_just_below():
    u1 = orders_of("u1", n=3)  # sku-a in 3 orders
    u2 = orders_of("u2", n=3)  # sku-a in 2 orders, twice in one of them
    items = items_of(u1) + [
        (u2[0][0], 1, "sku-a", "点券", 1, 10.0, None, None), (u2[0][0], 2, "sku-a", "点券", 1, 10.0, None, None),
        (u2[1][0], 1, "sku-a", "点券", 1, 10.0, None, None), (u2[2][0], 1, "sku-b", "点券", 1, 10.0, None, None),
    ]
    got = run(u1 + u2, items)
    assert tagged(got, "repeat_item") == {"u1": 3}
    assert reason(got, "u1", "repeat_item") == "bought sku-a in 3 orders"
    assert tagged(run(u1 + u2, items, rules=TagSettings(repeat_item_orders=2)), "repeat_item") == {"u1": 3, "u2": 2}


def test_brand_loyal_is_a_wide_column_with_labels():
    o1, i1 = _branded("u1", [(40.0, "星河"), (40.0, "星河"), (20.0, "星河")])
    wide = _con().execute(tags_wide(user_tags(
        purchases(table("orders", o1), as_of=AS_OF, clock=Clock()), table("order_items", i1), table("events", []),
        as_of=AS_OF, clock=Clock(), rules=RULES))).set_index("user_id")
    assert "brand_loyal" in TAGS and bool(wide.loc["u1", "brand_loyal"])
    assert (tag_label("brand_loyal", "zh"), tag_label("brand_loyal", "en")) == ("品牌忠诚", "Brand loyal")


# --- the discount level of measure/price.py from list_price ----------------------------------

def test_price_discount_levels_use_the_list_price_when_lines_have_one():
    from userstrata.measure.price import price_sensitivity

    ts = "2024-06-01 02:00"
    lines = [  # (sku, price, list_price)
        ("a", 80.0, 100.0),  # 20% off its own list price: 10-30% (the highest price seen, 80, says 0)
        ("a", 80.0, 80.0),  # at its list price: 0
        ("b", 45.0, None),  # no list price for b: against its highest price 50, 10% off: 0-10%
        ("b", 50.0, None),  # 0
        ("c", 90.0, None),  # c's other line has a list price of 100: 10% off: 0-10%
        ("c", 90.0, 100.0),  # 0-10%
    ]
    orders = [order(f"o{i}", f"u{i}", ts, p) + (None, None) for i, (_, p, _) in enumerate(lines)]
    items = [(f"o{i}", 1, sku, "c", 1, p, lp, None) for i, (sku, p, lp) in enumerate(lines)]
    got = price_sensitivity(table("orders", orders), table("order_items", items), start=dt.date(2024, 6, 1),
                            end=dt.date(2024, 6, 1), resamples=0)
    buyers = {(r.item, r.bucket): r.buyers for r in got.table.itertuples()}
    assert buyers == {("a", "10-30%"): 1, ("a", "0"): 1, ("b", "0-10%"): 1, ("b", "0"): 1, ("c", "0-10%"): 2}
    assert (got.list_source, got.lines, got.list_price_lines) == ("mixed", 6, 3)
    assert got.notes("en")[-1].startswith("3 of 6 item lines measured against their list price")
    # without list prices: as before, against the highest price seen, and the notes say so
    plain = [it[:6] + (None, None) for it in items]
    before = price_sensitivity(table("orders", orders), table("order_items", plain), start=dt.date(2024, 6, 1),
                               end=dt.date(2024, 6, 1), resamples=0)
    assert {(r.item, r.bucket) for r in before.table.itertuples()} == {
        ("a", "0"), ("b", "0-10%"), ("b", "0")} | {("c", "0")}
    assert before.list_source == "highest_price" and "highest price" in before.notes("en")[-1]
    assert "最高售价" in before.notes("zh")[-1]
