"""The contact plan at scale: 1M users, 20 playbooks (15 defaults and 5 more), 7 days, against
a hand-written DuckDB SQL of the same rules in the same run.

    PYTHONPATH=src .venv/bin/python bench/plan_bench.py [--users 1000000] [--days 7]

A synthetic profile (tiers and stages in the domain's shares), triggers for 20% of the users,
best send hours for 70% (as profile columns, the way ``make_plan`` joins them on the engine), 500k
history contacts and 20k unsubscribes. Each contestant runs in its own subprocess (same seed,
same input frames), so that its peak memory (VmHWM) is its own:

- userstrata: the segment members (one DuckDB pass over the profile) and ``build_plan`` itself;
- sql: one DuckDB query written by hand over the same frames (members, triggers, history,
  unsubscribes): segment contacts repeated every cooldown, triggers inside their cooldown left out,
  send hour (own, the shop's most common, the peak), quiet hours, unsubscribes, then the caps:
  contacts ranked per user and week (month for dormant stages) by priority with a window
  function, history counted, kept within the tier's cap. No reason texts, experiments or
  fairness table. The contacts kept by the caps are compared with userstrata's, one by one.

The target is under 30 s and 2 GiB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from userstrata.activate.playbooks import DEFAULT_PLAYBOOKS, Playbook, playbook_members, playbooks_from
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
# the 15 defaults the first measurements used (9 segment or condition playbooks, 6 triggers) and
# the 5 above: 20 playbooks, the figure
FIRST_15 = ("explorer_onboarding", "explorer_first_order", "explorer_growth_path", "regular_member_benefits",
            "engaged_early_access", "co_builder_co_creation", "dormant_recall_gift", "churned_low_cost",
            "lapsed_high_value_care", "welcome_1h", "first_order_tip_6h", "first_order_coupon_24h", "cart_reminder",
            "dormant_30d", "cross_sell")  # fmt: skip
BOOKS = [*(b for b in playbooks_from(defaults=DEFAULT_PLAYBOOKS) if b.name in FIRST_15), *EXTRA]


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
    books = [b.name for b in BOOKS if b.trigger]
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
    all_books = [b.name for b in BOOKS]
    history = pd.DataFrame({"user_id": ids[rng.integers(0, n, h)], "playbook": rng.choice(all_books, h),
                            "send_at": base - pd.to_timedelta(rng.integers(1, 30 * 24 * 60, h), unit="min")})
    unsub = pd.DataFrame({"user_id": ids[rng.integers(0, n, 20_000)],
                          "channel": rng.choice(["sms", "wechat_template", "all"], 20_000)})
    return {"profile": profile, "triggers": triggers, "history": history, "unsub": unsub}


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def members_frame(profile: pd.DataFrame, books: list[Playbook], memory_limit: str | None) -> pd.DataFrame:
    """As make_plan does: one query gives the users with their flags (rows line up by construction)."""
    import ibis

    con = ibis.duckdb.connect()
    if memory_limit:
        con.raw_sql(f"SET memory_limit = '{memory_limit}'")
    table = ibis.memtable(profile)
    flags = playbook_members(table, books)
    columns = ["user_id", "tier", "lifecycle", "best_hour_weekday", "best_hour_weekend"]
    return con.execute(table.select(*columns).join(flags, "user_id"))


CAPS_SQL = """
WITH seg AS (
    UNPIVOT (SELECT user_id, {flags} FROM frame) ON {flags} INTO NAME playbook VALUE member
), last AS (
    SELECT h.user_id, h.playbook, max(CAST(h.send_at AS DATE)) AS last_day FROM hist h GROUP BY ALL
), seg_first AS (
    SELECT s.user_id, b.code, b.cooldown,
           CASE WHEN l.last_day IS NULL THEN DATE '{start}'
                ELSE greatest(DATE '{start}', l.last_day + b.cooldown) END AS first_day
    FROM seg s JOIN books b USING (playbook) LEFT JOIN last l USING (user_id, playbook)
    WHERE s.member
), seg_days AS (
    SELECT user_id, code, first_day + CAST(k * cooldown AS INTEGER) AS day, NULL::TIMESTAMP AS exact_at
    FROM seg_first, range(0, {days}) AS r(k)
    WHERE first_day + CAST(k * cooldown AS INTEGER) < DATE '{end}'
), trig_days AS (
    SELECT t.user_id, b.code, CAST(t.due_at AS DATE) AS day, CASE WHEN t.exact THEN t.due_at END AS exact_at
    FROM trig t JOIN books b USING (playbook) LEFT JOIN last l USING (user_id, playbook)
    WHERE l.last_day IS NULL OR l.last_day + b.cooldown <= CAST(t.due_at AS DATE)
), shop_hour AS (
    SELECT coalesce((SELECT best_hour_weekday FROM frame WHERE best_hour_weekday IS NOT NULL
                     GROUP BY ALL ORDER BY count(*) DESC, 1 LIMIT 1), {peak_wd}) AS wd,
           coalesce((SELECT best_hour_weekend FROM frame WHERE best_hour_weekend IS NOT NULL
                     GROUP BY ALL ORDER BY count(*) DESC, 1 LIMIT 1), {peak_we}) AS we
), timed AS (
    SELECT c.user_id, c.code, f.tier, f.lifecycle IN ('dormant', 'churned') AS dormant,
           coalesce(c.exact_at, CAST(c.day AS TIMESTAMP) + to_hours(CAST(
               CASE WHEN isodow(c.day) >= 6 THEN coalesce(f.best_hour_weekend, sh.we)
                    ELSE coalesce(f.best_hour_weekday, sh.wd) END AS BIGINT))) AS due_ts
    FROM (SELECT * FROM seg_days UNION ALL SELECT * FROM trig_days) c
    JOIN frame f USING (user_id), shop_hour sh
), moved AS (
    SELECT user_id, code, tier, dormant,
           CASE WHEN hour(due_ts) >= {qs} THEN date_trunc('day', due_ts) + INTERVAL 1 DAY + to_hours({qe})
                WHEN hour(due_ts) < {qe} THEN date_trunc('day', due_ts) + to_hours({qe})
                ELSE due_ts END AS send_at
    FROM timed
), reachable AS (
    SELECT m.* , b.priority, b.playbook FROM moved m JOIN books b USING (code)
    WHERE NOT EXISTS (SELECT 1 FROM unsub u WHERE u.user_id = m.user_id
                      AND (u.channel = b.channel OR u.channel IN ('all', '*', '')))
), periods AS (
    SELECT *, CASE WHEN dormant THEN date_trunc('month', send_at) ELSE date_trunc('week', send_at) END AS period,
           CASE WHEN dormant THEN {dormant_cap} ELSE (SELECT cap FROM caps WHERE caps.tier = r.tier) END AS cap
    FROM reachable r
), used AS (
    SELECT h.user_id, CASE WHEN f.lifecycle IN ('dormant', 'churned') THEN date_trunc('month', h.send_at)
                           ELSE date_trunc('week', h.send_at) END AS period, count(*) AS used
    FROM hist h JOIN frame f USING (user_id) GROUP BY ALL
), ranked AS (
    SELECT p.user_id, p.playbook, p.send_at, p.cap, coalesce(u.used, 0) AS used,
           row_number() OVER (PARTITION BY p.user_id, p.period ORDER BY p.priority DESC, p.send_at, p.playbook) AS n
    FROM periods p LEFT JOIN used u USING (user_id, period)
)
SELECT user_id, playbook, send_at FROM ranked WHERE used + n <= cap
"""


def sql_plan(con, frame: pd.DataFrame, books: list[Playbook], data: dict, start: dt.date, days: int):
    """The caps peer: the kept contacts (user_id, playbook, send_at) from one hand-written query."""
    from userstrata.config import CadenceSettings

    cadence = CadenceSettings()
    table = pd.DataFrame({"playbook": [b.name for b in books], "code": range(len(books)),
                          "priority": [b.priority for b in books], "channel": [b.channel for b in books],
                          "cooldown": [b.cooldown_days or cadence.cooldown_days for b in books]}).astype({"cooldown": "int32"})
    caps = pd.DataFrame({"tier": list(cadence.weekly_caps), "cap": list(cadence.weekly_caps.values())})
    for name, value in (("frame", frame), ("books", table), ("caps", caps), ("trig", data["triggers"]),
                        ("hist", data["history"]), ("unsub", data["unsub"])):
        con.register(name, value)
    flags = ", ".join(f'"{b.name}"' for b in books if not b.trigger)
    sql = CAPS_SQL.format(flags=flags, start=start, end=start + dt.timedelta(days=days), days=days,
                          peak_wd=cadence.peak_hour_weekday, peak_we=cadence.peak_hour_weekend,
                          qs=cadence.quiet_start_hour, qe=cadence.quiet_end_hour, dormant_cap=cadence.dormant_monthly_cap)
    return con.execute(sql).df()


def contestant(name: str, users: int, days: int, memory_limit: str | None) -> dict:
    start = dt.date(2024, 7, 1)
    data = synthetic(users, start)
    books = BOOKS
    assert len(books) == 20
    out: dict = {"contestant": name, "inputs_mib": round(peak_mib())}
    t0 = time.perf_counter()
    frame = members_frame(data["profile"], books, memory_limit)
    t1 = time.perf_counter()
    out["members_s"] = round(t1 - t0, 2)
    if name == "userstrata":
        plan = build_plan(frame, books, start=start, days=days, members=frame, triggers=data["triggers"],
                          unsubscribes=data["unsub"], history=data["history"])
        t2 = time.perf_counter()
        c = plan.contacts
        out["plan_s"] = round(t2 - t1, 2)
        out["peak_mib"] = round(peak_mib())  # before the comparison's own bookkeeping below
        out["candidates"] = len(c)
        out["status"] = {str(k): int(v) for k, v in c["status"].value_counts().items()}
        out["reasons"] = {str(k): int(v) for k, v in
                          plan.summary.groupby("reason_code", observed=True)["contacts"].sum().items()}
        kept = c[(c["status"] != "dropped") | (c["reason_code"] == "holdout")]
    else:
        import duckdb

        con = duckdb.connect()
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        kept = sql_plan(con, frame, books, data, start, days)
        out["plan_s"] = round(time.perf_counter() - t1, 2)
        out["peak_mib"] = round(peak_mib())
    out["kept"] = len(kept)
    # an order-free fingerprint of the kept contacts: the sum of one hash per row
    rows = pd.DataFrame({"user_id": kept["user_id"].astype(str).to_numpy(),
                         "playbook": kept["playbook"].astype(str).to_numpy(),
                         "send_at": pd.to_datetime(kept["send_at"]).to_numpy(dtype="datetime64[ns]").astype("int64")})
    out["kept_hash"] = int(pd.util.hash_pandas_object(rows, index=False).to_numpy().sum(dtype="uint64") % (1 << 61))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 1GB")
    parser.add_argument("--contestant", choices=["userstrata", "sql"], default=None)
    args = parser.parse_args()
    if args.contestant:  # a subprocess: one contestant, its numbers as JSON on the last line
        print(json.dumps(contestant(args.contestant, args.users, args.days, args.memory_limit)))
        return
    results = {}
    for name in ("userstrata", "sql"):
        cmd = [sys.executable, __file__, "--contestant", name, "--users", str(args.users), "--days", str(args.days)]
        if args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    us, sql = results["userstrata"], results["sql"]
    print(f"users {args.users:,}, playbooks 20, days {args.days}")
    print(f"userstrata: members (DuckDB) {us['members_s']} s; build_plan {us['plan_s']} s; "
          f"total {us['members_s'] + us['plan_s']:.1f} s; peak memory {us['peak_mib']} MiB "
          f"(inputs alone {us['inputs_mib']} MiB)")
    print(f"candidate contacts {us['candidates']:,}: " + ", ".join(f"{k} {v:,}" for k, v in us["status"].items()))
    print("by reason: " + ", ".join(f"{k or 'planned'} {v:,}" for k, v in us["reasons"].items()))
    print(f"sql peer: caps query {sql['plan_s']} s (after the same members query, {sql['members_s']} s); "
          f"peak memory {sql['peak_mib']} MiB (inputs alone {sql['inputs_mib']} MiB)")
    print(f"ratio sql / build_plan: {sql['plan_s'] / us['plan_s']:.2f}")
    same = us["kept"] == sql["kept"] and us["kept_hash"] == sql["kept_hash"]
    print(f"contacts kept by the caps: userstrata {us['kept']:,}, sql {sql['kept']:,}; identical: {same}")


if __name__ == "__main__":
    main()
