"""The overview of a workspace as of a day: the sections of the report and the dashboard."""

from __future__ import annotations

import datetime as dt_
from typing import Any

import pandas as pd

from userstrata.errors import NotFoundError, UserstrataError
from userstrata.measure.patterns import weekday_label
from userstrata.report.sections import Section, overview_sections, suppress
from userstrata.segments.migration import migration_sankey
from userstrata.segments.snapshots import shift_months
from userstrata.workspace import Workspace

__all__ = ["TITLE", "profile_for", "workspace_sections"]

TITLE = {"zh": "用户价值分层与生命周期报告", "en": "User value and lifecycle report"}
_MIGRATION = {"zh": "近一季度层级迁移", "en": "Tier migration, last quarter"}
_PATTERNS = {"zh": "下单时段（近 90 天，店铺时间）", "en": "When orders come in (last 90 days, shop time)"}
_ALERTS = {"zh": "未关闭的预警", "en": "Open alerts"}
_ALERT_COLUMNS = {"zh": ("规则", "严重程度", "预警数"), "en": ("Rule", "Severity", "Alerts")}
_FUNNEL = {"zh": "转化漏斗：浏览 → 加购 → 购买（近 90 天，7 天内）", "en": "Funnel: view -> cart -> purchase (last 90 days, within 7 days)"}
_FUNNEL_WEEKLY = {"zh": "漏斗逐周转化", "en": "Funnel conversion by week"}
FUNNEL_STEPS = ("page_view", "add_to_cart", "purchase")
_KPI_TREND = {"zh": "核心指标走势（按月，近 12 个月）", "en": "Key numbers by month (last 12 months)"}
_RETENTION = {"zh": "注册用户周留存（近 12 周的队列）", "en": "Weekly retention of registered users (last 12 weekly cohorts)"}
_PEAKS = {"zh": "订单最多的时段：{peaks}", "en": "Busiest hours: {peaks}"}


def profile_for(ws: Workspace, as_of: dt_.date) -> pd.DataFrame:
    """The snapshot of ``as_of`` (with predictions when it was saved with them), else the profile."""
    try:
        return ws.store.execute(ws.snapshot_table(as_of))
    except (NotFoundError, UserstrataError):
        return ws.store.execute(ws.profile(as_of))


def _migration(ws: Workspace, as_of: dt_.date, lang: str) -> Section | None:
    start = shift_months(as_of, -3)
    try:
        moved = ws.migration(start, as_of)
    except UserstrataError:
        return None
    if moved.counts.to_numpy().sum() == 0:
        return None
    return Section("migration", _MIGRATION[lang], migration_sankey(moved, start=start, end=as_of, lang=lang))


def _patterns(ws: Workspace, as_of: dt_.date, lang: str, min_count: int) -> Section | None:
    result = ws.purchase_patterns(start=as_of - dt_.timedelta(days=89), end=as_of, min_count=min_count or None)
    if not len(result.cells) or result.cells["orders"].sum() == 0:
        return None
    peaks = result.peaks(3)
    names = [f"{weekday_label(int(row.weekday), lang)} {int(row.hour)}:00" for row in peaks.itertuples()]
    return Section("patterns", _PATTERNS[lang], result.chart(lang), note=_PEAKS[lang].format(peaks=", ".join(names)))


def _funnel(ws: Workspace, as_of: dt_.date, lang: str, min_count: int) -> list[Section]:
    result = ws.funnel(list(FUNNEL_STEPS), as_of - dt_.timedelta(days=89), as_of, weekly=True,
                       min_count=min_count or None)
    if not len(result.steps) or not result.steps.iloc[0]["count"]:
        return []
    return [Section("funnel", _FUNNEL[lang], result.chart(lang), result.table(lang)),
            Section("funnel_weekly", _FUNNEL_WEEKLY[lang], result.weekly_chart(lang))]


def _kpis(ws: Workspace, as_of: dt_.date, lang: str, min_count: int) -> list[Section]:
    start = shift_months(as_of, -12) + dt_.timedelta(days=1)
    result = ws.kpis(start, as_of, grain="month", min_count=min_count or None)
    if result.table.empty:
        return []
    return [Section("kpi_trend", _KPI_TREND[lang], result.chart(("active_users", "paying_users"), lang),
                    result.labelled(lang).tail(6))]


def _retention(ws: Workspace, as_of: dt_.date, lang: str, min_count: int) -> list[Section]:
    result = ws.retention(as_of - dt_.timedelta(weeks=12), as_of, period="week", periods=8,
                          min_count=min_count or None)
    if result.table.empty:
        return []
    return [Section("retention", _RETENTION[lang], result.chart(lang))]


def _alerts(ws: Workspace, lang: str, min_count: int) -> Section | None:
    """Open alerts by rule and severity, as last evaluated (``userstrata alerts``); none when never run."""
    from userstrata.measure.alerts import SEVERITY_LABELS, rule_label  # noqa: PLC0415

    if ws.store.engine != "duckdb":
        return None
    shown = ws.alert_list(open_only=True)
    if shown.empty:
        return None
    counts = shown.groupby(["rule", "severity"]).size().reset_index(name="n")
    rule, severity, alerts = _ALERT_COLUMNS[lang]
    table = pd.DataFrame({
        rule: [rule_label(r, lang) for r in counts["rule"]],
        severity: [SEVERITY_LABELS[v][0 if lang == "zh" else 1] for v in counts["severity"]],
        alerts: suppress(counts["n"], min_count),
    })  # fmt: skip
    return Section("alerts", _ALERTS[lang], table=table)


def workspace_sections(ws: Workspace, as_of: dt_.date | None = None, *, lang: str = "en", min_count: int = 0,
                       profile: pd.DataFrame | None = None, more: list[Any] | None = None) -> list[Section]:
    """Every section for ``as_of`` (default: the last day in the data)."""
    as_of = as_of or ws.latest_date()
    profile = profile_for(ws, as_of) if profile is None else profile
    sections = overview_sections(
        profile, tier_shares=ws.tier_shares(profile), rfm_grid=ws.rfm_grid(profile), lang=lang,
        currency=ws.settings.currency, min_count=min_count,
        more=[lambda: _migration(ws, as_of, lang), lambda: _patterns(ws, as_of, lang, min_count),
              lambda: _alerts(ws, lang, min_count), *(more or [])],
    )
    return (sections[:1] + _kpis(ws, as_of, lang, min_count) + sections[1:] + _retention(ws, as_of, lang, min_count)
            + _funnel(ws, as_of, lang, min_count))
