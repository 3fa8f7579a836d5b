"""Loading: a file or frame -> canonical tables + rejects + a row in ``loads``, atomically.

Per chunk:
1. ``validate.stage_query`` types and checks every row (first failing column and why, in
   English and Chinese), mapping statuses and event names to the canonical vocabulary;
2. within the file, the first version of a key is kept; an identical repeat is unchanged, a
   different one is rejected naming the row where the kept one was seen (an event without
   an id that genuinely repeats gets its own id: its content plus its occurrence number);
3. kept rows and rejects (with the whole raw row as JSON) go to a staging file.
At the end, each kept row is compared by key with the workspace: new keys are inserted,
changed ones update the workspace (the replaced version moves to ``<table>_versions`` so that
``unload`` can restore it), identical ones are unchanged. One transaction writes it all and
records the load; any error before or during it leaves the workspace exactly as it was.

An order export with item columns (one line per item, order fields repeated) builds both
``orders`` and ``order_items`` in one load (see ``_ITEM_LINES``).
"""

from __future__ import annotations

import contextlib
import datetime as dt_
import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from userstrata.errors import InputError
from userstrata.ingest import pii, readers, vocab
from userstrata.ingest.mapping import ColumnPlan, plan_columns
from userstrata.ingest.validate import Rules, ident, lit, stage_query
from userstrata.schema import CANONICAL, EVENT_NAMES, LOAD_ID, ORDER_ITEMS, ORDERS, VERSIONS_SUFFIX, TableSpec

Progress = Callable[[int], None]


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


class _Messages(list):
    """Warnings or notes, each in English and Chinese (the reader's own are English only)."""

    def add(self, en: str, zh: str | None = None) -> None:
        self.append((en, zh or en))

    def texts(self, lang: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(zh if lang == "zh" else en for en, zh in self))

# One line of an item-level order export: the order's fields plus the item's. Item columns
# come first so that a column named "price" is the unit price, not the order amount.
_ITEM_LINES = TableSpec(
    "orders",
    ibis.schema({
        "order_id": dt.string, "user_id": dt.string, "ts": dt.timestamp,
        "sku": dt.string, "category": dt.string, "quantity": dt.int64, "price": dt.float64,
        "list_price": dt.float64, "brand": dt.string,
        "line_amount": dt.float64, "line_no": dt.int64,
        "amount": dt.float64, "currency": dt.string, "status": dt.string,
        "refund_amount": dt.float64, "refunded_at": dt.timestamp,
        "discount_amount": dt.float64, "coupon_id": dt.string,
    }),
    required=("order_id", "user_id", "ts", "sku"),
    key=("order_id", "line_no"),
    defaults={"status": "paid", "refund_amount": 0.0, "quantity": 1},
)


@dataclass(frozen=True)
class LoadReport:
    """What one load did; ``rows_read == rows_inserted + rows_updated + rows_unchanged + rows_rejected``.

    For an item-level order export the rows are item lines; ``tables`` has the counts of
    each table written (``{"orders": {"inserted": .., "updated": .., "unchanged": ..}, ...}``).
    """

    load_id: str
    table: str
    file: str
    encoding: str | None  # None for binary formats (Excel, Parquet) and frames
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    ignored_columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    column_map: tuple[tuple[str, str], ...] = ()  # (canonical column, source column)
    notes: tuple[str, ...] = ()  # how the load read the file (e.g. where order amounts came from)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings_zh: tuple[str, ...] = ()  # the same warnings and notes in Chinese
    notes_zh: tuple[str, ...] = ()

    def messages(self, lang: str = "en") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(warnings, notes) in ``lang``."""
        return (self.warnings_zh, self.notes_zh) if lang == "zh" else (self.warnings, self.notes)

    def summary(self, lang: str = "en") -> str:
        """One line for people: '1,000 rows read: 990 new, 3 updated, 0 unchanged, 7 rejected'."""
        counts = (self.rows_read, self.rows_inserted, self.rows_updated, self.rows_unchanged, self.rows_rejected)
        if lang == "zh":
            return (f"{self.file} -> {self.table}：读取 {counts[0]:,} 行：新增 {counts[1]:,}，更新 {counts[2]:,}，"
                    f"未变 {counts[3]:,}，拒绝 {counts[4]:,}")
        return (f"{self.file} -> {self.table}: {counts[0]:,} rows read: {counts[1]:,} new, {counts[2]:,} updated, "
                f"{counts[3]:,} unchanged, {counts[4]:,} rejected")


def _spec(table: str) -> TableSpec:
    try:
        return CANONICAL[table]
    except KeyError:
        raise InputError(
            f"unknown table {table!r} (tables: {', '.join(CANONICAL)})",
            zh=f"没有这张表：{table!r}（可用的表：{', '.join(CANONICAL)}）",
        ) from None


def load_file(
    store,
    table: str,
    path,
    *,
    mapping: dict[str, str] | None = None,
    encoding: str | None = None,
    header_row: int | None = None,
    sheet: str | None = None,
    progress: Progress | None = None,
    keep_pii: bool = False,
) -> LoadReport:
    """Load the file at ``path`` into the canonical ``table`` of ``store``.

    Parameters
    ----------
    store
        The ``Store`` to write to (DuckDB engine).
    table
        A canonical table name: users, orders, order_items, events, identities, touches.
    path
        A .csv/.tsv/.txt, .xlsx/.xlsm/.xls/.xlsb/.ods (an .xls that is really HTML or text is read as
        such), .parquet or .jsonl/.ndjson/.json file.
    mapping
        {canonical_column: source_column}, for columns the built-in synonyms do not find.
    encoding
        For text files; detected when left out (UTF-8, UTF-8 with BOM, UTF-16, GB18030).
    header_row
        The row (1-based, as a spreadsheet shows it) that holds the column names; found
        automatically when left out (title lines above the header are skipped).
    sheet
        For workbooks: the sheet to read; by default the first sheet that looks like data.
    progress
        Called with the number of rows of each chunk once the chunk is processed.
    keep_pii
        Keep phone numbers and e-mail addresses as they are; by default they are stored only
        as salted hashes (see ``ingest/pii.py``).

    Returns
    -------
    LoadReport
        Counts, the encoding used, ignored columns and warnings. Rejected rows are kept
        with reasons in the ``rejects`` table (see ``list_rejects``).
    """
    spec = _spec(table)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", hint="check the path (relative paths start at the current folder)")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a file")
    fmt = readers.file_format(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty")
    reader = readers.open_reader(path, fmt, encoding=encoding, header_row=header_row, sheet=sheet,
                                 chunk_rows=store.settings.ingest.chunk_rows)
    return _load(store, spec, reader, file=str(path), display=path.name, sha256=_sha256(path),
                 mapping=mapping, progress=progress, keep_pii=keep_pii)


def load_frame(store, table: str, data, *, source: str, keep_pii: bool = False) -> LoadReport:
    """Load a pandas DataFrame or pyarrow Table through the same validation as files.

    Row numbers in rejects count records from 1. ``source`` names the data in rejects/loads;
    ``keep_pii`` as in ``load_file``.
    """
    spec = _spec(table)
    reader = readers.FrameReader(data, source=source, chunk_rows=store.settings.ingest.chunk_rows)
    return _load(store, spec, reader, file=source, display=source, sha256=None, mapping=None, progress=None,
                 keep_pii=keep_pii)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _utcnow() -> dt_.datetime:
    return dt_.datetime.now(dt_.UTC).replace(tzinfo=None)


class _Staging:
    """A private DuckDB file, attached for the length of one load, that holds what the load
    has kept and rejected so far; the workspace itself is written only at the end, in one
    transaction (``store.transaction()``), or not at all.

    Why not one transaction around the whole load: DuckDB keeps memory for every scan of
    rows a still-open transaction has inserted (measured: +30 MB per 200k-row chunk when
    each chunk is checked against the earlier ones), so memory would grow with the file.
    Rows committed to a staging file are scanned like any table, from disk.
    """

    def __init__(self, raw, spec: TableSpec, token: str):
        self.raw, self.spec = raw, spec
        self.alias = f"_us_stage_{token}"
        self.folder = Path(tempfile.mkdtemp(prefix="userstrata-load-"))
        # kept rows: one Parquet file per chunk (written by Arrow: cheap), read back as one
        # relation in file order; the first file is empty so that the relation always exists
        self.rows = f"read_parquet({lit(str(self.folder / 'rows-*.parquet'))})"
        self.schema = pa.schema([(c, _ARROW_TYPES[str(t)]) for c, t in spec.schema.items()] + [("_row", pa.int64())])
        self.files = 0
        self.rejects = f"{self.alias}.rejected"
        self.bases = f"{self.alias}.event_bases"  # derived event ids seen so far, with their count

    def table(self, name: str) -> str:
        return f"{self.alias}.{name}"

    def __enter__(self) -> "_Staging":
        raw = self.raw
        raw.execute(f"ATTACH {lit(str(self.folder / 'stage.duckdb'))} AS {self.alias}")
        self.keep(self.schema.empty_table())
        raw.execute(f"CREATE TABLE {self.rejects} (row_number BIGINT, column_name VARCHAR, value VARCHAR, "
                    "reason VARCHAR, reason_zh VARCHAR, raw VARCHAR)")
        raw.execute(f"CREATE TABLE {self.bases} (base VARCHAR PRIMARY KEY, n BIGINT)")
        return self

    def keep(self, rows: pa.Table) -> None:
        """Add kept rows (in file order) after those kept so far."""
        pq.write_table(rows.select(self.schema.names).cast(self.schema),
                       self.folder / f"rows-{self.files:06d}.parquet", compression="snappy")
        self.files += 1

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.raw.execute(f"DETACH {self.alias}")
        shutil.rmtree(self.folder, ignore_errors=True)


_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "timestamp": pa.timestamp("us")}


def _rules(settings, started: dt_.datetime, *, hash_pii: bool = False) -> Rules:
    ingest = settings.ingest
    return Rules(
        timezone=settings.timezone,
        currency=settings.currency.upper(),
        future_limit=started + dt_.timedelta(hours=ingest.future_tolerance_hours),
        future_tolerance_hours=ingest.future_tolerance_hours,
        earliest=ingest.earliest_date,
        statuses=tuple(vocab.status_lookup(ingest.status_map).items()),
        events=tuple(vocab.event_lookup(ingest.event_map).items()),
        currency_rates=tuple(ingest.currency_rates.items()),
        hash_pii=hash_pii,
        pii_sources=tuple(settings.identity.pii_sources),
    )


def _is_item_export(spec: TableSpec, names: tuple[str, ...] | None, mapping: dict[str, str] | None,
                    display: str) -> bool:
    """An order file with a product column is an item-level export (one line per item)."""
    if spec is not ORDERS or names is None:
        return False
    plan = plan_columns(_ITEM_LINES, names, mapping, file=display, check_required=False)
    return "sku" in plan.sources


def _load(store, spec: TableSpec, reader, *, file: str, display: str, sha256: str | None,
          mapping: dict[str, str] | None, progress: Progress | None, keep_pii: bool = False) -> LoadReport:
    raw = store.duckdb
    started = _utcnow()
    token = uuid.uuid4().hex[:8]
    load_id = f"{started:%Y%m%dT%H%M%S}-{token}"
    # direct identifiers (phones, e-mails) reach the workspace only as salted hashes
    hash_pii = not keep_pii and spec.name in _PII_TABLES
    rules = _rules(store.settings, started, hash_pii=hash_pii)
    if hash_pii:
        pii.register(raw, pii.workspace_salt(raw), store.settings.identity.pii_keys)
    items = _is_item_export(spec, reader.names, mapping, display)
    stage_spec = _ITEM_LINES if items else spec
    # item lines are all kept: the same product twice in one order is two lines
    keep_all = items or spec is ORDER_ITEMS

    plans: dict[tuple[str, ...], ColumnPlan] = {}

    def plan_for(source_names: tuple[str, ...]) -> ColumnPlan:
        if source_names not in plans:
            plan = plan_columns(stage_spec, source_names, mapping, file=display)
            if items and not {"amount", "line_amount", "price"} & set(plan.sources):
                raise InputError(f"{display}: no amount column (order amount, line amount or unit price)",
                                 hint="map one with --map amount=COLUMN")
            plans[source_names] = plan
        return plans[source_names]

    # mapping problems and missing columns surface before anything is written
    if reader.names is not None:
        plan_for(reader.names)

    warnings = _Messages()
    if sha256 is not None:
        earlier = raw.execute(
            "SELECT load_id, loaded_at FROM loads WHERE file_sha256 = ? AND table_name = ? AND undone_at IS NULL "
            "ORDER BY loaded_at LIMIT 1",
            [sha256, spec.name],
        ).fetchone()
        if earlier:
            warnings.add(
                f"{display}: the same file was already loaded into {spec.name} (load {earlier[0]} at "
                f"{earlier[1]:%Y-%m-%d %H:%M} UTC); rows already there are unchanged",
                f"{display}：同一文件已导入过 {spec.name}（导入 {earlier[0]}，{earlier[1]:%Y-%m-%d %H:%M} UTC）；"
                "已有的行保持不变",
            )

    totals = {"read": 0, "kept": 0, "repeat": 0, "rejected": 0, "blank": 0}
    chunks = reader.chunks()
    try:
        with _Staging(raw, stage_spec, token) as staging:
            for chunk in chunks:
                plan = plan_for(chunk.names) if chunk.table.num_rows else None
                counts = _process_chunk(raw, stage_spec, plan, chunk, rules, staging, display=display,
                                        keep_all=keep_all)
                for k, v in counts.items():
                    totals[k] += v
                if progress is not None:
                    progress(chunk.n_rows)
            notes = _Messages()
            if items:
                targets = _split_item_lines(raw, staging, plans, notes, warnings, display=display)
            else:
                targets = {spec.name: staging.rows}
            decisions = {name: _decide(raw, CANONICAL[name], rows, staging) for name, rows in targets.items()}
            per_table = {name: counts for name, (_, _, counts) in decisions.items()}
            lines = _line_counts(raw, decisions) if items else per_table[spec.name]
            inserted, updated, unchanged = lines["inserted"], lines["updated"], lines["unchanged"] + totals["repeat"]
            if totals["read"] != inserted + updated + unchanged + totals["rejected"]:
                raise RuntimeError(f"ingest bug: counts do not add up for load {load_id}: {totals}, {per_table}")
            _vocabulary_warnings(raw, stage_spec, staging, warnings, display=display)
            if hash_pii:  # rejected rows are kept whole: their phones and e-mails are hashed too
                pii.scrub_rejects(raw, staging.rejects)
            with store.transaction():
                for name, (table, source, _) in decisions.items():
                    _apply(raw, CANONICAL[name], table, source, load_id=load_id, at=started)
                raw.execute(
                    "INSERT INTO rejects (load_id, table_name, file, row_number, column_name, value, reason, reason_zh, "
                    f"raw, loaded_at) SELECT ?, ?, ?, row_number, column_name, value, reason, reason_zh, raw, ? "
                    f"FROM {staging.rejects}",  # in file order already: chunks in order, each sorted
                    [load_id, spec.name, file, started],
                )
                raw.execute(
                    "INSERT INTO loads (load_id, table_name, file, file_sha256, encoding, rows_read, rows_inserted, "
                    "rows_updated, rows_unchanged, rows_rejected, loaded_at, notes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [load_id, spec.name, file, sha256, reader.encoding, totals["read"], inserted, updated, unchanged,
                     totals["rejected"], started,
                     json.dumps({"tables": per_table, "notes": notes.texts("en")}, ensure_ascii=False)],
                )
    finally:
        chunks.close()
        if hash_pii:
            pii.unregister(raw)

    # the last plan has seen every column (JSON lines learn columns as they go)
    plan = list(plans.values())[-1] if plans else None
    for text in [*getattr(reader, "warnings", []), *(plan.warnings if plan is not None else ())]:
        warnings.add(*text) if isinstance(text, tuple) else warnings.add(text)
    if totals["read"] == 0:
        what = ("no records", "没有记录") if reader.names is None else ("a header but no data rows", "只有表头，没有数据行")
        warnings.add(f"{display} has {what[0]}; nothing was loaded", f"{display} {what[1]}；未导入任何数据")
    if totals["blank"]:
        warnings.add(f"{display}: skipped {_rows(totals['blank'])} with every cell empty",
                     f"{display}：跳过 {totals['blank']} 个空行")
    if totals["rejected"]:
        warnings.add(
            f"{display}: {_rows(totals['rejected'])} rejected; see them with `userstrata rejects --load {load_id}`",
            f"{display}：拒绝 {totals['rejected']:,} 行；用 `userstrata rejects --load {load_id} --lang zh` 查看原因",
        )
    return LoadReport(
        load_id=load_id,
        table=spec.name,
        file=file,
        encoding=reader.encoding,
        rows_read=totals["read"],
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=unchanged,
        rows_rejected=totals["rejected"],
        ignored_columns=plan.ignored_columns if plan else (),
        warnings=warnings.texts("en"),
        column_map=plan.column_map if plan else (),
        notes=notes.texts("en"),
        tables=per_table,
        warnings_zh=warnings.texts("zh"),
        notes_zh=notes.texts("zh"),
    )


# tables whose rows may hold direct identifiers (identities.external_id, users.attributes)
_PII_TABLES = ("users", "identities")

_REJECT_COLUMNS = pa.schema([
    ("row_number", pa.int64()), ("column_name", pa.string()), ("value", pa.string()),
    ("reason", pa.string()), ("reason_zh", pa.string()), ("raw", pa.string()),
])
# intermediate Arrow tables are registered under these names for the length of a statement
_CHUNK, _STAGE, _DECISION = "_us_chunk", "_us_stage", "_us_decision"


@contextlib.contextmanager
def _registered(raw, name: str, table: pa.Table):
    raw.register(name, table)
    try:
        yield
    finally:
        raw.unregister(name)


def _process_chunk(raw, spec: TableSpec, plan: ColumnPlan | None, chunk: readers.Chunk, rules: Rules,
                   staging: _Staging, *, display: str, keep_all: bool) -> dict[str, int]:
    """Validate one chunk and keep its rows and rejects in the staging file; returns its counts."""
    counts = {"read": len(chunk.bad), "kept": 0, "repeat": 0, "rejected": 0, "blank": 0}
    candidates = [pa.table({
        "row_number": pa.array([b.row_number for b in chunk.bad], pa.int64()),
        "column_name": pa.nulls(len(chunk.bad), pa.string()),
        "value": pa.nulls(len(chunk.bad), pa.string()),
        "reason": pa.array([b.reason for b in chunk.bad], pa.string()),
        "reason_zh": pa.array([getattr(b, "reason_zh", None) or b.reason for b in chunk.bad], pa.string()),
        "raw": pa.array([b.raw for b in chunk.bad], pa.string()),
    })]
    if plan is not None and chunk.table.num_rows:
        candidates.append(_validate_chunk(raw, spec, plan, chunk, rules, staging, display=display, counts=counts,
                                          keep_all=keep_all))
    rejected = pa.concat_tables([c.select(_REJECT_COLUMNS.names).cast(_REJECT_COLUMNS) for c in candidates])
    if rejected.num_rows:
        # sorted here (Arrow sorts by index, cheaply) so that no SQL step sorts the raw rows
        rejected = rejected.sort_by("row_number")
        with _registered(raw, "_us_rejected", rejected):
            raw.execute(f"INSERT INTO {staging.rejects} SELECT * FROM _us_rejected")
        counts["rejected"] += rejected.num_rows
    return counts


def _number_derived_events(raw, staging: _Staging) -> pa.Table:
    """Events without an id get md5(content); the k-th identical one in a file gets
    md5(content || '#' || k), so genuine repeats survive and reloading changes nothing."""
    stage = raw.execute(f"""
        SELECT s.* REPLACE (
            CASE WHEN s._derived_id AND s._rej IS NULL AND s._k > 1 THEN md5(s.event_id || '#' || s._k)
                 ELSE s.event_id END AS event_id)
        FROM (
            SELECT s.*, row_number() OVER (PARTITION BY s.event_id, s._derived_id AND s._rej IS NULL ORDER BY s._row)
                        + coalesce(b.n, 0) AS _k
            FROM {_STAGE} s LEFT JOIN {staging.bases} b ON s._derived_id AND s._rej IS NULL AND b.base = s.event_id
        ) s ORDER BY s._row
    """).to_arrow_table()
    raw.execute(f"""
        INSERT INTO {staging.bases}
        SELECT event_id, count(*) FROM {_STAGE} WHERE _derived_id AND _rej IS NULL GROUP BY event_id
        ON CONFLICT (base) DO UPDATE SET n = n + excluded.n
    """)
    return stage.drop_columns(["_k", "_derived_id"])


def _validate_chunk(raw, spec: TableSpec, plan: ColumnPlan, chunk: readers.Chunk, rules: Rules,
                    staging: _Staging, *, display: str, counts: dict[str, int], keep_all: bool) -> pa.Table:
    """Stage and decide the valid rows of one chunk; returns its reject candidates."""
    with _registered(raw, _CHUNK, chunk.table):
        stage = raw.execute(stage_query(spec, plan, rules, chunk=_CHUNK)).to_arrow_table()
        if "_derived_id" in stage.column_names:
            with _registered(raw, _STAGE, stage):
                stage = _number_derived_events(raw, staging)
        with _registered(raw, _STAGE, stage):
            if keep_all:
                decision = raw.execute(
                    f"SELECT _row, 'kept' AS _decision, NULL::BIGINT AS _first_row FROM {_STAGE} WHERE _rej IS NULL"
                ).to_arrow_table()
            else:
                decision = raw.execute(_decision_query(spec, staging)).to_arrow_table()
            # kept versions are staged at once, so that later chunks find them (picked and put in
            # file order in Arrow: no join, no SQL sort)
            kept_rows = decision.filter(pc.equal(decision["_decision"], "kept"))["_row"]
            kept = stage.filter(pc.is_in(stage["_row"], value_set=kept_rows)).select([*spec.columns, "_row"])
            kept = kept.sort_by("_row")
            staging.keep(kept)
            with _registered(raw, _DECISION, decision):
                rejected = raw.execute(_rejects_query(spec, plan, chunk, display=display)).to_arrow_table()
                n_kept, n_repeat = raw.execute(f"""
                    SELECT count(*) FILTER (WHERE _decision = 'kept'), count(*) FILTER (WHERE _decision = 'repeat')
                    FROM {_DECISION}
                """).fetchone()
    counts["read"] += stage.num_rows
    counts["kept"] += n_kept
    counts["repeat"] += n_repeat
    counts["blank"] += chunk.table.num_rows - stage.num_rows
    return rejected


def _decision_query(spec: TableSpec, staging: _Staging) -> str:
    """Per valid row of the chunk: kept (the first version of its key in this file), repeat
    (identical to it) or conflict (different), and the row where the kept one was seen."""
    keys = [ident(k) for k in spec.key]
    content = [ident(c) for c in spec.columns if c not in spec.key]
    cols = keys + content
    same = " AND ".join(f"v.{c} IS NOT DISTINCT FROM ref.{c}" for c in content) or "TRUE"
    e_cols = ", ".join("e." + c for c in cols)
    return f"""
        WITH v AS (SELECT _row, {', '.join(cols)} FROM {_STAGE} WHERE _rej IS NULL),
        wanted AS (SELECT DISTINCT {', '.join(keys)} FROM v),
        earlier AS (
            SELECT {e_cols}, e._row AS _seen_row FROM {staging.rows} e SEMI JOIN wanted w ON {_on(keys, 'e', 'w')}
        ),
        first_in_chunk AS (
            SELECT * FROM v QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY _row) = 1
        ),
        ref AS (
            SELECT {', '.join(cols)}, NULL::BIGINT AS _ref_row, _seen_row FROM earlier
            UNION ALL
            SELECT {', '.join('f.' + c for c in cols)}, f._row, f._row FROM first_in_chunk f
            ANTI JOIN earlier x ON {_on(keys, 'f', 'x')}
        )
        SELECT v._row,
            CASE WHEN ref._ref_row = v._row THEN 'kept'
                 WHEN {same} THEN 'repeat'
                 ELSE 'conflict' END AS _decision,
            ref._seen_row AS _first_row
        FROM v JOIN ref ON {_on(keys, 'v', 'ref')}
    """


_QUOTE = lit("'")


def _on(keys: list[str], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{k} = {b}.{k}" for k in keys)


def _rejects_query(spec: TableSpec, plan: ColumnPlan, chunk: readers.Chunk, *, display: str) -> str:
    """Reject candidates of a chunk: invalid rows and key conflicts, each with its raw row as JSON."""
    keys = [ident(k) for k in spec.key]
    if "_raw" in chunk.table.column_names:
        raw_json = "c._raw"
    else:
        pairs = ", ".join(f"{lit(name)}, c.c{i}" for i, name in enumerate(plan.source_names))
        raw_json = f"CAST(json_object({pairs}) AS VARCHAR)" if pairs else "'{}'"
    if len(spec.key) == 1:
        key_value = f"s.{keys[0]}"
        key_text = f"{lit(spec.key[0] + ' ')} || {_QUOTE} || s.{keys[0]} || {_QUOTE}"
    else:
        key_value = "concat_ws(', ', " + ", ".join(f"s.{k}" for k in keys) + ")"
        key_text = (f"{lit(spec.name + ' key (')} || "
                    + " || ', ' || ".join(f"{lit(k + '=')} || {_QUOTE} || s.{ident(k)} || {_QUOTE}" for k in spec.key)
                    + " || ')'")
    first_seen = f"coalesce({lit(display + ' row ')} || CAST(d._first_row AS VARCHAR), 'this file')"
    first_seen_zh = f"coalesce({lit(display + ' 第 ')} || CAST(d._first_row AS VARCHAR) || ' 行', '本文件')"
    return f"""
        SELECT s._row AS row_number,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.column_name ELSE {lit(', '.join(spec.key))} END AS column_name,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.value ELSE {key_value} END AS value,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.reason
                 ELSE {key_text} || ' appears twice in this file with different content (kept the first, '
                      || {first_seen} || ')' END AS reason,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.reason_zh
                 ELSE {key_text} || ' 在本文件中出现两次且内容不同（保留先出现的 ' || {first_seen_zh} || '）' END AS reason_zh,
            {raw_json} AS raw
        FROM {_STAGE} s
        LEFT JOIN {_DECISION} d USING (_row)
        JOIN {_CHUNK} c ON c._row = s._row
        WHERE s._rej IS NOT NULL OR d._decision = 'conflict'
    """


def _split_item_lines(raw, staging: _Staging, plans: dict, notes: _Messages, warnings: _Messages, *,
                      display: str) -> dict[str, str]:
    """Item lines -> one staged table of orders and one of order_items; says where amounts came from.

    An order's amount is the order total column when the file has one that is the same on
    every line of an order; otherwise the sum of its lines (the line amount column, the
    amount column when it varies within an order, or unit price x quantity).
    """
    sources = {}
    for plan in plans.values():
        sources.update({c: plan.source_names[i] for c, i in plan.sources.items()})
    lines = staging.rows
    varies = lambda col: raw.execute(  # noqa: E731 - a small query used twice
        f"SELECT count(*) FROM (SELECT order_id FROM {lines} GROUP BY order_id "
        f"HAVING count(DISTINCT {ident(col)}) > 1 OR count({ident(col)}) NOT IN (0, count(*)))"
    ).fetchone()[0] > 0
    line_value = "coalesce(line_amount, round(price * quantity, 2))"
    if "amount" in sources and not varies("amount"):
        amount = "first(amount ORDER BY _row)"
        notes.add(f"amount: the order total column {sources['amount']!r} (the same on every line of an order)",
                  f"订单金额：取订单总额列「{sources['amount']}」（同一订单各行相同）")
    elif "amount" in sources and "line_amount" not in sources:
        amount = "sum(amount)"
        line_value = "amount"
        notes.add(f"amount: sum of the item lines (column {sources['amount']!r} varies within orders)",
                  f"订单金额：各商品行之和（列「{sources['amount']}」在同一订单内各行不同）")
    elif "line_amount" in sources:
        amount = f"sum({line_value})"
        notes.add(f"amount: sum of the item lines (column {sources['line_amount']!r})",
                  f"订单金额：各商品行之和（列「{sources['line_amount']}」）")
    else:
        amount = "sum(round(price * quantity, 2))"
        notes.add("amount: sum of unit price x quantity over the item lines (the file has no amount column)",
                  "订单金额：各商品行 单价 × 数量 之和（文件没有金额列）")
    refund = "sum(refund_amount)" if "refund_amount" in sources and varies("refund_amount") else \
        "first(refund_amount ORDER BY _row)"
    # an order's discount repeated on its lines, or one per line (summed); the first coupon named
    discount = "NULL::DOUBLE"
    if "discount_amount" in sources:
        discount = "sum(discount_amount)" if varies("discount_amount") else "first(discount_amount ORDER BY _row)"
    orders_t, items_t = staging.table("order_rows"), staging.table("item_rows")
    raw.execute(f"""
        CREATE TABLE {orders_t} AS
        SELECT order_id, first(user_id ORDER BY _row) AS user_id, min(ts) AS ts, round({amount}, 2) AS amount,
            first(currency ORDER BY _row) AS currency, first(status ORDER BY _row) AS status,
            round({refund}, 2) AS refund_amount, max(refunded_at) AS refunded_at,
            round({discount}, 2) AS discount_amount,
            first(coupon_id ORDER BY _row) FILTER (WHERE coupon_id IS NOT NULL) AS coupon_id, min(_row) AS _row,
            count(DISTINCT user_id) AS _users
        FROM {lines} GROUP BY order_id
    """)
    mixed = raw.execute(f"SELECT count(*) FROM {orders_t} WHERE _users > 1").fetchone()[0]
    if mixed:
        warnings.add(f"{display}: {mixed:,} orders have lines with different buyers; the first line's buyer was kept",
                     f"{display}：{mixed:,} 个订单的各行买家不同；保留第一行的买家")
    # the per-order checks that single-line files get in validation (see validate.stage_query)
    over = raw.execute(f"SELECT count(*) FROM {orders_t} WHERE refund_amount > amount").fetchone()[0]
    if over:
        warnings.add(f"{display}: {over:,} orders have refunds above their amount; the refund was capped at the amount",
                     f"{display}：{over:,} 个订单的退款大于订单金额；退款按订单金额计")
    raw.execute(f"""
        UPDATE {orders_t} SET refund_amount = least(refund_amount, amount),
            status = CASE WHEN status = 'cancelled' AND refund_amount > 0 THEN
                (CASE WHEN refund_amount < amount THEN 'partially_refunded' ELSE 'refunded' END) ELSE status END
    """)
    raw.execute(f"""
        CREATE TABLE {items_t} AS
        SELECT order_id, coalesce(line_no, row_number() OVER (PARTITION BY order_id ORDER BY _row)) AS line_no,
            sku, category, quantity,
            -- a one-line order without a price column costs its amount
            coalesce(price, round({line_value} / quantity, 2),
                     CASE WHEN count(*) OVER (PARTITION BY order_id) = 1 THEN round(amount / quantity, 2) END) AS price,
            list_price, brand, _row
        FROM {lines}
    """)
    return {ORDERS.name: orders_t, ORDER_ITEMS.name: items_t}


def _decide(raw, spec: TableSpec, rows: str, staging: _Staging) -> tuple[str, str, dict[str, int]]:
    """Compare staged rows (one per key) with the workspace: insert, update or unchanged.

    Returns the table of decisions for the keys already in the workspace (update or
    unchanged; usually few), the staged rows, and the counts. A row equal to a version the
    workspace already replaced is stale (an older export loaded again) and counts as
    unchanged: reloading any file changes nothing. Joins build on the smaller side and no
    step sorts the staged rows, so memory stays flat however big the file.
    """
    keys = [ident(k) for k in spec.key]
    content = [ident(c) for c in spec.columns if c not in spec.key]
    same = " AND ".join(f"s.{c} IS NOT DISTINCT FROM t.{c}" for c in content) or "TRUE"
    stale = " AND ".join(f"s.{c} IS NOT DISTINCT FROM o.{c}" for c in content) or "TRUE"
    source = rows
    if spec.name == ORDER_ITEMS.name:  # lines numbered in file order when the export had none
        source = staging.table("numbered_items")
        raw.execute(f"""
            CREATE TABLE {source} AS SELECT * REPLACE (
                coalesce(line_no, row_number() OVER (PARTITION BY order_id ORDER BY _row)) AS line_no)
            FROM {rows}
        """)
    out = staging.table(f"decided_{spec.name}")
    table = ident(spec.name)
    if raw.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)").fetchone()[0] == 0:
        # the first load into a table: every row is new (no join, no second pass)
        raw.execute(f"CREATE TABLE {out} AS SELECT {', '.join(keys)}, _row, 'update' AS _decision FROM {source} LIMIT 0")
        new = raw.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        return out, source, {"inserted": new, "updated": 0, "unchanged": 0}
    raw.execute(f"""
        CREATE TABLE {out} AS
        SELECT {', '.join('s.' + k for k in keys)}, s._row,
            CASE WHEN {same} THEN 'unchanged'
                 WHEN EXISTS (SELECT 1 FROM {ident(spec.name + VERSIONS_SUFFIX)} o
                              WHERE {_on(keys, 's', 'o')} AND {stale}) THEN 'unchanged'
                 ELSE 'update' END AS _decision
        FROM {source} s JOIN {table} t ON {_on(keys, 's', 't')}
    """)
    got = dict(raw.execute(f"SELECT _decision, count(*) FROM {out} GROUP BY ALL").fetchall())
    new = raw.execute(f"SELECT count(*) FROM {source} s ANTI JOIN {table} t ON {_on(keys, 's', 't')}").fetchone()[0]
    counts = {"inserted": new, "updated": got.get("update", 0), "unchanged": got.get("unchanged", 0)}
    return out, source, counts


def _line_counts(raw, decisions: dict[str, tuple[str, str, dict[str, int]]]) -> dict[str, int]:
    """Item lines of an item-level export: new with their line, updated when the line or its
    order changed, unchanged otherwise."""
    items, source, _ = decisions[ORDER_ITEMS.name]
    orders = decisions[ORDERS.name][0]
    got = dict(raw.execute(f"""
        SELECT CASE WHEN i._row IS NULL THEN 'inserted'
                    WHEN i._decision = 'update' OR o._decision = 'update' THEN 'updated'
                    ELSE 'unchanged' END, count(*)
        FROM {source} s LEFT JOIN {items} i USING (_row) LEFT JOIN {orders} o ON o.order_id = s.order_id
        GROUP BY ALL
    """).fetchall())
    return {k: got.get(k, 0) for k in ("inserted", "updated", "unchanged")}


def _apply(raw, spec: TableSpec, decided: str, source: str, *, load_id: str, at: dt_.datetime) -> None:
    """Inside the load's transaction: move replaced versions aside, then write the new ones
    (every staged row whose key is then absent: the new and the changed)."""
    keys = [ident(k) for k in spec.key]
    cols = ", ".join(ident(c) for c in (*spec.columns, LOAD_ID))
    versions, table = ident(spec.name + VERSIONS_SUFFIX), ident(spec.name)
    changed = f"(SELECT {', '.join(keys)} FROM {decided} WHERE _decision = 'update')"
    raw.execute(
        f"INSERT INTO {versions} ({cols}, superseded_by, superseded_at) "
        f"SELECT {', '.join('t.' + ident(c) for c in (*spec.columns, LOAD_ID))}, ?, ? "
        f"FROM {table} t SEMI JOIN {changed} u ON {_on(keys, 't', 'u')}",
        [load_id, at],
    )
    raw.execute(f"DELETE FROM {table} t USING {changed} u WHERE {_on(keys, 't', 'u')}")
    # staged rows are in file order already (chunks in order, each sorted by row); the few
    # unchanged ones are left out by row number, so the staged rows stream straight in
    select = f"INSERT INTO {table} ({cols}) SELECT {', '.join('s.' + ident(c) for c in spec.columns)}, ? FROM {source} s"
    if raw.execute(f"SELECT count(*) FROM {decided} WHERE _decision = 'unchanged'").fetchone()[0]:
        select += f" ANTI JOIN (SELECT _row FROM {decided} WHERE _decision = 'unchanged') u ON s._row = u._row"
    raw.execute(select, [load_id])


def _vocabulary_warnings(raw, spec: TableSpec, staging: _Staging, out: _Messages, *, display: str) -> None:
    """Status values that could not be mapped; event names outside the canonical vocabulary."""
    if "status" in spec.columns:
        unknown = raw.execute(
            f"SELECT value, count(*) AS n FROM {staging.rejects} WHERE column_name = 'status' "
            "GROUP BY value ORDER BY n DESC, value"
        ).fetchall()
        if unknown:
            listed = ", ".join(f"{v} ({_rows(n)})" for v, n in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            listed_zh = "、".join(f"{v}（{n:,} 行）" for v, n in unknown[:10]) + ("……" if len(unknown) > 10 else "")
            out.add(f"{display}: unknown status values: {listed}; these rows were rejected, not counted as "
                    "purchases: map them in [ingest.status_map] of userstrata.toml and load the file again",
                    f"{display}：未知的订单状态：{listed_zh}；这些行已拒绝，不计为购买：请在 userstrata.toml 的 "
                    "[ingest.status_map] 中配置后重新导入")
    if spec.name == "events":
        names = raw.execute(
            f"SELECT event, count(*) AS n FROM {staging.rows} GROUP BY event ORDER BY n DESC, event"
        ).fetchall()
        unknown = [(e, n) for e, n in names if e not in EVENT_NAMES]
        if unknown:
            listed = ", ".join(f"{e} ({_rows(n)})" for e, n in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            listed_zh = "、".join(f"{e}（{n:,} 行）" for e, n in unknown[:10]) + ("……" if len(unknown) > 10 else "")
            if len(unknown) == len(names):
                out.add(f"{display}: none of the event names is a known event: {listed}; interaction depth "
                        "counts none of them: map them in [ingest.event_map] of userstrata.toml",
                        f"{display}：没有一个事件名是已知事件：{listed_zh}；互动深度不会计入它们：请在 userstrata.toml 的 "
                        "[ingest.event_map] 中配置")
            else:
                out.add(f"{display}: event names kept as they are (not in the vocabulary): {listed}; map them "
                        "in [ingest.event_map] if they are interactions",
                        f"{display}：以下事件名不在词表中，按原样保存：{listed_zh}；如属互动行为，请在 "
                        "[ingest.event_map] 中配置")


def list_rejects(store, *, table: str | None = None, load_id: str | None = None,
                 limit: int | None = None) -> pd.DataFrame:
    """Rejected rows with their reasons, oldest load first, in file order."""
    rejects = store.table("rejects")
    if table is not None:
        _spec(table)
        rejects = rejects.filter(rejects.table_name == table)
    if load_id is not None:
        rejects = rejects.filter(rejects.load_id == load_id)
    rejects = rejects.order_by([rejects.loaded_at, rejects.load_id, rejects.row_number])
    if limit is not None:
        if limit < 0:
            raise InputError(f"limit must be 0 or more, got {limit}")
        rejects = rejects.limit(limit)
    return rejects.to_pandas()
