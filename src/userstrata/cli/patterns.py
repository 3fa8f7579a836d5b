"""Purchase patterns, bundles and refunds (购买时段、搭配购买、退款): ``patterns``, ``bundles``, ``refunds``."""

from __future__ import annotations

import functools

import datetime as dt_
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape

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
    open_workspace,
    parse_date,
    warnings_as_lines,
)
from userstrata.cli.output import line, print_frame

StartOpt = Annotated[str | None, typer.Option("--start", help=f"First local day ({DATE_HELP}); default: all.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last local day (inclusive); default: all.")]
MinCountOpt = Annotated[
    int | None, typer.Option("--min-count", min=1, help="Hide cells of fewer units than this (e.g. 10).")
]
ChartOpt = Annotated[Path | None, typer.Option("--chart", help="Write the chart: .html (interactive) or .png.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write the whole table: .xlsx, .csv or .parquet.")]
LevelOpt = Annotated[str, typer.Option("--level", help="Items are skus or categories: sku | category.")]

_TEXT: dict[str, tuple[str, str]] = {
    "patterns_title": ("下单最多的时段（{what}）", "Busiest hours ({what})"),
    "orders_total": ("已支付订单：{n:,}（{zone} 时间）", "paid orders: {n:,} (time in {zone})"),
    "by_category": ("各品类高峰：", "peak of each category:"),
    "bundles_title": ("搭配购买（前 {n} 组，按共同购买篮数）", "Bought together (top {n} by baskets)"),
    "baskets": ("购物篮：{n:,}；入选门槛：至少 {t:,} 篮", "baskets: {n:,}; kept when in at least {t:,}"),
    "triples_title": ("三件组合", "Triples"),
    "none": ("没有达到最小支持度的组合", "no itemset reaches the minimum support"),
    "refunds_title": ("退款率（前 {n} 项）", "Refund rates (top {n})"),
    "timing_title": ("下单到退款的时长", "Time from order to refund"),
    "behaviour_title": ("购买前 {h} 小时的行为（全部订单）", "The {h} hours before buying (all orders)"),
    "chart": ("图表已写入", "chart written to"),
    "table": ("明细已写入", "table written to"),
}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _day(value: str | None, option: str) -> dt_.date | None:
    return None if value is None else parse_date(value, option)


def _pct(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.1%}"


def _num(value: Any, fmt: str = ",.2f") -> str:
    return "" if value is None or pd.isna(value) else format(value, fmt)


def _context(ws: Any) -> dict[str, Any]:
    from userstrata.features._time import Clock  # noqa: PLC0415 - the analyses load on use

    return dict(clock=Clock(ws.settings.timezone, ws.store.engine), execute=ws.store.execute)


def _write(fig: Any, frame: pd.DataFrame, chart: Path | None, out: Path | None, ws: Any, lang: str) -> None:
    if chart is not None:
        charts.save(fig, chart)
        line(f"{_text('chart', lang)}: [bold]{escape(str(chart))}[/]")
    if out is not None:
        export.write_table(frame, out, lang=lang, timezone=ws.settings.timezone, currency=ws.settings.currency)
        line(f"{_text('table', lang)}: [bold]{escape(str(out))}[/]")


def _check_files(chart: Path | None, out: Path | None) -> None:
    if chart is not None:
        charts.check_path(chart)
    if out is not None:
        export.check_path(out)


@command
def patterns(
    by: Annotated[str | None, typer.Option("--by", help="category: one heatmap per category.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="With --by category: the one to show.")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Busiest cells to list.")] = 10,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    out: OutOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Purchase patterns: paid orders by weekday × hour in shop time (a heatmap), overall or by category."""
    from userstrata.measure.patterns import ALL, purchase_patterns, weekday_label  # noqa: PLC0415
    from userstrata.measure.patterns import text as label  # noqa: PLC0415

    lang_ = check_lang(lang)
    if by is not None:
        check_choice(by, "--by", ("category",))
    _check_files(chart, out)
    with open_workspace(workspace, config) as ws, warnings_as_lines(lang_):
        result = purchase_patterns(ws.table("orders"), ws.table("order_items") if by else None, by=by,
                                   start=_day(start, "--start"), end=_day(end, "--end"), min_count=min_count,
                                   **_context(ws))
        peaks = result.peaks(top, category)
        what = category or label("all", lang_)
        view = pd.DataFrame({
            label("category", lang_): [label("all", lang_) if c == ALL else c for c in peaks["category"]],
            label("weekday", lang_): [weekday_label(w, lang_) for w in peaks["weekday"]],
            label("hour", lang_): [f"{h:02d}:00–{h:02d}:59" for h in peaks["hour"]],
            label("orders", lang_): [_num(v, ",.0f") for v in peaks["orders"]],
            label("share", lang_): [_pct(v) for v in peaks["share"]],
        })  # fmt: skip
        print_frame(view, _text("patterns_title", lang_).format(what=what))
        total = int(result.totals["orders"].sum())
        line(escape(_text("orders_total", lang_).format(n=total, zone=ws.settings.timezone)))
        if by is not None and category is None:
            line(escape(_text("by_category", lang_)))
            for cat in result.totals["category"]:
                best = result.peaks(1, cat)
                if len(best):
                    w, h = int(best["weekday"].iloc[0]), int(best["hour"].iloc[0])
                    line(escape(f"  {cat}: {weekday_label(w, lang_)} {h:02d}:00"))
        _write(result.chart(lang_, category), result.table(lang_), chart, out, ws, lang_)


@command
def bundles(
    level: LevelOpt = "sku",
    basket: Annotated[str, typer.Option("--basket", help="order (one order) | user_day (a user's orders of a day).")] = "order",
    min_support: Annotated[float, typer.Option("--min-support", help="Smallest share of baskets, e.g. 0.001.")] = 0.001,
    triples: Annotated[bool, typer.Option("--triples", help="Also itemsets of three.")] = False,
    start: StartOpt = None,
    end: EndOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Pairs to list.")] = 20,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    out: OutOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Bundles: items bought together, with support, confidence and lift."""
    from userstrata.measure.bundles import BASKETS, LEVELS  # noqa: PLC0415
    from userstrata.measure.bundles import bundles as find_bundles  # noqa: PLC0415
    from userstrata.measure.bundles import text as label  # noqa: PLC0415

    lang_ = check_lang(lang)
    check_choice(level, "--level", LEVELS)
    check_choice(basket, "--basket", BASKETS)
    _check_files(chart, out)
    with open_workspace(workspace, config) as ws, warnings_as_lines(lang_):
        result = find_bundles(ws.table("orders"), ws.table("order_items"), level=level, basket=basket,
                              min_support=min_support, max_size=3 if triples else 2, min_count=min_count,
                              start=_day(start, "--start"), end=_day(end, "--end"), **_context(ws))
        line(escape(_text("baskets", lang_).format(n=result.n_baskets, t=result.definition["threshold"])))
        if not len(result.pairs):
            line(escape(_text("none", lang_)))
        else:
            head = result.pairs.head(top)
            view = pd.DataFrame({
                label("item_a", lang_): head["item_a"], label("item_b", lang_): head["item_b"],
                label("baskets", lang_): [f"{v:,}" for v in head["baskets"]],
                label("support", lang_): [_pct(v) for v in head["support"]],
                label("confidence_ab", lang_): [_pct(v) for v in head["confidence_ab"]],
                label("confidence_ba", lang_): [_pct(v) for v in head["confidence_ba"]],
                label("lift", lang_): [_num(v) for v in head["lift"]],
            })  # fmt: skip
            print_frame(view, _text("bundles_title", lang_).format(n=len(head)))
        if triples and len(result.triples):
            head = result.triples.head(top)
            view = pd.DataFrame({
                label("item_a", lang_): head["item_a"], label("item_b", lang_): head["item_b"],
                label("item_c", lang_): head["item_c"], label("baskets", lang_): [f"{v:,}" for v in head["baskets"]],
                label("support", lang_): [_pct(v) for v in head["support"]],
            })  # fmt: skip
            print_frame(view, _text("triples_title", lang_))
        _write(result.chart(lang_, top), result.table(lang_), chart, out, ws, lang_)


@command
def refunds(
    level: LevelOpt = "sku",
    before_hours: Annotated[float, typer.Option("--before-hours", help="Hours before each order to look at.")] = 24,
    start: StartOpt = None,
    end: EndOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Items to list.")] = 15,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    chart_kind: Annotated[str, typer.Option("--chart-kind", help="rates | timing | behaviour.")] = "rates",
    out: OutOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Refunds: refund rate by item, time to refund (share within 24 h), refunders' behaviour before buying."""
    from userstrata.measure.refunds import LEVELS  # noqa: PLC0415
    from userstrata.measure.refunds import refunds as refund_analysis  # noqa: PLC0415
    from userstrata.measure.refunds import text as label  # noqa: PLC0415

    lang_ = check_lang(lang)
    check_choice(level, "--level", LEVELS)
    check_choice(chart_kind, "--chart-kind", ("rates", "timing", "behaviour"))
    _check_files(chart, out)
    with open_workspace(workspace, config) as ws, warnings_as_lines(lang_):
        result = refund_analysis(ws.table("orders"), ws.table("order_items"), ws.table("events"), level=level,
                                 before_hours=before_hours, start=_day(start, "--start"), end=_day(end, "--end"),
                                 min_count=min_count, **_context(ws))
        rates = result.table(lang_, top=top + 1)  # the (all) row on top
        shown = result.rates.head(top + 1)
        view = pd.DataFrame({
            rates.columns[0]: rates.iloc[:, 0],
            label("orders", lang_): [_num(v, ",.0f") for v in shown["orders"]],
            label("order_refund_rate", lang_): [_pct(v) for v in shown["order_refund_rate"]],
            label("amount_refund_rate", lang_): [_pct(v) for v in shown["amount_refund_rate"]],
            label("share_within_24h", lang_): [_pct(v) for v in shown["share_within_24h"]],
            label("median_hours_to_refund", lang_): [_num(v, ",.1f") for v in shown["median_hours_to_refund"]],
        })  # fmt: skip
        print_frame(view, _text("refunds_title", lang_).format(n=top))
        timing = result.timing
        print_frame(pd.DataFrame({
            label("bucket", lang_): [label(b, lang_) for b in timing["bucket"]],
            label("refunds", lang_): [_num(v, ",.0f") for v in timing["refunds"]],
            label("share", lang_): [_pct(v) for v in timing["share"]],
        }), _text("timing_title", lang_))  # fmt: skip
        overall = result.behaviour[result.behaviour["item"] == "(all)"]
        if len(overall):
            print_frame(pd.DataFrame({
                label("group", lang_): [label(g, lang_) for g in overall["group"]],
                label("orders", lang_): [_num(v, ",.0f") for v in overall["orders"]],
                label("mean_page_views", lang_): [_num(v) for v in overall["mean_page_views"]],
                label("median_page_views", lang_): [_num(v, ",.1f") for v in overall["median_page_views"]],
                label("median_dwell_seconds", lang_): [_num(v, ",.1f") for v in overall["median_dwell_seconds"]],
            }), _text("behaviour_title", lang_).format(h=f"{before_hours:g}"))  # fmt: skip
        _write(result.chart(lang_, chart_kind, top), result.table(lang_), chart, out, ws, lang_)
