"""Segments: RFM scores and the 8-cell grid, value tiers with reasons, the assembled profile."""

from userstrata.segments.profile import build_profile
from userstrata.segments.rfm_grid import rfm_grid_summary, score_rfm
from userstrata.segments.tiers import assign_tiers, tier_shares, value_score

__all__ = [
    "assign_tiers",
    "build_profile",
    "rfm_grid_summary",
    "score_rfm",
    "tier_shares",
    "value_score",
]
