"""The dashboard in a real browser: Debian's Chromium driven by Playwright for Python (never a
browser Playwright downloads). A trader logs in, sees their bot, starts and kills it through the
confirmation; a subscriber logs in, lands on their feed and sees the followed bot's signals,
live over the WebSocket, and never the other bot's. Nothing is loaded from outside the server
and no Content-Security-Policy violation is reported. Screenshots of each page are written to
$TICKBRIDGE_SCREENSHOTS (default: the test's tmp dir) as artifacts.

Skipped, saying why, when /usr/bin/chromium or the playwright package is missing
(.ci/run installs Chromium with apt-get when it can)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (extra 'test')")

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from engine.store.db import upgrade  # noqa: E402
from live.manager import BotManager  # noqa: E402
from tests.api.conftest import IDLE_FEED, PASSWORD, SMA, LiveServer, publish  # noqa: E402

WAIT_MS = 30_000  # a bound against a hang, not a measure: every wait ends on what the page shows


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    manager = BotManager(IDLE_FEED, database_url=url, state_dir=tmp_path / "state", record=False)
    app = create_app(Settings(database_url=url, auth_rate_per_minute=10_000, poll_interval_s=0.05), manager)
    with LiveServer(app) as server, httpx.Client(base_url=server.url + "/api/v1", timeout=30) as http:
        from sqlalchemy.orm import Session

        from api.users import create_user

        with Session(app.state.ctx.engine) as db:
            for name, role in (("ann", "trader"), ("bea", "trader"), ("sam", "subscriber"), ("root", "admin")):
                create_user(db, name, role, PASSWORD)
            db.commit()

        def login(name: str) -> dict[str, str]:
            token = http.post("/auth/token", json={"username": name, "password": PASSWORD}).json()["access_token"]
            return {"Authorization": f"Bearer {token}"}

        ann, bea, sam, root = (login(n) for n in ("ann", "bea", "sam", "root"))
        bots = {}
        for headers, name in ((ann, "ann-bot"), (bea, "bea-bot")):
            bots[name] = http.post("/bots", json={"id": name, **SMA}, headers=headers).json()["runtime_id"]
            assert http.post(f"/bots/{name}/publish", headers=headers).status_code == 200
        sam_id = next(u["id"] for u in http.get("/users", headers=root).json() if u["username"] == "sam")
        assert http.put(f"/users/{sam_id}/plan", json={"plan": "pro"}, headers=root).status_code == 200
        assert http.post("/subscriptions", json={"bot_id": bots["ann-bot"]}, headers=sam).status_code == 201
        publish(app.state.ctx.engine, bots["ann-bot"], 1_700_000_000_000_000_000)
        publish(app.state.ctx.engine, bots["bea-bot"], 1_700_000_000_000_000_001)
        yield server, app, bots
    manager.close()
    app.state.ctx.engine.dispose()


@pytest.fixture
def shots(tmp_path) -> Path:
    path = Path(os.environ.get("TICKBRIDGE_SCREENSHOTS") or tmp_path / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _page(browser, server):
    """A page that refuses (and records) any request off the server, and records console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    origin = urlsplit(server.url).netloc

    def route(r):
        if urlsplit(r.request.url).netloc != origin:
            problems.append(f"request to {r.request.url}")
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def _log_in(page, server, name):
    page.goto(server.url + "/login")
    page.get_by_label("user name").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="log in").click()


def test_a_trader_sees_their_bot_and_kills_it(world, browser, shots):
    server, _app, bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-bot").wait_for()
    assert page.get_by_role("link", name="bea-bot").count() == 0
    page.screenshot(path=str(shots / "trader-bots.png"), full_page=True)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("link", name="ann-bot").click()
    page.locator("#chart-price canvas").first.wait_for()
    page.locator("#bot-start").click()
    page.locator("#bot-state[data-state='RUNNING']").wait_for()
    page.locator("#bot-kill").click()
    page.locator("#bot-state[data-state='HALTED']").wait_for()
    page.screenshot(path=str(shots / "trader-bot.png"), full_page=True)
    assert problems == []
    page.get_by_role("button", name="log out").click()
    page.wait_for_url("**/login")
    page.goto(server.url + "/")  # the session is over: the page's refresh is refused (401), back to log in
    page.wait_for_url("**/login")


def test_a_subscriber_sees_only_the_bot_they_follow_live(world, browser, shots):
    server, app, bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "sam")
    page.wait_for_url("**/feed")
    rows = page.locator("#feed tbody tr")
    rows.first.wait_for()
    page.get_by_text("live", exact=True).wait_for()  # the WebSocket is authenticated
    publish(app.state.ctx.engine, bots["bea-bot"], 1_700_000_000_000_000_002)
    publish(app.state.ctx.engine, bots["ann-bot"], 1_700_000_000_000_000_003)
    page.locator("#feed tbody tr:nth-child(2)").wait_for()  # the new one arrived over the socket
    seen = page.locator("#feed tbody tr").evaluate_all("rows => rows.map(r => r.dataset.bot)")
    assert seen == [bots["ann-bot"]] * 2
    assert page.get_by_role("link", name="bots").is_hidden()
    page.screenshot(path=str(shots / "subscriber-feed.png"), full_page=True)
    assert problems == []

