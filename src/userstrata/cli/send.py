"""Delivery (投放): the plan's contacts POSTed to a webhook, each contact once (docs/delivery.md)."""

from __future__ import annotations

import datetime as dt_
import functools
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from userstrata import i18n
from userstrata.cli._app import (
    DATE_HELP,
    DEFAULT_WORKSPACE_PATH,
    ConfigOpt,
    LangOpt,
    WorkspaceOpt,
    check_lang,
    command,
    console,
    open_workspace,
    parse_date,
    progress_bar,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.cli.plan import _CONTACT_HEADERS, _unsubscribes
from userstrata.errors import InputError

TRANSPORTS = ("webhook",)
_TEXT: dict[str, tuple[str, str]] = {
    "title": ("投放结果（{url}）", "Delivery ({url})"),
    "what": ("项目", "What"),
    "contacts": ("触达数", "Contacts"),
    "sent": ("本次已发送", "sent now"),
    "skipped": ("此前已发送，跳过", "skipped: sent before"),
    "holdout": ("对照组，已记录不发送", "holdout: recorded, not sent"),
    "failed": ("发送失败", "failed"),
    "pending": ("未发送（已中止）", "not tried (run stopped)"),
    "would": ("将发送（试运行，未发送）", "would be sent (dry run, nothing sent)"),
    "batches": ("批次 {batches:,}，请求 {requests:,}（含重试）", "{batches:,} batches, {requests:,} requests (retries included)"),
    "reason": ("失败原因：{reason}（{n:,} 条）", "failed because: {reason} ({n:,})"),
    "sample": ("第一条触达的报文：", "The first contact's payload:"),
    "nothing": ("没有待发送的触达：计划中的触达都已发送过或不需发送。",
                "Nothing to send: every contact of the plan was sent before or is not to be sent."),
    "progress": ("投放", "sending"),
}
_t = functools.partial(i18n.pick, _TEXT)
_STATUS_BACK = {"计划": "planned", "顺延": "moved", "不发": "dropped"}


def _header_key(header: str) -> str:
    """A plan file's header (machine name, or the zh/en header `plan --out` wrote) -> machine name."""
    text = str(header).strip().lstrip("'")
    for key, names in _CONTACT_HEADERS.items():
        if text == key or text in names or any(text.startswith(n + " (") for n in names):
            return key
    return text


def read_plan(path: Path) -> pd.DataFrame:
    """The contacts of a plan file written by ``userstrata plan --out`` (.parquet, .csv, .xlsx)."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".xlsx"):
        raise InputError(f"--plan {path}: use a .parquet, .csv or .xlsx file written by `userstrata plan --out`",
                         zh=f"--plan {path}：请使用 `userstrata plan --out` 导出的 .parquet、.csv 或 .xlsx 文件")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"--plan {path}: no such file", hint="write one with `userstrata plan --out plan.parquet`",
                         zh=f"--plan {path}：文件不存在", hint_zh="可先用 `userstrata plan --out plan.parquet` 导出计划") from None
    frame = frame.rename(columns=_header_key)
    if suffix != ".parquet":  # people's files: statuses and channels in words, quoted formulas
        from userstrata.activate.plan import CHANNEL_ZH  # noqa: PLC0415

        channel_back = {zh: code for code, zh in CHANNEL_ZH.items()}
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].map(lambda v: v[1:] if isinstance(v, str) and v[:2] in {"'=", "'+", "'-", "'@"}
                                            else v)
        if "status" in frame.columns:
            frame["status"] = frame["status"].map(lambda s: _STATUS_BACK.get(s, s))
        if "channel" in frame.columns:
            frame["channel"] = frame["channel"].map(lambda c: channel_back.get(c, c))
    if "send_at" in frame.columns:
        try:
            frame["send_at"] = pd.to_datetime(frame["send_at"])
        except (ValueError, TypeError):
            raise InputError(f"--plan {path}: the send_at column holds values that are not times",
                             hint="use the file as `userstrata plan --out` wrote it",
                             zh=f"--plan {path}：发送时间列中有无法识别的时间",
                             hint_zh="请直接使用 `userstrata plan --out` 导出的文件") from None
        if getattr(frame["send_at"].dt, "tz", None) is not None:
            frame["send_at"] = frame["send_at"].dt.tz_localize(None)  # already shop time
    return frame


def _channels(only: str | None) -> list[str] | None:
    if not only:
        return None
    from userstrata.activate.plan import CHANNEL_ZH  # noqa: PLC0415

    chosen = [c.strip() for c in only.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CHANNEL_ZH]
    if unknown:
        raise InputError(f"--only {only!r}: unknown channel {', '.join(unknown)}; use {', '.join(CHANNEL_ZH)}",
                         zh=f"--only {only!r}：未知渠道 {'、'.join(unknown)}；可选 {', '.join(CHANNEL_ZH)}")
    return chosen


def _print_report(report: Any, url: str, lang: str) -> None:
    view = Table(title=_t("title", lang).format(url=url))
    view.add_column(_t("what", lang))
    view.add_column(_t("contacts", lang), justify="right")
    rows = [("would" if report.dry_run else "sent", report.pending if report.dry_run else report.sent),
            ("skipped", report.skipped), ("holdout", report.holdout), ("failed", report.failed)]
    if report.pending and not report.dry_run:
        rows.append(("pending", report.pending))
    for key, n in rows:
        view.add_row(_t(key, lang), f"{n:,}")
    console.print(view)
    if not report.dry_run:
        line(escape(_t("batches", lang).format(batches=report.batches, requests=report.requests)))
    for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        line(escape(_t("reason", lang).format(reason=reason, n=n)))
    if report.dry_run and report.sample is not None:
        import json  # noqa: PLC0415

        line(escape(_t("sample", lang)))
        console.print_json(json.dumps(report.sample, ensure_ascii=False))
    if not report.dry_run and not (report.sent or report.failed or report.pending):
        line(escape(_t("nothing", lang)))


@command
def send(
    channel: Annotated[str, typer.Option("--channel", help="Transport: webhook (POST JSON batches to --url).")],
    url: Annotated[str | None, typer.Option("--url", help="The receiver, e.g. https://push.example.com/hooks.")] = None,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="A plan written by `userstrata plan --out` "
                                                   "(.parquet, .csv, .xlsx); else the plan is built here.")] = None,
    date: Annotated[str | None, typer.Option("--date", help=f"First day of the plan to build, {DATE_HELP}; "
                                             "default: the day after the last day in the data.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=92, help="Days the plan covers.")] = 7,
    only: Annotated[str | None, typer.Option("--only", help="Only these plan channels, e.g. sms,wecom "
                                             "(default: every channel).")] = None,
    unsubscribes: Annotated[Path | None, typer.Option(
        "--unsubscribes", help="CSV/Parquet of user_id, channel [, subscribed], as for `plan`.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000, help="Contacts per POST.")] = 100,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")] = 5.0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=20, help="Retries of a batch (5xx, 429, "
                                         "timeouts, connection errors).")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", min=0.0, help="First pause between retries, seconds "
                                           "(doubles each time).")] = 0.5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send and log nothing.")] = False,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Send the plan's contacts to a webhook in batches, with retries, an idempotency key per
    contact and a delivery log: re-running or resuming after a crash sends nothing twice."""
    from userstrata.activate.deliver import check_url, history_for_resend, send_contacts  # noqa: PLC0415

    lang_ = check_lang(lang)
    if channel not in TRANSPORTS:
        raise InputError(f"--channel {channel!r}: the transport must be one of {', '.join(TRANSPORTS)}",
                         hint="plan channels (sms, wecom...) are chosen with --only",
                         zh=f"--channel {channel!r}：投放方式只能是 {', '.join(TRANSPORTS)}",
                         hint_zh="计划里的渠道（sms、wecom 等）用 --only 选择")  # fmt: skip
    if url is None:
        raise InputError("--channel webhook needs --url", hint="e.g. --url https://push.example.com/hooks/contacts",
                         zh="--channel webhook 需要 --url", hint_zh="例如 --url https://push.example.com/hooks/contacts")
    check_url(url)
    if plan_file is not None and date is not None:
        raise InputError("give --plan or --date, not both", zh="--plan 和 --date 只能给一个")
    chosen = _channels(only)
    contacts = read_plan(plan_file) if plan_file is not None else None
    opted = _unsubscribes(unsubscribes)
    with open_workspace(workspace, config) as ws:
        window = None
        if contacts is None:
            from userstrata.activate.plan import make_plan  # noqa: PLC0415

            start = parse_date(date, "--date") if date else ws.latest_date() + dt_.timedelta(days=1)
            window = (start, days)
            with warnings_as_lines(lang_):
                history = history_for_resend(ws.store, ws._touches(), start, days)
                contacts = make_plan(**ws._inputs(), profile=ws.profile(start - dt_.timedelta(days=1)),
                                     touches=history, start=start, days=days, unsubscribes=opted).contacts
        with progress_bar() as progress:
            task = progress.add_task(_t("progress", lang_), total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = send_contacts(ws.store, contacts, url=url, timezone=ws.settings.timezone, channels=chosen,
                                   batch_size=batch_size, timeout_s=timeout, retries=retries, backoff_s=backoff,
                                   plan_window=window, dry_run=dry_run, progress=advance)
    _print_report(report, url, lang_)
    if report.stopped:
        raise InputError(
            f"{url} did not acknowledge a batch ({report.stopped}); stopped with {report.pending:,} contacts not tried",
            hint="check that the receiver is up, then run the same command again: sent contacts are skipped, "
                 "failed ones are retried",
            zh=f"{url} 未确认一批触达（{report.stopped}）；已中止，{report.pending:,} 条未发送",
            hint_zh="请确认接收方正常后重新运行同一命令：已发送的会跳过，失败的会重发",
        )  # fmt: skip
