"""The dashboard: login by token, language switch, sections with data, member lists for operators only."""

from __future__ import annotations

import datetime as dt
import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from fastapi.testclient import TestClient

from userstrata import Workspace, i18n
from userstrata.datasets import simulate_shop
from userstrata.serve.app import create_app
from userstrata.serve.dashboard import COOKIE
from userstrata.serve.tokens import create_token

END = dt.date(2024, 6, 30)


@pytest.fixture(scope="module")
def site(served):
    ws, client, tokens = served
    return ws, TestClient(client.app), tokens


def _login(client, token, lang="zh"):
    return client.post(f"/login?lang={lang}", content=f"token={token}",
                       headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)


def test_pages_need_a_login(site):
    _, client, _ = site
    client.cookies.clear()
    page = client.get("/")
    assert page.status_code == 200 and "访问令牌" in page.text  # Chinese first
    assert "Access token" in client.get("/?lang=en").text
    assert client.get("/dashboard", follow_redirects=False).headers["location"].startswith("/?lang=")
    bad = _login(client, "us_wrong")
    assert bad.status_code == 401 and COOKIE not in bad.cookies


def test_login_sets_a_cookie_and_shows_every_section(site):
    ws, client, tokens = site
    client.cookies.clear()
    response = _login(client, tokens["operator"])
    assert response.status_code == 303 and response.headers["location"] == "/dashboard?lang=zh"
    client.cookies.set(COOKIE, response.cookies[COOKIE])
    page = client.get("/dashboard?lang=zh").text
    for title in ("概览", "价值分层金字塔", "生命周期分布", "RFM 八象限"):
        assert title in page
    assert 'src="/static/plotly.min.js"' in page and not re.search(r'src="https?://', page)
    assert page.count('class="plotly-graph-div"') >= 3
    users = ws.profile(ws.latest_date()).count().execute()
    assert f"{users:,}" in page
    english = client.get("/dashboard?lang=en").text
    assert "Tier pyramid" in english and "价值分层金字塔" not in english
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_viewers_see_aggregates_not_members(site):
    ws, client, _ = site
    viewer, _ = create_token(ws.store, "viewer")
    operator, _ = create_token(ws.store, "operator")
    client.cookies.clear()
    client.cookies.set(COOKIE, viewer)
    assert 'id="risk"' not in client.get("/dashboard?lang=en").text
    some = ws.profile(ws.latest_date()).limit(1).to_pandas().iloc[0]
    some_user = some["user_id"]
    assert "Needs the operator role" in client.get(f"/dashboard/user?lang=en&id={some_user}").text
    client.cookies.set(COOKIE, operator)
    page = client.get(f"/dashboard/user?lang=zh&id={some_user}").text
    assert f"用户 {some_user}" in page and f"{i18n.label(some['tier'], 'zh')} ({some['tier']})" in page
    assert "没有该用户" in client.get("/dashboard/user?lang=zh&id=nobody").text


# -- the plan, A/B results, forecast and churn-risk pages -----------------------------------------
class _Tables(HTMLParser):
    """Each section's tables (by the section's id) as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[list[list[str]]]] = {}
        self.section = self.row = self.cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id", "")
        elif tag == "table" and self.section is not None:
            self.sections.setdefault(self.section, []).append([])
        elif tag == "tr" and self.section is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.sections[self.section][-1].append(self.row)
            self.row = None
        elif tag == "section":
            self.section = None


def _table(page: str, section: str) -> list[list[str]]:
    """The first table of ``section``, header row first."""
    parser = _Tables()
    parser.feed(page)
    return parser.sections[section][0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small shop with campaigns (touches with variants) and churn predictions in its snapshot."""
    folder = tmp_path_factory.mktemp("pages")
    files = simulate_shop(200, folder / "files", seed=5, end=END)
    ws = Workspace.open(folder / "shop.duckdb")
    for name in ("users", "orders", "order_items", "events", "touches"):
        ws.load(name, files[name])
    profile = ws.profile(END).to_pandas()
    rng = np.random.default_rng(3)
    profile["churn_probability"] = rng.random(len(profile)).round(2)  # ties: broken by user id
    profile["churn_reasons"] = [f"quiet for {d} days" for d in rng.integers(1, 90, len(profile))]
    ws.snapshot(END, frame=profile)
    client = TestClient(create_app(ws))
    tokens = {role: create_token(ws.store, role)[0] for role in ("viewer", "operator")}
    yield ws, client, tokens, profile
    ws.close()


def _as(client, token):
    client.cookies.clear()
    client.cookies.set(COOKIE, token)
    return client


def test_new_pages_need_a_login_and_speak_both_languages(shop):
    _, client, tokens, _ = shop
    client.cookies.clear()
    for path in ("/dashboard/plan", "/dashboard/abtests", "/dashboard/risk"):
        assert client.get(path, follow_redirects=False).headers["location"] == "/?lang=zh"
    _as(client, tokens["operator"])
    for path, zh, en in (("/dashboard/abtests", "实验（触达表中的活动）", "Experiment (a campaign of the touches table)"),
                         ("/dashboard/risk", "高价值用户流失风险 Top 100", "Valuable users most at risk, top 100")):
        chinese, english = client.get(f"{path}?lang=zh"), client.get(f"{path}?lang=en")
        assert chinese.status_code == english.status_code == 200
        assert zh in chinese.text and en not in chinese.text and '<html lang="zh-CN">' in chinese.text
        assert en in english.text and zh not in english.text and '<html lang="en">' in english.text
        # the switch leads to the same page in the other language
        assert f'href="{path}?lang=en' in chinese.text and f'href="{path}?lang=zh' in english.text
    nav = client.get("/dashboard/risk?lang=en").text
    for path in ("/dashboard", "/dashboard/plan", "/dashboard/abtests", "/dashboard/forecast", "/dashboard/risk"):
        assert f'href="{path}?lang=en"' in nav


def test_plan_page_shows_the_plan_and_contacts_only_to_operators(shop):
    ws, client, tokens, _ = shop
    plan = ws.plan(END + dt.timedelta(days=1), 7)
    page = _as(client, tokens["operator"]).get("/dashboard/plan?lang=en").text
    assert 'id="chart-plan"' in page and "Contact plan: 7 days from 2024-07-01" in page
    # contacts by tier, channel and reason: the plan's summary, and together every candidate contact
    summary = _table(page, "plan")
    assert summary[0] == ["Tier", "Channel", "Status", "Reason", "Contacts"]
    assert [int(r[4]) for r in summary[1:]] == plan.summary["contacts"].tolist()
    assert sum(int(r[4]) for r in summary[1:]) == len(plan.contacts)
    dropped = sum(int(r[4]) for r in summary[1:] if r[2] == "dropped")
    assert dropped == int((plan.contacts["status"].astype(str) == "dropped").sum())
    fairness = _table(page, "fairness")
    expected = [[i18n.label(r.tier, "en"), str(r.users), str(r.planned), str(r.users_reached)]
                for r in plan.fairness.itertuples()]
    assert [row[:4] for row in fairness[1:]] == expected
    for warning in plan.warnings("en"):
        assert warning in page
    contacts = _table(page, "contacts")
    assert [row[0] for row in contacts[1:]] == plan.contacts["user_id"].head(50).astype(str).tolist()
    zh = client.get("/dashboard/plan?lang=zh").text
    assert "公平性检查（按层级）" in zh and "Fairness (per tier)" not in zh
    viewer = _as(client, tokens["viewer"]).get("/dashboard/plan?lang=en").text
    parsed = _Tables()
    parsed.feed(viewer)
    assert "Needs the operator role" in viewer and "contacts" not in parsed.sections  # a note, no table
    assert not any(u in viewer for u in plan.contacts["user_id"].astype(str))
    assert _table(viewer, "fairness") == fairness  # aggregates for everyone


def test_abtest_page_shows_the_result_of_the_chosen_campaign(shop):
    ws, client, tokens, _ = shop
    touches = ws.table("touches").to_pandas().dropna(subset=["campaign", "variant"])
    latest = touches.groupby("campaign")["ts"].max().reset_index().sort_values(["ts", "campaign"], ascending=[False, True])
    _as(client, tokens["viewer"])
    first = client.get("/dashboard/abtests?lang=en").text
    assert re.findall(r'<option value="([^"]+)"', first) == latest["campaign"].tolist()
    assert f'<option value="{latest["campaign"].iloc[0]}" selected>' in first  # the latest by default
    name = latest["campaign"].iloc[1]
    result = ws.abtest(name)
    for lang in ("en", "zh"):
        page = client.get(f"/dashboard/abtests?lang={lang}&name={name}").text
        assert f'<option value="{name}" selected>' in page
        for sentence in result.verdict(lang):
            assert html.escape(sentence) in page
        assert f'data-flagged="{str(result.srm_flagged).lower()}"' in page
        variants = _table(page, "variants")
        assert [r[0] for r in variants[1:]] == result.variants["variant"].tolist()
        assert [int(r[1]) for r in variants[1:]] == result.variants["users"].tolist()
        assert [r[3] for r in variants[1:]] == [f"{v:.2%}" for v in result.variants["conversion_rate"]]
        assert [r[4] for r in variants[1:]] == [f"{v:,.2f}" for v in result.variants["revenue_per_user"]]
        if len(result.effects):
            assert 'id="chart-ab_conversion"' in page and 'id="chart-ab_revenue"' in page
    # users per variant, counted here from the touches: each user in the variant of their first touch
    own = touches[touches["campaign"] == name].sort_values(["ts", "touch_id"]).drop_duplicates("user_id")
    assert own["variant"].value_counts().reindex(result.variants["variant"]).tolist() == result.variants["users"].tolist()
    assert "No campaign nope with variants" in client.get("/dashboard/abtests?lang=en&name=nope").text


def test_risk_page_lists_the_top_100_valuable_users_for_operators(shop):
    _, client, tokens, profile = shop
    valuable = profile[profile["tier"].isin(["engaged", "co_builder"])]
    top = valuable.sort_values(["churn_probability", "user_id"], ascending=[False, True]).head(100)
    page = _as(client, tokens["operator"]).get("/dashboard/risk?lang=zh").text
    rows = _table(page, "risk")[1:]
    assert [r[0] for r in rows] == top["user_id"].tolist()
    assert [r[2] for r in rows] == [f"{p:.0%}" for p in top["churn_probability"]]
    assert [r[3] for r in rows] == top["churn_reasons"].tolist()
    viewer = _as(client, tokens["viewer"]).get("/dashboard/risk?lang=zh").text
    assert "需要 operator 角色" in viewer and not any(u in viewer for u in top["user_id"])


@pytest.mark.slow
def test_forecast_page_shows_the_markov_forecast_beside_the_sankey(shop):
    ws, client, tokens, _ = shop
    ahead = ws.migration_forecast(dt.date(2023, 6, 30), END, "1q", periods=4)
    _as(client, tokens["viewer"])
    for lang in ("zh", "en"):
        page = client.get(f"/dashboard/forecast?lang={lang}").text
        assert 'id="chart-forecast"' in page and 'id="chart-migration"' in page
        table = _table(page, "forecast")
        assert table[0][1:] == [i18n.label(s, lang) for s in ahead.shares.columns]
        for row, k in zip(table[1:], ahead.shares.index):
            assert [cell.split(" ")[0] for cell in row[1:]] == [f"{ahead.shares.loc[k, s]:.1%}" for s in ahead.shares.columns]
    # the shares of period 0 are the tiers of the latest profile, counted here
    now = ws.profile(END).to_pandas()["tier"].value_counts(normalize=True)
    assert [cell.split(" ")[0] for cell in table[1][1:]] == [f"{now.get(s, 0):.1%}" for s in ahead.shares.columns]


def test_abtest_page_without_campaigns_says_so(site):
    _, client, tokens = site
    page = _as(client, tokens["viewer"]).get("/dashboard/abtests?lang=zh")
    assert page.status_code == 200 and "触达表中没有带实验分组（variant）的活动。" in page.text
    assert "<option" not in page.text
