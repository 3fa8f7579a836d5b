"""Change over time: profile snapshots and tier / lifecycle / RFM-cell migration between dates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from userstrata import charts, export, i18n
from userstrata.errors import InputError
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
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import cell, line
from userstrata.cli.profile import AsOfOpt
from userstrata.segments.migration import GONE, forecast_chart, migration_sankey

BY = ("tier", "lifecycle", "rfm_cell")


@command
def snapshot(
    as_of: AsOfOpt = None,
    start: Annotated[str | None, typer.Option("--from", help=f"Back-fill from this day ({DATE_HELP}).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="... to this day (default: the last day in the data).")] = None,
    every: Annotated[str, typer.Option(help="With --from: 1w, 2w, 1mo or 1q.")] = "1mo",
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Store the profile of a day as a snapshot (re-running a day replaces it), or back-fill a series."""
    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        if start is None:
            day = day_or_latest(ws, as_of, "--as-of")
            with warnings_as_lines(lang_):
                report = ws.snapshot(day)
            line(escape(report.summary(lang_)))
            return
        first = day_or_latest(ws, start, "--from")
        last = day_or_latest(ws, end, "--to")
        from userstrata.segments.snapshots import snapshot_dates

        days = snapshot_dates(first, last, every)
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(i18n.label("snapshots.backfill", lang_), total=len(days))
            reports = ws.snapshot_series(first, last, every, progress=lambda _: progress.advance(task))
    for report in reports:
        line(escape(report.summary(lang_)))


@command
def snapshots(
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """List the snapshots kept, with their rows and the settings they were made under."""
    lang_ = check_lang(lang)
    with open_workspace(workspace, config) as ws:
        frame = ws.snapshots()
    if len(frame) == 0:
        line(escape(i18n.label("snapshots.none", lang_)))
        return
    view = Table(title=i18n.label("snapshots.title", lang_))
    for col in ("as_of", "rows", "settings_fingerprint", "current_settings", "saved_at"):
        view.add_column(i18n.label(f"snapshots.col.{col}", lang_), justify="right" if col == "rows" else "left")
    for row in frame.itertuples(index=False):
        view.add_row(str(row.as_of), f"{row.rows:,}", str(row.settings_fingerprint),
                     i18n.label("yes" if row.current_settings else "no", lang_), cell(row.saved_at))
    console.print(view)


@command
def migration(
    start: Annotated[str, typer.Option("--from", help=f"The earlier day ({DATE_HELP}).")],
    end: Annotated[str | None, typer.Option("--to", help="The later day (default: the last day in the data).")] = None,
    by: Annotated[str, typer.Option(help="tier, lifecycle or rfm_cell.")] = "tier",
    out: Annotated[Path | None, typer.Option(help="Also write every user who moved, with both states (.xlsx, .csv).")] = None,
    every: Annotated[str | None, typer.Option(help="Also period by period (1mo, 1q ...) with the annual rate.")] = None,
    forecast: Annotated[int | None, typer.Option(min=1, help="With --every: project the shares this many periods ahead (Markov).")] = None,
    chart: Annotated[Path | None, typer.Option(help="Write the Sankey chart (.html or .png); with --forecast also FILE_forecast.")] = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Who moved between tiers (or lifecycle stages, RFM cells) from one day to another."""
    lang_ = check_lang(lang)
    check_choice(by, "--by", BY)
    if out is not None:
        export.check_path(out)
    if chart is not None:
        charts.check_path(chart)
    with open_workspace(workspace, config) as ws:
        first = day_or_latest(ws, start, "--from")
        last = day_or_latest(ws, end, "--to")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(i18n.label("migration.computing", lang_), total=1)
            result = ws.migration(first, last, by=by)
            series = ws.migration_series(first, last, every, by=by) if every else None
            if forecast is not None:
                if not every:
                    raise InputError("--forecast needs --every: the period the forecast steps by",
                                     hint="e.g. --every 1q --forecast 4")
                ahead = ws.migration_forecast(first, last, every, periods=forecast, by=by)
            progress.advance(task)
        if out is not None:
            export.write_table(result.moves, out, lang=lang_, timezone=ws.settings.timezone,
                               currency=ws.settings.currency)
    print_migration(result, first, last, lang_)
    if series is not None and len(series):
        print_series(series, every, lang_)
    if forecast is not None:
        print_forecast(ahead, forecast, every, lang_)
    if out is not None:
        line(f"{escape(i18n.label('migration.written', lang_))}: [bold]{escape(str(out))}[/] ({len(result.moves):,})")
    if chart is not None:
        written = [charts.save(migration_sankey(result, start=first, end=last, lang=lang_), chart)]
        if forecast is not None:
            written.append(charts.save(forecast_chart(ahead, every=every, lang=lang_),
                                       chart.with_name(f"{chart.stem}_forecast{chart.suffix}")))
        for path in written:
            line(f"{escape(i18n.label('migration.chart_written', lang_))}: [bold]{escape(str(path))}[/]")


def _state_name(state: str, lang: str) -> str:
    """A tier / stage / cell in ``lang``; the (new) and (gone) rows too."""
    return i18n.label(f"migration.{state.strip('()')}", lang) if state.startswith("(") else i18n.label(state, lang)


def print_migration(result, first, last, lang: str) -> None:
    """The from -> to matrices (users, row shares) and who moved up or down."""
    t = i18n.label
    for frame, title, fmt in ((result.counts, "migration.counts_title", "{:,}"),
                              (result.shares, "migration.shares_title", "{:.1%}")):
        view = Table(title=t(title, lang).format(start=first, end=last))
        view.add_column(t("migration.from_to", lang), no_wrap=True)
        for col in frame.columns:
            view.add_column(_state_name(col, lang), justify="right")
        for state, row in frame.iterrows():
            view.add_row(_state_name(state, lang), *(fmt.format(v) for v in row))
        console.print(view)
    line(escape(t("migration.summary", lang).format(
        changed=result.changed_share, up=result.upgrades, down=result.downgrades)))


def print_series(series, every: str, lang: str) -> None:
    """Migration period by period and the annual rate it implies."""
    t = i18n.label
    view = Table(title=t("migration.series_title", lang).format(every=every))
    for col in ("start", "end", "changed_share", "upgrades", "downgrades"):
        view.add_column(t(f"migration.col.{col}", lang), justify="left" if col in ("start", "end") else "right")
    for row in series.itertuples(index=False):
        view.add_row(str(row.start), str(row.end), f"{row.changed_share:.1%}", f"{row.upgrades:,}", f"{row.downgrades:,}")
    console.print(view)
    line(escape(t("migration.annual", lang).format(rate=series.attrs["annual_rate"])))


def print_forecast(ahead, periods: int, every: str, lang: str) -> None:
    """Projected shares with their intervals, the matrix's stability and the forecast's backtest."""
    t = i18n.label
    view = Table(title=t("migration.forecast_title", lang).format(n=periods, every=every))
    view.add_column(t("migration.periods_ahead", lang), justify="right")
    for col in ahead.shares.columns:
        view.add_column(_state_name(col, lang), justify="right")
    for k in ahead.shares.index:
        view.add_row(str(k), *(f"{ahead.shares.loc[k, c]:.1%}\n{100 * ahead.low.loc[k, c]:.1f}-"
                               f"{100 * ahead.high.loc[k, c]:.1f}" for c in ahead.shares.columns))  # fits 80
    console.print(view)
    line(escape(t("migration.stability", lang).format(stability=ahead.stability)))
    if ahead.backtest:
        line(escape(t("migration.forecast_backtest", lang).format(**ahead.backtest)))
    if ahead.counts is None:
        return
    view = Table(title=t("migration.open_title", lang).format(n=periods, every=every))
    view.add_column(t("migration.periods_ahead", lang), justify="right")
    for col in ahead.counts.columns:
        view.add_column(_state_name(col, lang), justify="right")
    for k in ahead.counts.index:
        view.add_row(str(k), *(f"{ahead.counts.loc[k, c]:,.0f}" for c in ahead.counts.columns))
    console.print(view)
    sep = "、" if lang == "zh" else ", "
    named = lambda values, fmt: sep.join(f"{_state_name(s, lang)} {fmt.format(v)}" for s, v in values)  # noqa: E731
    line(escape(t("migration.entries", lang).format(items=named(ahead.entries.items(), "{:,.0f}"))))
    line(escape(t("migration.exits", lang).format(items=named(ahead.flows[GONE].items(), "{:.1%}"))))
    if ahead.absorbing:
        line(escape(t("migration.absorbing", lang).format(items=sep.join(_state_name(s, lang) for s in ahead.absorbing))))
    if ahead.reentry:
        line(escape(t("migration.reentry", lang).format(items=named(ahead.reentry.items(), "{:.1%}"))))
