"""Funnels (转化漏斗) and paths (用户路径): ``userstrata funnel`` and ``userstrata paths``."""

from __future__ import annotations

import functools

import datetime as dt_
import re
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from userstrata import charts, i18n
from userstrata.cli._app import (
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_choice,
    check_lang,
    command,
    console,
    day_or_latest,
    open_workspace,
    parse_date,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure import funnels as fn
from userstrata.measure import paths as pa

_TEXT: dict[str, tuple[str, str]] = {
    "chart_written": ("图表已写入", "Chart written to"),
    "weekly_head": ("每周环节转化率（最近 {n} 周，按进入周）", "Weekly step conversion (last {n} weeks, by week of entry)"),
    "next_after": ("{anchor} 之后的下一个事件", "Next event after {anchor}"),
    "next_before": ("{anchor} 之前的上一个事件", "Previous event before {anchor}"),
    "paths_head": ("路径（共 {users:,} 位用户）", "Paths ({users:,} users)"),
    "conv_head": ("转化 vs 未转化用户的路径（{conversion}，{window} 内）",
                  "Paths of users who converted vs did not ({conversion} within {window})"),
    "no_anchor": ("请用 --after 或 --before 指定一个事件（二选一）", "give one event with --after or --before (not both)"),
    "hidden": ("空白格：少于 {n} 的数据已隐藏", "blank cells: fewer than {n}, hidden"),
}
_WINDOW = re.compile(r"(?P<n>\d+)\s*(?P<unit>[wdhm]?)", re.IGNORECASE)
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "": 86400}

WindowOpt = Annotated[str, typer.Option("--window", help="Conversion window: 7d, 24h, 30m, 2w (plain number: days).")]
StartOpt = Annotated[str | None, typer.Option("--start", help="First day of the period; default: 90 days before --end.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last day of the period; default: the last day in the data.")]
MinCountOpt = Annotated[int | None, typer.Option("--min-count", min=1, help="Hide cells with fewer units than this.")]
SuppressOpt = Annotated[bool, typer.Option("--suppress", help=f"Hide small cells (--min-count, default {fn.MIN_COUNT}).")]
ChartOpt = Annotated[Path | None, typer.Option("--chart", help="Write the chart (.html or .png).")]


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def parse_window(text: str, option: str = "--window") -> dt_.timedelta:
    """'7d', '24h', '30m', '2w' or a plain number of days -> a timedelta."""
    found = _WINDOW.fullmatch(text.strip())
    if not found or int(found["n"]) < 1:
        raise InputError(f"{option} {text!r}: expected a length such as 7d, 24h, 30m or 2w",
                         zh=f"{option} {text!r} 无效：应为时长，如 7d、24h、30m 或 2w")
    return dt_.timedelta(seconds=int(found["n"]) * _UNITS[found["unit"].lower()])


def _period(ws: Any, start: str | None, end: str | None) -> tuple[dt_.date, dt_.date]:
    last = day_or_latest(ws, end, "--end")
    first = parse_date(start, "--start") if start else last - dt_.timedelta(days=89)
    return first, last


def _min_count(min_count: int | None, suppress: bool) -> int | None:
    return min_count if min_count is not None else (fn.MIN_COUNT if suppress else None)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return format(value, fmt) if fmt else str(value)


def _duration(seconds: Any) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.0f}s"


def _print_steps(result: fn.FunnelResult, lang: str) -> None:
    d = result.definition
    title = fn.text("funnel_title", lang).format(start=d["start"], end=d["end"], window=d["window"])
    view = Table(title=title)
    frame = result.steps
    count_key = "count_session" if d["per"] == "session" else "count_user"
    heads = (["group"] if "group" in frame else []) + ["step", "event", count_key, "step_conversion",
                                                       "overall_conversion", "drop_off", "median_seconds"]
    for h in heads:
        view.add_column(fn.text(h, lang), justify="left" if h in ("group", "event") else "right")
    for row in frame.itertuples(index=False):
        cells = [escape(str(row.group))] if "group" in frame else []
        cells += [str(row.step), escape(fn.event_label(row.event, lang)), _cell(row.count, ","),
                  _cell(row.step_conversion, ".1%"), _cell(row.overall_conversion, ".1%"), _cell(row.drop_off, ","),
                  _duration(row.median_seconds) if row.step > 1 else ""]
        view.add_row(*cells)
    console.print(view)


def _print_weekly(result: fn.FunnelResult, lang: str, weeks: int = 12) -> None:
    """Weeks as rows; the step conversion of each step as columns (with --by: the overall
    conversion of each group)."""
    frame, steps = result.weekly, result.definition["steps"]
    n = len(steps)
    if "group" in frame:
        wide = frame[frame["step"] == n].pivot_table(index="entry_week", columns="group",
                                                      values="overall_conversion", aggfunc="first", dropna=False)
        counts = frame[frame["step"] == 1].groupby("entry_week")["count"].sum()
        heads = [escape(str(g)) for g in wide.columns]
    else:
        wide = frame[frame["step"] > 1].pivot_table(index="entry_week", columns="step", values="step_conversion",
                                                   aggfunc="first", dropna=False)
        counts = frame[frame["step"] == 1].set_index("entry_week")["count"]
        heads = [f"{k}. {escape(fn.event_label(steps[k - 1], lang))}" for k in wide.columns]
    wide = wide.sort_index().tail(weeks)
    title = _text("weekly_head", lang).format(n=len(wide))
    if "group" in frame:
        title += " · " + fn.text("overall_conversion", lang)
    view = Table(title=title)
    view.add_column(fn.text("week", lang))
    view.add_column(fn.text("count_session" if result.definition["per"] == "session" else "count_user", lang),
                    justify="right")
    for head in heads:
        view.add_column(head, justify="right")
    for week, row in wide.iterrows():
        view.add_row(str(pd.Timestamp(week).date()), _cell(counts.get(week), ","),
                     *[_cell(row[c], ".1%") for c in wide.columns])
    console.print(view)


def _save_chart(fig: Any, path: Path, lang: str) -> None:
    written = charts.save(fig, path)
    line(f"{escape(_text('chart_written', lang))}: [bold]{escape(str(written))}[/]")


@command
def funnel(
    steps: Annotated[list[str], typer.Argument(help="The funnel's events in order, e.g. page_view add_to_cart purchase.")],
    window: WindowOpt = "7d",
    by: Annotated[str | None, typer.Option("--by", help="A column of the users table, e.g. channel.")] = None,
    weekly: Annotated[bool, typer.Option("--weekly", help="Also the conversion of each step by week of entry.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="No other event may come between two steps.")] = False,
    any_order: Annotated[bool, typer.Option("--any-order", help="Steps after the first may come in any order.")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Drop units that do this event between the first and last step.")] = None,
    per: Annotated[str, typer.Option("--per", help="Unit: user or session.")] = "user",
    start: StartOpt = None,
    end: EndOpt = None,
    min_count: MinCountOpt = None,
    suppress: SuppressOpt = False,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Funnel: units at each step, step conversion and time to convert (docs/funnels.md).

    The names purchase and order also match paid orders. With --chart and --weekly the weekly
    lines go to FILE_weekly too.
    """
    lang_ = check_lang(lang)
    check_choice(per, "--per", fn.PER)
    if strict and any_order:
        raise InputError("--strict and --any-order exclude each other", zh="--strict 与 --any-order 不能同时使用")
    span = parse_window(window)
    if chart is not None:
        charts.check_path(chart)
    order = "strict" if strict else "any" if any_order else "ordered"
    with open_workspace(workspace, config) as ws:
        first, last = _period(ws, start, end)
        with warnings_as_lines(lang_):
            result = fn.funnel(
                ws.table("events"), steps, start=first, end=last, window=span, orders=ws.table("orders"),
                users=ws.table("users"), order=order, exclude=exclude or (), per=per, by=by, weekly=weekly,
                min_count=_min_count(min_count, suppress), clock=Clock(ws.settings.timezone, ws.store.engine),
                execute=ws.store.execute,
            )
    _print_steps(result, lang_)
    if weekly:
        _print_weekly(result, lang_)
    if result.definition["min_count"]:
        line(escape(_text("hidden", lang_).format(n=result.definition["min_count"])))
    if chart is not None:
        _save_chart(result.chart(lang_), chart, lang_)
        if weekly:
            _save_chart(result.weekly_chart(lang_), chart.with_name(f"{chart.stem}_weekly{chart.suffix}"), lang_)


@command
def paths(
    after: Annotated[str | None, typer.Option("--after", help="The events after this one.")] = None,
    before: Annotated[str | None, typer.Option("--before", help="The events before this one.")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, max=10, help="Events per path.")] = 3,
    top: Annotated[int, typer.Option("--top", min=1, help="How many paths to show.")] = 10,
    conversion: Annotated[str, typer.Option("--conversion", help="The event that counts as converting (purchase = a paid order).")] = "purchase",
    window: WindowOpt = "7d",
    start: StartOpt = None,
    end: EndOpt = None,
    min_count: MinCountOpt = None,
    suppress: SuppressOpt = False,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Paths: the most common next (previous) events and the top paths from an event, for users
    who converted and those who did not (docs/funnels.md)."""
    lang_ = check_lang(lang)
    if (after is None) == (before is None):
        raise InputError(_text("no_anchor", "en"), zh=_text("no_anchor", "zh"), hint="e.g. --after page_view",
                         hint_zh="例如 --after page_view")
    span = parse_window(window)
    if chart is not None:
        charts.check_path(chart)
    anchor, direction = (after, "after") if after is not None else (before, "before")
    with open_workspace(workspace, config) as ws:
        first, last = _period(ws, start, end)
        result = pa.paths(
            ws.table("events"), anchor, start=first, end=last, orders=ws.table("orders"), direction=direction,
            steps=steps, top=top, conversion=conversion, window=span, min_count=_min_count(min_count, suppress),
            clock=Clock(ws.settings.timezone, ws.store.engine), execute=ws.store.execute,
        )
    _print_paths(result, lang_)
    if chart is not None:
        _save_chart(result.chart(lang_), chart, lang_)


def _print_paths(result: pa.PathsResult, lang: str) -> None:
    d = result.definition
    anchor = fn.event_label(d["anchor"], lang)
    view = Table(title=_text(f"next_{d['direction']}", lang).format(anchor=escape(anchor)))
    for h in ("event", "users", "share"):
        view.add_column(pa.text(h, lang), justify="left" if h == "event" else "right")
    for row in result.next.itertuples(index=False):
        view.add_row(escape(pa._name(row.event, lang)), _cell(row.users, ","), _cell(row.share, ".1%"))
    console.print(view)

    def path_text(row: Any) -> str:
        names = [pa._name(getattr(row, f"step_{i}"), lang) for i in range(1, d["steps"] + 1)]
        seq = [anchor, *names] if d["direction"] == "after" else [*names[::-1], anchor]
        return " → ".join(seq)

    view = Table(title=_text("paths_head", lang).format(users=d["users"]))
    for h, just in (("path", "left"), ("users", "right"), ("share", "right")):
        view.add_column(pa.text(h, lang), justify=just)
    for row in result.paths.itertuples(index=False):
        view.add_row(escape(path_text(row)), _cell(row.users, ","), _cell(row.share, ".1%"))
    console.print(view)

    if d["conversion"]:
        window = fn._window_text(d["window"])
        view = Table(title=_text("conv_head", lang).format(conversion=fn.event_label(d["conversion"], lang),
                                                           window=window))
        for h, just in (("converted", "left"), ("path", "left"), ("users", "right"), ("share", "right")):
            view.add_column(pa.text(h, lang), justify=just)
        for row in result.by_conversion.itertuples(index=False):
            view.add_row(pa.text("yes" if row.converted else "no", lang), escape(path_text(row)),
                         _cell(row.users, ","), _cell(row.share, ".1%"))
        console.print(view)
    if d["min_count"]:
        line(escape(_text("hidden", lang).format(n=d["min_count"])))
