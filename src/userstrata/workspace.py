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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pandas as pd

from userstrata import _engine, ingest
from userstrata.activate.segments import BUILT_IN, Segment, columns_used, defined_segments, resolve, segment_members
from userstrata.config import Settings
from userstrata.errors import InputError, NotFoundError
from userstrata.features._time import Clock
from userstrata.ingest.identity import IdentityMap, attribute, attribute_tables, stitch
from userstrata.features import purchases
from userstrata.features.realisation import purchase_usage, realisation_index, unused_purchases
from userstrata.features.tags import TAGS, tags_wide, user_tags
from userstrata.segments import build_profile, rfm_grid_summary, snapshots, tier_shares
from userstrata.segments.density import active_days, density_grid
from userstrata.segments.profile import REALISATION_COLUMNS, with_depth
from userstrata.segments.migration import Forecast, Migration, annual_rate, forecast, migration
from userstrata.store import Store

if TYPE_CHECKING:
    from userstrata.models.backtest import BacktestResult


class Workspace:
    """One shop's data and everything computed from it."""

    def __init__(self, store: Store):
        self.store = store
        # the last identity map and the load history it was stitched from (see identities)
        self._stitched: tuple[Any, IdentityMap] | None = None

    @classmethod
    def open(
        cls, target: Any = None, *, settings: Settings | str | Path | None = None, create: bool = True
    ) -> "Workspace":
        """Open a workspace: a DuckDB file (default ``userstrata.duckdb``), ``":memory:"`` or a SparkSession.

        On Spark the tables are the session's views named ``orders``, ``events``... and
        loading validates lake files on Spark (docs/lake.md).

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
    def load(self, table: str, path: str | Path, **options: Any) -> Any:
        """Validate and load a file into a canonical table (see ``ingest.load_file``). On Spark:
        Parquet/Delta/CSV files already in the lake, validated on Spark by the same rules and
        appended under ``[engine.spark] tables`` (``ingest.lake.load_lake``, docs/lake.md)."""
        if self.store.engine == "spark":
            return self._load_lake(table, path, **options)
        self.store.require_duckdb("loading files")
        return ingest.load_file(self.store, table, path, **options)

    def _load_lake(self, table: str, path: str | Path, **options: Any) -> Any:
        from userstrata.ingest.lake import load_lake  # noqa: PLC0415

        conf = self.settings.engine.spark
        if conf.tables is None or conf.tables.startswith("db:"):
            raise InputError("loading on Spark writes under [engine.spark] tables, which is not a folder",
                             hint='set [engine.spark] tables = "/lake/warehouse" (docs/lake.md)',
                             zh="在 Spark 上导入会写入 [engine.spark] tables 指定的文件夹，但它没有设置为文件夹",
                             hint_zh='请设置 [engine.spark] tables = "/lake/warehouse"（见 docs/lake.md）')
        unknown = set(options) - {"mapping", "format"}
        if unknown:
            raise InputError(f"loading on Spark takes mapping and format, not {', '.join(sorted(unknown))}",
                             zh=f"在 Spark 上导入只接受 mapping 和 format，不接受 {', '.join(sorted(unknown))}")
        return load_lake(self.store.con._session, table, path, settings=self.settings,
                         mapping=options.get("mapping"), format=options.get("format", conf.format),
                         target=conf.tables)

    def load_frame(self, table: str, data: Any, *, source: str, keep_pii: bool = False) -> ingest.LoadReport:
        self.store.require_duckdb("loading data")
        return ingest.load_frame(self.store, table, data, source=source, keep_pii=keep_pii)

    def identities(self, *, max_links: int | None = None) -> IdentityMap:
        """Linked ids as one user each (统一用户ID): the map, how many merged, the conflicts over
        the cap (see ``ingest.identity.stitch``).

        On DuckDB the map is kept until the load history changes (a load or an unload: the only
        writers of identities and events), so that an analysis that reads several stitched tables
        stitches once."""
        max_links = max_links or self.settings.identity.max_links
        key = (max_links, self._load_history()) if self.store.engine == "duckdb" else None
        if key is not None and self._stitched is not None and self._stitched[0] == key:
            return self._stitched[1]
        found = stitch(self.table("identities"), events=self.table("events"), max_links=max_links)
        self._stitched = (key, found) if key is not None else None
        return found

    def _load_history(self) -> tuple:
        """What changes whenever a load or an unload changes any table: their number and times."""
        return tuple(self.store.duckdb.execute("SELECT count(*), max(loaded_at), max(undone_at) FROM loads").fetchone())

    def rejects(self, **filters: Any) -> pd.DataFrame:
        if not (self.store.engine == "spark" and "rejects" in self.store.con.list_tables()):  # lake loads keep them
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
        found = [self.store.execute(d) for d in days]
        found = [pd.Timestamp(d).date() for d in found if d is not None and not pd.isna(d)]
        if not found:
            raise NotFoundError(
                f"workspace {self.store.location} has no orders or events yet",
                hint="load some with `userstrata load orders FILE`",
            )
        return max(found)

    def tables(self) -> dict[str, ir.Table]:
        """users, orders, order_items and events, each user's rows under their one stitched id."""
        return self._tables()

    def _tables(self, known_at: dt_.datetime | None = None) -> dict[str, ir.Table]:
        """The canonical tables, each user's rows under their one stitched id when identities are linked."""
        names = ("users", "orders", "order_items", "events")
        if known_at is None:
            tables = {name: self.table(name) for name in names}
        else:
            self.store.require_duckdb("known_at (the load history)")
            tables = {name: ingest.table_known_at(self.store, name, known_at) for name in names}
        if self._has_identities():
            tables = attribute_tables(tables, self.identities(),
                                      anonymous_sources=self.settings.identity.anonymous_sources)
        return tables

    def _touches(self) -> ir.Table:
        """The touches, each under its user's one stitched id, as the other tables are."""
        touches = self.table("touches")
        if self._has_identities():
            touches = attribute(touches, self.identities(), anonymous_col=None)
        return touches

    def _has_identities(self) -> bool:
        return bool(self.store.execute(self.table("identities").count()))

    def _inputs(self) -> dict[str, Any]:
        return {**self._tables(), "settings": self.settings, "engine": self.store.engine,
                "execute": self.store.execute}

    def profile(self, as_of: dt_.date | None = None, *, lang: str = "en",
                known_at: dt_.datetime | None = None, depth: bool = False) -> ir.Table:
        """One row per user as of ``as_of`` (default: the last day in the data), lazily.

        ``lang`` ("en" or "zh") is the language of ``tier_reason``; ``known_at`` (naive UTC)
        computes it from the data as loaded at that moment (later loads' changes unseen);
        ``depth`` adds value realisation and the behaviour tags (``segments.profile.with_depth``).
        """
        tables = self._tables(known_at)
        as_of = as_of or self.latest_date()
        profile = build_profile(**tables, as_of=as_of, settings=self.settings, engine=self.store.engine, lang=lang)
        if not depth:
            return profile
        return with_depth(profile, orders=tables["orders"], order_items=tables["order_items"],
                          events=tables["events"], as_of=as_of, settings=self.settings,
                          engine=self.store.engine, lang=lang)

    def _clock(self) -> Clock:
        return Clock(self.settings.timezone, self.store.engine)

    def purchase_usage(self, as_of: dt_.date | None = None) -> ir.Table:
        """Each usage-bearing purchase line with its use after purchase (``features.realisation``)."""
        t = self._tables()
        return purchase_usage(t["orders"], t["order_items"], t["events"], as_of=as_of or self.latest_date(),
                              clock=self._clock(), rules=self.settings.realisation)

    def realisation(self, as_of: dt_.date | None = None) -> ir.Table:
        """Value realisation index 0-100 per user, its components and reason (价值实现指数)."""
        return realisation_index(self.purchase_usage(as_of))

    def unused_purchases(self, as_of: dt_.date | None = None) -> ir.Table:
        """Purchases not used within ``[realisation] unused_after_days``."""
        return unused_purchases(self.purchase_usage(as_of))

    def tags(self, as_of: dt_.date | None = None, *, wide: bool = False) -> ir.Table:
        """Behaviour tags (行为标签): one row per user and tag with its reason, or one column per tag."""
        day, t = as_of or self.latest_date(), self._tables()
        tags = user_tags(purchases(t["orders"], as_of=day, clock=self._clock()), t["order_items"], t["events"],
                         as_of=day, clock=self._clock(), rules=self.settings.tags)
        return tags_wide(tags) if wide else tags

    def density(self, as_of: dt_.date | None = None, *, predictions: Any = None, value_col: str = "clv") -> ir.Table:
        """Activity density x value expectation per user (行为密度×价值预期, ``segments.density``)."""
        day, t = as_of or self.latest_date(), self._tables()
        days = active_days(t["orders"], t["events"], as_of=day, clock=self._clock(), rules=self.settings.density)
        return density_grid(self.profile(day), days, rules=self.settings.density, predictions=predictions,
                            value_col=value_col)

    def save_profile(self, as_of: dt_.date | None = None) -> int:
        """Materialise the profile as a snapshot in the ``profiles`` table; returns its rows."""
        return self.snapshot(as_of).rows

    # -- change over time -----------------------------------------------------------------
    def snapshot(self, as_of: dt_.date | None = None, *, frame: pd.DataFrame | None = None) -> snapshots.SnapshotReport:
        """Store the profile of ``as_of`` (or ``frame``, a profile already computed for it) as its
        snapshot, replacing one of that date; the report says whether it did."""
        as_of = as_of or self.latest_date()
        return snapshots.save_snapshot(self.store, self.profile(as_of) if frame is None else frame, as_of, self.settings)

    def snapshot_series(self, start: dt_.date, end: dt_.date, every: str = "1mo", *,
                        progress: Any = None) -> list[snapshots.SnapshotReport]:
        """Back-fill snapshots from ``start`` to ``end`` every ``every`` (1w, 1mo, 1q ...) from the history;
        ``progress(report)`` hears each as it is saved."""
        reports = []
        for day in snapshots.snapshot_dates(start, end, every):
            reports.append(self.snapshot(day))
            if progress is not None:
                progress(reports[-1])
        return reports

    def snapshots(self) -> pd.DataFrame:
        """The snapshots kept: date, rows, settings fingerprint (and whether it is today's), when."""
        return snapshots.list_snapshots(self.store, self.settings)

    def snapshot_table(self, as_of: dt_.date) -> ir.Table:
        return snapshots.snapshot_table(self.store, as_of)

    def migration(self, start: dt_.date, end: dt_.date, *, by: str = "tier") -> Migration:
        """Who moved between ``by`` states from ``start`` to ``end``: the snapshots of those dates,
        or the profiles computed from the history where a snapshot is missing."""
        return migration(self._profile_at(start), self._profile_at(end), by=by)

    def _profile_at(self, day: dt_.date) -> pd.DataFrame:
        """The snapshot of ``day`` if kept (DuckDB), else the profile computed from the history."""
        if self.store.engine == "duckdb":
            try:
                return self.store.execute(self.snapshot_table(day))
            except NotFoundError:
                pass
        return self.store.execute(self.profile(day))

    def migration_forecast(self, start: dt_.date, end: dt_.date, every: str = "1q", *, periods: int = 4,
                           by: str = "tier", **options: Any) -> Forecast:
        """A Markov forecast of ``by`` shares ``periods`` steps of ``every`` past ``end``, from the
        profiles every ``every`` from ``start`` (see ``segments.migration.forecast``)."""
        days = snapshots.snapshot_dates(start, end, every)
        return forecast([self._profile_at(day) for day in days], periods=periods, by=by, **options)

    def migration_series(self, start: dt_.date, end: dt_.date, every: str = "1q", *, by: str = "tier") -> pd.DataFrame:
        """Migration period by period from ``start`` to ``end`` every ``every``: one row per period
        (``start, end, days, changed_share, upgrades, downgrades``); ``attrs["annual_rate"]`` is the
        yearly rate of change they imply (``segments.migration.annual_rate``)."""
        days = snapshots.snapshot_dates(start, end, every)
        frames = [self._profile_at(day) for day in days]  # each day once, not once per period it ends or starts
        rows = []
        for (a, b), (before, after) in zip(zip(days, days[1:]), zip(frames, frames[1:])):
            m = migration(before, after, by=by)
            rows.append(dict(start=a, end=b, days=(b - a).days, changed_share=m.changed_share,
                             upgrades=m.upgrades, downgrades=m.downgrades))
        frame = pd.DataFrame(rows, columns=["start", "end", "days", "changed_share", "upgrades", "downgrades"])
        if len(frame):
            frame.attrs["annual_rate"] = annual_rate(frame["changed_share"], frame["days"])
        return frame

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
                        settings=self.settings, engine=self.store.engine, execute=self.store.execute, **options)

    def purchase_covariates(self, as_of: dt_.date | None = None, **options: Any) -> Any:
        """Which static traits (channel, first-order value) drive purchasing and dropout, kept
        only when they improve held-out fit (see ``models.drivers.purchase_covariates``)."""
        from userstrata.models.drivers import purchase_covariates  # noqa: PLC0415

        inputs = {k: v for k, v in self._inputs().items() if k not in ("order_items", "events")}
        return purchase_covariates(**inputs, as_of=as_of or self.latest_date(), **options)

    def clusters(self, as_of: dt_.date | None = None, *, k: int | None = None, random_state: int = 0,
                 lang: str = "en") -> Any:
        """Behaviour clusters of the profile of ``as_of``, described in words (see
        ``segments.clusters.behaviour_clusters``; returns its ``BehaviourClusters``)."""
        from userstrata.segments.clusters import behaviour_clusters  # noqa: PLC0415 - scikit-learn off the CLI's start

        return behaviour_clusters(self.store.execute(self.profile(as_of)), k=k, random_state=random_state, lang=lang)

    # -- act ----------------------------------------------------------------------------
    def segment_definitions(self) -> dict[str, Segment]:
        """Every segment by name: the built-in ones, and those of ``[segments.NAME]`` (which win)."""
        return {**BUILT_IN, **defined_segments(self.settings.segments)}

    def segment(self, name: str, as_of: dt_.date | None = None, *, lang: str = "en") -> pd.DataFrame:
        """The members of segment ``name`` as of ``as_of``, with their profile (and the prediction
        columns when the condition uses them; see ``activate.segments.segment_members``)."""
        as_of = as_of or self.latest_date()
        segment = resolve(name, self.segment_definitions())
        depth = bool(columns_used(segment.where) & {*REALISATION_COLUMNS, *TAGS, "tag_count"})
        return self.store.execute(segment_members(
            segment, profile=self.profile(as_of, lang=lang, depth=depth),
            events=self.table("events"), orders=self.table("orders"), as_of=as_of,
            clock=Clock(self.settings.timezone, self.store.engine),
            predictions=lambda: self.predict(as_of, with_profile=True, lang=lang),
            memberships=lambda: self.renewals(as_of).members,
        ))

    def contacts(self, members: Sequence[str], fields: Sequence[str]) -> Any:
        """Phone numbers, e-mail addresses (or other identity sources) of ``members``, where kept
        in clear (``activate.contacts.contact_fields``)."""
        from userstrata.activate.contacts import contact_fields  # noqa: PLC0415

        execute = self.store.execute
        canonical: dict[str, str] = {}
        if self._has_identities():
            mapping = self.identities().mapping
            own = mapping[(mapping["source"] == "user_id") & mapping["user_id"].notna()]
            canonical = dict(zip(own["external_id"], own["user_id"]))
        users = self.table("users")
        return contact_fields(
            members, fields, canonical=canonical,
            identities=execute(self.table("identities").select("source", "external_id", "user_id")),
            users=execute(users.filter(users.attributes.notnull()).select("user_id", "attributes")),
        )

    # -- measure ------------------------------------------------------------------------
    def _measure_inputs(self) -> dict[str, Any]:
        return {"clock": self._clock(), "execute": self.store.execute}

    def purchase_patterns(self, **options: Any) -> Any:
        """Paid orders per shop-local weekday x hour, overall or by category (``measure.patterns``)."""
        from userstrata.measure.patterns import purchase_patterns  # noqa: PLC0415

        return purchase_patterns(self.table("orders"), self.table("order_items"), **self._measure_inputs(), **options)

    def bundles(self, **options: Any) -> Any:
        """Items bought together: pairs (and triples) with support, confidence, lift (``measure.bundles``)."""
        from userstrata.measure.bundles import bundles  # noqa: PLC0415

        return bundles(self.table("orders"), self.table("order_items"), **self._measure_inputs(), **options)

    def refunds(self, **options: Any) -> Any:
        """Refund rates by item, time to refund, refunders' behaviour before buying (``measure.refunds``)."""
        from userstrata.measure.refunds import refunds  # noqa: PLC0415

        return refunds(self.table("orders"), self.table("order_items"), self.table("events"),
                       **self._measure_inputs(), **options)

    def kpis(self, start: dt_.date, end: dt_.date | None = None, **options: Any) -> Any:
        """KPIs per day, week or month from ``start`` to ``end`` (default: the last day in the data);
        definitions in docs/metrics.md (``measure.kpis``)."""
        from userstrata.measure.kpis import kpis  # noqa: PLC0415

        return kpis(**self._inputs(), start=start, end=end or self.latest_date(), **options)

    def retention(self, start: dt_.date, end: dt_.date | None = None, **options: Any) -> Any:
        """Retention cohorts from ``start`` to ``end`` (``measure.retention``)."""
        from userstrata.measure.retention import retention  # noqa: PLC0415

        return retention(**self._inputs(), start=start, end=end or self.latest_date(), **options)

    def funnel(self, steps: list[str], start: dt_.date, end: dt_.date, **options: Any) -> Any:
        """Conversion through ``steps`` within a window, by step, week and group (``measure.funnels``)."""
        from userstrata.measure.funnels import funnel  # noqa: PLC0415

        return funnel(self.table("events"), steps, start=start, end=end, orders=self.table("orders"),
                      users=self.table("users"), **self._measure_inputs(), **options)

    def paths(self, anchor: str, start: dt_.date, end: dt_.date, **options: Any) -> Any:
        """The most common events after (or before) ``anchor``, and the paths of converters (``measure.paths``)."""
        from userstrata.measure.paths import paths  # noqa: PLC0415

        return paths(self.table("events"), anchor, start=start, end=end, orders=self.table("orders"),
                     **self._measure_inputs(), **options)

    def alerts(self, as_of: dt_.date | None = None, **options: Any) -> Any:
        """Evaluate the early-warning rules as of ``as_of`` and keep the alerts (``measure.alerts.evaluate_alerts``)."""
        from userstrata.measure.alerts import evaluate_alerts  # noqa: PLC0415

        return evaluate_alerts(self.store, as_of or self.latest_date(), self.settings, **options)

    def alert_list(self, **filters: Any) -> pd.DataFrame:
        """The alerts table, highest severity and tier first (``open_only=``, ``rule=``)."""
        from userstrata.measure.alerts import list_alerts  # noqa: PLC0415

        return list_alerts(self.store, **filters)

    def abtest(self, experiment: str, *, assignments: pd.DataFrame | None = None,
               start: dt_.datetime | None = None, source: str = "assignments", **options: Any) -> Any:
        """A/B results of ``experiment``: a touches campaign, or the ``assignments`` frame (``measure.abtest``)."""
        from userstrata.measure import abtest as ab  # noqa: PLC0415 - SciPy off the CLI's start

        if assignments is None:
            units = ab.campaign_assignments(self._touches(), experiment)
        else:
            units = ab.file_assignments(assignments, start=start, source=source)
            if self._has_identities():  # the file's ids, stitched as the orders' are
                units = ab.merge_assignments(attribute(units, self.identities(), anonymous_col=None))
        return ab.ab_test(units, self._tables()["orders"], experiment=experiment, execute=self.store.execute,
                          **options)

    def plan(self, start: dt_.date, days: int = 7, **options: Any) -> Any:
        """Who gets what, on which channel, when and why, under caps, quiet hours, cooldowns and
        unsubscribes (``activate.plan.make_plan``; returns its ``Plan``)."""
        from userstrata.activate.plan import make_plan  # noqa: PLC0415

        return make_plan(**self._inputs(), profile=self.profile(start - dt_.timedelta(days=1)),
                         touches=self._touches(), start=start, days=days, **options)

    def recall(self, campaign: str | None = None, **options: Any) -> Any:
        """Recall success rate of a campaign's dormant users, against its holdout (``measure.recall``)."""
        from userstrata.measure.recall import recall  # noqa: PLC0415

        t = self._tables()
        return recall(self._touches(), t["orders"], t["events"], campaign=campaign,
                      profile_at=self.profile, **self._measure_inputs(), **options)

    def price_sensitivity(self, start: dt_.date, end: dt_.date | None = None, *, by: str | None = "tier",
                          **options: Any) -> Any:
        """Conversion and revenue per exposed user by discount bucket and segment (``measure.price``)."""
        from userstrata.measure.price import price_sensitivity  # noqa: PLC0415

        t = self._tables()
        groups = None
        if by:
            p = self.profile(start - dt_.timedelta(days=1))
            groups = p.select("user_id", group=p[by].cast("string"))
        return price_sensitivity(t["orders"], t["order_items"], t["events"], start=start, end=end or self.latest_date(),
                                 by=by, groups=groups, **self._measure_inputs(), **options)

    def send(self, contacts: pd.DataFrame, url: str, **options: Any) -> Any:
        """POST the plan's contacts to a webhook, each once (``activate.deliver.send_contacts``)."""
        from userstrata.activate.deliver import send_contacts  # noqa: PLC0415

        return send_contacts(self.store, contacts, url=url, timezone=self.settings.timezone, **options)

    def deliveries(self) -> pd.DataFrame:
        """The delivery log (``activate.deliver.deliveries``)."""
        from userstrata.activate.deliver import deliveries  # noqa: PLC0415

        return deliveries(self.store)

    def recommendations(self, as_of: dt_.date | None = None, **options: Any) -> Any:
        """Each buyer's top-k items with where each comes from (``activate.recommend.recommend``)."""
        from userstrata.activate.recommend import recommend  # noqa: PLC0415

        return recommend(self.table("orders"), self.table("order_items"), as_of=as_of or self.latest_date(),
                         clock=self._clock(), execute=self.store.execute, **options)

    def tier_shares(self, profile: pd.DataFrame) -> pd.DataFrame:
        return tier_shares(profile, self.settings.tiers)

    @staticmethod
    def rfm_grid(profile: pd.DataFrame) -> pd.DataFrame:
        return rfm_grid_summary(profile)

    def export_tables(self, folder: str | Path) -> dict[str, Path]:
        """The canonical tables, as loaded and validated, as ``<folder>/<table>.parquet`` (timestamps
        naive UTC in microseconds, which Spark reads): the lake a Spark workspace opens
        (``[engine.spark] tables``, docs/engines.md)."""
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        from userstrata.schema import CANONICAL  # noqa: PLC0415

        self.store.require_duckdb("exporting the loaded tables")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, spec in CANONICAL.items():
            table = _engine.to_arrow(self.store.con, self.table(name).select(*spec.columns))
            micro = pa.schema([pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f
                               for f in table.schema])
            written[name] = folder / f"{name}.parquet"
            pq.write_table(table.cast(micro), written[name])
        return written

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
