"""Activity density x value grid: active days and band edges by hand, value thirds with ties,
predictions, cell names; and the three CLI commands of this area on a small workspace."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from builders import event, order, table
from typer.testing import CliRunner

from userstrata.config import DensitySettings, Settings
from userstrata.errors import ConfigError, InputError
from userstrata.features._time import Clock
from userstrata.segments.density import DensityGrid, active_days, cell_name, density_counts, density_grid

AS_OF = dt.date(2024, 6, 30)
RULES = DensitySettings()


def _con():
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    return con


def days_active(orders=(), events=(), rules=RULES) -> dict[str, int]:
    expr = active_days(table("orders", list(orders)), table("events", list(events)),
                       as_of=AS_OF, clock=Clock(), rules=rules)  # fmt: skip
    got = _con().execute(expr)
    return dict(zip(got.user_id, got.active_days))


def test_active_days_are_local_days_in_the_window():
    events = [
        event("e1", "u1", "2024-05-31 02:00", "login"),  # 30 days before as_of: outside
        event("e2", "u1", "2024-06-01 02:00", "login"),  # 29 days before: inside
        event("e3", "u1", "2024-06-01 03:00", "page_view"),  # the same day again
        event("e4", "u1", "2024-06-30 16:00", "login"),  # 07-01 in Shanghai: after as_of
        event("e5", "u1", "2024-06-29 16:00", "page_view"),  # 06-30 00:00 in Shanghai: inside
    ]
    orders = [order("o1", "u1", "2024-06-10 02:00", 10.0), order("o2", "u2", "2024-06-10 02:00", 10.0, status="cancelled"),
              order("o3", "u1", "2024-06-01 05:00", 10.0)]  # fmt: skip
    assert days_active(orders, events) == {"u1": 3}  # 06-01, 06-10, 06-30; u2's order never happened
    logins = DensitySettings(activity_events=["login"])
    assert days_active(orders, events, rules=logins) == {"u1": 1}  # only the login on 06-01


def _profile(rows):
    return ibis.memtable(pd.DataFrame(rows, columns=["user_id", "orders", "monetary"]))


def _activity(pairs):
    return ibis.memtable(pd.DataFrame(pairs, columns=["user_id", "active_days"]).astype({"active_days": "int64"}))


def test_density_band_edges():
    days = [0, 1, 3, 4, 10, 11]
    profile = _profile([(f"u{d}", 0, 0.0) for d in days] + [("u_none", 0, 0.0)])
    activity = _activity([(f"u{d}", d) for d in days if d])  # u0 and u_none have no activity row
    got = _con().execute(density_grid(profile, activity, rules=RULES)).set_index("user_id")
    assert got.density_band.to_dict() == {
        "u0": "none", "u1": "low", "u3": "low", "u4": "mid", "u10": "mid", "u11": "high", "u_none": "none",
    }  # fmt: skip
    assert got.loc["u11", "cell_zh"] == "高活跃未付费" and got.loc["u11", "cell_en"] == "very active, never paid"
    assert (got.value_band == "never_paid").all() and got.loc["u0", "active_days"] == 0


def test_value_thirds_of_payers_and_ties():
    profile = _profile([(f"p{v}", 1, float(v)) for v in (10, 20, 30, 40, 50, 60)] + [("free", 0, 0.0)])
    got = _con().execute(density_grid(profile, _activity([]), rules=RULES)).set_index("user_id")
    # positions 1/6 ... 6/6: <= 1/3 low, <= 2/3 mid, above high
    assert got.value_band.to_dict() == {
        "p10": "low", "p20": "low", "p30": "mid", "p40": "mid", "p50": "high", "p60": "high", "free": "never_paid",
    }  # fmt: skip
    tied = _profile([("a", 1, 5.0), ("b", 1, 5.0), ("c", 1, 5.0)])
    got = _con().execute(density_grid(tied, _activity([]), rules=RULES))
    assert set(got.value_band) == {"high"}  # all at position 1: equal values share a band


def test_predictions_replace_spend_and_missing_payers_count_as_zero():
    profile = _profile([("a", 1, 100.0), ("b", 1, 50.0), ("c", 1, 10.0), ("free", 0, 0.0)])
    pred = pd.DataFrame({"user_id": ["a", "b", "free"], "clv": [1.0, 500.0, 999.0]})
    got = _con().execute(density_grid(profile, _activity([]), rules=RULES, predictions=pred)).set_index("user_id")
    assert got.expected_value.to_dict() == {"a": 1.0, "b": 500.0, "c": 0.0, "free": 999.0}
    assert got.value_band.to_dict() == {"c": "low", "a": "mid", "b": "high", "free": "never_paid"}
    with pytest.raises(InputError, match="clv_90"):
        density_grid(profile, _activity([]), rules=RULES, predictions=pred, value_col="clv_90")


def test_grid_has_all_sixteen_cells_with_shares():
    counts = pd.DataFrame({"density_band": ["high", "none"], "value_band": ["never_paid", "low"], "users": [1, 3]})
    grid = DensityGrid.from_counts(counts, RULES)
    assert len(grid.cells) == 16 and grid.cells.users.sum() == 4
    assert grid.cells.share.sum() == pytest.approx(1.0)
    m = grid.matrix("zh")
    assert list(m.index) == ["高活跃 (11+)", "常来 (4-10)", "低频 (1-3)", "沉默 (0)"]
    assert list(m.columns) == ["未付费", "低价值", "中价值", "高价值"]
    assert m.iloc[0, 0] == 1 and m.iloc[3, 1] == 3
    fig = grid.figure(AS_OF, "en")
    assert fig.data[0].type == "heatmap" and fig.layout.xaxis.title.text == "Expected value"
    assert cell_name("none", "high", "zh") == "沉默高价值"


def test_counts_match_the_per_user_grid():
    profile = _profile([("a", 1, 1.0), ("b", 0, 0.0), ("c", 0, 0.0)])
    grid = density_grid(profile, _activity([("b", 12), ("c", 12)]), rules=RULES)
    got = _con().execute(density_counts(grid)).set_index(["density_band", "value_band"]).users.to_dict()
    assert got == {("high", "never_paid"): 2, ("none", "high"): 1}


def test_settings_check_edges_and_cuts():
    with pytest.raises(ConfigError, match="density_edges"):
        Settings.from_dict({"density": {"density_edges": [1, 4, 4]}})
    with pytest.raises(ConfigError, match="value_cuts"):
        Settings.from_dict({"density": {"value_cuts": [0.5, 0.4]}})


# -- the commands -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from userstrata.workspace import Workspace

    path = tmp_path_factory.mktemp("ws") / "shop.duckdb"
    ws = Workspace.open(path, settings=Settings())
    orders = [order(f"o{i}", f"u{i % 3}", f"2024-06-{1 + i:02d} 14:30", 100.0) for i in range(9)]
    items = [(f"o{i}", 1, "course-python" if i % 2 else "vip-month", "课程" if i % 2 else "会员", 1, 100.0)
             for i in range(9)]  # fmt: skip
    events = [(f"e{i}", f"u{i % 4}", None, None, f"2024-06-{2 + i:02d} 03:00", "watch" if i % 2 else "share",
               '{"chapter":1,"chapters_total":10}') for i in range(20)]  # fmt: skip
    con = _con()
    for name, rows in (("orders", orders), ("order_items", items), ("events", events)):
        ws.load_frame(name, con.execute(table(name, rows)), source=f"{name}.test")
    ws.close()
    return path


@pytest.mark.parametrize("lang", ["zh", pytest.param("en", marks=pytest.mark.slow)])
def test_commands_write_files_and_charts(workspace, tmp_path, lang):
    import userstrata.cli.tags  # noqa: F401 - registers the commands
    from userstrata.cli import app

    runner = CliRunner()
    common = ["-w", str(workspace), "--lang", lang]
    runs = {
        "tags": ["tags", "--out", str(tmp_path / "t.csv"), "--chart", str(tmp_path / "t.html")],
        "realisation": ["realisation", "--out", str(tmp_path / "r.csv"), "--unused-out", str(tmp_path / "u.csv"),
                        "--chart", str(tmp_path / "r.html")],
        "density": ["density", "--out", str(tmp_path / "d.csv"), "--chart", str(tmp_path / "d.html")],
    }  # fmt: skip
    for name, args in runs.items():
        result = runner.invoke(app, args + common)
        assert result.exit_code == 0, (name, result.output)
    for f in ("t.csv", "t.html", "r.csv", "u.csv", "r.html", "d.csv", "d.html"):
        assert (tmp_path / f).stat().st_size > 0, f
    tags = pd.read_csv(tmp_path / "t.csv", encoding="utf-8-sig")
    assert len(tags) > 0
    density = pd.read_csv(tmp_path / "d.csv", encoding="utf-8-sig")
    assert len(density) == 4  # u0-u3: every user seen
    bad = runner.invoke(app, ["density", "--predictions", str(tmp_path / "none.csv")] + common)
    assert bad.exit_code == 2 and "none.csv" in bad.output
