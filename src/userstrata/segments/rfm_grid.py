"""RFM 1-5 quantile scores and the 8-cell RFM grid (重要价值客户 ... 一般挽留客户)."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.config import RFMRules
from userstrata.schema import RFM_CELLS

# (R high, F high, M high) -> cell; the standard grid of Chinese CRM practice
_CELLS = {
    (True, True, True): "important_value",
    (True, False, True): "important_develop",
    (False, True, True): "important_keep",
    (False, False, True): "important_retain",
    (True, True, False): "general_value",
    (True, False, False): "general_develop",
    (False, True, False): "general_keep",
    (False, False, False): "general_retain",
}
assert set(_CELLS.values()) == set(RFM_CELLS)


def score_rfm(profile: ir.Table, *, rules: RFMRules) -> ir.Table:
    """Add ``rfm_r``, ``rfm_f``, ``rfm_m``: quantile scores 1..bins among buyers (null otherwise).

    Higher is better on each: recent, frequent, high-spending. Ranks carry ``user_id`` as a
    unique tie-breaker so every engine assigns the same scores.
    """
    buyer = profile.orders.fill_null(0) > 0

    def score(*order_by: ir.Value) -> ir.IntegerValue:
        rank = ibis.ntile(rules.bins).over(group_by=buyer, order_by=[*order_by, profile.user_id])
        return ibis.ifelse(buyer, rank + 1, None)  # Ibis ntile is 0-based

    return profile.mutate(
        rfm_r=score(ibis.desc(profile.recency_days)),
        rfm_f=score(profile.frequency),
        rfm_m=score(profile.monetary),
    )


def assign_rfm_cells(profile: ir.Table, *, rules: RFMRules) -> ir.Table:
    """Add ``rfm_cell``: high/low on R, F, M against the buyers' mean (or median).

    Users who never bought are low on all three (general_retain), so every user has a cell.
    """
    buyer = profile.orders.fill_null(0) > 0

    def center(col: ir.NumericValue) -> ir.NumericValue:
        only_buyers = ibis.ifelse(buyer, col, None)
        agg = only_buyers.median() if rules.split == "median" else only_buyers.mean()
        return agg.over(ibis.window())

    r_high = buyer & (profile.recency_days < center(profile.recency_days))
    f_high = buyer & (profile.frequency > center(profile.frequency))
    m_high = buyer & (profile.monetary > center(profile.monetary))
    cell = ibis.cases(
        *[((r_high == r) & (f_high == f) & (m_high == m), name) for (r, f, m), name in _CELLS.items()]
    )
    return profile.mutate(rfm_cell=cell)


def rfm_grid_summary(profile: pd.DataFrame) -> pd.DataFrame:
    """Users, share and mean net spend per cell, all 8 cells in the standard order."""
    grouped = profile.groupby("rfm_cell").agg(users=("user_id", "size"), mean_monetary=("monetary", "mean"))
    out = grouped.reindex(list(RFM_CELLS)).fillna({"users": 0})
    out["users"] = out["users"].astype(int)
    out["share"] = out["users"] / max(len(profile), 1)
    return out.rename_axis("rfm_cell").reset_index()
