"""Drives one strategy from ticks: bars at each close, `next()` with the history as lists, signals.

The same driver runs live (live.bot) and in the parity replay (live.parity),
so the two differ only where they must: live indicators grow by one value per bar close
(LiveIndicators: O(1) per bar for sma, ema and rsi), the replay computes them once over all bars,
as a backtest does.

Warm-up. A live bot that starts (or restarts hours later) first takes the bars its strategy needs
(`Strategy.warmup_bars()`) from its venue's MarketDataFeed.history, the closed bars before the
one in progress, and runs them through next() muted, so its first live bar is decided on the
indicators a backtest has there rather than on NaN until enough new bars arrive. A warm-up
changes neither the strategy's target nor the last published direction (those are the bot's own
record of what it did, restore_direction's), and an order it would have sent is not sent. If the
venue has no history to give (an error, an unknown timeframe), the log says why and the bot waits
for new bars, as before. The first live bar lacks the ticks before the start: as it always did.

Signals. ml_signal publishes its own (its `signal_sink` is pointed at the store). For the rule
strategies, a Signal is published when the direction they `go()` to changes (strategies/signals.py:
confidence 1, model 0 version 0, target weight the entry's equity fraction), as the backtester
publishes them. The driver is the strategy's Supervisor (strategies/base.py): go() tells it,
and asks it whether order entry is muted; no method of the strategy is replaced.

Muting. After a restart the bars the bot already traded on are rebuilt from the ticks before its
checkpoint, and `next()` runs on each of them with order entry muted (go, order, close and
cancel send nothing: Strategy.muted) and signals discarded: the strategy's own state (an incremental model's
features, which direction ml_signal last emitted) comes back as it was, and nothing is sent twice.
What the strategy asks `go()` for while muted is kept as its target, though.

Closing the gap. A restart can leave the position short of what the strategy wants: an order
journaled but lost before the venue saw it is cancelled (LOST_BEFORE_SUBMIT), and the strategy,
which decided at a crossing, may never decide again (or its decision came while another of its
orders was in flight, and go() waited). So after a restart the driver knows the target (the last
stored signal, then the strategy's own go() calls over the rebuilt bars), waits until none of the
strategy's orders is in flight, and if the position points elsewhere calls go() once with it:
one order, journaled and risk-checked like any other. Once, so a denied or rejected order is not
retried tick after tick. Not after a kill: the kill switch flattened the bot on purpose.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pandas as pd

from engine.errors import ConfigError
from engine.market import Bar, Tick
from engine.money import raw_price
from engine.oms import OrderManager
from engine.risk import RiskEngine
from live.bars import DAY_NS, BarBuilder, BarHistory
from live.indicators import LiveIndicators, is_incremental
from engine.signals import MemorySignals, Signal, SignalSink
from strategies.base import GO_TAGS, Strategy
from strategies.signals import direction_signal

__all__ = ["StrategyDriver", "raw_price", "history_before", "venue_timeframe"]

log = logging.getLogger(__name__)
WIDEN = 3  # tries at a history span of 1x, 4x, 16x the bars wanted (nights, weekends: stocks need ~5x)


class StrategyDriver:
    """Bars, `next()`, signals and muting for one strategy connected to one OMS."""

    def __init__(self, strategy: Strategy, oms: OrderManager, symbol: str, bar: str, sink: SignalSink,
                 gate: RiskEngine | None = None, batch: Any = None) -> None:
        """`batch`: a strategy already initialised over all bars (the parity replay); None live."""
        self.strategy = strategy
        self.oms = oms
        self.symbol = symbol
        self.sink = sink
        self.gate = gate
        self.builder = BarBuilder(symbol, bar)
        self.history = BarHistory()
        self.publishes_own = hasattr(strategy, "signal_sink")
        self.incremental = is_incremental(strategy)
        self.batch = batch is not None
        self.indicators = None if (self.batch or self.incremental) else LiveIndicators(strategy)
        self.muted = False
        self.trading = True          # False once halted: bars are still built, next() is not called
        self.gap_owed = False        # after a restart: bring the position to the target, once
        self.gap_orders = 0          # how many times that sent an order
        self.last_direction: int | None = None
        self.bars = 0
        self.warm_bars = 0           # of `bars`, how many came from the venue's history (warm_up)
        self.signals_published = 0
        self.last_bar: Bar | None = None
        self._discard = MemorySignals()
        self._deciding_tick: Tick | None = None  # set while the strategy's on_tick runs
        self._tick_hook = strategy.on_tick if type(strategy).on_tick is not Strategy.on_tick else None
        strategy.supervise(self)  # muting and signals through the strategy's public hook
        if self.publishes_own:
            strategy.signal_sink = _Counting(self, sink)  # type: ignore[attr-defined]
        if self.incremental and not self.batch:
            strategy.attach(None, symbol)  # type: ignore[arg-type]
            strategy.init()
            strategy.data = self.history  # next() reads the growing lists

    # -- the Supervisor hook (strategies/base.py) ------------------------------------------------------
    def on_go(self, strategy: Strategy, direction: int, fraction: Decimal | None) -> None:
        """go() was asked for `direction` (not while muted: the strategy keeps that as its target
        and sends nothing): a rule strategy's signal when the direction changes."""
        if not self.publishes_own and direction != self.last_direction:
            self.last_direction = direction
            tick = self._deciding_tick
            if tick is None:  # in next(): stamped with the bar, as the backtester stamps it
                signal = direction_signal(self.oms.bot_id, self.symbol, strategy, direction, fraction)
            else:  # in on_tick(): stamped with the tick and its price
                price = tick.last if tick.last == tick.last else (tick.bid + tick.ask) / 2
                signal = direction_signal(self.oms.bot_id, self.symbol, strategy, direction, fraction,
                                          at=(tick.ts, price))
            self._emit(signal)

    def _emit(self, signal: Signal) -> None:
        if self.muted:
            self._discard.publish(signal)
            return
        self.sink.publish(signal)
        self.signals_published += 1

    def restore_direction(self, signals: list[Signal], close_gap: bool = True) -> None:
        """The direction last published before a restart, so the first one after it is not repeated;
        it is also the strategy's target until its own go() calls (over the rebuilt bars, or live)
        say otherwise. `close_gap`: bring the position to the target once trading resumes (not
        for a bot the kill switch flattened)."""
        if signals:
            last = signals[-1]
            self.last_direction = last.direction
            strategy = self.strategy
            strategy.target = last.direction
            weight = last.target_weight
            strategy.target_fraction = None if not weight or weight == strategy.p.size else Decimal(weight)
        self.gap_owed = close_gap

    def _close_gap(self) -> None:
        """Once none of the strategy's orders is in flight (one may close the gap by itself),
        send the order that brings the position to the target, if it is elsewhere."""
        if any(o.tag in GO_TAGS for o in self.oms.open_orders):
            return
        self.gap_owed = False
        strategy = self.strategy
        if strategy.target is None or strategy.direction == strategy.target:
            return
        self.gap_orders += 1
        strategy.go(strategy.target, strategy.target_fraction)

    # -- warm-up --------------------------------------------------------------------------------------
    def warm_up(self, feed: Any, venue: str, now_ns: int) -> int:
        """Seed the bars from `feed.history` (see the module docstring) before the first live tick:
        the strategy's `warmup_bars()` closed bars before the bar `now_ns` falls in. Returns how
        many it took (0 when it had history already, needs none, or the venue gave none)."""
        needed = self.strategy.warmup_bars()
        if self.batch or len(self.history) or needed <= 0:
            return 0
        try:
            frame = history_before(feed, self.symbol, self.builder.width, feed_timeframe(feed, venue, self.builder),
                                   needed, now_ns)
        except Exception as exc:  # noqa: BLE001 - a venue without history must not stop the bot
            why = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__  # a venue's text may hold URLs
            log.warning("bot %s: no warm-up from %s history (%s): its strategy waits for %d new bars",
                        self.oms.bot_id, venue, why, needed)
            return 0
        self._warm(frame)
        log.info("bot %s: warmed up on %d bars of %s history", self.oms.bot_id, len(frame), venue)
        return len(frame)

    def _warm(self, frame: pd.DataFrame) -> None:
        strategy = self.strategy
        saved = strategy.target, strategy.target_fraction, self.last_direction
        muted, self.muted = self.muted, True
        width = self.builder.width
        try:
            for start, o, h, low, c, v in zip(frame.index.as_unit("ns").asi8.tolist(), *(
                    frame[column].to_numpy(dtype="float64").tolist()
                    for column in ("open", "high", "low", "close", "volume"))):
                bar = Bar(self.symbol, start, start + width, o, h, low, c, v)
                self.history.append(bar)
                self.last_bar = bar
                self.bars += 1
                self.warm_bars += 1
                if self.trading:
                    self._next()
        finally:
            self.muted = muted
            strategy.target, strategy.target_fraction, self.last_direction = saved

    # -- per tick -----------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> None:
        """After the venue matched the tick: close a bar if this tick starts a new one (next()),
        then the strategy's own on_tick, if it has one; neither once the bot is halted."""
        if self.gap_owed and not self.muted and self.trading:
            self._close_gap()
        bar = self.builder.on_tick(tick)
        if bar is not None and (not self.history.time or bar.start > self.history.time[-1]):  # not a warmed-up bar
            self.history.append(bar)
            self.last_bar = bar
            self.bars += 1
            if self.trading:
                self._next()
        if self._tick_hook is not None and self.trading:
            self._deciding_tick = tick
            try:
                self._tick_hook(tick)
            finally:
                self._deciding_tick = None

    def _next(self) -> None:
        strategy = self.strategy
        i = len(self.history) - 1
        if self.indicators is not None:
            if self.indicators.ready:
                self.indicators.refresh(self.history)
            else:
                self.indicators.start(self.history)
            strategy.data = self.history
        strategy.i = i
        gate = self.gate
        if gate is not None and not self.muted:  # the loss monitors see equity at every close, as in
            # a backtest (not while muted: the books then hold today's position, not that bar's)
            s = self.oms.instruments[self.symbol].scales
            close_raw = raw_price(self.history.close[i], s.price_dp, s.price_step)
            equity = s.cash(self.oms.portfolio.cash_raw
                            + self.oms.portfolio.positions[self.symbol].qty * close_raw * s.notional_k)
            ts = self.oms.clock.now_ns()
            gate.account.on_equity(equity, ts)
            gate.on_equity(equity, ts)
        strategy.next()


def venue_timeframe(venue: str, width_ns: int) -> str:
    """A bar width in the venue's own timeframe notation (ccxt "5m", Alpaca "5Min", MT5 "M5").
    This belongs to each feed (a `timeframe(width_ns)` there is used first); here until they have it."""
    seconds = width_ns // 1_000_000_000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0 and width_ns % 1_000_000_000 == 0:
            count = seconds // size
            break
    else:
        raise ConfigError("bar", f"{venue} has no bars of {width_ns} ns")
    if venue == "ccxt":
        return f"{count}{unit}"
    if venue == "alpaca":
        return f"{count}{dict(m='Min', h='Hour', d='Day')[unit]}"
    if venue == "mt5":
        return {"m": f"M{count}", "h": f"H{count}", "d": f"D{count}"}[unit]
    raise ConfigError("venue", f"no history timeframe known for venue {venue!r}")


def feed_timeframe(feed: Any, venue: str, builder: BarBuilder) -> str:
    own = getattr(feed, "timeframe", None)
    return own(builder.width) if callable(own) else venue_timeframe(venue, builder.width)


def history_before(feed: Any, symbol: str, width_ns: int, timeframe: str, bars: int, now_ns: int) -> pd.DataFrame:
    """The last `bars` bars that closed before the bar `now_ns` falls in (bins from midnight UTC,
    as BarBuilder's), asked of `feed.history`; a request that returns fewer is widened (markets
    close at night and at weekends), WIDEN tries in all, then what there is is taken."""
    current = now_ns // DAY_NS * DAY_NS + (now_ns % DAY_NS) // width_ns * width_ns
    span = bars * width_ns
    frame = pd.DataFrame()
    for _ in range(WIDEN):
        start = max(current - span, 0)
        frame = feed.history(symbol, timeframe, start, current - 1)
        index = frame.index.as_unit("ns").asi8 if len(frame) else []
        frame = frame[(index < current)] if len(frame) else frame
        if len(frame) >= bars or start == 0:
            break
        span *= 4
    if len(frame):
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame.iloc[-bars:]


class _Counting:
    """ml_signal's sink: discarded while muted, counted otherwise."""

    def __init__(self, driver: StrategyDriver, sink: SignalSink) -> None:
        self.driver = driver
        self.sink = sink
        self.signals: list[Signal] = []

    def publish(self, signal: Signal) -> None:
        self.driver._emit(signal)
        if not self.driver.muted:
            self.signals.append(signal)
