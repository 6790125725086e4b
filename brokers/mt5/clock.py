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
  stale tick, or a terminal whose clock is not today's, e.g. a test fake): they are ignored. A
  server time more than `NOT_TODAY_S` (10 days, longer than any market closure) from now, before
  any offset was derived, is a terminal whose clock is not today's: the fixed offset (0 unless
  named) is taken as known, since no tick will ever give a better one.

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
A deal the adapter's own order_send just made is a fresh server time too (`confirm`): its time
is the server's clock at the execution, so the first trade of a bot confirms the offset even on a
symbol whose ticks are rare.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

QUARTER_HOUR_S = 900
MAX_OFFSET_S = 14 * 3600
MAX_DST_SHIFT_S = 3600   # the largest step a server's offset makes at a DST change
NOT_TODAY_S = 10 * 86_400  # a server time this far from now is no stale tick: the terminal's clock is another


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
        return self._take(newest_tick_msc, arrived)

    def confirm(self, server_msc: int, utc_ns: int | None = None) -> int:
        """Take a server time known to be the server's clock at `utc_ns` (None: now), within a
        request's round trip: the time of a deal the adapter's own order_send made, against the
        moment it was sent (DEAL_TIME is the server's clock when it executed). As good as a tick
        seen to arrive: it confirms the offset. Returns the offset now."""
        if not self._derive:
            return self.offset_s()
        return self._take(server_msc, True, utc_ns)

    def _take(self, server_msc: int, fresh: bool, utc_ns: int | None = None) -> int:
        """One reading of the offset from a server time seen at `utc_ns` (None: now); `fresh`: the
        time is the server's clock then (module docstring)."""
        utc_s = (self.utc_now_ns() if utc_ns is None else utc_ns) / 1e9
        raw = server_msc / 1000 - utc_s
        derived = int(round(raw / QUARTER_HOUR_S)) * QUARTER_HOUR_S
        if abs(raw) > NOT_TODAY_S and not self._offsets:
            # no market is closed that long: the terminal's clock is not today's (a fake, a replay),
            # there is no offset to derive, ever: the fixed one (0 unless named) is all there is
            self._confirmed = True
            return self.offset_s()
        if abs(derived) > MAX_OFFSET_S:
            return self.offset_s()
        current = self._offsets[-1] if self._offsets else None
        if fresh and not self._confirmed:
            self._confirmed = True
            if current is not None and abs(derived - current) > MAX_DST_SHIFT_S:
                # no DST step is that large: the provisional reading was a stale tick's, drop it
                self._starts.clear()
                self._offsets.clear()
                current = None
        if current is None or derived > current or (derived < current and fresh):
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
