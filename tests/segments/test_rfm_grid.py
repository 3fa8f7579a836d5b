"""RFM scores and the 8-cell grid.

Scores: with n buyers and ``below`` = buyers with a strictly worse value, the score is
``1 + floor(bins * below / n)`` (docs/profile.md); the grid splits R, F, M into high/low
against the buyers' mean or median. Expectations are worked by hand and by a plain-Python
reading of those rules.
"""

import bisect
import datetime as dt
import statistics
from fractions import Fraction

import ibis
import pandas as pd

from builders import AS_OF, order, run_profile, table
from userstrata.config import Settings
from userstrata.datasets import load_cdnow
from userstrata.schema import ORDERS
from userstrata.segments import build_profile, rfm_grid_summary


def _user(uid, days_ago: list[int], amount: float):
    return [order(f"{uid}-{d}", uid, f"2024-06-{30 - d:02d} 04:00" if d < 30 else "2024-05-20 04:00", amount)
            for d in days_ago]


def _buyer(uid: str, *, recency: int, frequency: int, monetary: float):
    """Purchases on ``frequency + 1`` days, the last ``recency`` days ago; all spend on the last."""
    rows = []
    for k in range(frequency + 1):
        day = AS_OF - dt.timedelta(days=recency + k)
        rows.append(order(f"{uid}-{k}", uid, f"{day} 04:00", monetary if k == 0 else 0.0))
    return rows


def reference_scores(values: dict[str, float], bins: int) -> dict[str, int]:
    """The documented score rule in plain Python (larger value = better)."""
    ordered = sorted(values.values())
    n = len(ordered)
    return {u: 1 + (bins * bisect.bisect_left(ordered, v)) // n for u, v in values.items()}


# -- scores -------------------------------------------------------------------------------

def test_identical_buyers_share_every_score():
    rows = [order(f"o{i}", f"u{i}", "2024-06-20 04:00", 25.0) for i in range(7)]
    got = run_profile(orders=rows)
    assert got[["rfm_r", "rfm_f", "rfm_m"]].nunique().tolist() == [1, 1, 1]
    # nobody is strictly worse than anyone: below = 0 for all, so all score 1
    assert (got[["rfm_r", "rfm_f", "rfm_m"]] == 1).all().all()


def test_scores_follow_the_rule_on_a_hand_made_case():
    # spend (yuan)  5  5  5  10  20  20  30   (n = 7, bins = 5)
    # below          0  0  0   3   4   4   6
    # 1 + 5*below//7 1  1  1   3   3   3   5
    spend = {"a": 5.0, "b": 5.0, "c": 5.0, "d": 10.0, "e": 20.0, "f": 20.0, "g": 30.0}
    recency = {"a": 1, "b": 9, "c": 9, "d": 9, "e": 2, "f": 3, "g": 20}  # fewer days = better
    # recency: below = buyers with more days; a:6 b,c,d:1 e:5 f:4 g:0 -> 5, 1, 1, 1, 4, 3, 1
    rows = []
    for u in spend:
        rows += _buyer(u, recency=recency[u], frequency=0, monetary=spend[u])
    got = run_profile(orders=rows)
    assert got["rfm_m"].astype(int).to_dict() == {"a": 1, "b": 1, "c": 1, "d": 3, "e": 3, "f": 3, "g": 5}
    assert got["rfm_r"].astype(int).to_dict() == {"a": 5, "b": 1, "c": 1, "d": 1, "e": 4, "f": 3, "g": 1}
    assert (got["rfm_f"] == 1).all()  # one purchase day each: one tie, the lowest score
    assert reference_scores(spend, 5) == got["rfm_m"].astype(int).to_dict()
    assert reference_scores({u: -r for u, r in recency.items()}, 5) == got["rfm_r"].astype(int).to_dict()


def test_ties_are_scored_alike_on_cdnow():
    # CDNOW's calibration period: most buyers have frequency 0, and many share spend and recency
    orders = load_cdnow(sample=True, timezone="Asia/Shanghai")
    for col in ("ts", "refunded_at"):
        orders[col] = pd.to_datetime(orders[col], utc=True).dt.tz_localize(None)
    expr = build_profile(
        users=table("users"), orders=ibis.memtable(orders, schema=ORDERS.schema),
        order_items=table("order_items"), events=table("events"),
        as_of=dt.date(1997, 9, 30), settings=Settings(),
    )
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    got = con.execute(expr).set_index("user_id")
    buyers = got[got.orders > 0]
    assert len(buyers) == 2357 and (buyers.frequency == 0).mean() > 0.5
    for value, score, sign in (("recency_days", "rfm_r", -1), ("frequency", "rfm_f", 1), ("monetary", "rfm_m", 1)):
        assert (buyers.groupby(value)[score].nunique() == 1).all(), score  # equal values, equal scores
        exact = {u: sign * (round(v * 100) if value == "monetary" else int(v)) for u, v in buyers[value].items()}
        assert buyers[score].astype(int).to_dict() == reference_scores(exact, 5), score
    assert (buyers.loc[buyers.frequency == 0, "rfm_f"] == 1).all()


# -- the grid -----------------------------------------------------------------------------

def test_each_cell_by_hand():
    # recency (days): mean over buyers; frequency: repeat days; monetary: net spend
    rows = (
        _user("vip", [1, 3, 5], 100.0)  # recent, 2 repeats, 300 -> important_value
        + _user("keep", [20, 22, 24], 100.0)  # old, frequent, big -> important_keep
        + _user("develop", [2], 300.0)  # recent, once, big -> important_develop
        + _user("retain", [25], 300.0)  # old, once, big -> important_retain
        + _user("gvalue", [1, 2, 4], 5.0)  # recent, frequent, small -> general_value
        + _user("gkeep", [21, 23, 26], 5.0)  # old, frequent, small -> general_keep
        + _user("gdevelop", [3], 5.0)  # recent, once, small -> general_develop
        + _user("gretain", [27], 5.0)  # old, once, small -> general_retain
    )
    got = run_profile(orders=rows)
    # means: recency (1+20+2+25+1+21+3+27)/8 = 12.5; frequency (2+2+0+0+2+2+0+0)/8 = 1;
    # monetary (300+300+300+300+15+15+5+5)/8 = 155
    assert got["rfm_cell"].to_dict() == {
        "vip": "important_value", "keep": "important_keep", "develop": "important_develop",
        "retain": "important_retain", "gvalue": "general_value", "gkeep": "general_keep",
        "gdevelop": "general_develop", "gretain": "general_retain",
    }
    summary = rfm_grid_summary(got.reset_index()).set_index("rfm_cell")
    assert summary["users"].tolist() == [1] * 8
    assert summary.loc["important_value", "mean_monetary"] == 300.0


# five buyers whose mean and median split differently on each of R, F and M
_SPLIT_BUYERS = {  # user: (recency days, frequency, spend)
    "A": (1, 0, 100.0),
    "B": (2, 1, 4.0),
    "C": (3, 2, 3.0),
    "D": (4, 3, 2.0),
    "E": (20, 10, 1.0),
}


def _split_rows():
    rows = []
    for u, (r, f, m) in _SPLIT_BUYERS.items():
        rows += _buyer(u, recency=r, frequency=f, monetary=m)
    return rows


def test_mean_split():
    # means: recency 6 -> A-D recent; frequency 3.2 -> E frequent; spend 22 -> A big
    r, f, m = zip(*_SPLIT_BUYERS.values())
    assert (statistics.mean(r), statistics.mean(f), statistics.mean(m)) == (6, 3.2, 22)
    got = run_profile(orders=_split_rows())["rfm_cell"].to_dict()
    assert got == {
        "A": "important_develop", "B": "general_develop", "C": "general_develop",
        "D": "general_develop", "E": "general_keep",
    }


def test_median_split():
    # medians: recency 3 -> A, B recent; frequency 2 -> D, E frequent; spend 3 -> A, B big
    r, f, m = zip(*_SPLIT_BUYERS.values())
    assert (statistics.median(r), statistics.median(f), statistics.median(m)) == (3, 2, 3)
    median = Settings.from_dict({"rfm": {"split": "median"}})
    got = run_profile(orders=_split_rows(), settings=median)["rfm_cell"].to_dict()
    assert got == {
        "A": "important_develop", "B": "important_develop", "C": "general_retain",
        "D": "general_keep", "E": "general_keep",
    }


def test_median_of_an_even_count_is_between_the_middle_values():
    # spend 1, 2, 3, 4: median 2.5, so 3 is high; recency 5 for all (a tie: nobody is recent)
    rows = []
    for u, spend in {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}.items():
        rows += _buyer(u, recency=5, frequency=0, monetary=spend)
    median = Settings.from_dict({"rfm": {"split": "median"}})
    got = run_profile(orders=rows, settings=median)["rfm_cell"].to_dict()
    assert got == {"a": "general_retain", "b": "general_retain", "c": "important_retain", "d": "important_retain"}


def test_a_buyer_exactly_at_the_mean_is_not_high():
    # spend 5.13, 9.59 and 7.36: the mean is exactly 7.36 (a float mean is 7.3599999...)
    spend = {"a": 5.13, "b": 9.59, "c": 7.36}
    assert sum(Fraction(str(v)) for v in spend.values()) / 3 == Fraction("7.36")
    rows = []
    for u, v in spend.items():
        rows += _buyer(u, recency=5, frequency=0, monetary=v)
    got = run_profile(orders=rows)["rfm_cell"].to_dict()
    assert got == {"a": "general_retain", "b": "important_retain", "c": "general_retain"}
