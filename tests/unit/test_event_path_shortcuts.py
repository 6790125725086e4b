"""The event path's second round of shortcuts (issue 18, event path rows) changes no outcome.

sma_cross's next() reads the signs of the differences as comparisons, the backtest clock looks a
bar's time up when asked, the OMS makes client ids and transitions inline, RecordedDirections
keeps its changes flat, Fill and ClosedTrade set their fields in one call, to_raw compares with
int(), and the collector's young generation is promoted without a scan after the loop. Each test
drives a case where a wrong shortcut would give a different answer."""

from __future__ import annotations

import gc
import pickle
from dataclasses import FrozenInstanceError, replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.runner import BarClock, run_backtest
from engine.errors import InvalidTransition
from engine.money import to_raw
from engine.orders import OrderState, OrderType
from engine.portfolio import ClosedTrade
from strategies.base import cross_masks
from strategies.signals import RecordedDirections
from strategies.sma_cross import SmaCross, SmaCrossParams
from tests.conftest import make_harness

INF, NAN = float("inf"), float("nan")


class _Recorder(SmaCross):
    """SmaCross whose go() only records (bar, direction): next()'s decisions, nothing sent."""

    def __init__(self, fast: list[float], slow: list[float]) -> None:
        super().__init__(SmaCrossParams(fast=2, slow=3))
        self.fast_ma, self.slow_ma, self.exit_direction = fast, slow, -1
        self.calls: list[tuple[int, int]] = []

    def go(self, direction: int, fraction: Decimal | None = None, **_: object) -> None:  # type: ignore[override]
        self.calls.append((self.i, direction))


def _decisions(fast: list[float], slow: list[float]) -> list[tuple[int, int]]:
    strategy = _Recorder(fast, slow)
    for i in range(len(fast)):
        strategy.i = i
        strategy.next()
    return strategy.calls


def _rule(fast: list[float], slow: list[float]) -> list[tuple[int, int]]:
    up, down = cross_masks(np.array(fast), np.array(slow))
    return sorted([(int(i), 1) for i in np.flatnonzero(up)] + [(int(i), -1) for i in np.flatnonzero(down)])


@pytest.mark.parametrize("fast, slow", [
    ([1.0, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0]),                 # plain crosses both ways
    ([1.0, 2.0, 3.0, 2.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]),       # through a tie: one cross each way
    ([1.0, 2.0, 1.0, 2.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]),       # touch and bounce: no cross until 3
    ([NAN, 1.0, 3.0, NAN, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),  # NaN ends the look-back
    ([-INF, INF, INF, 1.0, INF], [0.0, 0.0, INF, 0.0, 0.0]),      # an infinite tie is NaN, not a tie
    ([1.0, INF, INF, 3.0], [2.0, INF, INF, 2.0]),                 # inf - inf ends the look-back twice
    ([1.0, INF, 3.0], [2.0, INF, 2.0]),                           # ... and is no tie to walk back over
    ([3.0, -INF, 1.0], [2.0, -INF, 2.0]),
    ([1e308, -1e308, 1e308], [-1e308, 1e308, -1e308]),            # differences that overflow keep their sign
    ([5e-324, 0.0, 5e-324], [0.0, 5e-324, 0.0]),                  # the smallest differences are not ties
])
def test_next_decides_as_the_cross_rule(fast: list[float], slow: list[float]):
    assert _decisions(fast, slow) == _rule(fast, slow)


def test_next_decides_as_the_cross_rule_on_random_ties():
    rng = np.random.default_rng(7)
    fast = rng.integers(0, 3, 2000).astype(float).tolist()  # many ties, many crossings
    slow = rng.integers(0, 3, 2000).astype(float).tolist()
    fast[100], slow[500], fast[900] = NAN, INF, -INF
    assert _decisions(fast, slow) == _rule(fast, slow)


def test_bar_clock_reads_the_bar_time_when_asked():
    times = np.array([5, 7, 11], dtype=np.int64)
    clock = BarClock(times)
    assert clock.now_ns() == 0 and clock.ts == 0  # before the first bar, as a SimulatedClock starts
    clock.bar = 2
    assert clock.now_ns() == 11 and clock.ts == 11 and type(clock.now_ns()) is int


def test_orders_carry_the_time_of_the_bar_they_were_decided_on():
    """The event path's orders (stamped by the bar clock) land on the bars the fast path's kernel
    puts them on, and both publish the same signals."""
    index = pd.date_range("2024-01-01", periods=40, freq="h", tz="UTC")
    close = np.array([10.0] * 10 + [12.0] * 10 + [8.0] * 10 + [12.0] * 10)
    frame = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
                         index=index)
    event = run_backtest(frame, SmaCross, {"fast": 2, "slow": 3}, BacktestConfig(path="event"))
    fast = run_backtest(frame, SmaCross, {"fast": 2, "slow": 3}, BacktestConfig(path="fast"))
    assert len(event.orders) >= 2
    pd.testing.assert_series_equal(event.orders["time"], fast.orders["time"])
    pd.testing.assert_series_equal(event.orders["fill_time"], fast.orders["fill_time"])
    assert event.signals == fast.signals and event.signals


def test_client_ids_keep_their_format_past_eight_digits():
    h = make_harness()
    assert h.oms.next_client_order_id() == "bot1-00000001"
    h.oms._seq = 123_456_788
    assert h.oms.next_client_order_id() == "bot1-123456789"


def test_an_illegal_transition_still_raises_and_changes_nothing():
    h = make_harness()
    order = h.order("BUY", "1")
    h.bar("100.00", "101.00", "99.00", "100.00")
    assert order.state is OrderState.FILLED
    events = list(order.events)
    with pytest.raises(InvalidTransition):
        h.oms._move(order, OrderState.SUBMITTED, 1)
    assert order.state is OrderState.FILLED and order.events == events
    assert [e.state for e in events] == [OrderState.PENDING_SUBMIT, OrderState.SUBMITTED, OrderState.FILLED]
    assert not h.oms.open_orders


def test_recorded_directions_keep_their_changes_in_order():
    class _S:
        i = 0

    recorder, strategy = RecordedDirections("bot", "X"), _S()
    for i, direction in ((3, 1), (4, 1), (9, 0), (12, -1)):
        strategy.i = i
        recorder.on_go(strategy, direction, Decimal("0.5") if direction else None)  # type: ignore[arg-type]
    assert recorder.changes == [(3, 1, Decimal("0.5")), (9, 0, None), (12, -1, Decimal("0.5"))]


@pytest.mark.parametrize("value, dp, expected", [("1.5", 2, 150), ("-3.25", 2, -325), ("1E+3", 2, 100_000),
                                                  ("-0.0", 2, 0), ("7", 0, 7)])
def test_to_raw_on_the_grid(value: str, dp: int, expected: int):
    assert to_raw(Decimal(value), dp) == expected and type(to_raw(Decimal(value), dp)) is int


@pytest.mark.parametrize("value", ["0.001", "1E-30", "NaN", "-2.125"])
def test_to_raw_refuses_off_the_grid_with_the_same_words(value: str):
    with pytest.raises(ValueError, match=f"{value} has more than 2 decimals"):
        to_raw(Decimal(value), 2)


def test_closed_trade_keeps_replace_hash_and_pickle():
    trade = ClosedTrade("TEST", 1, 5, 10_000, 10_100, 1, 2, 0, 1, 6, 494)
    assert replace(trade, pnl=0).pnl == 0 and replace(trade, pnl=0).qty == 5
    assert pickle.loads(pickle.dumps(trade)) == trade and hash(pickle.loads(pickle.dumps(trade))) == hash(trade)
    with pytest.raises(FrozenInstanceError):
        del trade.pnl


def test_the_loop_leaves_a_heap_someone_froze_frozen():
    """The young objects are promoted with gc.freeze() + gc.unfreeze() only while nobody froze
    objects of their own: a server's frozen heap stays out of the collector's reach."""
    index = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    close = np.linspace(10.0, 20.0, 50)
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    config = BacktestConfig(path="event")
    kept = [[i] for i in range(1000)]  # a heap of the host's
    gc.freeze()
    try:
        run_backtest(frame, SmaCross, {"fast": 2, "slow": 3}, config)
        assert gc.isenabled()
        collected = {id(o) for o in gc.get_objects()}  # the generations the collector walks
        assert id(kept) not in collected and id(kept[-1]) not in collected  # still frozen
    finally:
        gc.unfreeze()
    assert id(kept[-1]) in {id(o) for o in gc.get_objects()}
    run_backtest(frame, SmaCross, {"fast": 2, "slow": 3}, config)
    assert gc.isenabled()


class _Journal:
    """Records what the OMS journals, in order (the write-ahead log's view)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, OrderState, int, str | None]] = []

    def record_event(self, order: object, event: object) -> None:
        self.events.append((event.client_order_id, event.state, event.ts, event.reason))  # type: ignore[attr-defined]

    def record_fill(self, order: object, fill: object) -> None: ...
    def record_position(self, portfolio: object, symbol: str, ts: int) -> None: ...
    def flush(self) -> None: ...
    def write_ahead(self) -> None: ...
    def settle(self) -> None: ...


def _limit_order_life(journal: _Journal | None) -> list[tuple[str, OrderState, int, str | None]]:
    """A limit order accepted, amended (a noted event between transitions), then filled."""
    h = make_harness()
    h.oms.journal = journal  # type: ignore[assignment]
    h.clock.ts = 10
    order = h.order("BUY", "2", OrderType.LIMIT, limit="99.00")
    h.clock.ts = 20
    assert h.oms.amend(order, price=Decimal("100.00")) is None
    h.clock.ts = 30
    h.bar("101.00", "101.00", "99.50", "100.00", ts=30)
    assert order.state is OrderState.FILLED
    return [(e.client_order_id, e.state, e.ts, e.reason) for e in order.events]


def test_events_recorded_lazily_keep_their_order_and_match_the_journal():
    lazy = _limit_order_life(None)
    journal = _Journal()
    eager = _limit_order_life(journal)
    assert lazy == eager == journal.events
    assert [state for _, state, _, _ in lazy] == [OrderState.PENDING_SUBMIT, OrderState.SUBMITTED,
                                                 OrderState.ACCEPTED, OrderState.ACCEPTED, OrderState.FILLED]
    assert lazy[0][2] == 10 and lazy[3][2:] == (20, "AMENDED price=100.00") and lazy[4][2] == 30


def test_promoted_runs_are_collected_once_over_the_budget(monkeypatch: pytest.MonkeyPatch):
    """Objects promoted without a scan do not count towards CPython's own full collections, and a
    run leaves a garbage cycle (its OMS and venue): once earlier runs promoted more than the budget,
    the next run ends with a full collection that frees them."""
    import weakref

    import backtest.runner as runner
    from backtest.runner import _prepared, build_instrument, run_events

    index = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    close = 10.0 + np.sin(np.arange(60) / 3.0)
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    config = BacktestConfig(path="event")
    params = SmaCrossParams(fast=2, slow=3)
    instrument = build_instrument(frame, config, params.units)
    strategy = _prepared(SmaCross, params, frame, instrument)
    run_events(strategy, frame, instrument, config)
    oms = weakref.ref(strategy._oms)  # type: ignore[arg-type]
    del strategy
    monkeypatch.setattr(runner, "_promoted", runner._promote_budget + 1)
    run_events(_prepared(SmaCross, params, frame, instrument), frame, instrument, config)
    assert oms() is None and runner._promoted == 0
