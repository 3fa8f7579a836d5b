"""Profile snapshots: the profile of a date kept in the workspace, so that change can be tracked.

A snapshot is the profile of ``as_of`` in the ``profiles`` table plus a row in ``snapshots``
(rows, the settings fingerprint, when). Saving a date again replaces it exactly. The
fingerprint is a hash of the settings that decide the profile (time zone, lifecycle, tiers,
RFM, profile): a snapshot made under other tier rules shows a different one.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import re
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from userstrata.config import Settings
from userstrata.errors import InputError, NotFoundError
from userstrata.store import PROFILES, SNAPSHOTS, Store

__all__ = [
    "SnapshotReport", "fingerprint", "list_snapshots", "save_snapshot", "shift_months", "snapshot_dates", "snapshot_table",
]

_PROFILE_SETTINGS = {"timezone", "lifecycle", "tiers", "rfm", "profile"}
_EVERY = re.compile(r"^(\d+)(w|mo|q)$")


def fingerprint(settings: Settings) -> str:
    """12 hex digits that change whenever a setting that decides the profile changes."""
    text = settings.model_dump_json(include=_PROFILE_SETTINGS)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SnapshotReport:
    as_of: dt_.date
    rows: int
    replaced: bool  # a snapshot of this date existed and was replaced
    fingerprint: str

    def summary(self, lang: str = "en") -> str:
        if lang == "zh":
            verb = "已替换原有快照" if self.replaced else "已保存"
            return f"{self.as_of} 的画像快照{verb}：{self.rows:,} 位用户（设置指纹 {self.fingerprint}）"
        verb = "replaced the earlier snapshot" if self.replaced else "saved"
        return f"snapshot of {self.as_of} {verb}: {self.rows:,} users (settings {self.fingerprint})"


def save_snapshot(store: Store, profile: ir.Table | pd.DataFrame, as_of: dt_.date, settings: Settings) -> SnapshotReport:
    """Store ``profile`` as the snapshot of ``as_of`` (replacing one of that date, in one transaction)."""
    store.require_duckdb("saving profile snapshots")
    print_ = fingerprint(settings)
    rows, replaced = store.save_profiles(profile, as_of, fingerprint=print_)
    return SnapshotReport(as_of, rows, replaced, print_)


def list_snapshots(store: Store, settings: Settings) -> pd.DataFrame:
    """``as_of, rows, settings_fingerprint, saved_at, current_settings`` (the fingerprint is today's), oldest first."""
    store.require_duckdb("listing snapshots")
    columns = ["as_of", "rows", "settings_fingerprint", "saved_at", "current_settings"]
    if SNAPSHOTS not in store.con.list_tables():
        return pd.DataFrame(columns=columns)
    frame = store.duckdb.execute(f"SELECT * FROM {SNAPSHOTS} ORDER BY as_of").fetchdf()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    frame["current_settings"] = frame["settings_fingerprint"] == fingerprint(settings)
    return frame[columns]


def snapshot_table(store: Store, as_of: dt_.date) -> ir.Table:
    """The profile rows of the snapshot of ``as_of``; NotFoundError if there is none."""
    store.require_duckdb("reading profile snapshots")
    tables = store.con.list_tables()
    if PROFILES not in tables or not store.duckdb.execute(
        f"SELECT count(*) FROM {PROFILES} WHERE as_of = ?", [as_of]
    ).fetchone()[0]:
        raise NotFoundError(f"no snapshot of {as_of}", hint=f"make one: userstrata snapshot --as-of {as_of}")
    t = store.con.table(PROFILES)
    return t.filter(t.as_of == ibis.literal(as_of))


def snapshot_dates(start: dt_.date, end: dt_.date, every: str) -> list[dt_.date]:
    """``start``, then every ``every`` (``1w``, ``2w``, ``1mo``, ``1q`` ...) up to ``end`` inclusive.

    Months keep the day of ``start`` where the month has it, else its last day (Jan 31 -> Feb 29
    -> Mar 31): month ends stay month ends.
    """
    m = _EVERY.match(every.strip())
    if not m or int(m.group(1)) == 0:
        raise InputError(f"every = {every!r}; expected a period such as 1w, 2w, 1mo or 1q")
    if end < start:
        raise InputError(f"the series ends ({end}) before it starts ({start})")
    n, unit = int(m.group(1)), m.group(2)
    dates, k = [], 0
    while True:
        if unit == "w":
            day = start + dt_.timedelta(weeks=n * k)
        else:
            day = shift_months(start, n * k * (3 if unit == "q" else 1))
        if day > end:
            return dates
        dates.append(day)
        k += 1


def shift_months(day: dt_.date, months: int) -> dt_.date:
    """``day`` moved by ``months`` (negative: back); a month end stays a month end (Jun 30 - 3 -> Mar 31)."""
    moved = (pd.Timestamp(day) + pd.DateOffset(months=months)).date()
    if (day + dt_.timedelta(days=1)).day == 1:
        moved = (pd.Timestamp(moved) + pd.offsets.MonthEnd(0)).date()
    return moved
