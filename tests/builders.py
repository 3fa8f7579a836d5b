"""Small canonical tables built in code, and a way to run a profile on them."""

from __future__ import annotations

import datetime as dt_

import ibis
import pandas as pd

from userstrata.config import Settings
from userstrata.schema import CANONICAL
from userstrata.segments import build_profile

AS_OF = dt_.date(2024, 6, 30)


def rows_frame(name: str, rows: list[tuple] | None = None) -> pd.DataFrame:
    """Tuples in column order as a frame of canonical table ``name``; a tuple shorter than the
    table leaves the trailing (optional) columns empty."""
    columns = list(CANONICAL[name].columns)
    return pd.DataFrame([tuple(r) + (None,) * (len(columns) - len(r)) for r in rows or []], columns=columns)


def canonical_frames(files: dict, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The simulator's files of ``names`` as canonical frames: every column of the table (missing
    ones empty), timestamps naive UTC as the store keeps them."""
    frames = {}
    for name in names:
        spec = CANONICAL[name]
        f = pd.read_parquet(files[name])
        for col in spec.columns:
            if col not in f:
                f[col] = None
            elif f[col].dtype.kind == "M" and getattr(f[col].dt, "tz", None) is not None:
                f[col] = f[col].dt.tz_convert("UTC").dt.tz_localize(None)
        frames[name] = f[list(spec.columns)]
    return frames


def table(name: str, rows: list[tuple] | None = None) -> ibis.Table:
    """A canonical table from tuples in column order (timestamps as 'YYYY-MM-DD HH:MM' UTC)."""
    spec = CANONICAL[name]
    frame = rows_frame(name, rows)
    for col, typ in spec.schema.items():
        if typ.is_timestamp():
            frame[col] = pd.to_datetime(frame[col])
    return ibis.memtable(frame, schema=spec.schema)


def order(order_id, user_id, ts, amount, *, status="paid", refund=0.0, refunded_at=None):
    return (order_id, user_id, ts, amount, "CNY", status, refund, refunded_at)


def event(event_id, user_id, ts, name):
    return (event_id, user_id, None, None, ts, name, None)


def run_profile(
    *, users=None, orders=None, items=None, events=None, as_of=AS_OF, settings=None
) -> pd.DataFrame:
    """Build and execute a profile on DuckDB; indexed by user_id."""
    expr = build_profile(
        users=table("users", users),
        orders=table("orders", orders),
        order_items=table("order_items", items),
        events=table("events", events),
        as_of=as_of,
        settings=settings or Settings(),
    )
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con.execute(expr).set_index("user_id")
