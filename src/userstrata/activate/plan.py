"""The contact plan (触达计划): who gets what, on which channel, when and why, under the
cadence rules that hold per user across all playbooks.

Order of the rules (each dropped or moved contact says which one and why):

1. **cooldown**: the same playbook reaches a user at most once per ``cooldown_days`` (counted
   from the last contact in the history). A segment playbook's first contact moves to the first
   day allowed; a trigger that fires inside its cooldown is dropped;
2. **send hour**: a contact without an exact time goes out at the user's best hour of that day
   (their most frequent activity hour outside quiet hours, weekdays and weekends apart; else the
   shop's; else ``peak_hour_weekday``/``peak_hour_weekend``);
3. **quiet hours** (23:00-08:00 by default, shop time): a contact due inside them moves to the
   end of the quiet hours (a contact at 22:59 stays; one at 23:00 moves to 08:00 the next day);
4. **unsubscribes and consent** per channel;
5. **caps**: per user and calendar week (Monday to Sunday), by tier; per calendar month for
   dormant and churned users. History contacts of the same week (month) count. When a cap
   bites, higher ``priority`` goes first (then the earlier contact, then the playbook name);
6. **holdout**: contacts of an experiment's holdout arm stay in the plan, dropped with reason
   "holdout", so that measurement compares them with those sent.

Everything is vectorised (numpy/pandas over all candidates): 1M users and 20 playbooks fit.
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata import _engine, i18n
from userstrata.activate.experiments import HOLDOUT, assign
from userstrata.activate.playbooks import Playbook, playbook_members, playbooks_from, segment_of, trigger_times
from userstrata.activate.segments import Segment, defined_segments
from userstrata.config import CadenceSettings, Settings
from userstrata.errors import InputError
from userstrata.schema import TIERS

__all__ = ["CHANNEL_CONTACT", "CHANNEL_ZH", "CONTACT_COLUMNS", "Plan", "activity_hours", "build_plan",
           "REASON_LABELS", "channel_lists", "make_plan"]

CONTACT_COLUMNS = ("user_id", "tier", "lifecycle", "playbook", "source", "why_zh", "why_en", "channel", "template",
                   "offer", "goal", "priority", "send_at", "experiment", "variant", "status", "reason_code",
                   "reason_zh", "reason_en")  # fmt: skip
# what a channel's sending tool needs: the contact field it addresses (when the workspace keeps it,
# activate/contacts.py) and, for every channel, these plan columns (plus item_1.. when present)
CHANNEL_CONTACT = {"sms": "phone", "email": "email", "wechat_template": "wechat_openid", "wecom": "wecom_userid"}
CHANNEL_LIST_COLUMNS = ("user_id", "send_at", "template", "offer", "playbook", "experiment", "variant")
# why a contact was dropped or moved (``reason_code``), in (zh, en)
REASON_LABELS = {"cap": ("达到频次上限", "cap reached"), "quiet_hours": ("免打扰顺延", "quiet hours"),
                 "cooldown": ("冷却期", "cooldown"), "unsubscribed": ("已退订", "unsubscribed"),
                 "no_consent": ("未授权", "no consent"), "holdout": ("对照组", "holdout"),
                 "cooldown+quiet_hours": ("冷却期+免打扰顺延", "cooldown + quiet hours")}  # fmt: skip
_PLANNED, _MOVED, _DROPPED = 0, 1, 2
_STATUS = np.array(["planned", "moved", "dropped"], dtype=object)
_DISCOUNTS = ("coupon", "discount")
_DAY = np.int64(86_400_000_000_000)  # nanoseconds
_HOUR = np.int64(3_600_000_000_000)
_MONTHS = 1_000_000  # month keys are offset so that they never equal a week number
_PERIODS = 2_000_000  # user * _PERIODS + period: one integer key per user and period
_TIER_ZH = {t: i18n.label(t, "zh") for t in TIERS}
_TIER_EN = {t: i18n.label(t, "en") for t in TIERS}
CHANNEL_ZH = {"sms": "短信", "wechat_template": "微信模板消息", "wecom": "企业微信", "app_push": "App 推送",
               "email": "邮件", "community": "社群"}  # fmt: skip
_OFFER_ZH = {"coupon": "优惠券", "discount": "折扣", "gift": "礼品", "points": "积分", "trial": "体验"}


@dataclass(frozen=True)
class Plan:
    """The plan: ``contacts`` (one row per candidate contact, see ``CONTACT_COLUMNS``; ``send_at``
    is shop-local wall-clock time), ``summary`` (contacts by tier, channel, status and reason) and
    ``fairness`` (per tier: upward path, caps, warnings)."""

    contacts: pd.DataFrame
    summary: pd.DataFrame
    fairness: pd.DataFrame
    start: dt_.date
    days: int

    def warnings(self, lang: str = "en") -> list[str]:
        """The fairness warnings in ``lang`` (empty when every tier is served fairly)."""
        col = "warning_zh" if lang == "zh" else "warning_en"
        return [w for w in self.fairness[col] if w]


# -- send hours ------------------------------------------------------------------------------
def _quiet(hour: Any, start: int, end: int) -> Any:
    return (hour >= start) | (hour < end) if start > end else (hour >= start) & (hour < end)


def activity_hours(events: ir.Table, orders: ir.Table, clock: Any, *, until: dt_.date | None = None,
                   quiet_start_hour: int = 23, quiet_end_hour: int = 8) -> ir.Table:
    """Each user's best send hour: ``user_id``, ``weekend`` (Saturday or Sunday), ``best_hour``
    (the shop-local hour with most events and orders outside quiet hours; the earlier hour on a
    tie) and ``activity`` (how many there were in that hour)."""

    def local(ts: ir.TimestampValue) -> ir.TimestampValue:
        return _engine.local_time(ts, clock.zone, clock.engine)

    ev = events.filter(events.user_id.notnull()).select("user_id", ts=local(events.ts))
    od = orders.filter(orders.user_id.notnull()).select("user_id", ts=local(orders.ts))
    act = ev.union(od)
    if until is not None:
        act = act.filter(act.ts < ibis.literal(dt_.datetime.combine(until + dt_.timedelta(days=1), dt_.time())))
    act = act.mutate(hour=act.ts.hour(), weekend=act.ts.day_of_week.index() >= 5)
    act = act.filter(~_quiet(act.hour, quiet_start_hour, quiet_end_hour))
    counts = act.group_by("user_id", "weekend", "hour").agg(activity=lambda t: t.count())
    by_user = ibis.window(group_by=[counts.user_id, counts.weekend], order_by=[ibis.desc(counts.activity), counts.hour])
    ranked = counts.mutate(rank=ibis.row_number().over(by_user))
    return ranked.filter(ranked.rank == 0).select("user_id", "weekend", best_hour=ranked.hour.cast("int64"),
                                                  activity=ranked.activity)  # fmt: skip


def _best_hours(users: pd.Index, hours: pd.DataFrame | None, cadence: CadenceSettings,
                own: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weekday, weekend) best hour per user row, from ``hours`` (user_id, weekend, best_hour)
    or from ``own``'s columns ``best_hour_weekday``/``best_hour_weekend`` (the profile's rows,
    joined on the engine: no lookup by user id). The shop's most common best hour fills users
    without activity, and the configured peak hours a shop without any."""
    out = []
    for weekend, peak in ((False, cadence.peak_hour_weekday), (True, cadence.peak_hour_weekend)):
        best = np.full(len(users), -1, dtype=np.int64)
        column = "best_hour_weekend" if weekend else "best_hour_weekday"
        if own is not None and column in own.columns:
            values = pd.to_numeric(own[column]).fillna(-1).to_numpy(dtype=np.int64)
            best[: len(values)] = values
        elif hours is not None and len(hours):
            part = hours[hours["weekend"].astype(bool) == weekend]
            rows = _rows(users, part["user_id"].astype(str))
            ok = rows >= 0
            best[rows[ok]] = part["best_hour"].to_numpy(dtype=np.int64)[ok]
        found = best[best >= 0]
        if len(found):
            counts = np.bincount(found, minlength=24)
            peak = int(np.argmax(counts))  # the shop's peak hour, the earliest on a tie
        best[best < 0] = peak
        out.append(best)
    return out[0], out[1]


# -- the plan --------------------------------------------------------------------------------
def _local_history(history: pd.DataFrame | None, timezone: str) -> pd.DataFrame:
    """Earlier contacts as (user_id, playbook, at = shop-local time): the plan's own columns
    (``playbook``, ``send_at``, ``status``) or the touches table's (``campaign``, ``ts`` UTC)."""
    if history is None or not len(history):
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "playbook": pd.Series(dtype=object),
                             "at": pd.Series(dtype="datetime64[ns]")})  # fmt: skip
    h = history
    if "status" in h.columns:
        h = h[h["status"].isin(["planned", "moved", "sent"])]
    if "outcome" in h.columns:
        h = h[h["outcome"].fillna("") != HOLDOUT]  # a holdout row was never sent
    if "send_at" in h.columns:
        at = pd.to_datetime(h["send_at"])
    else:
        at = pd.to_datetime(h["ts"]).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    book = h["playbook"] if "playbook" in h.columns else h["campaign"]
    return pd.DataFrame({"user_id": h["user_id"].astype(str).to_numpy(), "playbook": book.astype(str).to_numpy(),
                         "at": at.astype("datetime64[ns]").to_numpy()})  # fmt: skip


def _week(ns: np.ndarray) -> np.ndarray:
    """Monday-based calendar week number (1970-01-01 was a Thursday)."""
    return (ns // _DAY + 3) // 7


def _month(ns: np.ndarray) -> np.ndarray:
    m = ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return m


def _label(book: Playbook, lang: str) -> str:
    return (book.label_zh if lang == "zh" else book.label_en) or book.name


def _why(book: Playbook, segment: Segment | None, lang: str) -> str:
    if book.trigger is not None:
        what = {"zh": "触发", "en": "trigger"}[lang] + f" {book.trigger}"
        if book.trigger_days:
            what += f" ({book.trigger_days}" + ("天)" if lang == "zh" else " days)")
        elif getattr(book, "trigger_hours", None):
            what += f" ({book.trigger_hours}" + ("小时)" if lang == "zh" else " hours)")
    elif book.segment is not None and segment is not None:
        what = ("人群 " if lang == "zh" else "segment ") + segment.label(lang)
    else:  # a condition: the playbook's own name says who it is for; the condition is in ``source``
        return _label(book, lang)
    return f"{what} → {_label(book, lang)}"


def _offer(book: Playbook) -> str:
    if book.offer_type == "none":
        return ""
    value = f"{book.offer_value:g}"
    return f"{book.offer_type} {value}"


def build_plan(
    profile: pd.DataFrame,
    playbooks: Sequence[Playbook],
    *,
    start: dt_.date,
    days: int = 7,
    cadence: CadenceSettings | None = None,
    members: pd.DataFrame | None = None,
    triggers: pd.DataFrame | None = None,
    activity_hours: pd.DataFrame | None = None,
    unsubscribes: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    timezone: str = "Asia/Shanghai",
    segments: Mapping[str, Segment] | None = None,
) -> Plan:
    """The plan for the ``days`` shop-local days from ``start``.

    Parameters
    ----------
    profile
        One row per user: ``user_id``, ``tier``, ``lifecycle`` and the columns the playbooks'
        conditions use.
    members
        ``playbook_members`` executed (user_id + one boolean column per segment playbook);
        computed here on an in-memory engine when not given.
    triggers
        ``trigger_times`` executed: user_id, playbook, due_at (shop-local), exact.
    activity_hours
        ``activity_hours`` executed: user_id, weekend, best_hour. Faster at scale: columns
        ``best_hour_weekday``/``best_hour_weekend`` on the profile itself (``make_plan`` joins
        them on the engine).
    unsubscribes
        user_id, channel (a channel of "all" or empty means every channel) and optionally
        ``subscribed`` (True = an opt-in, needed for ``cadence.consent_required`` channels;
        False or absent = unsubscribed).
    history
        Earlier contacts (a previous plan's contacts or the touches table): they count towards
        this plan's caps and cooldowns.
    """
    cadence = cadence or CadenceSettings()
    if days < 1:
        raise InputError(f"days {days}: a plan covers at least 1 day", zh=f"天数 {days}：计划至少覆盖 1 天")
    books = list(playbooks)
    names = [b.name for b in books]
    n_books = max(len(books), 1)
    seg_of = [segment_of(b, segments) for b in books]
    start_day = np.datetime64(start, "D").astype(np.int64)
    end_day = start_day + days

    # users: the profile's, plus any trigger user it lacks (a visitor registered yesterday)
    prof = profile[["user_id", "tier", "lifecycle"]]
    prof = prof.assign(user_id=prof["user_id"].astype(str).to_numpy(dtype=object))
    if not pd.Index(prof["user_id"], dtype=object).is_unique:
        raise InputError("the profile has a user_id more than once; a plan needs one row per user",
                         zh="画像中有重复的 user_id；触达计划要求每个用户一行")
    if triggers is not None and len(triggers):
        extra = pd.Index(triggers["user_id"].astype(str).unique()).difference(pd.Index(prof["user_id"]))
        if len(extra):
            prof = pd.concat([prof, pd.DataFrame({"user_id": extra, "tier": "explorer", "lifecycle": "potential"})],
                             ignore_index=True)
    users = pd.Index(prof["user_id"].to_numpy(dtype=object), dtype=object)
    users.is_unique  # noqa: B018 - builds the hash table once; every lookup below reuses it
    tier_code = pd.Categorical(prof["tier"].fillna("explorer"), categories=list(TIERS)).codes.astype(np.int64)
    tier_code[tier_code < 0] = 0  # an unknown tier is treated as the lowest
    dormant = prof["lifecycle"].isin(cadence.dormant_stages).to_numpy()

    # per playbook attributes as arrays indexed by playbook code
    priority = np.array([b.priority for b in books] or [0], dtype=np.int64)
    cooldown = np.array([b.cooldown_days or cadence.cooldown_days for b in books] or [1], dtype=np.int64)
    channels = sorted({str(b.channel) for b in books})
    channel_of = np.array([channels.index(str(b.channel)) for b in books] or [0], dtype=np.int64)
    name_rank = np.argsort(np.argsort(np.array(names or [""], dtype=object)))

    hist = _local_history(history, timezone)
    hist_u = _rows(users, hist["user_id"])
    hist_pb = pd.Index(names).get_indexer(hist["playbook"])
    hist_ns = hist["at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    known = (hist_u >= 0) & (hist_pb >= 0)
    # last contact day per (user, playbook), for the cooldowns
    last_day = pd.Series(hist_ns[known] // _DAY).groupby(hist_u[known] * n_books + hist_pb[known]).max()

    us, pbs, day_parts, exact_parts, st_parts, cool_parts = [], [], [], [], [], []
    # segment playbooks: a contact on the first day the cooldown allows, then every cooldown_days
    if members is None and any(s is not None for s in seg_of):
        members = playbook_members(ibis.memtable(profile), books, defined=segments).to_pandas()
    if members is not None:
        # queries return rows in no set order: contacts come out by user, whatever the engine did
        members = members.sort_values("user_id", kind="stable", ignore_index=True)
        member_rows = _rows(users, members["user_id"].astype(str))
        for code, (book, seg) in enumerate(zip(books, seg_of, strict=True)):
            if seg is not None and book.name in members.columns:
                flag = members[book.name].fillna(False).to_numpy(dtype=bool) & (member_rows >= 0)
                us.append(member_rows[flag])
                pbs.append(np.full(int(flag.sum()), code, dtype=np.int64))
    if us:
        u0, pb0 = np.concatenate(us), np.concatenate(pbs)
        last = _lookup(last_day, u0 * n_books + pb0)
        seen = ~np.isnan(last)
        step = cooldown[pb0]
        first = np.where(seen, np.maximum(start_day, np.nan_to_num(last).astype(np.int64) + step), start_day)
        late = first > start_day
        repeats = np.where(first >= end_day, 1, -((first - end_day) // step))  # ceil((end - first) / step)
        which = np.repeat(np.arange(len(u0)), repeats)
        k = np.arange(len(which)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        day = first[which] + k * step[which]
        us, pbs = [u0[which]], [pb0[which]]
        day_parts.append(day)
        exact_parts.append(np.full(len(which), -1, dtype=np.int64))
        st_parts.append(np.where(k == 0, np.where(day >= end_day, _DROPPED, np.where(late[which], _MOVED, _PLANNED)),
                                 _PLANNED))
        cool_parts.append(np.where((k == 0) & late[which], last[which], np.nan))
    # trigger playbooks: at their time; dropped when the same playbook is still cooling down
    if triggers is not None and len(triggers):
        t = triggers[triggers["playbook"].isin(names)]
        t = t.sort_values(["user_id", "playbook", "due_at"], kind="stable", ignore_index=True)
        code = pd.Index(names).get_indexer(t["playbook"]).astype(np.int64)
        u1 = _rows(users, t["user_id"].astype(str))
        due = pd.to_datetime(t["due_at"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
        exact = t["exact"].to_numpy(dtype=bool) if "exact" in t.columns else np.ones(len(t), dtype=bool)
        last = _lookup(last_day, u1 * n_books + code)
        blocked = ~np.isnan(last) & (np.nan_to_num(last).astype(np.int64) + cooldown[code] > due // _DAY)
        us.append(u1)
        pbs.append(code)
        day_parts.append(due // _DAY)
        exact_parts.append(np.where(exact, due, -1))
        st_parts.append(np.where(blocked, _DROPPED, _PLANNED))
        cool_parts.append(np.where(blocked, last, np.nan))

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    u, pb, day = joined(us, np.int64), joined(pbs, np.int64), joined(day_parts, np.int64)
    exact, st, cool = joined(exact_parts, np.int64), joined(st_parts, np.int64), joined(cool_parts, np.float64)
    drop_code = np.where(st == _DROPPED, 1, 0)  # 1 cooldown, 2 unsubscribed, 3 no consent, 4 cap, 5 holdout

    # send hour: the user's best hour on that day, unless the trigger gives a time
    best_wd, best_we = _best_hours(users, activity_hours, cadence, own=profile)
    weekend = ((day + 3) % 7) >= 5  # day 0 (1970-01-01) was a Thursday: Monday = 0
    hour = np.where(weekend, best_we[u], best_wd[u])
    send = np.where(exact >= 0, exact, day * _DAY + hour * _HOUR)

    # quiet hours: move to their end (the next morning when it is evening)
    qs, qe = cadence.quiet_start_hour, cadence.quiet_end_hour
    h = (send % _DAY) // _HOUR
    quiet = _quiet(h, qs, qe) & (st != _DROPPED)
    morning = (send // _DAY) * _DAY + qe * _HOUR
    send = np.where(quiet, np.where((qs > qe) & (h >= qs), morning + _DAY, morning), send)
    st[quiet] = _MOVED

    # unsubscribes and consent, per channel
    n_ch = max(len(channels), 1)
    ch = channel_of[pb]
    key = u * n_ch + ch
    opted_in = np.zeros(0, dtype=np.int64)
    if unsubscribes is not None and len(unsubscribes):
        un = unsubscribes
        yes = un["subscribed"].fillna(False).astype(bool).to_numpy() if "subscribed" in un.columns \
            else np.zeros(len(un), dtype=bool)
        un_u = _rows(users, un["user_id"].astype(str))
        un_name = un["channel"].fillna("all").astype(str)
        un_ch = pd.Index(channels).get_indexer(un_name)
        every = un_name.isin(["all", "*", ""]).to_numpy() & (un_u >= 0) & ~yes
        one = (un_ch >= 0) & (un_u >= 0)
        gone = (np.isin(key, un_u[one & ~yes] * n_ch + un_ch[one & ~yes]) | np.isin(u, un_u[every])) \
            & (st != _DROPPED)
        st[gone], drop_code[gone] = _DROPPED, 2
        opted_in = un_u[one & yes] * n_ch + un_ch[one & yes]
    need = np.isin(ch, [i for i, c in enumerate(channels) if c in cadence.consent_required])
    no_consent = need & ~np.isin(key, opted_in) & (st != _DROPPED)
    st[no_consent], drop_code[no_consent] = _DROPPED, 3

    # caps: per user and calendar week (month for dormant stages), history included, by priority
    is_month = dormant[u]
    period = np.where(is_month, _month(send) + _MONTHS, _week(send))  # months and weeks never share a key
    caps_by_code = np.array([cadence.weekly_caps.get(t, 0) for t in TIERS], dtype=np.int64)
    cap = np.where(is_month, cadence.dormant_monthly_cap, caps_by_code[tier_code[u]])
    ok = hist_u >= 0
    hist_period = np.where(dormant[hist_u[ok]], _month(hist_ns[ok]) + _MONTHS, _week(hist_ns[ok]))
    used_hist = pd.Series(1, index=hist_u[ok] * _PERIODS + hist_period).groupby(level=0).sum()
    user_period = u * _PERIODS + period
    used = np.nan_to_num(_lookup(used_hist, user_period)).astype(np.int64)
    live = np.flatnonzero(st != _DROPPED)
    ranked = live[np.lexsort((name_rank[pb[live]], send[live], -priority[pb[live]], user_period[live]))]
    keys = user_period[ranked]
    pos = np.arange(len(keys))
    group_start = np.maximum.accumulate(np.where(np.r_[True, keys[1:] != keys[:-1]], pos, 0)) if len(keys) else pos
    over = ranked[used[ranked] + (pos - group_start) >= cap[ranked]]
    st[over], drop_code[over] = _DROPPED, 4

    # experiments: a deterministic arm per user; the holdout arm is not contacted
    experiment = [(b.experiment or b.name) if b.variants else "" for b in books]
    arms: list[str] = [""]
    variant = np.zeros(len(u), dtype=np.int64)  # codes into arms
    for code, book in enumerate(books):
        if not book.variants:
            continue
        rows = np.flatnonzero(pb == code)
        who = np.flatnonzero(np.bincount(u[rows], minlength=len(users)))  # the users, sorted, once each
        drawn = assign(pd.Series(users[who]), experiment[code], book.variants, salt=cadence.salt).to_numpy()
        names_here = list(book.variants)
        offset = len(arms)
        arms += names_here
        arm_code = np.full(len(users), 0, dtype=np.int64)
        arm_code[who] = pd.Index(names_here).get_indexer(drawn) + offset
        variant[rows] = arm_code[u[rows]]
    arm_names = np.array(arms, dtype=object)
    held = (arm_names[variant] == HOLDOUT) & (st != _DROPPED)
    st[held], drop_code[held] = _DROPPED, 5

    reason_code, reason_zh, reason_en = _reasons(
        drop_code, quiet, cool, cooldown[pb], np.where(np.isin(drop_code, (2, 3)), ch, -1), cap, is_month, pb,
        channels=channels, experiment=experiment, quiet_end_hour=qe,
    )
    contacts = _contacts(users, prof, books, seg_of, experiment, u, pb, send, st, arm_names, variant,
                         reason_code, reason_zh, reason_en)
    summary = _summary(contacts)
    fairness = _fairness(prof, books, u, pb, send, st, tier_code, cadence)
    return Plan(contacts=contacts, summary=summary, fairness=fairness, start=start, days=days)


def _rows(users: pd.Index, ids: pd.Series | np.ndarray) -> np.ndarray:
    """Positions of ``ids`` among ``users`` (-1 when absent); the same order costs no lookup."""
    values = ids.to_numpy(dtype=object) if isinstance(ids, pd.Series) else np.asarray(ids, dtype=object)
    if len(values) == len(users) and (values == users.to_numpy()).all():
        return np.arange(len(users), dtype=np.int64)
    return users.get_indexer(values).astype(np.int64)


def _lookup(table: pd.Series, keys: np.ndarray) -> np.ndarray:
    """``table[keys]`` for a Series with a sorted integer index (NaN when absent), by binary search."""
    index = table.index.to_numpy(dtype=np.int64)
    if not len(index):
        return np.full(len(keys), np.nan)
    pos = np.minimum(np.searchsorted(index, keys), len(index) - 1)
    return np.where(index[pos] == keys, table.to_numpy(dtype=np.float64)[pos], np.nan)


def _reasons(drop_code: np.ndarray, quiet: np.ndarray, cool: np.ndarray, cooldown_days: np.ndarray,
             channel: np.ndarray, cap: np.ndarray, is_month: np.ndarray, pb: np.ndarray, *, channels: list[str],
             experiment: list[str], quiet_end_hour: int) -> tuple[pd.Categorical, pd.Categorical, pd.Categorical]:
    """reason_code, reason_zh, reason_en: each distinct reason is written once, then spread
    (categoricals: a million dropped contacts share a handful of texts)."""
    cooled = ~np.isnan(cool)
    has = (drop_code > 0) | quiet | cooled
    rows = np.flatnonzero(has)
    d = drop_code[rows]
    keys = pd.DataFrame({
        "d": d, "q": quiet[rows], "c": np.where(cooled[rows], np.nan_to_num(cool[rows], nan=-1), -2).astype(np.int64),
        "cd": np.where(cooled[rows], cooldown_days[rows], 0), "ch": np.where(np.isin(d, (2, 3)), channel[rows], -1),
        "cap": np.where(d == 4, cap[rows], 0), "m": np.where(d == 4, is_month[rows], False),
        "x": np.where(d == 5, pb[rows], -1),
    })  # fmt: skip
    group = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    firsts = keys.drop_duplicates()
    texts = [_reason_text(r, channels, experiment, quiet_end_hour) for r in firsts.itertuples(index=False)]
    out = []
    for i in range(3):
        values = [""] + [t[i] for t in texts]
        cats, inverse = np.unique(np.array(values, dtype=object), return_inverse=True)
        codes = np.full(len(drop_code), inverse[0], dtype=np.int64)
        codes[rows] = inverse[1:][group]
        out.append(pd.Categorical.from_codes(codes, categories=cats))
    return out[0], out[1], out[2]


def _reason_text(r: Any, channels: list[str], experiment: list[str], qe: int) -> tuple[str, str, str]:
    code_parts, zh_parts, en_parts = [], [], []
    if r.c != -2:
        code_parts.append("cooldown")
        last = (np.datetime64(0, "D") + int(r.c)).astype(str)
        nxt = (np.datetime64(0, "D") + int(r.c) + int(r.cd)).astype(str)
        en_parts.append(f"cooldown: last sent {last}, next from {nxt}")
        zh_parts.append(f"冷却期：上次发送于 {last}，{nxt} 起可再发")
    if r.q:
        code_parts.append("quiet_hours")
        en_parts.append(f"quiet hours, moved to {qe:02d}:00")
        zh_parts.append(f"免打扰时段，顺延至 {qe:02d}:00")
    channel = channels[r.ch] if r.ch >= 0 else ""
    if r.d == 2:
        code_parts.append("unsubscribed")
        en_parts.append(f"unsubscribed from {channel}")
        zh_parts.append(f"已退订{CHANNEL_ZH.get(channel, channel)}")
    elif r.d == 3:
        code_parts.append("no_consent")
        en_parts.append(f"no consent for {channel}")
        zh_parts.append(f"未授权{CHANNEL_ZH.get(channel, channel)}触达")
    elif r.d == 4:
        code_parts.append("cap")
        en_parts.append(f"cap reached: {r.cap}/{r.cap} this {'month' if r.m else 'week'}")
        zh_parts.append(f"已达触达上限：{'本月' if r.m else '本周'} {r.cap}/{r.cap} 次")
    elif r.d == 5:
        code_parts.append("holdout")
        en_parts.append(f"holdout (experiment {experiment[r.x]})")
        zh_parts.append(f"对照组（实验 {experiment[r.x]}），不发送")
    # a dropped contact's code is why it was dropped; a moved one's is why it moved
    code = code_parts[-1] if r.d else "+".join(code_parts)
    return code, "；".join(zh_parts), "; ".join(en_parts)


def _contacts(users, prof, books, seg_of, experiment, u, pb, send, st, arm_names, variant, reason_code, reason_zh,
              reason_en) -> pd.DataFrame:
    """The contacts frame; repeated texts are categoricals (codes into small tables)."""

    def per_book(values: list[Any]) -> pd.Categorical:
        cats = pd.Index(pd.unique(pd.Series(values, dtype=object)))
        return pd.Categorical.from_codes(cats.get_indexer(values)[pb] if len(values) else pb, categories=cats)

    def per_user(column: str, categories: list[str] | None = None) -> pd.Categorical:
        values = pd.Categorical(prof[column].astype(object), categories=categories)
        return pd.Categorical.from_codes(values.codes[u], categories=values.categories)

    arms = pd.Index(pd.unique(pd.Series(arm_names, dtype=object)))
    return pd.DataFrame({
        "user_id": pd.Series(users.to_numpy()[u], dtype=object),
        "tier": per_user("tier", list(TIERS)),
        "lifecycle": per_user("lifecycle"),
        "playbook": per_book([b.name for b in books]),
        "source": per_book([f"trigger:{b.trigger}" if b.trigger else (f"segment:{b.segment}" if b.segment else b.where)
                            for b in books]),
        "why_zh": per_book([_why(b, s, "zh") for b, s in zip(books, seg_of, strict=True)]),
        "why_en": per_book([_why(b, s, "en") for b, s in zip(books, seg_of, strict=True)]),
        "channel": per_book([b.channel for b in books]),
        "template": per_book([b.template for b in books]),
        "offer": per_book([_offer(b) for b in books]),
        "goal": per_book([b.goal for b in books]),
        "priority": np.array([b.priority for b in books] or [0], dtype=np.int64)[pb],
        "send_at": send.astype("datetime64[ns]"),
        "experiment": per_book(experiment),
        "variant": pd.Categorical.from_codes(arms.get_indexer(arm_names)[variant], categories=arms),
        "status": pd.Categorical.from_codes(st, categories=list(_STATUS)),
        "reason_code": reason_code,
        "reason_zh": reason_zh,
        "reason_en": reason_en,
    })  # fmt: skip


def _summary(contacts: pd.DataFrame) -> pd.DataFrame:
    """Contacts by tier, channel, status and reason (the reason's code; empty for planned)."""
    keys = ["tier", "channel", "status", "reason_code"]
    out = contacts.groupby(keys, observed=True).size().rename("contacts").reset_index()
    return out.sort_values(keys, ignore_index=True)


def _fairness(prof: pd.DataFrame, books: Sequence[Playbook], u: np.ndarray, pb: np.ndarray, send: np.ndarray,
              st: np.ndarray, tier_code: np.ndarray, cadence: CadenceSettings) -> pd.DataFrame:
    """Per tier: users, planned contacts, users reached, whether an upgrade playbook has
    candidates in the tier (the top tier has nowhere higher to go), the cap, the most contacts
    one user gets in one calendar week, whether all its contacts carry a discount, and warnings."""
    upgrade = np.array([b.goal == "upgrade" for b in books] or [False])
    discount = np.array([b.offer_type in _DISCOUNTS for b in books] or [False])
    cand_tier = tier_code[u]
    sent = st != _DROPPED
    per_user_week = pd.Series(u[sent] * _PERIODS + _week(send[sent])).value_counts()
    week_tier = tier_code[per_user_week.index.to_numpy(dtype=np.int64) // _PERIODS]
    most_of = per_user_week.groupby(week_tier).max() if len(per_user_week) else pd.Series(dtype=np.int64)
    users_per_tier = np.bincount(tier_code, minlength=len(TIERS))
    reached = np.bincount(u[sent], minlength=len(tier_code)) > 0
    reached_per_tier = np.bincount(tier_code[reached], minlength=len(TIERS))
    rows = []
    for i, t in enumerate(TIERS):
        in_tier = cand_tier == i
        got = sent & in_tier
        planned = int(got.sum())
        top = i == len(TIERS) - 1
        upward = None if top else bool(upgrade[pb[in_tier]].any())
        only_discounts = bool(planned) and bool(discount[pb[got]].all())
        cap = cadence.weekly_caps.get(t, 0)
        most = int(most_of.get(i, 0))
        higher = [cadence.weekly_caps.get(x, 0) for x in TIERS[i + 1:]]
        n = int(users_per_tier[i])
        name_en, name_zh = _TIER_EN[t], _TIER_ZH[t]
        en, zh = [], []
        if n and upward is False:
            en.append(f"{name_en}: no upgrade playbook reaches this tier (no upward path)")
            zh.append(f"{name_zh}：没有以升级为目标的策略覆盖该层（缺少上升通道）")
        if n and planned == 0:
            en.append(f"{name_en}: {n:,} users get no contact at all")
            zh.append(f"{name_zh}：{n:,} 位用户没有任何触达")
        if only_discounts:
            en.append(f"{name_en}: receives only discounts")
            zh.append(f"{name_zh}：只收到折扣类触达")
        if higher and most > min(higher):
            en.append(f"{name_en}: a user gets {most} contacts in a week, more than a higher tier's cap ({min(higher)})")
            zh.append(f"{name_zh}：有用户一周收到 {most} 次触达，超过更高层级的上限（{min(higher)} 次）")
        rows.append({"tier": t, "users": n, "planned": planned, "users_reached": int(reached_per_tier[i]),
                     "upward_path": upward, "weekly_cap": cap, "max_per_user_week": most,
                     "capped": most <= max(cap, cadence.dormant_monthly_cap), "only_discounts": only_discounts,
                     "warning_zh": "；".join(zh), "warning_en": "; ".join(en)})  # fmt: skip
    return pd.DataFrame(rows)


def make_plan(*, users: ir.Table, orders: ir.Table, events: ir.Table, settings: Settings, engine: str,
              execute: Any, profile: ir.Table, start: dt_.date, days: int = 7, touches: ir.Table | None = None,
              unsubscribes: pd.DataFrame | None = None, order_items: ir.Table | None = None, **_: Any) -> Plan:
    """The plan from a workspace's tables: the profile of the day before ``start``, its triggers,
    activity hours and the touches already made (history), under ``settings.cadence``.
    ``order_items`` feeds purchase_unused and membership_expiring (without it they stay silent)."""
    from userstrata.features._time import Clock  # noqa: PLC0415
    from userstrata.measure.alerts import memberships_or_none  # noqa: PLC0415

    clock = Clock(settings.timezone, engine)
    cadence = settings.cadence
    books = playbooks_from(settings)
    defined = defined_segments(settings.segments)
    # one query: the users with their tier, stage, segment flags and best hours, so that rows
    # line up without looking user ids up in Python
    flags = playbook_members(profile, books, defined=defined)
    hours = activity_hours(events, orders, clock, until=start - dt_.timedelta(days=1),
                           quiet_start_hour=cadence.quiet_start_hour, quiet_end_hour=cadence.quiet_end_hour)
    weekday = hours.filter(~hours.weekend).select("user_id", best_hour_weekday=hours.best_hour)
    weekend = hours.filter(hours.weekend).select("user_id", best_hour_weekend=hours.best_hour)
    query = profile.select("user_id", "tier", "lifecycle").join(flags, "user_id")
    query = query.left_join(weekday, "user_id").drop("user_id_right")
    query = query.left_join(weekend, "user_id").drop("user_id_right")
    frame = execute(query)
    memberships = None
    if order_items is not None and any(b.trigger == "membership_expiring" for b in books):
        memberships = memberships_or_none(orders, order_items, as_of=start - dt_.timedelta(days=1),
                                          settings=settings, engine=engine, execute=execute)
    trig = execute(trigger_times(users, orders, events, books, start=start, days=days, clock=clock,
                                 cart_days=cadence.cart_days, order_items=order_items, memberships=memberships,
                                 alerts=settings.alerts))
    history = None
    if touches is not None:
        # far enough back for this month's caps and the longest cooldown (UTC vs local: a day spare)
        back = max([31, cadence.cooldown_days] + [b.cooldown_days or 0 for b in books]) + 1
        since = dt_.datetime.combine(start - dt_.timedelta(days=back), dt_.time())
        history = execute(touches.filter(touches.ts >= since))
    return build_plan(frame, books, start=start, days=days, cadence=cadence, members=frame, triggers=trig,
                      unsubscribes=unsubscribes, history=history, timezone=settings.timezone,
                      segments=defined)


def channel_lists(contacts: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The contacts to send (planned or moved), one list per channel with only the columns its tool
    needs (``CHANNEL_LIST_COLUMNS`` and any recommended ``item_<k>``), in send order."""
    sendable = contacts[contacts["status"].astype(str).isin(("planned", "moved"))]
    items = [c for c in contacts.columns if str(c).startswith("item_")]
    columns = [c for c in (*CHANNEL_LIST_COLUMNS, *items) if c in contacts.columns]
    return {str(channel): frame.sort_values(["send_at", "user_id"], kind="stable")[columns].reset_index(drop=True)
            for channel, frame in sendable.groupby(sendable["channel"].astype(str), sort=True)}
