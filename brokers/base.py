"""The contracts every venue adapter meets (DESIGN.md §7).

An adapter converts venue objects into domain types at its boundary and reports what happens to
orders through an ExecutionSink (the OMS). The paper venue is the first implementation; the
Alpaca, ccxt and MetaTrader 5 adapters implement the same protocol.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from engine.orders import Fill, Order


class RejectReason(StrEnum):
    """Why a venue refused or dropped an order; adapters map their venue's codes onto these."""

    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_OFF_GRID = "QTY_OFF_GRID"
    PRICE_OFF_GRID = "PRICE_OFF_GRID"
    PRICE_MISSING = "PRICE_MISSING"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    MARKET_CLOSED = "MARKET_CLOSED"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    UNSUPPORTED = "UNSUPPORTED"
    END_OF_DATA = "END_OF_DATA"


class ExecutionSink(Protocol):
    """Receives what the venue did with an order. The OMS implements it."""

    def on_submitted(self, order: Order, ts: int) -> None: ...
    def on_accepted(self, order: Order, ts: int) -> None: ...
    def on_rejected(self, order: Order, ts: int, reason: str) -> None: ...
    def on_fill(self, order: Order, fill: Fill, bar: int) -> None: ...
    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None: ...


class BrokerAdapter(Protocol):
    """What the OMS needs from a venue. More (positions, account, fills since, reconnect and
    reconciliation) joins the contract with the store and the live adapters."""

    name: str

    def connect(self, sink: ExecutionSink) -> None: ...
    def submit(self, order: Order) -> None: ...
    def cancel(self, order: Order) -> None: ...
