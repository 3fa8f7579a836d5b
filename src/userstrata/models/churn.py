"""Churn: who will not come back within a horizon, with calibrated probabilities and reasons.

A user *churns* over ``(cutoff, cutoff + horizon_days]`` when they make no purchase (or, with
``activity="any"``, have no purchase and no event) in that window. The classifier is trained
by a time split so that nothing after a date leaks into the features of that date: to
predict at ``D`` for horizon ``H``, features are taken as of ``D - H``, labels from
``(D - H, D]``, and the fitted model is applied to features as of ``D``
(see :func:`userstrata.models.predict.fit_churn_model`).
"""

from __future__ import annotations

import datetime as dt_
import functools
import math
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from userstrata.errors import InputError, NotFittedError
from userstrata.features import purchases
from userstrata.features._time import Clock
from userstrata.i18n import LANGS, Lang, label
from userstrata.models._perturb import perturbed

__all__ = ["CHURN_FEATURES", "ChurnModel", "check_lang", "churn_features", "churn_labels"]

# Numeric profile columns the classifier uses (all as of the cutoff), plus the BTYD P(alive).
CHURN_FEATURES = (
    "frequency",
    "orders",
    "monetary",
    "aov",
    "refund_rate",
    "recency_days",
    "tenure_days",
    "interaction_depth",
    "community_actions",
    "event_days",
    "inactive_days",
    "category_share",
    "value_score",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "p_alive",
)

# How a reason reads comes from i18n ("churn.<feature>"): the user's own value, formatted.
# Counts have a singular and a plural form; a missing value means the user never bought.
_COUNTS = frozenset(
    {"frequency", "orders", "recency_days", "tenure_days", "interaction_depth", "community_actions",
     "event_days", "inactive_days"}
)  # fmt: skip
_MISSING_KEY = {
    "aov": "churn.no_purchase",
    "recency_days": "churn.no_purchase",
    "p_alive": "churn.no_purchase",
    "rfm_r": "churn.no_purchase",
    "rfm_f": "churn.no_purchase",
    "rfm_m": "churn.no_purchase",
    "refund_rate": "churn.no_purchase",
    "category_share": "churn.no_items",
}
# counts of days whose 0 reads as "today" ("last purchase today", not "last purchase 0 days ago")
_ZERO_FORMS = frozenset({"recency_days", "tenure_days", "inactive_days"})
# below this, a feature's push towards churn is noise, not a reason worth showing
_MIN_REASON_DELTA = 0.005
# a feature needs this many observed (non-missing) values to be used
_MIN_OBSERVED = 10
# Below this many rows the boosting runs on one OpenMP thread: its per-split thread start-up
# dominates small fits (2,000 users x 17 features: 0.25 s on one thread, 1.5 s on two busy
# cores, measured here), and several threads only pay off on large tables.
_PARALLEL_ROWS = 20_000
# Up to this many training users the classifier averages its fold models (ChurnModel(ensemble="auto"))
ENSEMBLE_ROWS = 50_000


def _threads(n_rows: int):
    return threadpool_limits(limits=1 if n_rows < _PARALLEL_ROWS else None, user_api="openmp")


def churn_labels(
    orders: ir.Table,
    events: ir.Table,
    *,
    cutoff: dt_.date,
    horizon_days: int,
    clock: Clock,
    activity: Literal["purchase", "any"] = "purchase",
    population: ir.Table | None = None,
) -> ir.Table:
    """``user_id, churned``: True when the user has no activity in ``(cutoff, cutoff + horizon_days]``.

    Days are the shop's local days (``clock``). Only the window after the cutoff is read, so
    the labels never look at the features' period and the features never at the labels'.

    Parameters
    ----------
    activity
        ``"purchase"``: a purchase (an order that is not cancelled/unpaid, as in
        :func:`~userstrata.features.purchases`) keeps a user; ``"any"``: a purchase or any event.
    population
        A table with a ``user_id`` column: the users to label, normally the profile at the
        cutoff. Default: every user with a purchase or an event on or before the cutoff.
    """
    if activity not in ("purchase", "any"):
        raise InputError(f"activity = {activity!r}; expected 'purchase' or 'any'")
    if not (isinstance(horizon_days, (int, np.integer)) and horizon_days >= 1):
        raise InputError(f"horizon_days = {horizon_days!r}; expected a whole number of days >= 1")
    end = cutoff + dt_.timedelta(days=int(horizon_days))
    bought = purchases(orders, as_of=end, clock=clock)
    active = [bought.filter(bought.order_date > cutoff).select("user_id")]
    e = events.filter(events.user_id.notnull())
    e = e.mutate(event_date=clock.local_date(e.ts))
    if activity == "any":
        active.append(e.filter((e.event_date > cutoff) & (e.event_date <= end)).select("user_id"))
    if population is None:
        before = purchases(orders, as_of=cutoff, clock=clock).select("user_id")
        seen = e.filter(e.event_date <= cutoff).select("user_id")
        population = ibis.union(before, seen, distinct=True)
    pop = population.select("user_id").distinct()
    came_back = (ibis.union(*active, distinct=True) if len(active) > 1 else active[0].distinct()).select(
        back_id="user_id"
    )
    joined = pop.left_join(came_back, pop.user_id == came_back.back_id)
    return joined.select("user_id", churned=joined.back_id.isnull())


def churn_features(profile: pd.DataFrame, p_alive: pd.Series | None = None) -> pd.DataFrame:
    """The classifier's inputs from an executed profile: ``CHURN_FEATURES`` as floats, by user_id.

    Parameters
    ----------
    profile
        An executed :func:`~userstrata.segments.build_profile` (``user_id`` as a column or the index).
    p_alive
        BTYD P(alive) by user_id (NaN or absent for users who never bought); left out when None.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``user_id``; NaN stays NaN (the gradient boosting handles missing values,
        and "never bought" is informative).
    """
    frame = profile.set_index("user_id") if "user_id" in profile.columns else profile
    missing = [c for c in CHURN_FEATURES if c != "p_alive" and c not in frame.columns]
    if missing:
        raise InputError(f"profile lacks the feature column(s) {missing}", hint="pass the output of build_profile")
    out = pd.DataFrame(
        {c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in CHURN_FEATURES if c != "p_alive"},
        index=frame.index,
    )
    if p_alive is not None:
        out["p_alive"] = p_alive.reindex(out.index).astype("float64")
    return out


@functools.lru_cache(maxsize=65_536)
def _phrase(feature: str, value: float, lang: Lang) -> str:
    """What a reason says of a feature's value, e.g. "inactive 45 days" / "已 45 天未活跃"
    (cached: counts repeat across users, and reasons are formatted for up to a million of them)."""
    if value is None or math.isnan(value):
        key = _MISSING_KEY.get(feature)
        return label(key, lang) if key else label("churn.other_missing", lang).format(feature=feature)
    if feature in _COUNTS:
        n = round(value)
        form = "zero" if n == 0 and feature in _ZERO_FORMS else "one" if n == 1 else "other"
        return label(f"churn.{feature}.{form}", lang).format(v=value)
    if feature in CHURN_FEATURES:
        return label(f"churn.{feature}", lang).format(v=value)
    return label("churn.other", lang).format(feature=feature, v=value)  # a column the caller added


def _describe(feature: str, value: float, delta: float, lang: Lang) -> str:
    """One reason, e.g. "inactive 45 days (+0.21)" / "已 45 天未活跃（+0.21）"."""
    return label("churn.reason", lang).format(text=_phrase(feature, value, lang), delta=delta)


def check_lang(lang) -> Lang:
    """``lang`` if it is one of ``i18n.LANGS``; InputError otherwise."""
    if lang not in LANGS:
        raise InputError(f"lang = {lang!r}; expected one of {', '.join(repr(x) for x in LANGS)}")
    return lang


class ChurnModel:
    """Calibrated gradient-boosted churn classifier with per-user reasons.

    A ``HistGradientBoostingClassifier`` (handles missing values and skewed counts without
    scaling) inside ``CalibratedClassifierCV``, so ``predict_proba`` can be read as a
    probability (used in targeting and compared by Brier score with the BTYD baselines).

    Parameters
    ----------
    random_state
        Seed of the boosting's (and the folds') randomness; stored unchanged.
    calibration
        ``"sigmoid"`` (Platt), ``"isotonic"`` or ``"auto"``: isotonic from ``5000`` training
        users on, sigmoid below. Isotonic regression is the more flexible map but overfits
        small calibration folds (scikit-learn's user guide warns below ~1000 samples per
        fold); boosted trees' distortion is mostly sigmoid-shaped, which Platt scaling fixes
        with two parameters, so small shops get the robust choice and large ones the flexible one.
    cv
        Calibration folds (reduced to the size of the smaller class when that is smaller).
    max_iter, learning_rate, max_leaf_nodes, l2_regularization
        Passed to the boosting.
    max_train_rows
        Above this many users the classifier trains on a random sample of them: 17 features need
        far fewer rows than a large shop has, and training time grows with the rows.
    ensemble
        Average the calibrated fold models (True) or refit one booster on all rows (False);
        "auto": the average up to ``ENSEMBLE_ROWS`` training users, one booster above.

    Attributes
    ----------
    feature_names_ : list of str
        The columns used: those given to ``fit`` with at least 10 non-missing values.
    medians_ : pandas.Series
        Training medians, the reference values of :meth:`reasons`.
    calibration_ : str
        The calibration method used.
    churn_rate_ : float
        Share of churners in the training labels.
    """

    def __init__(
        self,
        random_state=0,
        *,
        calibration: Literal["auto", "sigmoid", "isotonic"] = "auto",
        cv: int = 5,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        l2_regularization: float = 1.0,
        max_train_rows: int = 200_000,
        ensemble: Literal["auto"] | bool = "auto",
    ):
        self.random_state = random_state
        self.max_train_rows = max_train_rows
        self.ensemble = ensemble
        self.calibration = calibration
        self.cv = cv
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization

    model_: CalibratedClassifierCV | None = None

    # ------------------------------------------------------------------ fit / predict
    def fit(self, features: pd.DataFrame, churned) -> "ChurnModel":
        """Fit on one row of numeric features per user and a churned (True/1) label per row."""
        if self.calibration not in ("auto", "sigmoid", "isotonic"):
            raise InputError(f"calibration = {self.calibration!r}; expected 'auto', 'sigmoid' or 'isotonic'")
        X = self._check_features(features, fitting=True)
        # a (nearly) empty column carries nothing, and scikit-learn's binning fails on an
        # all-missing one (as a cross-validation fold may see it): leave such columns out
        X = X.loc[:, X.notna().sum() >= _MIN_OBSERVED]
        if X.shape[1] == 0:
            raise InputError(f"no feature has at least {_MIN_OBSERVED} non-missing values")
        y = np.asarray(churned)
        if y.ndim != 1 or len(y) != len(X):
            raise InputError(f"churned has shape {y.shape}; expected one label per row of features ({len(X)})")
        if pd.isna(y).any():
            raise InputError("churned has missing labels; expected True/False for every user")
        y = y.astype(bool).astype(np.int64)
        n_minority = int(min(y.sum(), len(y) - y.sum()))
        if n_minority < 2:
            raise InputError(
                f"churn labels have {int(y.sum())} churners and {int(len(y) - y.sum())} retained users; "
                "expected at least 2 of each",
                hint="use a longer history or another horizon so that both outcomes occur",
            )
        method = self.calibration
        if method == "auto":
            method = "isotonic" if len(y) >= 5000 else "sigmoid"
        booster = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        )
        # Up to ENSEMBLE_ROWS users, the average of the fold models (scikit-learn's default, the
        # better AUC: up to 0.015 on the shops in docs/predictions.md); above, one booster refitted
        # on all rows after calibrating on out-of-fold scores, so that scoring (and the reasons,
        # ~20 scorings per user) runs one booster instead of one per fold (BENCHMARKS.md)
        ensemble = len(y) <= ENSEMBLE_ROWS if self.ensemble == "auto" else bool(self.ensemble)
        model = CalibratedClassifierCV(booster, method=method, cv=max(2, min(self.cv, n_minority)), ensemble=ensemble)
        Xf, yf = X.to_numpy(), y
        if len(y) > self.max_train_rows:  # a random sample in each class keeps the churn rate
            rng = np.random.default_rng(self.random_state)
            keep = np.sort(rng.choice(len(y), self.max_train_rows, replace=False))
            Xf, yf = Xf[keep], y[keep]
        with _threads(len(Xf)):
            model.fit(Xf, yf)
        self.model_ = model
        self.feature_names_ = list(X.columns)
        self.medians_ = X.median(skipna=True)
        self.calibration_ = method
        self.churn_rate_ = float(y.mean())
        self.n_train_ = int(len(y))
        return self

    def _check_fitted(self) -> None:
        if self.model_ is None:
            raise NotFittedError("ChurnModel is not fitted yet; call fit() first", hint="ChurnModel().fit(features, churned)")

    def _check_features(self, features: pd.DataFrame, *, fitting: bool = False) -> pd.DataFrame:
        if not isinstance(features, pd.DataFrame):
            raise InputError(f"features must be a pandas DataFrame; got {type(features).__name__}")
        if len(features) == 0:
            raise InputError("features has no rows; expected one row per user")
        names = list(features.columns) if fitting else self.feature_names_
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise InputError(f"features lack the column(s) {missing} the model was fitted on")
        X = features[names]
        bad = [c for c in names if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
        if bad:
            raise InputError(f"feature column(s) {bad} are not numeric", hint="use churn_features(profile)")
        return X.astype("float64")

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn) per row (a 1-D array, unlike scikit-learn's two columns)."""
        self._check_fitted()
        X = self._check_features(features)
        with _threads(len(X)):
            return self.model_.predict_proba(X.to_numpy())[:, 1]

    # ------------------------------------------------------------------ reasons
    def _missing_groups(self) -> list[list[int]]:
        """Columns whose missing value reads the same (``_MISSING_KEY``), e.g. the seven that say
        "no purchase yet": one reason, weighed by setting them to the median together."""
        by_key: dict[str, list[int]] = {}
        for j, name in enumerate(self.feature_names_):
            if name in _MISSING_KEY:
                by_key.setdefault(_MISSING_KEY[name], []).append(j)
        return [cols for cols in by_key.values() if len(cols) > 1]

    def _perturbed(self, X: np.ndarray, groups: list[list[int]]):
        """P(churn) per row, the drop when each feature is set to its median, and the drop when
        each group's *missing* members are set to their medians together (models/_perturb.py)."""
        medians = self.medians_[self.feature_names_].to_numpy()
        return perturbed(self.model_, X, medians, groups, parallel_rows=_PARALLEL_ROWS)

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per user and feature: the drop in P(churn) when that feature is set to the training median.

        Perturbation attribution, vectorised: every user's copy with one feature replaced
        is scored in a single stacked ``predict_proba`` (in blocks that bound memory).
        Positive values push towards churn. Not additive across features (interactions are
        ignored), but each value answers a concrete question: "how much lower would this
        user's risk be with a typical value of this feature?".
        """
        self._check_fitted()
        X = self._check_features(features).to_numpy()
        _, delta, _ = self._perturbed(X, [])
        return pd.DataFrame(delta, index=features.index, columns=self.feature_names_)

    def reasons(self, features: pd.DataFrame, top: int = 3, *, lang: Lang = "en",
                probabilities: np.ndarray | None = None) -> list[str]:
        """Up to ``top`` reasons per user, strongest first, in ``lang`` ("en" or "zh"):
        "inactive 45 days (+0.21); 2 orders (+0.05)" / "已 45 天未活跃（+0.21）；2 笔订单（+0.05）".

        The number in brackets is how much lower the user's churn probability would be with
        the median user's value (:meth:`contributions`). Only features that raise the user's
        risk by more than 0.005 count. Each reason appears once: features whose missing
        value reads the same ("no purchase yet": no recency, average order, P(alive), RFM
        scores...) are one reason, weighed by setting the missing ones to the median together
        (one at a time, the others still missing, they barely move the risk). A user above
        the training churn rate whose risk no feature explains alone gets a reason that says
        so ("risk 93%, above the average 61%, with no single feature standing out"). A user at or
        below the training churn rate gets an empty string: there is no risk to explain, and
        skipping them halves the cost, ~20 scorings per user explained. Phrases come from ``i18n``.
        """
        if not (isinstance(top, (int, np.integer)) and top >= 1):
            raise InputError(f"top = {top!r}; expected a whole number >= 1")
        check_lang(lang)
        self._check_fitted()
        separator = label("churn.separator", lang)
        values = self._check_features(features).to_numpy()
        if probabilities is None:  # the caller may pass predict_proba(features) it already has
            with _threads(len(values)):
                probabilities = self.model_.predict_proba(values)[:, 1]
        risky = np.flatnonzero(np.asarray(probabilities) > self.churn_rate_)
        out = [""] * len(values)
        if len(risky) == 0:
            return out
        # users with the same feature values get the same reasons: each distinct row is explained once
        codes = pd.DataFrame(values[risky]).groupby(list(range(values.shape[1])), dropna=False, sort=False).ngroup()
        codes = codes.to_numpy()
        values = values[risky][np.unique(codes, return_index=True)[1]]
        groups = self._missing_groups()
        p0, delta, group_delta = self._perturbed(values, groups)
        # a group's missing members stand as one reason: the first carries the joint drop
        for g, cols in enumerate(groups):
            missing = np.isnan(values[:, cols])
            first = missing & (np.cumsum(missing, axis=1) == 1)
            sub = delta[:, cols]
            sub[missing] = -np.inf
            sub[first] = np.broadcast_to(group_delta[:, [g]], sub.shape)[first]
            delta[:, cols] = sub
        order = np.argsort(-delta, axis=1, kind="stable")
        names = self.feature_names_
        texts = []
        for i, cols in enumerate(order):  # formatting strings is per row by nature
            parts: list[str] = []
            for j in cols:
                if len(parts) == top or not delta[i, j] > _MIN_REASON_DELTA:
                    break
                text = _describe(names[j], float(values[i, j]), float(delta[i, j]), lang)
                if text not in parts:  # never the same reason twice
                    parts.append(text)
            if not parts:
                parts.append(label("churn.above_average", lang).format(p=p0[i], base=self.churn_rate_))
            texts.append(separator.join(parts))
        for i, code in zip(risky, codes):
            out[i] = texts[code]
        return out

    def __repr__(self) -> str:
        fitted = "" if self.model_ is None else f", fitted on {self.n_train_} users ({self.calibration_})"
        return f"ChurnModel(random_state={self.random_state!r}{fitted})"
