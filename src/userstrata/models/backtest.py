"""Holdout backtest: fit on history up to a cutoff, predict the next horizon, compare with what happened.

Two questions, each answered without leakage:

1. *How many purchases?* The BTYD model is fitted on the calibration period (local days up to
   ``cutoff``) and predicts each buyer's purchase days in ``(cutoff, cutoff + horizon_days]``;
   compared in total, per user (MAE, RMSE) and by calibration repeat purchases (0..6, 7+), as
   in Fader, Hardie & Lee (2005, Figure 4).
2. *Who churns?* The classifier trains on features as of ``cutoff - H`` with labels from
   ``(cutoff - H, cutoff]`` (``H = churn_horizon_days``), predicts from features as of
   ``cutoff`` and is scored on ``(cutoff, cutoff + H]``, against two BTYD baselines fitted on
   the calibration period: ``1 - P(alive)`` (the usual one, but it answers "dead for good?",
   not "no purchase within H?") and ``1 - P(purchase within H)`` (the fair one: the same
   question the classifier answers).

Alongside, the cohort tracking (:mod:`~userstrata.models.tracking`): the calibration
buyers' actual vs expected repeat transactions per day over both periods, as in Fader,
Hardie & Lee (2005, Figure 1).
"""

from __future__ import annotations

import datetime as dt_
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from userstrata.config import Settings
from userstrata.errors import InputError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.models.churn import check_lang, churn_labels
from userstrata.models.next_purchase import probability_purchase_within
from userstrata.models.plots import plot_calibration, plot_frequency_conditional, plot_tracking
from userstrata.models.choice import MODEL_NAMES
from userstrata.models.predict import Execute, churn_inputs, churn_model_at, model_inputs
from userstrata.models.tracking import TRACKING_COLUMNS, cohort_tracking

__all__ = ["BacktestResult", "backtest", "holdout_purchase_days", "last_data_day", "observed_horizons"]

FREQUENCY_GROUPS = ("0", "1", "2", "3", "4", "5", "6", "7+")


@dataclass(frozen=True)
class BacktestResult:
    """Backtest figures; ``plots`` maps a plot name to its PNG (empty without ``out_dir``);
    ``tracking`` is the cohort tracking table (:func:`~userstrata.models.tracking.tracking_table`)."""

    metrics: dict[str, float]
    by_frequency: pd.DataFrame
    per_user: pd.DataFrame
    plots: dict[str, Path] = field(default_factory=dict)
    tracking: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TRACKING_COLUMNS)))
    purchase_model: dict[str, str] = field(default_factory=dict)  # model, name, reason_en, reason_zh


def holdout_purchase_days(orders: ir.Table, *, cutoff: dt_.date, horizon_days: int, clock: Clock) -> ir.Table:
    """``user_id, purchase_days``: distinct local purchase days in ``(cutoff, cutoff + horizon_days]``.

    Several orders on one day are one transaction, as in the calibration summary.
    """
    p = purchases(orders, as_of=cutoff + dt_.timedelta(days=int(horizon_days)), clock=clock)
    p = p.filter(p.order_date > cutoff)
    return p.group_by("user_id").agg(purchase_days=p.order_date.nunique())


def last_data_day(orders: ir.Table, events: ir.Table, *, clock: Clock, execute: Execute) -> dt_.date | None:
    """The last local day with an order or an event (as ``Workspace.latest_date``); None without data."""
    days = [t.select(day=clock.local_date(t.ts)) for t in (orders, events)]
    found = execute(ibis.union(*days).aggregate(last_day=ibis._.day.max()))["last_day"].iloc[0]
    return None if found is None or pd.isna(found) else pd.Timestamp(found).date()


def observed_horizons(
    cutoff: dt_.date, last_day: dt_.date | None, horizons: dict[str, int]
) -> tuple[dict[str, int], list[str]]:
    """Each horizon after ``cutoff`` cut at ``last_day``, and a sentence for each one cut.

    A holdout day after the last day in the data would count as "no purchase": totals would
    fall short and every user would look churned. So the backtest covers the observed days only.
    Raises InputError when no day after ``cutoff`` is observed.
    """
    if last_day is None or cutoff >= last_day:
        raise InputError(
            f"cutoff {cutoff} is not before the last day in the data ({last_day or 'no orders or events'}): "
            "no day of the holdout is observed",
            hint="choose an earlier --cutoff, leaving the holdout after it in the data",
        )
    observed = (last_day - cutoff).days
    out, notes = {}, []
    for name, days in horizons.items():
        out[name] = min(int(days), observed)
        if days > observed:
            notes.append(
                f"the {name} runs {days - observed} days past the last day in the data ({last_day}): "
                f"only {observed} of {days} days are observed, so the backtest covers those {observed} days "
                f"({cutoff + dt_.timedelta(days=1)} to {last_day})"
            )
    return out, notes


def _scores(prefix: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, PR-AUC (average precision) and Brier score; NaN where undefined."""
    ok = np.isfinite(p)
    y, p = y[ok].astype(int), p[ok]
    nan = float("nan")
    if len(y) == 0:
        return {f"{prefix}_auc": nan, f"{prefix}_pr_auc": nan, f"{prefix}_brier": nan}
    both = len(np.unique(y)) == 2
    return {
        f"{prefix}_auc": float(roc_auc_score(y, p)) if both else nan,
        f"{prefix}_pr_auc": float(average_precision_score(y, p)) if both else nan,
        f"{prefix}_brier": float(brier_score_loss(y, np.clip(p, 0.0, 1.0))),
    }


def _tracking_metrics(tracking: pd.DataFrame) -> dict[str, float]:
    """Cumulative actual vs expected at the cutoff and the end, and the holdout errors in %."""
    calib = tracking[tracking["period"] == "calibration"]
    holdout = tracking[tracking["period"] == "holdout"]
    at_cutoff, at_end = calib.iloc[-1], tracking.iloc[-1]
    actual, expected = float(holdout["actual"].sum()), float(holdout["expected"].sum())
    nan = float("nan")
    return {
        "tracking_actual_cum_cutoff": float(at_cutoff["actual_cum"]),
        "tracking_expected_cum_cutoff": float(at_cutoff["expected_cum"]),
        "tracking_actual_cum_end": float(at_end["actual_cum"]),
        "tracking_expected_cum_end": float(at_end["expected_cum"]),
        "tracking_holdout_actual": actual,
        "tracking_holdout_expected": expected,
        "tracking_holdout_error_pct": 100.0 * (expected - actual) / actual if actual else nan,
        "tracking_cum_error_pct": (
            float(100.0 * (at_end["expected_cum"] - at_end["actual_cum"]) / at_end["actual_cum"])
            if at_end["actual_cum"] else nan
        ),
    }


def backtest(
    *,
    users: ir.Table,
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    cutoff: dt_.date,
    horizon_days: int,
    settings: Settings,
    engine: str,
    execute: Execute,
    out_dir: Path | None = None,
    model: Literal["auto", "bgnbd", "pareto", "mbgnbd"] = "auto",
    churn_horizon_days: int | None = None,
    activity: Literal["purchase", "any"] = "purchase",
    random_state=0,
    lang: Literal["zh", "en"] = "en",
) -> BacktestResult:
    """Split history at ``cutoff``, predict ``horizon_days`` ahead, and score the predictions.

    Parameters
    ----------
    out_dir
        Where to write ``frequency_conditional.png``, ``churn_calibration.png`` and
        ``tracking.png``; no plots when None.
    churn_horizon_days
        Horizon of the churn comparison (default ``horizon_days``). The classifier trains on
        ``cutoff - churn_horizon_days``, so a long horizon needs that much history before it
        (CDNOW's 39-week holdout starts 39 weeks after the cohort's first purchases: use a
        shorter churn horizon there).
    activity
        What keeps a user from churning (:func:`~userstrata.models.churn.churn_labels`); the
        BTYD baselines model purchases, so ``"purchase"`` is the like-for-like comparison.
    lang
        Labels of the tracking chart, ``"zh"`` or ``"en"``.

    Returns
    -------
    BacktestResult
        ``metrics``: ``n_buyers, horizon_days`` (the observed part, below), ``total_predicted,
        total_actual, total_error_pct, mae, rmse``,
        the fitted parameters (``param_<name>``, time unit days), and for churn
        ``churn_horizon_days, churn_n, churn_rate`` and ``<who>_auc / _pr_auc / _brier`` for
        ``classifier`` (all profiled users) and, on the buyers (where BTYD applies),
        ``classifier_buyers``, ``palive`` (1 - P(alive)) and ``ppurchase``
        (1 - P(purchase within the churn horizon)); for the tracking, the cohort's repeat
        transactions ``tracking_actual_cum_<at>`` and ``tracking_expected_cum_<at>`` at the
        ``cutoff`` and the ``end`` of the holdout, ``tracking_holdout_actual`` and
        ``tracking_holdout_expected`` (in the holdout only; the expectation is unconditional,
        unlike ``total_predicted``), ``tracking_holdout_error_pct`` (their difference in % of
        the actual) and ``tracking_cum_error_pct`` (the cumulative error at the end, in %).
        ``by_frequency``: ``frequency_group, n_users, actual_mean, predicted_mean`` (buyers).
        ``per_user``: one row per user profiled at ``cutoff``: ``user_id, is_buyer, frequency,
        recency, T`` (days), ``p_alive, predicted_purchases, actual_purchases,
        p_purchase_within, churned, churn_probability``.
        ``tracking``: per day from the first purchase of the calibration buyers to the end
        of the holdout, ``day, week, period, actual, expected, actual_cum, expected_cum``.

    A horizon that runs past the last day with an order or event is shortened to the days
    that are observed, with a warning that says how many (those days would otherwise count
    as days without purchases: totals too low, everyone churned); ``metrics["horizon_days"]``
    and ``metrics["churn_horizon_days"]`` are the horizons used. With no observed day after
    ``cutoff`` the backtest is refused (InputError).
    """
    if not (isinstance(horizon_days, (int, np.integer)) and horizon_days >= 1):
        raise InputError(f"horizon_days = {horizon_days!r}; expected a whole number of days >= 1")
    churn_h = horizon_days if churn_horizon_days is None else churn_horizon_days
    if not (isinstance(churn_h, (int, np.integer)) and churn_h >= 1):
        raise InputError(f"churn_horizon_days = {churn_horizon_days!r}; expected a whole number of days >= 1")
    check_lang(lang)
    clock = Clock(settings.timezone, engine)
    horizons = {"horizon": int(horizon_days)}
    if churn_horizon_days is not None:
        horizons["churn horizon"] = int(churn_h)
    cut, notes = observed_horizons(cutoff, last_data_day(orders, events, clock=clock, execute=execute), horizons)
    horizon_days = cut["horizon"]
    churn_h = cut.get("churn horizon", horizon_days)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    tables = dict(users=users, orders=orders, order_items=order_items, events=events)
    calib = model_inputs(**tables, as_of=cutoff, settings=settings, engine=engine, execute=execute, model=model)
    fitted, summary = calib.purchase_model, calib.summary
    if fitted is None:
        raise InputError(
            f"the {model} purchase model could not be fitted on the history up to {cutoff}",
            hint="choose a later cutoff (more buyers) or check the orders",
        )

    # -- purchases in the holdout -------------------------------------------------------------
    actual = execute(holdout_purchase_days(orders, cutoff=cutoff, horizon_days=horizon_days, clock=clock))
    actual = actual.set_index("user_id")["purchase_days"]
    x, t_x, T = summary["frequency"], summary["recency"], summary["T"]
    buyers = pd.DataFrame(
        {
            "frequency": x,
            "recency": t_x,
            "T": T,
            "p_alive": calib.p_alive.reindex(summary.index),
            "predicted_purchases": fitted.expected_purchases(horizon_days, x, t_x, T),
            "actual_purchases": actual.reindex(summary.index).fillna(0).astype("float64"),
            "p_purchase_within": probability_purchase_within(fitted, float(churn_h), x, t_x, T),
        },
        index=summary.index,
    )
    err = buyers["predicted_purchases"] - buyers["actual_purchases"]
    total_pred, total_act = float(buyers["predicted_purchases"].sum()), float(buyers["actual_purchases"].sum())
    metrics: dict[str, float] = {
        "n_buyers": float(len(buyers)),
        "horizon_days": float(horizon_days),
        "total_predicted": total_pred,
        "total_actual": total_act,
        "total_error_pct": 100.0 * (total_pred - total_act) / total_act if total_act else float("nan"),
        "mae": float(err.abs().mean()),
        "rmse": float(np.sqrt((err**2).mean())),
    }
    metrics.update({f"param_{k}": float(v) for k, v in fitted.params_.items()})

    group = np.minimum(buyers["frequency"].to_numpy(), 7).astype(int)
    by_frequency = (
        buyers.assign(frequency_group=pd.Categorical([FREQUENCY_GROUPS[g] for g in group], FREQUENCY_GROUPS))
        .groupby("frequency_group", observed=True)
        .agg(
            n_users=("actual_purchases", "size"),
            actual_mean=("actual_purchases", "mean"),
            predicted_mean=("predicted_purchases", "mean"),
        )
        .reset_index()
    )
    by_frequency["frequency_group"] = by_frequency["frequency_group"].astype(str)

    # -- cohort tracking: the calibration buyers day by day, unconditional expectation ---------
    end = cutoff + dt_.timedelta(days=int(horizon_days))
    tracking = cohort_tracking(fitted, orders, cutoff=cutoff, end=end, clock=clock, execute=execute)
    metrics.update(_tracking_metrics(tracking))

    # -- churn: classifier vs the BTYD baselines ----------------------------------------------
    population = ibis.memtable(pd.DataFrame({"user_id": calib.profile.index.astype(str)}))
    labels = execute(
        churn_labels(
            orders, events, cutoff=cutoff, horizon_days=churn_h, clock=clock,
            activity=activity, population=population,
        )
    ).set_index("user_id")["churned"]
    per_user = pd.DataFrame(index=calib.profile.index)
    per_user.index.name = "user_id"
    per_user["is_buyer"] = per_user.index.isin(buyers.index)
    per_user = per_user.join(buyers)
    per_user["churned"] = labels.reindex(per_user.index).astype(bool)
    per_user["churn_probability"] = np.nan

    churn = churn_model_at(  # p_alive from the same model at training and scoring time
        tables, as_of=cutoff, horizon_days=churn_h, settings=settings, engine=engine,
        execute=execute, model=calib.model_choice.name, activity=activity, random_state=random_state,
        users=calib.profile.index,
    )
    if churn is not None:
        per_user["churn_probability"] = churn.predict_proba(churn_inputs(churn, calib.features))

    y_all = per_user["churned"].to_numpy()
    b = per_user["is_buyer"].to_numpy()
    y_b = y_all[b]
    metrics.update(
        {
            "churn_horizon_days": float(churn_h),
            "churn_n": float(len(per_user)),
            "churn_rate": float(y_all.mean()) if len(y_all) else float("nan"),
            "churn_n_buyers": float(b.sum()),
            "churn_rate_buyers": float(y_b.mean()) if len(y_b) else float("nan"),
        }
    )
    prob = per_user["churn_probability"].to_numpy(dtype=np.float64)
    metrics.update(_scores("classifier", y_all, prob))
    metrics.update(_scores("classifier_buyers", y_b, prob[b]))
    metrics.update(_scores("palive", y_b, 1.0 - per_user["p_alive"].to_numpy(dtype=np.float64)[b]))
    metrics.update(_scores("ppurchase", y_b, 1.0 - per_user["p_purchase_within"].to_numpy(dtype=np.float64)[b]))

    plots: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fig = plot_frequency_conditional(by_frequency)
        plots["frequency_conditional"] = out / "frequency_conditional.png"
        fig.savefig(plots["frequency_conditional"], dpi=110)
        curves = {
            "classifier (buyers)": prob[b],
            "1 - P(alive)": 1.0 - per_user["p_alive"].to_numpy(dtype=np.float64)[b],
            f"1 - P(purchase in {churn_h} d)": 1.0 - per_user["p_purchase_within"].to_numpy(dtype=np.float64)[b],
        }
        fig = plot_calibration(y_b, curves)
        plots["churn_calibration"] = out / "churn_calibration.png"
        fig.savefig(plots["churn_calibration"], dpi=110)
        fig = plot_tracking(tracking, lang=lang)
        plots["tracking"] = out / "tracking.png"
        fig.savefig(plots["tracking"], dpi=110)
    choice = calib.model_choice
    purchase_model = {"model": choice.name, "name": MODEL_NAMES[choice.name], "reason_en": choice.reason_en,
                      "reason_zh": choice.reason_zh}
    return BacktestResult(
        metrics=metrics, by_frequency=by_frequency, per_user=per_user.reset_index(), plots=plots, tracking=tracking,
        purchase_model=purchase_model,
    )
