"""Parity: replay a recorded live session through the backtester and diff signals, orders, fills.

"Live does not match my backtest" has two usual causes: the strategy saw different data (bars
built differently, an indicator that looked ahead or depends on how much history it was given),
or orders were filled differently. The replay takes the session's recorded ticks
(live.recorder) and does what a backtest does with them:

- bars: backtest.data.ticks_to_bars over the ticks, the backtester's own resampler (the live
  bars come from live.bars, tick by tick); the replay checks each bar it closes
  against that frame;
- the strategy: initialised once over *all* the bars, as the backtester's event path does
  (`BarData`, `init()`, `connect()`), so every indicator comes from the full series, while live
  computed it over the bars so far. A strategy that peeks ahead, or whose indicator depends on
  the length of its input, differs here;
- `next()` at each bar close, through the OMS (same client order ids, same risk engine when the
  bot had one) into SimulatedVenue, the one fill model behind backtests and paper trading.

Fills: the backtester's bar loop fills a market order at the next bar's open, while the paper
venue live fills it at the next *tick* (the ask for a buy). By design those differ, and a diff
of them would only restate that. So the replay feeds the recorded ticks through the same
SimulatedVenue (`on_tick`, same raw-price rounding as PaperSession, same fees, same cash) and
calls the strategy at the tick that closes each bar, as live did. What is left to differ is
exactly what must not: data, indicators, decisions, ids, sizing, risk, fills.

Bad ticks: the replay runs the recorded ticks (all of them: the recording keeps what the guard
dropped) through a TickGuard with the bot's own `tick_guard` config, so it drops exactly the
ticks live dropped, and the risk engine reads its last price and band reference from that guard,
as live does.

The session's control actions (its starts, the cancels of a stop with on_stop=cancel, kills)
are replayed after the tick they followed, taken from this session's meta.json and those of the
sessions before it (a resumed bot's history began in an earlier one; its ticks from the first
are in this session's recording because the bot re-read them to rebuild its bars).

Compared against the store as it is now: orders and fills up to the session's last tick. An
order kept open at the end of this session and filled in a later one shows as a difference in
state; replay the latest session instead. A restart also starts the risk engine afresh (loss
monitors, rate window), which a continuous replay cannot reproduce exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from rich.table import Table

from backtest.data import ticks_to_bars
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import FeeModel, Slippage
from engine.oms import OrderManager
from engine.orders import Fill, Order
from engine.portfolio import Portfolio
from live import actions
from live.bars import bar_width_ns
from live.bot import guarded_prices, make_gate
from live.config import BotConfig, parse_bot_config
from live.driver import StrategyDriver, raw_price
from live.feed import TickTable
from live.recorder import META_FILE, read_session
from engine.store.db import make_engine
from engine.store.journal import SqlJournal
from engine.tick_guard import TickGuard
from models.signals import MemorySignals, Signal, SqlSignals
from strategies import get_strategy
from strategies.base import BarData

ORDER_FIELDS = ("side", "type", "qty", "limit_price", "stop_price", "tif", "reduce_only", "equity_fraction", "tag",
                "state", "filled_qty", "avg_fill_price", "reason", "ts_init")
FILL_FIELDS = ("client_order_id", "side", "qty_raw", "price_raw", "fee_raw", "ts", "liquidity")
SIGNAL_FIELDS = ("symbol", "ts", "direction", "confidence", "target_weight", "price", "model_id", "model_version")


@dataclass
class Difference:
    bot_id: str
    kind: str        # signal | order | fill | bar
    key: str
    field: str
    live: str
    backtest: str


@dataclass
class Replay:
    orders: list[Order]
    fills: list[Fill]
    signals: list[Signal]
    bars_checked: int
    bar_mismatches: list[str]


@dataclass
class ParityReport:
    session_id: str
    counts: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # bot -> kind -> (live, backtest)
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


def instrument_from_meta(meta: dict[str, str]) -> Instrument:
    return Instrument(meta["symbol"], price_increment=Decimal(meta["price_increment"]),
                      size_increment=Decimal(meta["size_increment"]), min_qty=Decimal(meta["min_qty"]),
                      currency_increment=Decimal(meta["currency_increment"]))


def bot_ticks(table: Any, symbol: str, last_seq: int) -> TickTable:
    """The recorded ticks of one symbol, sequences 0..last_seq (refused if any is missing)."""
    rows = table.filter(pc.equal(pc.cast(table["symbol"], "string"), symbol)).sort_by("seq")
    seq = rows["seq"].to_numpy()
    seq = seq[seq <= last_seq]
    if len(seq) == 0 or seq[0] != 0 or not np.array_equal(seq, np.arange(len(seq))):
        raise ConfigError("session", f"the recording lacks {symbol} ticks 0..{last_seq}: cannot replay")
    n = len(seq)
    columns = {k: rows[k].to_numpy()[:n] for k in ("ts", "bid", "ask", "last", "size")}
    return TickTable(f"recorded {symbol}", columns["ts"].astype(np.int64), *(columns[k].astype(np.float64)
                                                                          for k in ("bid", "ask", "last", "size")))


def history_events(root: Path, session_id: str, bot_id: str, last_seq: int) -> dict[int, list[dict[str, Any]]]:
    """Control actions of `bot_id` from this session and the sessions that started before it."""
    this = json.loads((root / session_id / META_FILE).read_text())
    events: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(root.glob(f"*/{META_FILE}")):
        meta = json.loads(path.read_text())
        if (meta.get("started", ""), meta["session_id"]) > (this["started"], session_id):
            continue  # a later session
        for event in meta.get("bots", {}).get(bot_id, {}).get("events", []):
            if event["seq"] <= last_seq:
                events.setdefault(event["seq"], []).append(event)
    return events


def replay_bot(config: BotConfig, instrument: Instrument, ticks: TickTable,
               events: dict[int, list[dict[str, Any]]]) -> Replay:
    """The backtester's side: see the module docstring."""
    symbol = config.symbol
    s = instrument.scales
    guard = TickGuard(config.tick_guard)  # the bot's own guard config: the same ticks dropped as live
    admitted = np.zeros(len(ticks), dtype=bool)
    for k, (_, tick) in enumerate(ticks.ticks(symbol)):
        admitted[k] = guard.admit(tick)
    index = pd.DatetimeIndex(ticks.ts[admitted].astype("datetime64[ns]"), name="time").tz_localize("UTC")
    frame = pd.DataFrame({c: getattr(ticks, c)[admitted] for c in ("bid", "ask", "last", "size")}, index=index)
    bars = ticks_to_bars(frame, config.bar)

    params = config.strategy_params()
    strategy = get_strategy(config.strategy)(params)
    strategy.attach(BarData(bars), symbol)
    strategy.init()
    clock = SimulatedClock()
    venue = SimulatedVenue(instrument, config.cash, FeeModel(config.commission), Slippage())
    oms = OrderManager(config.id, clock, venue, Portfolio.for_instrument(config.cash, instrument),
                       {symbol: instrument})
    strategy.connect(oms)
    # a second guard in step with the replay, as live's is with its feed: the risk engine's last
    # price and band reference are what it has admitted so far
    marks = TickGuard(config.tick_guard)
    gate = make_gate(config, clock, instrument, *guarded_prices(marks, instrument))
    if gate is not None:
        gate.bind(oms)
        oms.risk = gate
    sink = MemorySignals()
    driver = StrategyDriver(strategy, oms, symbol, config.bar, sink, gate, batch=bars)
    mismatches: list[str] = []
    closes = bars["close"].tolist()
    times = bars.index.as_unit("ns").asi8.tolist()

    for action in events.get(-1, []):
        actions.apply(action["action"], oms, driver, gate, action.get("reason", ""))
    for k, (seq, tick) in enumerate(ticks.ticks(symbol)):
        clock.ts = max(clock.ts, tick.ts)
        if marks.admit(tick):
            venue.on_tick(raw_price(tick.bid, s.price_dp, s.price_step), raw_price(tick.ask, s.price_dp, s.price_step),
                          0 if tick.size != tick.size else int(tick.size * 10**s.qty_dp), tick.ts)
            before = driver.bars
            driver.on_tick(tick)
            if driver.bars != before:
                i, bar = driver.bars - 1, driver.last_bar
                if i >= len(times) or bar is None or (bar.start, bar.close) != (times[i], closes[i]):
                    mismatches.append(f"bar {i} at {bar.start if bar else '?'}")
        for action in events.get(seq, []):
            actions.apply(action["action"], oms, driver, gate, action.get("reason", ""))
    return Replay(list(oms.orders.values()), list(oms.fills), sink.signals
                  if not driver.publishes_own else strategy.signal_sink.signals,  # type: ignore[attr-defined]
                  driver.bars, mismatches)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return str(getattr(value, "value", value))


def _diff(bot_id: str, kind: str, live: dict[str, Any], backtest: dict[str, Any], fields: tuple[str, ...],
          out: list[Difference]) -> None:
    for key in sorted(set(live) | set(backtest)):
        a, b = live.get(key), backtest.get(key)
        if a is None or b is None:
            out.append(Difference(bot_id, kind, key, "(exists)", "yes" if a is not None else "no",
                                  "yes" if b is not None else "no"))
            continue
        for name in fields:
            va, vb = getattr(a, name), getattr(b, name)
            if va != vb:
                out.append(Difference(bot_id, kind, key, name, _text(va), _text(vb)))


def run_parity(session_id: str, state_dir: str | Path = "var", database_url: str | None = None) -> ParityReport:
    root = Path(state_dir) / "sessions"
    meta, table = read_session(root, session_id)
    url = database_url or (meta.get("database") if "***" not in meta.get("database", "***") else None)
    engine = make_engine(url)
    report = ParityReport(session_id)
    try:
        for bot_id, info in meta["bots"].items():
            if "last_seq" not in info:
                raise ConfigError("session", f"bot {bot_id!r} did not stop cleanly in session {session_id}")
            config = parse_bot_config(info["config"], allow_code_refs=True)  # the operator's own session
            instrument = instrument_from_meta(info["instrument"])
            last_seq = int(info["last_seq"])
            ticks = bot_ticks(table, config.symbol, last_seq)
            replay = replay_bot(config, instrument, ticks,
                                history_events(root, session_id, bot_id, last_seq))
            last_ts = int(ticks.ts[-1]) if len(ticks) else -1
            stored = SqlJournal(engine, bot_id, "PAPER").load({config.symbol: instrument})
            live_orders = {o.client_order_id: o for o in stored.orders if o.ts_init <= last_ts}
            live_fills = {f.execution_id: f for f in stored.fills if f.ts <= last_ts}
            # a signal is stamped with its bar's start and decided when the bar closes, which was
            # in this session if the bar ended by its last tick
            width = bar_width_ns(config.bar)
            live_signals = [x for x in SqlSignals(engine).load(bot_id) if x.ts + width <= last_ts]
            differences: list[Difference] = []
            _diff(bot_id, "signal", {f"{k:04d}": x for k, x in enumerate(live_signals)},
                  {f"{k:04d}": x for k, x in enumerate(replay.signals)}, SIGNAL_FIELDS, differences)
            _diff(bot_id, "order", live_orders, {o.client_order_id: o for o in replay.orders}, ORDER_FIELDS,
                  differences)
            _diff(bot_id, "fill", live_fills, {f.execution_id: f for f in replay.fills}, FILL_FIELDS, differences)
            differences += [Difference(bot_id, "bar", m, "start/close", "tick-built", "ticks_to_bars")
                            for m in replay.bar_mismatches]
            report.differences += differences
            report.counts[bot_id] = {"signals": (len(live_signals), len(replay.signals)),
                                     "orders": (len(live_orders), len(replay.orders)),
                                     "fills": (len(live_fills), len(replay.fills)),
                                     "bars": (replay.bars_checked, replay.bars_checked - len(replay.bar_mismatches))}
    finally:
        engine.dispose()
    return report


def diff_table(report: ParityReport, limit: int = 200) -> Table:
    """Counts per bot, then the differences (the first `limit`), or a line saying there are none."""
    if report.equal:
        title = f"parity {report.session_id}: live and backtest agree"
    else:
        title = f"parity {report.session_id}: {len(report.differences)} difference(s)"
    table = Table(title=title)
    for column in ("bot", "kind", "key", "field", "live", "backtest"):
        table.add_column(column)
    for bot_id, counts in report.counts.items():
        for kind, (live, backtest) in counts.items():
            table.add_row(bot_id, kind, "(count)", "", str(live), str(backtest))
    for d in report.differences[:limit]:
        table.add_row(d.bot_id, d.kind, d.key, d.field, d.live, d.backtest, style="red")
    if len(report.differences) > limit:
        table.add_row("", "", f"... {len(report.differences) - limit} more", "", "", "")
    return table
