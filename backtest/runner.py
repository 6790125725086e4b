"""Run a strategy over historical bars, through the same engine objects live trading uses.

Event path: every bar goes through the simulated venue (fills), the strategy's `next()` and the
mark-to-market; every order goes through the OMS (ids, risk gate, state machine) into the
simulated venue, and every fill into the portfolio. Fast path: if the strategy offers
vectorised `signals()`, a compiled kernel books the same trades (see backtest.fast_path). Both
return a BacktestResult; the parity tests hold them to identical orders, fills and equity.
"""

from __future__ import annotations

import gc
from array import array
from decimal import Decimal
from operator import attrgetter
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.fast_path import OK, KernelInputs, run_kernel, scaled_rint, unsized_orders
from backtest.frames import orders_frame, trades_frame
from backtest.result import BacktestResult
from brokers.base import RejectReason
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import SIGNIFICANT_DIGITS, Instrument, infer_columns_grid
from engine.money import ConversionRates, FeeModel, Slippage, currency_increment_for, decimal_places, to_raw
from engine.oms import OrderManager
from engine.risk import AccountRisk, RiskConfig, RiskEngine
from engine.portfolio import Portfolio
from engine.orders import OrderState
from strategies.base import SIZE_DP, BarData, Strategy, parse_params, to_raw_any
from strategies.signals import RecordedDirections, vector_signals

FRACTIONAL_STEP = Decimal("0.000001")
ProgressHook = Callable[[int, int], None]


def infer_frame_grid(frame: pd.DataFrame) -> tuple[Decimal, str | None]:
    """The price grid of OHLC bars, at the data's own precision (engine.instrument.infer_price_grid),
    and a warning when prices had to be rounded onto it (more significant digits than it holds)."""
    columns = [frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    # one grid for all four (the largest price's limit, one fallback), as infer_price_grid gives it for
    # their concatenation, without making it
    grid = infer_columns_grid(columns)
    increment, rounded = grid.increment, grid.rounded
    if not rounded:
        return increment, None
    total = sum(int(np.isfinite(c).sum()) for c in columns)
    return increment, (f"prices have more decimals than {SIGNIFICANT_DIGITS} significant digits hold: "
                       f"{rounded} of {total} OHLC prices were rounded to the {increment} grid "
                       "(set --price-increment to choose one)")


def build_instrument(frame: pd.DataFrame, config: BacktestConfig, units: str,
                     warnings: list[str] | None = None) -> Instrument:
    """The instrument a CSV backtest trades: grid from the config, else from its instrument spec,
    else inferred from the prices (a warning appended to `warnings` if they had to be rounded);
    margin from --leverage / --margin, else from the spec."""
    spec = config.instrument
    price_increment = config.price_increment or (spec.tick if spec is not None else None)
    if price_increment is None:
        price_increment, warning = infer_frame_grid(frame)
        if warning is not None and warnings is not None:
            warnings.append(warning)
    size_increment = (config.size_increment or (spec.lot_step if spec is not None else None)
                      or (Decimal(1) if units == "whole" else FRACTIONAL_STEP))
    currency_increment = account_currency_increment(config)
    if spec is None and config.leverage is None and config.margin is None:
        return Instrument(symbol=config.symbol, price_increment=price_increment, size_increment=size_increment,
                          min_qty=config.min_qty, currency_increment=currency_increment)
    margin: dict[str, Any] = {}
    if config.leverage is not None:
        margin["leverage"] = config.leverage
    elif config.margin is not None:
        margin["margin_rate"] = config.margin
    elif spec is not None:
        margin = {k: v for k, v in (("leverage", spec.leverage), ("margin_rate", spec.margin_rate),
                                    ("margin_per_lot", spec.margin_per_lot)) if v is not None}
    margin["fraction_sizing"] = config.fraction_sizing or (spec.fraction_sizing if spec is not None else None) \
        or "margin"
    extra: dict[str, Any] = {}
    if spec is not None:
        extra = {"multiplier": spec.contract_size, "commission_per_lot": spec.commission_per_lot,
                 "swap_long": spec.swap_long, "swap_short": spec.swap_short,
                 "quote_currency": spec.quote_currency or "USD", "base_currency": spec.base_currency or ""}
        if spec.currency_increment is not None:
            extra["currency_increment"] = spec.currency_increment
    min_qty = config.min_qty or (spec.min_qty if spec is not None and spec.min_qty is not None else Decimal(0))
    return Instrument(**{"symbol": config.symbol, "price_increment": price_increment,
                         "size_increment": size_increment, "min_qty": min_qty,
                         "currency_increment": currency_increment, **extra, **margin})


def account_currency_increment(config: BacktestConfig) -> Decimal:
    """The amount fees and cash are booked to: the instrument spec's, else --currency-increment
    when given, else the account currency's own (0.01 USD, 1 JPY, 1e-8 USDT: fee precision
    follows the currency, so a crypto account is not charged in whole cents)."""
    spec = config.instrument
    if spec is not None and spec.currency_increment is not None:
        return spec.currency_increment
    if "currency_increment" in config.model_fields_set:
        return config.currency_increment
    quote = spec.quote_currency if spec is not None else None
    return currency_increment_for(config.account_currency or quote or "USD")


def fee_model(config: BacktestConfig) -> FeeModel:
    """The fee model of a backtest: --commission, --commission-per-order and --min-fee."""
    return FeeModel(config.commission, config.commission_per_order, config.min_fee)


def to_raw_prices(values: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Float prices onto the raw integer grid (nearest tick, half-even), once per run."""
    s = instrument.scales
    raw = np.empty(len(values), dtype=np.int64)
    # one compiled pass into the int64 array (no float temporary of n values: 8 MB of fresh memory
    # per million bars, its page faults as long as the conversion); numpy's arithmetic, which a
    # price that is not finite or not inside int64 still goes through
    if values.dtype != np.float64 or not scaled_rint(values, 10.0**s.price_dp, raw):
        scaled = values * 10.0**s.price_dp
        raw = np.rint(scaled, out=scaled).astype(np.int64)  # rounded in place: one float temporary, not two
    if s.price_step != 1:
        raw = np.rint(raw / s.price_step).astype(np.int64) * s.price_step
    return raw


def run_backtest(frame: pd.DataFrame, strategy_cls: type[Strategy], params: dict[str, Any],
                 config: BacktestConfig, risk: RiskConfig | None = None,
                 progress: ProgressHook | None = None) -> BacktestResult:
    """Backtest `strategy_cls` on OHLCV `frame` (as backtest.data.load_bars returns it)."""
    parsed = parse_params(strategy_cls.Params, params)
    grid_warnings: list[str] = []
    instrument = build_instrument(frame, config, parsed.units, grid_warnings)  # type: ignore[attr-defined]
    strategy = _prepared(strategy_cls, parsed, frame, instrument)
    if risk is not None and config.path == "fast":
        raise ConfigError("path", "the fast path cannot run the risk engine: use --path event (or auto) with --risk")
    if instrument.on_margin and config.path == "fast":
        raise ConfigError("path", "the fast path cannot book margin, swap or stop-outs: use --path event (or auto)")
    if strategy_cls.protective and config.path == "fast":
        raise ConfigError("path", "the fast path cannot simulate protective orders (brackets, OCO, trailing stops, "
                                  "amend): use --path event (or auto)")
    use_fast = config.path == "fast" or (config.path == "auto" and risk is None and not instrument.on_margin
                                         and not strategy_cls.protective
                                         and type(strategy).signals is not Strategy.signals)
    meta = {"strategy": strategy_cls.name, "params": parsed.model_dump(mode="json"),
            "symbol": instrument.symbol, "price_increment": str(instrument.price_increment),
            "size_increment": str(instrument.size_increment), "config": config.model_dump(mode="json")}
    if use_fast:
        result = run_fast(strategy, frame, instrument, config)
        if result is not None:
            result.meta.update(meta)
            return _with_signals(result, strategy, grid_warnings, config.bot_id, instrument.symbol)
        strategy = _prepared(strategy_cls, parsed, frame, instrument)
        meta["fallback"] = "fast path out of range; ran the event path"
    if strategy_cls.protective:  # declared: a strategy cannot know in advance whether it will send them
        meta["protective"] = ("the strategy sends protective orders (protective = True): the fast path cannot "
                              "simulate them, so the event path ran")
    result = run_events(strategy, frame, instrument, config, risk, progress)
    result.meta.update(meta)
    return _with_signals(result, strategy, grid_warnings, config.bot_id, instrument.symbol)


def _with_signals(result: BacktestResult, strategy: Strategy, more: list[str], bot_id: str = "backtest",
                  symbol: str = "") -> BacktestResult:
    """Attach the signals the run published, as live publishes them: ml_signal's own; a rule
    strategy's at each change of the direction it goes to (strategies/signals.py), observed on the
    event path, derived from signals() on the fast path (the same rows, by construction)."""
    published = getattr(getattr(strategy, "signal_sink", None), "signals", None)
    supervisor = strategy.supervisor

    def signals() -> list[dict[str, Any]]:  # on first read (BacktestResult.signals)
        if published is not None:
            made = published
        elif isinstance(supervisor, RecordedDirections):
            made = supervisor.signals(strategy)
        else:
            made = vector_signals(strategy, bot_id, symbol)
        return [s.as_dict() for s in made]

    result.signals_source = signals
    warnings = [*(getattr(strategy, "warnings", None) or []), *more]  # the strategy's first (the title)
    if warnings:
        result.meta["warnings"] = warnings
    return result


def _publish_signals(strategy: Strategy, bot_id: str, symbol: str) -> None:
    """A rule strategy's signals, as live publishes them (ml_signal publishes its own)."""
    if not hasattr(strategy, "signal_sink"):
        strategy.supervise(RecordedDirections(bot_id, symbol))


def _prepared(strategy_cls: type[Strategy], params: Any, frame: pd.DataFrame, instrument: Instrument) -> Strategy:
    strategy = strategy_cls(params)
    strategy.attach(BarData(frame), instrument.symbol)
    strategy.init()
    return strategy


class BarClock(SimulatedClock):
    """The event loop's clock: the time of bar `bar`, read from the bars' times when asked.

    Why: the loop used to set `ts` at every bar from a list of a million Python ints made first (the
    list alone is a fiftieth of a backtest); it now sets the bar number and the clock looks the
    time up only when something reads it (an order made, a risk check): the same value. 0 before
    the first bar, as a SimulatedClock starts."""

    __slots__ = ("bar", "_time")

    def __init__(self, time_ns: np.ndarray) -> None:  # not super().__init__: it would set the read-only ts
        self.bar = -1
        self._time = time_ns.item

    @property
    def ts(self) -> int:  # type: ignore[override]
        return self._time(self.bar) if self.bar >= 0 else 0

    def now_ns(self) -> int:
        bar = self.bar
        return self._time(bar) if bar >= 0 else 0


def run_events(strategy: Strategy, frame: pd.DataFrame, instrument: Instrument, config: BacktestConfig,
               risk: RiskConfig | None = None, progress: ProgressHook | None = None) -> BacktestResult:
    """The event-by-event path: bar -> venue fills -> strategy.next() -> mark.

    The books only change inside the venue's matching, so the loop records (cash, position) at
    those bars and the per-bar equity curve is rebuilt afterwards with the same float formula
    (cash + qty * close), in numpy. The cyclic garbage collector is paused for the loop: it
    allocates many small objects and no cycles, and full collections over a growing heap would
    otherwise cost more than the trading logic. A strategy that knows the bars where its next()
    may act (Strategy.acting_bars: sma_cross's candidate crossings) is stepped from one such bar
    to the next while no order works (_step_acting_bars): a million-bar run then calls next() at
    about a tenth of the bars, and books exactly what the plain loop books.
    """
    if instrument.on_margin:
        return run_margin_events(strategy, frame, instrument, config, risk, progress)
    s = instrument.scales
    time_ns = frame.index.as_unit("ns").asi8
    clock = BarClock(time_ns)
    portfolio = Portfolio.for_instrument(config.cash, instrument)
    venue = SimulatedVenue(instrument, config.cash, fee_model(config),
                           Slippage(config.slippage_bps), shared_account=portfolio)
    oms = OrderManager(config.bot_id, clock, venue, portfolio, {instrument.symbol: instrument})
    strategy.connect(oms)
    _publish_signals(strategy, config.bot_id, instrument.symbol)

    t_item = time_ns.item  # a bar's time as a Python int, read only where needed (not a million-int list)
    closes = frame["close"].to_numpy(dtype=np.float64)
    n = len(time_ns)
    # the bars where next() may act (Strategy.acting_bars), when the strategy knows them and no risk
    # engine needs to see every bar's equity: the loop then steps from one to the next while no
    # order is working, bar by bar while one is, and skips what the plain loop would do at the bars
    # between (set the bar, call a next() that does nothing): the same calls, in the same order, at
    # every bar where anything happens
    acting = strategy.acting_bars() if risk is None else None
    if acting is not None:  # a strategy's own hook: sorted, each bar once, inside the data (as the loop needs)
        acting = np.unique(np.asarray(acting, dtype=np.int64))
        acting = acting[(acting >= 0) & (acting < n)]
    ohlc = [frame[c].to_numpy() for c in ("open", "high", "low", "close")]

    def raw_at(i: int) -> tuple[int, int, int, int, int]:
        """Bar i's raw prices and time, as the whole columns' conversion gives them (elementwise)."""
        o, h, low, c = (int(to_raw_prices(column[i:i + 1], instrument)[0]) for column in ohlc)
        return o, h, low, c, t_item(i)

    if acting is None:  # numpy arrays, read (as Python ints) only at bars with working orders
        o_raw, h_raw, l_raw, c_raw = (to_raw_prices(column, instrument) for column in ohlc)
        o_item, h_item, l_item, c_item = o_raw.item, h_raw.item, l_raw.item, c_raw.item
    gate = _risk_gate(risk, config, clock, instrument, strategy, c_raw) if risk is not None else None
    if gate is not None:
        gate.bind(oms)
        oms.risk = gate
    pos = portfolio.positions[instrument.symbol]
    # the marks as machine numbers (array.array): a list would keep a float object per value, and a
    # long run's tens of thousands of marks are fresh memory; they are read back as arrays, not converted
    mark_bar, mark_cash = array("q", [-1]), array("d", [portfolio.cash_float])
    mark_qty, mark_units = array("d", [0.0]), array("d", [0.0])
    working = venue._working
    on_bar = venue.on_bar
    next_ = strategy.next
    chunk = max(n // 100, 10_000)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if acting is not None:
            if n:
                # the orders next() sends at an acting bar are matched at the bar after it: the raw prices
                # of those bars only, converted together (not four columns of n); any other bar where an
                # order still works converts its own (raw_at)
                after = acting + 1
                after = after[after < n]
                # as lists: an item of a list is read in a fifth of the time of ndarray.item's call
                near = tuple(to_raw_prices(column[after], instrument).tolist() for column in ohlc)
                _step_acting_bars(acting.tolist() + [n], n, chunk, clock, strategy, next_, working, on_bar,
                                  after.tolist() + [n], (*near, time_ns[after].tolist()), raw_at,
                                  (mark_bar, mark_cash, mark_qty, mark_units), portfolio, pos, progress)
            n_plain = 0
        else:
            n_plain = n
        for start in range(0, n_plain, chunk):  # the plain loop: every bar
            stop = min(start + chunk, n)
            for i in range(start, stop):
                clock.bar = i
                if working:  # .item(i): the Python int at once, without a numpy scalar in between
                    on_bar(o_item(i), h_item(i), l_item(i), c_item(i), t_item(i), i)
                    mark_bar.append(i)
                    mark_cash.append(portfolio.cash_float)
                    mark_qty.append(pos.qty_float)
                    mark_units.append(pos.units_float)
                strategy.i = i
                if gate is not None:  # the loss monitors see equity at every close
                    ts = t_item(i)
                    equity_now = s.cash(portfolio.cash_raw + pos.qty * int(c_raw[i]) * s.notional_k)
                    gate.account.on_equity(equity_now, ts)
                    gate.on_equity(equity_now, ts)
                next_()
            if progress is not None:
                progress(stop, n)
        if n:
            venue.cancel_all(RejectReason.END_OF_DATA)
            closing = strategy.close()
            if closing is not None:
                venue.close_position_at(raw_at(n - 1)[3], t_item(n - 1), n - 1, closing)
        # each mark holds from its bar to the next mark's: its values repeated over those bars (the
        # marks' bars only grow; the first, -1, holds from bar 0)
        mark_bar.append(n)
        held = np.diff(np.frombuffer(mark_bar, dtype=np.int64)[1:], prepend=0)
        # cash + qty * close, computed in place in one array (a + b == b + a exactly in IEEE
        # arithmetic: the same bits as the expression, without its two temporaries of n floats)
        equity = np.repeat(np.frombuffer(mark_qty, dtype=np.float64), held)
        equity *= closes
        equity += np.repeat(np.frombuffer(mark_cash, dtype=np.float64), held)
        position = np.repeat(np.frombuffer(mark_units, dtype=np.float64), held)
        if n:
            equity[-1] = portfolio.cash_float + pos.qty_float * closes[-1]
        result = _event_result(oms, portfolio, frame, instrument, config, equity, position)
        if venue.first_unsized is not None:
            result.unsized_orders = venue.unsized
            result.unsized_reason = unsized_reason(instrument, venue.first_unsized, strategy)
        return result
    finally:
        if gc_was_enabled:
            _promote_young_objects()
            gc.enable()


# What the permanent generation held when this module was imported (CPython 3.12 freezes a few
# hundred of its own tuples at start-up): more than that means the host froze a heap on purpose.
_FROZEN_AT_IMPORT = gc.get_freeze_count()
# Objects moved to the oldest generation without a scan since the last full collection made here,
# and how many may be before the next one: a quarter of what that collection left (CPython's own
# rule for the objects it promotes), at least _MIN_BUDGET.
_MIN_BUDGET = 100_000
_promoted = 0
_promote_budget = _MIN_BUDGET


def _promote_young_objects() -> None:
    """Move what the loop allocated into the oldest generation without scanning it.

    Why: the collector is paused for the loop, so when it is switched back on its youngest
    generation holds every order and fill of the run (a quarter of a million objects for 54,000
    orders), and the first allocation after gc.enable() walks them all only to promote them: a
    tenth of the run, finding no garbage. gc.freeze() + gc.unfreeze() is the documented way to put
    them straight into the oldest generation. Objects promoted so do not count towards the
    collector's own trigger of a full collection, though, and a run leaves cycles (the OMS and its
    venue) that only a full collection frees: so once the runs before this one promoted more than
    the budget, this run ends with a full collection instead (a sweep of event backtests in one
    process keeps its memory bounded, as before; a single run never pays for it). Skipped when
    someone froze objects since this module was imported (a server that froze its heap before
    forking): unfreeze() would give that heap back to the collector."""
    global _promoted, _promote_budget
    if gc.get_freeze_count() > _FROZEN_AT_IMPORT:
        return
    if _promoted > _promote_budget:  # earlier runs' objects, and their garbage cycles, are due
        gc.collect()  # scans this run's objects too, and promotes them as the collector does
        _promoted = 0
        _promote_budget = max(_MIN_BUDGET, len(gc.get_objects()) // 4)
        return
    _promoted += gc.get_count()[0]  # the young objects: tracked allocations since the last collection
    gc.freeze()
    gc.unfreeze()


def _step_acting_bars(acting: list[int], n: int, chunk: int, clock: BarClock, strategy: Strategy,
                      next_: Callable[[], None], working: list[Any], on_bar: Callable[..., None],
                      near: list[int], prices: tuple[list[int], ...],
                      raw_at: Callable[[int], tuple[int, int, int, int, int]], marks: tuple[array, ...],
                      portfolio: Portfolio, pos: Any, progress: ProgressHook | None) -> None:
    """run_events' bar loop for a strategy that knows its acting bars (ascending, then n): each
    bar the plain loop would do anything at (orders working, or next() able to act) gets what it
    gets there, in the same order (the bar set, the venue's matching, the marks, strategy.i,
    next()); the bars between are skipped, and the progress hook is called at the same bars.
    next() is called at the acting bars only: at a bar where orders work that is not one of them
    (the bar after an acting bar, where its orders fill) it provably does nothing (the contract of
    Strategy.acting_bars), so the call is skipped as at the bars between.
    The bar number and strategy.i end at the last bar, as the plain loop leaves them. `near`
    (ascending, then n) are the bars whose raw open, high, low, close and time `prices` hold by
    position; the venue matches any other bar with raw_at's."""
    opens, highs, lows, closes, times = prices
    mark_bar, mark_cash, mark_qty, mark_units = (marks_of.append for marks_of in marks)
    k = 0  # acting[k]: the first acting bar not before i (taken past a bar once next() ran there)
    j = 0  # near[j]: the first bar with converted prices not before i (taken past a bar once used)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        i = start
        while i < stop:
            if working:
                clock.bar = i
                while near[j] < i:
                    j += 1
                if near[j] == i:
                    on_bar(opens[j], highs[j], lows[j], closes[j], times[j], i)
                    j += 1
                else:
                    on_bar(*raw_at(i), i)
                mark_bar(i)
                mark_cash(portfolio.cash_float)
                mark_qty(pos.qty_float)
                mark_units(pos.units_float)
                strategy.i = i
                if acting[k] == i:
                    k += 1
                    next_()
            else:  # nothing to match: on to the next bar where next() may act
                i = acting[k]
                if i >= stop:
                    break
                k += 1
                clock.bar = strategy.i = i
                next_()
            i += 1
        if progress is not None:
            progress(stop, n)
    clock.bar = strategy.i = n - 1


def run_margin_events(strategy: Strategy, frame: pd.DataFrame, instrument: Instrument, config: BacktestConfig,
                      risk: RiskConfig | None = None, progress: ProgressHook | None = None) -> BacktestResult:
    """The event path on a margin account (issue 14): the venue sees every bar (swap at rollover,
    stop-out), and equity is the exact balance plus the floating P&L at each close, converted
    into the account currency at the bar's rate. Slower per bar than run_events, which is why
    cash accounts keep their own loop."""
    s = instrument.scales
    currency = config.account_currency or instrument.quote_currency
    rates: ConversionRates | None = None
    if currency != instrument.quote_currency:
        if instrument.base != currency:
            raise ConfigError("account_currency", f"a {currency} account trading {instrument.symbol} (quoted in "
                              f"{instrument.quote_currency}) needs a {instrument.quote_currency}/{currency} rate: "
                              f"only a pair whose base currency is the account's converts by its own prices")
        rates = ConversionRates()
    clock = SimulatedClock()
    portfolio = Portfolio.for_instrument(config.cash, instrument, currency, rates, config.stop_out_level)
    venue = SimulatedVenue(instrument, config.cash, fee_model(config),
                           Slippage(config.slippage_bps), shared_account=portfolio)
    oms = OrderManager(config.bot_id, clock, venue, portfolio, {instrument.symbol: instrument})
    strategy.connect(oms)
    _publish_signals(strategy, config.bot_id, instrument.symbol)
    times = frame.index.as_unit("ns").asi8.tolist()
    o_raw, h_raw, l_raw, c_raw = (to_raw_prices(frame[c].to_numpy(), instrument).tolist()
                                  for c in ("open", "high", "low", "close"))
    gate = _risk_gate(risk, config, clock, instrument, strategy, np.asarray(c_raw)) if risk is not None else None
    if gate is not None:
        gate.bind(oms)
        oms.risk = gate
    n = len(times)
    pos = portfolio.positions[instrument.symbol]
    symbol, cash_dp = instrument.symbol, s.cash_dp
    equity = np.empty(n, dtype=np.float64)
    position = np.empty(n, dtype=np.float64)
    for i in range(n):
        ts = times[i]
        clock.ts = ts
        venue.on_bar(o_raw[i], h_raw[i], l_raw[i], c_raw[i], ts, i)
        if rates is not None:  # the close's rate for the marks and the strategy's turn
            rates.update(instrument.base, instrument.quote_currency, s.price(c_raw[i]), ts)
        equity_raw = portfolio.equity_raw({symbol: c_raw[i]}, ts)
        strategy.i = i
        if gate is not None:
            equity_now = s.cash(equity_raw)
            gate.account.on_equity(equity_now, ts)
            gate.on_equity(equity_now, ts)
        strategy.next()
        equity[i] = equity_raw / 10.0**cash_dp
        position[i] = pos.units_float
        if progress is not None and i % 10_000 == 0:
            progress(i, n)
    if n:
        venue.cancel_all(RejectReason.END_OF_DATA)
        closing = strategy.close()
        if closing is not None:
            venue.close_position_at(c_raw[-1], times[-1], n - 1, closing)
        equity[-1] = portfolio.equity_raw({symbol: c_raw[-1]}, times[-1]) / 10.0**cash_dp
        position[-1] = pos.units_float
    result = _event_result(oms, portfolio, frame, instrument, config, equity, position)
    result.meta["margin"] = {"account_currency": currency, "stop_outs": venue.stop_outs,
                             "swap": str(s.cash(portfolio.swap_raw).quantize(instrument.currency_increment)),
                             "leverage": str(instrument.leverage or ""),
                             "margin_rate": str(instrument.margin_rate or ""),
                             "margin_per_lot": str(instrument.margin_per_lot or ""),
                             "fraction_sizing": instrument.fraction_sizing}
    if venue.first_unsized is not None:
        result.unsized_orders = venue.unsized
        result.unsized_reason = unsized_reason(instrument, venue.first_unsized, strategy)
    return result


def _risk_gate(risk: RiskConfig, config: BacktestConfig, clock: SimulatedClock, instrument: Instrument,
               strategy: Strategy, close_raw: np.ndarray) -> RiskEngine:
    """The live risk engine, with the last price being the close of the bar being decided on."""
    s = instrument.scales
    return RiskEngine(config.bot_id, risk.for_bot(config.bot_id), AccountRisk(risk.account), clock,
                      {instrument.symbol: instrument},
                      last_price=lambda symbol: s.price(int(close_raw[max(strategy.i, 0)])))


_TRADE_FIELDS = ("direction", "qty", "entry_price", "exit_price", "entry_bar", "exit_bar", "fees", "pnl")
_STATE_CODE = {OrderState.FILLED: 0, OrderState.REJECTED: 1, OrderState.CANCELED: 2, OrderState.DENIED: 3}


def _raw_trades(closed: list[Any]) -> dict[str, np.ndarray]:
    """The closed trades' raw integer columns, each read straight into its array (np.fromiter over
    one field), without a list per column nor a tuple per trade: a long run closes tens of
    thousands (27,097 trades: 10.5 ms, against 13.3 ms for one pass of 8-tuples reshaped)."""
    n = len(closed)
    return {name: np.fromiter(map(attrgetter(name), closed), dtype=np.int64, count=n) for name in _TRADE_FIELDS}


def _raw_orders(orders: list[Any], fills: list[Any], times: np.ndarray, qty_dp: int) -> dict[str, np.ndarray]:
    """Every order's raw row (bar, side, tag, state, qty, average fill price, fee, fill bar) for
    orders_frame, one pass over the fills and one over the orders."""
    filled: dict[str, list[int]] = {}  # client id -> [qty, notional, fee, ts of last fill] (raw)
    for fill in fills:
        agg = filled.get(fill.client_order_id)
        if agg is None:
            filled[fill.client_order_id] = [fill.qty_raw, fill.qty_raw * fill.price_raw, fill.fee_raw, fill.ts]
        else:
            agg[0] += fill.qty_raw
            agg[1] += fill.qty_raw * fill.price_raw
            agg[2] += fill.fee_raw
            agg[3] = fill.ts
    none = [0, 0, 0, -1]
    rows = []
    for o in orders:
        a = filled.get(o.client_order_id, none)
        rows.append((o.ts_init, o.side.sign, 1 if o.tag == "close" else 0, _STATE_CODE.get(o.state, 2),
                     -1 if o.qty is None else (a[0] if a[0] else to_raw(o.qty, qty_dp)),
                     # single fills (all a bar backtest makes) divide exactly; a partial-fill average is floored
                     a[1] // a[0] if a[0] else 0, a[2], a[3]))
    cols = np.array(rows, dtype=np.int64).reshape(len(rows), 8).T
    fill_ts = cols[7]
    fill_bar = np.searchsorted(times, fill_ts)
    fill_bar[fill_ts < 0] = -1
    return {"bar": np.searchsorted(times, cols[0]), "side": cols[1].copy(), "tag": cols[2].copy(),
            "state": cols[3].copy(), "qty": cols[4].copy(), "price": cols[5].copy(), "fee": cols[6].copy(),
            "fill_bar": fill_bar}


def _event_result(oms: OrderManager, portfolio: Any, frame: pd.DataFrame, instrument: Instrument,
                  config: BacktestConfig, equity: np.ndarray, position: np.ndarray) -> BacktestResult:
    s = instrument.scales
    trades = trades_frame(_raw_trades(portfolio.closed_trades), frame.index, s)
    orders = list(oms.orders.values())
    fills = list(oms.fills)

    def build_orders() -> pd.DataFrame:  # on first read, as the fast path's (most callers never look)
        raw = _raw_orders(orders, fills, frame.index.as_unit("ns").asi8, s.qty_dp)
        fractions = [None if o.equity_fraction is None else str(o.equity_fraction) for o in orders]
        reasons = [o.reason for o in orders]
        return orders_frame(raw, frame.index, s, oms.bot_id, fractions, reasons)

    denied = [o.as_dict() for o in oms.denied]
    gate = oms.risk
    state_changes = [{"ts": c.ts, "scope": c.scope, "from": c.old.value, "to": c.new.value, "reason": c.reason}
                     for c in getattr(gate, "state_changes", []) + getattr(getattr(gate, "account", None),
                                                                          "state_changes", [])]
    return BacktestResult(
        # the curve made for this result, nobody else holds it: the Series takes it as it is (pandas
        # copies an array by default, 8 MB of fresh memory for 1M bars)
        equity=pd.Series(equity, index=frame.index, name="equity", copy=False),
        position=position,
        trades=trades,
        close=frame["close"],
        initial_cash=float(config.cash),
        fees_total=float(s.cash(portfolio.fees_raw)),
        orders_source=build_orders,
        denied=denied,
        meta={"path": "event", "bars": len(frame), "reasons": _reasons(oms), "risk_state_changes": state_changes},
    )


def _reasons(oms: OrderManager) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in oms.rejected + oms.denied:
        counts[order.reason or "?"] = counts.get(order.reason or "?", 0) + 1
    return counts


def run_fast(strategy: Strategy, frame: pd.DataFrame, instrument: Instrument,
             config: BacktestConfig, raw_prices: tuple[np.ndarray, np.ndarray] | None = None,
             make_trades: Callable[..., pd.DataFrame] = trades_frame) -> BacktestResult | None:
    """The compiled path, or None when the run falls outside it (the caller reruns on events).

    For sweeps: `raw_prices` is the frame's (open, close) already through `to_raw_prices` for this
    instrument (converted once for thousands of runs); `make_trades` builds the trades table from
    the kernel's raw trades (a sweep's only needs the columns its statistics read)."""
    if instrument.on_margin:  # the kernel books a cash account only: margin runs on events
        return None
    target = strategy.signals()
    if target is None:
        return None
    s = instrument.scales
    fees = fee_model(config)
    fee_num, fee_den = fees.fraction(s)
    slip_num, slip_den = Slippage(config.slippage_bps).fraction()
    p = strategy.p
    sizes = strategy.sizes()
    frac_dp = decimal_places(p.size) if sizes is None else SIZE_DP
    frac_num: int | np.ndarray = to_raw(p.size, frac_dp)
    if sizes is not None:  # the strategy sizes each entry: fractions on a 10^-SIZE_DP grid
        frac_num = np.rint(np.nan_to_num(np.asarray(sizes, dtype=np.float64)) * 10**SIZE_DP).astype(np.int64)
    fixed_qty = -1
    if p.fixed_size is not None:
        fixed_qty = (to_raw_any(p.fixed_size, s.qty_dp, floor=True) // s.qty_step) * s.qty_step
    max_qty = -1 if instrument.max_qty is None else to_raw(instrument.max_qty, s.qty_dp)
    close_f = frame["close"].to_numpy(dtype=np.float64)
    inputs = KernelInputs(
        target=np.ascontiguousarray(target, dtype=np.float64),
        open_raw=to_raw_prices(frame["open"].to_numpy(), instrument) if raw_prices is None else raw_prices[0],
        close_raw=to_raw_prices(frame["close"].to_numpy(), instrument) if raw_prices is None else raw_prices[1],
        close_f=close_f,
        cash0=s.cash_raw(config.cash), cash_dp=s.cash_dp, qty_dp=s.qty_dp, qty_step=s.qty_step,
        min_qty=s.min_qty, max_qty=max_qty, notional_k=s.notional_k, multiplier=s.multiplier,
        fee_num=fee_num, fee_den=fee_den, fee_step=s.fee_step, fixed_fee=fees.fixed_raw(s),
        fee_rate=float(fees.rate), slip_num=slip_num, slip_den=slip_den, price_step=s.price_step,
        frac_num=frac_num, frac_den=10**frac_dp, fixed_qty=fixed_qty, min_fee=fees.min_raw(s),
    )
    try:
        out = run_kernel(inputs)
    except OverflowError:  # an argument beyond int64 (a very fine grid, a huge account): outside the envelope
        return None
    if out.status != OK:
        return None
    unsized, first_unsized = unsized_orders(inputs, out)
    trades = make_trades(out.trades, frame.index, s)
    o = out.orders

    def build_orders() -> pd.DataFrame:
        fraction = None if p.fixed_size is not None else str(p.size)
        tags, states = o["tag"].tolist(), o["state"].tolist()
        if sizes is None or p.fixed_size is not None:
            fractions = [fraction if tag == 0 else None for tag in tags]
        else:
            fractions = [str(Decimal(int(frac_num[bar])).scaleb(-SIZE_DP)) if tag == 0 else None
                         for tag, bar in zip(tags, o["bar"].tolist())]
        reasons = [_kernel_reason(state, tag, fixed_qty, s.min_qty, max_qty) for state, tag in zip(states, tags)]
        return orders_frame(o, frame.index, s, config.bot_id, fractions, reasons)

    fees_total = int(out.orders["fee"][out.orders["state"] == 0].sum())
    return BacktestResult(
        equity=pd.Series(out.equity, index=frame.index, name="equity", copy=False),  # the kernel's own array
        position=out.position,
        trades=trades,
        close=frame["close"],
        initial_cash=float(config.cash),
        fees_total=float(s.cash(fees_total)),
        orders_source=build_orders,
        denied=[],
        meta={"path": "fast", "bars": len(frame)},
        unsized_orders=unsized,
        unsized_reason=None if first_unsized is None else unsized_reason(instrument, first_unsized, strategy,
                                                                         sizes is not None),
    )


def unsized_reason(instrument: Instrument, first: tuple[int, int, int], strategy: Strategy,
                   per_bar_sizes: bool | None = None) -> str:
    """Why the first entry could not be sized, and what to change: from its raw (price, budget,
    quantity), so that both paths, which count the same orders, say the same words."""
    price_raw, budget_raw, qty_raw = first
    s = instrument.scales
    price = f"{s.price(price_raw).normalize():,f}"
    budget = f"{s.cash(budget_raw).quantize(instrument.currency_increment):,f}"
    if budget_raw <= 0:
        return f"the equity is gone (budget {budget})"
    p = strategy.p
    if per_bar_sizes is None:
        per_bar_sizes = type(strategy).sizes is not Strategy.sizes
    basis = "its share of the equity" if per_bar_sizes else "the cash" if p.size == 1 else f"{p.size} of the equity"
    whole_lots = s.qty_step >= 10**s.qty_dp
    if whole_lots and getattr(p, "units", None) == "whole":
        fix = "use --param units=fractional"
    elif whole_lots:
        fix = "use a smaller --size-increment or more --cash"
    else:
        fix = "use more --cash" + (" or a smaller minimum quantity" if s.min_qty > s.qty_step else "")
    if qty_raw == 0:
        step = s.qty(s.qty_step).normalize()
        lot = "one unit" if step == 1 else f"one lot of {step:f}"
        return f"{lot} ({instrument.symbol} at {price}) costs more than {basis} ({budget}); {fix}"
    return (f"{basis} ({budget}) buys {s.qty(qty_raw).normalize():f} {instrument.symbol} at {price}, below the "
            f"minimum quantity {s.qty(s.min_qty).normalize():f}; {fix}")


def _kernel_reason(state: int, tag: int, fixed_qty: int, min_qty: int, max_qty: int) -> str | None:
    """The reject reason the event path's venue gives for the same kernel outcome."""
    if state == 2:
        return str(RejectReason.END_OF_DATA)
    if state != 1:
        return None
    if tag == 0 and fixed_qty >= 0 and fixed_qty < min_qty:
        return str(RejectReason.QTY_BELOW_MIN)
    if tag == 0 and fixed_qty >= 0 and 0 <= max_qty < fixed_qty:
        return str(RejectReason.QTY_ABOVE_MAX)
    return str(RejectReason.INSUFFICIENT_FUNDS)
