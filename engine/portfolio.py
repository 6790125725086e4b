"""Positions and the account: FIFO lots, realized and unrealized P&L, fees, cash, equity.

Everything is booked in raw integers (see engine.money), so P&L is exact: a test can compute
it by hand and compare with ==. The identity that always holds, and is tested:

    equity == initial_cash + realized_pnl + unrealized_pnl

where realized P&L is net of all fees on closed quantity and unrealized P&L is the mark-to-market
of open lots net of the entry fees still attached to them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from engine.instrument import Instrument
from engine.money import Scales, div_round_half_even, raw_to_float


@dataclass(slots=True)
class Lot:
    """An open slice of a position, in FIFO order; its entry fee shrinks as it is closed."""

    qty: int          # raw, > 0
    price: int        # raw entry price
    fee: int          # raw cash: the part of the entry fee not yet attributed to a closed trade
    ts: int
    bar: int


@dataclass(frozen=True, slots=True)
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

    def unrealized_raw(self, mark_price_raw: int) -> int:
        """Mark-to-market of the open lots net of their remaining entry fees (raw cash)."""
        k = self.scales.notional_k
        direction = self.direction
        return sum((mark_price_raw - lot.price) * lot.qty * k * direction - lot.fee for lot in self.lots)

    def apply(self, side_sign: int, qty: int, price: int, fee: int, ts: int, bar: int) -> list[ClosedTrade]:
        """Book one fill: close lots FIFO against it, open a lot with what is left.

        Fees are attributed in proportion to quantity, each split rounded half-even against
        what remains, so the parts always add up to the whole fee.
        """
        closed: list[ClosedTrade] = []
        k = self.scales.notional_k
        fee_left, qty_left_of_fill = fee, qty
        remaining = qty
        while remaining > 0 and self.qty * side_sign < 0:
            lot = self.lots[0]
            take = min(lot.qty, remaining)
            entry_fee = lot.fee if take == lot.qty else div_round_half_even(lot.fee * take, lot.qty)
            exit_fee = fee_left if take == qty_left_of_fill else div_round_half_even(fee_left * take, qty_left_of_fill)
            lot_direction = -side_sign
            gross = (price - lot.price) * take * k * lot_direction
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
        self.qty_float = raw_to_float(self.qty * self.scales.multiplier, self.scales.qty_dp)
        self.units_float = raw_to_float(self.qty, self.scales.qty_dp)
        return closed


class Portfolio:
    """One account's cash and positions. Several bots may book into one portfolio later on
    (risk binds them together); a backtest uses one portfolio with one instrument."""

    def __init__(self, initial_cash: Decimal, cash_dp: int) -> None:
        self.cash_dp = cash_dp
        self.initial_cash_raw = int(initial_cash.scaleb(cash_dp))
        self.cash_raw = self.initial_cash_raw
        self.cash_float = raw_to_float(self.cash_raw, cash_dp)
        self.positions: dict[str, Position] = {}
        self.closed_trades: list[ClosedTrade] = []
        self.fees_raw = 0

    @classmethod
    def for_instrument(cls, initial_cash: Decimal, instrument: Instrument) -> "Portfolio":
        portfolio = cls(initial_cash, instrument.scales.cash_dp)
        portfolio.position(instrument)
        return portfolio

    def position(self, instrument: Instrument) -> Position:
        """The position in `instrument`, created flat on first use."""
        position = self.positions.get(instrument.symbol)
        if position is None:
            if instrument.scales.cash_dp != self.cash_dp:
                raise ValueError(f"{instrument.symbol}: cash scale {instrument.scales.cash_dp} != account {self.cash_dp}")
            position = Position(instrument, instrument.scales)
            self.positions[instrument.symbol] = position
        return position

    def apply_fill(self, instrument: Instrument, side_sign: int, qty: int, price: int, fee: int,
                   ts: int, bar: int = -1) -> list[ClosedTrade]:
        """Book a fill: cash moves by the exact notional and the fee; lots close FIFO."""
        position = self.position(instrument)
        self.cash_raw -= side_sign * qty * price * position.scales.notional_k + fee
        self.cash_float = raw_to_float(self.cash_raw, self.cash_dp)
        self.fees_raw += fee
        closed = position.apply(side_sign, qty, price, fee, ts, bar)
        self.closed_trades.extend(closed)
        return closed

    @property
    def cash(self) -> Decimal:
        return Decimal(self.cash_raw).scaleb(-self.cash_dp)

    @property
    def realized_pnl_raw(self) -> int:
        return sum(p.realized_pnl for p in self.positions.values())

    def unrealized_pnl_raw(self, marks: dict[str, int]) -> int:
        return sum(p.unrealized_raw(marks[s]) for s, p in self.positions.items() if p.qty != 0)

    def equity_raw(self, marks: dict[str, int]) -> int:
        """Exact equity at the given raw mark prices."""
        return self.cash_raw + sum(p.qty * marks[s] * p.scales.notional_k
                                   for s, p in self.positions.items() if p.qty != 0)

    def equity_float(self, symbol: str, close: float) -> float:
        """Equity marked at a float close, the formula the fast path uses too (parity)."""
        return self.cash_float + self.positions[symbol].qty_float * close
