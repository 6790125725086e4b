"""Run a strategy over historical bars, through the same engine objects live trading uses.

Event path: every bar goes through the simulated venue (fills), the strategy's `next()` and the
mark-to-market; every order goes through the OMS (ids, risk gate, state machine) into the
simulated venue, and every fill into the portfolio. Fast path: if the strategy offers
vectorised `signals()`, a compiled kernel books the same trades (see backtest.fast_path). Both
return a BacktestResult; the parity tests hold them to identical orders, fills and equity.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.fast_path import OK, KernelInputs, run_kernel
from backtest.frames import orders_frame, trades_frame
from backtest.result import BacktestResult
from brokers.base import RejectReason
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.instrument import Instrument, infer_price_increment
from engine.money import FeeModel, Slippage, decimal_places, to_raw
from engine.oms import OrderManager, RiskGate
from engine.orders import OrderState
from strategies.base import BarData, Strategy, parse_params, to_raw_any

FRACTIONAL_STEP = Decimal("0.000001")
ProgressHook = Callable[[int, int], None]


def build_instrument(frame: pd.DataFrame, config: BacktestConfig, units: str) -> Instrument:
    """The instrument a CSV backtest trades: grid from the config, or inferred from the prices."""
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    price_increment = config.price_increment or infer_price_increment(prices.ravel())
    size_increment = config.size_increment or (Decimal(1) if units == "whole" else FRACTIONAL_STEP)
    return Instrument(symbol=config.symbol, price_increment=price_increment, size_increment=size_increment,
                      min_qty=config.min_qty, currency_increment=config.currency_increment)


def to_raw_prices(values: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Float prices onto the raw integer grid (nearest tick, half-even), once per run."""
    s = instrument.scales
    raw = np.rint(values * 10.0**s.price_dp).astype(np.int64)
    if s.price_step != 1:
        raw = np.rint(raw / s.price_step).astype(np.int64) * s.price_step
    return raw


def run_backtest(frame: pd.DataFrame, strategy_cls: type[Strategy], params: dict[str, Any],
                 config: BacktestConfig, risk: RiskGate | None = None,
                 progress: ProgressHook | None = None) -> BacktestResult:
    """Backtest `strategy_cls` on OHLCV `frame` (as backtest.data.load_bars returns it)."""
    parsed = parse_params(strategy_cls.Params, params)
    instrument = build_instrument(frame, config, parsed.units)  # type: ignore[attr-defined]
    strategy = _prepared(strategy_cls, parsed, frame, instrument)
    use_fast = config.path == "fast" or (config.path == "auto" and risk is None
                                         and type(strategy).signals is not Strategy.signals)
    meta = {"strategy": strategy_cls.name, "params": parsed.model_dump(mode="json"),
            "symbol": instrument.symbol, "price_increment": str(instrument.price_increment),
            "size_increment": str(instrument.size_increment), "config": config.model_dump(mode="json")}
    if use_fast:
        result = run_fast(strategy, frame, instrument, config)
        if result is not None:
            result.meta.update(meta)
            return result
        strategy = _prepared(strategy_cls, parsed, frame, instrument)
        meta["fallback"] = "fast path out of range; ran the event path"
    result = run_events(strategy, frame, instrument, config, risk, progress)
    result.meta.update(meta)
    return result


def _prepared(strategy_cls: type[Strategy], params: Any, frame: pd.DataFrame, instrument: Instrument) -> Strategy:
    strategy = strategy_cls(params)
    strategy.attach(BarData(frame), instrument.symbol)
    strategy.init()
    return strategy


def run_events(strategy: Strategy, frame: pd.DataFrame, instrument: Instrument, config: BacktestConfig,
               risk: RiskGate | None = None, progress: ProgressHook | None = None) -> BacktestResult:
    """The event-by-event path: bar -> venue fills -> strategy.next() -> mark."""
    s = instrument.scales
    clock = SimulatedClock()
    venue = SimulatedVenue(instrument, config.cash, FeeModel(config.commission, config.commission_per_order),
                           Slippage(config.slippage_bps))
    from engine.portfolio import Portfolio  # local: keeps the import graph of this module flat
    portfolio = Portfolio.for_instrument(config.cash, instrument)
    oms = OrderManager(config.bot_id, clock, venue, portfolio, {instrument.symbol: instrument}, risk=risk)
    strategy.connect(oms)

    times_index = frame.index
    times = times_index.asi8.tolist()
    closes = frame["close"].to_numpy(dtype=np.float64).tolist()
    o_raw = to_raw_prices(frame["open"].to_numpy(), instrument).tolist()
    h_raw = to_raw_prices(frame["high"].to_numpy(), instrument).tolist()
    l_raw = to_raw_prices(frame["low"].to_numpy(), instrument).tolist()
    c_raw = to_raw_prices(frame["close"].to_numpy(), instrument).tolist()
    n = len(closes)
    equity = [0.0] * n
    position = [0.0] * n
    pos = portfolio.positions[instrument.symbol]
    working = venue._working
    on_bar = venue.on_bar
    next_ = strategy.next
    chunk = max(n // 100, 1)
    for i in range(n):
        ts = times[i]
        clock.ts = ts
        if working:
            on_bar(o_raw[i], h_raw[i], l_raw[i], c_raw[i], ts, i)
        strategy.i = i
        next_()
        equity[i] = portfolio.cash_float + pos.qty_float * closes[i]
        position[i] = pos.units_float
        if progress is not None and i % chunk == 0:
            progress(i, n)
    if n:
        venue.cancel_all(RejectReason.END_OF_DATA)
        closing = strategy.close()
        if closing is not None:
            venue.close_position_at(c_raw[-1], times[-1], n - 1, closing)
            equity[-1] = portfolio.cash_float + pos.qty_float * closes[-1]
    if progress is not None:
        progress(n, n)
    return _event_result(oms, portfolio, frame, instrument, config, np.asarray(equity), np.asarray(position))


def _event_result(oms: OrderManager, portfolio: Any, frame: pd.DataFrame, instrument: Instrument,
                  config: BacktestConfig, equity: np.ndarray, position: np.ndarray) -> BacktestResult:
    s = instrument.scales
    closed = portfolio.closed_trades
    trades = trades_frame({
        "direction": np.array([t.direction for t in closed], dtype=np.int64),
        "qty": np.array([t.qty for t in closed], dtype=np.int64),
        "entry_price": np.array([t.entry_price for t in closed], dtype=np.int64),
        "exit_price": np.array([t.exit_price for t in closed], dtype=np.int64),
        "entry_bar": np.array([t.entry_bar for t in closed], dtype=np.int64),
        "exit_bar": np.array([t.exit_bar for t in closed], dtype=np.int64),
        "fees": np.array([t.fees for t in closed], dtype=np.int64),
        "pnl": np.array([t.pnl for t in closed], dtype=np.int64),
    }, frame.index, s)
    orders = list(oms.orders.values())
    bar_of = {ts: i for i, ts in enumerate(frame.index.asi8.tolist())} if orders else {}
    state_code = {OrderState.FILLED: 0, OrderState.REJECTED: 1, OrderState.CANCELED: 2, OrderState.DENIED: 3}
    fills_at: dict[str, int] = {}
    for order in orders:
        for event in order.events:
            if event.state is OrderState.FILLED:
                fills_at[order.client_order_id] = bar_of[event.ts]
    raw = {
        "bar": np.array([bar_of[o.ts_init] for o in orders], dtype=np.int64),
        "side": np.array([o.side.sign for o in orders], dtype=np.int64),
        "tag": np.array([1 if o.tag == "close" else 0 for o in orders], dtype=np.int64),
        "state": np.array([state_code.get(o.state, 2) for o in orders], dtype=np.int64),
        "qty": np.array([-1 if o.qty is None else to_raw(o.qty, s.qty_dp) for o in orders], dtype=np.int64),
        "price": np.array([0 if o.avg_fill_price is None else to_raw_any(o.avg_fill_price, s.price_dp)
                           for o in orders], dtype=np.int64),
        "fill_bar": np.array([fills_at.get(o.client_order_id, -1) for o in orders], dtype=np.int64),
    }
    fees_by_order: dict[str, int] = {}
    for fill in oms.fills:
        fees_by_order[fill.client_order_id] = fees_by_order.get(fill.client_order_id, 0) + fill.fee_raw
    raw["fee"] = np.array([fees_by_order.get(o.client_order_id, 0) for o in orders], dtype=np.int64)
    frame_orders = orders_frame(raw, frame.index, s, oms.bot_id,
                                [None if o.equity_fraction is None else str(o.equity_fraction) for o in orders],
                                [o.reason for o in orders])
    denied = [o.as_dict() for o in oms.denied]
    return BacktestResult(
        equity=pd.Series(equity, index=frame.index, name="equity"),
        position=position,
        trades=trades,
        close=frame["close"],
        initial_cash=float(config.cash),
        fees_total=float(s.cash(portfolio.fees_raw)),
        orders=frame_orders,  # type: ignore[arg-type]
        denied=denied,
        meta={"path": "event", "bars": len(frame), "reasons": _reasons(oms)},
    )


def _reasons(oms: OrderManager) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in oms.rejected + oms.denied:
        counts[order.reason or "?"] = counts.get(order.reason or "?", 0) + 1
    return counts


def run_fast(strategy: Strategy, frame: pd.DataFrame, instrument: Instrument,
             config: BacktestConfig) -> BacktestResult | None:
    """The compiled path, or None when the run falls outside it (the caller reruns on events)."""
    target = strategy.signals()
    if target is None:
        return None
    s = instrument.scales
    fees = FeeModel(config.commission, config.commission_per_order)
    fee_num, fee_den = fees.fraction(s)
    slip_num, slip_den = Slippage(config.slippage_bps).fraction()
    p = strategy.p
    frac_dp = decimal_places(p.size)
    fixed_qty = -1
    if p.fixed_size is not None:
        fixed_qty = (to_raw_any(p.fixed_size, s.qty_dp, floor=True) // s.qty_step) * s.qty_step
    max_qty = -1 if instrument.max_qty is None else to_raw(instrument.max_qty, s.qty_dp)
    close_f = frame["close"].to_numpy(dtype=np.float64)
    out = run_kernel(KernelInputs(
        target=np.ascontiguousarray(target, dtype=np.float64),
        open_raw=to_raw_prices(frame["open"].to_numpy(), instrument),
        close_raw=to_raw_prices(frame["close"].to_numpy(), instrument),
        close_f=close_f,
        cash0=s.cash_raw(config.cash), cash_dp=s.cash_dp, qty_dp=s.qty_dp, qty_step=s.qty_step,
        min_qty=s.min_qty, max_qty=max_qty, notional_k=s.notional_k, multiplier=s.multiplier,
        fee_num=fee_num, fee_den=fee_den, fee_step=s.fee_step, fixed_fee=fees.fixed_raw(s),
        fee_rate=float(fees.rate), slip_num=slip_num, slip_den=slip_den, price_step=s.price_step,
        frac_num=to_raw(p.size, frac_dp), frac_den=10**frac_dp, fixed_qty=fixed_qty,
    ))
    if out.status != OK:
        return None
    trades = trades_frame(out.trades, frame.index, s)
    o = out.orders
    fraction = None if p.fixed_size is not None else str(p.size)
    fractions = [fraction if tag == 0 else None for tag in o["tag"].tolist()]
    reasons = [_kernel_reason(state, tag, fixed_qty, s.min_qty, max_qty)
               for state, tag in zip(o["state"].tolist(), o["tag"].tolist())]
    orders = orders_frame(o, frame.index, s, config.bot_id, fractions, reasons)
    fees_total = int(out.orders["fee"][out.orders["state"] == 0].sum())
    return BacktestResult(
        equity=pd.Series(out.equity, index=frame.index, name="equity"),
        position=out.position,
        trades=trades,
        close=frame["close"],
        initial_cash=float(config.cash),
        fees_total=float(s.cash(fees_total)),
        orders=orders,  # type: ignore[arg-type]
        denied=[],
        meta={"path": "fast", "bars": len(frame)},
    )


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
