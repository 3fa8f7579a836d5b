"""The lifecycle rules read literally, one day at a time (a reference for the tests).

Walk every day from the user's first active day to ``as_of``: on a day without activity
``inactive_days`` is the days since the last active day, and the user is dormant once it
exceeds ``dormant_after_days``; an active day ends that, and if the user was dormant just
before it is a return. At ``as_of`` the stage is the first that holds of: churned,
dormant, potential (never bought), returning (the last return at most
``returning_window_days`` ago), new, growth, mature (by days since the first active day).
"""

from __future__ import annotations

import datetime as dt

from userstrata.config import LifecycleRules


def simulate(active_days: set[dt.date], *, bought: bool, as_of: dt.date, rules: LifecycleRules) -> dict:
    """Stage, inactive days and days since the last return (None if none) on ``as_of``."""
    days = sorted(d for d in active_days if d <= as_of)
    day, last_active, dormant, last_return = days[0], None, False, None
    while day <= as_of:
        if day in active_days:
            if dormant:
                last_return = day
            dormant, last_active = False, day
        elif (day - last_active).days > rules.dormant_after_days:
            dormant = True
        day += dt.timedelta(days=1)
    inactive = (as_of - last_active).days
    tenure = (as_of - days[0]).days
    since_return = None if last_return is None else (as_of - last_return).days
    if inactive > rules.churned_after_days:
        stage = "churned"
    elif inactive > rules.dormant_after_days:
        stage = "dormant"
    elif not bought:
        stage = "potential"
    elif since_return is not None and since_return <= rules.returning_window_days:
        stage = "returning"
    elif tenure <= rules.new_days:
        stage = "new"
    elif tenure <= rules.growth_days:
        stage = "growth"
    else:
        stage = "mature"
    return {"lifecycle": stage, "inactive_days": inactive, "days_since_return": since_return}
