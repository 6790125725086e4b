"""Notifications (issue 19 item 3), through the API on a real store, over real loopback sockets:
a webhook receiver that checks the HMAC, a fake of Telegram's Bot API (tests/fakes/telegram_fake.py)
and an SMTP server (aiosmtpd).

The dispatcher runs in the test's thread (`run_once`), not on the app's timer (notify_enabled is
off), so each test decides when events are read and deliveries sent: nothing waits on a clock.
Retries are due at once (notify_backoff_s = 0) unless a test is about their schedule.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from api.notify import events
from api.notify.dispatcher import Dispatcher, backoff_s
from api.notify.rules import UnsafeTarget, check_target
from api.notify.store import ATTEMPTS, DELIVERIES, RULES
from api.settings import Settings
from engine.store.models import AccountRiskStateRow, AuditRow, FillRow, OrderRow, UserRow
from live.books import record_stop
from models.signals import Signal, SqlSignals
from tests.fakes.telegram_fake import TelegramFake

NS = 1_000_000_000
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
LOOPBACK = ("127.0.0.1/32",)


class Receiver:
    """A webhook endpoint on a loopback port: answers the scripted statuses in turn (then 200)
    and records each request with whether its signature verified under `secret`."""

    def __init__(self, statuses: list[int] | None = None, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.extra_headers = headers or {}
        self.secret = ""
        self.calls: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                receiver.calls.append({"body": json.loads(body), "headers": dict(self.headers),
                                       "verified": hmac.compare_digest(expected,
                                                                       self.headers.get("X-Tickbridge-Signature", ""))})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                for name, value in (receiver.extra_headers.items() if status != 200 else ()):
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None, headers: dict[str, str] | None = None) -> Receiver:
        made.append(Receiver(statuses, headers))
        return made[-1]

    yield make
    for r in made:
        r.close()


def notify_api(make_api, **settings: Any):
    values: dict[str, Any] = {"notify_enabled": False, "notify_allowed_networks": LOOPBACK, "notify_backoff_s": 0.0}
    values.update(settings)
    return make_api(**values)


def dispatcher(api) -> Dispatcher:
    return Dispatcher(api.ctx.engine, api.settings, api.ctx.vault)


def signal(api, bot_id: str, price: float = 401.5, ts: int = 1, symbol: str = "SPY") -> None:
    SqlSignals(api.ctx.engine).publish(Signal(bot_id, symbol, ts, 1, Decimal("0.7"), Decimal("0.5"), 0.7, 0.3,
                                              price, 1, 1))


def fills(api, bot_id: str, *prices: str, qty: str = "0.00012345") -> None:
    """One order of `bot_id` filled at each price in turn, written as the journal writes them."""
    with api.ctx.engine.begin() as c:
        c.execute(insert(OrderRow.__table__).values(
            client_order_id=f"{bot_id}-1", bot_id=bot_id, symbol="SPY", side="BUY", type="MARKET", qty=Decimal(qty),
            tif="GTC", reduce_only=False, tag="", state="FILLED", filled_qty=Decimal(qty), external=False, ts_init=1,
            ts_last=2))
        for i, price in enumerate(prices):
            c.execute(insert(FillRow.__table__).values(
                venue="paper", execution_id=f"e{i}", client_order_id=f"{bot_id}-1", bot_id=bot_id, symbol="SPY",
                side="BUY", qty=Decimal(qty), price=Decimal(price), fee=Decimal("0.01"), liquidity="TAKER", ts=2 + i))


def rule(api, headers, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/v1/notifications/rules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(api, headers, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get("/api/v1/notifications/deliveries", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def trader_with_bot(api, name: str = "alice", bot: str = "b1") -> tuple[dict[str, str], str]:
    headers = api.user(name, "trader")
    return headers, api.bot(headers, bot)["runtime_id"]


# -- webhooks ------------------------------------------------------------------------------------------------
def test_a_webhook_is_signed_retried_after_5xx_and_logged_attempt_by_attempt(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver([503, 500])
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()  # the sources' cursors start at their end: history is never announced
    created = rule(api, trader, kind="signal", bot_id="b1", channel={"type": "webhook", "url": hook.url})
    hook.secret = created["secret"]
    assert created["channel"] == {"type": "webhook", "url": hook.url} and len(hook.secret) >= 32
    signal(api, bot)

    for _ in range(3):
        worker.run_once()

    assert [c["verified"] for c in hook.calls] == [True, True, True]
    body = hook.calls[-1]["body"]
    assert body["kind"] == "signal" and body["data"]["bot_id"] == bot and body["data"]["price"] == "401.5"
    assert hook.calls[-1]["headers"]["X-Tickbridge-Timestamp"] == str(body["timestamp"])  # signed inside the body
    assert len({c["headers"]["X-Tickbridge-Delivery"] for c in hook.calls}) == 1  # one delivery, three attempts
    [logged] = deliveries(api, trader)
    assert logged["status"] == "sent" and logged["attempts"] == 3
    assert [(a["attempt"], a["status"], a["http_status"]) for a in logged["log"]] == [
        (1, "retry", 503), (2, "retry", 500), (3, "sent", 200)]
    assert logged["log"][0]["next_attempt_ns"] is not None and logged["log"][2]["next_attempt_ns"] is None
    worker.run_once()
    assert len(hook.calls) == 3  # delivered: never again
    # the secret is shown once, at creation, never read back
    again = api.client.get(f"/api/v1/notifications/rules/{created['id']}", headers=trader).json()
    assert again["secret"] is None and hook.secret not in json.dumps(again)


def test_a_4xx_is_final_and_429_waits_its_retry_after(make_api, receiver):
    api = notify_api(make_api)
    refused, limited = receiver([404]), receiver([429], {"Retry-After": "120"})
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": refused.url})
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": limited.url})
    signal(api, bot)
    before = time.time_ns()
    worker.run_once()
    worker.run_once()

    by_rule = {d["rule_id"]: d for d in deliveries(api, trader)}
    first, second = sorted(by_rule)
    assert by_rule[first]["status"] == "failed" and by_rule[first]["attempts"] == 1 and len(refused.calls) == 1
    assert by_rule[second]["status"] == "pending" and len(limited.calls) == 1
    assert by_rule[second]["next_attempt_ns"] >= before + 120 * NS  # the receiver's Retry-After, not the backoff


def test_retries_are_bounded(make_api, receiver):
    api = notify_api(make_api, notify_max_attempts=3)
    down = receiver([503] * 10)
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": down.url})
    signal(api, bot)
    for _ in range(6):
        worker.run_once()
    [logged] = deliveries(api, trader)
    assert logged["status"] == "failed" and logged["attempts"] == 3 and len(down.calls) == 3
    assert [a["status"] for a in logged["log"]] == ["retry", "retry", "failed"]


def test_backoff_grows_exponentially_with_bounded_jitter():
    import random

    settings = Settings(notify_backoff_s=2.0, notify_backoff_max_s=60.0)
    rng = random.Random(7)
    for attempt, base in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)):
        wait = backoff_s(attempt, settings, rng)
        assert base <= wait <= base * 1.5


# -- Telegram and email --------------------------------------------------------------------------------------
def test_telegram_gets_a_bot_api_send_message_and_the_token_is_never_shown(make_api):
    with TelegramFake({TOKEN}, {"4242"}) as telegram:
        api = notify_api(make_api, telegram_api_base=telegram.base_url)
        trader, bot = trader_with_bot(api)
        worker = dispatcher(api)
        worker.run_once()
        created = rule(api, trader, kind="signal", channel={"type": "telegram", "chat_id": 4242, "bot_token": TOKEN})
        telegram.flood(1, retry_after=0)
        signal(api, bot, price=401.5)
        worker.run_once()
        worker.run_once()

        [message] = telegram.messages
        assert message["chat"]["id"] == 4242 and message["parse_mode"] == "HTML"
        assert message["text"] == f"{bot}: signal long SPY at 401.5"
        [logged] = deliveries(api, trader)
        assert logged["status"] == "sent" and [a["http_status"] for a in logged["log"]] == [429, 200]
        shown = [api.client.get(f"/api/v1/notifications/rules/{created['id']}", headers=trader).text,
                 api.client.get("/api/v1/notifications/rules", headers=trader).text, json.dumps(created),
                 json.dumps(deliveries(api, trader))]
        with api.ctx.engine.connect() as connection:
            shown += [str(r.detail) for r in connection.execute(select(AuditRow.__table__))]
            stored = connection.execute(select(RULES.c.secret)).scalar_one()
        assert all(TOKEN not in text and TOKEN.split(":")[1] not in text for text in shown)
        assert TOKEN not in stored  # encrypted at rest


def test_a_telegram_refusal_is_logged_without_the_token(make_api):
    with TelegramFake({"999:" + "x" * 35}, {"1"}) as telegram:  # our token is unknown there: 401
        api = notify_api(make_api, telegram_api_base=telegram.base_url)
        trader, _ = trader_with_bot(api)
        created = rule(api, trader, kind="fill", channel={"type": "telegram", "chat_id": "1", "bot_token": TOKEN})
        answer = api.client.post(f"/api/v1/notifications/rules/{created['id']}/test", headers=trader)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["status"] == "failed" and result["last_http_status"] == 401
        assert "Unauthorized" in result["last_error"] and TOKEN not in answer.text
        assert telegram.requests == [f"/bot{TOKEN}/sendMessage"]  # it did ask, with the token in the path only


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            self.messages.append(envelope)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_email_goes_through_smtp(make_api, smtp_server):
    inbox, port = smtp_server
    api = notify_api(make_api, smtp_host="127.0.0.1", smtp_port=port, smtp_from="bots@example.org")
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="bot_state", channel={"type": "email", "address": "alice@example.org"})
    record_stop(api.ctx.engine, bot, "KILLED", "killed by alice")
    worker.run_once()
    [mail] = inbox.messages
    assert mail.mail_from == "bots@example.org" and mail.rcpt_tos == ["alice@example.org"]
    assert f"{bot} stopped (KILLED): killed by alice" in mail.content.decode()


def test_email_rules_need_a_configured_smtp_server(make_api):
    api = notify_api(make_api)
    trader, _ = trader_with_bot(api)
    response = api.client.post("/api/v1/notifications/rules", headers=trader,
                               json={"kind": "fill", "channel": {"type": "email", "address": "a@example.org"}})
    assert response.status_code == 422 and response.json()["error"]["field"] == "channel"


# -- who is told what ----------------------------------------------------------------------------------------
def _publish(api, headers, name: str) -> str:
    response = api.client.post(f"/api/v1/bots/{name}/publish", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["runtime_id"]


def _subscribe(api, headers, runtime_id: str) -> int:
    response = api.client.post("/api/v1/subscriptions", json={"bot_id": runtime_id}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _set_plan(api, admin, username: str, plan: str) -> None:
    with Session(api.ctx.engine) as db:
        user_id = db.scalar(select(UserRow.id).where(UserRow.username == username))
    response = api.client.put(f"/api/v1/users/{user_id}/plan", json={"plan": plan}, headers=admin)
    assert response.status_code == 200, response.text


def test_a_subscriber_is_told_only_what_the_plan_shows_and_when(make_api, receiver):
    api = notify_api(make_api)
    followed, other = receiver(), receiver()
    admin = api.user("root", "admin")
    trader, bot = trader_with_bot(api)
    api.bot(trader, "b2")
    published, unfollowed = _publish(api, trader, "b1"), _publish(api, trader, "b2")
    fan = api.user("fan", "subscriber")
    _subscribe(api, fan, published)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, fan, kind="signal", bot_id=published, channel={"type": "webhook", "url": followed.url})
    rule(api, fan, kind="signal", bot_id=unfollowed, channel={"type": "webhook", "url": other.url})
    signal(api, bot)
    signal(api, unfollowed)

    worker.run_once()
    assert followed.calls == [] and other.calls == []  # free plan: not before its delay
    [pending] = deliveries(api, fan)  # the bot not followed makes no delivery at all
    with api.ctx.engine.connect() as connection:
        published_ns = connection.execute(select(events.SIGNALS.c.published_ns)).scalars().first()
    assert pending["status"] == "pending"
    assert pending["next_attempt_ns"] == published_ns + int(api.settings.free_delay_s * NS)

    _set_plan(api, admin, "fan", "pro")  # real time now: the queued delivery is due at its next check
    worker.send_due(now_ns=pending["next_attempt_ns"])
    assert len(followed.calls) == 1 and other.calls == []


def test_a_subscriber_who_cancels_before_the_delay_is_not_told(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    _publish(api, trader, "b1")
    fan = api.user("fan", "subscriber")
    subscription = _subscribe(api, fan, bot)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, fan, kind="signal", channel={"type": "webhook", "url": hook.url})
    signal(api, bot)
    worker.run_once()
    assert api.client.delete(f"/api/v1/subscriptions/{subscription}", headers=fan).status_code == 204
    worker.send_due(now_ns=time.time_ns() + 10 * int(api.settings.free_delay_s * NS))
    [logged] = deliveries(api, fan)
    assert hook.calls == [] and logged["status"] == "skipped" and "no longer visible" in logged["last_error"]


def test_subscribers_may_not_watch_fills_or_stops(make_api):
    api = notify_api(make_api)
    fan = api.user("fan", "subscriber")
    for kind in ("fill", "bot_state", "daily_loss"):
        response = api.client.post("/api/v1/notifications/rules", headers=fan,
                                   json={"kind": kind, "channel": {"type": "webhook", "url": "http://127.0.0.1/x"}})
        assert response.status_code == 403 and response.json()["error"]["field"] == "kind"


def test_rules_are_owner_scoped(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    alice, alices_bot = trader_with_bot(api)
    bob, bobs_bot = trader_with_bot(api, "bob", "b1")
    created = rule(api, alice, kind="fill", channel={"type": "webhook", "url": hook.url})
    path = f"/api/v1/notifications/rules/{created['id']}"
    assert api.client.get(path, headers=bob).status_code == 404
    assert api.client.put(path, headers=bob, json={"kind": "fill", "channel": {"type": "webhook",
                                                                                "url": hook.url}}).status_code == 404
    assert api.client.post(path + "/test", headers=bob).status_code == 404
    assert api.client.delete(path, headers=bob).status_code == 404
    assert api.client.get("/api/v1/notifications/rules", headers=bob).json() == []
    # bob's bot of the same name is bob's: a rule on "b1" watches his own
    bobs = rule(api, bob, kind="fill", bot_id="b1", channel={"type": "webhook", "url": hook.url})
    assert bobs["bot_id"] == "b1"
    with api.ctx.engine.connect() as connection:
        stored = dict(connection.execute(select(RULES.c.id, RULES.c.bot_id)).all())
    assert alices_bot != bobs_bot and stored[bobs["id"]] == bobs_bot  # his runtime id, not alice's bot
    assert api.client.delete(path, headers=alice).status_code == 204
    assert api.client.get(path, headers=alice).status_code == 404


def test_a_trader_is_not_told_of_another_traders_fills_or_stops(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    alice, _ = trader_with_bot(api)
    bob, bobs_bot = trader_with_bot(api, "bob", "b7")
    worker = dispatcher(api)
    worker.run_once()
    rule(api, alice, kind="bot_state", stop_reasons=["ERROR"], channel={"type": "webhook", "url": hook.url})
    record_stop(api.ctx.engine, bobs_bot, "ERROR", "books do not reconcile")
    worker.run_once()
    assert hook.calls == [] and deliveries(api, alice) == []


# -- restart, price alerts, daily loss -------------------------------------------------------------------------
def test_a_restarted_dispatcher_neither_repeats_nor_loses(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    first = dispatcher(api)
    first.run_once()
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": hook.url})
    signal(api, bot, ts=1)
    first.run_once()
    assert len(hook.calls) == 1
    signal(api, bot, ts=2)  # while no dispatcher runs

    restarted = dispatcher(api)  # a new process: nothing in memory, only the store
    restarted.run_once()
    restarted.run_once()
    assert [c["body"]["event"] for c in hook.calls] == [hook.calls[0]["body"]["event"], hook.calls[1]["body"]["event"]]
    assert len(hook.calls) == 2 and hook.calls[0]["body"]["event"] != hook.calls[1]["body"]["event"]
    # reading the same events again (a cursor lost) makes no second delivery: (rule, event) is unique
    with api.ctx.engine.begin() as connection:
        connection.execute(events.CURSORS.delete())
        connection.execute(insert(events.CURSORS).values(source="signals", position=0))
    restarted.run_once()
    assert len(hook.calls) == 2
    with api.ctx.engine.connect() as connection:
        assert connection.execute(select(DELIVERIES)).all().__len__() == 2


def test_a_price_alert_fires_once_per_crossing(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="price", symbol="SPY", level="100", direction="above",
         channel={"type": "webhook", "url": hook.url})
    for ts, price in enumerate((99.0, 100.5, 102.0, 101.0, 98.0, 100.0, 99.99), start=1):
        signal(api, bot, price=price, ts=ts)
        worker.run_once()  # each price read on its own (also in one batch: see below)
    assert [(c["body"]["data"]["previous"], c["body"]["data"]["price"]) for c in hook.calls] == [
        ("99", "100.5"), ("98", "100")]  # amounts in one spelling


def test_a_price_alert_sees_every_price_of_one_batch_in_order(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="price", symbol="SPY", level="50.25", direction="below",
         channel={"type": "webhook", "url": hook.url})
    for ts, price in enumerate((51.0, 50.25, 50.0, 51.0, 49.0), start=1):
        signal(api, bot, price=price, ts=ts)
    worker.run_once()
    assert [c["body"]["data"]["price"] for c in hook.calls] == ["50.25", "49"]
    with api.ctx.engine.connect() as connection:
        assert connection.execute(select(RULES.c.last_price)).scalar_one() == Decimal("49")


def test_the_daily_loss_limit_is_told_once_to_the_accounts_owner(make_api, receiver):
    api = notify_api(make_api)
    hook, others = receiver(), receiver()
    alice, _ = trader_with_bot(api)
    bob, _ = trader_with_bot(api, "bob", "b9")
    worker = dispatcher(api)
    worker.run_once()
    rule(api, alice, kind="daily_loss", channel={"type": "webhook", "url": hook.url})
    rule(api, bob, kind="daily_loss", channel={"type": "webhook", "url": others.url})
    with Session(api.ctx.engine) as db:
        alice_id = db.scalar(select(UserRow.id).where(UserRow.username == "alice"))
    with api.ctx.engine.begin() as connection:
        connection.execute(insert(AccountRiskStateRow.__table__).values(
            account_key=f"{alice_id}:main", state="REDUCING", reason="DAILY_LOSS", changed_ts=5, day=20000,
            pnl_base=Decimal(0), drawdown_base=Decimal(0), seq=1))
    for _ in range(3):
        worker.run_once()
    assert len(hook.calls) == 1 and others.calls == []
    assert hook.calls[0]["body"]["data"] == {"account": "main", "state": "REDUCING", "reason": "DAILY_LOSS",
                                             "changed_ts": 5, "day": 20000}


def test_bot_state_rules_filter_stop_reasons(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    created = rule(api, trader, kind="bot_state", bot_id="b1", channel={"type": "webhook", "url": hook.url})
    assert created["stop_reasons"] == ["ERROR", "KILLED", "LEASE_LOST", "STORE_ERROR"]  # the default
    record_stop(api.ctx.engine, bot, "STOPPED", "stopped by alice")
    worker.run_once()
    assert hook.calls == []
    time.sleep(0.002)  # a later stop: stopped_at is the wall clock, to the microsecond
    record_stop(api.ctx.engine, bot, "ERROR", "books do not reconcile")
    worker.run_once()
    worker.run_once()
    assert [c["body"]["data"]["stop_reason"] for c in hook.calls] == ["ERROR"]


# -- rules as input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "signal", "level": "1", "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "level"),
    ({"kind": "price", "symbol": "SPY", "direction": "above",
      "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "level"),
    ({"kind": "price", "level": "1", "direction": "above",
      "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "symbol"),
    ({"kind": "price", "symbol": "SPY", "level": "-1", "direction": "above",
      "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "level"),
    ({"kind": "price", "symbol": "SPY", "level": "1", "direction": "sideways",
      "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "direction"),
    ({"kind": "fill", "stop_reasons": ["ERROR"], "channel": {"type": "webhook", "url": "http://127.0.0.1/"}},
     "stop_reasons"),
    ({"kind": "bot_state", "stop_reasons": ["TIRED"], "channel": {"type": "webhook", "url": "http://127.0.0.1/"}},
     "stop_reasons.0"),
    ({"kind": "daily_loss", "bot_id": "b1", "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "bot_id"),
    ({"kind": "news", "channel": {"type": "webhook", "url": "http://127.0.0.1/"}}, "kind"),
    ({"kind": "fill", "channel": {"type": "webhook", "url": "ftp://127.0.0.1/"}}, "channel.webhook.url"),
    ({"kind": "fill", "channel": {"type": "webhook", "url": "http://u:p@127.0.0.1/"}}, "channel.webhook.url"),
    ({"kind": "fill", "channel": {"type": "webhook", "url": "http://127.0.0.1/", "secret": "short"}},
     "channel.webhook.secret"),
    ({"kind": "fill", "channel": {"type": "telegram", "chat_id": 1, "bot_token": "nope"}},
     "channel.telegram.bot_token"),
    ({"kind": "fill", "channel": {"type": "telegram", "chat_id": 1}}, "channel.telegram.bot_token"),
    ({"kind": "fill", "channel": {"type": "telegram", "chat_id": "a b", "bot_token": TOKEN}},
     "channel.telegram.chat_id"),
    ({"kind": "fill", "channel": {"type": "email", "address": "not-an-address"}}, "channel.email.address"),
    ({"kind": "fill", "channel": {"type": "pigeon"}}, "channel"),
])
def test_a_bad_rule_is_a_422_naming_the_field_and_stores_nothing(module_api_notify, body, field):
    api, trader = module_api_notify
    response = api.client.post("/api/v1/notifications/rules", json=body, headers=trader)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    with api.ctx.engine.connect() as connection:
        assert connection.execute(select(RULES)).all() == []


@pytest.fixture(scope="module")
def module_api_notify(tmp_path_factory, migrated_db):
    from tests.api.conftest import _apis, _close

    make, apis = _apis(tmp_path_factory.mktemp("notify"), migrated_db)
    api = make(notify_enabled=False, notify_allowed_networks=LOOPBACK, smtp_host="127.0.0.1")
    trader = api.user("alice", "trader")
    api.bot(trader, "b1")
    yield api, trader
    _close(apis)


def test_a_webhook_to_a_private_address_is_refused_unless_allowed(make_api):
    api = make_api(notify_enabled=False)  # no allowed networks: the default
    trader, _ = trader_with_bot(api)
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://localhost/x"):
        response = api.client.post("/api/v1/notifications/rules", headers=trader,
                                   json={"kind": "fill", "channel": {"type": "webhook", "url": url}})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["field"] == "channel.webhook.url"


def test_the_address_check_runs_again_at_send_time(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": hook.url})
    signal(api, bot)
    strict = Dispatcher(api.ctx.engine, Settings(notify_backoff_s=0.0), api.ctx.vault)  # loopback no longer allowed
    strict.run_once()
    [logged] = deliveries(api, trader)
    assert hook.calls == [] and logged["status"] == "failed" and "non-public" in logged["last_error"]


def test_check_target_refuses_names_resolving_inside():
    with pytest.raises(UnsafeTarget):
        check_target("http://localhost:8080/", ())
    check_target("http://localhost:8080/", ("127.0.0.0/8", "::1/128"))
    check_target("https://93.184.215.14/hook", ())  # a public address passes without any DNS


def test_rule_changes_are_audited_and_a_put_keeps_the_stored_secret(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    created = rule(api, trader, kind="signal", channel={"type": "webhook", "url": hook.url})
    hook.secret = created["secret"]
    response = api.client.put(f"/api/v1/notifications/rules/{created['id']}", headers=trader,
                              json={"name": "renamed", "kind": "signal",
                                    "channel": {"type": "webhook", "url": hook.url}})
    assert response.status_code == 200 and response.json()["name"] == "renamed" and response.json()["secret"] is None
    worker = dispatcher(api)
    worker.run_once()
    signal(api, bot)
    worker.run_once()
    assert [c["verified"] for c in hook.calls] == [True]  # still signed with the first secret
    with api.ctx.engine.connect() as connection:
        actions = [r.action for r in connection.execute(select(AuditRow.__table__).order_by(AuditRow.id))
                   if r.action.startswith("notification_rule.")]
        details = [str(r.detail) for r in connection.execute(select(AuditRow.__table__))]
    assert actions == ["notification_rule.create", "notification_rule.update"]
    assert all(created["secret"] not in d for d in details)


def test_the_test_endpoint_sends_one_message_and_logs_it(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, _ = trader_with_bot(api)
    created = rule(api, trader, kind="fill", channel={"type": "webhook", "url": hook.url})
    hook.secret = created["secret"]
    answer = api.client.post(f"/api/v1/notifications/rules/{created['id']}/test", headers=trader).json()
    assert answer["status"] == "sent" and answer["event_kind"] == "test" and [a["status"] for a in answer["log"]] == [
        "sent"]
    assert [c["verified"] for c in hook.calls] == [True] and hook.calls[0]["body"]["kind"] == "test"
    with api.ctx.engine.connect() as connection:
        assert connection.execute(select(ATTEMPTS)).all().__len__() == 1


def test_the_delivery_log_pages_newest_first(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    trader, _ = trader_with_bot(api)
    created = rule(api, trader, kind="fill", channel={"type": "webhook", "url": hook.url})
    for _ in range(5):
        api.client.post(f"/api/v1/notifications/rules/{created['id']}/test", headers=trader)
    first = api.client.get("/api/v1/notifications/deliveries", params={"limit": 3}, headers=trader).json()
    rest = api.client.get("/api/v1/notifications/deliveries", params={"limit": 3, "before": first["next_cursor"]},
                          headers=trader).json()
    ids = [d["id"] for d in first["items"]] + [d["id"] for d in rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5 and rest["next_cursor"] is None
    other = api.user("bob", "trader")
    assert deliveries(api, other) == []


def test_a_fill_reaches_its_bots_owner_with_exact_amounts(make_api, receiver):
    api = notify_api(make_api)
    hook, elsewhere = receiver(), receiver()
    trader, bot = trader_with_bot(api)
    api.bot(trader, "b2")
    worker = dispatcher(api)
    worker.run_once()
    rule(api, trader, kind="fill", bot_id="b1", channel={"type": "webhook", "url": hook.url})
    rule(api, trader, kind="fill", bot_id="b2", channel={"type": "webhook", "url": elsewhere.url})
    fills(api, bot, "401.123456789")
    worker.run_once()
    [call] = hook.calls
    assert call["body"]["data"] | {"ts": 0} == {"bot_id": bot, "symbol": "SPY", "side": "BUY", "qty": "0.00012345",
                                              "price": "401.123456789", "fee": "0.01", "client_order_id": f"{bot}-1",
                                              "ts": 0}
    assert elsewhere.calls == []  # the other bot's rule


def test_a_subscribers_price_alert_reads_only_the_signals_they_may_see(make_api, receiver):
    api = notify_api(make_api)
    hook = receiver()
    admin = api.user("root", "admin")
    trader, bot = trader_with_bot(api)
    _publish(api, trader, "b1")
    fan = api.user("fan", "subscriber")
    _subscribe(api, fan, bot)
    _set_plan(api, admin, "fan", "pro")
    worker = dispatcher(api)
    worker.run_once()
    rule(api, fan, kind="price", symbol="SPY", level="100", direction="above",
         channel={"type": "webhook", "url": hook.url})
    fills(api, bot, "99", "101", "99", "101")  # the bot's own fills: its owner's business, not the fan's
    worker.run_once()
    assert hook.calls == [] and deliveries(api, fan) == []
    signal(api, bot, price=99.0, ts=1)
    signal(api, bot, price=101.0, ts=2)
    worker.run_once()
    assert [c["body"]["data"]["price"] for c in hook.calls] == ["101"]


def test_the_apps_own_dispatcher_delivers(make_api, receiver):
    """create_app starts one dispatcher with the app (and stops it with it): no test hand-cranks it."""
    api = make_api(notify_allowed_networks=LOOPBACK, notify_interval_s=0.05)
    hook = receiver()
    trader, bot = trader_with_bot(api)
    assert api.ctx.extra["notify"] is not None
    with api.ctx.engine.connect() as connection:  # wait for its first scan (the cursors start at the end)
        deadline = time.monotonic() + 60
        while connection.execute(select(events.CURSORS)).first() is None and time.monotonic() < deadline:
            connection.rollback()
            time.sleep(0.02)
    rule(api, trader, kind="signal", channel={"type": "webhook", "url": hook.url})
    signal(api, bot)
    deadline = time.monotonic() + 60  # a bound on a hang, not a speed requirement
    while not hook.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(hook.calls) == 1 and hook.calls[0]["body"]["kind"] == "signal"
