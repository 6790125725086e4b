"""Liveness, readiness (the store answers) and Prometheus metrics. No authentication."""

from __future__ import annotations

from fastapi import APIRouter, Response
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
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
