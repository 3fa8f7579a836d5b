"""``userstrata report``: one self-contained HTML file an operator can mail to a manager."""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from userstrata import i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    day_or_latest,
    open_workspace,
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.cli.profile import AsOfOpt

_TEXT = {
    "computing": ("生成报告", "building the report"),
    "subtitle": ("截至 {day}；人数少于 {n} 的格子不显示具体数值", "As of {day}; cells with fewer than {n} users are not shown"),
    "written": ("报告已写入", "Report written to"),
}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


@command
def report(
    out: Annotated[Path, typer.Option(help="The HTML file to write (charts inside; opens without a network).")] = Path("report.html"),
    as_of: AsOfOpt = None,
    min_count: Annotated[int, typer.Option(min=0, help="Hide aggregate cells with fewer users than this (privacy).")] = 10,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Write the overview (KPIs, tiers, lifecycle, RFM grid, CLV, risk, migration) as one HTML file."""
    from userstrata.report.overview import TITLE, workspace_sections  # noqa: PLC0415
    from userstrata.report.render import write_report  # noqa: PLC0415

    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(_text("computing", lang_), total=1)
            sections = workspace_sections(ws, day, lang=lang_, min_count=min_count)
            progress.advance(task)
    path = write_report(sections, out, title=TITLE[lang_], subtitle=_text("subtitle", lang_).format(day=day, n=min_count),
                        lang=lang_)
    line(f"{escape(_text('written', lang_))}: [bold]{escape(str(path))}[/]")
