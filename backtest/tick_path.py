"""The backtester's event path on ticks: bars for the strategy, fills on the ticks.

A backtest on bars fills a market order at the next bar's open; a paper bot fills it at the next
tick (the ask for a buy). To compare a recorded live session with a backtest fill for fill
(`tickbridge parity`), or to backtest a strategy on tick data as it will trade, this path takes
the ticks themselves:

- bars: `ticks_to_bars` over the admitted ticks, the backtester's own resampler; the strategy is
  initialised once over *all* of them (BarData, init(), connect()), as the event path on bars does,
  so every indicator comes from the full series: a strategy that peeks ahead, or whose indicator
  depends on the length of its input, decides differently here than live;
- ticks: every tick goes through a TickGuard with the bot's guard settings (the ticks live dropped
  are dropped here), then SimulatedVenue.on_tick (the one fill model of backtests and paper
  trading; prices on the grid as the paper adapter puts them), and `next()` runs at the tick that
  closes each bar, as live calls it;
- signals: a rule strategy's come from strategies/signals.py (the same class live uses), ml_signal
  publishes its own;
- control actions (a session's starts, cancels on stop, kills) are applied after the tick they
  followed (engine/controls.py, the runtime's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from backtest.data import ticks_to_bars
from brokers.paper.venue import SimulatedVenue
from engine import controls
from engine.clock import SimulatedClock
from engine.instrument import Instrument
from engine.market import Tick
from engine.money import FeeModel, Slippage, raw_price
from engine.oms import OrderManager
from engine.orders import Fill, Order
from engine.portfolio import Portfolio
from engine.risk import RiskEngine
from engine.signals import MemorySignals, Signal
from engine.tick_guard import TickGuard, TickGuardConfig
from strategies.base import BarData, Strategy
from strategies.signals import DirectionSignals

TICK_COLUMNS = ("ts", "bid", "ask", "last", "size")


@dataclass
class TickRun:
    """What a tick backtest produced: the OMS's orders and fills, the signals, the bars."""

    orders: list[Order]
    fills: list[Fill]
    signals: list[Signal]
    bars: pd.DataFrame
    bar_closes: list[tuple[int, float]] = field(default_factory=list)  # (start, close) of each bar next() saw


@dataclass
class _Controls:
    """The runtime's control switches (engine.controls.Driven) for the backtester's loop."""

    strategy: Strategy
    trading: bool = True
    muted: bool = False


def run_tick_events(ticks: dict[str, np.ndarray], symbol: str, bar: str, strategy: Strategy,
                    instrument: Instrument, cash: Decimal, fees: FeeModel, bot_id: str,
                    tick_guard: TickGuardConfig | None = None, gate: Any = None, marks: TickGuard | None = None,
                    actions_at: dict[int, list[tuple[str, str]]] | None = None,
                    clock: SimulatedClock | None = None) -> TickRun:
    """Backtest `strategy` (constructed, not initialised) on `ticks` (numpy columns ts, bid, ask,
    last, size; sequence = row). `gate`: a RiskEngine reading its prices from `marks`, the guard
    this loop advances (a risk engine's last price and band reference are what it has admitted so
    far, as live) and the same `clock`. Returns the orders, fills and signals (module docstring)."""
    n = len(ticks["ts"])
    admitted = np.zeros(n, dtype=bool)
    guard = TickGuard(tick_guard)
    rows = [Tick(symbol, int(ts), bid, ask, last, size) for ts, bid, ask, last, size in
            zip(*(ticks[c].tolist() for c in TICK_COLUMNS))]
    for k, tick in enumerate(rows):
        admitted[k] = guard.admit(tick)
    index = pd.DatetimeIndex(ticks["ts"][admitted].astype("datetime64[ns]"), name="time").tz_localize("UTC")
    frame = pd.DataFrame({c: ticks[c][admitted] for c in ("bid", "ask", "last", "size")}, index=index)
    bars = ticks_to_bars(frame, bar)

    strategy.attach(BarData(bars), symbol)
    strategy.init()
    clock = clock if clock is not None else SimulatedClock()
    venue = SimulatedVenue(instrument, cash, fees, Slippage())
    oms = OrderManager(bot_id, clock, venue, Portfolio.for_instrument(cash, instrument), {symbol: instrument})
    strategy.connect(oms)
    sink = MemorySignals()
    publishes_own = hasattr(strategy, "signal_sink")
    if publishes_own:
        strategy.signal_sink = sink  # type: ignore[attr-defined]
    else:
        strategy.supervise(DirectionSignals(bot_id, symbol, sink))
    if isinstance(gate, RiskEngine):
        gate.bind(oms)
        oms.risk = gate
    marks = marks if marks is not None else TickGuard(tick_guard)
    switch = _Controls(strategy)
    actions_at = actions_at or {}
    s = instrument.scales
    starts = bars.index.as_unit("ns").asi8.tolist()
    on_tick_hook = type(strategy).on_tick is not Strategy.on_tick
    closes: list[tuple[int, float]] = []
    i = -1  # the bar in progress
    for action, reason in actions_at.get(-1, []):
        controls.apply(action, oms, switch, gate, reason)
    for seq, tick in enumerate(rows):
        clock.ts = max(clock.ts, tick.ts)
        if marks.admit(tick):
            size = 0 if tick.size != tick.size else int(tick.size * 10**s.qty_dp)
            venue.on_tick(raw_price(tick.bid, s.price_dp, s.price_step), raw_price(tick.ask, s.price_dp, s.price_step),
                          size, tick.ts)
            # the bar this tick belongs to; every bar before it has closed: next() on each, in order
            current = int(np.searchsorted(starts, tick.ts, side="right")) - 1
            while i + 1 < current:
                i += 1
                if switch.trading:
                    strategy.i = i
                    _equity_to_gate(gate, oms, symbol, s, float(bars["close"].iat[i]))
                    strategy.next()
                closes.append((starts[i], float(bars["close"].iat[i])))
            if on_tick_hook and switch.trading:
                strategy.on_tick(tick)
        for action, reason in actions_at.get(seq, []):
            controls.apply(action, oms, switch, gate, reason)
    signals = sink.signals
    return TickRun(list(oms.orders.values()), list(oms.fills), signals, bars, closes)


def _equity_to_gate(gate: Any, oms: OrderManager, symbol: str, s: Any, close: float) -> None:
    """The loss monitors see equity at every close, as live (live/driver.py)."""
    if gate is None:
        return
    close_raw = raw_price(close, s.price_dp, s.price_step)
    equity = s.cash(oms.portfolio.cash_raw + oms.portfolio.positions[symbol].qty * close_raw * s.notional_k)
    ts = oms.clock.now_ns()
    gate.account.on_equity(equity, ts)
    gate.on_equity(equity, ts)
