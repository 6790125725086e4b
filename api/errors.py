"""One error body for every error the API returns:

    {"error": {"code": "not_found", "message": "bot 'x' not found", "field": "id"}}

`field` (dotted, e.g. "params.fast") is present when one input value is to blame. Handlers cover
our ApiError, engine ConfigError (422 naming the field), FastAPI's validation errors, Starlette's
HTTP errors (404 for unknown paths, 405) and anything unexpected (500, logged, no details leaked).
A store that is momentarily out of reach (every pooled connection busy, SQLite's write lock held
past its busy timeout, a PostgreSQL connection lost) is 503 with Retry-After: the client should
come back, and nothing is wrong with its request or with the server's code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import ConfigError

log = logging.getLogger("tickbridge.api")

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
         422: "invalid", 429: "rate_limited", 500: "internal", 503: "unavailable"}


class ApiError(Exception):
    """An error a handler raises on purpose: status, a stable code, a message, maybe a field."""

    def __init__(self, status: int, message: str, code: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.code = code or CODES.get(status, "error")
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


ERROR_SCHEMA = {
    "description": "error",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}}},
}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ConfigError)
    async def _config_error(_request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(body("invalid", exc.message, exc.field), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return JSONResponse(body("invalid", message, _field(first.get("loc", ()))), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
        return JSONResponse(body(CODES.get(exc.status_code, "error"), message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _refused_by_store(_request: Request, exc: DataError) -> JSONResponse:
        # the database refused a value the API let through (a NUL byte in text on PostgreSQL, a
        # number out of its range): the input's fault, not the server's
        return JSONResponse(body("invalid", "the database refuses a value: " + str(exc.orig).splitlines()[0][:200]),
                            status_code=422)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_request: Request, _exc: PoolTimeout) -> JSONResponse:
        return unavailable("the store is busy: every connection is in use; retry shortly")

    @app.exception_handler(OperationalError)
    async def _store_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        if not store_is_busy(exc):
            return await _unexpected(request, exc)
        log.warning("store busy on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return unavailable("the store is busy or unreachable; retry shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(body("internal", "internal server error"), status_code=500)


RETRY_AFTER_S = 1
BUSY_MARKERS = ("database is locked", "database table is locked", "database is busy")


def unavailable(message: str, retry_after_s: int = RETRY_AFTER_S) -> JSONResponse:
    """503 with Retry-After: the answer to a momentary shortage (store, workers), never a 500."""
    return JSONResponse(body("unavailable", message), status_code=503, headers={"Retry-After": str(retry_after_s)})


def store_is_busy(exc: OperationalError) -> bool:
    """A transient store condition rather than a broken statement: SQLite's lock held past its
    busy timeout, or a connection the driver lost or could not open (PostgreSQL restarting)."""
    text = str(exc.orig).lower()
    if any(marker in text for marker in BUSY_MARKERS) or exc.connection_invalidated:
        return True
    return type(exc.orig).__module__.startswith("psycopg") and any(
        marker in text for marker in ("connection", "server closed", "timeout", "terminating"))
