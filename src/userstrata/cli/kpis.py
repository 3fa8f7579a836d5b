"""KPIs (核心指标) and retention cohorts (留存) on the command line (docs/metrics.md)."""

from __future__ import annotations

import functools

import datetime as dt_
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from userstrata import charts, export, i18n
from userstrata.cli._app import (
    DATE_HELP,
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
    progress_bar,
)
from userstrata.cli.output import line
from userstrata.errors import InputError

GRAINS = ("day", "week", "month")
BY = ("tier", "lifecycle", "channel", "cohort")
DEFAULT_METRICS = ("new_users", "active_users", "paying_users", "gmv", "net_revenue", "arppu", "aov",
                   "repurchase_rate", "churn_rate")  # fmt: skip

_TEXT: dict[str, tuple[str, str]] = {
    "written": ("已写入", "Written"),
    "chart": ("图表已写入", "Chart written to"),
    "hidden": ("少于 {n} 人的格子已隐藏（显示为 -）", "Cells under {n} users hidden (shown as -)"),
    "ltv": ("获客批次历史 LTV（人均累计净收入）", "Historical LTV by acquisition cohort (net revenue per user)"),
    "summary": ("次日 / 7日 / 30日留存（只计满龄用户）", "D1 / D7 / D30 retention (users old enough only)"),
    "retention": ("留存（{mode}，按{start}分批，{unit}）", "Retention ({mode}, cohorts by {start}, per {unit})"),
}

FromOpt = Annotated[str | None, typer.Option("--from", help=f"First day ({DATE_HELP}).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day; default: the last day in the data.")]
MinCountOpt = Annotated[
    int | None,
    typer.Option("--min-count", min=1, help="Hide cells resting on fewer users (10 for reports shared outside "
                                            "the team); default: hide nothing."),
]
ChartOpt = Annotated[Path | None, typer.Option("--chart", help="Also draw a chart: .html or .png.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write the table: .xlsx, .csv or .parquet.")]


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _range(ws: Any, start: str | None, end: str | None, default_back: int, grain: str) -> tuple[dt_.date, dt_.date]:
    """``--from`` and ``--to``; without ``--from``, ``default_back`` periods back from ``--to``."""
    last = day_or_latest(ws, end, "--to")
    if start is not None:
        return parse_date(start, "--from"), last
    if grain == "month":
        month = last.year * 12 + last.month - 1 - (default_back - 1)
        return dt_.date(month // 12, month % 12 + 1, 1), last
    days = default_back * (7 if grain == "week" else 1)
    first = last - dt_.timedelta(days=days - 1)
    return (first - dt_.timedelta(days=first.weekday()) if grain == "week" else first), last


def _cell(value: Any, kind: str) -> str:
    if value is None or pd.isna(value):
        return "-"
    if kind == "rate":
        return f"{value:.1%}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "mean":
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _kind(metric: str) -> str:
    from userstrata.measure.kpis import MONEY, RATES  # noqa: PLC0415 - the analysis only when run

    if metric in RATES:
        return "rate"
    if metric in MONEY:
        return "money"
    return "mean" if metric == "dau" else "count"


def _save(fig: Any, path: Path | None, lang: str) -> None:
    if path is not None:
        charts.save(fig, path)
        line(f"{_text('chart', lang)}: [bold]{escape(str(path))}[/]")


@command
def kpis(
    start: FromOpt = None,
    end: ToOpt = None,
    grain: Annotated[str, typer.Option("--grain", help="day, week (Monday to Sunday) or month.")] = "day",
    by: Annotated[str | None, typer.Option("--by", help="Split by tier, lifecycle (as of each period's end), "
                                                        "channel or cohort (registration period).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="A metric to show (repeatable); "
                                                                      "default: the main ones.")] = None,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    out: OutOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """KPIs per day, week or month: users, activity, GMV, net revenue, ARPU, AOV, conversion, churn.

    Every metric is defined in docs/metrics.md.
    """
    from userstrata.measure import kpis as measure  # noqa: PLC0415 - the analysis only when run

    lang_ = check_lang(lang)
    check_choice(grain, "--grain", GRAINS)
    if by is not None:
        check_choice(by, "--by", BY)
    shown = tuple(metric or DEFAULT_METRICS)
    for name in shown:
        if name not in measure.METRICS:
            raise InputError(f"--metric {name!r} is not a KPI; use one of: {', '.join(measure.METRICS)}",
                             zh=f"--metric {name!r} 不是可用指标；可选：{', '.join(measure.METRICS)}")
    if chart is not None:
        charts.check_path(chart)
    if out is not None:
        export.check_path(out)
    with open_workspace(workspace, config) as ws:
        first, last = _range(ws, start, end, {"day": 30, "week": 12, "month": 12}[grain], grain)
        with progress_bar() as progress:
            task = progress.add_task(f"KPIs {first} to {last}", total=1)
            result = measure.kpis(**ws._inputs(), start=first, end=last, grain=grain, by=by, min_count=min_count)
            progress.advance(task)
        view = Table(title=measure.text("kpi_title", lang_).format(start=first, end=last,
                                                                     grain=measure.text(grain, lang_)))
        view.add_column(measure.text("period_start", lang_), no_wrap=True)
        if by:
            view.add_column(measure.text("group", lang_), no_wrap=True)
        for name in shown:
            view.add_column(measure.text(name, lang_), justify="right")
        for row in result.table.itertuples(index=False):
            cells = [str(row.period_start), *([escape(str(row.group))] if by else [])]
            view.add_row(*cells, *[_cell(getattr(row, name), _kind(name)) for name in shown])
        console.print(view)
        if result.ltv is not None and len(result.ltv) and by is None:
            ltv = result.ltv.pivot(index="cohort_start", columns="age", values="ltv")
            table = Table(title=_text("ltv", lang_))
            table.add_column(measure.text("cohort", lang_), no_wrap=True)
            for age in ltv.columns:
                table.add_column(str(age), justify="right")
            for cohort, values in ltv.iterrows():
                table.add_row(str(cohort), *[_cell(v, "money") for v in values])
            console.print(table)
        if min_count:
            line(escape(_text("hidden", lang_).format(n=min_count)))
        if out is not None:
            export.write_table(result.labelled(lang_) if export.for_people(out) else result.table, out,
                               lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            line(f"{_text('written', lang_)}: [bold]{escape(str(out))}[/]")
        _save(result.chart(shown[:2], lang_) if chart else None, chart, lang_)


@command
def retention(
    start: FromOpt = None,
    end: ToOpt = None,
    cohort_by: Annotated[str, typer.Option("--cohort-by", help="registration or first_purchase.")] = "registration",
    period: Annotated[str, typer.Option("--period", help="day, week or month.")] = "day",
    start_event: Annotated[str | None, typer.Option("--start-event", help="Start on this event instead "
                                                                          "(purchase also matches paid orders).")] = None,
    return_event: Annotated[str | None, typer.Option("--return-event", help="Count only this event as a return; "
                                                                            "default: any activity.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="first_time (each user once) or recurring.")] = "first_time",
    periods: Annotated[int, typer.Option("--periods", min=1, help="Periods after the cohort's to show.")] = 7,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    out: OutOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Retention cohorts (留存): of the users who started in a period, the share back k periods later.

    D1 / D7 / D30 count only users whose day N has passed (docs/metrics.md).
    """
    from userstrata.measure import retention as measure  # noqa: PLC0415

    lang_ = check_lang(lang)
    check_choice(period, "--period", GRAINS)
    check_choice(cohort_by, "--cohort-by", measure.COHORT_BY)
    check_choice(mode, "--mode", measure.MODES)
    if chart is not None:
        charts.check_path(chart)
    if out is not None:
        export.check_path(out)
    with open_workspace(workspace, config) as ws:
        first, last = _range(ws, start, end, {"day": 30, "week": 12, "month": 12}[period], period)
        with progress_bar() as progress:
            task = progress.add_task(f"retention {first} to {last}", total=1)
            result = measure.retention(**ws._inputs(), start=first, end=last, cohort_by=cohort_by, period=period,
                                       start_event=start_event, return_event=return_event, mode=mode,
                                       periods=periods, min_count=min_count)
            progress.advance(task)
        table = result.labelled(lang_)
        begin = measure.text(cohort_by, lang_) if start_event is None else start_event
        view = Table(title=_text("retention", lang_).format(mode=measure.text(mode, lang_), start=begin,
                                                           unit=measure.text(period, lang_)))
        for i, col in enumerate(table.columns):
            view.add_column(str(col), justify="left" if i == 0 else "right", no_wrap=True)
        for values in table.itertuples(index=False):
            view.add_row(str(values[0]), _cell(values[1], "count"), *[_cell(v, "rate") for v in values[2:]])
        console.print(view)
        summary = Table(title=_text("summary", lang_))
        for key in ("mark", "eligible", "returned", "rate"):
            summary.add_column(measure.text(key, lang_), justify="left" if key == "mark" else "right")
        for row in result.summary.itertuples(index=False):
            summary.add_row(measure.text(row.mark, lang_), _cell(row.eligible, "count"), _cell(row.returned, "count"),
                            _cell(row.rate, "rate"))
        console.print(summary)
        if min_count:
            line(escape(_text("hidden", lang_).format(n=min_count)))
        if out is not None:
            frame = result.counts if not export.for_people(out) else table
            frame = frame.rename(columns=str)
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            line(f"{_text('written', lang_)}: [bold]{escape(str(out))}[/]")
        _save(result.chart(lang_) if chart else None, chart, lang_)
