"""Playbooks (运营策略): a segment, a condition or a trigger mapped to an action (channel,
template, offer, priority, goal).

The defaults cover the domain's strategies per tier and lifecycle stage (explorer: onboarding
and a low first-order threshold; engaged: early access; co-builder: co-creation; dormant: a
recall gift; churned: a low-cost channel only) and the triggers computable from the canonical
tables (registration +1h/+6h/+24h without a first order, cart abandoned, dormant N days,
post-purchase cross-sell). ``[[playbooks]]`` in ``userstrata.toml`` overrides them by name.

```python
books = playbooks_from(settings)                      # defaults merged with the file's
members = playbook_members(profile, books)            # Ibis: user_id + one yes/no column each
due = trigger_times(users, orders, events, books, start=date(2024, 7, 1), days=7, clock=clock)
```
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Mapping, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from userstrata import _engine
from userstrata.activate.segments import Segment, cart_abandonment, compile_condition, resolve
from userstrata.config import PlaybookSettings, Settings
from userstrata.errors import ConfigError
from userstrata.schema import PURCHASE_STATUSES

__all__ = ["DEFAULT_PLAYBOOKS", "NOT_YET_TRIGGERS", "Playbook", "playbook_members", "playbooks_from",
           "trigger_times"]  # fmt: skip

Playbook = PlaybookSettings  # one model for the file and the code

# Triggers of the issue that need data the canonical tables do not carry yet (browse sessions
# without a cart, reviews to thank, birthdays, check-in streaks, membership ends, unused
# purchases): not implemented, listed in docs/act.md.
NOT_YET_TRIGGERS = ("browse_no_buy", "review_thanks", "birthday", "streak_breaking", "membership_expiring",
                    "purchase_unused")  # fmt: skip
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
            books[override.name] = override
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
    elif book.trigger in ("dormant_days", "cross_sell") and book.trigger_days is None:
        problem, problem_zh = f"trigger {book.trigger} needs trigger_days", f"触发器 {book.trigger} 需要 trigger_days"
    if problem:
        raise ConfigError(f"playbooks: {book.name!r} {problem}", zh=f"运营策略 {book.name!r}：{problem_zh}",
                          hint="see docs/act.md for a playbook's keys", hint_zh="各键的说明见 docs/act.md")


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
                  start: dt_.date, days: int, clock: Any, cart_days: int = 3) -> ir.Table:
    """When each trigger playbook fires for each user in the plan's days: ``user_id``,
    ``playbook``, ``due_at`` (shop-local wall-clock time) and ``exact`` (send at ``due_at``
    itself rather than at the user's best hour of that day).

    - registered_1h/6h/24h: ``registered_at`` + 1/6/24 hours, when no purchase came before it;
    - cart_abandoned: the last cart of the ``cart_days`` before ``start`` not bought since,
      one hour after the cart (at ``start`` 00:00 if that is earlier: then the quiet hours move it);
    - dormant_days (N): the day the user reaches N days without events or purchases;
    - cross_sell (N): N days after the user's last purchase.
    Everything known up to the end of the day before ``start``.
    """
    as_of = start - dt_.timedelta(days=1)
    begin = ibis.literal(dt_.datetime.combine(start, dt_.time()))
    end = ibis.literal(dt_.datetime.combine(start + dt_.timedelta(days=days), dt_.time()))

    def local(ts: ir.TimestampValue) -> ir.TimestampValue:
        return _engine.local_time(ts, clock.zone, clock.engine)

    paid = orders.filter(orders.status.isin(PURCHASE_STATUSES) & orders.user_id.notnull())
    paid = paid.filter(local(paid.ts) < begin)
    first_paid = paid.group_by("user_id").agg(first_paid=local(paid.ts).min(), last_paid=local(paid.ts).max())
    parts: list[ir.Table] = []

    def part(table: ir.Table, book: Playbook, due: ir.TimestampValue, exact: bool) -> ir.Table:
        t = table.select(user_id=table.user_id, due_at=due.cast("timestamp"))
        t = t.filter((t.due_at >= begin) & (t.due_at < end))
        return t.select("user_id", playbook=ibis.literal(book.name), due_at=t.due_at, exact=ibis.literal(exact))

    for book in books:
        if book.trigger in _REGISTRATION_HOURS:
            hours = _REGISTRATION_HOURS[book.trigger]
            reg = users.filter(users.registered_at.notnull())
            reg = reg.left_join(first_paid, "user_id")
            due = local(reg.registered_at) + ibis.interval(hours=hours)
            reg = reg.mutate(_due=due)
            reg = reg.filter(reg.first_paid.isnull() | (reg.first_paid > reg._due))
            parts.append(part(reg, book, reg._due, True))
        elif book.trigger == "cart_abandoned":
            carts = cart_abandonment(events, orders, as_of=as_of, clock=clock, days=cart_days)
            carts = carts.filter(carts.cart_abandoned)
            due = local(carts.last_cart_at) + ibis.interval(hours=1)
            due = ibis.greatest(due, begin)
            parts.append(part(carts, book, due, True))
        elif book.trigger == "dormant_days":
            ev = events.filter(events.user_id.notnull() & (local(events.ts) < begin)).select("user_id", ts=local(events.ts))
            od = paid.select("user_id", ts=local(paid.ts))
            last = ev.union(od).group_by("user_id").agg(last=lambda t: t.ts.max())
            day = last.last.date().cast("timestamp") + ibis.interval(days=book.trigger_days)
            parts.append(part(last, book, day, False))
        elif book.trigger == "cross_sell":
            day = first_paid.last_paid.date().cast("timestamp") + ibis.interval(days=book.trigger_days)
            parts.append(part(first_paid, book, day, False))
    if not parts:
        empty = ibis.memtable({"user_id": [], "playbook": [], "due_at": [], "exact": []},
                              schema={"user_id": "string", "playbook": "string", "due_at": "timestamp",
                                      "exact": "boolean"})
        return empty
    return ibis.union(*parts) if len(parts) > 1 else parts[0]
