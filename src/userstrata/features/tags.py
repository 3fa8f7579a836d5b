"""Behaviour tags (行为标签): price sensitivity, loyalty, social, time habits, new products.

Each tag is a rule over the user's own purchases or events as of a day (``TagSettings``) and
comes with its value and a reason in Chinese and English. A user can carry several tags.
The long table (``user_tags``) has one row per user and tag that holds; ``tags_wide`` turns
it into one boolean column per tag.
"""

from __future__ import annotations

import datetime as dt_

import ibis
import ibis.expr.types as ir

from userstrata import _engine
from userstrata.config import TagSettings
from userstrata.features._money import to_cents
from userstrata.features._time import Clock
from userstrata import i18n
from userstrata.features.preference import category_preference
from userstrata.features.realisation import _fill

# tag -> (zh, en) label, from i18n (the profile's column headers); the order is the wide view's columns
TAG_LABELS: dict[str, tuple[str, str]] = {
    tag: (i18n.label(f"col.{tag}", "zh"), i18n.label(f"col.{tag}", "en"))
    for tag in ("price_sensitive", "category_loyal", "brand_loyal", "repeat_item", "social", "night_owl",
                "weekend_buyer", "lunch_buyer", "new_product")
}
TAGS = tuple(TAG_LABELS)

# (zh, en) reasons; {name} is filled from columns
_REASONS: dict[str, tuple[str, str]] = {
    "price_sensitive": ("{n} 单里有 {k} 单（{pct}%）是促销价或用了优惠",
                        "{k} of {n} orders ({pct}%) at a promotion price or with a discount"),
    # when the data has discount columns (discount_amount, coupon_id, list_price), what each counted
    "price_sensitive_columns": ("{n} 单里有 {k} 单（{pct}%）有优惠：用券 {coupon} 单，有优惠金额 {discount} 单，"
                                "低于原价 {below} 单",
                                "{k} of {n} orders ({pct}%) discounted: {coupon} with a coupon, {discount} with "
                                "a discount amount, {below} below the list price"),
    "brand_loyal": ("{pct}% 的消费在品牌「{brand}」（共 {n} 单）", "{pct}% of spend on the brand {brand} ({n} orders)"),
    "category_loyal": ("{pct}% 的消费在「{category}」（共 {n} 单）",
                       "{pct}% of spend on {category} ({n} orders)"),
    "repeat_item": ("「{sku}」买了 {k} 单", "bought {sku} in {k} orders"),
    "social": ("近 {days} 天分享、邀请或拼团 {k} 次", "{k} shares, invites or group buys in the last {days} days"),
    "night_owl": ("{n} 单里有 {k} 单（{pct}%）在 {start} 点到次日 {end} 点之间下单",
                  "{k} of {n} orders ({pct}%) placed between {start}:00 and {end}:00"),
    "weekend_buyer": ("{n} 单里有 {k} 单（{pct}%）在周末下单", "{k} of {n} orders ({pct}%) placed at the weekend"),
    "lunch_buyer": ("{n} 单里有 {k} 单（{pct}%）在 {start} 点到 {end} 点之间下单",
                    "{k} of {n} orders ({pct}%) placed between {start}:00 and {end}:00"),
    "new_product": ("{n} 件商品里有 {k} 件（{pct}%）在新品上架 {days} 天内买入",
                    "{k} of {n} items ({pct}%) bought within {days} days of their launch"),
}


def _reasons(tag: str, *, wraps: bool = True, **values: ir.Value) -> dict[str, ir.StringValue]:
    zh, en = _REASONS[tag]
    if not wraps:  # night hours that do not pass midnight
        zh = zh.replace("次日 ", "")
    return {"reason_zh": _fill(zh, **values), "reason_en": _fill(en, **values)}


def _pct(k: ir.IntegerValue, n: ir.IntegerValue) -> ir.IntegerValue:
    return (k.cast("float64") * 100 / n.cast("float64")).round(0).cast("int64")


def _share(k: ir.IntegerValue, n: ir.IntegerValue) -> ir.FloatingValue:
    # one division of two integers: the same float on every engine
    return k.cast("float64") / n.cast("float64")


def _in_hours(hour: ir.IntegerValue, hours: tuple[int, int]) -> ir.BooleanValue:
    start, end = hours
    if start < end:
        return (hour >= start) & (hour < end)
    return (hour >= start) | (hour < end)  # wraps past midnight


def _rows(t: ir.Table, tag: str, value: ir.NumericValue, reasons: dict[str, ir.StringValue]) -> ir.Table:
    return t.select(
        "user_id", tag=ibis.literal(tag), value=value.cast("float64"),
        reason_zh=reasons["reason_zh"], reason_en=reasons["reason_en"],
    )  # fmt: skip


def user_tags(
    purchases: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    *,
    as_of: dt_.date,
    clock: Clock,
    rules: TagSettings,
) -> ir.Table:
    """One row per user and tag that holds: ``user_id, tag, value, reason_zh, reason_en``.

    ``purchases`` is :func:`userstrata.features.purchases` for ``as_of`` (it keeps any
    extra order columns, such as ``discount_amount`` or ``coupon_id`` when present).
    ``value`` is the share or count the rule tested (see docs/tags.md).
    """
    n_min = rules.min_orders
    p = purchases
    local = _engine.local_time(p.ts, clock.zone, clock.engine)
    p = p.mutate(local_hour=local.hour(), weekday=local.day_of_week.index())  # Monday = 0

    # price sensitivity. With discount columns (any value in orders.discount_amount, orders.coupon_id
    # or order_items.list_price among the purchases): an order is discounted when its discount
    # amount is > 0, it names a coupon, or one of its lines cost less than its list price (in
    # cents). Without any (the fallback): when a line is at least promo_min_discount_percent below
    # the highest price its SKU was sold at.
    lines = order_items.join(p.select("order_id", "user_id", "order_date"), "order_id")
    lines = lines.mutate(price_cents=to_cents(lines.price))
    lines = lines.mutate(top_cents=lines.price_cents.max().over(group_by=lines.sku))
    promo = (lines.top_cents > 0) & (
        lines.price_cents * 100 <= lines.top_cents * (100 - rules.promo_min_discount_percent)
    )
    if "list_price" in lines.columns:
        list_cents = to_cents(lines.list_price.cast("float64"))
        has_list, below = list_cents.notnull(), list_cents.notnull() & (lines.price_cents < list_cents)
    else:
        has_list = below = ibis.literal(False)
    by_order = lines.group_by("order_id").agg(
        promo=promo.cast("int64").max(), below=below.cast("int64").max(), has_list=has_list.cast("int64").max(),
    )
    p = p.left_join(by_order, "order_id").drop("order_id_right")
    zero = ibis.literal(0, "int64")
    if rules.discount_amount_col in p.columns:
        amount = p[rules.discount_amount_col].cast("float64")
        has_discount, discount = amount.notnull(), amount.fill_null(0) > 0
    else:
        has_discount = discount = ibis.literal(False)
    if rules.coupon_col in p.columns:
        coupon = p[rules.coupon_col].cast("string")
        coupon = coupon.notnull() & (coupon.strip() != "")  # a blank cell is no coupon
    else:
        coupon = ibis.literal(False)
    evidence = has_discount | coupon | (p.has_list.fill_null(zero) > 0)
    p = p.mutate(
        d_discount=discount.cast("int64"), d_coupon=coupon.cast("int64"), d_below=p.below.fill_null(zero),
        d_promo=p.promo.fill_null(zero), evidence=evidence.cast("int64"),
    )
    p = p.mutate(with_columns=p.evidence.max().over(ibis.window()))  # 1: the data has discount columns
    discounted = ibis.ifelse(p.with_columns == 1, (p.d_discount + p.d_coupon + p.d_below) > 0, p.d_promo > 0)

    per_user = p.group_by("user_id").agg(
        n=p.count(),
        discounted=discounted.cast("int64").sum(),
        with_discount=p.d_discount.sum(), with_coupon=p.d_coupon.sum(), below_list=p.d_below.sum(),
        with_columns=p.with_columns.max(),
        night=_in_hours(p.local_hour, rules.night_hours).cast("int64").sum(),
        lunch=_in_hours(p.local_hour, rules.lunch_hours).cast("int64").sum(),
        weekend=(p.weekday >= 5).cast("int64").sum(),
    )
    enough = per_user.filter(per_user.n >= n_min)
    out = []

    def share_tag(tag: str, k: ir.IntegerValue, threshold: float, *, wraps: bool = True, **extra: ir.Value) -> None:
        t = enough.filter(_share(k, enough.n) >= threshold)
        k = t[k.get_name()]
        reasons = _reasons(tag, wraps=wraps, k=k, n=t.n, pct=_pct(k, t.n), **extra)
        out.append(_rows(t, tag, _share(k, t.n), reasons))

    sensitive = enough.filter(_share(enough.discounted, enough.n) >= rules.price_sensitive_share)
    k, n = sensitive.discounted, sensitive.n
    fallback = _reasons("price_sensitive", k=k, n=n, pct=_pct(k, n))
    from_columns = _reasons("price_sensitive_columns", k=k, n=n, pct=_pct(k, n), coupon=sensitive.with_coupon,
                            discount=sensitive.with_discount, below=sensitive.below_list)
    out.append(_rows(sensitive, "price_sensitive", _share(k, n), {
        key: ibis.ifelse(sensitive.with_columns == 1, from_columns[key], fallback[key]) for key in fallback
    }))
    night_start, night_end = rules.night_hours
    share_tag("night_owl", enough.night, rules.time_habit_share, wraps=night_start > night_end,
              start=ibis.literal(str(night_start)), end=ibis.literal(str(night_end)))
    share_tag("weekend_buyer", enough.weekend, rules.weekend_share)
    lunch_start, lunch_end = rules.lunch_hours
    share_tag("lunch_buyer", enough.lunch, rules.time_habit_share,
              start=ibis.literal(str(lunch_start)), end=ibis.literal(str(lunch_end)))

    # loyalty: the top category's share of spend, among users with enough orders
    pref = category_preference(order_items, purchases)
    loyal = pref.join(enough.select("user_id", "n"), "user_id")
    loyal = loyal.filter(loyal.category_share >= rules.category_loyal_share)
    out.append(_rows(loyal, "category_loyal", loyal.category_share, _reasons(
        "category_loyal", pct=(loyal.category_share * 100).round(0).cast("int64"),
        category=loyal.top_category, n=loyal.n)))

    # brand loyalty (when items carry a brand): the top brand's share of the user's item spend,
    # unbranded lines included in the whole (an item without a brand is not the brand's)
    if "brand" in lines.columns:
        spent = lines.mutate(cents=lines.price_cents * lines.quantity.fill_null(1).cast("int64"),
                             brand_name=lines.brand.cast("string").strip().nullif(""))
        total = spent.group_by("user_id").agg(total_cents=spent.cents.sum())
        named = spent.filter(spent.brand_name.notnull())
        brands = named.group_by(["user_id", "brand_name"]).agg(cents=named.cents.sum())
        brands = brands.mutate(pick=ibis.row_number().over(
            group_by=brands.user_id, order_by=[ibis.desc(brands.cents), brands.brand_name]))
        top = brands.filter(brands.pick == 0).join(total, "user_id").join(enough.select("user_id", "n"), "user_id")
        top = top.filter(top.total_cents > 0)
        top = top.mutate(brand_share=_share(top.cents, top.total_cents))
        top = top.filter(top.brand_share >= rules.brand_loyal_share)
        out.append(_rows(top, "brand_loyal", top.brand_share, _reasons(
            "brand_loyal", pct=(top.brand_share * 100).round(0).cast("int64"), brand=top.brand_name, n=top.n)))

    # repeat purchases of one SKU: its number of orders (the most bought SKU; ties by name)
    by_sku = lines.group_by(["user_id", "sku"]).agg(k=lines.order_id.nunique())
    by_sku = by_sku.mutate(
        pick=ibis.row_number().over(group_by=by_sku.user_id, order_by=[ibis.desc(by_sku.k), by_sku.sku])
    )
    repeat = by_sku.filter(by_sku.pick == 0, by_sku.k >= rules.repeat_item_orders)
    out.append(_rows(repeat, "repeat_item", repeat.k, _reasons("repeat_item", sku=repeat.sku, k=repeat.k)))

    # social: shares, invites, group buys in the last window_days (as_of included)
    ev = events.filter(events.user_id.notnull())
    ev = ev.mutate(event_date=clock.local_date(ev.ts), event_name=ev.event.lower())
    since = as_of - dt_.timedelta(days=rules.window_days)
    ev = ev.filter(ev.event_date <= as_of, ev.event_date > since,
                   ev.event_name.isin([e.lower() for e in rules.social_events]))
    social = ev.group_by("user_id").agg(k=ev.count())
    social = social.filter(social.k >= rules.social_min_events)
    out.append(_rows(social, "social", social.k, _reasons(
        "social", k=social.k, days=ibis.literal(str(rules.window_days)))))

    # new products: items bought within new_product_days of their SKU's first sale, counting
    # only SKUs first sold after the data's first new_product_days (older ones were not new)
    days = rules.new_product_days
    lines = lines.mutate(line_day=_engine.epoch_day(lines.order_date))
    lines = lines.mutate(
        launch_day=lines.line_day.min().over(group_by=lines.sku),
        start_day=lines.line_day.min().over(ibis.window()),
    )
    early = (lines.launch_day - lines.start_day >= days) & (lines.line_day - lines.launch_day < days)
    new = lines.group_by("user_id").agg(n=lines.count(), k=early.cast("int64").sum())
    new = new.filter(new.k >= rules.new_product_min, _share(new.k, new.n) >= rules.new_product_share)
    out.append(_rows(new, "new_product", _share(new.k, new.n), _reasons(
        "new_product", k=new.k, n=new.n, pct=_pct(new.k, new.n), days=ibis.literal(str(days)))))

    result = out[0]
    for more in out[1:]:
        result = result.union(more)
    return result


def tags_wide(tags: ir.Table) -> ir.Table:
    """One row per tagged user, one boolean column per tag (``TAGS``), plus ``tag_count``."""
    wide = tags.group_by("user_id").agg(
        **{name: (tags.tag == name).cast("int64").max() == 1 for name in TAGS}, tag_count=tags.count()
    )
    return wide


def tag_label(tag: str, lang: str) -> str:
    """The tag's name in ``lang`` ("zh" or "en")."""
    zh, en = TAG_LABELS[tag]
    return zh if lang == "zh" else en
