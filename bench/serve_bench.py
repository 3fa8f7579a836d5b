"""REST load test on loopback: ``userstrata serve`` over a simulated shop, driven open-loop.

    python bench/serve_bench.py                      # 100k users, 200 and 1,000 lookups/s for 20 s
    python bench/serve_bench.py --users 20000 --lookup-seconds 5 --ingest-seconds 10   # a quick look

1. Simulates and loads the shop once (kept under ``--folder`` and reused), saves the batch
   snapshot, creates the tokens, then starts ``userstrata serve`` in its own process.
2. Profile lookups (``GET /v1/users/{id}``, random users) at each ``--rates`` for
   ``--lookup-seconds``, open loop: request i is due at ``start + i / rate`` whatever happened to
   the others, and its latency is counted from that moment (a slow server cannot slow the
   generator down and hide its own queue). Bounded in time and count (rate x seconds).
3. Event ingest (``POST /v1/events``) at ``--ingest-rate`` events/s in batches of ``--batch`` for
   ``--ingest-seconds`` (also open loop; every 20th batch is sent twice, as a client retrying),
   then the server is stopped and the store counted: every distinct event id exactly once.
4. The real-time profiles of a sample of the touched users, read before the server stops, against
   a batch profile computed afterwards from the same data: tier, lifecycle, RFM cell, value score.

The generator is a small HTTP/1.1 client on asyncio streams (keep-alive connections, no parsing
beyond the status line and Content-Length): it shares the machine's cores with the server, so it
has to be cheap. Results go to bench/out/serve_bench.json and print as Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
END = dt.date(2024, 6, 30)  # the simulated shop's last day
NEXT_DAY = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(9, 0))  # naive text is read as shop time
EVENTS = ("page_view", "checkin", "share", "add_to_cart", "watch", "like", "login")


# -- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------------

class Pool:
    """Keep-alive connections to one host, opened as needed (at most ``size`` at once)."""

    def __init__(self, host: str, port: int, size: int = 64):
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        message = head.encode() + b"\r\n" + body
        async with self.slots:
            while True:
                reused = bool(self.idle)
                conn = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
                reader, writer = conn
                writer.write(message)
                try:
                    status_line = await reader.readline()
                except ConnectionError:
                    if not reused:
                        raise
                    status_line = b""
                if status_line or not reused:
                    break
                writer.close()  # an idle connection the server closed (keep-alive timeout): a new one
            try:
                status = int(status_line.split()[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                payload = await reader.readexactly(length)
            except Exception:
                writer.close()
                raise
            self.idle.append(conn)
            return status, payload

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def lookups(pool: Pool, token: str, users: list[str], rate: int, seconds: float, seed: int) -> dict:
    """``rate`` lookups a second for ``seconds``, each due at its own time (open loop)."""
    rng = random.Random(seed)
    total = int(rate * seconds)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, service, errors, late, slow = [], [], 0, 0, []
    loop = asyncio.get_running_loop()

    async def one(due: float, user: str) -> None:
        nonlocal errors
        sent = loop.time()
        try:
            status, body = await pool.request("GET", f"/v1/users/{user}", headers)
            ok = status == 200 and body.startswith(b"{")
        except Exception:
            ok = False
        done = loop.time()
        if ok:
            if done - due > 0.05:
                slow.append(due - start)
            latencies.append((done - due) * 1000)
            service.append((done - sent) * 1000)
        else:
            errors += 1

    start = loop.time() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.001:
            late += 1
        tasks.append(asyncio.ensure_future(one(due, rng.choice(users))))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    return {"rate": rate, "seconds": seconds, "requests": total, "ok": len(latencies), "errors": errors,
            "achieved_rps": total / elapsed, "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
            "max_ms": max(latencies, default=float("nan")), "service_p50_ms": _pct(service, 50),
            "service_p99_ms": _pct(service, 99), "sent_late_over_1ms": late,
            # when the requests over 50 ms were due (seconds into the phase): a stall shows as a run
            "over_50ms_due_at_s": sorted({round(t, 1) for t in slow})[:20], "over_50ms": len(slow)}


async def ingest(pool: Pool, token: str, users: list[str], rate: int, batch: int, seconds: float, seed: int) -> dict:
    """``rate`` events a second in batches of ``batch`` for ``seconds``; every 20th batch twice."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    batches = int(rate * seconds / batch)
    loop = asyncio.get_running_loop()
    results, latencies, errors, touched = [], [], 0, set()

    def rows(b: int) -> bytes:
        out = []
        for i in range(batch):
            user = rng.choice(users)
            touched.add(user)
            ts = NEXT_DAY + dt.timedelta(seconds=rng.randrange(0, 8 * 3600))
            out.append({"event_id": f"bench-{seed}-{b}-{i}", "user_id": user, "ts": ts.isoformat(),
                        "event": rng.choice(EVENTS)})
        return json.dumps({"rows": out}).encode()

    async def post(due: float, body: bytes) -> None:
        nonlocal errors
        try:
            status, payload = await pool.request("POST", "/v1/events", headers, body)
            answer = json.loads(payload)
            if status != 200:
                raise RuntimeError(f"{status}: {answer}")
            results.append(answer)
            latencies.append((loop.time() - due) * 1000)
        except Exception as exc:
            errors += 1
            print("ingest error:", exc, file=sys.stderr)

    start = loop.time() + 0.05
    tasks, sent_rows = [], 0
    for b in range(batches):
        body = rows(b)
        due = start + b * batch / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(post(due, body)))
        sent_rows += batch
        if b % 20 == 19:  # a client retrying a batch it is unsure about
            tasks.append(asyncio.ensure_future(post(due, body)))
            sent_rows += batch
    sending = loop.time() - start
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    unique = batches * batch
    return {"rate": rate, "batch": batch, "seconds": seconds, "batches": batches, "rows_sent": sent_rows,
            "unique_events": unique, "errors": errors, "inserted": sum(r["inserted"] for r in results),
            "unchanged": sum(r["unchanged"] for r in results), "rejected": sum(r["rejected"] for r in results),
            "send_seconds": sending, "elapsed_seconds": elapsed, "events_per_s": unique / elapsed,
            "batch_p50_ms": _pct(latencies, 50), "batch_p99_ms": _pct(latencies, 99),
            "touched_users": len(touched), "_touched": sorted(touched)}


async def read_profiles(pool: Pool, token: str, users: list[str]) -> dict[str, dict]:
    headers = {"Authorization": f"Bearer {token}"}

    async def one(user: str):
        status, body = await pool.request("GET", f"/v1/users/{user}", headers)
        return user, json.loads(body) if status == 200 else None

    out = {}
    for i in range(0, len(users), 200):
        out.update(await asyncio.gather(*[one(u) for u in users[i:i + 200]]))
    return out


# -- the run --------------------------------------------------------------------------------------

def prepare(folder: Path, users: int) -> Path:
    """The simulated shop as a workspace with a batch snapshot (made once, then reused)."""
    from userstrata import Workspace
    from userstrata.datasets import simulate_shop

    path = folder / f"serve-{users}.duckdb"
    if path.exists():
        return path
    t = time.perf_counter()
    files = simulate_shop(users, folder / f"serve-files-{users}", seed=11, end=END)
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    with Workspace.open(tmp) as ws:
        for name in ("users", "orders", "order_items", "events"):
            ws.load(name, files[name])
        ws.snapshot(END)
    tmp.rename(path)
    print(f"prepared {users:,} users in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(port: int, server: subprocess.Popen, timeout: float) -> float:
    import urllib.request

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /v1/health in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=HERE / "out")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rates", default="200,1000", help="lookup rates, requests/s")
    parser.add_argument("--lookup-seconds", type=float, default=20)
    parser.add_argument("--ingest-rate", type=int, default=5000, help="events/s")
    parser.add_argument("--batch", type=int, default=5000, help="events per POST")
    parser.add_argument("--ingest-seconds", type=float, default=60)
    parser.add_argument("--compare", type=int, default=2000, help="touched users compared with a batch run")
    parser.add_argument("--no-access-log", action="store_true",
                        help="start uvicorn directly without its access log instead of `userstrata serve`")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)

    from userstrata import Workspace
    from userstrata.serve.tokens import create_token

    source = prepare(args.folder, args.users)
    path = args.folder / f"serve-{args.users}-run.duckdb"  # a fresh copy: the ingest writes into it
    path.write_bytes(source.read_bytes())
    with Workspace.open(path, create=False) as ws:
        users = ws.table("users").user_id.to_pandas().tolist()
        reader, _ = create_token(ws.store, "operator", note="bench lookups")
        writer, _ = create_token(ws.store, "admin", note="bench ingest")
        events_before = int(ws.table("events").count().execute())

    log = open(args.folder / "serve_bench_server.log", "w")
    exe = Path(sys.executable).with_name("userstrata")
    if args.no_access_log:  # what `userstrata serve` would cost without uvicorn's per-request log line
        command = [sys.executable, "-c", "import sys, uvicorn; from userstrata.serve.app import create_app; "
                   "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), "
                   "log_level='warning', access_log=False)", str(path), str(args.port)]
    else:
        command = [str(exe), "serve", "--workspace", str(path), "--port", str(args.port)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    report: dict = {"machine": machine(), "users": args.users, "events_before": events_before,
                    "server": "uvicorn, no access log" if args.no_access_log else "userstrata serve",
                    "generator": "asyncio streams, same machine (shares the cores with the server)"}
    try:
        report["startup_s"] = wait_healthy(args.port, server, timeout=900)

        async def drive() -> None:
            pool = Pool("127.0.0.1", args.port)
            await lookups(pool, reader, users, 50, 2, seed=0)  # warm up (connections, caches)
            report["lookups"] = []
            for i, r in enumerate(args.rates.split(",")):
                cpu, load = server_cpu(server.pid), os.getloadavg()[0]
                row = await lookups(pool, reader, users, int(r), args.lookup_seconds, seed=i + 1)
                row["server_cpu_ms_per_request"] = (server_cpu(server.pid) - cpu) * 1000 / row["requests"]
                row["loadavg_1m_before"] = load
                report["lookups"].append(row)
            for row in report["lookups"]:
                print(f"lookups {row['rate']}/s: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                      f"errors {row['errors']}", file=sys.stderr)
            cpu, load = server_cpu(server.pid), os.getloadavg()[0]
            report["ingest"] = await ingest(pool, writer, users, args.ingest_rate, args.batch, args.ingest_seconds, seed=9)
            report["ingest"]["server_cpu_s"] = server_cpu(server.pid) - cpu
            report["ingest"]["loadavg_1m_before"] = load
            touched = report["ingest"].pop("_touched")
            print(f"ingest: {report['ingest']['events_per_s']:.0f} events/s", file=sys.stderr)
            sample = random.Random(3).sample(touched, min(args.compare, len(touched)))
            report["_realtime"] = await read_profiles(pool, reader, sample)
            await pool.close()

        gc.collect()
        gc.freeze()  # the generator's own full collections (pandas, ibis loaded) would count as server latency
        asyncio.run(drive())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    realtime = report.pop("_realtime")
    with Workspace.open(path, create=False) as ws:
        raw = ws.store.duckdb
        stored, distinct = raw.execute("SELECT count(*), count(DISTINCT event_id) FROM events "
                                       "WHERE event_id LIKE 'bench-%'").fetchone()
        report["store"] = {"bench_events": stored, "distinct_ids": distinct,
                           "expected": report["ingest"]["unique_events"],
                           "lost": report["ingest"]["unique_events"] - distinct, "duplicated": stored - distinct}
        t = time.perf_counter()
        day = ws.latest_date()
        batch = ws.profile(day).to_pandas().set_index("user_id")
        report["batch_profile_s"] = time.perf_counter() - t
    compared = {}
    for column in ("tier", "lifecycle", "rfm_cell", "value_score", "tier_reason"):
        same = [realtime[u] is not None and realtime[u][column] == batch.loc[u, column] for u in realtime]
        compared[column] = sum(same) / len(same)
    report["realtime_vs_batch"] = {"users": len(realtime), "as_of": str(day), "agreement": compared}

    (args.folder / "serve_bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(markdown(report))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"{r['server']}, {r['users']:,} users ({r['events_before']:,} events), {m['cpu']}, {m['cores']} cores, "
             f"Python {m['python']}; the generator runs on the same cores as the server.", "",
             "| load | requests | p50 | p99 | max | errors | achieved | server CPU / request | load avg before |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in r["lookups"]:
        lines.append(f"| GET /v1/users/{{id}} at {row['rate']:,}/s for {row['seconds']:.0f} s | {row['requests']:,} | "
                     f"{row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | {row['max_ms']:.1f} ms | {row['errors']} | "
                     f"{row['achieved_rps']:,.0f}/s | {row['server_cpu_ms_per_request']:.2f} ms | "
                     f"{row['loadavg_1m_before']:.2f} |")
    i, s = r["ingest"], r["store"]
    lines += ["", f"Ingest: {i['unique_events']:,} events in {i['batches']} batches of {i['batch']:,} (plus "
              f"{i['rows_sent'] - i['unique_events']:,} resent), offered at {i['rate']:,}/s for {i['seconds']:.0f} s: "
              f"all acknowledged after {i['elapsed_seconds']:.1f} s = **{i['events_per_s']:,.0f} events/s**; batch "
              f"latency p50 {i['batch_p50_ms']:,.0f} ms, p99 {i['batch_p99_ms']:,.0f} ms; errors {i['errors']}; "
              f"server CPU {i['server_cpu_s']:.0f} s.",
              f"Store afterwards: {s['bench_events']:,} rows, {s['distinct_ids']:,} distinct ids, expected "
              f"{s['expected']:,}: lost {s['lost']}, duplicated {s['duplicated']}.",
              f"Real-time vs a batch run as of {r['realtime_vs_batch']['as_of']} for {r['realtime_vs_batch']['users']:,} "
              "touched users: " + ", ".join(f"{k} {v:.1%}" for k, v in r["realtime_vs_batch"]["agreement"].items()) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
