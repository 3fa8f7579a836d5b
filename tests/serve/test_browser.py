"""The dashboard in a real browser: log in, switch language, open every page; each chart drew
its data, and no request left the machine. Needs Debian's chromium (``.ci/run`` installs it).

Screenshots go to ``$USERSTRATA_SCREENSHOTS`` when set (else the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

END = dt.date(2024, 6, 30)

CHROMIUM = "/usr/bin/chromium"
# no calls home: the machine's closed network refuses them, and an offline shop has none
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def _serving(app):
    """``app`` on a free port of 127.0.0.1 while the block runs; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(served):
    ws, client, tokens = served
    with _serving(client.app) as base:
        yield base, tokens


@pytest.fixture(scope="module")
def campaigns_server(tmp_path_factory):
    """A small shop with campaigns in its touches (the A/B page needs them) and churn predictions."""
    import numpy as np

    from userstrata import Workspace
    from userstrata.datasets import simulate_shop
    from userstrata.serve.app import create_app
    from userstrata.serve.tokens import create_token

    folder = tmp_path_factory.mktemp("browser-shop")
    files = simulate_shop(200, folder / "files", seed=5, end=END)
    ws = Workspace.open(folder / "shop.duckdb")
    for name in ("users", "orders", "order_items", "events", "touches"):
        ws.load(name, files[name])
    profile = ws.profile(END).to_pandas()
    profile["churn_probability"] = np.random.default_rng(3).random(len(profile)).round(2)
    profile["churn_reasons"] = "quiet lately"
    ws.snapshot(END, frame=profile)
    with _serving(create_app(ws)) as base:
        yield base, create_token(ws.store, "operator")[0]
    ws.close()


def _charts_with_data(page) -> dict[str, int]:
    """Per chart div: how many drawn marks (bars, heatmap cells, Sankey nodes) it holds."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.plotly-graph-div')].map(d =>
        [d.id, d.querySelectorAll('.bars path, .hm image, .sankey-node, .heatmaplayer image, .scatterlayer path.js-line').length]))""")


def test_dashboard_in_chromium(server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    base, tokens = server
    shots = Path(os.environ.get("USERSTRATA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    hosts = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname))
        page.goto(base + "/")
        assert "访问令牌" in page.content()
        page.fill("input[name=token]", "us_wrong")
        page.click("button[type=submit]")
        assert "令牌无效" in page.content()
        page.goto(base + "/?lang=zh")
        page.fill("input[name=token]", tokens["operator"])
        page.click("button[type=submit]")
        page.wait_for_selector(".plotly-graph-div .main-svg")
        assert "价值分层金字塔" in page.content()
        drawn = _charts_with_data(page)
        assert {"chart-tiers", "chart-lifecycle", "chart-rfm"} <= set(drawn)
        assert all(n > 0 for n in drawn.values()), drawn
        page.screenshot(path=str(shots / "dashboard-zh.png"), full_page=True)
        page.click("text=English")
        page.wait_for_selector(".plotly-graph-div .main-svg")
        assert "Tier pyramid" in page.content() and all(n > 0 for n in _charts_with_data(page).values())
        page.screenshot(path=str(shots / "dashboard-en.png"), full_page=True)
        page.click("text=Look up a user")
        page.fill("input[name=id]", "nobody")
        page.click("text=Look up a user >> nth=-1")
        assert "No such user" in page.content()
        page.screenshot(path=str(shots / "user-lookup.png"), full_page=True)
        browser.close()
    assert hosts == {"127.0.0.1"}, f"requests left the machine: {hosts}"


def test_plan_abtest_forecast_and_risk_pages_in_chromium(campaigns_server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    base, token = campaigns_server
    shots = Path(os.environ.get("USERSTRATA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    hosts = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)  # the first view of a page computes its analysis
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname))
        page.goto(base + "/?lang=zh")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_selector(".plotly-graph-div .main-svg")
        for href, title, charts in (("/dashboard/plan", "计划与未发送的触达", {"chart-plan"}),
                                    ("/dashboard/abtests", "结论", {"chart-ab_conversion", "chart-ab_revenue"}),
                                    ("/dashboard/forecast", "层级占比的马尔可夫预测", {"chart-forecast", "chart-migration"})):
            page.click(f'nav a[href="{href}?lang=zh"]')
            page.wait_for_selector(".plotly-graph-div .main-svg")
            assert title in page.content()
            drawn = _charts_with_data(page)
            assert charts <= set(drawn) and all(n > 0 for n in drawn.values()), (href, drawn)
            name = href.rsplit("/", 1)[1]
            page.screenshot(path=str(shots / f"{name}-zh.png"), full_page=True)
            page.click("text=English")
            page.wait_for_selector(".plotly-graph-div .main-svg")
            assert title not in page.content() and all(n > 0 for n in _charts_with_data(page).values())
            page.screenshot(path=str(shots / f"{name}-en.png"), full_page=True)
            page.click("text=中文")
            page.wait_for_selector(".plotly-graph-div .main-svg")
        # another campaign from the select: the page reloads with its result
        page.click('nav a[href="/dashboard/abtests?lang=zh"]')
        second = page.eval_on_selector_all("select[name=name] option", "os => os.map(o => o.value)")[1]
        page.select_option("select[name=name]", second)
        page.wait_for_url(f"**name={second}**")
        assert f"实验 {second}" in page.content()
        page.click('nav a[href="/dashboard/risk?lang=zh"]')
        assert "高价值用户流失风险 Top 100" in page.content() and page.locator("#risk tbody tr").count() > 0
        page.screenshot(path=str(shots / "risk-zh.png"), full_page=True)
        browser.close()
    assert hosts == {"127.0.0.1"}, f"requests left the machine: {hosts}"
