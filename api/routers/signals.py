"""Signals: paged REST (cursor = the last id you got), a WebSocket stream and an SSE stream.

Each answers only with what the caller may see (api.deps.signal_scope): an admin everything, a
trader their own bots' signals, a subscriber those of the published bots they subscribe to (on
the free plan `free_delay_s` after each was published; signals carry `published_ns`). Bots are
named by runtime id here (`bot_id` in a signal and in ?bot_id=). The
streams authenticate with a bearer header, an X-API-Key header, or ?token= / ?api_key= (browsers
cannot set headers on WebSocket or EventSource; the server's logs show those values as ***). A
WebSocket with no credential in its URL or headers is accepted and must authenticate with its
first message, {"type": "auth", "token": "..."} or {"type": "auth", "api_key": "..."}, within
10 s (answered {"type": "auth", "ok": true}), else it is closed with 1008: this keeps the
credential out of URLs altogether. They send a frame per signal:
{"type": "signal", "signal": {...}}; pass ?after_id=N to get the ones after N first. The scope is
fixed when a stream connects: a new or cancelled subscription applies on the next connection.
"""

from __future__ import annotations

import asyncio
import json

from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import MAX_ID, AppContext, Caller, Ctx, Db, Principal, authenticate, now_ns, signal_scope
from api.errors import ApiError
from api.streaming import SIGNALS, Client, signal_json, visible_clause

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
    client = await ctx.hub.register(found[1], None if after_id is None else min(max(after_id, 0), MAX_ID))
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
        await websocket.send_text('{"type":"signal","signal":' + text + "}")
        ctx.hub.observe(seen)


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


