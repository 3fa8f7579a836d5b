"""Purchase patterns (购买时段分布): paid orders by weekday × hour of the shop's clock.

- **Grain**: one paid order (status in ``schema.PURCHASE_STATUSES``) counts once in the cell of
  its local weekday (Monday = 0, 周一 … 周日) and local hour (0–23) in the shop's time zone.
- **By category** (``by="category"``): an order counts once in every category it holds a line
  of (``order_items``); an order with a game card and a course counts in both.
- **Share**: the cell's orders over all orders of its group (its category, or all), so the
  168 cells of a group add up to 1.
- ``min_count``: cells with 1 to ``min_count - 1`` orders show no count and no share (an empty
  cell identifies nobody and stays 0).

The other analyses of purchases (``bundles``, ``refunds``) share this module's helpers.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata import _engine, i18n
from userstrata.errors import InputError
from userstrata.measure.privacy import MIN_COUNT, check_min_count, hide  # noqa: F401 (re-exported)
from userstrata.features._time import Clock
from userstrata.schema import PURCHASE_STATUSES

ALL = "(all)"  # the group of every order
BY = (None, "category")
WEEKDAYS: tuple[tuple[str, str], ...] = (
    ("周一", "Mon"), ("周二", "Tue"), ("周三", "Wed"), ("周四", "Thu"), ("周五", "Fri"), ("周六", "Sat"),
    ("周日", "Sun"),
)  # fmt: skip

TEXT: dict[str, tuple[str, str]] = {
    "category": ("品类", "Category"),
    "weekday": ("星期", "Weekday"),
    "hour": ("小时", "Hour"),
    "orders": ("订单数", "Orders"),
    "share": ("占比", "Share"),
    "all": ("全部", "All"),
    "title": ("下单时段分布（{what}，{zone}）", "Orders by weekday and hour ({what}, {zone})"),
    "hour_axis": ("下单时刻（小时）", "Hour of the day"),
    "peaks_title": ("下单高峰时段", "Peak hours"),
    "suppressed": ("少于 {n} 单的格子已隐藏", "cells under {n} orders hidden"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def weekday_label(index: int, lang: str = "en") -> str:
    zh, en = WEEKDAYS[int(index)]
    return zh if lang == "zh" else en


def default_execute(expr: ir.Expr) -> pd.DataFrame:
    return expr.to_pandas()


def check_period(start: dt_.date | None, end: dt_.date | None, what: str, what_zh: str) -> None:
    if start is not None and end is not None and end < start:
        raise InputError(f"{what} period {start} to {end}: the end is before the start",
                         zh=f"{what_zh}时间段 {start} 至 {end}：结束日早于开始日")


def paid_orders(orders: ir.Table, *, start: dt_.date | None = None, end: dt_.date | None = None,
                clock: Clock = Clock()) -> ir.Table:
    """Orders that were paid (``PURCHASE_STATUSES``), placed on local days ``[start, end]``."""
    paid = orders.filter(orders.status.isin(list(PURCHASE_STATUSES)))
    if start is not None or end is not None:
        day = clock.local_date(paid.ts)
        if start is not None:
            paid = paid.filter(day >= start)
        if end is not None:
            paid = paid.filter(day <= end)
    return paid


# -- the expression ----------------------------------------------------------------------------
def purchase_times(
    orders: ir.Table, order_items: ir.Table | None = None, *, by: str | None = None,
    start: dt_.date | None = None, end: dt_.date | None = None, clock: Clock = Clock(),
) -> ir.Table:
    """Paid orders per ``(category, weekday, hour)`` of the shop's clock: ``orders`` counts.

    ``weekday`` is 0 for Monday .. 6 for Sunday and ``hour`` 0..23, both local; ``category`` is
    ``ALL`` without ``by``. Only cells with orders are rows.
    """
    if by not in BY:
        raise InputError(f"purchase patterns by {by!r}: use 'category' or nothing",
                         zh=f"购买时段分布的分组 {by!r} 无效：只能按 category（品类）或不分组")
    paid = paid_orders(orders, start=start, end=end, clock=clock)
    local = _engine.local_time(paid.ts, clock.zone, clock.engine)
    timed = paid.select("order_id", weekday=local.day_of_week.index().cast("int64"),
                        hour=local.hour().cast("int64"))
    if by is None:
        timed = timed.mutate(category=ibis.literal(ALL))
    else:
        if order_items is None:
            raise InputError("purchase patterns by category need the order_items table",
                             hint="load it: userstrata load order_items FILE",
                             zh="按品类的购买时段分布需要订单明细表 order_items",
                             hint_zh="先导入：userstrata load order_items 文件")
        lines = order_items.filter(order_items.category.notnull()).select("order_id", "category").distinct()
        timed = timed.join(lines, "order_id").select("order_id", "category", "weekday", "hour")
    return timed.group_by(["category", "weekday", "hour"]).aggregate(orders=timed.count())


# -- the result --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PatternResult:
    """``cells``: every (category, weekday, hour), zeros included, with ``orders`` and ``share``
    (of the category's orders); ``totals``: orders per category."""

    cells: pd.DataFrame
    totals: pd.DataFrame
    definition: dict[str, Any]

    def table(self, lang: str = "en", category: str | None = None) -> pd.DataFrame:
        """``cells`` with headers and weekdays in ``lang`` (shares as fractions)."""
        frame = self._part(category)
        out = frame.copy()
        out["weekday"] = [weekday_label(w, lang) for w in out["weekday"]]
        out["category"] = [text("all", lang) if c == ALL else c for c in out["category"]]
        return out.rename(columns={c: text(c, lang) for c in out.columns if c in TEXT})

    def grid(self, category: str | None = None, value: str = "orders") -> pd.DataFrame:
        """7 × 24 frame (weekday rows Monday..Sunday, hour columns 0..23) of ``value``."""
        part = self._part(category)
        pivot = part.pivot(index="weekday", columns="hour", values=value)
        return pivot.reindex(index=range(7), columns=range(24))

    def peaks(self, n: int = 5, category: str | None = None) -> pd.DataFrame:
        """The ``n`` cells with the most orders (ties: earlier weekday, then hour)."""
        part = self._part(category).dropna(subset=["orders"])
        part = part[part["orders"] > 0]
        return part.sort_values(["orders", "weekday", "hour"], ascending=[False, True, True],
                                kind="stable").head(n).reset_index(drop=True)

    def _part(self, category: str | None) -> pd.DataFrame:
        key = ALL if category is None and self.definition["by"] is None else category
        if key is None:
            return self.cells
        if key not in set(self.cells["category"]):
            known = ", ".join(sorted(set(self.cells["category"])))
            raise InputError(f"category {key!r} has no paid orders here; expected one of: {known}",
                             zh=f"品类 {key!r} 在此没有已支付订单；可选：{known}")
        return self.cells[self.cells["category"] == key]

    def chart(self, lang: str = "en", category: str | None = None) -> Any:
        """Heatmap: weekday rows (Monday on top) × local hour, orders in each cell."""
        import plotly.graph_objects as go  # noqa: PLC0415 - only charts need it

        if category is None and self.definition["by"] is not None:
            # by category without choosing one: every category's orders added up
            grid = self.cells.groupby(["weekday", "hour"])["orders"].sum(min_count=1).unstack()
            grid = grid.reindex(index=range(7), columns=range(24))
            what = text("all", lang)
        else:
            grid = self.grid(category)
            what = text("all", lang) if category in (None, ALL) else category
        z = grid.astype(float).to_numpy()
        fig = go.Figure(go.Heatmap(
            z=z.tolist(), x=[f"{h:02d}" for h in range(24)], y=[weekday_label(w, lang) for w in range(7)],
            colorscale="Blues", text=[["" if np.isnan(v) else f"{v:.0f}" for v in row] for row in z],
            hovertemplate="%{y} %{x}h: %{z}<extra></extra>",
        ))  # fmt: skip
        title = text("title", lang).format(what=what, zone=self.definition["timezone"])
        if self.definition["min_count"]:
            title += "；" if lang == "zh" else "; "
            title += text("suppressed", lang).format(n=self.definition["min_count"])
        fig.update_layout(title=title, xaxis_title=text("hour_axis", lang), yaxis_title=text("weekday", lang),
                          yaxis_autorange="reversed")
        return fig


def purchase_patterns(
    orders: ir.Table, order_items: ir.Table | None = None, *, by: str | None = None,
    start: dt_.date | None = None, end: dt_.date | None = None, min_count: int | None = None,
    clock: Clock = Clock(), execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> PatternResult:
    """Paid orders by local weekday × hour, overall or ``by="category"``, with shares.

    Parameters
    ----------
    start, end
        Shop-local days (inclusive); default: every order.
    min_count
        When given, cells with fewer orders (but some) are hidden.
    """
    check_min_count(min_count)
    check_period(start, end, "purchase patterns", "购买时段分布")
    execute = execute or default_execute
    counts = execute(purchase_times(orders, order_items, by=by, start=start, end=end, clock=clock))
    counts = counts.astype({"weekday": "int64", "hour": "int64", "orders": "int64"})
    categories = sorted(set(counts["category"])) if by is not None else [ALL]
    full = pd.DataFrame(
        [(c, w, h) for c in categories for w in range(7) for h in range(24)], columns=["category", "weekday", "hour"]
    )
    cells = full.merge(counts, on=["category", "weekday", "hour"], how="left")
    cells["orders"] = cells["orders"].fillna(0).astype("int64")
    totals = cells.groupby("category", sort=True)["orders"].sum().rename("orders").reset_index()
    total_of = cells["category"].map(totals.set_index("category")["orders"])
    cells["share"] = (cells["orders"] / total_of).where(total_of > 0)
    hidden = hide(cells["orders"], min_count)
    cells["orders"] = cells["orders"].astype("Int64").mask(hidden)
    cells["share"] = cells["share"].astype(float).mask(hidden)
    definition = dict(by=by, start=start, end=end, min_count=min_count, timezone=clock.zone)
    return PatternResult(cells.reset_index(drop=True), totals, definition)
