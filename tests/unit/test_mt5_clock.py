"""The MT5 server clock (brokers/mt5/clock.py): server times to UTC across DST."""

from __future__ import annotations

from datetime import datetime, timezone

from brokers.mt5.clock import ServerClock

H = 3600


def utc_s(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


class Now:
    def __init__(self, s: int) -> None:
        self.s = s

    def __call__(self) -> int:
        return self.s * 1_000_000_000


def test_a_named_zone_converts_both_sides_of_a_dst_change():
    clock = ServerClock(zone="EET", utc_now_ns=Now(utc_s(2026, 4, 1)))
    winter, summer = utc_s(2026, 3, 29, 0, 30), utc_s(2026, 3, 29, 1, 30)  # EU DST starts 01:00 UTC
    assert clock.to_utc_ns((winter + 2 * H) * 1000) == winter * 10**9
    assert clock.to_utc_ns((summer + 3 * H) * 1000) == summer * 10**9
    assert clock.to_server_s(winter * 10**9) == winter + 2 * H and clock.to_server_s(summer * 10**9) == summer + 3 * H


def test_a_derived_offset_follows_the_terminals_ticks_into_summer_time():
    now = Now(utc_s(2026, 3, 27, 12))
    clock = ServerClock(utc_now_ns=now)
    assert clock.observe((now.s + 2 * H - 1) * 1000) == 2 * H   # a tick a second old, at UTC+2
    before = now.s
    now.s = utc_s(2026, 3, 30, 8)
    assert clock.observe((now.s + 3 * H) * 1000) == 3 * H       # after the weekend: UTC+3
    assert clock.to_utc_ns((before + 2 * H) * 1000) == before * 10**9  # an older time keeps its offset
    assert clock.to_utc_ns((now.s + 3 * H) * 1000) == now.s * 10**9


def test_a_stale_tick_does_not_lower_the_offset_but_a_fresh_one_does():
    now = Now(utc_s(2026, 10, 23, 12))
    clock = ServerClock(utc_now_ns=now)
    last = (now.s + 3 * H) * 1000
    clock.observe(last)
    now.s += 2 * H                               # the market went quiet: the same tick, two hours old
    assert clock.observe(last) == 3 * H
    now.s = utc_s(2026, 10, 26, 8)               # EU DST ended on Sunday: a new tick at UTC+2
    assert clock.observe((now.s + 2 * H) * 1000) == 2 * H


def test_an_offset_that_is_no_offset_is_ignored():
    clock = ServerClock(utc_now_ns=Now(utc_s(2026, 1, 5)), fixed_offset_s=None)
    assert clock.observe(1_700_000_000_000) == 0  # a terminal whose clock is years away (a test fake)


def test_a_fixed_offset_is_taken_as_given():
    clock = ServerClock(fixed_offset_s=7200, utc_now_ns=Now(utc_s(2026, 1, 5)))
    assert clock.observe(utc_s(2026, 1, 5) * 1000) == 7200 and not clock.derived


def test_one_stale_look_is_provisional_and_a_deal_seen_against_its_send_confirms_the_offset():
    now = Now(utc_s(2026, 11, 25, 12))
    clock = ServerClock(utc_now_ns=now)
    clock.observe((now.s - 2 * H + 2 * H) * 1000)   # a quiet symbol's tick, two hours old: reads UTC+0
    assert not clock.known and clock.offset_s() == 0
    sent = now.s
    now.s += 30                                      # the deal shows in history half a minute after the send
    assert clock.confirm((sent + 2 * H) * 1000, sent * 10**9) == 2 * H and clock.known
    assert clock.to_utc_ns((sent - 60 + 2 * H) * 1000) == (sent - 60) * 10**9  # the stale reading is dropped


def test_a_terminal_whose_clock_is_not_todays_keeps_the_fixed_offset_as_known():
    clock = ServerClock(utc_now_ns=Now(utc_s(2026, 1, 5)))
    clock.observe(1_700_000_000_000)                 # November 2023: no market is closed that long
    assert clock.known and clock.offset_s() == 0
    weekend = ServerClock(utc_now_ns=Now(utc_s(2026, 11, 29, 21)))
    weekend.observe((utc_s(2026, 11, 27, 21, 59) + 2 * H) * 1000)   # Friday's last tick, two days old
    assert not weekend.known                         # a weekend's stale tick stays provisional
