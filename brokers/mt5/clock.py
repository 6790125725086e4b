"""The MT5 server's clock: every time the terminal returns (ticks, orders, deals, positions) is
the trade server's wall clock written as if it were UTC. Most brokers run at UTC+2, UTC+3 in
summer (EET/EEST, or shifted with US DST to put the New York close at midnight), so a fixed
offset is wrong for half the year.

`ServerClock` converts both ways. Where the offset comes from, in order:
- a zone the operator names (`zone`, an IANA name such as "EET"): exact, DST included, for any
  moment, past or present;
- a fixed offset the operator names (`fixed_offset_s`);
- derived from the terminal: the newest tick's server time against UTC now, rounded to a quarter
  hour (offsets are whole quarter hours). A tick is never newer than now, so a stale one (a
  closed market) reads too small: a larger offset is taken at once (a fresh tick, or DST
  starting), a smaller one only from a tick that arrived since the previous look (so at most a
  poll interval old), which is how DST ending shows. Offsets beyond +-14 h are not offsets (a
  terminal whose clock is not today's, e.g. a test fake): they are ignored.

Each derived offset is kept with the server time it was first seen at, so a time from before a
DST change still converts with the offset that held then (as far as this process saw it; times
before the first observation use the first offset). Name the zone to be exact about history.

The first look cannot tell a fresh tick from a stale one (a bot started while its market is
closed sees Friday's last tick: on a Saturday that reads about -10 h for a UTC+2 server). So the
offset of the first look is provisional (`known` is False): it is confirmed only by a tick seen to
arrive (newer than the previous look). When that confirmed offset differs from the provisional
one by more than a DST shift can (`MAX_DST_SHIFT_S`), the provisional reading came from a stale
tick and is dropped from history: every server time, earlier ones included, then converts with
the confirmed offset (times converted meanwhile are re-dated by converting them again). Until
`known`, an adapter holds what it would date (fills, expiries) or names the zone (`server_tz`).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

QUARTER_HOUR_S = 900
MAX_OFFSET_S = 14 * 3600
MAX_DST_SHIFT_S = 3600   # the largest step a server's offset makes at a DST change


class ServerClock:
    def __init__(self, *, zone: str | None = None, fixed_offset_s: int | None = None,
                 utc_now_ns: Callable[[], int]) -> None:
        self.zone = ZoneInfo(zone) if zone else None
        self.utc_now_ns = utc_now_ns
        self._derive = self.zone is None and fixed_offset_s is None
        self._starts: list[int] = []          # server seconds each offset was first seen at
        self._offsets: list[int] = []
        self._fixed = fixed_offset_s or 0
        self._last_tick_msc: int | None = None
        self._confirmed = False               # a derived offset read from a tick seen to arrive

    @property
    def derived(self) -> bool:
        return self._derive

    @property
    def known(self) -> bool:
        """The offset is certain: named (zone, fixed) or read from a tick seen to arrive."""
        return not self._derive or self._confirmed

    def offset_s(self) -> int:
        """The offset now."""
        if self.zone is not None:
            return _zone_offset(self.zone, self.utc_now_ns() // 1_000_000_000)
        return self._offsets[-1] if self._offsets else self._fixed

    def observe(self, newest_tick_msc: int | None) -> int:
        """Take the newest tick's server time (ms) into account; returns the offset now."""
        if not self._derive or newest_tick_msc is None:
            return self.offset_s()
        first = self._last_tick_msc is None
        arrived = not first and newest_tick_msc > self._last_tick_msc   # type: ignore[operator]
        self._last_tick_msc = max(newest_tick_msc, self._last_tick_msc or newest_tick_msc)
        utc_s = self.utc_now_ns() / 1e9
        raw = newest_tick_msc / 1000 - utc_s
        derived = int(round(raw / QUARTER_HOUR_S)) * QUARTER_HOUR_S
        if abs(derived) > MAX_OFFSET_S:
            return self.offset_s()
        current = self._offsets[-1] if self._offsets else None
        if arrived and not self._confirmed:
            self._confirmed = True
            if current is not None and abs(derived - current) > MAX_DST_SHIFT_S:
                # no DST step is that large: the provisional reading was a stale tick's, drop it
                self._starts.clear()
                self._offsets.clear()
                current = None
        if current is None or derived > current or (derived < current and arrived):
            if derived != current:
                self._starts.append(int(utc_s) + derived)
                self._offsets.append(derived)
        return self.offset_s()

    def to_utc_ns(self, server_msc: int) -> int:
        """A server time (ms) as ns UTC."""
        server_s = int(server_msc) // 1000
        return (int(server_msc) - self._offset_at_server(server_s) * 1000) * 1_000_000

    def server_now_s(self) -> int:
        return self.utc_now_ns() // 1_000_000_000 + self.offset_s()

    def to_server_s(self, utc_ns: int) -> int:
        utc_s = utc_ns // 1_000_000_000
        if self.zone is not None:
            return utc_s + _zone_offset(self.zone, utc_s)
        if not self._offsets:
            return utc_s + self._fixed
        # the offset of the observation in force at that UTC moment
        starts_utc = [start - offset for start, offset in zip(self._starts, self._offsets)]
        i = max(0, bisect_right(starts_utc, utc_s) - 1)
        return utc_s + self._offsets[i]

    def _offset_at_server(self, server_s: int) -> int:
        if self.zone is not None:
            naive = datetime.fromtimestamp(server_s, tz=timezone.utc).replace(tzinfo=None)
            offset = naive.replace(tzinfo=self.zone).utcoffset()
            assert offset is not None
            return int(offset.total_seconds())
        if not self._offsets:
            return self._fixed
        i = max(0, bisect_right(self._starts, server_s) - 1)
        return self._offsets[i]


def _zone_offset(zone: ZoneInfo, utc_s: int) -> int:
    offset = datetime.fromtimestamp(utc_s, tz=zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


__all__ = ["ServerClock"]
