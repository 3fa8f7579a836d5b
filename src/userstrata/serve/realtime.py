"""Real-time profiles: the users a write touches, updated at once with the last run's thresholds.

A batch run (``POST /v1/runs``, ``userstrata snapshot``) ranks every user against every other:
RFM scores are quantiles among buyers, the RFM cell compares with the buyers' mean (or median),
``value_score`` is a mean of percentiles, and tier rules test "in the top x%". A write of a few
events or orders must not redo that for the whole shop, so:

1. :func:`thresholds` keeps, from the run's profile frame, what those ranks are taken against:
   for each ranked feature the sorted values of the population (the exact quantile function),
   the buyers' totals for the RFM centre, the number of users and buyers, and each user's own
   values (so a user is never compared with their own old self).
2. :func:`touched_features` recomputes the per-user columns (recency, frequency, monetary, last
   active, counts, lifecycle...) of the touched users only, with the profile's own feature code
   run on tables filtered to those users before anything is grouped (``build_profile``'s
   population columns are replaced next, so its windows over the few rows never matter).
3. :func:`apply_thresholds` gives them RFM scores and cell, ``value_score``, tier and reason
   from the kept thresholds: a binary search per ranked feature, no other user read.

The result equals what a fresh batch run over the same data gives for those users whenever the
thresholds did not move, i.e. no other user's change crossed theirs. Day counts are compared as
dates (``as_of - days``), so the thresholds hold when ``as_of`` moves on to a newer day in the data.
"""

from __future__ import annotations

import datetime as dt_
import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from userstrata import i18n
from userstrata.config import Settings
from userstrata.features._time import Clock
from userstrata.segments.profile import build_profile
from userstrata.segments.rfm_grid import _CELLS
from userstrata.segments.tiers import (
    _FRACTIONS,
    _LOWER_IS_BETTER,
    _SCORE_PARTS,
    _feature_label,
    _has_phrase,
    _percent_text,
)

__all__ = ["POPULATION_COLUMNS", "Thresholds", "TouchedQuery", "apply_thresholds", "latest_day", "thresholds",
           "touched_features"]

# the profile columns that rank a user against the others (replaced from the thresholds)
POPULATION_COLUMNS = ("rfm_r", "rfm_f", "rfm_m", "rfm_cell", "value_score", "tier", "tier_reason")
# whole days counted back from as_of: compared as dates so that a later as_of moves nothing
_DAY_COUNTS = frozenset({"recency_days", "inactive_days", "tenure_days", "days_since_return"})
_RFM = ("r", "f", "m")


def _key(feature: str, values: pd.Series, as_of: dt_.date) -> np.ndarray:
    """``values`` of ``feature`` as ranking keys, larger = better, missing = the worst.

    The batch fills a missing value with the worst (1e9 days; 0 otherwise) before ranking; here a
    missing day count is -inf and anything else missing is 0, which orders users the same way.
    """
    x = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(copy=True)
    lower_better = feature in _LOWER_IS_BETTER
    if not lower_better:
        x = np.where(np.isnan(x), 0.0, x)
    if feature in _DAY_COUNTS:
        x = x - as_of.toordinal()  # recency 3 on 06-30 and 4 on 07-01 are the same last order day
    if feature == "monetary":
        x = np.round(x * 100)  # the batch ranks spend in whole cents
    if lower_better:
        x = np.where(np.isnan(x), -np.inf, -x)
    return x


def _rfm_keys(frame: pd.DataFrame, as_of: dt_.date) -> dict[str, np.ndarray]:
    """R, F, M as the grid compares them (recent, frequent, high spend = larger)."""
    return {"r": as_of.toordinal() - pd.to_numeric(frame["recency_days"]).to_numpy("float64"),
            "f": pd.to_numeric(frame["frequency"]).to_numpy("float64"),
            "m": np.round(pd.to_numeric(frame["monetary"]).to_numpy("float64") * 100)}


def _ranked_features(settings: Settings) -> tuple[str, ...]:
    top = {c.feature for t in settings.tiers.tiers for r in t.rules for c in r.when if c.top is not None}
    return tuple(sorted(set(_SCORE_PARTS) | top))


@dataclass(frozen=True)
class Thresholds:
    """What a run's profile ranks users against (see the module's text)."""

    as_of: dt_.date
    users: int
    buyers: int
    rfm: dict[str, np.ndarray]  # sorted buyers' R, F, M keys
    rfm_totals: dict[str, float]  # their sums (the mean split: x * n > sum)
    ranked: dict[str, np.ndarray]  # feature -> sorted keys of every user
    position: dict[str, int]  # user -> row in ``own``
    own: dict[str, np.ndarray]  # each user's buyer flag and keys, to leave themselves out

    def cut_points(self, bins: int) -> dict[str, list[float]]:
        """RFM score cut points: a buyer scores ``1 + #(cuts below their key)`` (keys as in ``rfm``)."""
        n = self.buyers
        return {k: [float(v[-(-n * j // bins) - 1]) for j in range(1, bins)] for k, v in self.rfm.items()} if n else {}


def thresholds(profile: pd.DataFrame, settings: Settings) -> Thresholds:
    """The thresholds of a run's profile frame (one row per user, as the batch computed it)."""
    as_of = pd.Timestamp(profile["as_of"].iloc[0]).date() if len(profile) else dt_.date.min
    buyer = pd.to_numeric(profile["orders"]).fillna(0).to_numpy() > 0
    rfm = _rfm_keys(profile, as_of)
    own = {"buyer": buyer, **{f"rfm_{k}": v for k, v in rfm.items()}}
    ranked = {}
    for feature in _ranked_features(settings):
        if feature in profile.columns:
            own[feature] = ranked[feature] = _key(feature, profile[feature], as_of)
    return Thresholds(
        as_of=as_of, users=len(profile), buyers=int(buyer.sum()),
        rfm={k: np.sort(v[buyer]) for k, v in rfm.items()},
        rfm_totals={k: float(v[buyer].sum()) for k, v in rfm.items()},
        ranked={f: np.sort(v) for f, v in ranked.items()},
        position={u: i for i, u in enumerate(profile["user_id"])}, own=own,
    )


def latest_day(tables: dict[str, ibis.Table], users: ibis.Table, *, settings: Settings, engine: str) -> ir.Scalar:
    """The last local day with an order or event of the ``users`` (null when they have none)."""
    clock = Clock(settings.timezone, engine)
    rows = [t.filter(t.user_id.isin(users.user_id)) for t in (tables["orders"], tables["events"])]
    days = ibis.union(*[t.select(day=clock.local_date(t.ts)) for t in rows], distinct=False)
    return days.day.max()


def touched_features(tables: dict[str, ibis.Table], users: ibis.Table, *, as_of: dt_.date, settings: Settings,
                     engine: str) -> ibis.Table:
    """The profile of the ``users`` (a table of ``user_id``) only, as of ``as_of``: each table
    filtered on those users first (order lines through their orders), then the batch's own
    feature code. Its population columns are meaningless (ranked among these users alone):
    :func:`apply_thresholds` replaces them."""
    chosen = {name: tables[name].filter(tables[name].user_id.isin(users.user_id))
              for name in ("users", "orders", "events")}
    items = tables["order_items"]
    chosen["order_items"] = items.filter(items.order_id.isin(chosen["orders"].order_id))
    return build_profile(**chosen, as_of=as_of, settings=settings, engine=engine, lang="en")


def _whole(x: float) -> int:
    """Rounded half away from zero, as ROUND does on the engines."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


_FIELD = re.compile(r"\{(\w+)\}")


def _fill(template: str, **values: str) -> str:
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def _phrase(key: str, lang: str, n: int, **values: str) -> str:
    if i18n.label(key, lang) != key:
        return _fill(i18n.label(key, lang), n=str(n), **values)
    form = "one" if n == 1 else "other"
    return _fill(i18n.label(f"{key}.{form}", lang), n=str(n), **values)


@functools.lru_cache(maxsize=256)
def _fraction(top: float) -> Fraction:
    return Fraction(repr(top))  # the decimal written in the config (0.55 = 11/20), as the batch reads it


class _Ranks:
    """The touched users' counts against the thresholds, vectorised: each user is left out of the
    kept population (their old values) and counted with their new ones."""

    def __init__(self, t: Thresholds, user_ids: np.ndarray):
        self.t = t
        pos = np.array([t.position.get(u, -1) for u in user_ids], dtype=np.int64)
        self.known = pos >= 0
        self.pos = np.where(self.known, pos, 0)
        self.users = t.users + (~self.known).astype(np.int64)

    def old(self, name: str) -> np.ndarray:
        return self.t.own[name][self.pos]

    def at_or_above(self, feature: str, keys: np.ndarray) -> np.ndarray:
        """Users (each one included) whose ``feature`` is at least as good as each user's."""
        kept = self.t.ranked[feature]
        others = len(kept) - kept.searchsorted(keys, side="left")
        return others - (self.known & (self.old(feature) >= keys)) + 1

    def rfm(self, keys: dict[str, np.ndarray], buyer: np.ndarray, bins: int, split: str):
        """Scores 1..bins (NaN for non-buyers) and high/low against the buyers' centre per R, F, M."""
        t = self.t
        was_buyer = self.known & self.old("buyer").astype(bool)
        n = t.buyers - was_buyer.astype(np.int64) + buyer.astype(np.int64)
        scores, high = {}, {}
        for k in _RFM:
            value, old = keys[k], self.old(f"rfm_{k}")
            below = t.rfm[k].searchsorted(value, side="left") - (was_buyer & (old < value))
            steps = sum((below * bins >= n * j).astype(np.int64) for j in range(1, bins))
            scores[k] = np.where(buyer, 1.0 + steps, np.nan)
            if split == "median":
                high[k] = buyer & (below * 2 >= n)
            else:
                total = t.rfm_totals[k] - np.where(was_buyer, old, 0.0) + np.where(buyer, value, 0.0)
                high[k] = buyer & (value * n > total)
        return scores, high


def _reason(cond, value, count: int, users: int, lang: str) -> str:
    """A matched condition in words, as ``segments.tiers`` writes it."""
    if cond.top is not None:
        top = _fraction(cond.top)
        pct = (count * 100 + users - 1) // users
        pct_text = str(pct) if pct * top.denominator <= top.numerator * 100 else _percent_text(top)
        return _fill(i18n.label("reason.top", lang), feature=_feature_label(cond.feature, lang), pct=pct_text)
    if cond.feature == "recency_days" and cond.max is not None:
        return _phrase("reason.recency_days.max", lang, _whole(cond.max))
    shown = 0.0 if pd.isna(value) else float(value)
    n = _whole(shown * 100) if cond.feature in _FRACTIONS else _whole(shown)
    if _has_phrase(f"reason.{cond.feature}"):
        return _phrase(f"reason.{cond.feature}", lang, n)
    key = "reason.percent" if cond.feature in _FRACTIONS else "reason.value"
    return _phrase(key, lang, n, feature=_feature_label(cond.feature, lang))


def _fallback_reason(orders: float, interactions: float, recency: float, lang: str) -> str:
    orders = 0 if pd.isna(orders) else int(orders)
    if orders == 0:
        said = _phrase("reason.interaction_depth", lang, _whole(0.0 if pd.isna(interactions) else float(interactions)))
        return _fill(i18n.label("reason.no_purchase", lang), interactions=said)
    return _fill(i18n.label("reason.below_higher_tiers", lang), orders=_phrase("reason.orders", lang, orders),
                 last=_phrase("reason.recency_days", lang, _whole(0.0 if pd.isna(recency) else float(recency))))


def apply_thresholds(fresh: pd.DataFrame, t: Thresholds, settings: Settings, *, lang: str = "en") -> pd.DataFrame:
    """``fresh`` (per-user columns of the touched users, as :func:`touched_features` computes them)
    with RFM scores and cell, ``value_score``, tier and reason taken against ``t``: binary searches
    in the kept sorted values, the same integer comparisons as the batch, no other user read."""
    out = fresh.copy()
    if out.empty:
        return out
    as_of = pd.Timestamp(out["as_of"].iloc[0]).date()
    ranks = _Ranks(t, out["user_id"].to_numpy())
    buyer = pd.to_numeric(out["orders"]).fillna(0).to_numpy() > 0
    scores, high = ranks.rfm(_rfm_keys(out, as_of), buyer, settings.rfm.bins, settings.rfm.split)
    for k in _RFM:
        out[f"rfm_{k}"] = scores[k]
    cells = {key: name for key, name in _CELLS.items()}
    out["rfm_cell"] = [cells[(bool(r), bool(f), bool(m))] for r, f, m in zip(high["r"], high["f"], high["m"])]
    k = len(_SCORE_PARTS)
    parts = sum(ranks.at_or_above(f, _key(f, out[f], as_of)) for f in _SCORE_PARTS)
    out["value_score"] = (ranks.users * k - parts).astype("float64") / (ranks.users * k).astype("float64")

    counts: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}

    def count(feature: str) -> np.ndarray:
        if feature not in counts:
            counts[feature] = ranks.at_or_above(feature, _key(feature, out[feature], as_of))
        return counts[feature]

    def value(feature: str) -> np.ndarray:
        if feature not in values:
            values[feature] = pd.to_numeric(out[feature], errors="coerce").to_numpy("float64", na_value=np.nan)
        return values[feature]

    n = len(out)
    tier = np.full(n, settings.tiers.tiers[-1].name, dtype=object)
    reason = np.full(n, None, dtype=object)
    open_ = np.ones(n, dtype=bool)
    for spec in settings.tiers.tiers:
        for rule in spec.rules:
            match = open_.copy()
            for cond in rule.when:
                x = value(cond.feature)
                if cond.top is not None:
                    top = _fraction(cond.top)
                    match &= (count(cond.feature) * top.denominator <= ranks.users * top.numerator) & ~np.isnan(x)
                else:
                    with np.errstate(invalid="ignore"):
                        match &= (x >= cond.min) if cond.min is not None else (x <= cond.max)
            said = list(dict.fromkeys(c.feature for c in rule.when))  # a repeated feature is said once
            first = {f: next(c for c in rule.when if c.feature == f) for f in said}
            for i in np.flatnonzero(match):
                texts = [_reason(first[f], value(f)[i], int(count(f)[i]) if first[f].top is not None else 0,
                                 int(ranks.users[i]), lang) for f in said]
                tier[i], reason[i] = spec.name, i18n.label("reason.separator", lang).join(texts)
            open_ &= ~match
    orders, depth, recency = value("orders"), value("interaction_depth"), value("recency_days")
    for i in np.flatnonzero(open_):
        reason[i] = _fallback_reason(orders[i], depth[i], recency[i], lang)
    out["tier"], out["tier_reason"] = tier, reason
    return out


class TouchedQuery:
    """:func:`touched_features` (and :func:`latest_day`) on a DuckDB workspace, compiled to SQL
    once per ``as_of`` and run with the touched users as a registered frame: a write costs the
    touched users' rows, not an Ibis compilation (about a second) nor a pass over everyone.

    ``backend`` is the workspace's Ibis DuckDB backend, ``tables()`` its canonical tables
    (identities stitched). The queries run on a cursor of their own (a second connection to the
    same database, reading committed data), so the next batch can load while they run; compiling
    uses the backend and needs the caller's workspace lock. One query at a time.
    """

    TOUCHED = "_userstrata_touched_users"

    def __init__(self, backend, tables, settings: Settings):
        self.backend, self.tables, self.settings = backend, tables, settings
        self._sql: dict[object, str] = {}
        # the backend only compiles: its stand-in of the touched users carries the column's type
        backend.con.register(self.TOUCHED, pa.table({"user_id": pa.array([], pa.string())}))
        self.cursor = backend.con.cursor()
        self.cursor.execute("SET TimeZone = 'UTC'")  # a session setting: the backend's own (_engine.connect)

    def prepare(self, as_of: dt_.date) -> None:
        """Compile (once) the queries for ``as_of``: the caller holds the workspace's lock."""
        self._sql = {k: v for k, v in self._sql.items() if k in ("latest_day", as_of)}  # one as_of at a time
        for key, build in (("latest_day", lambda t, u: latest_day(t, u, settings=self.settings, engine="duckdb")
                                                      .name("day").as_table()),
                           (as_of, lambda t, u: touched_features(t, u, as_of=as_of, settings=self.settings,
                                                                 engine="duckdb"))):
            if key not in self._sql:
                self._sql[key] = str(self.backend.compile(build(self.tables(), self.backend.table(self.TOUCHED))))

    def _run(self, key: object, users: list[str]):
        self.cursor.register(self.TOUCHED, pd.DataFrame({"user_id": pd.array(users, dtype=object)}))
        return self.cursor.execute(self._sql[key])

    def latest_day(self, users: list[str]) -> dt_.date | None:
        """The last local day of the users' data (``prepare`` first)."""
        day = self._run("latest_day", users).fetchone()[0]
        return None if day is None or pd.isna(day) else pd.Timestamp(day).date()

    def features(self, users: list[str], as_of: dt_.date) -> pd.DataFrame:
        """:func:`touched_features` of ``users`` as of ``as_of`` (``prepare(as_of)`` first)."""
        return self._run(as_of, users).fetchdf()
