"""Account-level charges: money a venue moves on an account without a trade (issue 15, 16).

Binance USD-M funding every 8 hours, Alpaca's crypto fees (CFEE activities, posted apart from
the fills they belong to), MT5 swap, interest: none is a fill (no order, no quantity traded),
so none reaches the engine through the ExecutionSink. An adapter that can list them implements
`ChargeSource.charges_since(ts)`; the live runner polls it and books each charge ONCE by its venue
id (the `charges` table: account id + charge id unique), into cash and the position's realized
P&L (engine.portfolio.Portfolio.book_charge).

Whose charge is it? A venue charges the ACCOUNT, never a bot: Binance funds the account's net
position in a symbol, whoever opened it. A charge is booked into a bot's books only when the bot
is the symbol's SOLE holder on the account at the charge's time: the bot held a position
(!= 0) and the account's position in that symbol equalled the bot's (no one else, no other bot,
program or person, held any of it). Anything else is reported as external and booked nowhere.
Why so strict: the last review found a whole account's funding adopted by one bot, which then
showed a loss (or a gain) made by positions it never held, and two bots on one account each
booked the same payment. Splitting a charge pro rata between holders is not possible either:
the venue funds the NET position, and holders with opposite positions net out. So a shared
symbol's charges stay the account's (listed in the reconciliation report and the bot summary),
and each charge is decided once, by its id, for all bots.

How the runner knows the account's position at the charge's time (`holdings_at`): the venue's
position now, less what traded in the symbol since the charge (the bot's fills and the others'),
less the base-asset charges not yet booked (the coin a CFEE took is already gone from the venue's
position, not yet from the bot's). The bot's position at the time comes from its own fills. A
fee for a fill at the same instant (a CFEE on a buy, on a closing sell) belongs to the position
around that instant: held just before OR just after. A charge for a period (Alpaca posts a day's
crypto fees at its end, dated, with no order id) is the bot's when the bot held or traded the
symbol in that period, the account held what the bot held at both ends, and no one else traded
the symbol in between (otherwise whose trade the fee was for cannot be told).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from engine.errors import ConfigError


class ChargeKind(StrEnum):
    FUNDING = "FUNDING"     # perpetual futures funding (Binance USD-M FUNDING_FEE income)
    FEE = "FEE"             # a fee charged apart from the fill (Alpaca CFEE)
    SWAP = "SWAP"           # overnight financing (MT5 deals of type swap)
    INTEREST = "INTEREST"   # interest on margin or cash


@dataclass(frozen=True, slots=True)
class AccountCharge:
    """One charge as the venue booked it: `amount` signed (+ credit, - debit) in `asset` (the
    quote / settle currency, another currency, or the instrument's BASE asset: Alpaca takes a
    crypto buy's fee in the coin); `ts` ns UTC; `charge_id` the venue's id, unique per account.
    `period_ns`: a charge for a period rather than an instant (Alpaca posts a day's crypto fees at
    its end) covers (ts - period_ns, ts]; `price`: the venue's valuation of a base-asset charge."""

    charge_id: str
    kind: ChargeKind
    symbol: str
    asset: str
    amount: Decimal
    ts: int
    period_ns: int = 0
    price: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.charge_id:
            raise ConfigError("charge_id", "a charge needs the venue's id (it is booked once by it)")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise ConfigError("amount", f"must be a finite Decimal, got {self.amount!r}")
        if not self.asset:
            raise ConfigError("asset", f"charge {self.charge_id}: the currency or asset charged is missing")
        if self.ts < 0:
            raise ConfigError("ts", f"charge {self.charge_id}: must be ns since the epoch, got {self.ts}")
        if self.period_ns < 0:
            raise ConfigError("period_ns", f"charge {self.charge_id}: must be >= 0, got {self.period_ns}")
        if self.price is not None and (not self.price.is_finite() or self.price <= 0):
            raise ConfigError("price", f"charge {self.charge_id}: must be a positive price, got {self.price}")
        ChargeKind(self.kind)

    @property
    def start(self) -> int:
        """The first instant the charge covers (its `ts` for an instant's charge)."""
        return self.ts - self.period_ns + 1 if self.period_ns else self.ts


@runtime_checkable
class ChargeSource(Protocol):
    """An adapter capability (optional): the account's charges from `ts` (ns) on, oldest first,
    each with the venue's id; 0 asks for the adapter's lookback window."""

    def charges_since(self, ts: int) -> list[AccountCharge]: ...


@dataclass(frozen=True, slots=True)
class Holding:
    """The bot's and the account's position in the charge's symbol at the start and the end of
    the charge's time (one instant, or its period), and whether others traded it meanwhile."""

    bot_before: Decimal
    bot_after: Decimal
    account_before: Decimal
    account_after: Decimal
    foreign_trades: bool = False
    bot_traded: bool = False        # the bot traded the symbol within the charge's time (a day's fee)


def is_sole_holder(holding: Holding) -> bool:
    """The attribution rule (module docstring): the bot held the symbol at the charge's time
    (just before or just after it, at either end of its period, or traded it within), the
    account held exactly
    what the bot held then, and no one else traded the symbol in between."""
    held = holding.bot_before != 0 or holding.bot_after != 0 or holding.bot_traded
    return (held and not holding.foreign_trades and holding.bot_before == holding.account_before
            and holding.bot_after == holding.account_after)


def holdings_at(charge: AccountCharge, bot_fills: Iterable[tuple[int, Decimal]],
                foreign_fills_since: Iterable[tuple[int, Decimal]], venue_now: Decimal, bot_now: Decimal,
                unbooked_base: Iterable[tuple[int, Decimal]] = ()) -> Holding:
    """The positions around the charge, from (ts, signed qty) changes: the bot's own fills (all
    of them: its position at a time is their sum), the others' fills in the symbol from the
    charge's start on, the venue's position now, and base-asset charges the venue applied but the
    bot has not booked (ts, signed amount; this one too). `bot_now` is the bot's booked position
    (the base-asset charges it booked are in it and in the venue's: both sides leave them out)."""
    fills = list(bot_fills)
    start, end = charge.start, charge.ts
    bot_before = sum((q for t, q in fills if t < start), Decimal(0))
    bot_after = sum((q for t, q in fills if t <= end), Decimal(0))
    booked_base = bot_now - sum((q for _, q in fills), Decimal(0))
    others = list(foreign_fills_since)
    account_now = venue_now - sum((q for _, q in unbooked_base), Decimal(0)) - booked_base
    after = account_now - sum((q for t, q in fills if t > end), Decimal(0)) \
        - sum((q for t, q in others if t > end), Decimal(0))
    before = after - sum((q for t, q in fills if start <= t <= end), Decimal(0)) \
        - sum((q for t, q in others if start <= t <= end), Decimal(0))
    foreign = any(start <= t <= end for t, _ in others)
    traded = any(start <= t <= end for t, _ in fills)
    return Holding(bot_before, bot_after, before, after, foreign, traded)

__all__ = ["AccountCharge", "ChargeKind", "ChargeSource", "Holding", "holdings_at", "is_sole_holder"]
