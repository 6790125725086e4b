"""A bot page with big books stays responsive (issue 19, item 5), in a real browser (Debian's Chromium,
Playwright) on the fixtures of tests/e2e/test_browser_dashboard.py.

A trader's bot runs for a few seconds (so the runtime holds candles of it), stops, and then gets
10,000 orders, 10,000 fills, 10,000 equity points and 2,000 signals written into its store tables in
one transaction through the store's own journal (engine.store.journal.SqlJournal, and the signals
through models.signals.SqlSignals riding on it): the rows a real bot writes, on the instrument's grid,
the fills inside the candles' time range so each one could be a marker. The page must then keep
one page of rows per table (and page to the last), give the chart library a bounded number of
points and markers (the script writes what it gave on the chart boxes), show the totals as the
API holds them, and answer a pager click and the kill button's confirmation. No timing threshold:
the time to ready is printed as a measure, every wait ends on what the page shows."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx

from tests.e2e import test_browser_dashboard as dashboard
from tests.e2e.test_browser_dashboard import FX, _log_in, _page

pytestmark = dashboard.pytestmark  # skipped, saying why, without /usr/bin/chromium
world, browser, shots = dashboard.world, dashboard.browser, dashboard.shots  # its fixtures, shared

N = 10_000         # orders, fills and equity points
SIGNALS = 2_000
ROWS = 1_000       # the page's rows per table page (?rows=, the API's largest): 10 pages of fills
MAX_DRAWN = 2_000  # what dashboard.js gives the chart library at most (points per series, markers)
MINUTE = 60 * 10**9
# a bot that trades nothing in the few seconds it runs (its slow average needs 400 bars): every
# order and fill on the page is one written here
QUIET = {**FX, "id": "ann-big", "params": {"fast": 2, "slow": 400}}


def _write_books(engine, runtime_id: str, first_ns: int, last_ns: int) -> None:
    """N filled orders (one fill each, a limit order every fourth), N equity points a minute apart
    before the run, and SIGNALS signals, committed by one journal flush: one transaction."""
    from engine.orders import Fill, Liquidity, Order, OrderEvent, OrderSide, OrderState, OrderType
    from engine.store.journal import SqlJournal
    from models.signals import Signal, SqlSignals

    journal = SqlJournal(engine, runtime_id, "paper")
    sink = SqlSignals(engine)
    sink.defer_to(journal)
    span = last_ns - first_ns
    qty = Decimal(1000)  # units; prices on the 0.00001 grid, fees in cents
    for i in range(N):
        ts = first_ns + span * i // N
        side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
        price_raw = 137_000 + (i * 7) % 500  # 1.37000 .. 1.37499
        kind = OrderType.LIMIT if i % 4 == 3 else OrderType.MARKET
        price = Decimal(price_raw).scaleb(-5)
        cid = f"{runtime_id}-{i + 1}"
        limit = price if kind is OrderType.LIMIT else None
        order = Order(cid, runtime_id, "EURUSD", side, kind, qty, ts, limit_price=limit, state=OrderState.FILLED,
                      filled_qty=qty, avg_fill_price=price)
        journal.record_event(order, OrderEvent(cid, OrderState.FILLED, ts))
        fill = Fill(f"big-{i + 1}", cid, "EURUSD", side, 1000, price_raw, 3, 0, 5, 2, ts,
                    Liquidity.MAKER if kind is OrderType.LIMIT else Liquidity.TAKER)
        journal.record_fill(order, fill)
        journal.record_equity(first_ns - (N - i) * MINUTE, Decimal(10_000 + (i * 37) % 200 - i // 100),
                              Decimal(10_000), Decimal(0), Decimal(0), Decimal(0))  # the paper account's 10,000
    for i in range(SIGNALS):
        sink.publish(Signal(runtime_id, "EURUSD", first_ns + span * i // SIGNALS, 1 if i % 3 else -1,
                            Decimal("0.6"), Decimal("0.5"), 0.6, 0.4, 1.37, 1, 2))
    journal.flush()
    journal.close()


def _held(app, runtime_id: str) -> tuple[int, int]:
    """The fills and orders the store holds for the bot: what the page's totals must say."""
    from sqlalchemy import func, select

    from engine.store.models import FillRow, OrderRow

    with app.state.ctx.engine.connect() as db:
        fills = db.scalar(select(func.count()).select_from(FillRow).where(FillRow.bot_id == runtime_id))
        orders = db.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.bot_id == runtime_id))
    return fills or 0, orders or 0


def _newest_fill_id(app, runtime_id: str) -> int:
    from sqlalchemy import func, select

    from engine.store.models import FillRow

    with app.state.ctx.engine.connect() as db:
        return db.scalar(select(func.max(FillRow.id)).where(FillRow.bot_id == runtime_id)) or 0


def _caption(page, label: str) -> str:
    return page.locator(f"section.pager[aria-label='{label}'] caption").inner_text()


def _shown(page, label: str) -> int:
    return page.locator(f"section.pager[aria-label='{label}'] tbody tr").count()


def _to_last_page(page, label: str) -> int:
    """Click the pager's next page until it is disabled, each click showing the next page with at
    most a page of rows; the number of the last page."""
    box = page.locator(f"section.pager[aria-label='{label}']")
    nxt = box.get_by_role("button", name=f"{label}: next page")
    n = 1
    while not nxt.is_disabled():
        assert n < N // ROWS + 2, "a next page past the end"
        n += 1
        nxt.click()
        box.locator("caption", has_text=f"(page {n} of").wait_for()
        assert _shown(page, label) <= ROWS
    return n


def test_a_bot_page_with_10000_fills_pages_its_tables_and_decimates_its_charts(world, browser, shots):
    server, app, _bots = world
    headers = app.state.headers["ann"]
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        runtime_id = http.post("/bots", json=QUIET).json()["runtime_id"]
        assert http.post("/bots/ann-big/start").status_code == 200
        bars: list = []
        for _ in range(300):  # 600x: a 1-minute candle every 0.1 s
            bars = http.get("/bots/ann-big/bars?limit=5000").json()["bars"]
            if len(bars) >= 20:
                break
            time.sleep(0.1)
        assert http.post("/bots/ann-big/stop").status_code == 200
        bars = http.get("/bots/ann-big/bars?limit=5000").json()["bars"]
        assert len(bars) >= 20, "the runtime keeps the stopped bot's candles"
        assert http.get("/bots/ann-big/fills?limit=1").json() == []  # it traded nothing: every fill is ours
        _write_books(app.state.ctx.engine, runtime_id, bars[0]["time_ns"], bars[-1]["time_ns"] + MINUTE - 1)
        assert _held(app, runtime_id) == (N, N)
        assert len(http.get(f"/signals?limit=1000&bot_id={runtime_id}").json()["items"]) == 1000

    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-big").wait_for()
    started = time.perf_counter()
    page.goto(f"{server.url}/bots/ann-big?rows={ROWS}")
    page.locator("section.pager[aria-label='fills'] tbody tr").first.wait_for()
    tables_s = time.perf_counter() - started
    page.locator("#chart-price[data-markers]").wait_for()
    ready_s = time.perf_counter() - started
    page.locator("#chart-equity[data-drawn]").wait_for()
    markers = int(page.locator("#chart-price").get_attribute("data-markers"))
    drawn = {k: int(page.locator(f"#chart-{k}").get_attribute("data-drawn") or -1) for k in ("equity", "drawdown")}
    points = int(page.locator("#chart-equity").get_attribute("data-points"))
    rows_in_dom = page.locator("tbody tr").count()
    print(f"\nbig books: fills table in {tables_s:.2f} s, ready in {ready_s:.2f} s; markers {markers}, "
          f"equity points {points} drawn {drawn}, rows in the DOM {rows_in_dom}")

    # every table holds one page
    for label in ("fills", "orders, newest first"):
        assert _shown(page, label) == ROWS, label
        assert "(page 1" in _caption(page, label)
    # the totals are the API's, not a page's
    totals = page.locator("section.pager [data-total]")
    fills_total = page.locator("section.pager[aria-label='fills'] [data-total]")
    orders_total = page.locator("section.pager[aria-label='orders, newest first'] [data-total]")
    fills_total.wait_for()
    orders_total.wait_for()
    assert fills_total.get_attribute("data-total") == str(N) and fills_total.inner_text() == "10,000 fills in all"
    assert orders_total.get_attribute("data-total") == str(N) and orders_total.inner_text() == "10,000 orders in all"
    assert totals.count() >= 2
    # the charts got a bounded share of what there is, and something of it
    assert 0 < markers <= MAX_DRAWN
    # ... and still stand for every fill (one marker per candle and side says how many it holds)
    assert page.locator("#chart-price").get_attribute("data-marked-fills") == str(N)
    assert points >= N  # the count of the whole curve ...
    assert 0 < drawn["equity"] <= MAX_DRAWN and 0 < drawn["drawdown"] <= MAX_DRAWN  # ... drawn as its envelope
    assert page.locator("#chart-equity canvas").count() > 0

    # it still answers: a pager click changes the rows, the kill button asks first
    orders = "orders, newest first"
    first_page = page.locator(f"section.pager[aria-label='{orders}'] tbody tr").first.inner_text()
    page.get_by_role("button", name=f"{orders}: next page").click()
    page.locator(f"section.pager[aria-label='{orders}'] caption", has_text="(page 2 of").wait_for()
    assert page.locator(f"section.pager[aria-label='{orders}'] tbody tr").first.inner_text() != first_page
    asked: list[str] = []

    def refuse(dialog):
        asked.append(dialog.message)
        dialog.dismiss()  # asked, and told no: the bot stays as it is

    page.on("dialog", refuse)
    page.locator("#bot-kill").click()
    page.wait_for_function("() => true")  # the click's dialog is handled before the next evaluation
    assert asked and asked[0].startswith("Kill")
    page.remove_listener("dialog", refuse)

    # the fills pager reaches its last page (no empty page after a full one), which shows the newest fill
    assert _to_last_page(page, "fills") == N // ROWS
    assert _shown(page, "fills") == ROWS
    shown_last = page.locator("section.pager[aria-label='fills'] tbody tr").last.inner_text()
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        newest = http.get(f"/bots/ann-big/fills?limit=1&after_id={_newest_fill_id(app, runtime_id) - 1}").json()
    assert newest and newest[0]["ts"] in shown_last
    assert page.locator("tbody tr").count() <= 3 * ROWS  # fills, orders and (empty) denials: a page each at most
    # the charts, the totals and the first rows of the orders table, in one tall viewport
    page.set_viewport_size({"width": 1280, "height": 1900})
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "dashboard-big-books.png"))
    assert problems == []
