"""A 4-step funnel (userstrata's Ibis expression) against a hand-written DuckDB SQL query of the
same definition, on a large generated events table (a DuckDB file under bench/out/, generated
by DuckDB SQL in chunks; both contestants open it read-only).

Definition (docs/funnels.md): entry at each user's first step-1 event whose Shanghai day lies
in the period; step k = the earliest step-k event at or after step k-1 (the same second counts,
one event fills one step) and within 7 days of entry; ordered, no exclusions. Both compute the
users at each step. Each computation runs in a fresh process (so that peak memory is its own),
best of ``--repeat`` runs; the counts must agree.

    .venv/bin/python bench/funnel_bench.py --users 1000000 --events 100000000 --repeat 2

Every DuckDB connection gets ``threads`` and ``memory_limit`` (``--threads``, ``--memory-limit``;
2 and 3GB by default), the same for both. Peak memory is the child process's VmHWM.
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

from _common import config, load_average, vm_hwm_mib


STEPS = ["page_view", "search", "add_to_cart", "checkout"]
OTHER = ["login", "share", "use", "checkin"]
START, END = dt.date(2024, 1, 1), dt.date(2024, 6, 30)
WINDOW_S = 7 * 86400
CHUNK = 10_000_000  # events generated per INSERT


def generate(path: Path, users: int, events: int, seed: int = 0) -> None:
    """Events of ``users`` over 200 days, written by DuckDB SQL in chunks of ``CHUNK`` rows (no
    Python lists): 40% page_view, 15% search, 10% add_to_cart, 5% checkout, 30% other events.
    Every value is a hash of its own number (4n + 1, 4n + 2, 4n + 3: ``hash(n, seed, k)`` values
    are correlated across k), so the table is the same on every run."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(path), config=config())
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE events (event_id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR,
                   session_id VARCHAR, ts TIMESTAMP, event VARCHAR, properties VARCHAR)""")
    other = ", ".join(f"'{o}'" for o in OTHER)
    for lo in range(0, events, CHUNK):
        hi = min(events, lo + CHUNK)
        con.execute(f"""
            INSERT INTO events
            SELECT 'e' || lpad(CAST(n AS VARCHAR), 10, '0'),
                   'u' || lpad(CAST(hash(4 * n + 1 + {seed}) % {users} AS VARCHAR), 8, '0'),
                   NULL, NULL,
                   TIMESTAMP '2023-12-20' + to_seconds(CAST(hash(4 * n + 2 + {seed}) % {200 * 86400} AS BIGINT)),
                   CASE WHEN p < 4000 THEN 'page_view' WHEN p < 5500 THEN 'search'
                        WHEN p < 6500 THEN 'add_to_cart' WHEN p < 7000 THEN 'checkout'
                        ELSE [{other}][1 + CAST(p % {len(OTHER)} AS INTEGER)] END,
                   NULL
            FROM (SELECT n, hash(4 * n + 3 + {seed}) % 10000 AS p FROM range({lo}, {hi}) t(n))""")
    con.close()


SQL = """
WITH e AS (
    SELECT user_id, ts, event, event_id FROM events
    WHERE user_id IS NOT NULL AND event IN ('page_view', 'search', 'add_to_cart', 'checkout')
),
s1 AS (
    SELECT user_id, min({{'ts': ts, 'id': event_id}}) AS s FROM e
    WHERE event = 'page_view' AND CAST(ts + INTERVAL 8 HOUR AS DATE) BETWEEN DATE '{start}' AND DATE '{end}'
    GROUP BY user_id
),
u1 AS (SELECT user_id, s.ts AS t1, s.id AS id1, s.ts + INTERVAL {window} SECOND AS deadline FROM s1),
m2 AS (
    SELECT u.user_id, min({{'ts': e.ts, 'id': e.event_id}}) AS s
    FROM u1 u JOIN e ON e.user_id = u.user_id AND e.event = 'search' AND e.ts >= u.t1 AND e.ts <= u.deadline
         AND (e.ts > u.t1 OR e.event_id <> u.id1)
    GROUP BY u.user_id
),
u2 AS (SELECT u1.*, m2.s.ts AS t2, m2.s.id AS id2 FROM u1 LEFT JOIN m2 USING (user_id)),
m3 AS (
    SELECT u.user_id, min({{'ts': e.ts, 'id': e.event_id}}) AS s
    FROM u2 u JOIN e ON e.user_id = u.user_id AND e.event = 'add_to_cart' AND e.ts >= u.t2 AND e.ts <= u.deadline
         AND (e.ts > u.t2 OR (e.event_id <> u.id1 AND e.event_id <> u.id2))
    GROUP BY u.user_id
),
u3 AS (SELECT u2.*, m3.s.ts AS t3, m3.s.id AS id3 FROM u2 LEFT JOIN m3 USING (user_id)),
m4 AS (
    SELECT u.user_id, min({{'ts': e.ts, 'id': e.event_id}}) AS s
    FROM u3 u JOIN e ON e.user_id = u.user_id AND e.event = 'checkout' AND e.ts >= u.t3 AND e.ts <= u.deadline
         AND (e.ts > u.t3 OR (e.event_id <> u.id1 AND e.event_id <> u.id2 AND e.event_id <> u.id3))
    GROUP BY u.user_id
)
SELECT count(*) AS step_1, count(t2) AS step_2, count(t3) AS step_3, count(m4.s) AS step_4
FROM u3 LEFT JOIN m4 USING (user_id)
"""


def run_one(kind: str, data: Path) -> dict:
    import ibis  # noqa: PLC0415

    from userstrata.features._time import Clock  # noqa: PLC0415
    from userstrata.measure.funnels import _step_counts, funnel_units  # noqa: PLC0415

    con = ibis.duckdb.connect(str(data), read_only=True, **config())
    con.raw_sql("SET TimeZone = 'UTC'")
    began = time.perf_counter()
    if kind == "sql":
        row = con.raw_sql(SQL.format(start=START, end=END, window=WINDOW_S)).fetchall()[0]
        counts = [int(v) for v in row]
    else:
        units = funnel_units(con.table("events"), STEPS, start=START, end=END, window=dt.timedelta(seconds=WINDOW_S),
                             clock=Clock("Asia/Shanghai", "duckdb"))
        frame = con.execute(_step_counts(units, len(STEPS), [], medians=False)).sort_values("step")
        counts = frame["count"].astype(int).tolist()
    seconds = time.perf_counter() - began
    load = float(Path("/proc/loadavg").read_text().split()[0])
    return {"kind": kind, "seconds": seconds, "peak_mib": vm_hwm_mib(), "load": load, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("bench/out/funnel_events.duckdb"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory_limit of every connection")
    parser.add_argument("--one", choices=["ibis", "sql"], help=argparse.SUPPRESS)
    parser.add_argument("--generate-only", action="store_true", help="only write the events table")
    args = parser.parse_args()
    os.environ["BENCH_THREADS"], os.environ["BENCH_MEMORY_LIMIT"] = str(args.threads), args.memory_limit
    if args.one:
        print(json.dumps(run_one(args.one, args.data)))
        return
    tag = f"{args.users}-{args.events}"
    data = args.data.with_name(f"{args.data.stem}-{tag}.duckdb")
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        generate(data, args.users, args.events)
        print(f"generated {args.events:,} events of {args.users:,} users in {time.perf_counter() - began:.1f}s")
    if args.generate_only:
        return
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for kind in ("sql", "ibis"):  # alternate, so that both see the same machine state
            out = subprocess.run([sys.executable, __file__, "--one", kind, "--data", str(data)], check=True,
                                 capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {kind:<4} {result['seconds']:8.2f} s  VmHWM {result['peak_mib']:7.0f} MiB  "
                  f"load {result['load']:.1f}  {result['counts']}", flush=True)
            if kind not in best or result["seconds"] < best[kind]["seconds"]:
                best[kind] = result
    sql, ibis_ = best["sql"], best["ibis"]
    agree = sql["counts"] == ibis_["counts"]
    print(f"users per step   SQL {sql['counts']}  Ibis {ibis_['counts']}  agree: {agree}")
    for r in (sql, ibis_):
        print(f"{r['kind']:>5}: {r['seconds']:.2f}s (best of {args.repeat}), VmHWM {r['peak_mib']:,.0f} MiB, "
              f"load {r['load']:.1f}")
    print(f"ratio Ibis / SQL: {ibis_['seconds'] / sql['seconds']:.2f}")
    if not agree:
        sys.exit("the two computations disagree")


if __name__ == "__main__":
    main()
