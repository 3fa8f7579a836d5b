"""The load log: list loads, undo one exactly, and read a table as it was known at a moment.

Every row of a canonical table carries the ``load_id`` that wrote its current version; when a
later load changes the row, the replaced version moves to ``<table>_versions`` with
``superseded_by`` (that later load) and ``superseded_at``. So undoing a load deletes the rows
it wrote and puts back the versions it replaced; and a load whose rows a later load has
changed cannot be undone before that later one.
"""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.errors import InputError, NotFoundError
from userstrata.ingest.validate import ident
from userstrata.schema import CANONICAL, LOAD_ID, VERSIONS_SUFFIX

_LOAD_COLUMNS = (
    "load_id", "table_name", "file", "loaded_at", "rows_read", "rows_inserted", "rows_updated",
    "rows_unchanged", "rows_rejected", "undone_at", "encoding",
)  # fmt: skip


@dataclass(frozen=True)
class UnloadReport:
    """What undoing one load did, per table: rows removed and earlier versions restored."""

    load_id: str
    file: str
    removed: dict[str, int]
    restored: dict[str, int]
    rejects_removed: int

    def summary(self, lang: str = "en") -> str:
        removed, restored = sum(self.removed.values()), sum(self.restored.values())
        if lang == "zh":
            return (f"已撤销导入 {self.load_id}（{self.file}）：删除 {removed:,} 行，恢复 {restored:,} 行的先前版本，"
                    f"删除 {self.rejects_removed:,} 条拒绝记录")
        return (f"undid load {self.load_id} ({self.file}): {removed:,} rows removed, {restored:,} earlier versions "
                f"restored, {self.rejects_removed:,} rejects removed")


def list_loads(store) -> pd.DataFrame:
    """Every load, oldest first, with its counts; undone loads have ``undone_at`` set."""
    loads = store.table("loads")
    return loads.select(*_LOAD_COLUMNS).order_by([loads.loaded_at, loads.load_id]).to_pandas()


def unload(store, load_id: str) -> UnloadReport:
    """Undo ``load_id`` exactly: remove what it inserted, restore what it changed, drop its rejects.

    Refused (InputError) when a later load changed rows this load wrote: undo that one first.
    """
    raw = store.duckdb
    found = raw.execute("SELECT file, undone_at FROM loads WHERE load_id = ?", [load_id]).fetchone()
    if found is None:
        recent = [r[0] for r in raw.execute(
            "SELECT load_id FROM loads WHERE undone_at IS NULL ORDER BY loaded_at DESC LIMIT 5").fetchall()]
        raise NotFoundError(f"there is no load {load_id!r}",
                            hint="`userstrata loads` lists them" + (f"; the latest: {', '.join(recent)}" if recent else ""))
    file, undone_at = found
    if undone_at is not None:
        raise InputError(f"load {load_id} ({file}) was already undone at {undone_at:%Y-%m-%d %H:%M} UTC")
    blockers = []
    for spec in CANONICAL.values():
        blockers += [r[0] for r in raw.execute(
            f"SELECT DISTINCT superseded_by FROM {ident(spec.name + VERSIONS_SUFFIX)} WHERE {LOAD_ID} = ?",
            [load_id]).fetchall()]
    if blockers:
        later = raw.execute(
            "SELECT load_id, file FROM loads WHERE list_contains(?, load_id) ORDER BY loaded_at DESC",
            [sorted(set(blockers))]).fetchall()
        named = ", ".join(f"{lid} ({f})" for lid, f in later)
        raise InputError(
            f"load {load_id} ({file}) cannot be undone: a later load changed rows it wrote: {named}",
            hint=f"undo the later load first: userstrata unload {later[0][0]}",
        )
    removed: dict[str, int] = {}
    restored: dict[str, int] = {}
    with store.transaction():
        for spec in CANONICAL.values():
            table, versions = ident(spec.name), ident(spec.name + VERSIONS_SUFFIX)
            cols = ", ".join(ident(c) for c in (*spec.columns, LOAD_ID))
            removed[spec.name] = raw.execute(f"SELECT count(*) FROM {table} WHERE {LOAD_ID} = ?", [load_id]).fetchone()[0]
            raw.execute(f"DELETE FROM {table} WHERE {LOAD_ID} = ?", [load_id])
            restored[spec.name] = raw.execute(
                f"SELECT count(*) FROM {versions} WHERE superseded_by = ?", [load_id]).fetchone()[0]
            raw.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {versions} WHERE superseded_by = ?", [load_id])
            raw.execute(f"DELETE FROM {versions} WHERE superseded_by = ?", [load_id])
        rejects = raw.execute("SELECT count(*) FROM rejects WHERE load_id = ?", [load_id]).fetchone()[0]
        raw.execute("DELETE FROM rejects WHERE load_id = ?", [load_id])
        raw.execute("UPDATE loads SET undone_at = ? WHERE load_id = ?",
                    [dt_.datetime.now(dt_.UTC).replace(tzinfo=None), load_id])
    return UnloadReport(load_id, file, {k: v for k, v in removed.items() if v},
                        {k: v for k, v in restored.items() if v}, rejects)


def table_known_at(store, name: str, at: dt_.datetime) -> ir.Table:
    """``name`` as the workspace knew it at ``at`` (naive UTC): the versions loaded by then and
    not yet replaced. Rows of loads undone since are not known, nor are the versions they replaced
    (those are back in the table itself)."""
    spec = CANONICAL[name]
    loads = store.table("loads").select("load_id", "loaded_at")
    at_lit = ibis.literal(at)
    current = store.table(name)
    current = current.left_join(loads, current[LOAD_ID] == loads.load_id)
    current = current.filter(current.loaded_at.isnull() | (current.loaded_at <= at_lit)).select(*spec.columns)
    old = store.table(name + VERSIONS_SUFFIX)
    old = old.join(loads, old[LOAD_ID] == loads.load_id)
    old = old.filter(old.loaded_at <= at_lit, old.superseded_at > at_lit).select(*spec.columns)
    return ibis.union(current, old, distinct=False)
