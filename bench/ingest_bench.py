"""Ingest benchmark: reader throughput and whole loads for CSV and .xlsx, in one run.

    python bench/ingest_bench.py                            # 1M-row CSV, 100k-row .xlsx
    python bench/ingest_bench.py --only xlsx --openpyxl     # the .xlsx cases and openpyxl alone
    git archive HEAD src | tar -x -C /tmp/base              # an earlier version, to time beside
    python bench/ingest_bench.py --baseline-src /tmp/base/src

Each case runs in its own subprocess so that its peak memory (VmHWM) is its own. "reader"
streams every chunk of ``open_reader`` and throws it away (parsing, header search, totals rows,
cell-to-string); "load" is ``load_file`` into a fresh file-backed workspace (reading,
validation, staging, commit). ``--openpyxl`` adds openpyxl's read-only reader on the same
.xlsx (cells through ``value_to_str``, nothing else) as the peer; ``--baseline-src`` runs the
reader and load cases of the plain files again with another source tree first on the path.
The "_title" files have a title line above the header and a totals row at the end; the
"_html.xls" file (``--only html``) is an HTML table under an .xls name; "order_items_*.csv" is
an item-level order export (one line per item), loaded as orders (orders + order_items).
Input files are written once to bench/out/ingest/ (the .xlsx with openpyxl's write-only mode).
Results go to bench/out/ingest_bench.json and are printed as a Markdown table for BENCHMARKS.md.
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
OUT = HERE / "out"
HEADER = ["订单号", "用户ID", "下单时间", "实付金额", "订单状态", "数量"]
TITLE = "订单导出 2024-01-01 至 2024-12-31"


def _record(i: int) -> list:
    ts = dt.datetime(2024, 1, 1) + dt.timedelta(minutes=(7 * i) % 525_600)  # within 2024: none in the future
    return [f"T{i:09d}", f"u{i % 50_000}", ts, round(10 + (i % 997) * 1.37, 2), "已付款", i % 5 + 1]


def make_csv(path: Path, rows: int, *, title: bool) -> Path:
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            if title:
                writer.writerow([TITLE])
            writer.writerow(HEADER)
            for i in range(rows):
                rec = _record(i)
                rec[2] = rec[2].strftime("%Y-%m-%d %H:%M:%S")
                writer.writerow(rec)
            if title:
                writer.writerow(["合计", "", "", "", "", ""])
        tmp.rename(path)
    return path


ITEM_HEADER = ["订单号", "用户ID", "下单时间", "订单状态", "商品编码", "类目", "数量", "单价", "商品实付金额"]


def make_items_csv(path: Path, rows: int) -> Path:
    """An item-level export: 1-4 lines per order with the order fields repeated (about 2.5 per order)."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(ITEM_HEADER)
            order, line = 0, 0
            for i in range(rows):
                lines_in_order = 1 + order % 4
                ts = (dt.datetime(2024, 1, 1) + dt.timedelta(minutes=(7 * order) % 525_600)).strftime("%Y-%m-%d %H:%M:%S")
                price = round(5 + (i % 211) * 1.3, 2)
                qty = 1 + i % 3
                writer.writerow([f"T{order:09d}", f"u{order % 50_000}", ts, "交易成功", f"S{i % 500}",
                                 "课程" if i % 2 else "道具", qty, price, round(price * qty, 2)])
                line += 1
                if line == lines_in_order:
                    order, line = order + 1, 0
        tmp.rename(path)
    return path


def make_xlsx(path: Path, rows: int, *, title: bool) -> Path:
    if not path.exists():
        import openpyxl  # noqa: PLC0415

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("订单")
        if title:
            sheet.append([TITLE])
            sheet.append([])
        sheet.append(HEADER)
        for i in range(rows):
            sheet.append(_record(i))  # typed cells: str ids, a datetime, a float amount, an int
        if title:
            sheet.append(["合计", None, None, 12345.5, None, 300])
        tmp = path.with_name("tmp-" + path.name)
        book.save(tmp)
        tmp.rename(path)
    return path


def make_html(path: Path, rows: int) -> Path:
    """An HTML table saved as .xls, as many back-ends export: a title row, then the table."""
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as fh:
            fh.write('<html><head><meta charset="utf-8"></head><body><table>\n')
            fh.write(f'<tr><td colspan="{len(HEADER)}">{TITLE}</td></tr>\n')
            fh.write("<tr>" + "".join(f"<th>{h}</th>" for h in HEADER) + "</tr>\n")
            for i in range(rows):
                rec = _record(i)
                rec[2] = rec[2].strftime("%Y-%m-%d %H:%M:%S")
                fh.write("<tr>" + "".join(f"<td>{v}</td>" for v in rec) + "</tr>\n")
            fh.write("</table></body></html>\n")
        path.with_suffix(".tmp").rename(path)
    return path


def _peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(kind: str, path: str) -> dict:
    """One case, in this process: 'reader', 'load' or 'openpyxl'."""
    from userstrata.ingest import readers  # noqa: PLC0415

    path = Path(path)
    start = time.perf_counter()
    if kind == "reader":
        reader = readers.open_reader(path, readers.file_format(path), encoding=None, header_row=None, sheet=None,
                                     chunk_rows=200_000)
        n = sum(chunk.n_rows for chunk in reader.chunks())
    elif kind == "openpyxl":
        import openpyxl  # noqa: PLC0415

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        n = 0
        for values in book.worksheets[0].iter_rows(values_only=True):
            [readers.value_to_str(v) for v in values]
            n += 1
        book.close()
    else:
        from userstrata.config import Settings  # noqa: PLC0415
        from userstrata.ingest import load_file  # noqa: PLC0415
        from userstrata.store import Store  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as folder:
            store = Store.open(str(Path(folder) / "bench.duckdb"), settings=Settings())
            start = time.perf_counter()
            report = load_file(store, "orders", path)
            n = report.rows_read
            store.close()
    seconds = time.perf_counter() - start
    return {"kind": kind, "file": path.name, "rows": n, "seconds": seconds, "rows_per_s": n / seconds,
            "peak_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--html-rows", type=int, default=50_000)
    parser.add_argument("--items-rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["csv", "xlsx", "html", "items"], help="run only these cases")
    parser.add_argument("--openpyxl", action="store_true", help="also time openpyxl read-only on the .xlsx")
    parser.add_argument("--skip-load", action="store_true", help="time the readers only")
    parser.add_argument("--baseline-src", help="a src folder of another version, timed on the plain files")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is reported")
    parser.add_argument("--case", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return

    folder = OUT / "ingest"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if args.only in (None, "csv"):
        files += [make_csv(folder / f"orders_{args.csv_rows}.csv", args.csv_rows, title=False),
                  make_csv(folder / f"orders_{args.csv_rows}_title.csv", args.csv_rows, title=True)]
    if args.only in (None, "xlsx"):
        files += [make_xlsx(folder / f"orders_{args.xlsx_rows}.xlsx", args.xlsx_rows, title=False),
                  make_xlsx(folder / f"orders_{args.xlsx_rows}_title.xlsx", args.xlsx_rows, title=True)]
    if args.only in (None, "items"):  # the before-version reads it as plain orders (repeats rejected)
        files += [make_items_csv(folder / f"order_items_{args.items_rows}.csv", args.items_rows)]
    if args.only == "html":  # (not in the default run: the before-version cannot read it)
        files += [make_html(folder / f"orders_{args.html_rows}_html.xls", args.html_rows)]
    kinds = ("reader",) if args.skip_load else ("reader", "load")
    cases = []  # (label, kind, file, src)
    for f in files:
        if args.baseline_src and "_title" not in f.name:
            cases += [("baseline", kind, f, args.baseline_src) for kind in kinds]
        cases += [("this tree", kind, f, None) for kind in kinds]
        if args.openpyxl and f.suffix == ".xlsx" and "_title" not in f.name:
            cases.append(("openpyxl", "openpyxl", f, None))
    results = []
    for label, kind, f, src in cases:
        env = dict(os.environ)
        if src:
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        runs = []
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, __file__, "--case", kind, str(f)], capture_output=True,
                                  text=True, env=env)
            if done.returncode:
                print(f"{label} {kind} {f.name} failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                break
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if runs:
            results.append({"code": label, "runs": len(runs), **min(runs, key=lambda r: r["seconds"])})
    meta = {"python": platform.python_version(), "machine": platform.processor() or platform.machine(),
            "date": dt.date.today().isoformat()}
    (OUT / "ingest_bench.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print("| input | code | what | rows | best time (s) | rows/s | peak MB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['file']} | {r['code']} | {r['kind']} | {r['rows']:,} | {r['seconds']:.2f} (of {r['runs']}) "
              f"| {r['rows_per_s'] / 1000:,.1f}k | {r['peak_mb']:,.0f} |")


if __name__ == "__main__":
    main()
