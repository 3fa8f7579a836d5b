"""Behaviour clusters (行为聚类): k-means on the profile's behaviour, each cluster in words."""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from userstrata import export, i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    console,
    day_or_latest,
    open_workspace,
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.cli.profile import AsOfOpt, OutOpt

# (zh, en) headers and lines; English headers on two lines so that seven columns fit 80.
_TEXT: dict[str, tuple[str, str]] = {
    "title": ("行为聚类（{day}）", "Behaviour clusters ({day})"),
    "cluster": ("群", "Cluster"),
    "id": ("群", "#"),
    "size": ("用户数", "Users"),
    "share": ("占比", "Share"),
    "description": ("特征描述", "Description"),
    "frequency": ("复购\n天数", "Repeat\ndays"),
    "aov": ("客单价", "Basket"),
    "community_actions": ("社区\n互动", "Comm.\nactions"),
    "note": ("复购天数、客单价：该群购买过的用户的平均；\n社区互动：该群全部用户的平均。",
             "Repeat days, basket: mean over the cluster's buyers;\n"
             "community actions: mean over all its users."),
    "written": ("用户聚类结果已写入", "Cluster of each user written to"),
    "count": ("（{n:,} 个用户）", "({n:,} users)"),
}
_COLUMNS = ("id", "size", "share", "description", "frequency", "aov", "community_actions")


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _number(value: Any, fmt: str) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return format(value, fmt)


def _print_clusters(result: Any, day: Any, lang: str) -> None:
    view = Table(title=_text("title", lang).format(day=day), caption=result.reason(lang))
    for col in _COLUMNS:
        view.add_column(_text(col, lang), justify="left" if col == "description" else "right",
                        no_wrap=col != "description", overflow="fold")
    for row in result.clusters.itertuples(index=False):
        view.add_row(
            str(row.cluster), f"{row.size:,}", f"{row.share:.1%}", escape(row.description),
            _number(row.frequency, ".1f"), _number(row.aov, ",.0f"), _number(row.community_actions, ".1f"),
        )  # fmt: skip
    console.print(view)
    for text in _text("note", lang).splitlines():
        line(escape(text))


@command
def clusters(
    as_of: AsOfOpt = None,
    k: Annotated[
        int | None, typer.Option("--k", min=2, help="Number of clusters; default: chosen by silhouette.")
    ] = None,
    out: OutOpt = Path("clusters.xlsx"),
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Behaviour clusters: users grouped by purchases and interactions, each group in words.

    Writes the cluster of every user (user_id, cluster, description) to --out.
    """
    lang_ = check_lang(lang)
    export.check_path(out)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"clusters as of {day}", total=2)
            result = ws.clusters(day, k=k, lang=lang_)
            progress.advance(task)
            users = result.assignments(lang_)
            if export.for_people(out):  # headers for people; parquet keeps the machine names
                users = users.rename(columns={c: _text(c, lang_) for c in ("cluster", "description")})
            export.write_table(users, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            progress.advance(task)
    _print_clusters(result, day, lang_)
    count = _text("count", lang_).format(n=len(result.labels))
    line(f"{_text('written', lang_)}: [bold]{escape(str(out))}[/] {escape(count)}")
