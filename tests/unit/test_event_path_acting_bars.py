"""The event path's third round of shortcuts (issue 18 item 4) changes no outcome.

- The bar loop steps only to the bars where the strategy's next() may act (Strategy.acting_bars:
  sma_cross's candidate crossings) and to bars with working orders: every run below is compared
  with the same run calling next() at every bar, down to the orders, fills, trades, equity and
  signals, and a deliberately wrong acting_bars is shown to be caught by that comparison.
- sma_cross's acting bars are a superset of the bars where next() calls go(), on adversarial
  series (ties, NaN, infinities), and are withheld (None) whenever next() might read or do
  something else (a subclass's next() or go(), a replaced list, a next() replaced on the instance).
- The venue sizes an equity-fraction entry with the fee its sizing computed (SimulatedVenue._size):
  the same quantity and fee as size_for_fraction and fee_for, for cash accounts, fixed and minimum
  fees, per-lot commissions and maximum quantities.
- Strategy._market builds its Order by position: the same Order as the keyword construction.
- Fill and ClosedTrade store their fields item by item (quick_frozen_init): the same instances
  as the dataclass's own __init__ makes.
- The OHLC grid is inferred column by column (engine.instrument.infer_columns_grid): the same
  grid and rounding count as infer_price_grid of the columns' concatenation.
"""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, fields, replace
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.runner import run_backtest
from brokers.paper.venue import SimulatedVenue
from engine.instrument import Instrument
from engine.money import FeeModel, Slippage
from engine.orders import Fill, Liquidity, Order, OrderSide, OrderType
from engine.portfolio import ClosedTrade, Portfolio
from strategies.base import Strategy
from strategies.sma_cross import SmaCross, SmaCrossParams
from tests.conftest import make_harness

INF, NAN = float("inf"), float("nan")


class _EveryBar(SmaCross):
    """SmaCross through the plain loop: next() called at every bar. Counted as a built-in (its
    module), so that connect() gives it the same full lists as SmaCross (a user's strategy gets
    lists that end at the current bar, and no acting bars: its next() is wrapped)."""

    __module__ = "strategies.sma_cross"
    name = "sma_cross_every_bar"

    def acting_bars(self) -> np.ndarray | None:
        return None


def _frame(close: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spread = np.round(rng.random(len(close)) * 0.5, 2)
    index = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame({"open": close, "high": close + spread, "low": close - spread, "close": close,
                         "volume": 1.0}, index=index)


def _walk(n: int, seed: int, step: float = 0.01, levels: int = 0) -> np.ndarray:
    """A random walk on the 0.01 grid; `levels` > 0 keeps it among a few prices (ties of the averages)."""
    rng = np.random.default_rng(seed)
    if levels:
        return np.round(10.0 + rng.integers(0, levels, n) * 0.5, 2)
    return np.round(100.0 + np.cumsum(rng.choice([-1.0, 0.0, 1.0], n) * step * 50), 2)


def _same_run(frame: pd.DataFrame, params: dict[str, Any], config: BacktestConfig) -> tuple[Any, Any]:
    """SmaCross stepped (checked: the stepping loop ran, with fewer next() calls than bars) and
    through the plain loop, held to the same outcome."""
    import backtest.runner as runner

    stepping = runner._step_acting_bars
    calls: list[int] = []

    def counted(acting: list[int], *args: Any) -> None:
        calls.append(len(acting))
        stepping(acting, *args)

    runner._step_acting_bars = counted  # type: ignore[assignment]
    try:
        stepped = run_backtest(frame, SmaCross, params, config)
        assert len(calls) == 1 and calls[0] < len(frame)  # stepped: fewer candidate bars than bars
        plain = run_backtest(frame, _EveryBar, params, config)
        assert len(calls) == 1  # the plain loop for _EveryBar
    finally:
        runner._step_acting_bars = stepping  # type: ignore[assignment]
    _assert_same(stepped, plain)
    return stepped, plain


def _assert_same(a: Any, b: Any) -> None:
    assert a.meta["path"] == b.meta["path"] == "event"
    np.testing.assert_array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    np.testing.assert_array_equal(a.position, b.position)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.orders, b.orders)
    assert a.signals == b.signals
    assert a.fees_total == b.fees_total and a.meta["reasons"] == b.meta["reasons"]
    assert a.unsized_orders == b.unsized_orders and a.unsized_reason == b.unsized_reason


@pytest.mark.parametrize("seed, levels, params", [
    (1, 0, {"fast": 3, "slow": 7}),
    (2, 0, {"fast": 2, "slow": 5, "mode": "long_short"}),
    (3, 3, {"fast": 2, "slow": 4}),                          # few price levels: ties of the averages
    (4, 2, {"fast": 1, "slow": 2, "mode": "long_short"}),    # close against its 2-bar average, many ties
    (5, 0, {"fast": 5, "slow": 20, "size": "0.5"}),
    (6, 0, {"fast": 2, "slow": 3, "fixed_size": "3"}),
])
def test_stepping_to_the_acting_bars_books_what_every_bar_books(seed: int, levels: int, params: dict[str, Any]):
    frame = _frame(_walk(3000, seed, levels=levels), seed)
    stepped, _ = _same_run(frame, params, BacktestConfig(path="event", commission=Decimal("0.001")))
    assert len(stepped.trades) > 20


def test_stepping_keeps_what_unsized_and_rejected_orders_say():
    frame = _frame(_walk(2000, 11), 11)
    # a cash too small for one unit: every entry is refused, and both loops count and explain them alike
    stepped, _ = _same_run(frame, {"fast": 2, "slow": 5}, BacktestConfig(path="event", cash=Decimal("50")))
    assert stepped.unsized_orders > 0 and len(stepped.trades) == 0


def test_stepping_calls_the_progress_hook_at_the_same_bars():
    frame = _frame(_walk(25_000, 12), 12)
    config = BacktestConfig(path="event")
    seen: dict[str, list[tuple[int, int]]] = {"stepped": [], "plain": []}
    from backtest.runner import build_instrument, run_events
    from strategies.base import BarData, parse_params

    for key, cls in (("stepped", SmaCross), ("plain", _EveryBar)):
        parsed = parse_params(cls.Params, {"fast": 3, "slow": 9})
        instrument = build_instrument(frame, config, "whole")
        strategy = cls(parsed)
        strategy.attach(BarData(frame), instrument.symbol)
        strategy.init()
        run_events(strategy, frame, instrument, config, progress=lambda done, n, k=key: seen[k].append((done, n)))
        assert strategy.i == len(frame) - 1  # where the plain loop leaves it
    assert seen["stepped"] == seen["plain"] and len(seen["plain"]) == 3


def test_a_wrong_acting_bars_is_caught_by_the_comparison():
    """The comparison above fails for a shortcut that skips a bar where next() acts (here the bar
    that decided the third entry)."""
    frame = _frame(_walk(3000, 1), 1)
    config = BacktestConfig(path="event")
    plain = run_backtest(frame, _EveryBar, {"fast": 3, "slow": 7}, config)
    decided = int(plain.trades["entry_bar"].iloc[2]) - 1  # a market entry fills at the next bar's open

    class _MissesOne(SmaCross):
        __module__ = "strategies.sma_cross"  # a built-in's full lists, as SmaCross gets them

        def acting_bars(self) -> np.ndarray | None:
            bars = super().acting_bars()
            assert bars is not None and decided in bars.tolist()
            return bars[bars != decided]  # next() is not called there

    wrong = run_backtest(frame, _MissesOne, {"fast": 3, "slow": 7}, config)
    with pytest.raises(AssertionError):
        _assert_same(wrong, plain)


def test_acting_bars_out_of_order_repeated_or_outside_the_data_book_what_every_bar_books():
    """acting_bars is a strategy's own hook: bars given twice, in any order, or past either end of
    the data must not make the loop step back or call next() twice at a bar."""
    frame = _frame(_walk(3000, 5), 5)
    config = BacktestConfig(path="event")
    plain = run_backtest(frame, _EveryBar, {"fast": 3, "slow": 7}, config)

    class _Messy(SmaCross):
        __module__ = "strategies.sma_cross"  # a built-in's full lists, as SmaCross gets them

        def acting_bars(self) -> np.ndarray | None:
            bars = super().acting_bars()
            assert bars is not None and len(bars) > 20
            return np.concatenate([bars[::-1], bars[::3], [-5, len(frame), len(frame) + 7]])

    _assert_same(run_backtest(frame, _Messy, {"fast": 3, "slow": 7}, config), plain)


class _Resting(Strategy):
    """Rests limit orders for several bars (so orders work at bars that are neither acting bars nor
    the bars after them), and closes at market: next() acts only at bars i % 25 in (0, 10)."""

    __module__ = "strategies.test_resting"  # a built-in's full lists (a user's next() is wrapped)
    name = "resting"
    every = True

    def next(self) -> None:
        i = self.i
        if i % 25 == 0:
            price = self.data.close[i]
            if i % 50 == 0:
                self.buy(qty=Decimal(2), limit=round(price * 0.997, 2))
            else:
                self.sell(qty=Decimal(1), limit=round(price * 1.003, 2))
        elif i % 25 == 10 and i % 100 == 60:
            self.close()

    def acting_bars(self) -> np.ndarray | None:
        if self.every:
            return None
        bars = np.arange(len(self.data))
        return bars[(bars % 25 == 0) | (bars % 25 == 10)]


def test_stepping_matches_resting_orders_at_any_bar(monkeypatch: pytest.MonkeyPatch):
    import backtest.runner as runner

    frame = _frame(_walk(5000, 21), 21)
    config = BacktestConfig(path="event", commission=Decimal("0.001"))
    plain = run_backtest(frame, _Resting, {}, config)
    conversions: list[int] = []
    convert = runner.to_raw_prices

    def counted(values: np.ndarray, instrument: Instrument) -> np.ndarray:
        conversions.append(len(values))
        return convert(values, instrument)

    monkeypatch.setattr(runner, "to_raw_prices", counted)
    monkeypatch.setattr(_Resting, "every", False)
    stepped = run_backtest(frame, _Resting, {}, config)
    assert conversions.count(1) > 100  # bars matched with their own conversion (raw_at)
    assert max(conversions) < len(frame)  # no whole column converted
    _assert_same(stepped, plain)
    assert len(plain.orders) > 150 and (plain.orders["state"] == "FILLED").sum() > 50


# -- SmaCross.acting_bars ----------------------------------------------------------------------

class _Recorder(SmaCross):
    """SmaCross whose go() records the bars next() calls it at."""

    def go(self, direction: int, fraction: Decimal | None = None, **_: object) -> None:  # type: ignore[override]
        self.calls.append(self.i)


def _connected(fast: list[float], slow: list[float], cls: type[SmaCross] = SmaCross) -> SmaCross:
    """A strategy holding fast/slow as connect() leaves them: lists, made from recorded arrays."""
    strategy = cls(SmaCrossParams(fast=2, slow=3))
    strategy.fast_ma, strategy.slow_ma, strategy.exit_direction = list(fast), list(slow), -1
    strategy._list_sources = {"fast_ma": (strategy.fast_ma, np.array(fast, dtype=np.float64)),
                              "slow_ma": (strategy.slow_ma, np.array(slow, dtype=np.float64))}
    return strategy


def _acting_superset(fast: list[float], slow: list[float]) -> None:
    acting = _connected(fast, slow).acting_bars()
    assert acting is not None
    recorder = _connected(fast, slow, _Recorder)
    recorder.calls = []  # type: ignore[attr-defined]
    for i in range(len(fast)):
        recorder.i = i
        recorder.next()
    assert set(recorder.calls) <= set(acting.tolist())  # type: ignore[attr-defined]


@pytest.mark.parametrize("fast, slow", [
    ([1.0, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0]),
    ([1.0, 2.0, 3.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]),
    ([1.0, 2.0, 1.0, 2.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]),
    ([NAN, 1.0, 3.0, NAN, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
    ([-INF, INF, INF, 1.0, INF], [0.0, 0.0, INF, 0.0, 0.0]),
    ([1.0, INF, INF, 3.0], [2.0, INF, INF, 2.0]),
    ([3.0, -INF, 1.0], [2.0, -INF, 2.0]),
    ([1e308, -1e308, 1e308], [-1e308, 1e308, -1e308]),
    ([5e-324, 0.0, 5e-324], [0.0, 5e-324, 0.0]),
    ([3.0, 1.0], [2.0, 2.0]),
])
def test_acting_bars_hold_every_bar_next_acts_at(fast: list[float], slow: list[float]):
    _acting_superset(fast, slow)


def test_acting_bars_hold_every_bar_next_acts_at_on_random_ties():
    rng = np.random.default_rng(17)
    for _ in range(50):
        fast = rng.integers(0, 3, 300).astype(float)
        slow = rng.integers(0, 3, 300).astype(float)
        fast[rng.integers(0, 300, 5)] = NAN
        slow[rng.integers(0, 300, 3)] = INF
        fast[rng.integers(0, 300, 3)] = -INF
        _acting_superset(fast.tolist(), slow.tolist())


def test_acting_bars_are_the_candidate_crossings():
    acting = _connected([1.0, 3.0, 3.0, 1.0, 1.0, 2.0, 3.0], [2.0] * 7).acting_bars()
    # 1: above after below; 3: below after above; 5 (a tie) is no candidate; 6: above after the tie
    assert acting is not None and acting.tolist() == [1, 3, 6]


def test_a_users_subclass_runs_every_bar():
    """A strategy outside strategies/ gets lists that end at the current bar (its next() wrapped):
    no acting bars, the plain loop, the same books."""

    class _Users(SmaCross):
        pass

    frame = _frame(_walk(1500, 8), 8)
    config = BacktestConfig(path="event")
    users = run_backtest(frame, _Users, {"fast": 3, "slow": 7}, config)
    _assert_same(users, run_backtest(frame, _EveryBar, {"fast": 3, "slow": 7}, config))


def test_acting_bars_are_withheld_when_next_may_read_or_do_something_else():
    fast, slow = [1.0, 3.0, 1.0], [2.0, 2.0, 2.0]
    assert _connected(fast, slow).acting_bars() is not None

    class _OwnNext(SmaCross):
        def next(self) -> None:
            super().next()

    class _OwnGo(SmaCross):
        def go(self, direction: int, fraction: Decimal | None = None, **_: object) -> None:  # type: ignore[override]
            super().go(direction, fraction)

    class _OwnClose(SmaCross):
        def close(self) -> Order | None:
            return super().close()

    class _OwnInit(SmaCross):  # other indicators, the same next(): still known
        def init(self) -> None:
            super().init()

    assert _connected(fast, slow, _OwnNext).acting_bars() is None
    assert _connected(fast, slow, _OwnGo).acting_bars() is None
    assert _connected(fast, slow, _OwnClose).acting_bars() is None
    assert _connected(fast, slow, _OwnInit).acting_bars() is not None
    replaced = _connected(fast, slow)
    replaced.fast_ma = list(fast)  # a new list (live replaces them): not the one the array made
    assert replaced.acting_bars() is None
    patched = _connected(fast, slow)
    patched.next = lambda: None  # type: ignore[method-assign]
    assert patched.acting_bars() is None
    unconnected = SmaCross(SmaCrossParams(fast=2, slow=3))
    assert unconnected.acting_bars() is None and Strategy.acting_bars(unconnected) is None


def test_connect_records_the_arrays_its_lists_come_from():
    from strategies.base import BarData

    frame = _frame(_walk(200, 3), 3)
    strategy = SmaCross(SmaCrossParams(fast=2, slow=5))
    strategy.attach(BarData(frame), "TEST")  # the harness's instrument
    strategy.init()
    arrays = (strategy.fast_ma, strategy.slow_ma)
    strategy.connect(make_harness().oms)
    assert type(strategy.fast_ma) is list and type(strategy.slow_ma) is list
    assert strategy.list_source("fast_ma") is arrays[0] and strategy.list_source("slow_ma") is arrays[1]
    np.testing.assert_array_equal(np.array(strategy.fast_ma), arrays[0])  # NaN where NaN
    assert strategy.list_source("exit_direction") is None and strategy.list_source("nothing") is None
    strategy.slow_ma = list(strategy.slow_ma)  # replaced (as live does): no longer the array's list
    assert strategy.list_source("slow_ma") is None and strategy.acting_bars() is None


# -- SimulatedVenue._size ------------------------------------------------------------------------

def _venue(commission: str, per_order: str = "0", min_fee: str = "0", per_lot: str | None = None,
           max_qty: str | None = None, size_increment: str = "1") -> SimulatedVenue:
    extra: dict[str, Any] = {}
    if per_lot is not None:
        extra["commission_per_lot"] = Decimal(per_lot)
    if max_qty is not None:
        extra["max_qty"] = Decimal(max_qty)
    instrument = Instrument("TEST", price_increment=Decimal("0.01"), size_increment=Decimal(size_increment), **extra)
    return SimulatedVenue(instrument, Decimal("10000"), FeeModel(Decimal(commission), Decimal(per_order),
                                                                  Decimal(min_fee)), Slippage())


@pytest.mark.parametrize("venue_args", [
    ("0",), ("0.001",), ("0.0001", "1.5"), ("0.002", "0", "7"), ("0.001", "0", "0", "0.05"),
    ("0.001", "0", "0", None, "3"), ("0.0005", "0", "0", None, None, "0.001"),
])
def test_sizing_gives_the_quantity_and_fee_of_the_general_calls(venue_args: tuple[Any, ...]):
    venue = _venue(*venue_args)
    rng = np.random.default_rng(5)
    for _ in range(400):
        price = int(rng.integers(1, 2_000_000))
        fraction = Decimal(str(rng.choice(["1", "0.5", "0.333333", "0.000001", "0.99"])))
        side = int(rng.choice([1, -1]))
        qty, fee = venue._size(fraction, side, price)
        assert qty == venue.size_for_fraction(fraction, side, price)
        if fee >= 0:
            assert qty > 0 and fee == venue.fee_for(qty, price, True)


# -- Strategy._market, quick_frozen_init ---------------------------------------------------------

def test_market_builds_the_order_the_keywords_build():
    h = make_harness()
    strategy = SmaCross(SmaCrossParams(fast=2, slow=3))
    strategy._symbol = "TEST"
    strategy._oms = h.oms
    h.clock.ts = 42
    for side, qty, fraction, reduce_only, tag, stop in ((OrderSide.BUY, None, Decimal("0.5"), False, "open", True),
                                                        (OrderSide.SELL, Decimal(3), None, True, "close", False)):
        made = strategy._market(side, qty, fraction, reduce_only, tag, stop)
        expected = Order(made.client_order_id, h.oms.bot_id, "TEST", side, OrderType.MARKET, qty, 42,
                         reduce_only=reduce_only, equity_fraction=fraction, tag=tag, stop_attached=stop)
        for f in fields(Order):
            if f.name not in ("state", "_events", "_pending", "filled_qty", "avg_fill_price", "qty"):
                assert getattr(made, f.name) == getattr(expected, f.name), f.name
        assert made.filled_qty == Decimal(0) or made.filled_qty == made.qty


def _dataclass_init(cls: type, *args: Any) -> Any:
    """An instance made as the dataclass's generated __init__ would (object.__setattr__ per field)."""
    obj = object.__new__(cls)
    names = [f.name for f in fields(cls)]
    values = dict(zip(names, args))
    for f in fields(cls):
        object.__setattr__(obj, f.name, values.get(f.name, f.default))
    return obj


@pytest.mark.parametrize("cls, args", [
    (Fill, ("PAPER-1", "bot-00000001", "TEST", OrderSide.BUY, 5, 10_000, 7, 0, 2, 2, 123, Liquidity.MAKER)),
    (ClosedTrade, ("TEST", -1, 5, 10_000, 9_000, 1, 2, 3, 4, 9, 4_991)),
])
def test_quick_init_makes_the_instances_the_dataclass_makes(cls: type, args: tuple[Any, ...]):
    quick, reference = cls(*args), _dataclass_init(cls, *args)
    assert vars(quick) == vars(reference) and list(vars(quick)) == [f.name for f in fields(cls)]
    assert quick == reference and hash(quick) == hash(reference) and repr(quick) == repr(reference)
    assert pickle.loads(pickle.dumps(quick)) == quick
    first = fields(cls)[0].name
    assert getattr(replace(quick, **{first: getattr(quick, first)}), first) == getattr(quick, first)
    with pytest.raises(FrozenInstanceError):
        setattr(quick, first, None)
    keyword = cls(**{f.name: getattr(reference, f.name) for f in fields(cls)})
    assert vars(keyword) == vars(reference)


def test_portfolio_books_with_quick_closed_trades():
    portfolio = Portfolio.for_instrument(Decimal("1000"), make_harness().instrument)
    instrument = make_harness().instrument
    portfolio.apply_fill(instrument, 1, 3, 10_000, 5, 1, 0)
    closed = portfolio.apply_fill(instrument, -1, 3, 10_100, 5, 2, 1)
    assert closed == [ClosedTrade("TEST", 1, 3, 10_000, 10_100, 1, 2, 0, 1, 10, 290)]


# -- infer_columns_grid ----------------------------------------------------------------------------

def _columns(rng: np.random.Generator, lengths: list[int], decimals: list[int],
             base: float = 100.0) -> list[np.ndarray]:
    return [np.round(base + rng.random(n) * 10.0, d) for n, d in zip(lengths, decimals)]


@pytest.mark.parametrize("lengths, decimals", [
    ([1000, 1000, 1000, 1000], [2, 2, 2, 2]),
    ([70_000, 70_001, 69_999, 70_000], [2, 3, 2, 4]),           # the finer grid starts mid-way, across pieces
    ([200_000, 5, 200_000, 131_072], [1, 5, 2, 3]),
    ([0, 150_000, 0, 140_000], [2, 2, 2, 6]),                   # empty columns
    ([3, 2, 1, 0], [2, 1, 0, 2]),
    ([0, 0, 0, 0], [2, 2, 2, 2]),
])
def test_columns_grid_is_the_concatenations_grid(lengths: list[int], decimals: list[int]):
    from engine.instrument import infer_columns_grid, infer_price_grid

    rng = np.random.default_rng(sum(lengths) + 1)
    cols = _columns(rng, lengths, decimals)
    assert infer_columns_grid(cols) == infer_price_grid(np.concatenate(cols))
    for max_dp in (0, 2, 8):
        assert infer_columns_grid(cols, max_dp) == infer_price_grid(np.concatenate(cols), max_dp)


def test_columns_grid_counts_and_falls_back_as_the_concatenation():
    from engine.instrument import infer_columns_grid, infer_price_grid

    rng = np.random.default_rng(3)
    noisy = [100.0 + rng.random(90_000) * 1e-3 for _ in range(4)]  # float tails: rounded to 8 decimals
    small = [rng.random(50_000) * 1e-4 for _ in range(4)]             # tiny prices: a fine limit, rounding
    mixed = _columns(rng, [60_000] * 4, [2, 2, 2, 2])
    mixed[2][12_345] += 1e-11  # one price off every grid the limit allows
    for cols in (noisy, small, mixed):
        grid = infer_columns_grid(cols)
        assert grid == infer_price_grid(np.concatenate(cols))
    assert infer_columns_grid(mixed).rounded == 1
    with_nan = _columns(rng, [40_000] * 4, [3, 3, 3, 3])
    with_nan[1][7] = NAN
    with_nan[3][9] = INF
    assert infer_columns_grid(with_nan) == infer_price_grid(np.concatenate(with_nan))


def test_frame_grid_on_the_bundled_data():
    from pathlib import Path

    from backtest.data import load_bars
    from backtest.runner import infer_frame_grid
    from engine.instrument import infer_price_grid

    files = sorted(Path("data").rglob("*.csv"))
    checked = 0
    for path in files:
        try:
            frame = load_bars(path)
        except Exception:  # noqa: BLE001 - tick files and others that are not bars
            continue
        checked += 1
        prices = np.concatenate([frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")])
        increment, _ = infer_frame_grid(frame)
        assert increment == infer_price_grid(prices).increment, path
    assert checked >= 3
