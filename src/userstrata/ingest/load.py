"""Loading: a file or frame -> one canonical table + rejects + a row in ``loads``, atomically.

Per chunk:
1. ``validate.stage_query`` types and checks every row (first failing column and why);
2. valid rows are compared by key with the workspace (earlier loads), with the rows kept from
   earlier chunks and with earlier rows of the chunk: the first version of a key is kept, an
   identical repeat is a duplicate (skipped), a different one is rejected, naming where the
   kept one was first seen;
3. kept rows and rejects (with the whole raw row as JSON) go to a staging file.
At the end, one transaction moves them into the workspace and records the load; any error
before or during it leaves the workspace exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt_
import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from userstrata.errors import InputError
from userstrata.ingest import readers
from userstrata.ingest.mapping import ColumnPlan, plan_columns
from userstrata.ingest.validate import Rules, ident, lit, stage_query
from userstrata.schema import CANONICAL, TableSpec

Progress = Callable[[int], None]


@dataclass(frozen=True)
class LoadReport:
    """What one load did; ``rows_read == rows_accepted + rows_rejected + rows_duplicate``."""

    load_id: str
    table: str
    file: str
    encoding: str | None  # None for binary formats (Excel, Parquet) and frames
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rows_duplicate: int
    ignored_columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    column_map: tuple[tuple[str, str], ...] = ()  # (canonical column, source column)

    def summary(self) -> str:
        """One line for people: '1,000 rows read: 990 loaded, 7 rejected, 3 duplicates'."""
        return (
            f"{self.file} -> {self.table}: {self.rows_read:,} rows read: {self.rows_accepted:,} loaded, "
            f"{self.rows_rejected:,} rejected, {self.rows_duplicate:,} duplicates"
        )


def _spec(table: str) -> TableSpec:
    try:
        return CANONICAL[table]
    except KeyError:
        raise InputError(
            f"unknown table {table!r} (tables: {', '.join(CANONICAL)})",
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
) -> LoadReport:
    """Load the file at ``path`` into the canonical ``table`` of ``store``.

    Parameters
    ----------
    store
        The ``Store`` to write to (DuckDB engine).
    table
        A canonical table name: users, orders, order_items, events, identities, touches.
    path
        A .csv/.tsv/.txt, .xlsx, .parquet or .jsonl/.ndjson/.json file.
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
                 mapping=mapping, progress=progress)


def load_frame(store, table: str, data, *, source: str) -> LoadReport:
    """Load a pandas DataFrame or pyarrow Table through the same validation as files.

    Row numbers in rejects count records from 1. ``source`` names the data in rejects/loads.
    """
    spec = _spec(table)
    reader = readers.FrameReader(data, source=source, chunk_rows=store.settings.ingest.chunk_rows)
    return _load(store, spec, reader, file=source, display=source, sha256=None, mapping=None, progress=None)


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
    has accepted and rejected so far; the workspace itself is written only at the end, in
    one transaction (``store.transaction()``), or not at all.

    Why not one transaction around the whole load: DuckDB keeps memory for every scan of
    rows a still-open transaction has inserted (measured: +30 MB per 200k-row chunk when
    each chunk is checked against the earlier ones), so memory would grow with the file.
    Rows committed to a staging file are scanned like any table, from disk.
    """

    def __init__(self, raw, spec: TableSpec, token: str):
        self.raw, self.spec = raw, spec
        self.alias = f"_us_stage_{token}"
        self.folder = Path(tempfile.mkdtemp(prefix="userstrata-load-"))
        self.rows = f"{self.alias}.accepted"
        self.rejects = f"{self.alias}.rejected"

    def __enter__(self) -> "_Staging":
        raw, spec = self.raw, self.spec
        raw.execute(f"ATTACH {lit(str(self.folder / 'stage.duckdb'))} AS {self.alias}")
        raw.execute(
            f"CREATE TABLE {self.rows} AS SELECT {', '.join(ident(c) for c in spec.columns)}, "
            f"NULL::BIGINT AS _row FROM {ident(spec.name)} LIMIT 0"
        )
        raw.execute(
            f"CREATE TABLE {self.rejects} AS SELECT row_number, column_name, value, reason, raw FROM rejects LIMIT 0"
        )
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.raw.execute(f"DETACH {self.alias}")
        shutil.rmtree(self.folder, ignore_errors=True)


def _load(store, spec: TableSpec, reader, *, file: str, display: str, sha256: str | None,
          mapping: dict[str, str] | None, progress: Progress | None) -> LoadReport:
    settings = store.settings
    raw = store.duckdb
    started = _utcnow()
    token = uuid.uuid4().hex[:8]
    load_id = f"{started:%Y%m%dT%H%M%S}-{token}"
    rules = Rules(
        timezone=settings.timezone,
        currency=settings.currency,
        future_limit=started + dt_.timedelta(hours=settings.ingest.future_tolerance_hours),
        future_tolerance_hours=settings.ingest.future_tolerance_hours,
    )

    plans: dict[tuple[str, ...], ColumnPlan] = {}

    def plan_for(source_names: tuple[str, ...]) -> ColumnPlan:
        if source_names not in plans:
            plans[source_names] = plan_columns(spec, source_names, mapping, file=display)
        return plans[source_names]

    # mapping problems and missing columns surface before anything is written
    if reader.names is not None:
        plan_for(reader.names)

    warnings: list[str] = []
    if sha256 is not None:
        earlier = raw.execute(
            "SELECT load_id, loaded_at FROM loads WHERE file_sha256 = ? AND table_name = ? ORDER BY loaded_at LIMIT 1",
            [sha256, spec.name],
        ).fetchone()
        if earlier:
            warnings.append(
                f"{display}: the same file was already loaded into {spec.name} (load {earlier[0]} at "
                f"{earlier[1]:%Y-%m-%d %H:%M} UTC); identical rows count as duplicates"
            )

    totals = {"read": 0, "accepted": 0, "rejected": 0, "duplicate": 0, "blank": 0}
    chunks = reader.chunks()
    try:
        with _Staging(raw, spec, token) as staging:
            for chunk in chunks:
                plan = plan_for(chunk.names) if chunk.table.num_rows else None
                counts = _process_chunk(raw, spec, plan, chunk, rules, staging, display=display)
                for k, v in counts.items():
                    totals[k] += v
                if progress is not None:
                    progress(chunk.n_rows)
            if totals["read"] != totals["accepted"] + totals["rejected"] + totals["duplicate"]:
                raise RuntimeError(f"ingest bug: counts do not add up for load {load_id}: {totals}")
            columns = ", ".join(ident(c) for c in spec.columns)
            with store.transaction():
                # staged rows are in file order already (chunks in order, each sorted by row)
                raw.execute(f"INSERT INTO {ident(spec.name)} ({columns}) SELECT {columns} FROM {staging.rows}")
                raw.execute(
                    "INSERT INTO rejects (load_id, table_name, file, row_number, column_name, value, reason, raw, "
                    f"loaded_at) SELECT ?, ?, ?, row_number, column_name, value, reason, raw, ? FROM {staging.rejects}",
                    [load_id, spec.name, file, started],
                )
                raw.execute(
                    "INSERT INTO loads (load_id, table_name, file, file_sha256, encoding, rows_read, rows_accepted, "
                    "rows_rejected, rows_duplicate, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [load_id, spec.name, file, sha256, reader.encoding, totals["read"], totals["accepted"],
                     totals["rejected"], totals["duplicate"], started],
                )
    finally:
        chunks.close()

    # the last plan has seen every column (JSON lines learn columns as they go)
    plan = list(plans.values())[-1] if plans else None
    warnings.extend(getattr(reader, "warnings", []))
    if plan is not None:
        warnings.extend(plan.warnings)
    if totals["read"] == 0:
        what = "no records" if reader.names is None else "a header but no data rows"
        warnings.append(f"{display} has {what}; nothing was loaded")
    if totals["blank"]:
        warnings.append(f"{display}: skipped {totals['blank']} rows with every cell empty")
    if totals["rejected"]:
        warnings.append(
            f"{display}: {totals['rejected']:,} rows rejected; see them with `userstrata rejects --load {load_id}`"
        )
    return LoadReport(
        load_id=load_id,
        table=spec.name,
        file=file,
        encoding=reader.encoding,
        rows_read=totals["read"],
        rows_accepted=totals["accepted"],
        rows_rejected=totals["rejected"],
        rows_duplicate=totals["duplicate"],
        ignored_columns=plan.ignored_columns if plan else (),
        warnings=tuple(dict.fromkeys(warnings)),
        column_map=plan.column_map if plan else (),
    )


_REJECT_COLUMNS = pa.schema([
    ("row_number", pa.int64()), ("column_name", pa.string()), ("value", pa.string()),
    ("reason", pa.string()), ("raw", pa.string()),
])
# intermediate Arrow tables are registered under these names for the length of a statement
_CHUNK, _STAGE, _DECISION, _REJECTED = "_us_chunk", "_us_stage", "_us_decision", "_us_rejected"


@contextlib.contextmanager
def _registered(raw, name: str, table: pa.Table):
    raw.register(name, table)
    try:
        yield
    finally:
        raw.unregister(name)


def _process_chunk(raw, spec: TableSpec, plan: ColumnPlan | None, chunk: readers.Chunk, rules: Rules,
                   staging: _Staging, *, display: str) -> dict[str, int]:
    """Validate and dedupe one chunk into the staging file; returns its counts."""
    counts = {"read": len(chunk.bad), "accepted": 0, "rejected": 0, "duplicate": 0, "blank": 0}
    candidates = [pa.table({
        "row_number": pa.array([b.row_number for b in chunk.bad], pa.int64()),
        "column_name": pa.nulls(len(chunk.bad), pa.string()),
        "value": pa.nulls(len(chunk.bad), pa.string()),
        "reason": pa.array([b.reason for b in chunk.bad], pa.string()),
        "raw": pa.array([b.raw for b in chunk.bad], pa.string()),
    })]
    if plan is not None and chunk.table.num_rows:
        candidates.append(_validate_chunk(raw, spec, plan, chunk, rules, staging, display=display, counts=counts))
    rejected = pa.concat_tables([c.cast(_REJECT_COLUMNS) for c in candidates])
    if rejected.num_rows:
        _stage_rejects(raw, spec, rejected, staging, counts=counts)
    return counts


def _stage_rejects(raw, spec: TableSpec, rejected: pa.Table, staging: _Staging, *, counts: dict[str, int]) -> None:
    # A rejected row identical to one already quarantined (same table, column and raw row:
    # an earlier load of the same file, or an exact repeat in this one) is a duplicate, so
    # that loading a file twice changes nothing.
    new_rejects = f"""
        FROM {_REJECTED} r
        ANTI JOIN rejects x
            ON x.table_name = ? AND x.raw = r.raw AND x.column_name IS NOT DISTINCT FROM r.column_name
        ANTI JOIN {staging.rejects} y ON y.raw = r.raw AND y.column_name IS NOT DISTINCT FROM r.column_name
        QUALIFY row_number() OVER (PARTITION BY r.column_name, r.raw ORDER BY r.row_number) = 1
    """
    with _registered(raw, _REJECTED, rejected):
        n_before = raw.execute(f"SELECT count(*) FROM {staging.rejects}").fetchone()[0]
        raw.execute(
            f"INSERT INTO {staging.rejects} SELECT r.row_number, r.column_name, r.value, r.reason, r.raw "
            f"{new_rejects} ORDER BY r.row_number",
            [spec.name],
        )
        n_new = raw.execute(f"SELECT count(*) FROM {staging.rejects}").fetchone()[0] - n_before
    counts["rejected"] += n_new
    counts["duplicate"] += rejected.num_rows - n_new


def _validate_chunk(raw, spec: TableSpec, plan: ColumnPlan, chunk: readers.Chunk, rules: Rules,
                    staging: _Staging, *, display: str, counts: dict[str, int]) -> pa.Table:
    """Stage and decide the valid rows of one chunk; returns its reject candidates."""
    with _registered(raw, _CHUNK, chunk.table):
        stage = raw.execute(stage_query(spec, plan, rules, chunk=_CHUNK)).to_arrow_table()
        with _registered(raw, _STAGE, stage):
            decision = raw.execute(_decision_query(spec, staging)).to_arrow_table()
            with _registered(raw, _DECISION, decision):
                # kept versions are staged at once, so that later chunks find them
                raw.execute(f"""
                    INSERT INTO {staging.rows}
                    SELECT {', '.join('s.' + ident(c) for c in spec.columns)}, s._row
                    FROM {_STAGE} s JOIN {_DECISION} d USING (_row)
                    WHERE d._decision = 'accepted' ORDER BY s._row
                """)
                rejected = raw.execute(_rejects_query(spec, plan, chunk, display=display)).to_arrow_table()
                n_acc, n_dup = raw.execute(f"""
                    SELECT count(*) FILTER (WHERE _decision = 'accepted'),
                           count(*) FILTER (WHERE _decision = 'duplicate')
                    FROM {_DECISION}
                """).fetchone()
    counts["read"] += stage.num_rows
    counts["accepted"] += n_acc
    counts["duplicate"] += n_dup
    counts["blank"] += chunk.table.num_rows - stage.num_rows
    return rejected


def _decision_query(spec: TableSpec, staging: _Staging) -> str:
    """Per valid row: accepted (the kept version of its key), duplicate or conflict, and the
    row where the kept version was first seen in this load (NULL: in the workspace before).

    The kept version of a key is the row already in the workspace, else the one staged from
    an earlier chunk, else the chunk's first valid row with that key.
    """
    keys = [ident(k) for k in spec.key]
    content = [ident(c) for c in spec.columns if c not in spec.key]
    cols = keys + content
    same = " AND ".join(f"v.{c} IS NOT DISTINCT FROM ref.{c}" for c in content) or "TRUE"
    e_cols = ", ".join("e." + c for c in cols)
    return f"""
        WITH v AS (SELECT _row, {', '.join(cols)} FROM {_STAGE} WHERE _rej IS NULL),
        wanted AS (SELECT DISTINCT {', '.join(keys)} FROM v),
        existing AS (
            SELECT * FROM (
                SELECT {e_cols}, NULL::BIGINT AS _seen_row FROM {ident(spec.name)} e
                SEMI JOIN wanted w ON {_on(keys, 'e', 'w')}
                UNION ALL
                SELECT {e_cols}, e._row FROM {staging.rows} e
                SEMI JOIN wanted w ON {_on(keys, 'e', 'w')}
            )
            QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY _seen_row NULLS FIRST) = 1
        ),
        first_in_chunk AS (
            SELECT * FROM v QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY _row) = 1
        ),
        ref AS (
            SELECT {', '.join(cols)}, NULL::BIGINT AS _ref_row, _seen_row FROM existing
            UNION ALL
            SELECT {', '.join('f.' + c for c in cols)}, f._row, f._row FROM first_in_chunk f
            ANTI JOIN existing x ON {_on(keys, 'f', 'x')}
        )
        SELECT v._row,
            CASE WHEN ref._ref_row = v._row THEN 'accepted'
                 WHEN {same} THEN 'duplicate'
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
    return f"""
        SELECT s._row AS row_number,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.column_name ELSE {lit(', '.join(spec.key))} END AS column_name,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.value ELSE {key_value} END AS value,
            CASE WHEN s._rej IS NOT NULL THEN s._rej.reason
                 ELSE {key_text} || ' already loaded with different content (first seen in '
                      || coalesce({lit(display + ' row ')} || CAST(d._first_row AS VARCHAR), 'the workspace')
                      || ')' END AS reason,
            {raw_json} AS raw
        FROM {_STAGE} s
        LEFT JOIN {_DECISION} d USING (_row)
        JOIN {_CHUNK} c ON c._row = s._row
        WHERE s._rej IS NOT NULL OR d._decision = 'conflict'
    """


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
