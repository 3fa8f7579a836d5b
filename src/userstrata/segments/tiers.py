"""Value tiers (用户价值分层): ordered, data-relative rules; every assignment carries a reason.

A rule's ``top`` condition is relative to the shop's own distribution: "in the top 10%"
means at most 10% of users have a value at least as high, so large ties at the bottom
(e.g. everyone with 0 posts) never count as "top". Shares are kept as integer counts
(users at least as good, out of all users) and compared with the threshold in integers,
so a user at exactly 55% is in the top 55% on every engine.

Reasons are written in the profile's language from ``i18n`` (the ``reason.*`` and
``feature.*`` phrases), with singular and plural forms.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import i18n
from userstrata.config import Condition, TierRules
from userstrata.errors import ConfigError, InputError
from userstrata.features._money import floor_divide

# the signals that make up value_score; recency counts inversely (recent = valuable)
_SCORE_PARTS = ("frequency", "monetary", "recency_days", "interaction_depth")
_LOWER_IS_BETTER = frozenset({"recency_days", "inactive_days"})
# shown as a whole percent (0.3 -> "30%"); other values as whole numbers
_FRACTIONS = frozenset({"refund_rate", "category_share", "value_score"})
_AT_OR_ABOVE = "_at_or_above_"  # + feature: users whose value is at least as good
_USERS = "_users"


def _at_or_above(col: ir.NumericValue, users: ir.IntegerValue, *, higher_is_better: bool) -> ir.IntegerValue:
    """How many users have a value at least as good as this one's (this user included).

    ``rank`` is the 0-based minimum rank, i.e. the number of users strictly worse when
    sorted worst first.
    """
    worst_first = col.asc() if higher_is_better else ibis.desc(col)
    return users - ibis.rank().over(order_by=worst_first)


def _fill_worst(profile: ir.Table, name: str) -> ir.NumericValue:
    """The feature with a missing value counted as the worst (never bought = least recent)."""
    return profile[name].fill_null(10**9 if name in _LOWER_IS_BETTER else 0)


def value_windows(profile: ir.Table) -> dict[str, ir.Value]:
    """The window columns :func:`value_score_column` reads: the number of users and, per
    part, how many users are at least as good. Added as columns in one step (with the
    profile's other windows) so that each sort runs once; :func:`assign_tiers` reuses the counts."""
    users = profile.user_id.count().over(ibis.window())
    return {_USERS: users, **{
        _AT_OR_ABOVE + name: _at_or_above(_fill_worst(profile, name), users, higher_is_better=name not in _LOWER_IS_BETTER)
        for name in _SCORE_PARTS
    }}


def value_score_column(p: ir.Table) -> ir.FloatingValue:
    """``value_score`` (0-1) from the columns of :func:`value_windows`: the mean percentile of
    frequency, spend, recency and depth.

    Each part is ``1 - (users at least as good) / users``; their mean is computed as one
    division of integers, ``(4 * users - sum of the four counts) / (4 * users)``, so equal
    scores are equal floats on every engine.
    """
    counts = [p[_AT_OR_ABOVE + name] for name in _SCORE_PARTS]
    total = sum(counts[1:], counts[0])
    k = len(_SCORE_PARTS)
    return (p[_USERS] * k - total).cast("float64") / (p[_USERS] * k).cast("float64")


def value_score(profile: ir.Table) -> ir.Table:
    """Add ``value_score`` (see :func:`value_score_column`)."""
    p = profile.mutate(**value_windows(profile))
    return p.mutate(value_score=value_score_column(p)).select(*profile.columns, "value_score")


# -- reasons ------------------------------------------------------------------------------

_FIELD = re.compile(r"\{(\w+)\}")


def _fill(template: str, **values: ir.StringValue) -> ir.StringValue:
    """``template`` with each ``{name}`` replaced by a string expression."""
    parts = _FIELD.split(template)  # literal, name, literal, name, ..., literal
    out = ibis.literal(parts[0])
    for i in range(1, len(parts), 2):
        out = out + values[parts[i]] + parts[i + 1]
    return out


def _phrase(key: str, lang: i18n.Lang, n: ir.IntegerValue, **values: ir.StringValue) -> ir.StringValue:
    """The ``key.one`` / ``key.other`` phrase for the count ``n`` (a plain ``key`` if it has
    no plural forms), with ``{n}`` filled in."""
    text = n.cast("string")
    if i18n.label(key, lang) != key:
        return _fill(i18n.label(key, lang), n=text, **values)
    one, other = i18n.label(f"{key}.one", lang), i18n.label(f"{key}.other", lang)
    if one == other:
        return _fill(other, n=text, **values)
    return ibis.ifelse(n == 1, _fill(one, n=text, **values), _fill(other, n=text, **values))


def _has_phrase(key: str) -> bool:
    return any(i18n.label(k) != k for k in (key, f"{key}.other"))


def _feature_label(feature: str, lang: i18n.Lang) -> str:
    """A feature's name in reasons; a column without a label keeps its own name."""
    key = f"feature.{feature}"
    found = i18n.label(key, lang)
    return feature if found == key else found


def _whole(col: ir.NumericValue) -> ir.IntegerValue:
    return col.round(0).cast("int64")


def _shown_value(feature: str, col: ir.NumericValue) -> ir.IntegerValue:
    return _whole(col * 100) if feature in _FRACTIONS else _whole(col)


def _percent_text(share: Fraction) -> str:
    text = f"{Decimal(share.numerator) * 100 / Decimal(share.denominator):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _top_condition(profile: ir.Table, cond: Condition, lang: i18n.Lang) -> tuple[ir.BooleanValue, ir.StringValue]:
    # the threshold as the decimal written in the config (0.55 = 11/20), not its binary float
    top = Fraction(repr(cond.top))
    count, users = profile[_AT_OR_ABOVE + cond.feature], profile[_USERS]
    match = (count * top.denominator <= users * top.numerator) & profile[cond.feature].notnull()
    # the smallest whole percent p with count / users <= p / 100: ceil(100 * count / users)
    pct = floor_divide(count * 100 + users - 1, users)
    # a matched user is never told more than the threshold (top 12.5% is not "top 13%")
    within = pct * top.denominator <= top.numerator * 100
    pct_text = ibis.ifelse(within, pct.cast("string"), _percent_text(top))
    feature = ibis.literal(_feature_label(cond.feature, lang))
    return match, _fill(i18n.label("reason.top", lang), feature=feature, pct=pct_text)


def _condition(profile: ir.Table, cond: Condition, lang: i18n.Lang) -> tuple[ir.BooleanValue, ir.StringValue]:
    if cond.feature not in profile.columns:
        numeric = [c for c, t in profile.schema().items() if t.is_numeric() and not c.startswith("_")]
        raise ConfigError(
            f"tier rule uses unknown feature {cond.feature!r}",
            hint=f"use one of: {', '.join(numeric)}",
        )
    if cond.top is not None:
        return _top_condition(profile, cond, lang)
    col = profile[cond.feature]
    test = (col >= cond.min if cond.min is not None else col <= cond.max).fill_null(False)
    if cond.feature == "recency_days" and cond.max is not None:
        # "bought in the last 90 days": the rule's window says more than the exact day
        return test, _phrase("reason.recency_days.max", lang, _whole(ibis.literal(cond.max)))
    n = _shown_value(cond.feature, col.fill_null(0))
    if _has_phrase(f"reason.{cond.feature}"):
        return test, _phrase(f"reason.{cond.feature}", lang, n)
    key = "reason.percent" if cond.feature in _FRACTIONS else "reason.value"
    return test, _phrase(key, lang, n, feature=ibis.literal(_feature_label(cond.feature, lang)))


def _join(texts: list[ir.StringValue], lang: i18n.Lang) -> ir.StringValue:
    out = texts[0]
    for t in texts[1:]:
        out = out + i18n.label("reason.separator", lang) + t
    return out


def top_windows(profile: ir.Table, rules: TierRules) -> dict[str, ir.Value]:
    """One at-or-above count per feature used in a ``top`` condition that ``profile`` has and
    has not counted yet (:func:`value_windows` counts its parts): each window (a sort of all
    users) runs once however many rules use that feature."""
    users = profile[_USERS] if _USERS in profile.columns else profile.user_id.count().over(ibis.window())
    counts = {}
    for feature in sorted({c.feature for t in rules.tiers for r in t.rules for c in r.when if c.top is not None}):
        if feature not in profile.columns or _AT_OR_ABOVE + feature in profile.columns:
            continue  # unknown: reported by _condition
        counts[_AT_OR_ABOVE + feature] = _at_or_above(
            _fill_worst(profile, feature), users, higher_is_better=feature not in _LOWER_IS_BETTER
        )
    return counts


def _fallback_reason(profile: ir.Table, lang: i18n.Lang) -> ir.StringValue:
    orders = profile.orders.fill_null(0)
    interactions = _phrase("reason.interaction_depth", lang, _whole(profile.interaction_depth.fill_null(0)))
    return ibis.ifelse(
        orders == 0,
        _fill(i18n.label("reason.no_purchase", lang), interactions=interactions),
        _fill(
            i18n.label("reason.below_higher_tiers", lang),
            orders=_phrase("reason.orders", lang, _whole(orders)),
            last=_phrase("reason.recency_days", lang, _whole(profile.recency_days.fill_null(0))),
        ),
    )


def tier_columns(profile: ir.Table, *, rules: TierRules, lang: i18n.Lang = "en") -> dict[str, ir.Value]:
    """``tier`` and ``tier_reason`` (in ``lang``, "zh" or "en") by the first matching rule, top
    tier first, for a ``profile`` that has its ``top_windows`` counts already."""
    if lang not in i18n.LANGS:
        raise InputError(f"lang {lang!r} is not supported", hint=f"use one of: {', '.join(i18n.LANGS)}")
    branches: list[tuple[ir.BooleanValue, str, ir.StringValue]] = []
    for spec in rules.tiers:
        for rule in spec.rules:
            tests, texts = zip(*(_condition(profile, c, lang) for c in rule.when), strict=True)
            match = tests[0]
            for t in tests[1:]:
                match = match & t
            # a repeated feature (top and min on the same column) is said once
            seen, unique = set(), []
            for c, txt in zip(rule.when, texts, strict=True):
                if c.feature not in seen:
                    seen.add(c.feature)
                    unique.append(txt)
            branches.append((match, spec.name, _join(unique, lang)))
    fallback = rules.tiers[-1].name
    fallback_reason = _fallback_reason(profile, lang)
    if not branches:
        return {"tier": ibis.literal(fallback), "tier_reason": fallback_reason}
    return {"tier": ibis.cases(*[(m, name) for m, name, _ in branches], else_=fallback),
            "tier_reason": ibis.cases(*[(m, text) for m, _, text in branches], else_=fallback_reason)}


def assign_tiers(profile: ir.Table, *, rules: TierRules, lang: i18n.Lang = "en") -> ir.Table:
    """Add ``tier`` and ``tier_reason`` (in ``lang``, "zh" or "en") by the first matching
    rule, top tier first."""
    columns = [c for c in profile.columns if c != _USERS and not c.startswith(_AT_OR_ABOVE)]
    if counts := top_windows(profile, rules):
        profile = profile.mutate(**counts)
    return profile.select(*columns, **tier_columns(profile, rules=rules, lang=lang))


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
