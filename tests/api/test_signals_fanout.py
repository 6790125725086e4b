"""The signal hub's direct-write fan-out (issue 18): under uvicorn's websockets-sansio protocol the
hub writes each signal's frame, built once, straight to every idle client's socket; a client that
is busy (something queued), whose transport is paused, or whose `send` passes through a middleware
the hub does not know goes through its queue and the ASGI send, in order. Real uvicorn on a
loopback port, a real WebSocket client, a real SQLite store."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import insert
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from api.app import create_app
from api.streaming import ws_frame, ws_message
from engine.store.models import SignalRow
from tests.api.conftest import LiveServer, publish

WAIT_S = 30.0


class Served(LiveServer):
    """The app under uvicorn as `tickbridge serve` runs it (api.serving): websockets-sansio, no
    per-message deflate."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        super().__init__(app)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", ws_ping_interval=None, ws="websockets-sansio",
                                                    ws_per_message_deflate=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def ann(make_api):
    api = make_api()
    headers = api.user("ann", "trader")
    api.bot(headers, "ann-bot")
    return api, headers["Authorization"].split()[1]


def _until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _hub_client(hub: Any) -> Any:
    _until(lambda: len(hub._by_bot.get("ann-bot", ())) == 1, "the stream to register")
    (client,) = hub._by_bot["ann-bot"]
    return client


def _signals(socket: Any, n: int) -> list[dict[str, Any]]:
    return [json.loads(socket.recv(timeout=WAIT_S))["signal"] for _ in range(n)]


@pytest.mark.parametrize("size", [10, 200, 70_000])
def test_a_frame_is_the_one_websockets_builds_for_the_same_message(size):
    text = json.dumps({"blob": "x" * size})  # short, 16-bit and 64-bit length headers
    assert ws_frame(text) == Frame(Opcode.TEXT, ws_message(text).encode()).serialize(mask=False)


def test_an_idle_client_is_written_to_directly_and_gets_every_signal_in_order(ann):
    api, token = ann
    app = create_app(api.settings, api.bots)
    with Served(app) as server, connect(f"ws://127.0.0.1:{server.port}/api/v1/signals/ws?token={token}") as ws:
        client = _hub_client(app.state.ctx.hub)
        assert client.writer is not None  # uvicorn's protocol was reached through Starlette's wrappers
        for n in range(5):
            publish(api.ctx.engine, "ann-bot", 100 + n)
        got = _signals(ws, 5)
        assert [s["ts"] for s in got] == [100, 101, 102, 103, 104]
        assert [s["id"] for s in got] == sorted(s["id"] for s in got)
        assert not client.busy and client.queue.empty()  # nothing went through the queue


def _big(engine: Any, n: int, size: int) -> None:
    """n signals of `size` payload bytes each, written in one transaction (as a bot's burst)."""
    with engine.begin() as connection:
        for i in range(n):
            connection.execute(insert(SignalRow.__table__).values(bot_id="ann-bot", symbol="SPY", ts=1000 + i,
                                                                  direction=1, payload={"blob": "x" * size}))


def test_a_paused_transport_falls_back_to_the_queue_and_a_busy_client_keeps_its_order(ann):
    api, token = ann
    app = create_app(api.settings, api.bots)
    n, size = 120, 300_000  # ~36 MB: more than the socket buffers and the client's read-ahead hold
    with Served(app) as server, connect(f"ws://127.0.0.1:{server.port}/api/v1/signals/ws?token={token}",
                                            max_size=None, max_queue=1) as ws:
        client = _hub_client(app.state.ctx.hub)
        protocol = client.writer.protocol
        _big(api.ctx.engine, n, size)  # the client reads nothing yet
        _until(lambda: client.sent_upto and not protocol.writable.is_set(), "the transport to pause")
        _until(lambda: client.busy and client.queue.qsize() > 0, "signals to queue behind the paused socket")
        publish(api.ctx.engine, "ann-bot", 5000)  # arrives while the client is busy: queued behind the rest
        got = _signals(ws, n + 1)
        assert [s["ts"] for s in got] == [1000 + i for i in range(n)] + [5000]
        assert all(len(s["payload"]["blob"]) == size for s in got[:n])
        _until(lambda: not client.busy, "the queue to drain")
        publish(api.ctx.engine, "ann-bot", 6000)  # idle again: direct, still in order
        assert _signals(ws, 1)[0]["ts"] == 6000
        assert not client.busy and client.queue.empty()


class WatchSends:
    """A middleware that sees every WebSocket message the app sends (as an audit or tracing
    middleware might): the hub must not bypass it."""

    def __init__(self, app: Any) -> None:
        self.app, self.seen = app, []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watched(message: Any) -> None:
            self.seen.append(message["type"])
            await send(message)

        await self.app(scope, receive, watched if scope["type"] == "websocket" else send)


def test_a_middleware_that_wraps_send_keeps_every_message_on_the_asgi_path(ann):
    api, token = ann
    app = create_app(api.settings, api.bots)
    app.add_middleware(WatchSends)
    with Served(app) as server, connect(f"ws://127.0.0.1:{server.port}/api/v1/signals/ws?token={token}") as ws:
        client = _hub_client(app.state.ctx.hub)
        assert client.writer is None
        publish(api.ctx.engine, "ann-bot", 1)
        publish(api.ctx.engine, "ann-bot", 2)
        assert [s["ts"] for s in _signals(ws, 2)] == [1, 2]
    watcher = app.middleware_stack
    while not isinstance(watcher, WatchSends):
        watcher = watcher.app
    assert watcher.seen.count("websocket.send") == 2


def test_a_connection_with_per_message_deflate_stays_on_the_asgi_path(ann):
    """Compression negotiated (uvicorn's default, not `tickbridge serve`'s): the hub's frames are
    uncompressed bytes, so such a client is served by the protocol's own send."""
    api, token = ann
    app = create_app(api.settings, api.bots)
    with LiveServer(app) as server, connect(f"ws://127.0.0.1:{server.port}/api/v1/signals/ws?token={token}") as ws:
        client = _hub_client(app.state.ctx.hub)
        assert client.writer is None
        publish(api.ctx.engine, "ann-bot", 7)
        assert _signals(ws, 1)[0]["ts"] == 7


def test_a_reconnecting_client_gets_its_backlog_and_what_was_dispatched_while_it_was_read(ann):
    """after_id: a row the poller dispatches while the backlog is being read comes after the
    backlog, once; before, the client joined first and that row made it skip its whole backlog."""
    import asyncio

    from sqlalchemy import select

    from api.deps import SignalScope
    from api.streaming import SignalHub

    engine = ann[0].ctx.engine
    for ts in (1, 2, 3):
        publish(engine, "ann-bot", ts)

    async def scenario() -> list[int]:
        hub = SignalHub(engine, 0.02)
        hub.last_id = await asyncio.to_thread(hub._max_id)
        registering = asyncio.create_task(hub.register(SignalScope(False, {"ann-bot": 0}), after_id=0))
        await asyncio.sleep(0)  # register is now reading the backlog in a thread
        publish(engine, "ann-bot", 4)
        with engine.connect() as connection:  # what the poller would fetch and dispatch now
            rows = list(connection.execute(select(SignalRow.__table__).where(SignalRow.id > hub.last_id)))
        await hub.dispatch(rows)
        client = await registering
        publish(engine, "ann-bot", 5)
        with engine.connect() as connection:
            await hub.dispatch(list(connection.execute(select(SignalRow.__table__).where(SignalRow.id > hub.last_id))))
        got = []
        while not client.queue.empty():
            got.append(json.loads(client.queue.get_nowait()[3])["ts"])
        return got

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5]
