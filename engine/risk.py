"""Pre-trade risk: one file of named checks, each denial a reason code (DESIGN.md §4).

`RiskEngine.check` runs these checks in this order; the first failure denies the order (the OMS
marks it DENIED with the code and never sends it):

   1. state            TRADING_HALTED; REDUCING_ONLY (state REDUCING, or a reduce-only order,
                       and the order does not shrink the position)
   2. symbol           SYMBOL_NOT_ALLOWED (not in allowed_symbols, or no known instrument)
   3. grid             PRICE_OFF_GRID, QTY_OFF_GRID, QTY_BELOW_MIN, QTY_ABOVE_MAX (instrument)
   3b. stop            NO_STOP (`require_stop: true`): an order that opens or grows a position
                       must carry a stop: a bracket stop declared with it (Order.stop_attached,
                       set by the Strategy API's sl/sl_distance/trail), or working stops on the
                       other side that cover the whole position after it. Protective orders,
                       reduce-only orders and orders that leave no position on their side are
                       exempt; an order whose size is not known yet is refused (fail closed)
   4. duplicate id     DUPLICATE_CLIENT_ORDER_ID (an id this gate has seen, or a working order's)
   5. order qty        MAX_ORDER_QTY
   6. order notional   MAX_ORDER_NOTIONAL
   7. price band       PRICE_BAND: the price an order would trade at (its limit, its stop, and for a
                       market order the last price) more than price_band_pct from the reference
   8. position         MAX_POSITION: |position after the order| per symbol
   9. gross exposure   MAX_GROSS_EXPOSURE: the bot's worst-case gross exposure with the order
  10. buying power     BUYING_POWER: a buy must fit in cash less working buys; the worst-case
                       exposure must fit in capital_allocation. On a margin instrument the cash
                       check is INSUFFICIENT_MARGIN instead: the margin the order adds (at the
                       last price, or its own) must fit in the free margin (working orders'
                       margin is not reserved; the venue checks again at the fill)
  11. open orders      MAX_OPEN_ORDERS
  12. order rate       ORDER_RATE: orders passed in the last second (sliding, injected clock)
  13. market hours     MARKET_CLOSED: outside every market_hours window / market_weekdays (UTC)
  14. account          the account's state, gross exposure over all its bots, and open orders,
                       as ACCOUNT:TRADING_HALTED, ACCOUNT:REDUCING_ONLY, ACCOUNT:MAX_GROSS_EXPOSURE,
                       ACCOUNT:MAX_OPEN_ORDERS (ACCOUNT:NO_PRICE when a bot's exposure has no price)

NO_PRICE (fail closed): a check that needs a price has none, e.g. a notional limit on a market
order before the first last price, or an equity-fraction order that cannot be sized yet.

The price band's reference. A band centred on the last price cannot catch a bad last price: a
market order "at the last price" is then always inside it. So the runtime gives the engine a
`reference_price` that one bad tick cannot move (the median mid of the recent guarded ticks,
engine.tick_guard; a burst of them cannot move it either: the guard adopts a new level only once it
has lasted confirm_ticks ticks and confirm_seconds of feed time, so the reference is never taken
from unconfirmed prices), and every order type is held to it: limits and stops by their prices, a
market order by the last price, where it would fill (a market order that only reduces the
position is exempt: an exit must not be trapped in a real fast market). Without a reference (the backtester), the
band is centred on the last price, as before.

Reductions. An order *reduces* when it is on the opposite side of the current position and its
quantity is at most what is left of that position once the working orders already closing it
have filled: two closing orders for the whole position are not both reductions. Reductions pass
the position, exposure and buying-power checks (closing must always be possible) and are the
only orders a REDUCING state lets through.

Exposure is worst-case: per symbol, max(|position + working buys|, |position - working sells|)
at the last price times the multiplier, the new order included. Resting orders thus count
before they fill, while a reversal (close + open) or a bracket (take-profit + stop-loss) is
counted once. Shorts are not a cash matter (their proceeds are cash); cap them with
capital_allocation, max_gross_exposure and max_position_qty.

States: ACTIVE; REDUCING lets through only reductions; HALTED lets nothing through. Monitors fed
with `on_equity` switch them: the daily loss limit (loss since the UTC day's first equity) sets
REDUCING, and the next UTC day sets ACTIVE again; max drawdown from the equity high-water mark
sets HALTED, which only a person undoes (`resume`, which also counts losses afresh from there).
The kill switch cancels, flattens and halts one bot or the whole account.

Protective orders (engine.emulation.is_protective: a bracket's children, trailing stops) are not
counted as closing the position when the order checked is a kill's flattening order or the exit
an emulated stop sends when it triggers (`Order.trigger_of`): the kill cancels them only once the
position is flat (engine/controls.py), and the triggered exit replaces them. Such a triggered exit
of a protective order (reduce-only) is checked as a stop a venue holds would act: it must reduce
the position (REDUCING_ONLY), be for a known symbol on the grid, with a new id; no trading state,
limit or account state stops it (a venue-held stop fires in a halted bot too).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from engine.clock import Clock
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import to_raw
from engine.emulation import is_protective
from engine.orders import Order, OrderSide, OrderType

if TYPE_CHECKING:
    from engine.oms import OrderManager
    from engine.portfolio import Portfolio

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
DAY_NS = 1440 * MINUTE_NS
ZERO = Decimal(0)
ONE = Decimal(1)


class RiskReason(StrEnum):
    """Why an order was denied. An account-level limit reuses the bot-level code with the
    "ACCOUNT:" prefix, so reports can group by code and still tell which level bound."""

    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    PRICE_OFF_GRID = "PRICE_OFF_GRID"
    QTY_OFF_GRID = "QTY_OFF_GRID"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    MAX_ORDER_QTY = "MAX_ORDER_QTY"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    NO_PRICE = "NO_PRICE"
    PRICE_BAND = "PRICE_BAND"
    MAX_POSITION = "MAX_POSITION"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    BUYING_POWER = "BUYING_POWER"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    ORDER_RATE = "ORDER_RATE"
    MARKET_CLOSED = "MARKET_CLOSED"
    NO_STOP = "NO_STOP"
    ACCOUNT_TRADING_HALTED = "ACCOUNT:TRADING_HALTED"
    ACCOUNT_REDUCING_ONLY = "ACCOUNT:REDUCING_ONLY"
    ACCOUNT_NO_PRICE = "ACCOUNT:NO_PRICE"
    ACCOUNT_MAX_GROSS_EXPOSURE = "ACCOUNT:MAX_GROSS_EXPOSURE"
    ACCOUNT_MAX_OPEN_ORDERS = "ACCOUNT:MAX_OPEN_ORDERS"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that shrink a position pass
    HALTED = "HALTED"      # nothing passes


# Why a state changed (StateChange.reason); the kill switch and resume() add who/why after a colon.
DAILY_LOSS = "DAILY_LOSS"
MAX_DRAWDOWN = "MAX_DRAWDOWN"
NEW_DAY = "NEW_DAY"


class Weekday(StrEnum):
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"

    @property
    def number(self) -> int:
        """Monday is 0, as datetime.weekday()."""
        return list(Weekday).index(self)


_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")


def parse_window(text: str) -> tuple[int, int]:
    """"HH:MM-HH:MM" (UTC) -> (start, end) in minutes of the day, end excluded.

    A window ends the day it starts; the end may be 24:00. A session over midnight is two
    windows ("22:00-24:00", "00:00-06:00"), which keeps "ends before it starts" a typo to catch.
    """
    # the messages do not quote the text: a refused value is named by its field, never echoed
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError("a window must be HH:MM-HH:MM (UTC)")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError("a window's times must be times of day (00:00 to 24:00)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start >= end:
        raise ValueError("the window ends before it starts (split a session over midnight in two windows)")
    return start, end


def _window(text: str) -> str:
    parse_window(text)
    return text


# Field types: money and quantities are exact decimals; counts are real integers (YAML `yes` is not 1).
Positive = Annotated[Decimal, Field(gt=0)]
Percent = Annotated[Decimal, Field(gt=0, le=100)]
Count = Annotated[int, Strict(), Field(ge=1)]
Window = Annotated[str, AfterValidator(_window)]


class RiskLimits(BaseModel):
    """One bot's limits. None (left out of the YAML) means no limit of that kind; an empty list
    is refused rather than read as "nothing allowed" or "no limit"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_symbols: list[str] | None = Field(default=None, min_length=1)
    max_order_qty: Positive | None = None
    max_order_notional: Positive | None = None
    price_band_pct: Positive | None = None
    max_position_qty: Positive | None = None
    max_gross_exposure: Positive | None = None
    max_open_orders: Count | None = None
    max_orders_per_second: Count | None = None
    market_hours: list[Window] | None = Field(default=None, min_length=1)
    market_weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    daily_loss_limit: Positive | None = None
    max_drawdown_pct: Percent | None = None
    capital_allocation: Positive | None = None
    require_stop: Annotated[bool, Strict()] = False  # every position must carry a stop (NO_STOP)

    @field_validator("market_weekdays", mode="before")
    @classmethod
    def _upper_case_days(cls, days: object) -> object:
        """Accept "mon" or "Mon" as well as "MON"."""
        return [d.upper() if isinstance(d, str) else d for d in days] if isinstance(days, list) else days


class AccountLimits(BaseModel):
    """Limits on the sum of all bots of one account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_gross_exposure: Positive | None = None
    daily_loss_limit: Positive | None = None
    max_drawdown_pct: Percent | None = None
    max_open_orders: Count | None = None


class RiskConfig(BaseModel):
    """A risk file: the account's limits, each bot's, and those of bots not listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: AccountLimits = AccountLimits()
    bots: dict[str, RiskLimits] = Field(default_factory=dict)
    default_bot: RiskLimits = RiskLimits()

    def for_bot(self, bot_id: str) -> RiskLimits:
        return self.bots.get(bot_id, self.default_bot)


def parse_risk_config(data: Any) -> RiskConfig:
    """Risk limits given as data: an API body's `risk`, or a risk YAML once read.

    Every problem is a ConfigError whose field is the dotted path of the bad value
    ("bots.sma1.max_order_qty"), or "risk" for the mapping as a whole. The message says what is
    wrong and never quotes the value: limits may come from a file the reader of the error should
    not see, and the field name is enough to fix it."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("risk", "risk limits must be a mapping with account, bots and default_bot")
    try:
        return RiskConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "risk"
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        else:  # pydantic's own messages say what is expected, not what was given
            message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(field, message) from None


def load_risk_config(path: str | Path) -> RiskConfig:
    """Read and validate a risk YAML of the operator's (`tickbridge backtest --risk`, a runtime
    YAML's `risk:`). Errors name the file (the operator's own) and the dotted field, as
    parse_risk_config's do, and never quote the file's contents: not even a YAML syntax error's
    line, only its position."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("risk", f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError("risk", f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError("risk", f"{path} is not valid YAML{where}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError("risk", f"{path} must be a mapping with account, bots and default_bot")
    try:
        return parse_risk_config(data)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"{exc.message} in {path}") from None


@dataclass(frozen=True, slots=True)
class StateChange:
    ts: int
    old: TradingState
    new: TradingState
    reason: str
    scope: str = ""  # the bot id, or "account"


StateListener = Callable[[StateChange], None]


class EquityMonitor:
    """Start-of-day equity (UTC days) and the high-water mark; names the loss limit crossed."""

    def __init__(self, daily_loss_limit: Decimal | None, max_drawdown_pct: Decimal | None) -> None:
        self.daily_loss_limit = daily_loss_limit
        self.max_drawdown_pct = max_drawdown_pct
        self.day: int | None = None
        self.day_start = ZERO
        self.high_water = ZERO
        self.equity: Decimal | None = None

    def update(self, equity: Decimal, ts: int) -> tuple[bool, str | None]:
        """(new UTC day?, MAX_DRAWDOWN / DAILY_LOSS / None); drawdown wins when both bind."""
        day = ts // DAY_NS
        new_day = self.day is not None and day != self.day
        if day != self.day:
            self.day, self.day_start = day, equity
        self.equity = equity
        self.high_water = max(self.high_water, equity)
        if (self.max_drawdown_pct is not None and self.high_water > 0
                and (self.high_water - equity) * 100 >= self.max_drawdown_pct * self.high_water):
            return new_day, MAX_DRAWDOWN
        if self.daily_loss_limit is not None and self.day_start - equity >= self.daily_loss_limit:
            return new_day, DAILY_LOSS
        return new_day, None

    def rebase(self) -> None:
        """Count losses from the last equity seen: what a person accepts by resuming."""
        if self.equity is not None:
            self.day_start = self.high_water = self.equity


class _Monitored:
    """A trading state and the loss monitors that switch it: a bot's, or an account's."""

    def __init__(self, scope: str, daily_loss_limit: Decimal | None, max_drawdown_pct: Decimal | None) -> None:
        self.scope = scope
        self.state = TradingState.ACTIVE
        self.monitor = EquityMonitor(daily_loss_limit, max_drawdown_pct)
        self.state_changes: list[StateChange] = []
        self.listeners: list[StateListener] = []
        self._reducing_for_daily_loss = False

    def set_state(self, new: TradingState, ts: int, reason: str) -> None:
        if new is self.state:
            return
        change = StateChange(ts, self.state, new, reason, self.scope)
        self.state = new
        self._reducing_for_daily_loss = new is TradingState.REDUCING and reason == DAILY_LOSS
        self.state_changes.append(change)
        for listener in self.listeners:
            listener(change)

    def on_equity(self, equity: Decimal, ts: int) -> None:
        """Feed the monitors. Daily loss -> REDUCING, undone by the next UTC day (a bad day
        should stop new risk, not strand the bot); drawdown -> HALTED, undone only by resume()
        (a deep loss needs a person)."""
        new_day, breach = self.monitor.update(equity, ts)
        if new_day and self._reducing_for_daily_loss:
            self.set_state(TradingState.ACTIVE, ts, NEW_DAY)
        if breach == MAX_DRAWDOWN:
            self.set_state(TradingState.HALTED, ts, breach)
        elif breach == DAILY_LOSS and self.state is TradingState.ACTIVE:
            self.set_state(TradingState.REDUCING, ts, breach)

    def resume(self, ts: int, who: str) -> None:
        """A person's decision to trade again; losses count afresh from the last equity."""
        self.monitor.rebase()
        self.set_state(TradingState.ACTIVE, ts, f"RESUMED_BY:{who}")


class AccountRisk(_Monitored):
    """What the bots of one account share: its state, its limits, its monitors, and the bots'
    risk engines (each registers itself) so exposure and open orders can be summed."""

    def __init__(self, limits: AccountLimits = AccountLimits()) -> None:
        super().__init__("account", limits.daily_loss_limit, limits.max_drawdown_pct)
        self.limits = limits
        self.engines: dict[str, RiskEngine] = {}

    def register(self, engine: RiskEngine) -> None:
        if engine.bot_id in self.engines:
            raise ValueError(f"bot {engine.bot_id!r} already has a risk engine in this account")
        self.engines[engine.bot_id] = engine

    def open_order_count(self) -> int:
        return sum(len(engine.open_orders()) for engine in self.engines.values())

    # What the account checks read of the other bots. Here: the engines registered in this object,
    # read live. engine.account_risk.SharedAccountRisk reads the bots of every process from the
    # store instead, under a lock held from begin_check to end_check (or abort_check).
    def others_exposure(self, engine: RiskEngine) -> Decimal | None:
        """The other bots' worst-case gross exposure (None when one has no price)."""
        return _sum_or_none(e.gross_exposure() for e in self.engines.values() if e is not engine)

    def others_open_orders(self, engine: RiskEngine) -> int:
        return sum(len(e.open_orders()) for e in self.engines.values() if e is not engine)

    def begin_check(self, engine: RiskEngine) -> None:
        """The account checks of one order start (a shared account locks and reads its state)."""

    def end_check(self, engine: RiskEngine, candidate: _Candidate, reason: str | None) -> None:
        """The order was checked: passed when `reason` is None (a shared account publishes it)."""

    def abort_check(self, engine: RiskEngine) -> None:
        """A check raised: release whatever begin_check took."""

    def on_bot_equity(self, engine: RiskEngine, ts: int) -> None:
        """A bot's monitors just saw its equity (engine.monitor); a shared account sums them."""


@dataclass(slots=True)
class _Working:
    """A bot's working orders in one symbol: leaves quantity per side, and what the buys cost
    (None when a market buy has no price to value it at)."""

    buy: Decimal = ZERO
    sell: Decimal = ZERO
    buy_notional: Decimal | None = ZERO


def _unbound(bot_id: str, what: str) -> Callable[[], Any]:
    def fail() -> Any:
        raise RuntimeError(f"risk engine {bot_id!r} has no {what}: pass it or call bind(oms)")
    return fail


class RiskEngine(_Monitored):
    """The RiskGate of one bot (see the module docstring for the checks and their order).

    It reads the world through callables so it works over any OMS or a test's stubs:
    `last_price(symbol)`, `open_orders()` (the bot's working orders, in-flight ones included)
    and `positions()` (the bot's signed position per symbol, in units). `bind(oms)` sets the
    last two from an OrderManager.
    """

    def __init__(self, bot_id: str, limits: RiskLimits, account: AccountRisk, clock: Clock,
                 instruments: dict[str, Instrument], last_price: Callable[[str], Decimal | None],
                 open_orders: Callable[[], list[Order]] | None = None,
                 positions: Callable[[], dict[str, Decimal]] | None = None,
                 reference_price: Callable[[str], Decimal | None] | None = None) -> None:
        super().__init__(bot_id, limits.daily_loss_limit, limits.max_drawdown_pct)
        self.bot_id = bot_id
        self.limits = limits
        self.account = account
        self.clock = clock
        self.instruments = instruments
        self.last_price = last_price
        self.reference_price = reference_price or last_price  # the price band's centre (module docstring)
        self.open_orders: Callable[[], list[Order]] = open_orders or _unbound(bot_id, "open_orders")
        self.positions: Callable[[], dict[str, Decimal]] = positions or _unbound(bot_id, "positions")
        self._allowed = None if limits.allowed_symbols is None else frozenset(limits.allowed_symbols)
        restricted = limits.market_hours is not None or limits.market_weekdays is not None
        self._windows = [parse_window(w) for w in limits.market_hours or ["00:00-24:00"]] if restricted else None
        self._weekdays = frozenset(d.number for d in limits.market_weekdays or list(Weekday))
        self._recent: deque[int] = deque()      # when passed orders were checked, for the rate limit
        self._seen_ids: set[str] = set()
        self._sized: dict[str, Decimal] = {}    # equity-fraction orders in flight: qty estimated at check
        self._flattening = False
        account.register(self)

    def on_equity(self, equity: Decimal, ts: int) -> None:
        super().on_equity(equity, ts)
        self.account.on_bot_equity(self, ts)

    def bind(self, oms: OrderManager) -> None:
        """Read working orders and positions from the bot's OMS."""
        positions = oms.portfolio.positions
        self.open_orders = lambda: oms.open_orders
        self.positions = lambda: {symbol: p.quantity for symbol, p in positions.items() if p.qty}

    @contextmanager
    def flattening(self) -> Iterator[None]:
        """While the kill switch flattens, only the state, symbol, grid and id checks apply: a full
        rate window or open-order cap (maybe the very reason for the trip) must not keep a
        position open. The state is REDUCING then, so only reductions pass."""
        self._flattening = True
        try:
            yield
        finally:
            self._flattening = False

    # -- the gate ----------------------------------------------------------------------------------
    def check(self, order: Order, portfolio: Portfolio) -> str | None:
        """None to pass, or the reason code of the first check that fails. Every id checked is
        remembered (ids are never reused); only a passed order counts towards the rate limit."""
        candidate = _Candidate(self, order, portfolio)
        if order.trigger_of is not None and order.reduce_only:
            checks = _TRIGGER_CHECKS
        else:
            checks = _FLATTEN_CHECKS if self._flattening else _CHECKS
        reason = None
        try:
            for check in checks:
                reason = check(self, candidate)
                if reason is not None:
                    break
        except BaseException:
            self.account.abort_check(self)
            raise
        self.account.end_check(self, candidate, reason)
        self._seen_ids.add(order.client_order_id)
        if reason is None:
            if self.limits.max_orders_per_second is not None:
                self._recent.append(self.clock.now_ns())
            if order.qty is None and candidate.qty is not None:
                self._sized[order.client_order_id] = candidate.qty
        return reason

    def _state(self, c: _Candidate) -> str | None:
        if self.state is TradingState.HALTED:
            return RiskReason.TRADING_HALTED
        if (self.state is TradingState.REDUCING or c.order.reduce_only) and not c.reduces:
            return RiskReason.REDUCING_ONLY
        return None

    def _symbol(self, c: _Candidate) -> str | None:
        if c.instrument is None or (self._allowed is not None and c.order.symbol not in self._allowed):
            return RiskReason.SYMBOL_NOT_ALLOWED
        return None

    def _grid(self, c: _Candidate) -> str | None:
        instrument = c.instrument
        assert instrument is not None  # _symbol ran first
        s = instrument.scales
        for price in (c.order.limit_price, c.order.stop_price):
            if price is not None and (price <= 0 or not _on_grid(price, s.price_dp, s.price_step)):
                return RiskReason.PRICE_OFF_GRID
        qty = c.order.qty
        if qty is None:
            return None  # an equity fraction: the venue sizes it on the grid
        if not _on_grid(qty, s.qty_dp, s.qty_step):
            return RiskReason.QTY_OFF_GRID
        if qty < max(instrument.min_qty, instrument.size_increment):
            return RiskReason.QTY_BELOW_MIN
        if instrument.max_qty is not None and qty > instrument.max_qty:
            return RiskReason.QTY_ABOVE_MAX
        return None

    def _triggered_exit(self, c: _Candidate) -> str | None:
        """An emulated protective order's exit: it must reduce, whatever the trading state."""
        return None if c.reduces else RiskReason.REDUCING_ONLY

    def _require_stop(self, c: _Candidate) -> str | None:
        """NO_STOP: an order that opens or grows a position with no stop to carry it."""
        if not self.limits.require_stop:
            return None
        order = c.order
        if order.stop_attached or order.reduce_only or is_protective(order) or order.trigger_of is not None:
            return None
        if c.qty is None:
            return RiskReason.NO_STOP  # cannot tell what the stops must cover: fail closed
        sign = order.side.sign
        after = c.position + sign * c.qty
        if after * sign <= 0:
            return None  # it leaves no position on its side: nothing opens or grows
        unfilled = {o.client_order_id for o in c.working_orders if not o.filled_qty}
        covered = ZERO
        for working in c.working_orders:  # a child held for an entry that has not filled protects that entry
            if (working.symbol == order.symbol and working.side is not order.side and working.qty is not None
                    and working.type in (OrderType.STOP, OrderType.STOP_LIMIT) and working.parent_id not in unfilled):
                covered += working.leaves_qty
        return RiskReason.NO_STOP if covered < abs(after) else None

    def _duplicate_id(self, c: _Candidate) -> str | None:
        """A second order with one id could be a second order at the venue. The OMS refuses ids it
        made; this also covers ids this gate saw through another path and restored working orders."""
        oid = c.order.client_order_id
        if oid in self._seen_ids or any(o.client_order_id == oid for o in c.working_orders):
            return RiskReason.DUPLICATE_CLIENT_ORDER_ID
        return None

    def _order_qty(self, c: _Candidate) -> str | None:
        cap = self.limits.max_order_qty
        if cap is None:
            return None
        if c.qty is None:
            return RiskReason.NO_PRICE
        return RiskReason.MAX_ORDER_QTY if c.qty > cap else None

    def _order_notional(self, c: _Candidate) -> str | None:
        cap = self.limits.max_order_notional
        if cap is None:
            return None
        if c.qty is None or c.price is None:
            return RiskReason.NO_PRICE
        return RiskReason.MAX_ORDER_NOTIONAL if c.qty * c.price * c.multiplier > cap else None

    def _price_band(self, c: _Candidate) -> str | None:
        """Fat finger, or a market gone wrong: the price the order would trade at too far from the
        reference. A limit and a stop are held to their prices (a stop-limit to both); a market
        order to the last price, where it would fill (inside any band centred on the last price,
        but not inside one centred on a median the last price ran away from)."""
        band = self.limits.price_band_pct
        if band is None:
            return None
        if c.reduces and c.order.limit_price is None and c.order.stop_price is None:
            # a market exit in a real fast market must not be trapped behind a lagging median:
            # the tick guard already keeps spikes away from fills, and refusing to close is the
            # larger risk (a limit or stop exit is still held to its price: a fat finger)
            return None
        reference = self.reference_price(c.order.symbol)
        if reference is None or c.last is None:
            return RiskReason.NO_PRICE
        prices = [p for p in (c.order.limit_price, c.order.stop_price) if p is not None] or [c.last]
        for price in prices:
            if abs(price - reference) * 100 > band * reference:
                return RiskReason.PRICE_BAND
        return None

    def _position(self, c: _Candidate) -> str | None:
        cap = self.limits.max_position_qty
        if cap is None or c.reduces:
            return None
        if c.qty is None:
            return RiskReason.NO_PRICE
        return RiskReason.MAX_POSITION if abs(c.position + c.order.side.sign * c.qty) > cap else None

    def _gross_exposure(self, c: _Candidate) -> str | None:
        cap = self.limits.max_gross_exposure
        if cap is None or c.reduces:
            return None
        if c.exposure_after is None:
            return RiskReason.NO_PRICE
        return RiskReason.MAX_GROSS_EXPOSURE if c.exposure_after > cap else None

    def _buying_power(self, c: _Candidate) -> str | None:
        """min(allocation - committed, cash) in two parts: a buy costs cash, and cash already
        promised to working buys is not there for it; and the bot's worst-case exposure with the
        order (what it has committed plus what the order adds) must fit in its allocation."""
        if c.reduces:
            return None
        if c.instrument is not None and c.instrument.on_margin:
            reason = _margin(c)
            if reason is not None:
                return reason
        elif c.order.side is OrderSide.BUY:
            working = c.working
            pending = None if working is None else _sum_or_none(w.buy_notional for w in working.values())
            if c.qty is None or c.price is None or pending is None:
                return RiskReason.NO_PRICE
            if c.qty * c.price * c.multiplier > c.portfolio.cash - pending:
                return RiskReason.BUYING_POWER
        allocation = self.limits.capital_allocation
        if allocation is None:
            return None
        if c.exposure_after is None:
            return RiskReason.NO_PRICE
        return RiskReason.BUYING_POWER if c.exposure_after > allocation else None

    def _open_orders(self, c: _Candidate) -> str | None:
        cap = self.limits.max_open_orders
        return RiskReason.MAX_OPEN_ORDERS if cap is not None and len(c.working_orders) >= cap else None

    def _order_rate(self, c: _Candidate) -> str | None:
        cap = self.limits.max_orders_per_second
        if cap is None:
            return None
        now = self.clock.now_ns()
        recent = self._recent
        while recent and recent[0] <= now - SECOND_NS:
            recent.popleft()
        return RiskReason.ORDER_RATE if len(recent) >= cap else None

    def _market_hours(self, c: _Candidate) -> str | None:
        if self._windows is None:
            return None
        now = self.clock.now_ns()
        minute = now // MINUTE_NS % 1440
        weekday = (now // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday
        if weekday in self._weekdays and any(start <= minute < end for start, end in self._windows):
            return None
        return RiskReason.MARKET_CLOSED

    def _account_state(self, c: _Candidate) -> str | None:
        self.account.begin_check(self)  # the first account check: the account's state is read now
        state = self.account.state
        if state is TradingState.HALTED:
            return RiskReason.ACCOUNT_TRADING_HALTED
        if state is TradingState.REDUCING and not c.reduces:
            return RiskReason.ACCOUNT_REDUCING_ONLY
        return None

    def _account_exposure(self, c: _Candidate) -> str | None:
        cap = self.account.limits.max_gross_exposure
        if cap is None or c.reduces:
            return None
        others = self.account.others_exposure(self)
        if c.exposure_after is None or others is None:
            return RiskReason.ACCOUNT_NO_PRICE
        return RiskReason.ACCOUNT_MAX_GROSS_EXPOSURE if others + c.exposure_after > cap else None

    def _account_open_orders(self, c: _Candidate) -> str | None:
        cap = self.account.limits.max_open_orders
        if cap is not None and len(c.working_orders) + self.account.others_open_orders(self) >= cap:
            return RiskReason.ACCOUNT_MAX_OPEN_ORDERS
        return None

    # -- what the checks read ------------------------------------------------------------------------
    def gross_exposure(self) -> Decimal | None:
        """The bot's worst-case gross exposure now (None when a price is missing)."""
        working = self._working(self.open_orders())
        return None if working is None else self._exposure(self.positions(), working)

    def _working(self, orders: list[Order]) -> dict[str, _Working] | None:
        """Working orders per symbol; None when an equity-fraction order this gate did not size
        is in flight (restored after a restart): its size is unknown."""
        if len(self._sized) > len(orders):  # forget sized orders that are no longer working
            ids = {o.client_order_id for o in orders}
            self._sized = {oid: qty for oid, qty in self._sized.items() if oid in ids}
        book: dict[str, _Working] = {}
        for order in orders:
            qty = order.leaves_qty if order.qty is not None else self._sized.get(order.client_order_id)
            if qty is None:
                return None
            entry = book.setdefault(order.symbol, _Working())
            if order.side is OrderSide.SELL:
                entry.sell += qty
                continue
            entry.buy += qty
            price = _order_price(order)
            if price is None:
                price = self.last_price(order.symbol)
            if price is None or entry.buy_notional is None:
                entry.buy_notional = None
            else:
                entry.buy_notional += qty * price * self._multiplier(order.symbol)
        return book

    def _exposure(self, positions: dict[str, Decimal], working: dict[str, _Working],
                  marks: dict[str, Decimal | None] | None = None) -> Decimal | None:
        """Sum over symbols of max(|position + buys|, |position - sells|) x mark x multiplier; the
        mark is the last price (`marks` supplies one where there may be none yet)."""
        total = ZERO
        for symbol in positions.keys() | working.keys():
            held = positions.get(symbol, ZERO)
            side = working.get(symbol)
            worst = abs(held) if side is None else max(abs(held + side.buy), abs(held - side.sell))
            if not worst:
                continue
            mark = self.last_price(symbol)
            if mark is None and marks is not None:
                mark = marks.get(symbol)
            if mark is None:
                return None
            total += worst * mark * self._multiplier(symbol)
        return total

    def _fraction_qty(self, order: Order, portfolio: Portfolio, last: Decimal | None) -> Decimal | None:
        """Units an equity-fraction order will get, sized as the venue does (fraction x equity,
        a buy capped by cash, rounded down to the lot) but at the last price; None without one."""
        instrument = self.instruments.get(order.symbol)
        if order.equity_fraction is None or last is None or last <= 0 or instrument is None:
            return None
        if instrument.on_margin:
            if instrument.fraction_sizing == "notional":
                return _notional_fraction_qty(instrument, order.equity_fraction, portfolio, last)
            return _margin_fraction_qty(instrument, order.equity_fraction, portfolio, last)
        equity = portfolio.cash
        for symbol, position in portfolio.positions.items():
            if position.qty:
                mark = last if symbol == order.symbol else self.last_price(symbol)
                if mark is None:
                    return None
                equity += position.quantity * mark * position.instrument.multiplier
        budget = equity * order.equity_fraction
        if order.side is OrderSide.BUY:
            budget = min(budget, portfolio.cash)
        units = max(budget, ZERO) / (last * instrument.multiplier)
        return units.quantize(instrument.size_increment, rounding=ROUND_FLOOR)

    def _multiplier(self, symbol: str) -> Decimal:
        instrument = self.instruments.get(symbol)
        return ONE if instrument is None else instrument.multiplier


class _Candidate:
    """An order as the checks see it, read once per check; the exposure after it on first use."""

    def __init__(self, engine: RiskEngine, order: Order, portfolio: Portfolio) -> None:
        self.engine = engine
        self.order = order
        self.portfolio = portfolio
        self.instrument = engine.instruments.get(order.symbol)
        self.multiplier = ONE if self.instrument is None else self.instrument.multiplier
        self.positions = engine.positions()
        self.position = self.positions.get(order.symbol, ZERO)
        self.last = engine.last_price(order.symbol)
        self.qty = order.qty if order.qty is not None else engine._fraction_qty(order, portfolio, self.last)
        price = _order_price(order)
        self.price = self.last if price is None else price  # what the order's notional is valued at
        self.working_orders = engine.open_orders()
        closing = self.working_orders
        if engine._flattening or order.trigger_of is not None:  # protection is not a close (module docstring)
            closing = [o for o in closing if not is_protective(o)]
        self.working = engine._working(closing)
        self.reduces = self._reduces()

    def _reduces(self) -> bool:
        """Opposite side to the position, and no more than what working orders leave of it."""
        held, qty, working = self.position, self.qty, self.working
        if qty is None or working is None or held * self.order.side.sign >= 0:
            return False
        side = working.get(self.order.symbol)
        closing = ZERO if side is None else (side.sell if held > 0 else side.buy)
        return qty <= abs(held) - closing

    @cached_property
    def exposure_after(self) -> Decimal | None:
        """The bot's worst-case gross exposure with this order working too."""
        working, qty = self.working, self.qty
        if working is None or qty is None:
            return None
        symbol = self.order.symbol
        after = dict(working)
        side = after.get(symbol, _Working())
        if self.order.side is OrderSide.BUY:
            after[symbol] = _Working(side.buy + qty, side.sell, side.buy_notional)
        else:
            after[symbol] = _Working(side.buy, side.sell + qty, side.buy_notional)
        return self.engine._exposure(self.positions, after, {symbol: self.price})


_Check = Callable[[RiskEngine, _Candidate], str | None]
_CHECKS: tuple[_Check, ...] = (
    RiskEngine._state, RiskEngine._symbol, RiskEngine._grid, RiskEngine._require_stop, RiskEngine._duplicate_id,
    RiskEngine._order_qty, RiskEngine._order_notional, RiskEngine._price_band, RiskEngine._position,
    RiskEngine._gross_exposure, RiskEngine._buying_power, RiskEngine._open_orders, RiskEngine._order_rate,
    RiskEngine._market_hours, RiskEngine._account_state, RiskEngine._account_exposure,
    RiskEngine._account_open_orders,
)
_FLATTEN_CHECKS: tuple[_Check, ...] = (
    RiskEngine._state, RiskEngine._symbol, RiskEngine._grid, RiskEngine._duplicate_id,
    RiskEngine._account_state,
)
_TRIGGER_CHECKS: tuple[_Check, ...] = (
    RiskEngine._triggered_exit, RiskEngine._symbol, RiskEngine._grid, RiskEngine._duplicate_id,
)


def _margin(c: _Candidate) -> str | None:
    """INSUFFICIENT_MARGIN when the margin the order adds exceeds the free margin (raw books)."""
    instrument, portfolio = c.instrument, c.portfolio
    assert instrument is not None
    if c.qty is None or c.price is None:
        return RiskReason.NO_PRICE
    s = instrument.scales
    price = int(c.price.scaleb(s.price_dp))
    position = portfolio.positions.get(instrument.symbol)
    held = 0 if position is None else position.qty
    after = held + c.order.side.sign * int(c.qty.scaleb(s.qty_dp))
    marks = {instrument.symbol: price}
    try:
        added = portfolio.margin_for(instrument, after, price) - portfolio.margin_for(instrument, held, price)
        free = portfolio.free_margin_raw(marks)
    except ConfigError:  # no conversion rate: fail closed
        return RiskReason.NO_PRICE
    return RiskReason.INSUFFICIENT_MARGIN if added > free else None


def _margin_fraction_qty(instrument: Instrument, fraction: Decimal, portfolio: Portfolio,
                         last: Decimal) -> Decimal | None:
    """Lots an equity-fraction order gets on margin, as the venue sizes it (fraction x equity put
    up as margin, within the free margin) but at the last price and before fees."""
    s = instrument.scales
    last_raw = int(last.scaleb(s.price_dp))
    marks = {instrument.symbol: last_raw}
    try:
        budget = min(portfolio.equity_raw(marks) * fraction, Decimal(portfolio.free_margin_raw(marks)))
        per_lot = portfolio.margin_for(instrument, 10**s.qty_dp, last_raw)
    except ConfigError:
        return None
    if per_lot <= 0:
        return None
    return (max(budget, ZERO) / per_lot).quantize(instrument.size_increment, rounding=ROUND_FLOOR)


def _notional_fraction_qty(instrument: Instrument, fraction: Decimal, portfolio: Portfolio,
                           last: Decimal) -> Decimal | None:
    """Lots an equity-fraction order gets on a venue that sizes it as exposure (ccxt USD-M, MT5,
    a paper venue told so: Instrument.fraction_sizing "notional"): fraction x equity of notional at
    the last price, within what the free margin carries. None without a conversion rate."""
    s = instrument.scales
    last_raw = int(last.scaleb(s.price_dp))
    marks = {instrument.symbol: last_raw}
    lot = 10**s.qty_dp
    try:
        equity = portfolio.equity_raw(marks)
        free = portfolio.free_margin_raw(marks)
        per_lot = portfolio.exposure_for(instrument, lot, last_raw)
        margin_per_lot = portfolio.margin_for(instrument, lot, last_raw)
    except ConfigError:
        return None
    if per_lot <= 0:
        return None
    units = Decimal(max(equity, 0)) * fraction / (Decimal(per_lot.numerator) / per_lot.denominator)
    if margin_per_lot > 0:
        units = min(units, Decimal(max(free, 0)) / margin_per_lot)
    return units.quantize(instrument.size_increment, rounding=ROUND_FLOOR)


def _order_price(order: Order) -> Decimal | None:
    """The price an order would trade at: its limit, else its stop; None for a market order."""
    return order.limit_price if order.limit_price is not None else order.stop_price


def _sum_or_none(values: Iterable[Decimal | None]) -> Decimal | None:
    total = ZERO
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _on_grid(value: Decimal, dp: int, step: int) -> bool:
    if not value.is_finite():
        return False
    try:
        return to_raw(value, dp) % step == 0
    except ValueError:
        return False


class KillSwitch:
    """Cancel every order, flatten every position, halt: for one bot or the whole account.

    Each bot registers the callables its OMS provides. A trip first sets REDUCING (so nothing
    new opens while it works and the flattening orders, reductions, pass), runs cancel_all and
    flatten_all, then sets HALTED, which only a person undoes. (engine/controls.py registers a
    cancel that leaves protective orders working, and cancels them once the flatten has filled.)
    A failing callback does not stop the others: every bot is still halted, then the failures are
    raised together.
    """

    def __init__(self, account: AccountRisk, clock: Clock) -> None:
        self.account = account
        self.clock = clock
        self._callbacks: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}

    def register(self, bot_id: str, cancel_all: Callable[[], None], flatten_all: Callable[[], None]) -> None:
        if bot_id not in self.account.engines:
            raise ValueError(f"bot {bot_id!r} has no risk engine in this account")
        self._callbacks[bot_id] = (cancel_all, flatten_all)

    def trip(self, scope: Literal["bot", "account"], reason: str, bot_id: str | None = None) -> None:
        ts = self.clock.now_ns()
        why = f"KILL_SWITCH:{reason}"
        if scope == "bot":
            if bot_id not in self.account.engines:
                raise ValueError(f"a bot kill needs the id of a registered bot, got {bot_id!r}")
            engines = [self.account.engines[bot_id]]
        elif scope == "account":
            engines = list(self.account.engines.values())
            self.account.set_state(TradingState.REDUCING, ts, why)
        else:
            raise ValueError(f"scope must be 'bot' or 'account', got {scope!r}")
        failures: list[Exception] = []
        for engine in engines:
            try:
                self._stop(engine, ts, why)
            except Exception as exc:  # the other bots must still be stopped
                failures.append(exc)
        if scope == "account":
            self.account.set_state(TradingState.HALTED, ts, why)
        if failures:
            raise ExceptionGroup(f"kill switch ({why}): {len(failures)} bot(s) failed to cancel or flatten", failures)

    def _stop(self, engine: RiskEngine, ts: int, why: str) -> None:
        engine.set_state(TradingState.REDUCING, ts, why)
        try:
            callbacks = self._callbacks.get(engine.bot_id)
            if callbacks is not None:
                cancel_all, flatten_all = callbacks
                cancel_all()
                with engine.flattening():
                    flatten_all()
        finally:
            engine.set_state(TradingState.HALTED, ts, why)
