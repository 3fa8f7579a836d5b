"""The command line: parse, call one function, format the result.

Errors a user can fix print one red line and the hint, and exit with code 2
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import datetime as dt_
import functools
import os
import tempfile
from collections.abc import Callable
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
    if report.rows_rejected:
        console.print(f"[yellow]{report.rows_rejected:,} rows rejected[/]: see `userstrata rejects --workspace {workspace}`")


@command
def rejects(
    table: Annotated[str | None, typer.Option(help="Only this table.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    out: Annotated[Path | None, typer.Option(help="Write all matching rejects to a CSV/Parquet/XLSX file.")] = None,
    workspace: WorkspaceOpt = Path(DEFAULT_WORKSPACE),
) -> None:
    """List rows that were rejected on load: file, row, column and why."""
    ws = Workspace.open(workspace, create=False)
    frame = ws.rejects(table=table, limit=None if out else limit)
    ws.close()
    if out:
        write_table(frame, out)
        console.print(f"{len(frame):,} rejects written to [bold]{out}[/]")
        return
    if frame.empty:
        console.print("no rejected rows")
        return
    view = Table(title="rejected rows")
    for col in ("table_name", "file", "row_number", "column_name", "value", "reason"):
        view.add_column(col)
    for row in frame.itertuples():
        view.add_row(*(str(getattr(row, c)) for c in ("table_name", "file", "row_number", "column_name", "value", "reason")))
    console.print(view)


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
        ws.store.save_profiles(ws.profile(day), day)
        progress.advance(task)
        write_table(frame, out)
        progress.advance(task)
    print_summary(ws, frame, lang_)
    ws.close()
    console.print(f"{i18n.label('profile_written', lang_)}: [bold]{out}[/] ({len(frame):,} users, as of {day})")


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

    if fmt not in ("parquet", "csv"):
        raise InputError(f"--format {fmt!r}: use parquet or csv")
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
) -> None:
    """Run the whole pipeline on bundled data and show tiers, lifecycle and the RFM grid."""
    from userstrata.datasets import load_cdnow, simulate_shop

    lang_ = _check_lang(lang)
    if data not in ("shop", "cdnow"):
        raise InputError(f"--data {data!r}: use shop or cdnow")
    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{data}.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)  # a demo starts from scratch
    ws = Workspace.open(db)
    with _progress() as progress:
        if data == "cdnow":
            task = progress.add_task("loading CDNOW", total=2)
            ws.load_frame("orders", load_cdnow(sample=False, timezone=ws.settings.timezone), source="CDNOW_master")
            progress.advance(task)
        else:
            tables = ("users", "orders", "order_items", "events", "touches")
            task = progress.add_task(f"simulating {users:,} users", total=users)
            with tempfile.TemporaryDirectory() as tmp:
                files = simulate_shop(users, tmp, seed=7, progress=lambda n: progress.advance(task, n))
                task = progress.add_task("loading tables", total=len(tables) + 1)
                for name in tables:
                    ws.load(name, files[name])
                    progress.advance(task)
        as_of = ws.latest_date()
        frame = ws.profile(as_of).to_pandas()
        ws.store.save_profiles(ws.profile(as_of), as_of)
        path = out / "profiles.parquet"
        write_table(frame, path)
        progress.advance(task)
    console.print(f"[bold]{data}[/]: {len(frame):,} users profiled as of {as_of}")
    print_summary(ws, frame, lang_)
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
