"""Predictions on top of the profile, and the backtest that says how far to trust them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from userstrata import export, i18n
from userstrata.cli._app import (
    DATE_HELP,
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_choice,
    check_lang,
    command,
    day_or_latest,
    open_workspace,
    parse_horizon,
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import line, print_backtest, print_predictions
from userstrata.cli.profile import AsOfOpt, OutOpt

MODELS = ("bgnbd", "pareto", "mbgnbd")
ACTIVITIES = ("purchase", "any")
ModelOpt = Annotated[str, typer.Option(help="Purchase model: bgnbd, pareto or mbgnbd.")]
ActivityOpt = Annotated[str, typer.Option(help="What counts as not churned: purchase (default) or any activity.")]


@command
def predict(
    as_of: AsOfOpt = None,
    horizon: Annotated[str, typer.Option(help="How far ahead: 90d, 39w ...")] = "90d",
    model: ModelOpt = "bgnbd",
    activity: ActivityOpt = "purchase",
    out: OutOpt = Path("profiles.xlsx"),
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Add predictions to the profile: P(alive), CLV with interval, churn risk with reasons.

    Also expected purchases and spend over the horizon and the days to the next purchase.
    """
    lang_ = check_lang(lang)
    export.check_path(out)
    days = parse_horizon(horizon)
    check_choice(model, "--model", MODELS)
    check_choice(activity, "--activity", ACTIVITIES)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines():
            task = progress.add_task(f"predicting {days} days after {day}", total=2)
            frame = ws.predict(day, horizon_days=days, model=model, activity=activity, with_profile=True, lang=lang_)
            progress.advance(task)
            ws.store.save_profiles(frame, day)
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            progress.advance(task)
    print_predictions(frame, days, lang_)
    line(f"{i18n.label('profile_written', lang_)}: [bold]{escape(str(out))}[/] ({len(frame):,} users, as of {day})")


@command
def backtest(
    cutoff: Annotated[str, typer.Option(help=f"Fit on history up to this day ({DATE_HELP}).")],
    horizon: Annotated[str, typer.Option(help="Holdout length after the cutoff: 90d, 39w ...")] = "90d",
    model: ModelOpt = "bgnbd",
    churn_horizon: Annotated[str | None, typer.Option(help="Churn label window (default: --horizon).")] = None,
    activity: ActivityOpt = "purchase",
    out: Annotated[Path, typer.Option(help="Folder for the plots and tables.")] = Path("backtest"),
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Split history at the cutoff, predict the holdout and report honest accuracy."""
    days = parse_horizon(horizon)
    churn_days = parse_horizon(churn_horizon, "--churn-horizon") if churn_horizon else None
    check_choice(model, "--model", MODELS)
    check_choice(activity, "--activity", ACTIVITIES)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, cutoff, "--cutoff")
        with progress_bar() as progress, warnings_as_lines():
            task = progress.add_task(f"backtest {day} + {days} days", total=1)
            result = ws.backtest(day, horizon_days=days, model=model, out_dir=out, activity=activity,
                                 churn_horizon_days=churn_days)
            progress.advance(task)
    out.mkdir(parents=True, exist_ok=True)
    result.per_user.to_csv(out / "per_user.csv", index=False)
    result.by_frequency.to_csv(out / "by_frequency.csv", index=False)
    # the horizon actually scored: cut to the days in the data, with a warning, when it ran past them
    print_backtest(result, f"backtest: cutoff {day}, horizon {result.metrics['horizon_days']:.0f} days, model {model}")
