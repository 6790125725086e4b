"""The gate every live tick passes before the engine sees it.

A feed can deliver garbage: NaN or negative prices, a crossed quote, a tick older than the last
one, the same tick twice, or a well-formed tick at a price the market never traded (a fat-fingered
print, a decimal point in the wrong place: four ticks at 10x the price once filled 2 x 5000 units
at 13.88 on a 1.39 market). Trading on it would be trading blind; stopping the bot for it would
let one bad packet halt a strategy. So a bad tick is counted under its reason and dropped, and the
bot lives on. The counts are exported (bot status, session record, API /metrics) so a bad feed is
visible.

Outliers. After a warm-up of `window` accepted ticks, a tick is an OUTLIER when one of its prices
lies further from the reference (the median mid of the last `window` accepted ticks) than
`outlier_multiple` x the recent range (highest minus lowest price of those ticks, spreads
included, at least `range_floor_pct` % of the reference: a flat market must not make every move
an outlier), or more than `max_deviation_pct` % from it (a hard bound that holds even when the
recent range is wide). The median is the reference because it is what one bad tick cannot move.

Genuine gaps. A market can really jump (the weekend open, a stock's opening gap) and stay there.
Dropping every tick at the new level would blind the bot for good, so a run of consecutive
outliers that agree on one level (each within the outlier tolerance of the run's median) becomes
the new level once it has lasted BOTH `confirm_ticks` ticks AND `confirm_seconds` of feed time
(tick timestamps, not the wall clock: a replay decides the same). Then the window restarts from
the run's ticks, the confirming tick is admitted, and the shift is counted (`level_shifts`). The
ones before it stay dropped. Ticks alone were not enough: a feed can send a burst of ten or forty
bad ticks in a few seconds (40 ticks at 10x in 36 s were once adopted as the level after 10, the
strategy traded on them and the risk band, centred on the guarded median, moved with them: 2 x
5000 filled at 13.88 on a 1.39 market). A burst shorter than `confirm_seconds` never reaches the
engine, so it can neither fill nor halt anything, and the band's reference, the median of
admitted ticks only, never sits on an unconfirmed price.

Implausible levels. A level more than `max_shift_ratio` times (or less than 1/`max_shift_ratio`
of) the reference is not a market gap but a scaling error (a decimal point, a feed switching
units) or an event a person must look at (a split). It is adopted only after
`large_shift_confirm_seconds` (null: never; the ticks stay dropped and counted as OUTLIER). A
longer wait rather than a halt: the guard has no say over order entry, and while it waits the
bot sees no tick at the new level, so it cannot trade on it; the OUTLIER count keeps rising in
the status and /metrics for a person to see. A halt would also let a bad burst stop a strategy,
which is what the guard exists to prevent.

Every decision depends only on the ticks seen before, in order, so a replay (a restart's warm-up,
the parity replay) with the same config makes the same decisions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter, deque
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationInfo, field_validator

from engine.market import Tick


class TickProblem(StrEnum):
    NOT_FINITE = "NOT_FINITE"          # NaN or inf in a price the tick claims to carry
    NON_POSITIVE = "NON_POSITIVE"      # zero or negative price
    NO_PRICE = "NO_PRICE"              # neither a bid/ask pair nor a last price
    CROSSED = "CROSSED"                # bid above ask
    NEGATIVE_SIZE = "NEGATIVE_SIZE"
    OUT_OF_ORDER = "OUT_OF_ORDER"      # older than the last accepted tick
    DUPLICATE = "DUPLICATE"            # same time, prices and size as the last tick seen (NaN == NaN)
    OUTLIER = "OUTLIER"                # a price too far from the recent median (module docstring)


_Ratio = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class TickGuardConfig(BaseModel):
    """A bot's `tick_guard:` mapping. Left out, the defaults hold; `outlier_multiple: null` and
    `max_deviation_pct: null` together switch outlier detection off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Annotated[int, Strict(), Field(ge=2, le=10_000)] = Field(
        50, description="accepted ticks the reference and the range are taken over; also the warm-up")
    outlier_multiple: _Ratio | None = Field(
        10.0, le=1_000_000, description="an outlier lies beyond this many recent ranges from the median")
    max_deviation_pct: _Ratio | None = Field(
        10.0, le=1_000, description="an outlier lies more than this % from the median, whatever the range")
    range_floor_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        0.01, description="the recent range is taken as at least this % of the median")
    confirm_ticks: Annotated[int, Strict(), Field(ge=2, le=10_000)] = Field(
        10, description="consecutive outliers agreeing on one level that make it the new level")
    confirm_seconds: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = Field(
        120.0, description="feed time (s) a new level must also have lasted before it is adopted: a burst "
                           "of bad ticks is short, a real gap stays")
    max_shift_ratio: Annotated[float, Field(gt=1, le=1_000, allow_inf_nan=False)] = Field(
        2.0, description="a new level beyond this ratio of the reference (either way) is implausible: it "
                         "needs large_shift_confirm_seconds")
    large_shift_confirm_seconds: Annotated[float, Field(gt=0, le=604_800, allow_inf_nan=False)] | None = Field(
        1800.0, description="feed time (s) an implausible level must last to be adopted; null: never")

    @field_validator("large_shift_confirm_seconds")
    @classmethod
    def _large_waits_longer(cls, value: float | None, info: ValidationInfo) -> float | None:
        """An implausible level must not be adopted sooner than a plausible one."""
        confirm = info.data.get("confirm_seconds")
        if value is not None and confirm is not None and value < confirm:
            raise ValueError(f"must be at least confirm_seconds ({confirm:g})")
        return value

    @field_validator("outlier_multiple", "max_deviation_pct", "range_floor_pct", "confirm_seconds",
                     "max_shift_ratio", "large_shift_confirm_seconds", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        """YAML's `yes` is not the number 1."""
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value


def _same(a: float, b: float) -> bool:
    """Equal, with NaN equal to NaN: a trade-only or quote-only tick carries NaN fields."""
    return a == b or (a != a and b != b)


def same_tick(a: Tick, b: Tick) -> bool:
    return (a.symbol == b.symbol and a.ts == b.ts and _same(a.bid, b.bid) and _same(a.ask, b.ask)
            and _same(a.last, b.last) and _same(a.size, b.size))


_INF = math.inf


def _price_problem(tick: Tick) -> TickProblem | None:
    """The price checks of TickGuard.problem, in its order: what is wrong with the tick's prices."""
    has_quote = not (math.isnan(tick.bid) and math.isnan(tick.ask))
    has_last = not math.isnan(tick.last)
    if not has_quote and not has_last:
        return TickProblem.NO_PRICE
    prices = [p for p in ((tick.bid, tick.ask) if has_quote else ()) + ((tick.last,) if has_last else ())]
    if any(math.isnan(p) or math.isinf(p) for p in prices):
        return TickProblem.NOT_FINITE
    if any(p <= 0 for p in prices):
        return TickProblem.NON_POSITIVE
    if has_quote and tick.bid > tick.ask:
        return TickProblem.CROSSED
    return None


def tick_mid(tick: Tick) -> float:
    """The quote's mid, else the last price (NaN when the tick has neither)."""
    if tick.bid == tick.bid and tick.ask == tick.ask:
        return (tick.bid + tick.ask) / 2
    return tick.last


def _span(tick: Tick) -> tuple[float, float]:
    """Lowest and highest price a valid tick carries (bid <= ask once it passed the checks)."""
    bid, ask, last = tick.bid, tick.ask, tick.last
    if bid != bid:
        return last, last
    if last != last:
        return bid, ask
    return min(bid, last), max(ask, last)


class _Window:
    """The last n accepted ticks: their mids (for the median) and price spans (for the range),
    each kept sorted so a tick costs a bisect, not a sort."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[tuple[float, float, float]] = deque()  # (mid, low, high) in arrival order
        self.mids: list[float] = []
        self.lows: list[float] = []
        self.highs: list[float] = []

    def __len__(self) -> int:
        return len(self.order)

    def add(self, tick: Tick) -> None:
        low, high = _span(tick)
        mid = tick_mid(tick)
        self.order.append((mid, low, high))
        insort(self.mids, mid)
        insort(self.lows, low)
        insort(self.highs, high)
        if len(self.order) > self.size:
            mid, low, high = self.order.popleft()
            del self.mids[bisect_left(self.mids, mid)]
            del self.lows[bisect_left(self.lows, low)]
            del self.highs[bisect_left(self.highs, high)]

    def clear(self) -> None:
        self.order.clear()
        self.mids.clear()
        self.lows.clear()
        self.highs.clear()

    def median(self) -> float:
        mids, n = self.mids, len(self.mids)
        if not n:
            return math.nan
        return mids[n // 2] if n % 2 else (mids[n // 2 - 1] + mids[n // 2]) / 2

    def range(self) -> float:
        return self.highs[-1] - self.lows[0]


class _Run:
    """A run of consecutive outliers that may be a new level: its length, when it started (ns),
    and its last `size` ticks (their median is the level; they refill the window on a shift).
    Bounded: a run that lasts `large_shift_confirm_seconds` at a busy feed's rate must not grow
    without limit."""

    def __init__(self, size: int) -> None:
        self.ticks: deque[Tick] = deque(maxlen=size)
        self._mids = _Window(size)
        self.count = 0
        self.start = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, tick: Tick) -> None:
        if not self.count:
            self.start = tick.ts
        self.count += 1
        self.ticks.append(tick)
        self._mids.add(tick)

    def level(self) -> float:
        return self._mids.median()

    def clear(self) -> None:
        self.ticks.clear()
        self._mids.clear()
        self.count = 0


class TickGuard:
    """Validates ticks in arrival order; keeps per-reason counts of what it dropped, and the
    guarded prices the rest of the bot marks and checks orders against (`last_mid`, `reference`)."""

    def __init__(self, config: TickGuardConfig | None = None) -> None:
        self.config = config or TickGuardConfig()
        self.dropped: Counter[TickProblem] = Counter()
        self.accepted = 0
        self.level_shifts = 0
        self.last_mid = math.nan           # the mid of the last accepted tick: the guarded mark
        self._last: Tick | None = None     # the last accepted tick: ordering watermark
        self._window = _Window(self.config.window)
        self._warm = False                 # outlier decisions start once the window first filled
        self._pending = _Run(self.config.window)  # consecutive outliers that may be a new level

    def reference(self) -> float:
        """The median mid of the recent accepted ticks (NaN before the first): the price one bad
        tick cannot move, which the risk engine's price band is centred on."""
        return self._window.median()

    def counts(self) -> dict[str, int]:
        """Dropped ticks per reason, as plain values for a status or a JSON record."""
        return {str(reason): count for reason, count in sorted(self.dropped.items())}

    def problem(self, tick: Tick) -> TickProblem | None:
        """Why this tick must be dropped, or None if it is usable (does not update state; an
        OUTLIER may still be admitted by `admit` as the tick that confirms a new level)."""
        bid, ask, last_price = tick.bid, tick.ask, tick.last
        # the usual tick, a finite positive uncrossed quote with no last price or a finite positive
        # one, passes the price checks in two comparisons (NaN fails both); others take them all
        if not (0.0 < bid <= ask < _INF and (last_price != last_price or 0.0 < last_price < _INF)):
            reason = _price_problem(tick)
            if reason is not None:
                return reason
        size = tick.size
        if not 0.0 <= size < _INF:  # NaN, infinite or negative
            return TickProblem.NEGATIVE_SIZE
        last = self._last
        if last is not None:
            if tick.ts < last.ts:
                return TickProblem.OUT_OF_ORDER
            if same_tick(tick, last):
                return TickProblem.DUPLICATE
        if self._pending and same_tick(tick, self._pending.ticks[-1]):
            return TickProblem.DUPLICATE   # a repeated bad tick must not vote for its own level
        if self._warm and self._is_outlier(tick):
            return TickProblem.OUTLIER
        return None

    def admit(self, tick: Tick) -> bool:
        """True to process the tick; False if it was counted and dropped."""
        problem = self.problem(tick)
        if problem is TickProblem.OUTLIER:
            if self._confirms_level(tick):
                self._shift_level(tick)
                return True
            self.dropped[problem] += 1
            return False
        if problem is not None:
            self.dropped[problem] += 1
            return False
        self._pending.clear()
        self._accept(tick)
        return True

    # -- outliers -------------------------------------------------------------------------------------
    def _tolerance(self, reference: float) -> float:
        """How far from the reference a price may lie: the tighter of the two bounds."""
        config, tolerance = self.config, math.inf
        if config.outlier_multiple is not None:
            floor = reference * config.range_floor_pct / 100
            tolerance = config.outlier_multiple * max(self._window.range(), floor)
        if config.max_deviation_pct is not None:
            tolerance = min(tolerance, reference * config.max_deviation_pct / 100)
        return tolerance

    def _is_outlier(self, tick: Tick) -> bool:
        reference = self._window.median()
        low, high = _span(tick)
        return max(high - reference, reference - low) > self._tolerance(reference)

    def _confirms_level(self, tick: Tick) -> bool:
        """Add the outlier to the run of outliers that agree on one level (or start a new run);
        True when the run has lasted long enough, in ticks and in feed time, to be the market,
        not a burst (module docstring)."""
        pending, config = self._pending, self.config
        reference = self._window.median()
        if pending:
            level = pending.level()  # agreement is relative: a level 10x away moves 10x as much
            if abs(tick_mid(tick) - level) > self._tolerance(reference) * level / reference:
                pending.clear()
        pending.add(tick)
        if pending.count < config.confirm_ticks:
            return False
        level = pending.level()
        ratio = max(level / reference, reference / level)
        wait: float | None = config.confirm_seconds
        if ratio > config.max_shift_ratio:  # never sooner than a plausible level (a default may be shorter)
            large = config.large_shift_confirm_seconds
            wait = None if large is None else max(large, config.confirm_seconds)
        return wait is not None and tick.ts - pending.start >= wait * 1e9

    def _shift_level(self, tick: Tick) -> None:
        """The market moved: measure it from the confirming ticks on (the last `window` of them)."""
        self._window.clear()
        for confirming in list(self._pending.ticks)[:-1]:
            self._window.add(confirming)
        self._pending.clear()
        self.level_shifts += 1
        self._accept(tick)

    def _accept(self, tick: Tick) -> None:
        self._last = tick
        self.accepted += 1
        self.last_mid = tick_mid(tick)
        self._window.add(tick)
        if len(self._window) >= self.config.window:
            self._warm = True
