"""Exact money as fixed-point integers.

Every price, quantity and cash amount the engine books is an integer count of a power-of-ten
unit ("raw" value): a price of 1.07219 with 5 price decimals is 107219, 0.5 BTC with 8 quantity
decimals is 50000000. Integer arithmetic is exact, fast in Python and in numba, and the same
function gives the same answer in both, which is what makes the backtester's fast path and its
event-by-event path agree to the last unit (the parity tests check it).

The functions below are written in the subset of Python that numba compiles, on purpose:
`backtest.fast_path` compiles these very functions with `numba.njit`, so the rounding rules live
in one place. In Python the integers never overflow; the compiled kernel guards its int64 range
and falls back to the event path when a run would leave it.

Account cash is kept at `cash_dp` decimals, chosen so that every notional (price x quantity) is
an exact multiple of the cash unit; fees are rounded (half to even) to the currency increment,
except that a non-zero commission on a non-zero notional is never rounded to zero: it books at
least one increment (a 0.2 % fee of $1.10 is $0.01, not free), and a minimum fee per order
(brokers' "min $1 per order") raises what is below it. The increment follows the account
currency (CURRENCY_INCREMENTS: cents for USD, whole yen, 1e-8 for coins and stablecoins).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from functools import lru_cache
from math import gcd

from engine.errors import ConfigError


def decimal_places(value: Decimal) -> int:
    """Number of decimals needed to write `value` exactly (0.25 -> 2, 1 -> 0, 1E-8 -> 8)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@lru_cache(maxsize=256)
def fraction_parts(value: Decimal) -> tuple[int, int]:
    """An exact decimal as (numerator, power-of-ten denominator): 0.25 -> (25, 100)."""
    dp = decimal_places(value)
    return to_raw(value, dp), 10**dp


def to_raw(value: Decimal, dp: int) -> int:
    """Decimal -> raw integer at `dp` decimals; refuses a value that is not on that grid."""
    scaled = value.scaleb(dp)
    try:
        raw = int(scaled)  # truncated: equal to `scaled` only when it is a whole number (exact comparison)
    except ValueError:  # NaN: refused as before, with the same words
        raw = None
    if raw is None or raw != scaled:
        raise ValueError(f"{value} has more than {dp} decimals")
    return raw


def from_raw(raw: int, dp: int) -> Decimal:
    """Raw integer -> exact Decimal."""
    return Decimal(raw).scaleb(-dp)


# qty_from_raw's last answer as (raw, dp, Decimal): one tuple, read and replaced whole (safe across threads)
_last_qty: tuple[int, int, Decimal] = (0, -1, Decimal(0))


def qty_from_raw(raw: int, dp: int) -> Decimal:
    """from_raw(raw, dp) for a quantity: the very Decimal of the previous call when it is asked for
    the same raw quantity at the same decimals again.

    Why: one quantity comes back as a Decimal several times in a row (a backtest's round trip: the
    entry sized at its fill, that fill's quantity, the close, the close's fill: four Decimals of one
    value), and each Decimal made is an allocation that the orders then keep, a measurable part of
    the event path. A Decimal is immutable, so the same object is the same value; and the value is
    exact either way (the engine runs under Python's default decimal context, 28 digits, and never
    changes it)."""
    global _last_qty
    last = _last_qty
    if last[0] == raw and last[1] == dp:
        return last[2]
    value = Decimal(raw).scaleb(-dp)
    _last_qty = (raw, dp, value)
    return value


def qty_to_raw(value: Decimal, dp: int) -> int:
    """to_raw(value, dp) for a quantity, without the conversion when `value` is qty_from_raw's last
    answer at these decimals (its raw quantity is known: the submit of a close that close() sized)."""
    last = _last_qty
    if value is last[2] and dp == last[1]:
        return last[0]
    return to_raw(value, dp)


def raw_to_float(raw: int, dp: int) -> float:
    """Raw integer -> float, computed the same way in Python and in numba (parity of curves)."""
    return float(raw) / 10.0**dp


def div_round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even (banker's rounding); denominator > 0."""
    quotient = numerator // denominator
    remainder = numerator - quotient * denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def floor_to_step(raw: int, step: int) -> int:
    """Largest multiple of `step` not above `raw` (raw >= 0)."""
    return (raw // step) * step


def ceil_to_step(raw: int, step: int) -> int:
    """Smallest multiple of `step` not below `raw` (raw >= 0)."""
    return -((-raw) // step) * step


def slipped_price(price_raw: int, is_buy: bool, slip_num: int, slip_den: int, price_step: int) -> int:
    """Apply slippage against the trader and land on the price grid, rounding against him too.

    A buy pays price * (1 + bps/1e4) rounded up to the tick; a sell receives price * (1 - bps/1e4)
    rounded down. Rounding in the venue's favour is the conservative choice for a backtest.
    """
    if slip_num == 0:
        return price_raw
    if is_buy:
        return ceil_to_step(-((-price_raw * (slip_den + slip_num)) // slip_den), price_step)
    return floor_to_step((price_raw * (slip_den - slip_num)) // slip_den, price_step)


def fee_raw(notional_cash_raw: int, fee_num: int, fee_den: int, fee_step: int, fixed_fee_raw: int,
            min_fee_raw: int = 0) -> int:
    """Percent commission rounded half-even to the currency increment, plus the per-order fee,
    and at least `min_fee_raw` (the minimum fee per order; 0 for none).

    `fee_num / fee_den` already folds the rate and the cash scale (see FeeModel.fraction), so
    the percent part is div_round_half_even(notional * fee_num, fee_den) currency units; when a
    non-zero rate on a non-zero notional rounds to 0 units it is one unit: a commission that is
    charged is never booked as free (a small account would otherwise trade without costs).
    """
    fee = fixed_fee_raw
    if fee_num != 0 and notional_cash_raw > 0:
        units = div_round_half_even(notional_cash_raw * fee_num, fee_den)
        if units == 0:
            units = 1
        fee += units * fee_step
    if fee < min_fee_raw:
        fee = min_fee_raw
    return fee


def order_cost_raw(qty_raw: int, price_raw: int, notional_k: int, fee_num: int, fee_den: int,
                   fee_step: int, fixed_fee_raw: int, min_fee_raw: int = 0) -> int:
    """Cash a buy of qty_raw at price_raw takes, fees included (what sizing must keep <= budget)."""
    notional = qty_raw * price_raw * notional_k
    return notional + fee_raw(notional, fee_num, fee_den, fee_step, fixed_fee_raw, min_fee_raw)


def max_qty_for_budget(budget_raw: int, price_raw: int, notional_k: int, fee_num: int, fee_den: int,
                       fee_step: int, fixed_fee_raw: int, qty_step: int, estimate: int,
                       min_fee_raw: int = 0) -> int:
    """Largest multiple of qty_step whose cost (notional + fees) fits in budget_raw.

    `estimate` is any starting guess (a float estimate is fine): the exact answer is found from
    it by galloping then bisecting on the integer cost, which only grows with quantity, so every
    caller gets the same answer whatever its guess, in O(log distance) steps.
    """
    lo = max(estimate, 0) // qty_step  # counted in lots from here on
    if lo > 0 and order_cost_raw(lo * qty_step, price_raw, notional_k, fee_num, fee_den, fee_step,
                                 fixed_fee_raw, min_fee_raw) > budget_raw:
        hi, gap = lo, 1
        lo = hi - 1
        while lo > 0 and order_cost_raw(lo * qty_step, price_raw, notional_k, fee_num, fee_den, fee_step,
                                        fixed_fee_raw, min_fee_raw) > budget_raw:
            hi, gap = lo, gap * 2
            lo = max(hi - gap, 0)
    else:
        gap = 1
        hi = lo + gap
        while order_cost_raw(hi * qty_step, price_raw, notional_k, fee_num, fee_den, fee_step,
                             fixed_fee_raw, min_fee_raw) <= budget_raw:
            lo, gap = hi, gap * 2
            hi = lo + gap
    while hi - lo > 1:  # invariant: lo affordable (or 0), hi not
        mid = (lo + hi) // 2
        if order_cost_raw(mid * qty_step, price_raw, notional_k, fee_num, fee_den, fee_step,
                          fixed_fee_raw, min_fee_raw) <= budget_raw:
            lo = mid
        else:
            hi = mid
    return lo * qty_step


def estimate_qty(budget_raw: int, price_raw: int, notional_k: int, rate: float) -> int:
    """Float first guess for max_qty_for_budget (exactness comes from the integer steps)."""
    if price_raw <= 0 or budget_raw <= 0:
        return 0
    return int(float(budget_raw) / (float(price_raw) * float(notional_k) * (1.0 + rate)))


@dataclass(frozen=True, slots=True)
class Scales:
    """The fixed-point units of one instrument booked in one account currency."""

    price_dp: int      # a raw price counts units of 10**-price_dp
    price_step: int    # the tick size in raw price units
    qty_dp: int
    qty_step: int      # the lot step in raw quantity units
    min_qty: int       # raw
    cash_dp: int       # raw cash counts units of 10**-cash_dp; >= price_dp + qty_dp
    fee_step: int      # the currency increment in raw cash units
    notional_k: int    # raw price * raw qty * notional_k = raw cash (multiplier included)
    multiplier: int

    @classmethod
    def build(cls, price_increment: Decimal, size_increment: Decimal, min_qty: Decimal,
              currency_increment: Decimal, multiplier: Decimal, asset_dp: int | None = None) -> "Scales":
        """`asset_dp`: book quantities at these decimals when finer than the lot step (a wallet
        that pays fees in the coin holds amounts between lot steps)."""
        if multiplier != multiplier.to_integral_value() or multiplier <= 0:
            raise ConfigError("multiplier", f"must be a positive whole number, got {multiplier}")
        price_dp = decimal_places(price_increment)
        qty_dp = max(decimal_places(size_increment), asset_dp or 0)
        ccy_dp = decimal_places(currency_increment)
        cash_dp = max(ccy_dp, price_dp + qty_dp)
        ccy_step = to_raw(currency_increment, ccy_dp)
        return cls(
            price_dp=price_dp,
            price_step=to_raw(price_increment, price_dp),
            qty_dp=qty_dp,
            qty_step=to_raw(size_increment, qty_dp),
            min_qty=max(to_raw(min_qty, qty_dp), to_raw(size_increment, qty_dp)),
            cash_dp=cash_dp,
            fee_step=ccy_step * 10 ** (cash_dp - ccy_dp),
            notional_k=int(multiplier) * 10 ** (cash_dp - price_dp - qty_dp),
            multiplier=int(multiplier),
        )

    def price(self, raw: int) -> Decimal:
        return from_raw(raw, self.price_dp)

    def qty(self, raw: int) -> Decimal:
        return from_raw(raw, self.qty_dp)

    def cash(self, raw: int) -> Decimal:
        return from_raw(raw, self.cash_dp)

    def cash_raw(self, value: Decimal) -> int:
        return to_raw(value, self.cash_dp)


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Commission: a fraction of notional (0.002 = 0.2 %) plus a fixed amount per order, and at
    least `minimum` per order (0: none). Amounts are in the account currency, on its increment."""

    rate: Decimal = Decimal(0)
    per_order: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.rate >= 1:
            raise ConfigError("commission", f"must be in [0, 1), got {self.rate}")
        if self.per_order < 0:
            raise ConfigError("commission_per_order", f"must be >= 0, got {self.per_order}")
        if not self.minimum.is_finite() or self.minimum < 0:
            raise ConfigError("min_fee", f"must be >= 0, got {self.minimum}")

    def fraction(self, scales: Scales) -> tuple[int, int]:
        """(fee_num, fee_den) with percent fee in currency units = notional_raw * num / den."""
        rate_dp = decimal_places(self.rate)
        num = to_raw(self.rate, rate_dp)
        den = 10**rate_dp * scales.fee_step
        if num == 0:
            return 0, 1
        common = gcd(num, den)
        return num // common, den // common

    def fixed_raw(self, scales: Scales) -> int:
        return to_raw(self.per_order.quantize(scales.cash(scales.fee_step)), scales.cash_dp)

    def min_raw(self, scales: Scales) -> int:
        """The minimum fee per order, raw, rounded up to the currency increment (never below it)."""
        return ceil_to_step(to_raw(self.minimum.quantize(scales.cash(1), rounding=ROUND_CEILING),
                                   scales.cash_dp), scales.fee_step)


# Decimals of the currencies an account is kept in when the instrument does not say: ISO 4217
# minor units for fiat (cents; none for JPY and KRW; mils for the dinars), and 8 for coins and
# stablecoins, as exchanges book them. Unknown codes get cents.
CURRENCY_DECIMALS: dict[str, int] = {
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "ISK", "XOF", "XAF", "PYG", "UGX"), 0),
    **dict.fromkeys(("BHD", "KWD", "OMR", "JOD", "TND", "LYD", "IQD"), 3),
    **dict.fromkeys(("BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "LTC", "DOT", "AVAX", "TRX", "XBT",
                     "USDT", "USDC", "BUSD", "DAI", "TUSD", "FDUSD", "USDP", "PYUSD"), 8),
}
CURRENCY_INCREMENTS = {code: Decimal(1).scaleb(-dp) for code, dp in CURRENCY_DECIMALS.items()}


def currency_increment_for(currency: str | None) -> Decimal:
    """The smallest amount an account in `currency` books: 0.01 USD, 1 JPY, 1e-8 USDT."""
    return CURRENCY_INCREMENTS.get((currency or "USD").upper(), Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class Slippage:
    """Slippage in basis points, applied against the trader on every fill that takes liquidity."""

    bps: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.bps < 0 or self.bps >= 10_000:
            raise ConfigError("slippage_bps", f"must be in [0, 10000), got {self.bps}")

    def fraction(self) -> tuple[int, int]:
        """(num, den) with slipped price = price * (den +/- num) / den."""
        dp = decimal_places(self.bps)
        return to_raw(self.bps, dp), 10_000 * 10**dp


class MissingRate(ConfigError):
    """No conversion rate for a currency pair at the time it was needed: the amount is not booked."""

    def __init__(self, base: str, quote: str, ts: int, purpose: str) -> None:
        super().__init__("conversion_rate", f"no {base}/{quote} rate at {_iso(ts)} to value {purpose}")
        self.base, self.quote, self.ts = base, quote, ts


def _iso(ts: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ts / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


class ConversionRates:
    """What one currency is worth in another, as of a time, from the market data the bot has.

    The books need a rate to value a fee charged in a third currency (BNB on a BTC/USDT fill) and
    to report a USDJPY position's P&L on a USD account. Whoever sees market data feeds it:
    `update("BNB", "USDT", price, ts)`. A rate answers only for times at or after it was seen (no
    look-ahead in a backtest) and, with `max_age_ns`, only while it is fresh; the inverse pair is
    derived (JPY/USD from USD/JPY). Rates are kept as exact fractions, so a conversion rounds
    once, half to even, at the end.

    A live bot has no market data for a fee's third coin (BNB): its `source(base, quote)` is
    asked on a miss (the venue's price now, or None), and the answer is kept as of the time
    asked for, so the next fills within `max_age_ns` reuse it and a later one refreshes it.
    """

    def __init__(self, max_age_ns: int | None = None,
                 source: Callable[[str, str], Decimal | None] | None = None) -> None:
        self.max_age_ns = max_age_ns
        self.source = source
        self._times: dict[tuple[str, str], list[int]] = {}
        self._rates: dict[tuple[str, str], list[Fraction]] = {}

    def update(self, base: str, quote: str, rate: Decimal | str | int, ts: int) -> None:
        """Record `1 base = rate quote` as of `ts` (times per pair must not go backwards)."""
        value = Fraction(Decimal(rate)) if not isinstance(rate, int) else Fraction(rate)
        if value <= 0:
            raise ConfigError("conversion_rate", f"{base}/{quote} rate must be positive, got {rate}")
        times = self._times.setdefault((base, quote), [])
        rates = self._rates.setdefault((base, quote), [])
        if times and ts < times[-1]:
            raise ConfigError("conversion_rate", f"{base}/{quote} rate at {_iso(ts)} is older than the last one")
        if times and ts == times[-1]:
            rates[-1] = value
            return
        times.append(ts)
        rates.append(value)

    def _lookup(self, base: str, quote: str, ts: int) -> Fraction | None:
        times = self._times.get((base, quote))
        if not times:
            return None
        i = bisect_right(times, ts) - 1
        if i < 0 or (self.max_age_ns is not None and ts - times[i] > self.max_age_ns):
            return None
        return self._rates[(base, quote)][i]

    def rate(self, base: str, quote: str, ts: int, purpose: str = "an amount") -> Fraction:
        """Units of `quote` one unit of `base` is worth at `ts`; MissingRate when unknown."""
        if base == quote:
            return Fraction(1)
        direct = self._lookup(base, quote, ts)
        if direct is not None:
            return direct
        inverse = self._lookup(quote, base, ts)
        if inverse is not None:
            return 1 / inverse
        fetched = self.source(base, quote) if self.source is not None else None
        if fetched is not None and fetched > 0:
            times = self._times.get((base, quote))
            if not times or ts >= times[-1]:  # kept unless an older time is asked for (a replay)
                self.update(base, quote, fetched, ts)
            return Fraction(fetched)
        raise MissingRate(base, quote, ts, purpose)

    def convert_raw(self, amount_raw: int, amount_dp: int, src: str, dst: str, ts: int, dst_dp: int,
                    purpose: str = "an amount") -> int:
        """`amount_raw` (units of 10**-amount_dp of `src`) in raw `dst` at dst_dp, half to even."""
        value = Fraction(amount_raw * 10**dst_dp, 10**amount_dp) * self.rate(src, dst, ts, purpose)
        return div_round_half_even(value.numerator, value.denominator)


def raw_price(price: float, dp: int, step: int) -> int:
    """A float price (a tick's bid, ask or last) onto the raw grid: nearest tick, half to even;
    0 for NaN (a quote with no such side)."""
    if price != price:
        return 0
    return div_round_half_even(round(price * 10**dp), step) * step
