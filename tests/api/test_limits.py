"""The API under pressure (issue 11, items 2 and 8): a bounded number of requests in flight, the
rest shed with 503 + Retry-After (never 500); a busy store is 503, not 500; bounded bodies (413,
408) and request heads; security headers; metrics behind a token or on their own port.

Servers here are real uvicorn servers on loopback, configured as `tickbridge serve` configures
them (api.serving), over a real SQLite store and the real runtime. Slow requests are made slow by a
BotManager whose status() blocks until the test lets it go: nothing depends on how fast this machine is.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from api import serving
from api.app import create_app
from api.middleware import ConcurrencyLimit
from live.manager import BotManager
from tests.api.conftest import IDLE_FEED

WAIT_S = 60  # generous bound for the server to reach a state; never a performance threshold


class BlockingBots(BotManager):
    """The real runtime, except that status() blocks while `gate` is closed, counting the calls
    waiting in it: a request that takes as long as the test wants."""

    def __init__(self, api: Any, state_dir: Any) -> None:
        super().__init__(IDLE_FEED, database_url=api.settings.database_url, state_dir=state_dir, record=False)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0
        self._count = threading.Lock()

    def status(self, bot_id: str) -> dict[str, Any]:
        with self._count:
            self.waiting += 1
        try:
            self.gate.wait(WAIT_S)
        finally:
            with self._count:
                self.waiting -= 1
        return super().status(bot_id)


class Served:
    """An app on a loopback port, served with `tickbridge serve`'s uvicorn settings."""

    def __init__(self, app: Any, header_timeout_s: float = 10.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = serving.server_config(app, "127.0.0.1", self.port, header_timeout_s, log_level="warning",
                                       ws_ping_interval=None)
        self.server = serving.ApiServer(config, app)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Served":
        self.thread.start()
        until(lambda: self.server.started)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)


def until(condition: Any, what: str = "condition") -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {WAIT_S} s")
        time.sleep(0.01)


def limiter(app: Any) -> ConcurrencyLimit:
    """The app's ConcurrencyLimit instance (built with the middleware stack on first request)."""
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, ConcurrencyLimit):
        layer = getattr(layer, "app", None)
    assert layer is not None, "no ConcurrencyLimit in the stack"
    return layer


@pytest.fixture
def trader(make_api):
    """A store with a trader and their bot; returns (api, headers)."""
    api = make_api()
    headers = api.user("tess", "trader")
    api.bot(headers, "tess-bot")
    return api, headers


@pytest.fixture
def blocking(trader, tmp_path):
    """A BlockingBots on the trader's store, closed after the test."""
    bots = BlockingBots(trader[0], tmp_path / "blocking")
    yield bots
    bots.gate.set()
    bots.close()


def test_in_flight_limit_sheds_the_excess_with_503_never_500(trader, blocking):
    api, headers = trader
    n, queue, extra = 3, 2, 4
    bots = blocking
    app = create_app(_with(api.settings, api_threads=n, api_queue=queue, queue_wait_s=WAIT_S), bots)
    bots.gate.clear()
    path = "/api/v1/bots/tess-bot/status"
    with Served(app) as server, ThreadPoolExecutor(n + queue + extra) as pool:
        http = httpx.Client(base_url=server.url, timeout=WAIT_S, limits=httpx.Limits(max_connections=32))
        running = [pool.submit(http.get, path, headers=headers) for _ in range(n)]
        until(lambda: bots.waiting == n, "n requests in the worker threads")
        queued = [pool.submit(http.get, path, headers=headers) for _ in range(queue)]
        gate = limiter(app)
        until(lambda: gate.gate.waiting == queue, "the queue full")
        shed = [http.get(path, headers=headers) for _ in range(extra)]  # sequential: each answered at once
        assert bots.waiting == n  # still held: the extra ones never reached a worker
        bots.gate.set()
        served = [f.result() for f in running + queued]
        http.close()
    assert [r.status_code for r in served] == [200] * (n + queue)
    assert [r.status_code for r in shed] == [503] * extra
    for r in shed:
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "unavailable"
    assert gate.gate.held == 0 and gate.gate.waiting == 0  # every slot given back


def test_a_request_waits_in_the_queue_at_most_its_bound(trader, blocking):
    api, headers = trader
    bots = blocking
    app = create_app(_with(api.settings, api_threads=1, api_queue=5, queue_wait_s=0.2), bots)
    bots.gate.clear()
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http, \
            ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(http.get, "/api/v1/bots/tess-bot/status", headers=headers)
        until(lambda: bots.waiting == 1)
        waited = http.get("/api/v1/auth/me", headers=headers)
        bots.gate.set()
        assert blocked.result().status_code == 200
        assert http.get("/api/v1/auth/me", headers=headers).status_code == 200  # the slot came back
    assert waited.status_code == 503 and waited.headers["retry-after"] == "1"


def test_logins_have_a_gate_of_their_own():
    """Through the middleware alone, on an ASGI app whose requests wait until released: with one
    login in flight and no login queue, a second login is shed while reads still get slots."""
    import asyncio

    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limit = ConcurrencyLimit(app, limit=4, queue=0, max_wait_s=WAIT_S, login_limit=1, login_queue=0,
                             login_paths=[("POST", "/login")])

    async def call(method: str, path: str) -> int:
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await limit({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return sent[0]["status"]

    async def scenario() -> tuple[list[int], int, list[int]]:
        first = asyncio.create_task(call("POST", "/login"))
        while limit.logins.held < 1:
            await asyncio.sleep(0)
        second = await call("POST", "/login")  # shed at once: the login gate is full
        reads = [asyncio.create_task(call("GET", "/read")) for _ in range(3)]
        while limit.gate.held < 4:  # the login and the three reads all hold a general slot
            await asyncio.sleep(0)
        release.set()
        return [await first], second, [await r for r in reads]

    first, second, reads = asyncio.run(scenario())
    assert first == [200] and second == 503 and reads == [200, 200, 200]
    assert limit.gate.held == 0 and limit.logins.held == 0


def test_an_event_stream_gives_its_slot_back(trader):
    """With one request thread, an open SSE stream must not starve every other request."""
    api, headers = trader
    app = create_app(_with(api.settings, api_threads=1, api_queue=0), api.bots)
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        with http.stream("GET", "/api/v1/signals/sse", headers=headers) as stream:
            assert next(stream.iter_lines()) == ": connected"
            meanwhile = [http.get("/api/v1/auth/me", headers=headers).status_code for _ in range(3)]
    assert meanwhile == [200, 200, 200]


def test_pool_exhausted_is_503_with_retry_after(trader, monkeypatch):
    api, headers = trader
    monkeypatch.setattr("api.app.POOL_TIMEOUT_S", 0.2)
    app = create_app(_with(api.settings, api_threads=1, db_pool=1), api.bots)
    engine = app.state.ctx.engine
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        held = engine.connect()  # the pool's only connection, taken by someone else
        try:
            response = http.get("/api/v1/bots", headers=headers)
        finally:
            held.close()
        after = http.get("/api/v1/bots", headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "connection" in response.json()["error"]["message"]
    assert after.status_code == 200


def test_database_locked_is_503_not_500(trader):
    """SQLite's write lock held past the busy timeout (5 s) by another process's transaction."""
    api, headers = trader
    path = api.settings.database_url.removeprefix("sqlite:///")
    app = create_app(api.settings, api.bots)
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            response = http.post("/api/v1/auth/api-keys", json={"name": "k1"}, headers=headers)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        after = http.post("/api/v1/auth/api-keys", json={"name": "k2"}, headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert after.status_code == 201


# --- bounded requests (item 8) -------------------------------------------------------------------

def raw(port: int, data: bytes, then: bytes = b"", timeout_s: float = WAIT_S) -> bytes:
    """Send raw bytes, read the answer until the server closes (or timeout_s): the reply's bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        if then:
            s.sendall(then)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def test_a_body_over_the_limit_is_refused_by_its_content_length(api):
    app = create_app(_with(api.settings, max_body_bytes=1000), api.bots)
    with Served(app) as server:
        # headers only: the server must answer without waiting for the 50 MB it was promised
        reply = raw(server.port, b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 52428800\r\n\r\n")
    assert status_of(reply) == 413
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_large"


def test_a_chunked_body_is_cut_off_at_the_limit(api):
    app = create_app(_with(api.settings, max_body_bytes=1000), api.bots)
    chunk = b"x" * 600
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))  # 2,400 bytes, no final chunk yet
    with Served(app) as server:
        reply = raw(server.port, b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status_of(reply) == 413


def test_the_default_limit_is_one_mebibyte(api):
    big = {"username": "x" * (1 << 20), "password": "y"}
    response = api.client.post("/api/v1/auth/token", json=big)
    assert response.status_code == 413
    just_under = {"username": "x" * ((1 << 20) - 100), "password": "y"}
    assert api.client.post("/api/v1/auth/token", json=just_under).status_code == 422  # read, then refused by its bounds


def test_a_trickled_body_gets_408(api):
    app = create_app(_with(api.settings, body_timeout_s=0.5), api.bots)
    with Served(app) as server:
        reply = raw(server.port, b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"username\": ")  # and then nothing
    assert status_of(reply) == 408


def test_a_trickled_request_head_is_cut_off(api):
    app = create_app(api.settings, api.bots)
    with Served(app, header_timeout_s=0.5) as server:
        reply = raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finishes
        fine = raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply == b""  # closed without an answer
    assert status_of(fine) == 200


def test_an_oversized_request_head_is_refused(api):
    app = create_app(api.settings, api.bots)
    with Served(app) as server:
        reply = raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32768 + b"\r\n\r\n")
        body = b"{" + b'"k": "' + b"v" * 60000 + b'"}'  # a large body right behind a small head is fine
        post = raw(server.port, b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status_of(reply) == 431
    assert status_of(post) == 422


def test_security_headers_on_every_response_and_no_server_banner(api):
    app = create_app(api.settings, api.bots)
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        answers = [http.get("/api/v1/health"), http.get("/api/v1/nowhere"),
                   http.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"}),
                   http.post("/api/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"})]
    assert [a.status_code for a in answers] == [200, 404, 401, 422]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "server" not in answer.headers
    assert answers[2].headers["cache-control"] == "no-store"
    assert answers[3].headers["cache-control"] == "no-store"
    assert "cache-control" not in answers[0].headers


def test_security_headers_on_a_500(api):
    def boom() -> None:
        raise RuntimeError("secret detail")

    app = create_app(api.settings, api.bots)
    app.router.add_api_route("/api/v1/boom", boom)
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_metrics_behind_a_token(api):
    app = create_app(_with(api.settings, metrics_token="m" * 32), api.bots)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        anonymous = client.get("/api/v1/metrics")
        wrong = client.get("/api/v1/metrics", headers={"Authorization": "Bearer " + "n" * 32})
        right = client.get("/api/v1/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert "m" * 32 not in anonymous.text
    assert right.status_code == 200 and "tickbridge_http_requests_total" in right.text


def test_metrics_on_their_own_port(api):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(_with(api.settings, metrics_port=port), api.bots)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        here = client.get("/api/v1/metrics")
        there = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S)
    assert here.status_code == 404
    assert there.status_code == 200 and "tickbridge_http_requests_total" in there.text
    with pytest.raises(httpx.ConnectError):  # closed with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S)


def test_limits_from_the_environment_are_checked(monkeypatch):
    from api.settings import load_limits
    from engine.errors import ConfigError

    assert load_limits({"TICKBRIDGE_API_THREADS": "8", "TICKBRIDGE_DB_POOL": "12"}) == {"api_threads": 8, "db_pool": 12}
    for env, name in (({"TICKBRIDGE_API_THREADS": "0"}, "TICKBRIDGE_API_THREADS"),
                      ({"TICKBRIDGE_MAX_BODY_BYTES": "1e6"}, "TICKBRIDGE_MAX_BODY_BYTES"),
                      ({"TICKBRIDGE_API_THREADS": "8", "TICKBRIDGE_DB_POOL": "4"}, "TICKBRIDGE_DB_POOL")):
        with pytest.raises(ConfigError) as error:
            load_limits(env)
        assert error.value.field == name


def _with(settings: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(settings, **changes)
