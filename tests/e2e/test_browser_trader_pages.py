"""The dashboard's trader pages of issue 19 in a real browser (Debian's Chromium, Playwright), on the
fixtures of tests/e2e/test_browser_dashboard.py: a bot's risk state, the bot config forms, the
notifications page, and a feed page that takes 1,000+ signals in about a second without freezing.
Each writes its screenshot to the `shots` dir. No timing thresholds: every wait ends on what the
page shows (WAIT_MS bounds a hang)."""

from __future__ import annotations

import dataclasses
import time

import httpx

from tests.api.conftest import publish
from tests.e2e import test_browser_dashboard as dashboard
from tests.e2e.test_browser_dashboard import FX, _log_in, _page

pytestmark = dashboard.pytestmark  # skipped, saying why, without /usr/bin/chromium
world, browser, shots = dashboard.world, dashboard.browser, dashboard.shots  # its fixtures, shared

FLOOD = 1_100   # signals published into the open feed page
STEPS = 11      # in this many inserts, about a second in all


def _api(server, app, user: str = "ann") -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers=app.state.headers[user], timeout=30)


def test_the_bot_page_shows_the_runners_risk_state_its_limits_use_and_denials(world, browser, shots):
    """A bot whose every order is over its max_order_qty: once it runs, the page shows the gate's
    state, each limit's use against it and the denials counted with the last one's reason, as
    GET /status has them; a kill shows as the gate's halt with its reason."""
    server, app, _bots = world
    risk = {"default_bot": {"max_order_qty": "0.5", "max_position_qty": "100000", "max_open_orders": 3}}
    with _api(server, app) as http:
        assert http.post("/bots", json={"id": "ann-tight", **FX, "risk": risk}).status_code == 201
        page, problems = _page(browser, server)
        _log_in(page, server, "ann")
        page.get_by_role("link", name="ann-tight").wait_for()
        page.goto(server.url + "/bots/ann-tight")
        box = page.get_by_role("region", name="risk state")
        box.locator("p").first.wait_for()
        assert "not measured" in box.inner_text()  # never run in this runtime
        page.on("dialog", lambda dialog: dialog.accept())
        page.locator("#bot-start").click()
        page.wait_for_function("() => Number((document.getElementById('risk-denials') || {dataset: {}})"
                               ".dataset.denials) > 0")
        assert box.get_attribute("data-state") == "ACTIVE"
        use = box.locator("tr[data-limit='position_qty'] td").all_inner_texts()
        assert use == ["position", "0", "100000"]  # nothing got through
        assert box.locator("tr[data-limit='gross_exposure'] td").all_inner_texts()[2] == "no limit"
        assert "MAX_ORDER_QTY" in page.locator("#risk-denials").inner_text()
        page.locator("#bot-kill").click()
        page.locator("#bot-risk-state[data-state='HALTED']").wait_for()
        assert "KILL_SWITCH:dashboard" in page.locator("#risk-gate-state").inner_text()
        page.locator("#bot-stop").click()
        page.locator("#bot-state[data-state='HALTED']").wait_for()
        status = http.get("/bots/ann-tight/status").json()["risk"]
        page.wait_for_function("n => document.getElementById('risk-denials').dataset.denials === n",
                               arg=str(status["denials"]))
        assert status["last_denial"]["reason"] in page.locator("#risk-denials").inner_text()
    page.screenshot(path=str(shots / "trader-bot-risk-state.png"), full_page=True)
    assert problems == []


def _newest_id(engine, bot_id: str) -> int:
    from sqlalchemy import func, select

    from engine.store.signals import SIGNALS

    with engine.connect() as connection:
        return int(connection.execute(select(func.max(SIGNALS.c.id)).where(SIGNALS.c.bot_id == bot_id)).scalar_one())


def _flood(engine, bot_id: str, first_ts: int) -> None:
    """FLOOD signal rows of `bot_id` in STEPS multi-row inserts over about a second, written as
    models.signals.SqlSignals writes one (tests/api/conftest.py publish())."""
    from sqlalchemy import insert

    from engine.store.signals import SIGNALS

    per = FLOOD // STEPS
    for step in range(STEPS):
        rows = [{"bot_id": bot_id, "symbol": "SPY", "ts": first_ts + step * per + i, "direction": 1,
                 "target_weight": "0.5", "confidence": "0.7", "model_id": "0", "model_version": "0",
                 "payload": {"p_up": 0.7, "p_down": 0.3, "price": 401.5}, "published_ns": time.time_ns()}
                for i in range(per)]
        with engine.begin() as connection:
            connection.execute(insert(SIGNALS), rows)
        time.sleep(1 / STEPS)


def test_a_thousand_signals_a_second_into_the_open_feed_page_do_not_freeze_it(world, browser, shots):
    """1,100 signals in about a second into a subscriber's open feed page: every one is counted,
    the table keeps at most its cap of rows, the page still answers a click (pause) and no error
    is reported."""
    server, app, bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "sam")
    page.wait_for_url("**/feed")
    page.get_by_text("live", exact=True).wait_for()  # the WebSocket is authenticated
    page.locator("#feed tbody tr").first.wait_for()
    before = int(page.locator("#feed-count").get_attribute("data-count"))
    cap = page.evaluate("() => document.querySelector('#feed caption').textContent.match(/up to (\\d+)/)[1]")
    _flood(app.state.ctx.engine, bots["ann-bot"], 1_700_000_000_100_000_000)
    page.wait_for_function("n => Number(document.getElementById('feed-count').dataset.count) >= n",
                           arg=before + FLOOD)
    assert int(page.locator("#feed-count").get_attribute("data-count")) == before + FLOOD  # each once
    rows = page.locator("#feed tbody tr").count()
    assert rows == int(cap) < FLOOD
    newest = page.locator("#feed tbody tr").first.locator("td").first.inner_text()
    assert int(newest) == _newest_id(app.state.ctx.engine, bots["ann-bot"])  # the last one drawn on top
    # the page answers: a click on pause changes it, and a signal published while paused is counted, not drawn
    pause = page.get_by_role("button", name="pause the feed")
    pause.click()
    page.get_by_role("button", name="resume the feed").wait_for()
    assert page.get_by_role("button", name="resume the feed").get_attribute("aria-pressed") == "true"
    top = page.locator("#feed tbody tr").first.locator("td").first.inner_text()
    publish(app.state.ctx.engine, bots["ann-bot"], 1_700_000_000_200_000_000)
    page.wait_for_function("n => Number(document.getElementById('feed-count').dataset.count) >= n",
                           arg=before + FLOOD + 1)
    assert page.locator("#feed tbody tr").first.locator("td").first.inner_text() == top
    assert "1 waiting" in page.locator("#feed-count").inner_text()
    page.screenshot(path=str(shots / "subscriber-feed-flood.png"))  # the top: 500 rows make a huge full page
    page.get_by_role("button", name="resume the feed").click()
    page.wait_for_function("t => document.querySelector('#feed tbody tr td').textContent !== t", arg=top)
    assert page.locator("#feed tbody tr").count() == int(cap)
    assert problems == []


def _post_error(http: httpx.Client, method: str, path: str, body: dict) -> dict:
    """The API's own 422 answer to `body`: what the form must show, word for word."""
    answer = http.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    return answer.json()["error"]


def test_a_trader_creates_and_edits_a_bot_through_the_forms_with_the_apis_messages(world, browser, shots):
    """New bot and edit forms: each refused value's 422 message (the API's own words) shows next to
    the field it names, keyboard reachable and labelled; a valid form creates the bot, an edit
    stores a new version and keeps what the form does not show."""
    server, app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="new bot").click()
    page.wait_for_url("**/new-bot")
    form = page.locator("#bot-form")
    form.wait_for()
    unnamed = form.locator("button, input, select, textarea").evaluate_all(
        f"els => els.filter(e => !({dashboard.ACCESSIBLE_NAME})(e)).map(e => e.outerHTML)")
    assert unnamed == []
    page.get_by_label("name", exact=True).fill("ann-new")
    page.get_by_label("strategy").fill("sma_cross")
    page.get_by_label("parameters (JSON)").fill('{"fast": 9, "slow": 3}')
    page.get_by_label("symbol").fill("EURUSD")
    page.get_by_label("bar", exact=True).fill("1 fortnight")
    page.get_by_label("max order quantity").fill("-1")
    body = {"id": "ann-new", "strategy": "sma_cross", "params": {"fast": 9, "slow": 3}, "symbol": "EURUSD",
            "venue": "paper", "account": "default", "bar": "1 fortnight", "on_stop": "cancel",
            "risk": {"default_bot": {"max_order_qty": "-1"}}}
    with _api(server, app) as http:
        # the API names one field at a time: the page shows it there, the test fixes it, submits again
        fixes = {"bar": ("bar", ("bar", "1min"), {"bar": "1min"}),
                 "params.slow": ("params", ("parameters (JSON)", '{"fast": 2, "slow": 5}'),
                                 {"params": {"fast": 2, "slow": 5}}),
                 "risk.default_bot.max_order_qty": ("risk.default_bot.max_order_qty", ("max order quantity", "0.5"),
                                                    {"risk": {"default_bot": {"max_order_qty": "0.5"}}})}
        seen = []
        while len(seen) < len(fixes):
            want = _post_error(http, "POST", "/bots", body)
            field, (label, good), fixed = fixes[want["field"]]
            page.get_by_role("button", name="create the bot").click()
            error = page.locator(f"[data-error-for='{field}']")
            page.wait_for_function("e => e.textContent !== ''", arg=error.element_handle())
            prefix = "" if want["field"] == field else want["field"] + ": "  # shown at the nearest named input
            assert error.inner_text() == prefix + want["message"]
            assert page.locator(f"[data-field='{field}']").get_attribute("aria-invalid") == "true"
            assert page.evaluate("() => document.activeElement.dataset.field") == field  # focus on the field
            if not seen:
                page.screenshot(path=str(shots / "trader-bot-form.png"), full_page=True)
            seen.append(want["field"])
            page.get_by_label(label, exact=True).fill(good)
            body = {**body, **fixed}
        assert sorted(seen) == sorted(fixes)
        page.get_by_label("max open orders").focus()
        page.keyboard.type("3")
        page.keyboard.press("Enter")  # the keyboard submits the form
        page.wait_for_url("**/bots/ann-new")
        created = http.get("/bots/ann-new").json()
        assert created["version"] == 1
        assert created["config"]["risk"]["default_bot"] == {"max_order_qty": "0.5", "max_open_orders": 3}
        assert created["config"]["params"] == {"fast": 2, "slow": 5} and created["config"]["bar"] == "1min"
        page.get_by_role("link", name="edit config").click()
        page.wait_for_url("**/bots/ann-new/edit")
        assert page.get_by_label("max order quantity").input_value() == "0.5"  # the stored config, filled in
        page.get_by_label("cash").fill("-5")
        want = _post_error(http, "PUT", "/bots/ann-new", {**created["config"], "cash": "-5"})
        page.get_by_role("button", name="save a new version").click()
        page.wait_for_function("() => document.querySelector(\"[data-error-for='cash']\").textContent !== ''")
        assert page.locator("[data-error-for='cash']").inner_text() == want["message"]
        page.get_by_label("cash").fill("2500")
        page.get_by_label("max order quantity").fill("")
        page.get_by_role("button", name="save a new version").click()
        page.wait_for_url("**/bots/ann-new")
        edited = http.get("/bots/ann-new").json()
    assert edited["version"] == 2 and edited["config"]["cash"] == "2500"
    assert edited["config"]["risk"]["default_bot"] == {"max_open_orders": 3}  # the emptied limit is gone
    assert edited["config"]["tick_guard"] == created["config"]["tick_guard"]  # not on the form: kept
    assert [p for p in problems if "422" not in p] == []  # only the refused saves the page was told of


def _allow_loopback_webhooks(app) -> None:
    """Let webhook rules point at this machine (Settings.notify_allowed_networks, as an operator
    would for an internal receiver), in the API and in its running dispatcher."""
    ctx = app.state.ctx
    ctx.settings = dataclasses.replace(ctx.settings, notify_allowed_networks=("127.0.0.1/32",))
    if ctx.extra.get("notify") is not None:
        ctx.extra["notify"].settings = ctx.settings


def test_the_notifications_page_manages_rules_sends_a_test_and_pages_the_log(world, browser, shots):
    """Rules are created, edited, tested and deleted from the page; a refused rule shows the API's
    422 message at the field it names; the webhook secret is shown once and signs the test that the
    receiver gets; the delivery log pages back (?rows=1)."""
    from tests.api.test_notify import Receiver

    server, app, _bots = world
    page, problems = _page(browser, server)
    receiver = Receiver()
    try:
        _log_in(page, server, "ann")
        page.get_by_role("link", name="notifications").click()
        page.wait_for_url("**/notifications")
        page.locator("#rules-table").wait_for()
        assert page.locator("#nav-notifications").get_attribute("aria-current") == "page"
        unnamed = page.locator("button, input, select, textarea, a[href]").evaluate_all(
            f"els => els.filter(e => !({dashboard.ACCESSIBLE_NAME})(e)).map(e => e.outerHTML)")
        assert unnamed == []
        with _api(server, app) as http:
            # refused: a webhook to this machine (not allowed yet), then a price alert without its symbol
            page.get_by_label("rule name").fill("hook")
            page.get_by_label("webhook URL").fill(receiver.url)
            want = _post_error(http, "POST", "/notifications/rules",
                               {"name": "hook", "kind": "fill", "channel": {"type": "webhook", "url": receiver.url}})
            page.get_by_role("button", name="create the rule").click()
            error = page.locator(f"[data-error-for='{want['field']}']")
            page.wait_for_function("e => e.textContent !== ''", arg=error.element_handle())
            assert want["field"] == "channel.webhook.url" and error.inner_text() == want["message"]
            page.get_by_label("when").select_option("price")
            want = _post_error(http, "POST", "/notifications/rules",
                               {"name": "hook", "kind": "price", "channel": {"type": "webhook", "url": receiver.url}})
            page.get_by_role("button", name="create the rule").click()
            error = page.locator(f"[data-error-for='{want['field']}']")
            page.wait_for_function("e => e.textContent !== ''", arg=error.element_handle())
            assert want["field"] == "symbol" and error.inner_text() == want["message"]
            page.screenshot(path=str(shots / "trader-notifications-form.png"), full_page=True)
            # allowed: created, its secret shown once, and the test it sends is signed with that secret
            _allow_loopback_webhooks(app)
            page.get_by_label("when").select_option("fill")
            page.get_by_role("button", name="create the rule").click()
            page.locator("#rules-table tbody tr").first.wait_for()
            [rule] = http.get("/notifications/rules").json()
            secret = page.locator("#rule-secret").inner_text().rsplit(": ", 1)[1]
            assert rule["name"] == "hook" and rule["channel"] == {"type": "webhook", "url": receiver.url}
            receiver.secret = secret
            name = f"rule {rule['id']} (hook)"
            page.get_by_role("button", name=f"send a test {name}").click()
            page.locator("#rule-result[data-test-status]").wait_for()
            assert page.locator("#rule-result").get_attribute("data-test-status") == "sent"
            assert [c["verified"] for c in receiver.calls] == [True]
            log = page.locator("section.pager[aria-label='deliveries, newest first'] tbody tr")
            log.first.wait_for()
            # edited through the form (the secret left empty: the stored one is kept), then a second test
            page.get_by_role("button", name=f"edit {name}").click()
            assert page.get_by_label("webhook URL").input_value() == receiver.url
            page.get_by_label("rule name").fill("hook2")
            page.get_by_role("button", name="save the rule").click()
            page.locator("#rules-table tbody td", has_text="hook2").wait_for()
            page.get_by_role("button", name=f"send a test rule {rule['id']} (hook2)").click()
            page.wait_for_function("() => document.querySelectorAll(\"section.pager[aria-label='deliveries, newest "
                                   "first'] tbody tr\").length === 2")
            assert [c["verified"] for c in receiver.calls] == [True, True]
            page.screenshot(path=str(shots / "trader-notifications.png"), full_page=True)
            # the log pages back, one delivery a page
            page.goto(server.url + "/notifications?rows=1")
            first = page.locator("section.pager[aria-label='deliveries, newest first'] tbody tr td").first
            first.wait_for()
            deliveries = http.get("/notifications/deliveries").json()["items"]
            assert first.inner_text() == str(deliveries[0]["id"])
            page.get_by_role("button", name="deliveries, newest first: next page").click()
            page.locator("section.pager[aria-label='deliveries, newest first'] caption", has_text="page 2").wait_for()
            assert first.inner_text() == str(deliveries[1]["id"])
            # deleted after the confirmation; the log stays
            page.on("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name=f"delete rule {rule['id']} (hook2)").click()
            page.locator("#rules-table caption", has_text="0 rules").wait_for()
            assert http.get("/notifications/rules").json() == []
            assert len(http.get("/notifications/deliveries").json()["items"]) == 2
    finally:
        receiver.close()
    assert [p for p in problems if "422" not in p] == []  # only the refused saves the page was told of
