"""Segments (人群): list them with their sizes, export one segment's members for a channel."""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from userstrata import export, i18n
from userstrata.activate.segments import columns_used
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
from userstrata.errors import InputError
from userstrata.cli.profile import AsOfOpt

# (zh, en)
_TEXT: dict[str, tuple[str, str]] = {
    "title": ("人群（截至 {day}）", "Segments (as of {day})"),
    "name": ("名称", "Name"),
    "label": ("人群", "Segment"),
    "where": ("条件", "Condition"),
    "size": ("人数", "Users"),
    "needs": ("需先计算：{cols}", "needs: {cols}"),
    "header": ("人群 {label}（{name}）：{where}；截至 {day} 共 {n:,} 人",
               "Segment {label} ({name}): {where}; {n:,} users as of {day}"),
    "written": ("人群名单已写入", "Segment members written to"),
    "preview": ("人群 {label}：{n:,} 人（截至 {day}）", "Segment {label}: {n:,} users (as of {day})"),
    "computing": ("计算人群", "computing the segment"),
    "hashed": ("{n:,} 位成员的 {field} 以哈希保存，未导出（导入时加 --keep-pii 可保留）",
               "{field} of {n:,} members is stored hashed and left out (load with --keep-pii to keep it)"),
}
# what a channel needs from the profile; the columns the condition uses are added after them
CHANNEL_COLUMNS = ("user_id", "tier", "lifecycle", "rfm_cell", "orders", "monetary", "last_ts",
                   "recency_days", "tier_reason")  # fmt: skip


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


@command
def segments(
    as_of: AsOfOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """List the segments (built-in and from userstrata.toml) with their sizes."""
    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        defs = ws.segment_definitions()
        profile_columns = set(ws.profile(day, depth=True).columns) | {
            "cart_abandoned", "last_cart_at", "plan", "days_to_expiry", "p_renew_next"}
        sizes: dict[str, int | None] = {}
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(_text("computing", lang_), total=len(defs))
            for name, seg in defs.items():
                # sizes that need models fitted or other analyses are not computed for a listing
                sizes[name] = len(ws.segment(name, day)) if columns_used(seg.where) <= profile_columns else None
                progress.advance(task)
    view = Table(title=_text("title", lang_).format(day=day))
    for key in ("name", "label", "where", "size"):
        view.add_column(_text(key, lang_), justify="right" if key == "size" else "left", overflow="fold")
    for name, seg in defs.items():
        size = f"{sizes[name]:,}" if sizes[name] is not None else _text("needs", lang_).format(
            cols=", ".join(sorted(columns_used(seg.where) - profile_columns)))
        view.add_row(escape(name), escape(seg.label(lang_)), escape(seg.where), escape(size))
    console.print(view)


@command
def segment(
    name: Annotated[str, typer.Argument(help="A segment name (see `userstrata segments`).")],
    as_of: AsOfOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the members (.xlsx, .csv, .parquet), definition on top.")] = None,
    contacts: Annotated[str | None, typer.Option(
        "--contacts", help="Contact fields to add to --out, comma-separated: phone, email or an identities "
                           "source (kept only with `load --keep-pii`).")] = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Who is in one segment: its size, and with --out the list for an SMS / WeCom tool."""
    lang_ = check_lang(lang)
    if out is not None:
        export.check_path(out)
    fields = [f.strip() for f in (contacts or "").split(",") if f.strip()]
    if fields and out is None:
        raise InputError("--contacts needs --out: contact fields are written to the file, not shown",
                         zh="--contacts 需要与 --out 一起使用：联系方式只写入文件，不在屏幕上显示")
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        seg = ws.segment_definitions().get(name)
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(_text("computing", lang_), total=1)
            members = ws.segment(name, day, lang=lang_)
            progress.advance(task)
        seg = seg or ws.segment_definitions()[name]
        line(escape(_text("preview", lang_).format(label=seg.label(lang_), n=len(members), day=day)))
        if out is not None:
            used = [c for c in sorted(columns_used(seg.where)) if c in members.columns and c not in CHANNEL_COLUMNS]
            columns = [c for c in (*CHANNEL_COLUMNS, *used) if c in members.columns]
            members = members[columns]
            if fields:
                found = ws.contacts(members["user_id"].astype(str).tolist(), fields)
                members = members.merge(found.frame.astype({"user_id": "object"}), on="user_id", how="left")
                columns = [columns[0], *fields, *columns[1:]]
                for field, n in found.hashed.items():
                    if n:
                        line(escape(_text("hashed", lang_).format(n=n, field=field)))
            title = _text("header", lang_).format(label=seg.label(lang_), name=name, where=seg.where, day=day,
                                                  n=len(members))
            export.write_table(members[columns], out, lang=lang_, timezone=ws.settings.timezone,
                               currency=ws.settings.currency, title=title)
            line(f"{escape(_text('written', lang_))}: [bold]{escape(str(out))}[/] ({len(members):,})")
