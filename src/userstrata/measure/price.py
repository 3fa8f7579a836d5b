"""Price sensitivity by segment (价格敏感度): conversion and revenue per user at each discount
level of an item, by tier (or any grouping), with intervals, and the arc elasticity between
adjacent discount levels.

- **Lines**: order items of paid orders (``schema.PURCHASE_STATUSES``) of known users placed on
  local days ``start..end``; ``price`` is the unit price of a line, ``quantity`` (default 1) its
  units; money in whole cents; refunds are not netted (the price is what was offered).
- **Discount** of a price: ``1 - price / list`` where ``list`` is the line's ``list_price`` (the
  price before discount, order_items) when it has one, else the SKU's list price: its highest
  ``list_price`` in the period when any of its lines has one, else its highest price seen in the
  period (sold lines and priced views); ``notes`` says which was used; buckets ``0`` (full price), ``(0, 10%]``,
  ``(10%, 30%]`` and ``> 30%``, compared in integer cents (``price * 10 >= list * 9`` is "at most
  10% off"). A SKU whose list price is 0 is always full price. At ``level="category"`` each line
  keeps its SKU's discount and the item is the SKU's category.
- **Exposed users** of an (item, bucket): users with a view event (``view_events``, default
  ``page_view``) on a local day in the period whose ``properties`` name the ``sku``, at the
  view's ``price`` property when it has one, else at the SKU's lowest sold price of that local
  day (views of a day without a sale of the SKU are unpriced and left out, counted in
  ``unpriced_views``), plus every buyer at the bucket they bought at. When no view in the period
  names a SKU, exposed users are the buyers only (``exposure == "buyers"``): conversion is then
  not defined (NaN) and revenue per exposed user is revenue per buyer.
- **Per cell** (group, item, bucket): exposed, buyers, conversion (Wilson interval), revenue per
  exposed user (normal interval, buyers' line revenue, 0 for exposed non-buyers), units per
  buyer; ``price_index`` is the cell's unit-weighted mean of ``price / list`` over all lines of
  the item in the bucket (every group: it is the offer, not the response).
- **Arc elasticity** between adjacent buckets present for a group and item (less discount ``a``,
  more discount ``b``): ``((Q_b - Q_a) / mean(Q)) / ((P_b - P_a) / mean(P))`` with ``Q`` the units
  per exposed user and ``P`` the price index; its interval is the percentile interval of
  ``resamples`` bootstrap resamples of the exposed users of each cell (``seed``: the same result
  on every run and engine).
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata import _engine, i18n
from userstrata.errors import InputError
from userstrata.features._money import to_cents
from userstrata.features._time import Clock
from userstrata.measure import stats as st
from userstrata.measure.privacy import check_min_count, hide
from userstrata.schema import PURCHASE_STATUSES

LEVELS = ("sku", "category")
BUCKETS = ("0", "0-10%", "10-30%", ">30%")  # by index 0..3
NO_GROUP = "(none)"
SKU_PATTERN = r'"sku"[ ]*:[ ]*"([^"]+)"'
PRICE_PATTERN = r'"price"[ ]*:[ ]*"?([0-9]+([.][0-9]+)?)'
_EPOCH = dt_.date(1970, 1, 1)

TEXT: dict[str, tuple[str, str]] = {
    "group": ("分组", "Group"),
    "item": ("商品", "Item"),
    "bucket": ("折扣档", "Discount"),
    "price_index": ("价格指数（相对原价）", "Price index (of list)"),
    "exposed": ("曝光用户", "Exposed users"),
    "buyers": ("购买用户", "Buyers"),
    "conversion": ("转化率", "Conversion"),
    "conversion_low": ("转化率下限", "Conversion low"),
    "conversion_high": ("转化率上限", "Conversion high"),
    "revenue_per_exposed": ("曝光人均收入", "Revenue per exposed user"),
    "revenue_low": ("人均收入下限", "Revenue low"),
    "revenue_high": ("人均收入上限", "Revenue high"),
    "units_per_buyer": ("人均购买件数", "Units per buyer"),
    "from_bucket": ("折扣档（少）", "From discount"),
    "to_bucket": ("折扣档（多）", "To discount"),
    "elasticity": ("弧弹性", "Arc elasticity"),
    "elasticity_low": ("弹性下限", "Elasticity low"),
    "elasticity_high": ("弹性上限", "Elasticity high"),
    "0": ("原价", "full price"),
    "0-10%": ("9折及以上", "up to 10% off"),
    "10-30%": ("7至9折", "10-30% off"),
    ">30%": ("7折以下", "over 30% off"),
    "chart_title": ("各折扣档转化率（{start} 至 {end}，{level:.0%} 区间）",
                    "Conversion by discount ({start} to {end}, {level:.0%} interval)"),
    "chart_title_buyers": ("各折扣档每位购买者收入（{start} 至 {end}，仅有购买者，{level:.0%} 区间）",
                           "Revenue per buyer by discount ({start} to {end}, buyers only, {level:.0%} interval)"),
    "buyers_only": ("行为事件未记录商品：曝光按购买者计，转化率无法计算",
                    "the events name no item: exposed users are the buyers only, conversion is not defined"),
    "suppressed": ("少于 {n} 人的格子已隐藏", "cells under {n} users hidden"),
    "list_list_price": ("折扣按每件商品的原价（list_price）计算",
                        "discounts are measured against each item's list price (list_price)"),
    "list_highest_price": ("商品没有原价（list_price）：折扣按该商品在期间内的最高售价计算",
                           "the items carry no list price: discounts are measured against the SKU's highest "
                           "price in the period"),
    "list_mixed": ("{n} 个商品行中 {k} 行按原价（list_price）计算折扣，其余按该商品期间内的原价或最高售价",
                   "{k} of {n} item lines measured against their list price (list_price), the rest against "
                   "their SKU's list price or highest price in the period"),
}

text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def _bucket(price_c: ir.IntegerValue, list_c: ir.IntegerValue) -> ir.IntegerValue:
    """The discount bucket index (0..3) in integer cents: exact on every engine."""
    return ibis.cases(
        ((list_c <= 0) | (price_c >= list_c), 0),
        (price_c * 10 >= list_c * 9, 1),
        (price_c * 10 >= list_c * 7, 2),
        else_=3,
    ).cast("int64")


def _check(start: dt_.date, end: dt_.date, level: str, resamples: int) -> None:
    if start > end:
        raise InputError(f"the range {start} to {end} is empty: the start is after the end",
                         hint="swap --from and --to", zh=f"时间范围 {start} 至 {end} 为空：开始日晚于结束日",
                         hint_zh="交换 --from 与 --to")
    if level not in LEVELS:
        raise InputError(f"level {level!r}: use one of {', '.join(LEVELS)}",
                         zh=f"粒度 level={level!r}：可选 sku（单品）或 category（品类）")
    if resamples < 0:
        raise InputError(f"resamples {resamples}: expected 0 or more", zh=f"重抽样次数 resamples={resamples} 不能为负数")


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The per-user cells (an Ibis table) and the side facts computed on the engine."""

    cells: ir.Table  # group, item, bucket, user_id, units, cents
    index: ir.Table  # item, bucket, price_index numerator / denominator
    views: ir.Table  # item-naming views: total and unpriced
    list_lines: ir.Table  # lines in the period and those with a list_price


def price_cells(
    orders: ir.Table, order_items: ir.Table, events: ir.Table | None = None, *, start: dt_.date, end: dt_.date,
    level: str = "sku", groups: ir.Table | None = None, view_events: Sequence[str] = ("page_view",),
    clock: Clock | None = None,
) -> _Inputs:
    """The Ibis expressions behind ``price_sensitivity``: one row per exposed user of each
    (group, item, bucket) with their ``units`` and line ``cents`` (0 for non-buyers)."""
    clock = clock or Clock()
    lo, hi = (start - _EPOCH).days, (end - _EPOCH).days
    paid = orders.filter(orders.status.isin(list(PURCHASE_STATUSES)), orders.user_id.notnull())
    paid = paid.select("order_id", "user_id", eday=_engine.epoch_day(clock.local_date(paid.ts)))
    paid = paid.filter(paid.eday >= lo, paid.eday <= hi)
    own_list = (to_cents(order_items.list_price.cast("float64")) if "list_price" in order_items.columns
                else ibis.null("int64"))
    items = order_items.select("order_id", "sku", "category", qty=order_items.quantity.fill_null(1).cast("int64"),
                               price_c=to_cents(order_items.price), own_c=own_list.cast("int64"))
    lines = paid.join(items, "order_id")
    lines = lines.select("user_id", "eday", "sku", "category", "qty", "price_c", "own_c")
    list_lines = lines.aggregate(lines=lines.count(), with_list=lines.own_c.notnull().cast("int64").sum())

    # views that name a SKU, with their own price when they carry one
    if events is not None:
        v = events.filter(events.user_id.notnull(), events.event.isin(list(view_events)), events.properties.notnull())
        v = v.select("user_id", eday=_engine.epoch_day(clock.local_date(v.ts)),
                     sku=v.properties.re_extract(SKU_PATTERN, 1).nullif(""),
                     vprice=v.properties.re_extract(PRICE_PATTERN, 1).nullif(""))
        v = v.filter(v.eday >= lo, v.eday <= hi, v.sku.notnull())
        v = v.mutate(vprice_c=to_cents(v.vprice.cast("float64")))
    else:
        v = None

    # the SKU's list price: its highest list_price in the period, else the highest price seen
    seen = lines.select("sku", price_c=lines.price_c, own_c=lines.own_c)
    if v is not None:
        seen = ibis.union(seen, v.filter(v.vprice_c.notnull()).select(
            "sku", price_c=v.vprice_c, own_c=ibis.null("int64")), distinct=False)
    lists = seen.group_by("sku").agg(list_c=ibis.coalesce(seen.own_c.max(), seen.price_c.max()))
    catalog = order_items.filter(order_items.sku.notnull()).group_by("sku").agg(
        cat=order_items.category.max()
    )

    lines = lines.join(lists, "sku")
    lines = lines.mutate(list_c=ibis.coalesce(lines.own_c, lines.list_c))  # the line's own list price first
    lines = lines.mutate(bucket=_bucket(lines.price_c, lines.list_c),
                         item=(lines.sku if level == "sku" else lines.category.fill_null(NO_GROUP)))
    index = lines.group_by(["item", "bucket"]).agg(
        paid_c=(lines.qty * lines.price_c).sum(), list_total_c=(lines.qty * lines.list_c).sum(),
    )
    buys = lines.group_by(["user_id", "item", "bucket"]).agg(
        units=lines.qty.sum(), cents=(lines.qty * lines.price_c).sum(),
    )

    if v is not None:
        day_min = lines.group_by(["sku", "eday"]).agg(day_c=lines.price_c.min())
        vv = v.left_join(day_min, ["sku", "eday"]).drop("sku_right", "eday_right")
        vv = vv.mutate(seen_c=ibis.coalesce(vv.vprice_c, vv.day_c))
        views = vv.aggregate(views=vv.count(), unpriced_views=vv.seen_c.isnull().cast("int64").sum())
        vv = vv.filter(vv.seen_c.notnull()).join(lists, "sku")
        vv = vv.left_join(catalog, "sku").drop("sku_right")
        vv = vv.select("user_id", bucket=_bucket(vv.seen_c, vv.list_c),
                       item=(vv.sku if level == "sku" else vv.cat.fill_null(NO_GROUP)))
        exposed = ibis.union(vv.select("user_id", "item", "bucket"), buys.select("user_id", "item", "bucket"),
                             distinct=True)
    else:
        views = ibis.memtable(pd.DataFrame({"views": [0], "unpriced_views": [0]}))
        exposed = buys.select("user_id", "item", "bucket")
    cells = exposed.left_join(buys, ["user_id", "item", "bucket"])
    cells = cells.select("user_id", "item", "bucket", units=cells.units.fill_null(0).cast("int64"),
                         cents=cells.cents.fill_null(0).cast("int64"))
    if groups is not None:
        g = groups.select("user_id", group=groups.group.cast("string"))
        cells = cells.left_join(g, "user_id").drop("user_id_right")
        cells = cells.mutate(group=cells.group.fill_null(NO_GROUP))
    else:
        cells = cells.mutate(group=ibis.literal(NO_GROUP))
    return _Inputs(cells=cells.select("group", "item", "bucket", "user_id", "units", "cents"), index=index,
                   views=views, list_lines=list_lines)


@dataclasses.dataclass(frozen=True)
class PriceSensitivity:
    """``table``: one row per (group, item, bucket) with ``price_index, exposed, buyers,
    conversion(_low/_high), revenue_per_exposed, revenue_low/high, units_per_buyer``;
    ``elasticity``: group, item, from_bucket, to_bucket, elasticity(_low/_high);
    ``pooled``: per (group, bucket) over every item (exposed user-item pairs), for the chart."""

    table: pd.DataFrame
    elasticity: pd.DataFrame
    pooled: pd.DataFrame
    exposure: str  # "views" or "buyers"
    views: int
    unpriced_views: int
    start: dt_.date
    end: dt_.date
    level: str
    by: str | None
    conf: float
    min_count: int | None
    lines: int = 0  # item lines in the period
    list_price_lines: int = 0  # of them, lines whose discount is measured from their own list_price

    @property
    def list_source(self) -> str:
        """What the discounts are measured against: ``list_price``, ``highest_price`` or ``mixed``."""
        if self.lines and self.list_price_lines == self.lines:
            return "list_price"
        return "mixed" if self.list_price_lines else "highest_price"

    def labelled(self, lang: str = "en") -> pd.DataFrame:
        out = self.table.copy()
        out["bucket"] = [text(b, lang) for b in out["bucket"]]
        return out.rename(columns={c: text(c, lang) for c in out.columns if c in TEXT})

    def notes(self, lang: str = "en") -> list[str]:
        out = [text("buyers_only", lang)] if self.exposure == "buyers" else []
        return out + [text(f"list_{self.list_source}", lang, k=self.list_price_lines, n=self.lines)]

    def chart(self, lang: str = "en", item: str | None = None) -> Any:
        """Conversion (revenue per buyer when exposure is buyers only) by discount bucket, one line
        per group, with interval error bars; pooled over items unless ``item`` is named."""
        import plotly.graph_objects as go  # noqa: PLC0415 - charts only when asked

        data = self.pooled if item is None else self.table[self.table["item"] == item]
        y, low, high = (("conversion", "conversion_low", "conversion_high") if self.exposure == "views"
                        else ("revenue_per_exposed", "revenue_low", "revenue_high"))
        fig = go.Figure()
        for group, part in data.groupby("group", sort=True):
            part = part.sort_values("bucket_index")
            fig.add_trace(go.Scatter(
                x=[text(b, lang) for b in part["bucket"]], y=part[y], mode="lines+markers", name=str(group),
                error_y={"type": "data", "symmetric": False, "array": (part[high] - part[y]).tolist(),
                         "arrayminus": (part[y] - part[low]).tolist()},
            ))
        key = "chart_title" if self.exposure == "views" else "chart_title_buyers"
        title = text(key, lang).format(start=self.start, end=self.end, level=self.conf)
        if item is not None:
            title = f"{item} · {title}"
        if self.min_count:
            title += f" ({text('suppressed', lang).format(n=self.min_count)})"
        fig.update_layout(title=title, xaxis_title=text("bucket", lang), yaxis_title=text(y, lang))
        return fig


def _default_execute(expr: ir.Expr) -> pd.DataFrame:
    return expr.to_pandas()


def price_sensitivity(
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table | None = None,
    *,
    start: dt_.date,
    end: dt_.date,
    level: str = "sku",
    groups: ir.Table | None = None,
    by: str | None = None,
    view_events: Sequence[str] = ("page_view",),
    resamples: int = 500,
    seed: int = 0,
    conf: float = 0.95,
    min_count: int | None = None,
    clock: Clock | None = None,
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> PriceSensitivity:
    """Price sensitivity from ``start`` to ``end`` (local days, both included): see the module's
    docstring. ``groups`` is a table ``(user_id, group)`` (e.g. the tier from the profile as of
    the day before ``start``, or a tag column); ``by`` only names it. ``min_count`` hides the
    cells with fewer exposed users or buyers (``privacy.hide``) and elasticities touching them."""
    _check(start, end, level, resamples)
    check_min_count(min_count)
    execute = execute or _default_execute
    inputs = price_cells(orders, order_items, events, start=start, end=end, level=level, groups=groups,
                         view_events=view_events, clock=clock)
    per_user = execute(inputs.cells)
    index = execute(inputs.index)
    views = execute(inputs.views)
    listed = execute(inputs.list_lines)
    n_lines = int(listed["lines"].fillna(0).iloc[0]) if len(listed) else 0
    n_listed = int(listed["with_list"].fillna(0).iloc[0]) if len(listed) else 0
    n_views = int(views["views"].fillna(0).iloc[0]) if len(views) else 0
    unpriced = int(views["unpriced_views"].fillna(0).iloc[0]) if len(views) else 0
    exposure = "views" if n_views > 0 else "buyers"
    per_user = per_user.astype({"bucket": "int64", "units": "int64", "cents": "int64"})
    per_user = per_user.sort_values(["group", "item", "bucket", "user_id"], kind="stable").reset_index(drop=True)
    index = index.astype({"bucket": "int64"})
    index["price_index"] = [p / q if q else 1.0 for p, q in zip(index["paid_c"].astype("int64"),
                                                             index["list_total_c"].astype("int64"))]
    table = _cells(per_user, ["group", "item", "bucket"], exposure, conf)
    table = table.merge(index[["item", "bucket", "price_index"]], on=["item", "bucket"], how="left")
    pooled = _cells(per_user, ["group", "bucket"], exposure, conf)
    elasticity = _elasticity(per_user, table, resamples, seed, conf)
    if min_count:
        for frame in (table, pooled):
            small = hide(frame["exposed"], min_count) | hide(frame["buyers"], min_count)
            frame["hidden"] = small
            for c in ("exposed", "buyers", "conversion", "conversion_low", "conversion_high", "revenue_per_exposed",
                      "revenue_low", "revenue_high", "units_per_buyer"):
                frame[c] = frame[c].astype("float64")
                frame.loc[small, c] = math.nan
        gone = table.loc[table["hidden"], ["group", "item", "bucket"]]
        bad = set(map(tuple, gone.itertuples(index=False)))
        drop = [(g, i, a) in bad or (g, i, b) in bad for g, i, a, b in
                zip(elasticity["group"], elasticity["item"], elasticity["from_index"], elasticity["to_index"])]
        for c in ("elasticity", "elasticity_low", "elasticity_high"):
            elasticity.loc[drop, c] = math.nan
        table, pooled = table.drop(columns="hidden"), pooled.drop(columns="hidden")
    cols = ["group", "item", "bucket", "price_index", "exposed", "buyers", "conversion", "conversion_low",
            "conversion_high", "revenue_per_exposed", "revenue_low", "revenue_high", "units_per_buyer"]
    table = table.assign(bucket_index=table["bucket"], bucket=[BUCKETS[b] for b in table["bucket"]])
    pooled = pooled.assign(bucket_index=pooled["bucket"], bucket=[BUCKETS[b] for b in pooled["bucket"]])
    elasticity = elasticity.assign(from_bucket=[BUCKETS[b] for b in elasticity["from_index"]],
                                   to_bucket=[BUCKETS[b] for b in elasticity["to_index"]])
    elasticity = elasticity[["group", "item", "from_bucket", "to_bucket", "elasticity", "elasticity_low",
                             "elasticity_high"]]
    return PriceSensitivity(table=table[[*cols, "bucket_index"]].reset_index(drop=True), elasticity=elasticity,
                            pooled=pooled.reset_index(drop=True), exposure=exposure, views=n_views,
                            unpriced_views=unpriced, start=start, end=end, level=level, by=by, conf=conf,
                            min_count=min_count, lines=n_lines, list_price_lines=n_listed)


def _cells(per_user: pd.DataFrame, keys: list[str], exposure: str, conf: float) -> pd.DataFrame:
    """Per ``keys``: exposed, buyers, conversion with Wilson interval, revenue per exposed user
    with a normal interval, units per buyer (money from whole cents)."""
    rows = []
    for key, part in per_user.groupby(keys, sort=True):
        cents = part["cents"].to_numpy(dtype="int64")
        n = len(part)
        buyers = int((part["units"] > 0).sum())
        units = int(part["units"].sum())
        if exposure == "views":
            conv = buyers / n
            c_low, c_high = st.wilson(buyers, n, conf)
        else:
            conv = c_low = c_high = math.nan
        total = int(cents.sum())
        squares = float(np.square(cents.astype('float64')).sum())  # float: no int64 overflow
        mean = st.MeanStat(n, total / 100, squares / 10_000)
        r_low, r_high = st.normal_mean(mean, conf)
        rows.append((*key, n, buyers, conv, c_low, c_high, mean.mean, r_low, r_high,
                     units / buyers if buyers else math.nan))
    return pd.DataFrame(rows, columns=[*keys, "exposed", "buyers", "conversion", "conversion_low", "conversion_high",
                                       "revenue_per_exposed", "revenue_low", "revenue_high", "units_per_buyer"])


def arc_elasticity(q_a: Any, q_b: Any, p_a: float, p_b: float) -> Any:
    """``((q_b - q_a) / ((q_a + q_b) / 2)) / ((p_b - p_a) / ((p_a + p_b) / 2))`` (NaN where undefined)."""
    q_a, q_b = np.asarray(q_a, dtype=float), np.asarray(q_b, dtype=float)
    if p_a + p_b == 0 or p_a == p_b:
        return np.full(np.broadcast(q_a, q_b).shape, np.nan)
    dp = (p_b - p_a) / ((p_a + p_b) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dq = np.where(q_a + q_b > 0, (q_b - q_a) / ((q_a + q_b) / 2), np.nan)
    return dq / dp


def _elasticity(per_user: pd.DataFrame, table: pd.DataFrame, resamples: int, seed: int, conf: float) -> pd.DataFrame:
    """Arc elasticity of units per exposed user between adjacent buckets, with a percentile
    bootstrap over the exposed users of each cell (cells drawn in sorted order from one seed)."""
    rng = np.random.default_rng(seed)
    draws: dict[tuple, np.ndarray] = {}
    for key, part in per_user.groupby(["group", "item", "bucket"], sort=True):
        units = part["units"].to_numpy(dtype="int64")
        if resamples:
            idx = rng.integers(0, len(units), size=(resamples, len(units)))
            draws[key] = units[idx].mean(axis=1)
    q = {(r.group, r.item, r.bucket): r.units_total / r.exposed for r in
         per_user.groupby(["group", "item", "bucket"], sort=True).agg(
             units_total=("units", "sum"), exposed=("units", "size")).reset_index().itertuples()}
    price = {(r.item, r.bucket): r.price_index for r in table.itertuples()}
    rows = []
    tail = (1 - conf) / 2
    for (group, item), part in table.groupby(["group", "item"], sort=True):
        buckets = sorted(int(b) for b in part["bucket"])
        for a, b in zip(buckets, buckets[1:]):
            p_a, p_b = price[(item, a)], price[(item, b)]
            est = float(arc_elasticity(q[(group, item, a)], q[(group, item, b)], p_a, p_b))
            low = high = math.nan
            if resamples:
                boot = arc_elasticity(draws[(group, item, a)], draws[(group, item, b)], p_a, p_b)
                boot = boot[~np.isnan(boot)]
                if len(boot):
                    low, high = (float(x) for x in np.quantile(boot, [tail, 1 - tail]))
            rows.append((group, item, a, b, est, low, high))
    return pd.DataFrame(rows, columns=["group", "item", "from_index", "to_index", "elasticity", "elasticity_low",
                                       "elasticity_high"])
