"""The reference for loading: a hand-written single-pass DuckDB SQL load of an orders CSV.

    python bench/load_sql.py --rows 5000000 --check          # the reference and userstrata agree?
    python bench/load_sql.py --rows 5000000 --bench --repeat 2

The file is the 6-column orders CSV of bench/ingest_bench.py (order id, user, time, amount,
status, count) with Chinese statuses (已付款, 已退款, and "paid"), a few cells with full-width
or no-break spaces and currency signs, and a small share of bad rows: impossible dates,
negative amounts, unknown statuses, repeated order ids with different content and exact
duplicate rows; a few timestamps fall in Asia/Shanghai's daylight-saving summers (1990-1991).

The reference reads the file once with ``read_csv`` into one typed, checked and de-duplicated
temporary table (the same rules as userstrata: trimmed cells, the first failing column with
its reason in English and Chinese, the first version of an order id kept, a later identical
row unchanged, a different one rejected naming the kept row), then writes ``orders`` and
``rejects`` of an empty workspace with one INSERT each, in one transaction.

``--check`` loads the same file with ``Workspace.load("orders", file)`` and compares both
tables row for row (every canonical column of orders; row_number, column_name, value, reason,
reason_zh and raw of rejects). ``--bench`` times both, each in its own subprocess, alternated
A B A B; best of ``--repeat``; the 1-minute load average and peak memory (VmHWM) next to each.
Files go to bench/out/load/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "load"
HEADER = ["订单号", "用户ID", "下单时间", "实付金额", "订单状态", "数量"]
THREADS = 2
MEMORY = "3GB"


def _row(i: int) -> list:
    ts = dt.datetime(2024, 1, 1) + dt.timedelta(minutes=(7 * i) % 525_600)
    status = "已退款" if i % 10 == 3 else "paid" if i % 10 == 7 else "已付款"
    return [f"T{i:09d}", f"u{i % 50_000}", ts.strftime("%Y-%m-%d %H:%M:%S"), f"{10 + (i % 997) * 1.37:.2f}",
            status, str(i % 5 + 1)]


def make_csv(path: Path, rows: int) -> Path:
    """The orders file; about 0.8% of its rows are bad or repeated (see the module text)."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    previous = None
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for i in range(rows):
            rec, k = _row(i), i % 1000
            if k == 11:
                rec[2] = "2024-13-45 10:00:00"  # not a date
            elif k == 23:
                rec[3] = "-12.50"  # negative
            elif k == 37:
                rec[4] = "待审核神秘"  # unknown status
            elif k == 41:
                rec = _row(i - 5)
                rec[3] = "99.99"  # the same order id as 5 rows earlier, different content
            elif k == 53 and previous is not None:
                rec = list(previous)  # an exact duplicate of the row before
            elif k == 61:
                rec[1] = f"\u3000{rec[1]} "  # full-width space around the user
                rec[3] = f"¥{rec[3]}\u00a0"
            elif k == 71:
                rec[2] = f"1991-07-{1 + i % 28:02d} {i % 24:02d}:30:00"  # Shanghai summer time
            elif k == 83:
                rec[2] = f"1990-12-{1 + i % 28:02d} 0{i % 10}:15:00"  # standard time, same era
            writer.writerow(rec)
            previous = rec
    tmp.rename(path)
    return path


# ---- the reference ---------------------------------------------------------------------


def _reference_sql(path: Path, load_id: str, loaded_at: dt.datetime) -> list[str]:
    from userstrata.ingest.validate import TS_EXAMPLES, TS_EXAMPLES_ZH, lit  # noqa: PLC0415 - texts only
    from userstrata.schema import ORDER_STATUSES  # noqa: PLC0415

    ws = "' \t\r\n\u00a0\u3000'"
    display = path.name
    statuses = ", ".join(ORDER_STATUSES)
    paid = "'paid', 'payed', 'success_paid', '已付款', '已支付', '支付成功', '付款成功', '买家已付款'"
    refunded = "'refunded', 'refund_success', 'fully_refunded', '已退款', '退款成功', '全额退款'"

    def q(x: str) -> str:  # the value quoted for a reason (shortened past 60 characters)
        return f"'''' || (CASE WHEN length({x}) > 60 THEN left({x}, 57) || '...' ELSE {x} END) || ''''"

    future = loaded_at + dt.timedelta(hours=24)
    stage = f"""
    CREATE TEMP TABLE s AS
    WITH c AS (
        SELECT row_number() OVER () + 1 AS _row, *
        FROM read_csv({lit(str(path))}, header = true, all_varchar = true,
                      names = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'])
    ), r AS (
        SELECT _row, c0, c1, c2, c3, c4, c5,
            nullif(trim(c0, {ws}), '') AS r_id, nullif(trim(c1, {ws}), '') AS r_user,
            nullif(trim(c2, {ws}), '') AS r_ts, nullif(trim(c3, {ws}), '') AS r_amount,
            nullif(trim(c4, {ws}), '') AS r_status
        FROM c
    ), p AS (
        SELECT *,
            timezone('UTC', timezone('Asia/Shanghai', TRY_CAST(r_ts AS TIMESTAMP))) AS ts,
            TRY_CAST(regexp_replace(r_amount, '[\\s\\x{{00A0}}\\x{{3000}}¥￥$]', '', 'g') AS DOUBLE) AS amount,
            CASE WHEN lower(r_status) IN ({paid}) THEN 'paid' WHEN lower(r_status) IN ({refunded}) THEN 'refunded'
                 WHEN r_status IS NULL THEN 'paid' END AS status
        FROM r
    ), v AS (
        SELECT *, CASE
            WHEN r_id IS NULL THEN {{'column_name': 'order_id', 'value': 'NULL', 'reason': 'order_id is empty',
                                    'reason_zh': 'order_id 为空（必填）'}}
            WHEN r_user IS NULL THEN {{'column_name': 'user_id', 'value': 'NULL', 'reason': 'user_id is empty',
                                      'reason_zh': 'user_id 为空（必填）'}}
            WHEN r_ts IS NULL THEN {{'column_name': 'ts', 'value': 'NULL', 'reason': 'ts is empty',
                                    'reason_zh': 'ts 为空（必填）'}}
            WHEN ts IS NULL THEN {{'column_name': 'ts', 'value': r_ts,
                'reason': 'ts ' || {q('r_ts')} || {lit(f' is not a date/time (expected e.g. {TS_EXAMPLES})')},
                'reason_zh': 'ts ' || {q('r_ts')} || {lit(f' 不是日期时间（示例：{TS_EXAMPLES_ZH}）')}}}
            WHEN ts > {lit(future)} THEN {{'column_name': 'ts', 'value': r_ts,
                'reason': 'ts ' || {q('r_ts')} || ' is a timestamp in the future (later than now + 24 h)',
                'reason_zh': 'ts ' || {q('r_ts')} || ' 是未来的时间（晚于当前时间 24 小时以上）'}}
            WHEN ts < TIMESTAMP '1990-01-01' THEN {{'column_name': 'ts', 'value': r_ts,
                'reason': 'ts ' || {q('r_ts')} || ' is before 1990-01-01, the earliest plausible date ([ingest] earliest_date)',
                'reason_zh': 'ts ' || {q('r_ts')} || ' 早于 1990-01-01，不是可信的日期（见 [ingest] earliest_date）'}}
            WHEN r_amount IS NULL THEN {{'column_name': 'amount', 'value': 'NULL', 'reason': 'amount is empty',
                                        'reason_zh': 'amount 为空（必填）'}}
            WHEN amount IS NULL OR NOT isfinite(amount) THEN {{'column_name': 'amount', 'value': r_amount,
                'reason': 'amount ' || {q('r_amount')} || ' is not a number',
                'reason_zh': 'amount ' || {q('r_amount')} || ' 不是数字'}}
            WHEN amount < 0 THEN {{'column_name': 'amount', 'value': r_amount,
                'reason': 'amount ' || {q('r_amount')} || ' is negative; refunds belong in refund_amount',
                'reason_zh': 'amount ' || {q('r_amount')} || ' 是负数；退款请填在 refund_amount'}}
            WHEN status IS NULL THEN {{'column_name': 'status', 'value': r_status,
                'reason': 'status ' || {q('r_status')} || {lit(f' is not a known order status; map it in [ingest.status_map] to one of {statuses}')},
                'reason_zh': 'status ' || {q('r_status')} || {lit(f' 不是已知的订单状态；请在 [ingest.status_map] 中把它对应到 {statuses} 之一')}}}
            END AS _rej
        FROM p
    )
    SELECT _row, c0, c1, c2, c3, c4, c5, r_id AS order_id, r_user AS user_id, ts, amount, status, _rej
    FROM v
    """
    # repeated order ids are few: only their rows go through a window
    repeats = """
    CREATE TEMP TABLE d AS
    WITH k AS (SELECT order_id FROM s WHERE _rej IS NULL GROUP BY order_id HAVING count(*) > 1)
    SELECT _row, first_value(_row) OVER w AS _first,
        first_value(user_id) OVER w IS NOT DISTINCT FROM user_id AND first_value(ts) OVER w IS NOT DISTINCT FROM ts
        AND first_value(amount) OVER w IS NOT DISTINCT FROM amount
        AND first_value(status) OVER w IS NOT DISTINCT FROM status AS _same
    FROM s SEMI JOIN k USING (order_id) WHERE _rej IS NULL
    WINDOW w AS (PARTITION BY order_id ORDER BY _row)
    """
    orders = f"""
    INSERT INTO orders (order_id, user_id, ts, amount, currency, status, refund_amount, refunded_at,
                        discount_amount, coupon_id, load_id)
    SELECT order_id, user_id, ts, amount, 'CNY', status, 0.0, NULL, NULL, NULL, {lit(load_id)}
    FROM s WHERE _rej IS NULL AND _row NOT IN (SELECT _row FROM d WHERE _row <> _first)
    """
    kept = f"{lit(display + ' row ')} || CAST(_first AS VARCHAR)"
    kept_zh = f"{lit(display + ' 第 ')} || CAST(_first AS VARCHAR) || ' 行'"
    rejects = f"""
    INSERT INTO rejects (load_id, table_name, file, row_number, column_name, value, reason, reason_zh, raw, loaded_at)
    SELECT {lit(load_id)}, 'orders', {lit(str(path))}, _row,
        coalesce(_rej.column_name, 'order_id'), coalesce(_rej.value, order_id),
        coalesce(_rej.reason, 'order_id \'\'\' || order_id || \'\'\' appears twice in this file with different content '
                 || '(kept the first, ' || {kept} || ')'),
        coalesce(_rej.reason_zh, 'order_id \'\'\' || order_id || \'\'\' 在本文件中出现两次且内容不同（保留先出现的 ' || {kept_zh} || '）'),
        CAST(json_object({', '.join(f"'{h}', c{i}" for i, h in enumerate(HEADER))}) AS VARCHAR), {lit(loaded_at)}
    FROM s LEFT JOIN d USING (_row) WHERE _rej IS NOT NULL OR NOT d._same ORDER BY _row
    """
    return [stage, repeats, "BEGIN TRANSACTION", orders, rejects, "COMMIT", "DROP TABLE d", "DROP TABLE s"]


def empty_workspace(path: Path) -> None:
    from userstrata.config import Settings  # noqa: PLC0415
    from userstrata.store import Store  # noqa: PLC0415

    Store.open(str(path), settings=Settings()).close()


def run_reference(csv_path: Path, workspace: Path) -> dict:
    import duckdb  # noqa: PLC0415

    empty_workspace(workspace)
    start = time.perf_counter()
    con = duckdb.connect(str(workspace))
    con.execute(f"SET threads = {THREADS}")
    con.execute(f"SET memory_limit = '{MEMORY}'")
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for sql in _reference_sql(csv_path, f"{at:%Y%m%dT%H%M%S}-ref", at):
        con.execute(sql)
    n = con.execute("SELECT count(*) FROM orders").fetchone()[0] + con.execute("SELECT count(*) FROM rejects").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - start, "kept_plus_rejected": n}


def run_userstrata(csv_path: Path, workspace: Path) -> dict:
    from userstrata.config import Settings  # noqa: PLC0415
    from userstrata.workspace import Workspace  # noqa: PLC0415

    settings = Settings.model_validate({"engine": {"threads": THREADS, "memory_limit": MEMORY}})
    ws = Workspace.open(str(workspace), settings=settings)
    start = time.perf_counter()
    report = ws.load("orders", csv_path)
    seconds = time.perf_counter() - start
    ws.close() if hasattr(ws, "close") else ws.store.close()
    return {"seconds": seconds, "rows_read": report.rows_read, "rejected": report.rows_rejected}


def _peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- compare ----------------------------------------------------------------------------

ORDER_COLS = ["order_id", "user_id", "ts", "amount", "currency", "status", "refund_amount", "refunded_at",
              "discount_amount", "coupon_id"]
REJECT_COLS = ["row_number", "column_name", "value", "reason", "reason_zh", "raw"]


def compare(ref: Path, ours: Path) -> list[str]:
    """Differences between the orders and rejects of two workspaces (empty list: the same)."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect()
    con.execute(f"ATTACH {str(ref)!r} AS a (READ_ONLY)")
    con.execute(f"ATTACH {str(ours)!r} AS b (READ_ONLY)")
    out = []
    for table, cols, key in (("orders", ORDER_COLS, "order_id"), ("rejects", REJECT_COLS, "row_number")):
        sel = ", ".join(cols)
        for x, y, who in (("a", "b", "only in the reference"), ("b", "a", "only in userstrata")):
            n = con.execute(f"SELECT count(*) FROM (SELECT {sel} FROM {x}.{table} EXCEPT ALL SELECT {sel} FROM {y}.{table})").fetchone()[0]
            if n:
                sample = con.execute(f"SELECT {sel} FROM {x}.{table} EXCEPT ALL SELECT {sel} FROM {y}.{table} "
                                     f"ORDER BY {key} LIMIT 3").fetchall()
                out.append(f"{table}: {n:,} rows {who}, e.g. {sample}")
        na, nb = (con.execute(f"SELECT count(*) FROM {x}.{table}").fetchone()[0] for x in "ab")
        print(f"{table}: reference {na:,} rows, userstrata {nb:,} rows")
    # file order (userstrata promises it; the reference's anti join may move a row or two):
    # the rowid order of orders follows the rows' order in the file (ids rise through the file)
    for x, who in (("a", "reference"), ("b", "userstrata")):
        unordered = con.execute(f"SELECT count(*) FROM (SELECT order_id < lag(order_id) OVER (ORDER BY rowid) AS back "
                                f"FROM {x}.orders) WHERE back").fetchone()[0]
        if unordered and x == "b":
            out.append(f"userstrata orders: {unordered:,} rows out of file order")
        elif unordered:
            print(f"note: {unordered:,} reference orders rows out of file order (same content)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--check", action="store_true", help="compare the reference with userstrata row for row")
    parser.add_argument("--bench", action="store_true", help="time both, alternated, each in its own process")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=["reference", "userstrata"], help="with --bench: time one of them")
    parser.add_argument("--baseline-src", help="with --bench: also time userstrata from this src folder (before)")
    parser.add_argument("--case", nargs=3, metavar=("WHO", "CSV", "WORKSPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        who, csv_path, workspace = args.case
        result = (run_reference if who == "reference" else run_userstrata)(Path(csv_path), Path(workspace))
        print(json.dumps({**result, "peak_mb": _peak_mb()}))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    path = make_csv(OUT / f"orders_{args.rows}.csv", args.rows)
    if args.check:
        ref, ours = OUT / "check_reference.duckdb", OUT / "check_userstrata.duckdb"
        for f in (ref, ours):
            f.unlink(missing_ok=True)
        for who, ws in (("reference", ref), ("userstrata", ours)):
            print(who, _case(who, path, ws))
        diffs = compare(ref, ours)
        print("SAME" if not diffs else "DIFFERENT:\n" + "\n".join(diffs))
    if args.bench:
        whos = [args.only] if args.only else ["reference", "userstrata"]
        if args.baseline_src:
            whos.insert(1, "baseline")
        runs = {w: [] for w in whos}
        for _ in range(args.repeat):
            for who in whos:
                with tempfile.TemporaryDirectory(dir=OUT) as folder:
                    load = os.getloadavg()[0]
                    r = _case(who, path, Path(folder) / "ws.duckdb", src=args.baseline_src if who == "baseline" else None)
                    r["load_avg"] = load
                    runs[who].append(r)
                    print(who, json.dumps(r), flush=True)
        best = {w: min(rs, key=lambda r: r["seconds"]) for w, rs in runs.items()}
        meta = {"python": platform.python_version(), "date": dt.date.today().isoformat(), "rows": args.rows}
        (OUT / "load_sql.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
        print(f"rows: {args.rows:,}; threads {THREADS}, memory_limit {MEMORY}")
        print("| load | best time (s) | rows/s | peak MB | load avg (1 min) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for w, r in best.items():
            print(f"| {w} | {r['seconds']:.2f} (of {len(runs[w])}) | {args.rows / r['seconds'] / 1000:,.0f}k "
                  f"| {r['peak_mb']:,.0f} | {r['load_avg']:.2f} |")
        for w in ("baseline", "userstrata"):
            if w in best and "reference" in best:
                print(f"ratio {w} / reference: {best[w]['seconds'] / best['reference']['seconds']:.2f}x")


def _case(who: str, path: Path, workspace: Path, src: str | None = None) -> dict:
    env = dict(os.environ)
    if src:  # an earlier version of the loader, first on the path
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, __file__, "--case", "userstrata" if who == "baseline" else who,
                           str(path), str(workspace)], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{who} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
