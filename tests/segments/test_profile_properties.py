"""Invariants of the profile on random shops (hypothesis), checked against plain pandas."""

import datetime as dt

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import AS_OF, event, order, run_profile
from userstrata.config import Settings
from userstrata.schema import LIFECYCLE_STAGES, PROFILE_COLUMNS, RFM_CELLS, TIERS
from userstrata.segments import tier_shares

START = dt.datetime(2023, 9, 1)
users = st.sampled_from([f"u{i}" for i in range(12)])
moments = st.integers(200 * 24, 303 * 24).map(lambda h: START + dt.timedelta(hours=h))
orders = st.lists(
    st.tuples(users, moments, st.integers(0, 50_000).map(lambda c: c / 100), st.booleans(),
              st.sampled_from(["paid", "refunded", "cancelled"])),
    max_size=40,
)
events = st.lists(st.tuples(users, moments, st.sampled_from(["page_view", "share", "post", "checkin", "use"])), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=orders, events=events)
def test_every_user_has_one_stage_tier_and_cell(orders, events):
    order_rows = [
        order(f"o{i}", u, ts.strftime("%Y-%m-%d %H:%M"), amt, status=status,
              refund=amt / 2 if refund else 0.0,
              refunded_at=(ts + dt.timedelta(days=3)).strftime("%Y-%m-%d %H:%M") if refund else None)
        for i, (u, ts, amt, refund, status) in enumerate(orders)
    ]
    event_rows = [event(f"e{i}", u, ts.strftime("%Y-%m-%d %H:%M"), name) for i, (u, ts, name) in enumerate(events)]
    got = run_profile(orders=order_rows, events=event_rows)
    assert list(got.reset_index().columns[: len(PROFILE_COLUMNS)]) == list(PROFILE_COLUMNS)

    # users: everyone with a purchase (not cancelled) or an event on or before as_of (local day)
    local = lambda ts: (ts + dt.timedelta(hours=8)).date()  # noqa: E731 - Asia/Shanghai
    buyers_seen = {u for u, ts, _a, _r, s in orders if local(ts) <= AS_OF and s != "cancelled"}
    assert set(got.index) == buyers_seen | {u for u, ts, _ in events if local(ts) <= AS_OF}
    assert got.index.is_unique
    assert got.lifecycle.isin(LIFECYCLE_STAGES).all()
    assert got.tier.isin(TIERS).all()
    assert got.rfm_cell.isin(RFM_CELLS).all()
    if len(got):
        assert abs(tier_shares(got.reset_index(), Settings().tiers)["share"].sum() - 1.0) < 1e-12

    # monetary against an independent pandas computation
    frame = pd.DataFrame(orders, columns=["user_id", "ts", "amount", "refund", "status"])
    frame["day"] = [local(ts) for ts in frame.ts]
    frame["refund_known"] = [r and local(ts + dt.timedelta(days=3)) <= AS_OF for ts, r in zip(frame.ts, frame.refund)]
    frame = frame[(frame.day <= AS_OF) & (frame.status != "cancelled")]
    net = frame.amount - frame.refund_known * frame.amount / 2
    expected = net.groupby(frame.user_id).sum().round(2)
    for user, value in expected.items():
        assert abs(got.loc[user, "monetary"] - value) < 0.011
    days = frame.groupby("user_id").day.nunique()
    for user, n in days.items():
        assert got.loc[user, "frequency"] == n - 1
    # lifecycle against a brute-force reading of the rules (DESIGN.md defaults)
    active: dict[str, set] = {}
    for u, ts, _a, _r, status in orders:
        if status != "cancelled" and local(ts) <= AS_OF:
            active.setdefault(u, set()).add(local(ts))
    for u, ts, _ in events:
        if local(ts) <= AS_OF:
            active.setdefault(u, set()).add(local(ts))
    for u, days_set in active.items():
        days_sorted = sorted(days_set)
        inactive = (AS_OF - days_sorted[-1]).days
        tenure = (AS_OF - days_sorted[0]).days
        returned = any((d - p).days > 30 and (AS_OF - d).days <= 30 for p, d in zip(days_sorted, days_sorted[1:]))
        expected_stage = (
            "churned" if inactive > 90 else "dormant" if inactive > 30 else "potential" if u not in buyers_seen
            else "returning" if returned else "new" if tenure <= 7 else "growth" if tenure <= 30 else "mature"
        )
        assert got.loc[u, "lifecycle"] == expected_stage, u

    buyers = got[got.orders > 0]
    for col in ("rfm_r", "rfm_f", "rfm_m"):
        assert buyers[col].between(1, 5).all()
    assert (got[got.orders == 0].lifecycle.isin(["potential", "dormant", "churned"])).all()
