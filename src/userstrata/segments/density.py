"""Activity density x value expectation (行为密度×价值预期).

Rows: how often a user was active lately (active days in the last ``window_days``, banded
0 / 1-3 / 4-10 / 11+ by default). Columns: what the user is expected to be worth: never
paid, or the low / mid / high third of payers by predicted CLV when a prediction frame is
given, else by the profile's ``monetary``. Each cell has a name in Chinese and English;
"very active, never paid" (高活跃未付费) is the group a trial offer converts.
"""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.config import DensitySettings
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES

DENSITY_BANDS = ("none", "low", "mid", "high")
VALUE_BANDS = ("never_paid", "low", "mid", "high")
_DENSITY_NAMES = {
    "none": ("沉默", "inactive"), "low": ("低频", "occasional"),
    "mid": ("常来", "regular"), "high": ("高活跃", "very active"),
}  # fmt: skip
_VALUE_NAMES = {
    "never_paid": ("未付费", "never paid"), "low": ("低价值", "low value"),
    "mid": ("中价值", "mid value"), "high": ("高价值", "high value"),
}  # fmt: skip
# what the cells at the corners call for (the others: keep the usual cadence)
_ACTIONS = {
    ("high", "never_paid"): ("送试用或首单优惠，促成第一单", "trial or first-order offer to win the first purchase"),
    ("mid", "never_paid"): ("送试用或首单优惠，促成第一单", "trial or first-order offer to win the first purchase"),
    ("none", "high"): ("高价值沉默：专人回访召回", "valuable but silent: personal win-back"),
    ("none", "mid"): ("发召回券唤醒", "win-back coupon"),
    ("high", "high"): ("重点维护，邀请共建", "VIP care, invite to co-create"),
    ("high", "low"): ("活跃但花得少：推荐升级和组合包", "active but spends little: upsell bundles"),
}
_TEXT = {
    "title": ("行为密度×价值预期（{day}）", "Activity density x value ({day})"),
    "x": ("价值预期", "Expected value"),
    "y": ("近 {days} 天活跃天数", "Active days in the last {days}"),
}


def cell_name(density_band: str, value_band: str, lang: str) -> str:
    """A cell's name, e.g. 高活跃未付费 / very active, never paid."""
    i = 0 if lang == "zh" else 1
    d, v = _DENSITY_NAMES[density_band][i], _VALUE_NAMES[value_band][i]
    return f"{d}{v}" if lang == "zh" else f"{d}, {v}"


def band_label(kind: str, band: str, lang: str, rules: DensitySettings | None = None) -> str:
    """A row (``kind="density"``, with its day range) or column (``"value"``) heading."""
    i = 0 if lang == "zh" else 1
    if kind == "value":
        return _VALUE_NAMES[band][i]
    rules = rules or DensitySettings()
    e1, e2, e3 = rules.density_edges
    days = {"none": "0", "low": f"{e1}-{e2 - 1}", "mid": f"{e2}-{e3 - 1}", "high": f"{e3}+"}[band]
    return f"{_DENSITY_NAMES[band][i]} ({days})"


def active_days(
    orders: ir.Table, events: ir.Table, *, as_of: dt_.date, clock: Clock, rules: DensitySettings
) -> ir.Table:
    """``user_id, active_days``: local days in the last ``window_days`` (``as_of`` included)
    with an event or a purchase; with ``activity_events`` set, only days with those events."""
    since = as_of - dt_.timedelta(days=rules.window_days)
    ev = events.filter(events.user_id.notnull())
    if rules.activity_events is not None:
        ev = ev.filter(ev.event.lower().isin([e.lower() for e in rules.activity_events]))
    days = ev.select("user_id", day=clock.local_date(ev.ts))
    if rules.activity_events is None:
        bought = orders.filter(orders.status.isin(PURCHASE_STATUSES) | orders.status.isnull())
        days = days.union(bought.select("user_id", day=clock.local_date(bought.ts)))
    days = days.filter(days.day <= as_of, days.day > since)
    return days.group_by("user_id").agg(active_days=days.day.nunique())


def density_grid(
    profile: ir.Table,
    activity: ir.Table,
    *,
    rules: DensitySettings,
    predictions: pd.DataFrame | None = None,
    value_col: str = "clv",
) -> ir.Table:
    """One row per profiled user: ``active_days, density_band, expected_value, value_band,
    cell`` (``density/value``), ``cell_zh``, ``cell_en``.

    ``profile`` needs ``user_id, orders, monetary``; ``activity`` is :func:`active_days`.
    Payers (``orders > 0``) are split at ``value_cuts`` of their rank by ``value_col`` of
    ``predictions`` (a frame with ``user_id``; payers it lacks count as 0) or, without it,
    by ``monetary``: a payer's position is the share of payers worth at most as much (equal
    values share it), ``low`` up to the first cut, ``mid`` up to the second, ``high`` above. Users who never paid are ``never_paid``.
    """
    p = profile.select("user_id", "orders", "monetary")
    if predictions is not None:
        missing = {"user_id", value_col} - set(predictions.columns)
        if missing:
            raise InputError(
                f"predictions: no column {', '.join(sorted(missing))}; expected user_id and {value_col}",
                hint="pass the frame of Workspace.predict() or name the value column with value_col",
                zh=f"预测表缺少列 {', '.join(sorted(missing))}；需要 user_id 和 {value_col}",
                hint_zh="传入 Workspace.predict() 的结果，或用 value_col 指定价值列",
            )
        pred = ibis.memtable(
            pd.DataFrame({"user_id": predictions["user_id"].astype(str),
                          "_pred": pd.to_numeric(predictions[value_col], errors="coerce").astype("float64")})
        )  # fmt: skip
        p = p.left_join(pred, "user_id").drop("user_id_right")
        p = p.mutate(expected_value=p._pred.fill_null(0.0)).drop("_pred")
    else:
        p = p.mutate(expected_value=p.monetary.cast("float64"))
    p = p.left_join(activity, "user_id").drop("user_id_right")
    p = p.mutate(active_days=p.active_days.fill_null(0))
    e1, e2, e3 = rules.density_edges
    p = p.mutate(
        density_band=ibis.cases(
            (p.active_days >= e3, "high"), (p.active_days >= e2, "mid"), (p.active_days >= e1, "low"), else_="none"
        )
    )
    paid = p.orders > 0
    payers = p.filter(paid)
    ranked = payers.mutate(
        # payers with a higher value (0-based rank from the top; equal values share it)
        _above=ibis.rank().over(order_by=ibis.desc(payers.expected_value)),
        _n=payers.user_id.count().over(ibis.window()),
    ).select("user_id", "_above", "_n")
    p = p.left_join(ranked, "user_id").drop("user_id_right")
    # the share of payers worth at most as much as this one: the top value is at 1
    position = (p._n - p._above).cast("float64") / p._n.cast("float64")
    low, high = rules.value_cuts
    p = p.mutate(
        value_band=ibis.cases(
            (~paid, "never_paid"), (position <= low, "low"), (position <= high, "mid"), else_="high"
        )
    ).drop("_above", "_n")
    pairs = [(d, v) for d in DENSITY_BANDS for v in VALUE_BANDS]
    zh = ibis.cases(*[((p.density_band == d) & (p.value_band == v), cell_name(d, v, "zh")) for d, v in pairs])
    en = ibis.cases(*[((p.density_band == d) & (p.value_band == v), cell_name(d, v, "en")) for d, v in pairs])
    return p.select(
        "user_id", "active_days", "density_band", "expected_value", "value_band",
        cell=p.density_band + "/" + p.value_band, cell_zh=zh, cell_en=en,
    )  # fmt: skip


def density_counts(grid: ir.Table) -> ir.Table:
    """Users per cell (``density_band, value_band, users``): only cells that have users."""
    return grid.group_by(["density_band", "value_band"]).agg(users=grid.count())


@dataclass(frozen=True)
class DensityGrid:
    """The 4 x 4 grid: ``cells`` has one row per cell (all 16, empty ones with 0 users):
    ``density_band, value_band, name_zh, name_en, users, share, action_zh, action_en``."""

    cells: pd.DataFrame
    rules: DensitySettings

    @classmethod
    def from_counts(cls, counts: pd.DataFrame, rules: DensitySettings) -> "DensityGrid":
        got = {(r.density_band, r.value_band): int(r.users) for r in counts.itertuples(index=False)}
        total = sum(got.values())
        rows = []
        for d in DENSITY_BANDS:
            for v in VALUE_BANDS:
                users = got.get((d, v), 0)
                action = _ACTIONS.get((d, v), ("", ""))
                rows.append(dict(
                    density_band=d, value_band=v, name_zh=cell_name(d, v, "zh"), name_en=cell_name(d, v, "en"),
                    users=users, share=users / total if total else 0.0,
                    action_zh=action[0], action_en=action[1],
                ))  # fmt: skip
        return cls(pd.DataFrame(rows), rules)

    def matrix(self, lang: str = "en", values: str = "users") -> pd.DataFrame:
        """Rows = density bands (top = most active), columns = value bands, ``values`` in the cells."""
        m = self.cells.pivot(index="density_band", columns="value_band", values=values)
        m = m.loc[list(reversed(DENSITY_BANDS)), list(VALUE_BANDS)]
        m.index = [band_label("density", b, lang, self.rules) for b in m.index]
        m.columns = [band_label("value", b, lang) for b in m.columns]
        return m

    def figure(self, day: Any, lang: str = "en") -> Any:
        """A heatmap of the users' shares with counts in the cells (``plotly`` Figure)."""
        import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked for

        i = 0 if lang == "zh" else 1
        shares, users = self.matrix(lang, "share"), self.matrix(lang, "users")
        text = [[f"{u:,}<br>{s:.1%}" for u, s in zip(ur, sr)] for ur, sr in zip(users.values, shares.values)]
        fig = go.Figure(go.Heatmap(
            z=shares.values, x=list(shares.columns), y=list(shares.index), text=text,
            texttemplate="%{text}", colorscale="Blues", showscale=False,
        ))  # fmt: skip
        fig.update_layout(
            title=_TEXT["title"][i].format(day=day),
            xaxis_title=_TEXT["x"][i],
            yaxis_title=_TEXT["y"][i].format(days=self.rules.window_days),
        )
        return fig
