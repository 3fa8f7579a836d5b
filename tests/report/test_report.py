"""The report: sections count what the profile holds, small cells are hidden, the file is
self-contained, and the CLI writes it in the operator's language."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from userstrata.cli import app
from userstrata.config import Settings
from userstrata.report.render import render_page
from userstrata.report.sections import overview_sections, suppress
from userstrata.segments import rfm_grid_summary, tier_shares

PROFILE = pd.DataFrame({
    "user_id": [f"u{i:02d}" for i in range(30)],
    "tier": ["explorer"] * 14 + ["regular"] * 10 + ["engaged"] * 4 + ["co_builder"] * 2,
    "lifecycle": ["new"] * 3 + ["mature"] * 12 + ["dormant"] * 10 + ["churned"] * 5,
    "rfm_cell": ["general_retain"] * 20 + ["important_value"] * 10,
    "orders": [0] * 5 + [1] * 15 + [3] * 10,
    "monetary": [0.0] * 5 + [10.0] * 15 + [100.0] * 10,
    "aov": [None] * 5 + [10.0] * 15 + [100.0 / 3] * 10,
    "churn_probability": [0.1 * (i % 10) for i in range(30)],
    "churn_reasons": ["r"] * 30,
})  # fmt: skip


def _sections(lang="en", min_count=0):
    settings = Settings()
    return {s.key: s for s in overview_sections(
        PROFILE, tier_shares=tier_shares(PROFILE, settings.tiers), rfm_grid=rfm_grid_summary(PROFILE),
        lang=lang, min_count=min_count)}


def test_counts_are_the_profiles():
    s = _sections()
    kpi = dict(zip(s["overview"].table.iloc[:, 0], s["overview"].table.iloc[:, 1]))
    assert kpi["Users profiled"] == "30" and kpi["Buyers"] == "25"
    assert kpi["Net spend to date (CNY)"] == f"{15 * 10 + 10 * 100:,.2f}"
    assert kpi["Share of users active"] == f"{15 / 30:.1%}"  # new + mature
    tiers = s["tiers"].table.set_index("Tier")
    assert tiers.loc["Explorer", "Users"] == "14" and tiers.loc["Brand co-builder", "Share"] == f"{2 / 30:.1%}"
    bars = dict(zip(s["tiers"].figure.data[0].y, s["tiers"].figure.data[0].x))
    assert bars["Regular"] == pytest.approx(10 / 30)
    life = dict(zip(s["lifecycle"].figure.data[0].x, s["lifecycle"].figure.data[0].y))
    assert life["Dormant"] == 10 and life["Churned"] == 5 and life["Growth"] == 0
    z = s["rfm"].figure.data[0].z
    assert z[0][0] == 10 and z[1][3] == 20  # important_value (R, F, M high), general_retain (all low)


def test_risk_lists_only_valuable_users_most_at_risk_first():
    risk = _sections()["risk"].table
    valuable = PROFILE[PROFILE["tier"].isin(["engaged", "co_builder"])]
    want = valuable.sort_values(["churn_probability", "user_id"], ascending=[False, True])["user_id"].tolist()
    assert risk["User"].tolist() == want


def test_small_cells_are_hidden():
    assert suppress(pd.Series([0, 3, 9, 10, 1234]), 10).tolist() == ["0", "<10", "<10", "10", "1,234"]
    s = _sections(min_count=10)
    tiers = s["tiers"].table.set_index("Tier")
    assert tiers.loc["Engaged", "Users"] == "<10" and tiers.loc["Explorer", "Users"] == "14"
    rfm = s["rfm"].table
    assert (rfm.iloc[:, 1] != "0").sum() == 2 and "<10" not in rfm.iloc[:, 1].tolist()


def test_chinese_labels():
    s = _sections("zh")
    assert s["tiers"].title == "价值分层金字塔" and "体验探索者" in list(s["tiers"].figure.data[0].y)


def test_page_is_self_contained():
    page = render_page(list(_sections().values()), title="t & <b>", lang="en")
    assert not re.search(r"<script[^>]*\bsrc=", page) and "Plotly.newPlot" in page and len(page) > 1_000_000
    assert "t &amp; &lt;b&gt;" in page  # titles are escaped
    served = render_page(list(_sections().values()), title="t", script_url="/static/plotly.min.js")
    assert len(served) < 200_000 and 'src="/static/plotly.min.js"' in served


def test_cli_writes_the_report(tmp_path):
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--users", "800", "--out", str(tmp_path / "d")])
    assert demo.exit_code == 0, demo.output
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--out", str(out), "--lang", "zh", "--workspace", str(tmp_path / "d" / "shop.duckdb")])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    for title in ("概览", "价值分层金字塔", "生命周期分布", "RFM 八象限", "近一季度层级迁移"):
        assert title in page
    assert page.count('class="plotly-graph-div"') >= 4
