"""Scale run: a simulated shop generated in chunks, then load, profile, predictions, KPIs and a
funnel end to end on DuckDB (out of core, the workspace's default memory limit), and the same
analysis stages on Spark ``local[2]`` at a size Spark handles here, with the DuckDB time of the
same stages at that same size (the ratio is from the same run).

    .venv/bin/python bench/scale_run.py --users 100000 --engine both
    .venv/bin/python bench/scale_run.py --users 2000000 --engine duckdb
    .venv/bin/python bench/scale_run.py --users 2000000 --stages profile,kpis   # rerun some stages
    .venv/bin/python bench/scale_run.py --spark-users 300000 --engine spark --stages lake   # the lake loader

``lake`` (not in the default stages) loads the generated orders and events once more, into a
scratch workspace on each engine: DuckDB's file load and Spark's ``load_lake`` (the same
validation on Spark, docs/lake.md), each into an empty table, so that the ratio is the loaders'.

Data: ``bench/out/scale-N[-eE]/data/*.parquet`` (``simulate_shop``, seed 5, 50k users a chunk;
reused when present), the workspace ``ws.duckdb`` beside it, the profile and predictions written
as Parquet (``profile.parquet``, ``predict.parquet``), the Spark lake (``lake/``, written by
``Workspace.export_tables``) and ``results.json`` (every stage measured, newest last).

Every stage runs in its own process, so that its peak memory (VmHWM, plus the JVM's for Spark)
is its own; the parent samples the resident memory of the stage and its children and stops a
stage that goes above ``--cap-gib`` (6 GiB by default: the machine is shared), which is recorded
as the result of that stage. DuckDB runs with the workspace's defaults (memory limit 1GB or a
quarter of RAM, spilling to disk) and ``threads`` 2; Spark with ``local[2]`` and
``--spark-driver-memory`` (3g). Spark's start-up (session, views) is timed apart from its stages.
Progress goes to stderr, the Markdown tables to stdout.
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
OUT = HERE / "out"
SEED = 5
END = dt.date(2024, 6, 30)  # the simulator's last day: every analysis is as of it
STAGES = ("load", "profile", "predict", "kpis", "funnel")
ANALYSES = STAGES[1:]
LAKE_TABLES = ("orders", "events")  # what load_lake takes of the four (docs/lake.md)
ALL_STAGES = (*STAGES, "lake")
FUNNEL_STEPS = ["page_view", "search", "add_to_cart", "purchase"]
TABLES = ("users", "orders", "order_items", "events")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def vm_hwm_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (the JVM of a Spark stage)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return found


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def folder(users: int, events_per_user: float) -> Path:
    return OUT / (f"scale-{users}" + ("" if events_per_user == 20.0 else f"-e{events_per_user:g}"))


def du_mib(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# -- the stages, each run in a child process -------------------------------------------------------
def _counts(con) -> dict[str, int]:
    return {t: int(con.raw_sql(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def stage_generate(base: Path, users: int, events_per_user: float) -> dict:
    from userstrata.datasets import simulate_shop  # noqa: PLC0415

    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    step = max(users // 20, 1)
    shown = [0]

    def progress(done: int) -> None:  # users generated so far
        if done - shown[0] >= step:
            shown[0] = done
            say(f"  generated {done:,} / {users:,} users")

    simulate_shop(users, data, seed=SEED, end=END, events_per_user=events_per_user, progress=progress)
    import duckdb  # noqa: PLC0415

    rows = {t: duckdb.sql(f"SELECT count(*) FROM read_parquet('{data / (t + '.parquet')}')").fetchone()[0]
            for t in TABLES}
    return {"rows": sum(rows.values()), "detail": rows}


def stage_load(base: Path) -> dict:
    from userstrata import Workspace  # noqa: PLC0415

    path = base / "ws.duckdb"
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    detail = {}
    with Workspace.open(path) as ws:
        for name in TABLES:
            start = time.perf_counter()
            report = ws.load(name, base / "data" / f"{name}.parquet")
            detail[name] = {"seconds": round(time.perf_counter() - start, 1), "read": report.rows_read,
                            "inserted": report.rows_inserted, "rejected": report.rows_rejected,
                            "load_avg": load_average()}
            say(f"  loaded {name}: {report.rows_inserted:,} rows in {detail[name]['seconds']} s")
    return {"rows": sum(d["read"] for d in detail.values()), "detail": detail}


def stage_lake(base: Path, engine: str, driver_memory: str) -> dict:
    """Orders and events loaded into an empty scratch table by the engine's own loader."""
    from userstrata.config import Settings  # noqa: PLC0415

    scratch = base / f"lake-load-{engine}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    detail, startup = {}, 0.0
    if engine == "spark":
        from userstrata.ingest.lake import load_lake  # noqa: PLC0415

        ws, startup = _open(base, engine, driver_memory)  # the session, as the analyses start it
        spark = ws.store.con._session
    else:
        from userstrata import Workspace  # noqa: PLC0415

        ws = Workspace.open(scratch / "ws.duckdb")
    with ws:
        for name in LAKE_TABLES:
            start = time.perf_counter()
            if engine == "spark":
                report = load_lake(spark, name, str(base / "data" / f"{name}.parquet"), settings=Settings(),
                                   target=str(scratch))
            else:
                report = ws.load(name, base / "data" / f"{name}.parquet")
            detail[name] = {"seconds": round(time.perf_counter() - start, 1), "read": report.rows_read,
                            "inserted": report.rows_inserted, "rejected": report.rows_rejected,
                            "load_avg": load_average()}
            say(f"  {engine} loaded {name}: {report.rows_inserted:,} rows in {detail[name]['seconds']} s")
    shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": round(sum(d["seconds"] for d in detail.values()), 2), "startup_s": round(startup, 1),
            "rows": sum(d["read"] for d in detail.values()), "detail": detail}


def _open(base: Path, engine: str, driver_memory: str):
    from userstrata import Workspace  # noqa: PLC0415

    if engine == "duckdb":
        return Workspace.open(base / "ws.duckdb", create=False), 0.0
    from pyspark.sql import SparkSession  # noqa: PLC0415

    from userstrata.config import Settings  # noqa: PLC0415

    start = time.perf_counter()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # our session first (driver memory is fixed at JVM start); Workspace.open finds it and adds the views
    (SparkSession.builder.master("local[2]").appName("userstrata-scale")
     .config("spark.driver.memory", driver_memory).config("spark.sql.session.timeZone", "UTC")
     .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    settings = Settings.load(None)
    spark = settings.engine.spark.model_copy(update={"master": "local[2]", "tables": str(base / "lake"),
                                                     "format": "parquet"})
    settings = settings.model_copy(update={"engine": settings.engine.model_copy(update={"spark": spark})})
    ws = Workspace.open("spark", settings=settings)
    return ws, time.perf_counter() - start


def _write(ws, expr, path: Path) -> int:
    """The expression written as Parquet by the engine (nothing kept in Python); its rows."""
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if ws.store.engine == "spark":
        from pyspark.sql import SparkSession  # noqa: PLC0415

        frame = ws.store.con._session.sql(ws.store.con.compile(expr))
        frame.write.parquet(str(path))
        session = SparkSession.getActiveSession()
        return int(session.read.parquet(str(path)).count())
    # the SQL the workspace runs (userstrata._engine.compile_sql), as the CLI and the report get it
    from userstrata import _engine  # noqa: PLC0415

    ws.store.con.con.execute(f"COPY ({_engine.compile_sql(ws.store.con, expr)}) TO '{path}' (FORMAT parquet)")
    import duckdb  # noqa: PLC0415

    return int(duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0])


def stage_analysis(base: Path, stage: str, engine: str, driver_memory: str) -> dict:
    import warnings  # noqa: PLC0415

    warnings.simplefilter("ignore")
    ws, startup = _open(base, engine, driver_memory)
    tag = "" if engine == "duckdb" else "-spark"
    with ws:
        start = time.perf_counter()
        if stage == "profile":
            out_rows = _write(ws, ws.profile(END), base / f"profile{tag}.parquet")
        elif stage == "predict":
            frame = ws.predict(END, horizon_days=90)
            out_rows = len(frame)
            timings = {k: round(v, 1) for k, v in (frame.attrs.get("timings") or {}).items()}
            say(f"  predict stages (s): {timings}")
            frame.attrs.clear()
            frame.to_parquet(base / f"predict{tag}.parquet")
        elif stage == "kpis":
            result = ws.kpis(END - dt.timedelta(days=89), END, grain="month")
            out_rows = len(result.table)
        elif stage == "funnel":
            result = ws.funnel(FUNNEL_STEPS, END - dt.timedelta(days=29), END)
            out_rows = len(result.steps)
            say(f"  funnel counts: {result.steps.iloc[:, :4].to_dict('records')}")
        else:
            raise ValueError(stage)
        seconds = time.perf_counter() - start
    found = {"seconds": round(seconds, 2), "startup_s": round(startup, 1), "out_rows": out_rows}
    if stage == "predict":
        found["predict_stages_s"] = timings
    return found


def child_main(args: argparse.Namespace) -> None:
    base = Path(args.child_dir)
    load_before = load_average()
    start = time.perf_counter()
    if args.child_stage == "generate":
        result = stage_generate(base, args.users, args.events_per_user)
    elif args.child_stage == "load":
        result = stage_load(base)
    elif args.child_stage == "lake":
        result = stage_lake(base, args.child_engine, args.spark_driver_memory)
    elif args.child_stage == "export":
        from userstrata import Workspace  # noqa: PLC0415

        with Workspace.open(base / "ws.duckdb", create=False) as ws:
            ws.export_tables(base / "lake")
        result = {}
    else:
        result = stage_analysis(base, args.child_stage, args.child_engine, args.spark_driver_memory)
    result.setdefault("seconds", round(time.perf_counter() - start, 2))
    jvm = sum(vm_hwm_mib(p) for p in _children(os.getpid()) if Path(f"/proc/{p}").exists())
    result.update(peak_mib=round(vm_hwm_mib() + jvm, 0), python_peak_mib=round(vm_hwm_mib(), 0),
                  jvm_peak_mib=round(jvm, 0), load_before=load_before, load_after=load_average())
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent: one subprocess per stage, memory watched -----------------------------------------
def run_stage(base: Path, stage: str, engine: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child-stage", stage, "--child-engine", engine, "--child-dir", str(base),
           "--users", str(args.users), "--events-per-user", str(args.events_per_user),
           "--spark-driver-memory", args.spark_driver_memory]
    say(f"{engine} {stage} at {base.name} (load average {load_average():.2f})")
    start, peak, killed = time.perf_counter(), 0.0, None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    cap = args.cap_gib * 1024
    while proc.poll() is None:
        rss = _rss_mib(proc.pid) + sum(_rss_mib(p) for p in _children(proc.pid))
        peak = max(peak, rss)
        if rss > cap:
            killed = f"stopped: resident memory {rss:,.0f} MiB above the {args.cap_gib} GiB cap"
        elif time.perf_counter() - start > args.stage_timeout:
            killed = f"stopped: still running after {args.stage_timeout} s"
        if killed:
            for p in [*_children(proc.pid), proc.pid]:
                try:
                    os.kill(p, 9)
                except OSError:
                    pass
            break
        time.sleep(0.5)
    out = proc.communicate()[0]
    wall = time.perf_counter() - start
    found = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if found:
        result = json.loads(found[-1].removeprefix("RESULT "))
    else:
        result = {"error": killed or f"exit code {proc.returncode}", "seconds": round(wall, 1),
                  "peak_mib": round(peak, 0)}
    result.update(stage=stage, engine=engine, users=args.users if engine else None, folder=base.name,
                  wall_s=round(wall, 1), sampled_peak_mib=round(peak, 0),
                  when=time.strftime("%Y-%m-%d %H:%M:%S"))
    say(f"  -> {json.dumps(result)}")
    with open(base / "results.json", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def ensure_data(users: int, args: argparse.Namespace) -> Path:
    base = folder(users, args.events_per_user)
    marker = base / "data" / "_done.json"
    if marker.exists():
        say(f"reusing {base / 'data'}")
        return base
    base.mkdir(parents=True, exist_ok=True)
    sub = argparse.Namespace(**{**vars(args), "users": users})
    result = run_stage(base, "generate", "python", sub)
    if "error" in result:
        raise SystemExit(f"generating {users} users failed: {result['error']}")
    marker.write_text(json.dumps(result))
    return base


def input_rows(base: Path) -> dict[str, int]:
    marker = base / "data" / "_done.json"
    return json.loads(marker.read_text())["detail"] if marker.exists() else {}


STAGE_INPUTS = {  # the canonical tables each stage reads (rows column of the table)
    "load": TABLES, "profile": TABLES, "predict": TABLES, "kpis": ("users", "orders", "events"),
    "funnel": ("users", "orders", "events"), "lake": LAKE_TABLES,
}


def fmt_cell(r: dict | None) -> tuple[str, str]:
    if r is None:
        return "-", "-"
    if "error" in r:
        return f"failed ({r['error']})", f"{r.get('sampled_peak_mib', 0):,.0f}"
    return f"{r['seconds']:,.1f}", f"{r['peak_mib']:,.0f}"


def table(rows: dict[str, int], duck: dict, spark: dict | None) -> str:
    head = "| stage | input rows | DuckDB s | DuckDB peak MiB | load avg |"
    sep = "| --- | ---: | ---: | ---: | ---: |"
    if spark is not None:
        head += " Spark s | Spark peak MiB (Python + JVM) | Spark start s | load avg | Spark / DuckDB |"
        sep += " ---: | ---: | ---: | ---: | ---: |"
    lines = [head, sep]
    for stage in ALL_STAGES:
        if stage not in duck and not (spark and stage in spark):
            continue
        n = sum(rows.get(t, 0) for t in STAGE_INPUTS[stage])
        d = duck.get(stage)
        s, m = fmt_cell(d)
        line = f"| {stage} | {n:,} | {s} | {m} | {d['load_before']:.1f} |" if d and "error" not in d else \
            f"| {stage} | {n:,} | {s} | {m} | - |"
        if spark is not None:
            sp = spark.get(stage)
            ss, sm = fmt_cell(sp)
            ok = sp and "error" not in sp and d and "error" not in d
            ratio = f"{sp['seconds'] / max(d['seconds'], 0.01):.1f}x" if ok else "-"
            start = f"{sp['startup_s']:.0f}" if sp and "startup_s" in sp else "-"
            la = f"{sp['load_before']:.1f}" if sp and "load_before" in sp else "-"
            line += f" {ss} | {sm} | {start} | {la} | {ratio} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events-per-user", type=float, default=20.0)
    parser.add_argument("--engine", choices=("duckdb", "spark", "both"), default="duckdb")
    parser.add_argument("--spark-users", type=int, help="size of the Spark run (default: min(users, 100000))")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(ALL_STAGES)}")
    parser.add_argument("--cap-gib", type=float, default=6.0, help="stop a stage above this resident memory")
    parser.add_argument("--stage-timeout", type=int, default=1800, help="stop a stage after this many seconds")
    parser.add_argument("--spark-driver-memory", default="3g")
    parser.add_argument("--child-stage", help=argparse.SUPPRESS)
    parser.add_argument("--child-engine", help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_stage:
        child_main(args)
        return
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; known: {', '.join(ALL_STAGES)}")
    stages = [s for s in ALL_STAGES if s in stages]

    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB;"
          f" {time.strftime('%Y-%m-%d %H:%M')}; command: {' '.join(sys.argv)}")
    if args.engine in ("duckdb", "both"):
        base = ensure_data(args.users, args)
        duck = {s: run_stage(base, s, "duckdb", args) for s in stages}
        rows = input_rows(base)
        print(f"\n### DuckDB, {args.users:,} users ({', '.join(f'{t} {n:,}' for t, n in rows.items())})\n")
        print(table(rows, duck, None))
        print(f"\ndisk: data {du_mib(base / 'data'):,.0f} MiB, workspace {du_mib(base / 'ws.duckdb'):,.0f} MiB")
    if args.engine in ("spark", "both"):
        m = args.spark_users or min(args.users, 100_000)
        sub = argparse.Namespace(**{**vars(args), "users": m})
        base = ensure_data(m, sub)
        duck, spark = {}, {}
        if not (base / "ws.duckdb").exists() or (m != args.users and "load" in stages):
            duck["load"] = run_stage(base, "load", "duckdb", sub)
        if not (base / "lake").exists() or "load" in stages:
            spark["load"] = run_stage(base, "export", "duckdb", sub)  # the lake Spark reads
        for s in (s for s in stages if s != "load"):
            if m != args.users or args.engine == "spark":
                duck[s] = run_stage(base, s, "duckdb", sub)
            else:  # the same stage at the same size, just measured above
                duck[s] = json.loads([ln for ln in (base / "results.json").read_text().splitlines()
                                      if json.loads(ln).get("engine") == "duckdb" and json.loads(ln)["stage"] == s][-1])
            spark[s] = run_stage(base, s, "spark", sub)
        rows = input_rows(base)
        print(f"\n### Spark local[2] against DuckDB, {m:,} users (Spark 'load' = export_tables to Parquet)\n")
        print(table(rows, duck, spark))
        print(f"\ndisk: data {du_mib(base / 'data'):,.0f} MiB, workspace {du_mib(base / 'ws.duckdb'):,.0f} MiB,"
              f" lake {du_mib(base / 'lake'):,.0f} MiB")


if __name__ == "__main__":
    main()
