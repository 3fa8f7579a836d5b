"""Category preference: the category a user spends most on, and its share of their spend."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def category_preference(order_items: ir.Table, purchases: ir.Table) -> ir.Table:
    """One row per user with items: ``top_category`` and ``category_share`` (0-1, by spend).

    ``purchases`` is the output of :func:`userstrata.features.purchases` (already cut at as_of).
    Ties go to the alphabetically first category, so the result is deterministic.
    """
    items = order_items.filter(order_items.category.notnull())
    joined = items.join(purchases.select("order_id", "user_id"), "order_id")
    spend = joined.group_by(["user_id", "category"]).agg(
        spend=(joined.price * joined.quantity.fill_null(1)).sum().round(2)
    )
    ranked = spend.mutate(
        rank=ibis.row_number().over(
            group_by=spend.user_id, order_by=[ibis.desc(spend.spend), spend.category]
        ),
        total=spend.spend.sum().over(group_by=spend.user_id),
    )
    top = ranked.filter(ranked.rank == 0)
    return top.select(
        "user_id",
        top_category=top.category,
        category_share=ibis.ifelse(top.total > 0, top.spend / top.total, None),
    )
