"""Market data from any ccxt exchange: ccxt.pro `watch_ticker`, with REST polling as fallback.

`subscribe` runs one asyncio loop in a thread. Each symbol is watched through ccxt.pro's
`watch_ticker`; when the websocket fails `max_ws_failures` times in a row (or the exchange has no
ccxt.pro class, or watching is not supported) that symbol falls back to polling `fetch_ticker`
every `poll_interval_s`, and tries the websocket again after `ws_retry_s`. A quote unchanged since
the last one is not repeated. `history` pages through `fetch_ohlcv`.

Bars come back like backtest/data.py's: float64 columns open, high, low, close, volume on a UTC
DatetimeIndex named "time" (ns).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Sequence

import ccxt
import pandas as pd

from brokers.ccxt.loop import stop_pro_loop
from engine.market import Tick

NS_PER_MS = 1_000_000
# binance's watch_ticker defaults to the miniTicker stream, which carries no bid or ask
WATCH_PARAMS: dict[str, dict[str, Any]] = {"binance": {"name": "ticker"}}


class CcxtFeed:
    """MarketDataFeed over one ccxt exchange."""

    def __init__(self, exchange_id: str, config: dict[str, Any] | None = None, rest: Any = None,
                 pro: Any = None, use_pro: bool = True, poll_interval_s: float = 1.0,
                 max_ws_failures: int = 3, ws_retry_s: float = 60.0,
                 watch_params: dict[str, Any] | None = None) -> None:
        """`rest` / `pro`: ready-made ccxt and ccxt.pro exchanges (tests point them at fakes)."""
        config = dict(config or {})
        self.rest = rest if rest is not None else getattr(ccxt, exchange_id)({"enableRateLimit": True, **config})
        if pro is None and use_pro:
            import ccxt.pro as ccxtpro
            pro_cls = getattr(ccxtpro, exchange_id, None)
            pro = pro_cls(config) if pro_cls is not None else None
            if pro is not None and getattr(self.rest, "isSandboxModeEnabled", False):
                pro.set_sandbox_mode(True)  # a testnet account's quotes come from the testnet's streams too
        self.pro = pro if use_pro else None
        self.watch_params = WATCH_PARAMS.get(exchange_id, {}) if watch_params is None else watch_params
        self.poll_interval_s = poll_interval_s
        self.max_ws_failures = max_ws_failures
        self.ws_retry_s = ws_retry_s
        self.mode: dict[str, str] = {}          # symbol -> "ws" or "rest": how it is fed now
        self.errors: list[str] = []             # the last failures, for the health view
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Future[Any]] = []

    # -- ticks ------------------------------------------------------------------------------------
    def subscribe(self, symbols: Sequence[str], on_tick: Callable[[Tick], None]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="ccxt-feed", daemon=True)
            self._thread.start()
        for symbol in symbols:
            self._tasks.append(asyncio.run_coroutine_threadsafe(self._watch(symbol, on_tick), self._loop))

    async def _watch(self, symbol: str, on_tick: Callable[[Tick], None]) -> None:
        last: tuple[Any, ...] | None = None
        failures = 0
        rest_until = 0.0
        while True:
            use_ws = self.pro is not None and time.monotonic() >= rest_until
            try:
                if use_ws:
                    self.mode[symbol] = "ws"
                    raw = await self.pro.watch_ticker(symbol, dict(self.watch_params))
                    failures = 0
                else:
                    self.mode[symbol] = "rest"
                    raw = await asyncio.to_thread(self.rest.fetch_ticker, symbol)
            except asyncio.CancelledError:
                raise
            except ccxt.NotSupported as error:
                self._note(symbol, error)
                rest_until = float("inf")
                continue
            except Exception as error:  # noqa: BLE001 - a feed keeps going; the error is recorded
                self._note(symbol, error)
                if use_ws:
                    failures += 1
                    if failures >= self.max_ws_failures:
                        rest_until = time.monotonic() + self.ws_retry_s
                        failures = 0
                await asyncio.sleep(min(self.poll_interval_s, 0.05 * 2**failures))
                continue
            tick = to_tick(symbol, raw)
            key = (tick.bid, tick.ask, tick.last, tick.ts)
            if key != last:
                last = key
                on_tick(tick)
            if not use_ws:
                await asyncio.sleep(self.poll_interval_s)

    def _note(self, symbol: str, error: Exception) -> None:
        self.errors.append(f"{symbol}: {type(error).__name__}: {error}"[:300])
        del self.errors[:-20]

    # -- bars -------------------------------------------------------------------------------------
    def history(self, symbol: str, timeframe: str, start: int, end: int) -> pd.DataFrame:
        """OHLCV bars opening in [start, end] (ns UTC), paged through fetch_ohlcv."""
        rows: list[list[Any]] = []
        since = start // NS_PER_MS
        end_ms = end // NS_PER_MS
        step_ms = self.rest.parse_timeframe(timeframe) * 1000
        while since <= end_ms:
            page = self.rest.fetch_ohlcv(symbol, timeframe, since, 1000, {"endTime": end_ms})
            page = [r for r in page if since <= r[0] <= end_ms]
            if not page:
                break
            rows.extend(page)
            since = int(page[-1][0]) + step_ms
        frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"], dtype="float64")
        frame = frame.drop_duplicates("time")
        index = pd.DatetimeIndex(pd.to_datetime(frame["time"].astype("int64"), unit="ms", utc=True), name="time")
        out = frame[["open", "high", "low", "close", "volume"]].set_axis(index.as_unit("ns"))
        return out

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        stop_pro_loop(loop, self._tasks, self.pro, self._thread)
        self._loop = None


def to_tick(symbol: str, raw: dict[str, Any]) -> Tick:
    """A ccxt ticker as a Tick (floats, as ticks arrive; the venue puts them on the grid)."""
    def num(key: str) -> float:
        value = raw.get(key)
        return float("nan") if value is None else float(value)

    ts = raw.get("timestamp")
    return Tick(symbol=symbol, ts=int(ts) * NS_PER_MS if ts else time.time_ns(), bid=num("bid"), ask=num("ask"),
                last=num("last"))
