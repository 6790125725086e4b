"""Parity: replay a recorded session twice, through the same BotRunner and through the
backtester, and diff each against what the session did (signals, orders, fills).

"Live does not match my backtest" has two usual causes: the strategy saw different data (bars
built differently, an indicator that looked ahead or depends on how much history it was given),
or orders were filled differently. A session's inputs are recorded while it runs
(live/recorder.py: every tick a bot read, durably, and its control actions), so even a session
killed with SIGKILL replays, up to its last journaled input (the bot's checkpoint in the store).

1. Through the runner: the same BotRunner as live (live/runner.py), on a simulated clock, over an
   in-memory paper venue (PaperAdapter over SimulatedVenue), fed the recorded ticks at full speed,
   with the session's control actions after the tick they followed. It differs from live only if
   the runtime is not deterministic (a restart that lost or repeated something, a race).
2. Through the backtester's event path on ticks (backtest/tick_path.py): bars resampled by the
   backtester from the recorded ticks, the strategy initialised once over *all* of them as a
   backtest does (so an indicator that peeks ahead, or depends on its input's length, differs
   here), fills on the same ticks through the same SimulatedVenue. A backtest on bars would fill a
   market order at the next bar's open rather than at the next tick: that by-design difference is
   not what parity looks for.

Bad ticks: both replays run the recorded ticks (all of them: the recording keeps what the guard
dropped) through a TickGuard with the bot's own `tick_guard` config, so they drop exactly the
ticks live dropped, and the risk engine reads its prices from that guard, as live does.

Compared against the store as it is now: orders and fills up to the session's last input. An
order kept open at the end of this session and filled in a later one shows as a difference in
state; replay the latest session instead. A restart also starts the risk engine afresh (loss
monitors, rate window), which a continuous replay cannot reproduce exactly.
"""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from rich.table import Table

from backtest.tick_path import run_tick_events
from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import Instrument
from engine.money import FeeModel, Slippage
from engine.orders import Fill, Order
from engine.signals import MemorySignals, Signal
from engine.store.db import make_engine
from engine.store.journal import SqlJournal
from engine.store.signals import SqlSignals
from engine.tick_guard import TickGuard
from live.bars import bar_width_ns
from live.bot import guarded_prices, make_gate, trading_core
from live.config import BotConfig, parse_bot_config
from live.events import QueuedSink
from live.feed import ReplayFeed, TickTable
from live.recorder import META_FILE, read_session
from live.runner import BotParts, BotRunner
from strategies import get_strategy

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
    backtest: str     # the replay's value
    against: str = "backtest"  # which replay: "runner" (the same BotRunner) or "backtest"


@dataclass
class Replay:
    orders: list[Order]
    fills: list[Fill]
    signals: list[Signal]
    bars_checked: int
    bar_mismatches: list[str]
    bar_closes: list[tuple[int, float]] = field(default_factory=list)  # (start, close) per closed bar


@dataclass
class ParityReport:
    session_id: str
    counts: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)  # bot -> kind -> (live, runner,
    #                                                                                      backtest)
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


def _events_as_actions(events: dict[int, list[dict[str, Any]]]) -> dict[int, list[tuple[str, str]]]:
    return {seq: [(e["action"], e.get("reason", "")) for e in items] for seq, items in events.items()}


def replay_through_runner(config: BotConfig, instrument: Instrument, ticks: TickTable,
                          events: dict[int, list[dict[str, Any]]]) -> Replay:
    """The session again through the same BotRunner, on an in-memory paper venue (module docstring)."""
    symbol = config.symbol
    adapter = PaperAdapter(SimulatedVenue(instrument, config.cash, FeeModel(config.commission), Slippage()))
    inbox: queue.Queue[Any] = queue.Queue()
    sink = QueuedSink(inbox)
    adapter.connect(sink)
    clock = SimulatedClock()
    guard = TickGuard(config.tick_guard)
    signals = MemorySignals()
    oms, gate, driver = trading_core(config, clock, adapter, instrument, guard, None, signals)  # no store
    # the session's own stop actions (a cancel on stop) are in `events`; the replay's end is not a
    # stop (a SIGKILLed session never cancelled anything): it keeps what is open
    config = config.model_copy(update={"on_stop": "keep"})
    runner = BotRunner(BotParts(config, ReplayFeed(ticks, symbol, 0.0), adapter, sink, inbox, clock, None, oms,
                                instrument, driver, guard, gate, scheduled=_events_as_actions(events)))
    runner.run()
    history = driver.history
    return Replay(list(oms.orders.values()), list(oms.fills), signals.signals, driver.bars, [],
                  list(zip(history.time, history.close)))


def replay_through_backtest(config: BotConfig, instrument: Instrument, ticks: TickTable,
                            events: dict[int, list[dict[str, Any]]]) -> Replay:
    """The session's ticks through the backtester's event path on ticks (module docstring)."""
    marks = TickGuard(config.tick_guard)  # advanced by the backtest's loop: the risk engine's prices
    clock = SimulatedClock()
    gate = make_gate(config, clock, instrument, *guarded_prices(marks, instrument))
    columns = {"ts": ticks.ts, "bid": ticks.bid, "ask": ticks.ask, "last": ticks.last, "size": ticks.size}
    strategy = get_strategy(config.strategy)(config.strategy_params())
    run = run_tick_events(columns, config.symbol, config.bar, strategy, instrument, config.cash,
                          FeeModel(config.commission), config.id, config.tick_guard, gate, marks,
                          _events_as_actions(events), clock)
    return Replay(run.orders, run.fills, run.signals, len(run.bar_closes), [], run.bar_closes)


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
            config = parse_bot_config(info["config"], allow_code_refs=True)  # the operator's own session
            instrument = instrument_from_meta(info["instrument"])
            stored = SqlJournal(engine, bot_id, "PAPER").load({config.symbol: instrument})
            # a clean stop wrote its last input; a killed session replays up to the store's checkpoint,
            # the last input whose effects were committed
            last_seq = int(info["last_seq"]) if "last_seq" in info else stored.checkpoint
            ticks = bot_ticks(table, config.symbol, last_seq)
            events = history_events(root, session_id, bot_id, last_seq)
            replays = {"runner": replay_through_runner(config, instrument, ticks, events)}
            try:
                replays["backtest"] = replay_through_backtest(config, instrument, ticks, events)
            except ConfigError as refused:  # StrategyCodeError too  # e.g. fewer bars than an indicator needs
                report.differences.append(Difference(bot_id, "backtest", "(run)", "error", "-", str(refused)))
                replays["backtest"] = Replay([], [], [], 0, [])
            last_ts = int(ticks.ts[-1]) if len(ticks) else -1
            live_orders = {o.client_order_id: o for o in stored.orders if o.ts_init <= last_ts}
            live_fills = {f.execution_id: f for f in stored.fills if f.ts <= last_ts}
            # a signal is stamped with its bar's start and decided when the bar closes, which was
            # in this session if the bar ended by its last tick
            width = bar_width_ns(config.bar)
            live_signals = [x for x in SqlSignals(engine).load(bot_id) if x.ts + width <= last_ts]
            counts: dict[str, tuple[int, ...]] = {"signals": (len(live_signals),), "orders": (len(live_orders),),
                                                  "fills": (len(live_fills),)}
            for against, replay in replays.items():
                differences: list[Difference] = []
                _diff(bot_id, "signal", {f"{k:04d}": x for k, x in enumerate(live_signals)},
                      {f"{k:04d}": x for k, x in enumerate(replay.signals)}, SIGNAL_FIELDS, differences)
                _diff(bot_id, "order", live_orders, {o.client_order_id: o for o in replay.orders}, ORDER_FIELDS,
                      differences)
                _diff(bot_id, "fill", live_fills, {f.execution_id: f for f in replay.fills}, FILL_FIELDS,
                      differences)
                for d in differences:
                    d.against = against
                report.differences += differences
                counts["signals"] += (len(replay.signals),)
                counts["orders"] += (len(replay.orders),)
                counts["fills"] += (len(replay.fills),)
            built, resampled = replays["runner"].bar_closes, replays["backtest"].bar_closes
            mismatches = [f"bar {i} at {a[0] if a else b[0]}" for i, (a, b) in
                          enumerate(zip(built, resampled)) if a != b]
            if len(built) != len(resampled):
                mismatches.append(f"{len(built)} bars built tick by tick, {len(resampled)} resampled")
            report.differences += [Difference(bot_id, "bar", m, "start/close", "tick-built", "ticks_to_bars", "bars")
                                   for m in mismatches]
            counts["bars"] = (len(built), len(built), len(resampled))
            report.counts[bot_id] = counts
    finally:
        engine.dispose()
    return report


def diff_table(report: ParityReport, limit: int = 200) -> Table:
    """Counts per bot, then the differences (the first `limit`), or a line saying there are none."""
    if report.equal:
        title = f"parity {report.session_id}: live, its replay through the runner and the backtest agree"
    else:
        title = f"parity {report.session_id}: {len(report.differences)} difference(s)"
    table = Table(title=title)
    for column in ("bot", "kind", "key", "field", "live", "replay", "against"):
        table.add_column(column)
    for bot_id, counts in report.counts.items():
        for kind, values in counts.items():
            live, runner, backtest = (list(values) + ["-", "-"])[:3]
            table.add_row(bot_id, kind, "(count)", "", str(live), f"{runner} / {backtest}", "runner / backtest")
    for d in report.differences[:limit]:
        table.add_row(d.bot_id, d.kind, d.key, d.field, d.live, d.backtest, d.against, style="red")
    if len(report.differences) > limit:
        table.add_row("", "", f"... {len(report.differences) - limit} more", "", "", "")
    return table
