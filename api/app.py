"""The control API's app factory: create_app(settings, bot_control).

Everything lives under /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs and
/api/v1/redoc), except the web dashboard (api/dashboard: its pages at /, its session and assets
under /dashboard/): health, readiness and metrics are /api/v1/health, /api/v1/ready,
/api/v1/metrics. The BotControl is injected, so the same app drives the in-process runtime, a
worker, or a test's.

The docs pages load Swagger UI and ReDoc from this server (/api/v1/docs/assets/, the files of the
pinned fastapi-offline package), never from a CDN: a server without internet, or a browser
behind a strict proxy, still gets working docs.

The data directories (settings.data_dirs) are installed as the process's, in the API's process
and in the runtime's, so the names GET /data-sources lists are the ones a bot's `data` may use.

Under load (api.middleware): at most `api_threads` requests run at once, in as many worker threads,
each sure of a database connection (the pool is sized with them); a short queue waits behind them
and the rest is told 503 + Retry-After at once. Bodies are bounded and read before a request takes
a worker. Every response carries the security headers, error pages included.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp

from api import dashboard, errors
from api.deps import AppContext
from api.metrics import Metrics, MetricsMiddleware, TicksDroppedCollector
from api.middleware import BodyLimit, ConcurrencyLimit, SecurityHeaders
from api.notify.dispatcher import Dispatcher
from api.notify.router import router as notifications_router
from api.ratelimit import RateLimiter
from api.routers import accounts, auth, backtests, bots, data, health, signals, subscriptions, users
from api.security import Vault
from api.settings import Settings
from api.streaming import SignalHub
from live.control import BotControl
from live.feed import set_data_dirs
from engine.store.db import make_engine, upgrade

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
DOCS_ASSETS = f"{PREFIX}/docs/assets"
POOL_TIMEOUT_S = 5.0  # a connection held elsewhere (poller, stream logins) past this: 503, not a hang


def owner_credentials(engine: Any, vault: Vault) -> Callable[[Any], list[Any]]:
    """For a bot config: its owner's encrypted accounts first, then the environment."""
    from sqlalchemy import select

    from api.credentials import AccountStoreCredentials
    from brokers.factory import EnvCredentials
    from engine.store.models import BotConfigRow

    def sources(config: Any) -> list[Any]:
        with engine.connect() as connection:
            owner = connection.execute(select(BotConfigRow.owner_id).where(BotConfigRow.runtime_id == config.id)
                                       .order_by(BotConfigRow.version.desc()).limit(1)).scalar()
        found: list[Any] = [AccountStoreCredentials(engine, vault, owner)] if owner is not None else []
        return found + [EnvCredentials()]

    return sources


def install_owner_credentials(manager: Any, database_url: str | None, accounts_key: str) -> None:
    """owner_credentials, installed on a BotManager that runs in another process (live.
    remote): that process opens its own engine and vault, with the key the API uses."""
    manager.credential_sources = owner_credentials(make_engine(database_url), Vault(accounts_key))


def install_data_dirs(_manager: Any, dirs: tuple[Any, ...]) -> None:
    """The API's data directories, installed in a runtime that runs in another process."""
    set_data_dirs(dirs)


def docs_assets_dir() -> Any:
    """Swagger UI's and ReDoc's files, shipped by the pinned fastapi-offline package (MIT; the
    assets keep their own licences: Swagger UI Apache-2.0, ReDoc MIT)."""
    from pathlib import Path

    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, their scripts and styles served by this app."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or f"{PREFIX}/openapi.json"
    oauth2_redirect = f"{PREFIX}/docs/oauth2-redirect"

    @app.get(f"{PREFIX}/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=oauth2_redirect,
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(f"{PREFIX}/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


class TickbridgeAPI(FastAPI):
    """FastAPI with the security headers outside everything, the 500 page included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), no_store_prefix=f"{PREFIX}/auth/")


def _finish_kills_in_background(bot_control: Any) -> None:
    """The runtime finishes kills a crash or a venue cut short (live.manager.BotManager.finish_kills:
    a halted live bot still holding a position or working orders is killed again through its
    venue), on a thread of its own: venues may be slow, and the API serves meanwhile. A runtime
    without it (a test's fake) is left alone; a failure is logged, never stops the server."""
    finish = getattr(bot_control, "finish_kills", None)
    if finish is None:
        return

    def run() -> None:
        try:
            finished = finish()
        except Exception as error:  # noqa: BLE001 - start-up must not fail on a bot's venue
            log.warning("could not finish interrupted kills: %s", type(error).__name__)
            return
        if finished:
            log.warning("finished the kills of %s (halted, still holding at their venue)", ", ".join(finished))

    threading.Thread(target=run, name="finish-kills", daemon=True).start()


def create_app(settings: Settings | None = None, bot_control: BotControl | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    if bot_control is None:
        raise ValueError("create_app needs a BotControl (the runtime's BotManager, or a test's)")
    if settings.migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=settings.pool_size, pool_timeout=POOL_TIMEOUT_S)
    metrics = Metrics()
    metrics.attach_store(engine, bot_control.running)
    metrics.registry.register(TicksDroppedCollector(bot_control))  # type: ignore[arg-type]
    ctx = AppContext(settings=settings, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False),
                     bot_control=bot_control, vault=Vault(settings.accounts_key),
                     auth_limiter=RateLimiter.for_settings(settings, engine), metrics=metrics,
                     executor=ThreadPoolExecutor(settings.backtest_workers, thread_name_prefix="backtest"))
    set_data_dirs(settings.data_dirs)  # what a bot's `data` may name, here and in the runtime
    if hasattr(bot_control, "credential_sources"):  # live-venue bots log in with their owner's accounts
        bot_control.credential_sources = owner_credentials(engine, ctx.vault)
    elif hasattr(bot_control, "configure"):  # a runtime in its own process builds them there
        bot_control.configure(install_owner_credentials, settings.database_url, settings.accounts_key)
        bot_control.configure(install_data_dirs, tuple(settings.data_dirs))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the request threads, as many as the limiter lets in and the pool has connections for
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        await asyncio.to_thread(backtests.fail_interrupted, ctx)  # a restart lost the pool's jobs
        ctx.hub = SignalHub(engine, settings.poll_interval_s, metrics, late_grace_s=settings.signal_late_grace_s)
        await ctx.hub.start()
        if settings.notify_enabled:  # one notification dispatcher per process (api/notify)
            ctx.extra["notify"] = Dispatcher(engine, settings, ctx.vault)
            await ctx.extra["notify"].start()
        metrics_server = metrics.serve(settings.metrics_port) if settings.metrics_port is not None else None
        _finish_kills_in_background(bot_control)
        try:
            yield
        finally:
            await ctx.hub.stop()
            if ctx.extra.get("notify") is not None:
                await ctx.extra.pop("notify").stop()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            ctx.executor.shutdown(wait=False, cancel_futures=True)

    app = TickbridgeAPI(title="tickbridge control API", version="1", lifespan=lifespan,
                        openapi_url=f"{PREFIX}/openapi.json", docs_url=None, redoc_url=None,
                        responses={code: errors.ERROR_SCHEMA
                                   for code in (400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 503)},
                        description="Bots, accounts, subscriptions, signals and backtests. Errors are "
                                    '{"error": {"code", "message", "field"?}}. Denials: 403 when your role may '
                                    "never do it, 404 when the object is not yours (or does not exist).")
    app.state.ctx = ctx
    errors.install(app)
    install_docs(app)
    for module in (auth, users, bots, accounts, data, subscriptions, signals, backtests, health):
        app.include_router(module.router, prefix=PREFIX)
    app.include_router(notifications_router, prefix=PREFIX)
    from api.routers import bars  # a bot's candles (helper S's router)
    app.include_router(bars.router, prefix=PREFIX)
    from api.routers import sweeps  # sweep jobs (helper Y2's router, issue 19)
    app.include_router(sweeps.router, prefix=PREFIX)
    dashboard.install(app)  # the web dashboard at / (api/dashboard): pages, its session cookie, assets
    # innermost first: the slot is taken after the body is in, and the metrics see every answer
    app.add_middleware(ConcurrencyLimit, limit=settings.api_threads, queue=settings.api_queue,
                       max_wait_s=settings.queue_wait_s, login_limit=settings.login_concurrency,
                       login_queue=settings.login_queue,
                       login_paths=[("POST", f"{PREFIX}/auth/token"), ("POST", f"{PREFIX}/users"),
                                    ("POST", dashboard.LOGIN_PATH)],
                       exempt=[f"{PREFIX}/health", f"{PREFIX}/metrics"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
