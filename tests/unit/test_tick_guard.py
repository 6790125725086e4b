"""Malformed ticks are counted and dropped; good ones pass; state follows accepted ticks only."""

from __future__ import annotations

import pytest

from engine.market import Tick
from engine.tick_guard import TickGuard, TickProblem

NAN = float("nan")


def quote(ts: int, bid: float, ask: float, size: float = 0.0) -> Tick:
    return Tick("EURUSD", ts, bid=bid, ask=ask, size=size)


@pytest.mark.parametrize("tick, problem", [
    (quote(1, NAN, 1.1), TickProblem.NOT_FINITE),
    (quote(1, 1.1, float("inf")), TickProblem.NOT_FINITE),
    (quote(1, -1.1, 1.1), TickProblem.NON_POSITIVE),
    (quote(1, 0.0, 1.1), TickProblem.NON_POSITIVE),
    (quote(1, 1.2, 1.1), TickProblem.CROSSED),
    (quote(1, 1.0, 1.1, size=-5), TickProblem.NEGATIVE_SIZE),
    (Tick("EURUSD", 1), TickProblem.NO_PRICE),
])
def test_malformed_tick_is_counted_under_its_reason_and_dropped(tick, problem):
    guard = TickGuard()
    assert guard.admit(tick) is False
    assert guard.dropped == {problem: 1} and guard.accepted == 0


def test_out_of_order_and_duplicate_ticks_are_dropped_and_the_stream_goes_on():
    guard = TickGuard()
    assert guard.admit(quote(10, 1.0, 1.1))
    assert not guard.admit(quote(9, 1.0, 1.1))      # older than the last accepted
    assert not guard.admit(quote(10, 1.0, 1.1))     # the same tick again
    assert guard.admit(quote(10, 1.0, 1.2))          # same time, new prices: a real update
    assert guard.admit(quote(11, 1.0, 1.1))
    assert guard.dropped == {TickProblem.OUT_OF_ORDER: 1, TickProblem.DUPLICATE: 1}
    assert guard.accepted == 3


def test_a_dropped_tick_does_not_move_the_ordering_watermark():
    guard = TickGuard()
    guard.admit(quote(10, 1.0, 1.1))
    guard.admit(quote(99, NAN, 1.1))                 # bad, dropped: must not set the clock to 99
    assert guard.admit(quote(11, 1.0, 1.1))


def test_trade_tick_with_only_a_last_price_is_valid():
    assert TickGuard().admit(Tick("BTCUSD", 1, last=42000.5, size=0.1))
