"""Pre-trade risk: one file of named checks, each denial a reason code (DESIGN.md §4).

Checks run in this order and the first failure denies the order (it never reaches a venue):
  trading state (HALTED, REDUCING) -> symbol allowed -> price/qty grid and instrument min/max ->
  max order qty -> max order notional -> price band vs last -> max position -> gross exposure ->
  buying power (capital allocation, cash) -> open orders -> order rate -> market hours ->
  the account's limits (state, gross exposure, open orders), which bind all its bots together.

States: ACTIVE; REDUCING lets through only orders that shrink a position; HALTED lets nothing
through. Monitors switch them: the daily loss limit sets REDUCING (a new UTC day restores
ACTIVE); max drawdown from the equity high-water mark sets HALTED, which only a person undoes
(`resume()`). The kill switch cancels all orders, flattens all positions and halts, for one bot
or for the whole account. Limits come from YAML validated by pydantic: a bad limit is refused
with its dotted field name.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import to_raw
from engine.orders import Order, OrderSide

if TYPE_CHECKING:
    from engine.oms import OrderManager
    from engine.portfolio import Portfolio

DAY_NS = 86_400_000_000_000
SECOND_NS = 1_000_000_000


class RiskReason(StrEnum):
    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    PRICE_OFF_GRID = "PRICE_OFF_GRID"
    QTY_OFF_GRID = "QTY_OFF_GRID"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    MAX_ORDER_QTY = "MAX_ORDER_QTY"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    NO_PRICE = "NO_PRICE"
    PRICE_BAND = "PRICE_BAND"
    MAX_POSITION = "MAX_POSITION"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    BUYING_POWER = "BUYING_POWER"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    ORDER_RATE = "ORDER_RATE"
    MARKET_CLOSED = "MARKET_CLOSED"
    ACCOUNT_HALTED = "ACCOUNT:TRADING_HALTED"
    ACCOUNT_REDUCING_ONLY = "ACCOUNT:REDUCING_ONLY"
    ACCOUNT_MAX_GROSS_EXPOSURE = "ACCOUNT:MAX_GROSS_EXPOSURE"
    ACCOUNT_MAX_OPEN_ORDERS = "ACCOUNT:MAX_OPEN_ORDERS"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


Positive = Field(default=None, gt=0)


class RiskLimits(BaseModel):
    """One bot's limits; None means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_symbols: list[str] | None = None
    max_order_qty: Decimal | None = Positive
    max_order_notional: Decimal | None = Positive
    price_band_pct: Decimal | None = Field(default=None, gt=0, le=100)
    max_position_qty: Decimal | None = Positive
    max_gross_exposure: Decimal | None = Positive
    max_open_orders: int | None = Field(default=None, ge=1)
    max_orders_per_second: int | None = Field(default=None, ge=1)
    market_hours: list[str] | None = None
    daily_loss_limit: Decimal | None = Positive
    max_drawdown_pct: Decimal | None = Field(default=None, gt=0, le=100)
    capital_allocation: Decimal | None = Positive

    @field_validator("market_hours")
    @classmethod
    def _windows(cls, windows: list[str] | None) -> list[str] | None:
        for window in windows or []:
            try:
                start, end = (datetime.strptime(part.strip(), "%H:%M") for part in window.split("-"))
            except ValueError:
                raise ValueError(f"{window!r} is not HH:MM-HH:MM") from None
            if start >= end:
                raise ValueError(f"{window!r} ends before it starts")
        return windows


class AccountLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_gross_exposure: Decimal | None = Positive
    daily_loss_limit: Decimal | None = Positive
    max_drawdown_pct: Decimal | None = Field(default=None, gt=0, le=100)
    max_open_orders: int | None = Field(default=None, ge=1)


class RiskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account: AccountLimits = AccountLimits()
    default_bot: RiskLimits = RiskLimits()
    bots: dict[str, RiskLimits] = Field(default_factory=dict)

    def for_bot(self, bot_id: str) -> RiskLimits:
        return self.bots.get(bot_id, self.default_bot)


def load_risk_config(path: str | Path) -> RiskConfig:
    """Read and validate a risk YAML; any problem is a ConfigError naming the dotted field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError("risk", f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError("risk", f"{path}: not valid YAML: {exc}") from None
    try:
        return RiskConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(".".join(str(p) for p in err["loc"]) or "risk", err["msg"].removeprefix("Value error, ")) from None


@dataclass(frozen=True, slots=True)
class StateChange:
    ts: int
    scope: str          # a bot id, or "account"
    old: TradingState
    new: TradingState
    reason: str


class EquityMonitor:
    """Start-of-day equity and the high-water mark; says when a loss limit is crossed."""

    def __init__(self, daily_loss_limit: Decimal | None, max_drawdown_pct: Decimal | None) -> None:
        self.daily_loss_limit = daily_loss_limit
        self.max_drawdown_pct = max_drawdown_pct
        self.day = -1
        self.day_start = Decimal(0)
        self.high_water = Decimal(0)

    def update(self, equity: Decimal, ts: int) -> tuple[bool, str | None]:
        """(new_day, breach) where breach is "MAX_DRAWDOWN", "DAILY_LOSS" or None."""
        day = ts // DAY_NS
        new_day = day != self.day
        if new_day:
            self.day, self.day_start = day, equity
        self.high_water = max(self.high_water, equity)
        if self.max_drawdown_pct is not None and self.high_water > 0:
            if (self.high_water - equity) * 100 >= self.max_drawdown_pct * self.high_water:
                return new_day, "MAX_DRAWDOWN"
        if self.daily_loss_limit is not None and self.day_start - equity >= self.daily_loss_limit:
            return new_day, "DAILY_LOSS"
        return new_day, None


class _Stateful:
    """Trading state with the monitor rules shared by a bot and its account."""

    scope = ""

    def __init__(self, monitor: EquityMonitor) -> None:
        self.state = TradingState.ACTIVE
        self.monitor = monitor
        self.state_changes: list[StateChange] = []
        self.listeners: list[Callable[[StateChange], None]] = []
        self._reducing_for_daily_loss = False

    def set_state(self, new: TradingState, ts: int, reason: str) -> None:
        if new is self.state:
            return
        change = StateChange(ts, self.scope, self.state, new, reason)
        self.state = new
        self._reducing_for_daily_loss = new is TradingState.REDUCING and reason == "DAILY_LOSS"
        self.state_changes.append(change)
        for listener in self.listeners:
            listener(change)

    def on_equity(self, equity: Decimal, ts: int) -> None:
        new_day, breach = self.monitor.update(equity, ts)
        if new_day and self._reducing_for_daily_loss and breach is None:
            self.set_state(TradingState.ACTIVE, ts, "NEW_DAY")
        if breach == "MAX_DRAWDOWN":
            self.set_state(TradingState.HALTED, ts, breach)
        elif breach == "DAILY_LOSS" and self.state is TradingState.ACTIVE:
            self.set_state(TradingState.REDUCING, ts, breach)

    def resume(self, ts: int, who: str) -> None:
        """A person's decision to trade again after a halt."""
        self.set_state(TradingState.ACTIVE, ts, f"RESUMED_BY:{who}")


class AccountRisk(_Stateful):
    """What the bots of one account share: its state, its limits, its equity monitor."""

    scope = "account"

    def __init__(self, limits: AccountLimits = AccountLimits()) -> None:
        super().__init__(EquityMonitor(limits.daily_loss_limit, limits.max_drawdown_pct))
        self.limits = limits
        self.engines: list[RiskEngine] = []

    def gross_exposure(self, extra: Decimal = Decimal(0), changed: "RiskEngine | None" = None) -> Decimal:
        return sum((e.gross_exposure() for e in self.engines if e is not changed), Decimal(0)) + extra

    def open_order_count(self) -> int:
        return sum(e.open_order_count() for e in self.engines)


class RiskEngine(_Stateful):
    """The RiskGate of one bot. `bind(oms)` gives it the orders and books it checks against."""

    def __init__(self, bot_id: str, limits: RiskLimits, account: AccountRisk, clock: Any,
                 instruments: dict[str, Instrument], last_price: Callable[[str], Decimal | None]) -> None:
        super().__init__(EquityMonitor(limits.daily_loss_limit, limits.max_drawdown_pct))
        self.scope = bot_id
        self.bot_id = bot_id
        self.limits = limits
        self.account = account
        self.clock = clock
        self.instruments = instruments
        self.last_price = last_price
        self.oms: OrderManager | None = None
        self._recent: deque[int] = deque()
        self._windows = [tuple(datetime.strptime(p.strip(), "%H:%M").time() for p in w.split("-"))
                         for w in limits.market_hours or []]
        account.engines.append(self)

    def bind(self, oms: "OrderManager") -> None:
        self.oms = oms

    # -- the gate ----------------------------------------------------------------------------------
    def check(self, order: Order, portfolio: "Portfolio") -> str | None:
        instrument = self.instruments.get(order.symbol)
        if instrument is None:
            return RiskReason.SYMBOL_NOT_ALLOWED
        position = self._position_qty(portfolio, instrument)
        qty = self._order_qty(order, portfolio, instrument)
        reduces = qty is not None and _reduces(order.side, qty, position)
        price = self._reference_price(order)
        for check in (self._state, self._symbol, self._grid, self._order_size, self._price_band,
                      self._position, self._exposure, self._buying_power, self._open_orders,
                      self._rate, self._market_hours, self._account):
            reason = check(order, instrument, qty, position, price, reduces, portfolio)
            if reason is not None:
                return reason
        self._recent.append(self.clock.now_ns())
        return None

    # Each check: (order, instrument, qty, position, price, reduces, portfolio) -> reason or None.
    def _state(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        if self.state is TradingState.HALTED:
            return RiskReason.TRADING_HALTED
        if self.state is TradingState.REDUCING and not reduces:
            return RiskReason.REDUCING_ONLY
        return None

    def _symbol(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        allowed = self.limits.allowed_symbols
        return RiskReason.SYMBOL_NOT_ALLOWED if allowed is not None and order.symbol not in allowed else None

    def _grid(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        s = instrument.scales
        for p in (order.limit_price, order.stop_price):
            if p is not None and not _on_grid(p, s.price_dp, s.price_step):
                return RiskReason.PRICE_OFF_GRID
        if order.qty is not None:
            if not _on_grid(order.qty, s.qty_dp, s.qty_step):
                return RiskReason.QTY_OFF_GRID
            if order.qty < instrument.min_qty or order.qty < instrument.size_increment:
                return RiskReason.QTY_BELOW_MIN
            if instrument.max_qty is not None and order.qty > instrument.max_qty:
                return RiskReason.QTY_ABOVE_MAX
        return None

    def _order_size(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        limits = self.limits
        if qty is None:
            return RiskReason.NO_PRICE if limits.max_order_notional is not None else None
        if limits.max_order_qty is not None and qty > limits.max_order_qty:
            return RiskReason.MAX_ORDER_QTY
        if limits.max_order_notional is not None:
            if price is None:
                return RiskReason.NO_PRICE
            if qty * price * instrument.multiplier > limits.max_order_notional:
                return RiskReason.MAX_ORDER_NOTIONAL
        return None

    def _price_band(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        band = self.limits.price_band_pct
        if band is None:
            return None
        last = self.last_price(order.symbol)
        if last is None:
            return RiskReason.NO_PRICE
        for p in (order.limit_price, order.stop_price):
            if p is not None and abs(p - last) * 100 > band * last:
                return RiskReason.PRICE_BAND
        return None

    def _position(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        cap = self.limits.max_position_qty
        if cap is None or reduces or qty is None:
            return None
        after = position + (qty if order.side is OrderSide.BUY else -qty)
        return RiskReason.MAX_POSITION if abs(after) > cap else None

    def _exposure(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        cap = self.limits.max_gross_exposure
        if cap is None or reduces or qty is None:
            return None
        if price is None:
            return RiskReason.NO_PRICE
        return RiskReason.MAX_GROSS_EXPOSURE if self._exposure_after(order, qty, price, instrument) > cap else None

    def _buying_power(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        if reduces or qty is None or price is None:
            return None
        notional = qty * price * instrument.multiplier
        allocation = self.limits.capital_allocation
        if allocation is not None and self._exposure_after(order, qty, price, instrument) > allocation:
            return RiskReason.BUYING_POWER
        if order.side is OrderSide.BUY and notional > portfolio.cash:
            return RiskReason.BUYING_POWER
        return None

    def _open_orders(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        cap = self.limits.max_open_orders
        return RiskReason.MAX_OPEN_ORDERS if cap is not None and self.open_order_count() >= cap else None

    def _rate(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        cap = self.limits.max_orders_per_second
        if cap is None:
            return None
        now = self.clock.now_ns()
        while self._recent and self._recent[0] <= now - SECOND_NS:
            self._recent.popleft()
        return RiskReason.ORDER_RATE if len(self._recent) >= cap else None

    def _market_hours(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        if not self._windows:
            return None
        now = datetime.fromtimestamp(self.clock.now_ns() / 1e9, tz=timezone.utc).time()
        return None if any(start <= now < end for start, end in self._windows) else RiskReason.MARKET_CLOSED

    def _account(self, order, instrument, qty, position, price, reduces, portfolio):  # type: ignore[no-untyped-def]
        account = self.account
        if account.state is TradingState.HALTED:
            return RiskReason.ACCOUNT_HALTED
        if account.state is TradingState.REDUCING and not reduces:
            return RiskReason.ACCOUNT_REDUCING_ONLY
        limits = account.limits
        if limits.max_open_orders is not None and account.open_order_count() >= limits.max_open_orders:
            return RiskReason.ACCOUNT_MAX_OPEN_ORDERS
        if limits.max_gross_exposure is not None and not reduces and qty is not None and price is not None:
            mine = self._exposure_after(order, qty, price, instrument)
            if account.gross_exposure(mine, changed=self) > limits.max_gross_exposure:
                return RiskReason.ACCOUNT_MAX_GROSS_EXPOSURE
        return None

    # -- what the checks read ------------------------------------------------------------------------
    def _position_qty(self, portfolio: "Portfolio", instrument: Instrument) -> Decimal:
        position = portfolio.positions.get(instrument.symbol)
        return position.quantity if position is not None else Decimal(0)

    def _reference_price(self, order: Order) -> Decimal | None:
        return order.limit_price or order.stop_price or self.last_price(order.symbol)

    def _order_qty(self, order: Order, portfolio: "Portfolio", instrument: Instrument) -> Decimal | None:
        """The order's quantity; for an equity-fraction order, an estimate at the last price."""
        if order.qty is not None:
            return order.qty
        last = self.last_price(order.symbol)
        if last is None or order.equity_fraction is None:
            return None
        marks = {s: to_raw(last, instrument.scales.price_dp) for s in portfolio.positions}
        equity = instrument.scales.cash(portfolio.equity_raw(marks))
        units = equity * order.equity_fraction / (last * instrument.multiplier)
        return units.quantize(instrument.size_increment, rounding=ROUND_FLOOR)  # as the venue sizes: down

    def _exposure_after(self, order: Order, qty: Decimal, price: Decimal, instrument: Instrument) -> Decimal:
        assert self.oms is not None, "risk engine not bound to an OMS"
        total = Decimal(0)
        for symbol, position in self.oms.portfolio.positions.items():
            held = position.quantity
            if symbol == order.symbol:
                held += qty if order.side is OrderSide.BUY else -qty
                mark = price
            else:
                mark = self.last_price(symbol) or Decimal(0)
            total += abs(held) * mark * position.instrument.multiplier
        return total

    def gross_exposure(self) -> Decimal:
        if self.oms is None:
            return Decimal(0)
        return sum((abs(p.quantity) * (self.last_price(s) or Decimal(0)) * p.instrument.multiplier
                    for s, p in self.oms.portfolio.positions.items()), Decimal(0))

    def open_order_count(self) -> int:
        return len(self.oms.open_orders) if self.oms is not None else 0


def _reduces(side: OrderSide, qty: Decimal, position: Decimal) -> bool:
    """An order shrinks the position: opposite side, no larger than it."""
    if position > 0:
        return side is OrderSide.SELL and qty <= position
    if position < 0:
        return side is OrderSide.BUY and qty <= -position
    return False


def _on_grid(value: Decimal, dp: int, step: int) -> bool:
    try:
        return to_raw(value, dp) % step == 0
    except ValueError:
        return False


class KillSwitch:
    """Cancel everything, flatten everything, halt: for one bot or the whole account."""

    def __init__(self, account: AccountRisk) -> None:
        self.account = account
        self._bots: dict[str, tuple[RiskEngine, Callable[[], None], Callable[[], None]]] = {}

    def register(self, engine: RiskEngine, cancel_all: Callable[[], None], flatten_all: Callable[[], None]) -> None:
        self._bots[engine.bot_id] = (engine, cancel_all, flatten_all)

    def trip(self, ts: int, reason: str, bot_id: str | None = None) -> None:
        """bot_id=None trips the account: every registered bot, then the account state."""
        targets = [self._bots[bot_id]] if bot_id is not None else list(self._bots.values())
        for engine, cancel_all, flatten_all in targets:
            engine.set_state(TradingState.REDUCING, ts, f"KILL_SWITCH:{reason}")  # flatten orders pass
            cancel_all()
            flatten_all()
            engine.set_state(TradingState.HALTED, ts, f"KILL_SWITCH:{reason}")
        if bot_id is None:
            self.account.set_state(TradingState.HALTED, ts, f"KILL_SWITCH:{reason}")
