"""The gate every live tick passes before the engine sees it.

A feed can deliver garbage: NaN or negative prices, a crossed quote, a tick older than the last
one, the same tick twice. Trading on it would be trading blind; stopping the bot for it would
let one bad packet halt a strategy. So a malformed tick is counted under its reason and dropped,
and the bot lives on. The counts are exported (API /metrics later) so a bad feed is visible.
"""

from __future__ import annotations

import math
from collections import Counter
from enum import StrEnum

from engine.market import Tick


class TickProblem(StrEnum):
    NOT_FINITE = "NOT_FINITE"          # NaN or inf in a price the tick claims to carry
    NON_POSITIVE = "NON_POSITIVE"      # zero or negative price
    NO_PRICE = "NO_PRICE"              # neither a bid/ask pair nor a last price
    CROSSED = "CROSSED"                # bid above ask
    NEGATIVE_SIZE = "NEGATIVE_SIZE"
    OUT_OF_ORDER = "OUT_OF_ORDER"      # older than the last accepted tick
    DUPLICATE = "DUPLICATE"            # same time and same prices as the last accepted tick


class TickGuard:
    """Validates ticks in arrival order; keeps per-reason counts of what it dropped."""

    def __init__(self) -> None:
        self.dropped: Counter[TickProblem] = Counter()
        self.accepted = 0
        self._last: Tick | None = None

    def problem(self, tick: Tick) -> TickProblem | None:
        """Why this tick must be dropped, or None if it is usable (does not update state)."""
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
        if not math.isfinite(tick.size) or tick.size < 0:
            return TickProblem.NEGATIVE_SIZE
        last = self._last
        if last is not None:
            if tick.ts < last.ts:
                return TickProblem.OUT_OF_ORDER
            if tick == last:
                return TickProblem.DUPLICATE
        return None

    def admit(self, tick: Tick) -> bool:
        """True to process the tick; False if it was counted and dropped."""
        problem = self.problem(tick)
        if problem is not None:
            self.dropped[problem] += 1
            return False
        self._last = tick
        self.accepted += 1
        return True
