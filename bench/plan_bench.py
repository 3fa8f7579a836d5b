"""The contact plan at scale: 1M users, 20 playbooks (the 15 defaults and 5 more), 7 days.

    PYTHONPATH=src .venv/bin/python bench/plan_bench.py [--users 1000000] [--days 7]

A synthetic profile (tiers and stages in the domain's shares), triggers for 20% of the users,
best send hours for 70% (as profile columns, the way ``make_plan`` joins them on the engine), 500k history contacts and 20k unsubscribes; timed apart: the segment
members (one DuckDB pass over the profile) and ``build_plan`` itself. The target is under 30 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pandas as pd

from userstrata.activate.playbooks import Playbook, playbook_members, playbooks_from
from userstrata.activate.plan import build_plan

EXTRA = [
    Playbook(name="regular_bundle", where="tier == 'regular' and orders >= 3", channel="wechat_template",
             template="bundle", offer_type="discount", offer_value=0.9, goal="upgrade", priority=35),
    Playbook(name="engaged_review_invite", where="tier == 'engaged' and orders >= 5", channel="community",
             template="review_invite", goal="care", priority=30),
    Playbook(name="growth_checkin", where="lifecycle == 'growth'", channel="app_push", template="checkin",
             goal="upgrade", priority=25, cooldown_days=3),
    Playbook(name="returning_welcome_back", where="lifecycle == 'returning'", channel="sms", template="back",
             goal="care", priority=60, variants={"A": 0.45, "B": 0.45, "holdout": 0.10}),
    Playbook(name="big_spender_thanks", where="rfm_m >= 5", channel="wecom", template="thanks", goal="care",
             priority=70, cooldown_days=30),
]  # fmt: skip


def synthetic(n: int, start: dt.date, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.char.add("u", np.arange(n).astype(str)).astype(object)
    profile = pd.DataFrame({
        "user_id": ids,
        "tier": rng.choice(["explorer", "regular", "engaged", "co_builder"], n, p=[0.45, 0.35, 0.13, 0.07]),
        "lifecycle": rng.choice(["potential", "new", "growth", "mature", "dormant", "churned", "returning"], n,
                                p=[0.05, 0.05, 0.1, 0.3, 0.2, 0.25, 0.05]),
        "orders": rng.poisson(2, n), "tenure_days": rng.integers(0, 720, n), "rfm_m": rng.integers(1, 6, n).astype(float),
        "monetary": rng.gamma(2, 200, n), "recency_days": rng.integers(0, 400, n),
    })  # fmt: skip
    books = [b.name for b in playbooks_from() if b.trigger]
    k = n // 5
    base = pd.Timestamp(start)
    triggers = pd.DataFrame({"user_id": ids[rng.integers(0, n, k)], "playbook": rng.choice(books, k),
                             "due_at": base + pd.to_timedelta(rng.integers(0, 7 * 24 * 60, k), unit="min"),
                             "exact": rng.random(k) < 0.5})  # fmt: skip
    # best hours for 70% of the users, as make_plan joins them onto the profile on the engine
    active = rng.random(n) < 0.7
    profile["best_hour_weekday"] = np.where(active, rng.integers(8, 23, n), np.nan)
    profile["best_hour_weekend"] = np.where(active, rng.integers(8, 23, n), np.nan)
    h = 500_000
    all_books = [b.name for b in [*playbooks_from(), *EXTRA]]
    history = pd.DataFrame({"user_id": ids[rng.integers(0, n, h)], "playbook": rng.choice(all_books, h),
                            "send_at": base - pd.to_timedelta(rng.integers(1, 30 * 24 * 60, h), unit="min")})
    unsub = pd.DataFrame({"user_id": ids[rng.integers(0, n, 20_000)],
                          "channel": rng.choice(["sms", "wechat_template", "all"], 20_000)})
    return {"profile": profile, "triggers": triggers, "history": history, "unsub": unsub}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    start = dt.date(2024, 7, 1)
    data = synthetic(args.users, start)
    books = [*playbooks_from(), *EXTRA]
    assert len(books) == 20

    import ibis

    t0 = time.perf_counter()
    # as make_plan does: one query gives the users with their flags (rows line up by construction)
    profile = ibis.memtable(data["profile"])
    flags = playbook_members(profile, books)
    columns = ["user_id", "tier", "lifecycle", "best_hour_weekday", "best_hour_weekend"]
    frame = ibis.duckdb.connect().execute(profile.select(*columns).join(flags, "user_id"))
    t1 = time.perf_counter()
    plan = build_plan(frame, books, start=start, days=args.days, members=frame, triggers=data["triggers"],
                      unsubscribes=data["unsub"], history=data["history"])
    t2 = time.perf_counter()
    c = plan.contacts
    print(f"users {args.users:,}, playbooks {len(books)}, days {args.days}")
    print(f"members (DuckDB): {t1 - t0:.1f} s; build_plan: {t2 - t1:.1f} s; total {t2 - t0:.1f} s")
    print(f"candidate contacts {len(c):,}: " + ", ".join(f"{k} {v:,}" for k, v in c["status"].value_counts().items()))
    print(plan.summary.groupby("reason_code", observed=True)["contacts"].sum().to_string())


if __name__ == "__main__":
    main()
