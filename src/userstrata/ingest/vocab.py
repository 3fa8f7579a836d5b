"""Source vocabularies -> canonical values: order statuses and event names.

Shops export statuses and event names in their back-end's words: 交易成功, 已关闭,
``TRADE_CLOSED``, 浏览, 加购... Values are compared trimmed and case-folded. The maps in
``[ingest.status_map]`` / ``[ingest.event_map]`` of ``userstrata.toml`` come first, so a shop
can add its own words or override these.

Sources: the order states of the Taobao/Tmall open platform (``WAIT_BUYER_PAY``,
``TRADE_FINISHED``, ``TRADE_CLOSED_BY_TAOBAO``...), Youzan's (``TRADE_PAID``,
``TRADE_SUCCESS``...), and the Chinese labels that Youzan, Weidian, Douyin 抖店 and
小鹅通 print in their exports.
"""

from __future__ import annotations

# canonical status -> source values (case-folded)
STATUS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "paid": (
        "paid", "payed", "success_paid", "已付款", "已支付", "支付成功", "付款成功", "买家已付款",
        "待发货", "等待发货", "等待卖家发货", "已发货", "卖家已发货", "部分发货", "待收货",
        "已收货", "已签收", "待评价", "已评价", "备货中", "待使用", "已使用", "待核销", "已核销",
        "trade_paid", "wait_seller_send_goods", "seller_consigned_part", "wait_buyer_confirm_goods",
        "trade_buyer_signed", "shipped", "delivered", "processing",
    ),
    "completed": (
        "completed", "complete", "finished", "fulfilled", "done", "success", "交易成功", "交易完成",
        "已完成", "订单完成", "完成", "trade_finished", "trade_success",
    ),
    "refunding": (
        "refunding", "refund_pending", "refund_requested", "退款中", "售后中", "退款申请中",
        "申请退款", "退款处理中", "退货退款中",
    ),
    "partially_refunded": (
        "partially_refunded", "partly_refunded", "partial_refund", "partially refunded",
        "部分退款", "部分退款成功", "已部分退款", "部分退款完成",
    ),
    "refunded": (
        "refunded", "refund_success", "fully_refunded", "已退款", "退款成功", "全额退款",
        "已全额退款", "退款完成", "退款关闭交易",
    ),
    # closed without payment; a closed order that carries a refund was paid and refunded
    # (Youzan's TRADE_CLOSED covers both) and is stored as refunded (see validate.py)
    "cancelled": (
        "cancelled", "canceled", "closed", "failed", "void", "voided", "expired", "交易关闭",
        "已关闭", "订单关闭", "关闭", "已取消", "取消", "交易取消", "订单取消", "超时关闭",
        "超时取消", "支付超时", "超时未支付", "已失效", "失效", "支付失败", "trade_closed",
        "trade_closed_by_taobao", "trade_no_create_pay", "trade_closed_by_user",
    ),
    "awaiting_payment": (
        "awaiting_payment", "pending", "pending_payment", "unpaid", "not_paid", "created",
        "待付款", "待支付", "等待买家付款", "等待付款", "未支付", "未付款", "待买家付款",
        "待确认", "wait_buyer_pay", "wait_pay", "trade_no_pay",
    ),
}

# canonical event name -> source names (case-folded); WeChat mini-program and platform
# names included (e.g. ``page_view`` from 浏览页面 / ``view_item``)
EVENT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "page_view": (
        "page_view", "pageview", "view", "view_item", "visit", "浏览", "浏览商品", "浏览页面",
        "访问", "查看", "查看商品", "进入页面", "页面浏览", "$pageview", "$mppageview",
    ),
    "search": ("search", "搜索", "搜索商品"),
    "add_to_cart": ("add_to_cart", "addtocart", "add_cart", "cart", "加购", "加入购物车", "加购物车"),
    "checkout": ("checkout", "begin_checkout", "下单", "提交订单", "去结算", "结算"),
    "purchase": ("purchase", "pay", "支付", "付款", "购买"),
    "checkin": ("checkin", "check_in", "sign_in", "signin", "签到", "打卡", "每日签到"),
    "share": ("share", "分享", "转发", "分享商品", "分享课程", "分享给好友", "分享到朋友圈"),
    "review": ("review", "rate", "评价", "评论商品", "写评价", "晒单"),
    "post": ("post", "发帖", "发布", "发动态", "发笔记", "发表"),
    "comment": ("comment", "评论", "回复", "留言"),
    "like": ("like", "点赞", "喜欢"),
    "favorite": ("favorite", "favourite", "collect", "bookmark", "收藏", "加收藏", "关注商品"),
    "invite": ("invite", "邀请", "邀请好友", "拉新", "助力"),
    "use": ("use", "使用", "使用道具", "核销", "兑换使用", "开通使用"),
    "watch": ("watch", "play", "观看", "学习", "播放", "看课", "观看直播", "观看课程", "听课"),
    "redeem": ("redeem", "兑换", "领取", "领券", "使用优惠券"),
    "login": ("login", "log_in", "sign_on", "登录", "登陆", "启动", "打开小程序", "app_launch", "$mplaunch"),
    "register": ("register", "signup", "sign_up", "注册", "授权注册", "成为会员", "入会"),
}


def fold(value: str) -> str:
    """How source values are compared: trimmed and case-folded."""
    return value.strip().casefold()


def status_lookup(extra: dict[str, str]) -> dict[str, str]:
    """Folded source status -> canonical status, with ``extra`` (the settings' map) winning."""
    table = {fold(src): canonical for canonical, sources in STATUS_SYNONYMS.items() for src in sources}
    table.update({fold(src): canonical for src, canonical in extra.items()})
    return table


def event_lookup(extra: dict[str, str]) -> dict[str, str]:
    """Folded source event name -> canonical name, with ``extra`` winning."""
    table = {fold(src): canonical for canonical, sources in EVENT_SYNONYMS.items() for src in sources}
    table.update({fold(src): canonical for src, canonical in extra.items()})
    return table
