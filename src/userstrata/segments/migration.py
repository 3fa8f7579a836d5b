"""Tier (or lifecycle, or RFM cell) migration between two profiles: who moved where, up or down.

Users present in only one of the two profiles are their own row and column: ``new`` (not yet
profiled before) and ``gone`` (no longer profiled after), so that every user of either date is
counted exactly once and the matrix adds up to the users of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from userstrata import i18n
from userstrata.errors import InputError
from userstrata.schema import LIFECYCLE_STAGES, RFM_CELLS, TIERS

__all__ = ["BY", "GONE", "NEW", "Forecast", "Migration", "annual_rate", "forecast", "forecast_chart", "migration",
           "migration_sankey"]

# not "new": that is also a lifecycle stage
NEW, GONE = "(new)", "(gone)"
# the states of each grouping, in order; tiers are ranked (explorer lowest), the others are not
BY: dict[str, tuple[str, ...]] = {"tier": TIERS, "lifecycle": LIFECYCLE_STAGES, "rfm_cell": RFM_CELLS}
_RANKED = {"tier"}


@dataclass(frozen=True)
class Migration:
    """From -> to between two profiles.

    ``counts``: rows are the states before plus ``new``, columns the states after plus ``gone``
    (users in both profiles fill the states x states block). ``shares``: each row divided by its
    total (rows without users are 0). ``changed_share``: of the users in both profiles, the share
    whose state differs. ``upgrades``/``downgrades``: users who moved up / down (tiers only; 0
    otherwise). ``moves``: one row per user in both profiles whose state changed, with both states,
    the direction and, for tiers, both tier reasons.
    """

    by: str
    counts: pd.DataFrame
    shares: pd.DataFrame
    changed_share: float
    upgrades: int
    downgrades: int
    moves: pd.DataFrame


def _states(profile: pd.DataFrame, by: str, name: str) -> pd.Series:
    missing = [c for c in ("user_id", by) if c not in profile.columns]
    if missing:
        raise InputError(f"the {name} profile has no column(s) {missing}; expected user_id and {by}")
    states = profile.drop_duplicates("user_id").set_index("user_id")[by].astype(object)
    unknown = sorted(set(states.dropna()) - set(BY[by]))
    if unknown:
        raise InputError(f"the {name} profile has {by} values {unknown[:5]}; expected some of {', '.join(BY[by])}")
    return states


def migration(before: pd.DataFrame, after: pd.DataFrame, *, by: str = "tier") -> Migration:
    """The migration matrix between two executed profiles (``user_id`` and the ``by`` column).

    A user with no state on a date (e.g. no RFM cell before a first purchase) counts as absent
    then: ``new`` if she has one after, ``gone`` if she had one before.
    """
    if by not in BY:
        raise InputError(f"by = {by!r}; expected one of {', '.join(BY)}")
    states = BY[by]
    old = _states(before, by, "earlier").dropna()
    new = _states(after, by, "later").dropna()
    both = old.index.intersection(new.index)
    pairs = pd.DataFrame({"from": old.reindex(both).to_numpy(), "to": new.reindex(both).to_numpy()}, index=both)
    rows = pd.Index([*states, NEW], name="from")
    cols = pd.Index([*states, GONE], name="to")
    counts = pd.DataFrame(0, index=rows, columns=cols, dtype=np.int64)
    block = pd.crosstab(pairs["from"], pairs["to"]).reindex(index=list(states), columns=list(states), fill_value=0)
    counts.loc[list(states), list(states)] = block.to_numpy()
    arrived = new[~new.index.isin(old.index)].value_counts()
    left = old[~old.index.isin(new.index)].value_counts()
    counts.loc[NEW, list(states)] = arrived.reindex(list(states), fill_value=0).to_numpy()
    counts.loc[list(states), GONE] = left.reindex(list(states), fill_value=0).to_numpy()
    totals = counts.sum(axis=1)
    shares = counts.div(totals.where(totals > 0, 1), axis=0)
    moved = pairs[pairs["from"] != pairs["to"]].copy()
    upgrades = downgrades = 0
    if by in _RANKED:
        rank = {s: i for i, s in enumerate(states)}
        step = moved["to"].map(rank) - moved["from"].map(rank)
        moved["direction"] = np.where(step > 0, "up", "down")
        upgrades, downgrades = int((step > 0).sum()), int((step < 0).sum())
        for frame, suffix in ((before, "from"), (after, "to")):
            if "tier_reason" in frame.columns:
                reasons = frame.drop_duplicates("user_id").set_index("user_id")["tier_reason"]
                moved[f"reason_{suffix}"] = reasons.reindex(moved.index).to_numpy()
    else:
        moved["direction"] = "changed"
    moved.index.name = "user_id"
    return Migration(
        by=by,
        counts=counts,
        shares=shares,
        changed_share=float(len(moved) / len(pairs)) if len(pairs) else float("nan"),
        upgrades=upgrades,
        downgrades=downgrades,
        moves=moved.reset_index(),
    )


def annual_rate(changed_shares, days) -> float:
    """The share of users who change state in a year, from consecutive periods.

    Each period's ``changed_shares[i]`` (of the users present at both ends) over ``days[i]`` days:
    ``1 - prod(1 - share) ** (365.25 / sum(days))``, the yearly rate with the same chance of staying
    put as the periods show, comparable across series of weekly, monthly or quarterly snapshots.
    """
    shares, days = np.asarray(changed_shares, dtype=np.float64), np.asarray(days, dtype=np.float64)
    if len(shares) == 0 or len(shares) != len(days) or not (days > 0).all():
        raise InputError("annual_rate needs one changed share per period and each period's days (> 0)")
    stay = np.prod(1.0 - shares)
    return float(1.0 - stay ** (365.25 / days.sum()))


@dataclass(frozen=True)
class Forecast:
    """A Markov forecast of state shares from a series of equally spaced profiles.

    ``matrix``: the transition probabilities per period (rows: from, columns: to), pooled over
    the consecutive pairs of profiles, among users present at both ends of a period (arrivals and
    departures are left out: the forecast is of the users there now). ``shares``: one row per
    period ahead (0 = the last profile), the projected share of each state; ``low``/``high`` its
    interval from bootstrapping users (``level``). ``stability``: the largest total-variation
    distance between a row of one period's own matrix and the pooled row (0 = the same every
    period). ``backtest``: the forecast one period ahead from all but the last period against the
    shares actually seen in the last one (``mean_abs_error``), when there are at least two periods.

    The open population, with entry and exit made explicit: ``flows`` is the pooled matrix over
    the states plus ``gone`` (rows: users with a state at the start of a period, so a row's ``gone``
    is the chance of leaving in a period); ``entries`` the mean number of users who appear in each
    state per period (``new``: a first purchase, a registration); ``counts`` the projected number of
    users per state, ``n_k+1 = n_k @ flows[states] + entries``. ``absorbing``: states that nobody
    seen in them ever left. ``reentry``: for the lifecycle, the chance per period that a dormant or
    churned user comes back to an active stage.
    """

    by: str
    matrix: pd.DataFrame
    shares: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    stability: float
    backtest: dict
    flows: pd.DataFrame | None = None
    entries: pd.Series | None = None
    counts: pd.DataFrame | None = None
    absorbing: tuple[str, ...] = ()
    reentry: dict | None = None


# lifecycle stages a user leaves the active life by; coming back from them is re-entry
_EXIT_STAGES = ("dormant", "churned")


def _pairs(profiles: list[pd.DataFrame], by: str) -> list[pd.DataFrame]:
    out = []
    for before, after in zip(profiles, profiles[1:]):
        old, new = _states(before, by, "earlier").dropna(), _states(after, by, "later").dropna()
        both = old.index.intersection(new.index)
        out.append(pd.DataFrame({"from": old.reindex(both).to_numpy(), "to": new.reindex(both).to_numpy()}))
    return out


def _matrix(pairs: pd.DataFrame, states: tuple[str, ...]) -> np.ndarray:
    """Row-normalised transition counts; a state nobody was in stays put (an identity row)."""
    index = {s: i for i, s in enumerate(states)}
    counts = np.zeros((len(states), len(states)))
    np.add.at(counts, (pairs["from"].map(index).to_numpy(), pairs["to"].map(index).to_numpy()), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), np.eye(len(states)))


def _shares(profile: pd.DataFrame, by: str, states: tuple[str, ...]) -> np.ndarray:
    counts = _states(profile, by, "last").dropna().value_counts().reindex(list(states), fill_value=0)
    return counts.to_numpy(np.float64) / max(counts.sum(), 1)


def forecast(profiles: list[pd.DataFrame], *, periods: int = 4, by: str = "tier", level: float = 0.9,
             n_boot: int = 200, random_state=0) -> Forecast:
    """Project the shares of ``by`` states ``periods`` steps past the last of ``profiles``
    (equally spaced, oldest first): shares_k = shares_0 @ P^k with P pooled over the periods."""
    if by not in BY:
        raise InputError(f"by = {by!r}; expected one of {', '.join(BY)}")
    if len(profiles) < 2:
        raise InputError(f"{len(profiles)} profile(s); a forecast needs at least two, one period apart")
    if not (isinstance(periods, (int, np.integer)) and periods >= 1):
        raise InputError(f"periods = {periods!r}; expected a whole number >= 1")
    states = BY[by]
    pairs = _pairs(profiles, by)
    pooled = pd.concat(pairs, ignore_index=True)
    P = _matrix(pooled, states)
    start = _shares(profiles[-1], by, states)

    def project(matrix, shares0):
        rows = [shares0]
        for _ in range(periods):
            rows.append(rows[-1] @ matrix)
        return np.array(rows)

    point = project(P, start)
    rng = np.random.default_rng(random_state)
    boots = np.empty((n_boot, *point.shape))
    for b in range(n_boot):  # users resampled within each period, so the matrix's own noise shows
        sample = pd.concat([p.iloc[rng.integers(0, len(p), len(p))] for p in pairs if len(p)], ignore_index=True)
        boots[b] = project(_matrix(sample, states), start)
    q = [(1 - level) / 2, (1 + level) / 2]
    low, high = np.quantile(boots, q, axis=0)
    stability = 0.0
    for p in pairs:
        own = _matrix(p, states)
        seen = np.isin(np.arange(len(states)), p["from"].map({s: i for i, s in enumerate(states)}).to_numpy())
        if seen.any():
            stability = max(stability, float(0.5 * np.abs(own[seen] - P[seen]).sum(axis=1).max()))
    backtest = {}
    if len(pairs) >= 2:
        earlier = _matrix(pd.concat(pairs[:-1], ignore_index=True), states)
        predicted = _shares(profiles[-2], by, states) @ earlier
        actual = _shares(profiles[-1], by, states)
        backtest = {"mean_abs_error": float(np.abs(predicted - actual).mean()),
                    "max_abs_error": float(np.abs(predicted - actual).max())}
    index = pd.RangeIndex(periods + 1, name="periods_ahead")
    frame = lambda a: pd.DataFrame(a, index=index, columns=list(states))  # noqa: E731
    flows, entries, counts, absorbing, reentry = _open_population(profiles, by, states, periods)
    return Forecast(by, pd.DataFrame(P, index=pd.Index(states, name="from"), columns=pd.Index(states, name="to")),
                    frame(point), frame(low), frame(high), stability, backtest,
                    flows=flows, entries=entries, counts=frame(counts), absorbing=absorbing, reentry=reentry)


def _open_population(profiles: list[pd.DataFrame], by: str, states: tuple[str, ...], periods: int):
    """Flows with ``gone``, mean entries per period, projected counts, absorbing states, re-entry."""
    steps = [migration(a, b, by=by).counts for a, b in zip(profiles, profiles[1:])]
    pooled = sum(c.loc[list(states)] for c in steps).astype(np.float64)  # rows: states; columns: states + gone
    totals = pooled.sum(axis=1)
    flows = pooled.div(totals.where(totals > 0, 1.0), axis=0)
    for s in states:  # a state nobody was in keeps its (no) users: an identity row, as in the closed matrix
        if totals[s] == 0:
            flows.loc[s, s] = 1.0
    flows.index.name, flows.columns.name = "from", "to"
    entries = pd.Series([float(np.mean([c.loc[NEW, s] for c in steps])) for s in states], index=list(states),
                        name="entries")
    n = _states(profiles[-1], by, "last").dropna().value_counts().reindex(list(states), fill_value=0)
    stay = flows[list(states)].to_numpy()
    rows = [n.to_numpy(np.float64)]
    for _ in range(periods):
        rows.append(rows[-1] @ stay + entries.to_numpy())
    absorbing = tuple(s for s in states if totals[s] > 0 and flows.loc[s, s] == 1.0)
    reentry = None
    if by == "lifecycle":
        active = [s for s in states if s not in _EXIT_STAGES]
        reentry = {s: float(flows.loc[s, active].sum()) for s in _EXIT_STAGES if totals[s] > 0}
    return flows, entries, np.array(rows), absorbing, reentry


def _state_label(state: str, lang: str) -> str:
    key = f"migration.{state.strip('()')}" if state.startswith("(") else state
    return i18n.label(key, lang)


def migration_sankey(result: Migration, *, start: Any, end: Any, lang: str = "en") -> Any:
    """The migration as a Sankey chart: states on ``start`` (and the new users) on the left,
    states on ``end`` (and the users gone) on the right, bands as wide as the users who moved."""
    import plotly.graph_objects as go  # noqa: PLC0415 - only charts need it

    rows, cols = list(result.counts.index), list(result.counts.columns)
    labels = [_state_label(s, lang) for s in rows] + [_state_label(s, lang) for s in cols]
    source, target, value = [], [], []
    for i, state in enumerate(rows):
        for j, to in enumerate(cols):
            n = int(result.counts.iat[i, j])
            if n:
                source.append(i)
                target.append(len(rows) + j)
                value.append(n)
    title = i18n.label("migration.sankey_title", lang).format(start=start, end=end, by=i18n.label(f"by.{result.by}", lang))
    return go.Figure(
        go.Sankey(node=dict(label=labels, pad=12), link=dict(source=source, target=target, value=value)),
        layout=dict(title=title),
    )


_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def forecast_chart(result: Forecast, *, every: str, lang: str = "en") -> Any:
    """Projected share of each state per period ahead, with its bootstrap interval as dotted lines."""
    import plotly.graph_objects as go  # noqa: PLC0415

    periods = [str(p) for p in result.shares.index]
    traces = []
    for state, color in zip(result.shares.columns, _COLORS * 4):
        name = _state_label(state, lang)
        traces.append(go.Scatter(x=periods, y=result.shares[state], mode="lines+markers", name=name,
                                 line=dict(color=color)))
        for bound in (result.low, result.high):
            traces.append(go.Scatter(x=periods, y=bound[state], mode="lines", showlegend=False, name=name,
                                     line=dict(dash="dot", width=1, color=color)))
    title = i18n.label("migration.forecast_chart", lang).format(by=i18n.label(f"by.{result.by}", lang))
    return go.Figure(traces, layout=dict(
        title=title, xaxis=dict(title=i18n.label("migration.periods_ahead", lang).format(every=every)),
        yaxis=dict(title=i18n.label("migration.share", lang), tickformat=".0%")))
