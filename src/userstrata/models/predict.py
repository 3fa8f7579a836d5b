"""Per-user predictions as of a date: P(alive), expected purchases and spend, CLV, churn, next purchase.

Time is measured in days throughout: the BTYD models are fitted on
:func:`~userstrata.features.btyd_summary` (recency and T in local calendar days), so their
``alpha`` is per day (CDNOW's published weekly ``alpha`` times 7) and every horizon is a
number of days.
"""

from __future__ import annotations

import datetime as dt_
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from userstrata.config import Settings
from userstrata.errors import InputError, Notice, UserstrataError
from userstrata.features import btyd_summary
from userstrata.features._time import Clock
from userstrata.models._base import PurchaseModel
from userstrata.models.btyd import GammaGamma
from userstrata.models.choice import MODEL_NAMES, PURCHASE_MODELS, ModelChoice, choose_purchase_model, fit_checked
from userstrata.models.churn import ChurnModel, check_lang, churn_features, churn_labels
from userstrata.models.clv import DAYS_PER_MONTH, clv
from userstrata.models.next_purchase import next_purchase
from userstrata.segments import build_profile

__all__ = [
    "MODEL_OPTIONS",
    "PREDICT_STAGES",
    "PREDICTION_COLUMNS",
    "PURCHASE_MODELS",
    "ModelInputs",
    "fit_churn_model",
    "fit_purchase_model",
    "model_inputs",
    "predict",
]

Execute = Callable[[ir.Expr], pd.DataFrame]

# "auto" fits them all and keeps the lowest BIC (models/choice.py)
MODEL_OPTIONS = ("auto", *PURCHASE_MODELS)
ModelName = Literal["auto", "bgnbd", "pareto", "mbgnbd"]
PREDICTION_COLUMNS = (
    "user_id",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "clv",
    "clv_low",
    "clv_high",
    "churn_probability",
    "churn_reasons",
    "next_purchase_days",
    "next_purchase_within_horizon",
)
# Fewer buyers than this give BTYD estimates too noisy to act on (4 parameters).
MIN_BUYERS = 20
# Gamma-Gamma has 3 parameters fitted on repeaters only; below this fall back to the mean spend.
MIN_REPEATERS = 10


def _check_model(model: str) -> str:
    if model not in MODEL_OPTIONS:
        raise InputError(f"model = {model!r}; expected one of {', '.join(MODEL_OPTIONS)}")
    return model


def _with_hint(exc: UserstrataError) -> str:
    """An error's message and, when it has one, its hint: a warning that passes an error on keeps both."""
    return f"{exc}; {exc.hint}" if exc.hint else str(exc)


# What `predict` does, in order; `progress` hears each as it finishes (i18n: "stage.<name>").
PREDICT_STAGES = ("profile", "summary", "purchase_model", "purchases", "spend_clv", "next_purchase",
                  "churn_training", "churn_scoring", "churn_reasons")


class _Stages:
    """Tells ``progress`` each finished stage and keeps the seconds each took."""

    def __init__(self, progress: Callable[[str], None] | None):
        self.progress, self.timings, self._last = progress, {}, time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 3)
        self._last = now
        if self.progress is not None:
            self.progress(stage)


def _check_buyers(summary: pd.DataFrame) -> None:
    if len(summary) < MIN_BUYERS:
        raise InputError(
            f"{len(summary)} buyers; the purchase models need at least {MIN_BUYERS}",
            hint="use a later as-of date or more history",
        )


def fit_purchase_model(summary: pd.DataFrame, model: ModelName = "auto") -> ModelChoice:
    """The BTYD purchase model fitted on a per-buyer summary (``frequency``, ``recency``, ``T`` in
    days): the lowest-BIC one with ``"auto"``, else the one named.

    Raises
    ------
    InputError
        Too few buyers; or the named model cannot be fitted (the message names one that can).
    """
    _check_model(model)
    _check_buyers(summary)
    x, t_x, T = summary["frequency"], summary["recency"], summary["T"]
    if model == "auto":
        return choose_purchase_model(x, t_x, T)
    try:
        fitted = fit_checked(model, x, t_x, T)
    except UserstrataError as exc:
        others = [m for m in PURCHASE_MODELS if m != model]
        try:
            other = choose_purchase_model(x, t_x, T, candidates=others).name
            hint = f"--model auto chooses a model that fits; --model {other} fits these data"
        except UserstrataError:
            hint = "no other model fits these data either: more buyers or a later --as-of help"
        raise InputError(f"--model {model} cannot be fitted: {exc}", hint=hint) from None
    table = pd.DataFrame([dict(model=model, name=MODEL_NAMES[model], log_likelihood=fitted.log_likelihood_,
                               bic=np.nan, at_boundary=", ".join(fitted.at_boundary_), error="")])
    en, zh = f"{MODEL_NAMES[model]} (--model {model})", f"{MODEL_NAMES[model]}（--model {model}）"
    if fitted.at_boundary_:
        names = ", ".join(fitted.at_boundary_)
        en += f"; {names} stopped at the edge of the search box: predictions use that limit model"
        zh += f"；参数 {names} 停在搜索边界：预测采用该极限模型"
    return ModelChoice(model, fitted, table, en, zh)


def _btyd_frame(orders: ir.Table, *, as_of: dt_.date, clock: Clock, execute: Execute) -> pd.DataFrame:
    summary = execute(btyd_summary(orders, as_of=as_of, clock=clock)).set_index("user_id")
    for col in ("frequency", "recency", "T"):
        summary[col] = summary[col].astype("float64")
    for col in ("monetary_mean", "first_order_value"):
        summary[col] = summary[col].astype("float64")
    return summary.sort_index()


@dataclass(frozen=True)
class ModelInputs:
    """What the models see as of one date: the profile, the BTYD summary and fit, the churn features."""

    as_of: dt_.date
    profile: pd.DataFrame  # executed profile, indexed by user_id
    summary: pd.DataFrame  # btyd_summary of the buyers, indexed by user_id (T = 0: first purchase on as_of)
    purchase_model: PurchaseModel | None  # None when it could not be fitted
    p_alive: pd.Series  # by profiled user_id; NaN for never-buyers (BTYD starts at the first purchase)
    features: pd.DataFrame  # churn features (churn.churn_features), by user_id
    model_choice: ModelChoice | None = None  # which purchase model and why


def model_inputs(
    *,
    users: ir.Table,
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    as_of: dt_.date,
    settings: Settings,
    engine: str,
    execute: Execute,
    model: ModelName = "auto",
    stages: "_Stages | None" = None,
) -> ModelInputs:
    """Build the profile and the BTYD summary as of ``as_of``, fit the purchase model, derive churn features.

    Everything reads data on or before ``as_of`` only (the profile and ``btyd_summary`` filter
    by local day), so these inputs are safe to pair with labels from after ``as_of``.
    """
    clock = Clock(settings.timezone, engine)
    stages = stages or _Stages(None)
    profile = execute(
        build_profile(
            users=users, orders=orders, order_items=order_items, events=events,
            as_of=as_of, settings=settings, engine=engine,
        )
    ).set_index("user_id")
    stages.done("profile")
    summary = _btyd_frame(orders, as_of=as_of, clock=clock, execute=execute)
    stages.done("summary")
    fitted = choice = None
    p_alive = pd.Series(np.nan, index=profile.index, name="p_alive")
    if len(summary):
        try:
            _check_buyers(summary)
        except UserstrataError as exc:
            warnings.warn(Notice(f"no BTYD predictions as of {as_of}: {_with_hint(exc)}",
                                 f"{as_of} 没有 BTYD 预测：只有 {len(summary)} 位购买用户，购买模型至少需要 {MIN_BUYERS} 位；"
                                 "请用更晚的 --as-of 或更长的历史"), stacklevel=2)
        else:
            choice = fit_purchase_model(summary, model)
            fitted = choice.model
    stages.done("purchase_model")
    if fitted is not None:
        alive = fitted.probability_alive(summary["frequency"], summary["recency"], summary["T"])
        p_alive = pd.Series(alive, index=summary.index).reindex(profile.index).rename("p_alive")
    features = churn_features(profile, p_alive if fitted is not None else None)
    return ModelInputs(as_of, profile, summary, fitted, p_alive, features, choice)


def fit_churn_model(
    train: ModelInputs,
    *,
    orders: ir.Table,
    events: ir.Table,
    horizon_days: int,
    settings: Settings,
    engine: str,
    execute: Execute,
    activity: Literal["purchase", "any"] = "purchase",
    random_state=0,
) -> ChurnModel:
    """Train the churn classifier on features as of ``train.as_of`` and labels from the next ``horizon_days``.

    To predict at ``D`` pass inputs as of ``D - horizon_days``: the labels then cover
    ``(D - H, D]`` and never reach past ``D``.
    """
    clock = Clock(settings.timezone, engine)
    population = ibis.memtable(pd.DataFrame({"user_id": train.profile.index.astype(str)}))
    labels = execute(
        churn_labels(
            orders, events, cutoff=train.as_of, horizon_days=horizon_days, clock=clock,
            activity=activity, population=population,
        )
    ).set_index("user_id")["churned"]
    churned = labels.reindex(train.features.index).astype(bool)
    return ChurnModel(random_state=random_state).fit(train.features, churned)


def _spend(summary: pd.DataFrame) -> tuple[GammaGamma | None, np.ndarray, np.ndarray]:
    """Gamma-Gamma on the repeaters (or the mean-spend fallback): the model, E[spend] per buyer
    and the mean spend passed to ``clv``.

    Repeaters whose repeat purchases were refunded in full (net mean spend <= 0) stay out of
    the fit: a mean near zero is no draw from a gamma distribution of order values, and a few of
    them pull the fit to ``q -> inf`` (every buyer the same spend). They keep one cent as their
    mean for the predictions, which then sit just below the population's.
    """
    x = summary["frequency"].to_numpy()
    net = summary["monetary_mean"].fillna(0.0).to_numpy()
    monetary = np.where(x > 0, np.clip(net, 0.01, None), np.nan)
    fit_rows = (x > 0) & (net > 0)
    repeaters = int(fit_rows.sum())
    reason = None
    if repeaters >= MIN_REPEATERS:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # an unidentified fit is handled below, and said once
                spend_model = GammaGamma().fit(x[fit_rows], net[fit_rows])
                if not spend_model.heterogeneity_identified():
                    flat = spend_model.expected_spend(np.zeros(1), np.full(1, np.nan))[0]
                    spend_model = spend_model.least_shrinkage(x[fit_rows], net[fit_rows])
            expected = spend_model.expected_spend(x, monetary)
            if spend_model.params_["q"] > 1 and np.all(np.isfinite(expected)):
                if spend_model.q_fixed_:
                    _warn_least_shrinkage(spend_model, flat, x[fit_rows])
                return spend_model, expected, monetary
            reason = f"the Gamma-Gamma fit has q = {spend_model.params_['q']:.3g} <= 1 (no finite mean spend)"
        except UserstrataError as exc:
            reason = f"the Gamma-Gamma fit failed ({exc})"
    else:
        reason = f"only {repeaters} repeat buyers with a positive spend (Gamma-Gamma needs {MIN_REPEATERS})"
    if not (x > 0).any():  # a new shop: nobody has bought twice yet, so first purchases are all there is
        fallback = float(summary["first_order_value"].mean())
        warnings.warn(Notice(
            f"no repeat buyers: expected spend is the mean spend of a first purchase day ({fallback:.2f}) "
            "for every buyer; CLV has no interval",
            f"没有复购用户：每位用户的预期客单价都取首个购买日的平均消费 {fallback:.2f}；CLV 没有区间"), stacklevel=3)
        return None, np.full(len(summary), fallback), monetary
    fallback = float(summary.loc[x > 0, "monetary_mean"].mean())  # refunds included: the net average
    warnings.warn(
        Notice(f"expected spend is the mean spend per repeat purchase day ({fallback:.2f}) for every buyer: {reason}; "
               "CLV has no interval",
               f"每位用户的预期客单价都取复购日平均消费 {fallback:.2f}：Gamma-Gamma 模型无法使用（{reason}）；CLV 没有区间"),
        stacklevel=3,
    )
    return None, np.full(len(summary), fallback), monetary


def _warn_least_shrinkage(model: GammaGamma, flat: float, x: np.ndarray) -> None:
    """Say that spend differences were not identified and how far each buyer's own mean now counts."""
    p, q = model.params_["p"], model.params_["q"]
    x_mid = float(np.median(x))
    weight = p * x_mid / (p * x_mid + q - 1)
    warnings.warn(
        Notice(
            "the Gamma-Gamma fit finds no spend differences between buyers beyond chance (q -> inf would give "
            f"every buyer the same expected spend, {flat:,.2f}); expected spend follows each buyer's own mean, "
            f"shrunk as far towards the population as the data allow (q = {q:.3g}, the 95% profile-likelihood "
            f"bound): a buyer with {x_mid:g} repeat purchases counts {weight:.1%} on their own mean",
            "Gamma-Gamma 模型没有发现用户之间超出随机波动的客单价差异（按最优拟合 q -> ∞，每位用户的预期客单价都是 "
            f"{flat:,.2f}）；现按数据允许的最小收缩估计（q = {q:.3g}，95% 轮廓似然界），预期客单价随每位用户自己的平均"
            f"消费变化：复购 {x_mid:g} 次的用户，自身均值的权重为 {weight:.1%}",
        ),
        stacklevel=4,
    )


def _clv_without_spend_model(purchase_model, summary, spend, months, discount_rate=0.01) -> np.ndarray:
    """Point CLV with a constant spend per purchase (the fallback): the same discounting as ``clv``."""
    grid = np.arange(months + 1) * DAYS_PER_MONTH
    cumulative = np.stack(
        [purchase_model.expected_purchases(t, summary["frequency"], summary["recency"], summary["T"]) for t in grid]
    )
    discount = (1.0 + discount_rate) ** -np.arange(1, months + 1)
    return spend * (discount @ np.diff(cumulative, axis=0))


# The classifier trains on at most ChurnModel.max_train_rows (200,000) users, so above this many
# users the profile as of the training date is built for a seeded sample of them, not everyone:
# at 1M users that profile cost as much as the scoring-date one. The sample is larger than the
# training rows because users who arrived after the training date are not in that profile.
TRAIN_SAMPLE_USERS = 300_000


def training_sample(tables: dict[str, ir.Table], users: pd.Index, *, size: int | None = None,
                    random_state=0) -> dict[str, ir.Table]:
    """``tables`` restricted to a seeded random sample of ``size`` (default ``TRAIN_SAMPLE_USERS``)
    of ``users``, or all of them when there are no more: every table with a ``user_id`` keeps the
    sample's rows, ``order_items`` follows its orders. Rank-based profile columns (RFM scores,
    value score) are then ranks within the sample, estimates of the ranks within everyone that
    differ by sampling error only."""
    size = TRAIN_SAMPLE_USERS if size is None else size
    if len(users) <= size:
        return tables
    rng = np.random.default_rng(random_state)
    chosen = np.sort(np.asarray(users.astype(str))[rng.choice(len(users), size, replace=False)])
    sample = ibis.memtable(pd.DataFrame({"user_id": chosen}))
    out = {name: t.semi_join(sample, "user_id") if "user_id" in t.columns else t for name, t in tables.items()}
    orders = out["orders"].select("order_id")
    out["order_items"] = tables["order_items"].semi_join(orders, "order_id")
    return out


def churn_model_at(
    tables: dict[str, ir.Table],
    *,
    as_of: dt_.date,
    horizon_days: int,
    settings: Settings,
    engine: str,
    execute: Execute,
    model: ModelName = "auto",
    activity: Literal["purchase", "any"] = "purchase",
    random_state=0,
    users: pd.Index | None = None,
) -> ChurnModel | None:
    """The classifier for scoring on ``as_of``: trained on features as of ``as_of - horizon_days``
    with labels from ``(as_of - horizon_days, as_of]``, so nothing after ``as_of`` is used.

    ``users`` (e.g. the scoring-date profile's index): above ``TRAIN_SAMPLE_USERS`` of them, the
    training inputs are built for a seeded sample (:func:`training_sample`).
    None, with a warning, when there is no history to train on before ``as_of - horizon_days``.
    """
    train_date = as_of - dt_.timedelta(days=int(horizon_days))
    if users is not None:
        tables = training_sample(tables, users, random_state=random_state)
    try:
        train = model_inputs(**tables, as_of=train_date, settings=settings, engine=engine, execute=execute, model=model)
        if len(train.profile) == 0:
            raise InputError(f"no users on or before {train_date}")
        return fit_churn_model(
            train, orders=tables["orders"], events=tables["events"], horizon_days=horizon_days, settings=settings,
            engine=engine, execute=execute, activity=activity, random_state=random_state,
        )
    except UserstrataError as exc:
        warnings.warn(
            f"no churn probabilities: the classifier trains on {train_date} -> {as_of} and could not "
            f"({_with_hint(exc)})",
            stacklevel=3,
        )
        return None


def churn_inputs(churn: ChurnModel, features: pd.DataFrame) -> pd.DataFrame:
    """``features`` in the classifier's column order; without BTYD today p_alive is NaN,
    as for users who never bought."""
    if "p_alive" in churn.feature_names_ and "p_alive" not in features.columns:
        features = features.assign(p_alive=np.nan)
    return features[churn.feature_names_]


def predict(
    *,
    users: ir.Table,
    orders: ir.Table,
    order_items: ir.Table,
    events: ir.Table,
    as_of: dt_.date,
    horizon_days: int,
    settings: Settings,
    engine: str,
    execute: Execute,
    model: ModelName = "auto",
    random_state=0,
    activity: Literal["purchase", "any"] = "purchase",
    with_profile: bool = False,
    lang: Literal["en", "zh"] = "en",
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per profiled user as of ``as_of`` with the model predictions over ``horizon_days``
    (after the profile's own columns with ``with_profile``: it is computed here anyway).

    Columns (``PREDICTION_COLUMNS``):

    - ``p_alive``, ``expected_purchases`` (purchase days in ``(as_of, as_of + horizon_days]``):
      the BTYD purchase model ``model`` fitted on everyone's history as of ``as_of`` (``"auto"``:
      BG/NBD, MBG/NBD or Pareto/NBD, whichever has the lowest BIC; the choice and its reason are in
      ``result.attrs["purchase_model"]``). BTYD starts at a customer's first purchase, so for
      users who never bought these are NaN.
    - ``expected_spend``: Gamma-Gamma posterior mean spend per purchase day (fitted on repeat
      buyers' mean spend; where it finds no differences between buyers, the least shrinkage the data
      allow, and with too few repeaters or a failed fit the mean spend, each with a warning).
    - ``clv``, ``clv_low``, ``clv_high``: discounted spend (1% a month, margin 1) over
      ``round(horizon_days / 30.4375)`` months (at least 1), so that CLV covers the same
      horizon as ``expected_purchases``; the interval is the 90% range over 200 parameter draws.
    - ``churn_probability``, ``churn_reasons`` (in ``lang``): the calibrated classifier, trained on features
      as of ``as_of - horizon_days`` with labels from ``(as_of - horizon_days, as_of]`` and
      applied to features as of ``as_of``; it covers never-buyers too. NaN/empty (with a
      warning) when there is not enough history before ``as_of`` to train it.
    - ``next_purchase_days`` (median wait, NaN when unlikely within the horizon) and
      ``next_purchase_within_horizon`` (P(a purchase in the horizon)).

    Parameters
    ----------
    execute
        Turns an Ibis expression into a pandas DataFrame (e.g. ``con.execute``).
    activity
        What keeps a user from counting as churned: ``"purchase"`` or ``"any"`` activity.
    lang
        Language of ``churn_reasons``: ``"en"`` or ``"zh"``.
    progress
        Called with each stage of ``PREDICT_STAGES`` as it finishes; the seconds each took are
        in ``result.attrs["timings"]``.
    """
    stages = _Stages(progress)
    if not (isinstance(horizon_days, (int, np.integer)) and horizon_days >= 1):
        raise InputError(f"horizon_days = {horizon_days!r}; expected a whole number of days >= 1")
    _check_model(model)
    check_lang(lang)
    tables = dict(users=users, orders=orders, order_items=order_items, events=events)
    now = model_inputs(**tables, as_of=as_of, settings=settings, engine=engine, execute=execute, model=model,
                       stages=stages)
    out = pd.DataFrame(index=now.profile.index)
    out.index.name = "user_id"
    for col in PREDICTION_COLUMNS[1:]:
        out[col] = "" if col == "churn_reasons" else np.nan

    # -- BTYD: purchases, spend, CLV, next purchase (buyers only) -----------------------------
    summary, fitted = now.summary, now.purchase_model
    if fitted is not None:
        x, t_x, T = summary["frequency"], summary["recency"], summary["T"]
        buyers = summary.index
        out.loc[buyers, "p_alive"] = now.p_alive.loc[buyers].to_numpy()
        expected = fitted.expected_purchases(horizon_days, x, t_x, T)
        out.loc[buyers, "expected_purchases"] = expected
        unknown = int((~np.isfinite(expected)).sum())
        if unknown:  # the fit was checked at 90 days; another horizon can still overflow
            name = MODEL_NAMES[now.model_choice.name]
            warnings.warn(Notice(
                f"the {name} fit as of {as_of} gives no expected purchases over {horizon_days} days for "
                f"{unknown} of {len(expected)} buyers; a shorter --horizon or another --model may help",
                f"{as_of} 的 {name} 拟合无法给出 {len(expected)} 位购买用户中 {unknown} 位未来 {horizon_days} 天的"
                "预期购买次数；可缩短 --horizon 或换用其他 --model",
            ), stacklevel=2)
        stages.done("purchases")
        spend_model, spend, monetary = _spend(summary)
        out.loc[buyers, "expected_spend"] = spend
        months = max(1, round(horizon_days / DAYS_PER_MONTH))
        if spend_model is not None:
            value = clv(
                fitted, spend_model, x, t_x, T, monetary,
                horizon_months=months, time_unit_days=1.0, random_state=random_state,
            )
            for col in ("clv", "clv_low", "clv_high"):
                out.loc[buyers, col] = value[col].to_numpy()
        else:
            out.loc[buyers, "clv"] = _clv_without_spend_model(fitted, summary, spend, months)
        stages.done("spend_clv")
        nxt = next_purchase(fitted, x, t_x, T, horizon=float(horizon_days))
        out.loc[buyers, "next_purchase_days"] = nxt["next_purchase_days"].to_numpy()
        out.loc[buyers, "next_purchase_within_horizon"] = nxt["next_purchase_within_horizon"].to_numpy()
    else:
        stages.done("purchases")
        stages.done("spend_clv")
    stages.done("next_purchase")

    # -- churn classifier (every profiled user) ----------------------------------------------
    # the classifier's p_alive feature comes from the same model at training and scoring time
    same = now.model_choice.name if now.model_choice is not None else model
    churn = churn_model_at(
        tables, as_of=as_of, horizon_days=horizon_days, settings=settings, engine=engine,
        execute=execute, model=same, activity=activity, random_state=random_state, users=now.profile.index,
    )
    stages.done("churn_training")
    if churn is not None:
        features = churn_inputs(churn, now.features)
        out["churn_probability"] = churn.predict_proba(features)
        stages.done("churn_scoring")
        out["churn_reasons"] = churn.reasons(features, top=3, lang=lang,
                                             probabilities=out["churn_probability"].to_numpy())
    else:
        stages.done("churn_scoring")
    stages.done("churn_reasons")
    out = out.reset_index()[list(PREDICTION_COLUMNS)]
    result = now.profile.reset_index().merge(out, on="user_id", how="left") if with_profile else out
    if now.model_choice is not None:  # which purchase model, and why, for whoever shows the result
        result.attrs["purchase_model"] = {
            "model": now.model_choice.name,
            "name": MODEL_NAMES[now.model_choice.name],
            "reason_en": now.model_choice.reason_en,
            "reason_zh": now.model_choice.reason_zh,
        }
    result.attrs["timings"] = stages.timings
    return result
