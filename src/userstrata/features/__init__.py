"""Per-user features as of a date: RFM, engagement, category preference, lifecycle.

Every function takes Ibis tables and returns an Ibis expression (one row per user);
nothing executes here.
"""

from userstrata.features.engagement import engagement_features
from userstrata.features.lifecycle import activity_features, assign_lifecycle
from userstrata.features.preference import category_preference
from userstrata.features.rfm import btyd_summary, purchases, rfm_features

__all__ = [
    "activity_features",
    "assign_lifecycle",
    "btyd_summary",
    "category_preference",
    "engagement_features",
    "purchases",
    "rfm_features",
]
