"""Conversion rates for a live bot's books: what a fee charged in a third coin is worth.

A backtest feeds its ConversionRates from the market data it replays; a live bot has no market
data for the coin its fees are paid in (BNB on a BTC/USDT bot with Binance's "pay fees with BNB").
`VenueRates` asks the bot's own venue instead: an adapter that can price one currency in another
has `conversion_rate(base, quote) -> Decimal | None` (ccxt: the BNB/USDT ticker). The answer is
cached for `refresh_s` (one request per interval, however many fills), and a failed look-up is
not repeated before `retry_s`, so a venue that cannot answer costs one request per retry, not one
per fill. `live_portfolio` builds the books every live runner trades into: rates from the venue,
and a fill whose fee has no rate yet booked anyway (its fee valued once a rate arrives,
Portfolio.value_pending_fees), never an error that stops the bot at its first fill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from engine.instrument import Instrument
from engine.money import ConversionRates
from engine.portfolio import Portfolio

log = logging.getLogger(__name__)

REFRESH_S = 60.0     # a fee coin's price is re-read at most this often
RETRY_S = 10.0       # after a failed read, the next one waits this long
MAX_AGE_NS = int(REFRESH_S * 1e9)  # a rate older than this (fill time) is read again


class VenueRates:
    """A ConversionRates source over an adapter's `conversion_rate` (module docstring)."""

    def __init__(self, adapter: Any, refresh_s: float = REFRESH_S, retry_s: float = RETRY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._read = getattr(adapter, "conversion_rate", None)
        self.refresh_s, self.retry_s, self.monotonic = refresh_s, retry_s, monotonic
        self._cache: dict[tuple[str, str], tuple[float, Decimal | None]] = {}
        self.requests = 0

    def __call__(self, base: str, quote: str) -> Decimal | None:
        """1 `base` in `quote` at the venue now, or None (no such market, the venue failed)."""
        if self._read is None:
            return None
        now = self.monotonic()
        cached = self._cache.get((base, quote))
        if cached is not None:
            at, rate = cached
            if now - at < (self.refresh_s if rate is not None else self.retry_s):
                return rate
        self.requests += 1
        try:
            rate = self._read(base, quote)
        except Exception as error:  # noqa: BLE001 - a rate is optional: the fee waits, the bot trades on
            log.warning("no %s/%s rate from the venue (%s): fees in %s wait for one", base, quote,
                        type(error).__name__, base)
            rate = None
        if rate is not None and (not rate.is_finite() or rate <= 0):
            rate = None
        self._cache[(base, quote)] = (now, rate)
        return rate


def live_rates(adapter: Any) -> ConversionRates:
    """The conversion rates of a live bot's books: read from its venue as fees need them."""
    return ConversionRates(max_age_ns=MAX_AGE_NS, source=VenueRates(adapter))


def live_portfolio(cash: Decimal, instrument: Instrument, adapter: Any) -> Portfolio:
    """The books a live runner trades into (module docstring)."""
    portfolio = Portfolio.for_instrument(cash, instrument, rates=live_rates(adapter))
    portfolio.defer_unvalued_fees = True
    return portfolio
