"""Positions and the account: FIFO lots, realized and unrealized P&L, fees, cash, equity.

Everything is booked in raw integers (see engine.money), so P&L is exact: a test can compute
it by hand and compare with ==. The identity that always holds, and is tested:

    equity == initial_cash + realized_pnl + unrealized_pnl

where realized P&L is net of all fees (and swap) on closed quantity and unrealized P&L is the
mark-to-market of open lots net of the entry fees still attached to them.

Fees in any currency (issue 14). A fill's fee may be charged in the base asset (Binance takes it
from the coin bought) or in a third currency (BNB); `Fill.fee_currency` says so. A fee in the base
asset changes the quantity received, so the position equals the wallet: a buy of 0.01 BTC with a
0.00001 BTC fee books a position of 0.00999 that cost the full notional; its value at the fill
price is the fee reported in the trade's and the account's fees. A fee in a third currency is
valued in the account currency at the fill's time with the `ConversionRates` the portfolio is
given; the amount as charged is kept in `fees_native`. `valued()` writes that value into the
fill's `fee_raw`, so a stored fill replays without needing the rate again.

Margin (issue 14). An instrument with a leverage or a margin (Instrument.on_margin) moves no
notional: the account's cash (the balance) changes by realized P&L, fees and swap only, and the
open lots are marked to market on top (equity = cash + unrealized gross P&L). Each position ties
up margin at the current price (`margin_used_raw`), rounded up to the currency increment; free
margin is equity less margin used. When the instrument's quote currency is not the account's
(USDJPY on a USD account), P&L is converted at the rate of the time: realized P&L at the close's
rate, unrealized at the current one. Swap (overnight financing) is credited or charged per lot at
the venue's rollover (`charge_swap`) into cash and realized P&L.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction

from engine.charges import AccountCharge
from engine.errors import ConfigError
from engine.instrument import AssetClass, Instrument
from engine.money import (ConversionRates, MissingRate, Scales, div_round_half_even, from_raw, raw_to_float,
                          to_raw)
from engine.orders import Fill, quick_frozen_init


log = logging.getLogger(__name__)

# Instruments whose base is a currency of account, not a holding: a fee in it is cash (valued at the fill)
_UNHELD_BASE = frozenset({AssetClass.FX, AssetClass.CFD, AssetClass.FUTURE})


def holds_base(instrument: Instrument) -> bool:
    """True when buying the instrument puts its base asset in the account (spot crypto, a stock),
    so a fee in the base is coins taken from the position. Not so on margin, nor for an FX pair,
    a CFD or a future: their base (EUR of EURUSD) is only the unit the contract is counted in."""
    return not instrument.on_margin and instrument.asset_class not in _UNHELD_BASE


def _in_coins(instrument: Instrument, charge: AccountCharge) -> bool:
    """A charge in the base asset of an instrument whose base is held (holds_base: spot crypto, a
    stock): coins that leave or join the position. A charge in the base of an FX pair, a CFD or a
    future is cash in that currency (a swap in EUR on EURUSD), as a fee in it is."""
    return charge.asset == instrument.base and instrument.base != instrument.quote_currency and holds_base(instrument)


@dataclass(frozen=True, slots=True)
class PendingFee:
    """A fee booked without its value (no rate at the fill): what `value_pending_fees` values."""

    instrument: Instrument
    currency: str
    native_raw: int
    native_dp: int
    ts: int
    execution_id: str


@dataclass(slots=True)
class Lot:
    """An open slice of a position, in FIFO order; its entry fee shrinks as it is closed."""

    qty: int          # raw, > 0
    price: int        # raw entry price
    fee: int          # raw cash: the part of the entry fee not yet attributed to a closed trade
    ts: int
    bar: int


@quick_frozen_init
@dataclass(frozen=True)  # no slots: quick_frozen_init sets its instance dict in one call
class ClosedTrade:
    """A round trip (or the closed part of one): one lot closed by one fill."""

    symbol: str
    direction: int    # +1 long, -1 short
    qty: int          # raw
    entry_price: int  # raw
    exit_price: int   # raw
    entry_ts: int
    exit_ts: int
    entry_bar: int
    exit_bar: int
    fees: int         # raw cash, entry part + exit part
    pnl: int          # raw cash, net of fees


@dataclass(slots=True)
class Position:
    """Net position in one instrument, with its FIFO lots."""

    instrument: Instrument
    scales: Scales
    qty: int = 0                       # raw, signed
    lots: deque[Lot] = field(default_factory=deque)
    realized_pnl: int = 0              # raw cash, net of fees
    fees: int = 0                      # raw cash, all fees paid in this instrument
    qty_float: float = 0.0             # qty * multiplier as a float, kept for fast marking
    units_float: float = 0.0           # qty in units as a float, for the position curve
    swap: int = 0                      # raw cash, swap credited (+) or charged (-), in realized_pnl
    last_price: int = 0                # raw, the last fill or mark: the default price for margin

    @property
    def direction(self) -> int:
        return (self.qty > 0) - (self.qty < 0)

    @property
    def quantity(self) -> Decimal:
        return self.scales.qty(self.qty)

    @property
    def avg_price(self) -> Decimal | None:
        """Quantity-weighted entry price of the open lots."""
        total = sum(lot.qty for lot in self.lots)
        if total == 0:
            return None
        notional = sum(lot.qty * lot.price for lot in self.lots)
        return Decimal(notional) / Decimal(total) / Decimal(10) ** self.scales.price_dp

    def unrealized_gross_raw(self, mark_price_raw: int) -> int:
        """Mark-to-market of the open lots before fees, in the quote currency (raw cash)."""
        k = self.scales.notional_k
        return sum((mark_price_raw - lot.price) * lot.qty for lot in self.lots) * k * self.direction

    def unrealized_raw(self, mark_price_raw: int, convert: Callable[[int], int] | None = None) -> int:
        """Mark-to-market of the open lots net of their remaining entry fees (raw cash); `convert`
        takes the gross from the quote into the account currency (fees are already in it)."""
        gross = self.unrealized_gross_raw(mark_price_raw)
        if convert is not None:
            gross = convert(gross)
        return gross - sum(lot.fee for lot in self.lots)

    def apply(self, side_sign: int, qty: int, price: int, fee: int, ts: int, bar: int,
              convert: Callable[[int], int] | None = None) -> list[ClosedTrade]:
        """Book one fill: close lots FIFO against it, open a lot with what is left.

        Fees are attributed in proportion to quantity, each split rounded half-even against
        what remains, so the parts always add up to the whole fee. `convert` takes each closed
        trade's gross P&L from the quote into the account currency (a fixed rate: the close's).
        """
        closed: list[ClosedTrade] = []
        k = self.scales.notional_k
        fee_left, qty_left_of_fill = fee, qty
        remaining = qty
        while remaining > 0 and self.qty * side_sign < 0:
            lot = self.lots[0]
            take = lot.qty if lot.qty < remaining else remaining  # min(lot.qty, remaining), without the call
            entry_fee = lot.fee if take == lot.qty else div_round_half_even(lot.fee * take, lot.qty)
            exit_fee = fee_left if take == qty_left_of_fill else div_round_half_even(fee_left * take, qty_left_of_fill)
            lot_direction = -side_sign
            gross = (price - lot.price) * take * k * lot_direction
            if convert is not None:
                gross = convert(gross)
            pnl = gross - entry_fee - exit_fee
            closed.append(ClosedTrade(self.instrument.symbol, lot_direction, take, lot.price, price,
                                      lot.ts, ts, lot.bar, bar, entry_fee + exit_fee, pnl))
            self.realized_pnl += pnl
            lot.qty -= take
            lot.fee -= entry_fee
            fee_left -= exit_fee
            qty_left_of_fill -= take
            if lot.qty == 0:
                self.lots.popleft()
            self.qty += side_sign * take
            remaining -= take
        if remaining > 0:
            self.lots.append(Lot(remaining, price, fee_left, ts, bar))
            self.qty += side_sign * remaining
        self.fees += fee
        self.last_price = price
        s = self.scales
        scale = 10.0**s.qty_dp  # raw_to_float, inlined: this runs at every fill
        self.qty_float = float(self.qty * s.multiplier) / scale
        self.units_float = float(self.qty) / scale
        return closed


class Portfolio:
    """One account's cash and positions. Several bots may book into one portfolio later on
    (risk binds them together); a backtest uses one portfolio with one instrument.

    `currency` is the account currency ("" = the quote currency of its instruments, the cash
    account of a spot bot); `rates` values what is not in it (fees in BNB, a USDJPY position's
    P&L on a USD account); `stop_out_level` is the margin level (equity / margin used, 0.5 = 50 %)
    at or below which a venue closes margin positions."""

    def __init__(self, initial_cash: Decimal, cash_dp: int, currency: str = "",
                 rates: ConversionRates | None = None, stop_out_level: Decimal | None = None) -> None:
        if stop_out_level is not None and (not stop_out_level.is_finite() or stop_out_level < 0):
            raise ConfigError("stop_out_level", f"must be >= 0, got {stop_out_level}")
        self.cash_dp = cash_dp
        self.initial_cash_raw = int(initial_cash.scaleb(cash_dp))
        self.cash_raw = self.initial_cash_raw
        self.cash_float = raw_to_float(self.cash_raw, cash_dp)
        self.positions: dict[str, Position] = {}
        self.closed_trades: list[ClosedTrade] = []
        self.fees_raw = 0
        self.currency = currency
        self.rates = rates
        self.stop_out_level = stop_out_level
        self.fees_native: dict[str, Decimal] = {}  # fees charged outside the cash currency, as charged
        self.pending_fees: list[PendingFee] = []  # fees with no rate yet (book_fill), valued later
        self.swap_raw = 0

    @classmethod
    def for_instrument(cls, initial_cash: Decimal, instrument: Instrument, currency: str = "",
                       rates: ConversionRates | None = None,
                       stop_out_level: Decimal | None = None) -> "Portfolio":
        portfolio = cls(initial_cash, instrument.scales.cash_dp, currency, rates, stop_out_level)
        portfolio.position(instrument)
        return portfolio

    def position(self, instrument: Instrument) -> Position:
        """The position in `instrument`, created flat on first use."""
        position = self.positions.get(instrument.symbol)
        if position is None:
            if instrument.scales.cash_dp != self.cash_dp:
                raise ValueError(f"{instrument.symbol}: cash scale {instrument.scales.cash_dp} "
                                 f"!= account {self.cash_dp}")
            if not self.currency:
                self.currency = instrument.quote_currency
            elif instrument.quote_currency != self.currency and not instrument.on_margin:
                raise ConfigError("quote_currency", f"{instrument.symbol} is quoted in {instrument.quote_currency}, "
                                  f"the account is in {self.currency}: only margin instruments convert P&L")
            position = Position(instrument, instrument.scales)
            self.positions[instrument.symbol] = position
        return position

    # -- fees in any currency ------------------------------------------------------------------
    # A live bot books a fill whose fee has no rate yet and values the fee later (book_fill); a
    # backtest (False) refuses it: there a missing rate is missing data, said before anything runs.
    defer_unvalued_fees = False

    def valued(self, instrument: Instrument, fill: Fill) -> Fill:
        """The fill with `fee_raw` holding its fee's value in the account currency at the fill's
        time (a fill whose fee is in the cash currency, or already valued, comes back as it is;
        so does one whose fee has no rate yet when `defer_unvalued_fees`: book_fill keeps it
        pending). Raises ConfigError naming the field (a missing rate otherwise, a fee off the
        quantity grid, one not less than the coins bought) before anything is booked."""
        if not fill.fee_currency or fill.fee_raw or not fill.fee_native_raw:
            return fill
        value = self._fee_value(instrument, fill)
        return fill if value is None else replace(fill, fee_raw=value)

    def _fee_value(self, instrument: Instrument, fill: Fill) -> int | None:
        """A fee's value in raw account cash at the fill's time; None when it needs a rate the
        portfolio does not have (yet).

        A fee in the base currency is coins taken from the position only where the base is held
        (`holds_base`: spot). On a CFD or FX margin instrument the base is a currency of account,
        not a holding (an MT5 account in EUR trading EURUSD, in USD trading USDJPY): such a fee
        is cash, worth the fee times the fill's price in the quote currency, exact on the cash
        grid (half to even only when it is finer)."""
        if fill.fee_native_raw < 0 or fill.fee_native_dp < 0:
            raise ConfigError("fee_native_raw", f"a fee must be >= 0 on a grid of >= 0 decimals, got "
                              f"{fill.fee_native_raw} at {fill.fee_native_dp}")
        self.position(instrument)  # settles the account currency
        s = instrument.scales
        currency = fill.fee_currency
        if currency == instrument.base and holds_base(instrument):
            fee_qty = self.base_fee_qty(instrument, fill)
            if fee_qty >= fill.qty_raw and fill.side.sign > 0:
                raise ConfigError("fee_native_raw", f"a fee of {fill.fee_native} {currency} is not less "
                                  f"than the {fill.qty} bought")
            return fee_qty * fill.price_raw * s.notional_k
        if currency == self.currency:
            return _rescale(fill.fee_native_raw, fill.fee_native_dp, self.cash_dp)
        if currency == instrument.base and self.currency == instrument.quote_currency:
            # 1 base = the fill price in the quote: the fee at that price, on the cash grid
            return self._base_in_cash(fill.fee_native_raw, fill.fee_native_dp, fill.price_raw, s)
        if self.rates is None:
            if self.defer_unvalued_fees:
                return None
            raise ConfigError("conversion_rate", f"no {currency}/{self.currency} rate at "
                              f"{_iso(fill.ts)} to value a fee (the portfolio has no rates)")
        try:
            return self.rates.convert_raw(fill.fee_native_raw, fill.fee_native_dp, currency, self.currency,
                                          fill.ts, self.cash_dp, "a fee")
        except MissingRate:
            if self.defer_unvalued_fees:
                return None
            raise

    def base_fee_qty(self, instrument: Instrument, fill: Fill) -> int:
        """A fee charged in the base asset of a held base (holds_base), as raw quantity on the
        instrument's quantity scale; 0 for any other fee (it is cash, valued by `valued`)."""
        if fill.fee_currency != instrument.base or not fill.fee_native_raw or not holds_base(instrument):
            return 0
        qty_dp = instrument.scales.qty_dp
        if fill.fee_native_dp > qty_dp and fill.fee_native_raw % 10 ** (fill.fee_native_dp - qty_dp):
            raise ConfigError("fee_native_dp", f"a fee of {fill.fee_native} {fill.fee_currency} is finer than the "
                              f"{instrument.symbol} quantity scale ({qty_dp} decimals): the position could "
                              "not equal the wallet (give the instrument the asset's decimals, asset_dp)")
        return _rescale(fill.fee_native_raw, fill.fee_native_dp, qty_dp)

    def book_fill(self, instrument: Instrument, fill: Fill, bar: int = -1) -> list[ClosedTrade]:
        """Book a venue's fill with its fee in whatever currency it was charged (module docstring).

        With `defer_unvalued_fees` (live bots), a fee in a third currency with no rate yet (the
        first BNB fee before any BNB price) does not stop the booking: the position and cash
        move exactly, the fee is kept in `fees_native` and in `pending_fees`, and
        `value_pending_fees` books its value once a rate is known (tried again at every fill)."""
        if not fill.fee_currency:  # the fee is in the cash currency (every simulated fill)
            return self.apply_fill(instrument, fill.side.sign, fill.qty_raw, fill.price_raw, fill.fee_raw,
                                   fill.ts, bar)
        pending = False
        if not fill.fee_raw and fill.fee_native_raw:
            value = self._fee_value(instrument, fill)
            pending = value is None
            if value:
                fill = replace(fill, fee_raw=value)
        base_fee = self.base_fee_qty(instrument, fill)
        closed = self.apply_fill(instrument, fill.side.sign, fill.qty_raw, fill.price_raw, fill.fee_raw,
                                 fill.ts, bar, base_fee)
        if fill.fee_native_raw:
            self.fees_native[fill.fee_currency] = self.fees_native.get(fill.fee_currency, Decimal(0)) + fill.fee_native
        if pending:
            self.pending_fees.append(PendingFee(instrument, fill.fee_currency, fill.fee_native_raw,
                                                fill.fee_native_dp, fill.ts, fill.execution_id))
            log.warning("fill %s booked; its fee of %s %s is not valued yet (no %s/%s rate): kept in fees_native, "
                        "valued when a rate arrives", fill.execution_id, fill.fee_native, fill.fee_currency,
                        fill.fee_currency, self.currency)
        elif self.pending_fees:
            self.value_pending_fees()
        return closed

    def value_pending_fees(self) -> int:
        """Book the fees kept pending for want of a rate whose rate is now known, into cash, the
        fees and the position's realized P&L, so equity == initial cash + realized + unrealized
        still holds. The rate is the rates' source's price now (a live bot), else the latest one
        seen: the rate of the fill's time was never known. Returns the raw value booked."""
        rates = self.rates
        if not self.pending_fees or rates is None:
            return 0
        booked, left = 0, []
        for fee in self.pending_fees:
            value = None
            for ts in (fee.ts,) if rates.source is not None else (fee.ts, _LATEST):
                try:
                    value = rates.convert_raw(fee.native_raw, fee.native_dp, fee.currency, self.currency, ts,
                                              self.cash_dp, "a fee")
                    break
                except MissingRate:
                    continue
            if value is None:
                left.append(fee)
                continue
            position = self.position(fee.instrument)
            position.fees += value
            position.realized_pnl -= value
            self.fees_raw += value
            self.cash_raw -= value
            booked += value
            log.info("fee of fill %s valued: %s %s = %s %s", fee.execution_id, from_raw(fee.native_raw, fee.native_dp),
                     fee.currency, from_raw(value, self.cash_dp), self.currency)
        self.pending_fees = left
        if booked:
            self.cash_float = raw_to_float(self.cash_raw, self.cash_dp)
        return booked

    # -- booking ---------------------------------------------------------------------------------
    def apply_fill(self, instrument: Instrument, side_sign: int, qty: int, price: int, fee: int,
                   ts: int, bar: int = -1, base_fee_qty: int = 0) -> list[ClosedTrade]:
        """Book a fill: cash moves by the exact notional and the fee (on margin: by realized P&L and
        the fee only); lots close FIFO. `base_fee_qty` is a fee taken in the base asset (raw
        quantity): the position moves by what the wallet received (a buy) or gave (a sell), and
        `fee` then holds that quantity's value."""
        position = self.positions.get(instrument.symbol)
        if position is None:
            position = self.position(instrument)
        moved = qty - side_sign * base_fee_qty
        if moved <= 0:
            raise ConfigError("fee_native_raw", f"a fee of {position.scales.qty(base_fee_qty)} {instrument.base} "
                              f"is not less than the {position.scales.qty(qty)} filled")
        if instrument.on_margin:
            convert = self._converter(instrument, ts, "P&L")  # raises before anything is booked
            closed = position.apply(side_sign, moved, price, fee, ts, bar, convert)
            self.cash_raw += sum(t.pnl + t.fees for t in closed) - fee
        else:
            self.cash_raw -= side_sign * moved * price * position.scales.notional_k + fee
            closed = position.apply(side_sign, moved, price, fee, ts, bar)
        self.cash_float = float(self.cash_raw) / 10.0**self.cash_dp  # raw_to_float, inlined (every fill)
        self.fees_raw += fee
        if closed:
            self.closed_trades.extend(closed)
        return closed

    def charge_swap(self, instrument: Instrument, nights: int, ts: int) -> int:
        """Overnight financing for `nights` rollovers on the open position: swap_long or
        swap_short per lot per night (account currency, + credits), rounded half-even to the
        currency increment, into cash and realized P&L. Returns the raw amount."""
        position = self.positions.get(instrument.symbol)
        if position is None or position.qty == 0 or nights <= 0:
            return 0
        s = position.scales
        rate = instrument.swap_long if position.qty > 0 else instrument.swap_short
        if not rate:
            return 0
        exact = Fraction(rate) * Fraction(abs(position.qty), 10**s.qty_dp) * nights * 10**self.cash_dp
        amount = div_round_half_even(exact.numerator, exact.denominator * s.fee_step) * s.fee_step
        position.swap += amount
        position.realized_pnl += amount
        self.swap_raw += amount
        self.cash_raw += amount
        self.cash_float = raw_to_float(self.cash_raw, self.cash_dp)
        return amount

    # -- account-level charges (engine.charges) ------------------------------------------------
    def charge_value(self, instrument: Instrument, charge: AccountCharge, price_raw: int | None = None) -> int:
        """What `charge` is worth in raw account cash (signed), checked before anything is booked:
        in the cash currency exactly (an amount finer than the cash grid is refused, never
        rounded away); in another currency converted at the charge's time as fees are (half to
        even); in the base asset, the quantity at `price_raw` (None: the position's last price):
        coins where the base is held (holds_base), else cash in that currency (the EUR of EURUSD).
        A non-zero charge worth 0 on the cash grid is refused: it would vanish silently."""
        self.position(instrument)  # settles the account currency
        s = instrument.scales
        amount = charge.amount
        if _in_coins(instrument, charge):
            qty = self._charge_qty(instrument, charge)
            value = qty * self._charge_price(instrument, charge, price_raw, bool(qty)) * s.notional_k
        elif (charge.asset == instrument.base and charge.asset != self.currency
              and self.currency == instrument.quote_currency):
            # a currency of account (EUR of EURUSD: holds_base is False), not coins held: cash, worth
            # the amount at the price in the quote currency, as a fee in it is (_fee_value)
            price = self._charge_price(instrument, charge, price_raw, bool(amount))
            dp = max(0, -int(amount.as_tuple().exponent))  # type: ignore[arg-type]
            value = self._base_in_cash(int(amount.scaleb(dp)), dp, price, s)
        elif charge.asset == self.currency:
            scaled = amount.scaleb(self.cash_dp)
            if scaled != scaled.to_integral_value():
                raise ConfigError("amount", f"charge {charge.charge_id}: {amount} {charge.asset} is finer than the "
                                  f"account's cash grid ({self.cash_dp} decimals)")
            value = int(scaled)
        else:
            if self.rates is None:
                raise ConfigError("conversion_rate", f"no {charge.asset}/{self.currency} rate at {_iso(charge.ts)} "
                                  f"to value charge {charge.charge_id} (the portfolio has no rates)")
            exponent = int(amount.as_tuple().exponent)  # type: ignore[arg-type]
            dp = max(0, -exponent)
            value = self.rates.convert_raw(int(amount.scaleb(dp)), dp, charge.asset, self.currency, charge.ts,
                                           self.cash_dp, "a charge")
        if amount and not value:
            raise ConfigError("amount", f"charge {charge.charge_id}: {amount} {charge.asset} is worth 0 on the "
                              f"{self.currency} cash grid ({self.cash_dp} decimals): it would vanish from the books")
        return value

    def _charge_price(self, instrument: Instrument, charge: AccountCharge, price_raw: int | None,
                      needed: bool) -> int:
        """The raw price a base-asset charge is valued at: `price_raw`, else the position's last
        price; refused when `needed` and there is none yet."""
        price = self.positions[instrument.symbol].last_price if price_raw is None else price_raw
        if price <= 0 and needed:
            raise ConfigError("price", f"charge {charge.charge_id}: {charge.amount} {charge.asset} needs a price to "
                              "be valued (the position has none yet)")
        return price

    def _base_in_cash(self, raw: int, dp: int, price_raw: int, s: Scales) -> int:
        """An amount of an unheld base currency (raw at dp decimals) in raw account cash, at a raw
        price in the quote (the account's currency): exact on the cash grid, half to even only where
        it is finer. Fees and charges in the base value alike."""
        return _rescale(raw * price_raw, dp + s.price_dp, self.cash_dp)

    def _charge_qty(self, instrument: Instrument, charge: AccountCharge) -> int:
        """A base-asset charge as signed raw quantity; refused off the quantity grid (the position
        could not equal the wallet), on a margin instrument (no coins are held), or taking more
        than a long position holds."""
        if instrument.on_margin:
            raise ConfigError("asset", f"charge {charge.charge_id}: a margin position holds no {charge.asset} "
                              "to charge (a margin charge is in a currency)")
        s = instrument.scales
        scaled = charge.amount.scaleb(s.qty_dp)
        if scaled != scaled.to_integral_value():
            raise ConfigError("amount", f"charge {charge.charge_id}: {charge.amount} {charge.asset} is finer than "
                              f"the {instrument.symbol} quantity scale ({s.qty_dp} decimals): give the instrument "
                              "the asset's decimals (asset_dp)")
        qty = int(scaled)
        held = self.positions[instrument.symbol].qty
        if qty < 0 and held + qty < 0:
            raise ConfigError("amount", f"charge {charge.charge_id}: {charge.amount} {charge.asset} is more than "
                              f"the {s.qty(held)} held")
        return qty

    def book_charge(self, instrument: Instrument, charge: AccountCharge, price_raw: int | None = None,
                    value_raw: int | None = None) -> int:
        """Book an account-level charge (funding, a fee posted apart from its fill, swap,
        interest) on `instrument`'s position; returns its raw value in account cash (signed).

        Cash and the position's realized P&L move by the value (charge_value); a FEE debit is
        also counted in the fees, a SWAP in the swap. A charge in the base asset of a held base
        (holds_base: spot) moves no cash: the coins leave (or join) the position, FIFO, as a
        disposal (acquisition) at `price_raw` worth the value, so the position equals the wallet
        and equity == initial cash + realized + unrealized still holds exactly. Nothing is booked
        when it raises. `value_raw` replays a stored charge at the value it was booked at (a
        restart has no rates of then)."""
        value = self.charge_value(instrument, charge, price_raw) if value_raw is None else value_raw
        position = self.positions[instrument.symbol]
        if _in_coins(instrument, charge):
            qty = self._charge_qty(instrument, charge)
            price = position.last_price if price_raw is None else price_raw
            last = position.last_price
            if qty:
                # the coins change hands at `price` for nothing: the lots' P&L against that price
                # is realized (as a sale / purchase would), and the coins' value is the charge
                position.apply(1 if qty > 0 else -1, abs(qty), price, 0, charge.ts, -1)
                position.last_price = last or price
        else:
            self.cash_raw += value
            self.cash_float = raw_to_float(self.cash_raw, self.cash_dp)
        position.realized_pnl += value
        if charge.kind == "FEE" and value < 0:
            position.fees -= value
            self.fees_raw -= value
        elif charge.kind == "SWAP":
            position.swap += value
            self.swap_raw += value
        return value

    # -- conversion --------------------------------------------------------------------------
    def _rate(self, instrument: Instrument, ts: int | None, purpose: str) -> Fraction | None:
        """The quote -> account currency rate at `ts` (None: the latest); None when they agree."""
        if instrument.quote_currency == self.currency or not self.currency:
            return None
        if self.rates is None:
            raise ConfigError("conversion_rate", f"no {instrument.quote_currency}/{self.currency} rate to value "
                              f"{purpose} (the portfolio has no rates)")
        return self.rates.rate(instrument.quote_currency, self.currency, _LATEST if ts is None else ts, purpose)

    def _converter(self, instrument: Instrument, ts: int | None, purpose: str) -> Callable[[int], int] | None:
        rate = self._rate(instrument, ts, purpose)
        if rate is None:
            return None
        num, den = rate.numerator, rate.denominator * instrument.scales.fee_step
        step = instrument.scales.fee_step
        return lambda raw: div_round_half_even(raw * num, den) * step  # half-even to the currency increment

    # -- reading ---------------------------------------------------------------------------------
    @property
    def cash(self) -> Decimal:
        return Decimal(self.cash_raw).scaleb(-self.cash_dp)

    @property
    def realized_pnl_raw(self) -> int:
        return sum(p.realized_pnl for p in self.positions.values())

    def _mark(self, symbol: str, marks: dict[str, int] | None) -> int:
        if marks is not None and symbol in marks:
            return marks[symbol]
        return self.positions[symbol].last_price

    def unrealized_pnl_raw(self, marks: dict[str, int], ts: int | None = None) -> int:
        total = 0
        for s, p in self.positions.items():
            if p.qty != 0:
                convert = self._converter(p.instrument, ts, "P&L") if p.instrument.on_margin else None
                total += p.unrealized_raw(self._mark(s, marks), convert)
        return total

    def equity_raw(self, marks: dict[str, int] | None = None, ts: int | None = None) -> int:
        """Exact equity at the given raw mark prices (a missing mark: the position's last price);
        conversions at `ts` (None: the latest rate)."""
        total = self.cash_raw
        for s, p in self.positions.items():
            if p.qty == 0:
                continue
            mark = self._mark(s, marks)
            if p.instrument.on_margin:
                gross = p.unrealized_gross_raw(mark)
                convert = self._converter(p.instrument, ts, "P&L")
                total += gross if convert is None else convert(gross)
            else:
                total += p.qty * mark * p.scales.notional_k
        return total

    def equity_float(self, symbol: str, close: float) -> float:
        """Equity marked at a float close, the formula the fast path uses too (parity)."""
        return self.cash_float + self.positions[symbol].qty_float * close

    # -- margin ----------------------------------------------------------------------------------
    def margin_for(self, instrument: Instrument, qty: int, price: int, ts: int | None = None) -> int:
        """Initial margin for |qty| (raw) at `price` (raw), in raw account cash, rounded up to
        the currency increment (the broker's side). 0 for an instrument not on margin."""
        if not instrument.on_margin or qty == 0:
            return 0
        s = instrument.scales
        fraction = instrument.margin_fraction()
        if fraction is None:  # a fixed margin per lot, in the quote currency
            per_lot = to_raw(instrument.margin_per_lot, self.cash_dp)  # type: ignore[arg-type]
            exact = Fraction(abs(qty) * per_lot, 10**s.qty_dp)
        else:
            num, den = fraction
            exact = Fraction(abs(qty) * price * s.notional_k * num, den)
        rate = self._rate(instrument, ts, "margin")
        if rate is not None:
            exact *= rate
        units = -((-exact.numerator) // (exact.denominator * s.fee_step))  # ceil in currency increments
        return units * s.fee_step

    def exposure_for(self, instrument: Instrument, qty: int, price: int, ts: int | None = None) -> Fraction:
        """The notional of |qty| (raw) at `price` (raw) in raw account cash, exact (the quote
        currency converted at `ts` when it is not the account's): what an equity fraction sized
        as exposure (Instrument.fraction_sizing "notional") is measured against."""
        exact = Fraction(abs(qty) * price * instrument.scales.notional_k)
        rate = self._rate(instrument, ts, "exposure") if instrument.on_margin else None
        return exact if rate is None else exact * rate

    def margin_used_raw(self, marks: dict[str, int] | None = None, ts: int | None = None) -> int:
        return sum(self.margin_for(p.instrument, p.qty, self._mark(s, marks), ts)
                   for s, p in self.positions.items() if p.qty != 0 and p.instrument.on_margin)

    def free_margin_raw(self, marks: dict[str, int] | None = None, ts: int | None = None) -> int:
        """Equity less margin used: what a new position's margin must fit in."""
        return self.equity_raw(marks, ts) - self.margin_used_raw(marks, ts)

    def margin_level(self, marks: dict[str, int] | None = None, ts: int | None = None) -> Fraction | None:
        """Equity / margin used (None with no margin used)."""
        used = self.margin_used_raw(marks, ts)
        return None if used == 0 else Fraction(self.equity_raw(marks, ts), used)

    def stopped_out(self, marks: dict[str, int] | None = None, ts: int | None = None) -> bool:
        """True when the margin level is at or below the stop-out level."""
        if self.stop_out_level is None:
            return False
        level = self.margin_level(marks, ts)
        return level is not None and level <= Fraction(self.stop_out_level)


_LATEST = 2**63 - 1  # "now" for a rate lookup: the latest rate seen


def _rescale(raw: int, dp: int, to_dp: int) -> int:
    """A raw amount at dp decimals on the to_dp grid (half to even when it is finer)."""
    if to_dp >= dp:
        return raw * 10 ** (to_dp - dp)
    return div_round_half_even(raw, 10 ** (dp - to_dp))


def _iso(ts: int) -> str:
    from engine.money import _iso as iso
    return iso(ts)
