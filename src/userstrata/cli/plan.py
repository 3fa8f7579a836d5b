"""The contact plan (触达计划): who gets what, on which channel, when and why."""

from __future__ import annotations

import functools

import datetime as dt_
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from userstrata import export, i18n
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
    warn,
    warnings_as_lines,
)
from userstrata.cli.output import line
from userstrata.activate.plan import CHANNEL_CONTACT, REASON_LABELS, channel_lists
from userstrata.errors import InputError

_TEXT: dict[str, tuple[str, str]] = {
    "title": ("触达计划：{start} 起 {days} 天", "Contact plan: {days} days from {start}"),
    "tier": ("价值层级", "Tier"),
    "channel": ("渠道", "Channel"),
    "status": ("状态", "Status"),
    "reason": ("原因", "Reason"),
    "contacts": ("触达数", "Contacts"),
    "fair_title": ("公平性检查（按层级）", "Fairness (per tier)"),
    "users": ("用户数", "Users"),
    "planned": ("计划触达", "Planned"),
    "reached": ("触达用户", "Reached"),
    "upward": ("上升通道", "Upward\npath"),
    "cap": ("每周上限", "Weekly\ncap"),
    "most": ("单周最多", "Most per\nuser-week"),
    "yes": ("有", "yes"),
    "no": ("无", "no"),
    "top": ("最高层", "top tier"),
    "fair_ok": ("各层级均有上升通道，且都受频次上限保护。", "Every tier has an upward path and is protected by caps."),
    "written": ("触达明细已写入", "Contacts written to"),
    "count": ("（{n:,} 条）", "({n:,} rows)"),
    "no_contact": ("{channel} 名单不含 {field}（{why}）：发送工具须按用户ID匹配",
                   "the {channel} list has no {field} ({why}): the sending tool must match by user_id"),
    "planned_status": ("计划", "planned"),
    "moved_status": ("顺延", "moved"),
    "dropped_status": ("不发", "dropped"),
}
_CONTACT_HEADERS = {
    "user_id": ("用户ID", "User ID"), "tier": ("价值层级", "Tier"), "lifecycle": ("生命周期阶段", "Lifecycle"),
    "playbook": ("策略", "Playbook"), "source": ("人群/触发", "Segment or trigger"), "why": ("原因说明", "Why"),
    "channel": ("渠道", "Channel"), "template": ("模板", "Template"), "offer": ("权益", "Offer"),
    "goal": ("目标", "Goal"), "priority": ("优先级", "Priority"), "send_at": ("发送时间", "Send at"),
    "experiment": ("实验", "Experiment"), "variant": ("实验组", "Variant"), "status": ("状态", "Status"),
    "reason_code": ("原因代码", "Reason code"), "reason": ("未发送/顺延原因", "Dropped or moved because"),
}  # fmt: skip


_t = functools.partial(i18n.pick, _TEXT)  # text in zh or en


def _channel(value: str, lang: str) -> str:
    from userstrata.activate.plan import CHANNEL_ZH  # noqa: PLC0415

    return CHANNEL_ZH.get(value, value) if lang == "zh" else value


def _status(value: str, lang: str) -> str:
    return _t(f"{value}_status", lang) if f"{value}_status" in _TEXT else value


def _print_summary(plan: Any, lang: str) -> None:
    view = Table(title=_t("title", lang).format(start=plan.start, days=plan.days))
    for key in ("tier", "channel", "status", "reason", "contacts"):
        view.add_column(_t(key, lang), justify="right" if key == "contacts" else "left")
    for row in plan.summary.itertuples(index=False):
        code = str(row.reason_code)
        reason = i18n.pick(REASON_LABELS, code, lang) if lang == "zh" and code in REASON_LABELS else code
        view.add_row(escape(i18n.label(row.tier, lang)), escape(_channel(str(row.channel), lang)), _status(row.status, lang),
                     escape(reason), f"{row.contacts:,}")
    console.print(view)


def _print_fairness(plan: Any, lang: str) -> None:
    view = Table(title=_t("fair_title", lang))
    for key in ("tier", "users", "planned", "reached", "upward", "cap", "most"):
        view.add_column(_t(key, lang), justify="left" if key == "tier" else "right")
    for row in plan.fairness.itertuples(index=False):
        upward = _t("top", lang) if row.upward_path is None else _t("yes" if row.upward_path else "no", lang)
        view.add_row(escape(i18n.label(row.tier, lang)), f"{row.users:,}", f"{row.planned:,}",
                     f"{row.users_reached:,}", upward, str(row.weekly_cap), str(row.max_per_user_week))
    console.print(view)
    warnings = plan.warnings(lang)
    for text in warnings:
        warn(text, lang)
    if not warnings:
        line(escape(_t("fair_ok", lang)))


def _readable(contacts: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The contacts for people: one why and one reason column in ``lang``, headers in ``lang``,
    ``send_at`` marked as shop time (zone-aware, so the export does not shift it again)."""
    frame = contacts.drop(columns=["why_zh", "why_en", "reason_zh", "reason_en"], errors="ignore").copy()
    if "why_zh" in contacts.columns:  # a channel's list has no why, reason, status or channel columns
        frame.insert(5, "why", contacts["why_zh" if lang == "zh" else "why_en"].astype(str))
        frame["reason"] = contacts["reason_zh" if lang == "zh" else "reason_en"].astype(str)
    if "status" in frame.columns:
        frame["status"] = frame["status"].astype(str).map(lambda s: _status(s, lang))
    if "channel" in frame.columns:
        frame["channel"] = frame["channel"].astype(str).map(lambda c: _channel(c, lang))
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str)
    return frame.rename(columns={k: (zh if lang == "zh" else en) for k, (zh, en) in _CONTACT_HEADERS.items()})


def _unsubscribes(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise InputError(f"--unsubscribes {path}: no such file", zh=f"--unsubscribes {path}：文件不存在") from None
    missing = {"user_id", "channel"} - set(frame.columns)
    if missing:
        raise InputError(f"--unsubscribes {path}: needs columns user_id, channel (missing {', '.join(sorted(missing))})",
                         zh=f"--unsubscribes {path}：需要 user_id、channel 两列（缺少 {', '.join(sorted(missing))}）")
    if "subscribed" in frame.columns:
        frame["subscribed"] = frame["subscribed"].astype(str).str.lower().isin(["true", "1", "yes", "是"])
    return frame


def _recommend_options(settings) -> dict:
    rules = settings.recommend
    return {"sequences": dict(rules.sequences), "min_support": rules.min_support}


@command
def plan(
    date: Annotated[str | None, typer.Option("--date", help=f"First day of the plan, {DATE_HELP}; "
                                             "default: the day after the last day in the data.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=92, help="Days the plan covers.")] = 7,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the contacts (.xlsx, .csv, .parquet).")] = None,
    unsubscribes: Annotated[Path | None, typer.Option(
        "--unsubscribes", help="CSV/Parquet of user_id, channel (all = every channel) [, subscribed].")] = None,
    items: Annotated[int, typer.Option("--items", min=0, max=10, help="Recommended items per contact (item_1..).")] = 0,
    by_channel: Annotated[bool, typer.Option(
        "--by-channel", help="With --out FILE: one file per channel (FILE-sms.xlsx, ...; .jsonl for an API) with "
                             "only the contacts to send and the fields that channel's tool needs.")] = False,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """The contact plan: who gets what, on which channel, when and why, under caps, quiet hours,
    unsubscribes, cooldowns and holdouts; with the fairness check per tier."""
    lang_ = check_lang(lang)
    if out is not None:
        export.check_path(out)
    if by_channel and out is None:
        raise InputError("--by-channel needs --out FILE: the lists are written next to it",
                         zh="--by-channel 需要与 --out FILE 一起使用：各渠道名单写在该文件旁")
    opted = _unsubscribes(unsubscribes)
    with open_workspace(workspace, config) as ws:
        start = parse_date(date, "--date") if date else ws.latest_date() + dt_.timedelta(days=1)
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"plan from {start}", total=1)
            result = ws.plan(start, days, unsubscribes=opted)
            contacts = result.contacts
            if items:
                recs = ws.recommendations(start - dt_.timedelta(days=1), k=items, **_recommend_options(ws.settings),
                                          users=contacts["user_id"].unique()).wide()
                contacts = contacts.merge(recs, on="user_id", how="left")
            lists = _with_contact_fields(ws, channel_lists(contacts), lang_) if by_channel else {}
            progress.advance(task)
        timezone, currency = ws.settings.timezone, ws.settings.currency
    _print_summary(result, lang_)
    _print_fairness(result, lang_)
    if out is None:
        return
    files = {out.with_name(f"{out.stem}-{channel}{out.suffix}"): frame for channel, frame in lists.items()} \
        if by_channel else {out: contacts}
    for path, frame in files.items():
        if export.for_people(path):
            frame = _readable(frame, lang_)
        send = _CONTACT_HEADERS["send_at"][0 if lang_ == "zh" else 1] if export.for_people(path) else "send_at"
        if path.suffix.lower() != ".parquet":  # shop time, marked as such (JSON lines: the UTC instant, "Z")
            frame[send] = pd.to_datetime(frame[send]).dt.tz_localize(timezone, nonexistent="shift_forward",
                                                                     ambiguous=False)
        export.write_table(frame, path, lang=lang_, timezone=timezone, currency=currency)
        count = _t("count", lang_).format(n=len(frame))
        line(f"{_t('written', lang_)}: [bold]{escape(str(path))}[/] {escape(count)}")


def _with_contact_fields(ws, lists: dict[str, pd.DataFrame], lang: str) -> dict[str, pd.DataFrame]:
    """Each channel's list with the contact field its tool addresses (phone for sms...), where the
    workspace keeps it in clear; otherwise the tool matches by user_id, and a line says so."""
    out = {}
    for channel, frame in lists.items():
        field = CHANNEL_CONTACT.get(channel)
        if field is not None and len(frame):
            try:
                found = ws.contacts(frame["user_id"].astype(str).tolist(), [field])
            except InputError as exc:
                line(escape(_t("no_contact", lang).format(channel=_channel(channel, lang), field=field,
                                                           why=exc.zh if lang == "zh" and exc.zh else str(exc))))
            else:
                frame = frame.merge(found.frame.astype({"user_id": "object"}), on="user_id", how="left")
                frame = frame[["user_id", field, *[c for c in frame.columns if c not in ("user_id", field)]]]
        out[channel] = frame
    return out


_REC_TEXT = {
    "title": ("推荐商品（截至 {day}，每人 {k} 个）", "Recommended items (as of {day}, {k} per user)"),
    "users": ("获得推荐的用户", "users with recommendations"),
    "source": ("来源", "Source"),
    "items": ("推荐数", "Items"),
    "backtest": ("回测：{cutoff} 之后 {days} 天内买了新商品的 {users:,} 人中，命中率 @{k}",
                 "Backtest: of the {users:,} users who bought something new in the {days} days after {cutoff}, hit rate @{k}"),
    "ours": ("userstrata", "userstrata"),
    "popular": ("热销基线", "popularity baseline"),
    "written": ("推荐已写入", "Recommendations written to"),
}
_SOURCES = {"sequence": ("学习路径", "path"), "co_purchase": ("常一起买", "bought together"),
            "category": ("偏好品类", "favourite category"), "popular": ("全店热销", "best seller")}


_rt = functools.partial(i18n.pick, _REC_TEXT)  # text in zh or en


@command
def recommend(
    as_of: Annotated[str | None, typer.Option("--as-of", help=f"Day the lists are made on, {DATE_HELP}.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, max=20, help="Items per user (default [recommend] k).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the lists (.xlsx, .csv, .parquet).")] = None,
    backtest: Annotated[str | None, typer.Option("--backtest", help="Also score lists made on this earlier day.")] = None,
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Days after --backtest that count.")] = 30,
    lang: LangOpt = "en",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE_PATH,
    config: ConfigOpt = None,
) -> None:
    """Each buyer's top-k items (learning path, bought together, favourite category, best sellers),
    with the reason; --backtest scores the lists against what users then bought."""
    from userstrata.activate.recommend import hit_rate  # noqa: PLC0415

    lang_ = check_lang(lang)
    if out is not None:
        export.check_path(out)
    with open_workspace(workspace, config) as ws:
        day = parse_date(as_of, "--as-of") if as_of else ws.latest_date()
        options = _recommend_options(ws.settings)
        k = k or ws.settings.recommend.k
        with progress_bar() as progress, warnings_as_lines(lang_):
            task = progress.add_task(f"recommendations as of {day}", total=1 + bool(backtest))
            recs = ws.recommendations(day, k=k, **options)
            progress.advance(task)
            if backtest:
                scored = hit_rate(ws.table("orders"), ws.table("order_items"), cutoff=parse_date(backtest, "--backtest"),
                                  horizon_days=horizon, k=k, clock=ws._clock(), execute=ws.store.execute, **options)
                progress.advance(task)
        timezone, currency = ws.settings.timezone, ws.settings.currency
    view = Table(title=_rt("title", lang_).format(day=day, k=k))
    view.add_column(_rt("source", lang_))
    view.add_column(_rt("items", lang_), justify="right")
    for source, n in recs.items["source"].value_counts().items():
        view.add_row(_SOURCES[source][0 if lang_ == "zh" else 1], f"{n:,}")
    console.print(view)
    line(f"{recs.items['user_id'].nunique():,} {_rt('users', lang_)}")
    if backtest:
        first = scored.iloc[0]
        line(escape(_rt("backtest", lang_).format(cutoff=backtest, days=horizon, users=int(first["users"]), k=k)) + ": "
             + ", ".join(f"{_rt('ours' if m == 'userstrata' else 'popular', lang_)} {r:.1%}"
                         for m, r in zip(scored["method"], scored["hit_rate"])))
    if out is not None:
        frame = recs.items.drop(columns=["reason_en" if lang_ == "zh" else "reason_zh"])
        export.write_table(frame, out, lang=lang_, timezone=timezone, currency=currency)
        line(f"{_rt('written', lang_)}: [bold]{escape(str(out))}[/] ({len(frame):,})")
