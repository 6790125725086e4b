"""Malformed ticks are counted and dropped; good ones pass; state follows accepted ticks only."""

from __future__ import annotations

import pytest

from engine.market import Tick
from engine.tick_guard import TickGuard, TickGuardConfig, TickProblem

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


# -- duplicates: NaN fields compare equal ----------------------------------------------------------------

def test_a_repeated_quote_is_a_duplicate_even_though_its_nan_last_is_a_fresh_nan():
    """Feeds build each tick's NaN afresh (float("nan") != float("nan")): the same quote twice
    must still be recognised as one tick seen twice."""
    guard = TickGuard()
    assert guard.admit(Tick("EURUSD", 10, 1.38756, 1.38758, float("nan"), 0.0))
    assert not guard.admit(Tick("EURUSD", 10, 1.38756, 1.38758, float("nan"), 0.0))
    assert not guard.admit(Tick("EURUSD", 10, 1.38756, 1.38758, float("nan"), 0.0))
    assert guard.dropped == {TickProblem.DUPLICATE: 2} and guard.accepted == 1


def test_a_repeated_trade_with_no_quote_is_a_duplicate():
    guard = TickGuard()
    assert guard.admit(Tick("BTCUSD", 5, float("nan"), float("nan"), 42000.5, 0.1))
    assert not guard.admit(Tick("BTCUSD", 5, float("nan"), float("nan"), 42000.5, 0.1))
    assert guard.admit(Tick("BTCUSD", 5, float("nan"), float("nan"), 42000.5, 0.2))  # another trade, same time
    assert guard.dropped == {TickProblem.DUPLICATE: 1}


# -- outliers on real ticks ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eurusd() -> list[Tick]:
    """The first 2000 ticks of a real EURUSD day (FXCM), as a feed delivers them."""
    from live.feed import TickTable
    from tests.integration.runtime_helpers import EURUSD_TICKS

    table = TickTable.load(EURUSD_TICKS)
    return [tick for _, tick in table.ticks("EURUSD")][:2000]


def spike(tick: Tick, factor: float, dt: int = 0) -> Tick:
    return Tick(tick.symbol, tick.ts + dt, tick.bid * factor, tick.ask * factor, tick.last, tick.size)


def warmed(ticks: list[Tick], config: TickGuardConfig | None = None, n: int = 200) -> TickGuard:
    guard = TickGuard(config)
    for tick in ticks[:n]:
        guard.admit(tick)
    return guard


def test_four_ticks_at_ten_times_the_price_are_dropped_as_outliers_and_the_market_goes_on(eurusd):
    guard = warmed(eurusd)
    before = (guard.last_mid, guard.reference(), guard.accepted)
    bad = [spike(eurusd[199], 10.0, dt) for dt in (1, 2, 3, 4)]
    assert [guard.admit(t) for t in bad] == [False] * 4
    assert guard.dropped[TickProblem.OUTLIER] == 4
    assert (guard.last_mid, guard.reference(), guard.accepted) == before  # a spike moves no mark
    assert all(guard.admit(t) for t in eurusd[200:260] if guard.problem(t) is None)
    assert guard.dropped[TickProblem.OUTLIER] == 4 and guard.level_shifts == 0


@pytest.mark.parametrize("factor", [10.0, 0.1, 1.2, 0.85, 1.01])
def test_a_jump_far_beyond_the_recent_range_is_an_outlier_either_way(eurusd, factor):
    """1 % on EURUSD is ~140 pips, against a recent range of a few pips."""
    guard = warmed(eurusd)
    assert guard.problem(spike(eurusd[199], factor, 1)) is TickProblem.OUTLIER


def test_the_real_day_has_no_outliers_with_the_defaults():
    """The whole bundled EURUSD day (58,143 ticks): only its crossed quotes are dropped."""
    from live.feed import TickTable
    from tests.integration.runtime_helpers import EURUSD_TICKS

    guard = TickGuard()
    for _, tick in TickTable.load(EURUSD_TICKS).ticks("EURUSD"):
        guard.admit(tick)
    assert set(guard.dropped) == {TickProblem.CROSSED} and guard.level_shifts == 0


def test_a_wide_quote_around_a_normal_mid_is_an_outlier(eurusd):
    """A market buy fills at the ask: a quote whose mid is normal but whose ask is not is no
    better than a spike."""
    guard = warmed(eurusd)
    last = eurusd[199]
    mid = (last.bid + last.ask) / 2
    assert guard.problem(Tick("EURUSD", last.ts + 1, mid * 0.9, mid * 1.1)) is TickProblem.OUTLIER


def test_no_outlier_decision_before_the_window_has_filled(eurusd):
    guard = TickGuard(TickGuardConfig(window=50))
    for tick in eurusd[:10]:
        guard.admit(tick)
    assert guard.accepted < 50
    assert guard.admit(spike(eurusd[9], 10.0, 1))  # warm-up: nothing to measure it against yet
    assert TickProblem.OUTLIER not in guard.dropped


def test_the_hard_bound_holds_when_the_recent_range_is_wide():
    """A market that swung 20 % within the window makes the range-based test lax; a tick 50 %
    away from the median is still refused by max_deviation_pct."""
    guard = TickGuard(TickGuardConfig(window=10, max_deviation_pct=30))
    for k in range(10):
        assert guard.admit(quote(k, 100.0 + 2 * k, 100.1 + 2 * k))
    assert guard.problem(quote(20, 160.0, 160.1)) is TickProblem.OUTLIER
    assert guard.problem(quote(20, 125.0, 125.1)) is None


def test_a_flat_market_does_not_make_every_move_an_outlier():
    """Ten identical quotes have a range of 0; the floor (range_floor_pct of the median) keeps a
    one-pip move a normal tick."""
    guard = TickGuard(TickGuardConfig(window=10))
    for k in range(10):
        assert guard.admit(quote(k, 1.38750, 1.38752))
    assert guard.admit(quote(10, 1.38760, 1.38762))


def test_outlier_detection_can_be_switched_off(eurusd):
    guard = warmed(eurusd, TickGuardConfig(outlier_multiple=None, max_deviation_pct=None))
    assert guard.admit(spike(eurusd[199], 10.0, 1))


# -- a genuine move that persists is accepted --------------------------------------------------------------

def test_a_new_level_confirmed_by_consecutive_ticks_is_accepted_and_counted(eurusd):
    """A weekend gap of 3 %: the first confirm_ticks - 1 ticks at the new level are dropped, the
    one that confirms it is admitted, and the reference follows the market from there. (The ticks
    are 15 s apart so that the 5th is also the first after confirm_seconds=60: a level must now
    last in feed time as well, tests/unit/test_tick_burst.py.)"""
    config = TickGuardConfig(confirm_ticks=5, confirm_seconds=60)
    guard = warmed(eurusd, config)
    base = eurusd[199]
    gapped = [Tick("EURUSD", base.ts + k * 15 * 10**9, base.bid * 1.03 + k * 1e-5, base.ask * 1.03 + k * 1e-5)
              for k in range(1, 12)]
    admitted = [guard.admit(t) for t in gapped]
    assert admitted == [False] * 4 + [True] * 7
    assert guard.dropped[TickProblem.OUTLIER] == 4 and guard.level_shifts == 1
    assert guard.reference() == pytest.approx((base.bid + base.ask) / 2 * 1.03, rel=1e-4)
    # and the old level is now the outlier
    assert guard.problem(Tick("EURUSD", gapped[-1].ts + 1, base.bid, base.ask)) is TickProblem.OUTLIER


def test_a_spike_shorter_than_confirm_ticks_never_becomes_the_level(eurusd):
    guard = warmed(eurusd, TickGuardConfig(confirm_ticks=5))
    base = eurusd[199]
    for k in range(4):
        assert not guard.admit(spike(base, 10.0, k + 1))
    assert guard.admit(Tick("EURUSD", base.ts + 10, base.bid, base.ask + 1e-5))  # the market: the run ends
    for k in range(4):
        assert not guard.admit(spike(base, 10.0, 20 + k))  # a second short spike starts from zero
    assert guard.level_shifts == 0 and guard.dropped[TickProblem.OUTLIER] == 8


def test_outliers_that_disagree_with_each_other_do_not_confirm_a_level(eurusd):
    guard = warmed(eurusd, TickGuardConfig(confirm_ticks=3))
    base = eurusd[199]
    for k in range(12):
        assert not guard.admit(spike(base, 10.0 if k % 2 else 0.1, k + 1))
    assert guard.level_shifts == 0 and guard.dropped[TickProblem.OUTLIER] == 12


def test_a_bad_tick_repeated_does_not_vote_for_its_own_level(eurusd):
    guard = warmed(eurusd, TickGuardConfig(confirm_ticks=3))
    bad = spike(eurusd[199], 10.0, 1)
    assert [guard.admit(bad) for _ in range(10)] == [False] * 10
    assert guard.dropped == {TickProblem.OUTLIER: 1, TickProblem.DUPLICATE: 9} and guard.level_shifts == 0


def test_the_same_ticks_give_the_same_decisions(eurusd):
    """A restart's warm-up and the parity replay rebuild the guard from the same ticks: they must
    drop the same ones."""
    stream = list(eurusd[:300])
    stream[150:150] = [spike(eurusd[149], 10.0, k) for k in range(4)]
    first, second = TickGuard(), TickGuard()
    assert [first.admit(t) for t in stream] == [second.admit(t) for t in stream]
    assert first.dropped == second.dropped and first.dropped[TickProblem.OUTLIER] == 4


# -- the config --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"window": 1}, "tick_guard.window"),
    ({"window": True}, "tick_guard.window"),
    ({"window": "50"}, "tick_guard.window"),
    ({"outlier_multiple": 0}, "tick_guard.outlier_multiple"),
    ({"outlier_multiple": True}, "tick_guard.outlier_multiple"),
    ({"outlier_multiple": "nan"}, "tick_guard.outlier_multiple"),
    ({"max_deviation_pct": -1}, "tick_guard.max_deviation_pct"),
    ({"range_floor_pct": float("inf")}, "tick_guard.range_floor_pct"),
    ({"confirm_ticks": 1}, "tick_guard.confirm_ticks"),
    ({"colour": "red"}, "tick_guard.colour"),
])
def test_a_bad_tick_guard_setting_is_refused_naming_its_field(change, field):
    from engine.errors import ConfigError
    from live.config import parse_bot_config

    with pytest.raises(ConfigError) as refused:
        parse_bot_config({"id": "b1", "strategy": "sma_cross", "symbol": "EURUSD", "tick_guard": change})
    assert refused.value.field == field


def test_the_bot_config_carries_its_tick_guard_settings():
    from live.config import parse_bot_config

    config = parse_bot_config({"id": "b1", "strategy": "sma_cross", "symbol": "EURUSD",
                               "tick_guard": {"window": 20, "confirm_ticks": 4}})
    assert config.tick_guard == TickGuardConfig(window=20, confirm_ticks=4)
    assert parse_bot_config(config.model_dump(mode="json")).tick_guard == config.tick_guard  # a recorded config


def test_the_usual_tick_shortcut_decides_as_every_price_check_in_turn():
    """TickGuard.problem passes a finite, positive, uncrossed quote in two comparisons and sends
    anything else through the full checks: on ticks mixing NaN, infinities, zeros, negatives,
    crossed and touching quotes and bad sizes, its answer is the full checks' (in their order)."""
    import itertools
    import math
    import random

    from engine.tick_guard import _price_problem

    def full(tick: Tick) -> TickProblem | None:
        reason = _price_problem(tick)
        if reason is None and not (math.isfinite(tick.size) and tick.size >= 0):
            return TickProblem.NEGATIVE_SIZE
        return reason

    nan, inf = float("nan"), float("inf")
    odd = [nan, inf, -inf, 0.0, -0.0, -1.5, 1e-300, 5e-324, 1.1, 1.1000001, 1e308]
    rng = random.Random(7)
    ticks = [Tick("X", 1, b, a, last, size) for b, a, last, size in itertools.product(odd, odd, [nan, 1.1, 0.0, inf],
                                                                                          [0.0, 1.0, -1.0, nan, inf])]
    ticks += [Tick("X", 1, rng.choice(odd + [rng.uniform(0.5, 2)]), rng.choice(odd + [rng.uniform(0.5, 2)]),
                   rng.choice([nan, rng.uniform(-1, 2)]), rng.choice([0.0, 3.0, -0.5])) for _ in range(20_000)]
    for tick in ticks:
        assert TickGuard().problem(tick) == full(tick), tick
