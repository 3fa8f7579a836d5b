"""Value realisation (价值实现指数): is what users bought being used?

For virtual goods the sale is the start: a course nobody watches, a membership whose perks
go unused, game items never played with are refunds, complaints and lost renewals waiting
to happen. For every purchase of a usage-bearing item (a configured category) this module
looks at the user's usage events after it, their progress, shares and reviews, and how soon
the first use came; per user it gives an index 0-100 with its components and a reason.

Grain: one purchase = one order line of a usage-bearing category in a purchase order that
was not fully refunded by ``as_of``. Events do not name the item they use unless they carry
a ``sku`` property: a usage event counts for every purchase of its category that came
before it (and for the one whose ``sku`` it names, when it names one).
"""

from __future__ import annotations

import datetime as dt_
import re

import ibis
import ibis.expr.types as ir

from userstrata import _engine
from userstrata.config import RealisationSettings
from userstrata.features._time import Clock
from userstrata.features.rfm import purchases

# Numbers in ``events.properties`` (JSON text), read with a regular expression so that the
# same expression runs on DuckDB and Spark (JSON functions differ, and Spark's JSON unwrap
# goes through a Python UDF). No backslashes: Spark SQL literals would eat them.
_NUMBER = '"{key}"[ ]*:[ ]*"?(-?[0-9]+([.][0-9]+)?)'
_TEXT = '"{key}"[ ]*:[ ]*"([^"]*)"'
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# (zh, en) phrases of the reason; {name} is filled from columns.
_PHRASES: dict[str, tuple[str, str]] = {
    "chapters": ("{window} 天内学了 {total} 章中的 {seen} 章", "used {seen} of {total} chapters in {window} days"),
    "percent": ("{window} 天内进度 {percent}%", "reached {percent}% in {window} days"),
    "days": ("{window} 天内用了 {days} 天", "used on {days} of {window} days"),
    "unused": ("{window} 天内未使用", "not used in {window} days"),
    "first_same_day": ("当天首次使用", "first use on the day of purchase"),
    "first_after": ("购买后第 {first} 天首次使用", "first use after {first} days"),
    "no_derived": ("没有分享或评价", "no share or review"),
    "derived": ("分享或评价 {derived} 次", "shares or reviews: {derived}"),
    "summary": ("{judged} 次购买中 {in_time} 次按时使用；最近一次 {sku}：",
                "{in_time} of {judged} purchases used in time; latest {sku}: "),
    "pending": ("{pending} 次购买还在观察期；最近一次 {sku}：", "{pending} purchases too recent to judge; latest {sku}: "),
}
_SEP = {"zh": "，", "en": ", "}


def json_number(properties: ir.StringValue, key: str) -> ir.FloatingValue:
    """The number stored under ``key`` in a flat JSON text (quoted or not); NULL when absent."""
    if not _KEY.match(key):
        raise ValueError(f"property name {key!r} must be letters, digits and _")
    found = properties.re_extract(_NUMBER.format(key=key), 1)
    return found.nullif("").cast("float64")


def json_text(properties: ir.StringValue, key: str) -> ir.StringValue:
    """The string stored under ``key`` in a flat JSON text; NULL when absent."""
    if not _KEY.match(key):
        raise ValueError(f"property name {key!r} must be letters, digits and _")
    return properties.re_extract(_TEXT.format(key=key), 1).nullif("")


def _fill(template: str, **values: ir.Value) -> ir.StringValue:
    """``template`` with each ``{name}`` replaced by a column (cast to text)."""
    parts = re.split(r"\{(\w+)\}", template)
    out = ibis.literal(parts[0])
    for i in range(1, len(parts), 2):
        value = values[parts[i]]
        out = out + (value if value.type().is_string() else value.cast("string")) + parts[i + 1]
    return out


def _phrase(key: str, lang: str, **values: ir.Value) -> ir.StringValue:
    zh, en = _PHRASES[key]
    return _fill(zh if lang == "zh" else en, **values)


def _usage_match(category: ir.StringValue, event: ir.StringValue, feature: ir.StringValue,
                 rules: RealisationSettings) -> ir.BooleanValue:
    """Whether an event counts as use of a purchase of ``category`` (settings.usage_events)."""
    matches = []
    for cat, specs in rules.usage_events.items():
        for spec in specs:
            name, _, feat = spec.partition(":")
            test = (category == cat) & (event == name.strip().lower())
            if feat:
                test = test & (feature.fill_null("") == feat.strip())
            matches.append(test)
    if not matches:
        return ibis.literal(False)
    out = matches[0]
    for m in matches[1:]:
        out = out | m
    return out


def purchase_usage(
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    *,
    as_of: dt_.date,
    clock: Clock,
    rules: RealisationSettings,
) -> ir.Table:
    """One row per usage-bearing purchase line with its use, as of ``as_of``.

    Columns: ``user_id, order_id, line_no, sku, category, purchase_ts, purchase_date,
    days_since_purchase, window_days`` (days of the window seen so far), ``used_days``
    (local days with a usage event in the window), ``first_use_days`` (days from the
    purchase day to the first use; NULL when none), ``chapters_seen``, ``chapters_total``,
    ``percent`` (best progress 0-100 from ``percent`` or ``progress`` properties),
    ``derived_actions`` (shares and reviews in the window), the components ``used``,
    ``speed``, ``depth``, ``derived`` (each 0-1), ``status`` (``used`` / ``late`` /
    ``unused`` / ``pending``) and ``index_points`` (the purchase's index x 100, an integer).
    """
    categories = list(rules.usage_events)
    bought = purchases(orders, as_of=as_of, clock=clock)
    # a purchase refunded in full (known by as_of) has nothing left to use
    bought = bought.filter((bought.refund_cents < bought.amount_cents) | (bought.amount_cents == 0))
    items = order_items.filter(order_items.category.isin(categories))
    lines = items.join(bought, "order_id").select(
        items.order_id, items.line_no, items.sku, items.category,
        bought.user_id, purchase_ts=bought.ts, purchase_date=bought.order_date,
    )  # fmt: skip
    lines = lines.mutate(purchase_day=_engine.epoch_day(lines.purchase_date))

    ev = events.filter(events.user_id.notnull())
    ev = ev.mutate(event_date=clock.local_date(ev.ts), event_name=ev.event.lower())
    ev = ev.filter(ev.event_date <= as_of)
    ev = ev.mutate(event_day=_engine.epoch_day(ev.event_date))
    key = ["order_id", "line_no"]

    def after_purchase(e: ir.Table) -> ir.Table:
        """The events of each line's user from its purchase to the end of its window."""
        joined = lines.join(
            e,
            [lines.user_id == e.user_id, e.ts >= lines.purchase_ts,
             e.event_day - lines.purchase_day <= rules.window_days],
        )  # fmt: skip
        return joined.mutate(day_after=joined.event_day - joined.purchase_day)

    use = ev.mutate(
        feature=json_text(ev.properties, "feature"),
        event_sku=json_text(ev.properties, "sku"),
        chapter=json_number(ev.properties, "chapter"),
        chapters_total=json_number(ev.properties, "chapters_total"),
        # percent is 0-100; progress is a fraction 0-1 (read as a percent when above 1)
        percent=json_number(ev.properties, "percent"),
        progress=json_number(ev.properties, "progress"),
    )
    u = after_purchase(use)
    u = u.filter(
        _usage_match(u.category, u.event_name, u.feature, rules),
        u.event_sku.isnull() | (u.event_sku == u.sku),
    )
    pct = ibis.coalesce(
        u.percent, ibis.ifelse(u.progress > 1, u.progress, u.progress * 100)
    ).clip(lower=0, upper=100)
    usage = u.group_by(key).agg(
        used_days=u.event_day.nunique(),
        first_use_days=u.day_after.min(),
        chapters_seen=u.chapter.nunique(),
        chapters_total=u.chapters_total.max().round(0).cast("int64"),
        percent=pct.max().round(0).cast("int64"),
    )

    d = after_purchase(ev.filter(ev.event_name.isin([e.lower() for e in rules.derived_events])))
    derived = d.group_by(key).agg(derived_actions=d.count())

    p = lines.left_join(usage, key).drop("order_id_right", "line_no_right")
    p = p.left_join(derived, key).drop("order_id_right", "line_no_right")
    elapsed = _engine.days_between(p.purchase_date, as_of)
    p = p.mutate(
        days_since_purchase=elapsed,
        window_days=ibis.least(elapsed, rules.window_days),
        used_days=p.used_days.fill_null(0),
        chapters_seen=p.chapters_seen.fill_null(0),
        derived_actions=p.derived_actions.fill_null(0),
    )
    n = rules.unused_after_days
    in_time = p.first_use_days.notnull() & (p.first_use_days <= n)
    p = p.mutate(
        status=ibis.cases(
            (in_time, "used"),
            (p.first_use_days.notnull(), "late"),
            (p.days_since_purchase >= n, "unused"),
            else_="pending",
        )
    )
    chapters_known = (p.chapters_total > 0) & (p.chapters_seen > 0)
    depth = ibis.cases(
        (p.used_days == 0, ibis.literal(0.0)),
        (chapters_known, ibis.least(p.chapters_seen.cast("float64") / p.chapters_total.cast("float64"), 1.0)),
        (p.percent.notnull(), p.percent.cast("float64") / 100),
        else_=ibis.least(p.used_days.cast("float64") / rules.depth_target_days, 1.0),
    )
    p = p.mutate(
        used=(p.used_days > 0).cast("int64"),
        # first use on the purchase day scores 1, on day N 1/(N+1); later than N scores 0
        speed=ibis.ifelse(in_time, 1.0 - p.first_use_days.cast("float64") / (n + 1), 0.0),
        depth=depth,
        derived=(p.derived_actions > 0).cast("int64"),
    )
    weights = (rules.weight_used, rules.weight_speed, rules.weight_depth, rules.weight_derived)
    total = sum(weights)
    score = (
        p.used.cast("float64") * weights[0] + p.speed * weights[1] + p.depth * weights[2]
        + p.derived.cast("float64") * weights[3]
    ) * (100.0 / total)  # fmt: skip
    # the index in hundredths of a point as an integer: users' means are then exact sums
    return p.mutate(index_points=(score * 100).round(0).cast("int64")).drop("purchase_day")


def _line_reason(p: ir.Table, lang: str) -> ir.StringValue:
    """What one purchase's use looks like, in words."""
    window = p.window_days
    usage = ibis.cases(
        (p.used_days == 0, _phrase("unused", lang, window=window)),
        ((p.chapters_total > 0) & (p.chapters_seen > 0),
         _phrase("chapters", lang, window=window, seen=p.chapters_seen, total=p.chapters_total)),
        (p.percent.notnull(), _phrase("percent", lang, window=window, percent=p.percent)),
        else_=_phrase("days", lang, window=window, days=p.used_days),
    )  # fmt: skip
    first = ibis.cases(
        (p.first_use_days.isnull(), ibis.literal("")),
        (p.first_use_days == 0, _SEP[lang] + _phrase("first_same_day", lang)),
        else_=_SEP[lang] + _phrase("first_after", lang, first=p.first_use_days),
    )
    derived = ibis.ifelse(
        p.derived_actions == 0, _phrase("no_derived", lang), _phrase("derived", lang, derived=p.derived_actions)
    )
    return usage + first + _SEP[lang] + derived


def realisation_index(usage: ir.Table) -> ir.Table:
    """One row per user with usage-bearing purchases: the index 0-100, its parts and a reason.

    ``usage`` is :func:`purchase_usage`. Purchases still ``pending`` (not used yet, fewer
    than ``unused_after_days`` days old) are too early to judge and left out of the index;
    a user with only pending purchases has a NULL index. Columns: ``purchases_judged``,
    ``purchases_in_time`` (first use within N days), ``purchases_unused``,
    ``purchases_pending``, the mean components ``used_share``, ``speed_score``,
    ``depth_score``, ``derived_share`` (0-1), ``first_use_days_mean``,
    ``realisation_index`` (mean of the purchases' indexes, 0-100, to 0.01) and
    ``realisation_reason_zh`` / ``realisation_reason_en`` (about the latest purchase).
    """
    u = usage.mutate(judged=usage.status != "pending")
    # components to 1/10000 as integers: sums are exact, one division at the end
    u = u.mutate(
        speed_bp=(u.speed * 10000).round(0).cast("int64"),
        depth_bp=(u.depth * 10000).round(0).cast("int64"),
    )
    j = u.judged

    def mean(col: ir.IntegerValue, n: ir.IntegerValue, scale: float) -> ir.FloatingValue:
        return ibis.ifelse(n > 0, col.cast("float64") / (n.cast("float64") * scale), None)

    per_user = u.group_by("user_id").agg(
        purchases_judged=j.cast("int64").sum(),
        purchases_in_time=(u.status == "used").cast("int64").sum(),
        purchases_unused=(u.status == "unused").cast("int64").sum(),
        purchases_pending=(u.status == "pending").cast("int64").sum(),
        _used=ibis.ifelse(j, u.used, 0).sum(),
        _speed=ibis.ifelse(j, u.speed_bp, 0).sum(),
        _depth=ibis.ifelse(j, u.depth_bp, 0).sum(),
        _derived=ibis.ifelse(j, u.derived, 0).sum(),
        _points=ibis.ifelse(j, u.index_points, 0).sum(),
        _first_sum=ibis.ifelse(j, u.first_use_days, None).sum(),
        _first_n=(j & u.first_use_days.notnull()).cast("int64").sum(),
    )
    n = per_user.purchases_judged
    per_user = per_user.mutate(
        used_share=mean(per_user._used, n, 1.0),
        speed_score=mean(per_user._speed, n, 10000.0),
        depth_score=mean(per_user._depth, n, 10000.0),
        derived_share=mean(per_user._derived, n, 1.0),
        first_use_days_mean=mean(per_user._first_sum, per_user._first_n, 1.0),
        realisation_index=mean(per_user._points, n, 100.0),
    ).drop("_used", "_speed", "_depth", "_derived", "_points", "_first_sum", "_first_n")

    # the reason tells the latest judged purchase (the latest pending one when none is judged)
    latest = u.mutate(
        pick=ibis.row_number().over(
            group_by=u.user_id,
            order_by=[ibis.desc(u.judged), ibis.desc(u.purchase_ts), ibis.desc(u.order_id), ibis.desc(u.line_no)],
        )
    )
    latest = latest.filter(latest.pick == 0)
    latest = latest.select(
        "user_id", **{f"_line_{lang}": _line_reason(latest, lang) for lang in ("zh", "en")}, _sku=latest.sku
    )
    out = per_user.join(latest, "user_id")
    for lang in ("zh", "en"):
        head = ibis.ifelse(
            out.purchases_judged > 0,
            _phrase("summary", lang, judged=out.purchases_judged, in_time=out.purchases_in_time, sku=out._sku),
            _phrase("pending", lang, pending=out.purchases_pending, sku=out._sku),
        )
        out = out.mutate(**{f"realisation_reason_{lang}": head + out[f"_line_{lang}"]})
    return out.drop("_line_zh", "_line_en", "_sku")


def unused_purchases(usage: ir.Table) -> ir.Table:
    """The purchases not used within ``unused_after_days`` of buying (for early warnings and
    playbooks): ``user_id, order_id, line_no, sku, category, purchase_ts, purchase_date,
    days_since_purchase``, oldest first within a user."""
    u = usage.filter(usage.status == "unused")
    return u.select(
        "user_id", "order_id", "line_no", "sku", "category", "purchase_ts", "purchase_date", "days_since_purchase"
    ).order_by(["user_id", "purchase_ts", "order_id", "line_no"])
