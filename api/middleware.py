"""ASGI middleware that keeps the API standing under load and against hostile clients.

ConcurrencyLimit: at most N requests in the worker threads at once (N = the threads = the
    database pool, api.settings), a short bounded queue behind them, and beyond it an immediate
    503 with Retry-After. Without it, a burst of clients queued on the database pool for 30 s and
    failed with 500s; with it, a request either runs at once, waits briefly, or is told to come
    back, and latency stays bounded at any load. Logins (argon2, ~50 ms of CPU each) pass a
    smaller gate of their own first, so a flood of logins cannot take the slots of reads.
BodyLimit: a request body is read completely, and bounded, before the request takes a slot:
    413 as soon as Content-Length (or the bytes of a chunked body) passes the limit, 408 when the
    body does not arrive within its time, so a slow or huge upload never holds a worker.
SecurityHeaders: nosniff, no framing, no referrer on every response; no-store on /auth/*.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_S = 1
BODY_HEADERS = {b"content-length", b"transfer-encoding"}


async def _error(send: Send, status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """The API's one error shape, written straight to the ASGI channel (no app behind it)."""
    payload = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class Gate:
    """`limit` holders at once, at most `queue` waiting (first come, first served), each for at
    most `max_wait_s`. acquire() answers False instead of waiting longer: the caller sheds."""

    def __init__(self, limit: int, queue: int, max_wait_s: float) -> None:
        self.limit, self.queue, self.max_wait_s = limit, queue, max_wait_s
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        if self.held < self.limit and not self._waiters:
            self.held += 1
            return True
        if len(self._waiters) >= self.queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.max_wait_s)
            return True  # release() handed its slot over: `held` already counts us
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():  # the slot came as we gave up: pass it on
                self.release()
            else:
                waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the next in line
                return
        self.held -= 1


class ConcurrencyLimit:
    """In-flight limit for HTTP requests (not WebSockets: they hold no worker thread).

    A request holds its slot until its response is complete; an event stream (SSE) gives it back
    when its headers go out, since from then on it only waits on the signal hub. `exempt` paths
    (liveness, metrics) never queue, so a probe can see an overloaded server as alive."""

    def __init__(self, app: ASGIApp, limit: int, queue: int, max_wait_s: float, login_limit: int,
                 login_queue: int, login_paths: Iterable[tuple[str, str]] = (),
                 exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.gate = Gate(limit, queue, max_wait_s)
        self.logins = Gate(login_limit, login_queue, max_wait_s)
        self.login_paths = set(login_paths)
        self.exempt = set(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        gates: list[Gate] = []
        try:
            if (scope["method"], scope["path"]) in self.login_paths:
                if not await self.logins.acquire():
                    await self._shed(send, "too many logins in progress")
                    return
                gates.append(self.logins)
            if not await self.gate.acquire():
                await self._shed(send, "the server is at capacity")
                return
            gates.append(self.gate)

            async def send_and_release(message: Message) -> None:
                await send(message)
                if gates and (_is_stream_start(message) or
                              (message["type"] == "http.response.body" and not message.get("more_body", False))):
                    _release(gates)

            await self.app(scope, receive, send_and_release)
        finally:
            _release(gates)

    @staticmethod
    async def _shed(send: Send, reason: str) -> None:
        await _error(send, 503, "unavailable", f"{reason}; retry in {RETRY_AFTER_S} s",
                     [(b"retry-after", str(RETRY_AFTER_S).encode())])


def _is_stream_start(message: Message) -> bool:
    if message["type"] != "http.response.start":
        return False
    return any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in message.get("headers", ()))


def _release(gates: list[Gate]) -> None:
    while gates:
        gates.pop().release()


class BodyLimit:
    """Reads a request's body before the app sees it: at most `max_bytes`, within `timeout_s`.

    413 when Content-Length says more (nothing is read), or when a chunked body passes the limit
    (reading stops there); 408 when the body is not complete in time. Both close the connection.
    The app then gets the body from memory, and later receive() calls (disconnect) go through."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict((k, v) for k, v in scope["headers"] if k in BODY_HEADERS)
        if not headers:  # HTTP/1.1: no Content-Length and no Transfer-Encoding means no body
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self.max_bytes):
            if length.strip().isdigit():
                await self._too_large(send)
            else:
                await _error(send, 400, "bad_request", "Content-Length is not a number", [(b"connection", b"close")])
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await _error(send, 408, "timeout", f"the request body did not arrive within {self.timeout_s:g} s",
                             [(b"connection", b"close")])
                return
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _error(send, 413, "too_large", f"the request body is larger than {self.max_bytes} bytes",
                     [(b"connection", b"close")])


SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"))


class SecurityHeaders:
    """Headers every response carries; /auth/* answers (tokens) are never cached."""

    def __init__(self, app: ASGIApp, no_store_prefix: str) -> None:
        self.app, self.no_store_prefix = app, no_store_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith(self.no_store_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if not (no_store and k.lower() == b"cache-control")]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
