"""Early-warning rules at 1M users / 100M events: ``measure.alerts`` against hand-written DuckDB SQL.

Data: the simulated shop ``bench/out/shop-1000000.duckdb`` (1M users, orders, order_items; opened
read-only) and 100M generated events for its users (Parquet under ``bench/out/alerts-100m/``,
2024-01-01..2024-06-30 shop-local, the shop's event names; a tenth of the users fade out in
the last weeks, a few hundred thousand stop, 20k keep check-in streaks). The profile (tier,
lifecycle as of 2024-06-30) is built once from the shop and stored as Parquet: both contestants
read the same file, so only the rules are timed.

Contestants, each in a fresh process (DuckDB defaults but ``threads=2``; peak memory = VmHWM):

- ``ours``: each rule's Ibis expression from ``userstrata.measure.alerts`` executed on DuckDB
  (``all``: every rule in one process, then ``current_alerts`` with the words);
- ``sql``: the same rules written by hand in DuckDB SQL.

Both results are compared (same users and numbers per rule) before timings are reported.

    python bench/alerts_bench.py gen          # events + profile (once)
    python bench/alerts_bench.py run --reps 2 # A B A B, JSON to bench/out/alerts_bench.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHOP = ROOT / "out" / "shop-1000000.duckdb"
DATA = ROOT / "out" / "alerts-100m"
EVENTS = DATA / "events-*.parquet"
PROFILE = DATA / "profile.parquet"
AS_OF = dt.date(2024, 6, 30)
N_USERS = 1_000_000
N_EVENTS = 100_000_000
CHUNKS = 10
USER_RULES = ("activity_drop", "silent_high_tier", "unused_purchase", "no_login_after_course", "streak_at_risk")
RULES = (*USER_RULES, "segment_metric_drop")


# --------------------------------------------------------------------------- data


def gen_events() -> None:
    import duckdb  # noqa: PLC0415

    DATA.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    # 20k users with a check-in run ending 06-29 (3..15 days); every other one also checked in on 06-30
    streaks = """
        SELECT 'u' || lpad(CAST(u AS VARCHAR), 8, '0') AS user_id,
               TIMESTAMP '2024-06-29 04:00:00' - to_days(CAST(k AS INTEGER)) AS ts
        FROM range(7, 1000000, 50) a(u), range(0, 15) b(k) WHERE k < 3 + u % 13
        UNION ALL
        SELECT 'u' || lpad(CAST(u AS VARCHAR), 8, '0'), TIMESTAMP '2024-06-30 03:00:00'
        FROM range(7, 1000000, 100) a(u)"""
    n_streak = con.execute(f"SELECT count(*) FROM ({streaks})").fetchone()[0]
    per = (N_EVENTS - n_streak) // CHUNKS
    for c in range(CHUNKS):
        out = DATA / f"events-{c}.parquet"
        if out.exists():
            continue
        n = per + (N_EVENTS - n_streak - per * CHUNKS if c == CHUNKS - 1 else 0)
        con.execute(f"SELECT setseed({0.1 + c / 100})")
        extra = f"UNION ALL SELECT 's' || row_number() OVER () AS event_id, user_id, NULL, NULL, ts, 'checkin', NULL FROM ({streaks})" if c == 0 else ""  # noqa: E501
        t0 = time.perf_counter()
        # users drawn with a skew (low ids more active); day 0..181 from 2024-01-01 local
        # (16:00 UTC the day before). i % 10 == 0: fades out (a recent event moved 30+ days back
        # with p 0.8); i % 10 == 1 and i % 3 == 0: stops after 2024-05-31.
        con.execute(f"""
            COPY (
              WITH raw AS (
                SELECT {c * per} + n AS n, CAST(floor(pow(random(), 1.6) * {N_USERS}) AS BIGINT) AS i,
                       random() AS r_day, random() AS r_move, random() AS r_ev, random() AS r_sec
                FROM range({n}) t(n)
              ), dayed AS (
                SELECT *, CAST(floor(r_day * 182) AS INTEGER) AS d0 FROM raw
              ), moved AS (
                SELECT *, CASE
                    WHEN i % 10 = 0 AND d0 >= 161 AND r_move < 0.8 THEN d0 - 30 - CAST(r_move * 40 AS INTEGER)
                    WHEN i % 10 = 1 AND i % 3 = 0 AND d0 >= 152 THEN d0 - 60
                    ELSE d0 END AS d
                FROM dayed
              )
              SELECT 'g' || lpad(CAST(n AS VARCHAR), 10, '0') AS event_id,
                     'u' || lpad(CAST(i AS VARCHAR), 8, '0') AS user_id,
                     NULL::VARCHAR AS anonymous_id, NULL::VARCHAR AS session_id,
                     TIMESTAMP '2023-12-31 16:00:00' + to_days(d) + to_seconds(CAST(floor(r_sec * 86400) AS BIGINT)) AS ts,
                     CASE WHEN r_ev < 0.40 THEN 'page_view' WHEN r_ev < 0.58 THEN 'add_to_cart'
                          WHEN r_ev < 0.70 THEN 'login' WHEN r_ev < 0.76 THEN 'use'
                          WHEN r_ev < 0.82 THEN 'search' WHEN r_ev < 0.90 THEN 'checkin'
                          WHEN r_ev < 0.94 THEN 'share' WHEN r_ev < 0.97 THEN 'review' ELSE 'post' END AS event,
                     NULL::VARCHAR AS properties
              FROM moved
              {extra}
            ) TO '{out}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)""")
        print(f"chunk {c}: {n} rows in {time.perf_counter() - t0:.1f}s", flush=True)
    total = con.execute(f"SELECT count(*) FROM read_parquet('{EVENTS}')").fetchone()[0]
    print("events:", total)


def gen_profile() -> None:
    import ibis  # noqa: PLC0415

    from userstrata.config import Settings  # noqa: PLC0415
    from userstrata.segments import build_profile  # noqa: PLC0415

    if PROFILE.exists():
        return
    con = ibis.duckdb.connect(str(SHOP), read_only=True)
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET threads = 2")
    con.raw_sql("SET memory_limit = '5GB'")
    t = {n: con.table(n) for n in ("users", "orders", "order_items", "events")}
    t0 = time.perf_counter()
    expr = build_profile(**t, as_of=AS_OF, settings=Settings(), engine="duckdb").select("user_id", "tier", "lifecycle")
    con.raw_sql(f"COPY ({ibis.to_sql(expr, dialect='duckdb')}) TO '{PROFILE}' (FORMAT parquet)")
    print(f"profile in {time.perf_counter() - t0:.1f}s")


# --------------------------------------------------------------------------- hand-written SQL
# Default AlertSettings: drop 14/60 days, ratio 0.5, min baseline 4; silent co_builder/engaged 14
# days; unused 课程/会员 14 days after purchase within 90, usage use/watch/login/redeem; no login
# 14 days after a 课程 purchase; streak 7 days; segments by tier and lifecycle, drop 15% on each of
# the last 3 days against the same weekday of the 4 weeks before, volume 20. Shanghai has had no
# offset change since 1991: the local day is ts + 8 hours.

DAY = "CAST(ts + INTERVAL 8 HOUR AS DATE)"
PAID = "(status IN ('paid', 'completed', 'refunding', 'partially_refunded', 'refunded') OR status IS NULL)"
A = f"DATE '{AS_OF}'"

ACTIVE = f"""
    SELECT user_id, {DAY} AS day FROM events WHERE user_id IS NOT NULL AND {DAY} BETWEEN {{lo}} AND {A}
    UNION
    SELECT user_id, {DAY} FROM orders WHERE {PAID} AND {DAY} BETWEEN {{lo}} AND {A}"""

COURSES = f"""
    SELECT o.order_id, o.user_id, o.ts, {DAY.replace('ts', 'o.ts')} AS day, i.sku
    FROM orders o JOIN (SELECT DISTINCT order_id, sku FROM order_items WHERE category IN ({{cats}})) i
      ON o.order_id = i.order_id
    WHERE {PAID} AND (status IS NULL OR status <> 'refunded')
      AND {DAY.replace('ts', 'o.ts')} <= {A} AND {DAY.replace('ts', 'o.ts')} > {A} - 90"""

SQL = {
    "activity_drop": f"""
        WITH d AS ({ACTIVE.format(lo=f"{A} - 73")}),
        u AS (SELECT user_id, count(*) FILTER (day >= {A} - 13) AS recent_days,
                     count(*) FILTER (day < {A} - 13) AS baseline_days FROM d GROUP BY user_id)
        SELECT u.user_id, p.tier, recent_days, baseline_days FROM u LEFT JOIN profile p USING (user_id)
        WHERE baseline_days >= 4 AND recent_days * 60 < 0.5 * baseline_days * 14""",
    "silent_high_tier": f"""
        WITH last AS (
            SELECT user_id, max(day) AS last_active FROM (
                SELECT user_id, max({DAY}) AS day FROM events WHERE user_id IS NOT NULL AND {DAY} <= {A} GROUP BY 1
                UNION ALL
                SELECT user_id, max({DAY}) FROM orders WHERE {PAID} AND {DAY} <= {A} GROUP BY 1) GROUP BY 1)
        SELECT p.user_id, p.tier, l.last_active, {A} - l.last_active AS silent_days
        FROM profile p JOIN last l USING (user_id)
        WHERE p.tier IN ('co_builder', 'engaged') AND {A} - l.last_active >= 14""",
    "unused_purchase": f"""
        WITH b AS ({COURSES.format(cats="'课程', '会员'")} AND {DAY.replace('ts', 'o.ts')} <= {A} - 14),
        unused AS (
            SELECT * FROM b WHERE NOT EXISTS (
                SELECT 1 FROM events e WHERE e.user_id = b.user_id AND e.ts >= b.ts
                  AND e.event IN ('use', 'watch', 'login', 'redeem') AND {DAY.replace('ts', 'e.ts')} <= {A})),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts, order_id, sku) AS k,
                   count(DISTINCT order_id) OVER (PARTITION BY user_id) AS unused_purchases FROM unused)
        SELECT r.user_id, p.tier, r.sku, r.day AS bought_on, {A} - r.day AS days_unused, r.unused_purchases
        FROM ranked r LEFT JOIN profile p USING (user_id) WHERE k = 1""",
    "no_login_after_course": f"""
        WITH latest AS (
            SELECT user_id, max(day) AS bought_on, max(ts) AS bought_ts FROM ({COURSES.format(cats="'课程'")})
            GROUP BY user_id),
        ll AS (
            SELECT l.user_id, max({DAY.replace('ts', 'e.ts')}) AS last_login
            FROM latest l JOIN events e ON e.user_id = l.user_id AND e.ts >= l.bought_ts
            WHERE e.event = 'login' AND {DAY.replace('ts', 'e.ts')} <= {A} GROUP BY l.user_id)
        SELECT l.user_id, p.tier, l.bought_on, ll.last_login,
               {A} - coalesce(ll.last_login, l.bought_on) AS days_without_login
        FROM latest l LEFT JOIN ll USING (user_id) LEFT JOIN profile p USING (user_id)
        WHERE {A} - coalesce(ll.last_login, l.bought_on) >= 14""",
    "streak_at_risk": f"""
        WITH c AS (SELECT DISTINCT user_id, {DAY} AS day FROM events
                   WHERE user_id IS NOT NULL AND event = 'checkin' AND {DAY} <= {A} AND {DAY} > {A} - 400),
        runs AS (
            SELECT user_id, count(*) AS streak_days, max(day) AS run_end FROM (
                SELECT user_id, day, day - CAST(row_number() OVER (PARTITION BY user_id ORDER BY day) AS INTEGER) AS g
                FROM c WHERE day < {A}) GROUP BY user_id, g)
        SELECT r.user_id, p.tier, r.streak_days FROM runs r LEFT JOIN profile p USING (user_id)
        WHERE r.run_end = {A} - 1 AND r.streak_days >= 7
          AND r.user_id NOT IN (SELECT user_id FROM c WHERE day = {A})""",
}

SEGMENT_SQL = f"""
    WITH seg AS (SELECT user_id, CAST({{by}} AS VARCHAR) AS segment FROM profile WHERE {{by}} IS NOT NULL),
    act AS ({ACTIVE.format(lo=f"{A} - 34")}),
    daily AS (
        SELECT 'active_users' AS metric, segment, day, count(DISTINCT user_id)::DOUBLE AS num, 1.0 AS den,
               count(DISTINCT user_id)::DOUBLE AS vol
        FROM act JOIN seg USING (user_id) GROUP BY ALL
        UNION ALL
        SELECT unnest(['orders', 'gmv']), segment, day, unnest([n, cents]), 1.0, n FROM (
            SELECT segment, {DAY} AS day, count(DISTINCT order_id)::DOUBLE AS n,
                   sum(CAST(round(amount * 100) AS BIGINT))::DOUBLE AS cents
            FROM orders JOIN seg USING (user_id) WHERE {PAID} AND {DAY} BETWEEN {A} - 34 AND {A} GROUP BY ALL)
        UNION ALL
        SELECT 'conversion', segment, day, count(DISTINCT user_id) FILTER (event = 'add_to_cart')::DOUBLE,
               count(DISTINCT user_id) FILTER (event = 'page_view')::DOUBLE,
               count(DISTINCT user_id) FILTER (event = 'page_view')::DOUBLE
        FROM (SELECT user_id, event, {DAY} AS day FROM events
              WHERE user_id IS NOT NULL AND event IN ('page_view', 'add_to_cart') AND {DAY} BETWEEN {A} - 34 AND {A})
        JOIN seg USING (user_id) GROUP BY ALL
    ),
    k AS (SELECT *, ({A} - day) % 7 AS phase, ({A} - day) // 7 AS week FROM daily WHERE ({A} - day) % 7 < 3),
    base AS (SELECT metric, segment, phase, sum(num) / 4 AS b_num, sum(den) / 4 AS b_den, sum(vol) / 4 AS b_vol
             FROM k WHERE week BETWEEN 1 AND 4 GROUP BY ALL),
    j AS (
        SELECT b.metric, b.segment, b.phase, b.b_vol AS volume,
               CASE WHEN b.metric = 'conversion' THEN
                    CASE WHEN coalesce(n.den, 0) > 0 THEN coalesce(n.num, 0) / coalesce(n.den, 0) END
                    ELSE coalesce(n.num, 0) END AS value,
               CASE WHEN b.metric = 'conversion' THEN CASE WHEN b.b_den > 0 THEN b.b_num / b.b_den END
                    ELSE b.b_num END AS baseline
        FROM base b LEFT JOIN (SELECT * FROM k WHERE week = 0) n USING (metric, segment, phase)),
    d AS (SELECT *, sum(CASE WHEN volume >= 20 AND value < baseline * 0.85 THEN 1 ELSE 0 END)
                        OVER (PARTITION BY metric, segment) AS days_down FROM j)
    SELECT '{{by}}' AS by, segment, metric, {A} - CAST(phase AS INTEGER) AS day, value, baseline, volume
    FROM d WHERE days_down = 3"""


# --------------------------------------------------------------------------- contestants

SETUP = [
    "SET TimeZone = 'UTC'",
    "SET threads = 2",
    f"ATTACH '{SHOP}' AS shop (READ_ONLY)",
    f"CREATE VIEW events AS SELECT * FROM read_parquet('{EVENTS}')",
    "CREATE VIEW orders AS SELECT * FROM shop.orders",
    "CREATE VIEW order_items AS SELECT * FROM shop.order_items",
    "CREATE VIEW users AS SELECT * FROM shop.users",
    f"CREATE VIEW profile AS SELECT * FROM read_parquet('{PROFILE}')",
]


if os.environ.get("BENCH_MEMORY_LIMIT"):  # e.g. 1024MiB: a workspace's default limit (store.py)
    SETUP.insert(2, f"SET memory_limit = '{os.environ['BENCH_MEMORY_LIMIT']}'")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_sql(rule: str) -> dict:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect()
    for s in SETUP:
        con.execute(s)
    frames, times = {}, {}
    for r in (RULES if rule == "all" else (rule,)):
        t0 = time.perf_counter()
        if r == "segment_metric_drop":
            import pandas as pd  # noqa: PLC0415
            frames[r] = pd.concat([con.execute(SEGMENT_SQL.format(by=by)).df() for by in ("tier", "lifecycle")])
        else:
            frames[r] = con.execute(SQL[r]).df()
        times[r] = time.perf_counter() - t0
    return {"frames": frames, "times": times}


def run_ours(rule: str) -> dict:
    import ibis  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from userstrata.config import Settings  # noqa: PLC0415
    from userstrata.features._time import Clock  # noqa: PLC0415
    from userstrata.measure import alerts as al  # noqa: PLC0415

    con = ibis.duckdb.connect()
    for s in SETUP:
        con.raw_sql(s)
    t = {n: con.table(n) for n in ("users", "orders", "order_items", "events", "profile")}
    settings = Settings()
    a, clock = settings.alerts, Clock(settings.timezone, "duckdb")
    kw = dict(as_of=AS_OF, clock=clock, rules=a)
    build = {
        "activity_drop": lambda: al.activity_drop(t["events"], t["orders"], t["profile"], **kw),
        "silent_high_tier": lambda: al.silent_high_tier(t["events"], t["orders"], t["profile"], **kw),
        "unused_purchase": lambda: al.unused_purchase(t["events"], t["orders"], t["order_items"], t["profile"], **kw),
        "no_login_after_course": lambda: al.no_login_after_course(t["events"], t["orders"], t["order_items"],
                                                                  t["profile"], **kw),
        "streak_at_risk": lambda: al.streak_at_risk(t["events"], t["profile"], **kw),
    }
    frames, times = {}, {}
    for r in (RULES if rule in ("all", "current_alerts") else (rule,)):
        if rule == "current_alerts":
            break
        t0 = time.perf_counter()
        if r == "segment_metric_drop":
            frames[r] = pd.concat([con.execute(al.segment_metric_drop(t["events"], t["orders"], t["users"],
                                                                      t["profile"], by=by, **kw))
                                   for by in a.segment_by])
        else:
            frames[r] = con.execute(build[r]())
        times[r] = time.perf_counter() - t0
    if rule == "current_alerts":  # every rule with the words, as ``userstrata alerts`` runs them
        t0 = time.perf_counter()
        found = al.current_alerts(t["users"], t["orders"], t["order_items"], t["events"], as_of=AS_OF,
                                  settings=settings, engine="duckdb", execute=con.execute, profile=t["profile"])
        times["current_alerts"] = time.perf_counter() - t0
        frames["current_alerts"] = found[["rule", "subject"]]
    return {"frames": frames, "times": times}


def child(who: str, rule: str) -> None:
    t0 = time.perf_counter()
    res = (run_ours if who == "ours" else run_sql)(rule)
    total = time.perf_counter() - t0
    DATA.joinpath("res").mkdir(exist_ok=True)
    for r, f in res["frames"].items():
        f.to_parquet(DATA / "res" / f"{who}-{r}.parquet")
    print(json.dumps({"who": who, "rule": rule, "seconds": total, "times": res["times"], "peak_mb": peak_mb(),
                      "rows": {r: len(f) for r, f in res["frames"].items()}}))


# --------------------------------------------------------------------------- driver


def _norm(frame):
    import pandas as pd  # noqa: PLC0415

    f = frame.copy()
    for c in f.columns:
        if c in ("last_active", "bought_on", "last_login", "day"):
            f[c] = [None if x is None or (not isinstance(x, str) and pd.isna(x)) else str(pd.Timestamp(x).date())
                    for x in f[c]]
        elif c in ("value", "baseline", "volume"):
            f[c] = f[c].astype("float64").round(9)
        elif f[c].dtype.kind in "iu" or c.endswith("_days") or c in ("days_unused", "unused_purchases"):
            f[c] = f[c].astype("int64")
        else:
            f[c] = f[c].astype("object").where(f[c].notna(), None)
    keys = [c for c in ("by", "segment", "metric", "day", "user_id") if c in f.columns]
    return f.sort_values(keys).reset_index(drop=True)


def compare(rule: str) -> str:
    import pandas as pd  # noqa: PLC0415

    a = _norm(pd.read_parquet(DATA / "res" / f"ours-{rule}.parquet"))
    b = _norm(pd.read_parquet(DATA / "res" / f"sql-{rule}.parquet"))
    if list(a.columns) != list(b.columns):
        return f"columns differ: {list(a.columns)} vs {list(b.columns)}"
    if len(a) != len(b):
        return f"rows differ: {len(a)} vs {len(b)}"
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    return "same"


def one(who: str, rule: str) -> dict:
    load = os.getloadavg()[0]
    p = subprocess.run([sys.executable, __file__, "child", who, rule], capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"{who} {rule} failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["load1"] = load
    print(f"{who:5} {rule:22} {out['seconds']:7.2f}s peak {out['peak_mb']:7.0f} MB load {load:.2f} rows {out['rows']}",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "run", "child", "check"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--rules", default=",".join((*RULES, "all")))
    ns = ap.parse_args()
    if ns.cmd == "gen":
        gen_events()
        gen_profile()
        return
    if ns.cmd == "child":
        child(*ns.args)
        return
    rules = ns.rules.split(",")
    results = []
    checks = {}
    for rep in range(ns.reps):
        for rule in rules:
            order = ("ours", "sql") if rep % 2 == 0 else ("sql", "ours")
            for who in order:
                results.append(one(who, rule))
            if rep == 0:
                for r in (RULES if rule == "all" else (rule,)):
                    checks[r] = compare(r)
                    print(f"  check {r}: {checks[r]}", flush=True)
        if ns.cmd == "check":
            break
    if ns.cmd == "run" and "all" in rules:
        for rep in range(ns.reps):
            results.append(one("ours", "current_alerts"))
    out = ROOT / "out" / "alerts_bench.json"
    prev = json.loads(out.read_text()) if out.exists() else {"results": []}
    prev["results"] += results
    prev["checks"] = {**prev.get("checks", {}), **checks}
    prev["machine"] = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    out.write_text(json.dumps(prev, indent=1, default=str))


if __name__ == "__main__":
    main()
