"""`predict` end to end on a simulated shop: seconds per stage and peak memory.

    python bench/predict_bench.py --users 100000            # simulate, load, then predict
    python bench/predict_bench.py --workspace shop.duckdb   # predict on a workspace already loaded
    PYTHONPATH=/tmp/before/src python bench/predict_bench.py --workspace copy.duckdb   # older code

The workspace is built once through ingest (``simulate_shop`` then ``Workspace.load``) and kept,
so that the code under test only pays for the prediction. Stages are those of
``models.predict.PREDICT_STAGES`` (``result.attrs["timings"]``); older code reports the total only.
Peak memory is the process's VmHWM (DuckDB's buffer pool included).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path


def build(users: int, path: Path, seed: int) -> None:
    from userstrata import Workspace
    from userstrata.datasets import simulate_shop

    with tempfile.TemporaryDirectory() as tmp, Workspace.open(path) as ws:
        files = simulate_shop(users, tmp, seed=seed)
        for name in ("users", "orders", "order_items", "events"):
            ws.load(name, files[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workspace", type=Path, help="an existing workspace (default: build bench/out/shop-N.duckdb)")
    parser.add_argument("--horizon", type=int, default=90)
    args = parser.parse_args()

    import userstrata
    from userstrata import Workspace

    path = args.workspace or Path(__file__).parent / "out" / f"shop-{args.users}.duckdb"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(args.users, path, args.seed)
    with Workspace.open(path) as ws, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        frame = ws.predict(horizon_days=args.horizon, with_profile=True, lang="zh")
        total = time.perf_counter() - start
    print(json.dumps({
        "code": userstrata.__file__,
        "users": len(frame),
        "total_s": round(total, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "stages_s": frame.attrs.get("timings"),
        "purchase_model": frame.attrs.get("purchase_model", {}).get("reason_en"),
    }, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
