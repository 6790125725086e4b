"""Alpaca market data: quotes, trades and bars from alpaca-py's StockDataStream and
CryptoDataStream (crypto symbols are the ones with a slash, "BTC/USD").

The streams run with `raw_data=True` on a thread each (the SDK's `run()` owns `asyncio.run`,
so the adapter drives `_run_forever()` on a loop of its own) and reconnect by themselves.
Quotes become Ticks with bid/ask, trades Ticks with last/size, bars engine Bars (one minute).
History comes from the historical data clients (StockHistoricalDataClient /
CryptoHistoricalDataClient) as OHLCV on a UTC index named "time".
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import pandas as pd

from engine.market import Bar, Tick

_MINUTE_NS = 60_000_000_000


def _ts(value: Any) -> int:
    """A msgpack Timestamp (raw stream data) or a datetime -> ns UTC."""
    if hasattr(value, "to_unix_nano"):
        return int(value.to_unix_nano())
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000_000)
    return int(value)


class AlpacaFeed:
    """MarketDataFeed over Alpaca's stock and crypto data streams."""

    def __init__(self, api_key: str, secret_key: str, *, stock_url: str | None = None,
                 crypto_url: str | None = None, data_url: str | None = None,
                 reconnect_backoff_s: tuple[float, float] | None = None) -> None:
        self.api_key, self.secret_key = api_key, secret_key
        self.stock_url, self.crypto_url, self.data_url = stock_url, crypto_url, data_url
        self.reconnect_backoff_s = reconnect_backoff_s
        self._streams: dict[str, Any] = {}
        self._threads: dict[str, tuple[threading.Thread, list[asyncio.AbstractEventLoop]]] = {}
        self._count_lock = threading.Lock()
        self.messages = 0   # messages handed to the callbacks (counted after the callback returned)

    def subscribe(self, symbols: Sequence[str], on_tick: Callable[[Tick], None],
                  on_bar: Callable[[Bar], None] | None = None) -> None:
        for kind in ("stock", "crypto"):
            chosen = [s for s in symbols if ("/" in s) == (kind == "crypto")]
            if not chosen:
                continue
            stream = self._stream(kind)

            async def on_quote(q: dict[str, Any]) -> None:
                on_tick(Tick(q["S"], _ts(q["t"]), bid=float(q["bp"]), ask=float(q["ap"])))
                self._counted()

            async def on_trade(t: dict[str, Any]) -> None:
                on_tick(Tick(t["S"], _ts(t["t"]), last=float(t["p"]), size=float(t["s"])))
                self._counted()

            stream.subscribe_quotes(on_quote, *chosen)
            stream.subscribe_trades(on_trade, *chosen)
            if on_bar is not None:
                async def on_minute_bar(b: dict[str, Any]) -> None:
                    start = _ts(b["t"])
                    on_bar(Bar(b["S"], start, start + _MINUTE_NS, float(b["o"]), float(b["h"]), float(b["l"]),
                               float(b["c"]), float(b["v"])))
                    self._counted()
                stream.subscribe_bars(on_minute_bar, *chosen)
            self._start(kind, stream)

    def _counted(self) -> None:
        """One more message handled; the stock and crypto streams count from two threads."""
        with self._count_lock:
            self.messages += 1

    def _stream(self, kind: str) -> Any:
        if kind not in self._streams:
            if kind == "stock":
                from alpaca.data.live.stock import StockDataStream
                stream = StockDataStream(self.api_key, self.secret_key, raw_data=True, url_override=self.stock_url)
            else:
                from alpaca.data.live.crypto import CryptoDataStream
                stream = CryptoDataStream(self.api_key, self.secret_key, raw_data=True, url_override=self.crypto_url)
            if self.reconnect_backoff_s is not None:
                stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.reconnect_backoff_s
            self._streams[kind] = stream
        return self._streams[kind]

    def _start(self, kind: str, stream: Any) -> None:
        if kind in self._threads:
            return
        loops: list[asyncio.AbstractEventLoop] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            loops.append(loop)
            try:
                loop.run_until_complete(stream._run_forever())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name=f"alpaca-{kind}-data", daemon=True)
        self._threads[kind] = (thread, loops)
        thread.start()

    def connected(self) -> bool:
        """True once every started stream is connected, authenticated and subscribed."""
        return all(getattr(s, "_running", False) for s in self._streams.values())

    def history(self, symbol: str, timeframe: str, start: int, end: int) -> pd.DataFrame:
        """OHLCV bars in [start, end] (ns UTC); timeframe like "1Min", "5Min", "1Hour", "1Day"."""
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
        amount = int("".join(ch for ch in timeframe if ch.isdigit()) or 1)
        unit = {"Min": TimeFrameUnit.Minute, "Hour": TimeFrameUnit.Hour, "Day": TimeFrameUnit.Day,
                "Week": TimeFrameUnit.Week, "Month": TimeFrameUnit.Month}[timeframe.lstrip("0123456789")]
        window = {"symbol_or_symbols": symbol, "timeframe": TimeFrame(amount, unit),
                  "start": datetime.fromtimestamp(start / 1e9, tz=timezone.utc),
                  "end": datetime.fromtimestamp(end / 1e9, tz=timezone.utc)}
        if "/" in symbol:
            from alpaca.data.historical.crypto import CryptoHistoricalDataClient
            client = CryptoHistoricalDataClient(self.api_key, self.secret_key, raw_data=True,
                                                url_override=self.data_url)
            raw = client.get_crypto_bars(CryptoBarsRequest(**window))
        else:
            from alpaca.data.historical.stock import StockHistoricalDataClient
            client = StockHistoricalDataClient(self.api_key, self.secret_key, raw_data=True, url_override=self.data_url)
            raw = client.get_stock_bars(StockBarsRequest(**window))
        rows = raw.get(symbol, []) if isinstance(raw, dict) else []
        index = pd.DatetimeIndex(pd.to_datetime([r["t"] for r in rows], utc=True), name="time").as_unit("ns")
        return pd.DataFrame({"open": [float(r["o"]) for r in rows], "high": [float(r["h"]) for r in rows],
                             "low": [float(r["l"]) for r in rows], "close": [float(r["c"]) for r in rows],
                             "volume": [float(r["v"]) for r in rows]}, index=index)

    def close(self) -> None:
        for kind, stream in self._streams.items():
            thread, loops = self._threads.get(kind, (None, []))
            if loops and loops[0].is_running():
                async def stop(s: Any = stream) -> None:
                    await s.stop_ws()
                    await s.close()
                asyncio.run_coroutine_threadsafe(stop(), loops[0]).result(10)
            if thread is not None:
                thread.join(10)
