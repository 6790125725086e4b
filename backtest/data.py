"""Loading market data, with errors a user can act on.

Bars come back as float64 columns BAR_COLUMNS on a UTC DatetimeIndex named "time", strictly
increasing; ticks as TICK_COLUMNS, non-decreasing (ticks may share a timestamp). Every problem
with a file (missing, unreadable, a missing column, unsorted or duplicate times, NaN or
non-positive prices, high below low) is a DataError naming the file and the row, never a pandas
traceback: a backtest on silently broken data is worse than no backtest.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import DataError

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]
TICK_COLUMNS = ["bid", "ask", "last", "size"]
PRICE_COLUMNS = ["open", "high", "low", "close"]

_BAR_ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "price": "close",
                "vol": "volume", "v": "volume"}
_TICK_ALIASES = {"price": "last", "lastprice": "last", "amount": "size", "quantity": "size",
                 "qty": "size", "volume": "size", "bidprice": "bid", "askprice": "ask"}
_TIME_NAMES = ("time", "date", "datetime", "timestamp", "datetimeutc", "gmttime", "opentime", "ts",
               "timestamputc", "tsevent")


def _norm(name: object) -> str:
    return re.sub(r"[\s_\-.]", "", str(name)).lower()


def _read(path: Path) -> pd.DataFrame:
    """Read any supported file into a raw frame; unreadable input is a DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet"):
            return pd.read_parquet(path)
        if suffixes.endswith(".feather"):
            return pd.read_feather(path)
        frame = pd.read_csv(path, sep=None, engine="python") if path.stat().st_size < 2_000_000 and \
            not suffixes.endswith((".gz", ".zip", ".bz2", ".xz")) else pd.read_csv(path)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except Exception as exc:  # pandas/pyarrow raise many types for a bad file; all mean "cannot read"
        raise DataError(f"{path}: cannot be read as {suffixes or 'CSV'}: {exc}") from None
    return frame


def _time_index(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Find the time column (or index), parse it to UTC and make it the index named "time"."""
    if isinstance(frame.index, pd.DatetimeIndex):
        times = frame.index
        body = frame
    else:
        names = {_norm(c): c for c in frame.columns}
        column = next((names[n] for n in _TIME_NAMES if n in names), None)
        if column is None:
            first = frame.columns[0]
            if str(first).startswith("Unnamed") or str(first) == "":
                column = first
        if column is None:
            raise DataError(f"{source}: no time column (looked for {', '.join(_TIME_NAMES)} "
                            f"or an unnamed first column; found: {', '.join(map(str, frame.columns))})")
        times = _parse_times(frame[column], source, str(column))
        body = frame.drop(columns=[column])
        # an unnamed integer index column written by pandas (0, 1, 2, ...) carries no information
        body = body.drop(columns=[c for c in body.columns if str(c).startswith("Unnamed")])
    if times.tz is None:
        times = times.tz_localize("UTC")
    else:
        times = times.tz_convert("UTC")
    body = body.copy()
    # pandas 3 infers a resolution from the text (ms, us...): the engine counts time in ns
    body.index = pd.DatetimeIndex(times, name="time").as_unit("ns")
    return body


def _parse_times(values: pd.Series, source: str, column: str) -> pd.DatetimeIndex:
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        if numbers.isna().any():
            raise DataError(f"{source}: empty timestamp in column {column!r} at row {int(numbers.isna().argmax())}")
        magnitude = float(np.nanmax(np.abs(numbers))) if len(numbers) else 0.0
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
        return pd.DatetimeIndex(pd.to_datetime(values.astype("int64"), unit=unit, utc=True))
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="mixed"))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: cannot parse timestamps in column {column!r}: {exc}") from None


def _rename(frame: pd.DataFrame, aliases: dict[str, str], wanted: list[str]) -> pd.DataFrame:
    mapping: dict[object, str] = {}
    for column in frame.columns:
        key = _norm(column)
        if key in ("adjclose", "adjustedclose"):
            continue
        target = key if key in wanted else aliases.get(key)
        if target is not None and target not in mapping.values():
            mapping[column] = target
    return frame[list(mapping)].rename(columns=mapping)


def _check_times(index: pd.DatetimeIndex, source: str, strict: bool) -> None:
    if index.hasnans:
        raise DataError(f"{source}: empty timestamp at row {int(np.argmax(index.isna()))}")
    values = index.asi8
    steps = np.diff(values)
    backwards = np.flatnonzero(steps < 0)
    if len(backwards):
        row = int(backwards[0]) + 1
        raise DataError(f"{source}: timestamps not sorted: row {row} ({index[row]}) comes before "
                        f"row {row - 1} ({index[row - 1]})")
    if strict:
        same = np.flatnonzero(steps == 0)
        if len(same):
            row = int(same[0]) + 1
            raise DataError(f"{source}: duplicate timestamp {index[row]} at rows {row - 1} and {row}")


def _check_prices(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    for column in columns:
        values = frame[column].to_numpy()
        bad = np.isnan(values)
        if bad.any():
            raise DataError(f"{source}: {int(bad.sum())} NaN prices in {column!r}, first at {frame.index[int(bad.argmax())]}")
        nonpositive = values <= 0
        if nonpositive.any():
            row = int(nonpositive.argmax())
            raise DataError(f"{source}: non-positive price {values[row]} in {column!r} at {frame.index[row]} (row {row})")


def _numeric(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    out = {}
    for column in frame.columns:
        converted = pd.to_numeric(frame[column], errors="coerce")
        garbage = converted.isna() & frame[column].notna()
        if garbage.any():
            row = int(np.argmax(garbage.to_numpy()))
            raise DataError(f"{source}: not a number {frame[column].iloc[row]!r} in {column!r} at row {row}")
        out[column] = converted.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def validate_bars(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The checks load_bars applies, on any frame with BAR_COLUMNS (volume optional)."""
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column {missing[0]!r} (found: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{source}: no rows")
    if "volume" not in frame.columns:
        frame = frame.assign(volume=0.0)
    frame = _numeric(frame[BAR_COLUMNS], source)
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"{source}: the index is not made of timestamps")
    _check_times(frame.index, source, strict=True)
    _check_prices(frame, PRICE_COLUMNS, source)
    low_above_high = (frame["low"] > frame["high"]).to_numpy()
    if low_above_high.any():
        row = int(low_above_high.argmax())
        raise DataError(f"{source}: high below low at {frame.index[row]} (row {row})")
    volume = frame["volume"].to_numpy()
    if (volume < 0).any():
        row = int((volume < 0).argmax())
        raise DataError(f"{source}: negative volume at {frame.index[row]} (row {row})")
    frame["volume"] = np.nan_to_num(volume, nan=0.0)
    return frame


def load_bars(path: str | Path) -> pd.DataFrame:
    """OHLCV bars from CSV (.csv/.txt, optionally .gz/.zip), parquet or feather."""
    path = Path(path)
    raw = _read(path)
    frame = _time_index(raw, str(path))
    return validate_bars(_rename(frame, _BAR_ALIASES, BAR_COLUMNS), str(path))


def load_ticks(path: str | Path) -> pd.DataFrame:
    """Quote ticks (bid/ask) and/or trade ticks (last/size) from a file."""
    path = Path(path)
    source = str(path)
    frame = _rename(_time_index(_read(path), source), _TICK_ALIASES, TICK_COLUMNS)
    has_quotes = "bid" in frame.columns and "ask" in frame.columns
    has_trades = "last" in frame.columns
    if not has_quotes and not has_trades:
        raise DataError(f"{source}: not a tick file: needs bid and ask, or a price/last column "
                        f"(found: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{source}: no rows")
    frame = _numeric(frame, source)
    for column in TICK_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    frame = frame[TICK_COLUMNS]
    _check_times(frame.index, source, strict=False)
    _check_prices(frame, (["bid", "ask"] if has_quotes else []) + (["last"] if has_trades else []), source)
    return frame


def ticks_to_bars(ticks: pd.DataFrame, rule: str) -> pd.DataFrame:
    """OHLCV bars of size `rule` (pandas offset alias) from ticks; empty intervals are dropped.

    The price of a tick is its last trade price where it has one, else its bid/ask mid; volume
    is the sum of sizes. A bar is stamped with its start.
    """
    try:
        pd.tseries.frequencies.to_offset(rule)
    except ValueError:
        raise DataError(f"bar size {rule!r} is not a pandas offset alias (try 1min, 5min, 1h)") from None
    price = ticks["last"].where(ticks["last"].notna(), (ticks["bid"] + ticks["ask"]) / 2.0)
    grouped = price.resample(rule, label="left", closed="left")
    bars = pd.DataFrame({"open": grouped.first(), "high": grouped.max(), "low": grouped.min(),
                         "close": grouped.last(),
                         "volume": ticks["size"].fillna(0.0).resample(rule, label="left", closed="left").sum()})
    bars = bars.dropna(subset=["open"])
    bars.index = bars.index.as_unit("ns").rename("time")
    return bars.astype("float64")


def bootstrap_bars(real: pd.DataFrame, n: int, seed: int, decimals: int, freq: str, start: str) -> pd.DataFrame:
    """`n` synthetic bars resampled from `real` (benchmarks and stress tests at any length).

    Each bar copies a random real bar's open/high/low/close relative to the previous close, with
    the mean log drift removed so that long series stay near real price levels; prices are
    rounded to `decimals` (the instrument's grid) and the bars are spaced `freq` from `start`."""
    prev_close = real["close"].shift(1).to_numpy()[1:]
    rel = {c: np.log(real[c].to_numpy()[1:] / prev_close) for c in ("open", "high", "low", "close")}
    drift = rel["close"].mean()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(prev_close), size=n)
    log_close = np.log(real["close"].iloc[0]) + np.cumsum(rel["close"][pick] - drift)
    base = np.concatenate([[real["close"].iloc[0]], np.exp(log_close[:-1])])
    frame = pd.DataFrame({c: np.round(base * np.exp(rel[c][pick] - drift), decimals)
                          for c in ("open", "high", "low", "close")})
    frame["high"] = frame[["open", "high", "low", "close"]].max(axis=1)
    frame["low"] = frame[["open", "high", "low", "close"]].min(axis=1)
    frame["volume"] = real["volume"].to_numpy()[1:][pick].astype(np.float64)
    frame.index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return frame
