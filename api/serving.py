"""How `tickbridge serve` runs the API: uvicorn, configured against slow clients, and a shutdown
that ends in seconds with every stream and bot closed.

- HTTP is h11 with a bound on a request head (16 KiB: request line and headers; 431 beyond) and
  a deadline for it (`header_timeout_s`): uvicorn arms no timer before a request's headers are
  complete, so a client that opens connections and trickles headers would hold them forever.
  Idle keep-alive connections close after TIMEOUT_KEEP_ALIVE_S. Bodies are bounded by the app
  (api.middleware.BodyLimit). No `server: uvicorn` banner.
- Shutdown (SIGTERM or SIGINT): the signal hub ends every SSE and WebSocket stream first (uvicorn
  otherwise waits for open connections, and event streams never end by themselves), then uvicorn
  drains the other requests for at most GRACEFUL_S, and `serve` returns normally, so its caller
  stops the bots and exits 0. uvicorn's own signal capture re-raises the signal at the end, which
  killed the process before its bots were stopped. A second signal skips the draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.middleware import SECURITY_HEADERS

MAX_REQUEST_HEAD = 16 * 1024
TIMEOUT_KEEP_ALIVE_S = 5
GRACEFUL_S = 5


class HeadTimeoutH11Protocol(H11Protocol):
    """h11 with a deadline for each request's head, from its first byte (or the connection's
    opening) to its last header. A client that misses it is disconnected."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._disarm_head_timer()
            body = b'{"error": {"code": "too_large", "message": "the request head is larger than %d bytes"}}' % (
                MAX_REQUEST_HEAD)
            headers = b"".join(b"%s: %s\r\n" % pair for pair in SECURITY_HEADERS)
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                                 b"%sconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (headers, len(body), body))
            self.transport.close()
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm_head_timer()  # part of a head is in: it has this long to complete
        else:
            self._disarm_head_timer()

    def _head_too_large(self, data: bytes) -> bool:
        """h11 bounds a head only while it is incomplete: one that arrives whole in a single read
        is parsed at any size. Measure it here: up to the blank line, or all of it so far."""
        pending = self.conn.trailing_data[0] + data
        end = pending.find(b"\r\n\r\n", 0, MAX_REQUEST_HEAD + 4)
        return end < 0 and len(pending) > MAX_REQUEST_HEAD

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm_head_timer()  # the socket belongs to the WebSocket protocol from here
        super().handle_websocket_upgrade(event)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # still no complete head
            self.transport.close()


def head_timeout_protocol(timeout_s: float) -> type[HeadTimeoutH11Protocol]:
    return type("HeadTimeoutH11", (HeadTimeoutH11Protocol,), {"header_timeout_s": timeout_s})


class ApiServer(uvicorn.Server):
    """uvicorn.Server that closes the app's streams before draining, and returns after a signal."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = getattr(getattr(self.app.state, "ctx", None), "hub", None)
        if hub is not None:
            await hub.stop()  # every SSE/WS stream ends now; the lifespan's stop() is then a no-op
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for connections
        self.should_exit = True


def server_config(app: Any, host: str, port: int, header_timeout_s: float, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings of `tickbridge serve` (tests and benchmarks use the same)."""
    options: dict[str, Any] = dict(
        host=host, port=port, log_level="info",
        http=head_timeout_protocol(header_timeout_s), h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
        timeout_keep_alive=TIMEOUT_KEEP_ALIVE_S, timeout_graceful_shutdown=GRACEFUL_S,
        server_header=False, date_header=True,
        # signal frames are small JSON: compressing each one per client costs more CPU than it saves
        ws_per_message_deflate=False,
        # X-Forwarded-For is the app's to judge (TICKBRIDGE_TRUSTED_PROXIES)
        proxy_headers=False,
        backlog=2048)
    options.update(overrides)
    return uvicorn.Config(app, **options)


def run(app: Any, host: str, port: int, header_timeout_s: float, **overrides: Any) -> None:
    """Serve until SIGTERM/SIGINT; returns once the streams are closed and requests drained."""
    ApiServer(server_config(app, host, port, header_timeout_s, **overrides), app).run()
