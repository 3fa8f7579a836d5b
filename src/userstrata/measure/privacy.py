"""Small cells, hidden (小样本隐私保护): aggregates shared outside the team show no count of fewer
than ``min_count`` units, since a count of 1-9 can point at a person. A cell of 0 identifies
nobody and stays."""

from __future__ import annotations

import pandas as pd

from userstrata.errors import InputError

__all__ = ["MIN_COUNT", "check_min_count", "hide"]

MIN_COUNT = 10  # the usual threshold for reports shared outside the team


def hide(counts: pd.Series, min_count: int | None) -> pd.Series:
    """True for cells to hide: 0 < count < min_count (nothing when ``min_count`` is None or 0)."""
    counts = pd.Series(counts)
    if not min_count:
        return pd.Series(False, index=counts.index)
    filled = counts.fillna(0)
    return (filled > 0) & (filled < min_count)


def check_min_count(min_count: int | None) -> None:
    if min_count is not None and min_count < 1:
        raise InputError(f"min_count {min_count} must be at least 1 (or None to show every cell)",
                         hint=f"e.g. --min-count {MIN_COUNT}",
                         zh=f"最小计数 min_count={min_count} 至少为 1（或不设，显示全部格子）",
                         hint_zh=f"例如 --min-count {MIN_COUNT}")
