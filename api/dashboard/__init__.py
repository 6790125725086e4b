"""The web dashboard, served by the API itself at / (same origin, same auth), with no build step
and nothing loaded from the internet.

Design (issue 19): server-sent HTML shells (templates/, filled by string substitution: no
template engine, no user data in them beyond the escaped path argument) and one vanilla script
(static/dashboard.js) that reads the existing REST endpoints and the signals WebSocket with the
caller's access token, building the DOM with textContent only. Charts are the vendored
Lightweight Charts and backtest/report_assets/report.js, the same files the CLI's interactive
report inlines (served here under /dashboard/report-assets/). A bundled SPA would need a
JavaScript toolchain to rebuild; htmx would need HTML fragments rendered with the caller's
rights on the server, a second authorization path beside the API's.

Tokens: the access token lives in the page's memory only; the refresh token in an HttpOnly,
SameSite=Strict cookie scoped to /dashboard/session (api.dashboard.session), so no script can
read it and no other request carries it. Every page carries a strict Content-Security-Policy
(scripts, styles and connections from this origin only; no inline script, no framing).

Research (research_pages.py, static/research.js + research.css): the sweeps list and form, a
sweep's heatmap (SVG drawn by the script, keyboard-reachable cells) with its ranked table, and
the Monte Carlo fan under a backtest's report. research.js is a second script on every page that
acts only on the views it owns (data-view sweeps / sweep) and on the backtest view, where it adds
its own section after #main; it asks /dashboard/session/refresh for its own access token (after
dashboard.js's refresh, under the same Web Lock), so neither script reaches into the other.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.dashboard import pages, research_pages, session
from api.dashboard.pages import REPORT_ASSETS_URL, STATIC_URL, STATIC_DIR
from backtest.report_html import ASSETS as REPORT_ASSETS_DIR

__all__ = ["install", "LOGIN_PATH"]

LOGIN_PATH = session.PATH


def install(app: FastAPI) -> None:
    """Mount the dashboard's pages, session endpoints and assets on `app`."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.mount(REPORT_ASSETS_URL, StaticFiles(directory=REPORT_ASSETS_DIR), name="dashboard-report-assets")
    app.include_router(session.router)
    app.include_router(pages.router)
    app.include_router(research_pages.router)
