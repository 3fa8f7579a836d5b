"""Paths speed: userstrata's next event after an anchor (``measure.paths``) against the Python
path-analysis peers retentioneering and pm4py.

Each peer runs in its own venv (its pins must not leak into the project's):
``bench/make_retentioneering_venv.sh`` creates ``bench/.venv-rete`` and
``bench/make_pm4py_venv.sh`` creates ``bench/.venv-pm4py``. All three read the same event log:

- ``ours``: ``paths(events, anchor, steps=1, conversion=None, collapse_repeats=False)`` compiled by
  Ibis and run on DuckDB: for each user, the event right after their first ``anchor`` (ties in
  time broken by ``event_id``); ``next`` holds the users per event.
- ``retentioneering``: its step matrix centred on the first occurrence of the anchor
  (``Eventstream.step_matrix_data(max_steps=1, anchor={"pattern": anchor, "occurrence":
  "first"})``); column +1 is the share of those users at each next event, times the users with
  the anchor. Timed: building the ``Eventstream`` from the log in memory (it sorts and indexes
  the paths) and the step matrix; reading the Parquet log is reported apart.
- ``pm4py``: the same definition in pm4py: ``filter_suffixes(log, anchor)`` keeps each case's
  events after its first ``anchor``, and the start activities of ``discover_dfg`` on that log are
  the events right after it. Also timed: ``discover_dfg`` of the whole log (every X -> Y pair;
  not the same definition, so not compared).

The log: ``--users`` users, ``--events`` events over 150 days inside the period (every anchor
counts), 8 event names; a DuckDB file for userstrata, the same rows as Parquet (ordered by
``event_id``, which both peers keep as their tie-break) for the peers. Each contestant in a fresh
process, alternated, best of ``--repeat``; peak memory is the child's VmHWM. The counts must agree
(userstrata's ``(end)``, users whose anchor is their last event, has no peer row).

    bash bench/make_retentioneering_venv.sh; bash bench/make_pm4py_venv.sh
    .venv/bin/python bench/paths_bench.py --users 200000 --events 10000000 [--peers retentioneering]
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
PEERS = {"retentioneering": HERE / ".venv-rete" / "bin" / "python", "pm4py": HERE / ".venv-pm4py" / "bin" / "python"}
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


def run_retentioneering(parquet: Path) -> dict:
    os.environ["RETENTIONEERING_NO_TRACK"] = "1"  # no usage analytics sent (and no network here)
    import pandas as pd  # noqa: PLC0415
    from retentioneering import Eventstream  # noqa: PLC0415

    began = time.perf_counter()
    df = pd.read_parquet(parquet, columns=["user_id", "ts", "event"])  # rows in event_id order
    loaded = time.perf_counter()
    stream = Eventstream(df, schema={"path_cols": ["user_id"], "event_col": "event", "timestamp_col": "ts",
                                     "custom_cols": []})
    del df
    (matrix,) = stream.step_matrix_data(max_steps=1, anchor={"pattern": ANCHOR, "occurrence": "first"})
    frame = stream.df
    anchored = frame.loc[frame["event"] == ANCHOR, "user_id"].nunique()
    seconds = time.perf_counter() - loaded
    shares = matrix[1]
    counts = {str(e): round(v * anchored) for e, v in shares.items() if round(v * anchored) > 0}
    counts.pop("path_start", None)
    if "path_end" in counts:  # users whose anchor is their last event: userstrata's "(end)"
        counts["(end)"] = counts.pop("path_end")
    return {"seconds": seconds, "load_seconds": loaded - began, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB")
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--one", choices=["ours", *PEERS], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["BENCH_THREADS"], os.environ["BENCH_MEMORY_LIMIT"] = str(args.threads), args.memory_limit
    if args.one:
        out = {"ours": run_ours, "pm4py": run_pm4py, "retentioneering": run_retentioneering}[args.one](args.data)
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
    for peer in args.peers:
        if not PEERS[peer].exists():
            sys.exit(f"bench/{PEERS[peer].parent.parent.name} is missing: run bash bench/make_{peer}_venv.sh")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for which in (*args.peers, "ours"):
            python, data = (str(PEERS[which]), parquet) if which in PEERS else (sys.executable, db)
            env = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
            run = subprocess.run([python, __file__, "--one", which, "--data", str(data), "--threads", str(args.threads),
                                  "--memory-limit", args.memory_limit], capture_output=True, text=True, env=env)
            if run.returncode:
                sys.exit(f"{which} failed:\n{run.stderr[-3000:]}")
            got = json.loads(run.stdout.strip().splitlines()[-1])
            extra = f"  (reading the log {got['load_seconds']:.1f} s)" if which in PEERS else ""
            if "dfg_seconds" in got:
                extra += f"  (whole DFG {got['dfg_seconds']:.1f} s)"
            print(f"  {which:<15} {got['seconds']:8.2f} s  VmHWM {got['peak_mib']:7.0f} MiB  load {got['load']:.1f}{extra}",
                  flush=True)
            if which not in best or got["seconds"] < best[which]["seconds"]:
                best[which] = got
    ours = best["ours"]
    print(f"next event after the first {ANCHOR!r}: {sum(ours['counts'].values()):,} users, {ours['counts']}")
    print(f"userstrata paths  {ours['seconds']:8.2f} s   VmHWM {ours['peak_mib']:7.0f} MiB")
    same_all = True
    for peer in args.peers:
        got = best[peer]
        # pm4py drops empty suffixes, so it has no "(end)"
        mine = {e: n for e, n in ours["counts"].items() if e != "(end)" or peer == "retentioneering"}
        same = mine == got["counts"]
        same_all &= same
        print(f"{peer:<17} {got['seconds']:8.2f} s   VmHWM {got['peak_mib']:7.0f} MiB   (+ {got['load_seconds']:.1f} s "
              f"reading the log)   counts agree: {same}   ratio userstrata / {peer}: "
              f"{ours['seconds'] / got['seconds']:.2f}x")
        if not same:
            print(f"  {peer}: {got['counts']}")
    if not same_all:
        sys.exit(1)


if __name__ == "__main__":
    main()
