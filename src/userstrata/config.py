"""Settings: one pydantic model, loaded from ``userstrata.toml``; every default names its source.

Functions receive the slice they need (``rules=settings.lifecycle``) and never read a global.
"""

from __future__ import annotations

import datetime as dt_
import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from userstrata.errors import ConfigError
from userstrata.schema import LIFECYCLE_STAGES, ORDER_STATUSES, TIERS

CONFIG_FILE = "userstrata.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifecycleRules(_Section):
    """Lifecycle stage thresholds in days (DESIGN.md domain defaults)."""

    new_days: int = Field(7, ge=0)  # seed doc: new 0-7 days since first activity
    growth_days: int = Field(30, ge=0)  # seed doc: growth 8-30; mature after that while active
    dormant_after_days: int = Field(30, ge=1)  # seed doc: dormant after 30 days without activity
    churned_after_days: int = Field(90, ge=1)  # seed doc: churned after 90
    # a user active again after a dormant-length gap counts as returning for this long
    returning_window_days: int = Field(30, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "LifecycleRules":
        if not self.new_days <= self.growth_days:
            raise ValueError("need new_days <= growth_days")
        if not self.dormant_after_days < self.churned_after_days:
            raise ValueError("need dormant_after_days < churned_after_days")
        return self


class Condition(_Section):
    """One test on a profile feature: ``top`` share of the shop's users, or an absolute bound."""

    feature: str
    top: float | None = Field(None, gt=0, le=1)  # e.g. 0.15 = in the top 15% of users
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> "Condition":
        if sum(v is not None for v in (self.top, self.min, self.max)) != 1:
            raise ValueError(f"condition on {self.feature!r} needs exactly one of top, min, max")
        return self


class TierRule(_Section):
    """All conditions must hold (AND); a tier matches when any of its rules does (OR)."""

    when: list[Condition] = Field(min_length=1)


class TierSpec(_Section):
    name: Literal["co_builder", "engaged", "regular", "explorer"]
    target_share: tuple[float, float]  # (low, high) share of users this tier aims at
    rules: list[TierRule] = Field(default_factory=list)

    @field_validator("target_share")
    @classmethod
    def _share_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1] <= 1:
            raise ValueError("target_share must be (low, high) with 0 <= low <= high <= 1")
        return v


def _c(feature: str, **test: float) -> Condition:
    return Condition(feature=feature, **test)


# seed doc: explorer ~40-50%, regular ~30-40%, engaged ~10-15%, co-builder ~5-10%.
# Ordered from the top tier down; the first tier whose rule matches wins; explorer is the rest.
DEFAULT_TIERS = (
    TierSpec(
        name="co_builder",
        target_share=(0.05, 0.10),
        rules=[
            # community contributors who also buy: the 品牌共建者 of the domain
            TierRule(when=[_c("community_actions", top=0.10), _c("community_actions", min=3),
                           _c("orders", min=2), _c("recency_days", max=90)]),
            TierRule(when=[_c("value_score", top=0.06), _c("recency_days", max=180)]),
        ],
    ),
    TierSpec(
        name="engaged",
        target_share=(0.10, 0.15),
        rules=[
            TierRule(when=[_c("value_score", top=0.18), _c("recency_days", max=365)]),
            TierRule(when=[_c("interaction_depth", top=0.15), _c("interaction_depth", min=5),
                           _c("orders", min=1), _c("recency_days", max=90)]),
        ],
    ),
    TierSpec(
        name="regular",
        target_share=(0.30, 0.40),
        rules=[TierRule(when=[_c("orders", min=1), _c("value_score", top=0.55)])],
    ),
    TierSpec(name="explorer", target_share=(0.40, 0.50), rules=[]),
)


class TierRules(_Section):
    """Value tiers (用户价值分层), ordered top down; data-relative via ``top`` conditions."""

    tiers: list[TierSpec] = Field(default_factory=lambda: list(DEFAULT_TIERS))

    @model_validator(mode="after")
    def _all_tiers_once(self) -> "TierRules":
        names = [t.name for t in self.tiers]
        if sorted(names) != sorted(TIERS):
            raise ValueError(f"tiers must list each of {list(TIERS)} exactly once, got {names}")
        if self.tiers[-1].rules:
            raise ValueError(f"the last tier ({self.tiers[-1].name}) is the fallback and takes no rules")
        return self


class RFMRules(_Section):
    """RFM 1-5 scores and the 8-cell grid."""

    bins: int = Field(5, ge=2, le=10)  # seed doc: 1-5 quantile scores
    # high/low against the population (seed doc); "mean" is the usual 高于平均值 split
    split: Literal["mean", "median"] = "mean"


class ProfileSettings(_Section):
    """What counts as what when profiling."""

    # monetary window in days before as_of; None = all history (issue #2 default)
    monetary_window_days: int | None = Field(None, ge=1)
    interaction_events: list[str] = Field(
        default_factory=lambda: [
            "add_to_cart", "checkin", "share", "review", "post", "comment", "like",
            "favorite", "use", "watch", "redeem", "invite",
        ]
    )
    community_events: list[str] = Field(
        default_factory=lambda: ["share", "review", "post", "comment", "invite"]
    )


class IngestSettings(_Section):
    chunk_rows: int = Field(200_000, ge=1)  # rows per streamed chunk: bounds memory on big files
    # timestamps more than this far in the future (clock skew allowance) are rejected
    future_tolerance_hours: float = Field(24.0, ge=0)
    # timestamps before this day are rejected: Excel's zero date 1899-12-30 and epoch 0 are
    # blanks in disguise (CDNOW starts in 1997, so the default leaves room for old data)
    earliest_date: dt_.date = dt_.date(1990, 1, 1)
    # source status -> canonical status; extends (and overrides) the built-in vocabulary
    status_map: dict[str, str] = Field(default_factory=dict)
    # source event name -> canonical event name; extends the built-in vocabulary
    event_map: dict[str, str] = Field(default_factory=dict)
    # other currency -> units of the shop currency (e.g. USD = 7.1); rows in a currency
    # without a rate are rejected rather than summed with the shop's own money
    currency_rates: dict[str, float] = Field(default_factory=dict)

    @field_validator("status_map")
    @classmethod
    def _known_statuses(cls, v: dict[str, str]) -> dict[str, str]:
        for source, status in v.items():
            if status not in ORDER_STATUSES:
                raise ValueError(f"{source!r} = {status!r}: status must be one of {', '.join(ORDER_STATUSES)}")
        return v

    @field_validator("currency_rates")
    @classmethod
    def _positive_rates(cls, v: dict[str, float]) -> dict[str, float]:
        for code, rate in v.items():
            if not rate > 0:
                raise ValueError(f"{code} = {rate}: a rate must be a positive number")
        return {code.upper(): rate for code, rate in v.items()}


class RenewalSettings(_Section):
    """Membership renewals (会员续费): which SKUs are memberships and how long a term lasts."""

    # SKU (or glob pattern with * and ?) -> days one paid term lasts. The exact SKUs are the
    # shop simulator's (datasets/shop.py); the patterns are the usual Chinese names of
    # memberships and passes (月卡 30 days, 季卡 90, 年卡 365; 连续包月 renews monthly). An
    # exact SKU wins over a pattern; among patterns the one with the most literal characters
    # wins, so "*半年卡*" beats "*年卡*" whatever the order in the file.
    plans: dict[str, int] = Field(
        default_factory=lambda: {
            "vip-month": 30, "vip-month-auto": 30, "svip-month": 30, "svip-month-plus": 30,
            "vip-quarter": 90, "vip-year": 365,
            "*周卡*": 7, "*月卡*": 30, "*季卡*": 90, "*半年卡*": 182, "*年卡*": 365,
            "*月度会员*": 30, "*季度会员*": 90, "*年度会员*": 365,
            "*连续包月*": 30, "*连续包季*": 90, "*连续包年*": 365,
        }  # fmt: skip
    )
    # an order of the same plan at most this many days after a term ends renews it (a week,
    # for members who pay a few days late); a later one starts a new membership
    grace_days: int = Field(7, ge=0)
    # discount per month for the residual value, as models/clv.py (1% a month); each plan
    # gets it for its own term length, (1 + rate) ** (term_days / 30.4375) - 1
    discount_rate_monthly: float = Field(0.01, ge=0, lt=1)

    @field_validator("plans")
    @classmethod
    def _positive_terms(cls, v: dict[str, int]) -> dict[str, int]:
        for sku, days in v.items():
            if not sku.strip():
                raise ValueError("a plan needs a SKU or pattern, got an empty key")
            if days < 1:
                raise ValueError(f"{sku!r} = {days}: a term lasts at least 1 day")
        return v


class SegmentDefinition(_Section):
    """A named segment (``[segments.NAME]``): a condition over profile and prediction columns
    (activate/segments.py), with the names an operator reads."""

    where: str
    label_zh: str = ""
    label_en: str = ""


class RealisationSettings(_Section):
    """Value realisation (价值实现指数): which purchases carry use, and what counts as using them."""

    # category -> usage events: "event" or "event:feature" (the event's ``feature`` property).
    # The categories and features are the shop simulator's (datasets/shop.py): a course is
    # watched, a membership's perks are used (logging in is how members reach them), game
    # items and 点券 are used in play (点券 are also redeemed).
    usage_events: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "课程": ["watch", "use:course_video"],
            "会员": ["use:membership_perk", "login"],
            "游戏道具": ["use:play"],
            "点券": ["redeem", "use:play"],
        }
    )
    derived_events: list[str] = Field(default_factory=lambda: ["share", "review"])  # spec: share, review
    # spec: purchases not used within N days (default 14) go to the early-warning list
    unused_after_days: int = Field(14, ge=1)
    # use is counted this many days after each purchase ("watched 2 of 12 chapters in 30 days")
    window_days: int = Field(30, ge=1)
    # without progress properties, depth is days of use against this target (twice a week
    # for a month: a habit rather than a try)
    depth_target_days: int = Field(8, ge=1)
    # weights of the components in the 0-100 index; use at all and depth count most, the
    # speed of first use next, shares and reviews are a bonus
    weight_used: float = Field(0.3, ge=0)
    weight_speed: float = Field(0.2, ge=0)
    weight_depth: float = Field(0.4, ge=0)
    weight_derived: float = Field(0.1, ge=0)

    @field_validator("usage_events")
    @classmethod
    def _rules(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for category, rules in v.items():
            for rule in rules:
                event, _, feature = rule.partition(":")
                if not event.strip() or (":" in rule and not feature.strip()):
                    raise ValueError(f"{category!r}: {rule!r} must be 'event' or 'event:feature'")
        return v

    @model_validator(mode="after")
    def _some_weight(self) -> "RealisationSettings":
        if self.weight_used + self.weight_speed + self.weight_depth + self.weight_derived <= 0:
            raise ValueError("at least one weight must be positive")
        if self.unused_after_days > self.window_days:
            raise ValueError("need unused_after_days <= window_days (use is only looked for in the window)")
        return self


class TagSettings(_Section):
    """Behaviour tags (行为标签): each tag's rule. Shares are of the user's purchase orders."""

    min_orders: int = Field(3, ge=1)  # share-based tags need this many orders: 1 of 1 is no habit
    # price sensitivity: a line is at a promotion price when it is at least this % below the
    # SKU's highest price in the data (5%: rounding and tiny price moves are not promotions)
    promo_min_discount_percent: int = Field(5, ge=1, le=99)
    price_sensitive_share: float = Field(0.5, gt=0, le=1)  # most orders discounted
    # order columns that mark a discount when they hold values (optional canonical columns)
    discount_amount_col: str = "discount_amount"
    coupon_col: str = "coupon_id"
    # loyalty: top category's share of spend, and orders of one SKU
    category_loyal_share: float = Field(0.8, gt=0, le=1)
    brand_loyal_share: float = Field(0.8, gt=0, le=1)  # top brand's share of item spend
    repeat_item_orders: int = Field(3, ge=2)
    # social: these events (group_buy = 拼团 when the shop maps it) in the last window_days
    social_events: list[str] = Field(default_factory=lambda: ["share", "invite", "group_buy"])
    social_min_events: int = Field(3, ge=1)
    window_days: int = Field(90, ge=1)  # a quarter: recent enough to act on
    # time habits, shop-local hours [start, end) (a start above the end wraps past midnight)
    night_hours: tuple[int, int] = (22, 5)
    lunch_hours: tuple[int, int] = (11, 14)  # 午休 11:30-13:30 falls inside
    time_habit_share: float = Field(0.5, gt=0, le=1)  # night or lunch: half of the orders
    weekend_share: float = Field(0.6, gt=0, le=1)  # 2 of 7 days: 0.29 by chance; 0.6 is a habit
    # new-product affinity: bought within new_product_days of the SKU's first sale; SKUs whose
    # first sale falls in the data's first new_product_days are not counted (they were not new)
    new_product_days: int = Field(30, ge=1)
    new_product_min: int = Field(2, ge=1)
    new_product_share: float = Field(0.5, gt=0, le=1)

    @field_validator("night_hours", "lunch_hours")
    @classmethod
    def _hours(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (0 <= v[0] <= 23 and 0 <= v[1] <= 24 and v[0] != v[1]):
            raise ValueError(f"{list(v)}: hours must be [start, end] with 0-23 and start != end")
        return v


class DensitySettings(_Section):
    """Activity density x value grid (行为密度×价值预期)."""

    window_days: int = Field(30, ge=1)  # spec: active days per month
    # lower bounds of the density bands above "none" (0 days): 1-3, 4-10, 11+ active days
    density_edges: tuple[int, int, int] = (1, 4, 11)
    # active = any event or purchase; ["login"] counts logins only
    activity_events: list[str] | None = None
    # value bands among payers: quantile cuts (terciles)
    value_cuts: tuple[float, float] = (1 / 3, 2 / 3)

    @field_validator("density_edges")
    @classmethod
    def _increasing(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if not 1 <= v[0] < v[1] < v[2]:
            raise ValueError(f"{list(v)}: need 1 <= first < second < third")
        return v

    @field_validator("value_cuts")
    @classmethod
    def _cuts(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1] < 1:
            raise ValueError(f"{list(v)}: need 0 < low < high < 1")
        return v


class AlertSettings(_Section):
    """Early warnings (流失预警): the rules ``userstrata alerts`` evaluates (measure/alerts.py)."""

    # spec: active days in the last 14 days under 50% of the rate of the 60 days before
    drop_recent_days: int = Field(14, ge=1)
    drop_baseline_days: int = Field(60, ge=1)
    drop_ratio: float = Field(0.5, gt=0, le=1)
    # a baseline of 1-3 active days in 60 is too thin to call a drop
    drop_min_baseline_days: int = Field(4, ge=1)
    # a high-tier user silent this long (no event, no purchase)
    silent_tiers: list[str] = Field(default_factory=lambda: ["co_builder", "engaged"])
    silent_days: int = Field(14, ge=1)
    # spec: a course or membership bought and not used for 14 days
    unused_categories: list[str] = Field(default_factory=lambda: ["课程", "会员"])
    usage_events: list[str] = Field(default_factory=lambda: ["use", "watch", "login", "redeem"])
    unused_days: int = Field(14, ge=1)
    # spec: no login for 2 consecutive weeks after buying a course
    course_categories: list[str] = Field(default_factory=lambda: ["课程"])
    no_login_days: int = Field(14, ge=1)
    # purchases older than this are not watched any more (an old unused course is history)
    purchase_lookback_days: int = Field(90, ge=1)
    # a check-in streak of at least this many days that has no check-in yet on the day
    streak_days: int = Field(7, ge=2)
    # memberships ending within this many days whose P(renew) (renewals model) is below the cut
    expiry_days: int = Field(7, ge=0)
    renew_probability_below: float = Field(0.5, gt=0, le=1)
    # segment metrics: down more than this against the same weekday of the previous weeks,
    # on each of the last ``segment_days`` days, with at least ``min_volume`` a day at baseline
    segment_by: list[str] = Field(default_factory=lambda: ["tier", "lifecycle"])
    segment_metrics: list[Literal["active_users", "orders", "conversion", "gmv"]] = Field(
        default_factory=lambda: ["active_users", "orders", "conversion", "gmv"]
    )
    conversion_events: tuple[str, str] = ("page_view", "add_to_cart")  # the simulator's funnel
    segment_drop: float = Field(0.15, gt=0, lt=1)  # spec: down more than 15%
    segment_days: int = Field(3, ge=1, le=7)  # spec: 3 consecutive days (at most a week)
    baseline_weeks: int = Field(4, ge=1)  # the same weekday of the 4 weeks before
    min_volume: float = Field(20.0, ge=0)  # users (orders for orders and GMV) a day at baseline


class CadenceSettings(_Section):
    """Contact cadence (触达频次): caps per user across all playbooks, quiet hours, send hours."""

    # seed doc: ordinary users 2-3 touches a week, high value 3-5; the upper bound is the cap
    weekly_caps: dict[str, int] = Field(
        default_factory=lambda: {"explorer": 3, "regular": 3, "engaged": 5, "co_builder": 5}
    )
    # seed doc: dormant users 1-2 touches a month; these stages get the monthly cap instead
    dormant_stages: list[str] = Field(default_factory=lambda: ["dormant", "churned"])
    dormant_monthly_cap: int = Field(2, ge=0)
    # seed doc: quiet hours 23:00-08:00 shop time, [start, end) wrapping past midnight
    quiet_start_hour: int = Field(23, ge=0, le=23)
    quiet_end_hour: int = Field(8, ge=0, le=23)
    # fallback send hours when neither the user nor the shop has activity (evening after work;
    # weekend late morning)
    peak_hour_weekday: int = Field(20, ge=0, le=23)
    peak_hour_weekend: int = Field(10, ge=0, le=23)
    cooldown_days: int = Field(7, ge=1)  # the same playbook to the same user at most once a week
    # channels that need an explicit opt-in row (e.g. ["sms"] for marketing texts)
    consent_required: list[str] = Field(default_factory=list)
    cart_days: int = Field(3, ge=1)  # carts this recent count as abandoned carts to remind
    salt: str = "userstrata"  # experiment assignment salt: change it to reshuffle every experiment

    @field_validator("weekly_caps")
    @classmethod
    def _every_tier(cls, v: dict[str, int]) -> dict[str, int]:
        if sorted(v) != sorted(TIERS) or any(c < 0 for c in v.values()):
            raise ValueError(f"give a cap >= 0 for each of {list(TIERS)}, got {v}")
        return v

    @model_validator(mode="after")
    def _quiet_and_names(self) -> "CadenceSettings":
        if self.quiet_start_hour == self.quiet_end_hour:
            raise ValueError("quiet_start_hour and quiet_end_hour must differ")
        wrong = [s for s in self.dormant_stages if s not in LIFECYCLE_STAGES]
        if wrong:
            raise ValueError(f"dormant_stages {wrong}: stages are {', '.join(LIFECYCLE_STAGES)}")
        channels = ("sms", "wechat_template", "wecom", "app_push", "email", "community")
        wrong = [c for c in self.consent_required if c not in channels]
        if wrong:
            raise ValueError(f"consent_required {wrong}: channels are {', '.join(channels)}")
        return self


# what can start a playbook (activate/playbooks.py computes when each fires)
TriggerName = Literal[
    "registered_1h", "registered_6h", "registered_24h", "browse_no_buy", "cart_abandoned", "cross_sell",
    "review_thanks", "birthday", "dormant_days", "streak_at_risk", "membership_expiring", "purchase_unused",
]  # fmt: skip


class PlaybookSettings(_Section):
    """One playbook (``[[playbooks]]``): who (a segment, a condition or a trigger) gets what.

    A playbook with the name of a built-in one changes only the keys it gives
    (``enabled = false`` switches it off); completeness is checked in activate/playbooks.py.
    """

    name: str = Field(min_length=1)
    segment: str | None = None  # a segment name: built-in or [segments.NAME]
    where: str | None = None  # or a condition over the profile
    trigger: TriggerName | None = None
    trigger_days: int | None = Field(None, ge=1)  # dormant_days: N; cross_sell: days after the order; ...
    trigger_hours: int | None = Field(None, ge=1)  # browse_no_buy: hours after the view (default 24)
    trigger_event: str | None = None  # browse_no_buy: the view event; review_thanks: the review event
    channel: Literal["sms", "wechat_template", "wecom", "app_push", "email", "community"] | None = None
    template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    offer_type: Literal["none", "coupon", "discount", "gift", "points", "trial"] = "none"
    offer_value: float = Field(0.0, ge=0)
    priority: int = Field(50, ge=0, le=100)  # higher wins when caps bite
    goal: Literal["upgrade", "first_order", "recall", "renewal", "care"] | None = None
    cooldown_days: int | None = Field(None, ge=1)
    experiment: str | None = None  # default: the playbook's name when it has variants
    variants: dict[str, float] = Field(default_factory=dict)  # arm -> share; "holdout" is not sent
    enabled: bool = True
    label_zh: str = ""
    label_en: str = ""

    @field_validator("variants")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        if v and (any(s < 0 for s in v.values()) or abs(sum(v.values()) - 1) > 1e-9):
            raise ValueError(f"{v}: shares must be >= 0 and add up to 1")
        return v


class IdentitySettings(_Section):
    """Identity stitching (统一用户ID) and direct identifiers (PII) at load time."""

    # spec: one phone linked to hundreds of accounts is a shared device or a test account; an id
    # with more distinct links than this is listed as a conflict instead of merged through
    max_links: int = Field(20, ge=1)
    # identity sources whose ids are what events carry in anonymous_id (device, cookie, visitor)
    anonymous_sources: list[str] = Field(default_factory=lambda: ["anonymous_id", "device_id"])
    # identities.source values whose external_id is a direct identifier (hashed unless --keep-pii)
    pii_sources: list[str] = Field(default_factory=lambda: ["phone", "mobile", "email", "手机号"])
    # users.attributes keys that hold direct identifiers (compared case- and separator-folded)
    pii_keys: list[str] = Field(
        default_factory=lambda: ["phone", "mobile", "email", "tel", "手机号", "手机", "电话", "联系电话", "邮箱"]
    )


class RecommendSettings(_Section):
    """Items in the message (activate/recommend.py)."""

    k: int = Field(3, ge=1, le=20)
    # named paths of SKUs, in the order they are meant to be bought (a course's learning path)
    sequences: dict[str, list[str]] = {}
    min_support: float = Field(0.002, gt=0, le=1)  # co-purchase pairs in at least 0.2% of baskets


class SparkSettings(_Section):
    """The Spark session a workspace named ``spark`` (or ``spark:MASTER``) opens (docs/engines.md)."""

    master: str | None = None  # e.g. "local[2]", "yarn", "spark://host:7077"; None: spark-submit's
    tables: str | None = None  # folder with orders(.parquet), events ... or "db:NAME" (a Hive database)
    format: Literal["parquet", "delta"] = "parquet"


class EngineSettings(_Section):
    """Limits for the embedded DuckDB engine, and the Spark session."""

    # e.g. "2GB" or "50%" (of RAM): DuckDB spills to disk beyond it (docs/engines.md, "Memory").
    # None: userstrata's default, 1GB or a quarter of RAM if that is less, which keeps a
    # 1M-user profile under 2 GiB; "80%" is DuckDB's own default
    memory_limit: str | None = Field(None, pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)$")
    threads: int | None = Field(None, ge=1)  # None: DuckDB's default, one per core
    spark: SparkSettings = SparkSettings()


class Settings(_Section):
    """All of userstrata's knobs; load with ``Settings.load()``."""

    timezone: str = "Asia/Shanghai"  # seed doc: shop time zone default
    currency: str = "CNY"
    lifecycle: LifecycleRules = LifecycleRules()
    tiers: TierRules = TierRules()
    rfm: RFMRules = RFMRules()
    profile: ProfileSettings = ProfileSettings()
    ingest: IngestSettings = IngestSettings()
    engine: EngineSettings = EngineSettings()
    identity: IdentitySettings = IdentitySettings()
    renewals: RenewalSettings = RenewalSettings()
    realisation: RealisationSettings = RealisationSettings()
    tags: TagSettings = TagSettings()
    density: DensitySettings = DensitySettings()
    alerts: AlertSettings = AlertSettings()
    segments: dict[str, SegmentDefinition] = {}
    recommend: RecommendSettings = RecommendSettings()
    cadence: CadenceSettings = CadenceSettings()
    playbooks: list[PlaybookSettings] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)")
        return v

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Settings":
        """Read ``path`` (or ``./userstrata.toml`` if it exists); defaults otherwise."""
        if path is None:
            path = Path(CONFIG_FILE)
            if not path.exists():
                return cls()
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "settings") -> "Settings":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            raise ConfigError(
                f"{source}: {key}: {msg}",
                hint="see docs/configuration.md for every key and its allowed values",
            ) from None
