"""MetaTrader 5 venue facts in domain terms: retcodes to reasons, filling modes, client ids,
order types, volumes and prices. Pure functions; the adapter does the I/O.

Client order ids. MT5 orders have no client id field. An order carries two free fields: `magic`
(an integer an Expert Advisor uses to recognise its own orders) and `comment` (at most 31
characters; a longer one makes order_send fail). The mapping:
- `magic` = one number per bot, derived from the bot id (`magic_for`: stable across restarts and
  machines), so each bot knows its orders, deals and positions from those of the other bots and
  EAs on the account. Magic 0 is a person (terminal, phone, web): adopted as external. Any
  other magic is another EA's and is none of this bot's business.
- `comment` = for the OMS's ids (`<bot>-<8+ digits>`) the sequence first, `<seq>@<bot>`, cut
  to 31 characters: brokers truncate or rewrite comments, and whatever keeps `<seq>@` still
  names the order (the magic names the bot). Other ids travel as themselves when they fit (31
  printable ASCII characters), else `#` + 30 characters of their SHA-256 (base32). Both are
  deterministic, so after a restart `order_status(client_id)` finds the order by computing the
  comment again.
- A comment rewritten beyond recognition: the adapter knows the order by its ticket (from
  order_send's answer, or found by magic, symbol, type, volume and time after a lost answer).
- An order with magic 0 (a person's) is external: its client id is `MT5-<ticket>`. An order with
  this bot's magic that nothing names (the server's own SL/TP or stop-out on the bot's position,
  or a comment rewritten beyond recognition) is still the bot's: `<bot>-venue-<ticket>`
  (engine.oms.venue_made_id), which the bot's books take (without a bot id: `MT5-<ticket>`).
Deals are tied to their order by ticket (`deal.order`), never by the deal's comment, which the
server may rewrite (e.g. "[sl 1.0712]").
"""

from __future__ import annotations

import base64
import hashlib
import re
from decimal import ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any

from brokers.base import RejectReason
from engine.oms import made_for, venue_made_id
from engine.orders import OrderSide, OrderState, OrderType

TICKBRIDGE_MAGIC = 7_770_301   # an adapter built without a bot id (tests, tools)
MANUAL_MAGIC = 0               # orders a person placed (terminal, phone, web)
COMMENT_MAX = 31
EXTERNAL_PREFIX = "MT5-"

# MetaTrader-specific reasons, kept under these names for the mapping tables below.
INVALID_PRICE = RejectReason.INVALID_PRICE
INVALID_STOPS = RejectReason.INVALID_STOPS
TRADE_DISABLED = RejectReason.TRADE_DISABLED
PRICE_CHANGED = RejectReason.PRICE_CHANGED

# Constants of the module, by name: an mt5linux bridge carries them on an instance, and one
# (10046 HEDGE_PROHIBITED) exists in MQL5 but not in the Python module.
RETCODE_PLACED, RETCODE_DONE, RETCODE_DONE_PARTIAL = 10008, 10009, 10010
SUCCESS_RETCODES = frozenset({RETCODE_PLACED, RETCODE_DONE, RETCODE_DONE_PARTIAL})
RETCODE_TIMEOUT = 10012


class Retry(Enum):
    """What to do after a retcode that is not a final answer."""

    RESEND = "resend"              # provably not executed: send again (with a fresh price), after backoff
    LOOKUP = "lookup"              # may have executed: look the order up; send again only if provably absent


# Retcodes that are not final (mapped to a retry), MQL5 "Trade Server Return Codes".
RETRY_POLICY: dict[int, Retry] = {
    10004: Retry.RESEND,   # REQUOTE: the price moved beyond the deviation; nothing executed
    10020: Retry.RESEND,   # PRICE_CHANGED
    10021: Retry.RESEND,   # PRICE_OFF: no quotes to process the request
    10024: Retry.RESEND,   # TOO_MANY_REQUESTS
    10012: Retry.LOOKUP,   # TIMEOUT: the request was canceled by timeout -- or did it execute?
    10031: Retry.LOOKUP,   # CONNECTION: no connection with the trade server -- after sending?
}
RETRYABLE_RETCODES = frozenset(RETRY_POLICY)

RETCODE_REASONS: dict[int, str] = {
    10004: PRICE_CHANGED,                        # REQUOTE
    10006: RejectReason.INVALID_ORDER,           # REJECT
    10007: RejectReason.INVALID_ORDER,           # CANCEL (by the dealer)
    10011: RejectReason.VENUE_ERROR,             # ERROR
    10012: RejectReason.TIMEOUT,                 # TIMEOUT
    10013: RejectReason.INVALID_ORDER,           # INVALID
    10014: RejectReason.QTY_OFF_GRID,            # INVALID_VOLUME
    10015: INVALID_PRICE,                        # INVALID_PRICE
    10016: INVALID_STOPS,                        # INVALID_STOPS
    10017: TRADE_DISABLED,                       # TRADE_DISABLED
    10018: RejectReason.MARKET_CLOSED,           # MARKET_CLOSED
    10019: RejectReason.INSUFFICIENT_FUNDS,      # NO_MONEY
    10020: PRICE_CHANGED,                        # PRICE_CHANGED
    10021: RejectReason.NO_LIQUIDITY,            # PRICE_OFF: no quotes
    10022: RejectReason.INVALID_ORDER,           # INVALID_EXPIRATION
    10023: RejectReason.INVALID_ORDER,           # ORDER_CHANGED
    10024: RejectReason.RATE_LIMITED,            # TOO_MANY_REQUESTS
    10025: RejectReason.INVALID_ORDER,           # NO_CHANGES
    10026: TRADE_DISABLED,                       # SERVER_DISABLES_AT
    10027: TRADE_DISABLED,                       # CLIENT_DISABLES_AT
    10028: RejectReason.INVALID_ORDER,           # LOCKED
    10029: RejectReason.INVALID_ORDER,           # FROZEN
    10030: RejectReason.UNSUPPORTED,             # INVALID_FILL
    10031: RejectReason.VENUE_ERROR,             # CONNECTION
    10032: RejectReason.UNSUPPORTED,             # ONLY_REAL
    10033: RejectReason.INVALID_ORDER,           # LIMIT_ORDERS
    10034: RejectReason.QTY_ABOVE_MAX,           # LIMIT_VOLUME
    10035: RejectReason.INVALID_ORDER,           # INVALID_ORDER
    10036: RejectReason.INVALID_ORDER,           # POSITION_CLOSED
    10038: RejectReason.QTY_ABOVE_MAX,           # INVALID_CLOSE_VOLUME
    10039: RejectReason.INVALID_ORDER,           # CLOSE_ORDER_EXIST
    10040: RejectReason.INVALID_ORDER,           # LIMIT_POSITIONS
    10041: RejectReason.INVALID_ORDER,           # REJECT_CANCEL
    10042: RejectReason.UNSUPPORTED,             # LONG_ONLY
    10043: RejectReason.UNSUPPORTED,             # SHORT_ONLY
    10044: RejectReason.UNSUPPORTED,             # CLOSE_ONLY
    10045: RejectReason.UNSUPPORTED,             # FIFO_CLOSE
    10046: RejectReason.UNSUPPORTED,             # HEDGE_PROHIBITED (MQL5 only)
}

# last_error() codes after a call that returned None.
TRANSPORT_ERRORS = frozenset({-10000, -10001, -10002, -10003, -10004, -10005})
LAST_ERROR_REASONS: dict[int, str] = {
    -2: RejectReason.INVALID_ORDER, -4: RejectReason.UNKNOWN_SYMBOL, -6: RejectReason.AUTH_FAILED,
    -7: RejectReason.UNSUPPORTED, -8: TRADE_DISABLED,
}


def reason_for_retcode(retcode: int) -> str:
    return str(RETCODE_REASONS.get(retcode, RejectReason.VENUE_ERROR))


def reason_for_last_error(code: int) -> str:
    if code in TRANSPORT_ERRORS:
        return str(RejectReason.TIMEOUT)
    return str(LAST_ERROR_REASONS.get(code, RejectReason.VENUE_ERROR))


# -- client ids ----------------------------------------------------------------------------------
_OMS_ID = re.compile(r"^(?P<bot>.+)-(?P<seq>\d{8,})$")
_SEQ_COMMENT = re.compile(r"^(?P<seq>\d+)@")


def magic_for(bot_id: str) -> int:
    """The magic number of a bot: stable (a hash of the id), never 0 (a person's), within int32."""
    digest = hashlib.sha256(b"tickbridge-magic:" + bot_id.encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % (2**31 - 2)


def comment_for(client_order_id: str, bot_id: str | None = None) -> str:
    """The order comment that carries a client order id (see the module docstring)."""
    found = _OMS_ID.match(client_order_id)
    if bot_id is not None and found is not None and found["bot"] == bot_id and \
            f"{int(found['seq']):08d}" == found["seq"]:
        return f"{int(found['seq'])}@{bot_id}"[:COMMENT_MAX]
    if len(client_order_id) <= COMMENT_MAX and client_order_id.isascii() and client_order_id.isprintable() \
            and not client_order_id.startswith("#") and not _SEQ_COMMENT.match(client_order_id):
        return client_order_id
    digest = base64.b32encode(hashlib.sha256(client_order_id.encode()).digest()).decode().lower()
    return "#" + digest[:COMMENT_MAX - 1]


def client_id_of(magic: int, comment: str, ticket: int, our_magic: int, known: dict[str, str],
                 bot_id: str | None = None, tickets: dict[int, str] | None = None) -> str | None:
    """The client order id an MT5 order stands for; None for another EA's order.

    `known` maps comment -> client id for the ids this adapter has seen (needed for hashed
    comments), `tickets` ticket -> client id for orders it has identified."""
    if magic != our_magic:
        return f"{EXTERNAL_PREFIX}{ticket}" if magic == MANUAL_MAGIC else None
    if tickets and ticket in tickets:
        return tickets[ticket]
    if comment in known:
        return known[comment]
    seq = _SEQ_COMMENT.match(comment or "")
    if seq is not None and bot_id is not None:
        return f"{bot_id}-{int(seq['seq']):08d}"
    if bot_id is None and comment and not comment.startswith(("#", "[")) and comment.isprintable():
        # an adapter without a bot id: ids travel as themselves, unless the broker cut the comment
        # short: a proper prefix of comments this adapter sent is one of those, never an id of its
        # own (the one it starts, if only one; else unnamed, so the order's terms identify it)
        cut = [cid for sent, cid in known.items() if len(sent) > len(comment) and sent.startswith(comment)]
        if cut:
            return cut[0] if len(cut) == 1 else f"{EXTERNAL_PREFIX}{ticket}"
        return comment
    # rewritten beyond recognition, or the server's own (SL/TP) on our magic: ours, named by its ticket
    return venue_made_id(bot_id, ticket) if bot_id else f"{EXTERNAL_PREFIX}{ticket}"


def unnamed(client_order_id: str, bot_id: str | None) -> bool:
    """An id client_id_of gave an order whose comment names no client id (by ticket)."""
    return client_order_id.startswith(EXTERNAL_PREFIX) or (bot_id is not None and made_for(bot_id, client_order_id))


# -- filling -------------------------------------------------------------------------------------
FILLING_FOK, FILLING_IOC, FILLING_RETURN = 0, 1, 2
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2      # bits of symbol_info().filling_mode
EXECUTION_MARKET = 2                               # SYMBOL_TRADE_EXECUTION_MARKET


EXECUTION_EXCHANGE = 3                             # SYMBOL_TRADE_EXECUTION_EXCHANGE
CALC_MODE_FOREX = 0                                # SYMBOL_CALC_MODE_FOREX: lots x contract / leverage
CALC_MODE_FOREX_NO_LEVERAGE = 5                    # SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE: lots x contract


def filling_for(mask: int, exemode: int, pending: bool) -> int:
    """The type_filling a request must carry. A market deal takes FOK if the symbol allows it,
    else IOC, else RETURN (BROKER_SDKS.md; a wrong one is retcode 10030). A pending order rests
    in the book, so it takes RETURN (a partial fill keeps the rest working) unless the symbol is
    in Market execution, where RETURN is not allowed and the mask decides as for a deal."""
    if pending and exemode != EXECUTION_MARKET:
        return FILLING_RETURN
    if mask & SYMBOL_FILLING_FOK:
        return FILLING_FOK
    if mask & SYMBOL_FILLING_IOC:
        return FILLING_IOC
    return FILLING_RETURN


def filling_for_tif(tif: str, mask: int) -> int | None:
    """The type_filling an IOC or FOK order must carry (the engine's time in force is MT5's
    filling policy), None when the symbol does not allow it."""
    wanted, bit = (FILLING_FOK, SYMBOL_FILLING_FOK) if tif == "FOK" else (FILLING_IOC, SYMBOL_FILLING_IOC)
    return wanted if mask & bit else None


# -- order types -----------------------------------------------------------------------------------
BUY, SELL, BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP, BUY_STOP_LIMIT, SELL_STOP_LIMIT = range(8)
_TO_MT5 = {(OrderSide.BUY, OrderType.MARKET): BUY, (OrderSide.SELL, OrderType.MARKET): SELL,
           (OrderSide.BUY, OrderType.LIMIT): BUY_LIMIT, (OrderSide.SELL, OrderType.LIMIT): SELL_LIMIT,
           (OrderSide.BUY, OrderType.STOP): BUY_STOP, (OrderSide.SELL, OrderType.STOP): SELL_STOP,
           (OrderSide.BUY, OrderType.STOP_LIMIT): BUY_STOP_LIMIT,
           (OrderSide.SELL, OrderType.STOP_LIMIT): SELL_STOP_LIMIT}
_FROM_MT5 = {v: k for k, v in _TO_MT5.items()}


def mt5_order_type(side: OrderSide, kind: OrderType) -> int:
    return _TO_MT5[(side, kind)]


def domain_order_type(mt5_type: int) -> tuple[OrderSide, OrderType]:
    return _FROM_MT5[mt5_type]


def prices_of(mt5_type: int, price_open: float, price_stoplimit: float,
              price_dp: int) -> tuple[Decimal | None, Decimal | None]:
    """(limit_price, stop_price) of an MT5 order."""
    kind = domain_order_type(mt5_type)[1]
    price = to_decimal(price_open, price_dp)
    if kind is OrderType.LIMIT:
        return price, None
    if kind is OrderType.STOP:
        return None, price
    if kind is OrderType.STOP_LIMIT:
        return to_decimal(price_stoplimit, price_dp), price
    return None, None


ORDER_STATE_CANCELED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = 2, 5, 6


def final_state(mt5_states: list[int], qty: Decimal, filled: Decimal) -> OrderState:
    """The domain state of a client order whose MT5 orders are all finished."""
    if qty > 0 and filled >= qty:
        return OrderState.FILLED
    if ORDER_STATE_REJECTED in mt5_states and not filled:
        return OrderState.REJECTED
    if ORDER_STATE_EXPIRED in mt5_states:
        return OrderState.EXPIRED
    if ORDER_STATE_CANCELED in mt5_states or ORDER_STATE_REJECTED in mt5_states:
        return OrderState.CANCELED
    return OrderState.FILLED if filled else OrderState.CANCELED


# -- numbers -------------------------------------------------------------------------------------
def to_decimal(value: float, dp: int) -> Decimal:
    """A float from the terminal as the exact decimal it stands for at `dp` places."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-dp))


def float_increment(value: float) -> Decimal:
    """An increment the terminal gives as a float (0.01, 1e-05) as an exact decimal."""
    return Decimal(repr(float(value))).normalize()


def floor_to_increment(qty: Decimal, step: Decimal) -> Decimal:
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a terminal result by name (named tuple, RPyC proxy or dict)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def as_dict(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: field(obj, name) for name in fields}
