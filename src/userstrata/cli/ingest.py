"""Getting data in: init, load, loads, unload, rejects, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from userstrata import export, i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    console,
    open_workspace,
    progress_bar,
)
from userstrata.cli.output import heading, line, print_frame, print_load_report, print_schema
from userstrata.errors import InputError
from userstrata.schema import CANONICAL


@command
def init(
    path: Annotated[Path, typer.Argument(help="Workspace file to create.")] = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Create a workspace (an embedded DuckDB file with the canonical tables)."""
    from userstrata.workspace import Workspace

    Workspace.open(path, settings=config).close()
    line(f"workspace ready: [bold]{escape(str(path))}[/]")


def _check_table(table: str) -> str:
    if table not in CANONICAL:
        raise InputError(f"unknown table {table!r}; use one of: {', '.join(CANONICAL)}")
    return table


def _parse_mapping(items: list[str] | None) -> dict[str, str] | None:
    pairs = {}
    for item in items or []:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise InputError(f"--map {item!r} must look like canonical=source, e.g. order_id=单号")
        pairs[canonical.strip()] = source.strip()
    return pairs or None


@command
def load(
    table: Annotated[str, typer.Argument(help=f"One of: {', '.join(CANONICAL)}.")],
    file: Annotated[
        Path, typer.Argument(help="CSV (UTF-8, BOM, GBK, UTF-16), .xlsx, .xls, .parquet or .jsonl.")
    ],
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="canonical=source column, e.g. --map order_id=单号 (repeatable)."),
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Force a CSV encoding (default: detect).")] = None,
    header_row: Annotated[
        int | None,
        typer.Option("--header-row", min=1, help="Row holding the column names, as the spreadsheet numbers it "
                                                  "(default: found after any title lines)."),
    ] = None,
    sheet: Annotated[str | None, typer.Option(help="Workbook sheet (default: the first that holds data).")] = None,
    keep_pii: Annotated[bool, typer.Option("--keep-pii", help="Keep phone numbers and e-mails as they are (default: salted hashes).")] = False,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Validate and load a file; rejected rows are kept with their reason (`userstrata rejects`)."""
    lang_ = check_lang(lang)
    _check_table(table)
    pairs = _parse_mapping(mapping)
    with open_workspace(workspace, config) as ws, progress_bar() as progress:
        task = progress.add_task(f"loading {file.name}", total=None)
        report = ws.load(
            table, file, mapping=pairs, encoding=encoding, header_row=header_row, sheet=sheet, keep_pii=keep_pii,
            progress=lambda n: progress.advance(task, n),
        )
    print_load_report(report, lang_)


_LOAD_COLUMNS = (
    "load_id", "table_name", "file", "loaded_at", "rows_read", "rows_inserted", "rows_updated", "rows_unchanged",
    "rows_rejected", "undone_at",
)  # fmt: skip


@command
def loads(
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """List the loads, oldest first: file, counts, and when a load was undone."""
    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        frame = ws.loads()
        zone = ws.settings.timezone
    if frame.empty:
        console.print("no loads yet")
        return
    shown = [c for c in _LOAD_COLUMNS if c in frame.columns]
    if "undone_at" in shown and frame["undone_at"].isna().all():
        shown.remove("undone_at")
    view = frame[shown].assign(file=frame["file"].map(lambda f: Path(f).name))
    print_frame(export.localize(view, lang_, zone))


@command
def unload(
    load_id: Annotated[str, typer.Argument(help="The load to undo (see `userstrata loads`).")],
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Undo one load exactly: remove its rows, restore what it replaced, drop its rejects."""
    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        report = ws.unload(load_id)
    line(escape(report.summary(lang_)))


def _reasons_in(frame: pd.DataFrame, lang: i18n.Lang) -> pd.DataFrame:
    """One ``reason`` column, in ``lang`` where the rejects carry that language."""
    if "reason_zh" not in frame.columns:
        return frame
    if lang == "zh":
        frame = frame.assign(reason=frame["reason_zh"].where(frame["reason_zh"].notna(), frame["reason"]))
    return frame.drop(columns="reason_zh")


@command
def rejects(
    table: Annotated[str | None, typer.Option(help="Only this table.")] = None,
    load_id: Annotated[str | None, typer.Option("--load", help="Only this load (its id is printed by `load`).")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many rows.")] = 50,
    out: Annotated[Path | None, typer.Option(help="Write all matching rejects to .xlsx, .csv or .parquet.")] = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """List rows that were rejected on load: file, row, column and why."""
    lang_ = check_lang(lang)
    if out is not None:
        export.check_path(out)
    with open_workspace(workspace, config) as ws:
        frame = _reasons_in(ws.rejects(table=table, load_id=load_id, limit=None if out else limit), lang_)
        settings = ws.settings
    if out is not None:
        export.write_table(frame, out, lang=lang_, timezone=settings.timezone, currency=settings.currency)
        written = "条拒绝记录已写入" if lang_ == "zh" else "rejects written to"
        line(f"{len(frame):,} {written} [bold]{escape(str(out))}[/]")
        return
    if frame.empty:
        console.print("没有被拒绝的行" if lang_ == "zh" else "no rejected rows")
        return
    shown = ["table_name", "file", "row_number", "column_name", "reason"]
    view = frame[shown].assign(file=frame["file"].map(lambda f: Path(f).name))
    print_frame(view.rename(columns={c: heading(c, lang_) for c in shown}),
                title="被拒绝的行（原因中引用了原值）" if lang_ == "zh" else "rejected rows (the reason quotes the value)",
                wide=[heading("reason", lang_)])
    if len(frame) == limit:
        console.print(f"只显示前 {limit} 行；--limit N 显示更多，--out 文件 导出全部" if lang_ == "zh"
                      else f"showing the first {limit}; --limit N for more, --out FILE for all")


@command
def schema(
    table: Annotated[str | None, typer.Argument(help="Only this table.")] = None,
) -> None:
    """The canonical tables (columns, types, required, key) and the status and event vocabularies."""
    print_schema([_check_table(table)] if table else list(CANONICAL))
