"""Restart and reconciliation: make the engine's books agree with the venue before trading.

After a crash the store holds what the engine wrote, and the venue holds what really happened.
In between may lie: an order journaled as PENDING_SUBMIT that the venue never received (the
process died before sending it) or did receive; fills the venue made that the engine never
booked; on a shared account (issue 14), other programs' and people's orders, fills and positions.
`reconcile_with_adapter` is the one reconciler, for every venue (the paper venue too, through
PaperAdapter), using only the adapter contract's queries. In order:

1. the bot's own fills the store lacks are booked (by execution id, in venue order), asked for
   over a bounded lookback (from its oldest open order or last fill, never more than
   `lookback_ns` back); an own fill of an order the store does not know refuses;
2. every in-flight order is resolved by client order id: found at the venue, it takes the
   venue's state; not found and never sent (PENDING_SUBMIT), it is canceled as LOST_BEFORE_SUBMIT
   (it provably never traded, so the strategy may decide again); not found but once sent, the
   books cannot be trusted, and reconciliation fails, naming the order;
3. foreign fills, foreign open orders and the part of each venue position that is not the bot's
   are reported (ReconciliationReport.external_*), never adopted: a bot's books hold only what it
   sent (engine.oms.owns), and a fresh bot starts on an account that already trades.

Account-level charges (engine.charges: funding, crypto fees posted apart from their fills) are
no fills: `ChargeBooker` polls an adapter that lists them (ChargeSource), books into the bot only
what it solely held at the charge's time, each charge once per account (SqlJournal.record_charge),
and reports the rest as external (ReconciliationReport.external_charges); `restore_books` puts
the booked ones back among the fills at the place they were booked, after a restart.

A failure raises ReconciliationError with the reasons: the bot refuses to trade, saying why,
rather than trade on books it knows are wrong. A paper bot, whose venue is its own account, also
requires its cash to equal the venue's (live/bot.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.charges import AccountCharge, holdings_at, is_sole_holder
from engine.errors import ConfigError, TickbridgeError
from engine.money import to_raw
from engine.oms import OrderManager, owns, sent_by
from engine.orders import Order, OrderState

if TYPE_CHECKING:
    from engine.instrument import Instrument
    from engine.orders import Fill
    from engine.ports import BrokerAdapter, VenueOrder

log = logging.getLogger(__name__)

LOST_BEFORE_SUBMIT = "LOST_BEFORE_SUBMIT"
NS_PER_DAY = 86_400 * 10**9
DEFAULT_LOOKBACK_NS = 7 * NS_PER_DAY  # how far back reconcile_with_adapter asks for fills
# The engine's clock and the venue's differ (an MT5 server's zone guessed an hour off at a DST
# change): fills are asked for from this much before the earliest moment one could be missing.
CLOCK_SLACK_NS = 3_600 * 10**9


class ReconciliationError(TickbridgeError):
    """The engine's books and the venue disagree in a way it cannot repair by itself."""


@dataclass(slots=True)
class ReconciliationReport:
    fills_replayed: int = 0
    orders_resolved: int = 0
    orders_lost_before_submit: list[str] = field(default_factory=list)
    orders_adopted: list[str] = field(default_factory=list)  # the venue's orders made for this bot, booked
    # on a shared account (reconcile_with_adapter): what is not the bot's, reported and never booked
    external_fills: list[str] = field(default_factory=list)      # execution ids
    external_orders: list[str] = field(default_factory=list)     # client ids of open orders
    external_positions: dict[str, Decimal] = field(default_factory=dict)  # symbol -> venue qty - bot qty
    charges_booked: list[str] = field(default_factory=list)     # charge ids booked into the bot
    external_charges: list[str] = field(default_factory=list)   # the account's charges, not the bot's


def _missing_at_venue(oms: OrderManager, order: Order, ts: int, report: ReconciliationReport,
                      problems: list[str]) -> None:
    """An open order the venue does not know: never sent (PENDING_SUBMIT) means it provably never
    traded and is canceled as lost; once sent, the books cannot be trusted."""
    if order.state is OrderState.PENDING_SUBMIT:
        oms.on_canceled(order, ts, LOST_BEFORE_SUBMIT)
        report.orders_lost_before_submit.append(order.client_order_id)
    else:
        problems.append(f"order {order.client_order_id} is {order.state} here but unknown to the venue")


def _bring_to_submitted(oms: OrderManager, order: Order, ts: int) -> None:
    """An order journaled as PENDING_SUBMIT that the venue has was sent: record that first."""
    own = oms.orders.get(order.client_order_id)
    if own is not None and own.state is OrderState.PENDING_SUBMIT:
        oms.on_submitted(order, ts)


def reconcile_with_adapter(oms: OrderManager, adapter: "BrokerAdapter", ts: int,
                           lookback_ns: int = DEFAULT_LOOKBACK_NS) -> ReconciliationReport:
    """Bring a bot's books to what the venue says about *its own* orders and fills, through the
    adapter contract's queries (fills_since, order_status, open_orders, positions).

    The account may be shared (other bots, other programs, a person): the books hold only what
    the bot owns (engine.oms.owns: the ids it sent, and orders the venue made for it). Foreign
    fills, open orders and the rest of the venue's position are reported, never adopted, so a
    fresh bot starts on an account that already holds positions and history. It refuses only
    when its own books disagree with the venue about its own orders or fills, naming the order.

    Fills are asked for from the earliest moment one of the bot's could be missing (its first open
    order's creation or its last booked fill), but never before `ts - lookback_ns`: a venue's
    history is long and mostly other programs'. The OMS books each execution id once, so asking
    for a little too much is harmless. Cash is not compared: the account holds others' money.
    """
    if lookback_ns <= 0:
        raise ValueError(f"lookback_ns must be a positive number of nanoseconds, not {lookback_ns}")
    report = ReconciliationReport()
    problems: list[str] = []
    _book_own_fills(oms, adapter, _fills_from(oms, ts, lookback_ns), report, problems)
    for order in list(oms.open_orders):
        record = adapter.order_status(order.client_order_id)
        if record is None:
            _missing_at_venue(oms, order, ts, report, problems)
            continue
        _take_venue_state(oms, order, record, ts)
        if record.filled_qty != order.filled_qty:
            problems.append(f"order {order.client_order_id}: {order.filled_qty} filled here, "
                            f"{record.filled_qty} at the venue, whose fills did not all arrive "
                            f"within the {lookback_ns / NS_PER_DAY:g}-day lookback")
        report.orders_resolved += 1
    for record in adapter.open_orders():
        cid = record.client_order_id
        if cid in oms.orders:
            continue
        if not owns(oms.bot_id, cid):
            report.external_orders.append(cid)
        elif sent_by(oms.bot_id, cid):
            problems.append(f"order {cid} is open at the venue, sent by this bot, but its store does not know it")
        else:  # made by the venue for this bot (e.g. a server-side SL/TP): the bot's own
            _take_venue_state(oms, oms.adopt_external(record.to_order(oms.bot_id)), record, ts)
            report.orders_adopted.append(cid)
    report.external_positions = _external_positions(oms, adapter)
    if problems:
        raise ReconciliationError("cannot reconcile with the venue: " + "; ".join(problems))
    return report


def _fills_from(oms: OrderManager, ts: int, lookback_ns: int) -> int:
    """Where to ask for fills: the earliest open order or the last booked fill (less the clock
    slack), bounded by the lookback; a bot with neither asks for the lookback only (to see its
    own fills a lost store forgot, and to report the others')."""
    floor = ts - lookback_ns
    starts = [o.ts_init for o in oms.open_orders]
    if oms.fills:
        starts.append(max(f.ts for f in oms.fills))
    return max(floor, min(starts) - CLOCK_SLACK_NS) if starts else floor


def _book_own_fills(oms: OrderManager, adapter: "BrokerAdapter", since: int, report: ReconciliationReport,
                    problems: list[str]) -> None:
    """Book the bot's own fills the store lacks; list the others as external."""
    known = {f.execution_id for f in oms.fills}
    for fill in adapter.fills_since(since):
        if fill.execution_id in known:
            continue
        cid = fill.client_order_id
        if not owns(oms.bot_id, cid):
            report.external_fills.append(fill.execution_id)
            continue
        own = oms.orders.get(cid)
        if own is None:
            if sent_by(oms.bot_id, cid):
                problems.append(f"order {cid}: the venue has its fill {fill.execution_id}, "
                                "but this bot's store does not know the order")
                continue
            venue_order = adapter.order_status(cid)  # made by the venue for this bot: the bot's own
            if venue_order is None:
                problems.append(f"order {cid}: the venue reports its fill {fill.execution_id} but not the order")
                continue
            own = oms.adopt_external(venue_order.to_order(oms.bot_id))
            report.orders_adopted.append(cid)
        _bring_to_submitted(oms, own, fill.ts)
        oms.on_fill(own, fill, -1)
        known.add(fill.execution_id)
        report.fills_replayed += 1


def _external_positions(oms: OrderManager, adapter: "BrokerAdapter") -> dict[str, Decimal]:
    """The venue's position per symbol minus the bot's: what others hold on the account (and,
    negative, what of the bot's position someone else closed). Zero differences are left out."""
    venue_positions = {p.symbol: p.qty for p in adapter.positions()}
    out: dict[str, Decimal] = {}
    for symbol in sorted(set(venue_positions) | set(oms.portfolio.positions)):
        position = oms.portfolio.positions.get(symbol)
        here = position.quantity if position is not None else Decimal(0)
        rest = venue_positions.get(symbol, Decimal(0)) - here
        if rest:
            out[symbol] = rest
    return out


def _take_venue_state(oms: OrderManager, order: Order, record: "VenueOrder", ts: int) -> None:
    """Move an open order to the state the venue reports (fills were booked before this)."""
    _bring_to_submitted(oms, order, ts)
    if record.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED) and order.state is OrderState.SUBMITTED:
        oms.on_accepted(order, ts)
    elif record.state in (OrderState.CANCELED, OrderState.EXPIRED) and not order.is_terminal:
        oms.on_canceled(order, ts, record.reason)
    elif record.state is OrderState.REJECTED and not order.is_terminal:
        oms.on_rejected(order, ts, record.reason or "REJECTED")


# -- account-level charges ---------------------------------------------------------------------------
CHARGE_LATE_NS = 2 * NS_PER_DAY   # charges are asked for again this far back (Alpaca posts CFEE late)
EXTERNAL_SIGHTINGS = 2            # an external verdict is recorded on the second poll that reaches it


def _signed_change(fill: "Fill", instrument: "Instrument") -> Decimal:
    """What a fill did to the position (a fee in the base asset included)."""
    change = fill.qty * fill.side.sign
    if fill.fee_currency and fill.fee_currency == instrument.base and fill.fee_native_raw:
        change -= fill.fee_native
    return change


@dataclass(slots=True)
class ChargeResult:
    booked: list[AccountCharge] = field(default_factory=list)
    external: list[AccountCharge] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)   # "<charge id>: why" (kept for the next poll)


class ChargeBooker:
    """Books the account's charges that are the bot's (engine.charges): `poll()` asks the
    adapter's `charges_since`, decides each new charge once by the attribution rule and records
    the decision for the whole account (`journal.record_charge`), and books what it won into the
    OMS's portfolio. An external verdict waits one more poll before it is recorded (a fill at
    the venue that the bot has not heard of yet would make its own charge look external); a
    charge the books refuse (no conversion rate yet, off the grid) is left undecided and named,
    and so is everything when the venue cannot be asked (a charge poll never stops the bot; a
    store failure, a lost lease, does)."""

    def __init__(self, oms: OrderManager, adapter: "BrokerAdapter", journal: Any, account_id: str) -> None:
        self.oms = oms
        self.adapter = adapter
        self.journal = journal
        self.account_id = account_id
        self.decided: set[str] = set()
        self._sightings: dict[str, int] = {}
        self._since = 0
        self.booked: list[str] = []
        self.external: list[str] = []

    @property
    def source(self) -> Any:
        return getattr(self.adapter, "charges_since", None)

    def remember(self, charge_ids: list[str]) -> None:
        """Charges already in the books (restored): never decided again."""
        self.decided.update(charge_ids)

    def poll(self) -> ChargeResult:
        result = ChargeResult()
        source = self.source
        if source is None:
            return result
        try:
            charges = sorted(source(self._since), key=lambda c: (c.ts, c.charge_id))
        except Exception as error:  # noqa: BLE001 - a venue's failure to list: asked again next time
            result.refused.append(f"charges_since: {error}")
            log.warning("charges not read from the venue: %s", error)
            return result
        fresh = [c for c in charges if c.charge_id not in self.decided]
        try:
            return self._decide(fresh, result)
        finally:
            # the next poll asks from a little before the newest charge (late postings), and from
            # the oldest charge still undecided (an external verdict waiting for its second look)
            starts = [c.ts for c in charges if c.charge_id not in self.decided]
            if charges:
                starts.append(max(c.ts for c in charges) - CHARGE_LATE_NS)
            if starts:
                self._since = max(1, min(starts))

    def _decide(self, fresh: list[AccountCharge], result: ChargeResult) -> ChargeResult:
        if not fresh:
            return result
        recorded = self.journal.charge_rows(self.account_id)
        for charge in fresh:
            done = recorded.get(charge.charge_id)
            if done is not None and done[0]:  # booked already, by this bot or another
                self.decided.add(charge.charge_id)
                if done[1] == self.oms.bot_id:
                    self.booked.append(charge.charge_id)
                else:
                    self._external(charge, result, done)
        fresh = [c for c in fresh if c.charge_id not in self.decided]
        if not fresh:
            return result
        try:
            account_fills = self._account_fills(fresh)
            venue = {p.symbol: p.qty for p in self.adapter.positions()}
        except Exception as error:  # noqa: BLE001 - nothing decided: asked again next time
            result.refused.append(f"account state: {error}")
            log.warning("charges not decided, the venue's fills or positions unread: %s", error)
            return result
        for charge in fresh:
            instrument = self.oms.instruments.get(charge.symbol)
            own = instrument is not None and is_sole_holder(self._holding(charge, instrument, account_fills,
                                                                          venue, fresh))
            if own:
                self._book(charge, instrument, result)  # type: ignore[arg-type]
            else:
                self._external(charge, result, recorded.get(charge.charge_id))
        return result

    def _account_fills(self, fresh: list[AccountCharge]) -> list["Fill"]:
        """The others' fills on the account (any symbol) from the earliest charge's start."""
        if not any(c.symbol in self.oms.instruments for c in fresh):
            return []
        return [f for f in self.adapter.fills_since(min(c.start for c in fresh))
                if not owns(self.oms.bot_id, f.client_order_id)]

    def _holding(self, charge: AccountCharge, instrument: "Instrument", account_fills: list["Fill"],
                 venue: dict[str, Decimal], fresh: list[AccountCharge]) -> Any:
        symbol = instrument.symbol
        own = [(f.ts, _signed_change(f, instrument)) for f in self.oms.fills if f.symbol == symbol]
        others = [(f.ts, _signed_change(f, instrument)) for f in account_fills
                  if f.symbol == symbol and f.ts >= charge.start]
        unbooked = [(c.ts, c.amount) for c in fresh
                    if c.symbol == symbol and c.asset == instrument.base and c.charge_id not in self.decided]
        position = self.oms.portfolio.positions.get(symbol)
        bot_now = position.quantity if position is not None else Decimal(0)
        return holdings_at(charge, own, others, venue.get(symbol, Decimal(0)), bot_now, unbooked)

    def _price(self, charge: AccountCharge, instrument: "Instrument") -> int | None:
        """A base-asset charge's valuation price: the venue's (Alpaca gives one), else the bot's
        last fill at or before it (the fill it is the fee of), else the position's last price."""
        s = instrument.scales
        if charge.price is not None:
            return int(charge.price.quantize(s.price(1)).scaleb(s.price_dp))
        fills = [f for f in self.oms.fills if f.symbol == instrument.symbol and f.ts <= charge.ts]
        return fills[-1].price_raw if fills else None

    def _book(self, charge: AccountCharge, instrument: "Instrument", result: ChargeResult) -> None:
        portfolio = self.oms.portfolio
        s = instrument.scales
        price_raw = self._price(charge, instrument)
        try:
            value = portfolio.charge_value(instrument, charge, price_raw)
        except ConfigError as error:
            result.refused.append(f"{charge.charge_id}: {error}")
            log.warning("charge %s not booked: %s", charge.charge_id, error)
            return
        if price_raw is None:
            position = portfolio.positions.get(instrument.symbol)
            price_raw = position.last_price if position is not None else None
        price = s.price(price_raw) if price_raw else None
        self.decided.add(charge.charge_id)
        if not self.journal.record_charge(self.account_id, charge, True, s.cash(value), price, len(self.oms.fills)):
            result.external.append(charge)  # another bot of the account won it (it cannot: see the rule)
            self.external.append(charge.charge_id)
            return
        portfolio.book_charge(instrument, charge, price_raw, value)
        self.journal.record_position(portfolio, instrument.symbol, charge.ts)
        self.journal.flush()
        result.booked.append(charge)
        self.booked.append(charge.charge_id)

    def _external(self, charge: AccountCharge, result: ChargeResult, recorded: Any) -> None:
        seen = self._sightings[charge.charge_id] = self._sightings.get(charge.charge_id, 0) + 1
        if seen < EXTERNAL_SIGHTINGS and recorded is None:
            return
        self.decided.add(charge.charge_id)
        if recorded is None:
            self.journal.record_charge(self.account_id, charge, False)
        result.external.append(charge)
        self.external.append(charge.charge_id)


def restore_books(oms: OrderManager, stored: Any) -> list[str]:
    """A restart's books: the stored orders, then the fills with each booked charge in the place
    it was booked (after its `fill_seq` fills), at the value it was booked at. Returns the
    charge ids restored (ChargeBooker.remember)."""
    charges = sorted(stored.charges, key=lambda c: c.fill_seq)
    fills = stored.fills
    done = min(charges[0].fill_seq, len(fills)) if charges else len(fills)
    oms.restore(stored.orders, fills[:done], stored.next_order_seq)
    for booked in charges:
        if booked.fill_seq > done:
            oms.restore([], fills[done:booked.fill_seq], stored.next_order_seq)
            done = min(booked.fill_seq, len(fills))
        instrument = oms.instruments[booked.charge.symbol]
        s = instrument.scales
        price = None if booked.price is None else to_raw(booked.price, s.price_dp)
        oms.portfolio.book_charge(instrument, booked.charge, price, to_raw(booked.value, s.cash_dp))
    if done < len(fills):
        oms.restore([], fills[done:], stored.next_order_seq)
    return [c.charge.charge_id for c in charges]
