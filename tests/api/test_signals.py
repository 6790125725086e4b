"""Signals by REST (cursor paging), WebSocket and SSE: each limited to what the caller may see, a
free plan delayed (from publication), one shared poller feeding every stream. Subscribers follow
published bots; their plan is set by an admin (tests/api/test_entitlements.py has the details)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy import update

from api.app import create_app
from tests.api.conftest import LiveServer, publish
from engine.store.models import SignalRow

NOW = lambda: time.time_ns()  # noqa: E731
HOUR = 3600 * 1_000_000_000


@pytest.fixture
def world(make_api):
    api = make_api(free_delay_s=900)
    h = {name: api.user(name, role) for name, role in
         (("ann", "trader"), ("bea", "trader"), ("sam", "subscriber"), ("pia", "subscriber"), ("root", "admin"))}
    api.bot(h["ann"], "ann-bot")
    api.bot(h["bea"], "bea-bot")
    assert api.client.post("/api/v1/bots/ann-bot/publish", headers=h["ann"]).status_code == 200
    return api, h


def _pro(api, admin, username):
    """An admin grants the pro plan (subscribers cannot choose it)."""
    users = api.client.get("/api/v1/users", headers=admin).json()
    (user_id,) = [u["id"] for u in users if u["username"] == username]
    assert api.client.put(f"/api/v1/users/{user_id}/plan", json={"plan": "pro"}, headers=admin).status_code == 200


def _ids(api, headers, **params):
    response = api.client.get("/api/v1/signals", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [(s["bot_id"], s["ts"]) for s in response.json()["items"]]


def test_rest_pages_by_cursor(world):
    api, h = world
    for n in range(5):
        publish(api.ctx.engine, "ann-bot", 1000 + n)
    first = api.client.get("/api/v1/signals", headers=h["ann"], params={"limit": 2}).json()
    assert [s["ts"] for s in first["items"]] == [1000, 1001] and first["next_cursor"] == first["items"][-1]["id"]
    second = api.client.get("/api/v1/signals", headers=h["ann"], params={"limit": 2, "cursor": first["next_cursor"]})
    assert [s["ts"] for s in second.json()["items"]] == [1002, 1003]
    last = api.client.get("/api/v1/signals", headers=h["ann"], params={"cursor": second.json()["next_cursor"]}).json()
    assert [s["ts"] for s in last["items"]] == [1004] and last["next_cursor"] is None


def test_a_trader_sees_only_their_own_bots_signals(world):
    api, h = world
    publish(api.ctx.engine, "ann-bot", 1)
    publish(api.ctx.engine, "bea-bot", 2)
    assert _ids(api, h["ann"]) == [("ann-bot", 1)]
    assert _ids(api, h["bea"]) == [("bea-bot", 2)]
    assert _ids(api, h["ann"], bot_id="bea-bot") == []
    assert _ids(api, h["root"]) == [("ann-bot", 1), ("bea-bot", 2)]


def test_a_subscriber_sees_nothing_without_a_subscription(world):
    api, h = world
    publish(api.ctx.engine, "ann-bot", 1)
    assert _ids(api, h["sam"]) == []


def test_a_pro_subscriber_sees_subscribed_bots_in_real_time(world):
    api, h = world
    assert api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"]).status_code == 201
    _pro(api, h["root"], "sam")
    now = NOW()
    publish(api.ctx.engine, "ann-bot", now)
    publish(api.ctx.engine, "bea-bot", now)
    assert _ids(api, h["sam"]) == [("ann-bot", now)]


def test_a_free_subscriber_sees_a_signal_only_after_the_plan_delay(world):
    api, h = world
    api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["pia"])
    publish(api.ctx.engine, "ann-bot", 1)
    publish(api.ctx.engine, "ann-bot", 2)
    with api.ctx.engine.begin() as c:  # published an hour ago; a minute ago (< 15 min)
        for ts, age in ((1, HOUR), (2, 60 * 1_000_000_000)):
            c.execute(update(SignalRow.__table__).where(SignalRow.ts == ts).values(published_ns=NOW() - age))
    assert _ids(api, h["pia"]) == [("ann-bot", 1)]


def test_a_cancelled_subscription_sees_nothing_more(world):
    api, h = world
    sub = api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"]).json()
    _pro(api, h["root"], "sam")
    publish(api.ctx.engine, "ann-bot", 1)
    assert api.client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=h["sam"]).status_code == 204
    assert _ids(api, h["sam"]) == []
    assert api.client.get("/api/v1/subscriptions", headers=h["sam"]).json() == []
    assert api.client.get("/api/v1/subscriptions", headers=h["sam"],
                          params={"include_cancelled": True}).json()[0]["active"] is False


def test_subscribing_twice_or_to_a_missing_bot_is_refused(world):
    api, h = world
    api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"])
    assert api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"]).status_code == 409
    missing = api.client.post("/api/v1/subscriptions", json={"bot_id": "nope"}, headers=h["sam"])
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "bot_id"


def _ws(api, headers, **params):
    token = headers["Authorization"].split()[1]
    query = "&".join(f"{k}={v}" for k, v in {"token": token, **params}.items())
    return api.client.websocket_connect(f"/api/v1/signals/ws?{query}")


def test_websocket_streams_only_the_callers_signals(world):
    api, h = world
    api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"])
    _pro(api, h["root"], "sam")
    with _ws(api, h["sam"]) as sam_ws, _ws(api, h["bea"]) as bea_ws:
        publish(api.ctx.engine, "bea-bot", 10)
        publish(api.ctx.engine, "ann-bot", 11)
        assert sam_ws.receive_json()["signal"]["bot_id"] == "ann-bot"   # bea-bot's went past it
        assert bea_ws.receive_json()["signal"]["bot_id"] == "bea-bot"
        publish(api.ctx.engine, "bea-bot", 12)
        assert bea_ws.receive_json()["signal"]["ts"] == 12              # and ann-bot's went past bea


def test_websocket_after_id_replays_what_was_missed(world):
    api, h = world
    publish(api.ctx.engine, "ann-bot", 1)
    publish(api.ctx.engine, "ann-bot", 2)
    with _ws(api, h["ann"], after_id=0) as ws:
        assert [ws.receive_json()["signal"]["ts"] for _ in range(2)] == [1, 2]
        publish(api.ctx.engine, "ann-bot", 3)
        assert ws.receive_json()["signal"]["ts"] == 3


def test_websocket_refuses_a_caller_without_credentials(world):
    api, _ = world
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as closed:
        with api.client.websocket_connect("/api/v1/signals/ws?token=forged") as ws:
            ws.receive_json()
    assert closed.value.code == 1008


def test_websocket_holds_a_free_plans_signal_until_its_delay_has_passed(make_api):
    api = make_api(free_delay_s=1.0)
    ann, pia = api.user("ann", "trader"), api.user("pia", "subscriber")
    api.bot(ann, "ann-bot")
    api.client.post("/api/v1/bots/ann-bot/publish", headers=ann)
    api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=pia)
    with _ws(api, pia) as ws:
        ts = NOW()
        publish(api.ctx.engine, "ann-bot", ts)
        frame = ws.receive_json()
        assert frame["signal"]["ts"] == ts and NOW() >= ts + 1_000_000_000


def test_sse_streams_the_callers_signals_with_their_ids(world):
    api, h = world
    app = create_app(api.settings, api.bots)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/api/v1/signals/sse", headers=h["ann"]) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = (line for line in response.iter_lines() if line)  # events end with a blank line
            assert next(lines) == ": connected"
            publish(api.ctx.engine, "bea-bot", 20)
            publish(api.ctx.engine, "ann-bot", 21)
            event = [next(lines) for _ in range(3)]
    assert event[0].startswith("id: ") and event[1] == "event: signal"
    assert json.loads(event[2].removeprefix("data: "))["ts"] == 21


def test_streams_share_one_poller(world):
    api, h = world
    hub = api.ctx.hub
    with _ws(api, h["ann"]) as a, _ws(api, h["root"]) as b:
        assert hub.clients == 2
        publish(api.ctx.engine, "ann-bot", 30)
        assert a.receive_json()["signal"]["ts"] == 30 and b.receive_json()["signal"]["ts"] == 30
    assert hub.polling
