"""Market data for paper bots: the replay of a real data file at a chosen speed (FeedConfig).

A replay numbers its ticks 0, 1, 2, ... in file order. The number is the tick's sequence: the
bot's checkpoint and the durable venue's "already matched" guard both count in it, which is how
a restart skips what it has done. Pacing waits on an event rather than sleeping, so a stop or a
kill from another thread is acted on at once, not after the next tick's delay.

Data sources by name. The server's data directories (TICKBRIDGE_DATA_DIRS, separated by the OS
path separator; default the bundled data/ folder) hold its market data files. Each file is a
source named by its file name without the suffix (data/ticks/EURUSD_fxcm_20140505.csv.gz is
"EURUSD_fxcm_20140505"), the first directory winning a clash. A bot config sent through the API
names a source (`data: EURUSD_fxcm_20140505`), never a path: DataCatalog resolves the name inside
those directories only, and a file that is a symlink leading out of them is not a source. Only the
operator's own YAML (`tickbridge run FILE`) may name a file by its path.

Bar files replay too. A bar becomes five quotes, a microsecond apart from the bar's start: open,
open, the nearer extreme, the other one, close (up bars go open-low-high-close, down bars
open-high-low-close: the path a bar-based fill model assumes), bid = ask = the price, the bar's
volume on the close. The first open ends the previous bar (the strategy decides on it); a market
order it sends fills at the second, at the open, as a backtest fills it at the next bar's open,
never at an extreme the bar reached later. Bars the bot builds at any period at least as long as
the file's are the file's bars (or their aggregates), stamped with the bars' start times. Pacing
follows the bars' times: a daily file replayed at 60x real time takes 24 minutes per bar.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from engine.errors import ConfigError, DataError
from engine.market import Tick
from engine.settings import RuntimeSettings, load_group
from live.config import FeedConfig

TICK_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".feather", ".txt", ".zip")
SOURCE_SUFFIXES = (".csv.gz", ".csv.bz2", ".csv.xz", ".csv", ".tsv", ".txt", ".parquet", ".feather", ".json",
                   ".zip")
DATA_DIRS_VAR = "TICKBRIDGE_DATA_DIRS"
BUNDLED_DATA = Path(__file__).resolve().parents[1] / "data"
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NOT_A_NAME = ("must be the name of one of the server's data sources (the API lists them at /api/v1/data-sources), "
              "not a path")
UNKNOWN_NAME = "no data source of that name (the API lists them at /api/v1/data-sources)"
MAX_DEPTH = 4        # folders below a data directory that are searched
MAX_FILES = 10_000   # files looked at per data directory: a huge tree is not walked to the end
BAR_PATH = 5         # quotes per replayed bar (module docstring)
BAR_STEP_NS = 1_000  # their spacing, from the bar's start


def resolve_tick_file(feed: FeedConfig, symbol: str, data: str | None = None) -> Path:
    """The file a bot on `symbol` replays: the data source its config names (`data`); else the
    feed's `path` itself, or, when `path` is a directory, the one file in it named <SYMBOL>_...
    (data/ticks/EURUSD_fxcm_20140505.csv.gz), so one runtime config can run bots on several
    symbols; else the one source of the server's data directories for that symbol."""
    if data is not None:
        if is_source_name(data):
            return data_catalog().path(data)
        path = Path(data)  # only the operator's own YAML gets a path this far (BotConfig refuses it from the API)
        if not path.is_file():
            raise ConfigError("data", f"no such data file: {path}")
        return path
    path = Path(feed.path)
    if not path.is_dir():
        if not path.exists():
            raise ConfigError("feed.path", f"no such tick file: {path}")
        return path
    matches = sorted(p for p in path.iterdir()
                     if p.name.upper().startswith(symbol.upper() + "_") and p.name.lower().endswith(TICK_SUFFIXES))
    if not matches:
        found = data_catalog().for_symbol(symbol)
        if found is not None:
            return found
    if len(matches) != 1:
        listed = ", ".join(p.name for p in matches) or "none"
        raise ConfigError("feed.path", f"{path} must hold exactly one tick file named {symbol}_* (found: {listed}); "
                                       "or name one of the server's data sources in the bot's `data`")
    return matches[0]


def is_source_name(value: str) -> bool:
    """A data source's name: letters, digits, `_ . -`, no `..`: nothing a path could hide in."""
    return SOURCE_NAME.fullmatch(value) is not None and ".." not in value


def source_name(filename: str) -> str | None:
    """The source name of a data file (its name without the suffix), None when it is no source."""
    lower = filename.lower()
    suffix = next((s for s in SOURCE_SUFFIXES if lower.endswith(s)), None)
    if suffix is None or filename.startswith("."):
        return None
    name = filename[:-len(suffix)]
    return name if is_source_name(name) else None


def source_symbol(name: str) -> str:
    """The symbol a source is named for: the part before the first `_` (EURUSD_fxcm_20140505)."""
    return name.split("_", 1)[0]


def data_dirs_from_env(environ: Mapping[str, str] | None = None,
                       settings: RuntimeSettings | None = None) -> tuple[Path, ...]:
    """TICKBRIDGE_DATA_DIRS (engine.settings: separated by os.pathsep) of `settings`, else of
    `environ` (default os.environ); unset: the bundled data/ folder."""
    runtime = settings if settings is not None else load_group(RuntimeSettings, environ)
    return runtime.data_dirs or (BUNDLED_DATA,)


_configured_dirs: tuple[Path, ...] | None = None


def set_data_dirs(dirs: Iterable[Path | str] | None) -> None:
    """The data directories of this process (the API's settings install theirs, in the API's
    process and in the runtime's); None: back to TICKBRIDGE_DATA_DIRS."""
    global _configured_dirs
    _configured_dirs = None if dirs is None else tuple(Path(d) for d in dirs)


def data_catalog() -> "DataCatalog":
    """The catalog of this process's data directories."""
    return DataCatalog(_configured_dirs if _configured_dirs is not None else data_dirs_from_env())


@dataclass(frozen=True, slots=True)
class DataSource:
    """What a data source holds, as GET /data-sources lists it (never its path)."""

    name: str
    symbols: tuple[str, ...]
    kind: Literal["ticks", "bars"]
    rows: int
    first_ns: int
    last_ns: int
    period: str | None  # bars: the usual spacing as a pandas alias ("1min", "1h", "1D")

    @property
    def first(self) -> datetime:
        return _utc(self.first_ns)

    @property
    def last(self) -> datetime:
        return _utc(self.last_ns)


def _utc(ns: int) -> datetime:
    """UTC time of integer nanoseconds, to the microsecond (what a datetime holds)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).replace(microsecond=(ns // 1000) % 1_000_000)


_described: dict[tuple[str, int, int], DataSource | str] = {}  # (real path, size, mtime) -> source or error


class DataCatalog:
    """The named data sources of some directories. Scanning is cheap (names only) and done per
    call, so a file dropped into a data directory is a source at once; describing a source loads
    it, once per version of the file (size and modification time)."""

    def __init__(self, dirs: Iterable[Path | str]) -> None:
        self.dirs = tuple(Path(d) for d in dirs)

    def roots(self) -> list[Path]:
        roots = []
        for directory in self.dirs:
            try:
                root = directory.resolve(strict=True)
            except (OSError, RuntimeError):
                continue  # a data directory that is not there (yet) holds no source
            if root.is_dir():
                roots.append(root)
        return roots

    def files(self) -> dict[str, Path]:
        """Source name -> real path, in the directories' order; symlinks out of them left out."""
        roots = self.roots()
        found: dict[str, Path] = {}
        for root in roots:
            seen = 0
            for folder, subdirs, filenames in os.walk(root):  # does not follow symlinked folders
                depth = len(Path(folder).relative_to(root).parts)
                subdirs[:] = sorted(d for d in subdirs if not d.startswith((".", "__")) and depth < MAX_DEPTH)
                for filename in sorted(filenames):
                    seen += 1
                    name = source_name(filename)
                    if name is None or name in found:
                        continue
                    real = _inside(Path(folder) / filename, roots)
                    if real is not None:
                        found[name] = real
                if seen >= MAX_FILES:
                    break
        return found

    def path(self, name: str) -> Path:
        """The real path of a source, or ConfigError("data") that never repeats what was asked."""
        if not is_source_name(name):
            raise ConfigError("data", NOT_A_NAME)
        found = self.files().get(name)
        real = _inside(found, self.roots()) if found is not None else None  # checked again: it may have changed
        if real is None:
            raise ConfigError("data", UNKNOWN_NAME)
        return real

    def describe(self, name: str) -> DataSource:
        """The source's kind, rows and time range (ConfigError("data") if it cannot be loaded:
        the loader's reason, with the source's name in place of its path)."""
        path = self.path(name)
        try:
            stat = path.stat()
        except OSError:
            raise ConfigError("data", UNKNOWN_NAME) from None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _described:
            try:
                kind, frame = load_market_data(path)
                _described[key] = _summary(name, kind, frame)
            except DataError as exc:
                _described[key] = str(exc).replace(str(path), name)
        found = _described[key]
        if isinstance(found, str):
            raise ConfigError("data", f"cannot be replayed: {found}")
        return found

    def sources(self) -> list[DataSource]:
        """Every source that loads, by name (one that does not is left out of the list)."""
        out = []
        for name in sorted(self.files()):
            try:
                out.append(self.describe(name))
            except ConfigError:
                continue
        return out

    def for_symbol(self, symbol: str) -> Path | None:
        """The one source named for `symbol` (a tick source before bar ones), None if not one."""
        names = [n for n in sorted(self.files()) if source_symbol(n).upper() == symbol.upper()]
        described = []
        for name in names:
            try:
                described.append(self.describe(name))
            except ConfigError:
                continue
        for kind in ("ticks", "bars"):
            of_kind = [s for s in described if s.kind == kind]
            if len(of_kind) == 1:
                return self.path(of_kind[0].name)
            if of_kind:
                return None  # several: the config must name one
        return None


def _inside(path: Path, roots: list[Path]) -> Path | None:
    """The real path of `path` when it is a file inside one of `roots`, else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file() or not any(real.is_relative_to(root) for root in roots):
        return None
    return real


def _summary(name: str, kind: Literal["ticks", "bars"], frame: pd.DataFrame) -> DataSource:
    stamps = frame.index.as_unit("ns").asi8
    period = _alias(int(np.median(np.diff(stamps)))) if kind == "bars" and len(stamps) > 1 else None
    return DataSource(name, (source_symbol(name),), kind, len(frame), int(stamps[0]), int(stamps[-1]), period)


def _alias(step_ns: int) -> str:
    """A bar spacing as the pandas alias a bot's `bar` takes: 1D, 4h, 15min, 5s, 250ms."""
    for unit, ns in (("D", 86_400 * 10**9), ("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9), ("ms", 10**6)):
        if step_ns >= ns and step_ns % ns == 0:
            return f"{step_ns // ns}{unit}"
    return f"{step_ns}ns"


def load_market_data(path: str | Path) -> tuple[Literal["ticks", "bars"], pd.DataFrame]:
    """A data file as ticks or, when it is not a tick file, as bars (backtest.data's loaders: the
    same checks and errors as backtests)."""
    from backtest.data import load_bars, load_ticks

    try:
        return "ticks", load_ticks(path)
    except DataError as tick_error:
        if "not a tick file" not in str(tick_error):  # a tick file with a problem: that problem
            raise
    return "bars", load_bars(path)


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
    def from_bars(cls, bars: pd.DataFrame, source: str) -> "TickTable":
        """Five quotes per bar (module docstring): open, open, nearer extreme, other extreme, close."""
        start = bars.index.as_unit("ns").asi8
        o, hi, lo, c, v = (bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
        up = c >= o
        path = np.column_stack([o, o, np.where(up, lo, hi), np.where(up, hi, lo), c]).ravel()
        ts = (start[:, None] + np.arange(BAR_PATH, dtype=np.int64) * BAR_STEP_NS).ravel()
        size = np.zeros((len(start), BAR_PATH))
        size[:, -1] = v
        return cls(source, ts, path, path.copy(), path.copy(), size.ravel())

    @classmethod
    def load(cls, path: str | Path) -> "TickTable":
        """A tick file, or a bar file replayed as quotes (module docstring)."""
        kind, frame = load_market_data(path)
        return cls.from_frame(frame, str(path)) if kind == "ticks" else cls.from_bars(frame, str(path))

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
