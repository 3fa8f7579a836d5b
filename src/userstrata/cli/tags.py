"""Behaviour tags, the value realisation index and the activity density x value grid."""

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
)
from userstrata.cli.output import line
from userstrata.cli.profile import AsOfOpt, OutOpt
from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.features.realisation import purchase_usage, realisation_index, unused_purchases
from userstrata.features.tags import TAGS, tag_label, tags_wide, user_tags
from userstrata.segments.density import DensityGrid, active_days, density_counts, density_grid

ChartOpt = Annotated[Path | None, typer.Option("--chart", help="Write the chart (.html or .png).")]

_TEXT: dict[str, tuple[str, str]] = {
    "tags_title": ("行为标签（{day}）", "Behaviour tags ({day})"),
    "tag": ("标签", "Tag"),
    "users": ("用户数", "Users"),
    "share": ("占购买用户", "Share of buyers"),
    "buyers": ("购买用户 {n:,} 人；一个用户可有多个标签。", "{n:,} buyers; a user can carry several tags."),
    "real_title": ("价值实现指数（{day}）", "Value realisation index ({day})"),
    "band": ("指数区间", "Index"),
    "pending_only": ("仅观察期", "too recent"),
    "real_note": ("平均指数 {mean}；{unused:,} 笔购买超过 {days} 天未使用。",
                  "Mean index {mean}; {unused:,} purchases not used within {days} days."),
    "density_title": ("行为密度×价值预期（{day}）", "Activity density x value ({day})"),
    "density_rows": ("近 {days} 天活跃天数", "Active days, last {days}"),
    "value_by": ("价值：{by}", "Value: {by}"),
    "by_clv": ("预测 CLV 三等分（付费用户）", "predicted CLV thirds of payers"),
    "by_monetary": ("累计消费三等分（付费用户）", "spend thirds of payers"),
    "written": ("已写入", "Written to"),
    "chart_written": ("图表已写入", "Chart written to"),
    "x_tags": ("标签", "Tag"),
    "y_users": ("用户数", "Users"),
    "x_index": ("价值实现指数", "Value realisation index"),
}
_INDEX_BANDS = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 100))


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _clock(ws: Any) -> Clock:
    return Clock(ws.settings.timezone, ws.store.engine)


def _written(path: Path, lang: str, key: str = "written") -> None:
    line(f"{escape(_text(key, lang))}: [bold]{escape(str(path))}[/]")


def _bar(x: list[str], y: list[int], title: str, x_title: str, lang: str) -> Any:
    import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked for

    fig = go.Figure(go.Bar(x=x, y=y, text=[f"{v:,}" for v in y], textposition="outside"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=_text("y_users", lang))
    return fig


@command
def tags(
    as_of: AsOfOpt = None,
    out: OutOpt = Path("tags.xlsx"),
    wide: Annotated[bool, typer.Option("--wide", help="One row per user, one yes/no column per tag.")] = False,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Behaviour tags (行为标签): price sensitive, loyal, social, time habits, new products.

    Writes one row per user and tag with its reason (or, with --wide, one column per tag).
    """
    lang_ = check_lang(lang)
    export.check_path(out)
    if chart is not None:
        charts.check_path(chart)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress:
            task = progress.add_task(f"tags as of {day}", total=2)
            clock = _clock(ws)
            bought = purchases(ws.table("orders"), as_of=day, clock=clock)
            long = user_tags(bought, ws.table("order_items"), ws.table("events"),
                             as_of=day, clock=clock, rules=ws.settings.tags)
            frame = (tags_wide(long) if wide else long).order_by("user_id").to_pandas()
            buyers = int(ws.store.execute(bought.user_id.nunique()))
            progress.advance(task)
            if not wide:
                frame = frame.assign(label=[tag_label(t, lang_) for t in frame["tag"]])
                reason = f"reason_{lang_}"
                frame = frame[["user_id", "tag", "label", "value", reason]].rename(columns={reason: "reason"})
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            progress.advance(task)
    counts = (frame[list(TAGS)].sum() if wide else frame["tag"].value_counts()).reindex(TAGS, fill_value=0)
    view = Table(title=_text("tags_title", lang_, day=day), caption=_text("buyers", lang_, n=buyers))
    for key in ("tag", "users", "share"):
        view.add_column(_text(key, lang_), justify="left" if key == "tag" else "right")
    for tag, n in counts.items():
        view.add_row(escape(tag_label(tag, lang_)), f"{int(n):,}", f"{n / buyers:.1%}" if buyers else "")
    console.print(view)
    _written(out, lang_)
    if chart is not None:
        fig = _bar([tag_label(t, lang_) for t in counts.index], [int(n) for n in counts.values],
                   _text("tags_title", lang_, day=day), _text("x_tags", lang_), lang_)
        _written(charts.save(fig, chart), lang_, "chart_written")


@command
def realisation(
    as_of: AsOfOpt = None,
    out: OutOpt = Path("realisation.xlsx"),
    unused_out: Annotated[
        Path | None, typer.Option("--unused-out", help="Also write the purchases not used in time (.xlsx, .csv, .parquet).")
    ] = None,
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Value realisation index (价值实现指数): are courses, memberships and items being used?

    Writes one row per user with usage-bearing purchases: the index 0-100, its parts and a reason.
    """
    lang_ = check_lang(lang)
    export.check_path(out)
    if unused_out is not None:
        export.check_path(unused_out)
    if chart is not None:
        charts.check_path(chart)
    with open_workspace(workspace, config) as ws:
        rules = ws.settings.realisation
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress:
            task = progress.add_task(f"realisation as of {day}", total=2)
            usage = purchase_usage(ws.table("orders"), ws.table("order_items"), ws.table("events"),
                                   as_of=day, clock=_clock(ws), rules=rules)
            frame = realisation_index(usage).order_by("user_id").to_pandas()
            unused = unused_purchases(usage).to_pandas()
            progress.advance(task)
            other = "en" if lang_ == "zh" else "zh"
            frame = frame.drop(columns=[f"realisation_reason_{other}"]).rename(
                columns={f"realisation_reason_{lang_}": "realisation_reason"})
            opts = dict(lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            export.write_table(frame, out, **opts)
            if unused_out is not None:
                export.write_table(unused, unused_out, **opts)
            progress.advance(task)
    index = frame["realisation_index"]
    bands = [(f"{lo}-{hi}", int(((index >= lo) & ((index < hi) | (hi == 100))).sum())) for lo, hi in _INDEX_BANDS]
    bands.append((_text("pending_only", lang_), int(index.isna().sum())))
    view = Table(title=_text("real_title", lang_, day=day),
                 caption=_text("real_note", lang_, mean=f"{index.mean():.1f}" if index.notna().any() else "n/a",
                               unused=len(unused), days=rules.unused_after_days))  # fmt: skip
    for key in ("band", "users", "share"):
        view.add_column(_text(key, lang_) if key != "share" else "%", justify="right")
    for name, n in bands:
        view.add_row(name, f"{n:,}", f"{n / len(frame):.1%}" if len(frame) else "")
    console.print(view)
    _written(out, lang_)
    if unused_out is not None:
        _written(unused_out, lang_)
    if chart is not None:
        fig = _bar([b for b, _ in bands], [n for _, n in bands], _text("real_title", lang_, day=day),
                   _text("x_index", lang_), lang_)
        _written(charts.save(fig, chart), lang_, "chart_written")


def _read_predictions(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"--predictions {path}: no such file", zh=f"--predictions {path}：文件不存在")
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"user_id": str}, encoding="utf-8-sig")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".xlsx":
        return pd.read_excel(path, dtype={"user_id": str})
    raise InputError(f"--predictions {path}: use a .csv, .parquet or .xlsx file",
                     zh=f"--predictions {path}：请使用 .csv、.parquet 或 .xlsx 文件")


@command
def density(
    as_of: AsOfOpt = None,
    out: OutOpt = Path("density.xlsx"),
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="A file with user_id and the value column (from `userstrata predict`).")
    ] = None,
    value_col: Annotated[str, typer.Option("--value-col", help="The predicted value column.")] = "clv",
    chart: ChartOpt = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Activity density x value (行为密度×价值预期): recent active days against expected value.

    Writes each user's cell; prints the grid with counts and shares.
    """
    lang_ = check_lang(lang)
    export.check_path(out)
    if chart is not None:
        charts.check_path(chart)
    pred = _read_predictions(predictions) if predictions is not None else None
    with open_workspace(workspace, config) as ws:
        rules = ws.settings.density
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress:
            task = progress.add_task(f"density as of {day}", total=2)
            activity = active_days(ws.table("orders"), ws.table("events"), as_of=day, clock=_clock(ws), rules=rules)
            grid = density_grid(ws.profile(day), activity, rules=rules, predictions=pred, value_col=value_col)
            frame = grid.order_by("user_id").to_pandas()
            result = DensityGrid.from_counts(density_counts(grid).to_pandas(), rules)
            progress.advance(task)
            other = "en" if lang_ == "zh" else "zh"
            frame = frame.drop(columns=[f"cell_{other}"]).rename(columns={f"cell_{lang_}": "cell_name"})
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            progress.advance(task)
    _print_grid(result, day, lang_, by_clv=pred is not None)
    _written(out, lang_)
    if chart is not None:
        _written(charts.save(result.figure(day, lang_), chart), lang_, "chart_written")


def _print_grid(result: DensityGrid, day: dt_.date, lang: str, *, by_clv: bool) -> None:
    users, shares = result.matrix(lang, "users"), result.matrix(lang, "share")
    caption = _text("value_by", lang, by=_text("by_clv" if by_clv else "by_monetary", lang))
    view = Table(title=_text("density_title", lang, day=day), caption=caption)
    view.add_column(_text("density_rows", lang, days=result.rules.window_days))
    for col in users.columns:
        view.add_column(escape(col), justify="right")
    for label, row in users.iterrows():
        view.add_row(escape(label), *[f"{int(n):,} ({s:.0%})" for n, s in zip(row, shares.loc[label])])
    console.print(view)
    actions = result.cells[(result.cells.users > 0) & (result.cells[f"action_{lang}"] != "")]
    for r in actions.itertuples(index=False):
        line(escape(f"{getattr(r, f'name_{lang}')}: {r.users:,} — {getattr(r, f'action_{lang}')}"))
