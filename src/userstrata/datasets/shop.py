"""A seeded simulator of a Chinese virtual-goods shop (game items, courses, memberships).

Users are drawn from archetypes with their own purchase and dropout dynamics, so that a
profile taken on ``end`` shows every lifecycle stage and value tier:

- ``browser``: registers and browses, never buys (a *potential* user);
- ``one_time``: one purchase, then drifts away;
- ``casual``, ``whale``, ``co_builder``: BG/NBD-like buyers: a purchase rate drawn from a
  Gamma distribution, a dropout chance after every purchase drawn from a Beta distribution
  (Fader, Hardie & Lee 2005) and, on top, a wall-clock hazard (exponential lifetime);
  whales buy often and dear, co-builders share, review and post a lot;
- ``returner``: active for a while, silent for more than a month, then back.

Anonymous visitors (events with an ``anonymous_id`` and no ``user_id``) come on top.
Acquisitions spread over the ``days`` window with a growing shop (more recent ones are more
likely), so there are new and growth-stage users on ``end``.

Everything is generated chunk by chunk of ``chunk_users`` users with vectorised numpy (no
Python loop per user, order or event) and written as it goes, one Parquet row group (or a
CSV append) per chunk, so memory stays bounded by the chunk. Chunk ``k`` draws from
``np.random.default_rng([seed, k])``: the same ``seed`` and ``chunk_users`` give identical
files; a different ``chunk_users`` gives a different (equally valid) shop.

Timestamps are generated in Shanghai local time with evening peaks and quiet nights, in
whole seconds, and written so that no reader has to guess their zone (a timestamp without
an offset is read as shop-local time by ``ingest``): Parquet holds UTC instants
(``timestamp[us, tz=UTC]``, microseconds so that Spark reads them too), CSV holds the
Shanghai wall-clock time with its offset, ``2024-06-30 20:15:03+08:00``.

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way:
an alternative to the Pareto/NBD model. Marketing Science 24(2), 275-284.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from userstrata.errors import InputError
from userstrata.schema import EVENTS, IDENTITIES, ORDER_ITEMS, ORDERS, TOUCHES, USERS

ARCHETYPES = ("browser", "one_time", "casual", "whale", "co_builder", "returner")
TABLES = ("users", "orders", "order_items", "events", "touches", "truth")

_UTC_TS = pa.timestamp("us", tz="UTC")  # an instant: ingest converts it, never guesses a zone


def _with_utc_instants(schema: pa.Schema) -> pa.Schema:
    """The canonical schema with its (naive UTC) timestamp columns marked as UTC instants."""
    return pa.schema([pa.field(f.name, _UTC_TS) if pa.types.is_timestamp(f.type) else f for f in schema])


TRUTH_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("archetype", pa.string()),
        ("acquired_at", _UTC_TS),
        ("churned_at", _UTC_TS),  # the last activity of a user who dropped out
    ]
)
# optional canonical columns with values only with ``whole_user=True`` (discounts, brands); a
# chunk is drawn without them and the shop without the whole user writes them empty (NULL)
_WHOLE_USER_COLUMNS = {"orders": ("discount_amount", "coupon_id"), "order_items": ("list_price", "brand")}


def _without(schema: pa.Schema, names: tuple[str, ...]) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in names])


_ARROW_SCHEMAS = {
    "users": _with_utc_instants(USERS.schema.to_pyarrow()),
    "orders": _without(_with_utc_instants(ORDERS.schema.to_pyarrow()), _WHOLE_USER_COLUMNS["orders"]),
    "order_items": _without(ORDER_ITEMS.schema.to_pyarrow(), _WHOLE_USER_COLUMNS["order_items"]),
    "events": _with_utc_instants(EVENTS.schema.to_pyarrow()),
    "touches": _with_utc_instants(TOUCHES.schema.to_pyarrow()),
    "truth": TRUTH_SCHEMA,
}

# Asia/Shanghai has been UTC+8 without daylight saving since 1991.
_UTC_OFFSET_S = 8 * 3600
_US = 1_000_000
_DAY_S = 86_400

# Local hour-of-day weights: evening peak around 20-22h, few at 3-6h.
_ACTIVITY_HOURS = np.array(
    [3.0, 1.8, 1.0, 0.5, 0.35, 0.4, 0.9, 2.0, 3.2, 4.2, 4.8, 5.2,
     6.2, 5.6, 4.8, 4.8, 5.0, 5.6, 6.4, 7.6, 9.2, 9.8, 8.4, 5.6]
)  # fmt: skip
# Messages mostly in office hours and early evening; a few fall in the 23:00-08:00 quiet
# hours so that cadence checks have something to find.
_TOUCH_HOURS = np.array(
    [0.05, 0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.1, 1.0, 3.0, 5.0, 4.0,
     5.0, 3.0, 2.5, 2.5, 2.5, 3.0, 5.0, 6.0, 5.5, 3.5, 1.5, 0.1]
)  # fmt: skip


@dataclass(frozen=True)
class _Archetype:
    share: float
    purchase_rate: float  # mean repeat purchases per active day (Gamma across users)
    rate_shape: float
    dropout: tuple[float, float] | None  # Beta(a, b): P(drop out after each purchase)
    lifetime_days: float  # mean of the wall-clock (exponential) lifetime
    events_per_day: float  # relative activity per active day
    event_mix: tuple[float, ...]  # weights over EVENT_TYPES
    category_mix: tuple[float, ...]  # weights over CATEGORIES
    price_tilt: float  # sku weight ~ price**tilt within a category
    touches_per_week: float


EVENT_TYPES = (
    "page_view", "search", "add_to_cart", "checkin", "share", "review", "post", "use", "login",
)  # fmt: skip
CATEGORIES = ("游戏道具", "点券", "皮肤", "礼包", "会员", "课程", "小程序")
_ORDINARY_EVENTS = (35, 10, 6, 10, 3, 2, 1, 18, 15)
_EVENTS_PER_SESSION = 4.0  # mean events in one visit
_ARCHETYPES: dict[str, _Archetype] = {
    "browser": _Archetype(0.18, 0, 1, None, 40, 0.6, (45, 15, 6, 8, 1, 0.3, 0.3, 4, 20),
                          (1,) * 7, 0, 0.3),
    "one_time": _Archetype(0.22, 0, 1, None, 25, 0.4, (40, 10, 5, 8, 1.5, 2, 0.5, 13, 20),
                           (15, 25, 5, 35, 10, 5, 5), -0.6, 0.3),
    "casual": _Archetype(0.33, 1 / 6, 1.5, (1.3, 18), 320, 0.5, _ORDINARY_EVENTS,
                         (20, 25, 15, 10, 15, 5, 10), -0.5, 0.4),
    "whale": _Archetype(0.04, 0.6, 3, (1, 120), 600, 1.5, (30, 8, 8, 12, 4, 3, 2, 20, 13),
                        (15, 35, 20, 20, 5, 5, 0), 0.4, 0.8),
    "co_builder": _Archetype(0.08, 0.3, 3, (1, 60), 700, 2.0,
                             (22, 6, 5, 10, 18, 12, 12, 8, 7), (10, 15, 15, 5, 25, 20, 10),
                             -0.1, 0.6),
    "returner": _Archetype(0.15, 0.1, 2, None, 90, 0.6, _ORDINARY_EVENTS,
                           (20, 25, 15, 10, 15, 5, 10), -0.4, 0.4),
}  # fmt: skip
_BUYS_REPEATEDLY = np.array([a.dropout is not None for a in _ARCHETYPES.values()])

# (category, sku, price in CNY). Game top-up tiers 6/30/68/128/328/648, courses 99-1999
# (and a free trial lesson), memberships 15-30 a month.
_CATALOG: tuple[tuple[str, str, float], ...] = (
    ("游戏道具", "item-stamina", 6.0), ("游戏道具", "item-revive", 12.0),
    ("游戏道具", "item-exp-card", 18.0), ("游戏道具", "item-gacha-10", 30.0),
    ("游戏道具", "item-pet", 68.0), ("游戏道具", "item-mount", 98.0),
    ("点券", "coupon-6", 6.0), ("点券", "coupon-30", 30.0), ("点券", "coupon-68", 68.0),
    ("点券", "coupon-128", 128.0), ("点券", "coupon-328", 328.0), ("点券", "coupon-648", 648.0),
    ("皮肤", "skin-basic", 28.0), ("皮肤", "skin-rare", 68.0), ("皮肤", "skin-epic", 128.0),
    ("皮肤", "skin-legend", 288.0), ("皮肤", "skin-collab", 388.0),
    ("礼包", "pack-newbie", 6.0), ("礼包", "pack-weekly", 30.0), ("礼包", "pack-monthly", 68.0),
    ("礼包", "pack-growth", 128.0), ("礼包", "pack-festival", 328.0),
    ("礼包", "pack-supreme", 648.0),
    ("会员", "vip-month", 15.0), ("会员", "vip-month-auto", 18.0), ("会员", "svip-month", 25.0),
    ("会员", "svip-month-plus", 30.0), ("会员", "vip-quarter", 68.0), ("会员", "vip-year", 198.0),
    ("课程", "course-trial", 0.0), ("课程", "course-intro", 99.0), ("课程", "course-python", 299.0),
    ("课程", "course-design", 499.0), ("课程", "course-data", 999.0),
    ("课程", "course-bootcamp", 1999.0),
    ("小程序", "mp-unlock", 1.0), ("小程序", "mp-tool", 3.0), ("小程序", "mp-theme", 9.9),
)  # fmt: skip
_SKU_CATEGORY = np.array([CATEGORIES.index(c) for c, _, _ in _CATALOG])
_SKU_PRICE = np.array([p for _, _, p in _CATALOG])
_SKU_NAMES = pa.array([s for _, s, _ in _CATALOG], pa.string())
_CATEGORY_NAMES = pa.array(CATEGORIES, pa.string())
_STACKABLE = np.isin(_SKU_CATEGORY, [CATEGORIES.index("游戏道具"), CATEGORIES.index("点券")])

ORDER_STATUSES = ("paid", "refunded", "partially_refunded", "cancelled")
ACQUISITION_CHANNELS = (
    "organic", "wechat_ad", "douyin_ad", "referral", "app_store", "mini_program",
)  # fmt: skip
_CHANNEL_P = np.array([0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
TOUCH_CHANNELS = ("sms", "wechat", "app_push", "email")
_TOUCH_CHANNEL_P = np.array([0.25, 0.35, 0.3, 0.1])
_OPEN_P = np.array([0.12, 0.3, 0.15, 0.08])  # by touch channel, while the user is active
VARIANTS = ("A", "B", "holdout")
OUTCOMES = ("sent", "opened", "clicked", "converted")
CAMPAIGN_TYPES = ("welcome", "winback", "vip_care", "new_course", "festival")

_EVENT_PROPERTIES: dict[str, list[dict]] = {
    "page_view": [{"page": p} for p in ("home", "store", "item", "course", "activity", "community", "me")],
    "search": [{"query": q} for q in ("皮肤", "648", "会员", "Python课程", "新手礼包", "点券", "攻略")],
    "add_to_cart": [{"category": c} for c in CATEGORIES],
    "checkin": [{"streak": s} for s in range(1, 8)],
    "share": [{"target": t} for t in ("wechat_friend", "moments", "qq", "weibo")],
    "review": [{"rating": r} for r in (5, 5, 5, 4, 4, 3, 2, 1)],
    "post": [{"board": b} for b in ("攻略", "晒单", "组队", "问答")],
    "use": [{"feature": f} for f in ("play", "course_video", "membership_perk", "mini_program")],
    "login": [{"method": m} for m in ("wechat", "wechat", "phone", "apple", "qq")],
}  # fmt: skip
_PROP_STRINGS = [
    json.dumps(p, ensure_ascii=False, separators=(",", ":"))
    for e in EVENT_TYPES
    for p in _EVENT_PROPERTIES[e]
]
_PROP_DICTIONARY = pa.array(_PROP_STRINGS, pa.string())
_PROP_COUNT = np.array([len(_EVENT_PROPERTIES[e]) for e in EVENT_TYPES])
_PROP_OFFSET = np.concatenate([[0], np.cumsum(_PROP_COUNT)[:-1]])

_ATTRIBUTE_STRINGS = [
    json.dumps(
        {"city_tier": c, "device": d, "gender": g, "age_band": a},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    for c in (1, 2, 3, 4, 5)
    for d in ("android", "ios")
    for g in ("f", "m", "unknown")
    for a in ("<18", "18-24", "25-34", "35-44", "45+")
]
_ATTRIBUTES = pa.array(_ATTRIBUTE_STRINGS, pa.string())
_ATTRIBUTE_P = (
    np.array([0.15, 0.2, 0.25, 0.22, 0.18])[:, None, None, None]
    * np.array([0.72, 0.28])[None, :, None, None]
    * np.array([0.45, 0.45, 0.1])[None, None, :, None]
    * np.array([0.08, 0.35, 0.32, 0.17, 0.08])[None, None, None, :]
).ravel()


def _cdf(weights) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype="float64"))
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn from a discrete distribution given by its cdf."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _draw_by_group(rng, group: np.ndarray, cdfs: np.ndarray) -> np.ndarray:
    """One draw per row from ``cdfs[group[row]]`` (a loop over the few groups, not rows)."""
    out = np.zeros(len(group), dtype="int64")
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        out[rows] = _draw(rng, cdfs[g], len(rows))
    return out


_HOUR_CDF = _cdf(_ACTIVITY_HOURS)
_TOUCH_HOUR_CDF = _cdf(_TOUCH_HOURS)
_EVENT_CDFS = np.array([_cdf(a.event_mix) for a in _ARCHETYPES.values()])


def _sku_cdfs() -> np.ndarray:
    rows = []
    for a in _ARCHETYPES.values():
        cat_p = np.asarray(a.category_mix, dtype="float64") / sum(a.category_mix)
        # within a category: cheap items popular for most, dear ones for whales
        w = np.maximum(_SKU_PRICE, 3.0) ** a.price_tilt
        w = w / np.bincount(_SKU_CATEGORY, weights=w)[_SKU_CATEGORY] * cat_p[_SKU_CATEGORY]
        rows.append(_cdf(w))
    return np.array(rows)


_SKU_CDFS = _sku_cdfs()


def _place_in_day(rng, t, lo, hi, hour_cdf) -> np.ndarray:
    """Keep each time's local day but draw its hour from ``hour_cdf``, staying in [lo, hi].

    Times are float days since 1970-01-01 local time; a draw that would leave the row's
    window is redrawn uniformly in the part of the day inside the window.
    """
    day = np.floor(t)
    hour = _draw(rng, hour_cdf, len(t))
    new = day + (hour + rng.random(len(t))) / 24.0
    below = np.flatnonzero(new < lo)
    top = np.minimum(day[below] + 1.0, hi[below])
    new[below] = lo[below] + rng.random(len(below)) * (top - lo[below])
    above = np.flatnonzero(new > hi)
    bottom = np.maximum(day[above], lo[above])
    new[above] = bottom + rng.random(len(above)) * (hi[above] - bottom)
    return new


def _poisson_times(rng, rate, start, stop):
    """A Poisson process per row on [start, stop]: (row index, time) sorted by row then time."""
    counts = rng.poisson(rate * np.maximum(stop - start, 0.0))
    owner = np.repeat(np.arange(len(rate)), counts)
    t = start[owner] + rng.random(len(owner)) * (stop - start)[owner]
    order = np.lexsort((t, owner))
    return owner[order], t[order], counts


def _rank_in_group(counts: np.ndarray) -> np.ndarray:
    """0-based position of each row within its (contiguous) group, given group sizes."""
    starts = np.cumsum(counts) - counts
    return np.arange(counts.sum()) - np.repeat(starts, counts)


def _to_utc_us(t_local_days: np.ndarray) -> np.ndarray:
    """Float local days since the epoch -> UTC microseconds since the epoch, whole seconds."""
    return (np.round(t_local_days * _DAY_S).astype("int64") - _UTC_OFFSET_S) * _US


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _labels(dictionary: pa.Array, codes: np.ndarray) -> pa.Array:
    codes = pa.array(codes, pa.int32())
    return pa.DictionaryArray.from_arrays(codes, dictionary).dictionary_decode()


_STRINGS = {
    name: pa.array(values, pa.string())
    for name, values in {
        "archetypes": ARCHETYPES,
        "events": EVENT_TYPES,
        "statuses": ORDER_STATUSES,
        "acq_channels": ACQUISITION_CHANNELS,
        "touch_channels": TOUCH_CHANNELS,
        "variants": VARIANTS,
        "outcomes": OUTCOMES,
    }.items()
}


@dataclass
class _Counters:
    """Running id counters, so ids are unique across chunks (and follow the write order)."""

    users: int = 0
    anonymous: int = 0
    orders: int = 0
    events: int = 0
    sessions: int = 0
    touches: int = 0


def _simulate_chunk(
    rng: np.random.Generator,
    n: int,
    ids: _Counters,
    *,
    horizon: float,
    days: int,
    events_per_user: float,
    first_month: np.datetime64,
    campaign_names: pa.Array,
) -> dict[str, pa.Table]:
    specs = list(_ARCHETYPES.values())
    arch = _draw(rng, _cdf([a.share for a in specs]), n)
    returner = arch == ARCHETYPES.index("returner")
    buyer = arch != ARCHETYPES.index("browser")

    # --- acquisition: density falling linearly with age (a growing shop) ---------------
    min_age = np.where(returner, min(150.0, 0.5 * days), 0.0)
    age = min_age + (days - min_age) * (1.0 - np.sqrt(rng.random(n)))
    window_lo, window_hi = np.full(n, horizon - days), np.full(n, horizon - 1e-4)
    t0 = _place_in_day(rng, horizon - age, window_lo, window_hi, _HOUR_CDF)

    # --- per-user dynamics --------------------------------------------------------------
    rate_mean = np.array([a.purchase_rate for a in specs])[arch]
    shape = np.array([a.rate_shape for a in specs])[arch]
    rate = rng.gamma(shape, 1.0, n) * rate_mean / shape
    drop_a = np.array([(a.dropout or (1, 1))[0] for a in specs])[arch]
    drop_b = np.array([(a.dropout or (1, 1))[1] for a in specs])[arch]
    purchases_until_dropout = rng.geometric(rng.beta(drop_a, drop_b))  # incl. the first
    lifetime = rng.exponential(np.array([a.lifetime_days for a in specs])[arch])

    # window 1 from acquisition; returners get a silent gap and a second window
    stop1 = np.minimum(t0 + lifetime, horizon)
    span1 = rng.uniform(14.0, np.maximum(np.minimum(90.0, age - 60.0), 14.5))
    stop1 = np.where(returner, t0 + span1, stop1)
    back_now = rng.random(n) < 0.6  # most returners are back within the last 25 days
    earliest_back = stop1 + 35.0
    comeback = np.where(
        back_now,
        horizon - rng.uniform(0.5, 25.0, n),
        earliest_back + rng.random(n) * np.maximum(horizon - 1.0 - earliest_back, 0.0),
    )
    # a short history (small ``days``) may leave no room for a month of silence
    comeback = np.maximum(comeback, earliest_back)
    second = returner & (comeback < horizon - 1.0 / 24)
    start2 = np.where(second, comeback, horizon)
    stop2 = np.where(second, np.minimum(comeback + rng.exponential(90.0, n), horizon), horizon)

    # --- orders: first purchase at acquisition (and at comeback), then Poisson repeats ----
    repeats_rate = np.where(_BUYS_REPEATEDLY[arch] | returner, rate, 0.0)
    o1_user, o1_t, o1_counts = _poisson_times(rng, repeats_rate, t0, stop1)
    # BG/NBD dropout: after each purchase the user leaves with probability p
    keep_repeats = np.where(_BUYS_REPEATEDLY[arch], purchases_until_dropout - 1, o1_counts)
    kept = _rank_in_group(o1_counts) < keep_repeats[o1_user]
    truncated = o1_counts > keep_repeats
    last_kept = t0.copy()
    k_last = np.flatnonzero(kept & (_rank_in_group(o1_counts) == keep_repeats[o1_user] - 1))
    last_kept[o1_user[k_last]] = o1_t[k_last]
    o1_user, o1_t = o1_user[kept], o1_t[kept]
    # after the last purchase a dropped user lingers a few days before going silent
    stop1 = np.where(truncated, np.minimum(last_kept + rng.exponential(4.0, n), stop1), stop1)
    dropped = np.where(second, stop2 < horizon, stop1 < horizon)

    o2_user, o2_t, _ = _poisson_times(rng, np.where(second, rate, 0.0), start2, stop2)
    first_users = np.concatenate([np.flatnonzero(buyer), np.flatnonzero(second)])
    first_t = np.concatenate([t0[buyer], start2[second]])
    first_t = first_t + rng.uniform(1.0, 20.0, len(first_t)) / 1440.0  # after registering
    in_second = np.concatenate([
        np.zeros(buyer.sum(), bool), np.ones(second.sum(), bool),
        np.zeros(len(o1_user), bool), np.ones(len(o2_user), bool),
    ])  # fmt: skip
    o_user = np.concatenate([first_users, o1_user, o2_user])
    o_t = np.concatenate([first_t, o1_t, o2_t])
    lo = np.where(in_second, start2[o_user], t0[o_user])
    hi = np.maximum(np.where(in_second, stop2[o_user], stop1[o_user]), o_t)
    repeat_rows = np.arange(len(o_user)) >= len(first_users)
    o_t = np.where(repeat_rows, _place_in_day(rng, o_t, lo, hi, _HOUR_CDF), o_t)
    o_t = np.minimum(o_t, horizon - 1.0 / _DAY_S)
    order = np.lexsort((o_t, o_user))
    o_user, o_t = o_user[order], o_t[order]
    n_orders = len(o_user)
    o_ts = _to_utc_us(o_t)
    horizon_us = _to_utc_us(np.array([horizon]))[0] - _US  # the last second of ``end``

    # --- order items, amounts, statuses, refunds ----------------------------------------
    n_items = 1 + (rng.random(n_orders) < 0.25) + (rng.random(n_orders) < 0.08)
    item_order = np.repeat(np.arange(n_orders), n_items)
    item_sku = _draw_by_group(rng, arch[o_user][item_order], _SKU_CDFS)
    key, quantity = np.unique(item_order * len(_CATALOG) + item_sku, return_counts=True)
    item_order, item_sku = key // len(_CATALOG), key % len(_CATALOG)
    stack = _STACKABLE[item_sku] & (rng.random(len(key)) < 0.15)
    quantity = quantity + np.where(stack, rng.geometric(0.5, len(key)), 0)
    price = _SKU_PRICE[item_sku]
    amount = np.round(np.bincount(item_order, weights=quantity * price, minlength=n_orders), 2)

    u = rng.random(n_orders)
    status = np.zeros(n_orders, dtype="int64")  # paid
    refundable = amount > 0
    status[refundable & (u < 0.02)] = 1  # refunded in full
    status[refundable & (u >= 0.02) & (u < 0.04)] = 2  # partially refunded
    status[(u >= 0.04) & (u < 0.055)] = 3  # cancelled
    refund = np.where(status == 1, amount, 0.0)
    partial = np.round(amount * rng.uniform(0.2, 0.8, n_orders), 2)
    refund = np.where(status == 2, np.clip(partial, 0.01, amount), refund)
    delay_us = ((10 * 60 + rng.exponential(2.0 * _DAY_S, n_orders)) * _US).astype("int64")
    refunded_at = np.maximum(np.minimum(o_ts + delay_us // _US * _US, horizon_us), o_ts)
    refunded_mask = ~np.isin(status, [1, 2])

    # --- events -------------------------------------------------------------------------
    ev_rate = np.array([a.events_per_day for a in specs])[arch] * rng.gamma(2.0, 0.5, n)
    width = np.maximum(stop1 - t0, 0) + (stop2 - start2)
    funnel_view = rng.random(n_orders) < 0.6
    funnel_cart = rng.random(n_orders) < 0.4
    fixed = n + funnel_view.sum() + funnel_cart.sum()
    budget = max(events_per_user * n - fixed, 0.05 * events_per_user * n)
    # visits (sessions) arrive as a Poisson process; each holds a few events a minute or
    # two apart, so that sessions look like sessions
    scale = budget / _EVENTS_PER_SESSION / max(float(np.sum(ev_rate * width)), 1e-9)
    s1_user, s1_t, _ = _poisson_times(rng, ev_rate * scale, t0, stop1)
    s2_user, s2_t, _ = _poisson_times(rng, np.where(second, ev_rate * scale, 0), start2, stop2)
    s_user = np.concatenate([s1_user, s2_user])
    lo = np.concatenate([t0[s1_user], start2[s2_user]])
    hi = np.concatenate([stop1[s1_user], stop2[s2_user]])
    s_t = _place_in_day(rng, np.concatenate([s1_t, s2_t]), lo, hi, _HOUR_CDF)
    per_session = 1 + rng.poisson(_EVENTS_PER_SESSION - 1, len(s_user))
    e_user = np.repeat(s_user, per_session)
    step = rng.exponential(1.5 / 1440, len(e_user))  # ~1.5 minutes between events
    rank = _rank_in_group(per_session)
    step[rank == 0] = 0.0
    elapsed = np.cumsum(step)
    elapsed -= np.repeat(elapsed[np.cumsum(per_session) - per_session], per_session)
    session_end = np.repeat(np.maximum(hi, s_t), per_session)
    e_t = np.minimum(np.repeat(s_t, per_session) + elapsed, session_end)
    e_type = _draw_by_group(rng, arch[e_user], _EVENT_CDFS)
    opens_with_login = (rank == 0) & (rng.random(len(e_user)) < 0.35)
    e_type[opens_with_login] = EVENT_TYPES.index("login")
    # the visit that registered the user, and the page views / carts just before an order
    view_of, cart_of = np.flatnonzero(funnel_view), np.flatnonzero(funnel_cart)
    e_user = np.concatenate([np.arange(n), o_user[view_of], o_user[cart_of], e_user])
    e_t = np.concatenate([
        t0,
        np.maximum(o_t[view_of] - rng.uniform(2, 25, len(view_of)) / 1440, t0[o_user[view_of]]),
        np.maximum(o_t[cart_of] - rng.uniform(0.5, 2, len(cart_of)) / 1440, t0[o_user[cart_of]]),
        e_t,
    ])  # fmt: skip
    e_type = np.concatenate([
        np.full(n, EVENT_TYPES.index("login")),
        np.full(len(view_of), EVENT_TYPES.index("page_view")),
        np.full(len(cart_of), EVENT_TYPES.index("add_to_cart")),
        e_type,
    ])  # fmt: skip
    # properties: the funnel's page is the item page and its cart names the order's
    # category (of its first item); the others are drawn below
    first_item = np.searchsorted(item_order, cart_of)
    e_prop = np.concatenate([
        np.full(n, -1),
        np.full(len(view_of), _PROP_OFFSET[EVENT_TYPES.index("page_view")] + 2),  # "item"
        _PROP_OFFSET[EVENT_TYPES.index("add_to_cart")] + _SKU_CATEGORY[item_sku[first_item]],
        np.full(len(e_user) - n - len(view_of) - len(cart_of), -1),
    ])  # fmt: skip

    # anonymous visitors: a few page views and searches, never registered
    n_anon = int(round(0.2 * n))
    a_start = horizon - days * rng.random(n_anon)
    a_stop = np.minimum(a_start + rng.exponential(2.0, n_anon), horizon)
    a_user, a_t, a_counts = _poisson_times(rng, np.full(n_anon, 2.0), a_start, a_stop)
    a_user = np.concatenate([np.arange(n_anon), a_user])
    a_t = np.concatenate([a_start, a_t])
    a_t = _place_in_day(rng, a_t, a_start[a_user], a_stop[a_user], _HOUR_CDF)
    a_type = _draw(rng, _cdf([6, 3, 1, 0, 0, 0, 0, 0, 0]), len(a_user))

    owner = np.concatenate([e_user, n + a_user])  # anonymous visitors after the users
    ev_t = np.minimum(np.concatenate([e_t, a_t]), horizon - 1.0 / _DAY_S)
    ev_ts = _to_utc_us(ev_t)
    ev_type = np.concatenate([e_type, a_type])
    ev_prop = np.concatenate([e_prop, np.full(len(a_user), -1)])
    order = np.lexsort((ev_ts, owner))
    owner, ev_ts, ev_type, ev_prop = owner[order], ev_ts[order], ev_type[order], ev_prop[order]
    n_events = len(owner)
    # sessions: a new one after 30 minutes of silence
    new_session = np.ones(n_events, dtype=bool)
    new_session[1:] = (owner[1:] != owner[:-1]) | (np.diff(ev_ts) > 30 * 60 * _US)
    session_no = ids.sessions + np.cumsum(new_session) - 1
    drawn = _PROP_OFFSET[ev_type] + (rng.random(n_events) * _PROP_COUNT[ev_type]).astype("int64")
    prop = np.where(ev_prop >= 0, ev_prop, drawn)

    # --- the truth: churned_at is the last activity of a user who dropped out ----------
    last_us = np.full(n, np.iinfo("int64").min)
    np.maximum.at(last_us, o_user, o_ts)
    registered = owner < n
    np.maximum.at(last_us, owner[registered], ev_ts[registered])
    acquired_us = _to_utc_us(t0)

    # --- touches: campaign messages, and the ones that preceded an order ----------------
    touch_rate = np.array([a.touches_per_week for a in specs])[arch] / 7.0
    t_user, t_t, _ = _poisson_times(rng, touch_rate, t0, np.full(n, horizon))
    t_t = _place_in_day(rng, t_t, t0[t_user], np.full(len(t_user), horizon - 1e-4), _TOUCH_HOUR_CDF)
    active = ((t_t >= t0[t_user]) & (t_t <= stop1[t_user])) | (
        (t_t >= start2[t_user]) & (t_t <= stop2[t_user])
    )
    # silent users are messaged half as often (win-back campaigns only)
    sent = active | (rng.random(len(t_user)) < 0.5)
    t_user, t_t, active = t_user[sent], t_t[sent], active[sent]
    t_channel = _draw(rng, _cdf(_TOUCH_CHANNEL_P), len(t_user))
    t_variant = _draw(rng, _cdf([0.45, 0.45, 0.10]), len(t_user))
    opened = rng.random(len(t_user)) < _OPEN_P[t_channel] * np.where(active, 1.0, 0.3)
    clicked = opened & (rng.random(len(t_user)) < 0.25)
    t_outcome = np.where(clicked, 2, np.where(opened, 1, 0))
    t_outcome[t_variant == 2] = 0  # holdout: the assignment is logged, nothing is delivered
    vip = np.isin(arch[t_user], [ARCHETYPES.index("whale"), ARCHETYPES.index("co_builder")])
    u = rng.random(len(t_user))
    t_campaign = np.where(u < 0.5, 3, 4)  # new_course / festival
    t_campaign = np.where(vip & (u < 0.4), 2, t_campaign)
    t_campaign = np.where(~active, 1, t_campaign)
    t_campaign = np.where(t_t - t0[t_user] < 7, 0, t_campaign)

    converted = np.flatnonzero((rng.random(n_orders) < 0.12) & (status != 3))
    c_user = o_user[converted]
    c_t = np.maximum(o_t[converted] - rng.uniform(0.5, 47, len(converted)) / 24, t0[c_user])
    c_channel = _draw(rng, _cdf(_TOUCH_CHANNEL_P), len(converted))
    # the treatment works: holdout users buy anyway, but less often after an assignment
    c_variant = _draw(rng, _cdf([0.42, 0.53, 0.05]), len(converted))
    c_campaign = np.where(rng.random(len(converted)) < 0.5, 3, 4)
    c_campaign = np.where(c_t - t0[c_user] < 7, 0, c_campaign)

    tc_user = np.concatenate([t_user, c_user])
    tc_ts = _to_utc_us(np.concatenate([t_t, c_t]))
    tc_order = np.lexsort((tc_ts, tc_user))
    tc_user, tc_ts = tc_user[tc_order], tc_ts[tc_order]
    tc_channel = np.concatenate([t_channel, c_channel])[tc_order]
    tc_variant = np.concatenate([t_variant, c_variant])[tc_order]
    tc_outcome = np.concatenate([t_outcome, np.full(len(converted), 3)])[tc_order]
    month = (
        ((tc_ts // _US + _UTC_OFFSET_S) // _DAY_S).astype("datetime64[D]").astype("datetime64[M]")
        - first_month
    ).astype("int64")
    tc_campaign = np.concatenate([t_campaign, c_campaign])[tc_order] + len(CAMPAIGN_TYPES) * month

    # --- assemble ---------------------------------------------------------------------------
    user_ids = _ids("u", ids.users + np.arange(n), 8)
    ts_type = _UTC_TS
    users = pa.table(
        {
            "user_id": user_ids,
            "registered_at": pa.array(acquired_us, ts_type),
            "channel": _labels(_STRINGS["acq_channels"], _draw(rng, _cdf(_CHANNEL_P), n)),
            "attributes": _labels(_ATTRIBUTES, _draw(rng, _cdf(_ATTRIBUTE_P), n)),
        },
        schema=_ARROW_SCHEMAS["users"],
    )
    order_ids = _ids("o", ids.orders + np.arange(n_orders), 10)
    orders = pa.table(
        {
            "order_id": order_ids,
            "user_id": user_ids.take(pa.array(o_user)),
            "ts": pa.array(o_ts, ts_type),
            "amount": amount,
            "currency": pa.array(np.full(n_orders, "CNY")),
            "status": _labels(_STRINGS["statuses"], status),
            "refund_amount": refund,
            "refunded_at": pa.array(refunded_at, ts_type, mask=refunded_mask),
        },
        schema=_ARROW_SCHEMAS["orders"],
    )
    order_items = pa.table(
        {
            "order_id": order_ids.take(pa.array(item_order)),
            # items are sorted by order (then sku): the line's place in its order
            "line_no": _rank_in_group(np.bincount(item_order, minlength=n_orders)) + 1,
            "sku": _labels(_SKU_NAMES, item_sku),
            "category": _labels(_CATEGORY_NAMES, _SKU_CATEGORY[item_sku]),
            "quantity": quantity.astype("int64"),
            "price": price,
        },
        schema=_ARROW_SCHEMAS["order_items"],
    )
    anon_ids = _ids("a", ids.anonymous + np.arange(n_anon), 8)
    is_anon = owner >= n
    events = pa.table(
        {
            "event_id": _ids("e", ids.events + np.arange(n_events), 11),
            "user_id": user_ids.take(pa.array(np.where(is_anon, 0, owner), mask=is_anon)),
            "anonymous_id": anon_ids.take(pa.array(np.where(is_anon, owner - n, 0), mask=~is_anon)),
            "session_id": _ids("s", session_no, 11),
            "ts": pa.array(ev_ts, ts_type),
            "event": _labels(_STRINGS["events"], ev_type),
            "properties": _labels(_PROP_DICTIONARY, prop),
        },
        schema=_ARROW_SCHEMAS["events"],
    )
    touches = pa.table(
        {
            "touch_id": _ids("t", ids.touches + np.arange(len(tc_user)), 10),
            "user_id": user_ids.take(pa.array(tc_user)),
            "ts": pa.array(tc_ts, ts_type),
            "channel": _labels(_STRINGS["touch_channels"], tc_channel),
            "campaign": _labels(campaign_names, tc_campaign),
            "variant": _labels(_STRINGS["variants"], tc_variant),
            "outcome": _labels(_STRINGS["outcomes"], tc_outcome),
        },
        schema=_ARROW_SCHEMAS["touches"],
    )
    truth = pa.table(
        {
            "user_id": user_ids,
            "archetype": _labels(_STRINGS["archetypes"], arch),
            "acquired_at": pa.array(acquired_us, ts_type),
            "churned_at": pa.array(last_us, ts_type, mask=~dropped),
        },
        schema=TRUTH_SCHEMA,
    )
    ids.users += n
    ids.anonymous += n_anon
    ids.orders += n_orders
    ids.events += n_events
    ids.sessions += int(new_session.sum())
    ids.touches += len(tc_user)
    return {
        "users": users,
        "orders": orders,
        "order_items": order_items,
        "events": events,
        "touches": touches,
        "truth": truth,
    }


_LOCAL_OFFSET = "+08:00"  # Asia/Shanghai, as written in CSV


def _local_text(column: pa.Array) -> pa.Array:
    """UTC instants as Shanghai wall-clock text with the offset: '2024-06-30 20:15:03+08:00'."""
    wall = pc.add(column.cast(pa.int64()), _UTC_OFFSET_S * _US).cast(pa.timestamp("us"))
    text = wall.cast(pa.timestamp("s")).cast(pa.string())  # whole seconds: no '.000000'
    return pc.binary_join_element_wise(text, _LOCAL_OFFSET, "")


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if f.type == _UTC_TS else f for f in schema])


class _Writer:
    """Appends one chunk at a time: a Parquet row group or a CSV block."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str):
        self.path = path
        if fmt == "parquet":
            self._writer = pq.ParquetWriter(
                path, schema, compression="zstd", coerce_timestamps="us", version="2.6"
            )
        else:
            self._writer = pacsv.CSVWriter(path, _csv_schema(schema))
        self._fmt = fmt

    def write(self, table: pa.Table) -> None:
        if self._fmt == "parquet":
            self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        else:
            columns = [_local_text(c.combine_chunks()) if c.type == _UTC_TS else c for c in table.columns]
            self._writer.write_table(pa.Table.from_arrays(columns, schema=_csv_schema(table.schema)))

    def close(self) -> None:
        self._writer.close()


def _incident_spec(incident: bool | dict, end: date, days: int) -> dict:
    """The incident to inject: defaults for ``True``, a dict overrides them."""
    spec = {
        "segment_by": "channel",
        "segment": "organic",
        "metric": "conversion",
        "events": ["page_view", "add_to_cart"],
        "factor": 0.5,  # the chance that a page view leads to add_to_cart is halved
        "start": str(np.datetime64(end, "D") - 49),
        "days": 21,  # three weeks
    }
    if isinstance(incident, dict):
        unknown = set(incident) - {"segment", "start", "days", "factor"}
        if unknown:
            raise InputError(f"incident: unknown key(s) {sorted(unknown)}; use segment, start, days, factor")
        spec.update({k: str(v) if k == "start" else v for k, v in incident.items()})
    if spec["segment"] not in ACQUISITION_CHANNELS:
        raise InputError(f"incident segment {spec['segment']!r}: use one of {', '.join(ACQUISITION_CHANNELS)}")
    first, last = np.datetime64(spec["start"], "D"), np.datetime64(spec["start"], "D") + int(spec["days"]) - 1
    if int(spec["days"]) < 1 or not 0 < float(spec["factor"]) < 1:
        raise InputError("incident: days must be at least 1 and factor between 0 and 1")
    if first < np.datetime64(end, "D") - days or last > np.datetime64(end, "D"):
        raise InputError(f"incident {first}..{last} must lie within the simulated {days} days ending {end}")
    spec["end"] = str(last)
    return spec


def _inject_incident(tables: dict[str, pa.Table], spec: dict, rng: np.random.Generator) -> None:
    """Keep each add_to_cart of the segment's users on the incident's local days with chance
    ``factor`` (its own random stream: the rest of the shop is the shop without the incident)."""
    users = tables["users"]
    members = pc.filter(users["user_id"], pc.equal(users["channel"], spec["segment"]))
    ev = tables["events"]
    local_day = (ev["ts"].cast(pa.int64()).to_numpy() // _US + _UTC_OFFSET_S) // _DAY_S
    first = np.datetime64(spec["start"], "D").astype("int64")
    last = np.datetime64(spec["end"], "D").astype("int64")
    hit = (
        pc.fill_null(pc.is_in(ev["user_id"], value_set=members), False).to_numpy(zero_copy_only=False)
        & (ev["event"].to_numpy(zero_copy_only=False) == spec["events"][1])
        & (local_day >= first) & (local_day <= last)
    )  # fmt: skip
    drop = hit & (rng.random(len(hit)) >= float(spec["factor"]))
    tables["events"] = ev.filter(pa.array(~drop))


# --- the whole user (opt-in: ``simulate_shop(..., whole_user=True)``) ---------------------------
# Several ids per person, anonymous browsing before login, usage events with progress for
# courses and memberships, night-owl and weekend habits, with the truth beside them. A second
# pass over each finished chunk with its own random stream ``[seed, k, 2]``: without it, the
# files are those of the shop without these additions.

WHOLE_USER_TABLES = ("identities", "truth_ids")
TRUTH_WHOLE_USER_SCHEMA = pa.schema(
    [
        *TRUTH_SCHEMA,
        ("true_person", pa.string()),  # the canonical id stitching should give: the person's smallest user_id
        ("night_owl", pa.bool_()),  # a trait of the person: most activity at 22:00-05:00 shop time
        ("weekend", pa.bool_()),  # most activity on Saturday and Sunday
        ("uses_purchases", pa.bool_()),  # uses the courses and memberships they buy
        ("deal_hunter", pa.bool_()),  # buys mostly with a coupon or at a promotion price
    ]
)
TRUTH_IDS_SCHEMA = pa.schema(
    [("source", pa.string()), ("external_id", pa.string()), ("true_person", pa.string())]
)
_WHOLE_USER_SCHEMAS = {
    "identities": IDENTITIES.schema.to_pyarrow(),
    "truth_ids": TRUTH_IDS_SCHEMA,
}
_WHOLE_ORDERS = _with_utc_instants(ORDERS.schema.to_pyarrow())  # with discount_amount, coupon_id
_WHOLE_ITEMS = ORDER_ITEMS.schema.to_pyarrow()  # with list_price, brand

_SECOND_ACCOUNT_SHARE = 0.03  # persons with a second user id (a second app account)
_NIGHT_OWL_SHARE = 0.15
_WEEKEND_SHARE = 0.15
_USES_SHARE = 0.6
_HABIT_STRENGTH = 0.9  # share of a night owl's (weekend user's) activity at night (at the weekend)
_ANON_BEFORE_LOGIN = 0.4  # users who browsed anonymously in the visit that registered them
_DEVICE_BEFORE = 0.1  # users who browsed on another device days before, linked by a device_id row
_NIGHT = np.array([22, 23, 0, 1, 2, 3, 4])
_CHAPTERS = 12  # chapters of every course
_USAGE_SPAN = 20.0  # usage events stay within this many days of the purchase (the window is 30)
_COURSE, _MEMBERSHIP = CATEGORIES.index("课程"), CATEGORIES.index("会员")
_DEAL_HUNTER_SHARE = 0.2  # persons who buy mostly on a deal
_DEAL_RATE = (0.1, 0.8)  # chance that an order is on a deal: other persons, deal hunters
_COUPON_SHARE = 0.5  # of deals: a coupon off the order (the rest: promotion prices on its lines)
_DEAL_CUTS = np.array([0.1, 0.2, 0.3])  # the share taken off
_BRANDS = ("星河互娱", "青木学堂", "云端会员", "像素工坊", "拾光文创")  # brand of SKU i: _BRANDS[i % 5]


def _hour_cdf_points(weights: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], _cdf(weights)])


_HOURS = np.arange(25, dtype="float64")
_DAY_ACTIVITY = _hour_cdf_points(_ACTIVITY_HOURS)
_DAY_UNIFORM = _hour_cdf_points(np.ones(24))
_night_w = np.full(24, (1 - _HABIT_STRENGTH) / (24 - len(_NIGHT)))
_night_w[_NIGHT] = _HABIT_STRENGTH / len(_NIGHT)
_DAY_NIGHT = _hour_cdf_points(_night_w)
_week_w = np.full(7, (1 - _HABIT_STRENGTH) / 5)
_week_w[5:] = _HABIT_STRENGTH / 2
_WEEK_CDF = _hour_cdf_points(_week_w)
_WEEK_DAYS = np.arange(8, dtype="float64")


@dataclass
class _WholeCounters:
    visitors: int = 0  # anonymous ids of users before login and device ids ("v...")
    events: int = 0  # added events ("x...")
    sessions: int = 0  # sessions of device browsing ("sx...")


def _reshape_times(us: np.ndarray, night: np.ndarray, weekend: np.ndarray, horizon: float) -> np.ndarray:
    """Timestamps (UTC microseconds) moved to a night owl's hours and a weekend user's days.

    Each map keeps the order of a user's times: the weekend map is monotone within each
    Monday-to-Monday week (time drawn uniform over the week goes 90% to Sat/Sun; the last,
    incomplete week is left alone), the night map monotone within each local day (the shop's
    hour profile goes 90% to 22:00-05:00). Days never change under the night map and weeks never
    under the weekend map, so registration, funnel, order, refund and usage stay in order.
    """
    out = us.copy()
    hit = night | weekend
    if not hit.any():
        return out
    t = (us[hit] // _US + _UTC_OFFSET_S) / _DAY_S  # local days since the epoch
    nt, wk = night[hit], weekend[hit]
    day = np.floor(t)
    week_start = day - (day + 3) % 7  # 1970-01-01 was a Thursday; weeks start on Monday
    whole_week = week_start + 7 <= horizon
    w = t - week_start
    moved = np.interp(w / 7.0, _WEEK_CDF, _WEEK_DAYS)
    t = np.where(wk & whole_week, week_start + moved, t)
    day = np.floor(t)
    hour = (t - day) * 24
    # the daily quantile: uniform hours (after the weekend map) or the shop's profile -> target
    q = np.where(wk & whole_week, np.interp(hour, _HOURS, _DAY_UNIFORM), np.interp(hour, _HOURS, _DAY_ACTIVITY))
    target = np.where(nt, np.interp(q, _DAY_NIGHT, _HOURS), np.interp(q, _DAY_ACTIVITY, _HOURS))
    change = (wk & whole_week) | nt
    t = np.where(change, day + np.minimum(target, np.nextafter(24.0, 0)) / 24, t)
    # floor to whole seconds: never past the local midnight
    out[hit] = (np.floor(t * _DAY_S).astype("int64") - _UTC_OFFSET_S) * _US
    return out


def _index_of(ids_column: pa.ChunkedArray | pa.Array, first: int) -> np.ndarray:
    """``u00000123`` -> 123 - first (the row within the chunk); null -> -1."""
    filled = pc.fill_null(ids_column, "x-1")
    number = pc.cast(pc.utf8_slice_codeunits(filled, 1), pa.int64()).to_numpy(zero_copy_only=False)
    return np.where(pc.is_null(ids_column).to_numpy(zero_copy_only=False), -1, number - first)


def _text(values: np.ndarray | list) -> pa.Array:
    return pa.array(values, pa.string())


def _whole_user(
    tables: dict[str, pa.Table],
    rng: np.random.Generator,
    counters: _WholeCounters,
    *,
    first_user: int,
    first_order: int,
    horizon: float,
) -> dict[str, pa.Table]:
    """The chunk's tables with the whole user added (see ``simulate_shop(whole_user=True)``)."""
    users, orders, items, events = tables["users"], tables["orders"], tables["order_items"], tables["events"]
    n = users.num_rows
    number = first_user + np.arange(n)  # the global user number
    user_ids = users["user_id"].combine_chunks()

    # --- persons: a few users are a second account of another user of the chunk ------------
    person = np.arange(n)
    pairs = min(int(round(_SECOND_ACCOUNT_SHARE * n)), n // 2)
    picked = rng.permutation(n)[: 2 * pairs].reshape(-1, 2) if pairs else np.zeros((0, 2), "int64")
    primary, second = picked.min(axis=1), picked.max(axis=1)
    person[second] = primary  # the smallest user id of the person (ids grow with the row)
    night = (rng.random(n) < _NIGHT_OWL_SHARE)[person]
    weekend = (rng.random(n) < _WEEKEND_SHARE)[person]
    uses = (rng.random(n) < _USES_SHARE)[person]

    # --- identities: openid -> user, unionid -> openid, phone -> user or unionid (chains) --------
    id_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def link(source: str, external: pa.Array, target: pa.Array, linked: str) -> None:
        k = len(external)
        id_rows.append((np.full(k, source), external, target, np.full(k, linked)))

    openid = np.flatnonzero(rng.random(n) < 0.5)
    openid_ids = _ids("wxo", number[openid], 8)
    link("wechat_openid", openid_ids, user_ids.take(pa.array(openid)), "user_id")
    has_union = rng.random(len(openid)) < 0.6
    union = openid[has_union]
    union_ids = _ids("wxu", number[union], 8)
    link("wechat_unionid", union_ids, openid_ids.filter(pa.array(has_union)), "wechat_openid")
    phone = np.flatnonzero(rng.random(n) < 0.3)
    phone_ids = _ids("138", number[phone], 8)
    via_union = np.isin(phone, union) & (rng.random(len(phone)) < 0.5)
    union_of = np.searchsorted(union, phone[via_union])
    link("phone", phone_ids.filter(pa.array(via_union)), union_ids.take(pa.array(union_of)), "wechat_unionid")
    link("phone", phone_ids.filter(pa.array(~via_union)), user_ids.take(pa.array(phone[~via_union])), "user_id")
    # second accounts: half share a phone, half are merged by a user_id row
    shared = rng.random(pairs) < 0.5
    shared_phone = _ids("139", number[primary[shared]], 8)
    link("phone", shared_phone, user_ids.take(pa.array(primary[shared])), "user_id")
    link("phone", shared_phone, user_ids.take(pa.array(second[shared])), "user_id")
    link("user_id", user_ids.take(pa.array(second[~shared])), user_ids.take(pa.array(primary[~shared])), "user_id")

    # --- events: ids, owners, the features of usage ------------------------------------------
    ev_owner = _index_of(events["user_id"], first_user)
    # usage of courses and memberships only comes from the purchases' usage events below
    props = events["properties"]
    usage_like = pc.and_(pc.equal(events["event"], "use"),
                         pc.is_in(props, value_set=_text(['{"feature":"course_video"}',
                                                          '{"feature":"membership_perk"}'])))
    props = pc.if_else(usage_like, '{"feature":"play"}', props)
    base_anon = events["anonymous_id"]
    registered_us = users["registered_at"].cast(pa.int64()).to_numpy()
    ev_ts = events["ts"].cast(pa.int64()).to_numpy()
    ev_names = events["event"].to_numpy(zero_copy_only=False)
    # the login that registered each user: its first login at the registration second
    is_reg = (ev_owner >= 0) & (ev_names == "login")
    is_reg &= ev_ts == registered_us[np.maximum(ev_owner, 0)]
    reg_rows = np.flatnonzero(is_reg)
    reg_rows = reg_rows[np.unique(ev_owner[reg_rows], return_index=True)[1]]
    reg_row_of = np.full(n, -1)
    reg_row_of[ev_owner[reg_rows]] = reg_rows

    added: list[dict[str, object]] = []
    truth_ids = [(np.full(n, "user_id"), user_ids, user_ids.take(pa.array(person)))]

    # anonymous browsing in the visit that registered the user, then the login carries both ids
    anon = np.flatnonzero((rng.random(n) < _ANON_BEFORE_LOGIN) & (reg_row_of >= 0))
    anon_ids = _ids("v", counters.visitors + np.arange(len(anon)), 9)
    counters.visitors += len(anon)
    anon_column = base_anon.combine_chunks().to_numpy(zero_copy_only=False).astype(object)
    anon_column[reg_row_of[anon]] = np.asarray(anon_ids.to_pylist(), dtype=object)
    k = 1 + rng.poisson(2.0, len(anon))
    a_owner = np.repeat(np.arange(len(anon)), k)
    gaps = rng.uniform(0.5, 10.0, len(a_owner)) * 60  # seconds between the visit's events
    start = np.cumsum(k) - k
    sums = np.cumsum(gaps)
    before = sums - gaps - np.repeat(sums[start] - gaps[start], k) if len(gaps) else sums
    back = np.repeat(np.bincount(a_owner, weights=gaps, minlength=len(anon)), k) - before
    a_ts = registered_us[anon][a_owner] - (np.floor(back) + 1).astype("int64") * _US
    a_type = np.where(rng.random(len(a_owner)) < 0.7, 0, 1)  # page_view, search
    added.append({
        "owner": anon[a_owner], "user": None, "anonymous_id": anon_ids.take(pa.array(a_owner)),
        "session_id": events["session_id"].take(pa.array(reg_row_of[anon][a_owner])), "ts": a_ts,
        "event": a_type, "prop": _PROP_OFFSET[a_type] + (rng.random(len(a_owner)) * _PROP_COUNT[a_type]).astype(int),
    })
    truth_ids.append((np.full(len(anon), "anonymous_id"), anon_ids, user_ids.take(pa.array(person[anon]))))

    # another device, days before registering, linked by an identities row (source device_id)
    dev = np.flatnonzero(rng.random(n) < _DEVICE_BEFORE)
    dev_ids = _ids("v", counters.visitors + np.arange(len(dev)), 9)
    counters.visitors += len(dev)
    link("device_id", dev_ids, user_ids.take(pa.array(dev)), "user_id")
    k = 1 + rng.poisson(3.0, len(dev))
    d_owner = np.repeat(np.arange(len(dev)), k)
    d_ts = registered_us[dev][d_owner] - (rng.uniform(1.0, 10.0, len(dev)) * _DAY_S).astype("int64")[d_owner] * _US
    d_ts = d_ts + (_rank_in_group(k) * rng.uniform(30, 300, len(d_owner))).astype("int64") * _US
    d_type = np.where(rng.random(len(d_owner)) < 0.7, 0, 1)
    sessions = _ids("sx", counters.sessions + np.arange(len(dev)), 10)
    counters.sessions += len(dev)
    added.append({
        "owner": dev[d_owner], "user": None, "anonymous_id": dev_ids.take(pa.array(d_owner)),
        "session_id": sessions.take(pa.array(d_owner)), "ts": d_ts,
        "event": d_type, "prop": _PROP_OFFSET[d_type] + (rng.random(len(d_owner)) * _PROP_COUNT[d_type]).astype(int),
    })
    truth_ids.append((np.full(len(dev), "device_id"), dev_ids, user_ids.take(pa.array(person[dev]))))
    visitors = pc.unique(pc.drop_null(base_anon.combine_chunks()))
    truth_ids.append((np.full(len(visitors), "anonymous_id"), visitors, pa.nulls(len(visitors), pa.string())))

    # usage events with progress: every course or membership line of a user who uses them
    item_order = _index_of(items["order_id"], first_order)
    o_owner = _index_of(orders["user_id"], first_user)
    o_ts = orders["ts"].cast(pa.int64()).to_numpy()
    category = pc.index_in(items["category"], value_set=_CATEGORY_NAMES).to_numpy(zero_copy_only=False)
    cancelled = pc.equal(orders["status"], "cancelled").to_numpy(zero_copy_only=False)
    line = np.flatnonzero(np.isin(category, [_COURSE, _MEMBERSHIP]) & ~cancelled[item_order])
    line = line[uses[o_owner[item_order[line]]]]
    course = category[line] == _COURSE
    chapters = np.where(course, 1 + rng.binomial(_CHAPTERS - 1, rng.uniform(0.1, 0.9, len(line))),
                        1 + rng.poisson(4.0, len(line)))
    u_line = np.repeat(np.arange(len(line)), chapters)
    rank = _rank_in_group(chapters)
    first_gap = rng.uniform(0.02, 5.0, len(line))
    steps = np.where(rank == 0, first_gap[u_line], rng.exponential(2.0, len(u_line)))
    offset = np.cumsum(steps)
    offset -= np.repeat(offset[np.cumsum(chapters) - chapters] - first_gap, chapters)
    offset = np.minimum(offset, _USAGE_SPAN)
    purchase_us = o_ts[item_order[line]]
    u_ts = purchase_us[u_line] + (offset * _DAY_S).astype("int64") * _US
    keep = u_ts < _to_utc_us(np.array([horizon]))[0]
    u_line, rank, u_ts = u_line[keep], rank[keep], u_ts[keep]
    sku = items["sku"].take(pa.array(line[u_line]))
    is_course = course[u_line]
    chapter = _text((rank + 1).astype(str))
    course_props = pc.binary_join_element_wise('{"sku":"', sku, '","chapter":', chapter,
                                               f',"chapters_total":{_CHAPTERS}}}', "")
    member_props = pc.binary_join_element_wise('{"feature":"membership_perk","sku":"', sku, '"}', "")
    u_owner = o_owner[item_order[line]][u_line]
    added.append({
        "owner": u_owner, "user": user_ids.take(pa.array(u_owner)), "anonymous_id": None,
        "session_id": None, "ts": u_ts, "event_name": np.where(is_course, "watch", "use"),
        "properties": pc.if_else(pa.array(is_course), course_props, member_props),
    })

    # --- assemble the events, then move the habits' times ---------------------------------
    parts, owners = [], [ev_owner]
    base = events.set_column(events.schema.get_field_index("properties"), "properties", props)
    base = base.set_column(base.schema.get_field_index("anonymous_id"), "anonymous_id", _text(anon_column))
    parts.append(base)
    for a in added:
        m = len(a["owner"])
        event_ids = _ids("x", counters.events + np.arange(m), 11)
        counters.events += m
        names = a.get("event_name")
        names = _text(names) if names is not None else _STRINGS["events"].take(pa.array(a["event"]))
        properties = a.get("properties")
        if properties is None:
            properties = _PROP_DICTIONARY.take(pa.array(a["prop"]))
        session = a["session_id"] if a["session_id"] is not None else pa.nulls(m, pa.string())
        parts.append(pa.table({
            "event_id": event_ids,
            "user_id": a["user"] if a["user"] is not None else pa.nulls(m, pa.string()),
            "anonymous_id": a["anonymous_id"] if a["anonymous_id"] is not None else pa.nulls(m, pa.string()),
            "session_id": session, "ts": pa.array(a["ts"], _UTC_TS), "event": names, "properties": properties,
        }, schema=events.schema))
        owners.append(a["owner"])
    events = pa.concat_tables(parts).combine_chunks()
    owner = np.concatenate(owners)
    mine = owner >= 0
    o = np.maximum(owner, 0)
    ts = _reshape_times(events["ts"].cast(pa.int64()).to_numpy(), night[o] & mine, weekend[o] & mine, horizon)
    events = events.set_column(events.schema.get_field_index("ts"), "ts", pa.array(ts, _UTC_TS))

    def moved(table: pa.Table, column: str, who: np.ndarray) -> pa.Table:
        values = table[column].combine_chunks()
        us = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        new = _reshape_times(us, night[who], weekend[who], horizon)
        array = pa.array(new, _UTC_TS, mask=values.is_null().to_numpy(zero_copy_only=False))
        return table.set_column(table.schema.get_field_index(column), column, array)

    orders = moved(moved(orders, "ts", o_owner), "refunded_at", o_owner)
    users = moved(users, "registered_at", np.arange(n))
    truth = moved(moved(tables["truth"], "acquired_at", np.arange(n)), "churned_at", np.arange(n))
    hunter = (rng.random(n) < _DEAL_HUNTER_SHARE)[person]  # drawn last: the streams above are unchanged
    orders, items = _deals(orders, items, rng, hunter[o_owner], item_order)
    truth = pa.table({
        **{name: truth[name] for name in TRUTH_SCHEMA.names},
        "true_person": user_ids.take(pa.array(person)),
        "night_owl": night, "weekend": weekend, "uses_purchases": uses, "deal_hunter": hunter,
    }, schema=TRUTH_WHOLE_USER_SCHEMA)

    def column(parts: list, i: int) -> pa.Array:
        return pa.concat_arrays([p[i] if isinstance(p[i], pa.Array) else _text(p[i]) for p in parts])

    identities = pa.table({name: column(id_rows, i) for i, name in enumerate(IDENTITIES.schema.names)},
                          schema=_WHOLE_USER_SCHEMAS["identities"])
    truth_table = pa.table({name: column(truth_ids, i) for i, name in enumerate(TRUTH_IDS_SCHEMA.names)},
                           schema=TRUTH_IDS_SCHEMA)
    return {**tables, "users": users, "orders": orders, "order_items": items, "events": events, "truth": truth,
            "identities": identities, "truth_ids": truth_table}


def _with_empty(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema`` it lacks, all NULL."""
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def _deals(orders: pa.Table, items: pa.Table, rng: np.random.Generator, hunter: np.ndarray,
           item_order: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """Orders and items with discounts, coupons, list prices and brands (``whole_user``).

    An order is on a deal with chance ``_DEAL_RATE`` (deal hunters: 0.8, others: 0.1; free
    orders never): half of the deals are a coupon (``coupon_id``; ``discount_amount`` = 10, 20 or
    30% of the order to the cent, taken off ``amount``), half promotion prices (each line's
    ``price`` 10, 20 or 30% below its ``list_price``, ``amount`` their sum, ``discount_amount``
    0). ``list_price`` is the catalogue price on every line; refunds shrink in proportion.
    """
    m = orders.num_rows
    amount = orders["amount"].to_numpy()
    refund = pc.fill_null(orders["refund_amount"], 0.0).to_numpy()
    deal = (rng.random(m) < np.where(hunter, _DEAL_RATE[1], _DEAL_RATE[0])) & (amount > 0)
    coupon = deal & (rng.random(m) < _COUPON_SHARE)
    promo = deal & ~coupon
    cut = _DEAL_CUTS[rng.integers(0, len(_DEAL_CUTS), m)]
    list_price = items["price"].to_numpy()
    quantity = items["quantity"].to_numpy()
    price = np.where(promo[item_order], np.round(list_price * (1 - cut[item_order]), 2), list_price)
    lines = np.round(np.bincount(item_order, weights=quantity * price, minlength=m), 2)
    discount = np.where(coupon, np.round(amount * cut, 2), 0.0)
    paid = np.round(np.where(promo, lines, amount) - discount, 2)
    scaled = np.minimum(np.round(refund * paid / np.where(amount > 0, amount, 1.0), 2), paid)
    refund = np.where(refund > 0, np.maximum(scaled, 0.01), refund)
    # the coupon's code: "cp" and the order's number
    coupon_ids = pc.if_else(pa.array(coupon), _ids("cp", _index_of(orders["order_id"], 0), 10),
                            pa.nulls(m, pa.string()))
    orders = orders.set_column(orders.schema.get_field_index("amount"), "amount", pa.array(paid))
    orders = orders.set_column(orders.schema.get_field_index("refund_amount"), "refund_amount", pa.array(refund))
    orders = orders.append_column("discount_amount", pa.array(discount)).append_column("coupon_id", coupon_ids)
    sku_index = pc.index_in(items["sku"], value_set=_SKU_NAMES).to_numpy(zero_copy_only=False)
    brands = pa.array(_BRANDS, pa.string()).take(pa.array(sku_index % len(_BRANDS)))
    items = items.set_column(items.schema.get_field_index("price"), "price", pa.array(price))
    items = items.append_column("list_price", pa.array(list_price)).append_column("brand", brands)
    return orders.cast(_WHOLE_ORDERS), items.cast(_WHOLE_ITEMS)


def simulate_shop(
    n_users: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    end: date = date(2024, 6, 30),
    days: int = 540,
    chunk_users: int = 50_000,
    fmt: Literal["parquet", "csv"] = "parquet",
    events_per_user: float = 20.0,
    progress: Callable[[int], None] | None = None,
    incident: bool | dict | None = None,
    whole_user: bool = False,
) -> dict[str, Path]:
    """Simulate a virtual-goods shop and write its canonical tables, one file per table.

    Parameters
    ----------
    n_users
        Registered users (anonymous visitors, about 20% more, come on top).
    out_dir
        Created if missing; files ``<table>.parquet`` (or ``.csv``) are overwritten.
    seed
        Chunk ``k`` draws from ``np.random.default_rng([seed, k])``.
    end
        The last local (Asia/Shanghai) day of the simulated history; profile as of this day.
    days
        Length of the acquisition window, ending on ``end``.
    chunk_users
        Users generated and written at a time (memory is bounded by one chunk).
    fmt
        ``parquet`` (zstd, one row group per chunk, timestamps as UTC instants in
        microseconds) or ``csv`` (timestamps as Shanghai time with ``+08:00``).
    events_per_user
        Mean events per registered user (anonymous visitors' events come on top); orders
        per user emerge from the archetypes (about 10 on average).
    progress
        Called with the number of users written so far after each chunk.
    incident
        ``True`` (or a dict overriding ``segment``, ``start``, ``days``, ``factor``) injects an
        incident: for the users of one acquisition channel (default ``organic``) and three
        weeks (default: starting 49 days before ``end``), each add_to_cart is kept with chance
        ``factor`` (0.5), so the page_view -> add_to_cart conversion halves. The truth is written
        to ``incident.json`` (returned as ``"incident"``). Off by default: without it the files
        are those of the shop without an incident.
    whole_user
        ``True`` adds what identity stitching, value realisation and the time-habit tags need,
        with the truth beside it (each chunk ``k`` gets a second pass drawing from
        ``[seed, k, 2]``; off by default, and then the files are those of the shop without it):
        about 3% of persons have a second user id (linked by a shared phone or a ``user_id``
        row); ``identities`` links WeChat openids to users, unionids to openids, phones to users
        or unionids (chains), and device ids to users; 40% of users browse anonymously in the
        visit that registered them (events with only an ``anonymous_id``, then the registering
        login carries both ids), 10% browse on another device (``device_id``) days before;
        course and membership purchases of persons who use them get ``watch`` events with
        ``sku``, ``chapter`` and ``chapters_total`` (12) or ``use`` events with
        ``feature=membership_perk`` and ``sku`` within 20 days, the first within 5 days, while
        ordinary ``use`` events never name those features; 15% of persons are night owls and
        15% weekend users (90% of their registrations, orders, refunds and events move to
        22:00-05:00 or to Saturday and Sunday, each user's order of events kept; touches stay
        where they are); 20% of persons are deal hunters (80% of their orders on a deal, others'
        10%: half a coupon, ``coupon_id`` and ``discount_amount`` 10/20/30% off the order, half
        promotion prices 10/20/30% below ``list_price`` on every line; ``amount`` is what was
        paid after it, refunds shrink in proportion); every item line has its catalogue
        ``list_price`` and a ``brand`` (one per SKU). ``truth`` gains ``true_person`` (the person's
        smallest user id: the canonical id stitching must give), ``night_owl``, ``weekend``,
        ``uses_purchases`` and ``deal_hunter``;
        ``truth_ids`` (source, external_id, true_person) names the person of every user id,
        anonymous id and device id (null for visitors who never log in). Both ``identities``
        and ``truth_ids`` are returned.

    Returns
    -------
    dict
        Table name -> path, for ``users``, ``orders``, ``order_items``, ``events``,
        ``touches`` and ``truth`` (user_id, archetype, acquired_at, churned_at: the last
        activity of a user who dropped out before the end, else null).
    """
    if n_users < 1:
        raise InputError(f"n_users must be at least 1, got {n_users}")
    if chunk_users < 1:
        raise InputError(f"chunk_users must be at least 1, got {chunk_users}")
    if days < 120:
        raise InputError(
            f"days must be at least 120, got {days}",
            hint="returners need time for a first spell, a silent month and a comeback",
        )
    if fmt not in ("parquet", "csv"):
        raise InputError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    if events_per_user <= 0:
        raise InputError(f"events_per_user must be positive, got {events_per_user}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    horizon = float((np.datetime64(end, "D") + 1).astype("int64"))  # local midnight after end
    first_month = (np.datetime64(end, "D") - days).astype("datetime64[M]")
    months = np.arange(first_month, np.datetime64(end, "M") + 1)
    campaign_names = pa.array(
        [f"{kind}_{str(m).replace('-', '')}" for m in months for kind in CAMPAIGN_TYPES],
        pa.string(),
    )
    names = TABLES + (WHOLE_USER_TABLES if whole_user else ())
    paths = {name: out / f"{name}.{fmt}" for name in names}
    spec = _incident_spec(incident, end, days) if incident else None
    schemas = {**_ARROW_SCHEMAS, **_WHOLE_USER_SCHEMAS}
    schemas["orders"], schemas["order_items"] = _WHOLE_ORDERS, _WHOLE_ITEMS  # the canonical columns
    if whole_user:
        schemas["truth"] = TRUTH_WHOLE_USER_SCHEMA
    writers = {name: _Writer(paths[name], schemas[name], fmt) for name in names}
    ids = _Counters()
    whole = _WholeCounters()
    try:
        for k, first in enumerate(range(0, n_users, chunk_users)):
            size = min(chunk_users, n_users - first)
            first_user, first_order = ids.users, ids.orders
            tables = _simulate_chunk(
                np.random.default_rng([seed, k]),
                size,
                ids,
                horizon=horizon,
                days=days,
                events_per_user=events_per_user,
                first_month=first_month,
                campaign_names=campaign_names,
            )
            if whole_user:
                tables = _whole_user(tables, np.random.default_rng([seed, k, 2]), whole, first_user=first_user,
                                     first_order=first_order, horizon=horizon)
            if spec is not None:
                _inject_incident(tables, spec, np.random.default_rng([seed, k, 1]))
            for name in _WHOLE_USER_COLUMNS:  # without the whole user: the optional columns empty
                tables[name] = _with_empty(tables[name], schemas[name])
            for name, table in tables.items():
                writers[name].write(table)
            del tables
            if progress is not None:
                progress(first + size)
    finally:
        for writer in writers.values():
            writer.close()
    if spec is not None:
        paths["incident"] = out / "incident.json"
        paths["incident"].write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")
    return paths
