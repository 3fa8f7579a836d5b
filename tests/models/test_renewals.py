"""Membership renewals from orders: terms and spells by hand, sBG recovery end to end, Workspace and CLI."""

import datetime as dt
import math
import warnings

import ibis
import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from builders import order, table
from userstrata import Workspace
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.models.renewal_data import (
    MEMBER_COLUMNS,
    build_terms,
    plan_terms,
    plot_renewal_curves,
    renewals,
)

AS_OF = dt.date(2024, 6, 30)  # ends at 2024-06-30 16:00 UTC (midnight in Shanghai)


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


def _item(order_id, sku, price, quantity=1, line_no=1):
    return (order_id, line_no, sku, "会员", quantity, price)


def _run(orders, items, as_of=AS_OF, settings=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = renewals(table("orders", orders), table("order_items", items), as_of=as_of,
                          settings=settings or Settings(), execute=_con().execute, **kw)
    return result, [str(w.message) for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]


# --------------------------------------------------------------------------- plans


def test_plan_terms_exact_sku_first_then_the_most_specific_pattern():
    plans = Settings().renewals.plans
    got = plan_terms(["vip-month", "vip-year", "王者荣耀半年卡", "王者荣耀年卡", "周卡礼包", "QQ音乐连续包月",
                      "skin-basic", "coupon-30"], plans)  # fmt: skip
    assert got == {"vip-month": 30, "vip-year": 365, "王者荣耀半年卡": 182, "王者荣耀年卡": 365, "周卡礼包": 7,
                   "QQ音乐连续包月": 30}  # fmt: skip
    # an exact key beats a pattern that also matches it
    assert plan_terms(["超级月卡"], {"*月卡*": 30, "超级月卡": 31}) == {"超级月卡": 31}


# --------------------------------------------------------------------------- terms by hand


def test_orders_chain_into_terms_and_spells():
    day = pd.Timestamp
    lines = pd.DataFrame(
        [
            ("u1", "A", day("2024-01-01"), "vip-month", 1, 15.0, 30),  # term Jan 1 - Jan 31
            ("u1", "B", day("2024-01-29"), "vip-month", 1, 15.0, 30),  # early: Jan 31 - Mar 1
            ("u1", "C", day("2024-03-05"), "vip-month", 1, 15.0, 30),  # in grace (to Mar 8): Mar 5 - Apr 4
            ("u1", "D", day("2024-05-01"), "vip-month", 2, 15.0, 30),  # after grace: new spell, 60 days
            ("u1", "E", day("2024-01-10"), "vip-year", 1, 198.0, 365),  # another plan: its own chain
            ("u2", "F", day("2024-02-01"), "vip-month", 1, 15.0, 30),
        ],
        columns=["user_id", "order_id", "ts", "plan", "quantity", "price", "term_days"],
    )
    terms = build_terms(lines, grace_days=7).set_index("order_id")
    epoch = pd.Timestamp("1970-01-01")

    def days(text):
        return (pd.Timestamp(text) - epoch) / pd.Timedelta(days=1)

    expected = {  # start, end, spell, term_index
        "A": ("2024-01-01", "2024-01-31", 0, 0),
        "B": ("2024-01-31", "2024-03-01", 0, 1),
        "C": ("2024-03-05", "2024-04-04", 0, 2),
        "D": ("2024-05-01", "2024-06-30", 1, 0),
        "E": ("2024-01-10", "2025-01-09", 0, 0),
        "F": ("2024-02-01", "2024-03-02", 0, 0),
    }
    for order_id, (start, end, spell, index) in expected.items():
        row = terms.loc[order_id]
        assert row["start_day"] == pytest.approx(days(start)), order_id
        assert row["end_day"] == pytest.approx(days(end)), order_id
        assert (row["spell"], row["term_index"]) == (spell, index), order_id


def test_terms_depend_on_earlier_orders_only():
    rng = np.random.default_rng(5)
    n = 400
    lines = pd.DataFrame({
        "user_id": rng.choice(["u1", "u2", "u3", "u4"], n),
        "order_id": [f"o{i}" for i in range(n)],
        "ts": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.uniform(0, 540, n), unit="D"),
        "plan": rng.choice(["vip-month", "vip-quarter"], n),
        "quantity": rng.integers(1, 3, n),
        "price": 15.0,
        "term_days": 30,
    })  # fmt: skip
    cut = pd.Timestamp("2023-09-01")
    full = build_terms(lines, grace_days=7).set_index("order_id")
    early = build_terms(lines[lines.ts < cut], grace_days=7).set_index("order_id")
    cols = ["start_day", "end_day", "spell", "term_index"]
    pd.testing.assert_frame_equal(full.loc[early.index, cols], early[cols])


# --------------------------------------------------------------------------- a hand-built shop


HAND_ORDERS = [
    order("A", "u1", "2024-01-01 00:00", 15.0),
    order("B", "u1", "2024-01-29 00:00", 15.0),
    order("C", "u1", "2024-03-05 00:00", 15.0),
    order("D", "u1", "2024-05-01 00:00", 15.0),  # new spell; ends May 31, grace to Jun 7: lapsed
    order("S", "u1", "2024-02-10 00:00", 28.0),  # a skin: not a membership
    order("E", "u2", "2024-06-10 00:00", 15.0),  # active to Jul 10
    order("X", "u2", "2024-06-12 00:00", 15.0, status="cancelled"),  # not a purchase
    order("F", "u3", "2024-05-28 00:00", 15.0),  # ended Jun 27, in grace to Jul 4
    order("G", "u4", "2024-02-01 00:00", 136.0),  # two quarters: 180 days, to Jul 30
    order("H", "u5", "2024-06-01 00:00", 15.0, status="refunded", refund=15.0, refunded_at="2024-06-02 00:00"),
    order("L", "u5", "2024-07-02 00:00", 15.0),  # after as_of
    order("K", "u6", "2024-03-01 00:00", 88.0),  # 182 days, to Aug 30
    order("M", "u7", "2024-06-01 00:00", 15.0),  # to Jul 1 ...
    order("N", "u7", "2024-06-28 00:00", 15.0),  # ... renewed early: Jul 1 - Jul 31
]
HAND_ITEMS = [
    _item("A", "vip-month", 15.0), _item("B", "vip-month", 15.0), _item("C", "vip-month", 15.0),
    _item("D", "vip-month", 15.0), _item("E", "vip-month", 15.0), _item("X", "vip-month", 15.0),
    _item("F", "vip-month", 15.0), _item("G", "vip-quarter", 68.0, quantity=2), _item("H", "vip-month", 15.0),
    _item("L", "vip-month", 15.0), _item("K", "王者荣耀半年卡", 88.0), _item("M", "vip-month", 15.0),
    _item("N", "vip-month", 15.0),
    ("S", 1, "skin-basic", "皮肤", 1, 28.0),
]  # fmt: skip


def test_hand_built_shop_members_statuses_and_cohorts():
    result, messages = _run(HAND_ORDERS, HAND_ITEMS)
    members = result.members.set_index("user_id")
    assert list(result.members.columns) == list(MEMBER_COLUMNS)
    assert sorted(members.index) == ["u2", "u3", "u4", "u6", "u7"]  # u1 lapsed, u5's only term refunded
    assert members.loc["u2", "status"] == "active" and members.loc["u3", "status"] == "grace"
    assert members.loc["u4", "plan"] == "vip-quarter" and members.loc["u4", "term_days"] == 90
    assert members.loc["u4", "term_end"] == pd.Timestamp("2024-07-30")  # 2 x 90 days from Feb 1
    assert members.loc["u6", "plan"] == "王者荣耀半年卡" and members.loc["u6", "term_end"] == pd.Timestamp("2024-08-30")
    # days to expiry from 2024-06-30 16:00 UTC: u2 ends Jul 10 00:00 (9 days 8 h), u3 ended Jun 27 00:00
    assert members.loc["u2", "days_to_expiry"] == pytest.approx(9 + 8 / 24, abs=0.01)
    assert members.loc["u3", "days_to_expiry"] == pytest.approx(-(3 + 16 / 24), abs=0.01)
    assert members.loc["u7", "renewals"] == 1 and members.loc["u7", "term_end"] == pd.Timestamp("2024-07-31")
    assert (members.drop("u7")["renewals"] == 0).all()
    cohorts = result.cohorts[result.cohorts.plan == "vip-month"].set_index(["cohort", "period"])
    # u1's first spell (Jan; 2 renewals, lapsed), u1's second (May, lapsed) with u3 (May, in grace),
    # u2 and u7 (Jun): u7's early renewal is not counted yet, her first term's end + grace (Jul 8)
    # is still to come; counting it would resolve early payers sooner than leavers
    assert cohorts.loc["2024-01", "alive"].tolist() == [1, 1, 1, 0]
    assert cohorts.loc["2024-01", "censored"].tolist() == [0, 0, 0, 0]
    assert cohorts.loc["2024-05", "alive"].tolist() == [2, 0] and cohorts.loc["2024-05", "censored"].tolist() == [1, 0]
    assert cohorts.loc["2024-06", "alive"].tolist() == [2] and cohorts.loc["2024-06", "censored"].tolist() == [2]
    # too few members to fit: every plan says so, and predictions stay empty rather than invented
    assert result.models == {} and result.fits["alpha"].isna().all() and members["p_renew_next"].isna().all()
    assert any("no sBG fit for plan 'vip-month'" in m for m in messages)


def test_no_membership_sku_is_an_error_with_a_hint():
    with pytest.raises(InputError, match="no membership orders on or before 2024-06-30") as info:
        _run([order("S", "u1", "2024-02-10 00:00", 28.0)], [("S", 1, "skin-basic", "皮肤", 1, 28.0)])
    assert "[renewals.plans]" in info.value.hint


def test_plans_and_grace_come_from_the_settings():
    settings = Settings.from_dict({"renewals": {"plans": {"skin-basic": 10}, "grace_days": 0}})
    result, _ = _run(HAND_ORDERS, HAND_ITEMS, settings=settings)
    assert set(result.fits["plan"]) == {"skin-basic"}
    with pytest.raises(InputError):
        _run(HAND_ORDERS, HAND_ITEMS, periods=0)


# --------------------------------------------------------------------------- an sBG shop, end to end


def sbg_shop(alpha, beta, n_members, seed):
    """Monthly members who renew each month with their own 1 - theta, theta ~ Beta(alpha, beta),
    paying 1-5 days before the term ends; joining uniformly over 2023-01-01 .. 2024-06-20."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp("2023-01-01")
    end = pd.Timestamp("2024-06-30 16:00")
    orders, items = [], []
    theta = rng.beta(alpha, beta, n_members)
    for m in range(n_members):
        t = first + pd.Timedelta(days=float(rng.uniform(0, 536)))
        term_end = t + pd.Timedelta(days=30)
        k = 0
        while t < end:
            oid = f"m{m}-{k}"
            orders.append(order(oid, f"u{m}", t.strftime("%Y-%m-%d %H:%M"), 15.0))
            items.append(_item(oid, "vip-month", 15.0))
            if rng.random() < theta[m]:
                break
            t = term_end - pd.Timedelta(days=float(rng.uniform(1, 5)))
            term_end = term_end + pd.Timedelta(days=30)
            k += 1
    return orders, items


@pytest.fixture(scope="module")
def sbg_result():
    orders, items = sbg_shop(1.2, 2.5, 3000, seed=3)
    return _run(orders, items)


def test_renewals_recover_the_sbg_parameters_from_orders(sbg_result):
    result, messages = sbg_result
    fit = result.fits.set_index("plan").loc["vip-month"]
    assert abs(fit["alpha"] - 1.2) < 4 * fit["alpha_se"] and abs(fit["beta"] - 2.5) < 4 * fit["beta_se"]
    assert fit["retention_1"] == pytest.approx(fit["beta"] / (fit["alpha"] + fit["beta"]), rel=1e-12)
    # each member's odds: (beta + n) / (alpha + beta + n) for her n renewals; value = DERL x price
    members = result.members
    a, b = fit["alpha"], fit["beta"]
    assert members["p_renew_next"].to_numpy() == pytest.approx((b + members.renewals) / (a + b + members.renewals))
    rate = 1.01 ** (30 / (365.25 / 12)) - 1
    j = np.arange(1, 3000)
    for n in sorted(set(members.renewals))[:4]:
        ratio = np.cumprod((b + n + j - 1) / (a + b + n + j - 1))
        direct = float(np.sum(ratio * np.exp(-(j - 1) * math.log1p(rate))))
        got = members.loc[members.renewals == n, "derl"]
        assert got.to_numpy() == pytest.approx(direct, rel=1e-6)
    assert members["residual_value"].to_numpy() == pytest.approx(members["derl"].to_numpy() * 15.0)
    # the observed curve (censoring respected) follows the fitted one where many are at risk
    curve = result.curves[(result.curves.plan == "vip-month") & (result.curves.at_risk >= 300)]
    assert len(curve) >= 4
    assert np.abs(curve.observed_survival - curve.sbg_survival).max() < 0.03
    assert not [m for m in messages if "sBG" in m]


def test_backtest_scores_both_models_on_the_same_terms(sbg_result):
    result, _ = sbg_result
    bt = result.backtest.set_index("model")
    assert list(bt.index) == ["sbg", "classifier"]
    assert bt.loc["sbg", "terms"] == bt.loc["classifier", "terms"] > 100
    base = bt.loc["sbg", "renewed_share"]
    constant = -(base * math.log(base) + (1 - base) * math.log(1 - base))  # log loss of the base rate
    # heterogeneity makes renewals so far informative: the sBG ranks better than chance and
    # beats the constant guess on log loss
    assert bt.loc["sbg", "auc"] > 0.55 and bt.loc["sbg", "log_loss"] < constant
    # and is calibrated: within 3 binomial standard errors (~0.014 on ~780 terms) of the share
    # renewed. Counting renewals paid early before their term's end + grace would resolve
    # stayers sooner than leavers and miss by over 0.05 here.
    assert abs(bt.loc["sbg", "mean_predicted"] - base) < 0.04
    assert 0 <= bt.loc["classifier", "auc"] <= 1
    # the cutoff leaves room for every scored outcome: 30 days + 7 days of grace before as_of
    assert result.backtest_cutoff == dt.datetime(2024, 5, 24, 16, 0)


def test_chart_is_a_png(tmp_path):
    curves = pd.DataFrame({"plan": "vip-month", "period": np.arange(4), "at_risk": [100, 80, 40, 20],
                           "observed_survival": [1.0, 0.6, 0.45, 0.38], "sbg_survival": [1.0, 0.62, 0.46, 0.37]})
    for lang in ("zh", "en"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no Chinese font installed: English labels, with a warning
            fig = plot_renewal_curves(curves, lang=lang)
        fig.savefig(tmp_path / f"{lang}.png")
        assert (tmp_path / f"{lang}.png").stat().st_size > 1000
    ax = plot_renewal_curves(curves, lang="en").axes[0]
    assert ax.get_xlabel() == "terms since joining"


# --------------------------------------------------------------------------- Workspace and CLI


@pytest.fixture(scope="module")
def shop_workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("renewal_shop")
    paths = simulate_shop(1200, folder / "files", seed=5)
    path = folder / "shop.duckdb"
    with Workspace.open(path) as ws:
        for name in ("users", "orders", "order_items"):
            ws.load(name, paths[name])
    return path


def test_workspace_renewals_on_a_simulated_shop(shop_workspace):
    with Workspace.open(shop_workspace, create=False) as ws, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ws.renewals()
    assert result.as_of == AS_OF  # the simulator's last day
    fits = result.fits.set_index("plan")
    # the simulator's membership SKUs are found through the default plans
    assert {"vip-month", "vip-quarter", "vip-year"} <= set(fits.index)
    monthly = fits.loc["vip-month"]
    assert monthly["term_days"] == 30 and np.isfinite(monthly["alpha"]) and monthly["members"] >= MIN_FIT
    members = result.members
    assert set(members["status"]) <= {"active", "grace"} and members["user_id"].str.startswith("u").all()
    fitted = members["plan"].isin(result.models)
    assert members.loc[fitted, "p_renew_next"].between(0, 1).all()
    assert members.loc[~fitted, "p_renew_next"].isna().all()


MIN_FIT = 20


def test_cli_writes_the_member_file_and_the_chart(tmp_path, shop_workspace):
    from userstrata.cli import app
    import userstrata.cli.renewals  # noqa: F401  (registers the command)

    out, chart = tmp_path / "renewals.xlsx", tmp_path / "renewals.png"
    result = CliRunner().invoke(
        app, ["renewals", "--workspace", str(shop_workspace), "--out", str(out), "--chart", str(chart), "--lang", "zh"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "会员续费" in result.output and "会员续费预测已写入" in result.output
    assert chart.stat().st_size > 1000
    sheet = openpyxl.load_workbook(out, read_only=True).active
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header[:3] == ["用户ID", "会员套餐", "每期天数"] and "下次到期续费概率" in header
    frame = pd.read_excel(out, engine="openpyxl")
    assert set(frame["会员状态"]) <= {"有效", "宽限期"}
    bad = CliRunner().invoke(app, ["renewals", "--workspace", str(shop_workspace), "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and "unsupported file type" in bad.output
