"""The store: one Ibis connection, the settings, the canonical tables and transactions.

Everything that writes goes through a ``Store``; analyses receive Ibis tables from it and
never open connections themselves.
"""

from __future__ import annotations

import contextlib
import datetime as dt_
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from userstrata import _engine
from userstrata.config import Settings
from userstrata.errors import InputError, NotFoundError
from userstrata.schema import CANONICAL, LOAD_ID, LOADS_SCHEMA, REJECTS_SCHEMA, VERSIONS_SUFFIX

BOOKKEEPING = {"rejects": REJECTS_SCHEMA, "loads": LOADS_SCHEMA}
_SQL_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "timestamp": "TIMESTAMP"}
PROFILES = "profiles"
SNAPSHOTS = "snapshots"  # one row per saved profile date: rows, settings fingerprint, when
# Canonical tables a Spark workspace cannot do without; the others are empty when not registered,
# as in a DuckDB workspace where nothing was loaded into them yet.
SPARK_REQUIRED = ("orders",)
SPARK_TABLES = "on Spark, register your tables as views named " + ", ".join(CANONICAL)
SPARK_HINT = 'e.g. spark.read.parquet(path).createOrReplaceTempView("orders"); see docs/engines.md'


# The default DuckDB memory limit: what keeps a whole 1M-user profile process under 2 GiB
# (DuckDB spills the rest to ``<workspace>.tmp``, or ``.tmp`` for an in-memory workspace)
DEFAULT_MEMORY_LIMIT_BYTES = 1_000_000_000


def _ram_bytes() -> int:
    import os  # noqa: PLC0415

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume plenty
        return 16 * 2**30


def duckdb_memory_limit(setting: str | None) -> str:
    """The DuckDB ``memory_limit`` for ``[engine] memory_limit``: the value itself, a share of
    RAM for "N%", and for None 1GB or a quarter of RAM if that is less (in MiB)."""
    if setting is None:
        return f"{min(DEFAULT_MEMORY_LIMIT_BYTES, _ram_bytes() // 4) // 2**20}MiB"
    if setting.endswith("%"):
        return f"{int(_ram_bytes() * float(setting[:-1].strip()) / 100) // 2**20}MiB"
    return setting  # validated by Settings


class Store:
    """The Ibis connection plus the canonical tables of one workspace."""

    def __init__(self, con: ibis.BaseBackend, engine: str, settings: Settings, location: str):
        self.con = con
        self.engine = engine
        self.settings = settings
        self.location = location
        self._warned_empty: set[str] = set()

    @classmethod
    def open(cls, target: Any = None, *, settings: Settings | None = None, create: bool = True) -> "Store":
        """Open (and, with ``create``, initialise) the workspace at ``target``."""
        if target is None:
            target = _engine.DEFAULT_WORKSPACE
        name = str(target)
        if isinstance(target, (str, Path)) and (name == _engine.SPARK_PREFIX or name.startswith(_engine.SPARK_PREFIX + ":")):
            spark = (settings or Settings()).engine.spark
            master = name.partition(":")[2] or spark.master
            target = _engine.spark_session(master, spark.tables, spark.format, tuple(CANONICAL))
        is_file = isinstance(target, (str, Path)) and "://" not in str(target) and str(target) != ":memory:"
        if is_file and not create and not Path(target).exists():
            raise NotFoundError(
                f"workspace {target} does not exist",
                hint=f"create it with `userstrata init {target}` or pass --workspace",
            )
        con, engine = _engine.connect(target)
        location = "the Spark session" if engine == "spark" else str(target)
        store = cls(con, engine, settings or Settings(), location)
        if engine == "duckdb":
            limits = store.settings.engine
            con.raw_sql(f"SET memory_limit = '{duckdb_memory_limit(limits.memory_limit)}'")
            if limits.threads:
                con.raw_sql(f"SET threads = {int(limits.threads)}")
            store._ensure_tables()
        return store

    # -- tables ---------------------------------------------------------------------------
    def _ensure_tables(self) -> None:
        """Create missing tables; add columns that newer versions introduced to older workspaces."""
        existing = set(self.con.list_tables())
        wanted: dict[str, ibis.Schema] = dict(BOOKKEEPING)
        for spec in CANONICAL.values():
            wanted[spec.name] = ibis.schema({**spec.schema, LOAD_ID: dt.string})
            wanted[spec.name + VERSIONS_SUFFIX] = ibis.schema(
                {**spec.schema, LOAD_ID: dt.string, "superseded_by": dt.string, "superseded_at": dt.timestamp}
            )
        for name, schema in wanted.items():
            if name not in existing:
                self.con.create_table(name, schema=schema)
                continue
            have = set(self.con.table(name).columns)
            for column, dtype in schema.items():
                if column not in have:
                    sql_type = _SQL_TYPES[str(dtype)]
                    self.con.raw_sql(f'ALTER TABLE "{name}" ADD COLUMN "{column}" {sql_type}')

    def table(self, name: str) -> ir.Table:
        """A stored table as an Ibis expression (nothing runs yet)."""
        if self.engine == "spark" and name in CANONICAL:
            return self._spark_table(name)
        if name not in self.con.list_tables():
            known = ", ".join(sorted(self.con.list_tables()))
            raise NotFoundError(f"table {name!r} is not in workspace {self.location} (has: {known})")
        return self.con.table(name)

    def count(self, name: str) -> int:
        return int(self.table(name).count().execute())

    def execute(self, expr: ir.Expr) -> Any:
        """``expr``'s result in pandas, as ``expr.to_pandas()`` gives it but fetched leaner
        (``_engine.to_pandas``): what the analyses are handed to run their queries."""
        return _engine.to_pandas(self.con, expr)

    def _spark_table(self, name: str) -> ir.Table:
        """A canonical table from the Spark session's catalog, in the canonical schema.

        Columns are picked by name and cast to the canonical types (a DECIMAL amount becomes
        float64; timestamps are read in the session time zone, UTC); a missing optional column
        is null and a missing table other than ``SPARK_REQUIRED`` is empty, as in a DuckDB
        workspace before anything was loaded (with a warning, once).
        """
        spec = CANONICAL[name]
        if name not in self.con.list_tables():
            if name in SPARK_REQUIRED:
                raise NotFoundError(f"the Spark session has no table or view named {name!r}; {SPARK_TABLES}",
                                    hint=SPARK_HINT)
            if name not in self._warned_empty:
                self._warned_empty.add(name)
                warnings.warn(f"the Spark session has no table or view named {name!r}; it is read as empty",
                              stacklevel=3)
            empty = pa.Table.from_pylist([], schema=spec.schema.to_pyarrow())
            return ibis.memtable(empty, schema=spec.schema)
        table = self.con.table(name)
        have = table.schema()
        missing = [c for c in spec.required if c not in have]
        if missing:
            raise InputError(
                f"Spark table {name!r} has no column {', '.join(map(repr, missing))} (has: {', '.join(have.names)})",
                hint=f"{name} needs the columns {', '.join(spec.columns)} (docs/schema.md); rename them in a view",
            )
        columns = {}
        for col, dtype in spec.schema.items():
            if col not in have:
                columns[col] = ibis.null(dtype)
            elif have[col] != dtype:
                columns[col] = table[col].cast(dtype)
            else:
                columns[col] = table[col]
        return table.select(**columns)

    def require_duckdb(self, operation: str) -> None:
        """Raise InputError naming ``operation`` unless the workspace runs on DuckDB."""
        if self.engine == "duckdb":
            return
        if self.engine == "spark":
            raise InputError(f"{operation} needs the DuckDB engine; {SPARK_TABLES}", hint=SPARK_HINT)
        raise InputError(f"{operation} needs the DuckDB engine; this workspace uses {self.engine}")

    # -- writes ---------------------------------------------------------------------------
    @property
    def duckdb(self):
        """The raw DuckDB connection, for bulk writes that need SQL-level transactions."""
        self.require_duckdb("this operation")
        return self.con.con

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """All-or-nothing writes: on any exception the store is left as it was."""
        raw = self.duckdb
        raw.execute("BEGIN TRANSACTION")
        try:
            yield raw
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        else:
            raw.execute("COMMIT")

    def save_profiles(self, profile: ir.Table | pd.DataFrame, as_of: dt_.date, *,
                      fingerprint: str | None = None) -> tuple[int, bool]:
        """Materialise one snapshot of ``profile`` (replacing an earlier one for ``as_of``), with its
        row in ``snapshots`` (rows, the settings ``fingerprint``, when); returns the rows written and
        whether a snapshot of that date was replaced."""
        if isinstance(profile, pd.DataFrame):
            arrow = pa.Table.from_pandas(profile, preserve_index=False)
        else:
            arrow = _engine.to_arrow(self.con, profile)
        raw = self.duckdb
        with self.transaction():
            raw.execute(
                f"CREATE TABLE IF NOT EXISTS {SNAPSHOTS} (as_of DATE PRIMARY KEY, rows BIGINT, "
                "settings_fingerprint VARCHAR, saved_at TIMESTAMP)"
            )
            replaced = bool(raw.execute(f"SELECT count(*) FROM {SNAPSHOTS} WHERE as_of = ?", [as_of]).fetchone()[0])
            if not replaced and PROFILES in self.con.list_tables():  # snapshots saved before the log existed
                replaced = bool(raw.execute(f"SELECT count(*) FROM {PROFILES} WHERE as_of = ?", [as_of]).fetchone()[0])
            raw.execute(f"DELETE FROM {SNAPSHOTS} WHERE as_of = ?", [as_of])
            raw.execute(f"INSERT INTO {SNAPSHOTS} VALUES (?, ?, ?, now()::TIMESTAMP)", [as_of, arrow.num_rows, fingerprint])
            raw.register("_new_profiles", arrow)
            try:
                if PROFILES not in self.con.list_tables():
                    raw.execute(f"CREATE TABLE {PROFILES} AS SELECT * FROM _new_profiles LIMIT 0")
                have = {r[0] for r in raw.execute(f"DESCRIBE {PROFILES}").fetchall()}
                for row in raw.execute("DESCRIBE _new_profiles").fetchall():
                    if row[0] not in have:
                        raw.execute(f'ALTER TABLE {PROFILES} ADD COLUMN "{row[0]}" {row[1]}')
                raw.execute(f"DELETE FROM {PROFILES} WHERE as_of = ?", [as_of])
                raw.execute(f"INSERT INTO {PROFILES} BY NAME SELECT * FROM _new_profiles")
            finally:
                raw.unregister("_new_profiles")
        return arrow.num_rows, replaced

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.con.disconnect()
