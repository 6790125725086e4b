"""The control API's app factory: create_app(settings, bot_control).

Everything lives under /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs), except
nothing: health, readiness and metrics are /api/v1/health, /api/v1/ready, /api/v1/metrics. The
BotControl is injected, so the same app drives the in-process runtime, a worker, or a test's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker

from api import errors
from api.deps import AppContext
from api.metrics import Metrics, MetricsMiddleware
from api.ratelimit import RateLimiter
from api.routers import accounts, auth, backtests, bots, health, signals, subscriptions, users
from api.security import Vault
from api.settings import Settings
from api.streaming import SignalHub
from engine.runtime.control import BotControl
from engine.store.db import make_engine, upgrade

PREFIX = "/api/v1"


def owner_credentials(engine: Any, vault: Vault) -> Callable[[Any], list[Any]]:
    """For a bot config: its owner's encrypted accounts first, then the environment."""
    from sqlalchemy import select

    from api.credentials import AccountStoreCredentials
    from brokers.factory import EnvCredentials
    from engine.store.models import BotConfigRow

    def sources(config: Any) -> list[Any]:
        with engine.connect() as connection:
            owner = connection.execute(select(BotConfigRow.owner_id).where(BotConfigRow.bot_id == config.id)
                                       .order_by(BotConfigRow.version.desc()).limit(1)).scalar()
        found: list[Any] = [AccountStoreCredentials(engine, vault, owner)] if owner is not None else []
        return found + [EnvCredentials()]

    return sources


def create_app(settings: Settings | None = None, bot_control: BotControl | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    if bot_control is None:
        raise ValueError("create_app needs a BotControl (the runtime's BotManager, or a test's)")
    if settings.migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    metrics = Metrics()
    metrics.attach_store(engine, bot_control.running)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False),
                     bot_control=bot_control, vault=Vault(settings.accounts_key),
                     auth_limiter=RateLimiter(settings.auth_rate_per_minute), metrics=metrics,
                     executor=ThreadPoolExecutor(settings.backtest_workers, thread_name_prefix="backtest"))
    if hasattr(bot_control, "credential_sources"):  # live-venue bots log in with their owner's accounts
        bot_control.credential_sources = owner_credentials(engine, ctx.vault)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.hub = SignalHub(engine, settings.poll_interval_s, metrics)
        await ctx.hub.start()
        try:
            yield
        finally:
            await ctx.hub.stop()
            ctx.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="tickbridge control API", version="1", lifespan=lifespan,
                  openapi_url=f"{PREFIX}/openapi.json", docs_url=f"{PREFIX}/docs", redoc_url=None,
                  responses={code: errors.ERROR_SCHEMA for code in (401, 403, 404, 409, 422, 429)},
                  description="Bots, accounts, subscriptions, signals and backtests. Errors are "
                              '{"error": {"code", "message", "field"?}}. Denials: 403 when your role may '
                              "never do it, 404 when the object is not yours (or does not exist).")
    app.state.ctx = ctx
    errors.install(app)
    for module in (auth, users, bots, accounts, subscriptions, signals, backtests, health):
        app.include_router(module.router, prefix=PREFIX)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
