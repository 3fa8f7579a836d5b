"""Category preference: the category a user spends most on, and its share of their spend."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from userstrata.features._money import to_cents


def category_preference(order_items: ir.Table, purchases: ir.Table) -> ir.Table:
    """One row per user with items: ``top_category`` and ``category_share`` (0-1, by spend).

    ``purchases`` is the output of :func:`userstrata.features.purchases` (already cut at as_of).
    Spend is summed in whole cents (``price`` to the cent, times ``quantity``), so ties are
    exact; they go to the alphabetically first category, so the result is deterministic.
    """
    items = order_items.filter(order_items.category.notnull())
    joined = items.join(purchases.select("order_id", "user_id"), "order_id")
    spend = joined.group_by(["user_id", "category"]).agg(
        spend_cents=(to_cents(joined.price) * joined.quantity.fill_null(1)).sum().cast("int64")
    )
    ranked = spend.mutate(
        rank=ibis.row_number().over(
            group_by=spend.user_id, order_by=[ibis.desc(spend.spend_cents), spend.category]
        ),
        total_cents=spend.spend_cents.sum().over(group_by=spend.user_id).cast("int64"),
    )
    top = ranked.filter(ranked.rank == 0)
    # one division of two exact integers: the same float on every engine
    share = top.spend_cents.cast("float64") / top.total_cents.cast("float64")
    return top.select(
        "user_id",
        top_category=top.category,
        category_share=ibis.ifelse(top.total_cents > 0, share, None),
    )
