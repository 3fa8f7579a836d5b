"""RFM 1-5 quantile scores and the 8-cell RFM grid (重要价值客户 ... 一般挽留客户).

Everything here is computed on exactly comparable values (whole days, purchase days and
net spend in cents) with integer arithmetic on ranks and counts, so equal buyers are
treated equally and every engine gives the same answer.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.config import RFMRules
from userstrata.features._money import to_cents
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


def _exact(profile: ir.Table) -> dict[str, ir.IntegerValue]:
    """R, F, M as integers, each oriented so that larger is better."""
    return {
        "r": -profile.recency_days,  # recent = good
        "f": profile.frequency,
        "m": to_cents(profile.monetary),
    }


def rfm_windows(profile: ir.Table, *, rules: RFMRules) -> dict[str, ir.Value]:
    """The window columns the scores and cells read: the number of buyers, each buyer's rank
    on R, F and M and (mean split) the buyers' sums. Added as columns in one step (with any
    other windows of the profile) so that each window runs once and the tests that follow
    read plain columns; :func:`rfm_columns` turns them into scores and cells."""
    buyer = profile.orders.fill_null(0) > 0
    exact = _exact(profile)
    columns = {
        "_buyer": buyer,
        "_n": profile.user_id.count().over(group_by=buyer),
        # rank: 0-based, ties take the lowest
        **{f"_below_{k}": ibis.rank().over(group_by=buyer, order_by=exact[k]) for k in ("r", "f", "m")},
    }
    if rules.split == "mean":
        columns.update({f"_sum_{k}": exact[k].sum().over(group_by=buyer) for k in ("r", "f", "m")})
    return columns


def rfm_columns(p: ir.Table, *, rules: RFMRules) -> dict[str, ir.Value]:
    """``rfm_r``, ``rfm_f``, ``rfm_m`` and ``rfm_cell`` from the columns of :func:`rfm_windows`.

    Scores: quantile scores 1..bins among buyers (null otherwise), higher is better on each:
    recent, frequent, high-spending. With ``n`` buyers and ``below`` = the number of buyers
    with a strictly worse value (the 0-based minimum rank, so ties share it), ``score = 1 +
    floor(bins * below / n)``. Equal values get equal scores; the worst value always scores
    1; a large tie (e.g. the one-time buyers, F = 1) leaves the scores it spans unused rather
    than splitting equal buyers arbitrarily.

    Cells: high/low on R, F, M against the buyers' mean (or median). "High" is strictly
    better than the center: recency below it, frequency and spend above it. Both tests are
    exact integer comparisons among the ``n`` buyers: ``x > mean`` is ``n * x > sum(x)``;
    ``x > median`` (the middle value, or the mean of the two middle ones) is ``2 * (buyers
    with a value below x) >= n``. Users who never bought are low on all three
    (general_retain), so every user has a cell.
    """
    bins = rules.bins
    exact = _exact(p)

    def score(below: ir.IntegerValue) -> ir.IntegerValue:
        # floor(bins * below / n) without a division: the number of cut points j * n / bins
        # (j = 1 .. bins-1) that ``below`` reaches, in exact integer comparisons
        steps = ibis.cases(*[(below * bins >= p._n * j, j) for j in range(bins - 1, 0, -1)], else_=0)
        return ibis.ifelse(p._buyer, steps + 1, None).cast("int32")  # what the engines give: no conversion

    def high(k: str) -> ir.IntegerValue:
        if rules.split == "median":
            above = p[f"_below_{k}"] * 2 >= p._n
        else:
            above = exact[k] * p._n > p[f"_sum_{k}"]
        return (p._buyer & above).cast("int8")

    # the cell as one number (R high = 4, F high = 2, M high = 1) tested once per cell
    index = high("r") * 4 + high("f") * 2 + high("m")
    cell = ibis.cases(*[(index == 4 * r + 2 * f + m, name) for (r, f, m), name in _CELLS.items()])
    return {"rfm_r": score(p._below_r), "rfm_f": score(p._below_f), "rfm_m": score(p._below_m), "rfm_cell": cell}


def score_rfm(profile: ir.Table, *, rules: RFMRules) -> ir.Table:
    """Add ``rfm_r``, ``rfm_f``, ``rfm_m`` (quantile scores) and ``rfm_cell`` (the 8-cell
    grid): see :func:`rfm_columns`."""
    p = profile.mutate(**rfm_windows(profile, rules=rules))
    return p.mutate(**rfm_columns(p, rules=rules)).select(*profile.columns, "rfm_r", "rfm_f", "rfm_m", "rfm_cell")


def rfm_grid_summary(profile: pd.DataFrame) -> pd.DataFrame:
    """Users, share and mean net spend per cell, all 8 cells in the standard order."""
    grouped = profile.groupby("rfm_cell").agg(users=("user_id", "size"), mean_monetary=("monetary", "mean"))
    out = grouped.reindex(list(RFM_CELLS)).fillna({"users": 0})
    out["users"] = out["users"].astype(int)
    out["share"] = out["users"] / max(len(profile), 1)
    return out.rename_axis("rfm_cell").reset_index()
