"""A seeded shop whose true history is known, the files its back-ends export, and the truth.

The shop (time zone Asia/Shanghai; every time below is shop-local and naive) sells on three
back-ends: a Youzan mall (有赞, item-level order CSV in GBK), a Douyin store (抖店, xlsx with a
notes sheet first) and a 小鹅通 course shop (one line per order, UTF-8 with BOM). Members
(客户列表) and two event logs (行为 and 社区) are exported as CSV.

History
    Each order goes through a timeline of statuses: created (待付款) -> paid (待发货) ->
    shipped (已发货) -> completed (交易成功), or closed unpaid (交易关闭); some paid orders are
    later refunded in full (已退款) or in part (部分退款), once, with an amount and a time.
Exports
    The export of a window [start, end] (local days) taken at ``exported_at`` lists every order
    CREATED in the window with its state AS KNOWN at ``exported_at``: an order still unpaid
    then shows 待付款 and only a later, overlapping export shows it paid; a refund made after
    ``exported_at`` is not in that file.
Knowledge
    After a sequence of exports is loaded, what is known of an order is its state in the last
    file (in load order) that lists it; sequences here are loaded in the order they were
    exported, so that is its state at the latest ``exported_at`` among them. A refund made
    after that moment is unknown, and an order still unpaid then is not a purchase.
Truth as of a local day D (inclusive), given what is known
    - purchase: an order created on or before D whose known status is a paid one (paid,
      shipped, completed, partially refunded, refunded). Purchases are dated by their order
      time (下单时间, the one time every export carries), so an order created on D and paid
      on D + 1 is a purchase of D. An order closed unpaid, or still unpaid, never counts.
    - refund known by D: the known refund, if its refund time falls on or before D.
    - ``orders`` = purchases; ``monetary`` = sum of (amount - refund known by D), exact
      (``decimal.Decimal``); ``refunded_orders`` = purchases with a refund known by D;
      ``refund_total`` = sum of those refunds.
    - activity: registering (members export), a purchase (on its order day) or any event;
      ``interaction_depth`` = events up to D whose canonical name is in
      ``profile.interaction_events``.
    - ``lifecycle``: :func:`lifecycle_stage`, a day-by-day walk over the documented rules.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from userstrata.config import LifecycleRules, ProfileSettings

CENT = Decimal("0.01")
# Asia/Shanghai has had no daylight saving since 1991: local = UTC + 8 all year
UTC_OFFSET = dt.timedelta(hours=8)
PERIOD_START = dt.date(2024, 1, 1)
PERIOD_END = dt.date(2024, 12, 31)

PLATFORMS = ("youzan", "douyin", "xiaoetong")

# status keys of the history -> the text each back-end shows
STATUS_TEXT = {
    "youzan": {
        "awaiting_payment": "待付款", "paid": "待发货", "shipped": "已发货", "completed": "交易成功",
        "cancelled": "交易关闭", "refunded": "已退款", "partially_refunded": "部分退款",
    },
    "douyin": {
        "awaiting_payment": "待支付", "paid": "待发货", "shipped": "已发货", "completed": "已完成",
        "cancelled": "已关闭", "refunded": "已退款", "partially_refunded": "部分退款",
    },
    # a course is delivered when paid: no shipping, no completion, refunds are whole
    "xiaoetong": {
        "awaiting_payment": "待支付", "paid": "已支付", "cancelled": "已关闭", "refunded": "已退款",
    },
}  # fmt: skip
# What ingest is expected to map each source status to (schema.ORDER_STATUSES).
STATUS_CANONICAL = {
    "待付款": "awaiting_payment", "待支付": "awaiting_payment",
    "待发货": "paid", "已发货": "paid", "已支付": "paid",
    "交易成功": "completed", "已完成": "completed",
    "交易关闭": "cancelled", "已关闭": "cancelled",
    "已退款": "refunded", "部分退款": "partially_refunded",
}  # fmt: skip
PAID_KEYS = frozenset({"paid", "shipped", "completed", "refunded", "partially_refunded"})

# Chinese event names -> canonical names (schema.EVENT_NAMES); which log exports them
EVENT_CANONICAL = {
    "浏览": "page_view", "加购": "add_to_cart", "签到": "checkin", "分享": "share", "评价": "review",
    "发帖": "post", "收藏": "favorite", "邀请": "invite", "使用": "use", "观看": "watch",
}  # fmt: skip
EVENT_SOURCE = {
    "浏览": "behaviour", "加购": "behaviour", "收藏": "behaviour", "观看": "behaviour", "使用": "behaviour",
    "签到": "community", "分享": "community", "评价": "community", "发帖": "community", "邀请": "community",
}  # fmt: skip
EVENT_WEIGHTS = {
    "浏览": 36, "加购": 12, "收藏": 7, "观看": 8, "使用": 5, "签到": 14, "分享": 7, "评价": 5, "发帖": 4,
    "邀请": 2,
}  # fmt: skip

# sku, name, category, unit price
CATALOG = {
    "youzan": (
        ("YZ1001", "玻尿酸保湿面膜", "美妆", "89.00"), ("YZ1002", "氨基酸洗面奶", "美妆", "59.90"),
        ("YZ1003", "防晒喷雾", "美妆", "79.00"), ("YZ2001", "无硅油洗发水", "个护", "45.50"),
        ("YZ2002", "电动牙刷刷头", "个护", "29.90"), ("YZ3001", "每日坚果礼盒", "食品", "128.00"),
        ("YZ3002", "冻干咖啡", "食品", "39.90"), ("YZ3003", "手工牛轧糖", "食品", "25.80"),
        ("YZ4001", "纯棉T恤", "服饰", "99.00"), ("YZ4002", "运动袜三双装", "服饰", "19.90"),
        ("YZ5001", "婴儿湿巾", "母婴", "15.90"), ("YZ6001", "香薰蜡烛", "家居", "68.00"),
    ),
    "douyin": (
        ("DY7001", "直播间专享面膜", "美妆", "69.90"), ("DY7002", "便携榨汁杯", "家居", "139.00"),
        ("DY7003", "螺蛳粉五袋装", "食品", "49.90"), ("DY7004", "冰丝防晒袖套", "服饰", "12.80"),
        ("DY7005", "儿童绘本套装", "母婴", "88.00"),
    ),
    "xiaoetong": (
        ("XE9001", "私域运营实战课", "课程", "199.00"), ("XE9002", "短视频剪辑训练营", "课程", "299.00"),
        ("XE9003", "21天写作打卡", "课程", "9.90"), ("XE9004", "年度会员", "会员", "365.00"),
    ),
}  # fmt: skip
CHANNELS = ("小程序", "公众号", "抖音", "线下门店", "朋友推荐")
NICKNAMES = ("小鱼", "阿杰", "晴天", "橙子", "木木", "大白", "七七", "豆豆", "星星", "老王")
PAGES = ("首页", "商品详情页", "活动页", "购物车", "个人中心")
POSTS = ("打卡成功", "分享给好友", "晒单", "好评", "邀请新人", "社群发言")

# local hour of day at which people act (a shop's evening peak, a little at night)
HOUR_WEIGHTS = np.array([3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 6, 5, 5, 5, 6, 7, 9, 10, 10, 8, 5], float)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()


# -- the history --------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    user_id: str
    registered_at: dt.datetime
    channel: str
    nickname: str
    phone: str


@dataclass(frozen=True)
class Line:
    """One line of an order; the same sku may appear on two lines of one order."""

    sku: str
    name: str
    category: str
    quantity: int
    price: Decimal  # unit price

    @property
    def amount(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True)
class OrderState:
    """An order as an export taken at some moment shows it."""

    status: str  # key of STATUS_TEXT
    refund_amount: Decimal  # 0 when no refund is known
    refunded_at: dt.datetime | None

    @property
    def is_purchase(self) -> bool:
        return self.status in PAID_KEYS


@dataclass(frozen=True)
class Order:
    order_id: str
    user_id: str
    platform: str
    created_at: dt.datetime
    lines: tuple[Line, ...]
    timeline: tuple[tuple[dt.datetime, str], ...]  # (moment, status key), in time order
    refund_amount: Decimal = Decimal("0.00")
    refunded_at: dt.datetime | None = None

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    def state_at(self, moment: dt.datetime) -> OrderState:
        """The order as known at ``moment`` (at or after its creation)."""
        if moment < self.created_at:
            raise ValueError(f"order {self.order_id} did not exist yet at {moment}")
        status = [key for at, key in self.timeline if at <= moment][-1]
        if self.refunded_at is not None and self.refunded_at <= moment:
            return OrderState(status, self.refund_amount, self.refunded_at)
        return OrderState(status, Decimal("0.00"), None)


@dataclass(frozen=True)
class Event:
    user_id: str
    ts: dt.datetime
    name: str  # Chinese, as exported
    detail: str  # page or content; lands in events.properties

    @property
    def source(self) -> str:
        return EVENT_SOURCE[self.name]

    @property
    def canonical(self) -> str:
        return EVENT_CANONICAL[self.name]


@dataclass(frozen=True)
class Shop:
    users: tuple[User, ...]
    orders: tuple[Order, ...]
    events: tuple[Event, ...]

    def order(self, order_id: str) -> Order:
        return next(o for o in self.orders if o.order_id == order_id)


def _moment(rng: np.random.Generator, day: dt.date) -> dt.datetime:
    hour = int(rng.choice(24, p=HOUR_WEIGHTS))
    return dt.datetime.combine(day, dt.time(hour, int(rng.integers(60)), int(rng.integers(60))))


def _delay(rng: np.random.Generator, low: dt.timedelta, high: dt.timedelta) -> dt.timedelta:
    seconds = rng.integers(int(low.total_seconds()), int(high.total_seconds()) + 1)
    return dt.timedelta(seconds=int(seconds))


def _order_timeline(rng, platform: str, created: dt.datetime, lines: tuple[Line, ...], *,
                    late_payment_rate: float, refund_rate: float, refund_within_days: int):
    """(timeline, refund amount, refund time) of one order."""
    minute, hour, day = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
    timeline = [(created, "awaiting_payment")]
    if rng.random() >= 0.86:  # never paid: closed automatically after a while
        timeline.append((created + _delay(rng, 30 * minute, 3 * day), "cancelled"))
        return tuple(timeline), Decimal("0.00"), None
    u = rng.random()
    # most pay at once; some hours later, a few days later (transfers, reminders)
    wait = _delay(rng, minute, 20 * minute) if u >= late_payment_rate else (
        _delay(rng, hour, 14 * hour) if u < 0.6 * late_payment_rate else _delay(rng, day, 3 * day))
    paid = created + wait
    timeline.append((paid, "paid"))
    if platform != "xiaoetong":
        shipped = paid + _delay(rng, 12 * hour, 3 * day)
        timeline += [(shipped, "shipped"), (shipped + _delay(rng, 3 * day, 10 * day), "completed")]
    if rng.random() >= refund_rate:
        return tuple(timeline), Decimal("0.00"), None
    refunded_at = paid + _delay(rng, hour, refund_within_days * day)
    amount = sum((line.amount for line in lines), Decimal("0.00"))
    if platform == "xiaoetong" or rng.random() < 0.55:
        refund, key = amount, "refunded"
    else:
        if len(lines) > 1:  # one line sent back
            refund = lines[int(rng.integers(len(lines)))].amount
        else:
            refund = (amount * Decimal(str(round(rng.uniform(0.2, 0.8), 2)))).quantize(CENT)
        if not Decimal("0") < refund < amount:
            refund, key = amount, "refunded"
        else:
            key = "partially_refunded"
    # a refund ends the order's life: nothing after it is shipped or completed
    timeline = [(at, k) for at, k in timeline if at < refunded_at] + [(refunded_at, key)]
    return tuple(timeline), refund, refunded_at


def _lines(rng, platform: str) -> tuple[Line, ...]:
    catalog = CATALOG[platform]
    if platform == "xiaoetong":
        sku, name, category, price = catalog[int(rng.integers(len(catalog)))]
        return (Line(sku, name, category, 1, Decimal(price)),)
    n = int(rng.choice([1, 2, 3, 4], p=[0.45, 0.3, 0.15, 0.1]))
    picks = [catalog[int(i)] for i in rng.choice(len(catalog), size=n, replace=False)]
    lines = [Line(s, nm, c, int(rng.choice([1, 1, 1, 2, 3])), Decimal(p)) for s, nm, c, p in picks]
    if n > 1 and rng.random() < 0.25:
        # the same sku on a second line (added twice to the cart, or a gift line), same unit price
        first = lines[0]
        lines.append(Line(first.sku, first.name, first.category, int(rng.integers(1, 3)), first.price))
    return tuple(lines)


def generate_shop(
    seed: int,
    *,
    n_users: int = 120,
    start: dt.date = PERIOD_START,
    end: dt.date = PERIOD_END,
    buy_rate: float = 0.45,
    late_payment_rate: float = 0.28,
    refund_rate: float = 0.15,
    refund_within_days: int = 40,
) -> Shop:
    """A shop's true history from ``start`` to ``end`` (orders and events in that period;
    some members registered up to half a year before it).

    With the defaults: 120 users, about 400 orders and 1,800 events over 2024. ``buy_rate``
    is the chance that a visit of a buyer brings an order; of paid orders, ``late_payment_rate``
    are paid hours or days after they were placed and ``refund_rate`` are refunded, within
    ``refund_within_days`` of the payment.
    """
    rng = np.random.default_rng(seed)
    span = (end - start).days
    users, orders, events = [], [], []
    taken: set[tuple[str, dt.datetime, str]] = set()
    serial = {p: 0 for p in PLATFORMS}

    def add_event(user_id: str, moment: dt.datetime, name: str) -> None:
        while (user_id, moment, name) in taken:  # identical rows are indistinguishable in a file
            moment += dt.timedelta(seconds=1)
        taken.add((user_id, moment, name))
        detail = POSTS[int(rng.integers(len(POSTS)))] if EVENT_SOURCE[name] == "community" else (
            PAGES[int(rng.integers(len(PAGES)))])
        events.append(Event(user_id, moment, name, detail))

    names, weights = list(EVENT_WEIGHTS), np.array(list(EVENT_WEIGHTS.values()), float)
    weights /= weights.sum()
    for i in range(n_users):
        user_id = f"M{10001 + i}"
        if rng.random() < 0.15:
            reg_day = start - dt.timedelta(days=int(rng.integers(1, 180)))
        else:
            reg_day = start + dt.timedelta(days=int(rng.integers(0, max(1, span - 20))))
        user = User(user_id, _moment(rng, reg_day), CHANNELS[int(rng.integers(len(CHANNELS)))],
                    NICKNAMES[int(rng.integers(len(NICKNAMES)))] + str(int(rng.integers(10, 99))),
                    f"1{int(rng.integers(30, 90))}****{int(rng.integers(1000, 10000))}")
        users.append(user)
        if rng.random() < 0.08:
            continue  # registered and never came back
        buyer = rng.random() < 0.85
        mean_gap = 2.0 + rng.gamma(2.0, 5.0)
        p_stop = rng.uniform(0.02, 0.12)
        day = max(reg_day, start) + dt.timedelta(days=int(rng.choice([0, 0, 1, 3, 10])))
        while day <= end:
            for _ in range(int(rng.integers(1, 4))):
                add_event(user_id, _moment(rng, day), str(rng.choice(names, p=weights)))
            if buyer and rng.random() < buy_rate * (2.5 if day == reg_day else 1.0):
                platform = str(rng.choice(PLATFORMS, p=[0.55, 0.25, 0.2]))
                created = _moment(rng, day)
                lines = _lines(rng, platform)
                timeline, refund, refunded_at = _order_timeline(
                    rng, platform, created, lines, late_payment_rate=late_payment_rate, refund_rate=refund_rate,
                    refund_within_days=refund_within_days)
                serial[platform] += 1
                n = serial[platform]
                order_id = {
                    "youzan": f"E{created:%Y%m%d%H%M%S}{n:05d}",
                    "douyin": str(6_912_000_000_000_000_000 + n * 7_919),  # 19 digits: text, never a number
                    "xiaoetong": f"o_{created:%y%m%d}{n:04d}_{user_id.lower()}",
                }[platform]
                orders.append(Order(order_id, user_id, platform, created, lines, timeline, refund, refunded_at))
            if rng.random() < p_stop:
                break
            if rng.random() < 0.1:
                gap = int(rng.integers(25, 100))  # a long break: dormant, maybe churned, maybe back
            else:
                gap = 1 + int(rng.geometric(1.0 / mean_gap))
            day += dt.timedelta(days=gap)
    orders.sort(key=lambda o: (o.created_at, o.order_id))
    events.sort(key=lambda e: (e.ts, e.user_id, e.name))
    return Shop(tuple(users), tuple(orders), tuple(events))


# -- exports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """One file a back-end exports: the records of ``source`` dated in [start, end] (local
    days, inclusive: order time for orders, event time for events), as known at ``exported_at``."""

    source: str  # youzan, douyin, xiaoetong (orders), behaviour, community (events), members (users)
    start: dt.date
    end: dt.date
    exported_at: dt.datetime
    style: str = "weekly"  # youzan: weekly (买家ID, plain title) or quarterly (会员ID, padded rows)

    @property
    def table(self) -> str:
        return {"behaviour": "events", "community": "events", "members": "users"}.get(self.source, "orders")

    @property
    def file_name(self) -> str:
        suffix = "xlsx" if self.source == "douyin" else "csv"
        return f"{self.source}_{self.start:%Y%m%d}_{self.end:%Y%m%d}_at_{self.exported_at:%Y%m%d%H%M}.{suffix}"

    def covers(self, moment: dt.datetime) -> bool:
        return self.start <= moment.date() <= self.end and moment <= self.exported_at


def orders_in(shop: Shop, export: Export) -> list[tuple[Order, OrderState]]:
    """The orders an export lists, each with its state at the export's moment."""
    return [(o, o.state_at(export.exported_at)) for o in shop.orders
            if o.platform == export.source and export.covers(o.created_at)]


def events_in(shop: Shop, export: Export) -> list[Event]:
    return [e for e in shop.events if e.source == export.source and export.covers(e.ts)]


def users_in(shop: Shop, export: Export) -> list[User]:
    return [u for u in shop.users if u.registered_at <= export.exported_at]


def _months(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first.replace(day=1)
    while day <= last:
        yield day
        day = (day + dt.timedelta(days=32)).replace(day=1)


def _month_end(first_of_month: dt.date) -> dt.date:
    return (first_of_month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def export_schedule(*, start: dt.date = PERIOD_START, end: dt.date = PERIOD_END, dense: bool = False) -> list[Export]:
    """Every export of the shop over the period, in the order they were taken.

    - youzan: every fourth Monday 09:30 the last 35 days (``dense``: every Monday, the last 14
      days), and 20 days after each quarter, the whole quarter;
    - douyin: the 5th of each month 11:00, the two months before;
    - xiaoetong: the 1st of each month 08:00, the 45 days before;
    - behaviour events: the 2nd, 07:00, of every other month (``dense``: every month), the
      months since the last export and the 10 days before them;
    - community events: the 3rd, 07:00, likewise, the last 70 days (``dense``: 40 days);
    - members: once, a week after the period, everyone registered by then.
    """
    out: list[Export] = []
    step, length = (7, 14) if dense else (28, 35)
    monday = start + dt.timedelta(days=(7 - start.weekday()) % 7 or 7)
    while monday - dt.timedelta(days=step) <= end:
        at = dt.datetime.combine(monday, dt.time(9, 30))
        out.append(Export("youzan", monday - dt.timedelta(days=length), monday - dt.timedelta(days=1), at))
        monday += dt.timedelta(days=step)
    for q in range(4):
        first = dt.date(start.year, 3 * q + 1, 1)
        last = _month_end(dt.date(start.year, 3 * q + 3, 1))
        out.append(Export("youzan", first, last, dt.datetime.combine(last + dt.timedelta(days=20), dt.time(10)),
                          style="quarterly"))
    months = list(_months(start, end))
    for i, month in enumerate(months):
        last = _month_end(month)
        after = last + dt.timedelta(days=1)
        previous = (month - dt.timedelta(days=1)).replace(day=1)
        out.append(Export("douyin", previous, last, dt.datetime.combine(after.replace(day=5), dt.time(11)),
                          style="monthly"))
        out.append(Export("xiaoetong", last - dt.timedelta(days=44), last, dt.datetime.combine(after, dt.time(8)),
                          style="monthly"))
        if dense or i % 2 == 1 or i == len(months) - 1:
            first = month if dense or i % 2 == 0 else previous  # the months since the last export
            out.append(Export("behaviour", first - dt.timedelta(days=10), last,
                              dt.datetime.combine(after.replace(day=2), dt.time(7)), style="monthly"))
            out.append(Export("community", last - dt.timedelta(days=39 if dense else 69), last,
                              dt.datetime.combine(after.replace(day=3), dt.time(7)), style="monthly"))
    members_at = dt.datetime.combine(end + dt.timedelta(days=7), dt.time(18))
    out.append(Export("members", start - dt.timedelta(days=365), end + dt.timedelta(days=7), members_at,
                      style="full"))
    out.sort(key=lambda e: (e.exported_at, e.source))
    return out


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _local(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if moment is None else moment.strftime(fmt)


def _write_csv(path: Path, rows: Sequence[Sequence[str]], *, encoding: str) -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh, lineterminator="\r\n").writerows(rows)
    return path


YOUZAN_HEADER = ("订单号", "买家ID", "下单时间", "订单状态", "商品编码", "商品名称", "类目", "数量", "单价",
                 "商品实付金额", "订单实付金额", "退款金额", "退款时间")  # fmt: skip


def write_youzan(shop: Shop, export: Export, path: Path) -> Path:
    """Item-level order CSV in GBK: a title line, the header, one line per order line with the
    order's fields repeated (订单实付金额 and 退款金额 are the order's, on every line), and a
    totals row (合计) at the end."""
    quarterly = export.style == "quarterly"
    header = list(YOUZAN_HEADER)
    if quarterly:
        header[1] = "会员ID"
    width = len(header)
    title = f"订单导出 {export.start:%Y-%m-%d} 至 {export.end:%Y-%m-%d}"
    rows: list[list[str]] = [[title] + [""] * (width - 1) if quarterly else [title], header]
    listed = orders_in(shop, export)
    for order, state in listed:
        for line in order.lines:
            rows.append([
                order.order_id, order.user_id, _local(order.created_at), STATUS_TEXT["youzan"][state.status],
                line.sku, line.name, line.category, str(line.quantity), _money(line.price), _money(line.amount),
                _money(order.amount), _money(state.refund_amount), _local(state.refunded_at),
            ])
    quantity = sum(line.quantity for order, _ in listed for line in order.lines)
    paid = sum((order.amount for order, _ in listed), Decimal("0.00"))
    refunds = sum((state.refund_amount for _, state in listed), Decimal("0.00"))
    totals = ["合计", "", "", "", "", "", "", str(quantity), "", _money(paid), _money(paid), _money(refunds), ""]
    rows.append(totals if quarterly else totals[: header.index("退款金额") + 1])
    return _write_csv(path, rows, encoding="gbk")


DOUYIN_HEADER = ("主订单编号", "买家ID", "下单时间", "订单状态", "商品名称", "商品数量", "支付金额", "退款金额",
                 "退款时间", "收货省份")  # fmt: skip
PROVINCES = ("广东省", "浙江省", "江苏省", "四川省", "北京市", "上海市")


def write_douyin(shop: Shop, export: Export, path: Path) -> Path:
    """An xlsx workbook: a notes sheet (说明) first, then the orders, one row per order, with
    ¥ amounts, slash dates and every id stored as text."""
    import openpyxl  # noqa: PLC0415

    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "说明"
    for text in (
        "抖店订单导出说明",
        f"导出时间：{export.exported_at:%Y-%m-%d %H:%M:%S}",
        f"下单时间范围：{export.start:%Y-%m-%d} 至 {export.end:%Y-%m-%d}",
        "金额单位：元；订单编号请以文本格式查看",
    ):
        notes.append([text])
    data = book.create_sheet("订单明细")
    data.append(list(DOUYIN_HEADER))
    for order, state in orders_in(shop, export):
        data.append([
            order.order_id, order.user_id, _local(order.created_at, "%Y/%m/%d %H:%M:%S"),
            STATUS_TEXT["douyin"][state.status], "、".join(line.name for line in order.lines),
            str(sum(line.quantity for line in order.lines)), "¥" + _money(order.amount),
            "¥" + _money(state.refund_amount), _local(state.refunded_at, "%Y/%m/%d %H:%M:%S"),
            PROVINCES[sum(map(ord, order.order_id)) % len(PROVINCES)],
        ])
    book.save(path)
    return path


XIAOETONG_HEADER = ("订单号", "用户ID", "用户昵称", "商品名称", "下单时间", "支付时间", "订单状态", "实付金额",
                    "退款金额", "退款时间")  # fmt: skip


def write_xiaoetong(shop: Shop, export: Export, path: Path) -> Path:
    """Course orders, one line per order, UTF-8 with a BOM; no refund is an empty cell."""
    nick = {u.user_id: u.nickname for u in shop.users}
    rows = [list(XIAOETONG_HEADER)]
    for order, state in orders_in(shop, export):
        paid_at = next((at for at, key in order.timeline if key == "paid"), None)
        rows.append([
            order.order_id, order.user_id, nick.get(order.user_id, ""), order.lines[0].name,
            _local(order.created_at), _local(paid_at if paid_at and paid_at <= export.exported_at else None),
            STATUS_TEXT["xiaoetong"][state.status], _money(order.amount),
            _money(state.refund_amount) if state.refunded_at else "", _local(state.refunded_at),
        ])
    return _write_csv(path, rows, encoding="utf-8-sig")


def write_events(shop: Shop, export: Export, path: Path) -> Path:
    """Behaviour log: GBK, 用户ID/时间/行为类型/页面, local times. Community log: UTF-8,
    用户ID/事件/时间/内容, ISO times with the +08:00 offset."""
    if export.source == "behaviour":
        rows = [["用户ID", "时间", "行为类型", "页面"]]
        rows += [[e.user_id, _local(e.ts), e.name, e.detail] for e in events_in(shop, export)]
        return _write_csv(path, rows, encoding="gbk")
    rows = [["用户ID", "事件", "时间", "内容"]]
    rows += [[e.user_id, e.name, e.ts.strftime("%Y-%m-%dT%H:%M:%S+08:00"), e.detail] for e in events_in(shop, export)]
    return _write_csv(path, rows, encoding="utf-8")


def write_members(shop: Shop, export: Export, path: Path) -> Path:
    """客户列表 in GBK: 会员ID, 昵称, 手机号, 注册时间, 来源渠道."""
    rows = [["会员ID", "昵称", "手机号", "注册时间", "来源渠道"]]
    rows += [[u.user_id, u.nickname, u.phone, _local(u.registered_at), u.channel] for u in users_in(shop, export)]
    return _write_csv(path, rows, encoding="gbk")


WRITERS = {
    "youzan": write_youzan, "douyin": write_douyin, "xiaoetong": write_xiaoetong,
    "behaviour": write_events, "community": write_events, "members": write_members,
}  # fmt: skip


def write_export(shop: Shop, export: Export, folder: Path) -> Path:
    """Write ``export`` into ``folder``; returns the file's path."""
    return WRITERS[export.source](shop, export, Path(folder) / export.file_name)


# -- what is known after loading exports ---------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """Everything a sequence of exports (in load order) tells: the last state shown of each
    order, the events and the members."""

    orders: dict[str, tuple[Order, OrderState]] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    users: dict[str, User] = field(default_factory=dict)


def known_from(shop: Shop, exports: Sequence[Export]) -> Known:
    orders: dict[str, tuple[Order, OrderState]] = {}
    events: dict[tuple[str, dt.datetime, str], Event] = {}
    users: dict[str, User] = {}
    for export in exports:
        if export.table == "orders":
            for order, state in orders_in(shop, export):
                orders[order.order_id] = (order, state)  # a later file wins
        elif export.table == "events":
            for e in events_in(shop, export):
                events[(e.user_id, e.ts, e.name)] = e
        else:
            users.update((u.user_id, u) for u in users_in(shop, export))
    return Known(orders, tuple(sorted(events.values(), key=lambda e: (e.ts, e.user_id, e.name))), users)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment - UTC_OFFSET


def expected_orders(known: Known) -> list[dict]:
    """The ``orders`` table the workspace should hold: canonical columns, naive UTC times,
    the canonical status of the last text shown, amounts in cents as Decimals."""
    out = []
    for order, state in known.orders.values():
        out.append({
            "order_id": order.order_id, "user_id": order.user_id, "ts": _utc(order.created_at),
            "amount": order.amount, "currency": "CNY",
            "status": STATUS_CANONICAL[STATUS_TEXT[order.platform][state.status]],
            "refund_amount": state.refund_amount, "refunded_at": _utc(state.refunded_at),
        })
    return sorted(out, key=lambda r: r["order_id"])


def expected_order_items(known: Known, platforms: Iterable[str] = ("youzan",)) -> list[dict]:
    """``order_items`` for the orders of item-level exports: one row per line, numbered
    (``line_no`` 1, 2, ...) in the order the export lists them; a sku on two lines is two rows."""
    out = []
    for order, _state in known.orders.values():
        if order.platform in platforms:
            out += [{"order_id": order.order_id, "line_no": n, "sku": line.sku, "category": line.category,
                     "quantity": line.quantity, "price": line.price}
                    for n, line in enumerate(order.lines, start=1)]
    return sorted(out, key=lambda r: (r["order_id"], r["line_no"]))


def load_effects(shop: Shop, exports: Sequence[Export]) -> list[tuple[bool, bool]]:
    """Per order export in ``exports`` (loaded in this order): (adds an order not known
    before, changes the canonical row of an order known before). Other exports: (False, False)."""
    out = []
    for i, export in enumerate(exports):
        if export.table != "orders":
            out.append((False, False))
            continue
        before = {r["order_id"]: r for r in expected_orders(known_from(shop, exports[:i]))}
        after = {r["order_id"]: r for r in expected_orders(known_from(shop, exports[: i + 1]))}
        listed = [order.order_id for order, _ in orders_in(shop, export)]
        out.append((any(o not in before for o in listed), any(o in before and before[o] != after[o] for o in listed)))
    return out


# -- truth as of a day ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserTruth:
    user_id: str
    orders: int
    monetary: Decimal
    refunded_orders: int
    refund_total: Decimal
    interaction_depth: int
    lifecycle: str


def lifecycle_stage(
    activity_days: Iterable[dt.date],
    purchase_days: Iterable[dt.date],
    as_of: dt.date,
    rules: LifecycleRules | None = None,
) -> str | None:
    """The stage on ``as_of`` by walking every day from the first active one (None: not seen yet).

    The stage of a day is the one at its end. An active day whose previous day ended dormant
    or churned is a return ("active again after having been dormant"): with 30-day dormancy,
    active days 05-01 and 06-02 make a return (on 06-01 the user had been inactive for 31
    days), 05-01 and 06-01 do not (on 05-31: 30 days, not more). The stage, in the documented
    order: churned (inactive > ``churned_after_days``), dormant (> ``dormant_after_days``),
    potential (no purchase yet), returning (a return at most ``returning_window_days`` ago),
    new (first seen at most ``new_days`` ago), growth (at most ``growth_days``), mature.
    """
    rules = rules or LifecycleRules()
    active = {d for d in activity_days if d <= as_of}
    bought = {d for d in purchase_days if d <= as_of}
    if not active:
        return None
    first = min(active)
    last_active: dt.date | None = None
    last_return: dt.date | None = None
    has_bought = False
    stage = None
    day = first
    while day <= as_of:
        if day in active:
            if stage in ("dormant", "churned"):  # yesterday's stage
                last_return = day
            last_active = day
        has_bought = has_bought or day in bought
        idle = (day - last_active).days
        tenure = (day - first).days
        if idle > rules.churned_after_days:
            stage = "churned"
        elif idle > rules.dormant_after_days:
            stage = "dormant"
        elif not has_bought:
            stage = "potential"
        elif last_return is not None and (day - last_return).days <= rules.returning_window_days:
            stage = "returning"
        elif tenure <= rules.new_days:
            stage = "new"
        elif tenure <= rules.growth_days:
            stage = "growth"
        else:
            stage = "mature"
        day += dt.timedelta(days=1)
    return stage


def truth_as_of(
    known: Known,
    as_of: dt.date,
    *,
    rules: LifecycleRules | None = None,
    interaction_events: Sequence[str] | None = None,
) -> dict[str, UserTruth]:
    """Per user seen on or before ``as_of`` (local day, inclusive): see the module docstring."""
    interaction = set(interaction_events if interaction_events is not None else ProfileSettings().interaction_events)
    activity: dict[str, set[dt.date]] = {}
    purchase_days: dict[str, set[dt.date]] = {}
    money: dict[str, list] = {}
    for user in known.users.values():
        if user.registered_at.date() <= as_of:
            activity.setdefault(user.user_id, set()).add(user.registered_at.date())
    for order, state in known.orders.values():
        day = order.created_at.date()
        if not state.is_purchase or day > as_of:
            continue
        activity.setdefault(order.user_id, set()).add(day)
        purchase_days.setdefault(order.user_id, set()).add(day)
        refund = state.refund_amount if state.refunded_at and state.refunded_at.date() <= as_of else Decimal("0.00")
        tally = money.setdefault(order.user_id, [0, Decimal("0.00"), 0, Decimal("0.00")])
        tally[0] += 1
        tally[1] += order.amount - refund
        tally[2] += refund > 0
        tally[3] += refund
    depth: dict[str, int] = {}
    for e in known.events:
        if e.ts.date() <= as_of:
            activity.setdefault(e.user_id, set()).add(e.ts.date())
            depth[e.user_id] = depth.get(e.user_id, 0) + (e.canonical in interaction)
    out = {}
    for user_id, days in activity.items():
        n, net, refunded, refund_total = money.get(user_id, (0, Decimal("0.00"), 0, Decimal("0.00")))
        out[user_id] = UserTruth(
            user_id, n, net, refunded, refund_total, depth.get(user_id, 0),
            lifecycle_stage(days, purchase_days.get(user_id, ()), as_of, rules),
        )
    return out
