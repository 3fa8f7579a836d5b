"""Segments (人群): named conditions over the profile and prediction columns, e.g.
``monetary >= 5000 and lifecycle in ['dormant', 'churned']``.

A condition is parsed with Python's ``ast`` and compiled to an Ibis boolean expression, so it
runs on the engine (DuckDB or Spark) and no text ever reaches SQL or ``eval``. Only columns,
numbers, strings, lists of them, comparisons (``== != < <= > >= in``, ``not in``),
``and``/``or``/``not`` and arithmetic are allowed; anything else is refused with the position.
A column that does not exist is named with what exists (and the closest name); a tier, stage or
RFM cell that does not exist is named with the allowed values.

```python
seg = Segment("lapsed_vip", "monetary >= 5000 and lifecycle in ['dormant', 'churned']")
members = seg.members(ws.profile(as_of))          # an Ibis expression
```
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from userstrata.errors import InputError
from userstrata.schema import LIFECYCLE_STAGES, RFM_CELLS, TIERS

__all__ = ["BUILT_IN", "Segment", "compile_condition", "resolve"]

# columns whose values come from a fixed vocabulary: a misspelt value is an error, not an empty segment
_VOCABULARY: dict[str, tuple[str, ...]] = {"tier": TIERS, "lifecycle": LIFECYCLE_STAGES, "rfm_cell": RFM_CELLS}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}  # fmt: skip
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Segment:
    """A named condition; ``label_zh``/``label_en`` are what an operator reads, ``needs`` the
    columns it takes from beyond the profile (e.g. the predictions), for the error that says how
    to get them."""

    name: str
    where: str
    label_zh: str = ""
    label_en: str = ""
    needs: tuple[str, ...] = field(default=())

    def label(self, lang: str = "en") -> str:
        return (self.label_zh if lang == "zh" else self.label_en) or self.name

    def condition(self, table: ir.Table) -> ir.BooleanValue:
        return compile_condition(self.where, table, name=self.name, needs=self.needs)

    def members(self, table: ir.Table) -> ir.Table:
        """The rows of ``table`` (a profile, with predictions when the condition uses them) in the segment."""
        return table.filter(self.condition(table))


# The operator's classic lists (DESIGN.md): lapsed big spenders whatever their tier, new users
# who have not bought yet, carts left behind, members about to lapse, purchases never used.
BUILT_IN: dict[str, Segment] = {
    s.name: s
    for s in (
        Segment("lapsed_high_value", "rfm_m >= 4 and lifecycle in ['dormant', 'churned']",
                "高价值沉睡", "Lapsed high value"),
        Segment("new_no_first_order", "orders == 0 and tenure_days <= 30", "新客未首单", "New, no first order"),
        Segment("cart_abandoners", "cart_abandoned == True", "加购未买", "Cart abandoners", ("cart_abandoned",)),
        Segment("expiring_members", "days_to_expiry <= 7", "会员即将到期", "Membership expiring",
                ("days_to_expiry",)),
        Segment("unused_purchases", "purchases_unused > 0", "购买未使用", "Purchases not used"),
    )
}  # fmt: skip


def resolve(name: str, defined: Mapping[str, Segment] | None = None) -> Segment:
    """The segment ``name``: one defined in settings first, else a built-in one."""
    known = {**BUILT_IN, **(defined or {})}
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise InputError(
            f"no segment {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; segments: {', '.join(sorted(known))}",
            hint="define one in userstrata.toml under [segments.NAME] with where = \"...\"",
            zh=f"没有名为 {name!r} 的人群" + (f"（是否想用 {close[0]!r}？）" if close else "")
            + f"；已有：{', '.join(sorted(known))}",
            hint_zh="在 userstrata.toml 的 [segments.名称] 下用 where = \"...\" 定义",
        )
    return known[name]


def compile_condition(where: str, table: ir.Table, *, name: str = "segment",
                      needs: tuple[str, ...] = ()) -> ir.BooleanValue:
    """``where`` as an Ibis boolean over ``table``'s columns (InputError naming what is wrong)."""
    try:
        tree = ast.parse(where.strip(), mode="eval")
    except SyntaxError as exc:
        raise _error(name, where, f"is not a condition ({exc.msg} at character {exc.offset})",
                     f"不是有效的条件（第 {exc.offset} 个字符处：{exc.msg}）") from None
    value = _Compiler(table, name, where, needs).visit(tree.body)
    if not isinstance(value, ir.BooleanValue):
        raise _error(name, where, "is not a yes/no condition (compare a column with a value)",
                     "不是判断条件（应比较某列与某值）")
    return value


def _error(name: str, where: str, en: str, zh: str, hint: str | None = None, hint_zh: str | None = None) -> InputError:
    return InputError(f"segment {name!r}: {where!r} {en}", hint=hint, zh=f"人群 {name!r}：{where!r} {zh}",
                      hint_zh=hint_zh)


class _Compiler(ast.NodeVisitor):
    def __init__(self, table: ir.Table, name: str, where: str, needs: tuple[str, ...]):
        self.table, self.name, self.where, self.needs = table, name, where, needs

    def generic_visit(self, node: ast.AST) -> Any:
        what = type(node).__name__
        raise _error(self.name, self.where, f"uses {what} at character {getattr(node, 'col_offset', 0) + 1}; "
                     "only columns, values, comparisons, in, and/or/not and + - * / are allowed",
                     f"在第 {getattr(node, 'col_offset', 0) + 1} 个字符处用了 {what}；只允许列名、值、比较、in、"
                     "and/or/not 与加减乘除")

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in self.table.columns:
            close = difflib.get_close_matches(node.id, self.table.columns, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            guess_zh = f"（是否想用 {close[0]!r}？）" if close else ""
            hint = hint_zh = None
            if node.id in self.needs:
                hint = f"{node.id!r} comes from beyond the profile: compute it first (see docs/segments.md)"
                hint_zh = f"{node.id!r} 不在画像中，需先计算（见 docs/segments.md）"
            raise _error(self.name, self.where, f"uses column {node.id!r}, which does not exist{guess}; columns: "
                         f"{', '.join(self.table.columns)}",
                         f"用到的列 {node.id!r} 不存在{guess_zh}；现有列：{', '.join(self.table.columns)}", hint, hint_zh)
        return self.table[node.id]

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            return self.generic_visit(node)
        return node.value

    def visit_List(self, node: ast.List | ast.Tuple) -> list:
        values = [self.visit(v) for v in node.elts]
        if any(isinstance(v, ir.Expr) for v in values):
            return self.generic_visit(node)
        return values

    visit_Tuple = visit_List

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not) and isinstance(value, ir.BooleanValue):
            return ~value
        if isinstance(node.op, ast.USub) and not isinstance(value, (str, list, ir.BooleanValue)):
            return -value
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.visit(v) for v in node.values]
        if not all(isinstance(v, ir.BooleanValue) for v in values):
            return self.generic_visit(node)
        combined = values[0]
        for v in values[1:]:
            combined = combined & v if isinstance(node.op, ast.And) else combined | v
        return combined

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _ARITHMETIC.get(type(node.op))
        if op is None:
            return self.generic_visit(node)
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Div) and isinstance(right, ir.NumericValue):
            # x / 0 is missing, never NaN: DuckDB sorts NaN above every number, so NaN >= 300 holds
            right = right.nullif(0)
        return op(left, right)

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node)
            self._check_values(node.left, right)
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, list) or not isinstance(left, ir.Expr):
                    return self.generic_visit(node)
                test = left.isin(right) if isinstance(op, ast.In) else ~left.isin(right)
            elif isinstance(op, (ast.Is, ast.IsNot)) and right is None and isinstance(left, ir.Expr):
                test = left.isnull() if isinstance(op, ast.Is) else left.notnull()
            elif type(op) in _COMPARE:
                if right is None and isinstance(left, ir.Expr):
                    test = left.isnull() if isinstance(op, ast.Eq) else left.notnull()
                else:
                    test = _COMPARE[type(op)](left, right)
            else:
                return self.generic_visit(node)
            result = test if result is None else result & test
            left = right
        return result

    def _check_values(self, column_node: ast.AST, value: Any) -> None:
        """A tier, stage or cell compared with a value it can never take: say which exist."""
        if not isinstance(column_node, ast.Name) or column_node.id not in _VOCABULARY:
            return
        allowed = _VOCABULARY[column_node.id]
        given = value if isinstance(value, list) else [value]
        wrong = [v for v in given if isinstance(v, str) and v not in allowed]
        if wrong:
            raise _error(self.name, self.where, f"compares {column_node.id} with {wrong}; {column_node.id} is one of "
                         f"{', '.join(allowed)}",
                         f"把 {column_node.id} 与 {wrong} 比较；{column_node.id} 的取值为 {', '.join(allowed)}")


def table_of(frame: Any) -> ir.Table:
    """An Ibis table of ``frame`` (a pandas frame, e.g. the predictions) or ``frame`` itself."""
    return frame if isinstance(frame, ir.Table) else ibis.memtable(frame)


def cart_abandonment(events: ir.Table, orders: ir.Table, *, as_of: Any, clock: Any, days: int = 7) -> ir.Table:
    """Per user with an ``add_to_cart`` in the ``days`` local days up to ``as_of``: ``last_cart_at``
    and ``cart_abandoned`` (no purchase at or after that cart up to the end of ``as_of``).

    Users without a recent cart are absent (join left and treat missing as not abandoned).
    """
    from userstrata.schema import PURCHASE_STATUSES  # noqa: PLC0415

    carts = events.filter((events.event == "add_to_cart") & events.user_id.notnull())
    carts = carts.mutate(day=clock.local_date(carts.ts))
    carts = carts.filter((carts.day <= as_of) & (clock.days_before(carts.day, as_of) < days))
    last = carts.group_by("user_id").agg(last_cart_at=carts.ts.max())
    paid = orders.filter(orders.status.isin(PURCHASE_STATUSES))
    paid = paid.filter(clock.local_date(paid.ts) <= as_of)
    bought = (
        last.join(paid, last.user_id == paid.user_id)
        .filter(lambda t: t.ts >= t.last_cart_at)
        .select("user_id")
        .distinct()
        .mutate(bought_after=ibis.literal(True))
    )
    joined = last.left_join(bought, "user_id")
    return joined.select(
        "user_id", "last_cart_at", cart_abandoned=joined.bought_after.isnull()
    )


def columns_used(where: str) -> set[str]:
    """The names a condition refers to (columns, as written; syntax errors surface on compile)."""
    try:
        tree = ast.parse(where.strip(), mode="eval")
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - {"True", "False", "None"}


def defined_segments(definitions: Mapping[str, Any]) -> dict[str, Segment]:
    """The segments of ``[segments.NAME]`` in settings (``SegmentDefinition`` each)."""
    return {name: Segment(name, d.where, d.label_zh, d.label_en) for name, d in definitions.items()}


_MEMBERSHIP_COLUMNS = ("plan", "days_to_expiry", "p_renew_next")


def segment_members(
    segment: Segment,
    *,
    profile: ir.Table,
    events: ir.Table,
    orders: ir.Table,
    as_of: Any,
    clock: Any,
    predictions: Any = None,
    memberships: Any = None,
    cart_days: int = 7,
) -> ir.Table:
    """The profile rows in ``segment`` as of ``as_of``.

    Columns beyond the profile are added only when the condition uses them: ``cart_abandoned``
    / ``last_cart_at`` from the events, and the prediction columns from ``predictions()`` (a
    callable returning the predictions with the profile, run only then, since it fits models),
    ``days_to_expiry`` / ``p_renew_next`` / ``plan`` of each user's soonest-ending membership from
    ``memberships()`` (a callable returning the renewals' per-member frame).
    """
    used = columns_used(segment.where)
    table = profile
    if used & {"cart_abandoned", "last_cart_at"}:
        carts = cart_abandonment(events, orders, as_of=as_of, clock=clock, days=cart_days)
        table = table.left_join(carts, "user_id").drop("user_id_right")
        table = table.mutate(cart_abandoned=table.cart_abandoned.fill_null(False))
    if used & set(_MEMBERSHIP_COLUMNS) and memberships is not None:
        frame = memberships()
        soonest = (frame.sort_values(["user_id", "days_to_expiry", "plan"])
                   .drop_duplicates("user_id")[["user_id", *_MEMBERSHIP_COLUMNS]])
        table = table.left_join(table_of(soonest), "user_id").drop("user_id_right")
    if used - set(table.columns) and predictions is not None:
        from userstrata.models.predict import PREDICTION_COLUMNS  # noqa: PLC0415 - fits models only when asked

        if used & set(PREDICTION_COLUMNS):
            frame = predictions()
            extra = table.drop(*[c for c in table.columns if c in frame.columns and c != "user_id"])
            table = table_of(frame).join(extra, "user_id") if len(extra.columns) > 1 else table_of(frame)
    return segment.members(table)
