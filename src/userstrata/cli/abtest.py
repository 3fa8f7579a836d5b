"""A/B results and campaign ROI (A/B 实验结果与活动 ROI): ``userstrata abtest EXPERIMENT``."""

from __future__ import annotations

import functools

import datetime as dt_
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

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
    open_workspace,
    parse_date,
    parse_horizon,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.errors import InputError
from userstrata.measure import abtest as ab
from userstrata.measure import stats as st

_TEXT: dict[str, tuple[str, str]] = {
    "title": ("实验 {name}：各组（分组后 {days} 天内）", "Experiment {name}: variants (within {days} days of assignment)"),
    "effects": ("各组相对 {control} 的差异（{how}）", "Differences from {control} ({how})"),
    "fixed": ("Welch t 检验，Holm 校正", "Welch t-test, Holm-corrected"),
    "seq": ("序贯检验（可随时查看），Holm 校正", "sequential (always valid), Holm-corrected"),
    "cuped": ("，CUPED 调整", ", CUPED-adjusted"),
    "mixed": ("{n:,} 位用户收到过多个组别的触达，按首次触达计入", "{n:,} users were touched with more than one variant; "
              "counted in their first"),
    "verdict": ("结论", "Verdict"),
    "chart_written": ("图表已写入", "Chart written to"),
    "rpo": ("每单收入", "Rev/order"),
}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _weights(text: str | None) -> dict[str, float] | None:
    """'A=45,B=45,holdout=10' -> {"A": 45.0, ...}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"--weights {text!r}: expected VARIANT=SHARE pairs such as A=45,B=45,holdout=10",
                             zh=f"--weights {text!r}：应写成 组别=比例，例如 A=45,B=45,holdout=10")
    return out


def _read_assignments(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"assignment file {path} does not exist", zh=f"分组文件 {path} 不存在")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls"):
        return pd.read_excel(path, dtype={"user_id": str, "variant": str})
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path, dtype={"user_id": str, "variant": str}, encoding="utf-8-sig")
    raise InputError(f"assignment file {path.name!r}: expected .csv or .xlsx",
                     zh=f"分组文件 {path.name!r}：须为 .csv 或 .xlsx")


def local_midnight_utc(day: dt_.date, zone: str) -> dt_.datetime:
    """The naive-UTC instant at which ``day`` starts in the shop's ``zone``."""
    start = dt_.datetime.combine(day, dt_.time(), tzinfo=ZoneInfo(zone))
    return start.astimezone(dt_.timezone.utc).replace(tzinfo=None)


def _print(result: ab.ABTest, lang: str) -> None:
    view = Table(title=_text("title", lang).format(name=result.experiment, days=result.window_days))
    heads = ("variant", "users", "share", "conversion_rate", "revenue_per_user", "orders_per_user")
    for h in heads:
        view.add_column(ab.text(h, lang), justify="left" if h == "variant" else "right")
    view.add_column(_text("rpo", lang), justify="right")
    for r in result.variants.itertuples():
        rpo = "" if pd.isna(r.revenue_per_order) else f"{r.revenue_per_order:,.2f}"
        view.add_row(escape(r.variant), f"{r.users:,}", f"{r.share:.1%}", f"{r.conversion_rate:.2%}",
                     f"{r.revenue_per_user:,.2f}", f"{r.orders_per_user:.3f}", rpo)
    console.print(view)
    if len(result.effects):
        how = _text("seq" if result.sequential else "fixed", lang) + (_text("cuped", lang) if result.cuped else "")
        eff = Table(title=_text("effects", lang).format(control=result.control, how=how))
        for h in ("metric", "variant", "effect", "relative", "relative_low", "relative_high", "p_holm"):
            eff.add_column(ab.text(h, lang), justify="left" if h in ("metric", "variant") else "right")
        for r in result.effects.itertuples():
            pct = (lambda v: "" if pd.isna(v) else f"{v:+.1%}")
            eff.add_row(ab.text(r.metric, lang), escape(r.variant), f"{r.effect:+,.4g}", pct(r.relative),
                        pct(r.relative_low), pct(r.relative_high), "" if pd.isna(r.p_holm) else f"{r.p_holm:.3g}")
        console.print(eff)
    if result.mixed_users:
        line(escape(_text("mixed", lang).format(n=result.mixed_users)))
    line(f"[bold]{_text('verdict', lang)}[/]")
    for text in result.verdict(lang):
        line(escape("- " + text))


@command
def abtest(
    experiment: Annotated[str, typer.Argument(help="The campaign (touches.campaign) or a name for --assignments.")],
    assignments: Annotated[Path | None, typer.Option("--assignments", help="Assignment file (.csv/.xlsx): "
                                                     "user_id, variant, optional assigned_at (UTC).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day of the experiment (shop-local), for an "
                                              "assignment file without assigned_at.")] = None,
    window: Annotated[str, typer.Option("--window", help="Outcome window after assignment: 14d, 2w.")] = "14d",
    control: Annotated[str | None, typer.Option("--control", help="Control variant (default A).")] = None,
    holdout: Annotated[str, typer.Option("--holdout", help="The variant that received nothing.")] = ab.HOLDOUT,
    metric: Annotated[list[str] | None, typer.Option("--metric", help=f"One of {', '.join(ab.METRICS)} "
                                                     "(repeatable; default all).")] = None,
    cuped: Annotated[bool, typer.Option("--cuped", help="Adjust by the same metric before assignment (CUPED).")] = False,
    sequential: Annotated[bool, typer.Option("--sequential", help="Always-valid intervals: safe to look every day.")] = False,
    tuning: Annotated[float, typer.Option("--tuning", min=1, help="Sequential: users where the interval is tightest.")]
    = st.DEFAULT_TUNING,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    weights: Annotated[str | None, typer.Option("--weights", help="Planned split for the SRM check: "
                                                "A=45,B=45,holdout=10.")] = None,
    mixed: Annotated[str, typer.Option("--mixed", help="Users touched with several variants: first or exclude.")]
    = "first",
    cost: Annotated[float, typer.Option("--cost", min=0, help="Campaign cost, for the ROI against the holdout.")] = 0.0,
    chart: Annotated[Path | None, typer.Option("--chart", help="Write the lift chart (.html or .png).")] = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """A/B results: per variant users, conversion, revenue; effects with intervals and p-values,
    SRM check, verdict; campaign ROI against the holdout."""
    lang_ = check_lang(lang)
    days = parse_horizon(window, "--window")
    check_choice(mixed, "--mixed", ab.MIXED)
    metrics = tuple(metric) if metric else ab.METRICS
    for m in metrics:
        check_choice(m, "--metric", ab.METRICS)
    if chart is not None:
        charts.check_path(chart)
    planned = _weights(weights)
    with open_workspace(workspace, config) as ws:
        frame, first = None, None
        if assignments is not None:
            first = local_midnight_utc(parse_date(start, "--start"), ws.settings.timezone) if start else None
            frame = _read_assignments(assignments)
        with warnings_as_lines(lang_):
            result = ws.abtest(experiment, assignments=frame, start=first,
                               source=assignments.name if assignments is not None else "assignments",
                               window_days=days, control=control, holdout=holdout, metrics=metrics, cuped=cuped,
                               sequential=sequential, tuning=tuning, alpha=alpha, weights=planned, mixed=mixed,
                               cost=cost)
    _print(result, lang_)
    if chart is not None:
        charts.save(result.chart(metrics[0], lang_), chart)
        line(f"{_text('chart_written', lang_)}: [bold]{escape(str(chart))}[/]")
