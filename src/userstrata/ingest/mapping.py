"""Which source column feeds which canonical column.

Explicit ``mapping`` ({canonical: source}, the CLI's ``--map order_id=单号``) wins; then a
source column named like the canonical column; then a small table of synonyms that covers
Chinese shop exports (Taobao/Tmall, JD, Youzan, Weidian, Douyin, 小鹅通: 订单号, 实付金额, 下单时间,
优惠金额, 优惠券, 原价/划线价, 品牌...) and
common English names. Names are compared normalised: case-folded, without spaces, ``_``,
``-``, ``.`` and without a trailing unit in brackets ("实付金额(元)" is "实付金额").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from userstrata.errors import InputError
from userstrata.schema import TableSpec

# Synonyms per canonical column, in priority order: when two source columns match, the
# earlier synonym wins (实付金额 = what was actually paid beats 订单金额 = list total).
# A synonym may appear under two canonical columns only if no table has both
# (created_at is ``ts`` for orders/events and ``registered_at`` for users).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "order_id": ("订单号", "单号", "订单编号", "订单id", "主订单编号", "orderno", "ordernumber", "ordercode"),
    "user_id": (
        "用户id", "用户编号", "会员id", "会员编号", "买家id", "客户id", "customerid", "memberid",
        "buyerid", "clientid", "uid",
    ),
    "anonymous_id": ("匿名id", "设备id", "访客id", "anonid", "deviceid", "visitorid", "cookieid"),
    "session_id": ("会话id", "sessionid", "session"),
    "event_id": ("事件id", "eventid"),
    "ts": (
        "下单时间", "支付时间", "付款时间", "创建时间", "订单创建时间", "发生时间", "时间", "日期",
        "orderdate", "ordertime", "createdat", "timestamp", "datetime", "eventtime", "time", "date",
    ),
    # "price"/"total"/"revenue" mean the order's amount only in orders (the one table with
    # an amount); in order_items "price" is the canonical unit price itself
    "amount": (
        "订单实付金额", "实付金额", "实付款", "订单实付款", "支付金额", "付款金额", "订单支付金额", "金额",
        "订单金额", "订单总额", "订单总金额", "orderamount", "paidamount", "payamount", "total",
        "totalamount", "ordertotal", "revenue", "price",
    ),
    # item-level exports: what one line cost (the order's amount is their sum)
    "line_amount": (
        "商品实付金额", "商品实付", "商品金额", "商品总价", "商品小计", "小计", "商品应付金额",
        "lineamount", "linetotal", "itemamount", "itemtotal", "subtotal",
    ),
    "line_no": ("行号", "明细行号", "子订单序号", "lineno", "linenumber", "line"),
    "refund_amount": ("退款金额", "退款", "refund", "refundamount", "refundedamount"),
    "refunded_at": ("退款时间", "refundtime", "refunddate", "refundedtime"),
    "status": ("订单状态", "状态", "交易状态", "orderstatus", "state"),
    "currency": ("币种", "货币", "currencycode"),
    "registered_at": ("注册时间", "注册日期", "createdat", "signupat", "signupdate", "registeredtime", "registrationdate"),
    "channel": ("渠道", "来源渠道", "注册渠道", "channelname"),
    # a product's name stands in for its code when an export has no code column
    "sku": (
        "商品id", "商品编号", "商品编码", "规格编码", "sku", "skuid", "productid", "itemid", "商品名称",
        "商品", "课程名称", "商品标题", "productname", "itemname",
    ),
    "category": ("类目", "品类", "分类", "商品类目", "商品分类", "productcategory", "categoryname"),
    "quantity": ("数量", "购买数量", "件数", "qty"),
    "price": ("单价", "价格", "商品单价", "unitprice", "itemprice"),
    "event": ("事件", "行为", "事件类型", "行为类型", "eventname", "eventtype", "action"),
    "touch_id": ("触达id", "touchid"),
    "campaign": ("活动", "活动名称", "campaignname"),
    "variant": ("分组", "实验组", "variantname"),
    "outcome": ("结果",),
    "external_id": ("外部id", "externalid"),
    # discounts (Youzan, Weidian, Douyin, 小鹅通 exports): the order's discount and its coupon;
    # 优惠券 alone is the coupon (its name or code), never its value (优惠券金额 is not matched)
    "discount_amount": (
        "优惠金额", "订单优惠金额", "优惠总金额", "店铺优惠", "店铺优惠金额", "商家优惠", "商家优惠金额", "优惠合计",
        "折扣金额", "discount", "discountamount", "totaldiscount",
    ),
    "coupon_id": ("优惠券id", "优惠券编号", "优惠券编码", "优惠券码", "券码", "优惠券", "优惠券名称", "couponid",
                  "couponcode", "coupon"),
    # the unit price before the discount (划线价 is the struck-through price on the product page)
    "list_price": ("商品原价", "原价", "划线价", "商品划线价", "吊牌价", "市场价", "listprice", "originalprice",
                   "msrp"),
    "brand": ("品牌", "品牌名称", "商品品牌", "brandname"),
}

# synonyms that stand in only when nothing better is there (no ambiguity warning beside a better one)
_FALLBACKS = frozenset({"商品名称", "商品", "课程名称", "商品标题", "productname", "itemname"})

# users keep unknown columns in attributes, events in properties (nothing dropped)
JSON_EXTRAS = {"users": "attributes", "events": "properties"}

_BRACKETED_SUFFIX = re.compile(r"\s*[\(（\[【][^\)）\]】]*[\)）\]】]\s*$")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def normalise(name: str) -> str:
    """A column name as compared for matching: '实付金额(元)' -> '实付金额', 'Order ID' -> 'orderid'."""
    name = name.replace("\ufeff", "").strip()
    stripped = _BRACKETED_SUFFIX.sub("", name)
    return _SEPARATORS.sub("", (stripped or name).casefold())


@dataclass(frozen=True)
class ColumnPlan:
    """How one file's columns feed one canonical table."""

    source_names: tuple[str, ...]  # the file's column names (made unique), by position
    sources: dict[str, int]  # canonical column -> position of its source column
    extras: tuple[int, ...]  # positions of the other columns
    json_column: str | None  # canonical column that receives the extras as JSON, if any
    warnings: tuple[tuple[str, str], ...]  # (English, Chinese)

    @property
    def ignored_columns(self) -> tuple[str, ...]:
        if self.json_column:
            return ()
        return tuple(self.source_names[i] for i in self.extras)

    @property
    def column_map(self) -> tuple[tuple[str, str], ...]:
        return tuple((col, self.source_names[i]) for col, i in self.sources.items())


def unique_names(names: list[str | None]) -> tuple[str, ...]:
    """Header names made usable: BOM/space stripped, blanks named, repeats suffixed _2, _3..."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        base = (name or "").replace("\ufeff", "").strip() or f"column_{i + 1}"
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return tuple(out)


def _find(name: str, names: tuple[str, ...]) -> int | None:
    if name in names:
        return names.index(name)
    wanted = normalise(name)
    for i, candidate in enumerate(names):
        if normalise(candidate) == wanted:
            return i
    return None


def plan_columns(
    spec: TableSpec,
    names: tuple[str, ...],
    mapping: dict[str, str] | None,
    *,
    file: str,
    check_required: bool = True,
) -> ColumnPlan:
    """Resolve ``names`` (the file's columns) against ``spec``; InputError on a bad mapping
    or a missing required column, before anything is written."""
    listing = ", ".join(names) if names else "no columns"
    sources: dict[str, int] = {}
    for canonical, source in (mapping or {}).items():
        if canonical not in spec.columns:
            raise InputError(
                f"{file}: --map {canonical}={source}: {spec.name} has no column {canonical!r} "
                f"(columns: {', '.join(spec.columns)})"
            )
        pos = _find(source, names)
        if pos is None:
            raise InputError(
                f"{file}: --map {canonical}={source}: the file has no column {source!r} (file has: {listing})",
                hint="check the spelling against the file's header",
            )
        sources[canonical] = pos

    warnings: list[tuple[str, str]] = []
    normalised = [normalise(n) for n in names]
    claimed = set(sources.values())
    for canonical in spec.columns:
        if canonical in sources:
            continue
        # the canonical name itself first, then the synonyms in priority order
        wanted = (normalise(canonical),) + tuple(normalise(s) for s in SYNONYMS.get(canonical, ()))
        matches = [
            (wanted.index(n), i) for i, n in enumerate(normalised) if n in wanted and i not in claimed
        ]
        if not matches:
            continue
        matches.sort()
        pos = matches[0][1]
        sources[canonical] = pos
        claimed.add(pos)
        # a product's name beside its code is expected, not ambiguous
        others = [names[i] for _, i in matches[1:] if normalised[i] not in _FALLBACKS]
        if others:
            also = ", ".join(repr(o) for o in others)
            warnings.append((
                f"{file}: {canonical} read from {names[pos]!r}; {also} also looked like {canonical} "
                f"(pass --map {canonical}=COLUMN to choose another)",
                f"{file}：{canonical} 取自列 {names[pos]!r}；{also} 也像 {canonical}（可用 --map {canonical}=列名 指定）",
            ))

    if check_required:
        missing = [c for c in spec.required if c not in sources]
        if missing:
            which = "column" if len(missing) == 1 else "columns"
            quoted = ", ".join(repr(c) for c in missing)
            raise InputError(
                f"{file}: missing required {which} {quoted} (file has: {listing})",
                hint=f"map one with --map {missing[0]}=COLUMN",
            )
        if spec.name == "events" and "user_id" not in sources and "anonymous_id" not in sources:
            raise InputError(
                f"{file}: missing column 'user_id' or 'anonymous_id' (file has: {listing}); "
                "an event needs one of them",
                hint="map one with --map user_id=COLUMN",
            )

    extras = tuple(i for i in range(len(names)) if i not in set(sources.values()))
    return ColumnPlan(
        source_names=names,
        sources=sources,
        extras=extras,
        json_column=JSON_EXTRAS.get(spec.name),
        warnings=tuple(warnings),
    )
