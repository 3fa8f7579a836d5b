"""Membership renewals from a shop's orders: terms, spells, cohorts, sBG fits per plan, a backtest.

A membership order (a SKU of ``settings.renewals.plans``) buys ``quantity`` terms of the
plan's length. Per user and plan, orders are chained into terms:

- the first order starts a term at the order time;
- an order of the same plan no later than ``grace_days`` after the current term's end renews
  it: the new term starts when the current one ends (paid early: the days add up) or at the
  order (paid in the grace window);
- a later order starts a new *spell* (a new membership: the member lapsed and came back).

A spell with ``n`` renewals whose last term ended more than ``grace_days`` before the as-of
moment lapsed at the end of period ``n + 1``; any other spell is still running (censored: it
only tells that the member survived ``n`` renewals). Per plan, spells are counted by the
month their first term started (the cohorts) and the shifted-beta-geometric model
(:class:`~userstrata.models.renewals.ShiftedBetaGeo`) is fitted on all cohorts together.

Time is measured in days (UTC instants; a day is 86,400 s); the as-of moment is the end of
the local day ``as_of`` in the shop's time zone.
"""

from __future__ import annotations

import datetime as dt_
import fnmatch
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata import i18n
from userstrata.config import RenewalSettings, Settings
from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.models.renewals import ShiftedBetaGeo

__all__ = [
    "MEMBER_COLUMNS",
    "RenewalsResult",
    "build_terms",
    "cohort_counts",
    "membership_lines",
    "plan_terms",
    "plot_renewal_curves",
    "renewals",
    "spells_at",
]

Execute = Callable[[ir.Expr], pd.DataFrame]

_US_PER_DAY = 86_400_000_000
DAYS_PER_MONTH = 365.25 / 12  # as models/clv.py
# A plan with fewer spells than this, or without a single renewal and a single lapse, gets no
# fit: two parameters on fewer members are noise (and with no lapse alpha runs to 0).
MIN_SPELLS = 20
# The classifier of the backtest needs this many terms with a known outcome, of both kinds.
MIN_TRAINING_TERMS = 30
# The chart leaves out observed shares resting on fewer members at risk than this (noise).
MIN_AT_RISK = 5

MEMBER_COLUMNS = (
    "user_id", "plan", "term_days", "price", "cohort", "renewals", "status", "term_start", "term_end",
    "days_to_expiry", "p_renew_next", "derl", "residual_value",
)  # fmt: skip

# --------------------------------------------------------------------------- plans and orders


def plan_terms(skus, plans: Mapping[str, int]) -> dict[str, int]:
    """Term length in days of each SKU that is a membership plan (SKUs that are not are left out).

    An exact key wins; otherwise the matching glob pattern (``*``, ``?``, ``[...]``) with the
    most literal characters (ties: the first in ``plans``), so ``*半年卡*`` beats ``*年卡*``.
    """
    exact = {k: v for k, v in plans.items() if not any(ch in k for ch in "*?[")}
    patterns = sorted(
        ((k, v) for k, v in plans.items() if k not in exact),
        key=lambda kv: -len(kv[0].replace("*", "").replace("?", "")),
    )
    out: dict[str, int] = {}
    for sku in skus:
        if sku in exact:
            out[sku] = int(exact[sku])
            continue
        for pattern, days in patterns:
            if fnmatch.fnmatchcase(sku, pattern):
                out[sku] = int(days)
                break
    return out


def membership_lines(
    orders: ir.Table,
    order_items: ir.Table,
    *,
    as_of: dt_.date,
    settings: Settings,
    engine: str,
    execute: Execute,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Membership purchases and every purchase of the members, on or before ``as_of``.

    Returns
    -------
    tuple
        ``(lines, buys)``: ``lines`` has one row per order and plan (``user_id``, ``order_id``,
        ``ts``, ``plan`` = the SKU, ``quantity``, ``price`` per term, ``term_days``); orders
        refunded in full (as known on ``as_of``) are left out, the membership was taken back.
        ``buys`` has ``user_id``, ``ts`` of every purchase of those users (features of the
        backtest's classifier).
    """
    clock = Clock(settings.timezone, engine)
    skus = execute(order_items.select("sku").distinct())["sku"].dropna().astype(str)
    terms = plan_terms(skus, settings.renewals.plans)
    empty_lines = pd.DataFrame(
        {"user_id": pd.Series(dtype=str), "order_id": pd.Series(dtype=str), "ts": pd.Series(dtype="datetime64[us]"),
         "plan": pd.Series(dtype=str), "quantity": pd.Series(dtype="int64"), "price": pd.Series(dtype="float64"),
         "term_days": pd.Series(dtype="int64")}
    )  # fmt: skip
    empty_buys = empty_lines[["user_id", "ts"]]
    if not terms:
        return empty_lines, empty_buys
    plan_table = ibis.memtable(
        pd.DataFrame({"plan": list(terms), "term_days": np.array(list(terms.values()), dtype=np.int64)})
    )
    bought = purchases(orders, as_of=as_of, clock=clock)
    kept = bought.filter(~((bought.amount_cents > 0) & (bought.net_cents <= 0)))
    items = order_items.select(
        "order_id", plan=order_items.sku, quantity=order_items.quantity.fill_null(1), price=order_items.price
    )
    items = items.inner_join(plan_table, "plan")
    joined = kept.select("order_id", "user_id", "ts").inner_join(items, "order_id")
    per_order = joined.group_by(["order_id", "user_id", "ts", "plan"]).agg(
        quantity=joined.quantity.sum(), price=joined.price.max(), term_days=joined.term_days.max()
    )
    lines = execute(per_order)
    if len(lines) == 0:
        return empty_lines, empty_buys
    members = per_order.select("user_id").distinct()
    buys = execute(bought.semi_join(members, "user_id").select("user_id", "ts"))
    lines["user_id"] = lines["user_id"].astype(str)
    buys["user_id"] = buys["user_id"].astype(str)
    return lines, buys


def _days(ts: pd.Series) -> np.ndarray:
    """Naive-UTC timestamps as float days since 1970-01-01."""
    return pd.to_datetime(ts).to_numpy(dtype="datetime64[us]").astype(np.int64) / _US_PER_DAY


def _timestamps(days: np.ndarray) -> pd.Series:
    return pd.Series(np.round(np.asarray(days) * _US_PER_DAY).astype("int64").astype("datetime64[us]"))


def _moment(day: dt_.date, zone: str) -> float:
    """The end of the local day ``day`` (local midnight after it) as float UTC days."""
    end = pd.Timestamp(day + dt_.timedelta(days=1)).tz_localize(zone).tz_convert("UTC").tz_localize(None)
    return float(_days(pd.Series([end]))[0])


def build_terms(lines: pd.DataFrame, *, grace_days: float) -> pd.DataFrame:
    """Chain each user's orders of each plan into terms and spells (see the module docstring).

    ``lines`` has ``user_id``, ``plan``, ``order_id``, ``ts`` (naive UTC), ``quantity``,
    ``term_days`` and ``price``. Returns one row per order: ``order_day``, ``start_day``,
    ``end_day`` (float UTC days), ``length_days`` (term_days x quantity), ``spell`` (0, 1, ...
    per user and plan) and ``term_index`` (0 for a spell's first term, then 1, 2, ...: the
    renewals before it). A term depends on earlier orders only, so the terms of the orders
    before any moment are the same whatever came later.
    """
    frame = lines.sort_values(["user_id", "plan", "ts", "order_id"], kind="stable").reset_index(drop=True)
    n = len(frame)
    order_day = _days(frame["ts"])
    length = frame["term_days"].to_numpy(np.float64) * np.maximum(frame["quantity"].to_numpy(np.float64), 1.0)
    new_group = np.ones(n, dtype=bool)
    if n > 1:
        same = (frame["user_id"].to_numpy()[1:] == frame["user_id"].to_numpy()[:-1]) & (
            frame["plan"].to_numpy()[1:] == frame["plan"].to_numpy()[:-1]
        )
        new_group[1:] = ~same
    group_first = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.arange(n) - group_first
    start = order_day.copy()
    end = order_day + length
    spell = np.zeros(n, dtype=np.int64)
    term_index = np.zeros(n, dtype=np.int64)
    # one step per rank: the k-th orders of every (user, plan) at once, each after its (k-1)-th
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2 if n else 1))
    for k in range(1, len(bounds) - 1):
        idx = by_rank[bounds[k] : bounds[k + 1]]
        prev_end = end[idx - 1]
        renew = order_day[idx] <= prev_end + grace_days
        start[idx] = np.where(renew, np.maximum(order_day[idx], prev_end), order_day[idx])
        end[idx] = start[idx] + length[idx]
        spell[idx] = spell[idx - 1] + ~renew
        term_index[idx] = np.where(renew, term_index[idx - 1] + 1, 0)
    return frame.assign(
        order_day=order_day, start_day=start, end_day=end, length_days=length, spell=spell, term_index=term_index
    )


def spells_at(terms: pd.DataFrame, *, now: float, grace_days: float, timezone: str) -> pd.DataFrame:
    """One row per spell from the terms ordered before ``now`` (float UTC days).

    Columns: ``user_id``, ``plan``, ``spell``, ``cohort`` (local month of the first term's
    start, ``YYYY-MM``), ``renewals`` (paid so far), ``term_days`` (the plan's), ``price`` (of
    the last term), ``start_day``/``end_day`` of the last term, ``status``: ``active`` (the last
    term runs past ``now``), ``grace`` (it ended less than ``grace_days`` before) or ``lapsed``
    (T = renewals + 1), and ``known_renewals``, what the fit sees.

    A term's outcome counts as known only once its end plus ``grace_days`` has passed, whether
    the member renewed early or not: members who stay often pay before the end, those who leave
    show it only after the grace window, so a renewal paid early but counted at once would
    resolve stayers sooner than leavers and bias the fit (informative censoring). So
    ``known_renewals`` counts the renewals of terms whose end + grace has passed; a spell
    not ``lapsed`` is censored there (``T > known_renewals``).
    """
    columns = ["user_id", "plan", "spell", "cohort", "renewals", "known_renewals", "term_days", "price",
               "first_day", "start_day", "end_day", "status"]  # fmt: skip
    seen = terms[terms["order_day"] < now]
    if len(seen) == 0:
        return pd.DataFrame(columns=columns)
    seen = seen.assign(resolved=seen["end_day"] + grace_days <= now)
    grouped = seen.groupby(["user_id", "plan", "spell"], sort=True)
    spells = grouped.agg(
        first_day=("start_day", "min"),
        renewals=("term_index", "max"),
        resolved=("resolved", "sum"),
        start_day=("start_day", "max"),
        end_day=("end_day", "max"),
        term_days=("term_days", "last"),
        price=("price", "last"),
    ).reset_index()
    first = _timestamps(spells["first_day"].to_numpy()).dt.tz_localize("UTC").dt.tz_convert(timezone)
    spells["cohort"] = first.dt.strftime("%Y-%m").to_numpy()
    end = spells["end_day"].to_numpy()
    spells["status"] = np.select([end > now, end + grace_days > now], ["active", "grace"], "lapsed")
    spells["renewals"] = spells["renewals"].astype(np.int64)
    # terms end in order within a spell, so the resolved ones are its first ones; all resolved = lapsed
    spells["known_renewals"] = np.where(
        spells["status"] == "lapsed", spells["renewals"], spells["resolved"]
    ).astype(np.int64)
    return spells[columns]


def cohort_counts(spells: pd.DataFrame) -> pd.DataFrame:
    """Per plan and cohort, ``alive`` (spells with at least ``period`` known renewals: paying at
    the start of period ``period + 1``) and ``censored`` (of those, the ones not lapsed whose
    outcome after ``period`` renewals is not known yet), for ``period`` = 0 .. the most renewals
    seen (one more, with 0 alive, when some of those with the most renewals lapsed): the input
    of :meth:`ShiftedBetaGeo.fit` (``alive``, ``censored``) for that cohort. Renewals are
    ``known_renewals`` (see :func:`spells_at`)."""
    rows = []
    for (plan, cohort), group in spells.groupby(["plan", "cohort"], sort=True):
        renewals = group["known_renewals"].to_numpy(np.int64)
        running = group["status"].to_numpy() != "lapsed"
        most = int(renewals.max())
        # a trailing 0 when some of those with the most renewals lapsed (the last count is censored)
        size = most + 1 + int(((renewals == most) & ~running).any())
        at_least = np.cumsum(np.bincount(renewals, minlength=size)[::-1])[::-1]
        censored = np.bincount(renewals[running], minlength=size)
        rows.append(pd.DataFrame({"plan": plan, "cohort": cohort, "period": np.arange(size),
                                  "alive": at_least, "censored": censored}))  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=["plan", "cohort", "period", "alive", "censored"])
    return pd.concat(rows, ignore_index=True)


def _fit_plan(plan: str, cohorts: pd.DataFrame) -> ShiftedBetaGeo | None:
    """The sBG fitted on one plan's cohorts; None, with a warning, when the data cannot pin it down."""
    firsts = cohorts[cohorts["period"] == 0]
    spells = int(firsts["alive"].sum())
    lapsed = spells - int(cohorts["censored"].sum())  # each spell is censored once or lapsed
    renewed = int(cohorts.loc[cohorts["period"] == 1, "alive"].sum())
    if spells < MIN_SPELLS or lapsed == 0 or renewed == 0:
        warnings.warn(
            f"no sBG fit for plan {plan!r}: {spells} memberships, {renewed} with a renewal and {lapsed} lapsed; "
            f"it needs at least {MIN_SPELLS} memberships and at least one of each",
            stacklevel=3,
        )
        return None
    alive = [g["alive"].to_numpy() for _, g in cohorts.groupby("cohort", sort=True)]
    censored = [g["censored"].to_numpy() for _, g in cohorts.groupby("cohort", sort=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # said once below, with the plan's name
        model = ShiftedBetaGeo().fit(alive, censored=censored)
    if model.at_boundary_ or not model.converged_:
        where = ", ".join(f"{k} = {v:.3g}" for k, v in model.params_.items())
        warnings.warn(
            f"no sBG fit for plan {plan!r}: the likelihood does not settle ({where}; "
            f"{'stopped at the edge of the search box' if model.at_boundary_ else 'not converged'}); "
            f"{spells} memberships, {renewed} with a renewal and {lapsed} lapsed are too few outcomes "
            "(a long term: few have ended yet)",
            stacklevel=3,
        )
        return None
    return model


def _period_discount(term_days: float, monthly: float) -> float:
    return (1.0 + monthly) ** (term_days / DAYS_PER_MONTH) - 1.0


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class RenewalsResult:
    """What :func:`renewals` found as of ``as_of``.

    - ``fits``: one row per plan: term length, price, memberships, the sBG ``alpha``,
      ``beta`` with standard errors, projected renewal rates ``retention_1..`` for a new
      member, and ``derl_new`` (a new member's discounted expected renewals).
    - ``members``: one row per current membership (``MEMBER_COLUMNS``).
    - ``cohorts``: ``cohort_counts`` (the data each fit saw).
    - ``curves``: per plan and period, the observed share still paying (Kaplan-Meier over
      the cohorts, censoring respected) next to the sBG's ``survival``.
    - ``backtest``: AUC and log loss of the sBG and of a classifier on the terms that
      ended in the ``backtest_days`` after ``backtest_cutoff`` (empty when none).
    """

    as_of: dt_.date
    fits: pd.DataFrame
    members: pd.DataFrame
    cohorts: pd.DataFrame
    curves: pd.DataFrame
    backtest: pd.DataFrame
    backtest_cutoff: dt_.datetime | None
    models: dict[str, ShiftedBetaGeo] = field(default_factory=dict)


def _curves(spells: pd.DataFrame, models: Mapping[str, ShiftedBetaGeo], periods: int) -> pd.DataFrame:
    """Observed vs fitted share still paying, per plan and period t (S(t): paying in period t + 1)."""
    rows = []
    for plan, group in spells.groupby("plan", sort=True):
        renewals = group["known_renewals"].to_numpy(np.int64)
        running = group["status"].to_numpy() != "lapsed"
        longest = int(renewals.max())
        t = np.arange(0, max(longest, periods) + 1)
        # at risk at expiry t: paying in period t and not censored before its outcome is known
        at_risk = np.array([((renewals >= k - 1) & ~((renewals == k - 1) & running)).sum() for k in t[1:]])
        renewed = np.array([(renewals >= k).sum() for k in t[1:]])
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(at_risk > 0, renewed / np.maximum(at_risk, 1), np.nan)
        observed = np.concatenate([[1.0], np.cumprod(np.where(np.isnan(rate), 1.0, rate))])
        observed[1:][np.cumsum(np.isnan(rate)) > 0] = np.nan  # no outcome known from there on
        model = models.get(plan)
        fitted = model.survival(t) if model is not None else np.full(len(t), np.nan)
        rows.append(pd.DataFrame({
            "plan": plan, "period": t, "at_risk": np.concatenate([[len(group)], at_risk]),
            "observed_survival": observed, "sbg_survival": fitted,
        }))  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=["plan", "period", "at_risk", "observed_survival", "sbg_survival"])
    return pd.concat(rows, ignore_index=True)


def _fits_table(spells, models, rules: RenewalSettings, periods: int) -> pd.DataFrame:
    rows = []
    for plan, group in spells.groupby("plan", sort=True):
        model = models.get(plan)
        term_days = float(group["term_days"].iloc[-1])
        row = {
            "plan": plan,
            "term_days": int(term_days),
            "price": float(group["price"].iloc[-1]),
            "members": len(group),
            "current_members": int((group["status"] != "lapsed").sum()),
            "lapsed": int((group["status"] == "lapsed").sum()),
            "alpha": np.nan, "beta": np.nan, "alpha_se": np.nan, "beta_se": np.nan,
        }  # fmt: skip
        retention = np.full(periods, np.nan)
        derl_new = np.nan
        if model is not None:
            row.update(alpha=model.params_["alpha"], beta=model.params_["beta"],
                       alpha_se=model.standard_errors_["alpha"], beta_se=model.standard_errors_["beta"])  # fmt: skip
            retention = model.retention(np.arange(1, periods + 1))
            derl_new = float(model.derl(_period_discount(term_days, rules.discount_rate_monthly), 0)[0])
        row.update({f"retention_{k}": retention[k - 1] for k in range(1, periods + 1)})
        row["derl_new"] = derl_new
        rows.append(row)
    return pd.DataFrame(rows)


def _members_table(spells, models, rules: RenewalSettings, now: float) -> pd.DataFrame:
    current = spells[spells["status"] != "lapsed"].reset_index(drop=True)
    out = pd.DataFrame({
        "user_id": current["user_id"].astype(str),
        "plan": current["plan"].astype(str),
        "term_days": current["term_days"].astype("int64"),
        "price": current["price"].astype("float64"),
        "cohort": current["cohort"].astype(str),
        "renewals": current["renewals"].astype("int64"),
        "status": current["status"].astype(str),
        "term_start": _timestamps(current["start_day"].to_numpy()),
        "term_end": _timestamps(current["end_day"].to_numpy()),
        "days_to_expiry": np.round(current["end_day"].to_numpy() - now, 2),
        "p_renew_next": np.nan,
        "derl": np.nan,
    })  # fmt: skip
    for plan, idx in out.groupby("plan").groups.items():
        model = models.get(plan)
        if model is None:
            continue
        n = out.loc[idx, "renewals"].to_numpy(np.float64)
        rate = _period_discount(float(out.loc[idx, "term_days"].iloc[0]), rules.discount_rate_monthly)
        out.loc[idx, "p_renew_next"] = model.p_renew_next(n)
        out.loc[idx, "derl"] = model.derl(rate, n)
    out["residual_value"] = out["derl"] * out["price"]
    return out[list(MEMBER_COLUMNS)].sort_values(["plan", "term_end", "user_id"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- backtest


_FEATURES = ("renewals", "log_term_days", "log_price", "log_orders_before", "log_days_since_prev", "log_tenure")


def _term_features(rows: pd.DataFrame, buys: pd.DataFrame) -> pd.DataFrame:
    """Features of each term as known when it was bought (its order), so nothing from the renewal
    decision leaks in: renewals so far, term length, price, the user's earlier purchases, days
    since the previous one and since the first."""
    codes, users = pd.factorize(pd.concat([buys["user_id"], rows["user_id"]], ignore_index=True))
    buy_codes, row_codes = codes[: len(buys)], codes[len(buys) :]
    scale = 1e6  # epoch days stay far below it: (user, day) in one sortable float
    keys = np.sort(buy_codes * scale + _days(buys["ts"]))
    day = rows["order_day"].to_numpy()
    first = np.searchsorted(keys, row_codes * scale - 0.5)
    pos = np.searchsorted(keys, row_codes * scale + day, side="left")  # purchases strictly before
    before = pos - first
    prev = np.where(before > 0, keys[np.maximum(pos - 1, 0)] - row_codes * scale, np.nan)
    first_day = np.where(before > 0, keys[np.minimum(first, len(keys) - 1)] - row_codes * scale, day)
    return pd.DataFrame({
        "renewals": rows["term_index"].to_numpy(np.float64),
        "log_term_days": np.log(rows["length_days"].to_numpy(np.float64)),
        "log_price": np.log1p(np.maximum(rows["price"].to_numpy(np.float64), 0.0)),
        "log_orders_before": np.log1p(before),
        # no earlier purchase: as long ago as the data allow (ten years)
        "log_days_since_prev": np.log1p(np.nan_to_num(np.maximum(day - prev, 0.0), nan=3650.0)),
        "log_tenure": np.log1p(np.maximum(day - first_day, 0.0)),
    }, index=rows.index)  # fmt: skip


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    both = len(np.unique(y)) == 2
    return {
        "terms": len(y),
        "renewed_share": float(np.mean(y)) if len(y) else np.nan,
        "mean_predicted": float(np.mean(p)) if len(p) else np.nan,
        "auc": float(roc_auc_score(y, p)) if both else np.nan,
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])) if len(y) else np.nan,
    }


def _backtest(terms, buys, *, cutoff: float, now: float, horizon_days: float, rules, timezone, random_state):
    """sBG vs classifier on the terms bought before ``cutoff`` that end in the ``horizon_days`` after it.

    Both learn from the orders before the cutoff and only from outcomes known there (terms
    whose end + grace has passed); each scored term is predicted from what was known when it
    was bought (its renewals so far; the classifier adds the user's purchases before it), so a
    renewal paid early, even before the cutoff, does not leak into its own prediction.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = ["model", "terms", "renewed_share", "mean_predicted", "auc", "log_loss"]
    grace = float(rules.grace_days)
    before = spells_at(terms, now=cutoff, grace_days=grace, timezone=timezone)
    if len(before) == 0:
        warnings.warn("no renewal backtest: no membership was bought before the backtest cutoff", stacklevel=3)
        return pd.DataFrame(columns=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plans too thin at the cutoff are simply left out
        models = {plan: m for plan, g in cohort_counts(before).groupby("plan")
                  if (m := _fit_plan(plan, g)) is not None}  # fmt: skip
    # a term was renewed when its spell has a next term (ordered by now; by the end + grace)
    key = ["user_id", "plan", "spell", "term_index"]
    nxt = terms.loc[terms["term_index"] > 0, key].assign(term_index=lambda f: f["term_index"] - 1, renewed=True)
    terms = terms.merge(nxt, on=key, how="left")
    terms["renewed"] = terms["renewed"].fillna(False).astype(bool)
    bought = terms["order_day"] < cutoff
    due = terms[bought & (terms["end_day"] > cutoff) & (terms["end_day"] <= cutoff + horizon_days)]
    if len(due) == 0:
        warnings.warn(f"no renewal backtest: no membership term ends in the {horizon_days:g} days after the cutoff",
                      stacklevel=3)
        return pd.DataFrame(columns=columns)
    train = terms[bought & (terms["end_day"] + grace <= cutoff)]
    train_y = train["renewed"].to_numpy()
    sbg = np.array([models[p].p_renew_next(n)[0] if p in models else np.nan
                    for p, n in zip(due["plan"], due["term_index"])])  # fmt: skip
    classifier = np.full(len(due), np.nan)
    if len(train) >= MIN_TRAINING_TERMS and len(np.unique(train_y)) == 2:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=random_state))
        clf.fit(_term_features(train, buys)[list(_FEATURES)].to_numpy(), train_y.astype(int))
        classifier = clf.predict_proba(_term_features(due, buys)[list(_FEATURES)].to_numpy())[:, 1]
    else:
        warnings.warn(
            f"no renewal classifier in the backtest: {len(train)} terms with a known outcome before the cutoff "
            f"({int(train_y.sum())} renewed); it needs {MIN_TRAINING_TERMS} of both kinds together",
            stacklevel=3,
        )
    scored = np.isfinite(sbg) & np.isfinite(classifier)  # both models on the same terms
    if not scored.any():
        warnings.warn("no renewal backtest: no term ending after the cutoff has both predictions", stacklevel=3)
        return pd.DataFrame(columns=columns)
    y = due["renewed"].to_numpy()[scored].astype(int)
    return pd.DataFrame([
        {"model": "sbg", **_scores(y, sbg[scored])},
        {"model": "classifier", **_scores(y, classifier[scored])},
    ], columns=columns)  # fmt: skip


# --------------------------------------------------------------------------- the analysis


def renewals(
    orders: ir.Table,
    order_items: ir.Table,
    *,
    as_of: dt_.date,
    settings: Settings,
    execute: Execute,
    engine: str = "duckdb",
    periods: int = 6,
    backtest_days: int = 30,
    random_state=0,
) -> RenewalsResult:
    """Membership renewals as of the end of the local day ``as_of``: sBG per plan, odds per member.

    Parameters
    ----------
    orders, order_items
        The canonical tables; membership SKUs and term lengths come from
        ``settings.renewals.plans`` (plan = the SKU).
    execute
        Turns an Ibis expression into a pandas DataFrame (e.g. ``con.execute``).
    periods
        Renewal rates projected per plan (``retention_1..retention_<periods>``) and periods
        drawn on the curves.
    backtest_days
        The backtest scores the terms that end in the ``backtest_days`` after a cutoff of
        ``as_of - backtest_days - grace_days``, so that every outcome is known on ``as_of``;
        both models see only orders before the cutoff.

    Each current member gets ``p_renew_next`` (:meth:`ShiftedBetaGeo.p_renew_next` of her
    renewals so far), ``derl`` (discounted expected further renewals, the next one included,
    at ``discount_rate_monthly`` compounded over the plan's term) and ``residual_value`` =
    ``derl * price``. Plans too thin to fit (``MIN_SPELLS``) keep NaN there, with a warning.
    """
    if not (isinstance(periods, (int, np.integer)) and periods >= 1):
        raise InputError(f"periods = {periods!r}; expected a whole number of periods >= 1")
    if not (isinstance(backtest_days, (int, np.integer)) and backtest_days >= 1):
        raise InputError(f"backtest_days = {backtest_days!r}; expected a whole number of days >= 1")
    rules = settings.renewals
    grace = float(rules.grace_days)
    lines, buys = membership_lines(orders, order_items, as_of=as_of, settings=settings, engine=engine, execute=execute)
    if len(lines) == 0:
        raise InputError(
            f"no membership orders on or before {as_of}: no SKU matches renewals.plans",
            hint="map your membership SKUs to term days under [renewals.plans] in userstrata.toml",
        )
    now = _moment(as_of, settings.timezone)
    terms = build_terms(lines, grace_days=grace)
    spells = spells_at(terms, now=now, grace_days=grace, timezone=settings.timezone)
    cohorts = cohort_counts(spells)
    models = {}
    for plan, group in cohorts.groupby("plan", sort=True):
        model = _fit_plan(plan, group)
        if model is not None:
            models[plan] = model
    cutoff = now - backtest_days - grace
    backtest = _backtest(
        terms, buys, cutoff=cutoff, now=now, horizon_days=float(backtest_days), rules=rules,
        timezone=settings.timezone, random_state=random_state,
    )
    cutoff_ts = _timestamps(np.array([cutoff]))[0].to_pydatetime()
    return RenewalsResult(
        as_of=as_of,
        fits=_fits_table(spells, models, rules, periods),
        members=_members_table(spells, models, rules, now),
        cohorts=cohorts,
        curves=_curves(spells, models, periods),
        backtest=backtest,
        backtest_cutoff=cutoff_ts,
        models=models,
    )


# --------------------------------------------------------------------------- chart


def plot_renewal_curves(curves: pd.DataFrame, ax=None, *, lang: str = "zh"):
    """Share of members still paying by term, observed (markers) vs the sBG (dashed), per plan.

    Observed points resting on fewer than ``MIN_AT_RISK`` members whose outcome is known are
    left out: at the tail of a curve they are noise.

    ``curves`` is :attr:`RenewalsResult.curves`. ``lang`` ("zh" or "en") sets the title and
    axis labels; Chinese needs a font with Chinese glyphs (Noto Sans CJK, WenQuanYi,
    Microsoft YaHei ...), without one the labels are English, with a warning.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from userstrata.models.plots import chart_language

    lang, font = chart_language(lang, "renewal chart", "续费曲线图")
    if ax is None:
        fig = Figure(figsize=(7.2, 4.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
    plan_handles = []
    for i, (plan, group) in enumerate(curves.groupby("plan", sort=True)):
        color = colors[i % len(colors)]
        seen = group[group["observed_survival"].notna() & (group["at_risk"] >= MIN_AT_RISK)]
        ax.plot(seen["period"], seen["observed_survival"], marker="o", markersize=4, color=color)
        if group["sbg_survival"].notna().any():
            ax.plot(group["period"], group["sbg_survival"], linestyle="--", color=color)
        plan_handles.append(Line2D([], [], color=color, label=str(plan)))
    styles = [
        Line2D([], [], color="#555555", marker="o", markersize=4, label=i18n.label("renewals.actual", lang)),
        Line2D([], [], color="#555555", linestyle="--", label=i18n.label("renewals.model", lang)),
    ]
    ax.set_title(i18n.label("renewals.chart_title", lang))
    ax.set_xlabel(i18n.label("renewals.chart_x", lang))
    ax.set_ylabel(i18n.label("renewals.chart_y", lang))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if plan_handles:
        ax.legend(handles=plan_handles + styles, frameon=False, fontsize="small", loc="upper right")
    if font is not None:
        legend = ax.get_legend().get_texts() if ax.get_legend() else ()
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label, *legend):
            text.set_fontfamily(font)
    return fig
