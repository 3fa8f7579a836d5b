"""The command line: parse, call one function, format the result.

Errors a user can fix print one red line and the hint, and exit with code 2
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import contextlib
import datetime as dt_
import functools
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from userstrata import i18n
from userstrata._engine import DEFAULT_WORKSPACE
from userstrata.errors import InputError, UserstrataError
from userstrata.schema import CANONICAL, LIFECYCLE_STAGES
from userstrata.workspace import Workspace

app = typer.Typer(
    name="userstrata",
    help="User value stratification and lifecycle operations (用户价值分层与生命周期运营).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold customer data
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", envvar="USERSTRATA_WORKSPACE", help="Workspace file (DuckDB)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (default ./userstrata.toml if present).")
]
LangOpt = Annotated[str, typer.Option("--lang", help="Labels: zh (中文) or en.")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` as a command whose user errors become one red line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserstrataError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
            raise typer.Exit(2) from None

    return app.command()(wrapper)


def _check_lang(lang: str) -> i18n.Lang:
    if lang not in i18n.LANGS:
        raise InputError(f"--lang {lang!r} is not supported; use one of: {', '.join(i18n.LANGS)}")
    return lang  # type: ignore[return-value]


def _parse_date(text: str | None, option: str) -> dt_.date | None:
    if text is None:
        return None
    try:
        return dt_.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r} is not a date; expected YYYY-MM-DD, e.g. 2024-06-30") from None


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show library warnings as one yellow line each (not as Python warning dumps)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)):
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("USERSTRATA_PROGRESS") != "1",
    )


# -- commands --------------------------------------------------------------------------------
@command
def init(
    path: Annotated[Path, typer.Argument(help="Workspace file to create.")] = Path(DEFAULT_WORKSPACE),
    config: ConfigOpt = None,
) -> None:
    """Create a workspace (an embedded DuckDB file with the canonical tables)."""
    ws = Workspace.open(path, settings=config)
    ws.close()
    console.print(f"workspace ready: [bold]{path}[/]")


@command
def load(
    table: Annotated[str, typer.Argument(help=f"One of: {', '.join(CANONICAL)}.")],
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8, BOM, GBK), .xlsx, .parquet or .jsonl.")],
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="canonical=source column, e.g. --map order_id=单号 (repeatable)."),
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Force a CSV encoding (default: detect).")] = None,
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
    config: ConfigOpt = None,
) -> None:
    """Validate and load a file; rejected rows are kept with their reason (`userstrata rejects`)."""
    if table not in CANONICAL:
        raise InputError(f"unknown table {table!r}; use one of: {', '.join(CANONICAL)}")
    pairs = {}
    for item in mapping or []:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical or not source:
            raise InputError(f"--map {item!r} must look like canonical=source, e.g. order_id=单号")
        pairs[canonical.strip()] = source.strip()
    ws = Workspace.open(workspace, settings=config, create=False)
    with _progress() as progress:
        task = progress.add_task(f"loading {file.name}", total=None)
        report = ws.load(
            table, file, mapping=pairs or None, encoding=encoding,
            progress=lambda n: progress.advance(task, n),
        )
    ws.close()
    out = Table(title=f"{file.name} -> {table}" + (f"  (encoding: {report.encoding})" if report.encoding else ""))
    for col in ("read", "accepted", "rejected", "duplicates skipped"):
        out.add_column(col, justify="right")
    out.add_row(*(f"{n:,}" for n in (report.rows_read, report.rows_accepted, report.rows_rejected, report.rows_duplicate)))
    console.print(out)
    if report.ignored_columns:
        console.print(f"ignored columns: {', '.join(report.ignored_columns)}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


@command
def rejects(
    table: Annotated[str | None, typer.Option(help="Only this table.")] = None,
    load_id: Annotated[str | None, typer.Option("--load", help="Only this load (its id is printed by `load`).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    out: Annotated[Path | None, typer.Option(help="Write all matching rejects to a CSV/Parquet/XLSX file.")] = None,
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
) -> None:
    """List rows that were rejected on load: file, row, column and why."""
    ws = Workspace.open(workspace, create=False)
    frame = ws.rejects(table=table, load_id=load_id, limit=None if out else limit)
    ws.close()
    if out:
        write_table(frame, out)
        console.print(f"{len(frame):,} rejects written to [bold]{out}[/]")
        return
    if frame.empty:
        console.print("no rejected rows")
        return
    view = Table(title="rejected rows (the reason quotes the value)")
    columns = {"table_name": "table", "file": "file", "row_number": "row", "column_name": "column", "reason": "reason"}
    for col, heading in columns.items():
        view.add_column(heading, ratio=4 if col == "reason" else None, overflow="fold")
    for row in frame.itertuples():
        view.add_row(*(str(getattr(row, c)) for c in columns))
    console.print(view)
    if not out and len(frame) == limit:
        console.print(f"showing the first {limit}; --limit N for more, --out FILE for all")


@command
def profile(
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: last day in the data).")] = None,
    out: Annotated[Path, typer.Option(help="Output file: .parquet, .csv or .xlsx.")] = Path("profiles.parquet"),
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
    config: ConfigOpt = None,
) -> None:
    """Compute the user value profile (RFM+, lifecycle, tier with reason, RFM cell) as of a date."""
    lang_ = _check_lang(lang)
    _check_out(out)
    ws = Workspace.open(workspace, settings=config, create=False)
    day = _parse_date(as_of, "--as-of") or ws.latest_date()
    with _progress() as progress:
        task = progress.add_task(f"profiling as of {day}", total=3)
        frame = ws.profile(day).to_pandas()
        progress.advance(task)
        ws.store.save_profiles(frame, day)  # the snapshot for tracking change over time
        progress.advance(task)
        write_table(frame, out)
        progress.advance(task)
    print_summary(ws, frame, lang_)
    ws.close()
    console.print(f"{i18n.label('profile_written', lang_)}: [bold]{out}[/] ({len(frame):,} users, as of {day})")


def _parse_horizon(text: str) -> int:
    """'90d', '39w' or a plain number of days -> days."""
    units = {"d": 1, "w": 7}
    value, unit = (text[:-1], text[-1]) if text and text[-1].lower() in units else (text, "d")
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"--horizon {text!r}: expected days or weeks such as 90d or 39w")
    return int(value) * units[unit.lower()]


ModelOpt = Annotated[str, typer.Option(help="Purchase model: bgnbd, pareto or mbgnbd.")]
ActivityOpt = Annotated[
    str, typer.Option(help="What counts as not churned: purchase (default) or any activity.")
]


def _check_choice(value: str, option: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"{option} {value!r}: use one of {', '.join(allowed)}")
    return value


@command
def predict(
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: last day in the data).")] = None,
    horizon: Annotated[str, typer.Option(help="How far ahead: 90d, 39w ...")] = "90d",
    model: ModelOpt = "bgnbd",
    activity: ActivityOpt = "purchase",
    out: Annotated[Path, typer.Option(help="Profile with predictions: .parquet, .csv or .xlsx.")] = Path("profiles.parquet"),
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
    config: ConfigOpt = None,
) -> None:
    """Add predictions to the profile: p_alive, expected purchases and spend, CLV with interval,
    churn probability with reasons, next purchase."""
    lang_ = _check_lang(lang)
    _check_out(out)
    days = _parse_horizon(horizon)
    _check_choice(model, "--model", ("bgnbd", "pareto", "mbgnbd"))
    _check_choice(activity, "--activity", ("purchase", "any"))
    ws = Workspace.open(workspace, settings=config, create=False)
    day = _parse_date(as_of, "--as-of") or ws.latest_date()
    with _progress() as progress, _warnings_as_lines():
        task = progress.add_task(f"predicting {days} days after {day}", total=2)
        frame = ws.predict(day, horizon_days=days, model=model, activity=activity, with_profile=True)
        progress.advance(task)
        ws.store.save_profiles(frame, day)
        write_table(frame, out)
        progress.advance(task)
    print_predictions(frame, days, lang_)
    ws.close()
    console.print(f"{i18n.label('profile_written', lang_)}: [bold]{out}[/] ({len(frame):,} users, as of {day})")


@command
def backtest(
    cutoff: Annotated[str, typer.Option(help="Fit on history up to this day (YYYY-MM-DD).")],
    horizon: Annotated[str, typer.Option(help="Holdout length after the cutoff: 90d, 39w ...")] = "90d",
    model: ModelOpt = "bgnbd",
    churn_horizon: Annotated[str | None, typer.Option(help="Churn label window (default: --horizon).")] = None,
    activity: ActivityOpt = "purchase",
    out: Annotated[Path, typer.Option(help="Folder for the plots and tables.")] = Path("backtest"),
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
    config: ConfigOpt = None,
) -> None:
    """Split history at the cutoff, predict the holdout and report honest accuracy."""
    day = _parse_date(cutoff, "--cutoff")
    days = _parse_horizon(horizon)
    _check_choice(model, "--model", ("bgnbd", "pareto", "mbgnbd"))
    _check_choice(activity, "--activity", ("purchase", "any"))
    ws = Workspace.open(workspace, settings=config, create=False)
    with _progress() as progress, _warnings_as_lines():
        task = progress.add_task(f"backtest {day} + {days} days", total=1)
        result = ws.backtest(
            day, horizon_days=days, model=model, out_dir=out, activity=activity,
            churn_horizon_days=_parse_horizon(churn_horizon) if churn_horizon else None,
        )
        progress.advance(task)
    ws.close()
    out.mkdir(parents=True, exist_ok=True)
    result.per_user.to_csv(out / "per_user.csv", index=False)
    result.by_frequency.to_csv(out / "by_frequency.csv", index=False)
    view = Table(title=f"backtest: cutoff {day}, horizon {days} days, model {model}")
    view.add_column("metric")
    view.add_column("value", justify="right")
    for key, value in result.metrics.items():
        view.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    console.print(view)
    view = Table(title="predicted vs actual purchases by calibration repeat purchases")
    for col in result.by_frequency.columns:
        view.add_column(str(col), justify="right")
    for row in result.by_frequency.itertuples(index=False):
        view.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)
    for name, path in result.plots.items():
        console.print(f"{name}: [bold]{path}[/]")


@command
def simulate(
    users: Annotated[int, typer.Option("--users", min=1, help="Number of users.")] = 10_000,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("shop"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    events_per_user: Annotated[float, typer.Option(help="Mean behaviour events per user.")] = 20.0,
) -> None:
    """Write a simulated virtual-goods shop (users, orders, items, events, touches), in chunks."""
    from userstrata.datasets import simulate_shop

    _check_choice(fmt, "--format", ("parquet", "csv"))
    out.mkdir(parents=True, exist_ok=True)
    with _progress() as progress:
        task = progress.add_task("simulating users", total=users)
        files = simulate_shop(
            users, out, seed=seed, fmt=fmt, events_per_user=events_per_user,
            progress=lambda n: progress.advance(task, n),
        )
    for name, path in files.items():
        console.print(f"{name:12s} {path}")


@command
def demo(
    lang: LangOpt = "en",
    data: Annotated[str, typer.Option(help="shop (simulated virtual-goods shop) or cdnow.")] = "shop",
    users: Annotated[int, typer.Option(help="Users to simulate for --data shop.")] = 5_000,
    out: Annotated[Path, typer.Option(help="Folder for the workspace and the profile file.")] = Path("userstrata-demo"),
    horizon: Annotated[int, typer.Option(help="Prediction horizon in days.")] = 90,
) -> None:
    """Run the whole pipeline on bundled data: load, profile, predict; show tiers, lifecycle,
    the RFM grid and predictions per tier."""
    from userstrata.datasets import load_cdnow, simulate_shop

    lang_ = _check_lang(lang)
    _check_choice(data, "--data", ("shop", "cdnow"))
    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{data}.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)  # a demo starts from scratch
    ws = Workspace.open(db)
    with _progress() as progress:
        if data == "cdnow":
            task = progress.add_task("loading CDNOW", total=1)
            ws.load_frame("orders", load_cdnow(sample=False, timezone=ws.settings.timezone), source="CDNOW_master")
            progress.advance(task)
        else:
            tables = ("users", "orders", "order_items", "events", "touches")
            task = progress.add_task(f"simulating {users:,} users", total=users)
            with tempfile.TemporaryDirectory() as tmp:
                files = simulate_shop(users, tmp, seed=7, progress=lambda n: progress.advance(task, n))
                task = progress.add_task("loading tables", total=len(tables))
                for name in tables:
                    ws.load(name, files[name])
                    progress.advance(task)
        as_of = ws.latest_date()
        task = progress.add_task("profile and predictions", total=1)
        with _warnings_as_lines():
            frame = ws.predict(as_of, horizon_days=horizon, with_profile=True)
        ws.store.save_profiles(frame, as_of)
        path = out / "profiles.parquet"
        write_table(frame, path)
        progress.advance(task)
    console.print(f"[bold]{data}[/]: {len(frame):,} users profiled as of {as_of}")
    print_summary(ws, frame, lang_)
    print_predictions(frame, horizon, lang_)
    ws.close()
    console.print(f"{i18n.label('profile_written', lang_)}: [bold]{path}[/]  (workspace: {db})")


# -- output ------------------------------------------------------------------------------------
_WRITERS = (".parquet", ".csv", ".xlsx")


def _check_out(path: Path) -> None:
    if path.suffix.lower() not in _WRITERS:
        raise InputError(f"--out {path}: unsupported file type; use one of {', '.join(_WRITERS)}")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write by extension; CSV gets a UTF-8 BOM so that Excel shows Chinese correctly."""
    _check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".csv":
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    else:
        frame.to_excel(path, index=False, engine="openpyxl")


def print_predictions(frame: pd.DataFrame, horizon_days: int, lang: i18n.Lang) -> None:
    """Predictions summed up per value tier."""
    t = i18n.label
    view = Table(title=t("predictions_title", lang).format(days=horizon_days))
    for col in ("tier", "users", "mean_p_alive", "expected_purchases", "clv", "mean_churn_probability"):
        view.add_column(t(col, lang), justify="left" if col == "tier" else "right")
    grouped = frame.groupby("tier")
    for tier in ("co_builder", "engaged", "regular", "explorer"):
        if tier not in grouped.groups:
            continue
        g = grouped.get_group(tier)
        view.add_row(
            t(tier, lang), f"{len(g):,}", f"{g.p_alive.mean():.2f}", f"{g.expected_purchases.sum():,.0f}",
            f"{g.clv.sum():,.0f}", f"{g.churn_probability.mean():.2f}",
        )
    console.print(view)


def print_summary(ws: Workspace, frame: pd.DataFrame, lang: i18n.Lang) -> None:
    """Tier shares vs targets, lifecycle counts and the RFM grid as terminal tables."""
    t = i18n.label
    shares = ws.tier_shares(frame)
    view = Table(title=t("tier_shares_title", lang))
    for col in ("tier", "users", "share", "target", "on_target"):
        view.add_column(t(col, lang), justify="left" if col == "tier" else "right")
    for row in shares.itertuples():
        view.add_row(
            t(row.tier, lang), f"{row.users:,}", f"{row.share:.1%}",
            f"{row.target_low:.0%}-{row.target_high:.0%}", t("yes" if row.on_target else "no", lang),
        )
    console.print(view)

    counts = frame["lifecycle"].value_counts()
    view = Table(title=t("lifecycle_title", lang))
    for col in ("lifecycle", "users", "share"):
        view.add_column(t(col, lang), justify="left" if col == "lifecycle" else "right")
    for stage in LIFECYCLE_STAGES:
        n = int(counts.get(stage, 0))
        view.add_row(t(stage, lang), f"{n:,}", f"{n / max(len(frame), 1):.1%}")
    console.print(view)

    grid = ws.rfm_grid(frame)
    view = Table(title=t("rfm_title", lang))
    for col in ("rfm_cell", "users", "share", "mean_monetary"):
        view.add_column(t(col, lang), justify="left" if col == "rfm_cell" else "right")
    for row in grid.itertuples():
        mean = "-" if pd.isna(row.mean_monetary) else f"{row.mean_monetary:,.2f}"
        view.add_row(t(row.rfm_cell, lang), f"{row.users:,}", f"{row.share:.1%}", mean)
    console.print(view)


if __name__ == "__main__":  # pragma: no cover
    app()
