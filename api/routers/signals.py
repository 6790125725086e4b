"""Signals: paged REST (cursor = the last id you got), a WebSocket stream and an SSE stream.

Each answers only with what the caller may see (api.deps.signal_scope): an admin everything, a
trader their own bots' signals, a subscriber their subscribed bots' (a free plan's delayed). The
streams authenticate with a bearer header, an X-API-Key header, or ?token= / ?api_key= (browsers
cannot set headers on WebSocket or EventSource). They send a frame per signal:
{"type": "signal", "signal": {...}}; pass ?after_id=N to get the ones after N first. The scope is
fixed when a stream connects: a new or cancelled subscription applies on the next connection.
"""

from __future__ import annotations

import asyncio

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
    found = await asyncio.to_thread(_stream_principal, ctx, token, key)
    if found is None:
        await websocket.close(code=1008, reason="not authenticated")
        return
    await websocket.accept()
    ctx.metrics.stream_clients.labels("ws").inc()
    client = await ctx.hub.register(found[1], None if after_id is None else min(max(after_id, 0), MAX_ID))
    sender = asyncio.create_task(_send_ws(websocket, client, ctx))
    try:
        while True:  # the client says nothing we need; reading notices when it goes away
            receiver = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                receiver.cancel()
                break
            if receiver.result()["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        ctx.hub.unregister(client)
        sender.cancel()


async def _send_ws(websocket: WebSocket, client: Client, ctx: AppContext) -> None:
    while True:
        frame = await client.next()
        if frame is None:
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
    try:
        yield ": connected\n\n"
        while True:
            try:
                frame = await asyncio.wait_for(client.next(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            if frame is None:
                return
            signal_id, text, seen = frame
            yield f"id: {signal_id}\nevent: signal\ndata: {text}\n\n"
            ctx.hub.observe(seen)
    finally:
        ctx.hub.unregister(client)


