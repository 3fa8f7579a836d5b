"""Churn: labels from the window after the cutoff only, leak-free features, a calibrated classifier, reasons."""

import datetime as dt
import re

import ibis
import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from sklearn.metrics import roc_auc_score

from builders import event, order, table
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError, NotFittedError
from userstrata.features._time import Clock
from userstrata.models.churn import CHURN_FEATURES, ChurnModel, churn_labels
from userstrata.models.predict import fit_churn_model, model_inputs
from userstrata.schema import CANONICAL

CUTOFF = dt.date(2024, 6, 30)
CLOCK = Clock("Asia/Shanghai", "duckdb")  # local = UTC + 8


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


# -- labels -------------------------------------------------------------------------------------


def _label_tables():
    history = [order(f"h-{u}", u, "2024-06-01 04:00", 10.0) for u in
               ("in", "last_day", "after", "cutoff_day", "cancel", "event", "none")]
    later = [
        order("o1", "in", "2024-07-10 04:00", 20.0),
        # local 2024-07-30 23:00, the last day of a 30-day window (UTC date is still 07-30)
        order("o2", "last_day", "2024-07-30 15:00", 20.0),
        # local 2024-07-31 01:00: one day past the window, though its UTC date is 07-30
        order("o3", "after", "2024-07-30 17:00", 20.0),
        # local 2024-06-30 20:00: on the cutoff day itself, so before the window
        order("o4", "cutoff_day", "2024-06-30 12:00", 20.0),
        order("o5", "cancel", "2024-07-05 04:00", 20.0, status="cancelled"),
        order("o6", "newcomer", "2024-07-05 04:00", 20.0),  # first seen after the cutoff
    ]
    events = [event("e1", "event", "2024-07-05 04:00", "login")]
    return table("orders", history + later), table("events", events)


@pytest.mark.parametrize("activity", ["purchase", "any"])
def test_labels_use_only_the_horizon_after_the_cutoff(activity):
    orders, events = _label_tables()
    got = _con().execute(
        churn_labels(orders, events, cutoff=CUTOFF, horizon_days=30, clock=CLOCK, activity=activity)
    ).set_index("user_id")["churned"].to_dict()
    expected = {
        "in": False,  # its only purchase after the cutoff is within the horizon
        "last_day": False,
        "after": True,
        "cutoff_day": True,
        "cancel": True,  # a cancelled order is no purchase
        "event": activity == "purchase",  # a login keeps the user only when any activity counts
        "none": True,
    }
    assert got == expected  # the newcomer was not a user at the cutoff


def test_labels_for_a_given_population():
    orders, events = _label_tables()
    population = ibis.memtable(pd.DataFrame({"user_id": ["in", "ghost"]}))
    got = _con().execute(
        churn_labels(orders, events, cutoff=CUTOFF, horizon_days=30, clock=CLOCK, population=population)
    ).set_index("user_id")["churned"].to_dict()
    assert got == {"in": False, "ghost": True}
    with pytest.raises(InputError, match="activity"):
        churn_labels(orders, events, cutoff=CUTOFF, horizon_days=30, clock=CLOCK, activity="visits")


# -- features do not leak -----------------------------------------------------------------------


def _naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """The simulator's UTC instants as the canonical naive-UTC timestamps."""
    return frame.assign(
        **{c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in frame.columns
           if isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    paths = simulate_shop(2500, tmp_path_factory.mktemp("shop"), seed=11)
    return {k: _naive_utc(pd.read_parquet(paths[k])) for k in ("users", "orders", "order_items", "events", "truth")}


def _tables(frames):
    return {k: ibis.memtable(frames[k], schema=CANONICAL[k].schema) for k in ("users", "orders", "order_items", "events")}


def _local_date(ts: pd.Series) -> pd.Series:
    return (ts + pd.Timedelta(hours=8)).dt.date


def test_data_after_the_cutoff_does_not_change_the_features(shop):
    cutoff = dt.date(2024, 3, 31)
    con = _con()
    kwargs = dict(as_of=cutoff, settings=Settings(), engine="duckdb", execute=con.execute)
    full = model_inputs(**_tables(shop), **kwargs)

    # the same shop, but everything after the cutoff changed: later rows dropped, others added,
    # and refunds dated after the cutoff rewritten
    altered = {k: v.copy() for k, v in shop.items()}
    o = altered["orders"]
    o = o[_local_date(o["ts"]) <= cutoff].copy()
    late_refund = o["refunded_at"].notna() & (_local_date(o["refunded_at"]) > cutoff)
    assert late_refund.any()
    o.loc[late_refund, "refund_amount"] = o.loc[late_refund, "amount"]
    extra = o.head(300).copy()
    extra["order_id"] = "late-" + extra["order_id"]
    extra["ts"] = pd.Timestamp("2024-04-15 03:00")
    altered["orders"] = pd.concat([o, extra], ignore_index=True)
    e = altered["events"]
    e = e[_local_date(e["ts"]) <= cutoff].copy()
    extra_e = e.head(300).copy()
    extra_e["event_id"] = "late-" + extra_e["event_id"].astype(str)
    extra_e["ts"] = pd.Timestamp("2024-05-01 03:00")
    altered["events"] = pd.concat([e, extra_e], ignore_index=True)
    items = altered["order_items"]
    altered["order_items"] = items[items["order_id"].isin(altered["orders"]["order_id"])]
    changed = model_inputs(**_tables(altered), **kwargs)

    assert full.purchase_model is not None and "p_alive" in full.features.columns
    assert_frame_equal(full.features, changed.features)
    assert_series_equal(full.p_alive, changed.p_alive)
    assert full.purchase_model.params_ == pytest.approx(changed.purchase_model.params_, rel=1e-12)


# -- the classifier -----------------------------------------------------------------------------


def _synthetic_features(n, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.gamma(2.0, 5.0, n) for name in CHURN_FEATURES})
    frame["inactive_days"] = rng.integers(0, 101, n).astype(float)
    frame["refund_rate"] = rng.random(n)
    frame["p_alive"] = rng.random(n)
    frame.index = [f"u{i}" for i in range(n)]
    return frame


def test_top_reason_names_the_feature_that_drives_churn():
    train = _synthetic_features(1500, seed=1)
    model = ChurnModel(random_state=0).fit(train, train["inactive_days"] > 60)
    assert model.medians_["inactive_days"] < 60  # the typical user is not at risk

    users = pd.DataFrame([model.medians_] * 2, index=["gone", "active"])
    users.loc["gone", "inactive_days"] = 120.0
    users.loc["active", "inactive_days"] = 5.0
    risk = model.predict_proba(users)
    assert risk[0] > 0.9 and risk[1] < 0.1
    reasons = model.reasons(users, top=3)
    # the label is inactive_days > 60 exactly, so the drop to the median can be the whole risk
    assert re.fullmatch(r"inactive 120 days \(\+(0\.\d\d|1\.00)\)", reasons[0].split("; ")[0]), reasons
    assert "inactive" not in reasons[1]  # being recently active is no reason to churn
    contributions = model.contributions(users)
    assert contributions.loc["gone"].idxmax() == "inactive_days"
    assert contributions.loc["gone", "inactive_days"] == pytest.approx(risk[0] - model.predict_proba(
        users.loc[["gone"]].assign(inactive_days=model.medians_["inactive_days"]))[0])


@pytest.mark.parametrize("by_tree", [True, False])
def test_contributions_equal_scoring_each_changed_copy_alone(monkeypatch, by_tree):
    """Both ways of scoring the copies (re-running only the trees that split on the changed
    feature, or stacking whole copies) against the definition: for every user and feature,
    P(churn) minus P(churn) with that one feature at the training median. Values at the median,
    missing values and blocks smaller than the data are all present; small and large (one
    booster) models both."""
    import userstrata.models._perturb as perturb
    import userstrata.models.churn as churn_module

    train = _synthetic_features(1200, seed=4)
    train.loc[train.index[:200], "aov"] = np.nan
    label = train["inactive_days"] + 20 * train["refund_rate"] > 60
    users = _synthetic_features(40, seed=5)
    users.loc[users.index[::4], "aov"] = np.nan
    if not by_tree:
        monkeypatch.setattr(perturb, "_tree_scorer", lambda model, n_threads: None)
    monkeypatch.setattr(perturb, "_TREE_BLOCK_ROWS", 7)
    monkeypatch.setattr(perturb, "BLOCK_CELLS", 7 * 18 * len(CHURN_FEATURES))
    for ensemble in (True, False):
        model = ChurnModel(random_state=0, ensemble=ensemble).fit(train, label)
        medians = model.medians_[model.feature_names_]
        at_median = users.copy()
        at_median.iloc[::3, 0] = medians.iloc[0]  # a third of the users sit at the first feature's median
        base = model.predict_proba(at_median)
        expected = pd.DataFrame(
            {f: base - model.predict_proba(at_median.assign(**{f: medians[f]})) for f in model.feature_names_},
            index=users.index,
        )
        scorer = perturb._tree_scorer(model.model_, 1)
        assert (scorer is not None) == by_tree  # the fitted trees read as expected, or the test says why not
        got = model.contributions(at_median)
        assert (got.iloc[::3, 0] == 0).all() and (got.abs() > 0.01).any().any()
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-12)
    assert churn_module.perturbed is perturb.perturbed


def test_probabilities_are_calibrated():
    """Labels drawn from known probabilities: the calibrated model's mean and Brier score match the truth's."""
    rng = np.random.default_rng(3)
    frame = _synthetic_features(8000, seed=2)
    logit = -1.0 + 0.04 * (frame["inactive_days"] - 50) - 2.0 * (frame["p_alive"] - 0.5)
    truth = 1 / (1 + np.exp(-logit.to_numpy()))
    churned = rng.random(len(frame)) < truth
    train, test = slice(0, 5000), slice(5000, None)
    model = ChurnModel(random_state=0).fit(frame.iloc[train], churned[train])
    assert model.calibration_ == "isotonic"  # 5,000 training users
    p = model.predict_proba(frame.iloc[test])
    assert ((p >= 0) & (p <= 1)).all()
    y = churned[test]
    assert p.mean() == pytest.approx(y.mean(), abs=0.02)
    brier, oracle = np.mean((p - y) ** 2), np.mean((truth[test] - y) ** 2)
    print(f"Brier {brier:.4f} vs oracle {oracle:.4f}")
    assert brier < oracle + 0.01
    small = ChurnModel(random_state=0).fit(frame.iloc[:800], churned[:800])
    assert small.calibration_ == "sigmoid"


def test_classifier_errors():
    frame = _synthetic_features(50, seed=4)
    with pytest.raises(NotFittedError, match="not fitted"):
        ChurnModel().predict_proba(frame)
    with pytest.raises(InputError, match="at least 2 of each"):
        ChurnModel().fit(frame, np.zeros(50, dtype=bool))
    with pytest.raises(InputError, match="one label per row"):
        ChurnModel().fit(frame, np.zeros(49, dtype=bool))
    model = ChurnModel().fit(frame.assign(empty=np.nan), np.arange(50) % 2 == 0)
    assert "empty" not in model.feature_names_  # an all-missing column is left out
    with pytest.raises(InputError, match="lack"):
        model.predict_proba(frame.drop(columns="inactive_days"))


def test_classifier_beats_random_on_the_simulated_shop(shop):
    """Trained on 2024-01-01 -> 2024-03-31, scored on 2024-03-31 -> 2024-06-29 (no leakage)."""
    cutoff, horizon = dt.date(2024, 3, 31), 90
    con = _con()
    tables = _tables(shop)
    common = dict(settings=Settings(), engine="duckdb", execute=con.execute)
    train = model_inputs(**tables, as_of=cutoff - dt.timedelta(days=horizon), **common)
    model = fit_churn_model(train, orders=tables["orders"], events=tables["events"], horizon_days=horizon, **common)
    now = model_inputs(**tables, as_of=cutoff, **common)
    labels = con.execute(
        churn_labels(tables["orders"], tables["events"], cutoff=cutoff, horizon_days=horizon, clock=CLOCK,
                     population=ibis.memtable(pd.DataFrame({"user_id": now.profile.index})))
    ).set_index("user_id")["churned"].reindex(now.features.index)
    y = labels.to_numpy().astype(int)
    p = model.predict_proba(now.features[model.feature_names_])
    auc = roc_auc_score(y, p)

    buyers = now.p_alive.notna().to_numpy()
    auc_buyers = roc_auc_score(y[buyers], p[buyers])
    auc_palive = roc_auc_score(y[buyers], 1 - now.p_alive.to_numpy()[buyers])
    # the truth: dropped out (per the simulator) on or before the cutoff
    truth = shop["truth"].set_index("user_id")["churned_at"].reindex(now.features.index)
    dead = (truth.notna() & (_local_date(truth.fillna(pd.Timestamp("2100-01-01"))) <= cutoff)).to_numpy()
    print(
        f"\nsimulated shop, {len(y)} users ({buyers.sum()} buyers), churn rate {y.mean():.3f}: "
        f"classifier AUC {auc:.3f} (all) / {auc_buyers:.3f} (buyers); 1 - P(alive) AUC {auc_palive:.3f} (buyers); "
        f"AUC for 'dropped out by the cutoff' (simulator truth): classifier {roc_auc_score(dead, p):.3f}, "
        f"1 - P(alive) {roc_auc_score(dead[buyers], 1 - now.p_alive.to_numpy()[buyers]):.3f}"
    )
    assert auc > 0.6 and auc_buyers > 0.6


# -- reasons in both languages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_driver_model():
    """Churn = inactive for more than 60 days AND (never bought OR a single order)."""
    rng = np.random.default_rng(5)
    frame = _synthetic_features(3000, seed=5)
    frame["orders"] = rng.integers(1, 12, len(frame)).astype(float)
    frame.loc[rng.random(len(frame)) < 0.3, "aov"] = np.nan  # no purchase: no average order
    churned = (frame["inactive_days"] > 60) & (frame["aov"].isna() | (frame["orders"] < 2))
    model = ChurnModel(random_state=0).fit(frame, churned)
    # two users at the median but for the two values that make each of them churn
    users = pd.DataFrame([model.medians_] * 2, index=["never_bought", "one_order"])
    users["inactive_days"] = 120.0
    users.loc["never_bought", "aov"] = np.nan
    users.loc["one_order", "orders"] = 1.0
    return model, users


# The phrases, written out here rather than read from i18n.py
PHRASES = {
    "en": {"inactive_days": "inactive 120 days", "aov": "no purchase yet", "orders": "1 order"},
    "zh": {"inactive_days": "已 120 天未活跃", "aov": "尚未购买", "orders": "1 笔订单"},
}
FORMAT = {"en": ("; ", "{text} (+{delta:.2f})"), "zh": ("；", "{text}（+{delta:.2f}）")}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_reasons_are_full_phrases_in_the_language_asked_for(two_driver_model, lang):
    model, users = two_driver_model
    assert (model.predict_proba(users) > 0.9).all()
    delta = model.contributions(users)
    drivers = {"never_bought": ["inactive_days", "aov"], "one_order": ["inactive_days", "orders"]}
    separator, form = FORMAT[lang]
    expected = []
    for user, features in drivers.items():
        # every other feature sits at the median: setting it to the median changes nothing
        others = delta.loc[user].drop(features)
        assert (others == 0).all() and (delta.loc[user, features] > 0.5).all()
        ranked = sorted(features, key=lambda f: (-delta.loc[user, f], model.feature_names_.index(f)))
        expected.append(separator.join(form.format(text=PHRASES[lang][f], delta=delta.loc[user, f]) for f in ranked))
    got = model.reasons(users, top=3, lang=lang) if lang == "zh" else model.reasons(users, top=3)
    assert got == expected


def test_reasons_count_forms_and_an_unknown_language(two_driver_model):
    model, users = two_driver_model
    many = users.loc[["one_order"]].assign(orders=0.0)  # "0 orders": the plural form
    assert "0 orders (+" in model.reasons(many)[0] and "0 笔订单（+" in model.reasons(many, lang="zh")[0]
    with pytest.raises(InputError, match="lang = 'fr'; expected one of 'zh', 'en'"):
        model.reasons(users, lang="fr")


# -- each reason once, and a reason for everyone at risk ---------------------------------------------

def test_features_that_read_the_same_are_one_reason_weighed_together():
    # A missing average order and a missing recency both read "no purchase yet". Here each is
    # also missing, alone, for some buyers, so only both together mark a never-buyer, and the
    # classifier needs both. Before: "no purchase yet (+0.xx); no purchase yet (+0.yy)", each
    # measured with the other still missing; now one reason, measured with both at the median.
    rng = np.random.default_rng(11)
    frame = _synthetic_features(3000, seed=11)
    never = rng.random(len(frame)) < 0.3
    gap = rng.random(len(frame))
    frame.loc[never | (gap < 0.2), "aov"] = np.nan
    frame.loc[never | (gap > 0.8), "recency_days"] = np.nan
    churned = (frame["inactive_days"] > 60) & never
    model = ChurnModel(random_state=0).fit(frame, churned)
    user = pd.DataFrame([model.medians_], index=["never_bought"])
    user["inactive_days"] = 120.0
    user[["aov", "recency_days"]] = np.nan
    risk = model.predict_proba(user)[0]
    median = {c: model.medians_[c] for c in ("aov", "recency_days", "inactive_days")}
    joint = risk - model.predict_proba(user.assign(aov=median["aov"], recency_days=median["recency_days"]))[0]
    inactive = risk - model.predict_proba(user.assign(inactive_days=median["inactive_days"]))[0]
    single = [risk - model.predict_proba(user.assign(**{c: median[c]}))[0] for c in ("aov", "recency_days")]
    assert joint > 0.5 and inactive > 0.5 and min(single) > 0.005  # each alone would be a reason
    first, second = sorted([(joint, "no purchase yet"), (inactive, "inactive 120 days")], key=lambda p: -p[0])
    want = f"{first[1]} (+{first[0]:.2f}); {second[1]} (+{second[0]:.2f})"
    assert model.reasons(user, top=3) == [want]
    zh = model.reasons(user, top=3, lang="zh")[0]
    assert zh.count("尚未购买") == 1 and zh.count("已 120 天未活跃") == 1


def test_a_user_at_risk_whom_no_single_feature_explains_still_gets_a_reason(two_driver_model, monkeypatch):
    # the rule by hand: no feature lowers the risk by more than 0.005 when set to the median;
    # above the training churn rate that is said in words, at or below it nothing is said
    model, users = two_driver_model
    base = model.churn_rate_
    k = len(model.feature_names_)
    risk = np.array([0.93, base])
    monkeypatch.setattr(model.model_, "predict_proba", lambda X: np.column_stack([1 - risk, risk])[: len(X)])
    monkeypatch.setattr(model, "_perturbed", lambda X, groups: (
        risk[: len(X)], np.full((len(X), k), 0.004), np.zeros((len(X), len(groups)))))
    pct = f"{0.93:.0%}", f"{base:.0%}"
    assert model.reasons(users) == [
        f"risk {pct[0]}, above the average {pct[1]}, with no single feature standing out", ""]
    assert model.reasons(users, lang="zh") == [f"流失风险 {pct[0]}，高于平均的 {pct[1]}，无单一突出因素", ""]


def test_zero_days_read_as_today(two_driver_model):
    model, users = two_driver_model
    from userstrata.models.churn import _describe

    assert _describe("recency_days", 0.0, 0.1, "en") == "last purchase today (+0.10)"
    assert _describe("inactive_days", 0.0, 0.1, "zh") == "今天有活跃（+0.10）"
    assert _describe("tenure_days", 0.0, 0.1, "en") == "first seen today (+0.10)"
    assert _describe("orders", 0.0, 0.1, "en") == "0 orders (+0.10)"


def test_on_a_simulated_shop_reasons_are_unique_and_nobody_at_risk_goes_without(tmp_path):
    from userstrata.models.predict import churn_model_at
    from userstrata.workspace import Workspace

    paths = simulate_shop(1000, tmp_path / "shop", seed=7)
    with Workspace.open(":memory:") as ws:
        for name in ("users", "orders", "order_items", "events"):
            ws.load(name, paths[name])
        as_of = ws.latest_date()
        out = ws.predict(as_of, horizon_days=90)
        tables = {name: ws.table(name) for name in ("users", "orders", "order_items", "events")}
        base = churn_model_at(tables, as_of=as_of, horizon_days=90, settings=ws.settings,
                              engine=ws.store.engine, execute=ws.store.con.execute).churn_rate_
    reasons = out["churn_reasons"].map(lambda s: [r.rsplit(" (+", 1)[0] for r in s.split("; ")] if s else [])
    duplicated = reasons.map(lambda r: len(r) != len(set(r)))
    assert not duplicated.any(), out.loc[duplicated, "churn_reasons"].head().tolist()
    at_risk = out["churn_probability"] > base
    assert at_risk.sum() > 100
    assert (reasons[at_risk].map(len) >= 1).all(), out.loc[at_risk & (reasons.map(len) == 0)].head()


def test_small_shops_average_the_fold_models_large_ones_score_one(monkeypatch):
    import importlib

    churn = importlib.import_module("userstrata.models.churn")
    train = _synthetic_features(1500, seed=3)
    y = train["inactive_days"] > 60
    assert len(ChurnModel(random_state=0).fit(train, y).model_.calibrated_classifiers_) == 5  # one per fold
    monkeypatch.setattr(churn, "ENSEMBLE_ROWS", 1000)  # as if the shop were large
    one = ChurnModel(random_state=0).fit(train, y)
    assert len(one.model_.calibrated_classifiers_) == 1
    assert len(ChurnModel(random_state=0, ensemble=True).fit(train, y).model_.calibrated_classifiers_) == 5
