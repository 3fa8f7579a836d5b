"""The user value profile as of a day: computed, saved as a snapshot and written for people."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from userstrata import export, i18n
from userstrata.cli._app import (
    DATE_HELP,
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    day_or_latest,
    open_workspace,
    progress_bar,
)
from userstrata.cli.output import line, print_summary

AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help=f"The day ({DATE_HELP}); default: the last day in the data.")
]
OutOpt = Annotated[
    Path,
    typer.Option(help=".xlsx or .csv (headers and labels in --lang, times in shop time) or .parquet "
                      "(machine columns)."),
]


@command
def profile(
    as_of: AsOfOpt = None,
    out: OutOpt = Path("profiles.xlsx"),
    depth: Annotated[bool, typer.Option("--depth", help="Add value realisation and behaviour tags.")] = False,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Compute the user value profile (RFM+, lifecycle, tier with reason, RFM cell) as of a day."""
    lang_ = check_lang(lang)
    export.check_path(out)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress:
            task = progress.add_task(f"profiling as of {day}", total=3)
            frame = ws.store.execute(ws.profile(day, lang=lang_, depth=depth))
            progress.advance(task)
            if ws.store.engine == "duckdb":  # the snapshot for tracking change over time (kept in DuckDB)
                ws.snapshot(day, frame=frame)
            progress.advance(task)
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            progress.advance(task)
        print_summary(ws, frame, lang_)
    line(f"{i18n.label('profile_written', lang_)}: [bold]{escape(str(out))}[/] ({len(frame):,} users, as of {day})")
