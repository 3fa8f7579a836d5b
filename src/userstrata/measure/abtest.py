"""A/B results and campaign ROI (A/B 实验结果与活动 ROI): did a variant change what users bought?

- **Assignment**: from the ``touches`` of one campaign (a user's first touch in it gives the
  variant and the moment of assignment; users touched with several variants are counted in
  ``mixed_users`` and, by default, kept in their first variant) or from an assignment file
  (``user_id, variant[, assigned_at]``).
- **Outcomes** per user, from paid orders (``schema.PURCHASE_STATUSES``) placed in
  ``[assigned_at, assigned_at + window)``: conversion (any purchase), revenue per user (net of
  the orders' refunds, summed in cents), orders per user, and revenue per order (a ratio metric,
  delta method). The same sums over ``[assigned_at - window, assigned_at)`` are the pre-period
  covariate of CUPED.
- **Statistics** (``measure/stats.py``): Welch t-tests, relative effects by the delta method,
  CUPED, always-valid intervals, the SRM check, Holm–Bonferroni over the treatments of a metric.

The per-user table and the per-variant sums run on the engine; only a few numbers per variant
reach Python. docs/abtest.md gives every formula with its edge cases.
"""

from __future__ import annotations

import functools

import dataclasses
import datetime as dt_
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.features._money import to_cents
from userstrata.measure import stats as st
from userstrata.schema import PURCHASE_STATUSES

METRICS = ("conversion", "revenue", "orders", "revenue_per_order")
HOLDOUT = "holdout"
MIXED = ("first", "exclude")
SRM_ALPHA = 0.001  # a mismatch this unlikely under the plan means the assignment is broken

TEXT: dict[str, tuple[str, str]] = {
    "conversion": ("转化率", "conversion"),
    "revenue": ("人均收入", "revenue per user"),
    "orders": ("人均订单数", "orders per user"),
    "revenue_per_order": ("每单收入", "revenue per order"),
    "variant": ("组别", "Variant"),
    "metric": ("指标", "Metric"),
    "users": ("用户数", "Users"),
    "converters": ("购买用户数", "Buyers"),
    "share": ("占比", "Share"),
    "conversion_rate": ("转化率", "Conversion"),
    "revenue_per_user": ("人均收入", "Revenue / user"),
    "orders_per_user": ("人均订单", "Orders / user"),
    "control": ("对照组", "Control"),
    "control_value": ("对照组数值", "Control value"),
    "variant_value": ("实验组数值", "Variant value"),
    "effect": ("绝对差", "Difference"),
    "effect_low": ("区间下限", "CI low"),
    "effect_high": ("区间上限", "CI high"),
    "relative": ("相对提升", "Lift"),
    "relative_low": ("提升下限", "Lift low"),
    "relative_high": ("提升上限", "Lift high"),
    "p_value": ("p 值", "p-value"),
    "p_holm": ("p 值（Holm 校正）", "p (Holm)"),
    "significant": ("显著", "Significant"),
    "users_needed": ("80% 把握还需用户", "More users for 80% power"),
    "chart_title": ("相对 {control} 的提升：{metric}（{level:.0%} 区间）",
                    "Lift over {control}: {metric} ({level:.0%} interval)"),
    "chart_x": ("组别", "Variant"),
    "chart_y": ("相对提升（%）", "Lift (%)"),
    "low": ("区间下限", "interval low"),
    "high": ("区间上限", "interval high"),
}


text = functools.partial(i18n.pick, TEXT)  # text in zh or en


# -- assignments ---------------------------------------------------------------------------------
def campaign_assignments(touches: ir.Table, campaign: str) -> ir.Table:
    """``(user_id, variant, assigned_at, n_variants)``: each user's first touch of ``campaign``
    that carries a variant (ties by ``touch_id``) and how many variants the user was touched with."""
    t = touches.filter((touches.campaign == campaign) & touches.variant.notnull() & touches.user_id.notnull())
    first = ibis.window(group_by=t.user_id, order_by=[t.ts, t.touch_id])
    firsts = t.mutate(assign_rank=ibis.row_number().over(first)).filter(lambda s: s.assign_rank == 0)
    counts = t.group_by("user_id").agg(n_variants=t.variant.nunique())
    return firsts.join(counts, "user_id").select(
        "user_id", "variant", assigned_at=firsts.ts, n_variants=counts.n_variants.cast("int64")
    )


def merge_assignments(units: ir.Table) -> ir.Table:
    """``units`` (as :func:`file_assignments` gives them) with the rows of ids stitched into one
    user merged: the earliest assignment (ties: the smallest variant name), and how many
    variants the merged ids were in (more than one: a mixed user, see ``ab_test``'s ``mixed``)."""
    first = ibis.window(group_by=units.user_id, order_by=[units.assigned_at, units.variant])
    firsts = units.mutate(assign_rank=ibis.row_number().over(first)).filter(lambda s: s.assign_rank == 0)
    counts = units.group_by("user_id").agg(n_variants=units.variant.nunique())
    return firsts.join(counts, "user_id").select(
        "user_id", "variant", "assigned_at", n_variants=counts.n_variants.cast("int64")
    )


def file_assignments(frame: pd.DataFrame, *, start: dt_.datetime | None = None, source: str = "assignments") -> ir.Table:
    """An assignment file's rows (``user_id, variant[, assigned_at]``) as the table
    ``campaign_assignments`` returns; ``start`` (naive UTC) stands for a missing ``assigned_at``.
    A user listed twice must have one variant."""
    missing = [c for c in ("user_id", "variant") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: column(s) {', '.join(missing)} missing; found {', '.join(map(str, frame.columns))}",
            hint="an assignment file needs user_id and variant (assigned_at optional)",
            zh=f"{source}：缺少列 {', '.join(missing)}；现有列：{', '.join(map(str, frame.columns))}",
            hint_zh="分组文件需要 user_id 和 variant 两列（assigned_at 可选）",
        )
    out = pd.DataFrame({"user_id": frame["user_id"].astype("string").str.strip(),
                        "variant": frame["variant"].astype("string").str.strip()})
    if "assigned_at" in frame.columns:
        out["assigned_at"] = pd.to_datetime(frame["assigned_at"], errors="coerce")
        bad = out["assigned_at"].isna() & frame["assigned_at"].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame["assigned_at"].iloc[row]
            raise InputError(
                f"{source} row {row + 2}: assigned_at {value!r} is not a time",
                hint="write it as 2024-06-01 10:00 (UTC)",
                zh=f"{source} 第 {row + 2} 行：assigned_at {value!r} 不是时间",
                hint_zh="请写成 2024-06-01 10:00（UTC）",
            )
        if start is not None:
            out["assigned_at"] = out["assigned_at"].fillna(pd.Timestamp(start))
    elif start is not None:
        out["assigned_at"] = pd.Timestamp(start)
    else:
        raise InputError(
            f"{source}: no assigned_at column and no start given",
            hint="add assigned_at, or give the experiment's first day with --start",
            zh=f"{source}：没有 assigned_at 列，也没有给出开始日期",
            hint_zh="请加上 assigned_at 列，或用 --start 指定实验开始日期",
        )
    if out["assigned_at"].isna().any():
        row = int(np.flatnonzero(out["assigned_at"].isna().to_numpy())[0])
        raise InputError(f"{source} row {row + 2}: assigned_at is empty", hint="fill it or give --start",
                         zh=f"{source} 第 {row + 2} 行：assigned_at 为空", hint_zh="请填写，或用 --start 指定")
    out = out.dropna(subset=["user_id", "variant"])
    variants = out.groupby("user_id")["variant"].nunique()
    if (variants > 1).any():
        user = variants.index[variants > 1][0]
        raise InputError(
            f"{source}: user {user!r} is listed in {int(variants[user])} variants",
            hint="each user belongs to one variant",
            zh=f"{source}：用户 {user!r} 出现在 {int(variants[user])} 个组别中", hint_zh="每个用户只能属于一个组别",
        )
    out = out.sort_values("assigned_at", kind="stable").drop_duplicates("user_id")
    out["assigned_at"] = out["assigned_at"].astype("datetime64[us]")
    out["n_variants"] = 1
    return ibis.memtable(out, schema=ibis.schema({"user_id": "string", "variant": "string",
                                                  "assigned_at": "timestamp", "n_variants": "int64"}))


# -- outcomes per user and sums per variant -------------------------------------------------------
def user_outcomes(assignments: ir.Table, orders: ir.Table, *, window_days: int = 14) -> ir.Table:
    """One row per assigned user: ``post_orders, post_cents`` (paid orders and their net cents in
    ``[assigned_at, assigned_at + window)``) and ``pre_orders, pre_cents`` (the window before)."""
    if window_days < 1:
        raise InputError(f"window of {window_days} days: expected at least 1 day",
                         zh=f"窗口 {window_days} 天：至少 1 天")
    paid = orders.filter(orders.status.isin(list(PURCHASE_STATUSES)) & orders.user_id.notnull())
    paid = paid.select("user_id", "ts", net_cents=to_cents(paid.amount) - to_cents(paid.refund_amount.fill_null(0.0)))
    window = ibis.interval(days=window_days)
    a = assignments
    joined = a.left_join(paid, a.user_id == paid.user_id)
    in_post = (joined.ts >= joined.assigned_at) & (joined.ts < joined.assigned_at + window)
    in_pre = (joined.ts >= joined.assigned_at - window) & (joined.ts < joined.assigned_at)
    zero = ibis.literal(0, type="int64")
    return joined.group_by([joined.user_id, joined.variant, joined.assigned_at, joined.n_variants]).agg(
        post_orders=ibis.ifelse(in_post.fill_null(False), 1, 0).cast("int64").sum().fill_null(zero),
        post_cents=ibis.ifelse(in_post.fill_null(False), joined.net_cents, 0).cast("int64").sum().fill_null(zero),
        pre_orders=ibis.ifelse(in_pre.fill_null(False), 1, 0).cast("int64").sum().fill_null(zero),
        pre_cents=ibis.ifelse(in_pre.fill_null(False), joined.net_cents, 0).cast("int64").sum().fill_null(zero),
    )


def variant_sums(outcomes: ir.Table) -> ir.Table:
    """Per variant: users, and the sums, sums of squares and sums of products the tests need
    (integers: exact on every engine)."""
    o = outcomes.mutate(
        post_conv=(outcomes.post_orders > 0).cast("int64"), pre_conv=(outcomes.pre_orders > 0).cast("int64"),
        mixed=(outcomes.n_variants > 1).cast("int64"),
    )
    # squares and products of cents as DECIMAL(38, 0): exact, and no int64 overflow for big spenders
    # (1e7 cents squared over 1e5 users is past 2**63)
    def big(x: ir.IntegerValue) -> ir.DecimalValue:
        return x.cast(dt.Decimal(38, 0))

    return o.group_by("variant").agg(
        users=o.count(),
        mixed_users=o.mixed.sum(),
        converters=o.post_conv.sum(),
        pre_converters=o.pre_conv.sum(),
        conv_pre_products=(o.post_conv * o.pre_conv).sum(),
        orders=o.post_orders.sum(),
        orders_squares=(o.post_orders * o.post_orders).sum(),
        pre_orders=o.pre_orders.sum(),
        pre_orders_squares=(o.pre_orders * o.pre_orders).sum(),
        orders_pre_products=(o.post_orders * o.pre_orders).sum(),
        cents=o.post_cents.sum(),
        cents_squares=(big(o.post_cents) * big(o.post_cents)).sum(),
        pre_cents=o.pre_cents.sum(),
        pre_cents_squares=(big(o.pre_cents) * big(o.pre_cents)).sum(),
        cents_pre_products=(big(o.post_cents) * big(o.pre_cents)).sum(),
        cents_orders_products=(big(o.post_cents) * big(o.post_orders)).sum(),
    ).order_by("variant")


def metric_stat(row: Mapping[str, Any], metric: str, *, cuped: bool = False) -> st.Stat:
    """The summary statistic of ``metric`` for one variant's sums (money in currency units)."""
    row = {k: (v if k == "variant" else float(v)) for k, v in row.items()}
    n = int(row["users"])
    if metric == "conversion":
        post, pre, products = st.ProportionStat(n, row["converters"]), st.ProportionStat(n, row["pre_converters"]), \
            row["conv_pre_products"]
    elif metric == "orders":
        post = st.MeanStat(n, row["orders"], row["orders_squares"])
        pre = st.MeanStat(n, row["pre_orders"], row["pre_orders_squares"])
        products = row["orders_pre_products"]
    elif metric == "revenue":
        post = st.MeanStat(n, row["cents"] / 100, row["cents_squares"] / 1e4)
        pre = st.MeanStat(n, row["pre_cents"] / 100, row["pre_cents_squares"] / 1e4)
        products = row["cents_pre_products"] / 1e4
    elif metric == "revenue_per_order":
        return st.RatioStat(n, st.MeanStat(n, row["cents"] / 100, row["cents_squares"] / 1e4),
                            st.MeanStat(n, row["orders"], row["orders_squares"]), row["cents_orders_products"] / 100)
    else:
        raise InputError(f"metric {metric!r}: use one of {', '.join(METRICS)}",
                         zh=f"指标 {metric!r}：可选 {', '.join(METRICS)}")
    return st.AdjustedStat(n, post, pre, float(products)) if cuped else post


# -- the result ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ABTest:
    """An experiment's results: ``variants`` (one row per variant), ``effects`` (one row per
    metric and treatment against ``control``), ``srm`` (the sample-ratio check), ``roi`` (the
    campaign's incremental revenue against the holdout; empty without one)."""

    experiment: str
    control: str
    window_days: int
    alpha: float
    cuped: bool
    sequential: bool
    variants: pd.DataFrame
    effects: pd.DataFrame
    srm: pd.DataFrame
    srm_p_value: float
    roi: pd.DataFrame
    mixed_users: int

    @property
    def srm_flagged(self) -> bool:
        return bool(self.srm_p_value < SRM_ALPHA)

    def verdict(self, lang: str = "en") -> list[str]:
        """One plain sentence per metric and treatment (SRM and ROI first when they apply)."""
        lines = []
        if self.srm_flagged:
            shares = "、".join if lang == "zh" else ", ".join
            got = shares(f"{r.variant} {r.share:.1%}" for r in self.srm.itertuples())
            plan = shares(f"{r.variant} {r.expected_share:.1%}" for r in self.srm.itertuples())
            lines.append(
                f"样本比例失衡（SRM，p = {self.srm_p_value:.2g}）：实际 {got}，计划 {plan}；分组可能有问题，结论不可信"
                if lang == "zh" else
                f"sample ratio mismatch (SRM, p = {self.srm_p_value:.2g}): got {got}, planned {plan}; "
                "the assignment may be broken, do not trust the results"
            )
        for row in self.effects.itertuples():
            lines.append(_sentence(row, self.alpha, lang))
        for row in self.roi.itertuples():
            lines.append(_roi_sentence(row, self.alpha, lang))
        return lines

    def table(self, lang: str = "en") -> pd.DataFrame:
        """``effects`` with headers and metric names in ``lang``."""
        out = self.effects.copy()
        out["metric"] = [text(m, lang) for m in out["metric"]]
        return out.rename(columns={c: text(c, lang) for c in out.columns if c in TEXT})

    def chart(self, metric: str = "conversion", lang: str = "en") -> Any:
        """The lift of each treatment over the control on ``metric`` with its interval (a bar with
        error bars; the interval's ends also as markers, which the PNG draws)."""
        import plotly.graph_objects as go  # noqa: PLC0415 - only charts need plotly

        rows = self.effects[self.effects["metric"] == metric]
        x = [str(v) for v in rows["variant"]]
        lift = (rows["relative"] * 100).tolist()
        low, high = (rows["relative_low"] * 100).tolist(), (rows["relative_high"] * 100).tolist()
        fig = go.Figure()
        fig.add_trace(go.Bar(x=x, y=lift, name=text("relative", lang), error_y=dict(
            type="data", symmetric=False, array=[h - v for h, v in zip(high, lift)],
            arrayminus=[v - lo for v, lo in zip(lift, low)])))
        fig.add_trace(go.Scatter(x=x, y=low, mode="markers", name=text("low", lang)))
        fig.add_trace(go.Scatter(x=x, y=high, mode="markers", name=text("high", lang)))
        fig.update_layout(
            title=text("chart_title", lang).format(control=self.control, metric=text(metric, lang),
                                                   level=1 - self.alpha),
            xaxis_title=text("chart_x", lang), yaxis_title=text("chart_y", lang),
            barmode="overlay",  # one bar per variant: the interval markers sit on its centre
        )
        return fig


def _value(metric: str, value: float, lang: str, *, diff: bool = False) -> str:
    """A metric's value (or an absolute difference) as an operator reads it."""
    if metric == "conversion":
        return f"{abs(value) * 100:.1f} 个百分点" if diff and lang == "zh" else (
            f"{abs(value) * 100:.1f} percentage points" if diff else f"{value:.1%}")
    if metric == "orders":
        return f"{abs(value) if diff else value:.3f}" + (" 单" if lang == "zh" else " orders")
    return money(abs(value) if diff else value)


def money(value: float) -> str:
    """¥1,234.50 / -¥1,234.50."""
    return f"{'-' if value < 0 else ''}¥{abs(value):,.2f}"


def _interval(metric: str, low: float, high: float, lang: str) -> str:
    scale, fmt = (100, ".1f") if metric == "conversion" else (1, ".3f" if metric == "orders" else ",.2f")
    return f"{low * scale:{fmt}}{'～' if lang == 'zh' else ' to '}{high * scale:{fmt}}"


def _sentence(row: Any, alpha: float, lang: str) -> str:
    name = text(row.metric, lang)
    level = f"{1 - alpha:.0%}"
    if not np.isfinite(row.effect_low):
        return (f"{row.variant} 与 {row.control} 的{name}无法比较（样本太少或没有差异）" if lang == "zh"
                else f"{row.variant} vs {row.control}, {name}: cannot be compared (too few users or no variance)")
    ci = _interval(row.metric, row.effect_low, row.effect_high, lang)
    if row.significant:
        up = row.effect > 0
        if lang == "zh":
            return (f"{row.variant} 的{name}比 {row.control} {'高' if up else '低'} {_value(row.metric, row.effect, lang, diff=True)}"
                    f"（{level} 区间 {ci}），显著（p = {row.p_holm:.2g}）")
        return (f"{row.variant}'s {name} is {_value(row.metric, row.effect, lang, diff=True)} "
                f"{'higher' if up else 'lower'} than {row.control}'s ({level} interval {ci}), significant "
                f"(p = {row.p_holm:.2g})")
    more = row.users_needed
    seen = _value(row.metric, row.effect, lang, diff=True)
    if lang == "zh":
        tail = ("；观测到的差异为零，加样本也无从检出" if not np.isfinite(more) else
                f"；约需再收集 {more:,.0f} 位用户才有 80% 把握检出这一差异" if more > 0 else "")
        side = "高" if row.effect > 0 else "低"
        return (f"{row.variant} 与 {row.control} 的{name}无显著差异（{row.variant} {side} {seen}，{level} 区间 {ci}，"
                f"p = {row.p_holm:.2g}）{tail}")
    tail = ("; the observed difference is zero, more users would not show one" if not np.isfinite(more) else
            f"; collect about {more:,.0f} more users for 80% power to detect this difference" if more > 0 else "")
    side = "higher" if row.effect > 0 else "lower"
    return (f"{row.variant} vs {row.control}, {name}: no significant difference ({row.variant} {seen} {side}, "
            f"{level} interval {ci}, p = {row.p_holm:.2g}){tail}")


def _roi_sentence(row: Any, alpha: float, lang: str) -> str:
    level = f"{1 - alpha:.0%}"
    roi = "" if not np.isfinite(row.roi) else (f"，ROI {row.roi:.0%}" if lang == "zh" else f", ROI {row.roi:.0%}")
    sure = bool(row.incremental_low > 0 or row.incremental_high < 0)
    low, high, inc = money(row.incremental_low), money(row.incremental_high), money(row.incremental_revenue)
    if lang == "zh":
        note = "" if sure else "；增量不显著，区间包含 0"
        return (f"活动增量收入 {inc}（相对空白对照组，{level} 区间 {low}～{high}），扣除成本 {money(row.cost)} 后净得 "
                f"{money(row.net_revenue)}{roi}{note}")
    note = "" if sure else "; the increment is not significant (the interval includes 0)"
    return (f"campaign incremental revenue {inc} against the holdout ({level} interval {low} to {high}); "
            f"after the cost of {money(row.cost)}, net {money(row.net_revenue)}{roi}{note}")


# -- the analysis --------------------------------------------------------------------------------
def ab_test(
    assignments: ir.Table,
    orders: ir.Table,
    *,
    experiment: str = "",
    window_days: int = 14,
    control: str | None = None,
    holdout: str = HOLDOUT,
    metrics: Sequence[str] = METRICS,
    cuped: bool = False,
    sequential: bool = False,
    tuning: float = st.DEFAULT_TUNING,
    alpha: float = 0.05,
    weights: Mapping[str, float] | None = None,
    mixed: str = "first",
    cost: float = 0.0,
    execute: Callable[[ir.Expr], pd.DataFrame] | None = None,
) -> ABTest:
    """Results of an experiment whose users are ``assignments`` (``campaign_assignments`` or
    ``file_assignments``), outcomes from ``orders`` within ``window_days`` of assignment.

    Parameters
    ----------
    control
        The variant the others are compared with (default ``A`` when present, else the first).
    holdout
        The variant that received nothing: left out of the A/B comparisons and of the default
        SRM plan, and the baseline of the campaign ROI (all other variants together against it).
    cuped
        Adjust conversion, revenue and orders by the same metric in the window before assignment
        (CUPED, one theta pooled per comparison); revenue per order is never adjusted.
    sequential, tuning
        Always-valid intervals and p-values (safe to look every day), tightest near ``tuning``
        users in the two variants together.
    weights
        The planned share of each variant for the SRM check (default: equal over the tested
        variants, holdout left out).
    mixed
        Users touched with more than one variant: ``first`` keeps them in their first, ``exclude``
        drops them.
    cost
        The campaign's cost (currency units) for the ROI.
    """
    if mixed not in MIXED:
        raise InputError(f"mixed {mixed!r}: use one of {', '.join(MIXED)}", zh=f"mixed {mixed!r}：可选 {', '.join(MIXED)}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha}: expected a number between 0 and 1", zh=f"alpha {alpha}：应在 0 和 1 之间")
    for m in metrics:
        if m not in METRICS:
            raise InputError(f"metric {m!r}: use one of {', '.join(METRICS)}", zh=f"指标 {m!r}：可选 {', '.join(METRICS)}")
    run = execute or (lambda e: e.to_pandas())
    if mixed == "exclude":
        assignments = assignments.filter(assignments.n_variants == 1)
    sums = run(variant_sums(user_outcomes(assignments, orders, window_days=window_days)))
    sums = sums.sort_values("variant", kind="stable").reset_index(drop=True)
    names = [str(v) for v in sums["variant"]]
    if not names:
        raise InputError(
            f"experiment {experiment!r}: no assigned users found",
            hint="check the name against the touches' campaign column, or the assignment file",
            zh=f"实验 {experiment!r}：没有找到分组用户", hint_zh="请对照触达表的 campaign 列检查名称，或检查分组文件",
        )
    tested = [v for v in names if v != holdout]
    if control is None:
        control = "A" if "A" in tested else (tested[0] if tested else names[0])
    if control not in names:
        raise InputError(f"control {control!r} is not a variant of {experiment!r}; variants: {', '.join(names)}",
                         zh=f"对照组 {control!r} 不在实验 {experiment!r} 的组别中；现有组别：{', '.join(names)}")
    rows = {str(r["variant"]): r for r in sums.to_dict("records")}
    variants = _variant_table(sums)
    effects = _effects(rows, control, [v for v in tested if v != control], metrics, cuped=cuped,
                       sequential=sequential, tuning=tuning, alpha=alpha)
    srm, srm_p = _srm(variants, weights, tested)
    roi = _roi(rows, holdout, cost, alpha) if holdout in rows and len(rows) > 1 else _roi_empty()
    return ABTest(experiment, control, window_days, alpha, cuped, sequential, variants, effects, srm, srm_p, roi,
                  int(sums["mixed_users"].sum()))


def _variant_table(sums: pd.DataFrame) -> pd.DataFrame:
    users = sums["users"].astype("int64")
    out = pd.DataFrame({"variant": sums["variant"].astype(str), "users": users,
                        "share": users / users.sum(), "converters": sums["converters"].astype("int64")})
    out["conversion_rate"] = out["converters"] / users
    out["revenue_per_user"] = sums["cents"] / 100 / users
    out["orders_per_user"] = sums["orders"] / users
    out["revenue_per_order"] = np.where(sums["orders"] > 0, sums["cents"] / 100 / sums["orders"].where(sums["orders"] > 0, 1),
                                        np.nan)
    return out


_EFFECT_COLUMNS = ["metric", "variant", "control", "control_value", "variant_value", "effect", "effect_low",
                   "effect_high", "relative", "relative_low", "relative_high", "p_value", "p_holm", "significant",
                   "users_needed"]


def _effects(rows: Mapping[str, Mapping[str, Any]], control: str, treatments: Sequence[str], metrics: Sequence[str],
             *, cuped: bool, sequential: bool, tuning: float, alpha: float) -> pd.DataFrame:
    out = []
    for metric in metrics:
        block = []
        a = metric_stat(rows[control], metric, cuped=cuped)
        for variant in treatments:
            b = metric_stat(rows[variant], metric, cuped=cuped)
            options = dict(alpha=alpha, sequential=sequential, tuning=tuning)
            absolute = st.compare(a, b, **options)
            relative = st.compare(a, b, relative=True, **options)
            plain_a, plain_b = metric_stat(rows[control], metric), metric_stat(rows[variant], metric)
            needed = st.users_for_power(plain_a.variance, plain_b.variance, absolute.estimate, alpha=alpha,
                                        share_b=b.n / (a.n + b.n)) - (a.n + b.n)
            block.append(dict(
                metric=metric, variant=variant, control=control, control_value=plain_a.mean,
                variant_value=plain_b.mean, effect=absolute.estimate, effect_low=absolute.ci_low,
                effect_high=absolute.ci_high, relative=relative.estimate, relative_low=relative.ci_low,
                relative_high=relative.ci_high, p_value=absolute.p_value, users_needed=max(needed, 0.0),
            ))
        adjusted = st.holm([r["p_value"] for r in block])
        for r, p in zip(block, adjusted):
            r["p_holm"] = float(p)
            r["significant"] = bool(p <= alpha)  # NaN compares False
        out.extend(block)
    return pd.DataFrame(out, columns=_EFFECT_COLUMNS)


def _srm(variants: pd.DataFrame, weights: Mapping[str, float] | None, tested: Sequence[str]) -> tuple[pd.DataFrame, float]:
    if weights is None:
        weights = {v: 1.0 for v in tested} if tested else {v: 1.0 for v in variants["variant"]}
    unknown = sorted(set(weights) - set(variants["variant"]))
    if unknown:
        raise InputError(f"weights name variant(s) {', '.join(unknown)} that have no users; "
                         f"variants: {', '.join(variants['variant'])}",
                         zh=f"权重中的组别 {', '.join(unknown)} 没有用户；现有组别：{', '.join(variants['variant'])}")
    w = np.array([float(weights.get(v, 0.0)) for v in variants["variant"]])
    if (w < 0).any() or w.sum() <= 0:
        raise InputError("weights must be >= 0 with a positive total", zh="权重须不小于 0 且总和为正")
    kept = w > 0
    users = variants["users"].to_numpy()
    srm = pd.DataFrame({"variant": variants["variant"][kept].to_numpy(), "users": users[kept],
                        "share": users[kept] / users[kept].sum(), "expected_share": w[kept] / w[kept].sum()})
    return srm, st.srm_p_value(users.tolist(), w.tolist())


_ROI_COLUMNS = ["treated_users", "holdout_users", "treated_revenue_per_user", "holdout_revenue_per_user",
                "incremental_revenue", "incremental_low", "incremental_high", "p_value", "cost", "net_revenue", "roi"]


def _roi_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=_ROI_COLUMNS)


def _roi(rows: Mapping[str, Mapping[str, Any]], holdout: str, cost: float, alpha: float) -> pd.DataFrame:
    """Incremental revenue = (revenue per treated user - revenue per holdout user) x treated
    users, with the Welch interval scaled the same way; net = incremental - cost; ROI = net / cost."""
    keys = [k for k in next(iter(rows.values())) if k != "variant"]
    treated = {k: sum(r[k] for v, r in rows.items() if v != holdout) for k in keys}
    t, h = metric_stat(treated, "revenue"), metric_stat(rows[holdout], "revenue")
    effect = st.compare(h, t, alpha=alpha)
    n = t.n
    incremental = effect.estimate * n
    net = incremental - cost
    return pd.DataFrame([dict(
        treated_users=n, holdout_users=h.n, treated_revenue_per_user=t.mean, holdout_revenue_per_user=h.mean,
        incremental_revenue=incremental, incremental_low=effect.ci_low * n, incremental_high=effect.ci_high * n,
        p_value=effect.p_value, cost=float(cost), net_revenue=net, roi=net / cost if cost > 0 else math.nan,
    )], columns=_ROI_COLUMNS)
