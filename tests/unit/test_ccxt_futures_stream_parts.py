"""The parts of the USD-M push stream that need no venue: the adapter builds ccxt.pro's binanceusdm
for itself, a venue's "subscription ended" notice fails the watches of its socket, and a
reconnect asks for the listenKey again. Real ccxt.pro objects, no sockets opened."""

from __future__ import annotations

import asyncio

import pytest

ccxt = pytest.importorskip("ccxt")
pytest.importorskip("ccxt.pro")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from brokers.ccxt.stream import SubscriptionEnded, UserStream  # noqa: E402


def test_a_futures_adapter_built_from_its_id_pushes_through_ccxt_pro_binanceusdm():
    adapter = CcxtAdapter("binanceusdm", config={"apiKey": "k", "secret": "s"}, symbols=["BTC/USDT:USDT"],
                          poll_interval_s=None)
    assert isinstance(adapter._push, ccxt.pro.binanceusdm)
    assert adapter._push.options["fetchMarkets"]["types"] == ["linear"]  # the REST twin's markets only
    assert adapter._push.apiKey == "k"
    assert CcxtAdapter("binanceusdm", config={"apiKey": "k", "secret": "s"}, push=None)._push is None


def test_listen_key_expired_fails_the_watches_of_its_socket_and_other_events_pass_through():
    pro = ccxt.pro.binanceusdm({"apiKey": "k", "secret": "s"})
    stream = UserStream(pro, lambda orders: None, lambda trades: None, lambda live: None)
    stream._watch_for_ended_subscriptions()

    async def run() -> tuple[BaseException | None, bool]:
        client = pro.client("ws://127.0.0.1:9/private/ws?listenKey=abc")  # bookkeeping only: never dialled
        orders, trades = client.future("orders"), client.future("myTrades")
        pro.handle_message(client, {"e": "eventNobodyHandles", "E": 1})  # ccxt's own handling: ignored
        untouched = not orders.done()
        pro.handle_message(client, {"e": "listenKeyExpired", "E": 1, "listenKey": "abc"})
        assert trades.done() and isinstance(trades.exception(), SubscriptionEnded)
        await pro.close()
        return orders.exception(), untouched

    error, untouched = asyncio.run(run())
    assert untouched and isinstance(error, SubscriptionEnded)


def test_a_reconnect_asks_the_venue_for_the_listen_key_again():
    pro = ccxt.pro.binanceusdm({"apiKey": "k", "secret": "s"})
    pro.options["linear"] = {"listenKey": "stale", "lastAuthenticatedTime": 1_700_000_000_000}
    UserStream(pro, lambda orders: None, lambda trades: None, lambda live: None)._forget_listen_keys()
    assert pro.options["linear"] == {"listenKey": None, "lastAuthenticatedTime": 0}
    assert pro.options["fetchMarkets"]  # the rest of the options untouched
