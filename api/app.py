"""The control API's app factory: create_app(settings, bot_control).

Everything lives under /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs), except
nothing: health, readiness and metrics are /api/v1/health, /api/v1/ready, /api/v1/metrics. The
BotControl is injected, so the same app drives the in-process runtime, a worker, or a test's.

Under load (api.middleware): at most `api_threads` requests run at once, in as many worker threads,
each sure of a database connection (the pool is sized with them); a short queue waits behind them
and the rest is told 503 + Retry-After at once. Bodies are bounded and read before a request takes
a worker. Every response carries the security headers, error pages included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp

from api import errors
from api.deps import AppContext
from api.metrics import Metrics, MetricsMiddleware, TicksDroppedCollector
from api.middleware import BodyLimit, ConcurrencyLimit, SecurityHeaders
from api.ratelimit import RateLimiter
from api.routers import accounts, auth, backtests, bots, health, signals, subscriptions, users
from api.security import Vault
from api.settings import Settings
from api.streaming import SignalHub
from engine.runtime.control import BotControl
from engine.store.db import make_engine, upgrade

PREFIX = "/api/v1"
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
    """owner_credentials, installed on a BotManager that runs in another process (engine.runtime.
    remote): that process opens its own engine and vault, with the key the API uses."""
    manager.credential_sources = owner_credentials(make_engine(database_url), Vault(accounts_key))


class TickbridgeAPI(FastAPI):
    """FastAPI with the security headers outside everything, the 500 page included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), no_store_prefix=f"{PREFIX}/auth/")


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
    if hasattr(bot_control, "credential_sources"):  # live-venue bots log in with their owner's accounts
        bot_control.credential_sources = owner_credentials(engine, ctx.vault)
    elif hasattr(bot_control, "configure"):  # a runtime in its own process builds them there
        bot_control.configure(install_owner_credentials, settings.database_url, settings.accounts_key)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the request threads, as many as the limiter lets in and the pool has connections for
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        await asyncio.to_thread(backtests.fail_interrupted, ctx)  # a restart lost the pool's jobs
        ctx.hub = SignalHub(engine, settings.poll_interval_s, metrics)
        await ctx.hub.start()
        metrics_server = metrics.serve(settings.metrics_port) if settings.metrics_port is not None else None
        try:
            yield
        finally:
            await ctx.hub.stop()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            ctx.executor.shutdown(wait=False, cancel_futures=True)

    app = TickbridgeAPI(title="tickbridge control API", version="1", lifespan=lifespan,
                        openapi_url=f"{PREFIX}/openapi.json", docs_url=f"{PREFIX}/docs", redoc_url=None,
                        responses={code: errors.ERROR_SCHEMA
                                   for code in (400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 503)},
                        description="Bots, accounts, subscriptions, signals and backtests. Errors are "
                                    '{"error": {"code", "message", "field"?}}. Denials: 403 when your role may '
                                    "never do it, 404 when the object is not yours (or does not exist).")
    app.state.ctx = ctx
    errors.install(app)
    for module in (auth, users, bots, accounts, subscriptions, signals, backtests, health):
        app.include_router(module.router, prefix=PREFIX)
    # innermost first: the slot is taken after the body is in, and the metrics see every answer
    app.add_middleware(ConcurrencyLimit, limit=settings.api_threads, queue=settings.api_queue,
                       max_wait_s=settings.queue_wait_s, login_limit=settings.login_concurrency,
                       login_queue=settings.login_queue,
                       login_paths=[("POST", f"{PREFIX}/auth/token"), ("POST", f"{PREFIX}/users")],
                       exempt=[f"{PREFIX}/health", f"{PREFIX}/metrics"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
