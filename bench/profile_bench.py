"""Profile benchmark: userstrata's profile from Parquet vs a hand-written DuckDB SQL RFM query,
pandas and lifetimes' ``summary_data_from_transaction_data``, in one run.

    python bench/profile_bench.py --users 1000000            # simulates the shop first if needed
    python bench/profile_bench.py --users 100000 --repeat 3
    python bench/profile_bench.py --same-columns bench/out/shop-1000000.duckdb --rounds 2 [--check]

``--same-columns WORKSPACE`` times ``build_profile`` against the hand-written SQL of the same
columns (bench/profile_sql.py) on a workspace opened read-only, alternating the two (A B A B),
each run in its own process (DuckDB threads=2, its other settings default unless
``--memory-limit``); ``--check`` first compares the two row for row.

Each contestant runs in its own subprocess so that peak memory (ru_maxrss) is its own.
lifetimes 0.11.3 needs numpy<2, pandas<2, scipy<1.13, pyarrow<20, so it runs from a separate
virtual environment (``--peers-python``; make it with bench/make_peers_venv.sh).
Results go to bench/out/profile_bench.json and are printed as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AS_OF = dt.date(2024, 6, 30)  # the simulator's default end
SQL_RFM = """
WITH p AS (
    -- Asia/Shanghai is UTC+8 (no DST since 1991): the fastest correct local day
    -- the simulator writes UTC instants (timestamptz): timezone('UTC', x) is their naive UTC time
    SELECT user_id, amount - CASE WHEN refunded_at IS NULL
                                       OR CAST(timezone('UTC', refunded_at) + INTERVAL 8 HOUR AS DATE) <= DATE '{as_of}'
                                  THEN coalesce(refund_amount, 0) ELSE 0 END AS net,
           CAST(timezone('UTC', ts) + INTERVAL 8 HOUR AS DATE) AS d
    FROM read_parquet('{orders}')
    WHERE lower(status) NOT IN ('cancelled', 'canceled', 'failed', 'pending', 'unpaid', 'closed')
), u AS (
    SELECT user_id, count(DISTINCT d) - 1 AS frequency, DATE '{as_of}' - max(d) AS recency_days,
           round(sum(net), 2) AS monetary, count(*) AS orders
    FROM p WHERE d <= DATE '{as_of}' GROUP BY user_id
)
SELECT *, ntile(5) OVER (ORDER BY recency_days DESC, user_id) AS r,
          ntile(5) OVER (ORDER BY frequency, user_id) AS f,
          ntile(5) OVER (ORDER BY monetary, user_id) AS m
FROM u
"""


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve from the parent process
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - start)
    return best, rows


# -- contestants (each runs in its own process) --------------------------------------------
def run_userstrata(data: Path, repeat: int, only_rfm: bool) -> tuple[float, int]:
    import ibis

    from userstrata.config import Settings
    from userstrata.features import purchases, rfm_features
    from userstrata.features._time import Clock
    from userstrata.segments import build_profile

    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    tables = {name: con.read_parquet(data / f"{name}.parquet") for name in ("users", "orders", "order_items", "events")}
    settings = Settings()
    if only_rfm:
        bought = purchases(tables["orders"], as_of=AS_OF, clock=Clock(settings.timezone))
        expr = rfm_features(bought, as_of=AS_OF)
    else:
        expr = build_profile(
            users=tables["users"], orders=tables["orders"], order_items=tables["order_items"],
            events=tables["events"], as_of=AS_OF, settings=settings,
        )
    return _timed(lambda: con.to_pyarrow(expr).num_rows, repeat)


def run_duckdb_sql(data: Path, repeat: int) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = SQL_RFM.format(as_of=AS_OF, orders=data / "orders.parquet")
    return _timed(lambda: con.execute(sql).to_arrow_table().num_rows, repeat)


def run_pandas(data: Path, repeat: int) -> tuple[float, int]:
    import pandas as pd

    orders = pd.read_parquet(data / "orders.parquet", columns=["user_id", "ts", "amount", "refund_amount", "status"])
    orders["ts"] = orders.ts.dt.tz_convert(None)  # UTC instants -> naive UTC

    def go() -> int:
        o = orders[~orders.status.str.lower().isin(["cancelled", "canceled", "failed", "pending", "unpaid", "closed"])]
        day = (o.ts + pd.Timedelta(hours=8)).dt.normalize()
        o = o.assign(day=day, net=o.amount - o.refund_amount.fillna(0))
        g = o.groupby("user_id")
        out = pd.DataFrame({
            "frequency": g.day.nunique() - 1,
            "recency_days": (pd.Timestamp(AS_OF) - g.day.max()).dt.days,
            "monetary": g.net.sum().round(2),
        })
        return len(out)

    return _timed(go, repeat)


def run_lifetimes(data: Path, repeat: int) -> tuple[float, int]:
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    orders = pd.read_parquet(data / "orders.parquet", columns=["user_id", "ts", "amount"])
    orders["ts"] = orders.ts.dt.tz_convert(None) + pd.Timedelta(hours=8)  # local days, as userstrata counts them

    def go() -> int:
        return len(summary_data_from_transaction_data(
            orders, "user_id", "ts", monetary_value_col="amount", observation_period_end=str(AS_OF), freq="D",
        ))

    return _timed(go, repeat)


CONTESTANTS = {
    "userstrata profile (all columns)": lambda d, r: run_userstrata(d, r, only_rfm=False),
    "userstrata RFM features": lambda d, r: run_userstrata(d, r, only_rfm=True),
    "raw DuckDB SQL RFM": run_duckdb_sql,
    "pandas RFM": run_pandas,
    "lifetimes summary_data_from_transaction_data": run_lifetimes,
}
PEER_ENV = {"lifetimes summary_data_from_transaction_data"}


def _child(name: str, data: Path, repeat: int) -> None:
    seconds, rows = CONTESTANTS[name](data, repeat)
    print(json.dumps({"name": name, "seconds": seconds, "rows": rows, "peak_mb": _peak_mb()}))


# -- the whole profile against the hand-written SQL of the same columns ----------------------
def _same_child(kind: str, workspace: Path, memory_limit: str | None) -> None:
    sys.path.insert(0, str(HERE))
    import ibis

    from profile_sql import profile_sql
    from userstrata.config import Settings
    from userstrata.segments import build_profile

    con = ibis.duckdb.connect(str(workspace), read_only=True)
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET threads = 2")
    # a private spill folder: read-only runs of one file otherwise share <file>.tmp and clash
    import tempfile

    con.raw_sql(f"SET temp_directory = '{tempfile.mkdtemp(prefix='profile-bench-')}'")
    if memory_limit:  # "default": userstrata's default limit (what Store.open sets)
        from userstrata.store import duckdb_memory_limit

        con.raw_sql(f"SET memory_limit = '{duckdb_memory_limit(None if memory_limit == 'default' else memory_limit)}'")
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "userstrata":
        tables = {n: con.table(n) for n in ("users", "orders", "order_items", "events")}
        # how the library fetches a profile (a snapshot, an export): userstrata._engine.to_arrow
        from userstrata._engine import to_arrow

        rows = to_arrow(con, build_profile(**tables, as_of=AS_OF, settings=Settings())).num_rows
    else:
        rows = con.con.execute(profile_sql(AS_OF)).to_arrow_table().num_rows
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"name": kind, "seconds": seconds, "cpu_s": cpu, "rows": rows, "peak_mb": _peak_mb(),
                      "load1": os.getloadavg()[0]}))


def _check_same(workspace: Path) -> str:
    """Row-for-row comparison of build_profile and the reference SQL (exact, nulls equal)."""
    sys.path.insert(0, str(HERE))
    import ibis

    from profile_sql import profile_sql
    from userstrata.config import Settings
    from userstrata.segments import build_profile

    con = ibis.duckdb.connect(str(workspace), read_only=True)
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET threads = 2")
    tables = {n: con.table(n) for n in ("users", "orders", "order_items", "events")}
    from userstrata._engine import to_arrow  # the library's fetch, as timed below

    ours = to_arrow(con, build_profile(**tables, as_of=AS_OF, settings=Settings())).to_pandas()
    ref = con.con.execute(profile_sql(AS_OF)).to_arrow_table().to_pandas()
    if list(ours.columns) != list(ref.columns) or len(ours) != len(ref):
        return f"DIFFERENT shape: {ours.shape} vs {ref.shape}"
    differ = [c for c in ours.columns
              if not ((ours[c].isna() & ref[c].isna()) | (ours[c] == ref[c])).all()]
    return f"{'SAME' if not differ else 'DIFFERENT ' + ', '.join(differ)}: {len(ours):,} rows x {len(ours.columns)} columns"


def same_columns(workspace: Path, rounds: int, check: bool, memory_limit: str | None) -> None:
    if check:
        print("check:", _check_same(workspace), file=sys.stderr)
    runs: dict[str, list[dict]] = {"userstrata": [], "sql": []}
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    for _ in range(rounds):
        for kind in runs:
            cmd = [sys.executable, __file__, "--same-child", kind, "--same-columns", str(workspace)]
            if memory_limit:
                cmd += ["--memory-limit", memory_limit]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(f"{kind} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[kind][-1]
            print(f"{kind}: {r['seconds']:.2f} s (CPU {r['cpu_s']:.2f} s), peak {r['peak_mb']:.0f} MB, load {r['load1']:.1f}",
                  file=sys.stderr)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items() if v}
    peak = {k: max(r["peak_mb"] for r in v) for k, v in runs.items() if v}
    print(f"\n{workspace.name}, as of {AS_OF}, best of {rounds} (load average at each run in brackets)")
    # CPU seconds (user + system, every thread) move less than wall time when other jobs share the cores
    cpu = {k: min(r["cpu_s"] for r in v) for k, v in runs.items() if v}
    print("| contestant | runs (s) | best (s) | least CPU (s) | peak VmHWM, max of runs (MB) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for k, v in runs.items():
        each = ", ".join(f"{r['seconds']:.2f} [{r['load1']:.1f}]" for r in v)
        print(f"| {k} | {each} | {best[k]['seconds']:.2f} | {cpu[k]:.2f} | {peak[k]:,.0f} |")
    if len(best) == 2:
        print(f"\nratio userstrata / SQL: time {best['userstrata']['seconds'] / best['sql']['seconds']:.2f}x, "
              f"CPU {cpu['userstrata'] / cpu['sql']:.2f}x, peak memory {peak['userstrata'] / peak['sql']:.2f}x")


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--events-per-user", type=float, default=10.0)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--same-columns", type=Path, default=None, metavar="WORKSPACE")
    ap.add_argument("--same-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--memory-limit", default=None)
    args = ap.parse_args()
    if args.same_child:
        _same_child(args.same_child, args.same_columns, args.memory_limit)
        return
    if args.same_columns:
        same_columns(args.same_columns, args.rounds, args.check, args.memory_limit)
        return
    data = args.data or HERE / "out" / f"shop-{args.users}"
    if args.child:
        _child(args.child, data, args.repeat)
        return

    if not (data / "orders.parquet").exists():
        from userstrata.datasets import simulate_shop

        start = time.perf_counter()
        simulate_shop(args.users, data, seed=1, events_per_user=args.events_per_user)
        print(f"simulated {args.users:,} users in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    import pyarrow.parquet as pq

    volumes = {t: pq.ParquetFile(data / f"{t}.parquet").metadata.num_rows for t in ("users", "orders", "order_items", "events")}
    results = []
    for name in CONTESTANTS:
        python = args.peers_python if name in PEER_ENV else sys.executable
        if not Path(python).exists():
            print(f"skip {name}: {python} not found", file=sys.stderr)
            continue
        cmd = [python, __file__, "--child", name, "--data", str(data), "--repeat", str(args.repeat)]
        env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") if name not in PEER_ENV else ""}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: {results[-1]['seconds']:.2f} s, peak {results[-1]['peak_mb']:.0f} MB", file=sys.stderr)

    base = {r["name"]: r for r in results}
    sql = base.get("raw DuckDB SQL RFM", {}).get("seconds")
    report = {"machine": _machine(), "date": str(dt.date.today()), "volumes": volumes, "results": results}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "profile_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nMachine: {report['machine']}; data: " + ", ".join(f"{k} {v:,}" for k, v in volumes.items()))
    print("\n| contestant | best of %d (s) | vs raw DuckDB SQL | peak RSS (MB) |" % args.repeat)
    print("| --- | ---: | ---: | ---: |")
    for r in results:
        ratio = f"{r['seconds'] / sql:.2f}x" if sql else "-"
        print(f"| {r['name']} | {r['seconds']:.2f} | {ratio} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
