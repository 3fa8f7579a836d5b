"""BTYD benchmark: userstrata's BetaGeo fit vs lifetimes' BetaGeoFitter and PyMC-Marketing's
BetaGeoModel (MAP, flat priors), on the same data in one run.

    python bench/btyd_bench.py                                 # CDNOW, 100k, 1M, 10M customers
    python bench/btyd_bench.py --datasets 1000000 --contestants lifetimes --update   # rerun rows

Data: the CDNOW sample (tests/data, weeks) and BG/NBD customers simulated in days with known
parameters (FHL 2005's CDNOW estimates, alpha converted to days) by
:func:`userstrata.models.btyd.simulate_bgnbd`, recency floored to whole days and T a whole
number of days. Every array is saved once to bench/out/btyd-*.npz, so the peers, which run in
their own virtual environments, fit exactly the same numbers.

Each contestant fits each data set in its own subprocess (peak memory is VmHWM of that process
alone, data and imports included) under a wall-clock limit (``--timeout``):

- userstrata ``BetaGeo().fit``: best of ``--repeat`` after one warm-up fit.
- lifetimes 0.11.3 ``BetaGeoFitter().fit`` on one row per customer (its default), and on the
  distinct (frequency, recency, T) rows with ``weights=`` counts (the grouping is timed too).
  lifetimes needs numpy<2, pandas<2, scipy<1.13: bench/.venv-peers (bench/make_peers_venv.sh).
- PyMC-Marketing ``BetaGeoModel(model_config=HalfFlat priors).fit(data, method="map")``.
  ``pm.find_MAP`` maximises the log density without the log-transform Jacobian, so with flat
  priors its MAP is the MLE. Import and graph compile times are reported separately; its fit
  time includes the graph compile that every fit call pays. bench/.venv-pymc
  (bench/make_pymc_venv.sh).

A peer is repeated only while its runs fit in ``--peer-budget`` seconds; one run is reported as
such (cold). Results go to bench/out/btyd_bench.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
CDNOW_CSV = ROOT / "tests" / "data" / "cdnow_customers_summary.csv"
# FHL (2005) CDNOW estimates, in weeks; the simulation runs in days (alpha is a rate scale)
TRUE_PARAMS_WEEKS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE_PARAMS_DAYS = {**TRUE_PARAMS_WEEKS, "alpha": TRUE_PARAMS_WEEKS["alpha"] * 7}
# CDNOW-like cohort: first purchases spread over 12 weeks, observed to the end of week 39
T_DAYS = (189, 273)
PARAMS = ("r", "alpha", "a", "b")
TARGETS = {"cdnow_s": 0.010, "1M_s": 0.6, "10M_s": 3.0, "10M_peak_mb": 1024.0, "speedup_1M": 15.0, "rel_1M": 1e-4}


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve from the parent process
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _repeat(fn, runs: int, budget_s: float) -> list[float]:
    """Time ``fn`` up to ``runs`` times, starting another run only if it should end within ``budget_s``."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start + times[-1] > budget_s:
            break
    return times


def _best(times: list[float]) -> tuple[float, bool]:
    """Best time after the first (warm-up) run, and whether it is a single cold run."""
    return (min(times[1:]), False) if len(times) > 1 else (times[0], True)


def _load(path: Path):
    import numpy as np

    with np.load(path) as z:
        return z["frequency"], z["recency"], z["T"]


# -- data -------------------------------------------------------------------------------------
def prepare_data(name: str, seed: int) -> Path:
    """The arrays of data set ``name`` ("cdnow" or a number of customers) in an .npz file."""
    import numpy as np

    OUT.mkdir(exist_ok=True)
    if name == "cdnow":
        path = OUT / "btyd-cdnow.npz"
        if not path.exists():
            import pandas as pd

            d = pd.read_csv(CDNOW_CSV)
            np.savez(path, frequency=d["frequency"].to_numpy(float), recency=d["recency"].to_numpy(float),
                     T=d["T"].to_numpy(float))
        return path
    n = int(name)
    path = OUT / f"btyd-sim-{n}-seed{seed}.npz"
    if not path.exists():
        from userstrata.models.btyd import simulate_bgnbd

        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        T = rng.integers(T_DAYS[0], T_DAYS[1] + 1, n).astype(np.float64)
        x, t_x, T = simulate_bgnbd(n, TRUE_PARAMS_DAYS, T, random_state=rng, resolution=1.0)
        np.savez(path, frequency=x, recency=t_x, T=T)  # uncompressed: loading stays fast
        print(f"simulated {n:,} customers in {time.perf_counter() - start:.1f} s -> {path.name}", file=sys.stderr)
    return path


# -- contestants (each runs in its own process) ------------------------------------------------
def run_userstrata(path: Path, args) -> dict:
    from userstrata.models import BetaGeo

    x, t_x, T = _load(path)
    base = _peak_mb()
    model = None

    def fit():
        nonlocal model
        model = BetaGeo().fit(x, t_x, T)

    times = _repeat(fit, args.repeat + 1, args.budget)
    seconds, cold = _best(times)
    return {"seconds": seconds, "runs": len(times), "cold": cold, "base_mb": base, "params": model.params_,
            "log_likelihood": model.log_likelihood_, "converged": bool(model.converged_)}


def run_lifetimes(path: Path, args, weighted: bool) -> dict:
    import pandas as pd
    from lifetimes import BetaGeoFitter

    x, t_x, T = _load(path)
    base = _peak_mb()
    state: dict = {}

    def fit():
        t0 = time.perf_counter()
        if weighted:  # lifetimes' compressed API: one row per distinct (frequency, recency, T)
            g = pd.DataFrame({"frequency": x, "recency": t_x, "T": T}).groupby(
                ["frequency", "recency", "T"], sort=False).size().reset_index(name="weights")
            fx, ft, fT, w = (g[c].to_numpy() for c in ("frequency", "recency", "T", "weights"))
        else:
            fx, ft, fT, w = x, t_x, T, None
        state["group_s"] = time.perf_counter() - t0
        state["rows"] = len(fx)
        state["model"] = BetaGeoFitter().fit(fx, ft, fT, weights=w)

    times = _repeat(fit, args.repeat + 1, args.peer_budget)
    seconds, cold = _best(times)
    params = {k: float(v) for k, v in state["model"].params_.items()}
    out = {"seconds": seconds, "runs": len(times), "cold": cold, "base_mb": base, "params": params, "fit_rows": state["rows"]}
    if weighted:
        out["group_s"] = state["group_s"]
    return out


def run_pymc(path: Path, args) -> dict:
    import warnings

    warnings.filterwarnings("ignore")  # arviz's refactor notice, pandas/xarray deprecations
    t0 = time.perf_counter()
    import pymc_marketing
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel

    import_s = time.perf_counter() - t0
    import numpy as np
    import pandas as pd
    import pymc
    import pytensor

    x, t_x, T = _load(path)
    data = pd.DataFrame({"customer_id": np.arange(len(x)), "frequency": x, "recency": t_x, "T": T})
    base = _peak_mb()
    cache_dir = Path(pytensor.config.compiledir)
    cache_warm = cache_dir.exists() and any(cache_dir.iterdir())
    # HalfFlat: an improper flat prior on (0, inf), so MAP (without Jacobian) = MLE
    config = {k: Prior("HalfFlat") for k in PARAMS}

    # graph compile alone, once (the first in this process; C code may come from pytensor's disk cache)
    probe = BetaGeoModel(model_config=config)
    probe.build_model(data)
    t0 = time.perf_counter()
    probe.model.compile_logp(jacobian=False)
    probe.model.compile_dlogp(jacobian=False)
    compile_s = time.perf_counter() - t0
    del probe
    state: dict = {}

    def fit():
        model = BetaGeoModel(model_config=config)
        idata = model.fit(data=data, method="map", progressbar=False)
        state["params"] = {k: float(idata.posterior[k].values.item()) for k in PARAMS}

    times = _repeat(fit, args.repeat + 1, args.peer_budget)
    seconds, cold = _best(times)
    return {"seconds": seconds, "runs": len(times), "cold": cold, "base_mb": base, "params": state["params"],
            "import_s": import_s, "compile_s": compile_s, "first_fit_s": times[0],
            "pytensor_cache_warm_at_start": bool(cache_warm),
            "versions": f"pymc-marketing {pymc_marketing.__version__}, pymc {pymc.__version__}, pytensor {pytensor.__version__}"}


CONTESTANTS = {
    "userstrata": (run_userstrata, "self"),
    "lifetimes": (lambda p, a: run_lifetimes(p, a, weighted=False), "peers"),
    "lifetimes weighted": (lambda p, a: run_lifetimes(p, a, weighted=True), "peers"),
    "pymc-marketing MAP": (run_pymc, "pymc"),
}


def _child(name: str, path: Path, args) -> None:
    result = CONTESTANTS[name][0](path, args)
    print(json.dumps({**result, "peak_mb": _peak_mb()}))


# -- parent ------------------------------------------------------------------------------------
def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1), "python": platform.python_version()}


def _run_child(name: str, python: str, path: Path, args) -> dict:
    cmd = [python, __file__, "--child", name, "--data-file", str(path), "--repeat", str(args.repeat),
           "--budget", str(args.budget), "--peer-budget", str(args.peer_budget)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") if CONTESTANTS[name][1] == "self" else ""}
    start = time.perf_counter()
    # own session: on timeout the whole group goes (pytensor may have compiler subprocesses)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": f"timed out (> {args.timeout:.0f} s)", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        print(f"{name} failed:\n{stderr[-3000:]}", file=sys.stderr)
        return {"status": f"failed: {tail[0][:200]}", "wall_s": wall}
    return {"status": "ok", "wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def _loglik_at(params: dict, data) -> float:
    """Total BG/NBD log-likelihood of ``data`` at ``params`` (userstrata's formula, constants included)."""
    from userstrata.models import BetaGeo

    model = BetaGeo()
    model.params_ = dict(params)
    return float(model.log_likelihood(*data).sum())


def _compare(rows: list[dict], data_by_set: dict) -> None:
    """Fill each peer row's speed ratio, parameter differences and log-likelihood gap vs userstrata."""
    ref = {r["dataset"]: r for r in rows if r["contestant"] == "userstrata" and r["status"] == "ok"}
    for r in rows:
        data = data_by_set.get(r["dataset"])
        if r["status"] == "ok" and data is not None and "loglik_at_params" not in r:
            r["loglik_at_params"] = _loglik_at(r["params"], data)
    for r in rows:
        base = ref.get(r["dataset"])
        if r["status"] != "ok" or base is None or r is base:
            continue
        r["times_userstrata"] = r["seconds"] / base["seconds"]
        r["rel_diff"] = {k: abs(r["params"][k] - base["params"][k]) / abs(base["params"][k]) for k in PARAMS}
        r["max_rel_diff"] = max(r["rel_diff"].values())
        if "loglik_at_params" in r and "loglik_at_params" in base:
            r["loglik_minus_userstrata"] = r["loglik_at_params"] - base["loglik_at_params"]


def _label(name: str) -> str:
    return "CDNOW (2,357, weeks)" if name == "cdnow" else f"sim {int(name):,} (days)"


def _fmt_s(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _targets(rows: list[dict]) -> list[str]:
    def row(ds, who):
        return next((r for r in rows if r["dataset"] == ds and r["contestant"] == who and r["status"] == "ok"), None)

    def met(ok):
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    us_c, us_1m, us_10m, lt_1m = row("cdnow", "userstrata"), row("1000000", "userstrata"), row("10000000", "userstrata"), row("1000000", "lifetimes")
    lines = []
    lines.append("- CDNOW fit < 10 ms in-process: " + (
        f"{_fmt_s(us_c['seconds'])} -> {met(us_c['seconds'] < TARGETS['cdnow_s'])}" if us_c else "n/a"))
    lines.append("- 1M fit < 0.6 s: " + (
        f"{_fmt_s(us_1m['seconds'])} -> {met(us_1m['seconds'] < TARGETS['1M_s'])}" if us_1m else "n/a"))
    lines.append(
        "- 10M fit < 3 s with peak memory < 1 GiB: "
        + (f"{_fmt_s(us_10m['seconds'])}, peak {us_10m['peak_mb']:.0f} MB -> "
           f"{met(us_10m['seconds'] < TARGETS['10M_s'] and us_10m['peak_mb'] < TARGETS['10M_peak_mb'])}"
           if us_10m else "n/a"))
    lines.append(
        "- >= 15x faster than lifetimes at 1M, params within 1e-4 relative: "
        + (f"{lt_1m['times_userstrata']:.1f}x, max rel diff {lt_1m['max_rel_diff']:.1e} -> "
           f"{met(lt_1m['times_userstrata'] >= TARGETS['speedup_1M'] and lt_1m['max_rel_diff'] < TARGETS['rel_1M'])}"
           if lt_1m and "times_userstrata" in lt_1m else "n/a"))
    return lines


def _table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:.0f} GiB RAM, Python {m['python']}; "
        f"date {report['date']}; whole run {report['run_s']:.0f} s.",
        f"Versions: {report['versions']}",
        "",
        "| data | contestant | fit time | x userstrata time | peak MB (before fit) | r | alpha | a | b "
        "| max rel diff vs userstrata | LL at params - userstrata's |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        head = f"| {_label(r['dataset'])} | {r['contestant']} "
        if r["status"] != "ok":
            lines.append(head + f"| {r['status']} | | | | | | | | |")
            continue
        note = f" (best of {r['runs'] - 1})" if not r["cold"] else " (1 run)"
        if "group_s" in r:
            note += f"; grouping {_fmt_s(r['group_s'])}, {r['fit_rows']:,} rows"
        if "import_s" in r:
            note += f"; + import {r['import_s']:.1f} s; graph compile {r['compile_s']:.1f} s; first fit {_fmt_s(r['first_fit_s'])}"
        p = r["params"]
        ratio = f"{r['times_userstrata']:.1f}x" if "times_userstrata" in r else "1x"
        rel = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
        dll = f"{r['loglik_minus_userstrata']:.2e}" if "loglik_minus_userstrata" in r else "-"
        lines.append(
            head + f"| {_fmt_s(r['seconds'])}{note} | {ratio} | {r['peak_mb']:.0f} ({r['base_mb']:.0f}) "
            f"| {p['r']:.6g} | {p['alpha']:.6g} | {p['a']:.6g} | {p['b']:.6g} | {rel} | {dll} |"
        )
    lines += ["", f"True parameters of the simulation (days): {TRUE_PARAMS_DAYS}", "", "Targets (not asserted):"]
    lines += _targets(report["results"])
    return "\n".join(lines)


def _versions(pythons: dict) -> str:
    probes = {
        "self": "import numpy, scipy; print(f'userstrata env: numpy {numpy.__version__}, scipy {scipy.__version__}')",
        "peers": "import lifetimes, numpy, scipy; print(f'lifetimes {lifetimes.__version__} (numpy {numpy.__version__}, scipy {scipy.__version__})')",
        "pymc": "import pymc_marketing, pymc, numpy; print(f'pymc-marketing {pymc_marketing.__version__}, pymc {pymc.__version__} (numpy {numpy.__version__})')",
    }
    out = []
    for env, python in pythons.items():
        if Path(python).exists():
            proc = subprocess.run([python, "-W", "ignore", "-c", probes[env]], capture_output=True, text=True)
            out.append(proc.stdout.strip() or f"{env}: version probe failed")
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="cdnow,100000,1000000,10000000",
                    help="comma-separated: cdnow and/or numbers of simulated customers")
    ap.add_argument("--contestants", default=",".join(CONTESTANTS), help="comma-separated subset of: " + ", ".join(CONTESTANTS))
    ap.add_argument("--repeat", type=int, default=5, help="timed fits after the warm-up")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of repeats for userstrata")
    ap.add_argument("--peer-budget", type=float, default=60.0, help="seconds of repeats for a peer")
    ap.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit of one contestant on one data set")
    ap.add_argument("--seed", type=int, default=2005)
    ap.add_argument("--update", action="store_true", help="keep the other rows of bench/out/btyd_bench.json")
    ap.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--pymc-python", default=str(HERE / ".venv-pymc" / "bin" / "python"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.data_file, args)
        return

    start = time.perf_counter()
    pythons = {"self": sys.executable, "peers": args.peers_python, "pymc": args.pymc_python}
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    names = [c.strip() for c in args.contestants.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONTESTANTS]
    if unknown:
        ap.error(f"unknown contestants {unknown}; expected some of {list(CONTESTANTS)}")
    rows: list[dict] = []
    data_by_set = {}
    for ds in datasets:
        path = prepare_data(ds, args.seed)
        data_by_set[ds] = _load(path)
        for name in names:
            python = pythons[CONTESTANTS[name][1]]
            if not Path(python).exists():
                rows.append({"dataset": ds, "contestant": name, "status": f"skipped: {python} not found"})
                print(f"skip {name}: {python} not found", file=sys.stderr)
                continue
            row = {"dataset": ds, "contestant": name, "data_file": path.name, **_run_child(name, python, path, args)}
            rows.append(row)
            msg = f"{_fmt_s(row['seconds'])}, peak {row['peak_mb']:.0f} MB" if row["status"] == "ok" else row["status"]
            print(f"{_label(ds)} / {name}: {msg} (wall {row['wall_s']:.1f} s)", file=sys.stderr)
    run_s = time.perf_counter() - start

    report_path = OUT / "btyd_bench.json"
    if args.update and report_path.exists():  # rerun rows replace their old selves, the rest stay
        old = json.loads(report_path.read_text())
        done = {(r["dataset"], r["contestant"]) for r in rows}
        kept = [r for r in old["results"] if (r["dataset"], r["contestant"]) not in done]
        for r in rows:
            r["rerun_at"] = dt.datetime.now().isoformat(timespec="seconds")
        order = {d: i for i, d in enumerate(dict.fromkeys([r["dataset"] for r in old["results"]] + datasets))}
        corder = {c: i for i, c in enumerate(CONTESTANTS)}
        rows = sorted(kept + rows, key=lambda r: (order[r["dataset"]], corder[r["contestant"]]))
        for r in rows:  # comparisons are redone against the (possibly rerun) userstrata rows
            for k in ("times_userstrata", "rel_diff", "max_rel_diff", "loglik_minus_userstrata"):
                r.pop(k, None)
        for ds in {r["dataset"] for r in rows} - set(data_by_set):
            data_by_set[ds] = _load(prepare_data(ds, args.seed))
        run_s = old.get("run_s", 0.0)
        reruns = old.get("reruns", []) + [{"at": dt.datetime.now().isoformat(timespec="seconds"),
                                            "datasets": datasets, "contestants": names,
                                            "seconds": time.perf_counter() - start}]
    else:
        reruns = []
    _compare(rows, data_by_set)
    report = {"machine": _machine(), "date": str(dt.date.today()), "run_s": run_s, "reruns": reruns,
              "versions": _versions(pythons), "seed": args.seed, "true_params_days": TRUE_PARAMS_DAYS,
              "t_days": T_DAYS, "targets": TARGETS, "results": rows}
    OUT.mkdir(exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    print(_table(report))


if __name__ == "__main__":
    main()
