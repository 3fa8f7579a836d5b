"""Snapshots kept per day, and who moved between tiers (lifecycle stages, RFM cells) between two days."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from userstrata import Workspace, charts
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError, NotFoundError
from userstrata.segments.migration import GONE, NEW, forecast, migration, migration_sankey
from userstrata.segments.snapshots import fingerprint, snapshot_dates


def _profile(states: dict[str, str], column: str = "tier") -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(states), column: list(states.values()),
                         "tier_reason": [f"why {u}" for u in states]})


def test_counts_shares_and_moves_by_hand():
    before = _profile({"a": "explorer", "b": "regular", "c": "engaged", "d": "co_builder", "e": "regular"})
    after = _profile({"a": "regular", "b": "regular", "c": "regular", "d": "co_builder", "f": "explorer"})
    m = migration(before, after)
    # a: explorer -> regular (up); c: engaged -> regular (down); b, d stay; e gone; f new
    assert m.counts.loc["explorer", "regular"] == 1 and m.counts.loc["engaged", "regular"] == 1
    assert m.counts.loc["regular", "regular"] == 1 and m.counts.loc["co_builder", "co_builder"] == 1
    assert m.counts.loc["regular", GONE] == 1 and m.counts.loc[NEW, "explorer"] == 1
    assert m.counts.to_numpy().sum() == 6  # every user of either day exactly once
    assert (m.upgrades, m.downgrades) == (1, 1) and m.changed_share == pytest.approx(2 / 4)
    moves = m.moves.set_index("user_id")
    assert set(moves.index) == {"a", "c"} and moves.loc["a", "direction"] == "up"
    assert moves.loc["c", ["from", "to", "reason_from", "reason_to"]].tolist() == ["engaged", "regular", "why c", "why c"]
    rows = m.shares.sum(axis=1)
    assert np.allclose(rows[rows > 0], 1.0) and (rows[m.counts.sum(axis=1) == 0] == 0).all()


def test_counts_equal_an_independent_crosstab():
    rng = np.random.default_rng(3)
    tiers = np.array(["explorer", "regular", "engaged", "co_builder"])
    users = [f"u{i}" for i in range(500)]
    before = _profile(dict(zip(users[:400], rng.choice(tiers, 400))))
    after = _profile(dict(zip(users[100:], rng.choice(tiers, 400))))
    m = migration(before, after)
    both = before.merge(after, on="user_id", how="outer", suffixes=("_b", "_a"))
    both["tier_b"] = both["tier_b"].fillna(NEW)
    both["tier_a"] = both["tier_a"].fillna(GONE)
    expected = pd.crosstab(both["tier_b"], both["tier_a"])
    for (r, c), v in expected.stack().items():
        assert m.counts.loc[r, c] == v, (r, c)
    assert m.counts.to_numpy().sum() == len(both)


def test_lifecycle_new_is_not_the_new_row():
    before = _profile({"a": "new", "b": "growth"}, "lifecycle")
    after = _profile({"a": "growth", "b": "growth", "c": "new"}, "lifecycle")
    m = migration(before, after, by="lifecycle")
    assert m.counts.loc["new", "growth"] == 1 and m.counts.loc[NEW, "new"] == 1
    assert (m.upgrades, m.downgrades) == (0, 0) and set(m.moves["direction"]) == {"changed"}


def test_bad_input_is_named():
    with pytest.raises(InputError, match="by = 'colour'"):
        migration(_profile({"a": "regular"}), _profile({"a": "regular"}), by="colour")
    with pytest.raises(InputError, match="tier values \\['gold'\\]"):
        migration(_profile({"a": "gold"}), _profile({"a": "regular"}))


def test_snapshot_dates():
    assert snapshot_dates(dt.date(2024, 1, 31), dt.date(2024, 5, 1), "1mo") == [
        dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 31), dt.date(2024, 4, 30)]
    assert snapshot_dates(dt.date(2024, 1, 15), dt.date(2024, 7, 15), "1q") == [
        dt.date(2024, 1, 15), dt.date(2024, 4, 15), dt.date(2024, 7, 15)]
    assert snapshot_dates(dt.date(2024, 1, 1), dt.date(2024, 1, 20), "1w")[-1] == dt.date(2024, 1, 15)
    with pytest.raises(InputError, match="every = '3d'"):
        snapshot_dates(dt.date(2024, 1, 1), dt.date(2024, 2, 1), "3d")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snap")
    files = simulate_shop(1500, folder / "shop", seed=11)
    with Workspace.open(folder / "w.duckdb") as ws:
        for name in ("users", "orders", "order_items", "events"):
            ws.load(name, files[name])
        yield ws


def test_snapshots_are_idempotent_per_day_and_carry_the_settings(ws, tmp_path):
    day = dt.date(2024, 3, 31)
    first = ws.snapshot(day)
    again = ws.snapshot(day)
    assert not first.replaced and again.replaced and again.rows == first.rows
    stored = ws.snapshot_table(day).to_pandas()
    assert len(stored) == first.rows and stored["user_id"].is_unique  # replaced, not appended
    listed = ws.snapshots().set_index("as_of")
    assert listed.loc[day, "rows"] == first.rows and listed.loc[day, "current_settings"]
    with pytest.raises(NotFoundError, match="no snapshot of 2024-01-01"):
        ws.snapshot_table(dt.date(2024, 1, 1))
    # under other profile rules the same day's snapshot is recognisably another one; the currency
    # (not a profile rule) does not change the fingerprint
    other = Settings.from_dict({"lifecycle": {"dormant_after_days": 45}})
    assert fingerprint(Settings.from_dict({"currency": "USD"})) == fingerprint(Settings())
    assert fingerprint(other) != first.fingerprint == fingerprint(ws.settings)


def test_migration_from_snapshots_equals_the_profiles(ws):
    start, end = dt.date(2024, 3, 31), dt.date(2024, 6, 30)
    ws.snapshot_series(start, end, "1q")
    from_snapshots = ws.migration(start, end)
    direct = migration(ws.profile(start).to_pandas(), ws.profile(end).to_pandas())
    pd.testing.assert_frame_equal(from_snapshots.counts, direct.counts)
    assert from_snapshots.changed_share > 0 and from_snapshots.upgrades + from_snapshots.downgrades > 0


def test_annual_rate_by_hand():
    from userstrata.segments.migration import annual_rate

    # two half years in which 10% and then 20% moved: 72% stayed put over the year
    assert annual_rate([0.1, 0.2], [365.25 / 2, 365.25 / 2]) == pytest.approx(1 - 0.9 * 0.8)
    # four quarters at 4% each: 1 - 0.96^4 a year
    assert annual_rate([0.04] * 4, [91.3125] * 4) == pytest.approx(1 - 0.96**4)
    with pytest.raises(InputError):
        annual_rate([], [])


def test_migration_series_over_quarters(ws):
    series = ws.migration_series(dt.date(2023, 12, 31), dt.date(2024, 6, 30), "1q")
    assert list(series["start"]) == [dt.date(2023, 12, 31), dt.date(2024, 3, 31)]
    second = ws.migration(dt.date(2024, 3, 31), dt.date(2024, 6, 30))
    assert series["changed_share"].iloc[1] == second.changed_share
    stay = (1 - series["changed_share"]).prod()
    assert series.attrs["annual_rate"] == pytest.approx(1 - stay ** (365.25 / series["days"].sum()))


TRUE_P = np.array([[0.80, 0.15, 0.04, 0.01],
                   [0.10, 0.75, 0.12, 0.03],
                   [0.02, 0.18, 0.70, 0.10],
                   [0.01, 0.04, 0.15, 0.80]])
TIER_LIST = ["explorer", "regular", "engaged", "co_builder"]


def _chain(matrices, n=3000, seed=0) -> list[pd.DataFrame]:
    """Profiles of n users whose tier moves by the given transition matrices, one per period."""
    rng = np.random.default_rng(seed)
    state = rng.choice(4, n, p=[0.45, 0.35, 0.12, 0.08])
    users = [f"u{i}" for i in range(n)]
    out = [_profile(dict(zip(users, np.array(TIER_LIST)[state])))]
    for P in matrices:
        cum = P.cumsum(axis=1)[state]
        state = (rng.random(n)[:, None] > cum).sum(axis=1)
        out.append(_profile(dict(zip(users, np.array(TIER_LIST)[state]))))
    return out


def test_markov_forecast_is_the_matrix_power_of_the_pooled_estimate():
    from userstrata.segments.migration import forecast

    profiles = _chain([TRUE_P] * 4)
    f = forecast(profiles, periods=3, n_boot=100)
    # a second method: the pooled transition counts by crosstab, row-normalised, then powers
    pairs = pd.concat([a.merge(b, on="user_id")[["tier_x", "tier_y"]] for a, b in zip(profiles, profiles[1:])])
    counts = pd.crosstab(pairs["tier_x"], pairs["tier_y"]).reindex(index=TIER_LIST, columns=TIER_LIST, fill_value=0)
    P = (counts.T / counts.sum(axis=1)).T.to_numpy()
    start = profiles[-1]["tier"].value_counts(normalize=True).reindex(TIER_LIST, fill_value=0).to_numpy()
    for k in range(4):
        np.testing.assert_allclose(f.shares.loc[k].to_numpy(), start @ np.linalg.matrix_power(P, k), atol=1e-12)
    assert np.abs(f.matrix.to_numpy() - TRUE_P).max() < 0.03  # 12,000 moves pin the chain down
    assert (f.low.to_numpy() <= f.shares.to_numpy() + 1e-12).all() and (f.shares.to_numpy() <= f.high.to_numpy() + 1e-12).all()
    assert f.stability < 0.1 and f.backtest["mean_abs_error"] < 0.02  # the same chain every period


def test_a_chain_that_changes_is_reported_unstable():
    from userstrata.segments.migration import forecast

    drift = np.eye(4) * 0.5 + 0.5 * np.roll(np.eye(4), 1, axis=1)  # half of everyone moves up a tier
    f = forecast(_chain([TRUE_P, TRUE_P, drift, drift]), periods=2, n_boot=20)
    assert f.stability > 0.2
    with pytest.raises(InputError, match="at least two"):
        forecast(_chain([])[:1])


def test_shift_months_keeps_month_ends():
    from userstrata.segments.snapshots import shift_months

    assert shift_months(dt.date(2024, 6, 30), -3) == dt.date(2024, 3, 31)
    assert shift_months(dt.date(2024, 3, 31), -1) == dt.date(2024, 2, 29)
    assert shift_months(dt.date(2024, 6, 15), -12) == dt.date(2023, 6, 15)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_sankey_bands_are_the_users_who_moved(lang, tmp_path):
    before = _profile({"a": "explorer", "b": "regular", "c": "engaged", "e": "regular"})
    after = _profile({"a": "regular", "b": "regular", "c": "regular", "f": "explorer"})
    fig = migration_sankey(migration(before, after), start="2024-03-31", end="2024-06-30", lang=lang)
    sankey = fig.data[0]
    labels = list(sankey.node.label)
    bands = {(labels[s], labels[t]): v for s, t, v in zip(sankey.link.source, sankey.link.target, sankey.link.value)}
    name = {"zh": {"explorer": "体验探索者", "regular": "常规消费者", "engaged": "深度参与者", "new": "新出现", "gone": "已消失"},
            "en": {"explorer": "Explorer", "regular": "Regular", "engaged": "Engaged", "new": "new", "gone": "gone"}}[lang]
    # by hand: a explorer->regular, b regular->regular, c engaged->regular, e regular->gone, f new->explorer
    assert bands == {(name["explorer"], name["regular"]): 1, (name["regular"], name["regular"]): 1,
                     (name["engaged"], name["regular"]): 1, (name["regular"], name["gone"]): 1,
                     (name["new"], name["explorer"]): 1}
    assert "2024-06-30" in fig.layout.title.text
    for suffix in (".html", ".png"):
        written = charts.save(fig, tmp_path / f"m{suffix}")
        assert written.stat().st_size > 1000
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    # plotly.js inside the file, no script fetched from elsewhere: works offline
    assert not re.search(r"<script[^>]*\bsrc=", html) and "Plotly.newPlot" in html and len(html) > 1_000_000


@pytest.mark.slow
def test_forecast_intervals_cover_the_true_projection_at_about_their_level():
    """Repeated simulation of a known chain: the 90% bootstrap interval of shares_0 @ P^k holds
    the true chain's projection about 90% of the time (every state, k = 1 and 2)."""
    tiers = ["explorer", "regular", "engaged", "co_builder"]
    P = np.array([[0.80, 0.15, 0.04, 0.01], [0.10, 0.75, 0.12, 0.03],
                  [0.02, 0.18, 0.70, 0.10], [0.01, 0.04, 0.15, 0.80]])
    rng = np.random.default_rng(20241126)
    covered = []
    for rep in range(120):
        states = rng.choice(4, size=400, p=[0.45, 0.35, 0.12, 0.08])
        profiles = []
        for _ in range(4):  # four profiles, three periods of moves
            profiles.append(pd.DataFrame({"user_id": [f"u{i}" for i in range(400)],
                                          "tier": [tiers[s] for s in states]}))
            states = np.array([rng.choice(4, p=P[s]) for s in states])
        got = forecast(profiles, periods=2, n_boot=100, random_state=rep)
        start = got.shares.iloc[0].to_numpy()
        for k in (1, 2):
            truth = start @ np.linalg.matrix_power(P, k)
            low, high = got.low.iloc[k].to_numpy(), got.high.iloc[k].to_numpy()
            covered.extend((low <= truth) & (truth <= high))
    rate = float(np.mean(covered))
    print(f"coverage of the 90% intervals: {rate:.3f} over {len(covered)} intervals")
    assert 0.82 <= rate <= 0.97, rate


def _lifecycle(states: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(states), "lifecycle": list(states.values())})


def test_open_population_counts_entries_exits_and_reentry_by_hand():
    from userstrata.segments.migration import forecast

    p0 = {**{f"g{i}": "growth" for i in range(10)}, **{f"d{i}": "dormant" for i in range(4)}, "c0": "churned",
          "c1": "churned"}
    # period 1: growth 6 stay, 2 dormant, 2 gone; dormant d0 back to growth, d1 d2 churn, d3 stays; 3 arrive
    p1 = {**{f"g{i}": "growth" for i in range(6)}, "g6": "dormant", "g7": "dormant", "d0": "growth",
          "d1": "churned", "d2": "churned", "d3": "dormant", "c0": "churned", "c1": "churned",
          **{f"n{i}": "new" for i in range(3)}}
    # period 2: growth g0-g4 stay, g5 gone, d0 dormant; dormant g6 back to growth, g7 churns, d3 gone;
    # churned stay; new n0 to growth, n1 n2 stay new; 5 arrive
    p2 = {**{f"g{i}": "growth" for i in range(5)}, "d0": "dormant", "g6": "growth", "g7": "churned",
          "c0": "churned", "c1": "churned", "d1": "churned", "d2": "churned", "n0": "growth", "n1": "new",
          "n2": "new", **{f"m{i}": "new" for i in range(5)}}
    f = forecast([_lifecycle(p0), _lifecycle(p1), _lifecycle(p2)], periods=2, by="lifecycle", n_boot=5)
    # pooled rows by hand: growth 17 (11 growth, 3 dormant, 3 gone); dormant 7 (2 growth, 1 dormant,
    # 3 churned, 1 gone); churned 6 (all stay); new 3 (1 growth, 2 new)
    assert f.flows.loc["growth", ["growth", "dormant", GONE]].tolist() == pytest.approx([11 / 17, 3 / 17, 3 / 17])
    assert f.flows.loc["dormant", ["growth", "dormant", "churned", GONE]].tolist() == pytest.approx(
        [2 / 7, 1 / 7, 3 / 7, 1 / 7])
    assert f.reentry == pytest.approx({"dormant": 2 / 7, "churned": 0.0})
    assert f.absorbing == ("churned",)  # "new" is not: one of them moved on
    assert f.entries["new"] == pytest.approx(4.0) and f.entries.drop("new").eq(0).all()
    # the last profile: growth 7, dormant 1, churned 5, new 7; one period ahead by hand
    assert f.counts.loc[0, ["growth", "dormant", "churned", "new"]].tolist() == [7, 1, 5, 7]
    want = {"growth": 7 * 11 / 17 + 1 * 2 / 7 + 7 * 1 / 3, "dormant": 7 * 3 / 17 + 1 * 1 / 7,
            "churned": 5 + 1 * 3 / 7, "new": 7 * 2 / 3 + 4}
    assert f.counts.loc[1, list(want)].tolist() == pytest.approx(list(want.values()))
    stay = f.flows[list(f.counts.columns)].to_numpy()
    np.testing.assert_allclose(f.counts.loc[2].to_numpy(), f.counts.loc[1].to_numpy() @ stay + f.entries.to_numpy())
