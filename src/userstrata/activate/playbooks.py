"""Playbooks (运营策略): a segment, a condition or a trigger mapped to an action (channel,
template, offer, priority, goal).

The defaults cover the domain's strategies per tier and lifecycle stage (explorer: onboarding
and a low first-order threshold; engaged: early access; co-builder: co-creation; dormant: a
recall gift; churned: a low-cost channel only) and the triggers of ``TRIGGERS``: registration
+1h/+6h/+24h without a first order, browsed and not bought, cart abandoned, post-purchase
cross-sell, review thanks, birthday, dormant N days, check-in streak at risk, membership
expiring, purchase not used. ``[[playbooks]]`` in ``userstrata.toml`` overrides them by name.

```python
books = playbooks_from(settings)                      # defaults merged with the file's
members = playbook_members(profile, books)            # Ibis: user_id + one yes/no column each
due = trigger_times(users, orders, events, books, start=date(2024, 7, 1), days=7, clock=clock)
```
"""

from __future__ import annotations

import calendar
import datetime as dt_
from collections.abc import Mapping, Sequence
import typing
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine
from userstrata.activate.segments import Segment, cart_abandonment, compile_condition, resolve
from userstrata.config import AlertSettings, PlaybookSettings, Settings, TriggerName
from userstrata.errors import ConfigError
from userstrata.features.realisation import json_text
from userstrata.measure.alerts import streak_at_risk, unused_purchase
from userstrata.schema import PURCHASE_STATUSES

__all__ = ["DEFAULT_PLAYBOOKS", "TRIGGERS", "Playbook", "playbook_members", "playbooks_from", "trigger_times"]

TRIGGERS: tuple[str, ...] = typing.get_args(TriggerName)
Playbook = PlaybookSettings  # one playbook, as configured


# trigger -> trigger_days when not given (None: required; streak_at_risk: [alerts] streak_days);
# a trigger absent here does not use it
_TRIGGER_DAYS: dict[str, int | None] = {"dormant_days": None, "cross_sell": None, "streak_at_risk": 7,
                                        "membership_expiring": 3, "purchase_unused": 7}  # fmt: skip
_TRIGGER_EVENT = {"browse_no_buy": "page_view", "review_thanks": "review"}
_BROWSE_HOURS = 24
# a view counts as viewing an item when its properties name no page, or one of these
ITEM_PAGES = ("item", "product", "detail", "course", "sku", "goods", "商品", "商品详情", "详情", "课程")
_STREAK_HOUR = 20  # the streak reminder goes out at 20:00 shop time, before the day ends
_BIRTHDAY = '"(?:birthday|生日)"[ ]*:[ ]*"([^"]*)"'
# [YYYY[sep]]M[M][sep]D[D]: 1990-05-17, 1990/5/17, 1990年5月17日, 19900517, 05-17, 0517
_MONTH_DAY = "^[ ]*(?:[0-9]{4}[^0-9]?)?([0-9]{1,2})[^0-9]?([0-9]{1,2})"
_REGISTRATION_HOURS = {"registered_1h": 1, "registered_6h": 6, "registered_24h": 24}
_ACTIVE = "lifecycle not in ['dormant', 'churned']"


def _pb(name: str, label_zh: str, label_en: str, **fields: Any) -> Playbook:
    return Playbook(name=name, label_zh=label_zh, label_en=label_en, **fields)


DEFAULT_PLAYBOOKS: tuple[Playbook, ...] = (
    # explorer (体验探索者): show the way in, then a low threshold for the first order
    _pb("explorer_onboarding", "新手引导", "Onboarding guide", where=f"tier == 'explorer' and orders == 0 and {_ACTIVE}",
        channel="app_push", template="onboarding_guide", goal="first_order", priority=40, cooldown_days=7),
    _pb("explorer_first_order", "首单低门槛券", "Low-threshold first-order coupon",
        where="tier == 'explorer' and orders == 0 and tenure_days <= 30", channel="wechat_template",
        template="first_order_coupon", offer_type="coupon", offer_value=5, goal="first_order", priority=55,
        cooldown_days=14),
    _pb("explorer_growth_path", "成长路径", "Growth path", where=f"tier == 'explorer' and orders >= 1 and {_ACTIVE}",
        channel="app_push", template="growth_path", offer_type="points", offer_value=100, goal="upgrade",
        priority=45, cooldown_days=14),
    # regular (常规消费者): member benefits towards the next tier
    _pb("regular_member_benefits", "会员权益升级", "Member benefits", where=f"tier == 'regular' and {_ACTIVE}",
        channel="app_push", template="member_benefits", goal="upgrade", priority=45, cooldown_days=7),
    # engaged (深度参与者): early access and co-creation invitations
    _pb("engaged_early_access", "新品抢先体验", "Early access", where=f"tier == 'engaged' and {_ACTIVE}",
        channel="wecom", template="early_access", goal="upgrade", priority=60, cooldown_days=14),
    # co-builder (品牌共建者): co-creation, service rather than selling
    _pb("co_builder_co_creation", "共创邀请", "Co-creation invitation", where=f"tier == 'co_builder' and {_ACTIVE}",
        channel="community", template="co_creation_invite", goal="care", priority=70, cooldown_days=14),
    # lifecycle: dormant users get a recall gift (with a holdout to measure it), churned ones a
    # low-cost channel only, lapsed big spenders a personal call
    _pb("dormant_recall_gift", "沉睡召回礼", "Recall gift", where="lifecycle == 'dormant'", channel="wechat_template",
        template="recall_gift", offer_type="gift", offer_value=10, goal="recall", priority=50, cooldown_days=30,
        variants={"gift": 0.45, "coupon": 0.45, "holdout": 0.10}),
    _pb("churned_low_cost", "流失低成本触达", "Low-cost win-back", where="lifecycle == 'churned'", channel="app_push",
        template="win_back", goal="recall", priority=10, cooldown_days=30),
    _pb("lapsed_high_value_care", "高价值沉睡专属关怀", "Personal care for lapsed high value",
        segment="lapsed_high_value", channel="wecom", template="personal_care", goal="care", priority=80,
        cooldown_days=30),
    # triggers
    _pb("welcome_1h", "注册1小时欢迎", "Welcome, 1h after registering", trigger="registered_1h", channel="app_push",
        template="welcome", goal="first_order", priority=90, cooldown_days=30),
    _pb("first_order_tip_6h", "注册6小时首单提醒", "First-order tip, 6h", trigger="registered_6h",
        channel="wechat_template", template="first_order_tip", goal="first_order", priority=85, cooldown_days=30),
    _pb("first_order_coupon_24h", "注册24小时首单券", "First-order coupon, 24h", trigger="registered_24h",
        channel="sms", template="first_order_coupon", offer_type="coupon", offer_value=10, goal="first_order",
        priority=80, cooldown_days=30),
    _pb("cart_reminder", "加购未买提醒", "Cart reminder", trigger="cart_abandoned", channel="app_push",
        template="cart_reminder", goal="first_order", priority=75, cooldown_days=7),
    _pb("dormant_30d", "沉睡30天关怀", "30 days inactive", trigger="dormant_days", trigger_days=30,
        channel="wechat_template", template="miss_you", goal="recall", priority=65, cooldown_days=30),
    _pb("cross_sell", "购后推荐", "Post-purchase cross-sell", trigger="cross_sell", trigger_days=3,
        channel="app_push", template="you_may_like", goal="upgrade", priority=50, cooldown_days=14),
    # a reminder without a discount: browsing must not become a way to wait for coupons
    _pb("browse_reminder", "浏览未购提醒", "Viewed, not bought", trigger="browse_no_buy", trigger_hours=24,
        channel="app_push", template="browse_reminder", goal="first_order", priority=60, cooldown_days=7),
    _pb("review_thanks", "评价感谢", "Thanks for the review", trigger="review_thanks", channel="wechat_template",
        template="review_thanks", offer_type="points", offer_value=50, goal="care", priority=40, cooldown_days=7),
    _pb("birthday_gift", "生日礼券", "Birthday gift", trigger="birthday", channel="wechat_template",
        template="birthday_gift", offer_type="coupon", offer_value=20, goal="care", priority=70, cooldown_days=300),
    _pb("streak_reminder", "签到即将断签提醒", "Check-in streak reminder", trigger="streak_at_risk", trigger_days=7,
        channel="app_push", template="streak_reminder", offer_type="points", offer_value=20, goal="care",
        priority=55, cooldown_days=3),
    _pb("membership_renewal", "会员到期续费提醒", "Membership renewal reminder", trigger="membership_expiring",
        trigger_days=3, channel="wechat_template", template="renewal_reminder", offer_type="coupon", offer_value=5,
        goal="renewal", priority=75, cooldown_days=20),
    _pb("purchase_unused_guide", "购后未使用引导", "Getting started with your purchase", trigger="purchase_unused",
        trigger_days=7, channel="app_push", template="usage_guide", goal="care", priority=60, cooldown_days=14),
)  # fmt: skip


def playbooks_from(settings: Settings | Sequence[PlaybookSettings] = (), *,
                   defaults: Sequence[Playbook] = DEFAULT_PLAYBOOKS) -> list[Playbook]:
    """The defaults with ``[[playbooks]]`` merged in by name (only the keys given change; a new
    name adds a playbook; ``enabled = false`` removes one). ``ConfigError`` names what is missing."""
    given = settings.playbooks if isinstance(settings, Settings) else list(settings)
    books = {b.name: b for b in defaults}
    for override in given:
        if override.name in books:
            update = {k: getattr(override, k) for k in override.model_fields_set if k != "name"}
            if {"segment", "where", "trigger"} & set(update):  # a new target replaces the old one
                update = {"segment": None, "where": None, "trigger": None, **update}
            books[override.name] = books[override.name].model_copy(update=update)
        else:
            books[override.name] = override if isinstance(override, Playbook) else Playbook.model_validate(
                override.model_dump(exclude_unset=True))
    result = [b for b in books.values() if b.enabled]
    for b in result:
        _check(b)
    return result


def _check(book: Playbook) -> None:
    targets = [k for k in ("segment", "where", "trigger") if getattr(book, k) is not None]
    missing = [k for k in ("channel", "template", "goal") if getattr(book, k) is None]
    problem = problem_zh = None
    if len(targets) != 1:
        problem = f"needs exactly one of segment, where, trigger (got {', '.join(targets) or 'none'})"
        problem_zh = f"segment、where、trigger 三者须且只能填一个（现有：{', '.join(targets) or '无'}）"
    elif missing:
        problem, problem_zh = f"needs {', '.join(missing)}", f"缺少 {', '.join(missing)}"
    elif book.trigger is not None:
        problem, problem_zh = _check_trigger(book)
    if problem:
        raise ConfigError(f"playbooks: {book.name!r} {problem}", zh=f"运营策略 {book.name!r}：{problem_zh}",
                          hint="see docs/act.md for a playbook's keys", hint_zh="各键的说明见 docs/act.md")


def _check_trigger(book: Playbook) -> tuple[str | None, str | None]:
    """(English, Chinese) of what is wrong with a trigger's own keys, or (None, None)."""
    trig, days = book.trigger, book.trigger_days
    hours, event = getattr(book, "trigger_hours", None), getattr(book, "trigger_event", None)
    if trig in _TRIGGER_DAYS and _TRIGGER_DAYS[trig] is None and days is None:
        return f"trigger {trig} needs trigger_days", f"触发器 {trig} 需要 trigger_days"
    if trig not in _TRIGGER_DAYS and days is not None:
        return (f"trigger {trig} does not use trigger_days (got {days}); only {', '.join(_TRIGGER_DAYS)} do",
                f"触发器 {trig} 不使用 trigger_days（填了 {days}）；只有 {'、'.join(_TRIGGER_DAYS)} 使用")
    if trig == "streak_at_risk" and days is not None and days < 2:
        return (f"trigger streak_at_risk needs trigger_days >= 2 (a streak of at least 2 days), got {days}",
                f"触发器 streak_at_risk 的 trigger_days 至少为 2（连续签到至少 2 天），现为 {days}")
    if hours is not None and trig != "browse_no_buy":
        return (f"trigger {trig} does not use trigger_hours (got {hours}); only browse_no_buy does",
                f"触发器 {trig} 不使用 trigger_hours（填了 {hours}）；只有 browse_no_buy 使用")
    if event is not None and trig not in _TRIGGER_EVENT:
        return (f"trigger {trig} does not use trigger_event (got {event!r}); only browse_no_buy and review_thanks do",
                f"触发器 {trig} 不使用 trigger_event（填了 {event!r}）；只有 browse_no_buy 和 review_thanks 使用")
    if event is not None and not event.strip():
        return f"trigger {trig}: trigger_event is empty", f"触发器 {trig}：trigger_event 为空"
    return None, None


def segment_of(book: Playbook, defined: Mapping[str, Segment] | None = None) -> Segment | None:
    """The segment a segment- or condition-driven playbook targets (None for a trigger)."""
    if book.segment is not None:
        return resolve(book.segment, defined)
    if book.where is not None:
        return Segment(book.name, book.where, book.label_zh, book.label_en)
    return None


def playbook_members(profile: ir.Table, books: Sequence[Playbook], *,
                     defined: Mapping[str, Segment] | None = None) -> ir.Table:
    """``user_id`` and one boolean column per segment-driven playbook (its name): is the user in
    its segment. One pass over the profile on its engine."""
    columns = {}
    for book in books:
        segment = segment_of(book, defined)
        if segment is not None:
            cond = compile_condition(segment.where, profile, name=segment.name, needs=segment.needs)
            columns[book.name] = cond.fill_null(False)
    return profile.select("user_id", **columns)


def trigger_times(users: ir.Table, orders: ir.Table, events: ir.Table, books: Sequence[Playbook], *,
                  start: dt_.date, days: int, clock: Any, cart_days: int = 3, order_items: ir.Table | None = None,
                  memberships: pd.DataFrame | ir.Table | None = None,
                  alerts: AlertSettings | None = None) -> ir.Table:
    """When each trigger playbook fires for each user in the plan's days: ``user_id``,
    ``playbook``, ``due_at`` (shop-local wall-clock time) and ``exact`` (send at ``due_at``
    itself rather than at the user's best hour of that day).

    - registered_1h/6h/24h: ``registered_at`` + 1/6/24 hours, when no purchase came before it;
    - browse_no_buy (``trigger_hours`` H, default 24): the user's last view (``trigger_event``,
      default ``page_view``, of an item page: see ``ITEM_PAGES``) + H hours, when nothing was
      bought at or after the view;
    - cart_abandoned: the last cart of the ``cart_days`` before ``start`` not bought since,
      one hour after the cart (at ``start`` 00:00 if that is earlier: then the quiet hours move it);
    - cross_sell (N): N days after the user's last purchase;
    - review_thanks: the day after a review (``trigger_event``, default ``review``);
    - birthday: the local day of ``birthday`` (or ``生日``) in ``users.attributes`` (MM-DD; 29
      February on the 28th in other years);
    - dormant_days (N): the day the user reaches N days without events or purchases;
    - streak_at_risk (N, default 7): a check-in streak of N days or more that ended the day
      before ``start`` and no check-in on ``start`` (``measure.alerts.streak_at_risk``): at
      20:00 on ``start``;
    - membership_expiring (N, default 3): N days before the end of a running membership
      (``memberships``: ``renewals(...).members``; none given, no contact);
    - purchase_unused (N, default 7): N days after buying a course or membership
      (``alerts.unused_categories``) with no usage event (``alerts.usage_events``) since
      (``measure.alerts.unused_purchase``; needs ``order_items``, none given, no contact).
    Everything known up to the end of the day before ``start`` (streak_at_risk: the check-ins
    of ``start`` already loaded count too).
    """
    alerts = alerts or AlertSettings()
    as_of = start - dt_.timedelta(days=1)
    begin = ibis.literal(dt_.datetime.combine(start, dt_.time()))
    end = ibis.literal(dt_.datetime.combine(start + dt_.timedelta(days=days), dt_.time()))

    def local(ts: ir.TimestampValue) -> ir.TimestampValue:
        return _engine.local_time(ts, clock.zone, clock.engine)

    def day_plus(day: ir.DateValue, n: int) -> ir.TimestampValue:
        return day.cast("timestamp") + ibis.interval(days=n)

    paid = orders.filter(orders.status.isin(PURCHASE_STATUSES) & orders.user_id.notnull())
    paid = paid.filter(local(paid.ts) < begin)
    first_paid = paid.group_by("user_id").agg(first_paid=local(paid.ts).min(), last_paid=local(paid.ts).max())
    # alerts' rules take a profile for the tier: the users with none (the plan joins its own)
    no_tier = users.select("user_id", tier=ibis.null().cast("string"))
    parts: list[ir.Table] = []

    def part(table: ir.Table, book: Playbook, due: ir.TimestampValue, exact: bool) -> ir.Table:
        t = table.select(user_id=table.user_id, due_at=due.cast("timestamp"))
        t = t.filter((t.due_at >= begin) & (t.due_at < end))
        if book.trigger in _ONE_A_DAY:
            t = t.distinct()
        return t.select("user_id", playbook=ibis.literal(book.name), due_at=t.due_at, exact=ibis.literal(exact))

    for book in books:
        trig = book.trigger
        n_days = book.trigger_days or (
            alerts.streak_days if trig == "streak_at_risk" else _TRIGGER_DAYS.get(trig or ""))
        event_name = getattr(book, "trigger_event", None) or _TRIGGER_EVENT.get(trig or "")
        if trig in _REGISTRATION_HOURS:
            hours = _REGISTRATION_HOURS[trig]
            reg = users.filter(users.registered_at.notnull())
            reg = reg.left_join(first_paid, "user_id")
            due = local(reg.registered_at) + ibis.interval(hours=hours)
            reg = reg.mutate(_due=due)
            reg = reg.filter(reg.first_paid.isnull() | (reg.first_paid > reg._due))
            parts.append(part(reg, book, reg._due, True))
        elif trig == "browse_no_buy":
            hours = getattr(book, "trigger_hours", None) or _BROWSE_HOURS
            views = events.filter(events.user_id.notnull() & (events.event == event_name))
            page = json_text(views.properties.fill_null(""), "page")
            views = views.filter(page.isnull() | page.isin(ITEM_PAGES))
            views = views.select("user_id", ts=local(views.ts))
            views = views.filter(views.ts < begin)
            last = views.group_by("user_id").agg(viewed=views.ts.max())
            bought = paid.select(buyer=paid.user_id, bought_at=local(paid.ts))
            last = last.anti_join(bought, [last.user_id == bought.buyer, bought.bought_at >= last.viewed])
            parts.append(part(last, book, last.viewed + ibis.interval(hours=hours), True))
        elif trig == "cart_abandoned":
            carts = cart_abandonment(events, orders, as_of=as_of, clock=clock, days=cart_days)
            carts = carts.filter(carts.cart_abandoned)
            due = local(carts.last_cart_at) + ibis.interval(hours=1)
            due = ibis.greatest(due, begin)
            parts.append(part(carts, book, due, True))
        elif trig == "review_thanks":
            reviews = events.filter(events.user_id.notnull() & (events.event == event_name))
            reviews = reviews.select("user_id", ts=local(reviews.ts))
            reviews = reviews.filter(reviews.ts < begin)
            parts.append(part(reviews, book, day_plus(reviews.ts.date(), 1), False))
        elif trig == "birthday":
            parts.append(_birthdays(users, book, start, days, part))
        elif trig == "dormant_days":
            ev = events.filter(events.user_id.notnull() & (local(events.ts) < begin)).select("user_id", ts=local(events.ts))
            od = paid.select("user_id", ts=local(paid.ts))
            last = ev.union(od).group_by("user_id").agg(last=lambda t: t.ts.max())
            parts.append(part(last, book, day_plus(last.last.date(), n_days), False))
        elif trig == "cross_sell":
            parts.append(part(first_paid, book, day_plus(first_paid.last_paid.date(), n_days), False))
        elif trig == "streak_at_risk":
            rules = alerts.model_copy(update={"streak_days": n_days})
            risk = streak_at_risk(events, no_tier, as_of=start, clock=clock, rules=rules)
            evening = ibis.literal(dt_.datetime.combine(start, dt_.time(_STREAK_HOUR)))
            parts.append(part(risk, book, evening, True))
        elif trig == "membership_expiring" and memberships is not None:
            m = ibis.memtable(memberships) if isinstance(memberships, pd.DataFrame) else memberships
            if "status" in m.columns:
                m = m.filter(m.status.isnull() | (m.status != "lapsed"))
            m = m.filter(m.user_id.notnull() & m.term_end.notnull())
            parts.append(part(m, book, day_plus(local(m.term_end.cast("timestamp")).date(), -n_days), False))
        elif trig == "purchase_unused" and order_items is not None:
            # the purchases whose day + N falls in the plan: bought from start - N to start + days - 1 - N
            rules = alerts.model_copy(update={"unused_days": max(n_days - days, 0), "purchase_lookback_days": n_days})
            unused = unused_purchase(events, orders, order_items, no_tier, as_of=as_of, clock=clock, rules=rules)
            parts.append(part(unused, book, day_plus(unused.bought_on, n_days), False))
    if not parts:
        return ibis.memtable(pd.DataFrame({"user_id": pd.Series(dtype=object), "playbook": pd.Series(dtype=object),
                                           "due_at": pd.Series(dtype="datetime64[ns]"),
                                           "exact": pd.Series(dtype=bool)}))
    return ibis.union(*parts) if len(parts) > 1 else parts[0]


_ONE_A_DAY = ("review_thanks", "membership_expiring")  # several reviews (plans) on a day: one contact


def _birthdays(users: ir.Table, book: Playbook, start: dt_.date, days: int, part: Any) -> ir.Table:
    """The users whose birthday (MM-DD read from ``users.attributes``) falls on a day of the plan;
    29 February is celebrated on 28 February in a year without it."""
    rows = []
    for i in range(days):
        day = start + dt_.timedelta(days=i)
        rows.append((day.month, day.day, day))
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            rows.append((2, 29, day))
    calendar_days = ibis.memtable(pd.DataFrame(rows, columns=["_month", "_day", "_date"]).astype(
        {"_month": "int64", "_day": "int64", "_date": "datetime64[ns]"}))
    text = users.attributes.re_extract(_BIRTHDAY, 1).nullif("")
    born = users.filter(users.user_id.notnull()).select(
        "user_id", _month=text.re_extract(_MONTH_DAY, 1).nullif("").cast("int64"),
        _day=text.re_extract(_MONTH_DAY, 2).nullif("").cast("int64"))
    hit = born.join(calendar_days, [born._month == calendar_days._month, born._day == calendar_days._day])
    return part(hit, book, hit._date.cast("timestamp"), False)
