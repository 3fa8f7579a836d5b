"""Twelve monthly snapshots back-filled from history: ``Workspace.snapshot_series`` against the
hand-written SQL of the same columns (bench/profile_sql.py) run once per month end and stored.

    python bench/snapshots_bench.py bench/out/shop-100000.duckdb
    python bench/snapshots_bench.py bench/out/shop-1000000.duckdb --rounds 1

Each contestant works on its own copy of the workspace (snapshots are written), in its own
process, with the same DuckDB settings: userstrata's defaults (``Store.open``: the default memory
limit) and the same limit for the SQL, threads = 2. Peak memory is the process's VmHWM. The
snapshot rows of both are compared (user, tier, lifecycle, RFM cell, value score) for every date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = dt.date(2023, 7, 31), dt.date(2024, 6, 30)  # 12 month ends, the simulator's last year
COMPARED = ("user_id", "tier", "lifecycle", "rfm_cell", "value_score")


def _peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_userstrata(copy: Path) -> dict:
    from userstrata import Workspace
    from userstrata.config import Settings

    settings = Settings.from_dict({"engine": {"threads": 2}})
    with Workspace.open(copy, settings=settings) as ws:
        start = time.perf_counter()
        reports = ws.snapshot_series(START, END, "1mo")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "snapshots": len(reports), "rows": sum(r.rows for r in reports)}


def run_sql(copy: Path) -> dict:
    import duckdb

    sys.path.insert(0, str(HERE))
    from profile_sql import profile_sql
    from userstrata.segments.snapshots import snapshot_dates
    from userstrata.store import duckdb_memory_limit

    con = duckdb.connect(str(copy))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    con.execute(f"SET memory_limit = '{duckdb_memory_limit(None)}'")
    start = time.perf_counter()
    rows = 0
    days = snapshot_dates(START, END, "1mo")
    for i, day in enumerate(days):
        body = profile_sql(day)
        if i == 0:
            con.execute(f"CREATE OR REPLACE TABLE sql_snapshots AS SELECT DATE '{day}' AS as_of, * FROM ({body}) LIMIT 0")
        con.execute("BEGIN")
        con.execute(f"DELETE FROM sql_snapshots WHERE as_of = DATE '{day}'")
        rows += con.execute(f"INSERT INTO sql_snapshots SELECT DATE '{day}' AS as_of, * FROM ({body})").fetchone()[0]
        con.execute("COMMIT")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "snapshots": len(days), "rows": rows}


def compare(ours: Path, sql: Path) -> str:
    import duckdb

    con = duckdb.connect(str(ours), read_only=True)
    con.execute(f"ATTACH '{sql}' AS s (READ_ONLY)")
    cols = ", ".join(COMPARED)
    differ = con.execute(f"""
        SELECT count(*) FROM (
            (SELECT as_of, {cols} FROM profiles EXCEPT ALL SELECT as_of, {cols} FROM s.sql_snapshots)
            UNION ALL
            (SELECT as_of, {cols} FROM s.sql_snapshots EXCEPT ALL SELECT as_of, {cols} FROM profiles))""").fetchone()[0]
    n = con.execute("SELECT count(*), count(DISTINCT as_of) FROM profiles").fetchone()
    return f"{'SAME' if differ == 0 else f'{differ} rows DIFFER'}: {n[0]:,} snapshot rows over {n[1]} dates ({', '.join(COMPARED)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, copy = args.child
        result = (run_userstrata if kind == "userstrata" else run_sql)(Path(copy))
        print(json.dumps({**result, "peak_mb": _peak_mb(), "load1": os.getloadavg()[0]}))
        return
    out = HERE / "out" / "snapshots"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"userstrata": [], "sql": []}
    copies = {}
    for _ in range(args.rounds):
        for kind in runs:
            copies[kind] = out / f"{kind}-{args.workspace.name}"
            shutil.copyfile(args.workspace, copies[kind])
            proc = subprocess.run([sys.executable, __file__, str(args.workspace), "--child", kind, str(copies[kind])],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")})
            if proc.returncode:
                sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
            runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[kind][-1]
            print(f"{kind}: {r['seconds']:.1f} s, {r['snapshots']} snapshots, {r['rows']:,} rows, "
                  f"peak {r['peak_mb']:,.0f} MB, load {r['load1']:.1f}", file=sys.stderr)
    print("check:", compare(copies["userstrata"], copies["sql"]))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    peak = {k: max(r["peak_mb"] for r in v) for k, v in runs.items()}
    print("| contestant | runs (s) [load] | peak VmHWM (MB) |\n| --- | --- | ---: |")
    for k, v in runs.items():
        each = ", ".join(f"{r['seconds']:.1f} [{r['load1']:.1f}]" for r in v)
        print(f"| {k} | {each} | {peak[k]:,.0f} |")
    print(f"ratio userstrata / SQL: time {best['userstrata']['seconds'] / best['sql']['seconds']:.2f}x, "
          f"peak memory {peak['userstrata'] / peak['sql']:.2f}x")


if __name__ == "__main__":
    main()
