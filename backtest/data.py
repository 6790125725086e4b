"""Loading market data, with errors a user can act on.

Bars come back as float64 columns BAR_COLUMNS on a UTC DatetimeIndex named "time", strictly
increasing; ticks as TICK_COLUMNS, non-decreasing (ticks may share a timestamp). Every problem
with a file (missing, unreadable, a missing column, unsorted or duplicate times, times beyond
what int64 nanoseconds can count, NaN, infinite or non-positive prices, high below low, an open or
close outside [low, high]) is a DataError naming the file, the column and the row, never a pandas
traceback: a backtest on silently broken data is worse than no backtest. A bar that moves more
than 5x is kept but named in a note (real markets jump; a misplaced decimal point also does).

Layouts. The first 64 KB of a file are sniffed before anything is parsed, so a file that is not
market data (binary, JSON that is not candles, one endless line) is refused after bounded work,
not after minutes of a parser guessing at it:
- CSV/TSV with a header. The separator is sniffed (tab ; | ,) or given (`sep`); decimal commas
  need `decimal=","`. The time is one column (ISO text and most date spellings, epoch s/ms/us/ns,
  yyyymmdd) or split into a date and a time column (MetaTrader's `<DATE> <TIME>`, backtrader's and
  HistData's minute files). A column of times of day with no date is refused: pandas would give
  it today's date, silently.
- MetaTrader 5 bar exports: `<DATE>\\t<TIME>\\t<OPEN>\\t<HIGH>\\t<LOW>\\t<CLOSE>\\t<TICKVOL>\\t<VOL>\\t<SPREAD>`,
  dates 2024.01.02, UTF-8 or UTF-16; the volume is <VOL>, or <TICKVOL> where <VOL> is all zero
  (forex brokers report no real volume).
- No header: `columns` names the fields in order; NinjaTrader's and HistData's
  `yyyymmdd HHMMSS;O;H;L;C;V` is recognised by itself. Without either the file is refused rather
  than its first bar taken for a header.
- freqtrade JSON candles: a list of [ms, open, high, low, close, volume].
- LEAN zips (one header-less CSV each): daily and hour bars `yyyyMMdd HH:mm,...`; minute and second
  bars `ms since midnight,...` with the date from the file name; equity prices in deci-cents
  (x10,000) and equity intraday times in New York time; quote bars (bid and ask) become mids; a
  directory of LEAN day files loads as one series.
- parquet and feather.
Times without a zone are read as UTC (an MT5 export is in its server's time, a NinjaTrader export
in its PC's: taken as written). A newest-first file is turned around and an `Adj Close` column is
used with `adjusted=True` (open, high, low and close scaled by Adj Close / Close) or ignored:
either way the caller gets a note (the `notes` list), because a silent choice is what went wrong.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import ConfigError, DataError

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]
TICK_COLUMNS = ["bid", "ask", "last", "size"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
FORMATS = ("auto", "csv", "mt5", "ninjatrader", "lean", "freqtrade")

_BAR_ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "price": "close", "last": "close",
                "vol": "volume", "v": "volume"}
_TICK_ALIASES = {"price": "last", "lastprice": "last", "amount": "size", "quantity": "size",
                 "qty": "size", "volume": "size", "bidprice": "bid", "askprice": "ask"}
_TIME_NAMES = ("time", "date", "datetime", "timestamp", "datetimeutc", "gmttime", "opentime", "ts",
               "timestamputc", "tsevent")
_ADJ_CLOSE = ("adjclose", "adjustedclose")
_TICK_VOLUME = ("tickvol", "tickvolume")
_SEPARATORS = ("\t", ";", "|", ",")  # sniffing prefers the ones that cannot be decimal commas
_HEAD = 1 << 16                      # bytes sniffed before any parse
_MAX_LINE = 10_000                   # longer first line: not a CSV of market data
_SAMPLE = 200                        # values a timestamp format is tried on before the whole column


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to read a file whose layout should not, or cannot, be guessed. The defaults sniff.

    `format`: auto | csv | mt5 | ninjatrader | lean | freqtrade (a named format is checked, not
    assumed); `columns`: names of the fields of a file without a header (names other than the
    time, price and volume names are read and ignored); `sep`: the field separator (`tab` or
    `\\t` for a tab); `decimal`: "." or ","; `adjusted`: scale OHLC by Adj Close / Close.
    A bad value is a ConfigError naming its field, before the file is opened.
    """

    format: str = "auto"
    columns: tuple[str, ...] | None = None
    sep: str | None = None
    decimal: str = "."
    adjusted: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError("format", f"unknown format {self.format!r}; known: {', '.join(FORMATS)}")
        if self.sep is not None:
            sep = {"tab": "\t", "\\t": "\t"}.get(self.sep.lower(), self.sep)
            if len(sep) != 1 or sep.isalnum() or sep in ".\"'\n\r":
                raise ConfigError("sep", f"the separator is one character such as , ; | or tab, got {self.sep!r}")
            object.__setattr__(self, "sep", sep)
        if self.decimal not in (".", ","):
            raise ConfigError("decimal", f"the decimal mark is . or , (got {self.decimal!r})")
        if self.sep is not None and self.sep == self.decimal:
            raise ConfigError("decimal", f"the decimal mark {self.decimal!r} is also the separator")
        if self.columns is not None:
            names = tuple(str(c).strip() for c in self.columns)
            if not names or any(not n for n in names):
                raise ConfigError("columns", f"empty column name in {','.join(self.columns)!r}")
            seen = [_norm(n) for n in names]
            twice = sorted({n for n in seen if seen.count(n) > 1})
            if twice:
                raise ConfigError("columns", f"{', '.join(twice)} named twice")
            object.__setattr__(self, "columns", names)

    @classmethod
    def from_text(cls, format: str = "auto", columns: str | None = None, sep: str | None = None,  # noqa: A002
                  decimal: str = ".", adjusted: bool = False) -> "LoadOptions":
        """From command-line text: `columns` as "date,open,high,low,close,volume"."""
        names = None if columns is None else tuple(c for c in columns.split(","))
        return cls(format=format, columns=names, sep=sep, decimal=decimal, adjusted=adjusted)


DEFAULT_OPTIONS = LoadOptions()


def _norm(name: object) -> str:
    return re.sub(r"[\s_\-.<>]", "", str(name)).lower()


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


_COLUMN_NAME = re.compile(r"^((?:[^\W\d]|<)[\w <>()/%.#-]{0,39}|Unnamed: \d+)$")  # pandas names a blank "Unnamed: 3"


def _listing(names: object) -> str:
    """Column names for an error message, cut short (a misread file can have thousands). If any
    name does not look like a column name, none is shown, only their number: the "header" of a
    file that is not market data (`--data /etc/shadow`) is its first line, and no error quotes a
    file's contents."""
    names = [str(n) for n in names]  # type: ignore[union-attr]
    if not all(_COLUMN_NAME.match(n) for n in names):
        return f"{len(names)} column(s) whose names do not look like column names; not shown"
    text = ", ".join(n if len(n) <= 40 else n[:37] + "..." for n in names[:12])
    return text + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


# -- reading: sniff first, then parse ---------------------------------------------------------------

def _compression(suffixes: str) -> str | None:
    return next((c for c in ("gz", "zip", "bz2", "xz") if suffixes.endswith("." + c)), None)


def _head(path: Path, compression: str | None, source: str) -> tuple[bytes, str | None]:
    """The first bytes of the file's content (decompressed) and, in a zip, its member's name."""
    try:
        if compression == "zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise DataError(f"{source}: a zip of data holds one file; this one holds {len(members)}")
                with archive.open(members[0]) as handle:
                    return handle.read(_HEAD), members[0]
        opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "", open)
        with opener(path, "rb") as handle:  # type: ignore[operator]
            return handle.read(_HEAD), None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(f"{source}: cannot be read as {compression or 'text'}: {exc}") from None


def _encoding(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig" if head.startswith(b"\xef\xbb\xbf") else "utf-8"


def _head_lines(head: bytes, encoding: str, source: str) -> list[str]:
    """The sniffed text as whole lines; refuses what is not line-oriented text."""
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if "\x00" in text:
        raise DataError(f"{source}: binary content, not CSV or JSON (parquet and feather files need "
                        f"their .parquet/.feather suffix)")
    lines = text.splitlines()
    if len(head) == _HEAD and lines:
        lines = lines[:-1]  # the last line may be cut
    if not lines or len(lines[0]) > _MAX_LINE:
        raise DataError(f"{source}: the first line is longer than {_MAX_LINE:,} characters: not a CSV of "
                        f"bars or ticks")
    return [line for line in lines if line.strip()]


def _read(path: Path, options: LoadOptions, notes: list[str]) -> pd.DataFrame:
    """Any supported file as a raw frame (a DatetimeIndex, or a time column); else a DataError."""
    source = str(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        return _read_lean_days(path, options, notes)
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".feather")):
        try:
            return pd.read_parquet(path) if suffixes.endswith(".parquet") else pd.read_feather(path)
        except Exception as exc:  # pyarrow raises many types for a bad file; all mean "cannot read"
            raise DataError(f"{path}: cannot be read as {suffixes}: {exc}") from None
    compression = _compression(suffixes)
    head, member = _head(path, compression, source)
    if not head.strip():
        raise DataError(f"{path}: the file is empty")
    encoding = _encoding(head)
    first = head.decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")[:1]
    if first in ("[", "{"):
        if options.format not in ("auto", "freqtrade"):
            raise DataError(f"{path}: JSON, not the {options.format} layout asked for")
        return _read_json(path, compression, source)
    if options.format == "freqtrade":
        raise DataError(f"{path}: not freqtrade JSON candles (a list of [ms, open, high, low, close, volume])")
    lines = _head_lines(head, encoding, source)
    if _is_lean(path, member, lines, options):
        return _read_lean(path, member or path.name, options, notes)
    if options.format == "lean":
        raise DataError(f"{path}: not a LEAN file (a zip of one header-less CSV whose rows start with "
                        f"'yyyyMMdd HH:mm' or milliseconds since midnight)")
    if options.columns is None and (options.format == "ninjatrader"
                                    or (options.format == "auto" and _NINJA.match(lines[0]))):
        return _read_ninjatrader(path, lines, encoding, options, source)
    return _read_csv(path, lines, encoding, options, source)


def _parse_csv(path: Path, source: str, **kwargs: object) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty") from None
    except Exception as exc:  # pandas raises many types for a bad file; all mean "cannot read"
        raise DataError(f"{source}: cannot be read as CSV: {str(exc)[:300]}") from None


def _fields(line: str, sep: str) -> list[str]:
    return [f.strip().strip("\"'") for f in line.split(sep)]


_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_DATELIKE = re.compile(r"^[\d\s:./\-TZ+]+$")


def _is_value(field: str) -> bool:
    """A number or a date/time: what a data row holds and a header does not."""
    return field == "" or bool(_NUMBER.match(field)) or bool(_DATELIKE.match(field))


def _sniff_sep(lines: list[str], decimal: str) -> str:
    """The separator whose count is the same on every sampled data line (header may differ)."""
    sample = lines[:20]
    rows = sample[1:] or sample
    for sep in _SEPARATORS:
        if sep == decimal:
            continue
        counts = {line.count(sep) for line in rows}
        if len(counts) == 1 and counts.pop() > 0:
            return sep
    return max((s for s in _SEPARATORS if s != decimal), key=lambda s: sample[0].count(s))


def _read_csv(path: Path, lines: list[str], encoding: str, options: LoadOptions, source: str) -> pd.DataFrame:
    sep = options.sep or _sniff_sep(lines, options.decimal)
    header = not all(_is_value(f) for f in _fields(lines[0], sep))
    if options.format == "mt5" and not lines[0].lstrip().upper().startswith("<DATE>"):
        raise DataError(f"{source}: not a MetaTrader 5 export (its first line is <DATE>\\t<TIME>\\t<OPEN>...; "
                        f"this file's is {lines[0][:80]!r})")
    names = None
    if options.columns is not None:
        data_line = lines[1] if header and len(lines) > 1 else lines[0]
        fields = len(data_line.split(sep))
        if len(options.columns) != fields:
            raise ConfigError("columns", f"{len(options.columns)} names for {fields} fields "
                                         f"(a row of {path.name}: {data_line[:80]!r})")
        names = list(options.columns)
    elif not header:
        raise DataError(f"{source}: no header line (the first line is {lines[0][:80]!r}); name the fields "
                        f"with --columns, e.g. --columns date,open,high,low,close,volume")
    fast = _arrow_csv(path, lines[0], sep, encoding, options) if header and names is None else None
    if fast is not None:
        return fast
    frame = _parse_csv(path, source, sep=sep, decimal=options.decimal, header=0 if header else None,
                       names=names, encoding=encoding, skipinitialspace=True)
    if not isinstance(frame.index, pd.RangeIndex):
        # the rows have more fields than the header names (backtrader's minute files: a header of
        # Date,Open,... over rows of date,time,open,...): pandas made the extra leading field the
        # index. Keep it as an unnamed first column; the time logic pairs it with its neighbour.
        extra = frame.index.nlevels
        frame = frame.reset_index()
        frame.columns = [f"Unnamed: {i}" for i in range(extra)] + list(frame.columns[extra:])
    return frame


def _arrow_csv(path: Path, header: str, sep: str, encoding: str, options: LoadOptions) -> pd.DataFrame | None:
    """The plain case, a comma-separated UTF-8 file of one timestamp column and numbers (what
    exchanges, pandas and this project's benchmarks write), read by pyarrow's multithreaded parser,
    which also parses the timestamps: a million bars in a third of the time of read_csv then
    to_datetime. Anything else (None) goes the general way, so messages and layouts are unchanged;
    the numbers are identical (both parsers round decimals correctly)."""
    names = [f.strip() for f in header.split(sep)]
    if (sep != "," or options.decimal != "." or encoding != "utf-8" or path.suffix.lower() not in (".csv", ".txt")
            or any(not n or n != raw or n.startswith(("\"", "'")) for n, raw in zip(names, header.split(sep)))
            or len(set(names)) != len(names)):
        return None
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    except Exception:  # pyarrow's refusal (a ragged row, an odd quote): the general reader says why
        return None
    times = [f for f in table.schema if pa.types.is_timestamp(f.type)]
    numbers = [f for f in table.schema if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)]
    if len(times) != 1 or len(times) + len(numbers) != len(table.schema) or table.num_rows == 0 \
            or table.schema.names != names:
        return None
    column = times[0].name
    named_times = [n for n in names if _norm(n) in _TIME_NAMES or _norm(n) == "day"]
    if named_times != [column]:  # the general reader would look for the time elsewhere, or pair two
        return None
    frame = table.to_pandas()
    stamps = frame[column]
    if stamps.isna().any():  # an empty timestamp: the general reader names the row
        return None
    return frame.set_index(pd.DatetimeIndex(stamps, name=column)).drop(columns=[column])


_NINJA = re.compile(r"^\d{8} \d{6};")


def _read_ninjatrader(path: Path, lines: list[str], encoding: str, options: LoadOptions, source: str) -> pd.DataFrame:
    """NinjaTrader (and HistData) `yyyymmdd HHMMSS;open;high;low;close;volume`, no header."""
    sep = options.sep or ";"
    fields = lines[0].split(sep)
    if not _NINJA.match(lines[0].replace(sep, ";", 1)) or len(fields) != 6:
        raise DataError(f"{source}: not a NinjaTrader export (rows are yyyymmdd HHMMSS;open;high;low;close;volume; "
                        f"this file's first is {lines[0][:80]!r})")
    frame = _parse_csv(path, source, sep=sep, decimal=options.decimal, header=None,
                       names=["time", "open", "high", "low", "close", "volume"], dtype={0: str}, encoding=encoding)
    frame["time"] = _strptime(frame["time"], "%Y%m%d %H%M%S", source, "time")
    return frame.set_index("time")


def _read_json(path: Path, compression: str | None, source: str) -> pd.DataFrame:
    """freqtrade candles: [[ms, open, high, low, close, volume], ...]. json parses in one bounded
    pass; anything else JSON is refused saying what was expected."""
    expected = "a list of [ms, open, high, low, close, volume] rows"
    try:
        if compression == "zip":
            with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as handle:
                data = json.load(handle)
        else:
            opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "", open)
            with opener(path, "rb") as handle:  # type: ignore[operator]
                data = json.load(handle)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise DataError(f"{source}: cannot be read as JSON: {str(exc)[:200]}") from None
    if not isinstance(data, list) or not data:
        raise DataError(f"{source}: JSON but not freqtrade candles ({expected}; found {type(data).__name__})")
    for i, row in enumerate(data):
        if (not isinstance(row, list) or len(row) < 6
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row[:6])):
            raise DataError(f"{source}: JSON but not freqtrade candles ({expected}); row {i} is {str(row)[:80]}")
    values = np.array([row[:6] for row in data], dtype=np.float64)
    frame = pd.DataFrame(values[:, 1:], columns=BAR_COLUMNS)
    frame.insert(0, "time", pd.to_datetime(np.rint(values[:, 0]).astype(np.int64), unit="ms", utc=True))
    return frame.set_index("time")


# -- LEAN ---------------------------------------------------------------------------------------------

_LEAN_DAY = re.compile(r"^(\d{8})_")  # minute, second and tick files: YYYYMMDD_..., one per day
_LEAN_STAMP = re.compile(r"^\d{8} \d{2}:\d{2}$")
_LEAN_DAY_FILE = re.compile(r"^\d{8}_(trade|quote)\.zip$", re.IGNORECASE)


def _is_lean(path: Path, member: str | None, lines: list[str], options: LoadOptions) -> bool:
    if member is None or options.format not in ("auto", "lean") or options.columns is not None:
        return False
    first = lines[0].split(",")[0]
    if _LEAN_STAMP.match(first):
        return True
    return first.isdigit() and bool(_LEAN_DAY.match(Path(member).name) or _LEAN_DAY.match(path.name))


def _read_lean(path: Path, member: str, options: LoadOptions, notes: list[str]) -> pd.DataFrame:
    """One LEAN zip as bars (or ticks): prices from deci-cents for equity, times to UTC."""
    source = str(path)
    raw = _parse_csv(path, source, header=None, compression="zip", dtype={0: str})
    parts = {p.lower() for p in path.parts}
    equity = "equity" in parts
    day = _LEAN_DAY.match(Path(member).name) or _LEAN_DAY.match(path.name)
    tick = "tick" in re.split(r"[_.]", Path(member).name.lower())
    width = raw.shape[1]
    if tick and width == 3:
        names = ["time", "bid", "ask"]
    elif tick and width == 6:
        names = ["time", "last", "size", "exchange", "condition", "suspicious"]
    elif not tick and width in (6, 11):
        names = ["time", *BAR_COLUMNS] if width == 6 else \
            ["time", "bo", "bh", "bl", "bc", "bsize", "ao", "ah", "al", "ac", "asize"]
    else:
        raise DataError(f"{source}: a LEAN file with {width} fields is not one this loader reads (bars have 6, "
                        f"quote bars 11, forex ticks 3, equity trade ticks 6)")
    raw.columns = names
    stamps = raw["time"].astype(str).str.strip()
    if _LEAN_STAMP.match(stamps.iloc[0]):
        times = _strptime(stamps, "%Y%m%d %H:%M", source, "time")
        intraday = bool((times != times.normalize()).any())
    else:
        if day is None:
            raise DataError(f"{source}: LEAN minute, second and tick files take their date from the file name "
                            f"(YYYYMMDD_trade.zip); this one has none")
        try:
            ms = pd.to_numeric(stamps, errors="raise").astype(np.int64).to_numpy()
        except (ValueError, TypeError):
            raise DataError(f"{source}: LEAN times are milliseconds since midnight; found {stamps.iloc[0]!r}") from None
        times = pd.DatetimeIndex(pd.Timestamp(day.group(1)) + pd.to_timedelta(ms, unit="ms"))
        intraday = True
    if equity and intraday:  # LEAN writes US equity times in New York time
        times = times.tz_localize("America/New_York", ambiguous="NaT", nonexistent="NaT").tz_convert("UTC")
    frame = raw.drop(columns=["time"])
    if width == 11:
        frame = _mid_bars(frame)
        _note(notes, "LEAN quote bars: prices are the bid/ask mids, volume 0")
    if not equity and not any(k in parts for k in ("forex", "crypto", "cfd")):
        _note(notes, f"{path.name}: LEAN prices taken as written (only equity files, under an 'equity' "
                     f"directory, are in deci-cents)")
    if equity:  # deci-cents
        for column in [c for c in frame.columns if c in ("open", "high", "low", "close", "bid", "ask", "last")]:
            frame[column] = pd.to_numeric(frame[column], errors="coerce") / 10_000.0
    frame.index = pd.DatetimeIndex(times, name="time")
    return frame


def _mid_bars(quotes: pd.DataFrame) -> pd.DataFrame:
    """Bid/ask quote bars to mid bars; a side LEAN left at 0 (not quoted) gives way to the other."""
    out = {}
    for name, b, a in (("open", "bo", "ao"), ("high", "bh", "ah"), ("low", "bl", "al"), ("close", "bc", "ac")):
        bid = pd.to_numeric(quotes[b], errors="coerce").where(lambda x: x > 0)
        ask = pd.to_numeric(quotes[a], errors="coerce").where(lambda x: x > 0)
        out[name] = ((bid + ask) / 2.0).fillna(bid).fillna(ask)
    out["volume"] = pd.Series(0.0, index=quotes.index)
    return pd.DataFrame(out)


def _read_lean_days(path: Path, options: LoadOptions, notes: list[str]) -> pd.DataFrame:
    """A directory of LEAN day files (YYYYMMDD_trade.zip) as one series: trade bars if there are
    any, else quote bars."""
    days = sorted(p for p in path.iterdir() if _LEAN_DAY_FILE.match(p.name))
    if not days or options.format not in ("auto", "lean"):
        raise DataError(f"{path}: is a directory, not a data file (a directory loads only as LEAN day "
                        f"files, YYYYMMDD_trade.zip)")
    trades = [p for p in days if p.name.lower().endswith("_trade.zip")]
    chosen = trades or days
    frames = []
    for day in chosen:
        with zipfile.ZipFile(day) as archive:
            member = next((m for m in archive.namelist() if not m.endswith("/")), day.name)
        frames.append(_read_lean(day, member, options, notes))
    _note(notes, f"{path.name}: {len(chosen)} LEAN day files ({chosen[0].name} .. {chosen[-1].name})")
    return pd.concat(frames)


# -- times --------------------------------------------------------------------------------------------

_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_DATE_ONLY = re.compile(r"^(\d{4}[-./]?\d{2}[-./]?\d{2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_EXTRA_FORMATS = ("%Y%m%d %H%M%S%f", "%Y%m%d %H%M%S", "%Y%m%d %H%M", "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M")


def _sample(values: pd.Series) -> list[str]:
    return [str(v).strip() for v in values.dropna().iloc[:_SAMPLE]]


def _is_time_of_day(values: pd.Series) -> bool:
    sample = _sample(values)
    return bool(sample) and all(_TIME_OF_DAY.match(v) for v in sample)


def _is_date_only(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values):
        return bool(len(values)) and bool(values.between(19_000_101, 21_001_231).all())
    sample = _sample(values)
    return bool(sample) and all(_DATE_ONLY.match(v) for v in sample)


def _clock_text(values: pd.Series) -> pd.Series:
    """Times of day as text; a numeric HHMMSS (or HHMM) column is zero-padded."""
    if pd.api.types.is_numeric_dtype(values):
        width = 6 if float(values.max()) >= 2400 else 4
        return values.astype("int64").astype(str).str.zfill(width)
    return values.astype(str).str.strip()


def _time_index(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Find the time column(s) (or index), parse to UTC and make it the index named "time"."""
    if isinstance(frame.index, pd.DatetimeIndex):
        times = frame.index
        time_name = str(frame.index.name or "time")
        body = frame
    else:
        names = {_norm(c): c for c in frame.columns}
        date_col = next((names[n] for n in ("date", "day") if n in names), None)
        clock_col = names.get("time")
        column = next((names[n] for n in _TIME_NAMES if n in names), None)
        if column is None:
            first = frame.columns[0]
            if str(first).startswith("Unnamed") or str(first) == "":
                column = first
        if column is None:
            raise DataError(f"{source}: no time column (looked for {', '.join(_TIME_NAMES)} "
                            f"or an unnamed first column; found: {_listing(frame.columns)})")
        pair = None
        if date_col is not None and clock_col is not None and _is_time_of_day(frame[clock_col]) \
                and _is_date_only(frame[date_col]):
            pair = (date_col, clock_col)
        elif _is_time_of_day(frame[column]):
            first = frame.columns[0]
            partner = next((c for c in (date_col, first) if c is not None and c != column
                            and _is_date_only(frame[c])), None)
            if partner is None:
                example = _sample(frame[column])[0]
                raise DataError(f"{source}: column {column!r} holds times of day ({example}) and no column "
                                f"holds their dates; name the date column (e.g. --columns "
                                f"date,time,open,high,low,close,volume)")
            pair = (partner, column)
        if pair is not None:
            dates, clocks = frame[pair[0]], frame[pair[1]]
            text = (dates.astype("int64").astype(str) if pd.api.types.is_integer_dtype(dates)
                    else dates.astype(str).str.strip()) + " " + _clock_text(clocks)
            time_name = f"{pair[0]} + {pair[1]}"
            times = _parse_times(text, source, time_name)
            body = frame.drop(columns=list(pair))
        else:
            time_name = str(column)
            times = _parse_times(frame[column], source, time_name)
            body = frame.drop(columns=[column])
        # an unnamed integer index column written by pandas (0, 1, 2, ...) carries no information
        body = body.drop(columns=[c for c in body.columns if str(c).startswith("Unnamed")])
    if times.tz is None:
        times = times.tz_localize("UTC")
    else:
        times = times.tz_convert("UTC")
    body = body.copy()
    # pandas 3 infers a resolution from the text (ms, us...): the engine counts time in ns
    _check_time_range(times, source, time_name)
    body.index = pd.DatetimeIndex(times, name="time").as_unit("ns")
    return body


_NS_MIN, _NS_MAX = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


def _check_time_range(times: pd.DatetimeIndex, source: str, column: str) -> None:
    """Times the engine cannot count in int64 nanoseconds (before 1677-09-21 or after 2262-04-11,
    a typo such as 2262 or 1066) refused naming the column and the row, rather than a pandas
    OutOfBoundsDatetime later that the CLI would blame on the strategy."""
    valid = ~times.isna()
    outside = valid & ((times < _NS_MIN) | (times > _NS_MAX))
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(f"{source}: time out of range in column {column!r} at row {row} ({times[row]}): "
                        f"times must lie between {_NS_MIN:%Y-%m-%d} and {_NS_MAX:%Y-%m-%d}")


def _strptime(values: pd.Series, fmt: str, source: str, column: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(pd.to_datetime(values.astype(str).str.strip(), format=fmt))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: cannot parse timestamps in column {column!r} as {fmt}: {exc}") from None


def _parse_times(values: pd.Series, source: str, column: str) -> pd.DatetimeIndex:
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        if numbers.isna().any():
            raise DataError(f"{source}: empty timestamp in column {column!r} at row {int(numbers.isna().argmax())}")
        if _is_date_only(values):  # yyyymmdd written as a number, not seconds since 1970
            return _strptime(values.astype("int64").astype(str), "%Y%m%d", source, column)
        magnitude = float(np.nanmax(np.abs(numbers))) if len(numbers) else 0.0
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"
        return pd.DatetimeIndex(pd.to_datetime(values.astype("int64"), unit=unit, utc=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": handled below, in order
        try:  # the format inferred from the first value, applied to all: the fast path
            return pd.DatetimeIndex(pd.to_datetime(values, utc=True))
        except (ValueError, TypeError):
            pass
        text = values.astype(str).str.strip()
        sample = text.iloc[:_SAMPLE]
        for fmt in _EXTRA_FORMATS:
            try:
                pd.to_datetime(sample, format=fmt)
            except (ValueError, TypeError):
                continue
            try:
                return pd.DatetimeIndex(pd.to_datetime(text, format=fmt, utc=True))
            except (ValueError, TypeError):
                break
        try:  # one value at a time: slow, so only after a sample says it can work
            pd.to_datetime(sample, utc=True, format="mixed")
            return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="mixed"))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{source}: cannot parse timestamps in column {column!r}: {exc}") from None


def _oldest_first(frame: pd.DataFrame, source: str, notes: list[str]) -> pd.DataFrame:
    """A file written newest first (Yahoo downloads, barchart) turned around, with a note; any
    other disorder is left for the checks to refuse."""
    steps = np.diff(frame.index.asi8)
    if len(steps) and (steps <= 0).all() and (steps < 0).any():
        _note(notes, f"{Path(source).name}: rows run newest first; sorted oldest first")
        return frame.iloc[::-1]
    return frame


# -- columns --------------------------------------------------------------------------------------------

def _rename(frame: pd.DataFrame, aliases: dict[str, str], wanted: list[str]) -> pd.DataFrame:
    mapping: dict[object, str] = {}
    for column in frame.columns:
        key = _norm(column)
        if key.startswith("adj"):  # Adj Close, Adj. Open...: see _adjust
            continue
        target = key if key in wanted else aliases.get(key)
        if target is not None and target not in mapping.values():
            mapping[column] = target
    return frame[list(mapping)].rename(columns=mapping)


def _column(frame: pd.DataFrame, keys: tuple[str, ...]) -> object | None:
    return next((c for c in frame.columns if _norm(c) in keys), None)


def _tick_volume(frame: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """MT5's <TICKVOL> as the volume where <VOL> is missing or all zero (forex)."""
    column = _column(frame, _TICK_VOLUME)
    if column is None:
        return bars
    volume = pd.to_numeric(bars["volume"], errors="coerce") if "volume" in bars.columns else None
    if volume is None or not volume.fillna(0).any():
        bars = bars.assign(volume=frame[column].to_numpy())
    return bars


def _adjust(frame: pd.DataFrame, bars: pd.DataFrame, options: LoadOptions, source: str,
            notes: list[str]) -> pd.DataFrame:
    """OHLC x Adj Close / Close when asked; otherwise a note if the file's adjustment is ignored."""
    column = _column(frame, _ADJ_CLOSE)
    adj = None if column is None else pd.to_numeric(frame[column], errors="coerce")
    if not options.adjusted:
        if adj is not None and adj.notna().any() and "close" in bars.columns:
            close = pd.to_numeric(bars["close"], errors="coerce")
            if not np.allclose(adj.to_numpy(), close.to_numpy(), equal_nan=True):
                _note(notes, f"{Path(source).name}: column {column!r} ignored: prices are as traded; --adjusted "
                             f"scales open, high, low and close by {column} / Close")
        return bars
    if adj is None or adj.isna().all():
        raise DataError(f"{source}: --adjusted needs an 'Adj Close' column (found: {_listing(frame.columns)})")
    if adj.isna().any():
        row = int(adj.isna().to_numpy().argmax())
        raise DataError(f"{source}: --adjusted: empty {column!r} at {frame.index[row]} (row {row})")
    if "close" not in bars.columns:
        return bars  # validate_bars names the missing column
    bars = _numeric(bars, source)
    factor = adj.to_numpy() / bars["close"].to_numpy()
    for name in PRICE_COLUMNS:
        if name in bars.columns:
            bars[name] = bars[name].to_numpy() * factor
    _note(notes, f"{Path(source).name}: prices adjusted by {column} / Close")
    return bars


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
            raise DataError(f"{source}: {int(bad.sum())} NaN prices in {column!r}, "
                            f"first at {frame.index[int(bad.argmax())]}")
        infinite = np.isinf(values)
        if infinite.any():
            row = int(infinite.argmax())
            raise DataError(f"{source}: {int(infinite.sum())} infinite prices in {column!r}, "
                            f"first at {frame.index[row]} (row {row})")
        nonpositive = values <= 0
        if nonpositive.any():
            row = int(nonpositive.argmax())
            raise DataError(f"{source}: non-positive price {values[row]} in {column!r} "
                            f"at {frame.index[row]} (row {row})")


def _numeric(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    out = {}
    for column in frame.columns:
        converted = pd.to_numeric(frame[column], errors="coerce")
        garbage = converted.isna() & frame[column].notna()
        if garbage.any():
            row = int(np.argmax(garbage.to_numpy()))
            value = frame[column].iloc[row]
            hint = "; decimal commas? pass --decimal ," if re.fullmatch(r"\s*[+-]?\d+,\d+\s*", str(value)) else ""
            raise DataError(f"{source}: not a number {value!r} in {column!r} at row {row}{hint}")
        out[column] = converted.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def validate_bars(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The checks load_bars applies, on any frame with BAR_COLUMNS (volume optional)."""
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column {missing[0]!r} (found: {_listing(frame.columns)})")
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
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    slack = 1e-9 * high  # float noise (a scaled or converted file), not a price
    for column in ("open", "close"):  # a fill at a price the bar never traded at is made-up money
        values = frame[column].to_numpy()
        for word, bound, outside in (("above", "high", values > high + slack), ("below", "low", values < low - slack)):
            if outside.any():
                row = int(outside.argmax())
                raise DataError(f"{source}: {column!r} {word} {bound!r} at {frame.index[row]} (row {row}): "
                                f"{float(values[row])} outside [{float(low[row])}, {float(high[row])}]")
    volume = frame["volume"].to_numpy()
    if (volume < 0).any():
        row = int((volume < 0).argmax())
        raise DataError(f"{source}: negative volume at {frame.index[row]} (row {row})")
    frame["volume"] = np.nan_to_num(volume, nan=0.0)
    return frame


def load_bars(path: str | Path, options: LoadOptions | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """OHLCV bars from any layout in the module docstring. `notes` (if given) receives what the
    loader decided that the user should know: rows turned around, a column ignored or used."""
    path = Path(path)
    options = options or DEFAULT_OPTIONS
    notes = notes if notes is not None else []
    source = str(path)
    frame = _oldest_first(_time_index(_read(path, options, notes), source), source, notes)
    bars = _tick_volume(frame, _rename(frame, _BAR_ALIASES, BAR_COLUMNS))
    bars = _adjust(frame, bars, options, source, notes)
    bars = validate_bars(bars, source)
    _note_jumps(bars, source, notes)
    return bars


_JUMP = 5.0  # a bar's close over the previous close (or its high over its low) beyond this is said


def _note_jumps(bars: pd.DataFrame, source: str, notes: list[str]) -> None:
    """A note naming the first bar whose close is more than _JUMP times (or less than 1/_JUMP of)
    the previous close, or whose high is more than _JUMP times its low. Not refused: real markets
    do jump (an unadjusted split, a delisting coin); but a single bar at 10x (a misplaced decimal)
    decides equity and drawdown, so the user is told which bar to look at."""
    close = bars["close"].to_numpy()
    ratio = np.ones(len(close))
    ratio[1:] = close[1:] / close[:-1]
    wide = bars["high"].to_numpy() / bars["low"].to_numpy()
    jump = (ratio > _JUMP) | (ratio < 1.0 / _JUMP) | (wide > _JUMP)
    if not jump.any():
        return
    row = int(jump.argmax())
    what = (f"high {wide[row]:.1f}x its low" if not (ratio[row] > _JUMP or ratio[row] < 1.0 / _JUMP)
            else f"close {ratio[row]:.3g}x the previous close")
    _note(notes, f"warning: {Path(source).name}: suspect bar at {bars.index[row]} (row {row}): {what}; "
                 f"{int(jump.sum())} bar(s) move more than {_JUMP:g}x; check the data (kept as written)")


def load_ticks(path: str | Path, options: LoadOptions | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Quote ticks (bid/ask) and/or trade ticks (last/size) from a file."""
    path = Path(path)
    options = options or DEFAULT_OPTIONS
    notes = notes if notes is not None else []
    source = str(path)
    frame = _oldest_first(_time_index(_read(path, options, notes), source), source, notes)
    frame = _rename(frame, _TICK_ALIASES, TICK_COLUMNS)
    has_quotes = "bid" in frame.columns and "ask" in frame.columns
    has_trades = "last" in frame.columns
    if not has_quotes and not has_trades:
        raise DataError(f"{source}: not a tick file: needs bid and ask, or a price/last column "
                        f"(found: {_listing(frame.columns)})")
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


def load_frame(data: str | Path, bar: str | None, options: LoadOptions | None = None,
               notes: list[str] | None = None) -> pd.DataFrame:
    """Bars from a bar file, or bars resampled from a tick file when `bar` is given (the CLI's
    --data/--bar and the API's backtests alike). What the loader decided is appended to `notes`."""
    notes = [] if notes is None else notes
    if bar:
        return ticks_to_bars(load_ticks(data, options, notes), bar)
    try:
        return load_bars(data, options, notes)
    except DataError as bars_error:
        try:
            load_ticks(data, options)
        except DataError:
            raise bars_error from None
        raise DataError(f"{data}: this is a tick file; pass --bar RULE (e.g. --bar 1min) to resample it") from None
