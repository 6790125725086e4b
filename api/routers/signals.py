"""Signals: paged REST (cursor = the last id you got), a WebSocket stream and an SSE stream.

Each answers only with what the caller may see (api.deps.signal_scope): an admin everything, a
trader their own bots' signals, a subscriber those of the published bots they subscribe to (on
the free plan `free_delay_s` after each was published; signals carry `published_ns`). On
PostgreSQL a page stops below an id a writer may still commit (api.streaming: late commits), so
paging by the last id never skips it. Bots are named by runtime id here (`bot_id` in a signal and in ?bot_id=). The
streams authenticate with a bearer header, an X-API-Key header, or ?token= / ?api_key= (browsers
cannot set headers on WebSocket or EventSource; the server's logs show those values as ***). A
WebSocket with no credential in its URL or headers is accepted and must authenticate with its
first message, {"type": "auth", "token": "..."} or {"type": "auth", "api_key": "..."}, within
10 s (answered {"type": "auth", "ok": true}), else it is closed with 1008: this keeps the
credential out of URLs altogether. They send a frame per signal:
{"type": "signal", "signal": {...}}; pass ?after_id=N to get the ones after N first. The scope is
fixed when a stream connects: a new or cancelled subscription applies on the next connection.

Under uvicorn's websockets-sansio protocol a WebSocket client's frames are written by the signal
hub straight to its transport (direct_writer: one write of bytes built once per signal); the
normal ASGI send remains the path for everything else (api.streaming explains when).
"""

from __future__ import annotations

import asyncio
import json

from collections.abc import Callable
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import MAX_ID, AppContext, Caller, Ctx, Db, Principal, authenticate, now_ns, signal_scope
from api.errors import ApiError
from api.streaming import SIGNALS, Client, signal_json, visible_clause, ws_message

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State as _WsState
except ImportError:  # another server, or another uvicorn: the ASGI send path only
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

router = APIRouter(prefix="/signals", tags=["signals"])
KEEPALIVE_S = 15.0
AUTH_TIMEOUT_S = 10.0         # for the first-message authentication of a WebSocket
MAX_AUTH_MESSAGE = 8192


class SignalPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int | None


@router.get("", response_model=SignalPage, summary="signals the caller may see, oldest first, after a cursor")
def list_signals(caller: Caller, ctx: Ctx, db: Db,
                 cursor: Annotated[int, Query(ge=0, le=MAX_ID, description="the last id of the previous page")] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 bot_id: Annotated[str | None, Query(max_length=64)] = None) -> SignalPage:
    scope = signal_scope(db, caller, ctx.settings)
    query = select(SIGNALS).where(SIGNALS.c.id > cursor, visible_clause(scope, now_ns()))
    if bot_id is not None:
        query = query.where(SIGNALS.c.bot_id == bot_id)
    rows = db.execute(query.order_by(SIGNALS.c.id).limit(limit)).all()
    items = [signal_json(r) for r in rows]
    # PostgreSQL: an id the signal hub still awaits (taken by a transaction not committed yet,
    # api.streaming "late commits") ends the page below it, so a cursor never passes a row that
    # may still appear; the rows above come once it does, or after the hub's grace
    holes = ctx.hub.holes if ctx.hub is not None else {}
    if holes and items and (pending := [i for i in holes if cursor < i < items[-1]["id"]]):
        items = [item for item in items if item["id"] < min(pending)]
    return SignalPage(items=items, next_cursor=items[-1]["id"] if len(items) == limit else None)


def _stream_principal(ctx: AppContext, token: str | None, api_key: str | None) -> tuple[Principal, Any] | None:
    with ctx.sessions() as db:
        caller = authenticate(db, ctx.settings, token, api_key)
        if caller is None:
            return None
        return caller, signal_scope(db, caller, ctx.settings)


def _credentials(authorization: str | None, x_api_key: str | None, token: str | None,
                 api_key: str | None) -> tuple[str | None, str | None]:
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    return token, x_api_key or api_key


@router.websocket("/ws")
async def signals_ws(websocket: WebSocket, token: str | None = None, api_key: str | None = None,
                     after_id: int | None = None) -> None:
    ctx: AppContext = websocket.app.state.ctx
    token, key = _credentials(websocket.headers.get("authorization"), websocket.headers.get("x-api-key"),
                              token, api_key)
    if token or key:
        found = await asyncio.to_thread(_stream_principal, ctx, token, key)
        if found is None:
            await websocket.close(code=1008, reason="not authenticated")
            return
        await websocket.accept()
    else:  # nothing in the URL or headers: the credential comes as the first message
        await websocket.accept()
        found = await _first_message_auth(websocket, ctx)
        if found is None:
            return
    ctx.metrics.stream_clients.labels("ws").inc()
    client = await ctx.hub.register(found[1], None if after_id is None else min(max(after_id, 0), MAX_ID),
                                    writer=direct_writer(websocket))
    sender = asyncio.create_task(_send_ws(websocket, client, ctx))
    closing = asyncio.ensure_future(ctx.hub.closing.wait())  # the server is stopping
    try:
        while True:  # the client says nothing we need; reading notices when it goes away
            receiver = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({receiver, sender, closing}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                receiver.cancel()
                break
            if closing in done:
                receiver.cancel()
                sender.cancel()
                await websocket.close(code=1001, reason="server shutting down: reconnect with after_id")
                break
            if receiver.result()["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closing a socket the client closed first
        pass
    finally:
        ctx.hub.unregister(client)
        sender.cancel()
        closing.cancel()


async def _first_message_auth(websocket: WebSocket, ctx: AppContext) -> tuple[Principal, Any] | None:
    """Read the credential from the socket's first message; close with 1008 (policy violation)
    when it does not come within AUTH_TIMEOUT_S, is not an auth message, or does not authenticate
    (and with 1001 if the server starts stopping meanwhile: a shutdown does not wait for it)."""
    receiver = asyncio.ensure_future(websocket.receive())
    closing = asyncio.ensure_future(ctx.hub.closing.wait())
    done, _ = await asyncio.wait({receiver, closing}, timeout=AUTH_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    closing.cancel()
    if receiver not in done:
        receiver.cancel()
        if closing in done:
            await websocket.close(code=1001, reason="server shutting down")
        else:
            await websocket.close(code=1008, reason=f"no auth message within {AUTH_TIMEOUT_S:g} s")
        return None
    message = receiver.result()
    if message["type"] == "websocket.disconnect":
        return None
    credential = _auth_message(message.get("text") if message.get("text") is not None else message.get("bytes"))
    if credential is None:
        await websocket.close(code=1008, reason='expected {"type": "auth", "token": ...} or "api_key"')
        return None
    found = await asyncio.to_thread(_stream_principal, ctx, *credential)
    if found is None:
        await websocket.close(code=1008, reason="not authenticated")
        return None
    await websocket.send_text('{"type":"auth","ok":true}')
    return found


def _auth_message(data: str | bytes | None) -> tuple[str | None, str | None] | None:
    """(token, api_key) from {"type": "auth", "token"|"api_key": "..."}, else None."""
    if data is None or len(data) > MAX_AUTH_MESSAGE:
        return None
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(parsed, dict) or parsed.get("type") != "auth":
        return None
    token, api_key = parsed.get("token"), parsed.get("api_key")
    if isinstance(token, str) and token and api_key is None:
        return token, None
    if isinstance(api_key, str) and api_key and token is None:
        return None, api_key
    return None


async def _send_ws(websocket: WebSocket, client: Client, ctx: AppContext) -> None:
    while True:
        frame = await client.next()
        if frame is None:
            if ctx.hub.closing.is_set():
                await websocket.close(code=1001, reason="server shutting down: reconnect with after_id")
            else:
                await websocket.close(code=1013, reason="too far behind: reconnect with after_id")
            return
        signal_id, text, seen = frame
        await websocket.send_text(ws_message(text))
        client.sent()
        ctx.hub.observe(seen)


# Wrappers of the ASGI `send` known to pass every websocket.send message through unchanged
# (Starlette's exception handling, which only notes "http.response.start"): the chain from the
# route's `send` down to uvicorn's protocol may contain these and nothing else.
_PASS_THROUGH = {("starlette._exception_handler", "wrap_app_handling_exceptions.<locals>.wrapped_app.<locals>.sender")}


class _TransportWriter:
    """Writes a prebuilt frame (api.streaming.ws_frame) to uvicorn's transport while the
    connection is open and the transport is not paused; False otherwise (the caller queues)."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def __call__(self, frame: bytes) -> bool:
        p = self.protocol
        if (p.close_sent or p.disconnected or not p.writable.is_set() or p.conn.state is not _WsState.OPEN
                or p.transport.is_closing()):
            return False
        p.transport.write(frame)
        return True


def direct_writer(websocket: WebSocket) -> Callable[[bytes], bool] | None:
    """A writer straight to this socket's transport, or None (the ASGI send path).

    Why: the ASGI path costs a task switch and some ten Python calls per (signal, client); the
    hub writes one signal to a thousand sockets. Only when it is safe: the `send` Starlette holds
    must be uvicorn's websockets-sansio protocol's own send, reached through no wrapper other than
    the known pass-through ones (a middleware that rewrites or watches messages keeps its say:
    no direct path then), the handshake done and no extension (per-message deflate) in use."""
    Protocol = WebSocketsSansIOProtocol
    if Protocol is None:
        return None
    send: Any = getattr(websocket, "_send", None)
    for _ in range(8):
        owner = getattr(send, "__self__", None)
        if isinstance(owner, WebSocketsSansIOProtocol) and getattr(send, "__func__", None) is Protocol.send:
            if not owner.handshake_complete or owner.initial_response is not None or owner.conn.extensions:
                return None
            return _TransportWriter(owner)
        code = getattr(send, "__code__", None)
        name = (getattr(send, "__module__", None), getattr(send, "__qualname__", None))
        if code is None or name not in _PASS_THROUGH or "send" not in code.co_freevars:
            return None
        send = send.__closure__[code.co_freevars.index("send")].cell_contents
    return None


@router.get("/sse", summary="Server-Sent Events: one `signal` event per signal (id: the signal id)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}})
async def signals_sse(ctx: Ctx, authorization: Annotated[str | None, Header()] = None,
                      x_api_key: Annotated[str | None, Header()] = None,
                      last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
                      token: str | None = None, api_key: str | None = None,
                      after_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None) -> StreamingResponse:
    token, key = _credentials(authorization, x_api_key, token, api_key)
    found = await asyncio.to_thread(_stream_principal, ctx, token, key)
    if found is None:
        raise ApiError(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"})
    ctx.metrics.stream_clients.labels("sse").inc()
    client = await ctx.hub.register(found[1], after_id if after_id is not None else last_event_id)
    return StreamingResponse(_sse(client, ctx), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(client: Client, ctx: AppContext) -> AsyncIterator[str]:
    closing = asyncio.ensure_future(ctx.hub.closing.wait())  # the server is stopping: end the stream
    try:
        yield ": connected\n\n"
        while True:
            frame = await _next_or_closing(client, closing)
            if frame is KEEPALIVE:
                yield ": keepalive\n\n"
                continue
            if frame is None:
                return
            signal_id, text, seen = frame
            yield f"id: {signal_id}\nevent: signal\ndata: {text}\n\n"
            ctx.hub.observe(seen)
    finally:
        ctx.hub.unregister(client)
        closing.cancel()


KEEPALIVE = object()


async def _next_or_closing(client: Client, closing: asyncio.Future[Any]) -> Any:
    """The client's next frame; None when it must close (dropped, or the server shutting down,
    even while a delayed plan's frame is waiting out its delay); KEEPALIVE after KEEPALIVE_S."""
    if closing.done():
        return None
    frame = asyncio.ensure_future(client.next())
    done, _ = await asyncio.wait({frame, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
    if frame in done:
        return frame.result()
    frame.cancel()  # next() keeps a frame it was waiting out for the following call
    try:
        return await frame  # it came as we stopped waiting: not lost
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # we are cancelled ourselves: let it through
            raise
    return None if closing in done else KEEPALIVE


