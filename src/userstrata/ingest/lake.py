"""Loading files that are already in the lake (Parquet, Delta) into a Spark-backed workspace.

The rows are validated **on Spark** by the same query a DuckDB file load runs per chunk
(``validate.stage_query``), translated to Spark SQL with sqlglot; the few DuckDB functions
Spark lacks are rewritten here (``_to_spark``): full-match regexes, ``isfinite``, number
casts (Spark's cast takes ``1.5d`` or hex, DuckDB's does not), JSON checks, and the whole
date/time parser (``_spark_ts``). Then, as in ``load.py``:

- within the source, the first row of a key is kept, an identical repeat is counted as a
  duplicate, a different one is rejected naming the row where the kept one was seen;
- events without an id get md5 of their content, the k-th identical one md5(id || '#' || k);
- rows whose key is already in the workspace table are skipped (re-loading never double
  counts; unlike a DuckDB load, a changed row does not replace the stored one);
- accepted rows are appended to ``<target>/<table>`` (Parquet), rejects (file, row, column,
  reason in English and Chinese, the whole row as JSON) to ``<target>/rejects``, and both
  are registered as the session's views ``<table>`` and ``rejects``.

What does not run on Spark raises ``InputError`` naming it: users and identities (direct
identifiers are hashed by DuckDB functions), order_items and item-level order exports,
extra columns gathered into ``properties``.
"""

from __future__ import annotations

import datetime as dt_
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

from userstrata.errors import InputError
from userstrata.ingest.load import _rules, _spec
from userstrata.ingest.mapping import plan_columns
from userstrata.ingest.readers import unique_names
from userstrata.ingest.validate import _EXTRA_FORMATS, _OFFSET, column_kind, stage_query
from userstrata.schema import CANONICAL, ORDERS, TableSpec

LAKE_TABLES = ("orders", "events", "touches")
FORMATS = ("parquet", "delta")
_SOURCE, _CHUNK, _STAGE = "_us_lake_source", "_us_lake_chunk", "_us_lake_stage"
# the date forms DuckDB's TRY_CAST(... AS TIMESTAMP) takes ('/' dates are read as '-')
_ISO = r"\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?"
# what DuckDB's TRY_CAST(... AS DOUBLE) takes; Spark's cast also takes '1.5d', '0x1p3'
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
_ZONE_SPACE = r"\s+(Z|z|UTC|GMT|[+-]\d{2}(:?\d{2})?)$"


@dataclass(frozen=True)
class LakeReport:
    """What one lake load did: ``rows_read == rows_inserted + rows_duplicate + rows_rejected``.

    ``rows_duplicate`` counts repeats within the source and rows whose key was already loaded.
    """

    load_id: str
    table: str
    file: str
    rows_read: int
    rows_inserted: int
    rows_duplicate: int
    rows_rejected: int
    location: str  # where the table's Parquet files are

    def summary(self, lang: str = "en") -> str:
        if lang == "zh":
            return (f"{self.file} -> {self.table}：读取 {self.rows_read:,} 行：新增 {self.rows_inserted:,}，"
                    f"重复 {self.rows_duplicate:,}，拒绝 {self.rows_rejected:,}")
        return (f"{self.file} -> {self.table}: {self.rows_read:,} rows read: {self.rows_inserted:,} new, "
                f"{self.rows_duplicate:,} duplicate, {self.rows_rejected:,} rejected")


def spark_literal(value: str) -> str:
    """A Spark SQL string literal (Spark strings know backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _java_pattern(fmt: str) -> str:
    """A strptime format as a Spark datetime pattern: fixed widths where the digits run
    together (``%Y%m%d``), 1-or-2 digits where separators delimit them; other text quoted."""
    compact = "%m%d" in fmt
    parts = {"%Y": "yyyy", "%m": "MM" if compact else "M", "%d": "dd" if compact else "d",
             "%H": "HH" if compact else "H", "%M": "mm" if compact else "m", "%S": "ss" if compact else "s"}
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            out.append(parts[fmt[i:i + 2]])
            i += 2
        elif fmt[i] in " :.-/":
            out.append(fmt[i])
            i += 1
        else:
            out.append(f"'{fmt[i]}'")
            i += 1
    return "".join(out)


_EPOCH = "TIMESTAMP_NTZ'1970-01-01 00:00:00'"
_SECONDS, _MILLIS = spark_literal(r"^\d{9,10}(\.\d+)?$"), spark_literal(r"^1\d{12}$")
_HAS_ZONE, _ISO_FULL = spark_literal(_OFFSET), spark_literal("^" + _ISO + "$")


def _spark_ts(raw: str, zone: str) -> str:
    """Spark SQL for ``validate._parse_ts``: naive UTC (TIMESTAMP_NTZ) or NULL."""
    formats = ", ".join(
        f"CAST(try_to_timestamp({raw}, {spark_literal(_java_pattern(f))}) AS TIMESTAMP_NTZ)" for f in _EXTRA_FORMATS
    )
    zone_space = spark_literal(_ZONE_SPACE)
    return f"""CASE
        WHEN {raw} IS NULL THEN NULL
        WHEN {raw} RLIKE {_SECONDS}
            THEN timestampadd(MICROSECOND, CAST(round(CAST({raw} AS DOUBLE) * 1000000) AS BIGINT), {_EPOCH})
        WHEN {raw} RLIKE {_MILLIS} THEN timestampadd(MILLISECOND, CAST({raw} AS BIGINT), {_EPOCH})
        WHEN {raw} RLIKE {_HAS_ZONE} THEN convert_timezone(current_timezone(), 'UTC',
            CAST(try_cast(regexp_replace({raw}, {zone_space}, '$1') AS TIMESTAMP) AS TIMESTAMP_NTZ))
        ELSE convert_timezone({spark_literal(zone)}, 'UTC', coalesce(
            CASE WHEN {raw} RLIKE {_ISO_FULL} THEN try_cast(replace({raw}, '/', '-') AS TIMESTAMP_NTZ) END,
            {formats}))
    END"""


def _to_spark(duck_sql: str, spec: TableSpec, timezone: str) -> str:
    """``stage_query``'s DuckDB SQL as Spark SQL, with the functions Spark lacks rewritten.

    sqlglot translates the query; each rewritten piece is written here in Spark SQL and put
    in place of a placeholder column after generation (a second sqlglot pass would turn
    e.g. ``timestampadd`` into a form Spark does not take).
    """
    tree = sqlglot.parse_one(duck_sql, read="duckdb")
    ts_values = {"v_" + c for c in spec.columns if column_kind(spec, c) == "ts"}
    pieces: list[str] = []

    def piece(sql: str) -> exp.Expression:
        pieces.append(sql)
        return exp.column(f"__us_piece_{len(pieces) - 1}__")

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Alias) and node.alias in ts_values:  # the whole date/time parser
            return exp.alias_(piece(_spark_ts(f"`r_{node.alias[2:]}`", timezone)), node.alias, quoted=True)
        if isinstance(node, exp.RegexpFullMatch):
            pattern = spark_literal(f"^(?:{node.expression.this})$")
            return piece(f"({node.this.sql('spark')} RLIKE {pattern})")
        if isinstance(node, exp.TryCast) and node.to.is_type("double"):
            v = node.this.sql("spark")
            return piece(f"(CASE WHEN {v} RLIKE {spark_literal('^' + _NUMBER + '$')} THEN TRY_CAST({v} AS DOUBLE) END)")
        if isinstance(node, exp.Anonymous):
            name, args = node.name.lower(), node.expressions
            if name == "isfinite":
                v = args[0].sql("spark")
                return piece(f"(NOT isnan({v}) AND abs({v}) < CAST('Infinity' AS DOUBLE))")
            if name == "json_valid":
                return piece(f"(try_parse_json({args[0].sql('spark')}) IS NOT NULL)")
        if isinstance(node, exp.EQ) and node.this.sql("duckdb").lower().startswith("json_type("):
            raw = node.this.find(exp.Column)  # the raw cell, also where it is guarded by json_valid
            return piece(f"startswith(schema_of_variant(try_parse_json({raw.sql('spark')})), 'OBJECT')")
        return node

    out = tree.transform(rewrite, copy=True).sql("spark")
    for fn in ("TIMEZONE(", "TRY_STRPTIME(", "REGEXP_FULL_MATCH(", "ISFINITE(", "JSON_VALID(", "JSON_TYPE(",
               "STRUCT_PACK(", "JSON_MERGE_PATCH(", "JSON_OBJECT("):
        if fn in out.upper():
            raise InputError(f"loading {spec.name} on Spark: the validation uses {fn[:-1].lower()}, "
                             "which has no Spark translation",
                             zh=f"在 Spark 上导入 {spec.name}：校验用到的 {fn[:-1].lower()} 没有对应的 Spark 写法")
    # pieces may hold pieces (a number check inside the full-match rewrite): replace the last first
    for i in reversed(range(len(pieces))):
        out = out.replace(f"__us_piece_{i}__", pieces[i])
    return out


def _unsupported(what: str, zh: str) -> InputError:
    return InputError(f"{what} is not supported when loading on Spark",
                      hint="load it into a DuckDB workspace (userstrata load) or prepare it as a view",
                      zh=f"在 Spark 上导入时不支持{zh}",
                      hint_zh="请导入 DuckDB 工作区（userstrata load），或先整理成视图")


def _read(spark, source: str, fmt: str):
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not a lake format (formats: {', '.join(FORMATS)})",
                         zh=f"格式 {fmt!r} 不是湖表格式（可用：{', '.join(FORMATS)}）")
    try:
        return spark.read.format(fmt).load(str(source))
    except Exception as exc:  # noqa: BLE001 - Spark's own errors, named for the operator
        text = str(exc)
        if fmt == "delta" and ("delta" in text.lower() and ("find data source" in text.lower()
                                                            or "DATA_SOURCE_NOT_FOUND" in text)):
            raise InputError(
                f"{source}: this Spark session cannot read Delta tables (the delta package is not on it)",
                hint="start Spark with delta-spark (e.g. configure_spark_with_delta_pip) or load Parquet files",
                zh=f"{source}：当前 Spark 会话无法读取 Delta 表（未安装 delta 包）",
                hint_zh="请用 delta-spark 启动 Spark，或导入 Parquet 文件",
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise InputError(f"{source}: Spark cannot read it as {fmt} ({first})",
                         zh=f"{source}：Spark 无法按 {fmt} 读取（{first}）") from None


def _raw_json(names: tuple[str, ...]) -> str:
    pairs = ", ".join(f"{spark_literal(n)}, c.c{i}" for i, n in enumerate(names))
    return f"to_json(named_struct({pairs}), map('ignoreNullFields', 'false'))" if pairs else "'{}'"


def _rejects_sql(spec: TableSpec, names: tuple[str, ...], display: str) -> str:
    """Reject candidates, as ``load._rejects_query``: invalid rows and key conflicts."""
    keys = [f"s.`{k}`" for k in spec.key]
    q = "'\\''"
    if len(keys) == 1:
        key_value = keys[0]
        key_text = f"{spark_literal(spec.key[0] + ' ')} || {q} || {keys[0]} || {q}"
    else:
        key_value = "concat_ws(', ', " + ", ".join(keys) + ")"
        key_text = (f"{spark_literal(spec.name + ' key (')} || "
                    + " || ', ' || ".join(f"{spark_literal(k + '=')} || {q} || s.`{k}` || {q}" for k in spec.key)
                    + " || ')'")
    first = f"coalesce({spark_literal(display + ' row ')} || CAST(s._first_row AS STRING), 'this file')"
    first_zh = f"coalesce({spark_literal(display + ' 第 ')} || CAST(s._first_row AS STRING) || ' 行', '本文件')"
    return f"""
        SELECT s._row AS row_number,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.column_name ELSE {spark_literal(', '.join(spec.key))} END
                AS column_name,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.value ELSE {key_value} END AS value,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.reason
                 ELSE {key_text} || ' appears twice in this file with different content (kept the first, '
                      || {first} || ')' END AS reason,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.reason_zh
                 ELSE {key_text} || ' 在本文件中出现两次且内容不同（保留先出现的 ' || {first_zh} || '）' END AS reason_zh,
            {_raw_json(names)} AS raw
        FROM (SELECT * FROM {_STAGE} WHERE _rej IS NOT NULL OR _decision = 'conflict') s
        JOIN {_CHUNK} c ON c._row = s._row
    """


def _decided(stage, spec: TableSpec):
    """``stage`` plus, per valid row, ``_decision``: kept (first of its key in the source),
    repeat (identical to it) or conflict, and ``_first_row``, the kept row's number. One
    window pass: each row is compared with the first of its key, no join."""
    from pyspark.sql import Window  # noqa: PLC0415 - pyspark is an optional extra
    from pyspark.sql import functions as F  # noqa: PLC0415

    valid = F.col("_rej").isNull()
    first = Window.partitionBy(*spec.key, valid).orderBy("_row").rowsBetween(Window.unboundedPreceding, 0)
    same = F.lit(True)
    for c in (c for c in spec.columns if c not in spec.key):
        same = same & F.col(c).eqNullSafe(F.first(c).over(first))
    first_row = F.first("_row").over(first)
    decision = (F.when(~valid, F.lit(None)).when(F.col("_row") == first_row, "kept")
                .when(same, "repeat").otherwise("conflict"))
    return stage.withColumn("_first_row", F.when(valid, first_row)).withColumn("_decision", decision)


def _numbered_events(stage):
    """Derived event ids: the k-th identical event of the source gets md5(id || '#' || k)."""
    from pyspark.sql import Window  # noqa: PLC0415 - pyspark is an optional extra
    from pyspark.sql import functions as F  # noqa: PLC0415

    derived = F.col("_derived_id") & F.col("_rej").isNull()
    k = F.row_number().over(Window.partitionBy("event_id", derived).orderBy("_row"))
    numbered = F.when(derived & (F.col("_k") > 1), F.md5(F.concat(F.col("event_id"), F.lit("#"), F.col("_k").cast("string"))))
    return (stage.withColumn("_k", k)
            .withColumn("event_id", numbered.otherwise(F.col("event_id")))
            .drop("_k", "_derived_id"))


def _numbered(cells):
    """``_row``: each record's position in the source from 1, without moving the rows to one
    task: ``_mid`` holds (partition << 33) + index in partition, so a row's number is the
    rows of the partitions before its own plus its index (the per-partition counts are few)."""
    from pyspark.sql import Window  # noqa: PLC0415 - pyspark is an optional extra
    from pyspark.sql import functions as F  # noqa: PLC0415

    cells = cells.withColumn("_part", F.shiftright("_mid", 33)).cache()
    sizes = cells.groupBy("_part").count()
    before = F.coalesce(F.sum("count").over(Window.orderBy("_part").rowsBetween(Window.unboundedPreceding, -1)),
                        F.lit(0))
    offsets = sizes.select("_part", before.alias("_before"))
    index = F.col("_mid").bitwiseAND(F.lit((1 << 33) - 1))
    numbered = (cells.join(F.broadcast(offsets), "_part")
                .withColumn("_row", (F.col("_before") + index + 1).cast("bigint"))
                .drop("_part", "_before", "_mid")
                .cache())
    numbered.count()  # materialised: monotonically_increasing_id must not be computed twice
    cells.unpersist()
    return numbered


def _as_text(field) -> str:
    """Spark SQL for a source column as text, as the file readers give it: an instant
    (TIMESTAMP, time zone aware) with its offset, so that it is not read as shop-local time;
    a naive TIMESTAMP_NTZ as it is (read as shop-local time, as DuckDB reads it)."""
    name = "`" + field.name.replace("`", "``") + "`"
    if field.dataType.typeName() == "timestamp":
        return f"date_format({name}, 'yyyy-MM-dd HH:mm:ss.SSSSSSXXX')"
    return f"CAST({name} AS STRING)"


def _existing(spark, path: str):
    """The Parquet table at ``path``, or None where nothing was written yet."""
    try:
        return spark.read.parquet(path)
    except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException for a missing path
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc).lower():
            return None
        raise


def load_lake(spark, table: str, source, *, settings, mapping: dict[str, str] | None = None,
              format: str = "parquet", target) -> LakeReport:  # noqa: A002 - Spark's own word
    """Validate the lake files at ``source`` on Spark and append the accepted rows to ``table``.

    Parameters
    ----------
    spark
        The SparkSession of the workspace.
    table
        orders, events or touches.
    source
        A Parquet file or folder, or a Delta table's folder (``format="delta"``, needs the
        delta package on the session).
    settings
        The workspace ``Settings`` (timezone, currency, [ingest] vocabularies and limits).
    mapping
        {canonical_column: source_column}, as for file loads.
    target
        The warehouse folder: the table is ``<target>/<table>``, rejects ``<target>/rejects``
        (Parquet); both are registered as the session's views of those names.
    """
    spec = _spec(table)
    if table not in LAKE_TABLES:
        raise _unsupported(f"table {table!r} (lake loads take {', '.join(LAKE_TABLES)})",
                           f"表 {table}（可导入 {', '.join(LAKE_TABLES)}）")
    display = Path(str(source)).name or str(source)
    frame = _read(spark, source, format)
    names = unique_names(list(frame.columns))
    plan = plan_columns(spec, names, mapping, file=display)
    if spec is ORDERS and plan_columns(CANONICAL["order_items"], names, None, file=display,
                                       check_required=False).sources.get("sku") is not None:
        raise _unsupported(f"{display}: an item-level order export (a product column)", f"{display}：按商品行的订单导出")
    if plan.json_column and plan.extras:
        extra = ", ".join(names[i] for i in plan.extras)
        raise _unsupported(f"{display}: extra columns gathered into {plan.json_column} ({extra})",
                           f"{display}：把多余的列（{extra}）并入 {plan.json_column}")

    started = dt_.datetime.now(dt_.UTC).replace(tzinfo=None)
    load_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    rules = _rules(settings, started)
    cached: list = []
    try:
        counts = _run(spark, spec, plan, rules, frame, names, display, load_id=load_id, started=started,
                      source=str(source), target=str(target).rstrip("/"), cached=cached)
    finally:  # the session is left as it was, but for the loaded views
        for df in cached:
            df.unpersist()
        for view in (_SOURCE, _CHUNK, _STAGE):
            spark.catalog.dropTempView(view)
    rows_read, n_new, n_rejected = counts
    return LakeReport(load_id=load_id, table=spec.name, file=str(source), rows_read=rows_read, rows_inserted=n_new,
                      rows_duplicate=rows_read - n_new - n_rejected, rows_rejected=n_rejected,
                      location=f"{str(target).rstrip('/')}/{table}")


def _run(spark, spec: TableSpec, plan, rules, frame, names, display: str, *, load_id: str, started: dt_.datetime,
         source: str, target: str, cached: list) -> tuple[int, int, int]:
    """The Spark part of ``load_lake``; returns (rows read, rows inserted, rows rejected)."""
    from pyspark.sql import functions as F  # noqa: PLC0415 - pyspark is an optional extra

    # c0, c1... as strings and the row number the operator sees (record position from 1)
    frame.createOrReplaceTempView(_SOURCE)
    cells = ", ".join(f"{_as_text(field)} AS c{i}" for i, field in enumerate(frame.schema.fields))
    chunk = _numbered(spark.sql(f"SELECT {cells}, monotonically_increasing_id() AS _mid FROM {_SOURCE}"))
    cached.append(chunk)
    chunk.createOrReplaceTempView(_CHUNK)
    stage = spark.sql(_to_spark(stage_query(spec, plan, rules, chunk=_CHUNK), spec, rules.timezone))
    if "_derived_id" in stage.columns:
        stage = _numbered_events(stage)
    stage = _decided(stage, spec).cache()
    cached.append(stage)
    stage.createOrReplaceTempView(_STAGE)
    # the counts in one pass over the staged rows
    counts = stage.agg(F.count(F.lit(1)), F.count(F.when(F.col("_rej").isNotNull() | (F.col("_decision") == "conflict"), 1)),
                       F.count(F.when(F.col("_decision") == "kept", 1))).first()
    rows_read, n_rejected, n_new = (int(n) for n in counts)

    location, reject_path = f"{target}/{spec.name}", f"{target}/rejects"
    new = stage.filter(F.col("_decision") == "kept").select(*spec.columns, F.lit(load_id).alias("load_id"))
    existing = _existing(spark, location)
    if existing is not None:  # keys already loaded are skipped: loading again never double counts
        new = new.join(existing.select(*spec.key), on=[new[k] == existing[k] for k in spec.key], how="left_anti").cache()
        cached.append(new)
        n_new = new.count()
    new.write.mode("append").parquet(location)
    rejects = spark.sql(_rejects_sql(spec, names, display))
    if n_rejected:
        out = rejects.select(
            F.lit(load_id).alias("load_id"), F.lit(spec.name).alias("table_name"), F.lit(source).alias("file"),
            "row_number", "column_name", "value", "reason", "raw",
            F.lit(started).cast("timestamp_ntz").alias("loaded_at"), "reason_zh",
        ).orderBy("row_number")
        out.write.mode("append").parquet(reject_path)
    spark.read.parquet(location).createOrReplaceTempView(spec.name)
    if (written := _existing(spark, reject_path)) is not None:
        written.createOrReplaceTempView("rejects")
    return rows_read, n_new, n_rejected
