"""What can be traded, and on which grid.

Prices and quantities are rounded to an instrument's increments when an order is made and
checked again by risk; the Scales derived here are the fixed-point units the books use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

import numba
import numpy as np

from engine.errors import ConfigError
from engine.money import Scales, decimal_places, fraction_parts


class AssetClass(StrEnum):
    EQUITY = "equity"
    FX = "fx"
    CRYPTO = "crypto"
    FUTURE = "future"
    CFD = "cfd"


FRACTION_SIZING = ("margin", "notional")  # Instrument.fraction_sizing


@dataclass(frozen=True)
class Instrument:
    """A tradable symbol on a venue with its price and size grid."""

    symbol: str
    venue: str = "PAPER"
    asset_class: AssetClass = AssetClass.EQUITY
    price_increment: Decimal = Decimal("0.01")
    size_increment: Decimal = Decimal("1")
    min_qty: Decimal = Decimal("0")
    max_qty: Decimal | None = None
    multiplier: Decimal = Decimal("1")
    quote_currency: str = "USD"
    currency_increment: Decimal = Decimal("0.01")
    sessions: tuple[str, ...] = field(default_factory=tuple)  # "HH:MM-HH:MM" UTC; empty = always open
    base_currency: str = ""   # "" = from the symbol: BTC/USDT -> BTC, an FX pair EURUSD -> EUR
    # decimals the venue keeps the base asset at (Binance: 8) when finer than the lot step: a fee
    # in the coin bought can leave a position between lot steps, and the books must hold it
    asset_dp: int | None = None
    # Margin (issue 14). An instrument with a leverage or a margin is traded on margin: a fill
    # moves no notional, only realized P&L, fees and swap move the account's cash, and an open
    # position ties up margin (see engine.portfolio). `multiplier` is the contract size: a
    # quantity of 1 (one lot) is `multiplier` units (100,000 for an FX major).
    leverage: Decimal | None = None            # margin = notional / leverage
    margin_rate: Decimal | None = None         # or margin = notional * margin_rate (0.05 = 5 %)
    margin_per_lot: Decimal | None = None      # or a fixed margin per unit of quantity (futures)
    commission_per_lot: Decimal = Decimal(0)   # per unit of quantity, per fill, in the quote currency
    swap_long: Decimal = Decimal(0)            # per unit of quantity per night, quote currency (+ earns)
    swap_short: Decimal = Decimal(0)
    # How the venue sizes an equity-fraction order on margin: "margin" puts fraction x equity up as
    # margin (the paper venue and the backtester: backtesting.py's rule, leverage-fold exposure);
    # "notional" buys fraction x equity of exposure within the free margin (ccxt USD-M, MT5). The
    # risk gate estimates such an order by the venue's own rule (engine.risk._fraction_qty).
    fraction_sizing: str = "margin"
    # Whether the venue lets this account sell more than it holds. A spot market does not: a sell
    # beyond the bot's own position there sells the trader's other coins on the account (the OMS
    # refuses it: engine.oms, SHORT_SALE). Margin instruments, stocks a margin account may short
    # and the paper venue's cash instruments (backtests of long_short rules) can.
    shortable: bool = True

    def __post_init__(self) -> None:
        for name in ("price_increment", "size_increment", "currency_increment", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ConfigError(name, f"must be a positive decimal, got {value!r}")
        if self.multiplier != self.multiplier.to_integral_value():
            raise ConfigError("multiplier", f"the contract size must be a whole number of units, got {self.multiplier}")
        if self.asset_dp is not None and not 0 <= self.asset_dp <= 18:
            raise ConfigError("asset_dp", f"must be 0 to 18, got {self.asset_dp}")
        if self.min_qty < 0:
            raise ConfigError("min_qty", f"must be >= 0, got {self.min_qty}")
        if self.max_qty is not None and self.max_qty < max(self.min_qty, self.size_increment):
            raise ConfigError("max_qty", f"must be >= min_qty and the size increment, got {self.max_qty}")
        if decimal_places(self.min_qty) > decimal_places(self.size_increment):
            raise ConfigError("min_qty", f"{self.min_qty} is not on the size grid {self.size_increment}")
        if self.leverage is not None and (not self.leverage.is_finite() or self.leverage <= 0):
            raise ConfigError("leverage", f"must be a positive decimal, got {self.leverage}")
        if self.margin_rate is not None and not (0 < self.margin_rate <= 1):
            raise ConfigError("margin_rate", f"must be in (0, 1], got {self.margin_rate}")
        if self.margin_per_lot is not None and (not self.margin_per_lot.is_finite() or self.margin_per_lot < 0):
            raise ConfigError("margin_per_lot", f"must be >= 0, got {self.margin_per_lot}")
        if sum(x is not None for x in (self.leverage, self.margin_rate, self.margin_per_lot)) > 1:
            raise ConfigError("margin", "give one of leverage, margin_rate or margin_per_lot")
        if self.commission_per_lot < 0:
            raise ConfigError("commission_per_lot", f"must be >= 0, got {self.commission_per_lot}")
        if self.fraction_sizing not in FRACTION_SIZING:
            raise ConfigError("fraction_sizing",
                              f"must be one of {', '.join(FRACTION_SIZING)}, got {self.fraction_sizing!r}")

    @property
    def base(self) -> str:
        """The asset bought: the base currency, given or read from the symbol."""
        if self.base_currency:
            return self.base_currency
        if "/" in self.symbol:
            return self.symbol.split("/")[0]
        if self.asset_class is AssetClass.FX and len(self.symbol) == 6:
            return self.symbol[:3]
        return self.symbol

    @cached_property
    def on_margin(self) -> bool:
        return self.leverage is not None or self.margin_rate is not None or self.margin_per_lot is not None

    def margin_fraction(self) -> tuple[int, int] | None:
        """(num, den): initial margin = notional * num / den; None for a fixed margin per lot."""
        if self.leverage is not None:
            num, den = fraction_parts(self.leverage)
            return den, num
        if self.margin_rate is not None:
            return fraction_parts(self.margin_rate)
        return None

    @cached_property
    def scales(self) -> Scales:
        return Scales.build(self.price_increment, self.size_increment, self.min_qty,
                            self.currency_increment, self.multiplier, self.asset_dp)

    @property
    def id(self) -> str:
        return f"{self.symbol}.{self.venue}"


class PriceGrid(NamedTuple):
    """The tick inferred from prices, and how many prices are not on it (rounded to it)."""

    increment: Decimal
    rounded: int


# Significant digits a price grid may hold: a raw price below 10**13 is exact in float64 with room
# to tell a decimal from float noise (a few units in the last place), and keeps the fast path's
# integer arithmetic in range for ordinary accounts.
SIGNIFICANT_DIGITS = 13


def price_dp_limit(prices: np.ndarray) -> int:
    """The most decimals a grid for these prices can have: SIGNIFICANT_DIGITS of the largest
    price (a BTC price in the ten thousands: 8 decimals; a coin at 0.00001234: 17)."""
    finite = _finite(prices)
    top = max(abs(float(finite.max())), abs(float(finite.min()))) if finite.size else 0.0  # max |price|, no copy
    if top <= 0.0:
        return 8
    return max(0, min(18, SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(top)))))


def _finite(prices: np.ndarray) -> np.ndarray:
    """The finite prices: the array itself when all are (a 1M-bar backtest's 4M prices are not copied)."""
    mask = np.isfinite(prices)
    return prices if mask.all() else prices[mask]


def infer_price_grid(prices: np.ndarray, max_dp: int | None = None) -> PriceGrid:
    """The coarsest power-of-ten tick on which every price lies (to within float noise), and how
    many prices had to be rounded because they have more decimals than `max_dp` allows
    (default: price_dp_limit, the data's own precision, not a fixed 8 decimals: 9-decimal coin
    prices keep their 9 decimals).

    Bundled CSVs do not carry a tick size; a price written as 1.07219 is on a 0.00001 grid. A
    sample proposes the grid and one pass over all prices confirms it (or the next finer grid is
    tried); prices off the finest allowed grid are counted, and the caller warns about them.
    """
    finite = _finite(prices)
    limit = price_dp_limit(finite) if max_dp is None else max_dp
    sample = finite[:: max(1, len(finite) // 20_000)]
    dp = next((d for d in range(limit + 1) if _off_grid(sample, d).size == 0), limit)
    values = np.ascontiguousarray(finite, dtype=np.float64)
    powers = np.array([10.0**d for d in range(limit + 1)])  # Python's powers of ten, as _off_grid uses
    dp, rounded = _confirm_grid(values, dp, limit, powers, _CHUNK, _NOISE)
    if rounded and max_dp is None and limit > ROUNDED_DP:
        # prices with more digits than any grid holds (float tails of adjusted or computed prices)
        # have no precision of their own to keep: round them to the customary 8 decimals rather
        # than to the finest grid, whose raw integers would leave the books no int64 headroom
        return infer_price_grid(prices, ROUNDED_DP)
    return PriceGrid(Decimal(1).scaleb(-dp), rounded)


ROUNDED_DP = 8  # the grid for prices that must be rounded anyway (see infer_price_grid)


def infer_columns_grid(columns: list[np.ndarray], max_dp: int | None = None) -> PriceGrid:
    """infer_price_grid(np.concatenate(columns)), the same answer, without the concatenation.

    Why: a backtest infers one grid for its four OHLC columns; 1M bars' concatenation is 32 MB of
    fresh memory (page faults: as long as the inference itself on this machine). When every price
    is finite, each step reads the columns as that concatenation would hold them: the largest
    price of all, the same strided sample (its indices counted across the columns), and the
    confirming pass fed piece by piece, each piece a whole number of _CHUNK-value chunks at the
    concatenation's own chunk boundaries (the pass keeps only dp and the count from a chunk to the
    next, so pieces give what one array gives). A column with a NaN or an infinity (their removal
    moves the chunk boundaries) is concatenated as before."""
    cols = [np.ascontiguousarray(c, dtype=np.float64) for c in columns]
    if not cols or not all(np.isfinite(c).all() for c in cols):
        return infer_price_grid(np.concatenate(cols) if cols else np.empty(0), max_dp)
    total = sum(len(c) for c in cols)
    nonempty = [c for c in cols if len(c)]
    if max_dp is not None:
        limit = max_dp
    elif not nonempty:
        limit = price_dp_limit(np.empty(0))
    else:  # price_dp_limit's largest |price|, over all columns
        top = max(abs(max(float(c.max()) for c in nonempty)), abs(min(float(c.min()) for c in nonempty)))
        limit = 8 if top <= 0.0 else max(0, min(18, SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(top)))))
    stride = max(1, total // 20_000)
    parts, offset = [], 0
    for c in cols:  # the concatenation's [::stride], column by column
        parts.append(c[(-offset) % stride::stride])
        offset += len(c)
    sample = np.concatenate(parts)
    dp = next((d for d in range(limit + 1) if _off_grid(sample, d).size == 0), limit)
    powers = np.array([10.0**d for d in range(limit + 1)])
    piece = _CHUNK * 4
    buffer = np.empty(min(piece, total), dtype=np.float64)
    starts = np.cumsum([0, *(len(c) for c in cols)])
    rounded = 0
    for a in range(0, total, piece):
        b = min(a + piece, total)
        # the piece's values copied into one reused buffer (never a view of a column: a pandas column
        # may be read-only, which numba compiles _confirm_grid for anew)
        at, k = 0, int(np.searchsorted(starts, a, side="right")) - 1
        while at < b - a:
            lo = max(a, int(starts[k])) - int(starts[k])
            hi = min(b, int(starts[k + 1])) - int(starts[k])
            buffer[at:at + hi - lo] = cols[k][lo:hi]
            at += hi - lo
            k += 1
        dp, part_rounded = _confirm_grid(buffer[:b - a], dp, limit, powers, _CHUNK, _NOISE)
        rounded += part_rounded
    if rounded and max_dp is None and limit > ROUNDED_DP:
        return infer_columns_grid(cols, ROUNDED_DP)  # as infer_price_grid falls back
    return PriceGrid(Decimal(1).scaleb(-dp), rounded)


def infer_price_increment(prices: np.ndarray, max_dp: int | None = None) -> Decimal:
    """infer_price_grid's tick alone (callers that do not report rounding)."""
    return infer_price_grid(prices, max_dp).increment


_CHUNK = 1 << 15
# a price is on a grid when its scaled value is an integer up to float noise: a few units in the
# last place of the parse and of the scaling (a tolerance of 1e-9 took 123.456789012 for 6 decimals)
_NOISE = 2e-15


@numba.njit(cache=True)
def _confirm_grid(values: np.ndarray, dp: int, limit: int, powers: np.ndarray, chunk: int,
                  noise: float) -> tuple[int, int]:
    """The confirming pass of infer_price_grid, compiled: (dp, rounded). What the numpy version did
    chunk by chunk (`_off_grid` on each chunk at dp, then only its failures at dp + 1, ...), with
    the same float operations per value, without its temporaries (on 1M bars' 4M prices: 17.9 ->
    13.7 ms of CPU, the whole inference, min of 7): a chunk's prices are checked at the dp of the chunk's start, its
    failures then at each finer dp up to `limit`; those still off at the limit are counted."""
    failed = np.empty(min(chunk, len(values)), dtype=np.float64)
    rounded = 0
    for start in range(0, len(values), chunk):
        n_off = 0
        factor = powers[dp]
        for i in range(start, min(start + chunk, len(values))):
            if _is_off(values[i], factor, noise):
                failed[n_off] = values[i]
                n_off += 1
        while n_off and dp < limit:
            dp += 1
            factor = powers[dp]
            kept = 0
            for k in range(n_off):
                if _is_off(failed[k], factor, noise):
                    failed[kept] = failed[k]
                    kept += 1
            n_off = kept
        rounded += n_off
    return dp, rounded


@numba.njit(cache=True, inline="always")
def _is_off(value: float, factor: float, noise: float) -> bool:
    """_off_grid's test for one value: |scaled - rint(scaled)| > noise * max(|scaled|, 1)."""
    scaled = value * factor
    return abs(scaled - np.rint(scaled)) > max(abs(scaled), 1.0) * noise


def _off_grid(values: np.ndarray, dp: int) -> np.ndarray:
    """The values off the 10**-dp grid: |scaled - rint(scaled)| > _NOISE * max(1, |scaled|), computed
    in two buffers in place (the same float operations, so the same answer, without six temporaries)."""
    scaled = values * 10.0**dp
    distance = np.rint(scaled)
    np.subtract(scaled, distance, out=distance)
    np.abs(distance, out=distance)
    np.abs(scaled, out=scaled)
    np.maximum(scaled, 1.0, out=scaled)
    scaled *= _NOISE
    return values[distance > scaled]
