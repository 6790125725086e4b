"""A bracket's exits sell what the entry delivered, when the venue takes its fee in the coin bought.

Found at stop 28. Binance spot without BNB takes a buy's fee in the coin bought (0.1 %): a BUY of
0.01 BTC leaves 0.00999 BTC in the wallet. The bracket's exits were sized to the entry's filled
quantity (0.01): Binance refused the OCO list for want of the fee's coins (-2010), the OMS did not
take the refusal over (INSUFFICIENT_FUNDS is not a venue failure), and the position stood with no
stop-loss at all; on an account holding other coins the exits would have sold 0.00001 of them.
Now the adapter sizes the exits to what the wallet received (the fills less the fee in the coin,
on the lot grid) and the OMS sizes its children the same way, so the exit's fill closes the
position and completes the order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest

pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.orders import Order, OrderSide, OrderState, OrderType  # noqa: E402
from tests.conformance.harness_ccxt import binance_on  # noqa: E402
from tests.fakes.binance_fake import BinanceFake  # noqa: E402
from tests.integration.test_ccxt_partial_entry_protection import (  # noqa: E402
    MARKET_ID, SPOT, bracket, covered, manager, poll, spot_legs)

D = Decimal


@pytest.fixture
def fake() -> Iterator[BinanceFake]:
    fake = BinanceFake(fee_asset="received").start()      # no BNB: the fee comes out of the coin bought
    fake.balances.update(BTC=D(0), ETH=D(0), BNB=D(0))     # the bot's coins are the account's only ones
    yield fake
    fake.stop()


@pytest.fixture
def oms(fake: BinanceFake):
    return manager(CcxtAdapter("binance", exchange=binance_on(fake), symbols=[SPOT], backoff_s=0.001,
                               max_backoff_s=0.005, poll_interval_s=None), SPOT)


def test_a_market_entrys_exits_are_sized_to_the_coins_received_and_close_the_position(fake, oms):
    entry = Order(oms.next_client_order_id(), "t", SPOT, OrderSide.BUY, OrderType.MARKET, D("0.01"), 0)
    with oms.linked():
        oms.submit(entry)
        sl = Order(oms.next_client_order_id(), "t", SPOT, OrderSide.SELL, OrderType.STOP, D("0.01"), 0,
                   stop_price=D("45000.00"), parent_id=entry.client_order_id, oco_group=entry.client_order_id)
        tp = Order(oms.next_client_order_id(), "t", SPOT, OrderSide.SELL, OrderType.LIMIT, D("0.01"), 0,
                   limit_price=D("51000.00"), parent_id=entry.client_order_id, oco_group=entry.client_order_id)
        oms.submit(sl)
        oms.submit(tp)
    assert entry.state is OrderState.FILLED and fake.balances["BTC"] == D("0.00999")
    # protected at the venue (was: both REJECTED INSUFFICIENT_FUNDS, the position bare)
    assert (sl.state, tp.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED)
    assert covered(spot_legs(fake, sl)) == covered(spot_legs(fake, tp)) == D("0.00999")
    assert sl.qty == tp.qty == D("0.00999") == oms.portfolio.positions[SPOT].quantity
    fake.set_quote(MARKET_ID, D("51000.00"), D("51000.00"))
    poll(oms)
    assert tp.state is OrderState.FILLED and sl.state in (OrderState.CANCELED, OrderState.EXPIRED)
    assert oms.portfolio.positions[SPOT].qty == 0 and fake.balances["BTC"] == 0


def test_a_resting_entrys_exits_grow_with_what_each_fill_delivered(fake, oms):
    entry, sl, tp = bracket(oms, SPOT, "0.03", "49000.00", "45000.00", "60000.00")
    for delivered in ("0.00999", "0.01998", "0.02997"):
        fake.fill(entry.client_order_id, D("0.01"))
        poll(oms)
        poll(oms)
        assert covered(spot_legs(fake, sl)) == covered(spot_legs(fake, tp)) == D(delivered)
        assert fake.balances["BTC"] == D(delivered)
    assert entry.state is OrderState.FILLED
    assert (sl.state, tp.state) == (OrderState.ACCEPTED, OrderState.ACCEPTED) and sl.qty == D("0.02997")
