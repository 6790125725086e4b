"""A burst of bad ticks is never adopted as the market; a real, lasting gap still is.

The regression (an outside probe, issue 11 item 4): 40 consecutive real EURUSD ticks at 10x their
price, 36 s of feed, were taken for a new level after `confirm_ticks` (10) of them. The guard
restarted its window at 13.87, the risk band's reference (its median) moved there, and a paper bot
filled 2 x 5000 at 13.8766 on a 1.3877 market. A level must now last `confirm_seconds` of feed time
too, and a level beyond `max_shift_ratio` of the reference `large_shift_confirm_seconds`.
"""

from __future__ import annotations

import math

import pytest

from engine.market import Tick
from engine.tick_guard import TickGuard, TickGuardConfig, TickProblem

START = 2999  # where the probe put its burst: 01:37:34 UTC, the guard long warm
S = 10**9


@pytest.fixture(scope="module")
def eurusd() -> list[Tick]:
    """The first 6000 ticks of a real EURUSD day (FXCM), as the feed delivers them."""
    from live.feed import TickTable
    from tests.integration.runtime_helpers import EURUSD_TICKS

    table = TickTable.load(EURUSD_TICKS)
    return [tick for _, tick in table.ticks("EURUSD")][:6000]


def scaled(tick: Tick, factor: float) -> Tick:
    return Tick(tick.symbol, tick.ts, tick.bid * factor, tick.ask * factor, tick.last * factor, tick.size)


def with_burst(ticks: list[Tick], length: int, factor: float = 10.0) -> list[Tick]:
    return ticks[:START] + [scaled(t, factor) for t in ticks[START:START + length]] + ticks[START + length:]


def run(guard: TickGuard, ticks: list[Tick]) -> list[bool]:
    return [guard.admit(t) for t in ticks]


@pytest.mark.parametrize("length", [40, 11])
def test_a_burst_at_ten_times_the_price_is_dropped_whole_and_the_market_goes_on(eurusd, length):
    """Before: both bursts were adopted (2 level shifts each: the 10th bad tick confirmed 13.87,
    the real market then had to confirm its way back, and the ticks in between were admitted)."""
    stream = with_burst(eurusd, length)
    burst = stream[START:START + length]
    assert (burst[-1].ts - burst[0].ts) / S < 60  # a burst is short: 36 s for 40 ticks, 5 s for 11
    guard = TickGuard()
    admitted = run(guard, stream[:START])
    reference = guard.reference()
    references = []
    for tick in burst:
        admitted.append(guard.admit(tick))
        references.append(guard.reference())
    assert admitted[START:] == [False] * length
    assert references == [reference] * length  # the risk band's centre never moved to the burst
    assert guard.level_shifts == 0
    after = run(guard, stream[START + length:])
    assert any(after[:3])  # the real market right after the burst is admitted at once: nothing halted
    assert guard.dropped[TickProblem.OUTLIER] == length and guard.level_shifts == 0  # no real tick lost
    assert 1.38 < guard.reference() < 1.39


def gap(ticks: list[Tick], factor: float) -> list[Tick]:
    """The real ticks from START on, scaled by `factor`: a market that jumped and stayed there."""
    return [scaled(t, factor) for t in ticks[START:]]


def test_a_lasting_weekend_gap_is_followed_once_it_held_both_ticks_and_time(eurusd):
    guard = TickGuard()
    run(guard, eurusd[:START])
    old = guard.reference()
    gapped = gap(eurusd, 1.03)
    first = gapped[0].ts
    k = next(k for k, tick in enumerate(gapped) if guard.admit(tick))
    assert k >= guard.config.confirm_ticks - 1
    assert 120 <= (gapped[k].ts - first) / S < 150  # adopted at the first tick past confirm_seconds
    outliers = guard.dropped[TickProblem.OUTLIER]
    run(guard, gapped[k + 1:])
    assert guard.dropped[TickProblem.OUTLIER] == outliers  # followed from there on: no real tick lost
    assert guard.level_shifts == 1
    assert guard.reference() == pytest.approx(old * 1.03, rel=2e-3)


def test_the_reference_stays_on_admitted_prices_until_the_gap_is_confirmed(eurusd):
    guard = TickGuard()
    run(guard, eurusd[:START])
    old = guard.reference()
    for tick in gap(eurusd, 1.03):
        if guard.admit(tick):
            break
        assert guard.reference() == old and guard.last_mid < old * 1.01


def test_a_stock_opening_gap_of_25_pct_on_trade_ticks_is_followed():
    """Last-price ticks one a second; the open 25 % higher (beyond max_deviation_pct, inside
    max_shift_ratio): followed after confirm_seconds."""
    guard = TickGuard()
    price, ts = 100.0, 10**18
    for k in range(300):
        guard.admit(Tick("XYZ", ts + k * S, last=price + (k % 7) * 0.01, size=100))
    opened = [Tick("XYZ", ts + (1000 + k) * S, last=125.0 + (k % 5) * 0.02, size=100) for k in range(400)]
    decisions = run(guard, opened)
    k = decisions.index(True)
    assert k == guard.config.confirm_seconds  # one tick a second: the first at 120 s confirms
    assert all(decisions[k:]) and guard.level_shifts == 1
    assert guard.reference() == pytest.approx(125.04, abs=0.05)


def test_a_lasting_level_ten_times_away_needs_the_long_confirmation(eurusd):
    """Beyond max_shift_ratio a level is a scaling error or a split until it has held
    large_shift_confirm_seconds: past confirm_seconds it is still dropped."""
    config = TickGuardConfig(confirm_seconds=60, large_shift_confirm_seconds=600)
    guard = TickGuard(config)
    run(guard, eurusd[:START])
    tenfold = gap(eurusd, 10.0)
    decisions = run(guard, tenfold)
    k = decisions.index(True)
    waited = (tenfold[k].ts - tenfold[0].ts) / S
    assert 600 <= waited < 630  # adopted at the first tick past the long wait (the feed ticks every few s)
    assert guard.level_shifts == 1 and guard.reference() > 13


def test_a_lasting_level_ten_times_away_is_never_adopted_when_the_long_wait_is_off(eurusd):
    guard = TickGuard(TickGuardConfig(large_shift_confirm_seconds=None))
    run(guard, eurusd[:START])
    old = guard.reference()
    assert not any(run(guard, gap(eurusd, 10.0)))
    assert guard.level_shifts == 0 and guard.reference() == old
    assert guard.dropped[TickProblem.OUTLIER] > 2500  # all 95 minutes of it, counted for a person to see


def test_a_halved_market_is_a_plausible_level_and_a_third_is_not(eurusd):
    """max_shift_ratio holds either way: 1/2 is at the ratio (plausible), 1/3 beyond it."""
    for factor, shifted in ((0.5, 1), (1 / 3, 0)):
        guard = TickGuard(TickGuardConfig(large_shift_confirm_seconds=None))
        run(guard, eurusd[:START])
        run(guard, gap(eurusd, factor))
        assert guard.level_shifts == shifted, factor


@pytest.mark.parametrize("change, field", [
    ({"confirm_seconds": 0}, "tick_guard.confirm_seconds"),
    ({"confirm_seconds": -5}, "tick_guard.confirm_seconds"),
    ({"confirm_seconds": float("nan")}, "tick_guard.confirm_seconds"),
    ({"confirm_seconds": True}, "tick_guard.confirm_seconds"),
    ({"confirm_seconds": "soon"}, "tick_guard.confirm_seconds"),
    ({"confirm_seconds": 10**6}, "tick_guard.confirm_seconds"),
    ({"max_shift_ratio": 1}, "tick_guard.max_shift_ratio"),
    ({"max_shift_ratio": 0.5}, "tick_guard.max_shift_ratio"),
    ({"max_shift_ratio": float("inf")}, "tick_guard.max_shift_ratio"),
    ({"large_shift_confirm_seconds": 0}, "tick_guard.large_shift_confirm_seconds"),
    ({"large_shift_confirm_seconds": 60}, "tick_guard.large_shift_confirm_seconds"),  # < confirm_seconds 120
    ({"confirm_seconds": 300, "large_shift_confirm_seconds": 200}, "tick_guard.large_shift_confirm_seconds"),
])
def test_a_bad_confirmation_setting_is_refused_naming_its_field(change, field):
    from engine.errors import ConfigError
    from live.config import parse_bot_config

    with pytest.raises(ConfigError) as refused:
        parse_bot_config({"id": "b1", "strategy": "sma_cross", "symbol": "EURUSD", "tick_guard": change})
    assert refused.value.field == field


def test_the_confirmation_settings_round_trip_through_a_bot_config():
    from live.config import parse_bot_config

    config = parse_bot_config({"id": "b1", "strategy": "sma_cross", "symbol": "EURUSD",
                               "tick_guard": {"confirm_seconds": 90, "max_shift_ratio": 1.5,
                                              "large_shift_confirm_seconds": None}})
    assert config.tick_guard == TickGuardConfig(confirm_seconds=90, max_shift_ratio=1.5,
                                                large_shift_confirm_seconds=None)
    assert parse_bot_config(config.model_dump(mode="json")).tick_guard == config.tick_guard
    assert math.isclose(TickGuardConfig().confirm_seconds, 120)


def test_a_long_confirm_seconds_also_holds_for_an_implausible_level(eurusd):
    """confirm_seconds above the default large_shift_confirm_seconds (1800): a 10x level still
    waits the longer of the two."""
    guard = TickGuard(TickGuardConfig(confirm_seconds=2400))
    run(guard, eurusd[:300])
    tenfold = [scaled(t, 10.0) for t in eurusd[300:]]
    assert (tenfold[-1].ts - tenfold[0].ts) / S > 2500  # the feed lasts past both waits
    k = run(guard, tenfold).index(True)
    assert 2400 <= (tenfold[k].ts - tenfold[0].ts) / S
