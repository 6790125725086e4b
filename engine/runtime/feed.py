"""Market data for live bots. Until the broker adapters bring live feeds, the feed is the replay of
a real tick file at a chosen speed (FeedConfig).

A replay numbers its ticks 0, 1, 2, ... in file order. The number is the tick's sequence: the
bot's checkpoint and the durable venue's "already matched" guard both count in it, which is how
a restart skips what it has done. Pacing waits on an event rather than sleeping, so a stop or a
kill from another thread is acted on at once, not after the next tick's delay.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import ConfigError
from engine.market import Tick
from engine.runtime.config import FeedConfig

TICK_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".feather", ".txt", ".zip")


def resolve_tick_file(feed: FeedConfig, symbol: str) -> Path:
    """The tick file a bot on `symbol` replays: `path` itself, or, when `path` is a directory,
    the one file in it named <SYMBOL>_... (data/ticks/EURUSD_fxcm_20140505.csv.gz), so one
    runtime config can run bots on several symbols."""
    path = Path(feed.path)
    if not path.is_dir():
        if not path.exists():
            raise ConfigError("feed.path", f"no such tick file: {path}")
        return path
    matches = sorted(p for p in path.iterdir()
                     if p.name.upper().startswith(symbol.upper() + "_") and p.name.lower().endswith(TICK_SUFFIXES))
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise ConfigError("feed.path", f"{path} must hold exactly one tick file named {symbol}_* (found: {found})")
    return matches[0]


@dataclass(frozen=True, slots=True)
class TickTable:
    """A loaded tick file as plain columns (ns times, float prices): cheap to iterate and to slice."""

    source: str
    ts: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    last: np.ndarray
    size: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str) -> "TickTable":
        return cls(source, frame.index.as_unit("ns").asi8.copy(), *(frame[c].to_numpy(dtype=np.float64, copy=True)
                                                                     for c in ("bid", "ask", "last", "size")))

    @classmethod
    def load(cls, path: str | Path) -> "TickTable":
        from backtest.data import load_ticks  # the one loader: the same checks and errors as backtests

        return cls.from_frame(load_ticks(path), str(path))

    def __len__(self) -> int:
        return len(self.ts)

    def ticks(self, symbol: str, start: int = 0) -> Iterator[tuple[int, Tick]]:
        """(sequence, Tick) from `start` on."""
        columns = (self.ts[start:].tolist(), self.bid[start:].tolist(), self.ask[start:].tolist(),
                   self.last[start:].tolist(), np.nan_to_num(self.size[start:]).tolist())
        for seq, (ts, bid, ask, last, size) in enumerate(zip(*columns), start):
            yield seq, Tick(symbol, ts, bid, ask, last, size)


class ReplayFeed:
    """A MarketDataFeed over one tick table, paced at `speed` x real time (0: as fast as possible).

    `wake` is set by whoever wants the consumer's attention (a command arrived); a paced wait
    returns early then, and the consumer decides whether to go on.
    """

    def __init__(self, table: TickTable, symbol: str, speed: float = 0.0) -> None:
        self.table = table
        self.symbol = symbol
        self.speed = speed
        self.live_from = 0  # ticks before this sequence were processed by an earlier run: not paced
        self.wake = threading.Event()

    def __iter__(self) -> Iterator[tuple[int, Tick]]:
        previous: int | None = None
        for seq, tick in self.table.ticks(self.symbol):
            if self.speed > 0 and seq > self.live_from and previous is not None and tick.ts > previous:
                self.pause((tick.ts - previous) / 1e9 / self.speed)
            previous = tick.ts
            yield seq, tick

    def pause(self, seconds: float) -> None:
        """Wait up to `seconds`, or less if woken."""
        if self.wake.wait(seconds):
            return
