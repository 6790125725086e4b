"""The Strategy base class: declare indicators once in `init`, act in `next`.

    class SmaCross(Strategy):
        name = "sma_cross"

        class Params(StrategyParams):
            fast: int = 10
            slow: int = 20

        def init(self):
            self.fast = self.I(ta.sma, self.data.Close, length=self.p.fast)
            self.slow = self.I(ta.sma, self.data.Close, length=self.p.slow)

        def next(self):
            if crossed_above(self.fast, self.slow, self.i):
                self.go(+1)

`next()` runs at every bar's close; orders it makes fill from the next bar on. Inside `next()`,
indicators and `self.data` columns are plain Python lists indexed by bar number `self.i`
(scalar access on a list is several times faster than on a numpy array, and `next()` runs a
million times in a long backtest). Inside `signals()` they are numpy arrays.

A strategy may also offer `signals()`: one vectorised pass returning, per bar, the direction to
hold after that bar's close (+1 long, -1 short, 0 flat, NaN for "no change"), with the same
meaning as calling `self.go(direction)` from `next()`. The backtester then takes its compiled
fast path; the parity tests hold both paths to identical orders, fills and equity.

Reading `self.data.close[self.i + 1]` in `next()` would be a look-ahead: don't. Live, the
lists end at the current bar, so such code fails there instead of flattering a backtest.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol

import numba
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo

from engine.errors import ConfigError
from engine.orders import Order, OrderSide, OrderState, OrderType, TimeInForce
from engine.money import div_round_half_even, floor_to_step, qty_from_raw
from strategies import protective

if TYPE_CHECKING:
    from engine.oms import OrderManager
    from engine.portfolio import Position


_GO_TAGS = frozenset({"open", "close"})
GO_TAGS = _GO_TAGS  # the tags of go()'s own orders: the runtime waits for them too (live/driver.py)
# Order's defaults, for _market's positional construction
_MARKET, _GTC, _INITIALIZED, _NO_FILL = OrderType.MARKET, TimeInForce.GTC, OrderState.INITIALIZED, Decimal(0)
# the sides, as module names: CPython 3.12 does not specialise a read of an enum class's attribute
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL


class Supervisor(Protocol):
    """What may stand between a strategy and its orders: set with `Strategy.supervise`.

    A runtime rebuilding a bot's bars after a restart runs `next()` with order entry muted (go,
    order, close and cancel send nothing; what go() asks for is kept as the target), and every
    driver (backtest, paper, live, replay) is told when go() is asked for a direction, so it can
    publish a Signal when that changes (strategies/signals.py). One hook, the same in every
    driver: the strategy's own methods are never replaced."""

    muted: bool

    def on_go(self, strategy: "Strategy", direction: int, fraction: Decimal | None) -> None: ...
_SIZE_STEP = Decimal(1).scaleb(-6)
SIZE_DP = 6  # decimals of a per-entry equity fraction (`go(direction, fraction)`, `sizes()`)



# pandas-ta's averages that fail on length 1 (sma, trima: "Length of values (0) does not match")
# although an average of one bar is that bar: close-vs-average is a legitimate rule (fast=1).
_AVERAGE_OF_ONE = {"sma", "trima"}


def length_one_safe(func: Callable[..., Any], kwargs: dict[str, Any]) -> Callable[..., Any]:
    """`func`, or for a pandas-ta average asked for length 1, the identity it is (as float64).
    Strategy.I and the live recorder both go through this, so batch and live agree."""
    if (kwargs.get("length") == 1 and getattr(func, "__name__", "") in _AVERAGE_OF_ONE
            and getattr(func, "__module__", "").startswith("pandas_ta")):
        return _average_of_one
    return func


def _average_of_one(close: Any, length: Any = None, talib: Any = None, offset: Any = None, **kwargs: Any) -> Any:
    """The average of one bar: the bar's value itself (index kept for a Series)."""
    if isinstance(close, pd.Series):
        return close.astype("float64")
    return np.asarray(close, dtype=np.float64).copy()


def numpy_sma(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> np.ndarray | None:
    """pandas-ta's sma of a float64 column, computed by one compiled loop instead of pandas-ta's
    `nb_sma`; None for any other call (the caller then runs `func` itself).

    Why: nb_sma is `np.convolve(ones(n) / n, x)`, which numba evaluates as one BLAS dot product
    per window, building the whole convolution first: ~0.1 s for a million bars, a third of a
    fast-path backtest. `_sma_dots` makes the same dot product of the same window with the same
    weights (numba's np.dot, the BLAS ddot nb_sma reaches) without the convolution around it, ~5x
    faster, with the same bits; live/indicators.py's sma kernel is the same dot per window.
    numpy's own np.convolve is faster still but is NOT the same arithmetic everywhere: on a CPU
    with AVX-512 it takes its own SIMD loop for short kernels (length < ~16) and differs from
    nb_sma in the last bit on a quarter of the bars, which moved crossings between the batch and
    the live path (tests/unit/test_speed_sma.py holds this function to pandas-ta bit for bit on
    every series in data/). Only the plain call is taken: sma(series, length=n) with n >= 2 on
    pandas-ta's own path (talib=False, which `I()` sets unless asked otherwise), a float64 Series
    at least n long; offsets, fillna, min_periods, TA-Lib, numpy arrays and short inputs go to
    pandas-ta as before."""
    if (getattr(func, "__name__", "") != "sma" or getattr(func, "__module__", "") != "pandas_ta.overlap.sma"
            or len(args) != 1 or set(kwargs) != {"length", "talib"} or kwargs["talib"] is not False):
        return None
    n, close = kwargs["length"], args[0]
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        return None
    if not isinstance(close, pd.Series) or close.dtype != np.float64 or len(close) < n:
        return None  # pandas-ta answers None to a numpy array: I() says why, as before
    out = np.empty(len(close), dtype=np.float64)
    out[:n - 1] = np.nan
    _sma_dots(np.ascontiguousarray(close.to_numpy()), np.ones(n) / n, out[n - 1:])
    return out


@numba.njit(cache=True)
def _sma_dots(x: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n = len(weights)
    for i in range(len(out)):
        out[i] = np.dot(x[i:i + n], weights)


def same_everywhere(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """pandas-ta hands sma, ema, rsi, macd... to TA-Lib whenever TA-Lib is importable, and TA-Lib's
    arithmetic differs (RSI by up to 2.5 points during warm-up, SMAs in the last bits, which moves
    crossings): a backtest would then depend on what else the machine has installed. Unless the
    caller chose (`talib=True`), a function that takes `talib` runs pandas-ta's own code, in
    backtests and live bots alike (live/indicators.py records calls through this too)."""
    if "talib" in kwargs:
        return kwargs
    try:
        takes_talib = "talib" in inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin or C function: nothing to choose
        return kwargs
    return {**kwargs, "talib": False} if takes_talib else kwargs

class StrategyParams(BaseModel):
    """Parameters every strategy has: how big its positions are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Decimal = Field(Decimal(1), gt=0, le=1, description="fraction of equity per entry, sized at fill time")
    units: Literal["whole", "fractional"] = Field("whole", description="trade whole units or fractions of one")
    fixed_size: Decimal | None = Field(None, gt=0, description="units per entry; overrides size")


def indicator_call(func: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The indicator function and arguments that Strategy.I and the live recorder
    (live/indicators.py) both run, so batch and live compute the same thing: pandas-ta's own
    arithmetic unless TA-Lib is asked for, and an average of one bar taken as the bar."""
    kwargs = same_everywhere(func, kwargs)
    return length_one_safe(func, kwargs), kwargs


class DirectionalParams(StrategyParams):
    """For strategies that trade one way or both: long_only exits to flat, long_short reverses."""

    mode: Literal["long_only", "long_short"] = "long_only"

    @property
    def exit_direction(self) -> int:
        return -1 if self.mode == "long_short" else 0


def must_exceed(other: str) -> Callable[..., Any]:
    """A field validator: this field must be greater than `other` (declared before it)."""

    def check(cls: type, value: Any, info: ValidationInfo) -> Any:
        bound = info.data.get(other)
        if bound is not None and value <= bound:
            raise ValueError(f"must be greater than {other} ({bound})")
        return value

    return check


def parse_params(params_cls: type[StrategyParams], raw: dict[str, Any]) -> StrategyParams:
    """Validate user parameters; the first problem is raised as ConfigError naming the field."""
    try:
        return params_cls(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"])
        known = ", ".join(params_cls.model_fields)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown parameter (known: {known})"
        raise ConfigError(f"param.{loc}" if loc else "param", message) from None


class BarData:
    """The bar columns a strategy reads: numpy arrays, or lists inside `next()`."""

    __slots__ = ("time", "open", "high", "low", "close", "volume", "frame")

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.time = (frame.index.as_unit("ns").asi8 if isinstance(frame.index, pd.DatetimeIndex)
                     else np.asarray(frame.index))
        self.open = frame["open"].to_numpy(dtype=np.float64)
        self.high = frame["high"].to_numpy(dtype=np.float64)
        self.low = frame["low"].to_numpy(dtype=np.float64)
        self.close = frame["close"].to_numpy(dtype=np.float64)
        self.volume = frame["volume"].to_numpy(dtype=np.float64)

    # pandas Series views, for indicator libraries that want them (pandas-ta does)
    @property
    def Open(self) -> pd.Series:
        return self.frame["open"]

    @property
    def High(self) -> pd.Series:
        return self.frame["high"]

    @property
    def Low(self) -> pd.Series:
        return self.frame["low"]

    @property
    def Close(self) -> pd.Series:
        return self.frame["close"]

    @property
    def Volume(self) -> pd.Series:
        return self.frame["volume"]

    def as_lists(self) -> "BarListView":
        return BarListView(self)

    def __len__(self) -> int:
        return len(self.close)


class BarListView:
    """The bar columns as Python lists, each converted on first use (most strategies read one
    or two columns; converting a million-row column nobody reads costs more than the loop)."""

    def __init__(self, data: BarData) -> None:
        self._data = data
        self.frame = data.frame

    def __getattr__(self, name: str) -> Any:
        if name in ("time", "open", "high", "low", "close", "volume"):
            values = getattr(self._data, name).tolist()
            setattr(self, name, values)
            return values
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self._data)


class StrategyCodeError(ConfigError):
    """A mistake in a strategy's own code, reported at the user's line (the deepest frame of the
    call stack that is theirs), so the CLI prints one line a newcomer can act on."""

    def __init__(self, message: str, where: str | None = None) -> None:
        if where is None:
            from strategies.registry import caller_location
            where = caller_location() or ""
        self.problem, self.where = message, where
        super().__init__("strategy", f"{where}: {message}" if where else message)

    def __reduce__(self) -> tuple[Any, ...]:  # a Ray worker's error arrives with its location
        return type(self), (self.problem, self.where)


def _numpy_hint(func: str, arrays: list[np.ndarray], data: Any) -> str:
    names = {id(getattr(data, c, None)): c for c in ("open", "high", "low", "close", "volume")} \
        if data is not None else {}
    given = [f"self.data.{names[id(a)]}" if id(a) in names else "a numpy array" for a in arrays]
    wanted = [f"self.data.{names[id(a)].capitalize()}" if id(a) in names else "a pandas Series" for a in arrays]
    return (f"{func}() was given a numpy array ({', '.join(given)}) and returned nothing: pandas-ta indicators "
            f"take a pandas Series; pass {', '.join(wanted)} (capitalised: the Series of that column)")


class _BarsSoFar:
    """`self.data` inside `next()` for strategies outside this package: the bar columns as lists
    that end at the current bar, as they do live (live.bars.BarHistory), so a look-ahead
    (`close[self.i + 1]`, or `close[-1]` meaning the file's last bar) fails in the backtest
    instead of flattering it. Each column is cut on first use and grows by one value a bar."""

    def __init__(self, full: "BarListView", strategy: "Strategy", pairs: list[tuple[list, list]]) -> None:
        self._full, self._strategy, self._pairs = full, strategy, pairs

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (a copy being built): no recursion through _full
            raise AttributeError(name)
        if name in ("time", "open", "high", "low", "close", "volume"):
            whole = getattr(self._full, name)
            so_far = whole[: self._strategy.i + 1]
            self._pairs.append((so_far, whole))
            setattr(self, name, so_far)
            return so_far
        if name == "frame":
            return self._full.frame.iloc[: self._strategy.i + 1]
        if name in ("Open", "High", "Low", "Close", "Volume"):
            return self._full.frame[name.lower()].iloc[: self._strategy.i + 1]
        return getattr(self._full, name)

    def __len__(self) -> int:
        return self._strategy.i + 1


def _shows_only_the_past(strategy: "Strategy", indicators: list[str]) -> None:
    """Give `strategy.next()` lists that end at the current bar (see _BarsSoFar). The built-ins
    skip this: the parity tests hold them to the live path, and their event-path speed counts."""
    pairs: list[tuple[list, list]] = []
    for attr in indicators:
        value = getattr(strategy, attr)
        if isinstance(value, tuple):
            cut = tuple([] for _ in value)
            pairs.extend(zip(cut, value))
        else:
            cut = []
            pairs.append((cut, value))
        setattr(strategy, attr, cut)
    strategy.data = _BarsSoFar(strategy.data, strategy, pairs)  # type: ignore[arg-type]
    decide = strategy.next
    done = -1  # the bar the lists end at

    def next_with_bars_so_far() -> None:
        nonlocal done
        i = strategy.i
        if i == done + 1:
            for so_far, whole in pairs:
                so_far.append(whole[i])
        else:  # a replay that skipped or repeated a bar: cut every list to the bar again
            for so_far, whole in pairs:
                so_far[:] = whole[: i + 1]
        done = i
        try:
            decide()
        except IndexError as exc:
            from strategies.registry import user_location
            raise StrategyCodeError(
                f"IndexError ({exc}) at bar {i}: in next() the bar data and indicators end at the current bar, "
                f"self.i = {i}, as they do live: an index past self.i would read the future (a look-ahead), "
                f"and self.i - k before bar k reads before the first bar",
                user_location(exc.__traceback__) or "") from None

    strategy.next = next_with_bars_so_far  # type: ignore[method-assign]


class Strategy:
    """Base class of every strategy. Subclasses set `name`, `Params`, and override `init` and
    `next` (and optionally `signals`, `on_fill`, `on_start`, `on_stop`)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    # True for a strategy that keeps its own state bar by bar in next() (ml_signal): live, the
    # runtime then calls init() once and feeds bars, instead of re-running its I() indicators
    incremental: ClassVar[bool] = False
    # what the strategy last asked go() for, kept even when go() could not act (orders in flight):
    # after a restart the runtime brings the position there if a lost order left it elsewhere
    target: int | None = None
    target_fraction: Decimal | None = None
    # bars of history a live bot takes from its venue before its first tick (warmup_bars())
    warmup: ClassVar[int] = 1000
    # set by the drivers through supervise() / record_indicators() (defaults for a subclass whose
    # __init__ forgot super().__init__)
    _supervisor: "Supervisor | None" = None
    _indicator_recorder: Callable[..., Any] | None = None
    # True for a strategy that sends protective orders (sl/tp/trail, OCO, OTO, amend): the
    # backtester's fast path cannot simulate them and runs the event path instead, saying so. A
    # strategy with signals() must declare it to use them (signals() alone would drop them).
    protective: ClassVar[bool] = False

    def __init__(self, params: StrategyParams) -> None:
        self.p = params
        self.i = -1
        self.data: BarData | BarListView = None  # type: ignore[assignment]
        self._oms: OrderManager | None = None
        self._supervisor: Supervisor | None = None
        self._position: Position | None = None
        self._symbol = ""
        self._indicators: list[np.ndarray] = []
        self._indicator_recorder: Callable[..., Any] | None = None
        self._list_sources: dict[str, tuple[Any, np.ndarray]] = {}  # connect(): attr -> (its list, the array)

    # -- wiring (the runner calls these) ---------------------------------------------------------
    def attach(self, data: BarData, symbol: str) -> None:
        self.data = data
        self._symbol = symbol

    def record_indicators(self, recorder: Callable[..., Any] | None) -> None:
        """While set, `I(func, *args, **kwargs)` calls `recorder` with the same arguments instead
        of computing (a live runtime records init()'s indicators to extend them bar by bar)."""
        self._indicator_recorder = recorder

    def supervise(self, supervisor: Supervisor | None) -> None:
        """Put `supervisor` between this strategy and its orders (see Supervisor)."""
        self._supervisor = supervisor

    @property
    def supervisor(self) -> Supervisor | None:
        return self._supervisor

    @property
    def muted(self) -> bool:
        """True while a runtime rebuilds bars: orders are not sent."""
        return self._supervisor is not None and self._supervisor.muted

    def connect(self, oms: "OrderManager") -> None:
        """Give the strategy an OMS to trade through and switch `next()` to list access."""
        self._oms = oms
        self._position = oms.portfolio.position(oms.instruments[self._symbol])
        if self.data is None:  # a tick-driven strategy may run with no bar history
            return
        self.data = self.data.as_lists()
        converted_attrs = []
        sources: dict[str, tuple[Any, np.ndarray]] = {}
        for attr, value in list(vars(self).items()):
            converted = self._as_lists(value)
            if converted is not value:
                setattr(self, attr, converted)
                converted_attrs.append(attr)
                if isinstance(value, np.ndarray):
                    sources[attr] = (converted, value)
        self._list_sources = sources
        # Reading vars(self) made CPython 3.12 move the attributes it kept inline into a dict that
        # shares its keys with the class (a "split" dict), and it does not specialise attribute access
        # on those: every self.x of next() and go() would then be a full lookup, three times the usual
        # (a score of them per order). The same attributes in a dict of the instance's own read and
        # write at full speed again (the values and their order are the same).
        self.__dict__ = dict(vars(self))
        if not type(self).__module__.startswith("strategies."):  # a user's strategy: no look-ahead
            _shows_only_the_past(self, converted_attrs)

    def list_source(self, attr: str) -> np.ndarray | None:
        """The indicator array `connect()` turned into the list attribute `attr` holds, while `attr`
        still holds that very list (the same values, exactly: tolist() keeps every float); None
        otherwise (replaced since, never converted, or not connected)."""
        entry = getattr(self, "_list_sources", {}).get(attr)
        if entry is None or getattr(self, attr, None) is not entry[0]:
            return None
        return entry[1]

    def acting_bars(self) -> np.ndarray | None:
        """Optional, for the backtester: the bars (ascending) outside which `next()` provably does
        nothing (sends nothing, changes nothing) for the rest of the run, given the state it reads
        now; asked once, after connect(), just before the bar loop. The event path then steps only
        to those bars and to bars where orders are working, instead of calling next() at every bar.
        None (the default): next() may act at any bar, and it is called at every bar."""
        return None

    def _as_lists(self, value: Any) -> Any:
        if isinstance(value, np.ndarray) and any(value is ind for ind in self._indicators):
            return value.tolist()
        if isinstance(value, tuple) and value and all(isinstance(v, np.ndarray) for v in value):
            return tuple(self._as_lists(v) for v in value)
        return value

    # -- hooks ------------------------------------------------------------------------------------
    def warmup_bars(self) -> int:
        """How many bars of history a live start needs so that next() decides at the first live bar
        as a backtest over a long history would (live/driver.py takes them from the
        venue's MarketDataFeed.history). The default, 1,000, makes the start's weight in a
        recursive indicator negligible (below 1e-16: EMA periods up to 50, Wilder's RSI/ATR
        averages up to 25); a strategy on windows only (SMA) needs its longest window, one on
        longer recursions more."""
        return type(self).warmup

    def init(self) -> None:
        """Declare indicators with `self.I(...)`."""

    def next(self) -> None:
        """Act at the close of bar `self.i`."""

    def signals(self) -> np.ndarray | None:
        """Optional vectorised directions per bar (see the module docstring); None = no fast path."""
        return None

    def sizes(self) -> np.ndarray | None:
        """Optional equity fraction per bar for the entries `signals()` asks for (the vectorised
        twin of `go(direction, fraction)`); None = every entry uses `size`."""
        return None

    def on_tick(self, tick: Any) -> None:
        """Act on one live quote or trade (live and paper sessions)."""

    def on_fill(self, order: Order, fill: Any) -> None:
        """Called after each of this strategy's fills is booked."""

    # -- indicators -------------------------------------------------------------------------------
    def I(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # noqa: N802, E743 (backtesting.py's name)
        """Compute an indicator over the whole series once; returns a float64 array per output.

        The function must be causal (value at bar t uses data up to t only); pandas-ta's are.
        A live runtime that extends indicators bar by bar records the calls instead (live/
        indicators.py, through `record_indicators`).
        """
        if self._indicator_recorder is not None:
            return self._indicator_recorder(func, *args, **kwargs)
        func, kwargs = indicator_call(func, kwargs)
        out = numpy_sma(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        if out is None:
            arrays = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
            if arrays:  # pandas-ta answers None to a numpy array, which reads like "too little data"
                raise StrategyCodeError(_numpy_hint(getattr(func, "__name__", str(func)), arrays, self.data))
            raise ConfigError("indicator", f"{getattr(func, '__name__', func)} returned nothing (too little data?)")
        if isinstance(out, pd.DataFrame):
            arrays = tuple(self._register(out[c].to_numpy(dtype=np.float64)) for c in out.columns)
            return arrays
        return self._register(np.asarray(out, dtype=np.float64))

    def _register(self, array: np.ndarray) -> np.ndarray:
        if array.shape != (len(self.data),):
            raise ConfigError("indicator", f"expected {len(self.data)} values, got shape {array.shape}")
        array = np.ascontiguousarray(array)
        self._indicators.append(array)
        return array

    # -- trading API --------------------------------------------------------------------------------
    @property
    def position_qty(self) -> Decimal:
        assert self._position is not None
        return self._position.quantity

    @property
    def direction(self) -> int:
        """+1 long, -1 short, 0 flat."""
        qty = self._position.qty  # type: ignore[union-attr]
        return (qty > 0) - (qty < 0)

    def go(self, direction: int, fraction: Decimal | None = None, *, sl: protective.Number | None = None,
           tp: protective.Number | None = None, sl_distance: protective.Number | None = None,
           tp_distance: protective.Number | None = None, trail: protective.Number | str | None = None) -> None:
        """Hold `direction` (+1, -1, 0) from the next fill on: close what points the other way,
        then open with this strategy's sizing (or `fraction` of equity, cut to SIZE_DP decimals,
        for a strategy that sizes each entry). Does nothing if already there, or while orders it
        made are still in flight (after a restart an order may be at the venue, not yet filled:
        deciding again would send a second one). The wish is kept in `target` either way.
        `sl`, `tp`, `sl_distance`, `tp_distance`, `trail` attach a bracket to the entry
        (strategies/protective.py); closing cancels the position's bracket first."""
        if direction not in (-1, 0, 1):  # go(2) is a typo, not "long, twice": refused, never rounded to +1
            raise StrategyCodeError(f"go({direction!r}): the direction must be +1 (long), -1 (short) or 0 (flat); "
                                    "size positions with go(direction, fraction) or the size parameter")
        protection = None
        if sl is not None or tp is not None or sl_distance is not None or tp_distance is not None or trail is not None:
            if direction == 0:
                raise ConfigError("sl" if sl is not None else "tp" if tp is not None else "trail",
                                  "go(0) goes flat: there is no entry to protect")
            protection = self._protection(OrderSide.BUY if direction > 0 else OrderSide.SELL, None,
                                          sl, tp, sl_distance, tp_distance, trail)
        self.target, self.target_fraction = direction, fraction
        supervisor = self._supervisor
        if supervisor is not None:
            if supervisor.muted:  # rebuilding bars: nothing is sent, the wish stays the target
                return
            supervisor.on_go(self, direction, fraction)
        if self._oms.has_open(_GO_TAGS):  # type: ignore[union-attr]
            return
        qty = self._position.qty  # type: ignore[union-attr]  # self.direction, inlined (every decision)
        current = (qty > 0) - (qty < 0)
        if current == direction:
            return
        if current != 0:
            self.close()
        if direction != 0:
            side = _BUY if direction > 0 else _SELL
            if protection is None:
                self._open(side, fraction)
                return
            with self._oms.linked():  # type: ignore[union-attr]  # a venue may send entry + bracket as one
                entry = self._open(side, fraction, protection.stop is not None)
                if entry is not None:
                    self._attach(entry, protection)

    def _open(self, side: OrderSide, fraction: Decimal | None, stop_attached: bool = False) -> Order | None:
        """go()'s entry: the fixed size, else the fraction of equity (cut to SIZE_DP decimals).
        `stop_attached`: a bracket stop follows (the risk rule require_stop reads it)."""
        if self.p.fixed_size is not None:
            if not stop_attached:
                return self.order(side, qty=self.p.fixed_size, tag="open")
            if self.muted:
                return None
            scales = self._oms.instruments[self._symbol].scales  # type: ignore[union-attr]
            qty = scales.qty(floor_to_step(to_raw_any(self.p.fixed_size, scales.qty_dp, floor=True), scales.qty_step))
            return self._market(side, qty, None, False, "open", stop_attached)
        size = self.p.size if fraction is None else fraction.quantize(_SIZE_STEP, rounding="ROUND_DOWN")
        return self._market(side, None, size, False, "open", stop_attached)

    def buy(self, qty: Decimal | None = None, fraction: Decimal | None = None, limit: Decimal | float | None = None,
            stop: Decimal | float | None = None, tag: str = "", *, tif: TimeInForce = TimeInForce.GTC,
            **links: Any) -> Order | None:
        """A buy (see order()); `sl=`, `tp=`, `trail=`... attach a bracket (strategies/protective.py)."""
        return self.order(OrderSide.BUY, qty, fraction, limit, stop, tif=tif, tag=tag, **links)

    def sell(self, qty: Decimal | None = None, fraction: Decimal | None = None, limit: Decimal | float | None = None,
             stop: Decimal | float | None = None, tag: str = "", *, tif: TimeInForce = TimeInForce.GTC,
             **links: Any) -> Order | None:
        """A sell (see order()); `sl=`, `tp=`, `trail=`... attach a bracket (strategies/protective.py)."""
        return self.order(OrderSide.SELL, qty, fraction, limit, stop, tif=tif, tag=tag, **links)

    def close(self) -> Order | None:
        """Flatten the position with a market order (reduce-only), after canceling the position's
        protective orders (the working children of entries that have filled): left working, a
        stop-loss would open the other way once the position is gone."""
        supervisor = self._supervisor
        if supervisor is not None and supervisor.muted:  # self.muted, inlined (every exit)
            return None
        if self._oms.has_children:  # type: ignore[union-attr]  # _cancel_protection's own test, without the call
            self._cancel_protection()
        position = self._position
        assert position is not None
        qty = position.qty
        if qty == 0:
            return None
        side = _SELL if qty > 0 else _BUY
        # scales.qty: the Decimal the position's last fill was booked with, when it filled all of it
        return self._market(side, qty_from_raw(abs(qty), position.scales.qty_dp), None, True, "close")

    def _market(self, side: OrderSide, qty: Decimal | None, fraction: Decimal | None, reduce_only: bool,
                tag: str, stop_attached: bool = False) -> Order:
        """A market order whose quantity is already on the lot grid (the go/close hot path)."""
        oms = self._oms
        assert oms is not None, "strategy is not connected to an OMS"
        # every field by position (keywords cost a quarter of the construction): the same Order as
        # Order(id, bot, symbol, side, MARKET, qty, ts, reduce_only=..., equity_fraction=..., tag=...,
        # stop_attached=...), the rest at their defaults (tests/unit/test_event_path_acting_bars.py)
        order = Order(oms.next_client_order_id(), oms.bot_id, self._symbol, side, _MARKET, qty, oms.clock.now_ns(),
                      None, None, _GTC, reduce_only, fraction, tag, _INITIALIZED, None, _NO_FILL, None, None, False,
                      None, None, None, None, None, False, None, stop_attached)
        oms.submit(order)
        return order

    def cancel(self, order: Order) -> None:
        assert self._oms is not None
        if self.muted:
            return
        self._oms.cancel(order)

    def amend(self, order: Order, price: Decimal | float | None = None, qty: Decimal | None = None) -> str | None:
        """Change a working order: `price` (to the nearest tick) is a limit or stop-limit order's
        limit and a stop order's stop (a trailing stop's current level); `qty` (down to the lot) the
        new total quantity. Refused with ConfigError naming the field, nothing sent, for an order
        that is done or unknown, nothing to change, or a quantity not above what has filled.
        Returns None when the venue took it, else the venue's reason (UNSUPPORTED on an adapter
        that cannot amend; NOT_WORKING when a fill got there first): a race, not a code error.
        None while muted."""
        if self.muted:
            return None
        oms = self._oms
        assert oms is not None, "strategy is not connected to an OMS"
        own = oms.orders.get(order.client_order_id)
        if own is None or own.is_terminal:
            state = "unknown to this strategy's OMS" if own is None else own.state.value
            raise ConfigError("order", f"{order.client_order_id} is {state}: only a working order can be amended")
        if price is None and qty is None:
            raise ConfigError("price", "amend needs a new price or qty")
        scales = oms.instruments[own.symbol].scales
        new_price = new_qty = None
        if price is not None:
            if own.type is OrderType.MARKET:
                raise ConfigError("price", f"{own.client_order_id} is a market order: it has no price to amend")
            new_price = scales.price(round_price(price, scales.price_dp, scales.price_step))
            if new_price <= 0:
                raise ConfigError("price", f"must be a positive price, got {price!r}")
        if qty is not None:
            new_qty = scales.qty(floor_to_step(to_raw_any(qty, scales.qty_dp, floor=True), scales.qty_step))
            if new_qty <= own.filled_qty:
                raise ConfigError("qty", f"must be above the {own.filled_qty} already filled, got {qty!r}")
        return oms.amend(own, new_price, new_qty)

    def protection(self, entry: Order) -> list[Order]:
        """The protective orders attached to `entry` that may still act (its bracket's children)."""
        assert self._oms is not None
        return [o for o in self._oms.open_orders if o.parent_id == entry.client_order_id]

    # -- protective orders (strategies/protective.py) ----------------------------------------------
    def _protection(self, side: OrderSide, reference: Decimal | None, sl: Any, tp: Any, sl_distance: Any,
                    tp_distance: Any, trail: Any) -> protective.Protection | None:
        """The checked bracket for an entry on `side` (ConfigError naming the field if it is wrong)."""
        if sl is None and tp is None and sl_distance is None and tp_distance is None and trail is None:
            return None
        self._may_protect()
        oms = self._oms
        assert oms is not None, "strategy is not connected to an OMS"
        scales = oms.instruments[self._symbol].scales
        if reference is None:
            reference = self._last_close(scales)
        return protective.resolve(side, reference, scales, sl=sl, tp=tp, sl_distance=sl_distance,
                                  tp_distance=tp_distance, trail=trail)

    def _may_protect(self) -> None:
        cls = type(self)
        if cls.signals is not Strategy.signals and not cls.protective:
            raise StrategyCodeError(f"{cls.__name__} offers signals(), which the backtester's fast path runs without "
                                    "next(): set `protective = True` on the class to send protective orders, so the "
                                    "event path runs them")

    def _last_close(self, scales: Any) -> Decimal | None:
        """The close of the bar being decided on, on the grid: a bracket's reference price."""
        try:
            value = self.data.close[self.i]
        except (AttributeError, IndexError, TypeError):
            return None
        if value is None or value != value or self.i < 0:  # NaN, or before the first bar
            return None
        raw = round_price(value, scales.price_dp, scales.price_step)
        return scales.price(raw) if raw > 0 else None

    def _attach(self, entry: Order, protection: protective.Protection) -> None:
        """Send the bracket's children once the entry is accepted (not denied, not rejected; a
        market entry a venue filled inside submit, as MT5 does, is protected too)."""
        oms = self._oms
        assert oms is not None
        if entry.is_terminal and not entry.filled_qty:
            return
        for child in protective.children(entry, protection, oms.next_client_order_id):
            oms.submit(child)

    def _cancel_protection(self) -> None:
        oms = self._oms
        assert oms is not None
        if not oms.has_children:  # no bracket was ever sent: nothing to cancel (every close() asks)
            return
        for order in oms.open_orders:
            if order.parent_id is None or order.symbol != self._symbol:
                continue
            parent = oms.orders.get(order.parent_id)
            if parent is not None and parent.filled_qty:
                oms.cancel(order)

    def order(self, side: OrderSide, qty: Decimal | None = None, fraction: Decimal | None = None,
              limit: Decimal | float | None = None, stop: Decimal | float | None = None,
              tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False, tag: str = "", *,
              sl: protective.Number | None = None, tp: protective.Number | None = None,
              sl_distance: protective.Number | None = None, tp_distance: protective.Number | None = None,
              trail: protective.Number | str | None = None, parent: Order | None = None,
              oco: bool | Order | None = None, expire: int | datetime | None = None) -> Order | None:
        """Make and submit an order; prices go to the nearest tick, quantities down to the lot.
        None while muted (a runtime rebuilding bars): nothing is made, no id is used.

        Protective orders (issue 17; everything is checked before anything is sent):
        - `sl`/`tp` (prices), `sl_distance`/`tp_distance`, `trail` (distance, or "1.5%"): a bracket
          on this entry (strategies/protective.py); the entry is returned, its children are
          `self.protection(entry)`.
        - `parent=entry` (one-triggers-other): this order works only once `entry` fills; without
          qty it is sized to what the entry filled.
        - `oco=True` starts a one-cancels-other group named after this order; `oco=first` joins
          `first`'s group: a fill of one member cancels the others.

        `expire` (ns UTC, or a datetime; a naive one is UTC) makes a pending order good till that
        moment (time in force GTD, set when tif is left GTC): the venue ends it at the first bar or
        tick at or after it (reason EXPIRED). Refused naming the field: in the past, on a market
        order, or tif GTD without it. An adapter that cannot honour it is refused by the OMS."""
        if self.muted:
            return None
        oms = self._oms
        assert oms is not None, "strategy is not connected to an OMS"
        scales = oms.instruments[self._symbol].scales
        if not isinstance(tif, TimeInForce):
            try:
                tif = TimeInForce(tif)
            except ValueError:
                raise ConfigError("tif", f"must be one of {', '.join(t.value for t in TimeInForce)}, "
                                         f"got {tif!r}") from None
        expire_ns = _expiry(expire, tif, limit is None and stop is None, oms.clock.now_ns())
        if expire_ns is not None:
            tif = TimeInForce.GTD
        parent_id = group = None
        if parent is not None or oco is not None:
            self._may_protect()
        if parent is not None:
            if parent.client_order_id not in oms.orders or parent.is_terminal:
                raise ConfigError("parent", f"{parent.client_order_id} is not a working order of this strategy: "
                                            "a child needs a parent that can still fill")
            if fraction is not None:
                raise ConfigError("fraction", "a child order is sized by its parent's fills: give qty or nothing")
            parent_id = parent.client_order_id
        elif qty is None and fraction is None:
            fraction = self.p.size
        if isinstance(oco, Order):
            if oco.oco_group is None:
                raise ConfigError("oco", f"{oco.client_order_id} belongs to no OCO group: send the first "
                                         "order with oco=True")
            group = oco.oco_group
        elif oco not in (None, True, False):
            raise ConfigError("oco", f"must be True (start a group) or an order of the group, got {oco!r}")
        if qty is not None:
            raw = floor_to_step(to_raw_any(qty, scales.qty_dp, floor=True), scales.qty_step)
            qty = scales.qty(raw)
        limit_price = None if limit is None else scales.price(round_price(limit, scales.price_dp, scales.price_step))
        stop_price = None if stop is None else scales.price(round_price(stop, scales.price_dp, scales.price_step))
        kind = (OrderType.STOP_LIMIT if stop is not None and limit is not None else
                OrderType.STOP if stop is not None else OrderType.LIMIT if limit is not None else OrderType.MARKET)
        protection = None
        if sl is not None or tp is not None or sl_distance is not None or tp_distance is not None or trail is not None:
            if parent_id is not None:
                raise ConfigError("sl" if sl is not None else "tp" if tp is not None else "trail",
                                  "a bracket attaches to an entry, not to a child order")
            protection = self._protection(side, limit_price or stop_price, sl, tp, sl_distance, tp_distance, trail)
        client_order_id = oms.next_client_order_id()
        order = Order(
            client_order_id=client_order_id, bot_id=oms.bot_id, symbol=self._symbol, side=side,
            type=kind, qty=qty, ts_init=oms.clock.now_ns(), limit_price=limit_price, stop_price=stop_price,
            tif=tif, reduce_only=reduce_only, equity_fraction=None if qty is not None else fraction, tag=tag,
            parent_id=parent_id, oco_group=client_order_id if oco is True else group, expire_ns=expire_ns,
        )
        if protection is None:
            oms.submit(order)
            return order
        order.stop_attached = protection.stop is not None  # the risk rule require_stop reads it
        with oms.linked():  # a venue may send the entry and its bracket as one request (Alpaca)
            oms.submit(order)
            self._attach(order, protection)
        return order


def _expiry(expire: int | datetime | None, tif: TimeInForce, market: bool, now_ns: int) -> int | None:
    """`order(expire=...)` as ns UTC, checked (ConfigError naming the field); None without one."""
    if expire is None:
        if tif is TimeInForce.GTD:
            raise ConfigError("expire", "time in force GTD needs expire= (the moment the order ends)")
        return None
    if tif not in (TimeInForce.GTC, TimeInForce.GTD):
        raise ConfigError("tif", f"expire= makes the order GTD; it cannot also be {tif.value}")
    if market:
        raise ConfigError("expire", "a market order fills or fails at once: only a pending (limit/stop) order expires")
    if isinstance(expire, datetime):
        moment = expire if expire.tzinfo is not None else expire.replace(tzinfo=timezone.utc)
        delta = moment - _EPOCH
        expire_ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    elif isinstance(expire, int) and not isinstance(expire, bool):
        expire_ns = expire
    else:
        raise ConfigError("expire", f"must be ns since the epoch (int) or a datetime, got {expire!r}")
    if expire_ns <= now_ns:
        raise ConfigError("expire", f"{expire!r} is not after now ({now_ns} ns): the order would be dead on arrival")
    return expire_ns


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_raw_any(value: Decimal | float | int, dp: int, floor: bool = False) -> int:
    """A user number onto the raw grid at `dp` decimals (floor or nearest, half-even)."""
    scaled = Decimal(str(value)).scaleb(dp)
    if floor:
        return int(scaled.to_integral_value(rounding="ROUND_FLOOR"))
    return int(scaled.to_integral_value(rounding="ROUND_HALF_EVEN"))


def round_price(value: Decimal | float, dp: int, step: int) -> int:
    """Nearest tick, half to even."""
    return div_round_half_even(to_raw_any(value, dp), step) * step


def crossed_above(a: Sequence[float], b: Sequence[float], i: int) -> bool:
    """a crossed above b at bar i, by backtrader's CrossOver rule (strategies/sma_cross.py says
    why): a[i] > b[i] and the last bar before i where they differ had a < b. A touch-and-bounce
    (below, equal, below; above, equal, above) is no cross; NaN ends the look-back."""
    return a[i] - b[i] > 0 and last_nonzero_difference(a, b, i) < 0


def crossed_below(a: Sequence[float], b: Sequence[float], i: int) -> bool:
    return a[i] - b[i] < 0 and last_nonzero_difference(a, b, i) > 0


def cross_above_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised crossed_above for every bar (the same answers)."""
    return cross_masks(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0]


def cross_below_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cross_masks(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[1]


def last_nonzero_difference(fast: Sequence[float], slow: Sequence[float], i: int) -> float:
    """fast - slow at the last bar before `i` where it is not 0 (ties skipped); NaN when a bar
    without both values, or the start of the data, comes first. Only ties are walked over, so
    this costs one step except inside a run of equal values."""
    for j in range(i - 1, -1, -1):
        d = fast[j] - slow[j]
        if d != 0:  # NaN != 0 too: a missing value ends the search
            return float(d)
    return float("nan")


def cross_masks(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(up, down) bar masks of the cross rule, vectorised: the same answers as next()'s. One
    compiled pass (the numpy version made seven million-element temporaries, a tenth of a
    fast-path backtest); `_cross_masks_numpy` is that version, kept as the tests' reference."""
    fast = np.ascontiguousarray(fast, dtype=np.float64)
    slow = np.ascontiguousarray(slow, dtype=np.float64)
    if fast.shape != slow.shape or fast.ndim != 1:
        return _cross_masks_numpy(fast, slow)  # numpy's broadcasting rules and errors
    up = np.empty(len(fast), dtype=np.bool_)
    down = np.empty(len(fast), dtype=np.bool_)
    _cross_pass(fast, slow, up, down)
    return up, down


@numba.njit(cache=True)
def _cross_pass(fast: np.ndarray, slow: np.ndarray, up: np.ndarray, down: np.ndarray) -> None:  # pragma: no cover
    before = np.nan  # the last non-zero (or NaN) difference before bar t; NaN at the start
    for t in range(len(fast)):
        d = fast[t] - slow[t]
        up[t] = d > 0 and before < 0
        down[t] = d < 0 and before > 0
        if d != 0:  # NaN != 0 too: a missing value ends the look-back
            before = d


def _cross_masks_numpy(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = fast - slow
    n = len(d)
    idx = np.arange(n)
    # index of the last bar <= t that is non-zero or NaN (ties carry the previous one forward)
    last = np.maximum.accumulate(np.where(d != 0, idx, -1)) if n else idx
    nzd = np.where(last >= 0, d[np.maximum(last, 0)], np.nan)
    before = np.full(n, np.nan)
    before[1:] = nzd[:-1]
    return (d > 0) & (before < 0), (d < 0) & (before > 0)
