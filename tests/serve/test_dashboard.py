"""The dashboard: login by token, language switch, sections with data, member lists for operators only."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from userstrata import i18n
from userstrata.serve.dashboard import COOKIE
from userstrata.serve.tokens import create_token


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
