"""Liveness, readiness (the store answers) and Prometheus metrics.

Liveness and readiness need no authentication. Metrics say how much the business trades, so
they can be closed: with TICKBRIDGE_METRICS_TOKEN set, /metrics wants `Authorization: Bearer
<token>`; with TICKBRIDGE_METRICS_PORT set, they are served on that port of 127.0.0.1 only (for a
local Prometheus agent) and /metrics here is 404.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Ctx
from api.errors import ApiError
from engine.errors import StoreUnavailable
from engine.store.db import check_connection

router = APIRouter(tags=["health"])


@router.get("/health", summary="the process is up")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="ready to serve: the database answers")
def ready(ctx: Ctx) -> dict[str, str]:
    try:
        check_connection(ctx.engine)
    except StoreUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> Response:
    if ctx.settings.metrics_port is not None:
        raise ApiError(404, "Not Found")  # served on a port of its own
    token = ctx.settings.metrics_token
    if token is not None:
        given = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "metrics need the metrics token: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
