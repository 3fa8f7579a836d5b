"""Experiment arms: deterministic SHA-256 assignment, shares within sampling error, independent
experiments, salt; the plan as touches rows."""

from __future__ import annotations

import datetime as dt_
import hashlib

import numpy as np
import pandas as pd
import pytest

from userstrata.activate.experiments import assign, to_touches, uniform
from userstrata.activate.plan import build_plan
from userstrata.activate.playbooks import Playbook
from userstrata.errors import InputError
from userstrata.schema import TOUCHES

IDS = pd.Series([f"user{i}" for i in range(20_000)])


def test_arm_follows_the_sha256_of_salt_experiment_and_user_by_hand():
    digest = hashlib.sha256(b"pepper:recall:user7").digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    expected = "A" if u < 0.3 else ("B" if u < 0.9 else "holdout")
    assert uniform(["user7"], "recall", "pepper")[0] == pytest.approx(u, abs=1e-15)
    assert assign(["user7"], "recall", {"A": 0.3, "B": 0.6, "holdout": 0.1}, salt="pepper").iloc[0] == expected


def test_same_arm_on_every_run_and_whatever_the_order_or_company():
    first = assign(IDS, "exp", salt="s").set_axis(IDS)
    again = assign(IDS, "exp", salt="s").set_axis(IDS)
    shuffled = IDS.sample(frac=1, random_state=1)
    alone = assign(shuffled.iloc[:50], "exp", salt="s").set_axis(shuffled.iloc[:50])
    assert (first == again).all()
    assert (alone == first[alone.index]).all()


def test_shares_within_sampling_error():
    variants = {"A": 0.45, "B": 0.45, "holdout": 0.10}
    shares = assign(IDS, "share-check", variants).value_counts(normalize=True)
    for arm, p in variants.items():
        assert abs(shares[arm] - p) < 4 * np.sqrt(p * (1 - p) / len(IDS)), arm


def test_experiments_are_independent_and_the_salt_reshuffles():
    half = {"A": 0.5, "B": 0.5}
    one = assign(IDS, "first", half)
    two = assign(IDS, "second", half)
    joint = pd.crosstab(one, two, normalize=True)
    assert (abs(joint - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(IDS))).all().all()
    salted = assign(IDS, "first", half, salt="other")
    assert 0.45 < (salted == one).mean() < 0.55  # a new salt: agreement by chance only


def test_bad_shares_are_refused_in_both_languages():
    with pytest.raises(InputError) as err:
        assign(["u"], "x", {"A": 0.5, "B": 0.4})
    assert "adding up to 1" in str(err.value) and "合计为 1" in err.value.text("zh")


def test_to_touches_keeps_sent_and_holdout_rows_in_utc_with_stable_ids():
    prof = pd.DataFrame({"user_id": [f"u{i}" for i in range(60)], "tier": "engaged", "lifecycle": "mature"})
    books = [Playbook(name="exp", where="tier != ''", channel="sms", template="t", goal="recall",
                      variants={"A": 0.5, "holdout": 0.5}),
             Playbook(name="low", where="tier != ''", channel="app_push", template="t", goal="care", priority=0)]
    members = pd.DataFrame({"user_id": prof["user_id"], "exp": True, "low": True})
    from userstrata.config import CadenceSettings

    cadence = CadenceSettings(weekly_caps={"explorer": 1, "regular": 1, "engaged": 1, "co_builder": 1})
    plan = build_plan(prof, books, start=dt_.date(2024, 7, 1), days=1, members=members, cadence=cadence)
    touches = to_touches(plan.contacts, timezone="Asia/Shanghai")
    assert list(touches.columns) == list(TOUCHES.columns)
    c = plan.contacts
    held = c[c["reason_code"] == "holdout"]
    assert len(held) and set(touches.loc[touches["outcome"] == "holdout", "user_id"]) == set(held["user_id"])
    assert (touches.loc[touches["outcome"] == "holdout", "variant"] == "holdout").all()
    # cap 1: "low" is dropped by the cap for everyone (exp ranks first): not a touch
    assert "low" not in set(touches["campaign"])
    sent = c[c["status"].isin(["planned", "moved"])]
    assert (touches["outcome"] == "planned").sum() == len(sent)
    one = touches.iloc[0]
    local = c[(c["user_id"] == one["user_id"]) & (c["playbook"] == one["campaign"])]["send_at"].iloc[0]
    assert one["ts"] == local - pd.Timedelta(hours=8)  # Shanghai is UTC+8
    assert touches["touch_id"].is_unique and (to_touches(plan.contacts)["touch_id"] == touches["touch_id"]).all()
