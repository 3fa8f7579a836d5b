"""Canonical tables: column names and types are the contract every layer builds on.

Timestamps are naive UTC (``timestamp``); the shop's time zone lives in ``Settings``
and is applied only where days and hours matter (features, quiet hours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import ibis.expr.datatypes as dt


@dataclass(frozen=True)
class TableSpec:
    """One canonical table: its columns, which are required on input, and its key."""

    name: str
    schema: ibis.Schema
    required: tuple[str, ...]
    key: tuple[str, ...]
    # input columns whose absence is filled with a default (not an error)
    defaults: dict[str, object] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


TS = dt.Timestamp()  # naive, UTC by convention

USERS = TableSpec(
    "users",
    ibis.schema(
        {"user_id": dt.string, "registered_at": TS, "channel": dt.string, "attributes": dt.string}
    ),
    required=("user_id",),
    key=("user_id",),
)

ORDERS = TableSpec(
    "orders",
    ibis.schema(
        {
            "order_id": dt.string,
            "user_id": dt.string,
            "ts": TS,
            "amount": dt.float64,
            "currency": dt.string,
            "status": dt.string,
            "refund_amount": dt.float64,
            "refunded_at": TS,
            # optional (NULL when the export has no such column): the order's discount in the
            # shop's currency (amount is what was paid after it) and the coupon used, if any
            "discount_amount": dt.float64,
            "coupon_id": dt.string,
        }
    ),
    required=("order_id", "user_id", "ts", "amount"),
    key=("order_id",),
    defaults={"status": "paid", "refund_amount": 0.0},
)

ORDER_ITEMS = TableSpec(
    "order_items",
    ibis.schema(
        {
            "order_id": dt.string,
            # the line's place in its order (1, 2, ...): the same product twice in one order is
            # two lines; numbered in file order when the export has no line column
            "line_no": dt.int64,
            "sku": dt.string,
            "category": dt.string,
            "quantity": dt.int64,
            "price": dt.float64,
            # optional: the unit price before any discount (划线价/原价; never below price) and the brand
            "list_price": dt.float64,
            "brand": dt.string,
        }
    ),
    required=("order_id", "sku", "price"),
    key=("order_id", "line_no"),
    defaults={"quantity": 1},
)

EVENTS = TableSpec(
    "events",
    ibis.schema(
        {
            "event_id": dt.string,
            "user_id": dt.string,
            "anonymous_id": dt.string,
            "session_id": dt.string,
            "ts": TS,
            "event": dt.string,
            "properties": dt.string,
        }
    ),
    # event_id is optional on input: it is derived from the row's content when absent,
    # so that re-loading the same events never double counts
    required=("ts", "event"),
    key=("event_id",),
)

IDENTITIES = TableSpec(
    "identities",
    # one link per row: (source, external_id) belongs with user_id, or, when linked_source names
    # another source, with that source's id in user_id (openid <-> unionid <-> phone); one external
    # id may have many links (a shared phone is then found and capped: ingest/identity.py)
    ibis.schema({"source": dt.string, "external_id": dt.string, "user_id": dt.string, "linked_source": dt.string}),
    required=("source", "external_id", "user_id"),
    key=("source", "external_id", "linked_source", "user_id"),
    defaults={"linked_source": "user_id"},
)

TOUCHES = TableSpec(
    "touches",
    ibis.schema(
        {
            "touch_id": dt.string,
            "user_id": dt.string,
            "ts": TS,
            "channel": dt.string,
            "campaign": dt.string,
            "variant": dt.string,
            "outcome": dt.string,
        }
    ),
    required=("touch_id", "user_id", "ts", "channel"),
    key=("touch_id",),
)

CANONICAL: dict[str, TableSpec] = {
    spec.name: spec for spec in (USERS, ORDERS, ORDER_ITEMS, EVENTS, IDENTITIES, TOUCHES)
}

# Bookkeeping tables of the store (not user data).
REJECTS_SCHEMA = ibis.schema(
    {
        "load_id": dt.string,
        "table_name": dt.string,
        "file": dt.string,
        "row_number": dt.int64,  # as a spreadsheet shows it (header = row 1); record position for Parquet/JSON
        "column_name": dt.string,
        "value": dt.string,
        "reason": dt.string,
        "raw": dt.string,  # the whole input row as JSON, so nothing is lost
        "loaded_at": TS,
        "reason_zh": dt.string,
    }
)

LOADS_SCHEMA = ibis.schema(
    {
        "load_id": dt.string,
        "table_name": dt.string,
        "file": dt.string,
        "file_sha256": dt.string,
        "encoding": dt.string,
        "rows_read": dt.int64,
        "rows_inserted": dt.int64,
        "rows_updated": dt.int64,
        "rows_unchanged": dt.int64,
        "rows_rejected": dt.int64,
        "loaded_at": TS,
        "undone_at": TS,  # set by `unload`; the load's rows are gone, its record stays
        "notes": dt.string,  # JSON: per-table counts and how amounts were read
    }
)

# Every canonical table carries the load that wrote each row's current version; the
# versions a later load replaced are kept in ``<table>_versions`` (same columns plus
# ``superseded_by`` and ``superseded_at``), so a load can be undone exactly.
LOAD_ID = "load_id"
VERSIONS_SUFFIX = "_versions"

# Canonical order statuses. Ingest maps every source status (交易成功, 已关闭, TRADE_CLOSED...)
# to one of these (ingest/vocab.py, extended by [ingest.status_map]); a value it cannot map
# is rejected with its count reported, never counted as a purchase.
ORDER_STATUSES = (
    "paid", "completed", "refunding", "partially_refunded", "refunded", "cancelled", "awaiting_payment",
)  # fmt: skip
# Purchases: the order was paid. Refunds are netted by amount and date, so a refunded order
# still happened; an unpaid or closed order never did.
PURCHASE_STATUSES = ("paid", "completed", "refunding", "partially_refunded", "refunded")
NON_PURCHASE_STATUSES = ("cancelled", "awaiting_payment")

# Canonical event names. Source names (浏览, 加购, 签到, 观看...) are mapped at load time
# (ingest/vocab.py, extended by [ingest.event_map]); other names are kept as they come.
EVENT_NAMES = (
    "page_view", "search", "add_to_cart", "checkout", "purchase", "checkin", "share", "review",
    "post", "comment", "like", "favorite", "invite", "use", "watch", "redeem", "login", "register",
)  # fmt: skip

PROFILE_COLUMNS = (
    "user_id",
    "first_ts",
    "last_ts",
    "tenure_days",
    "recency_days",
    "frequency",
    "orders",
    "monetary",
    "aov",
    "refund_rate",
    "interaction_depth",
    "top_category",
    "category_share",
    "lifecycle",
    "tier",
    "tier_reason",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_cell",
)

LIFECYCLE_STAGES = ("potential", "new", "growth", "mature", "dormant", "churned", "returning")
TIERS = ("explorer", "regular", "engaged", "co_builder")
RFM_CELLS = (
    "important_value",
    "important_develop",
    "important_keep",
    "important_retain",
    "general_value",
    "general_develop",
    "general_keep",
    "general_retain",
)
