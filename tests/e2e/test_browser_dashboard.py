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
# 600x real time: the demo-like EURUSD bot makes a 1-minute candle every 0.1 s; the SPY bots (daily
# bars) still wait minutes for their second bar, so they trade nothing while a test looks at them
FEED = IDLE_FEED.model_copy(update={"speed": 600.0})
FX = {"strategy": "sma_cross", "params": {"fast": 2, "slow": 5}, "symbol": "EURUSD", "venue": "paper", "bar": "1min"}


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    manager = BotManager(FEED, database_url=url, state_dir=tmp_path / "state", record=False)
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
        assert http.post("/bots", json={"id": "ann-fx", **FX}, headers=ann).status_code == 201
        sam_id = next(u["id"] for u in http.get("/users", headers=root).json() if u["username"] == "sam")
        assert http.put(f"/users/{sam_id}/plan", json={"plan": "pro"}, headers=root).status_code == 200
        assert http.post("/subscriptions", json={"bot_id": bots["ann-bot"]}, headers=sam).status_code == 201
        publish(app.state.ctx.engine, bots["ann-bot"], 1_700_000_000_000_000_000)
        publish(app.state.ctx.engine, bots["bea-bot"], 1_700_000_000_000_000_001)
        app.state.headers = {"ann": ann, "sam": sam}  # the tests' own API calls
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



# The accessible name of an element, as far as this page needs it (aria-label, aria-labelledby,
# a <label>, its own text): every control must have one.
ACCESSIBLE_NAME = """e => (e.getAttribute('aria-label') ||
  (e.getAttribute('aria-labelledby') || '').split(' ')
    .map(i => (document.getElementById(i) || {}).textContent || '').join(' ') ||
  Array.from(e.labels || []).map(l => l.textContent).join(' ') || e.textContent || '').trim()"""


def _candles(page) -> tuple[int, str]:
    box = page.locator("#chart-price")
    return int(box.get_attribute("data-candles") or 0), box.get_attribute("data-last-candle") or ""


def test_the_bot_page_candle_chart_follows_the_running_bot_with_its_trades(world, browser, shots):
    server, app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-fx").wait_for()
    page.get_by_role("link", name="ann-fx").click()
    page.locator("#chart-price[data-candles] canvas").first.wait_for()
    assert page.locator("#chart-price").get_attribute("data-candles") == "0"  # never run: no candles
    assert "has not run" in page.locator("#candles-note").inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#bot-start").click()
    page.locator("#bot-state[data-state='RUNNING']").wait_for()
    page.wait_for_function("() => Number(document.getElementById('chart-price').dataset.candles) > 0")
    box = page.locator("#chart-price").element_handle()
    count, last = _candles(page)
    # the chart moves: new candles arrive (polled) while nothing else on the page is rebuilt
    page.wait_for_function("last => document.getElementById('chart-price').dataset.lastCandle !== last", arg=last)
    later_count, later_last = _candles(page)
    assert int(later_last) > int(last) and later_count >= count
    page.wait_for_function("() => Number(document.getElementById('chart-price').dataset.markers) > 0")  # fills
    assert box.evaluate("b => b.isConnected")  # the same chart element: updated in place, not re-rendered
    bars = httpx.get(server.url + "/api/v1/bots/ann-fx/bars?limit=5000", headers=app.state.headers["ann"]).json()
    assert bars["symbol"] == "EURUSD" and bars["bars"] and bars["source"] == "runtime"
    summary = page.locator("#candles-summary").inner_text()
    assert "candles of 1min" in summary and "close" in summary  # what the chart shows, as text for a screen reader
    page.select_option("#timeframe", "5min")  # whole 5-minute candles from the same bars
    page.wait_for_function("() => document.getElementById('candles-summary').textContent.includes('candles of 5min')")
    page.reload()  # a page opened on the running bot: its candles, trades, equity and tables at once
    page.locator("#chart-price[data-markers]").wait_for()
    page.wait_for_function("() => Number(document.getElementById('chart-price').dataset.markers) > 0")
    page.locator("section.pager table").last.wait_for()
    page.screenshot(path=str(shots / "trader-bot-candles.png"), full_page=True)
    page.locator("#bot-stop").click()
    page.locator("#bot-state[data-state='STOPPED']").wait_for()
    assert problems == []


def _table(page, label: str = "fills") -> list[list[str]]:
    """The cells' text of the named pager's table as shown."""
    return page.locator(f"section.pager[aria-label='{label}'] tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")


def _cells(row: dict, *keys: str) -> list[str]:
    """An API row's fields as a table shows them: text, an absent value an empty cell."""
    return ["" if row[k] is None else str(row[k]) for k in keys]


def _rows(table: str) -> str:
    """A page function: true once the named pager's table has a row."""
    return f"() => document.querySelectorAll(\"section.pager[aria-label='{table}'] tbody tr\").length > 0"


NEXT_ORDERS = "section.pager[aria-label='orders, newest first'] button[aria-label$='next page']"


def test_the_bot_page_books_follow_the_running_bot_in_place_and_keep_the_page(world, browser, shots):
    """Equity, drawdown and the positions/orders/fills tables move while the bot runs (issue 19): new
    equity points join the charts and each table re-reads the page on show, the elements stay the
    same (a focused button keeps focus), the page a user paged to stays, and a hidden tab reads nothing."""
    server, app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-fx").wait_for()
    page.goto(server.url + "/bots/ann-fx?rows=3")  # short pages: a second page comes within seconds
    page.locator("section.pager[aria-label='fills'] table").wait_for()
    assert page.locator("#chart-equity").get_attribute("data-points") == "0"  # never run: empty books
    assert _table(page) == []
    fills_box = page.locator("section.pager[aria-label='fills']").element_handle()
    equity_box = page.locator("#chart-equity").element_handle()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#bot-start").click()
    page.locator("#bot-state[data-state='RUNNING']").wait_for()
    # no reload: the running bot's fills, position and equity appear on the page as it trades
    page.wait_for_function(_rows("fills"))
    page.wait_for_function(_rows("positions"))
    page.wait_for_function("() => Number(document.getElementById('chart-equity').dataset.points) > 1")
    assert fills_box.evaluate("b => b.isConnected") and equity_box.evaluate("b => b.isConnected")
    # paging survives the refresh: page 2 of the orders stays page 2, its button keeps the focus
    orders_next = page.get_by_role("button", name="orders, newest first: next page")
    page.wait_for_function("s => !document.querySelector(s).disabled", arg=NEXT_ORDERS)
    orders_next.focus()
    page.keyboard.press("Enter")
    orders = page.locator("section.pager[aria-label='orders, newest first']")
    orders.locator("caption", has_text="page 2").wait_for()
    seen = int(page.locator("div.tables").get_attribute("data-refreshed") or 0)
    page.wait_for_function("n => Number(document.querySelector('div.tables').dataset.refreshed) > n + 1", arg=seen)
    assert "page 2" in orders.locator("caption").inner_text()
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "orders, newest first: next page"
    page.locator("#bot-stop").click()
    page.locator("#bot-state[data-state='STOPPED']").wait_for()
    # once stopped, a refresh later the page shows what the API holds: the first page of fills and every
    # equity point (one per bar close, a minute apart)
    seen = int(page.locator("div.tables").get_attribute("data-refreshed") or 0)
    page.wait_for_function("n => Number(document.querySelector('div.tables').dataset.refreshed) > n + 1", arg=seen)
    headers = app.state.headers["ann"]
    fills = httpx.get(server.url + "/api/v1/bots/ann-fx/fills?limit=3&after_id=0", headers=headers).json()
    want = [_cells(f, "ts", "side", "qty", "price", "fee", "liquidity") for f in fills]
    assert fills and _table(page) == want
    points = httpx.get(server.url + "/api/v1/bots/ann-fx/equity?every=bar&limit=1000", headers=headers).json()
    seconds = str(len({p["ts_ns"] // 10**9 for p in points}))
    assert 1 < len(points) < 1000  # all of them
    assert page.locator("#chart-equity").get_attribute("data-points") == seconds
    assert page.locator("#chart-drawdown").get_attribute("data-points") == seconds
    page.screenshot(path=str(shots / "trader-bot-live.png"), full_page=True)
    # a hidden tab reads nothing; shown again it catches up at once
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/equity" in r.url else None)
    page.evaluate("() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}); }")
    page.wait_for_timeout(11_000)  # two refresh periods (5 s) and more: a hidden page must skip them all
    assert asked == []
    page.evaluate("() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
                  " document.dispatchEvent(new Event('visibilitychange')); }")
    page.wait_for_function("n => Number(document.querySelector('div.tables').dataset.refreshed) > n", arg=seen + 2)
    assert asked
    assert problems == []


def test_the_bot_page_shows_its_risk_limits_and_the_orders_the_gate_denied_with_their_reason(world, browser, shots):
    """A bot whose every order is over its max_order_qty: the page states the limit as the config has
    it and lists the denials live, newest first, each with the gate's reason code, as the API holds them."""
    server, app, _bots = world
    headers = app.state.headers["ann"]
    tight = {"id": "ann-tight", **FX, "risk": {"default_bot": {"max_order_qty": "0.5"}}}
    assert httpx.post(server.url + "/api/v1/bots", json=tight, headers=headers).status_code == 201
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-tight").wait_for()
    page.goto(server.url + "/bots/ann-tight")
    denials = page.locator("section.pager[aria-label='risk denials, newest first']")
    denials.locator("table").wait_for()
    assert denials.locator("tbody tr").count() == 0  # never run: nothing denied yet
    risk = page.get_by_role("region", name="risk limits")
    assert risk.locator("dd[data-limit='max_order_qty']").inner_text() == "0.5"
    assert "the account: no limits set" in risk.inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#bot-start").click()
    page.locator("#bot-state[data-state='RUNNING']").wait_for()
    page.wait_for_function(_rows("risk denials, newest first"))  # no reload: the live refresh brings them
    page.locator("#bot-stop").click()
    page.locator("#bot-state[data-state='STOPPED']").wait_for()
    seen = int(page.locator("div.tables").get_attribute("data-refreshed") or 0)
    page.wait_for_function("n => Number(document.querySelector('div.tables').dataset.refreshed) > n + 1", arg=seen)
    denied = httpx.get(server.url + "/api/v1/bots/ann-tight/orders?state=DENIED&limit=50", headers=headers).json()
    shown = _table(page, "risk denials, newest first")
    assert denied and shown == [_cells(o, "ts_init", "side", "type", "qty", "limit_price", "reason") for o in denied]
    assert {row[5] for row in shown} == {"MAX_ORDER_QTY"}
    assert page.locator("section.pager[aria-label='fills'] tbody tr").count() == 0  # nothing got through
    page.screenshot(path=str(shots / "trader-bot-risk.png"), full_page=True)
    assert problems == []


def test_the_accounts_page_shows_each_accounts_pnl_per_bot_and_summed(world, browser, shots):
    """A paper account with a bot that traded on it: the page (linked from the nav) shows the account's
    risk state, its sums and each bot's P&L and the positions as GET /accounts/{id}/pnl has them."""
    server, app, _bots = world
    headers = app.state.headers["ann"]
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        desk = http.post("/accounts", json={"name": "desk", "venue": "paper", "credentials": {}}).json()
        assert http.post("/bots", json={"id": "ann-desk", **FX, "account": "desk"}).status_code == 201
        assert http.post("/bots/ann-desk/start").status_code == 200
        page, problems = _page(browser, server)
        _log_in(page, server, "ann")
        page.get_by_role("link", name="ann-desk").wait_for()
        while not http.get("/bots/ann-desk/fills?limit=1").json():  # it trades (600x: within seconds)
            page.wait_for_timeout(200)
        assert http.post("/bots/ann-desk/stop").status_code == 200
        want = http.get(f"/accounts/{desk['id']}/pnl").json()
    page.get_by_role("link", name="accounts").click()
    page.wait_for_url("**/accounts")
    box = page.get_by_role("region", name="desk (paper)")
    box.locator("table").last.wait_for()
    assert page.locator("#nav-accounts").get_attribute("aria-current") == "page"
    assert box.locator(".account-state").get_attribute("data-state") == want["state"]["state"]
    sums = {k: box.locator(f"dd[data-sum='{k}']").inner_text() for k in ("realized", "fees", "unrealized", "day P&L")}
    assert sums == {"realized": want["realized"], "fees": want["fees"], "unrealized": want["unrealized"],
                    "day P&L": want["day_pnl"]}
    per_bot = box.locator("table").first.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")
    assert [row[:5] for row in per_bot] == [_cells(b, "bot_id", "realized", "fees", "equity", "unrealized")
                                            for b in want["bots"]]
    assert per_bot[0][0] == "ann-desk" and want["bots"][0]["equity"] is not None  # it ran: equity points
    box.get_by_role("link", name="ann-desk").wait_for()  # each bot links to its page
    held = box.locator("table").last.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")
    assert held == [_cells(x, "symbol", "bots", "venue", "external") for x in want["positions"]]
    page.screenshot(path=str(shots / "trader-accounts.png"), full_page=True)
    assert problems == []


def test_the_keyboard_reaches_every_control_and_kills_through_the_confirmation(world, browser, shots):
    server, _app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-bot").wait_for()
    for path, ready in (("/", "table"), ("/feed", "#feed"), ("/backtests", "table"),
                        ("/bots/ann-bot", "section.pager table")):
        page.goto(server.url + path)
        page.locator(ready).first.wait_for()
        # every control on the page has a name a screen reader can say
        unnamed = page.locator("button, input, select, a[href]").evaluate_all(
            f"els => els.filter(e => !({ACCESSIBLE_NAME})(e)).map(e => e.outerHTML)")
        assert unnamed == [], path
        assert page.locator("[aria-current='page']").count() == 1, path
    page.locator("#chart-price[data-candles]").wait_for()
    assert page.locator("#chart-price").get_attribute("role") == "img"
    assert page.locator("label[for='timeframe']").count() == 1
    # Tab from the top of the page reaches the kill button, passing named controls only
    page.locator("body").focus()
    seen = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(f"() => [document.activeElement.id, ({ACCESSIBLE_NAME})(document.activeElement)]")
        seen.append(focused)
        assert focused[1], f"a focusable element without a name after {seen}"
        if focused[0] == "bot-kill":
            break
    assert seen[-1][0] == "bot-kill", seen
    assert seen[0][1] == "skip to content"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focus is not visible"
    asked = []

    def confirm(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.keyboard.press("Enter")
    page.locator("#bot-state[data-state='HALTED']").wait_for()
    assert asked and asked[0].startswith("Kill")
    page.keyboard.press("Shift+Tab")  # back to stop, still in the controls' group
    assert page.evaluate("() => document.activeElement.id") == "bot-stop"
    assert problems == []


def test_a_subscriber_opening_a_bot_they_do_not_follow_sees_nothing_of_it(world, browser, shots):
    server, app, bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "sam")
    page.wait_for_url("**/feed")
    # the feed page has its session (a navigation while its token refresh is in flight would send
    # the rotated-away cookie again, which the API takes for a stolen one and ends the session)
    page.get_by_text("live", exact=True).wait_for()
    for key in (bots["bea-bot"], "bea-bot", bots["ann-bot"]):
        page.goto(server.url + "/bots/" + key)
        page.locator("#main [role='alert']").wait_for()
        assert page.locator("#chart-price").count() == 0 and page.locator("table").count() == 0
        text = page.locator("#main").inner_text()
        assert "SPY" not in text and "sma_cross" not in text
    answer = httpx.get(f"{server.url}/api/v1/bots/{bots['bea-bot']}/bars", headers=app.state.headers["sam"])
    assert answer.status_code == 403
    problems[:] = [p for p in problems if "403" not in p]  # the refused reads the page was told of
    assert problems == []


def test_a_backtest_report_page_shows_stats_trades_and_the_chart(world, browser, shots):
    server, app, _bots = world
    ann = app.state.headers["ann"]
    job = httpx.post(server.url + "/api/v1/backtests", headers=ann, json={
        "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "data": "stocks/SPY_daily.csv"}).json()["id"]
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-bot").wait_for()
    page.goto(server.url + "/backtests")
    page.get_by_role("link", name=job[:12]).wait_for()
    for _ in range(300):  # the job runs in the server's pool: the page says queued/running until it is done
        state = httpx.get(f"{server.url}/api/v1/backtests/{job}", headers=ann).json()["status"]
        if state not in ("queued", "running"):
            break
        page.wait_for_timeout(100)
    assert state == "done"
    page.get_by_role("link", name=job[:12]).click()
    page.locator("table.tb-trades tbody tr").first.wait_for()
    trades = int(page.locator("#main").get_attribute("data-trades"))
    result = httpx.get(f"{server.url}/api/v1/backtests/{job}/result", headers=ann).json()
    assert trades == len(page.locator("table.tb-trades tbody tr").all()) > 0
    assert page.locator("table.tb-stats tbody tr").count() >= 10
    assert page.locator(".tb-chart canvas").count() >= 2  # equity (with the trades) and drawdown
    assert page.locator("h1").inner_text().startswith("backtest " + job)
    assert len(result["trades"]) == trades
    points = int(page.locator("#main").get_attribute("data-points"))
    assert len(result["equity"]) > 4000 >= points  # 5,000 daily bars drawn as their envelope
    page.screenshot(path=str(shots / "trader-backtest.png"))  # the charts, stats and first trades
    page.locator("table.tb-trades tbody tr").first.focus()
    page.keyboard.press("Enter")  # a trade row picked with the keyboard: the charts zoom to it
    assert problems == []
