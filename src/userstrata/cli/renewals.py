"""Membership renewals (会员续费): the sBG fit per plan and each member's odds of renewing."""

from __future__ import annotations

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

# alpha, beta and the 3rd renewal stay in Workspace.renewals().fits: seven columns fit 80
_FIT_COLUMNS = ("plan", "term_days", "members", "current_members", "retention_1", "retention_2", "derl_new")
_BACKTEST_COLUMNS = ("model", "terms", "renewed_share", "mean_predicted", "auc", "log_loss")


def _number(value: Any, fmt: str) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return format(value, fmt)


def _print_fits(fits: pd.DataFrame, label, lang: str) -> None:
    view = Table(title=label("renewals.fits_title", lang))
    for col in _FIT_COLUMNS:
        view.add_column(i18n.label(f"renewals.head.{col}", lang), justify="left" if col == "plan" else "right",
                        no_wrap=True)
    for row in fits.itertuples(index=False):
        view.add_row(
            escape(str(row.plan)), f"{row.term_days:,}", f"{row.members:,}", f"{row.current_members:,}",
            _number(row.retention_1, ".1%"), _number(row.retention_2, ".1%"), _number(row.derl_new, ".2f"),
        )  # fmt: skip
    console.print(view)


def _print_backtest(result: Any, label, lang: str, days: int, timezone: str) -> None:
    if len(result.backtest) == 0:
        return
    cutoff = f"{pd.Timestamp(result.backtest_cutoff).tz_localize('UTC').tz_convert(timezone):%Y-%m-%d}"
    view = Table(title=label("renewals.backtest_title", lang).format(cutoff=cutoff, days=days))
    for col in _BACKTEST_COLUMNS:
        view.add_column(label(f"col.{col}", lang), justify="left" if col == "model" else "right")
    for row in result.backtest.itertuples(index=False):
        view.add_row(
            label(f"model.{row.model}", lang), f"{row.terms:,}", _number(row.renewed_share, ".1%"),
            _number(row.mean_predicted, ".1%"), _number(row.auc, ".3f"), _number(row.log_loss, ".3f"),
        )  # fmt: skip
    console.print(view)


@command
def renewals(
    as_of: AsOfOpt = None,
    out: OutOpt = Path("renewals.xlsx"),
    chart: Annotated[Path | None, typer.Option(help="Also draw the survival curves per plan (.png).")] = None,
    backtest_days: Annotated[int, typer.Option(min=1, help="Backtest window: terms ending in these days.")] = 30,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Membership renewals: sBG retention per plan, P(renew) and residual value per member.

    Plans and term lengths come from [renewals.plans] in userstrata.toml.
    """
    from userstrata.models.renewal_data import plot_renewal_curves

    lang_ = check_lang(lang)
    export.check_path(out)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"renewals as of {day}", total=2)
            result = ws.renewals(day, backtest_days=backtest_days)
            progress.advance(task)
            members = result.members
            if export.for_people(out):  # headers and statuses for people; parquet keeps the codes
                members = members.rename(columns={c: i18n.label(f"col.{c}", lang_) for c in members.columns
                                                  if c != "user_id"})
                members[i18n.label("col.status", lang_)] = result.members["status"].map(
                    lambda s: i18n.label(f"status.{s}", lang_))  # fmt: skip
            export.write_table(members, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            if chart is not None:
                chart.parent.mkdir(parents=True, exist_ok=True)
                plot_renewal_curves(result.curves, lang=lang_).savefig(chart, dpi=120)
            progress.advance(task)
    _print_fits(result.fits, i18n.label, lang_)
    _print_backtest(result, i18n.label, lang_, backtest_days, ws.settings.timezone)
    count = i18n.label("renewals.members_count", lang_).format(n=len(result.members), day=day)
    line(f"{i18n.label('renewals.members_written', lang_)}: [bold]{escape(str(out))}[/] {escape(count)}")
    if chart is not None:
        line(f"{i18n.label('renewals.chart_written', lang_)}: [bold]{escape(str(chart))}[/]")
