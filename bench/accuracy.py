"""Holdout accuracy of the purchase models and the churn baselines, for one copy of userstrata.

    PYTHONPATH=src .venv/bin/python bench/accuracy.py --label after
    mkdir -p /tmp/before && git archive 1889a43 | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/accuracy.py --label before
    .venv/bin/python bench/accuracy.py --compare          # both JSONs as Markdown tables

Whichever ``userstrata`` is importable is measured (its path is recorded); ``--label`` names
the JSON written, bench/results/accuracy-<label>.json. Three data sets, one after the other:

- ``cdnow``: the bundled 2,357-customer CDNOW sample (``Settings(currency="USD")``), cutoff
  1997-09-30, horizon 39 weeks (273 days), churn horizon 90 days;
- ``shop``: ``simulate_shop(5000, seed=7)`` (users, orders, order_items, events), cutoff
  2024-03-31, horizon 90 days;
- ``exports``: tests/exports/shopgen.py's ``generate_shop(2024, n_users=1500)``, every export of
  ``export_schedule()`` written and loaded in order, cutoff 2024-09-30, horizon 90 days.

On each: ``Workspace.backtest`` with the version's default model and with each model named
explicitly (``auto`` only where the version has it), and ``Workspace.predict`` at the last day
in the data (how many buyers get a finite ``expected_purchases``, how much ``expected_spend``
varies between buyers). A model that cannot be fitted is recorded with its error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MODELS = ("bgnbd", "pareto", "mbgnbd")
PACKAGES = ("numpy", "scipy", "pandas", "duckdb", "ibis-framework", "scikit-learn")
# (metric key, column title) of the tables
PURCHASE_COLUMNS = (
    ("total_predicted", "predicted"),
    ("total_actual", "actual"),
    ("total_error_pct", "total error %"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
)
CHURN_COLUMNS = (
    ("classifier_auc", "classifier"),
    ("classifier_buyers_auc", "classifier, buyers"),
    ("palive_auc", "1 - P(alive)"),
    ("ppurchase_auc", "1 - P(buy in H)"),
)
TRACKING_COLUMNS = (
    ("tracking_holdout_error_pct", "tracking holdout error %"),
    ("tracking_cum_error_pct", "tracking cumulative error %"),
)


def _messages(caught) -> list[str]:
    """Distinct warning messages for the operator, in order, each cut to 300 characters (the
    libraries' own deprecation notices left out)."""
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            continue
        text = str(w.message)[:300]
        if text not in seen:
            seen.append(text)
    return seen


def _clean(value):
    """JSON-safe: NaN and infinities as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# -- data sets ------------------------------------------------------------------------------------


def cdnow(folder: Path):
    from userstrata import Workspace
    from userstrata.config import Settings
    from userstrata.datasets import load_cdnow

    ws = Workspace.open(":memory:", settings=Settings(currency="USD"))
    ws.load_frame("orders", load_cdnow(sample=True), source="CDNOW_sample")
    return ws, {"cutoff": dt.date(1997, 9, 30), "horizon_days": 273, "churn_horizon_days": 90}, {}


def shop(folder: Path):
    from userstrata import Workspace
    from userstrata.config import Settings
    from userstrata.datasets import simulate_shop

    files = simulate_shop(5000, folder, seed=7)
    ws = Workspace.open(":memory:", settings=Settings())
    for name in ("users", "orders", "order_items", "events"):
        ws.load(name, files[name])
    return ws, {"cutoff": dt.date(2024, 3, 31), "horizon_days": 90}, {}


def exports(folder: Path):
    from userstrata import Workspace
    from userstrata.config import Settings

    sys.path.insert(0, str(ROOT / "tests" / "exports"))
    try:
        import shopgen
    finally:
        sys.path.pop(0)
    generated = shopgen.generate_shop(2024, n_users=1500)
    ws = Workspace.open(":memory:", settings=Settings())
    loaded, errors = 0, []
    for export in shopgen.export_schedule():
        path = shopgen.write_export(generated, export, folder)
        try:
            ws.load(export.table, path)
            loaded += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{export.file_name}: {exc}"[:300])
    info = {"loads": loaded, "load_errors": errors}
    return ws, {"cutoff": dt.date(2024, 9, 30), "horizon_days": 90}, info


DATASETS = {"cdnow": cdnow, "shop": shop, "exports": exports}


# -- measurements ---------------------------------------------------------------------------------


def model_options() -> tuple[str, list[str]]:
    """The backtest's default model and the explicit ones this version accepts."""
    from userstrata.models.backtest import backtest

    param = inspect.signature(backtest).parameters["model"]
    explicit = [*MODELS, *(["auto"] if "auto" in str(param.annotation) else [])]
    return str(param.default), explicit


def run_backtest(ws, spec: dict, model: str | None, default: str) -> dict:
    options = {k: v for k, v in spec.items() if k != "cutoff"}
    if model is not None:
        options["model"] = model
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            result = ws.backtest(spec["cutoff"], **options)
        except Exception as exc:  # noqa: BLE001 - an explicit model that cannot be fitted
            return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start,
                    "warnings": _messages(caught)}
    out = {
        "metrics": dict(result.metrics),
        "purchase_model": dict(getattr(result, "purchase_model", {}) or {}),
        "seconds": time.perf_counter() - start,
        "warnings": _messages(caught),
    }
    if not out["purchase_model"]:
        out["purchase_model"] = {"model": model or default}
    return out


def run_predict(ws) -> dict:
    as_of = ws.latest_date()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        table = ws.predict(as_of, horizon_days=90, with_profile=True)
    seconds = time.perf_counter() - start
    buyers = table[table["first_order_ts"].notna()]
    repeaters = buyers[buyers["frequency"] > 0]
    spend = buyers["expected_spend"].to_numpy(dtype=np.float64)
    expected = buyers["expected_purchases"].to_numpy(dtype=np.float64)
    chosen = table.attrs.get("purchase_model", {})
    return {
        "as_of": as_of.isoformat(),
        "horizon_days": 90,
        "users": len(table),
        "buyers": len(buyers),
        "repeaters": len(repeaters),
        "buyers_finite_expected_purchases": int(np.isfinite(expected).sum()),
        "buyers_finite_p_alive": int(np.isfinite(buyers["p_alive"].to_numpy(dtype=np.float64)).sum()),
        "expected_spend_std_buyers": float(np.nanstd(spend)) if np.isfinite(spend).any() else None,
        "expected_spend_std_repeaters": (
            float(np.nanstd(repeaters["expected_spend"].to_numpy(dtype=np.float64))) if len(repeaters) else None
        ),
        "expected_spend_mean_buyers": float(np.nanmean(spend)) if np.isfinite(spend).any() else None,
        "expected_spend_distinct_cents": int(buyers["expected_spend"].round(2).nunique()),
        "expected_spend_min_buyers": float(np.nanmin(spend)) if np.isfinite(spend).any() else None,
        "expected_spend_max_buyers": float(np.nanmax(spend)) if np.isfinite(spend).any() else None,
        "purchase_model": {k: v for k, v in chosen.items() if isinstance(v, (str, int, float))}
        if isinstance(chosen, dict) else str(chosen),
        "seconds": seconds,
        "warnings": _messages(caught),
    }


def machine() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpus": os.cpu_count(), "packages": versions}


def measure(label: str, datasets: list[str]) -> dict:
    import userstrata

    default, explicit = model_options()
    report = {
        "label": label,
        "userstrata": str(Path(userstrata.__file__).resolve().parent),
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "default_model": default,
        "datasets": {},
    }
    print(f"{label}: userstrata from {report['userstrata']}; default model {default}", file=sys.stderr)
    for name in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            ws, spec, info = DATASETS[name](Path(tmp))
            entry = {"spec": {k: str(v) for k, v in spec.items()}, "load_seconds": time.perf_counter() - start,
                     **info, "backtest": {}}
            for model in (None, *explicit):
                key = "default" if model is None else model
                entry["backtest"][key] = run_backtest(ws, spec, model, default)
                print(f"  {name} {key}: {entry['backtest'][key]['seconds']:.1f} s", file=sys.stderr)
            entry["predict"] = run_predict(ws)
            print(f"  {name} predict: {entry['predict']['seconds']:.1f} s", file=sys.stderr)
            ws.close()
        report["datasets"][name] = entry
    return report


# -- tables ---------------------------------------------------------------------------------------


def _fmt(value, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if key.startswith("total_predicted") or key.startswith("total_actual"):
        return f"{value:,.0f}"
    if key.endswith("_pct"):
        return f"{value:+.1f}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    if key == "money":
        return f"{value:,.2f}"
    return f"{value:.3f}"


def rows(report: dict) -> list[dict]:
    """One row per (data set, model run) with the table's figures."""
    out = []
    for name, entry in report["datasets"].items():
        for key, run in entry["backtest"].items():
            row = {"label": report["label"], "dataset": name, "run": key}
            if "error" in run:
                row["error"] = run["error"]
            else:
                row["model"] = run["purchase_model"].get("model", key)
                row.update(run["metrics"])
            out.append(row)
    return out


def markdown(reports: list[dict]) -> str:
    lines = []
    head = ["data set", "version", "run (model used)"]
    cols = [*PURCHASE_COLUMNS, *CHURN_COLUMNS, *TRACKING_COLUMNS]
    lines.append("| " + " | ".join(head + [title for _, title in cols]) + " |")
    lines.append("|" + " --- |" * (len(head) + len(cols)))
    all_rows = [row for report in reports for row in rows(report)]
    for name in DATASETS:
        for row in (r for r in all_rows if r["dataset"] == name):
            run = row["run"] if row.get("model") in (None, row["run"]) else f"{row['run']} ({row['model']})"
            if "error" in row:
                cells = [f"fails: {row['error'][:120]}"] + [""] * (len(cols) - 1)
            else:
                cells = [_fmt(row.get(key), key) for key, _ in cols]
            lines.append("| " + " | ".join([name, row["label"], run, *cells]) + " |")
    lines.append("")
    lines.append("| data set | version | model | buyers | finite expected_purchases | std expected_spend (buyers) "
                 "| std (repeaters) | min .. max | distinct values (cents) |")
    lines.append("|" + " --- |" * 9)
    for name in DATASETS:
        for report in reports:
            p = report["datasets"].get(name, {}).get("predict")
            if not p:
                continue
            model = p["purchase_model"].get("model", report["default_model"]) if isinstance(p["purchase_model"], dict) \
                else report["default_model"]
            lines.append(
                f"| {name} | {report['label']} | {model} | {p['buyers']:,} | {p['buyers_finite_expected_purchases']:,} "
                f"| {_fmt(p['expected_spend_std_buyers'], 'money')} | {_fmt(p['expected_spend_std_repeaters'], 'money')} "
                f"| {_fmt(p['expected_spend_min_buyers'], 'money')} .. {_fmt(p['expected_spend_max_buyers'], 'money')} "
                f"| {p['expected_spend_distinct_cents']:,} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", help="name of this copy (before, after): writes bench/results/accuracy-LABEL.json")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--compare", nargs="*", metavar="LABEL",
                        help="print the tables of saved results (default: before after)")
    args = parser.parse_args(argv)
    if args.compare is not None:
        labels = args.compare or ["before", "after"]
        reports = [json.loads((RESULTS / f"accuracy-{label}.json").read_text()) for label in labels]
        print(markdown(reports))
        return
    if not args.label:
        parser.error("--label is required to measure (or --compare to print saved results)")
    report = _clean(measure(args.label, args.datasets))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"accuracy-{args.label}.json"
    if path.exists() and set(args.datasets) != set(DATASETS):  # a partial rerun keeps the other data sets
        old = json.loads(path.read_text())
        old["datasets"].update(report["datasets"])
        report = {**report, "datasets": {name: old["datasets"][name] for name in DATASETS if name in old["datasets"]}}
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(markdown([report]))
    print(f"\nwritten {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
