"""Invariants of the profile on random shops (hypothesis), checked against plain Python:
purchases by status, exact money, and the lifecycle against the day-by-day reading of the
rules (tests/features/lifecycle_reference.py)."""

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import AS_OF, event, order, run_profile
from features.lifecycle_reference import simulate
from userstrata.config import Settings
from userstrata.schema import LIFECYCLE_STAGES, PROFILE_COLUMNS, RFM_CELLS, TIERS
from userstrata.segments import tier_shares

# documented purchase statuses, and a missing status (legacy rows)
COUNTED = {"paid", "completed", "refunding", "partially_refunded", "refunded", None}
START = dt.datetime(2023, 9, 1)
users = st.sampled_from([f"u{i}" for i in range(12)])
moments = st.integers(200 * 24, 303 * 24).map(lambda h: START + dt.timedelta(hours=h))
orders = st.lists(
    st.tuples(users, moments, st.integers(0, 50_000), st.booleans(),
              st.sampled_from(["paid", "refunded", "completed", None, "cancelled", "awaiting_payment", "closed"])),
    max_size=40,
)
events = st.lists(st.tuples(users, moments, st.sampled_from(["page_view", "share", "post", "checkin", "use"])), max_size=40)


def local(ts: dt.datetime) -> dt.date:
    return (ts + dt.timedelta(hours=8)).date()  # Asia/Shanghai


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=orders, events=events)
def test_every_user_has_one_stage_tier_and_cell(orders, events):
    # amounts and refunds in whole cents (the refund is half the amount, rounded down)
    order_rows = [
        order(f"o{i}", u, ts.strftime("%Y-%m-%d %H:%M"), cents / 100, status=status,
              refund=(cents // 2) / 100 if refund else 0.0,
              refunded_at=(ts + dt.timedelta(days=3)).strftime("%Y-%m-%d %H:%M") if refund else None)
        for i, (u, ts, cents, refund, status) in enumerate(orders)
    ]
    event_rows = [event(f"e{i}", u, ts.strftime("%Y-%m-%d %H:%M"), name) for i, (u, ts, name) in enumerate(events)]
    got = run_profile(orders=order_rows, events=event_rows)
    assert list(got.reset_index().columns[: len(PROFILE_COLUMNS)]) == list(PROFILE_COLUMNS)

    bought = [(u, ts, cents, refund) for u, ts, cents, refund, status in orders
              if status in COUNTED and local(ts) <= AS_OF]
    seen_events = [(u, ts) for u, ts, _ in events if local(ts) <= AS_OF]
    buyers = {u for u, *_ in bought}
    assert set(got.index) == buyers | {u for u, _ in seen_events}
    assert got.index.is_unique
    assert got.lifecycle.isin(LIFECYCLE_STAGES).all()
    assert got.tier.isin(TIERS).all()
    assert got.rfm_cell.isin(RFM_CELLS).all()
    if len(got):
        assert abs(tier_shares(got.reset_index(), Settings().tiers)["share"].sum() - 1.0) < 1e-12

    # money, exactly: net cents per user, aov rounded half away from zero
    net: dict[str, int] = {}
    n_orders: dict[str, int] = {}
    for u, ts, cents, refund in bought:
        refund_known = refund and local(ts + dt.timedelta(days=3)) <= AS_OF
        net[u] = net.get(u, 0) + cents - (cents // 2 if refund_known else 0)
        n_orders[u] = n_orders.get(u, 0) + 1
    for u in buyers:
        assert got.loc[u, "monetary"] == float(Decimal(net[u]) / 100), u
        aov = (Decimal(net[u]) / 100 / n_orders[u]).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert got.loc[u, "aov"] == float(aov), u
        assert got.loc[u, "orders"] == n_orders[u]
        assert got.loc[u, "frequency"] == len({local(ts) for v, ts, *_ in bought if v == u}) - 1

    # lifecycle against the day-by-day reading of the rules
    active: dict[str, set] = {}
    for u, ts, *_ in bought:
        active.setdefault(u, set()).add(local(ts))
    for u, ts in seen_events:
        active.setdefault(u, set()).add(local(ts))
    for u, days in active.items():
        ref = simulate(days, bought=u in buyers, as_of=AS_OF, rules=Settings().lifecycle)
        assert got.loc[u, "lifecycle"] == ref["lifecycle"], (u, sorted(days))

    paying = got[got.orders > 0]
    for col in ("rfm_r", "rfm_f", "rfm_m"):
        assert paying[col].between(1, 5).all()
        assert paying.empty or (paying[col] == 1).any()  # the worst value always scores 1
    assert (got[got.orders == 0].lifecycle.isin(["potential", "dormant", "churned"])).all()
