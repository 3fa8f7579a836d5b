"""The dashboard in a real browser: log in, switch language, open every page; each chart drew
its data, and no request left the machine. Needs Debian's chromium (``.ci/run`` installs it).

Screenshots go to ``$USERSTRATA_SCREENSHOTS`` when set (else the test's temporary folder).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# no calls home: the machine's closed network refuses them, and an offline shop has none
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(served):
    import uvicorn

    ws, client, tokens = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", tokens
    srv.should_exit = True
    thread.join(timeout=10)


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
