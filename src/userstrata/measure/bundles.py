"""Bundles (搭配购买): items bought together, with support, confidence and lift.

- **Basket**: one paid order (``basket="order"``, the default) or everything one user paid for on
  one shop-local day (``basket="user_day"``). Only baskets with at least one line in
  ``order_items`` count; an item bought twice in one basket counts once.
- **Item**: the line's ``sku``, or its ``category`` with ``level="category"``.
- With N baskets: ``support(X)`` = baskets holding every item of X / N;
  ``confidence(A → B)`` = support(A ∪ B) / support(A); ``lift(A → B)`` = confidence / support(B)
  (above 1: bought together more often than chance).
- Itemsets are kept when held by at least ``ceil(min_support × N)`` baskets (and at least
  ``min_count`` when given). Apriori pruning: pairs are counted only among items that are
  frequent on their own, triples only among items of frequent pairs, so the self-join stays
  small on millions of orders.

The engine returns whole counts only; ratios are computed from them afterwards, so every
engine gives the same numbers.

References
----------
Agrawal, R. & Srikant, R. (1994). Fast algorithms for mining association rules. VLDB.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
import math
from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.features._time import Clock
from userstrata.measure.patterns import check_min_count, check_period, default_execute, paid_orders

LEVELS = ("sku", "category")
BASKETS = ("order", "user_day")
JOIN = " + "  # between the items of an antecedent in a rule's text

TEXT: dict[str, tuple[str, str]] = {
    "item_a": ("商品 A", "Item A"),
    "item_b": ("商品 B", "Item B"),
    "item_c": ("商品 C", "Item C"),
    "baskets": ("共同购买篮数", "Baskets together"),
    "support": ("支持度", "Support"),
    "support_a": ("A 的支持度", "Support A"),
    "support_b": ("B 的支持度", "Support B"),
    "confidence_ab": ("置信度 A→B", "Confidence A→B"),
    "confidence_ba": ("置信度 B→A", "Confidence B→A"),
    "lift": ("提升度", "Lift"),
    "antecedent": ("前项", "If bought"),
    "consequent": ("后项", "Then also"),
    "confidence": ("置信度", "Confidence"),
    "size": ("件数", "Items"),
    "title": ("搭配购买：提升度最高的组合（{n:,} 个购物篮，最小支持度 {s:.2%}）",
              "Bought together: pairs by lift ({n:,} baskets, min support {s:.2%})"),
    "lift_axis": ("提升度", "Lift"),
    "pair_axis": ("商品组合", "Pair"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


def _check(level: str, basket: str, min_support: float, max_size: int) -> None:
    if level not in LEVELS:
        raise InputError(f"bundle level {level!r}: use one of {', '.join(LEVELS)}",
                         zh=f"搭配分析的粒度 {level!r} 无效：可选 {', '.join(LEVELS)}")
    if basket not in BASKETS:
        raise InputError(f"basket {basket!r}: use one of {', '.join(BASKETS)}",
                         zh=f"购物篮定义 {basket!r} 无效：可选 {', '.join(BASKETS)}（订单 / 用户当天）")
    if not (0 < min_support <= 1):
        raise InputError(f"min_support {min_support} must be in (0, 1]", hint="e.g. --min-support 0.001",
                         zh=f"最小支持度 {min_support} 须在 (0, 1] 之间", hint_zh="例如 --min-support 0.001")
    if max_size not in (2, 3):
        raise InputError(f"max_size {max_size}: itemsets of 2 (pairs) or 3 (triples)",
                         zh=f"组合大小上限 {max_size} 无效：只能是 2（两件）或 3（三件）")


# -- expressions -------------------------------------------------------------------------------
def basket_items(
    orders: ir.Table, order_items: ir.Table, *, level: str = "sku", basket: str = "order",
    start: dt_.date | None = None, end: dt_.date | None = None, clock: Clock = Clock(),
) -> ir.Table:
    """Distinct ``(basket_id, item)`` of paid orders: the input of every count here."""
    _check(level, basket, 0.5, 2)
    paid = paid_orders(orders, start=start, end=end, clock=clock)
    if basket == "order":
        keys = paid.select("order_id", basket_id=paid.order_id.cast("string"))
    else:
        day = clock.local_date(paid.ts).cast("string")
        keys = paid.filter(paid.user_id.notnull()).select(
            "order_id", basket_id=paid.user_id.cast("string") + ibis.literal("|") + day)
    lines = order_items.filter(order_items[level].notnull()).select("order_id", item=order_items[level].cast("string"))
    joined = lines.join(keys, "order_id")
    return joined.select("basket_id", "item").distinct()


def item_counts(items: ir.Table) -> ir.Table:
    """Baskets per item: ``(item, baskets)``."""
    return items.group_by("item").aggregate(baskets=items.count())


def pair_counts(items: ir.Table, frequent: ir.Table, threshold: int) -> ir.Table:
    """``(item_a, item_b, baskets)`` with item_a < item_b, among ``frequent`` items only, held by
    at least ``threshold`` baskets."""
    kept = items.semi_join(frequent, items.item == frequent.item)
    a = kept.rename(a_basket="basket_id", item_a="item")
    b = kept.rename(b_basket="basket_id", item_b="item")
    pairs = a.join(b, [a.a_basket == b.b_basket, a.item_a < b.item_b]).select("item_a", "item_b")
    counted = pairs.group_by(["item_a", "item_b"]).aggregate(baskets=pairs.count())
    return counted.filter(counted.baskets >= threshold)


def triple_counts(items: ir.Table, pairs: ir.Table, threshold: int) -> ir.Table:
    """``(item_a, item_b, item_c, baskets)``, a < b < c, among items of frequent ``pairs``; each
    triple's three pairs must be frequent (apriori)."""
    in_pairs = pairs.select(item=pairs.item_a).union(pairs.select(item=pairs.item_b))  # distinct
    kept = items.semi_join(in_pairs, items.item == in_pairs.item)
    ab = pairs.select("item_a", "item_b")
    a = kept.rename(a_basket="basket_id", item_a="item")
    b = kept.rename(b_basket="basket_id", item_b="item")
    c = kept.rename(c_basket="basket_id", item_c="item")
    # start from baskets' frequent pairs, then add a third item above both
    first = a.join(b, [a.a_basket == b.b_basket, a.item_a < b.item_b])
    first = first.select("a_basket", "item_a", "item_b")
    first = first.semi_join(ab, [first.item_a == ab.item_a, first.item_b == ab.item_b])
    triples = first.join(c, [first.a_basket == c.c_basket, first.item_b < c.item_c])
    triples = triples.select("item_a", "item_b", "item_c")
    counted = triples.group_by(["item_a", "item_b", "item_c"]).aggregate(baskets=triples.count())
    counted = counted.filter(counted.baskets >= threshold)
    ac = pairs.select(p_a=pairs.item_a, p_c=pairs.item_b)
    bc = pairs.select(q_b=pairs.item_a, q_c=pairs.item_b)
    counted = counted.semi_join(ac, [counted.item_a == ac.p_a, counted.item_c == ac.p_c])
    return counted.semi_join(bc, [counted.item_b == bc.q_b, counted.item_c == bc.q_c])


# -- the result --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BundleResult:
    """``items``: baskets per frequent item; ``pairs``: one row per frequent pair (support,
    both confidences, lift); ``triples``: one row per frequent triple (empty unless asked);
    ``n_baskets``: N."""

    items: pd.DataFrame
    pairs: pd.DataFrame
    triples: pd.DataFrame
    n_baskets: int
    definition: dict[str, Any]

    def rules(self) -> pd.DataFrame:
        """Every rule A → B of the pairs (both directions) and {A, B} → C of the triples, with
        ``support`` (of the whole itemset), ``confidence`` and ``lift``; by lift, then support."""
        n = self.n_baskets
        held = self.items.set_index("item")["baskets"]
        rows = []
        for r in self.pairs.itertuples(index=False):
            for x, y in ((r.item_a, r.item_b), (r.item_b, r.item_a)):
                rows.append((x, y, 2, r.baskets, held[x], held[y]))
        if len(self.triples):
            pair_held = {(r.item_a, r.item_b): r.baskets for r in self.pairs.itertuples(index=False)}
            for r in self.triples.itertuples(index=False):
                trio = (r.item_a, r.item_b, r.item_c)
                for k in range(3):
                    x = tuple(v for i, v in enumerate(trio) if i != k)
                    rows.append((JOIN.join(x), trio[k], 3, r.baskets, pair_held[x], held[trio[k]]))
        frame = pd.DataFrame(rows, columns=["antecedent", "consequent", "size", "baskets", "antecedent_baskets",
                                            "consequent_baskets"])
        for col in ("size", "baskets", "antecedent_baskets", "consequent_baskets"):
            frame[col] = frame[col].astype("int64")
        frame["support"] = frame["baskets"] / n if n else pd.Series(dtype=float)
        frame["confidence"] = frame["baskets"] / frame["antecedent_baskets"]
        frame["lift"] = frame["confidence"] / (frame["consequent_baskets"] / n) if n else frame["confidence"]
        return frame.sort_values(["lift", "baskets", "antecedent", "consequent"], ascending=[False, False, True, True],
                                 kind="stable").reset_index(drop=True)

    def table(self, lang: str = "en", top: int | None = None) -> pd.DataFrame:
        """``pairs`` with headers in ``lang`` (ratios as fractions), the first ``top`` rows."""
        frame = self.pairs if top is None else self.pairs.head(top)
        cols = ["item_a", "item_b", "baskets", "support", "confidence_ab", "confidence_ba", "lift"]
        return frame[cols].rename(columns={c: text(c, lang) for c in cols})

    def chart(self, lang: str = "en", top: int = 20) -> Any:
        """Bars: the ``top`` pairs by lift, highest first, support on the bars."""
        import plotly.graph_objects as go  # noqa: PLC0415 - only charts need it

        best = self.pairs.sort_values(["lift", "baskets"], ascending=[False, False], kind="stable").head(top)
        # vertical bars: the PNG writer draws horizontal ones only with numeric labels
        fig = go.Figure(go.Bar(
            x=[f"{a}{JOIN}{b}" for a, b in zip(best["item_a"], best["item_b"])], y=best["lift"].astype(float).tolist(),
            text=[f"{s:.2%}" for s in best["support"]],
            hovertemplate="%{x}: lift %{y:.2f}, support %{text}<extra></extra>",
        ))  # fmt: skip
        d = self.definition
        fig.update_layout(title=text("title", lang).format(n=self.n_baskets, s=d["min_support"]),
                          xaxis_title=text("pair_axis", lang), yaxis_title=text("lift_axis", lang))
        return fig


def bundles(
    orders: ir.Table, order_items: ir.Table, *, level: str = "sku", basket: str = "order",
    min_support: float = 0.001, max_size: int = 2, min_count: int | None = None,
    start: dt_.date | None = None, end: dt_.date | None = None, clock: Clock = Clock(),
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> BundleResult:
    """Frequent pairs (and triples with ``max_size=3``) of items bought together.

    The baskets are built once (cached on the engine), then three passes read them: the number
    of baskets and each item's count; the pairs among frequent items; with ``max_size=3`` the
    triples among items of frequent pairs.

    Parameters
    ----------
    level
        ``sku`` or ``category``.
    basket
        ``order`` (one paid order) or ``user_day`` (one user's paid orders of one local day).
    min_support
        Smallest share of baskets an itemset must be in (0.001 = 0.1%).
    min_count
        When given, itemsets held by fewer baskets are left out as well.
    """
    _check(level, basket, min_support, max_size)
    check_min_count(min_count)
    check_period(start, end, "bundles", "搭配购买")
    execute = execute or default_execute
    built = basket_items(orders, order_items, level=level, basket=basket, start=start, end=end, clock=clock)
    # the baskets are built once (paid orders joined with their lines) and every count reads them
    with built.cache() as items:
        return _bundles(items, execute, level=level, basket=basket, min_support=min_support, max_size=max_size,
                        min_count=min_count, start=start, end=end)


def _bundles(items: ir.Table, execute: Callable[[ir.Expr], Any], *, level: str, basket: str, min_support: float,
             max_size: int, min_count: int | None, start: dt_.date | None, end: dt_.date | None) -> BundleResult:
    singles = execute(item_counts(items))
    singles = singles.astype({"baskets": "int64"})
    n = _scalar(execute, items.basket_id.nunique())
    # a whole number of baskets; the tiny epsilon keeps 0.3 * 10 from rounding up to 4
    threshold = max(1, math.ceil(min_support * n - 1e-9), min_count or 1)
    frequent = singles[singles["baskets"] >= threshold].sort_values(["baskets", "item"], ascending=[False, True])
    frequent = frequent.reset_index(drop=True)
    empty_pairs = pd.DataFrame({"item_a": pd.Series(dtype=object), "item_b": pd.Series(dtype=object),
                                "baskets": pd.Series(dtype="int64")})
    if len(frequent) >= 2:
        pair_expr = pair_counts(items, ibis.memtable(frequent[["item"]]), threshold)
        pairs = execute(pair_expr).astype({"baskets": "int64"})
    else:
        pair_expr, pairs = None, empty_pairs
    triples = pd.DataFrame({c: pd.Series(dtype=object) for c in ("item_a", "item_b", "item_c")}
                           | {"baskets": pd.Series(dtype="int64")})
    if max_size == 3 and pair_expr is not None and len(pairs) >= 2:
        pairs_t = ibis.memtable(pairs[["item_a", "item_b"]])
        triples = execute(triple_counts(items, pairs_t, threshold)).astype({"baskets": "int64"})
    held = frequent.set_index("item")["baskets"]
    pairs = _pair_ratios(pairs, held, n)
    if len(triples):
        triples = triples.assign(support=triples["baskets"] / n).sort_values(
            ["baskets", "item_a", "item_b", "item_c"], ascending=[False, True, True, True], kind="stable")
    triples = triples.reset_index(drop=True)
    definition = dict(level=level, basket=basket, min_support=min_support, max_size=max_size, min_count=min_count,
                      threshold=threshold, start=start, end=end)
    return BundleResult(frequent, pairs, triples, n, definition)


def _scalar(execute: Callable[[ir.Expr], Any], expr: ir.Scalar) -> int:
    value = execute(expr)
    if isinstance(value, pd.DataFrame):
        value = value.iloc[0, 0]
    return 0 if value is None or pd.isna(value) else int(value)


def _pair_ratios(pairs: pd.DataFrame, held: pd.Series, n: int) -> pd.DataFrame:
    out = pairs[["item_a", "item_b", "baskets"]].copy()
    a = out["item_a"].map(held).astype("float64")
    b = out["item_b"].map(held).astype("float64")
    out["support"] = out["baskets"] / n if n else 0.0
    out["support_a"] = a / n if n else 0.0
    out["support_b"] = b / n if n else 0.0
    out["confidence_ab"] = out["baskets"] / a
    out["confidence_ba"] = out["baskets"] / b
    out["lift"] = out["baskets"] * n / (a * b) if n else 0.0
    return out.sort_values(["baskets", "lift", "item_a", "item_b"], ascending=[False, False, True, True],
                           kind="stable").reset_index(drop=True)
