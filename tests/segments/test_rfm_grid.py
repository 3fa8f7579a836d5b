"""The 8-cell RFM grid: high/low against the buyers' mean on R, F and M."""

from builders import order, run_profile
from userstrata.config import Settings
from userstrata.segments import rfm_grid_summary


def _user(uid, days_ago: list[int], amount: float):
    return [order(f"{uid}-{d}", uid, f"2024-06-{30 - d:02d} 04:00" if d < 30 else "2024-05-20 04:00", amount)
            for d in days_ago]


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
    # means: recency (1+20+2+25+1+21+3+27)/8 = 12.5; frequency 0.25*... = (2+2+0+0+2+2+0+0)/8 = 1;
    # monetary (300+300+300+300+15+15+5+5)/8 = 155
    assert got["rfm_cell"].to_dict() == {
        "vip": "important_value", "keep": "important_keep", "develop": "important_develop",
        "retain": "important_retain", "gvalue": "general_value", "gkeep": "general_keep",
        "gdevelop": "general_develop", "gretain": "general_retain",
    }
    summary = rfm_grid_summary(got.reset_index()).set_index("rfm_cell")
    assert summary["users"].tolist() == [1] * 8
    assert summary.loc["important_value", "mean_monetary"] == 300.0


def test_median_split():
    rows = _user("a", [1], 1.0) + _user("b", [2], 2.0) + _user("c", [3], 100.0)
    mean = run_profile(orders=rows)["rfm_cell"].to_dict()
    median = run_profile(orders=rows, settings=Settings.from_dict({"rfm": {"split": "median"}}))["rfm_cell"].to_dict()
    # mean spend 34.3: only c is high; median spend 2: only c is above it too, but
    # median recency 2 makes a recent (1 < 2) while mean recency 2 also -> same R
    assert mean["c"] == "important_retain" and mean["a"] == "general_develop"
    assert median["c"] == "important_retain" and median["b"] == "general_retain"
