"""The harness protocol: how an adapter joins the conformance suite.

tests/conformance/test_broker_contract.py is ONE suite that every BrokerAdapter passes. It knows
nothing about any venue: each adapter contributes a harness object, from its own module
(tests/conformance/harness_<name>.py), that builds the adapter against its fake venue and drives
that venue (fills, faults, foreign orders). To add an adapter:

1. write tests/conformance/harness_<name>.py with a class implementing `AdapterHarness` below;
2. register it in tests/conformance/registry.py: `HARNESSES["<name>"] = "tests.conformance.harness_<name>:Harness"`
   (a string, so a missing optional SDK only skips that adapter: `pytest.importorskip` inside
   the harness module's import, or raise `pytest.skip` in `__init__`).

The suite drives the adapter through the real OrderManager (engine/oms.py) as its sink, so every
report must be a legal transition of the engine's order state machine.

Rules for a harness:
- Every method is synchronous and deterministic. When the venue does something (a fill, a
  cancel), `settle()` returns only once the adapter has delivered it to the sink: poll the stream,
  join a queue, or wait on a condition with a generous timeout; never assert on durations.
- `qty()` is a valid quantity on the instrument's grid, affordable several times over with the
  account the fake starts with; `unaffordable_qty()` is on the grid but costs more than the
  cash; `resting_limit(side)` and `resting_stop(side)` are prices on the
  grid that do not execute until `fill()` says so.
- `fill(cid, qty)` makes the venue execute `qty` (None: all that is left) of an open order at its
  limit price (or the current price for stops/market) and report it on the venue's stream.
- `lose_next_submit()`: the venue receives and books the next order, but the answer to the submit
  is lost (a timeout or a dropped connection after the venue accepted it).
- `fail_next_submit(kind)`: the venue refuses the next submit with `kind` ("429" or "5xx") before
  acting on it, once; the adapter may back off and retry.
- `fail_submits(kind)`: the venue refuses every submit with `kind` until `heal()`.
- The suite never calls `settle()` between `drop_stream()` and `restore_stream()`.
- `drop_stream()`: the adapter stops hearing from the venue (the venue still trades);
  `restore_stream()`: the connection comes back; the adapter must then reconcile by itself (or
  on the call to `reconnect(adapter)`, which the harness maps onto the adapter's own API).
- `place_external_order()`: an open order placed at the venue by someone else (another program,
  a person); returns its client order id.
- `venue_order_count(cid)`: how many orders the venue holds with this client id (0, 1, or a bug).
- `now_ns()` (optional): the fake venue's own clock, for a fake that keeps its own time; the
  suite's engine then runs on it (reconciliation asks for fills over a window of engine time).
- `supports(feature)`: optional features; the suite skips a case whose feature is absent.
  Features: the OrderType values, "partial_fill", "lost_submit", "stream_drop", "rate_limit",
  "server_error", "external_order".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

from brokers.base import BrokerAdapter
from engine.orders import OrderSide

FaultKind = Literal["429", "5xx"]


class AdapterHarness(Protocol):
    name: str
    symbol: str          # a symbol the venue lists (the adapter's own spelling, e.g. "BTC/USDT")
    unknown_symbol: str  # a symbol the venue does not list

    def make_adapter(self) -> BrokerAdapter: ...      # a fresh venue and an adapter, not yet connected
    def supports(self, feature: str) -> bool: ...
    def qty(self) -> Decimal: ...
    def below_min_qty(self) -> Decimal: ...
    def unaffordable_qty(self) -> Decimal: ...   # on the grid and within max, beyond the account's cash
    def resting_limit(self, side: OrderSide) -> Decimal: ...
    def resting_stop(self, side: OrderSide) -> Decimal: ...
    def drive_market(self) -> None: ...             # let a market order execute (a quote arrives)
    def fill(self, client_order_id: str, qty: Decimal | None = None) -> None: ...
    def settle(self) -> None: ...
    def lose_next_submit(self) -> None: ...
    def fail_next_submit(self, kind: FaultKind) -> None: ...
    def fail_submits(self, kind: FaultKind) -> None: ...
    def heal(self) -> None: ...
    def drop_stream(self) -> None: ...
    def restore_stream(self) -> None: ...
    def reconnect(self) -> None: ...
    def place_external_order(self) -> str: ...
    def venue_order_count(self, client_order_id: str) -> int: ...
    def close(self) -> None: ...
