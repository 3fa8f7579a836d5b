"""Refunds (退款分析): refund rates by item, time to refund, and what refunders did before buying.

- **Orders** are paid orders (``schema.PURCHASE_STATUSES``) placed on local days ``[start, end]``;
  an order is **refunded** when its ``refund_amount`` is above 0 (a ``refunding`` order with no
  amount yet is not).
- **By item** (``sku``, or ``category`` with ``level="category"``): ``orders`` holding the item,
  ``refunded_orders`` among them; ``paid_amount`` = the item's lines (price × quantity) and
  ``refunded_amount`` = the order's refund shared over its lines in proportion to their amounts
  (to the cent, 四舍五入), since refunds are recorded per order. ``order_refund_rate`` =
  refunded_orders / orders, ``amount_refund_rate`` = refunded_amount / paid_amount. The ``(all)``
  row counts orders themselves (``amount``, ``refund_amount``), lines or not.
- **Time to refund**: ``refunded_at - ts`` of refunded orders with a ``refunded_at``;
  ``within_24h`` counts those at most 24 hours (86,400 s, inclusive) after the order.
- **Before buying**: for each order, the buyer's events in the ``before_hours`` before it
  (``ts - before_hours <= event < ts``): page views, events, and dwell seconds summed from a
  ``dwell_seconds`` or ``duration`` field of the events' ``properties`` JSON (null when no
  event carries one). Refunded orders are compared with kept ones (median and mean), overall
  and per item.
- ``min_count``: rows (and buckets) of fewer than ``min_count`` orders, but some, show no numbers.

Money is summed in whole cents on the engine (features/_money.py), so every engine agrees.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.features._money import divide_cents, to_cents
from userstrata.features._time import Clock
from userstrata.measure.patterns import ALL, check_min_count, check_period, default_execute, hide, paid_orders

LEVELS = ("sku", "category")
DAY_SECONDS = 86_400
# time-to-refund buckets: upper bounds in seconds, inclusive (the last one open)
TIME_BUCKETS = (
    ("le_1h", 3600), ("1h_6h", 6 * 3600), ("6h_24h", DAY_SECONDS), ("1d_3d", 3 * DAY_SECONDS),
    ("3d_7d", 7 * DAY_SECONDS), ("7d_30d", 30 * DAY_SECONDS), ("30d_plus", None),
)  # fmt: skip
# a number in a "dwell_seconds" or "duration" field of a JSON text; no backslashes, which
# Spark SQL string literals would unescape
DWELL_PATTERN = r'"(dwell_seconds|duration)"[ ]*:[ ]*"?([0-9]+([.][0-9]+)?)'

TEXT: dict[str, tuple[str, str]] = {
    "item": ("商品", "Item"),
    "category": ("品类", "Category"),
    "orders": ("订单数", "Orders"),
    "refunded_orders": ("退款订单数", "Refunded orders"),
    "order_refund_rate": ("退款率（单数）", "Refund rate (orders)"),
    "paid_amount": ("支付金额", "Paid"),
    "refunded_amount": ("退款金额", "Refunded"),
    "amount_refund_rate": ("退款率（金额）", "Refund rate (amount)"),
    "refunds_timed": ("有退款时间的单数", "Refunds with a time"),
    "within_24h": ("24 小时内退款", "Within 24 h"),
    "share_within_24h": ("24 小时内退款占比", "Share within 24 h"),
    "median_hours_to_refund": ("退款时长中位数（小时）", "Median hours to refund"),
    "bucket": ("下单到退款", "Order to refund"),
    "refunds": ("退款单数", "Refunds"),
    "share": ("占比", "Share"),
    "group": ("分组", "Group"),
    "refunded": ("退款用户", "Refunded"),
    "kept": ("未退款用户", "Kept"),
    "median_page_views": ("浏览次数中位数", "Median page views"),
    "mean_page_views": ("平均浏览次数", "Mean page views"),
    "median_events": ("行为次数中位数", "Median events"),
    "mean_events": ("平均行为次数", "Mean events"),
    "orders_with_dwell": ("有停留时长的单数", "Orders with dwell"),
    "median_dwell_seconds": ("停留时长中位数（秒）", "Median dwell (s)"),
    "mean_dwell_seconds": ("平均停留时长（秒）", "Mean dwell (s)"),
    "share_short_dwell": ("停留不足 {s} 秒占比", "Share under {s} s"),
    "all": ("全部", "All"),
    "le_1h": ("1 小时内", "≤ 1 h"),
    "1h_6h": ("1–6 小时", "1–6 h"),
    "6h_24h": ("6–24 小时", "6–24 h"),
    "1d_3d": ("1–3 天", "1–3 days"),
    "3d_7d": ("3–7 天", "3–7 days"),
    "7d_30d": ("7–30 天", "7–30 days"),
    "30d_plus": ("30 天以上", "30 days +"),
    "rates_title": ("退款率最高的{what}（至少 {n} 单）", "Highest refund rates by {what} (at least {n} orders)"),
    "timing_title": ("下单到退款的时长分布（24 小时内 {share}）", "Time from order to refund ({share} within 24 h)"),
    "behaviour_title": ("购买前 {h} 小时的行为：退款 vs 未退款", "The {h} hours before buying: refunded vs kept"),
    "count_axis": ("退款单数", "Refunds"),
    "rate_axis": ("退款率（单数）", "Refund rate (orders)"),
    "value_axis": ("中位数", "Median"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def _check(level: str, before_hours: float) -> None:
    if level not in LEVELS:
        raise InputError(f"refund level {level!r}: use one of {', '.join(LEVELS)}",
                         zh=f"退款分析的粒度 {level!r} 无效：可选 {', '.join(LEVELS)}")
    if not before_hours > 0:
        raise InputError(f"before_hours {before_hours} must be positive", hint="e.g. --before-hours 24",
                         zh=f"购买前的时长 before_hours={before_hours} 必须大于 0", hint_zh="例如 --before-hours 24")


# -- expressions -------------------------------------------------------------------------------
def refund_orders(orders: ir.Table, *, start: dt_.date | None = None, end: dt_.date | None = None,
                  clock: Clock = Clock()) -> ir.Table:
    """Paid orders with ``amount_cents``, ``refund_cents``, ``refunded`` and ``seconds_to_refund``."""
    paid = paid_orders(orders, start=start, end=end, clock=clock)
    refund_cents = to_cents(paid.refund_amount.fill_null(0.0))
    refunded = refund_cents > 0
    seconds = paid.refunded_at.epoch_seconds() - paid.ts.epoch_seconds()
    return paid.select(
        "order_id", "user_id", "ts", amount_cents=to_cents(paid.amount.fill_null(0.0)), refund_cents=refund_cents,
        refunded=refunded,
        seconds_to_refund=ibis.ifelse(refunded & paid.refunded_at.notnull(), seconds, ibis.null("int64")),
    )  # fmt: skip


def refund_items(orders: ir.Table, order_items: ir.Table, *, level: str = "sku", **period: Any) -> ir.Table:
    """One row per (paid order, item) with the item's ``item_cents`` and its share of the
    order's refund, ``item_refund_cents``."""
    paid = refund_orders(orders, **period)
    lines = order_items.filter(order_items[level].notnull())
    lines = lines.select("order_id", item=lines[level].cast("string"),
                         line_cents=to_cents(lines.price) * lines.quantity.fill_null(1).cast("int64"))
    per_item = lines.group_by(["order_id", "item"]).aggregate(item_cents=lines.line_cents.sum())
    totals = lines.group_by("order_id").aggregate(items_cents=lines.line_cents.sum())
    joined = per_item.join(totals, "order_id").join(paid, "order_id")
    safe = ibis.ifelse(joined.items_cents > 0, joined.items_cents, 1)  # no division by 0 (ANSI Spark)
    share = ibis.ifelse(joined.items_cents > 0, divide_cents(joined.refund_cents * joined.item_cents, safe), 0)
    return joined.select("order_id", "user_id", "ts", "item", "item_cents", "refunded", "seconds_to_refund",
                         item_refund_cents=share)


def _rate_aggs(t: ir.Table, amount: str, refund: str) -> dict[str, ir.Value]:
    timed = t.seconds_to_refund.notnull()
    return dict(
        orders=t.count(),
        refunded_orders=t.refunded.ifelse(1, 0).sum(),
        paid_cents=t[amount].sum(),
        refunded_cents=t[refund].sum(),
        refunds_timed=timed.ifelse(1, 0).sum(),
        within_24h=(timed & (t.seconds_to_refund <= DAY_SECONDS)).ifelse(1, 0).sum(),
        median_seconds_to_refund=t.seconds_to_refund.median(),
    )


def refund_rates_expr(orders: ir.Table, order_items: ir.Table | None, *, level: str = "sku",
                      **period: Any) -> ir.Table:
    """Counts and cents per item, plus the ``(all)`` row of every paid order."""
    paid = refund_orders(orders, **period)
    overall = paid.aggregate(**_rate_aggs(paid, "amount_cents", "refund_cents")).mutate(item=ibis.literal(ALL))
    if order_items is None:
        return overall
    items = refund_items(orders, order_items, level=level, **period)
    by_item = items.group_by("item").aggregate(**_rate_aggs(items, "item_cents", "item_refund_cents"))
    return ibis.union(overall.select(*by_item.columns), by_item)


def refund_timing_expr(orders: ir.Table, **period: Any) -> ir.Table:
    """Refunded orders per time-to-refund bucket (index into ``TIME_BUCKETS``)."""
    paid = refund_orders(orders, **period)
    timed = paid.filter(paid.seconds_to_refund.notnull())
    branches = [(timed.seconds_to_refund <= bound, ibis.literal(i)) for i, (_, bound) in enumerate(TIME_BUCKETS)
                if bound]
    timed = timed.mutate(bucket=ibis.cases(*branches, else_=ibis.literal(len(TIME_BUCKETS) - 1)))
    return timed.group_by("bucket").aggregate(refunds=timed.count())


def pre_purchase(orders: ir.Table, events: ir.Table, *, before_hours: float = 24,
                 short_dwell_seconds: float = 30, **period: Any) -> ir.Table:
    """One row per paid order: ``refunded``, the buyer's ``page_views`` and ``events`` in the
    ``before_hours`` before it, and ``dwell_ms`` (summed; null when no event has the field)."""
    paid = refund_orders(orders, **period).select("order_id", "user_id", "ts", "refunded")
    found = events.properties.re_extract(DWELL_PATTERN, 2).nullif("")
    ev = events.filter(events.user_id.notnull()).select(
        e_user=events.user_id, e_ts=events.ts, e_page=(events.event == "page_view").ifelse(1, 0),
        e_dwell_ms=(found.cast("float64") * 1000).round().cast("int64"),
    )  # fmt: skip
    window_start = paid.ts - ibis.interval(seconds=int(round(before_hours * 3600)))
    joined = paid.left_join(ev, [paid.user_id == ev.e_user, ev.e_ts < paid.ts, ev.e_ts >= window_start])
    per_order = joined.group_by(["order_id", "refunded"]).aggregate(
        page_views=joined.e_page.sum().fill_null(0).cast("int64"),
        events=joined.e_ts.count().cast("int64"),
        dwell_ms=joined.e_dwell_ms.sum(),
    )
    short = int(round(short_dwell_seconds * 1000))
    return per_order.mutate(short_dwell=ibis.ifelse(per_order.dwell_ms.notnull() & (per_order.dwell_ms < short), 1, 0))


def _behaviour_aggs(t: ir.Table) -> dict[str, ir.Value]:
    return dict(
        orders=t.count(),
        page_views_sum=t.page_views.sum(),
        median_page_views=t.page_views.median(),
        events_sum=t.events.sum(),
        median_events=t.events.median(),
        orders_with_dwell=t.dwell_ms.count(),
        dwell_ms_sum=t.dwell_ms.sum(),
        median_dwell_ms=t.dwell_ms.median(),
        short_dwell=t.short_dwell.sum(),
    )


def behaviour_expr(orders: ir.Table, events: ir.Table, order_items: ir.Table | None = None, *,
                   level: str = "sku", before_hours: float = 24, short_dwell_seconds: float = 30,
                   **period: Any) -> ir.Table:
    """Refunded vs kept orders' pre-purchase behaviour, overall (``(all)``) and per item."""
    per_order = pre_purchase(orders, events, before_hours=before_hours, short_dwell_seconds=short_dwell_seconds,
                             **period)
    overall = per_order.group_by("refunded").aggregate(**_behaviour_aggs(per_order)).mutate(item=ibis.literal(ALL))
    if order_items is None:
        return overall
    lines = order_items.filter(order_items[level].notnull())
    lines = lines.select("order_id", item=lines[level].cast("string")).distinct()
    with_item = per_order.join(lines, "order_id")
    by_item = with_item.group_by(["item", "refunded"]).aggregate(**_behaviour_aggs(with_item))
    return ibis.union(overall.select(*by_item.columns), by_item)


# -- the result --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RefundResult:
    """``rates``: one row per item (and ``(all)``); ``timing``: refunds per time bucket;
    ``behaviour``: per item (and ``(all)``) and group (refunded / kept), the pre-purchase numbers."""

    rates: pd.DataFrame
    timing: pd.DataFrame
    behaviour: pd.DataFrame
    definition: dict[str, Any]

    def table(self, lang: str = "en", top: int | None = None) -> pd.DataFrame:
        """``rates`` with headers in ``lang`` (rates as fractions; hours to refund)."""
        frame = self.rates if top is None else self.rates.head(top)
        out = frame.copy()
        out["item"] = [text("all", lang) if v == ALL else v for v in out["item"]]
        names = {c: text(c, lang) for c in out.columns if c in TEXT}
        names["item"] = text("category" if self.definition["level"] == "category" else "item", lang)
        return out.rename(columns=names)

    def behaviour_table(self, lang: str = "en", item: str | None = None) -> pd.DataFrame:
        frame = self.behaviour if item is None else self.behaviour[self.behaviour["item"] == item]
        out = frame.copy()
        out["item"] = [text("all", lang) if v == ALL else v for v in out["item"]]
        out["group"] = [text(g, lang) for g in out["group"]]
        short = text("share_short_dwell", lang).format(s=f"{self.definition['short_dwell_seconds']:g}")
        names = {c: text(c, lang) for c in out.columns if c in TEXT and c != "share_short_dwell"}
        names.update(item=text("category" if self.definition["level"] == "category" else "item", lang),
                     share_short_dwell=short)
        return out.rename(columns=names)

    def chart(self, lang: str = "en", kind: str = "rates", top: int = 20) -> Any:
        """``rates``: bars of the items with the highest refund rate (orders); ``timing``: bars of
        refunds per time bucket; ``behaviour``: median page views and dwell, refunded vs kept."""
        import plotly.graph_objects as go  # noqa: PLC0415 - only charts need it

        fig = go.Figure()
        if kind == "rates":
            n = self.definition["min_count"] or 1
            part = self.rates[(self.rates["item"] != ALL) & (self.rates["orders"].fillna(0) >= n)]
            part = part.sort_values(["order_refund_rate", "orders", "item"], ascending=[False, False, True],
                                    kind="stable").head(top)
            # vertical bars: the PNG writer draws horizontal ones only with numeric labels
            fig.add_trace(go.Bar(
                x=part["item"].tolist(), y=part["order_refund_rate"].astype(float).tolist(),
                text=[f"{s:.0%}" if pd.notna(s) else "" for s in part["share_within_24h"]],
                hovertemplate="%{x}: %{y:.1%} (24 h: %{text})<extra></extra>",
            ))  # fmt: skip
            what = text("category" if self.definition["level"] == "category" else "item", lang)
            fig.update_layout(title=text("rates_title", lang).format(what=what, n=n),
                              xaxis_title=what, yaxis_title=text("rate_axis", lang), yaxis_tickformat=".0%")
        elif kind == "timing":
            overall = self.rates[self.rates["item"] == ALL]
            share = overall["share_within_24h"].iloc[0] if len(overall) else float("nan")
            fig.add_trace(go.Bar(x=[text(b, lang) for b in self.timing["bucket"]],
                                 y=self.timing["refunds"].astype(float).tolist()))
            fig.update_layout(title=text("timing_title", lang).format(share="n/a" if pd.isna(share) else f"{share:.0%}"),
                              xaxis_title=text("bucket", lang), yaxis_title=text("count_axis", lang))
        elif kind == "behaviour":
            part = self.behaviour[self.behaviour["item"] == ALL]
            metrics = ["median_page_views", "median_events", "median_dwell_seconds"]
            for group in ("refunded", "kept"):
                row = part[part["group"] == group]
                y = [float(row[m].iloc[0]) if len(row) and pd.notna(row[m].iloc[0]) else float("nan") for m in metrics]
                fig.add_trace(go.Bar(x=[text(m, lang) for m in metrics], y=y, name=text(group, lang)))
            fig.update_layout(title=text("behaviour_title", lang).format(h=f"{self.definition['before_hours']:g}"),
                              yaxis_title=text("value_axis", lang), barmode="group")
        else:
            raise InputError(f"refund chart {kind!r}: use one of rates, timing, behaviour",
                             zh=f"退款图表类型 {kind!r} 无效：可选 rates、timing、behaviour")
        return fig


def refunds(
    orders: ir.Table, order_items: ir.Table | None = None, events: ir.Table | None = None, *,
    level: str = "sku", start: dt_.date | None = None, end: dt_.date | None = None, before_hours: float = 24,
    short_dwell_seconds: float = 30, min_count: int | None = None, clock: Clock = Clock(),
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> RefundResult:
    """Refund rates by item, time to refund and refunders' pre-purchase behaviour.

    Parameters
    ----------
    level
        ``sku`` or ``category``.
    before_hours
        How far before each order its buyer's events are looked at.
    short_dwell_seconds
        ``share_short_dwell`` counts orders whose summed dwell is below this.
    min_count
        When given, rows and buckets of fewer orders (but some) show no numbers.
    """
    _check(level, before_hours)
    check_min_count(min_count)
    check_period(start, end, "refunds", "退款分析")
    execute = execute or default_execute
    period = dict(start=start, end=end, clock=clock)
    rates = _rates(execute(refund_rates_expr(orders, order_items, level=level, **period)), min_count)
    timing = _timing(execute(refund_timing_expr(orders, **period)), min_count)
    if events is not None:
        raw = execute(behaviour_expr(orders, events, order_items, level=level, before_hours=before_hours,
                                     short_dwell_seconds=short_dwell_seconds, **period))
    else:
        raw = None
    behaviour = _behaviour(raw, min_count)
    definition = dict(level=level, start=start, end=end, before_hours=before_hours,
                      short_dwell_seconds=short_dwell_seconds, min_count=min_count, timezone=clock.zone)
    return RefundResult(rates, timing, behaviour, definition)


def _ints(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for col in cols:
        frame[col] = pd.to_numeric(frame[col]).fillna(0).astype("int64")
    return frame


def _rates(raw: pd.DataFrame, min_count: int | None) -> pd.DataFrame:
    frame = _ints(raw.copy(), ["orders", "refunded_orders", "paid_cents", "refunded_cents", "refunds_timed",
                               "within_24h"])
    frame["paid_amount"] = frame["paid_cents"] / 100
    frame["refunded_amount"] = frame["refunded_cents"] / 100
    frame["order_refund_rate"] = (frame["refunded_orders"] / frame["orders"]).where(frame["orders"] > 0)
    frame["amount_refund_rate"] = (frame["refunded_cents"] / frame["paid_cents"]).where(frame["paid_cents"] > 0)
    frame["share_within_24h"] = (frame["within_24h"] / frame["refunds_timed"]).where(frame["refunds_timed"] > 0)
    frame["median_hours_to_refund"] = pd.to_numeric(frame["median_seconds_to_refund"]).astype(float) / 3600
    cols = ["item", "orders", "refunded_orders", "order_refund_rate", "paid_amount", "refunded_amount",
            "amount_refund_rate", "refunds_timed", "within_24h", "share_within_24h", "median_hours_to_refund"]
    frame = frame[cols]
    hidden = hide(frame["orders"], min_count)
    for col in cols[1:]:
        if frame[col].dtype.kind in "iu":
            frame[col] = frame[col].astype("Int64").mask(hidden)
        else:
            frame[col] = frame[col].astype(float).mask(hidden)
    # the (all) row first, then the highest refund rate (orders), then the most orders
    key = frame["item"] != ALL
    frame = frame.assign(_all=key).sort_values(["_all", "order_refund_rate", "orders", "item"],
                                               ascending=[True, False, False, True], kind="stable", na_position="last")
    return frame.drop(columns="_all").reset_index(drop=True)


def _timing(raw: pd.DataFrame, min_count: int | None) -> pd.DataFrame:
    counts = dict(zip(pd.to_numeric(raw["bucket"]).astype(int), pd.to_numeric(raw["refunds"]).astype("int64")))
    frame = pd.DataFrame({"bucket": [b for b, _ in TIME_BUCKETS],
                          "refunds": [counts.get(i, 0) for i in range(len(TIME_BUCKETS))]})
    total = frame["refunds"].sum()
    frame["share"] = frame["refunds"] / total if total else float("nan")
    frame["cumulative_share"] = frame["refunds"].cumsum() / total if total else float("nan")
    hidden = hide(frame["refunds"], min_count)
    frame["refunds"] = frame["refunds"].astype("Int64").mask(hidden)
    frame["share"] = frame["share"].astype(float).mask(hidden)
    return frame


_BEHAVIOUR_COLUMNS = ["item", "group", "orders", "mean_page_views", "median_page_views", "mean_events",
                      "median_events", "orders_with_dwell", "mean_dwell_seconds", "median_dwell_seconds",
                      "share_short_dwell"]


def _behaviour(raw: pd.DataFrame | None, min_count: int | None) -> pd.DataFrame:
    if raw is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _BEHAVIOUR_COLUMNS})
    frame = _ints(raw.copy(), ["orders", "page_views_sum", "events_sum", "orders_with_dwell", "dwell_ms_sum",
                               "short_dwell"])
    frame["group"] = ["refunded" if bool(r) else "kept" for r in frame["refunded"]]
    frame["mean_page_views"] = frame["page_views_sum"] / frame["orders"]
    frame["mean_events"] = frame["events_sum"] / frame["orders"]
    with_dwell = frame["orders_with_dwell"]
    frame["mean_dwell_seconds"] = (frame["dwell_ms_sum"] / with_dwell / 1000).where(with_dwell > 0)
    frame["median_dwell_seconds"] = pd.to_numeric(frame["median_dwell_ms"]).astype(float) / 1000
    frame["share_short_dwell"] = (frame["short_dwell"] / with_dwell).where(with_dwell > 0)
    for col in ("median_page_views", "median_events"):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
    frame = frame[_BEHAVIOUR_COLUMNS]
    hidden = hide(frame["orders"], min_count)
    for col in _BEHAVIOUR_COLUMNS[2:]:
        if frame[col].dtype.kind in "iu":
            frame[col] = frame[col].astype("Int64").mask(hidden)
        else:
            frame[col] = frame[col].astype(float).mask(hidden)
    frame = frame.assign(_all=frame["item"] != ALL, _kept=frame["group"] == "kept")
    frame = frame.sort_values(["_all", "item", "_kept"], kind="stable")
    return frame.drop(columns=["_all", "_kept"]).reset_index(drop=True)
