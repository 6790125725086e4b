"""The ccxt adapter's conformance harnesses: real ccxt (binance spot, bybit spot, binance USD-M futures)
against the loopback fakes."""

from __future__ import annotations

from decimal import Decimal

import pytest

ccxt = pytest.importorskip("ccxt")

from brokers.ccxt.adapter import CcxtAdapter  # noqa: E402
from engine.orders import OrderSide  # noqa: E402
from tests.fakes.binance_fake import BinanceFake, redirect  # noqa: E402
from tests.fakes.binance_futures_fake import BinanceFuturesFake  # noqa: E402
from tests.fakes.bybit_fake import BybitFake  # noqa: E402


def binance_on(fake: BinanceFake, timeout_ms: int = 1000) -> "ccxt.binance":
    """A real ccxt binance client pointed at the fake. ccxt's throttle stays on, at 1 ms per
    request instead of binance's 50 ms, so tests do not wait on it."""
    exchange = ccxt.binance({
        "apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True, "rateLimit": 1,
        "timeout": timeout_ms,
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                    "fetchOpenOrders": {"warnWithoutSymbol": False}},
    })
    redirect(exchange, fake.url)
    return exchange


class CcxtBinanceHarness:
    name = "ccxt"
    symbol = "BTC/USDT"
    unknown_symbol = "NOPE/USDT"

    def __init__(self) -> None:
        self.fake = BinanceFake().start()
        self.adapter: CcxtAdapter | None = None

    def make_adapter(self) -> CcxtAdapter:
        self.adapter = CcxtAdapter("binance", exchange=binance_on(self.fake), symbols=["BTC/USDT", "ETH/USDT"],
                                   backoff_s=0.001, max_backoff_s=1.0, poll_interval_s=None)
        return self.adapter

    def supports(self, feature: str) -> bool:
        return True

    def qty(self) -> Decimal:
        return Decimal("0.01")

    def below_min_qty(self) -> Decimal:
        return Decimal("0.00005")

    def unaffordable_qty(self) -> Decimal:
        return Decimal("5")

    def resting_limit(self, side: OrderSide) -> Decimal:
        return Decimal("49000.00") if side is OrderSide.BUY else Decimal("51000.00")

    def resting_stop(self, side: OrderSide) -> Decimal:
        return Decimal("51000.00") if side is OrderSide.BUY else Decimal("49000.00")

    def drive_market(self) -> None:
        pass  # the fake executes market orders on arrival

    def move_price(self, price: Decimal) -> None:
        """The market trades at `price`: binance triggers the stops and fills the limits it reaches,
        an OCO leg expiring its sibling (the fake's set_quote). Only binance spot gets here: the
        bracket case skips an adapter without `protective_orders`."""
        self.fake.set_quote(self.fake.markets[0].symbol, price, price)

    def fill(self, client_order_id: str, qty: Decimal | None = None) -> None:
        self.fake.fill(client_order_id, qty)

    def settle(self) -> None:
        if self.adapter is not None and self.adapter._reporter.sink is not None:
            self.adapter.poll()

    def lose_next_submit(self) -> None:
        self.fake.inject("hang")  # booked, then no answer: ccxt raises RequestTimeout

    def fail_next_submit(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503")

    def fail_submits(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503", times=100)

    def heal(self) -> None:
        self.fake.heal()

    def drop_stream(self) -> None:
        self.fake.stream_down = True

    def restore_stream(self) -> None:
        self.fake.stream_down = False

    def reconnect(self) -> None:
        assert self.adapter is not None
        self.adapter.reconnect()

    def place_external_order(self) -> str:
        self.fake.place_external("manual-1", "BTCUSDT", "BUY", Decimal("0.01"), Decimal("40000.00"))
        return "manual-1"

    def venue_order_count(self, client_order_id: str) -> int:
        return self.fake.count_client_id(client_order_id)

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()
        self.fake.stop()


def bybit_on(fake: "BybitFake", timeout_ms: int = 1000) -> "ccxt.bybit":
    """A real ccxt bybit client pointed at the bybit fake: spot markets only, a unified account
    (ccxt would otherwise probe the account type first), the throttle on at 1 ms."""
    exchange = ccxt.bybit({
        "apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True, "rateLimit": 1,
        "timeout": timeout_ms,
        "options": {"fetchMarkets": {"types": ["spot"]}, "enableUnifiedAccount": True, "enableUnifiedMargin": False},
    })
    redirect(exchange, fake.url)
    return exchange


class CcxtBybitHarness(CcxtBinanceHarness):
    """The same adapter on bybit (another family: v5 API, ids-only create answers, fees in the
    coin received, no spot fetch_order). Stops are not in the fake (see its docstring)."""

    name = "ccxt_bybit"

    def __init__(self) -> None:
        # bybit takes a spot fee in the coin received, at 8 decimals (finer than the lot grid):
        # the books hold the coin at the wallet's precision (Instrument.asset_dp from the market).
        self.fake = BybitFake().start()
        self.adapter = None

    def make_adapter(self) -> CcxtAdapter:
        self.adapter = CcxtAdapter("bybit", exchange=bybit_on(self.fake), symbols=["BTC/USDT", "ETH/USDT"],
                                   backoff_s=0.001, max_backoff_s=1.0, poll_interval_s=None)
        return self.adapter

    def supports(self, feature: str) -> bool:
        return feature not in ("STOP", "STOP_LIMIT")

    def lose_next_submit(self) -> None:
        self.fake.inject("hang", "POST", "/v5/order/create")

    def fail_next_submit(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503", "POST", "/v5/order/create")

    def fail_submits(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503", "POST", "/v5/order/create", times=100)


def binanceusdm_on(fake: "BinanceFuturesFake", timeout_ms: int = 1000) -> "ccxt.binanceusdm":
    """A real ccxt binanceusdm client pointed at the futures fake: linear markets only, the
    throttle on at 1 ms."""
    exchange = ccxt.binanceusdm({
        "apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True, "rateLimit": 1,
        "timeout": timeout_ms,
        "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                    "fetchOpenOrders": {"warnWithoutSymbol": False}},
    })
    redirect(exchange, fake.url)
    # ccxt picks binance's USD-M error table by the request's host (https://fapi.binance.com/...);
    # at the fake's loopback address it would fall back to the common table (-2019 "Margin is
    # insufficient." as OperationFailed instead of InsufficientFunds): select the one the real
    # host selects, which ccxt consults first
    linear = exchange.exceptions["linear"]
    exchange.exceptions = {**exchange.exceptions, "exact": {**exchange.exceptions["exact"], **linear["exact"]},
                           "broad": {**exchange.exceptions["broad"], **linear.get("broad", {})}}
    return exchange


def binanceusdm_pro_on(fake: "BinanceFuturesFake") -> "ccxt.pro.binanceusdm":
    """A real ccxt.pro binanceusdm pointed at the futures fake and its user-data stream socket
    (started here if it is not yet): the push stream's twin of `binanceusdm_on`."""
    import ccxt.pro

    pro = ccxt.pro.binanceusdm({"apiKey": "test-key", "secret": "test-secret", "enableRateLimit": True,
                                "rateLimit": 1, "options": {"fetchMarkets": {"types": ["linear"]},
                                                            "fetchCurrencies": False}})
    redirect(pro, fake.url, fake.ws_url)
    return pro


class CcxtBinanceFuturesHarness(CcxtBinanceHarness):
    """The same adapter on binance USD-M futures (BTC/USDT:USDT perpetual): positions are the
    venue's, the account a margin wallet. Stops go to binance's algo-order API, which the adapter
    does not follow: refused as UNSUPPORTED, so the suite skips them.

    The push stream is on (ccxt.pro over the fake's listenKey socket), the REST poll run by the
    suite's `settle()`: each report reaches the engine once whichever way it came first. A
    dropped stream is both: the socket closed and refused, and the REST reads dropped."""

    name = "ccxt_binanceusdm"
    symbol = "BTC/USDT:USDT"
    unknown_symbol = "NOPE/USDT:USDT"

    def __init__(self) -> None:
        self.fake = BinanceFuturesFake().start()  # type: ignore[assignment]
        self.adapter = None

    def make_adapter(self) -> CcxtAdapter:
        # a futures account's settings, as its account config gives them (the venue starts at 20x)
        self.adapter = CcxtAdapter("binanceusdm", exchange=binanceusdm_on(self.fake),  # type: ignore[arg-type]
                                   symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"], backoff_s=0.001,
                                   max_backoff_s=1.0, poll_interval_s=None, leverage=10, margin_mode="cross",
                                   push=binanceusdm_pro_on(self.fake))  # type: ignore[arg-type]
        return self.adapter

    def drop_stream(self) -> None:
        ws = self.fake.start_stream()  # type: ignore[attr-defined]
        self.fake.stream_down = True
        ws.refuse = True
        ws.drop()

    def restore_stream(self) -> None:
        self.fake.stream_down = False
        self.fake.start_stream().refuse = False  # type: ignore[attr-defined]

    def supports(self, feature: str) -> bool:
        return feature not in ("STOP", "STOP_LIMIT")

    def below_min_qty(self) -> Decimal:
        return Decimal("0.0005")

    def unaffordable_qty(self) -> Decimal:
        return Decimal("5")   # 250,000 USDT of notional: 25,000 of margin at 10x, on a 10,000 wallet

    def resting_limit(self, side: OrderSide) -> Decimal:
        return Decimal("49000.0") if side is OrderSide.BUY else Decimal("51000.0")

    def lose_next_submit(self) -> None:
        self.fake.inject("hang", "POST", "/fapi/v1/order")

    def fail_next_submit(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503", "POST", "/fapi/v1/order")

    def fail_submits(self, kind: str) -> None:
        self.fake.inject("429" if kind == "429" else "503", "POST", "/fapi/v1/order", times=100)
