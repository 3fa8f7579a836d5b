"""Early warnings (流失预警): evaluate the rules of userstrata.toml as of a day, keep and list alerts."""

from __future__ import annotations

import functools

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
    check_choice,
    check_lang,
    command,
    console,
    day_or_latest,
    open_workspace,
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.cli.profile import AsOfOpt

_TEXT: dict[str, tuple[str, str]] = {
    "counts": ("未关闭预警（{day}）", "Open alerts ({day})"),
    "top": ("优先处理的预警（前 {n} 条）", "Alerts to act on first (top {n})"),
    "rule": ("规则", "Rule"),
    "severity": ("严重程度", "Severity"),
    "alerts": ("条数", "Alerts"),
    "subject": ("对象", "Subject"),
    "tier": ("层级", "Tier"),
    "since": ("起始", "Since"),
    "opened_on": ("开启于", "Opened"),
    "closed_on": ("关闭于", "Closed"),
    "last_seen_on": ("最近命中", "Last seen"),
    "seen": ("观察到的情况", "What was seen"),
    "none": ("没有未关闭的预警。", "No open alerts."),
    "written": ("预警已写入", "Alerts written to"),
}


_text = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _localised(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    from userstrata.measure.alerts import SEVERITY_LABELS, rule_label  # noqa: PLC0415

    out = pd.DataFrame({
        _text("rule", lang): [rule_label(r, lang) for r in frame["rule"]],
        _text("severity", lang): [SEVERITY_LABELS[s][0 if lang == "zh" else 1] for s in frame["severity"]],
        _text("subject", lang): frame["subject"],
        _text("tier", lang): [i18n.label(t, lang) if isinstance(t, str) else "" for t in frame["tier"]],
        _text("seen", lang): frame["seen_zh" if lang == "zh" else "seen_en"],
        _text("since", lang): frame["since"],
        _text("opened_on", lang): frame["opened_on"],
        _text("last_seen_on", lang): frame["last_seen_on"],
        _text("closed_on", lang): frame["closed_on"],
    })  # fmt: skip
    return out


def print_alerts(report: Any, shown: pd.DataFrame, day: Any, top: int, lang: str) -> None:
    """The run's summary, the open alerts counted by rule and severity, and the first ``top``."""
    from userstrata.measure.alerts import SEVERITY_LABELS, rule_label  # noqa: PLC0415

    lang_ = lang
    line(escape(report.summary(lang_)))
    if not len(shown):
        line(_text("none", lang_))
    else:
        counts = shown.groupby(["rule", "severity"]).size().reset_index(name="n")
        view = Table(title=_text("counts", lang_).format(day=day))
        for key in ("rule", "severity", "alerts"):
            view.add_column(_text(key, lang_), justify="right" if key == "alerts" else "left")
        for r in counts.itertuples(index=False):
            view.add_row(escape(rule_label(r.rule, lang_)), SEVERITY_LABELS[r.severity][0 if lang_ == "zh" else 1],
                         f"{r.n:,}")
        console.print(view)
        head = shown.head(top)
        view = Table(title=_text("top", lang_).format(n=len(head)))
        for key in ("severity", "rule", "subject", "tier", "seen"):
            view.add_column(_text(key, lang_), overflow="fold", no_wrap=key != "seen")
        for r in head.itertuples(index=False):
            view.add_row(
                SEVERITY_LABELS[r.severity][0 if lang_ == "zh" else 1], escape(rule_label(r.rule, lang_)),
                escape(r.subject), escape(i18n.label(r.tier, lang_) if isinstance(r.tier, str) else ""),
                escape(r.seen_zh if lang_ == "zh" else r.seen_en),
            )  # fmt: skip
        console.print(view)


@command
def alerts(
    as_of: AsOfOpt = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Show only this rule's alerts.")] = None,
    open_only: Annotated[bool, typer.Option("--open-only", help="List open alerts only (in --out).")] = False,
    top: Annotated[int, typer.Option("--top", min=0, help="Alerts shown in the terminal.")] = 20,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the alerts to .xlsx, .csv or .parquet.")]
    = None,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Early warnings (流失预警): evaluate the alert rules as of a day and keep the alerts.

    A finding that still holds keeps its alert, a new one opens an alert, an alert that no
    longer holds is closed on the day. Evaluating a day again adds nothing; a day before the
    last one evaluated is refused.
    """
    from userstrata.measure.alerts import RULES, evaluate_alerts, list_alerts  # noqa: PLC0415

    lang_ = check_lang(lang)
    if rule is not None:
        check_choice(rule, "--rule", RULES)
    if out is not None:
        export.check_path(out)
    with open_workspace(workspace, config) as ws:
        day = day_or_latest(ws, as_of, "--as-of")
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"alerts as of {day}", total=1)
            report = evaluate_alerts(ws.store, day, ws.settings)
            progress.advance(task)
        listed = list_alerts(ws.store, rule=rule)
        shown = listed[listed["closed_on"].isna()]
        print_alerts(report, shown, day, top, lang_)
        if out is not None:
            frame = shown if open_only else listed
            if export.for_people(out):
                frame = _localised(frame, lang_)
            export.write_table(frame, out, lang=lang_, timezone=ws.settings.timezone, currency=ws.settings.currency)
            line(f"{_text('written', lang_)}: [bold]{escape(str(out))}[/] ({len(frame):,})")
