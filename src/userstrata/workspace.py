"""The facade users hold: the store plus one-line methods over the layers.

```python
ws = Workspace.open("shop.duckdb")
ws.load("orders", "orders.csv", mapping={"order_id": "单号"})
profile = ws.profile(as_of=date(2024, 6, 30))   # an Ibis expression; nothing has run yet
vip = profile.filter(profile.tier == "co_builder").to_pandas()
```
"""

from __future__ import annotations

import datetime as dt_
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pandas as pd

from userstrata import ingest
from userstrata.config import Settings
from userstrata.errors import NotFoundError
from userstrata.features._time import Clock
from userstrata.segments import build_profile, rfm_grid_summary, tier_shares
from userstrata.store import Store

if TYPE_CHECKING:
    from userstrata.models.backtest import BacktestResult


class Workspace:
    """One shop's data and everything computed from it."""

    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def open(
        cls, target: Any = None, *, settings: Settings | str | Path | None = None, create: bool = True
    ) -> "Workspace":
        """Open a workspace: a DuckDB file (default ``userstrata.duckdb``), ``":memory:"`` or a SparkSession.

        On Spark the tables are the session's views named ``orders``, ``events``... and
        loading is refused (docs/engines.md).

        ``settings`` is a ``Settings`` or the path of a ``userstrata.toml``; by default
        ``./userstrata.toml`` is read when present.
        """
        if not isinstance(settings, Settings):
            settings = Settings.load(settings)
        return cls(Store.open(target, settings=settings, create=create))

    @property
    def settings(self) -> Settings:
        return self.store.settings

    def table(self, name: str) -> ir.Table:
        return self.store.table(name)

    # -- loading ------------------------------------------------------------------------
    def load(self, table: str, path: str | Path, **options: Any) -> ingest.LoadReport:
        """Validate and load a file into a canonical table (see ``ingest.load_file``)."""
        self.store.require_duckdb("loading files")
        return ingest.load_file(self.store, table, path, **options)

    def load_frame(self, table: str, data: Any, *, source: str) -> ingest.LoadReport:
        self.store.require_duckdb("loading data")
        return ingest.load_frame(self.store, table, data, source=source)

    def rejects(self, **filters: Any) -> pd.DataFrame:
        self.store.require_duckdb("listing rejected rows (kept by loads)")
        return ingest.list_rejects(self.store, **filters)

    def loads(self) -> pd.DataFrame:
        """Every load with its counts, oldest first (undone ones have ``undone_at``)."""
        self.store.require_duckdb("listing loads")
        return ingest.list_loads(self.store)

    def unload(self, load_id: str) -> ingest.UnloadReport:
        """Undo one load exactly (refused while a later load has changed its rows)."""
        self.store.require_duckdb("undoing a load")
        return ingest.unload(self.store, load_id)

    # -- profile ------------------------------------------------------------------------
    def latest_date(self) -> dt_.date:
        """The last local day with an order or event: the default ``as_of``."""
        clock = Clock(self.settings.timezone, self.store.engine)
        days = [clock.local_date(self.table(t).ts).max() for t in ("orders", "events")]
        found = [self.store.con.execute(d) for d in days]
        found = [pd.Timestamp(d).date() for d in found if d is not None and not pd.isna(d)]
        if not found:
            raise NotFoundError(
                f"workspace {self.store.location} has no orders or events yet",
                hint="load some with `userstrata load orders FILE`",
            )
        return max(found)

    def _tables(self, known_at: dt_.datetime | None = None) -> dict[str, ir.Table]:
        names = ("users", "orders", "order_items", "events")
        if known_at is None:
            return {name: self.table(name) for name in names}
        self.store.require_duckdb("known_at (the load history)")
        return {name: ingest.table_known_at(self.store, name, known_at) for name in names}

    def _inputs(self) -> dict[str, Any]:
        return {**self._tables(), "settings": self.settings, "engine": self.store.engine,
                "execute": self.store.con.execute}

    def profile(self, as_of: dt_.date | None = None, *, lang: str = "en",
                known_at: dt_.datetime | None = None) -> ir.Table:
        """One row per user as of ``as_of`` (default: the last day in the data), lazily.

        ``lang`` ("en" or "zh") is the language of ``tier_reason``; ``known_at`` (naive UTC)
        computes it from the data as loaded at that moment (later loads' changes unseen).
        """
        return build_profile(
            **self._tables(known_at),
            as_of=as_of or self.latest_date(),
            settings=self.settings,
            engine=self.store.engine,
            lang=lang,
        )

    def save_profile(self, as_of: dt_.date | None = None) -> int:
        """Materialise the profile as a snapshot in the ``profiles`` table; returns its rows."""
        self.store.require_duckdb("saving profile snapshots")
        as_of = as_of or self.latest_date()
        return self.store.save_profiles(self.profile(as_of), as_of)

    def predict(self, as_of: dt_.date | None = None, *, horizon_days: int = 90, **options: Any) -> pd.DataFrame:
        """P(alive), expected purchases, CLV with interval, churn risk with reasons, next purchase
        per user over ``horizon_days`` after ``as_of`` (see ``models.predict.predict``)."""
        from userstrata.models.predict import predict  # noqa: PLC0415 - keeps scikit-learn off the CLI's start

        return predict(**self._inputs(), as_of=as_of or self.latest_date(), horizon_days=horizon_days, **options)

    def backtest(self, cutoff: dt_.date, *, horizon_days: int, **options: Any) -> BacktestResult:
        """Fit on history up to ``cutoff``, predict the next ``horizon_days`` and score against
        what happened (see ``models.backtest.backtest``)."""
        from userstrata.models.backtest import backtest  # noqa: PLC0415

        return backtest(**self._inputs(), cutoff=cutoff, horizon_days=horizon_days, **options)

    def renewals(self, as_of: dt_.date | None = None, **options: Any) -> Any:
        """Membership renewals: sBG per plan, P(renew) and residual value per member, a backtest
        (see ``models.renewal_data.renewals``; returns its ``RenewalsResult``)."""
        from userstrata.models.renewal_data import renewals  # noqa: PLC0415

        return renewals(self.table("orders"), self.table("order_items"), as_of=as_of or self.latest_date(),
                        settings=self.settings, engine=self.store.engine, execute=self.store.con.execute, **options)

    def purchase_covariates(self, as_of: dt_.date | None = None, **options: Any) -> Any:
        """Which static traits (channel, first-order value) drive purchasing and dropout, kept
        only when they improve held-out fit (see ``models.drivers.purchase_covariates``)."""
        from userstrata.models.drivers import purchase_covariates  # noqa: PLC0415

        inputs = {k: v for k, v in self._inputs().items() if k not in ("order_items", "events")}
        return purchase_covariates(**inputs, as_of=as_of or self.latest_date(), **options)

    def tier_shares(self, profile: pd.DataFrame) -> pd.DataFrame:
        return tier_shares(profile, self.settings.tiers)

    @staticmethod
    def rfm_grid(profile: pd.DataFrame) -> pd.DataFrame:
        return rfm_grid_summary(profile)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
