"""Row validation as one DuckDB query per chunk: parse, normalise, apply defaults, and name
the first failing column of each bad row with a human reason. No Python loop over rows.

Only SQL literals built by ``lit`` (quotes doubled) carry user text into SQL; source columns
are addressed by position (``c0``, ``c1``...), never by their names.
"""

from __future__ import annotations

import datetime as dt_
import functools
import zoneinfo
from dataclasses import dataclass

from userstrata import _engine
from userstrata.ingest import pii
from userstrata.ingest.mapping import ColumnPlan
from userstrata.schema import ORDER_STATUSES, TableSpec

# spaces a spreadsheet cell may carry around a value: ASCII, no-break, ideographic (全角)
_WS = " \t\r\n\u00a0\u3000"
# what may decorate a number: whitespace, currency symbols (seed brief: ¥ ￥ $)
_NUMBER_NOISE = r"[\s\x{00A0}\x{3000}¥￥$]"
# a cell that starts or ends with one of _WS (or another regex space, which trim then keeps):
# only such cells go through the (slower) multi-character trim
_WS_AT_EDGE = r"^[\s\x{00A0}\x{3000}]|[\s\x{00A0}\x{3000}]$"
_NOT_BLANK = r"[^\s\x{00A0}\x{3000}]"
_THOUSANDS = r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?"
# a time with an explicit offset or zone: '...07:59:00Z', '...07:59+08:00', '... 07:59:00 +0800'
_OFFSET = r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$"
# naive formats TRY_CAST(... AS TIMESTAMP) does not take (it takes ISO with ' ' or 'T',
# fractional seconds, '-' or '/' dates with or without leading zeros, date only)
_EXTRA_FORMATS = (
    "%Y%m%d", "%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d %H:%M:%S", "%Y%m%d %H:%M",
    "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d",
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日",
)
TS_EXAMPLES = "2024-06-30 14:05:00, 2024-06-30T14:05:00+08:00, 2024/6/30 14:05, 20240630 or epoch seconds"
TS_EXAMPLES_ZH = "2024-06-30 14:05:00、2024-06-30T14:05:00+08:00、2024/6/30 14:05、2024年6月30日、20240630 或时间戳"


def lit(value: object) -> str:
    """An SQL literal; text has its quotes doubled (DuckDB strings know no backslash escapes)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt_.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Rules:
    """The settings validation needs, resolved once per load."""

    timezone: str
    currency: str
    future_limit: dt_.datetime  # naive UTC
    future_tolerance_hours: float
    earliest: dt_.date = dt_.date(1990, 1, 1)
    statuses: tuple[tuple[str, str], ...] = ()  # (folded source value, canonical status)
    events: tuple[tuple[str, str], ...] = ()  # (folded source name, canonical name)
    currency_rates: tuple[tuple[str, float], ...] = ()  # (currency, units of the shop currency)
    # direct identifiers hashed as they are staged (ingest/pii.py registers the functions)
    hash_pii: bool = False
    pii_sources: tuple[str, ...] = ()  # identities.source values whose external_id is hashed


def column_kind(spec: TableSpec, column: str) -> str:
    dtype = spec.schema[column]
    if dtype.is_timestamp():
        return "ts"
    if dtype.is_floating():
        return "money"
    if dtype.is_integer():
        return "count"
    if column == "status":
        return "status"
    if column == "event":
        return "event"
    if column == "currency":
        return "upper"
    if column in ("attributes", "properties"):
        return "json"
    return "text"


def _quoted(expr: str) -> str:
    """SQL for: the value in quotes, shortened, for a reason text."""
    return f"'''' || (CASE WHEN length({expr}) > 60 THEN left({expr}, 57) || '...' ELSE {expr} END) || ''''"


def _lookup(expr: str, pairs: tuple[tuple[str, str], ...], *, otherwise: str = "NULL") -> str:
    """SQL for: the canonical value of ``expr`` (trimmed and already lower-cased: a column, so
    that lower() runs once per row, not once per WHEN) by ``pairs``."""
    if not pairs:
        return otherwise
    # one simple CASE (a hash-free scan of short strings) is several times faster in DuckDB than
    # IN lists, which it runs as a join per canonical value
    whens = " ".join(f"WHEN {lit(source)} THEN {lit(canonical)}" for source, canonical in dict(pairs).items())
    return f"CASE {expr} {whens} ELSE {otherwise} END"


def _trim(cell: str) -> str:
    """SQL for: ``cell`` without the spaces of ``_WS`` around it, '' as NULL. The same as
    ``trim(cell, _WS)``; a cell with nothing to trim (nearly all) skips the trim."""
    return (f"nullif(CASE WHEN regexp_matches({cell}, {lit(_WS_AT_EDGE)}) THEN trim({cell}, {lit(_WS)}) "
            f"ELSE {cell} END, '')")


# a zone's offset is taken as fixed only up to this date (the offset changes are scanned up to it)
_FIXED_UNTIL = dt_.datetime(2100, 1, 1)


@functools.lru_cache(maxsize=64)
def fixed_offset(zone: str) -> tuple[dt_.datetime, dt_.datetime, dt_.timedelta] | None:
    """(from, until, offset): local times in [from, until) are UTC + offset in ``zone``, with no
    transition in between (Asia/Shanghai: from 1991-09-17, two days after its last summer time
    ended). None for a zone with daylight saving or one the tz database does not know."""
    try:
        first, changes = _engine._offset_changes(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    if len(changes) > _engine._MAX_ARITHMETIC_CHANGES:  # the scan stopped early: daylight saving
        return None
    since, seconds = changes[-1] if changes else (dt_.datetime(1970, 1, 1), first)
    offset = dt_.timedelta(seconds=seconds)
    return since + offset + dt_.timedelta(days=2), _FIXED_UNTIL, offset


def to_utc(local: str, zone: str) -> str:
    """SQL for: the naive local time ``local`` in ``zone`` as naive UTC. Times in the zone's
    last fixed-offset stretch (``fixed_offset``) are shifted by it; others go through the
    time-zone database (the same result, per row and slower)."""
    general = f"timezone('UTC', timezone({lit(zone)}, {local}))"
    fixed = fixed_offset(zone)
    if fixed is None:
        return general
    start, until, offset = fixed
    seconds = int(offset.total_seconds())
    return (f"CASE WHEN {local} >= {lit(start)} AND {local} < {lit(until)} "
            f"THEN {local} - INTERVAL ({seconds}) SECOND ELSE {general} END")


# a zone or offset at the end of a time (a superset of what _OFFSET ends with)
_ZONE_AT_END = r"(Z|z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$"


def _plain_ts(raw: str) -> str:
    """SQL for: ``raw`` as a naive timestamp when it is one TRY_CAST reads and none of the
    branches of ``_parse_ts`` before TRY_CAST could take it (epoch digits have no '-', '/' or
    ':'; a zone or offset at its end goes to the regex branch); NULL otherwise (the general
    parser decides). Substring checks and one end-anchored regex: cheap."""
    return (f"CASE WHEN (strpos({raw}, '-') > 0 OR strpos({raw}, '/') > 0 OR strpos({raw}, ':') > 0) "
            f"AND NOT regexp_matches({raw}, {lit(_ZONE_AT_END)}) THEN TRY_CAST({raw} AS TIMESTAMP) END")


def _parse_ts(raw: str, zone: str, plain: str | None = None) -> str:
    """SQL for: the cell ``raw`` as naive UTC, or NULL. ``plain`` names the column that holds
    ``_plain_ts(raw)`` (computed once, below this expression): those values skip the regexes."""
    zone_lit = lit(zone)
    formats = "[" + ", ".join(lit(f) for f in _EXTRA_FORMATS) + "]"
    fast = f"WHEN {plain} IS NOT NULL THEN {to_utc(plain, zone)}" if plain else ""
    return f"""CASE
        WHEN {raw} IS NULL THEN NULL
        {fast}
        WHEN regexp_full_match({raw}, '\\d{{9,10}}(\\.\\d+)?')
            THEN make_timestamp(CAST(round(CAST({raw} AS DOUBLE) * 1000000) AS BIGINT))
        WHEN regexp_full_match({raw}, '1\\d{{12}}') THEN make_timestamp(CAST({raw} AS BIGINT) * 1000)
        WHEN regexp_matches({raw}, {lit(_OFFSET)}) THEN timezone('UTC', TRY_CAST(
            regexp_replace({raw}, '\\s+(Z|z|UTC|GMT|[+-]\\d{{2}}(:?\\d{{2}})?)$', '\\1') AS TIMESTAMPTZ))
        ELSE timezone('UTC', timezone({zone_lit},
            COALESCE(TRY_CAST({raw} AS TIMESTAMP), try_strptime({raw}, {formats}))))
    END"""


def _parse_number(clean: str) -> str:
    value = f"""CASE WHEN strpos({clean}, ',') = 0 THEN TRY_CAST({clean} AS DOUBLE)
        WHEN regexp_full_match({clean}, {lit(_THOUSANDS)}) THEN TRY_CAST(replace({clean}, ',', '') AS DOUBLE) END"""
    return value


def stage_query(spec: TableSpec, plan: ColumnPlan, rules: Rules, *, chunk: str) -> str:
    """SELECT one row per non-blank input row of ``chunk`` with ``_row``, every
    canonical column typed and normalised, and ``_rej`` = {column, value, reason} or NULL."""
    defaults = dict(spec.defaults)
    if "currency" in spec.columns:
        defaults.setdefault("currency", rules.currency)

    # 1. raw cells, trimmed, '' -> NULL
    raw_cols, all_cells = ["_row"], []
    for i in range(len(plan.source_names)):
        all_cells.append(f"regexp_matches(c{i}, {lit(_NOT_BLANK)})")
    for col in spec.columns:
        pos = plan.sources.get(col)
        cell = _trim(f"c{pos}") if pos is not None else "NULL::VARCHAR"
        raw_cols.append(f"{cell} AS {ident('r_' + col)}")
        if column_kind(spec, col) in ("money", "count"):
            clean = f"regexp_replace({ident('r_' + col)}, {lit(_NUMBER_NOISE)}, '', 'g')"
            raw_cols.append(f"{clean} AS {ident('n_' + col)}")  # refers to r_ via lateral alias
        if column_kind(spec, col) in ("status", "event"):  # looked up lower-cased
            raw_cols.append(f"lower({ident('r_' + col)}) AS {ident('k_' + col)}")
        if column_kind(spec, col) == "ts":  # the common case, parsed once without regexes
            raw_cols.append(f"{_plain_ts(ident('r_' + col))} AS {ident('l_' + col)}")
    json_extras = []
    if plan.json_column:
        for pos in sorted(plan.extras, key=lambda p: plan.source_names[p]):
            raw_cols.append(f"{_trim(f'c{pos}')} AS x{pos}")
            json_extras.append(f"{lit(plan.source_names[pos])}, x{pos}")
    # a row with every cell empty carries nothing: skipped (and counted in a warning)
    not_blank = " OR ".join(all_cells) or "FALSE"

    # 2. parsed values (with defaults)
    parsed = []
    for col in spec.columns:
        kind, r = column_kind(spec, col), ident("r_" + col)
        default = defaults.get(col)
        if kind == "ts":
            value = _parse_ts(r, rules.timezone, ident("l_" + col))
        elif kind == "money":
            value = _parse_number(ident("n_" + col))
            if default is not None:
                value = f"CASE WHEN {r} IS NULL THEN {lit(float(default))} ELSE {value} END"
        elif kind == "count":
            number = f"TRY_CAST({ident('n_' + col)} AS DOUBLE)"
            value = (
                f"CASE WHEN {r} IS NULL THEN {lit(default)}::BIGINT "
                f"WHEN {number} = floor({number}) AND {number} >= 1 AND {number} < 1e15 "
                f"THEN CAST({number} AS BIGINT) END"
            )
        elif kind == "status":
            value = _lookup(ident("k_" + col), rules.statuses)
        elif kind == "event":
            value = _lookup(ident("k_" + col), rules.events, otherwise=ident("k_" + col))
        elif kind == "upper":
            value = f"upper({r})"
        elif kind == "json":
            value = f"CASE WHEN json_valid({r}) AND json_type(CASE WHEN json_valid({r}) THEN {r} END) = 'OBJECT' THEN CAST(json({r}) AS VARCHAR) END"
            if json_extras:
                extras = f"json_object({', '.join(json_extras)})"
                value = f"nullif(CAST(json_merge_patch(coalesce({value}, '{{}}'), {extras}) AS VARCHAR), '{{}}')"
                # a provided but invalid JSON cell is still rejected by the check below
        else:
            value = r
        if kind in ("status", "event", "upper", "text") and default is not None:
            value = f"CASE WHEN {r} IS NULL THEN {lit(default)} ELSE {value} END"
        parsed.append(f"{value} AS {ident('v_' + col)}")

    # 3. the first failing check, in the table's column order; each reason in English and Chinese
    checks: list[tuple[str, str, str, str, str]] = []  # (condition, column, value, reason, reason_zh)

    def check(cond: str, col: str, value: str, en: str, zh: str) -> None:
        checks.append((cond, col, value, en, zh))

    def says(col: str, r: str, en: str, zh: str) -> tuple[str, str]:
        """Reason texts quoting the value: "amount 'abc' is not a number" / "amount 'abc' 不是数字"."""
        return f"{lit(col + ' ')} || {_quoted(r)} || {lit(en)}", f"{lit(col + ' ')} || {_quoted(r)} || {lit(zh)}"

    known_statuses = ", ".join(ORDER_STATUSES)
    rates = dict(rules.currency_rates)
    for col in spec.columns:
        kind, r, v = column_kind(spec, col), ident("r_" + col), ident("v_" + col)
        required = col in spec.required
        if spec.name == "events" and col == "user_id":
            check(f"{r} IS NULL AND {ident('r_anonymous_id')} IS NULL", col, "NULL",
                  lit("user_id and anonymous_id are both empty; an event needs one of them"),
                  lit("user_id 和 anonymous_id 都为空，一条事件至少需要其中一个"))
        if required:
            check(f"{r} IS NULL", col, "NULL", lit(f"{col} is empty"), lit(f"{col} 为空（必填）"))
        if kind == "ts":
            check(f"{r} IS NOT NULL AND {v} IS NULL", col, r,
                  *says(col, r, f" is not a date/time (expected e.g. {TS_EXAMPLES})",
                        f" 不是日期时间（示例：{TS_EXAMPLES_ZH}）"))
            hours = f"{rules.future_tolerance_hours:g}"
            check(f"{v} > {lit(rules.future_limit)}", col, r,
                  *says(col, r, f" is a timestamp in the future (later than now + {hours} h)",
                        f" 是未来的时间（晚于当前时间 {hours} 小时以上）"))
            earliest = rules.earliest.isoformat()
            check(f"{v} < {lit(dt_.datetime.combine(rules.earliest, dt_.time()))}", col, r,
                  *says(col, r, f" is before {earliest}, the earliest plausible date ([ingest] earliest_date)",
                        f" 早于 {earliest}，不是可信的日期（见 [ingest] earliest_date）"))
        elif kind == "money":
            check(f"{r} IS NOT NULL AND ({v} IS NULL OR NOT isfinite({v}))", col, r,
                  *says(col, r, " is not a number", " 不是数字"))
            why = ("; refunds belong in refund_amount", "；退款请填在 refund_amount") if col == "amount" else ("", "")
            check(f"{v} < 0", col, r, *says(col, r, " is negative" + why[0], " 是负数" + why[1]))
            # on an item line the refund may be the order's, so item exports check it per order
            if col == "refund_amount" and "amount" in spec.columns and "line_amount" not in spec.columns:
                more = says(col, r, " is more than amount ", " 大于金额 ")
                check(f"{v} > {ident('v_amount')}", col, r,
                      more[0] + f" || {_quoted(ident('r_amount'))}", more[1] + f" || {_quoted(ident('r_amount'))}")
            # a list price (划线价) below the price paid is a mix-up of the two columns
            if col == "list_price" and "price" in spec.columns:
                below = says(col, r, " is below the price paid ", " 低于成交单价 ")
                check(f"round({v} * 100) < round({ident('v_price')} * 100)", col, r,
                      below[0] + f" || {_quoted(ident('r_price'))} || {lit('; a list price is the price before discount')}",
                      below[1] + f" || {_quoted(ident('r_price'))} || {lit('；原价（划线价）应是优惠前的价格')}")
        elif kind == "count":
            check(f"{r} IS NOT NULL AND TRY_CAST({ident('n_' + col)} AS DOUBLE) IS NULL", col, r,
                  *says(col, r, " is not a number", " 不是数字"))
            check(f"{r} IS NOT NULL AND {v} IS NULL", col, r,
                  *says(col, r, " is not a whole number >= 1", " 不是大于等于 1 的整数"))
        elif kind == "status":
            check(f"{r} IS NOT NULL AND {v} IS NULL", col, r,
                  *says(col, r, f" is not a known order status; map it in [ingest.status_map] to one of {known_statuses}",
                        f" 不是已知的订单状态；请在 [ingest.status_map] 中把它对应到 {known_statuses} 之一"))
        elif kind == "upper" and col == "currency" and "amount" in spec.columns:
            allowed = [rules.currency, *rates]
            check(f"{v} NOT IN ({', '.join(lit(c) for c in allowed)})", col, r,
                  *says(col, r, f" differs from the shop currency {rules.currency} and has no rate; "
                                "add one under [ingest.currency_rates]",
                        f" 与店铺币种 {rules.currency} 不同且没有汇率；请在 [ingest.currency_rates] 中配置"))
        elif kind == "json":
            if col in plan.sources:
                check(f"{r} IS NOT NULL AND NOT (json_valid({r}) AND json_type(CASE WHEN json_valid({r}) THEN {r} END) = 'OBJECT')", col, r,
                      *says(col, r, " is not a JSON object", " 不是 JSON 对象"))
    if checks:
        whens = "\n".join(
            f"        WHEN {cond} THEN struct_pack(column_name := {lit(col)}, value := CAST({value} AS VARCHAR), "
            f"reason := {reason}, reason_zh := {reason_zh})"
            for cond, col, value, reason, reason_zh in checks
        )
        rej = f"CASE\n{whens}\n    END"
    else:
        rej = "NULL"

    finals = []
    rate = "1.0"
    if "currency" in spec.columns and rates:
        rate = "CASE " + " ".join(f"WHEN v_currency = {lit(c)} THEN {lit(float(x))}" for c, x in rates.items()) + " ELSE 1.0 END"
    for col in spec.columns:
        v = ident("v_" + col)
        if col in ("amount", "refund_amount", "discount_amount") and rate != "1.0":
            v = f"round({v} * ({rate}), 2)"  # converted into the shop currency
        elif col == "currency" and rate != "1.0":
            v = f"CASE WHEN {v} IN ({', '.join(lit(c) for c in rates)}) THEN {lit(rules.currency)} ELSE {v} END"
        elif col == "status" and "refund_amount" in spec.columns and "line_amount" not in spec.columns:
            # closed after payment (Youzan's TRADE_CLOSED covers both) shows as a refund
            v = (f"CASE WHEN {v} = 'cancelled' AND v_refund_amount > 0 THEN "
                 f"(CASE WHEN v_refund_amount < v_amount THEN 'partially_refunded' ELSE 'refunded' END) ELSE {v} END")
        if rules.hash_pii and spec.name == "identities" and col == "external_id" and rules.pii_sources:
            sources = ", ".join(lit(x.lower()) for x in rules.pii_sources)
            v = f"CASE WHEN lower(v_source) IN ({sources}) THEN {pii.HASH_FUNCTION}({v}) ELSE {v} END"
        elif rules.hash_pii and spec.name == "users" and col == "attributes":
            v = f"{pii.JSON_FUNCTION}({v})"
        if col == "event_id":
            content = ", ".join(
                f"coalesce({e}, '')"
                for e in (
                    ident("v_user_id"), ident("v_anonymous_id"), ident("v_session_id"),
                    f"strftime({ident('v_ts')}, '%Y-%m-%d %H:%M:%S.%f')", ident("v_event"), ident("v_properties"),
                )
            )
            # derived from the content so that re-loading the same events never double counts
            v = f"coalesce({v}, md5(concat_ws('|', {content})))"
        finals.append(f"{v} AS {ident(col)}")

    # events whose id is derived from their content are numbered by occurrence in the loader
    derived = ", v_event_id IS NULL AS _derived_id" if "event_id" in spec.columns else ""
    return f"""WITH r AS (
    SELECT {', '.join(raw_cols)}
    FROM {chunk}
    WHERE {not_blank}
), p AS (
    SELECT *, {', '.join(parsed)}
    FROM r
)
SELECT _row, {', '.join(finals)},
    {rej} AS _rej{derived}
FROM p"""
