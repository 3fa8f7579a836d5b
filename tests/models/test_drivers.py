"""Covariates on a shop: a first-order value that drives purchasing is kept, a random channel is not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from userstrata import Workspace
from userstrata.errors import InputError
from userstrata.models.btyd import simulate_bgnbd_covariates

AS_OF = dt.date(2024, 6, 30)
EFFECT = 0.8  # on the purchase rate, per standard deviation of log(1 + first-order value)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """3,000 buyers whose purchase rate rises with their first order's value, as orders in a workspace."""
    n = 3000
    rng = np.random.default_rng(42)
    first_value = np.round(np.exp(rng.normal(4.0, 1.0, n)), 2)
    z = np.log1p(first_value)
    z = (z - z.mean()) / z.std()
    T = rng.integers(60, 360, n).astype(float)
    x, t_x, T = simulate_bgnbd_covariates(z, dict(r=0.5, alpha=40.0, a=0.8, b=2.5),
                                          {"purchase": [EFFECT]}, T, random_state=7)
    orders = []
    for i in range(n):
        start = AS_OF - dt.timedelta(days=int(T[i]))
        last = int(t_x[i])  # whole days after the first purchase
        k = int(min(x[i], last))  # repeat purchase days, each on its own day
        days = [] if k == 0 else sorted(rng.choice(np.arange(1, last), k - 1, replace=False).tolist()) + [last]
        orders.append((f"o{i}-0", f"u{i}", start, first_value[i]))
        orders += [(f"o{i}-{j + 1}", f"u{i}", start + dt.timedelta(days=d), 50.0) for j, d in enumerate(days)]
    frame = pd.DataFrame(orders, columns=["order_id", "user_id", "day", "amount"])
    frame["ts"] = pd.to_datetime(frame["day"]) + pd.Timedelta(hours=4)  # 12:00 in Shanghai
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)],
                          "channel": rng.choice(["抖音", "微信", "小红书"], n)})  # unrelated to buying
    ws = Workspace.open(tmp_path_factory.mktemp("drivers") / "w.duckdb")
    ws.load_frame("orders", frame[["order_id", "user_id", "ts", "amount"]], source="simulated")
    ws.load_frame("users", users, source="simulated")
    yield ws
    ws.close()


def test_the_driving_trait_is_kept_and_the_random_one_dropped(shop):
    result = shop.purchase_covariates(AS_OF)
    assert result.kept == ("log_first_order_value",) and result.dropped == ("channel",)
    assert result.holdout_gain > 2 * result.noise_sd
    coef = result.coefficients.set_index(["process", "covariate"])
    purchase = coef.loc[("purchase", "log_first_order_value")]
    assert abs(purchase["coef"] - EFFECT) < 4 * purchase["se"]  # recovered, within its own error
    assert "保留协变量" in result.reason("zh") and "channel" in result.reason("en")


def test_unknown_or_constant_covariates_are_refused(shop):
    with pytest.raises(InputError, match="expected some of channel, first_order_value"):
        shop.purchase_covariates(AS_OF, columns=("gender",))
