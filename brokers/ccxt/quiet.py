"""A venue's quiet periods (a 429 / 418's Retry-After), shared by every adapter of this process
that calls the same venue hosts.

Why. Binance rate-limits by IP: request weight per IP over every key, and a 418 ban is an IP ban
that gets longer for every call made during it (2 minutes to 3 days). Each bot has an adapter of
its own, so with a quiet period kept per adapter, the bot that was answered 418 stopped calling
while another bot of the same runtime, on the same IP, kept polling once a second and so kept
lengthening the ban of both: their stops and cancels could not reach the venue for days.

What is shared: the end of the quiet period, per origin (the exchange id and the hosts its REST
API is reached at, so spot and USD-M futures, or a testnet, are apart) and per clock (a test's
injected clock is its own time: two clocks never share an entry). What is not: a quiet period
never crosses processes (another runtime on the same IP learns the ban from one call of its own),
and an order-count 429 of one account (binance -1015) quiets the other accounts on the same hosts
too, for its Retry-After's few seconds: fewer calls, never more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import urlsplit

_LOCK = threading.Lock()
_UNTIL: dict[tuple[Hashable, ...], float] = {}


def origin(exchange: Any) -> tuple[str, ...]:
    """The exchange id and the sorted hosts of its REST API (ccxt's `urls["api"]`, a URL or a
    nested dict of them): what a venue's rate limits and bans are counted against."""
    hosts: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            host = urlsplit(value).netloc
            if host:
                hosts.add(host.lower())
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk((getattr(exchange, "urls", None) or {}).get("api"))
    return (str(getattr(exchange, "id", "")), *sorted(hosts))


def until(key: tuple[Hashable, ...], clock: Callable[[], float]) -> float:
    """When the quiet period of `key` ends on `clock` (0.0: none was ever asked for)."""
    return _UNTIL.get((key, clock), 0.0)


def extend(key: tuple[Hashable, ...], clock: Callable[[], float], end: float) -> None:
    """The venue asked for quiet until `end` (on `clock`): never shortens one already running."""
    with _LOCK:
        entry = (key, clock)
        if end > _UNTIL.get(entry, 0.0):
            _UNTIL[entry] = end
