"""Amount: the Decimal type of every number a caller's config puts into the books (cash, fees,
increments, sizes, leverage), bounded in magnitude.

Why: a Decimal field with only `gt=0` took 1e100000000 as cash or 1e-1000000 as a tick, and the
books turn such values into raw integers of millions of digits (seconds of CPU per operation and
megabytes each: a denial of service through POST /bots or a backtest request), or into numbers that
overflow the fast path's 64-bit kernel. No market has a tick below 1e-18 (an ERC-20 token's 18
decimals) nor an account above 1e15, so a value outside [1e-18, 1e15] in size is refused where it
enters, with the field named, as any other bad config value is."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator

SMALLEST_EXPONENT = -18
LARGEST_EXPONENT = 15


def bounded(value: Decimal) -> Decimal:
    """`value` if it is finite and 0 or between 1e-18 and 1e15 in size (exclusive of 1e16), else ValueError."""
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if not value.is_zero() and not SMALLEST_EXPONENT <= value.adjusted() <= LARGEST_EXPONENT:
        raise ValueError(f"must be 0 or between 1e{SMALLEST_EXPONENT} and 1e{LARGEST_EXPONENT + 1} in size")
    return value


Amount = Annotated[Decimal, AfterValidator(bounded)]
