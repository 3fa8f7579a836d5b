"""The shop's clock: local calendar days of naive-UTC timestamps."""

from __future__ import annotations

import datetime as dt_
from dataclasses import dataclass

import ibis.expr.types as ir

from userstrata import _engine


@dataclass(frozen=True)
class Clock:
    """Where day boundaries fall: the shop's time zone on a given engine."""

    zone: str = "Asia/Shanghai"
    engine: str = "duckdb"

    def local_date(self, ts: ir.TimestampValue) -> ir.DateValue:
        return _engine.local_time(ts, self.zone, self.engine).date()

    def on_or_before(self, ts: ir.TimestampValue, day: dt_.date) -> ir.BooleanValue:
        """``ts`` falls on a local day up to ``day`` (compared on the stored timestamp where the
        zone allows: engines then skip whole blocks of rows instead of converting each)."""
        return _engine.on_or_before(ts, day, self.zone, self.engine)

    def on_or_after(self, ts: ir.TimestampValue, day: dt_.date) -> ir.BooleanValue:
        """``ts`` falls on a local day from ``day`` on."""
        return _engine.on_or_after(ts, day, self.zone, self.engine)

    def days_before(self, day: ir.DateValue, as_of: dt_.date) -> ir.IntegerValue:
        """Whole days from ``day`` to ``as_of`` (0 = the same local day)."""
        return _engine.days_between(day, as_of)
