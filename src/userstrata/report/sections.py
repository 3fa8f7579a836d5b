"""The overview an operator reads, section by section, for the HTML report and the dashboard.

Each section is a title, a Plotly figure and/or a small table, and a note, in zh or en. They
are built from a profile (a snapshot, with predictions when it has them) and the workspace's
other results; nothing here queries the engine. ``min_count`` suppresses aggregate cells with
fewer users (shown as "<10"), for reports shared outside the team.
"""

from __future__ import annotations

import functools

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from userstrata import i18n
from userstrata.measure.privacy import hide
from userstrata.schema import LIFECYCLE_STAGES, RFM_CELLS

__all__ = ["Section", "overview_sections", "suppress"]

_TEXT: dict[str, tuple[str, str]] = {
    "kpi": ("概览", "Overview"),
    "kpi.users": ("画像用户数", "Users profiled"),
    "kpi.buyers": ("购买用户数", "Buyers"),
    "kpi.revenue": ("累计净消费（{cur}）", "Net spend to date ({cur})"),
    "kpi.aov": ("平均客单价（{cur}）", "Mean basket ({cur})"),
    "kpi.active": ("活跃用户占比", "Share of users active"),
    "kpi.churn": ("平均流失概率（购买用户）", "Mean churn probability (buyers)"),
    "kpi.clv": ("预测 CLV 合计（{cur}）", "Predicted CLV, total ({cur})"),
    "metric": ("指标", "Metric"),
    "value": ("数值", "Value"),
    "tiers": ("价值分层金字塔", "Tier pyramid"),
    "tiers.note": ("条形为实际占比；表中为目标区间。", "Bars: achieved share; the table gives each target band."),
    "tier": ("层级", "Tier"),
    "users": ("用户数", "Users"),
    "share": ("占比", "Share"),
    "target": ("目标区间", "Target band"),
    "on_target": ("是否达标", "On target"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "lifecycle": ("生命周期分布", "Lifecycle stages"),
    "stage": ("阶段", "Stage"),
    "rfm": ("RFM 八象限", "RFM grid"),
    "rfm.note": ("格内为用户数；R/F/M 高低以全体用户为基准。", "Users per cell; R, F, M high or low against all users."),
    "cell": ("分群", "Cell"),
    "mean_monetary": ("人均消费（{cur}）", "Mean spend ({cur})"),
    "clv": ("预测 CLV 分布（购买用户）", "Predicted CLV (buyers)"),
    "clv.axis": ("CLV 区间（{cur}）", "CLV band ({cur})"),
    "risk": ("高价值用户流失风险 Top {n}", "Valuable users most at risk, top {n}"),
    "risk.note": ("深度参与者与品牌共建者中流失概率最高者，附原因。", "Engaged and co-builder users with the highest churn probability, with reasons."),
    "user": ("用户", "User"),
    "churn": ("流失概率", "Churn probability"),
    "reasons": ("原因", "Reasons"),
    "suppressed": ("<{n}", "<{n}"),
}


_t = functools.partial(i18n.pick, _TEXT)  # text in zh or en


@dataclass(frozen=True)
class Section:
    """One block of the overview: ``key`` identifies it (dashboard anchors, tests)."""

    key: str
    title: str
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def suppress(counts: pd.Series, min_count: int) -> pd.Series:
    """Counts as text, those hidden for privacy (``measure.privacy.hide``) shown as "<min_count"."""
    counts = pd.Series(counts)
    hidden = hide(counts, min_count)
    return pd.Series([f"<{min_count}" if h else f"{int(n):,}" for n, h in zip(counts, hidden)], index=counts.index)


def _money(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:,.2f}"


def kpi_section(profile: pd.DataFrame, *, lang: str, currency: str) -> Section:
    buyers = profile[profile["orders"] > 0] if "orders" in profile else profile.iloc[0:0]
    active = profile["lifecycle"].isin(["new", "growth", "mature", "returning"]).mean() if len(profile) else np.nan
    rows = [
        (_t("kpi.users", lang), f"{len(profile):,}"),
        (_t("kpi.buyers", lang), f"{len(buyers):,}"),
        (_t("kpi.revenue", lang, cur=currency), _money(buyers["monetary"].sum() if len(buyers) else 0.0)),
        (_t("kpi.aov", lang, cur=currency), _money(buyers["aov"].mean() if len(buyers) else np.nan)),
        (_t("kpi.active", lang), "n/a" if pd.isna(active) else f"{active:.1%}"),
    ]
    if "churn_probability" in profile and len(buyers):
        rows.append((_t("kpi.churn", lang), f"{buyers['churn_probability'].mean():.1%}"))
    if "clv" in profile:
        rows.append((_t("kpi.clv", lang, cur=currency), _money(profile["clv"].sum())))
    table = pd.DataFrame(rows, columns=[_t("metric", lang), _t("value", lang)])
    return Section("overview", _t("kpi", lang), table=table)


def tier_section(shares: pd.DataFrame, *, lang: str, min_count: int) -> Section:
    """``shares`` is ``Workspace.tier_shares(profile)``: top tier first."""
    names = [i18n.label(t, lang) for t in shares["tier"]]
    fig = go.Figure(
        go.Bar(x=shares["share"], y=names, orientation="h", text=[f"{s:.1%}" for s in shares["share"]],
               name=_t("share", lang), marker=dict(color="#1f77b4")),
        layout=dict(title=_t("tiers", lang), xaxis=dict(title=_t("share", lang), tickformat=".0%"),
                    yaxis=dict(autorange="reversed")),
    )
    table = pd.DataFrame({
        _t("tier", lang): names,
        _t("users", lang): suppress(shares["users"], min_count),
        _t("share", lang): [f"{s:.1%}" for s in shares["share"]],
        _t("target", lang): [f"{lo:.0%}-{hi:.0%}" for lo, hi in zip(shares["target_low"], shares["target_high"])],
        _t("on_target", lang): [_t("yes" if ok else "no", lang) for ok in shares["on_target"]],
    })  # fmt: skip
    return Section("tiers", _t("tiers", lang), fig, table, _t("tiers.note", lang))


def lifecycle_section(profile: pd.DataFrame, *, lang: str, min_count: int) -> Section:
    counts = profile["lifecycle"].value_counts().reindex(list(LIFECYCLE_STAGES), fill_value=0)
    names = [i18n.label(s, lang) for s in counts.index]
    fig = go.Figure(go.Bar(x=names, y=counts.to_numpy(), name=_t("users", lang)),
                    layout=dict(title=_t("lifecycle", lang), yaxis=dict(title=_t("users", lang))))
    table = pd.DataFrame({_t("stage", lang): names, _t("users", lang): suppress(counts, min_count),
                          _t("share", lang): [f"{n / max(len(profile), 1):.1%}" for n in counts]})
    return Section("lifecycle", _t("lifecycle", lang), fig, table)


def rfm_section(grid: pd.DataFrame, *, lang: str, currency: str, min_count: int) -> Section:
    """``grid`` is ``Workspace.rfm_grid(profile)``: the 8 cells as a 2 (R) x 4 (F, M) heatmap."""
    by_cell = grid.set_index("rfm_cell").reindex(list(RFM_CELLS))
    # columns: (F high, M high), (F low, M high), (F high, M low), (F low, M low); rows R high, R low
    layout = [["important_value", "important_develop", "general_value", "general_develop"],
              ["important_keep", "important_retain", "general_keep", "general_retain"]]
    z = [[float(by_cell.loc[c, "users"]) for c in row] for row in layout]
    text = [[f"{i18n.label(c, lang)}<br>{suppress(pd.Series([by_cell.loc[c, 'users']]), min_count).iloc[0]}"
             for c in row] for row in layout]
    x = ["F↑ M↑", "F↓ M↑", "F↑ M↓", "F↓ M↓"]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=["R↑", "R↓"], text=text, texttemplate="%{text}", colorscale="Blues"),
                    layout=dict(title=_t("rfm", lang), yaxis=dict(autorange="reversed")))
    table = pd.DataFrame({
        _t("cell", lang): [i18n.label(c, lang) for c in by_cell.index],
        _t("users", lang): suppress(by_cell["users"].astype(int), min_count),
        _t("share", lang): [f"{s:.1%}" for s in by_cell["share"]],
        _t("mean_monetary", lang, cur=currency): [
            _money(m) if n >= min_count else "" for m, n in zip(by_cell["mean_monetary"], by_cell["users"])],
    })  # fmt: skip
    return Section("rfm", _t("rfm", lang), fig, table, _t("rfm.note", lang))


def clv_section(profile: pd.DataFrame, *, lang: str, currency: str, min_count: int) -> Section | None:
    if "clv" not in profile:
        return None
    clv = profile.loc[profile["orders"] > 0, "clv"].dropna()
    if clv.empty:
        return None
    # 1-2-5 steps: CLV is heavily skewed, and equal-count bins would show nothing but equal bars
    top = max(float(clv.max()), 1.0)
    steps = [m * 10**e for e in range(0, int(np.log10(top)) + 2) for m in (1, 2, 5)]
    edges = np.array([0.0, *[s for s in steps if s < top], top + 1e-9])
    counts, _ = np.histogram(clv, bins=edges)
    labels = [f"{lo:,.0f}-{hi:,.0f}" for lo, hi in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=labels, y=counts, name=_t("users", lang)),
                    layout=dict(title=_t("clv", lang), xaxis=dict(title=_t("clv.axis", lang, cur=currency)),
                                yaxis=dict(title=_t("users", lang))))
    table = pd.DataFrame({_t("clv.axis", lang, cur=currency): labels,
                          _t("users", lang): suppress(pd.Series(counts), min_count)})
    return Section("clv", _t("clv", lang), fig, table)


def risk_section(profile: pd.DataFrame, *, lang: str, top: int = 20) -> Section | None:
    if "churn_probability" not in profile:
        return None
    valuable = profile[profile["tier"].isin(["engaged", "co_builder"])].dropna(subset=["churn_probability"])
    worst = valuable.sort_values(["churn_probability", "user_id"], ascending=[False, True]).head(top)
    table = pd.DataFrame({
        _t("user", lang): worst["user_id"],
        _t("tier", lang): [i18n.label(t, lang) for t in worst["tier"]],
        _t("churn", lang): [f"{p:.0%}" for p in worst["churn_probability"]],
        _t("reasons", lang): worst.get("churn_reasons", pd.Series([""] * len(worst))).fillna(""),
    })  # fmt: skip
    return Section("risk", _t("risk", lang, n=top), table=table, note=_t("risk.note", lang))


def overview_sections(
    profile: pd.DataFrame,
    *,
    tier_shares: pd.DataFrame,
    rfm_grid: pd.DataFrame,
    lang: str = "en",
    currency: str = "CNY",
    min_count: int = 0,
    more: list[Callable[[], Section | None]] | None = None,
) -> list[Section]:
    """The overview of one profile: KPIs, tiers with targets, lifecycle, RFM grid, CLV, risk,
    then each section of ``more`` (migration, alerts ...) that has something to show."""
    sections = [
        kpi_section(profile, lang=lang, currency=currency),
        tier_section(tier_shares, lang=lang, min_count=min_count),
        lifecycle_section(profile, lang=lang, min_count=min_count),
        rfm_section(rfm_grid, lang=lang, currency=currency, min_count=min_count),
        clv_section(profile, lang=lang, currency=currency, min_count=min_count),
        risk_section(profile, lang=lang),
    ]
    sections += [make() for make in more or ()]
    return [s for s in sections if s is not None]

