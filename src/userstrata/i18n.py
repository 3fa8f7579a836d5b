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
    # the predictions summary's headers: English ones on two lines, so that six columns fit 80
    "mean_p_purchase": {"zh": "购买概率均值", "en": "Mean\nP(buy)"},
    "mean_churn_short": {"zh": "流失概率均值", "en": "Mean\nP(churn)"},
    "total_expected_purchases": {"zh": "预计购买合计", "en": "Total\npurchases"},
    "total_clv": {"zh": "CLV 合计", "en": "Total\nCLV"},
    "all_tiers": {"zh": "全部", "en": "All"},
    "predictions_note": {
        "zh": "均值：层级内每位用户的平均；合计：层级内的总和。购买概率 = 未来 {days} 天内至少购买一次的概率"
              "（仅购买过的用户）；流失概率 = 未来 {days} 天内不再购买的概率。n/a：无法估计。",
        "en": "Mean: average over the tier's users; Total: sum over the tier. P(buy) = probability of at least one "
              "purchase in the next {days} days (buyers only); P(churn) = probability of no purchase in the next "
              "{days} days. n/a: not available.",
    },
    "purchase_model": {"zh": "购买模型", "en": "Purchase model"},
    # the renewals table in a terminal: two-line headers, so that seven columns fit 80
    "renewals.head.plan": {"zh": "会员套餐", "en": "Plan"},
    "renewals.head.term_days": {"zh": "每期\n天数", "en": "Days\nper term"},
    "renewals.head.members": {"zh": "累计\n会员", "en": "Members\nall time"},
    "renewals.head.current_members": {"zh": "当前\n会员", "en": "Members\nnow"},
    "renewals.head.retention_1": {"zh": "首次\n续费率", "en": "Renewal\n1st"},
    "renewals.head.retention_2": {"zh": "第2次\n续费率", "en": "Renewal\n2nd"},
    "renewals.head.derl_new": {"zh": "新会员\n续费期数", "en": "DERL,\nnew"},
    # BG/NBD with covariates (userstrata covariates)
    "covariates_title": {"zh": "截至 {day} 保留的协变量系数", "en": "Covariates kept, as of {day}"},
    "col.process": {"zh": "过程", "en": "Process"},
    "col.covariate": {"zh": "协变量", "en": "Covariate"},
    "col.coef": {"zh": "系数", "en": "Coefficient"},
    "col.se": {"zh": "标准误", "en": "Std. error"},
    "col.z": {"zh": "z 值", "en": "z"},
    "col.p_value": {"zh": "p 值", "en": "p-value"},
    "process.purchase": {"zh": "购买频率（alpha）", "en": "purchase rate (alpha)"},
    "process.dropout_a": {"zh": "流失（a）", "en": "dropout (a)"},
    "process.dropout_b": {"zh": "流失（b）", "en": "dropout (b)"},
    # the stages of a prediction, as a progress bar names them (models.predict.PREDICT_STAGES)
    "stage.profile": {"zh": "用户画像", "en": "profile"},
    "stage.summary": {"zh": "购买汇总", "en": "purchase summary"},
    "stage.purchase_model": {"zh": "拟合购买模型", "en": "fitting the purchase model"},
    "stage.purchases": {"zh": "预计购买次数", "en": "expected purchases"},
    "stage.spend_clv": {"zh": "客单价与 CLV", "en": "spend and CLV"},
    "stage.next_purchase": {"zh": "下次购买时间", "en": "next purchase"},
    "stage.churn_training": {"zh": "训练流失模型", "en": "training the churn model"},
    "stage.churn_scoring": {"zh": "流失概率", "en": "churn probabilities"},
    "stage.churn_reasons": {"zh": "流失原因", "en": "churn reasons"},
    "stage.writing": {"zh": "写出文件", "en": "writing the file"},
    "expected_purchases": {"zh": "预计购买次数", "en": "Expected purchases"},
    "clv": {"zh": "客户终身价值", "en": "CLV"},
    "mean_churn_probability": {"zh": "平均流失概率", "en": "Mean churn probability"},
    "yes": {"zh": "是", "en": "yes"},
    "no": {"zh": "否", "en": "no"},
}


# Each area keeps its own section, merged below: profile reasons (segments), churn reasons
# (models), column headers of exported files, ingest messages.
_PROFILE: dict[str, dict[str, str]] = {
    # tier reasons (segments/tiers.py). {n} is a whole number, {pct} a percent, {feature} a
    # "feature.*" label; "<key>.one" / "<key>.other" are the forms for n = 1 and any other n.
    "reason.separator": {"zh": "，", "en": ", "},
    "reason.top": {"zh": "{feature}前 {pct}%", "en": "{feature} in top {pct}%"},
    "reason.value": {"zh": "{feature} {n}", "en": "{feature} {n}"},
    "reason.percent": {"zh": "{feature} {n}%", "en": "{feature} {n}%"},
    "reason.orders.one": {"zh": "{n} 笔订单", "en": "{n} order"},
    "reason.orders.other": {"zh": "{n} 笔订单", "en": "{n} orders"},
    "reason.frequency.one": {"zh": "复购 {n} 天", "en": "{n} repeat purchase day"},
    "reason.frequency.other": {"zh": "复购 {n} 天", "en": "{n} repeat purchase days"},
    "reason.monetary": {"zh": "累计消费 {n}", "en": "spent {n}"},
    "reason.aov": {"zh": "客单价 {n}", "en": "average order {n}"},
    "reason.recency_days.one": {"zh": "最近一次购买在 {n} 天前", "en": "last bought {n} day ago"},
    "reason.recency_days.other": {"zh": "最近一次购买在 {n} 天前", "en": "last bought {n} days ago"},
    "reason.recency_days.max.one": {"zh": "最近 {n} 天内购买过", "en": "bought in the last {n} day"},
    "reason.recency_days.max.other": {"zh": "最近 {n} 天内购买过", "en": "bought in the last {n} days"},
    "reason.tenure_days.one": {"zh": "首次出现于 {n} 天前", "en": "first seen {n} day ago"},
    "reason.tenure_days.other": {"zh": "首次出现于 {n} 天前", "en": "first seen {n} days ago"},
    "reason.interaction_depth.one": {"zh": "{n} 次互动", "en": "{n} interaction"},
    "reason.interaction_depth.other": {"zh": "{n} 次互动", "en": "{n} interactions"},
    "reason.community_actions.one": {"zh": "{n} 次社区互动", "en": "{n} community action"},
    "reason.community_actions.other": {"zh": "{n} 次社区互动", "en": "{n} community actions"},
    "reason.event_days.one": {"zh": "{n} 天有行为", "en": "active on {n} day"},
    "reason.event_days.other": {"zh": "{n} 天有行为", "en": "active on {n} days"},
    "reason.refunded_orders.one": {"zh": "{n} 笔退款订单", "en": "{n} refunded order"},
    "reason.refunded_orders.other": {"zh": "{n} 笔退款订单", "en": "{n} refunded orders"},
    "reason.no_purchase": {"zh": "尚未购买，{interactions}", "en": "no purchase yet, {interactions}"},
    "reason.below_higher_tiers": {
        "zh": "{orders}，{last}；未达到更高层级的规则",
        "en": "{orders}, {last}; below the rules of higher tiers",
    },
    # feature names in reasons ("value score in top 6%" / "价值得分前 6%")
    "feature.orders": {"zh": "订单数", "en": "orders"},
    "feature.frequency": {"zh": "复购天数", "en": "repeat purchase days"},
    "feature.monetary": {"zh": "累计消费", "en": "spend"},
    "feature.aov": {"zh": "客单价", "en": "average order value"},
    "feature.refund_rate": {"zh": "退款率", "en": "refund rate"},
    "feature.refunded_orders": {"zh": "退款订单数", "en": "refunded orders"},
    "feature.recency_days": {"zh": "购买新近度", "en": "recency"},
    "feature.tenure_days": {"zh": "首次出现距今天数", "en": "days since first seen"},
    "feature.inactive_days": {"zh": "未活跃天数", "en": "days inactive"},
    "feature.days_since_return": {"zh": "回流距今天数", "en": "days since return"},
    "feature.interaction_depth": {"zh": "互动次数", "en": "interaction depth"},
    "feature.community_actions": {"zh": "社区互动", "en": "community actions"},
    "feature.event_days": {"zh": "有行为天数", "en": "days with events"},
    "feature.category_share": {"zh": "偏好品类消费占比", "en": "top category share"},
    "feature.value_score": {"zh": "价值得分", "en": "value score"},
    "feature.rfm_r": {"zh": "R 分", "en": "R score"},
    "feature.rfm_f": {"zh": "F 分", "en": "F score"},
    "feature.rfm_m": {"zh": "M 分", "en": "M score"},
}
_CHURN: dict[str, dict[str, str]] = {
    # churn reasons (models/churn.py): "<reason> (+<rise in churn risk>)", strongest first.
    # {v} is the user's own value (format spec in the text); "<key>.one" / "<key>.other" are
    # the forms for a count that rounds to 1 and for any other count.
    "churn.reason": {"zh": "{text}（+{delta:.2f}）", "en": "{text} (+{delta:.2f})"},
    "churn.separator": {"zh": "；", "en": "; "},
    "churn.frequency.one": {"zh": "复购 {v:.0f} 天", "en": "{v:.0f} repeat purchase day"},
    "churn.frequency.other": {"zh": "复购 {v:.0f} 天", "en": "{v:.0f} repeat purchase days"},
    "churn.orders.one": {"zh": "{v:.0f} 笔订单", "en": "{v:.0f} order"},
    "churn.orders.other": {"zh": "{v:.0f} 笔订单", "en": "{v:.0f} orders"},
    "churn.monetary": {"zh": "累计消费 {v:,.2f}", "en": "spent {v:,.2f}"},
    "churn.aov": {"zh": "客单价 {v:,.2f}", "en": "average order {v:,.2f}"},
    "churn.refund_rate": {"zh": "退款订单占 {v:.0%}", "en": "{v:.0%} of orders refunded"},
    "churn.recency_days.zero": {"zh": "今天有购买", "en": "last purchase today"},
    "churn.recency_days.one": {"zh": "最近一次购买在 {v:.0f} 天前", "en": "last purchase {v:.0f} day ago"},
    "churn.recency_days.other": {"zh": "最近一次购买在 {v:.0f} 天前", "en": "last purchase {v:.0f} days ago"},
    "churn.tenure_days.zero": {"zh": "今天首次出现", "en": "first seen today"},
    "churn.tenure_days.one": {"zh": "首次出现于 {v:.0f} 天前", "en": "first seen {v:.0f} day ago"},
    "churn.tenure_days.other": {"zh": "首次出现于 {v:.0f} 天前", "en": "first seen {v:.0f} days ago"},
    "churn.interaction_depth.one": {"zh": "{v:.0f} 次互动", "en": "{v:.0f} interaction"},
    "churn.interaction_depth.other": {"zh": "{v:.0f} 次互动", "en": "{v:.0f} interactions"},
    "churn.community_actions.one": {"zh": "{v:.0f} 次社区互动", "en": "{v:.0f} community action"},
    "churn.community_actions.other": {"zh": "{v:.0f} 次社区互动", "en": "{v:.0f} community actions"},
    "churn.event_days.one": {"zh": "{v:.0f} 天有行为", "en": "{v:.0f} day with events"},
    "churn.event_days.other": {"zh": "{v:.0f} 天有行为", "en": "{v:.0f} days with events"},
    "churn.inactive_days.zero": {"zh": "今天有活跃", "en": "active today"},
    "churn.inactive_days.one": {"zh": "已 {v:.0f} 天未活跃", "en": "inactive {v:.0f} day"},
    "churn.inactive_days.other": {"zh": "已 {v:.0f} 天未活跃", "en": "inactive {v:.0f} days"},
    "churn.category_share": {"zh": "偏好品类占所购商品 {v:.0%}", "en": "{v:.0%} of items in the top category"},
    "churn.value_score": {"zh": "价值得分 {v:.2f}", "en": "value score {v:.2f}"},
    "churn.rfm_r": {"zh": "R 分 {v:.0f}", "en": "RFM recency score {v:.0f}"},
    "churn.rfm_f": {"zh": "F 分 {v:.0f}", "en": "RFM frequency score {v:.0f}"},
    "churn.rfm_m": {"zh": "M 分 {v:.0f}", "en": "RFM monetary score {v:.0f}"},
    "churn.p_alive": {"zh": "存活概率 {v:.2f}", "en": "P(alive) {v:.2f}"},
    # a missing value: the user never bought (or bought no items)
    "churn.no_purchase": {"zh": "尚未购买", "en": "no purchase yet"},
    "churn.no_items": {"zh": "尚未购买商品", "en": "no items bought yet"},
    # a user above the average risk whom no single feature explains (models/churn.py)
    "churn.above_average": {
        "zh": "流失风险 {p:.0%}，高于平均的 {base:.0%}，无单一突出因素",
        "en": "risk {p:.0%}, above the average {base:.0%}, with no single feature standing out",
    },
    # a feature without a phrase here (a column added by hand) is shown by its name
    "churn.other": {"zh": "{feature} {v:g}", "en": "{feature} {v:g}"},
    "churn.other_missing": {"zh": "{feature} 未知", "en": "{feature} unknown"},
}
_COLUMNS: dict[str, dict[str, str]] = {
    # "col.<column>": the header of a column in exported files and listings (export.py). Money
    # headers get their unit appended there; label columns ("<col>_label") sit next to the code.
    "col.user_id": {"zh": "用户ID", "en": "User ID"},
    "col.first_ts": {"zh": "首次活跃时间", "en": "First activity"},
    "col.last_ts": {"zh": "最近活跃时间", "en": "Last activity"},
    "col.first_order_ts": {"zh": "首次购买时间", "en": "First purchase"},
    "col.last_order_ts": {"zh": "最近购买时间", "en": "Last purchase"},
    "col.tenure_days": {"zh": "首次活跃距今天数", "en": "Days since first activity"},
    "col.recency_days": {"zh": "最近购买距今天数", "en": "Days since last purchase"},
    "col.frequency": {"zh": "复购天数", "en": "Repeat purchase days"},
    "col.orders": {"zh": "购买订单数", "en": "Orders"},
    "col.monetary": {"zh": "累计消费金额", "en": "Net spend"},
    "col.aov": {"zh": "客单价", "en": "Average order value"},
    "col.refund_rate": {"zh": "退款率", "en": "Refund rate"},
    "col.refunded_orders": {"zh": "退款订单数", "en": "Refunded orders"},
    "col.interaction_depth": {"zh": "互动次数", "en": "Interactions"},
    "col.community_actions": {"zh": "社区互动次数", "en": "Community actions"},
    "col.event_days": {"zh": "有行为天数", "en": "Days with events"},
    "col.inactive_days": {"zh": "未活跃天数", "en": "Days inactive"},
    "col.days_since_return": {"zh": "回流距今天数", "en": "Days since return"},
    "col.top_category": {"zh": "偏好品类", "en": "Top category"},
    "col.category_share": {"zh": "偏好品类消费占比", "en": "Top category share"},
    "col.value_score": {"zh": "价值分", "en": "Value score"},
    "col.lifecycle": {"zh": "生命周期阶段(代码)", "en": "Lifecycle stage (code)"},
    "col.lifecycle_label": {"zh": "生命周期阶段", "en": "Lifecycle stage"},
    "col.tier": {"zh": "价值层级(代码)", "en": "Value tier (code)"},
    "col.tier_label": {"zh": "价值层级", "en": "Value tier"},
    "col.tier_reason": {"zh": "分层原因", "en": "Tier reason"},
    "col.rfm_r": {"zh": "R 分(1-5)", "en": "R score (1-5)"},
    "col.rfm_f": {"zh": "F 分(1-5)", "en": "F score (1-5)"},
    "col.rfm_m": {"zh": "M 分(1-5)", "en": "M score (1-5)"},
    "col.rfm_cell": {"zh": "RFM 分群(代码)", "en": "RFM cell (code)"},
    "col.rfm_cell_label": {"zh": "RFM 分群", "en": "RFM cell"},
    "col.as_of": {"zh": "统计日期", "en": "As of"},
    "col.p_alive": {"zh": "存活概率", "en": "P(alive)"},
    "col.expected_purchases": {"zh": "预计购买次数", "en": "Expected purchases"},
    "col.expected_spend": {"zh": "预计单次消费", "en": "Expected spend per purchase"},
    "col.clv": {"zh": "客户终身价值", "en": "CLV"},
    "col.clv_low": {"zh": "客户终身价值下限", "en": "CLV low"},
    "col.clv_high": {"zh": "客户终身价值上限", "en": "CLV high"},
    "col.churn_probability": {"zh": "流失概率", "en": "Churn probability"},
    "col.churn_reasons": {"zh": "流失原因", "en": "Churn reasons"},
    "col.next_purchase_days": {"zh": "预计距下次购买天数", "en": "Days to next purchase"},
    "col.next_purchase_within_horizon": {"zh": "预测期内购买概率", "en": "P(purchase within horizon)"},
    # loads and rejects
    "col.load_id": {"zh": "导入批次", "en": "Load"},
    "col.table_name": {"zh": "数据表", "en": "Table"},
    "col.file": {"zh": "文件", "en": "File"},
    "col.encoding": {"zh": "编码", "en": "Encoding"},
    "col.row_number": {"zh": "行号", "en": "Row"},
    "col.column_name": {"zh": "列", "en": "Column"},
    "col.value": {"zh": "值", "en": "Value"},
    "col.reason": {"zh": "原因", "en": "Reason"},
    "col.raw": {"zh": "原始行", "en": "Raw row"},
    "col.loaded_at": {"zh": "导入时间", "en": "Loaded at"},
    "col.undone_at": {"zh": "撤销时间", "en": "Undone at"},
    "col.rows_read": {"zh": "读取", "en": "Read"},
    "col.rows_inserted": {"zh": "新增", "en": "Inserted"},
    "col.rows_updated": {"zh": "更新", "en": "Updated"},
    "col.rows_unchanged": {"zh": "未变", "en": "Unchanged"},
    "col.rows_rejected": {"zh": "拒绝", "en": "Rejected"},
    "col.rows_accepted": {"zh": "接受", "en": "Accepted"},
    "col.rows_duplicate": {"zh": "重复跳过", "en": "Duplicates skipped"},
    "col.ignored_columns": {"zh": "忽略的列", "en": "Ignored columns"},
    "col.warning": {"zh": "警告", "en": "warning"},
    "col.note": {"zh": "说明", "en": "note"},
    # the schema listing (userstrata schema)
    "col.column": {"zh": "列", "en": "Column"},
    "col.type": {"zh": "类型", "en": "Type"},
    "col.required": {"zh": "必填", "en": "Required"},
    "col.key": {"zh": "主键", "en": "Key"},
    "col.default": {"zh": "缺省值", "en": "Default"},
}
_INGEST: dict[str, dict[str, str]] = {}
_ALL: dict[str, dict[str, str]] = {**_LABELS, **_PROFILE, **_CHURN, **_COLUMNS, **_INGEST}


def label(key: str, lang: Lang = "en") -> str:
    """The label of ``key`` in ``lang``; unknown keys come back unchanged."""
    entry = _ALL.get(key)
    return entry[lang] if entry else key
