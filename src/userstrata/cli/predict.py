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
from userstrata.cli.output import (
    line,
    localize_columns,
    print_backtest,
    print_frame,
    print_model_choice,
    print_predictions,
)
from userstrata.cli.profile import AsOfOpt, OutOpt

MODELS = ("auto", "bgnbd", "pareto", "mbgnbd")  # as models.predict.MODEL_OPTIONS (kept light: no import)
ACTIVITIES = ("purchase", "any")
ModelOpt = Annotated[str, typer.Option(
    help="Purchase model: auto (the lowest BIC of BG/NBD, MBG/NBD and Pareto/NBD), bgnbd, pareto or mbgnbd.")]
ActivityOpt = Annotated[str, typer.Option(help="What counts as not churned: purchase (default) or any activity.")]


def stage_progress(progress, lang: str):
    """A ``progress`` callback for ``Workspace.predict``: one bar over its stages (then writing),
    named after the stage under way."""
    from userstrata.models.predict import PREDICT_STAGES  # noqa: PLC0415 - the models load with predict anyway

    stages = (*PREDICT_STAGES, "writing")
    task = progress.add_task(i18n.label(f"stage.{stages[0]}", lang), total=len(stages))

    def report(stage: str) -> None:
        following = stages.index(stage) + 1
        name = stages[following] if following < len(stages) else stage
        progress.update(task, completed=following, description=i18n.label(f"stage.{name}", lang))

    return report


@command
def predict(
    as_of: AsOfOpt = None,
    horizon: Annotated[str, typer.Option(help="How far ahead: 90d, 39w ...")] = "90d",
    model: ModelOpt = "auto",
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
        with progress_bar() as progress, warnings_as_lines(lang_):
            report = stage_progress(progress, lang_)
            frame = ws.predict(day, horizon_days=days, model=model, activity=activity, with_profile=True, lang=lang_,
                               progress=report)
            ws.snapshot(day, frame=frame)
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            report("writing")
    print_model_choice(frame, lang_)
    print_predictions(frame, days, lang_)
    line(f"{i18n.label('profile_written', lang_)}: [bold]{escape(str(out))}[/] ({len(frame):,} users, as of {day})")


@command
def backtest(
    cutoff: Annotated[str, typer.Option(help=f"Fit on history up to this day ({DATE_HELP}).")],
    horizon: Annotated[str, typer.Option(help="Holdout length after the cutoff: 90d, 39w ...")] = "90d",
    model: ModelOpt = "auto",
    churn_horizon: Annotated[str | None, typer.Option(help="Churn label window (default: --horizon).")] = None,
    activity: ActivityOpt = "purchase",
    out: Annotated[Path, typer.Option(help="Folder for the plots and tables.")] = Path("backtest"),
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Split history at the cutoff, predict the holdout and report honest accuracy.

    Also tracks the cohort of buyers: actual vs expected repeat transactions per day and
    week over both periods (tracking.csv and the tracking.png chart).
    """
    lang_ = check_lang(lang)
    days = parse_horizon(horizon)
    churn_days = parse_horizon(churn_horizon, "--churn-horizon") if churn_horizon else None
    check_choice(model, "--model", MODELS)
    check_choice(activity, "--activity", ACTIVITIES)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, cutoff, "--cutoff")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"backtest {day} + {days} days", total=1)
            result = ws.backtest(day, horizon_days=days, model=model, out_dir=out, activity=activity,
                                 churn_horizon_days=churn_days, lang=lang_)
            progress.advance(task)
    out.mkdir(parents=True, exist_ok=True)
    result.per_user.to_csv(out / "per_user.csv", index=False)
    result.by_frequency.to_csv(out / "by_frequency.csv", index=False)
    # one row per day: the cohort's actual and expected repeat transactions (the tracking chart's data)
    result.tracking.to_csv(out / "tracking.csv", index=False)
    # the horizon actually scored: cut to the days in the data, with a warning, when it ran past them
    title = i18n.label("backtest.title", lang_).format(
        day=day, days=f"{result.metrics['horizon_days']:.0f}", model=result.purchase_model["name"])
    print_backtest(result, title, lang_)
    reason = result.purchase_model["reason_zh" if lang_ == "zh" else "reason_en"]
    line(escape(f"{i18n.label('purchase_model', lang_)}{'：' if lang_ == 'zh' else ': '}{reason}"))
    line(f"{escape(i18n.label('backtest.tables', lang_))} [bold]{escape(str(out))}[/]")


@command
def covariates(
    as_of: AsOfOpt = None,
    columns: Annotated[str, typer.Option(help="Comma-separated: channel, first_order_value.")] = "channel,first_order_value",
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Which static traits drive purchasing and dropout (BG/NBD with covariates).

    A trait is kept only when it improves the log-likelihood of held-out buyers; the kept
    coefficients are shown with standard errors.
    """
    lang_ = check_lang(lang)
    names = tuple(c.strip() for c in columns.split(",") if c.strip())
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(i18n.label("stage.purchase_model", lang_), total=1)
            result = ws.purchase_covariates(day, columns=names)
            progress.advance(task)
    line(escape(result.reason(lang_)))
    if len(result.coefficients):
        print_frame(localize_columns(result.coefficients, lang_), i18n.label("covariates_title", lang_).format(day=day))
