"""Prometheus metrics, on a registry of the app's own (several apps may live in one process).

Per request: tickbridge_http_requests_total{method,route,status} and a latency histogram. Per
scrape, read from the store and the runtime: orders by state (rejects are REJECTED and DENIED),
fills, bots running. Per signal: the stream fan-out latency, from the row being seen by the
poller to its frame being handed to a client's socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.store.models import FillRow, OrderRow

REJECT_STATES = ("REJECTED", "DENIED")


class StoreCollector:
    """Orders, fills, rejects and bots running, read when Prometheus scrapes."""

    def __init__(self, engine: Engine, running: Callable[[], list[str]]) -> None:
        self.engine, self.running = engine, running

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        orders = GaugeMetricFamily("tickbridge_orders", "orders in the store by state", labels=["state"])
        rejects = GaugeMetricFamily("tickbridge_order_rejects", "orders rejected by a venue or denied by risk")
        fills = GaugeMetricFamily("tickbridge_fills", "fills in the store")
        running = GaugeMetricFamily("tickbridge_bots_running", "bots the runtime reports RUNNING")
        try:
            with self.engine.connect() as connection:
                by_state = connection.execute(select(OrderRow.state, func.count()).group_by(OrderRow.state)).all()
                n_fills = connection.execute(select(func.count()).select_from(FillRow)).scalar_one()
        except Exception:  # a scrape must not fail because the store is down; /ready says so
            by_state, n_fills = [], float("nan")
        for state, count in by_state:
            orders.add_metric([state], count)
        rejects.add_metric([], sum(c for s, c in by_state if s in REJECT_STATES))
        fills.add_metric([], n_fills)
        running.add_metric([], len(self.running()))
        yield from (orders, rejects, fills, running)


class TicksDroppedCollector:
    """tickbridge_ticks_dropped{bot,reason}: what each running bot's tick guard dropped (malformed,
    duplicate, outlier), and tickbridge_tick_level_shifts{bot}: the new price levels it accepted,
    read from BotControl.status() when Prometheus scrapes, so a bad feed shows on a dashboard
    before it shows in P&L. Gauges of a bot's current run: they restart with it."""

    def __init__(self, control: Any) -> None:
        self.control = control

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        dropped = GaugeMetricFamily("tickbridge_ticks_dropped", "ticks a running bot's tick guard dropped, by reason",
                                    labels=["bot", "reason"])
        shifts = GaugeMetricFamily("tickbridge_tick_level_shifts", "new price levels a running bot's tick guard "
                                   "accepted after consecutive ticks confirmed them", labels=["bot"])
        for bot_id in self.control.running():
            try:
                status = self.control.status(bot_id)
            except Exception:  # the bot stopped between the two calls: nothing to report for it
                continue
            for reason, count in sorted((status.get("ticks_dropped") or {}).items()):
                dropped.add_metric([bot_id, str(reason)], count)
            if "tick_level_shifts" in status:
                shifts.add_metric([bot_id], status["tick_level_shifts"])
        yield dropped
        yield shifts


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tickbridge_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("tickbridge_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.fanout = Histogram("tickbridge_signal_fanout_seconds", "signal seen by the poller -> sent to a client",
                                registry=self.registry,
                                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.stream_clients = Counter("tickbridge_stream_connections", "signal stream connections", ["kind"],
                                      registry=self.registry)

    def attach_store(self, engine: Engine, running: Callable[[], list[str]]) -> None:
        self.registry.register(StoreCollector(engine, running))  # type: ignore[arg-type]

    def serve(self, port: int) -> Any:
        """This registry on http://127.0.0.1:<port>/ (a thread of prometheus_client's), for a
        local scraper only; the caller shuts the returned server down."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # FastAPI >= 0.16x keeps included routes unprefixed and records the effective (prefixed) one
            effective = (scope.get("fastapi") or {}).get("effective_route_context") or scope.get("route")
            template = getattr(effective, "path", None) or "unmatched"
            method = Request(scope).method
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
