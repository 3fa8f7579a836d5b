"""Retention speed: ``measure.retention`` against a hand-written DuckDB SQL of the same definition.

Builds a simulated shop in a DuckDB file (users, events, paid orders; registrations spread over
180 days, activity after registration), then runs, each in a fresh process so that peak memory
is its own:

- ``ours``: ``retention(cohort_by="registration", period="day", mode="first_time", periods=30)``
  compiled by Ibis and run on DuckDB (the cohort sizes, the returns per cohort and day, D1/D7/D30);
- ``sql``: the same three results written by hand in DuckDB SQL.

It checks that both give the same numbers and prints the wall time and peak RSS of each.

    python bench/measure_bench.py --users 1000000 --events 10000000
    python bench/measure_bench.py --users 1000000 --events 100000000 --db bench/out/retention-1m-100m.duckdb

Every DuckDB connection gets ``threads`` and ``memory_limit`` (``--threads``, ``--memory-limit``;
2 and 3GB by default: the machine is shared), the same for both contestants. Peak memory is the
child process's VmHWM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import config, load_average, vm_hwm_mib

START, END = dt.date(2024, 1, 1), dt.date(2024, 6, 30)
LO, HI = dt.date(2024, 3, 1), END  # cohorts of March to June
PERIODS = 30
STATUSES = "('paid', 'completed', 'refunding', 'partially_refunded', 'refunded')"


def build(path: Path, users: int, events: int) -> None:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(path), config=config())
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SELECT setseed(0.42)")
    con.execute(f"""
        CREATE TABLE users AS
        SELECT i, 'u' || i AS user_id,
               TIMESTAMP '{START}' + to_seconds(CAST(hash(i) % (180 * 86400) AS BIGINT)) AS registered_at,
               'organic' AS channel, NULL::VARCHAR AS attributes
        FROM range({users}) t(i)""")
    # activity after registration: most of it soon after (a cube pulls the offsets towards 0)
    con.execute(f"""
        CREATE TABLE events AS
        SELECT CAST(n AS VARCHAR) AS event_id, u.user_id, NULL::VARCHAR AS anonymous_id,
               NULL::VARCHAR AS session_id,
               u.registered_at + to_seconds(CAST(floor(pow(r, 3) * 150 * 86400) AS BIGINT)) AS ts,
               CASE WHEN n % 5 = 0 THEN 'login' ELSE 'page_view' END AS event, NULL::VARCHAR AS properties
        FROM (SELECT n, CAST(floor(random() * {users}) AS BIGINT) AS i, random() AS r FROM range({events}) t(n)) e
        JOIN users u USING (i)""")
    con.execute(f"""
        CREATE TABLE orders AS
        SELECT 'o' || n AS order_id, u.user_id,
               u.registered_at + to_seconds(CAST(floor(pow(r, 2) * 150 * 86400) AS BIGINT)) AS ts,
               round(10 + random() * 200, 2) AS amount, 'CNY' AS currency,
               CASE WHEN n % 10 = 0 THEN 'cancelled' ELSE 'paid' END AS status,
               0.0 AS refund_amount, NULL::TIMESTAMP AS refunded_at
        FROM (SELECT n, CAST(floor(random() * {users}) AS BIGINT) AS i, random() AS r
              FROM range({events // 10}) t(n)) e
        JOIN users u USING (i)""")
    con.close()


HAND_SQL = f"""
WITH act AS (
    SELECT DISTINCT user_id, CAST(ts + INTERVAL 8 HOUR AS DATE) AS day FROM (
        SELECT user_id, ts FROM events WHERE user_id IS NOT NULL
        UNION ALL
        SELECT user_id, ts FROM orders WHERE status IN {STATUSES} AND user_id IS NOT NULL)
), first_seen AS (
    SELECT user_id, min(day) AS day FROM act GROUP BY user_id
), starts AS (
    SELECT COALESCE(f.user_id, u.user_id) AS user_id,
           COALESCE(CAST(u.registered_at + INTERVAL 8 HOUR AS DATE), f.day) AS day
    FROM first_seen f FULL JOIN (SELECT user_id, registered_at FROM users) u ON f.user_id = u.user_id
), entries AS (
    SELECT user_id, day FROM starts WHERE day BETWEEN DATE '{LO}' AND DATE '{HI}'
), hits AS (
    SELECT e.day AS cohort, datediff('day', e.day, a.day) AS k, e.user_id
    FROM entries e JOIN act a ON a.user_id = e.user_id
    WHERE a.day > e.day AND a.day <= e.day + {PERIODS} AND a.day <= DATE '{HI}'
)
"""


def run_sql(db: Path) -> dict:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True, config=config())
    con.execute("SET TimeZone = 'UTC'")
    sizes = con.execute(HAND_SQL + "SELECT day, count(*) FROM entries GROUP BY ALL").fetchall()
    hits = con.execute(HAND_SQL + "SELECT cohort, k, count(*) FROM hits GROUP BY ALL").fetchall()
    eligible = con.execute(HAND_SQL + f"""
        SELECT count(*) FILTER (day + 1 <= DATE '{HI}'), count(*) FILTER (day + 7 <= DATE '{HI}'),
               count(*) FILTER (day + 30 <= DATE '{HI}') FROM entries""").fetchone()
    back = {n: sum(count for _, k, count in hits if k == n) for n in (1, 7, 30)}  # day N = cell k = N
    marks = [(n, e, back[n]) for n, e in zip((1, 7, 30), eligible)]
    return {
        "sizes": {str(c): n for c, n in sizes},
        "hits": {f"{c}/{k}": n for c, k, n in hits if k <= PERIODS and c + dt.timedelta(days=k) <= HI},
        "marks": [[n, e, r] for n, e, r in marks],
    }


def run_ours(db: Path) -> dict:
    import ibis  # noqa: PLC0415

    from userstrata.config import Settings  # noqa: PLC0415
    from userstrata.measure.retention import retention  # noqa: PLC0415

    con = ibis.duckdb.connect(str(db), read_only=True, **config())
    con.raw_sql("SET TimeZone = 'UTC'")
    r = retention(users=con.table("users"), orders=con.table("orders"), events=con.table("events"),
                  start=LO, end=HI, cohort_by="registration", period="day", mode="first_time",
                  periods=PERIODS, settings=Settings(), execute=con.execute)
    c = r.counts
    return {
        "sizes": {str(d): int(n) for d, n in zip(c[c.k == 0].cohort_start, c[c.k == 0].cohort_users)},
        "hits": {f"{d}/{k}": int(n) for d, k, n in zip(c.cohort_start, c.k, c.returned) if k >= 1 and n > 0},
        "marks": [[int(n), int(e), int(r_)] for n, e, r_ in zip(r.summary.days, r.summary.eligible, r.summary.returned)],
    }


def child(which: str, db: Path) -> None:
    import duckdb  # noqa: F401, PLC0415 - imports are not what is measured
    import ibis  # noqa: F401, PLC0415

    import userstrata.measure.retention  # noqa: F401, PLC0415

    t = time.perf_counter()
    out = (run_ours if which == "ours" else run_sql)(db)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "peak_mib": vm_hwm_mib(), "load": load_average(), "result": out}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best time is kept")
    parser.add_argument("--child", choices=["ours", "sql"])
    parser.add_argument("--db", type=Path, help="keep the simulated shop in this DuckDB file (reused if present)")
    parser.add_argument("--build-only", action="store_true", help="only build the --db file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory_limit of every connection")
    args = parser.parse_args()
    import os  # noqa: PLC0415

    os.environ["BENCH_THREADS"], os.environ["BENCH_MEMORY_LIMIT"] = str(args.threads), args.memory_limit
    if args.child:
        child(args.child, args.db)
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.duckdb"
        if not db.exists():  # --db keeps the simulated shop for the next run
            t = time.perf_counter()
            build(db, args.users, args.events)
            print(f"built {args.users:,} users, {args.events:,} events, {args.events // 10:,} orders "
                  f"in {time.perf_counter() - t:.1f} s")
        if args.build_only:
            return
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for which in ("sql", "ours"):
                run = subprocess.run([sys.executable, __file__, "--child", which, "--db", str(db)],
                                     capture_output=True, text=True, check=True)
                got = json.loads(run.stdout.strip().splitlines()[-1])
                print(f"  {which:<4} {got['seconds']:8.2f} s  VmHWM {got['peak_mib']:7.0f} MiB  "
                      f"load {got['load']:.1f}", flush=True)
                if which not in best or got["seconds"] < best[which]["seconds"]:
                    best[which] = got
    ours, sql = best["ours"], best["sql"]
    same = ours["result"] == sql["result"]
    print(f"results agree: {same} ({len(sql['result']['sizes'])} cohorts, "
          f"{sum(sql['result']['sizes'].values()):,} users; D1/D7/D30 {sql['result']['marks']})")
    for name, got in (("hand-written DuckDB SQL", sql), ("userstrata retention", ours)):
        print(f"{name:<25} {got['seconds']:8.2f} s   VmHWM {got['peak_mib']:8.0f} MiB   load {got['load']:.1f}")
    print(f"ratio ours / SQL: {ours['seconds'] / sql['seconds']:.2f}x")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
