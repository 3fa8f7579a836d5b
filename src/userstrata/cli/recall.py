"""Recall success rate (召回成功率) and price sensitivity (价格敏感度) on the command line
(docs/metrics.md): ``userstrata recall [CAMPAIGN]`` and ``userstrata price-sensitivity``."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from userstrata import charts, i18n
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
    warnings_as_lines,
)
from userstrata.cli.output import line

_TEXT: dict[str, tuple[str, str]] = {
    "recall_title": ("召回成功率：{what}（沉睡 {dormant} 天以上的用户，{window} 天内回流）",
                     "Recall rate: {what} (users dormant {dormant}+ days, back within {window} days)"),
    "all": ("全部活动", "every campaign"),
    "effects": ("相对对照组的增量召回率（{level:.0%} 区间）", "Incremental recall rate over the holdout ({level:.0%} interval)"),
    "no_holdout": ("没有对照组（variant = holdout）：无法计算增量", "no holdout arm (variant = holdout): no increment"),
    "price_title": ("价格敏感度（{start} 至 {end}，按{level}）", "Price sensitivity ({start} to {end}, by {level})"),
    "elasticity": ("相邻折扣档之间的弧弹性（件数/曝光用户，自助法 {n} 次）",
                   "Arc elasticity between adjacent discounts (units per exposed user, {n} bootstrap resamples)"),
    "sku": ("单品", "SKU"),
    "category": ("品类", "category"),
    "unpriced": ("{n:,} 次浏览当天无成交且未带价格，未计入曝光", "{n:,} views on days without a sale and without a price "
                 "were left out of exposure"),
    "hidden": ("少于 {n} 人的格子已隐藏（显示为 -）", "Cells under {n} users hidden (shown as -)"),
    "chart": ("图表已写入", "Chart written to"),
}
_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en

BY_RECALL = ("tier", "lifecycle", "channel")
BY_PRICE = ("tier", "lifecycle", "none")
MinCountOpt = Annotated[int | None, typer.Option("--min-count", min=1, help="Hide cells resting on fewer users "
                                                 "(10 for reports shared outside the team).")]
ChartOpt = Annotated[Path | None, typer.Option("--chart", help="Also draw a chart: .html or .png.")]


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


@command
def recall(
    campaign: Annotated[str | None, typer.Argument(help="The campaign (touches.campaign); default: every campaign.")]
    = None,
    dormant_days: Annotated[int, typer.Option("--dormant-days", min=1, help="Silent days before the touch that "
                                              "make a user dormant.")] = 30,
    window: Annotated[int, typer.Option("--window", min=0, help="Days after the touch's day a return may come.")] = 14,
    by: Annotated[str | None, typer.Option("--by", help="tier, lifecycle (as of the day before the campaign) or "
                                           "channel (of the touch).")] = None,
    activity: Annotated[str, typer.Option("--activity", help="purchase, or any (events count too).")] = "purchase",
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Recall success rate after a campaign: dormant users reached, how many came back, against the holdout."""
    from userstrata.measure import recall as rc  # noqa: PLC0415 - SciPy off the CLI's start

    lang_ = check_lang(lang)
    if by is not None:
        check_choice(by, "--by", BY_RECALL)
    check_choice(activity, "--activity", rc.ACTIVITY)
    if chart is not None:
        charts.check_path(chart)
    with open_workspace(workspace, config) as ws:
        with warnings_as_lines(lang_):
            result = ws.recall(campaign, dormant_days=dormant_days, window_days=window, activity=activity, by=by,
                               min_count=min_count)
    what = campaign if campaign is not None else _text("all", lang_)
    view = Table(title=_text("recall_title", lang_).format(what=what, dormant=dormant_days, window=window))
    heads = ["campaign", *(["group"] if by else []), "arm", "touched", "active_at_touch",
             "never_active_any" if activity == "any" else "never_active", "dormant", "returned", "rate", "rate_low",
             "rate_high", "revenue"]
    for h in heads:
        view.add_column(rc.text(h, lang_), justify="left" if h in ("campaign", "group", "arm") else "right")
    for r in result.table.itertuples():
        cells = [escape(str(r.campaign)), *([escape(str(r.group))] if by else []), rc.text(r.arm, lang_),
                 _num(r.touched), _num(r.active_at_touch), _num(r.never_active), _num(r.dormant), _num(r.returned),
                 _pct(r.rate), _pct(r.rate_low), _pct(r.rate_high), _num(r.revenue, ",.2f")]
        view.add_row(*cells)
    console.print(view)
    if len(result.effects):
        eff = Table(title=_text("effects", lang_).format(level=result.level))
        cols = ["campaign", *(["group"] if by else []), "holdout_rate", "treated_rate", "incremental",
                "incremental_low", "incremental_high", "p_value"]
        for h in cols:
            eff.add_column(rc.text(h, lang_), justify="left" if h in ("campaign", "group") else "right")
        for r in result.effects.itertuples():
            eff.add_row(escape(str(r.campaign)), *([escape(str(r.group))] if by else []), _pct(r.holdout_rate),
                        _pct(r.treated_rate), _pct(r.incremental), _pct(r.incremental_low),
                        _pct(r.incremental_high), _num(r.p_value, ".3g"))
        console.print(eff)
    else:
        line(escape(_text("no_holdout", lang_)))
    if min_count:
        line(escape(_text("hidden", lang_).format(n=min_count)))
    if chart is not None:
        charts.save(result.chart(lang_), chart)
        line(f"{_text('chart', lang_)}: [bold]{escape(str(chart))}[/]")


@command(name="price-sensitivity")
def price_sensitivity(
    start: Annotated[str, typer.Option("--from", help=f"First day ({DATE_HELP}).")],
    end: Annotated[str | None, typer.Option("--to", help="Last day; default: the last day in the data.")] = None,
    level: Annotated[str, typer.Option("--level", help="sku or category.")] = "sku",
    by: Annotated[str, typer.Option("--by", help="tier or lifecycle (as of the day before --from), or none.")]
    = "tier",
    resamples: Annotated[int, typer.Option("--resamples", min=0, help="Bootstrap resamples for the elasticity.")]
    = 500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    min_count: MinCountOpt = None,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Price sensitivity: conversion and revenue per exposed user by discount level and segment."""
    from userstrata.measure import price as pr  # noqa: PLC0415 - SciPy off the CLI's start

    lang_ = check_lang(lang)
    check_choice(level, "--level", pr.LEVELS)
    check_choice(by, "--by", BY_PRICE)
    if chart is not None:
        charts.check_path(chart)
    first = parse_date(start, "--from")
    with open_workspace(workspace, config) as ws:
        last = day_or_latest(ws, end, "--to")
        with warnings_as_lines(lang_):
            result = ws.price_sensitivity(first, last, by=None if by == "none" else by, level=level,
                                          resamples=resamples, seed=seed, min_count=min_count)
    view = Table(title=_text("price_title", lang_).format(start=first, end=last, level=_text(level, lang_)))
    heads = ["group", "item", "bucket", "price_index", "exposed", "buyers", "conversion", "conversion_low",
             "conversion_high", "revenue_per_exposed", "units_per_buyer"]
    for h in heads:
        view.add_column(pr.text(h, lang_), justify="left" if h in ("group", "item", "bucket") else "right")
    for r in result.table.itertuples():
        view.add_row(escape(str(r.group)), escape(str(r.item)), pr.text(r.bucket, lang_), _num(r.price_index, ".2f"),
                     _num(r.exposed), _num(r.buyers), _pct(r.conversion), _pct(r.conversion_low),
                     _pct(r.conversion_high), _num(r.revenue_per_exposed, ",.2f"), _num(r.units_per_buyer, ".2f"))
    console.print(view)
    if len(result.elasticity):
        el = Table(title=_text("elasticity", lang_).format(n=resamples))
        for h in ("group", "item", "from_bucket", "to_bucket", "elasticity", "elasticity_low", "elasticity_high"):
            el.add_column(pr.text(h, lang_), justify="left" if h in ("group", "item", "from_bucket", "to_bucket")
                          else "right")
        for r in result.elasticity.itertuples():
            el.add_row(escape(str(r.group)), escape(str(r.item)), pr.text(r.from_bucket, lang_),
                       pr.text(r.to_bucket, lang_), _num(r.elasticity, ".2f"), _num(r.elasticity_low, ".2f"),
                       _num(r.elasticity_high, ".2f"))
        console.print(el)
    for note in result.notes(lang_):
        line(escape(note))
    if result.unpriced_views:
        line(escape(_text("unpriced", lang_).format(n=result.unpriced_views)))
    if min_count:
        line(escape(_text("hidden", lang_).format(n=min_count)))
    if chart is not None:
        charts.save(result.chart(lang_), chart)
        line(f"{_text('chart', lang_)}: [bold]{escape(str(chart))}[/]")
