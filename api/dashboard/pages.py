"""The dashboard's pages: HTML shells (templates/), one per view, that static/dashboard.js fills
from the API with the caller's token. A shell holds no data: what a caller may see is decided by
the API endpoints the script calls, the same rules as for any other client (api.deps).

Each page carries a Content-Security-Policy that allows scripts, styles, images and connections
(fetch, the signals WebSocket) from this origin only, no inline script, and no framing.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/dashboard/static"
REPORT_ASSETS_URL = "/dashboard/report-assets"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)
_TEMPLATES = {name: Template((HERE / "templates" / f"{name}.html").read_text()) for name in ("page", "login")}


def _page(template: str, view: str, title: str, arg: str = "") -> HTMLResponse:
    body = _TEMPLATES[template].substitute(view=view, title=html.escape(title), arg=html.escape(arg, quote=True),
                                           static=STATIC_URL, report=REPORT_ASSETS_URL)
    return HTMLResponse(body, headers={"content-security-policy": CSP, "cache-control": "no-cache"})


@router.get("/")
def home() -> HTMLResponse:
    """A trader's bots (state, stop reason, P&L); a subscriber is sent on to their feed."""
    return _page("page", "home", "bots")


@router.get("/login")
def login() -> HTMLResponse:
    return _page("login", "login", "log in")


@router.get("/new-bot")
def new_bot() -> HTMLResponse:
    """A form that creates a bot (POST /api/v1/bots); the API's 422 shows next to the field it names."""
    return _page("page", "botform", "new bot")


@router.get("/bots/{bot_id}/edit")
def edit_bot(bot_id: str) -> HTMLResponse:
    """A bot's config as a form; saving PUTs a new version (PUT /api/v1/bots/{id})."""
    return _page("page", "botform", f"edit bot {bot_id}", bot_id)


@router.get("/bots/{bot_id}")
def bot(bot_id: str) -> HTMLResponse:
    """One bot: state and controls, price with fills and signals, equity and drawdown, tables."""
    return _page("page", "bot", f"bot {bot_id}", bot_id)


@router.get("/feed")
def feed() -> HTMLResponse:
    """The caller's subscriptions and the live feed of the signals they may see."""
    return _page("page", "feed", "signals")


@router.get("/backtests")
def backtests() -> HTMLResponse:
    """The caller's backtest jobs, each linked to its report."""
    return _page("page", "backtests", "backtests")


@router.get("/backtests/{job_id}")
def backtest(job_id: str) -> HTMLResponse:
    """A finished backtest job drawn by the interactive report's component."""
    return _page("page", "backtest", f"backtest {job_id}", job_id)


@router.get("/accounts")
def accounts() -> HTMLResponse:
    """The caller's broker accounts: risk state, P&L per bot and summed, positions against the venue."""
    return _page("page", "accounts", "accounts")


@router.get("/notifications")
def notifications() -> HTMLResponse:
    """The caller's notification rules (create, edit, delete, send a test) and their delivery log."""
    return _page("page", "notifications", "notifications")


@router.get("/dashboard")
def dashboard() -> RedirectResponse:
    return RedirectResponse("/", status_code=307)
