"""MetaTrader 5 market data: ticks by polling, bars from the terminal's history.

MetaTrader's Python API has no push stream. `poll()` asks copy_ticks_from for each subscribed
symbol from the last tick seen (ticks carry millisecond times; several may share one, so the
ones already delivered at the cursor's millisecond are counted and skipped), and falls back to
symbol_info_tick when the terminal returns no tick history. `start(interval_s)` polls on a
thread; tests call `poll()`. Times from the terminal are in the broker's server time zone: a
ServerClock (clock.py) turns them into UTC: the adapter's when given (`clock`), else one of the
feed's own from `server_tz` / `server_utc_offset_s`, or derived from the ticks it reads.
"""

from __future__ import annotations

import math

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from brokers.mt5.clock import ServerClock
from brokers.mt5.mapping import field
from engine.market import Tick

COPY_TICKS_ALL = -1
TIMEFRAMES = {"M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15, "M20": 20,
              "M30": 30, "H1": 1 | 0x4000, "H2": 2 | 0x4000, "H3": 3 | 0x4000, "H4": 4 | 0x4000,
              "H6": 6 | 0x4000, "H8": 8 | 0x4000, "H12": 12 | 0x4000, "D1": 24 | 0x4000, "W1": 1 | 0x8000,
              "MN1": 1 | 0xC000}


class MT5Feed:
    """MarketDataFeed over the MetaTrader5 module (shares the adapter's lock when given)."""

    def __init__(self, api: Any, *, lock: threading.RLock | None = None, server_utc_offset_s: int | None = None,
                 server_tz: str | None = None, clock: ServerClock | None = None, batch: int = 10_000,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.api = api
        self.lock = lock or threading.RLock()
        self.clock = clock or ServerClock(zone=server_tz, fixed_offset_s=server_utc_offset_s, utc_now_ns=clock_ns)
        self.batch = batch
        self._subscriptions: dict[str, list[Callable[[Tick], None]]] = {}
        self._cursor: dict[str, tuple[int, int]] = {}    # symbol -> (time_msc, ticks seen at it)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def subscribe(self, symbols: Sequence[str], on_tick: Callable[[Tick], None]) -> None:
        with self.lock:
            for symbol in symbols:
                if not self.api.symbol_select(symbol, True):
                    raise KeyError(f"MT5 symbol {symbol!r}: {self.api.last_error()}")
                self._subscriptions.setdefault(symbol, []).append(on_tick)
                if symbol not in self._cursor:
                    last = self.api.symbol_info_tick(symbol)
                    # from the current quote on: it is delivered too, history before it is not
                    self._cursor[symbol] = (int(field(last, "time_msc")), 0) if last is not None else (0, 0)

    def poll(self) -> int:
        """Deliver ticks that arrived since the last poll; returns how many."""
        delivered = 0
        with self.lock:
            batches = [(symbol, self._new_ticks(symbol)) for symbol in self._subscriptions]
        for symbol, ticks in batches:
            for tick in ticks:
                for callback in self._subscriptions[symbol]:
                    callback(tick)
                delivered += 1
        return delivered

    def _new_ticks(self, symbol: str) -> list[Tick]:
        cursor_msc, seen = self._cursor[symbol]
        # a datetime, not epoch seconds: mt5linux writes `date_from.astimezone()` into the call it
        # sends to the terminal; the module takes either
        since = datetime.fromtimestamp(max(0, cursor_msc // 1000), tz=timezone.utc)
        rows = self.api.copy_ticks_from(symbol, since, self.batch, COPY_TICKS_ALL)
        if rows is None or len(rows) == 0:
            last = self.api.symbol_info_tick(symbol)
            if last is None or int(field(last, "time_msc")) <= cursor_msc and seen:
                return []
            rows = [last]
        newest = max(int(r["time_msc"]) if isinstance(r, np.void) else int(field(r, "time_msc")) for r in rows)
        self.clock.observe(newest)
        out: list[Tick] = []
        for row in rows:
            msc = int(row["time_msc"]) if isinstance(row, np.void) else int(field(row, "time_msc"))
            if msc < cursor_msc:
                continue
            if msc == cursor_msc:
                if seen:
                    seen -= 1
                    continue
                self._cursor[symbol] = (msc, self._cursor[symbol][1] + 1)
            else:
                self._cursor[symbol] = (msc, 1)
            get = (lambda k: row[k]) if isinstance(row, np.void) else (lambda k: field(row, k))
            # MT5 reports last = 0 on quotes without a trade (every FX tick): that is "no last
            # price", not a price of zero, which the tick guard would rightly drop as malformed
            last = float(get("last")) or math.nan
            out.append(Tick(symbol, self.clock.to_utc_ns(msc), float(get("bid")), float(get("ask")),
                            last, float(get("volume_real"))))
        return out

    def history(self, symbol: str, timeframe: str, start: int, end: int) -> pd.DataFrame:
        """OHLCV bars in [start, end] (ns UTC) on a UTC index named "time"."""
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown MT5 timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
        begin = datetime.fromtimestamp(self.clock.to_server_s(start), tz=timezone.utc)
        finish = datetime.fromtimestamp(self.clock.to_server_s(end), tz=timezone.utc)
        with self.lock:
            rates = self.api.copy_rates_range(symbol, TIMEFRAMES[timeframe], begin, finish)
        if rates is None:
            raise LookupError(f"MT5 copy_rates_range({symbol}, {timeframe}) failed: {self.api.last_error()}")
        times = pd.to_datetime([self.clock.to_utc_ns(int(t) * 1000) for t in rates["time"]], unit="ns", utc=True)
        volume = rates["real_volume"] if len(rates) and rates["real_volume"].any() else rates["tick_volume"]
        frame = pd.DataFrame({"open": rates["open"], "high": rates["high"], "low": rates["low"],
                              "close": rates["close"], "volume": np.asarray(volume, dtype="float64")},
                             index=pd.DatetimeIndex(times, name="time").as_unit("ns"))
        return frame

    def start(self, interval_s: float = 0.25) -> None:
        def run() -> None:
            while not self._stop.wait(interval_s):
                self.poll()
        self._thread = threading.Thread(target=run, name="mt5-ticks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
