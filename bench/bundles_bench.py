"""Time ``bundles`` (pairs, apriori-pruned self-join in Ibis on DuckDB) against a hand-written
DuckDB SQL peer and a plain pandas peer, on a generated order_items table of N orders.

Orders hold 1-4 lines (mean about 1.4) drawn from 2,000 skus with Zipf-like popularity, plus
a few planted bundles (sku pairs bought together). Each contestant runs in its own subprocess so
that its peak memory (VmHWM) is its own; all three must find the same pair counts.

    .venv/bin/python bench/bundles_bench.py 1000000 3000000
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MIN_SUPPORT = 0.0005
N_SKUS = 2000


def generate(n_orders: int, folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = 1 + (rng.random(n_orders) < 0.3) + (rng.random(n_orders) < 0.1) + (rng.random(n_orders) < 0.03)
    order = np.repeat(np.arange(n_orders), lines)
    weights = 1.0 / np.arange(1, N_SKUS + 1) ** 0.9
    sku = rng.choice(N_SKUS, size=len(order), p=weights / weights.sum())
    # planted bundles: the second line of some orders is the first one's partner
    first = np.r_[True, order[1:] != order[:-1]]
    second = np.r_[False, first[:-1]] & ~first
    partner = (sku[np.flatnonzero(second) - 1] + 7) % N_SKUS
    sku[second] = np.where(rng.random(second.sum()) < 0.4, partner, sku[second])
    ids = pd.Series(order).map("o{:09d}".format)
    items = pd.DataFrame({"order_id": ids, "line_no": np.r_[0, np.cumsum(~first[1:] * 1)] * 0 + 1,
                          "sku": pd.Series(sku).map("sku-{:05d}".format), "category": "c",
                          "quantity": 1, "price": 1.0})
    items.to_parquet(folder / "order_items.parquet", index=False)
    orders = pd.DataFrame({"order_id": ids.iloc[np.flatnonzero(first)].to_numpy(), "user_id": "u",
                           "ts": pd.Timestamp("2024-06-01"), "amount": 1.0, "currency": "CNY", "status": "paid",
                           "refund_amount": 0.0, "refunded_at": pd.NaT})
    orders.to_parquet(folder / "orders.parquet", index=False)


def _peak_mb() -> float:
    for text in Path("/proc/self/status").read_text().splitlines():
        if text.startswith("VmHWM"):
            return int(text.split()[1]) / 1024
    return float("nan")


def run_userstrata(folder: Path) -> dict:
    import ibis

    from userstrata.measure.bundles import bundles
    from userstrata.schema import CANONICAL

    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    tables = {}
    for name in ("orders", "order_items"):
        t = con.read_parquet(folder / f"{name}.parquet", table_name=name)
        tables[name] = t.select(*[t[c].cast(typ) for c, typ in CANONICAL[name].schema.items() if c in t.columns])
    start = time.perf_counter()
    result = bundles(tables["orders"], tables["order_items"], min_support=MIN_SUPPORT, execute=con.execute)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": {f"{a}|{b}": int(n) for a, b, n in
                                          result.pairs[["item_a", "item_b", "baskets"]].itertuples(index=False)}}


def run_sql(folder: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    start = time.perf_counter()
    n = con.execute(f"SELECT count(DISTINCT order_id) FROM '{folder}/order_items.parquet'").fetchone()[0]
    threshold = max(1, math.ceil(MIN_SUPPORT * n - 1e-9))
    rows = con.execute(f"""
        WITH bi AS (SELECT DISTINCT order_id, sku FROM '{folder}/order_items.parquet'),
        f AS (SELECT sku FROM bi GROUP BY sku HAVING count(*) >= {threshold}),
        k AS (SELECT bi.* FROM bi SEMI JOIN f USING (sku))
        SELECT a.sku, b.sku, count(*) FROM k a JOIN k b ON a.order_id = b.order_id AND a.sku < b.sku
        GROUP BY 1, 2 HAVING count(*) >= {threshold}""").fetchall()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": {f"{a}|{b}": int(c) for a, b, c in rows}}


def run_pandas(folder: Path) -> dict:
    start = time.perf_counter()
    bi = pd.read_parquet(folder / "order_items.parquet", columns=["order_id", "sku"]).drop_duplicates()
    n = bi.order_id.nunique()
    threshold = max(1, math.ceil(MIN_SUPPORT * n - 1e-9))
    counts = bi.sku.value_counts()
    bi = bi[bi.sku.isin(counts.index[counts >= threshold])]
    multi = bi[bi.order_id.duplicated(keep=False)]  # orders with one frequent item make no pair
    pairs = multi.merge(multi, on="order_id")
    pairs = pairs[pairs.sku_x < pairs.sku_y]
    got = pairs.groupby(["sku_x", "sku_y"]).size()
    got = got[got >= threshold]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": {f"{a}|{b}": int(c) for (a, b), c in got.items()}}


CONTESTANTS = {"userstrata": run_userstrata, "duckdb_sql": run_sql, "pandas": run_pandas}


def main(sizes: list[int]) -> None:
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            generate(n, folder)
            lines = len(pd.read_parquet(folder / "order_items.parquet", columns=["sku"]))
            results = {}
            for name in CONTESTANTS:
                out = subprocess.run([sys.executable, __file__, "--one", name, str(folder)], capture_output=True,
                                     text=True, check=True)
                results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            base = results["userstrata"]["pairs"]
            for name, r in results.items():
                same = r["pairs"] == base
                print(f"orders={n:>11,} lines={lines:>11,} {name:<11} {r['seconds']:7.2f} s  peak {r['peak_mb']:7.0f} MB"
                      f"  pairs={len(r['pairs']):,} same_as_userstrata={same}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        result = CONTESTANTS[sys.argv[2]](Path(sys.argv[3]))
        result["peak_mb"] = _peak_mb()
        print(json.dumps(result))
    else:
        main([int(a) for a in sys.argv[1:]] or [1_000_000, 3_000_000])
