"""Value tiers (用户价值分层): ordered, data-relative rules; every assignment carries a reason.

A rule's ``top`` condition is relative to the shop's own distribution: "in the top 10%"
means at most 10% of users have a value at least as high (cume_dist over a descending
order), so large ties at the bottom (e.g. everyone with 0 posts) never count as "top".
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.config import Condition, TierRules
from userstrata.errors import ConfigError

# the signals that make up value_score; recency counts inversely (recent = valuable)
_SCORE_PARTS = ("frequency", "monetary", "recency_days", "interaction_depth")
_LOWER_IS_BETTER = frozenset({"recency_days", "inactive_days"})
_SHARE_PREFIX = "_share_at_or_above_"


def _share_at_or_above(col: ir.NumericValue, *, higher_is_better: bool = True) -> ir.FloatingValue:
    """Share of users whose value is at least as good as this one's (0-1; small = top)."""
    order = ibis.desc(col) if higher_is_better else col.asc()
    return ibis.cume_dist().over(order_by=order)


def value_score(profile: ir.Table) -> ir.Table:
    """Add ``value_score`` (0-1): the mean percentile of frequency, spend, recency and depth."""
    parts = []
    for name in _SCORE_PARTS:
        col = profile[name]
        if name == "recency_days":  # never bought = least recent
            col = col.fill_null(10**9)
            parts.append(1 - _share_at_or_above(col, higher_is_better=False))
        else:
            parts.append(1 - _share_at_or_above(col.fill_null(0)))
    score = sum(parts[1:], parts[0]) / len(parts)
    return profile.mutate(value_score=score.round(6))


def _int_text(col: ir.NumericValue) -> ir.StringValue:
    return col.round(0).cast("int64").cast("string")


_PHRASES = {  # feature -> (text before value, text after value) for absolute bounds
    "orders": ("", " orders"),
    "frequency": ("", " repeat purchase days"),
    "monetary": ("spent ", ""),
    "recency_days": ("bought in the last ", " days"),
    "interaction_depth": ("", " interactions"),
    "community_actions": ("", " community actions"),
    "tenure_days": ("", " days since first seen"),
}


def _condition(profile: ir.Table, cond: Condition) -> tuple[ir.BooleanValue, ir.StringValue]:
    if cond.feature not in profile.columns:
        numeric = [c for c, t in profile.schema().items() if t.is_numeric()]
        raise ConfigError(
            f"tier rule uses unknown feature {cond.feature!r}",
            hint=f"use one of: {', '.join(numeric)}",
        )
    col = profile[cond.feature]
    if cond.top is not None:
        share = profile[_SHARE_PREFIX + cond.feature]  # computed once per feature by assign_tiers
        pct = (share * 100).ceil().cast("int64").cast("string")
        label = cond.feature.replace("_", " ")
        return (share <= cond.top) & col.notnull(), ibis.literal(f"{label} in top ") + pct + "%"
    before, after = _PHRASES.get(cond.feature, (cond.feature.replace("_", " ") + " ", ""))
    if cond.feature == "recency_days" and cond.max is not None:
        text = ibis.literal(before) + _int_text(ibis.literal(cond.max)) + after
    else:
        text = ibis.literal(before) + _int_text(col.fill_null(0)) + after
    test = col >= cond.min if cond.min is not None else col <= cond.max
    return test.fill_null(False), text


def _join(texts: list[ir.StringValue]) -> ir.StringValue:
    out = texts[0]
    for t in texts[1:]:
        out = out + ", " + t
    return out


def _top_shares(profile: ir.Table, rules: TierRules) -> ir.Table:
    """One share-at-or-above column per feature used in a ``top`` condition: each window
    (a sort of all users) runs once however many rules use that feature."""
    shares = {}
    for feature in sorted({c.feature for t in rules.tiers for r in t.rules for c in r.when if c.top is not None}):
        if feature not in profile.columns:
            continue  # reported by _condition with the list of usable features
        better_high = feature not in _LOWER_IS_BETTER
        col = profile[feature].fill_null(0 if better_high else 10**9)
        shares[_SHARE_PREFIX + feature] = _share_at_or_above(col, higher_is_better=better_high)
    return profile.mutate(**shares) if shares else profile


def assign_tiers(profile: ir.Table, *, rules: TierRules) -> ir.Table:
    """Add ``tier`` and ``tier_reason`` by the first matching rule, top tier first."""
    columns = profile.columns
    profile = _top_shares(profile, rules)
    branches: list[tuple[ir.BooleanValue, str, ir.StringValue]] = []
    for spec in rules.tiers:
        for rule in spec.rules:
            tests, texts = zip(*(_condition(profile, c) for c in rule.when), strict=True)
            match = tests[0]
            for t in tests[1:]:
                match = match & t
            # a repeated feature (top and min on the same column) is said once
            seen, unique = set(), []
            for c, txt in zip(rule.when, texts, strict=True):
                if c.feature not in seen:
                    seen.add(c.feature)
                    unique.append(txt)
            branches.append((match, spec.name, _join(unique)))
    fallback = rules.tiers[-1].name
    orders = profile.orders.fill_null(0)
    fallback_reason = ibis.ifelse(
        orders == 0,
        ibis.literal("no purchase yet, ") + _int_text(profile.interaction_depth.fill_null(0)) + " interactions",
        ibis.ifelse(orders == 1, "1 order", _int_text(orders) + " orders")
        + ", last "
        + _int_text(profile.recency_days)
        + " days ago; below the rules of higher tiers",
    )
    if not branches:
        return profile.mutate(tier=ibis.literal(fallback), tier_reason=fallback_reason).select(*columns, "tier", "tier_reason")
    tier = ibis.cases(*[(m, name) for m, name, _ in branches], else_=fallback)
    reason = ibis.cases(*[(m, text) for m, _, text in branches], else_=fallback_reason)
    return profile.mutate(tier=tier, tier_reason=reason).select(*columns, "tier", "tier_reason")


def tier_shares(profile: pd.DataFrame, rules: TierRules) -> pd.DataFrame:
    """Achieved share of each tier against its target range, top tier first."""
    counts = profile["tier"].value_counts()
    total = max(len(profile), 1)
    rows = []
    for spec in rules.tiers:
        users = int(counts.get(spec.name, 0))
        share = users / total
        low, high = spec.target_share
        rows.append(
            {"tier": spec.name, "users": users, "share": share, "target_low": low,
             "target_high": high, "on_target": low <= share <= high}
        )
    return pd.DataFrame(rows)
