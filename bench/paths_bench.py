"""Paths speed: userstrata's next event after an anchor (``measure.paths``) against pm4py.

retentioneering (the usual Python path-analysis library) is not on the package registry this
project installs from, so pm4py stands in: a process-mining library whose directly-follows graph
(DFG) counts "event Y right after event X". It runs in its own venv (``bench/make_pm4py_venv.sh``
creates ``bench/.venv-pm4py``), on the same event log:

- ``ours``: ``paths(events, anchor, steps=1, conversion=None, collapse_repeats=False)`` compiled by
  Ibis and run on DuckDB: for each user, the event right after their first ``anchor`` (ties in
  time broken by ``event_id``); ``next`` holds the users per event.
- ``pm4py``: the same definition in pm4py: ``filter_suffixes(log, anchor)`` keeps each case's
  events after its first ``anchor``, and the start activities of ``discover_dfg`` on that log are
  the events right after it. Also timed: ``discover_dfg`` of the whole log (every X -> Y pair;
  not the same definition, so not compared).

The log: ``--users`` users, ``--events`` events over 150 days inside the period (every anchor
counts), 8 event names; a DuckDB file for userstrata, the same rows as Parquet (ordered by
``event_id``, which pm4py keeps as its tie-break) for pm4py. Each contestant in a fresh process,
alternated, best of ``--repeat``; peak memory is the child's VmHWM. The counts must agree
(userstrata's ``(end)``, users whose anchor is their last event, has no pm4py row).

    bash bench/make_pm4py_venv.sh
    .venv/bin/python bench/paths_bench.py --users 200000 --events 10000000
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

NAMES = ["page_view", "search", "add_to_cart", "checkout", "login", "share", "use", "checkin"]
ANCHOR = "search"
START, END = dt.date(2024, 1, 1), dt.date(2024, 6, 30)
HERE = Path(__file__).resolve().parent
PM4PY = HERE / ".venv-pm4py" / "bin" / "python"
CHUNK = 10_000_000


def generate(db: Path, parquet: Path, users: int, events: int, seed: int = 0) -> None:
    """The log by DuckDB SQL in chunks; timestamps in whole seconds so that ties happen. Each value
    is a hash of its own number (4n + 1, 4n + 2, 4n + 3)."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), config=config())
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE events (event_id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR,
                   session_id VARCHAR, ts TIMESTAMP, event VARCHAR, properties VARCHAR)""")
    names = ", ".join(f"'{n}'" for n in NAMES)
    for lo in range(0, events, CHUNK):
        hi = min(events, lo + CHUNK)
        # 150 days from 2024-01-01 00:00 UTC (08:00 in Shanghai): all inside START..END local days
        con.execute(f"""
            INSERT INTO events
            SELECT 'e' || lpad(CAST(n AS VARCHAR), 10, '0'),
                   'u' || lpad(CAST(hash(4 * n + 1 + {seed}) % {users} AS VARCHAR), 8, '0'),
                   NULL, NULL,
                   TIMESTAMP '2024-01-01' + to_seconds(CAST(hash(4 * n + 2 + {seed}) % {150 * 86400} AS BIGINT)),
                   [{names}][1 + CAST(hash(4 * n + 3 + {seed}) % {len(NAMES)} AS INTEGER)],
                   NULL
            FROM range({lo}, {hi}) t(n)""")
    con.execute(f"""COPY (SELECT user_id, event_id, ts, event FROM events ORDER BY event_id)
                    TO '{parquet}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)""")
    con.close()


def run_ours(db: Path) -> dict:
    import ibis  # noqa: PLC0415

    from userstrata.features._time import Clock  # noqa: PLC0415
    from userstrata.measure.paths import paths  # noqa: PLC0415

    con = ibis.duckdb.connect(str(db), read_only=True, **config())
    con.raw_sql("SET TimeZone = 'UTC'")
    began = time.perf_counter()
    r = paths(con.table("events"), ANCHOR, start=START, end=END, steps=1, conversion=None, collapse_repeats=False,
              clock=Clock("Asia/Shanghai", "duckdb"), execute=con.execute)
    seconds = time.perf_counter() - began
    counts = {str(e): int(n) for e, n in zip(r.next["event"], r.next["users"])}
    return {"seconds": seconds, "counts": counts}


def run_pm4py(parquet: Path) -> dict:
    import pandas as pd  # noqa: PLC0415
    import pm4py  # noqa: PLC0415

    began = time.perf_counter()
    df = pd.read_parquet(parquet)
    # format_dataframe sorts by case, time and the original row order (here: event_id)
    log = pm4py.format_dataframe(df, case_id="user_id", activity_key="event", timestamp_key="ts")
    del df
    loaded = time.perf_counter()
    after = pm4py.filter_suffixes(log, ANCHOR)
    _, starts, _ = pm4py.discover_dfg(after)
    seconds = time.perf_counter() - loaded
    del after
    t = time.perf_counter()
    dfg, _, _ = pm4py.discover_dfg(log)
    dfg_seconds = time.perf_counter() - t
    return {"seconds": seconds, "load_seconds": loaded - began, "dfg_seconds": dfg_seconds,
            "counts": {str(e): int(n) for e, n in starts.items()}, "dfg_pairs": len(dfg)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB")
    parser.add_argument("--one", choices=["ours", "pm4py"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["BENCH_THREADS"], os.environ["BENCH_MEMORY_LIMIT"] = str(args.threads), args.memory_limit
    if args.one:
        out = run_ours(args.data) if args.one == "ours" else run_pm4py(args.data)
        out |= {"peak_mib": vm_hwm_mib(), "load": load_average()}
        print(json.dumps(out))
        return
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    db = out_dir / f"paths-{args.users}-{args.events}.duckdb"
    parquet = db.with_suffix(".parquet")
    if not db.exists() or not parquet.exists():
        began = time.perf_counter()
        generate(db, parquet, args.users, args.events)
        print(f"generated {args.events:,} events of {args.users:,} users in {time.perf_counter() - began:.1f}s")
    if not PM4PY.exists():
        sys.exit("bench/.venv-pm4py is missing: run bash bench/make_pm4py_venv.sh")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for which in ("pm4py", "ours"):
            python, data = (str(PM4PY), parquet) if which == "pm4py" else (sys.executable, db)
            env = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
            run = subprocess.run([python, __file__, "--one", which, "--data", str(data), "--threads", str(args.threads),
                                  "--memory-limit", args.memory_limit], capture_output=True, text=True, env=env)
            if run.returncode:
                sys.exit(f"{which} failed:\n{run.stderr[-3000:]}")
            got = json.loads(run.stdout.strip().splitlines()[-1])
            extra = (f"  (load {got['load_seconds']:.1f} s, whole DFG {got['dfg_seconds']:.1f} s)"
                     if which == "pm4py" else "")
            print(f"  {which:<5} {got['seconds']:8.2f} s  VmHWM {got['peak_mib']:7.0f} MiB  load {got['load']:.1f}{extra}",
                  flush=True)
            if which not in best or got["seconds"] < best[which]["seconds"]:
                best[which] = got
    ours, peer = best["ours"], best["pm4py"]
    mine = {e: n for e, n in ours["counts"].items() if e != "(end)"}
    same = mine == peer["counts"]
    print(f"next event after the first {ANCHOR!r}: agree {same}; {sum(ours['counts'].values()):,} users, "
          f"{ours['counts']}")
    print(f"userstrata paths      {ours['seconds']:8.2f} s   VmHWM {ours['peak_mib']:7.0f} MiB")
    print(f"pm4py (suffix + DFG)  {peer['seconds']:8.2f} s   VmHWM {peer['peak_mib']:7.0f} MiB   "
          f"(+ {peer['load_seconds']:.1f} s reading and formatting the log; whole DFG {peer['dfg_seconds']:.1f} s)")
    print(f"ratio userstrata / pm4py: {ours['seconds'] / peer['seconds']:.2f}x")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
