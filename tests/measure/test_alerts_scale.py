"""The set-based forms of the early-warning rules (one maximum per source for the silent rule,
one anti join for unused purchases) against plain pandas on random histories, plus the
boundaries those forms could get wrong: a purchase as the last activity, usage at the very
second of the purchase, several unused purchases of one user, events without a user."""

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest

from builders import event, order, table
from userstrata.config import AlertSettings
from userstrata.features._time import Clock
from userstrata.measure import alerts as al

AS_OF = dt.date(2024, 6, 30)
CLOCK = Clock("Asia/Shanghai", "duckdb")
RULES = AlertSettings()
PAID = {"paid", "completed", "refunding", "partially_refunded", "refunded"}


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    c.raw_sql("SET TimeZone = 'UTC'")
    return c


def local_day(ts: pd.Series) -> pd.Series:
    return (pd.to_datetime(ts) + pd.Timedelta(hours=8)).dt.date  # Shanghai: UTC+8 since 1991


def random_shop(seed: int, n_users: int = 60):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01")
    users = [f"u{i:03d}" for i in range(n_users)]
    ev = []
    for k in range(1500):
        ts = start + pd.Timedelta(seconds=int(rng.integers(0, 125 * 86400)))
        user = None if k % 97 == 0 else users[int(rng.integers(0, n_users)) ** 2 // n_users]
        name = rng.choice(["page_view", "use", "login", "watch", "search", "redeem"])
        ev.append(event(f"e{k}", user, str(ts), str(name)))
    orders, items = [], []
    for k in range(180):
        ts = start + pd.Timedelta(seconds=int(rng.integers(0, 125 * 86400)))
        status = str(rng.choice(["paid", "paid", "refunded", "cancelled", "completed"]))
        orders.append(order(f"o{k}", users[int(rng.integers(0, n_users))], str(ts), 10.0, status=status))
        for line in range(int(rng.integers(1, 3))):
            cat = str(rng.choice(["课程", "会员", "皮肤"]))
            items.append((f"o{k}", line, f"{cat}-{int(rng.integers(0, 3))}", cat, 1, 10.0))
    tiers = pd.DataFrame({"user_id": users, "tier": [("co_builder", "engaged", "regular")[i % 3] for i in range(n_users)],
                          "lifecycle": "mature"})
    return ev, orders, items, tiers


def frames(ev, orders, items):
    e = pd.DataFrame(ev, columns=["event_id", "user_id", "anonymous_id", "session_id", "ts", "event", "properties"])
    o = pd.DataFrame(orders, columns=["order_id", "user_id", "ts", "amount", "currency", "status", "refund_amount",
                                      "refunded_at"])
    i = pd.DataFrame(items, columns=["order_id", "line_no", "sku", "category", "quantity", "price"])
    for f in (e, o):
        f["ts"] = pd.to_datetime(f["ts"])
        f["day"] = local_day(f["ts"])
    return e, o, i


def pandas_silent(e, o, tiers) -> pd.DataFrame:
    e = e[e["user_id"].notna() & (e["day"] <= AS_OF)]
    o = o[(o["status"].isin(PAID) | o["status"].isna()) & (o["day"] <= AS_OF)]
    last = pd.concat([e[["user_id", "day"]], o[["user_id", "day"]]]).groupby("user_id")["day"].max()
    top = tiers[tiers["tier"].isin(RULES.silent_tiers)].set_index("user_id")
    top = top.join(last.rename("last_active"), how="inner")
    top["silent_days"] = [(AS_OF - d).days for d in top["last_active"]]
    return top[top["silent_days"] >= RULES.silent_days]


def pandas_unused(e, o, i) -> pd.DataFrame:
    o = o[(o["status"].isin(PAID) | o["status"].isna()) & (o["status"] != "refunded") & (o["day"] <= AS_OF)]
    o = o[o["day"] > AS_OF - dt.timedelta(days=RULES.purchase_lookback_days)]
    o = o[[(AS_OF - d).days >= RULES.unused_days for d in o["day"]]]
    lines = i[i["category"].isin(RULES.unused_categories)][["order_id", "sku"]].drop_duplicates()
    bought = o.merge(lines, on="order_id")
    use = e[e["user_id"].notna() & e["event"].isin(RULES.usage_events) & (e["day"] <= AS_OF)]
    used = [((use["user_id"] == u) & (use["ts"] >= t)).any() for u, t in zip(bought["user_id"], bought["ts"])]
    unused = bought[~np.array(used, dtype=bool)]
    counts = unused.groupby("user_id")["order_id"].nunique()
    first = unused.sort_values(["user_id", "ts", "order_id", "sku"]).drop_duplicates("user_id").set_index("user_id")
    first["unused_purchases"] = counts
    first["days_unused"] = [(AS_OF - d).days for d in first["day"]]
    return first


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_silent_high_tier_matches_pandas(con, seed):
    ev, orders, items, tiers = random_shop(seed)
    got = con.execute(al.silent_high_tier(table("events", ev), table("orders", orders), ibis.memtable(tiers),
                                          as_of=AS_OF, clock=CLOCK, rules=RULES)).set_index("user_id").sort_index()
    want = pandas_silent(*frames(ev, orders, items)[:2], tiers).sort_index()
    assert len(want) > 3  # the random shop has silent high-tier users
    assert list(got.index) == list(want.index)
    assert [pd.Timestamp(x).date() for x in got["last_active"]] == list(want["last_active"])
    assert got["silent_days"].tolist() == want["silent_days"].tolist()
    assert got["tier"].tolist() == want["tier"].tolist()


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_unused_purchase_matches_pandas(con, seed):
    ev, orders, items, tiers = random_shop(seed, n_users=40)
    got = con.execute(al.unused_purchase(table("events", ev), table("orders", orders), table("order_items", items),
                                         ibis.memtable(tiers), as_of=AS_OF, clock=CLOCK, rules=RULES))
    got = got.set_index("user_id").sort_index()
    want = pandas_unused(*frames(ev, orders, items)).sort_index()
    assert len(want) > 2
    assert list(got.index) == list(want.index)
    assert got["sku"].tolist() == want["sku"].tolist()
    assert got["unused_purchases"].tolist() == want["unused_purchases"].tolist()
    assert got["days_unused"].tolist() == want["days_unused"].tolist()


def test_silent_counts_a_purchase_as_the_last_activity(con):
    tiers = ibis.memtable(pd.DataFrame({"user_id": ["a", "b"], "tier": ["engaged", "co_builder"]}))
    ev = [event("1", "a", "2024-05-01 04:00", "login"), event("2", "b", "2024-05-01 04:00", "login"),
          event("3", None, "2024-06-29 04:00", "login")]  # no user: nobody's activity
    orders = [order("o1", "a", "2024-06-20 04:00", 5.0),  # a purchase 10 days ago: not silent
              order("o2", "b", "2024-06-25 04:00", 5.0, status="cancelled")]  # not a purchase
    got = con.execute(al.silent_high_tier(table("events", ev), table("orders", orders), tiers, as_of=AS_OF,
                                          clock=CLOCK, rules=RULES)).set_index("user_id")
    assert list(got.index) == ["b"] and got.loc["b", "silent_days"] == 60


def test_unused_usage_at_the_second_of_purchase_counts(con):
    items = [("o1", 1, "c-1", "课程", 1, 9.0), ("o2", 1, "c-2", "课程", 1, 9.0), ("o2", 2, "m-1", "会员", 1, 9.0),
             ("o3", 1, "c-3", "课程", 1, 9.0)]
    orders = [order("o1", "a", "2024-06-01 04:00:00", 9.0),  # used at the same second
              order("o2", "b", "2024-06-02 04:00:00", 18.0), order("o3", "b", "2024-06-01 04:00:00", 9.0)]
    ev = [event("u1", "a", "2024-06-01 04:00:00", "use"),
          event("u2", "b", "2024-06-01 03:59:59", "use")]  # b used one second before both orders
    got = con.execute(al.unused_purchase(table("events", ev), table("orders", orders), table("order_items", items),
                                         ibis.memtable(pd.DataFrame({"user_id": ["b"], "tier": ["regular"]})),
                                         as_of=AS_OF, clock=CLOCK, rules=RULES)).set_index("user_id")
    assert list(got.index) == ["b"]
    # the earliest unused purchase is o3 (06-01); o2's two lines are one purchase: 2 in all
    assert got.loc["b", "sku"] == "c-3" and got.loc["b", "unused_purchases"] == 2
    assert got.loc["b", "days_unused"] == 29
