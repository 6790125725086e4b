"""The dashboard's session: log in, refresh and log out with the refresh token in a cookie.

The API's own endpoints hand both tokens to the client; a browser page that kept the refresh
token in JavaScript (localStorage) would give it to any script that ever ran there. Here the
refresh token only ever travels in a cookie that is HttpOnly (no script reads it), SameSite=Strict
(no other site's page sends it), Path=/dashboard/session (no other request carries it) and
Secure whenever the request came over https (behind a TLS proxy: run uvicorn with
--proxy-headers). The page gets the access token in the answer and keeps it in memory; a new page
calls /refresh to get one. The token logic itself is api.routers.auth's (rotation, reuse
detection, revocation, rate limits), called as is.

Every call must carry the header X-Tickbridge-Dashboard: 1. A form on another site cannot set it,
so neither a forged login nor a forged logout can be posted from elsewhere (SameSite already keeps
the cookie home; this also covers the login, which has no cookie yet).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from api.deps import Ctx, Db, authenticate
from api.errors import ApiError
from api.ratelimit import limited
from api.routers import auth

PATH = "/dashboard/session"
COOKIE = "tb_refresh"
REUSE_GRACE_S = 10.0  # a page change racing its own refresh resends the old cookie (auth.rotate)
HEADER = "x-tickbridge-dashboard"
MAX_TOKEN = 256  # auth.RefreshIn's bound: a longer cookie is not one of ours

router = APIRouter(prefix=PATH, include_in_schema=False)


def from_the_dashboard(request: Request) -> None:
    if request.headers.get(HEADER) != "1":
        raise ApiError(403, f"dashboard session calls carry the header {HEADER}: 1", field=HEADER)


class SessionOut(BaseModel):
    access_token: str
    expires_in: int
    username: str
    role: str


def _answer(request: Request, response: Response, ctx: Ctx, db: Db, tokens: auth.Tokens) -> SessionOut:
    caller = authenticate(db, ctx.settings, tokens.access_token, None)
    if caller is None:  # disabled between the two queries
        raise ApiError(401, "not authenticated")
    response.set_cookie(COOKIE, tokens.refresh_token, max_age=ctx.settings.refresh_ttl_s, path=PATH,
                        secure=request.url.scheme == "https", httponly=True, samesite="strict")
    response.headers["cache-control"] = "no-store"
    return SessionOut(access_token=tokens.access_token, expires_in=tokens.expires_in, username=caller.username,
                      role=caller.role)


def _forget(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=request.url.scheme == "https", httponly=True,
                            samesite="strict")


@router.post("", response_model=SessionOut, dependencies=[Depends(from_the_dashboard), Depends(limited("auth"))])
def log_in(body: auth.Login, request: Request, response: Response, ctx: Ctx, db: Db) -> SessionOut:
    """POST /api/v1/auth/token's login, its refresh token put in the cookie instead of the body."""
    return _answer(request, response, ctx, db, auth.login(body, ctx, db))


@router.post("/refresh", response_model=SessionOut,
             dependencies=[Depends(from_the_dashboard), Depends(limited("auth"))])
def refresh(request: Request, response: Response, ctx: Ctx, db: Db) -> SessionOut:
    """A new access token for this page, the cookie's refresh token rotated (auth.refresh)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or len(cookie) > MAX_TOKEN:
        raise ApiError(401, "no dashboard session: log in")
    tokens = auth.rotate(auth.RefreshIn(refresh_token=cookie), ctx, db, grace_s=REUSE_GRACE_S)
    return _answer(request, response, ctx, db, tokens)


@router.post("/logout", status_code=204, dependencies=[Depends(from_the_dashboard), Depends(limited("auth"))])
def log_out(request: Request, response: Response, db: Db) -> None:
    """End the session (its refresh family, and with it every access token it issued) and drop
    the cookie; a cookie that no longer names a session is dropped all the same."""
    cookie = request.cookies.get(COOKIE)
    if cookie and len(cookie) <= MAX_TOKEN:
        try:
            auth.logout(auth.RefreshIn(refresh_token=cookie), db)
        except ApiError:
            pass
    _forget(request, response)
