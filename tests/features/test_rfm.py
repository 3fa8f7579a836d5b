"""RFM columns against hand-computed cases (shop time zone Asia/Shanghai, UTC+8)."""

from decimal import ROUND_HALF_UP, Decimal

import ibis
import pytest

from builders import AS_OF, order, run_profile, table
from userstrata.config import Settings
from userstrata.features import btyd_summary, purchases
from userstrata.features._time import Clock
from userstrata.schema import NON_PURCHASE_STATUSES, PURCHASE_STATUSES


def test_same_day_orders_count_once_and_refunds_are_netted():
    # u1: two orders on local 2024-05-01 (01:00Z = 09:00, 12:00Z = 20:00), one on 06-20;
    # the second order is fully refunded on 05-03.
    got = run_profile(orders=[
        order("o1", "u1", "2024-05-01 01:00", 10.0),
        order("o2", "u1", "2024-05-01 12:00", 5.0, refund=5.0, refunded_at="2024-05-03 00:00"),
        order("o3", "u1", "2024-06-20 12:00", 20.0),
    ]).loc["u1"]
    assert got.frequency == 1  # two purchase days, the first is not a repeat
    assert got.orders == 3
    assert got.monetary == pytest.approx(30.0)  # 10 + (5 - 5) + 20
    assert got.aov == pytest.approx(10.0)  # 30 / 3 orders
    assert got.refund_rate == pytest.approx(1 / 3)
    assert got.recency_days == 10  # 06-20 -> 06-30
    assert got.tenure_days == 60  # 05-01 -> 06-30


def test_time_zone_moves_day_boundaries():
    # 15:59Z and 16:01Z on 05-01 are 23:59 on 05-01 and 00:01 on 05-02 in Shanghai:
    # two purchase days there, one purchase day in UTC.
    orders = [order("a", "u1", "2024-05-01 15:59", 1.0), order("b", "u1", "2024-05-01 16:01", 1.0)]
    assert run_profile(orders=orders).loc["u1", "frequency"] == 1
    utc = Settings.from_dict({"timezone": "UTC"})
    assert run_profile(orders=orders, settings=utc).loc["u1", "frequency"] == 0


def test_order_after_as_of_and_cancelled_orders_are_ignored():
    got = run_profile(orders=[
        order("o1", "u1", "2024-06-01 04:00", 50.0),
        order("o2", "u1", "2024-06-10 04:00", 70.0, status="cancelled"),
        order("o3", "u1", "2024-06-30 16:30", 99.0),  # 07-01 00:30 local: after as_of
    ]).loc["u1"]
    assert (got.orders, got.frequency, got.monetary) == (1, 0, 50.0)
    assert got.recency_days == 29


def test_refund_known_only_from_its_date():
    rows = [order("o1", "u1", "2024-06-01 04:00", 80.0, refund=30.0, refunded_at="2024-07-05 00:00")]
    assert run_profile(orders=rows).loc["u1", "monetary"] == 50.0 + 30.0  # not yet refunded on 06-30
    assert run_profile(orders=rows).loc["u1", "refund_rate"] == 0.0


def test_single_order_user():
    got = run_profile(orders=[order("o1", "u9", "2024-06-29 02:00", 12.5)]).loc["u9"]
    assert (got.frequency, got.orders, got.recency_days, got.tenure_days) == (0, 1, 1, 1)
    assert got.monetary == 12.5 and got.aov == 12.5


def test_monetary_window():
    rows = [order("o1", "u1", "2024-01-10 04:00", 100.0), order("o2", "u1", "2024-06-10 04:00", 40.0)]
    windowed = Settings.from_dict({"profile": {"monetary_window_days": 90}})
    got = run_profile(orders=rows, settings=windowed).loc["u1"]
    assert got.monetary == 40.0 and got.aov == 40.0  # only the order within 90 days
    assert got.frequency == 1  # frequency still counts all history


def _execute(expr):
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr)


def test_purchases_are_orders_with_a_purchase_status_or_none():
    # the documented statuses, written out here rather than read from the code
    counted = ["paid", "completed", "refunding", "partially_refunded", "refunded"]
    assert set(PURCHASE_STATUSES) == set(counted)
    assert set(NON_PURCHASE_STATUSES) == {"cancelled", "awaiting_payment"}
    not_counted = ["cancelled", "awaiting_payment", "closed", "交易成功", "PAID", "Paid ", ""]
    rows = [order(f"yes-{s}", "u1", "2024-06-01 04:00", 1.0, status=s) for s in counted]
    rows.append(order("yes-null", "u1", "2024-06-01 04:00", 1.0, status=None))  # legacy row
    rows += [order(f"no-{s}", "u1", "2024-06-01 04:00", 1.0, status=s) for s in not_counted]
    got = _execute(purchases(table("orders", rows), as_of=AS_OF, clock=Clock()))
    assert sorted(got.order_id) == sorted([f"yes-{s}" for s in counted] + ["yes-null"])
    profile = run_profile(orders=rows).loc["u1"]
    assert (profile.orders, profile.monetary) == (6, 6.0)


def _half_up(total_cents: int, n: int) -> float:
    """The documented aov: cents / n rounded to the cent, half away from zero, via decimal."""
    return float((Decimal(total_cents) / 100 / n).quantize(Decimal("0.01"), ROUND_HALF_UP))


def test_money_is_summed_in_exact_cents():
    # a0: 0.56 + 0.57 -> aov 0.565 -> 0.57 (a float mean is 0.56499..., rounded down to 0.56)
    # a1: 0.01 + 0.00 -> aov 0.005 -> 0.01; a2: 1 cent over 3 orders -> 0.00
    # a3: 0.1 ten times and 0.2 ten times -> 3.00, aov 0.15 (float sums drift below 3)
    # a4: 2.67 + 2.68 -> aov 2.675 -> 2.68; a5: refund larger than the amount -> -0.005 -> -0.01
    amounts = {
        "a0": [0.56, 0.57], "a1": [0.01, 0.00], "a2": [0.01, 0.0, 0.0],
        "a3": [0.1] * 10 + [0.2] * 10, "a4": [2.67, 2.68],
    }
    rows = [
        order(f"{u}-{k}", u, f"2024-06-{1 + k:02d} 04:00", a)
        for u, values in amounts.items() for k, a in enumerate(values)
    ]
    rows += [order("a5-0", "a5", "2024-06-01 04:00", 0.02, refund=0.03), order("a5-1", "a5", "2024-06-02 04:00", 0.0)]
    got = run_profile(orders=rows)
    cents = {u: sum(round(Decimal(str(a)) * 100) for a in values) for u, values in amounts.items()}
    cents["a5"] = 2 - 3
    expected_aov = {"a0": 0.57, "a1": 0.01, "a2": 0.0, "a3": 0.15, "a4": 2.68, "a5": -0.01}
    for user, total in cents.items():
        n = len(amounts.get(user, [0, 0]))
        assert _half_up(total, n) == expected_aov[user], user  # the hand values agree with decimal
        assert got.loc[user, "aov"] == expected_aov[user], user
        assert got.loc[user, "monetary"] == float(Decimal(total) / 100), user
    assert got.loc["a3", "monetary"] == 3.0


def test_btyd_spend_is_exact():
    # repeat days: 0.1 + 0.2 on one day, 0.3 on another -> (0.30 + 0.30) / 2 = 0.3 exactly
    rows = [
        order("o1", "u1", "2024-06-01 04:00", 9.99),
        order("o2", "u1", "2024-06-02 04:00", 0.1), order("o3", "u1", "2024-06-02 05:00", 0.2),
        order("o4", "u1", "2024-06-03 04:00", 0.3),
    ]
    got = _execute(btyd_summary(table("orders", rows), as_of=AS_OF, clock=Clock())).set_index("user_id")
    assert got.loc["u1", "frequency"] == 2
    assert got.loc["u1", "monetary_mean"] == 0.3
    assert got.loc["u1", "first_order_value"] == 9.99  # the first purchase day, net


def test_first_order_value_is_the_first_days_net_spend():
    # two orders on the first local day (one refunded in part), then a repeat; a one-day buyer
    rows = [
        order("o1", "u1", "2024-06-01 01:00", 5.5), order("o2", "u1", "2024-06-01 10:00", 4.0, refund=1.25),
        order("o3", "u1", "2024-06-05 04:00", 100.0),
        order("o4", "u2", "2024-06-10 04:00", 0.1),
    ]
    got = _execute(btyd_summary(table("orders", rows), as_of=AS_OF, clock=Clock())).set_index("user_id")
    assert got.loc["u1", "first_order_value"] == 8.25  # 5.50 + 4.00 - 1.25
    assert got.loc["u2", "first_order_value"] == 0.1 and got.loc[["u2"], "monetary_mean"].isna().all()


def test_rfm_scores_are_quintiles_among_buyers():
    # 10 buyers with distinct spend 10..100 and recency 1..10 days; one visitor without orders
    rows = [order(f"o{i}", f"u{i:02d}", f"2024-06-{29 - i:02d} 04:00", 10.0 * (i + 1)) for i in range(10)]
    got = run_profile(orders=rows, events=[("e", "v1", None, None, "2024-06-29 04:00", "page_view", None)])
    buyers = got.drop(index="v1")
    # spend rank 1..10 -> quintile (rank-1)//2 + 1
    expected_m = {f"u{i:02d}": i // 2 + 1 for i in range(10)}
    assert buyers["rfm_m"].astype(int).to_dict() == expected_m
    # u00 bought most recently (06-29) -> highest R
    expected_r = {f"u{i:02d}": 5 - i // 2 for i in range(10)}
    assert buyers["rfm_r"].astype(int).to_dict() == expected_r
    assert got.loc["v1", ["rfm_r", "rfm_f", "rfm_m"]].isna().all()
