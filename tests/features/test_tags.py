"""Behaviour tags: every rule on hand-worked cases with its boundaries (shop time is
Asia/Shanghai, UTC+8), then a plain pandas recount of the order-share tags on the simulated shop."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import event, order, table

from userstrata.config import Settings, TagSettings
from userstrata.errors import ConfigError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.features.tags import TAGS, tags_wide, user_tags

AS_OF = dt.date(2024, 6, 30)
RULES = TagSettings()


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


def run(orders, items, events=(), *, rules=RULES, extra=None, as_of=AS_OF) -> pd.DataFrame:
    o = table("orders", orders)
    if extra:  # order columns the canonical schema lacks, e.g. coupon_id
        name, values = extra
        o = ibis.memtable(_con().execute(o).assign(**{name: values}))
    bought = purchases(o, as_of=as_of, clock=Clock())
    expr = user_tags(bought, table("order_items", items), table("events", list(events)),
                     as_of=as_of, clock=Clock(), rules=rules)  # fmt: skip
    return _con().execute(expr)


def tagged(frame: pd.DataFrame, tag: str) -> dict[str, float]:
    rows = frame[frame.tag == tag]
    return dict(zip(rows.user_id, rows.value))


def _orders(user: str, times: list[str], amount: float = 10.0, prefix: str | None = None):
    prefix = prefix or user
    return [order(f"{prefix}-{i}", user, ts, amount) for i, ts in enumerate(times)]


def _items(orders, sku="sku-a", category="点券", prices=None):
    prices = prices or [o[3] for o in orders]
    return [(o[0], 1, sku, category, 1, p) for o, p in zip(orders, prices)]


def test_price_sensitive_from_prices_below_the_skus_top_price():
    times = ["2024-06-01 02:00", "2024-06-02 02:00", "2024-06-03 02:00", "2024-06-04 02:00"]
    top = _orders("u0", times[:1], 100.0)  # someone paid the full 100
    u1 = _orders("u1", times, 100.0)  # 95 is exactly 5% off: a promotion; 96 is not
    u2 = _orders("u2", times[:3], 100.0)
    orders = top + u1 + u2
    items = (_items(top, prices=[100.0]) + _items(u1, prices=[95.0, 96.0, 50.0, 100.0])
             + _items(u2, prices=[50.0, 100.0, 100.0]))  # fmt: skip
    got = run(orders, items)
    assert tagged(got, "price_sensitive") == {"u1": 0.5}  # 2 of 4; u2 has 1 of 3
    reason = got[(got.user_id == "u1") & (got.tag == "price_sensitive")].iloc[0]
    assert reason.reason_en == "2 of 4 orders (50%) at a promotion price or with a discount"
    assert reason.reason_zh == "4 单里有 2 单（50%）是促销价或用了优惠"


def test_price_sensitive_from_a_coupon_column_and_min_orders():
    times = ["2024-06-01 02:00", "2024-06-02 02:00", "2024-06-03 02:00"]
    u1 = _orders("u1", times)
    u2 = _orders("u2", times[:2])  # 2 orders, both with coupons: below min_orders
    items = _items(u1) + _items(u2)
    got = run(u1 + u2, items, extra=("coupon_id", ["c1", None, " ", "c2", "c3"]))
    assert tagged(got, "price_sensitive") == {}  # u1: 1 of 3 (a blank is no coupon)
    got = run(u1 + u2, items, extra=("coupon_id", ["c1", "c9", None, "c2", "c3"]))
    assert tagged(got, "price_sensitive") == {"u1": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    ("utc_times", "tag", "expected"),
    [
        # 22:00, 04:59 and 05:00 in Shanghai: 2 of 3 at night
        (["2024-06-03 14:00", "2024-06-03 20:59", "2024-06-04 21:00"], "night_owl", 2 / 3),
        # 21:59, 05:00, 22:00: 1 of 3
        (["2024-06-03 13:59", "2024-06-04 21:00", "2024-06-05 14:00"], "night_owl", None),
        # 11:00, 13:59, 14:00 in Shanghai: 2 of 3 at lunch
        (["2024-06-03 03:00", "2024-06-04 05:59", "2024-06-05 06:00"], "lunch_buyer", 2 / 3),
        # Sat 06-01 00:00, Sun 06-02 23:59, Mon 06-03 00:00 (Shanghai): 2 of 3 = 0.667 >= 0.6
        (["2024-05-31 16:00", "2024-06-02 15:59", "2024-06-02 16:00"], "weekend_buyer", 2 / 3),
        # Fri 06-07 23:59, Sat 06-08 00:00, Mon 06-10: 1 of 3
        (["2024-06-07 15:59", "2024-06-07 16:00", "2024-06-10 02:00"], "weekend_buyer", 1 / 3),
    ],
)
def test_time_habits_in_shop_hours(utc_times, tag, expected):
    o = _orders("u1", utc_times)
    got = tagged(run(o, _items(o)), tag)
    if expected is None or expected < (RULES.weekend_share if tag == "weekend_buyer" else RULES.time_habit_share):
        assert got == {}
    else:
        assert got == {"u1": pytest.approx(expected)}


def test_night_reason_names_the_hours():
    o = _orders("u1", ["2024-06-03 14:00", "2024-06-04 14:00", "2024-06-05 14:00"])
    row = run(o, _items(o)).query("tag == 'night_owl'").iloc[0]
    assert row.reason_en == "3 of 3 orders (100%) placed between 22:00 and 5:00"
    assert row.reason_zh == "3 单里有 3 单（100%）在 22 点到次日 5 点之间下单"


def test_category_loyal_at_the_share_boundary():
    times = ["2024-06-01 02:00", "2024-06-05 02:00", "2024-06-09 02:00"]
    u1 = _orders("u1", times, 40.0)
    u2 = _orders("u2", times, 40.0)
    # u1: 80 of 100 on 课程 (exactly 0.8); u2: 79 of 100
    items = [(u1[0][0], 1, "c1", "课程", 1, 40.0), (u1[1][0], 1, "c2", "课程", 1, 40.0),
             (u1[2][0], 1, "s1", "皮肤", 1, 20.0),
             (u2[0][0], 1, "c1", "课程", 1, 40.0), (u2[1][0], 1, "c2", "课程", 1, 39.0),
             (u2[2][0], 1, "s1", "皮肤", 1, 21.0)]  # fmt: skip
    got = run(u1 + u2, items)
    assert tagged(got, "category_loyal") == {"u1": pytest.approx(0.8)}
    assert got.query("tag == 'category_loyal'").iloc[0].reason_en == "80% of spend on 课程 (3 orders)"


def test_repeat_item_counts_orders_not_lines():
    u1 = _orders("u1", ["2024-06-01 02:00", "2024-06-05 02:00", "2024-06-09 02:00"])
    u2 = _orders("u2", ["2024-06-01 02:00", "2024-06-05 02:00"])
    items = _items(u1, sku="coupon-30") + _items(u2, sku="coupon-30")
    items.append((u2[0][0], 2, "coupon-30", "点券", 1, 10.0))  # twice in one order: still 2 orders
    got = run(u1 + u2, items)
    assert tagged(got, "repeat_item") == {"u1": 3.0}
    assert got.query("tag == 'repeat_item'").iloc[0].reason_en == "bought coupon-30 in 3 orders"


def test_social_counts_the_last_window_days():
    # 90 days before 06-30 is 04-01: 04-02 is inside, 04-01 is not (Shanghai days)
    events = [event("e1", "u1", "2024-04-01 02:00", "share"), event("e2", "u1", "2024-04-02 02:00", "invite"),
              event("e3", "u1", "2024-06-30 15:00", "group_buy"),  # 23:00 on 06-30: inside
              event("e4", "u1", "2024-06-30 16:00", "share"),  # 07-01 in Shanghai: after as_of
              event("e5", "u1", "2024-06-10 02:00", "share"),
              event("e6", "u2", "2024-06-10 02:00", "like")]  # fmt: skip
    got = run([], [], events)
    assert tagged(got, "social") == {"u1": 3.0}
    assert got.iloc[0].reason_zh == "近 90 天分享、邀请或拼团 3 次"


def test_new_product_needs_a_real_launch_and_an_early_buy():
    # the data start on 01-01 (sku-old); sku-new launches 01-31 (30 days later: a launch),
    # sku-mid launches 01-30 (29 days: it may have been on sale before the data)
    start = [order("o0", "u0", "2024-01-01 02:00", 10.0)]
    new = [order("n0", "u9", "2024-01-31 02:00", 10.0)]
    mid = [order("m0", "u9", "2024-01-30 02:00", 10.0)]
    u1 = [order("a1", "u1", "2024-02-29 02:00", 10.0), order("a2", "u1", "2024-02-29 03:00", 10.0),
          order("a3", "u1", "2024-03-01 02:00", 10.0)]  # fmt: skip
    items = (_items(start, sku="sku-old") + _items(new, sku="sku-new") + _items(mid, sku="sku-mid")
             + [("a1", 1, "sku-new", "礼包", 1, 10.0),  # day 29 after launch: early
                ("a2", 1, "sku-new", "礼包", 1, 10.0),
                ("a3", 1, "sku-new", "礼包", 1, 10.0)])  # day 30: no longer new  # fmt: skip
    got = run(start + new + mid + u1, items)
    # u1: 2 of 3 items early (>= 2 and 67% >= 50%); u9 bought sku-new on its launch day but
    # only 1 early item of 2 (sku-mid does not count as a launch): below new_product_min
    assert tagged(got, "new_product") == {"u1": pytest.approx(2 / 3)}


def test_wide_view_has_one_boolean_per_tag():
    o = _orders("u1", ["2024-06-03 14:00", "2024-06-04 14:00", "2024-06-05 14:00"])
    long = run(o, _items(o, sku="x"))
    wide = _con().execute(tags_wide(ibis.memtable(long))).set_index("user_id")
    assert list(wide.columns) == [*TAGS, "tag_count"]
    on = {t for t in TAGS if wide.loc["u1", t]}
    assert on == set(long.tag) == {"night_owl", "repeat_item", "category_loyal"}
    assert wide.loc["u1", "tag_count"] == 3


def test_settings_check_hours():
    with pytest.raises(ConfigError, match="night_hours"):
        Settings.from_dict({"tags": {"night_hours": [22, 22]}})


# -- the simulated shop: a plain pandas recount ---------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from userstrata.datasets import simulate_shop
    from userstrata.schema import CANONICAL
    from userstrata.workspace import Workspace

    files = simulate_shop(200, tmp_path_factory.mktemp("sim") / "files", seed=11, end=AS_OF)
    ws = Workspace.open(":memory:", settings=Settings())
    for name, path in files.items():
        if name in CANONICAL:
            ws.load(name, path)
    yield ws
    ws.close()


def test_order_share_tags_match_a_pandas_recount(sim):
    bought = purchases(sim.table("orders"), as_of=AS_OF, clock=Clock())
    got = user_tags(bought, sim.table("order_items"), sim.table("events"),
                    as_of=AS_OF, clock=Clock(), rules=RULES).to_pandas()  # fmt: skip
    o = sim.table("orders").to_pandas()
    o = o[o.status.isin(["paid", "completed", "refunding", "partially_refunded", "refunded"])]
    local = o.ts + pd.Timedelta(hours=8)
    o = o.assign(hour=local.dt.hour, weekend=local.dt.day_of_week >= 5)[local.dt.date <= AS_OF]
    per = o.groupby("user_id").agg(n=("order_id", "size"), night=("hour", lambda h: ((h >= 22) | (h < 5)).sum()),
                                   lunch=("hour", lambda h: ((h >= 11) & (h < 14)).sum()),
                                   weekend=("weekend", "sum"))  # fmt: skip
    per = per[per.n >= RULES.min_orders]
    for tag, col, share in (("night_owl", "night", 0.5), ("lunch_buyer", "lunch", 0.5), ("weekend_buyer", "weekend", 0.6)):
        want = per[per[col] / per.n >= share]
        assert tagged(got, tag) == pytest.approx((want[col] / want.n).to_dict()), tag
    assert len(tagged(got, "weekend_buyer")) > 0


def test_documented_settings_are_the_defaults():
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "tags.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    documented = Settings.from_dict(tomllib.loads(block))
    defaults = Settings()
    for section in ("realisation", "tags", "density"):
        assert getattr(documented, section) == getattr(defaults, section), section
