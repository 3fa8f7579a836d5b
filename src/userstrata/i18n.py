"""Labels in Chinese and English; never derived from column names."""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[str, ...] = ("zh", "en")

_LABELS: dict[str, dict[str, str]] = {
    # value tiers
    "explorer": {"zh": "体验探索者", "en": "Explorer"},
    "regular": {"zh": "常规消费者", "en": "Regular"},
    "engaged": {"zh": "深度参与者", "en": "Engaged"},
    "co_builder": {"zh": "品牌共建者", "en": "Brand co-builder"},
    # lifecycle stages
    "potential": {"zh": "潜在", "en": "Potential"},
    "new": {"zh": "新客", "en": "New"},
    "growth": {"zh": "成长", "en": "Growth"},
    "mature": {"zh": "成熟", "en": "Mature"},
    "dormant": {"zh": "沉睡", "en": "Dormant"},
    "churned": {"zh": "流失", "en": "Churned"},
    "returning": {"zh": "回流", "en": "Returning"},
    # RFM grid
    "important_value": {"zh": "重要价值客户", "en": "Important value"},
    "important_develop": {"zh": "重要发展客户", "en": "Important develop"},
    "important_keep": {"zh": "重要保持客户", "en": "Important keep"},
    "important_retain": {"zh": "重要挽留客户", "en": "Important retain"},
    "general_value": {"zh": "一般价值客户", "en": "General value"},
    "general_develop": {"zh": "一般发展客户", "en": "General develop"},
    "general_keep": {"zh": "一般保持客户", "en": "General keep"},
    "general_retain": {"zh": "一般挽留客户", "en": "General retain"},
    # headings and columns shown to people
    "tier": {"zh": "价值层级", "en": "Value tier"},
    "lifecycle": {"zh": "生命周期阶段", "en": "Lifecycle stage"},
    "rfm_cell": {"zh": "RFM 分群", "en": "RFM cell"},
    "users": {"zh": "用户数", "en": "Users"},
    "share": {"zh": "占比", "en": "Share"},
    "target": {"zh": "目标占比", "en": "Target"},
    "on_target": {"zh": "达标", "en": "On target"},
    "mean_monetary": {"zh": "人均消费", "en": "Mean spend"},
    "tier_shares_title": {"zh": "价值分层：实际占比 vs 目标", "en": "Value tiers: achieved vs target share"},
    "lifecycle_title": {"zh": "生命周期阶段分布", "en": "Lifecycle stages"},
    "rfm_title": {"zh": "RFM 八象限", "en": "RFM grid (8 cells)"},
    "profile_written": {"zh": "用户画像已写入", "en": "Profile written to"},
    "predictions_title": {"zh": "未来 {days} 天预测（按价值层级）", "en": "Predictions for the next {days} days, by tier"},
    "mean_p_alive": {"zh": "平均存活概率", "en": "Mean P(alive)"},
    "expected_purchases": {"zh": "预计购买次数", "en": "Expected purchases"},
    "clv": {"zh": "客户终身价值", "en": "CLV"},
    "mean_churn_probability": {"zh": "平均流失概率", "en": "Mean churn probability"},
    "yes": {"zh": "是", "en": "yes"},
    "no": {"zh": "否", "en": "no"},
}


# Each area keeps its own section, merged below: profile reasons (segments), churn reasons
# (models), column headers of exported files, ingest messages.
_PROFILE: dict[str, dict[str, str]] = {}
_CHURN: dict[str, dict[str, str]] = {}
_COLUMNS: dict[str, dict[str, str]] = {}
_INGEST: dict[str, dict[str, str]] = {}
_ALL: dict[str, dict[str, str]] = {**_LABELS, **_PROFILE, **_CHURN, **_COLUMNS, **_INGEST}


def label(key: str, lang: Lang = "en") -> str:
    """The label of ``key`` in ``lang``; unknown keys come back unchanged."""
    entry = _ALL.get(key)
    return entry[lang] if entry else key
