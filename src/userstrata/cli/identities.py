"""Identity stitching (统一用户ID): how many ids merged into how many users, the largest groups, conflicts."""

from __future__ import annotations

import functools

from collections import Counter
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from userstrata import charts, export, i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    open_workspace,
    warnings_as_lines,
)
from userstrata.cli.output import line, print_frame
from userstrata.ingest.identity import IdentityMap, stitch

# (zh, en) texts
_TEXT: dict[str, tuple[str, str]] = {
    "largest": ("合并最多的用户", "Largest merged groups"),
    "conflicts": ("冲突：关联过多、未合并的 ID（共享设备或测试账号）", "Conflicts: ids with too many links, not merged "
                  "(shared devices or test accounts)"),
    "no_conflicts": ("没有关联超过上限的 ID。", "No id has more links than the cap."),
    "empty": ("工作区还没有身份关联（identities 表为空，事件中也没有登录关联）。",
              "The workspace has no identity links yet (identities is empty and no event links an anonymous id)."),
    "written": ("ID 对应表已写入", "Id mapping written to"),
    "chart_title": ("每个用户合并的 ID 数", "Ids merged per user"),
    "chart_x": ("合并的 ID 数", "Ids in the group"),
    "chart_y": ("用户数", "Users"),
    "chart_written": ("图表已写入", "Chart written to"),
    "group_id": ("分组", "Group"),
    "user_id": ("统一用户ID", "Canonical user"),
    "members": ("ID 数", "Ids"),
    "user_ids": ("用户 ID 数", "User ids"),
    "sources": ("来源", "Sources"),
    "source": ("来源", "Source"),
    "external_id": ("ID", "Id"),
    "links": ("关联数", "Links"),
    "examples": ("示例", "Examples"),
}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _headers(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    return frame.rename(columns={c: _text(c, lang) for c in frame.columns if c in _TEXT})


def group_size_chart(result: IdentityMap, lang: str = "en"):
    """A bar chart: how many canonical users have 1, 2, 3... ids merged."""
    import plotly.graph_objects as go

    known = result.mapping[result.mapping["user_id"].notna()]
    counts = Counter(known.groupby("user_id").size().tolist())
    sizes = sorted(counts)
    fig = go.Figure(go.Bar(x=[str(s) for s in sizes], y=[counts[s] for s in sizes]))
    fig.update_layout(title=_text("chart_title", lang), xaxis_title=_text("chart_x", lang),
                      yaxis_title=_text("chart_y", lang))
    return fig


@command
def identities(
    max_links: Annotated[
        int | None, typer.Option("--max-links", min=1, help="Ids with more links are listed, not merged "
                                 "(default [identity] max_links, 20).")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the largest groups and conflicts to show.")] = 10,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the id mapping (source, external_id, user_id, group_id).")
    ] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="Write the chart: .html (interactive) or .png.")] = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Identity stitching: ids from every system merged into one user id each.

    Links come from the identities table and from events that carry both a user id and an
    anonymous id (a login). Prints how many ids merged into how many users, the largest groups,
    and the ids with more links than --max-links (listed, not merged).
    """
    lang_ = check_lang(lang)
    if out is not None:
        export.check_path(out)
    if chart is not None:
        charts.check_path(chart)
    with open_workspace(workspace, config) as ws, warnings_as_lines(lang_):
        cap = max_links if max_links is not None else ws.settings.identity.max_links
        result = stitch(ws.table("identities"), events=ws.table("events"), max_links=cap)
        if out is not None:
            export.write_table(result.mapping, out, lang=lang_, timezone=ws.settings.timezone,
                               currency=ws.settings.currency)
    if result.mapping.empty and result.conflicts.empty:
        line(escape(_text("empty", lang_)))
        return
    line(escape(result.summary_text(lang_)))
    print_frame(_headers(result.largest.head(top), lang_), _text("largest", lang_), wide=[_text("sources", lang_)])
    if result.conflicts.empty:
        line(escape(_text("no_conflicts", lang_)))
    else:
        print_frame(_headers(result.conflicts.head(top), lang_), _text("conflicts", lang_),
                    wide=[_text("examples", lang_)])
    if out is not None:
        line(f"{_text('written', lang_)}: [bold]{escape(str(out))}[/]")
    if chart is not None:
        charts.save(group_size_chart(result, lang_), chart)
        line(f"{_text('chart_written', lang_)}: [bold]{escape(str(chart))}[/]")
