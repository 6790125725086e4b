"""What can be traded, and on which grid.

Prices and quantities are rounded to an instrument's increments when an order is made and
checked again by risk; the Scales derived here are the fixed-point units the books use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import cached_property

import numpy as np

from engine.errors import ConfigError
from engine.money import Scales, decimal_places


class AssetClass(StrEnum):
    EQUITY = "equity"
    FX = "fx"
    CRYPTO = "crypto"
    FUTURE = "future"
    CFD = "cfd"


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

    def __post_init__(self) -> None:
        for name in ("price_increment", "size_increment", "currency_increment", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ConfigError(name, f"must be a positive decimal, got {value!r}")
        if self.min_qty < 0:
            raise ConfigError("min_qty", f"must be >= 0, got {self.min_qty}")
        if self.max_qty is not None and self.max_qty < max(self.min_qty, self.size_increment):
            raise ConfigError("max_qty", f"must be >= min_qty and the size increment, got {self.max_qty}")
        if decimal_places(self.min_qty) > decimal_places(self.size_increment):
            raise ConfigError("min_qty", f"{self.min_qty} is not on the size grid {self.size_increment}")

    @cached_property
    def scales(self) -> Scales:
        return Scales.build(self.price_increment, self.size_increment, self.min_qty,
                            self.currency_increment, self.multiplier)

    @property
    def id(self) -> str:
        return f"{self.symbol}.{self.venue}"


def infer_price_increment(prices: np.ndarray, max_dp: int = 8) -> Decimal:
    """The coarsest power-of-ten tick on which every price lies (to within float noise).

    Bundled CSVs do not carry a tick size; a price written as 1.07219 is on a 0.00001 grid.
    Prices with more than `max_dp` decimals are put on the 10**-max_dp grid. A sample proposes
    the grid and one pass over all prices confirms it (or the next finer grid is tried).
    """
    finite = prices[np.isfinite(prices)]
    sample = finite[:: max(1, len(finite) // 20_000)]
    dp = next((d for d in range(max_dp + 1) if _off_grid(sample, d).size == 0), max_dp)
    for start in range(0, len(finite), _CHUNK):  # cache-sized chunks: no 30 MB temporaries
        off = _off_grid(finite[start:start + _CHUNK], dp)
        while off.size and dp < max_dp:  # only the prices that failed are checked again
            dp += 1
            off = _off_grid(off, dp)
    return Decimal(1).scaleb(-dp)


_CHUNK = 1 << 15


def _off_grid(values: np.ndarray, dp: int) -> np.ndarray:
    scaled = values * 10.0**dp
    return values[np.abs(scaled - np.rint(scaled)) > 1e-9 * np.maximum(1.0, np.abs(scaled))]
