"""Adapter overhead per submit, against each fake venue, excluding the fake's own time.

    .venv/bin/python bench/adapter_overhead.py [--orders 2000] [--warmup 200]

Each submit is a resting limit order (one request, no fill), reported to a sink that only counts.
Per submit it measures the wall time of `adapter.submit` and subtracts what the venue spent:

- paper: the simulated venue's `submit` (timed around the call). What is left is the adapter:
  the reporter, the book, the link.
- ccxt (binance): the fake's request handler time (measured inside the fake, from the parsed
  request to the built answer). What is left is ours plus ccxt's request building, signing,
  parsing and the loopback HTTP round trip. A second figure also leaves out the whole HTTP
  exchange (time inside ccxt's `fetch`): the adapter and ccxt's own Python only. ccxt's throttle
  is off here (it would add sleeps, not work).

- mt5: the fake terminal runs in-process; every call into it (order_send, symbol_info_tick,
  orders_get, ...) is timed by a proxy and excluded. What is left is the adapter: request building,
  grid and stops checks, retcode mapping, the reporter.

Then, for ccxt (issue 15), two latencies an operator feels, on the same loopback fake:
- submit-to-ack: `adapter.submit` of a resting limit order until the sink hears it ACCEPTED
  (the answer to the create request; ccxt's throttle off);
- executions-to-OMS: the fake fills a resting order (in its own process) and the adapter reports
  the fill to the sink, once over the REST poll (its interval bounds it: `--poll`), once pushed
  (ccxt.pro watch_orders / watch_my_trades over the fake's user-data stream, the poll off).
Both again on binance USD-M futures (binanceusdm, BTC/USDT:USDT, the futures fake: pushed over
its listenKey socket as ORDER_TRADE_UPDATE), same method.

Prints p50 and p99 in microseconds (milliseconds for the poll). Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fakes live in tests/

from brokers.paper.adapter import PaperAdapter
from brokers.paper.venue import SimulatedVenue
from engine.instrument import AssetClass, Instrument
from engine.orders import Fill, Order, OrderSide, OrderType


class CountingSink:
    def __init__(self) -> None:
        self.events = 0

    def on_submitted(self, order: Order, ts: int) -> None:
        self.events += 1

    def on_accepted(self, order: Order, ts: int) -> None:
        self.events += 1

    def on_rejected(self, order: Order, ts: int, reason: str) -> None:
        raise AssertionError(f"{order.client_order_id} rejected: {reason}")

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        self.events += 1

    def on_canceled(self, order: Order, ts: int, reason: str | None) -> None:
        self.events += 1


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return p50 / 1000, p99 / 1000


def run(submit: Callable[[int], int], n: int, warmup: int) -> list[int]:
    """`submit(i)` returns the ns to exclude for order i; returns adapter overhead per submit."""
    out = []
    for i in range(warmup + n):
        start = time.perf_counter_ns()
        excluded = submit(i)
        elapsed = time.perf_counter_ns() - start - excluded
        if i >= warmup:
            out.append(elapsed)
    return out


# -- paper ----------------------------------------------------------------------------------------
class TimedVenue(SimulatedVenue):
    spent_ns = 0

    def submit(self, order: Order) -> None:
        start = time.perf_counter_ns()
        super().submit(order)
        self.spent_ns += time.perf_counter_ns() - start


class TimedLink:
    """Wraps the adapter's link (venue -> adapter): its time is ours, though it runs inside the
    venue's submit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent_ns = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return method(*args)
            finally:
                self.spent_ns += time.perf_counter_ns() - start

        return timed


def bench_paper(n: int, warmup: int) -> list[int]:
    instrument = Instrument("EURUSD", asset_class=AssetClass.FX, price_increment=Decimal("0.00001"),
                            size_increment=Decimal("1000"), min_qty=Decimal("1000"))
    venue = TimedVenue(instrument, Decimal(10_000_000))
    adapter = PaperAdapter(venue)
    adapter.connect(CountingSink())
    link = TimedLink(adapter._book.downstream)
    adapter._book.downstream = link

    def submit(i: int) -> int:
        venue_before, link_before = venue.spent_ns, link.spent_ns
        adapter.submit(Order(f"b-{i:08d}", "b", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal(1000), 0,
                             limit_price=Decimal("1.00000")))
        return (venue.spent_ns - venue_before) - (link.spent_ns - link_before)  # the venue's own work only

    return run(submit, n, warmup)


# -- ccxt -------------------------------------------------------------------------------------------
def bench_ccxt(n: int, warmup: int) -> tuple[list[int], list[int]]:
    """The fake runs in a child process (no GIL shared with the adapter); it reports its handler
    time per request in the X-Fake-Handler-Ns header."""
    import multiprocessing

    import ccxt

    from brokers.ccxt.adapter import CcxtAdapter
    from tests.fakes.binance_fake import redirect, serve_forever_in_child

    class TimedBinance(ccxt.binance):
        fetch_ns = 0

        def fetch(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return super().fetch(*args, **kwargs)
            finally:
                self.fetch_ns += time.perf_counter_ns() - start

    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve_forever_in_child, args=(child,), daemon=True)
    process.start()
    try:
        url = parent.recv()
        exchange = TimedBinance({"apiKey": "k", "secret": "s", "enableRateLimit": False, "timeout": 10_000,
                                 "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                             "fetchMargins": False}})
        redirect(exchange, url)
        adapter = CcxtAdapter("binance", exchange=exchange, symbols=["BTC/USDT"], poll_interval_s=None)
        adapter.connect(CountingSink())
        minus_fake: list[int] = []
        without_http: list[int] = []
        for i in range(warmup + n):
            fetch_before = exchange.fetch_ns
            start = time.perf_counter_ns()
            adapter.submit(Order(f"b-{i:08d}", "b", "BTC/USDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.001"), 0,
                                 limit_price=Decimal("40000.00")))
            total = time.perf_counter_ns() - start
            if i >= warmup:
                minus_fake.append(total - int(exchange.last_response_headers["X-Fake-Handler-Ns"]))
                without_http.append(total - (exchange.fetch_ns - fetch_before))
        return minus_fake, without_http
    finally:
        parent.send("stop")
        process.join(timeout=10)


class AckSink(CountingSink):
    """Counts, and notes when the last accept and fill arrived (monotonic ns)."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted_ns = 0
        self.fills: dict[str, int] = {}
        self.filled = __import__("threading").Condition()

    def on_accepted(self, order: Order, ts: int) -> None:
        self.accepted_ns = time.monotonic_ns()
        super().on_accepted(order, ts)

    def on_fill(self, order: Order, fill: Fill, bar: int) -> None:
        with self.filled:
            self.fills[order.client_order_id] = time.monotonic_ns()
            self.filled.notify_all()
        super().on_fill(order, fill, bar)


def serve_futures_in_child(connection: Any, with_ws: bool = False) -> None:
    """The USD-M futures fake in this (child) process, as binance_fake.serve_forever_in_child
    serves the spot one: its url (and, `with_ws`, its user-data socket's), then "fill:<client
    id>" fills that order and answers with the monotonic time (ns) just before the fill."""
    from tests.fakes.binance_futures_fake import BinanceFuturesFake

    fake = BinanceFuturesFake(wallet={"USDT": Decimal(10) ** 12}).start()
    connection.send(fake.url)
    if with_ws:
        connection.send(fake.ws_url)
    while True:
        message = connection.recv()
        if not isinstance(message, str) or not message.startswith("fill:"):
            break
        started = time.monotonic_ns()
        fake.fill(message[len("fill:"):])
        connection.send(started)
    fake.stop()


def bench_ccxt_latency(n: int, fills: int, poll_s: float, push: bool,
                       futures: bool = False) -> tuple[list[int], list[int]]:
    """Submit-to-ack for `n` resting orders, then executions-to-sink for `fills` of them: over the
    poll (every `poll_s`), or pushed (ccxt.pro watch_orders / watch_my_trades, the poll off); on
    binance spot, or (`futures`) on binance USD-M."""
    import multiprocessing

    import ccxt
    import ccxt.pro

    from brokers.ccxt.adapter import CcxtAdapter
    from tests.fakes.binance_fake import redirect, serve_forever_in_child

    target = serve_futures_in_child if futures else serve_forever_in_child
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(child, push), daemon=True)
    process.start()
    try:
        url = parent.recv()
        if futures:
            exchange_id, symbol, qty, price = "binanceusdm", "BTC/USDT:USDT", Decimal("0.003"), Decimal("40000.0")
            options: dict[str, Any] = {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                                       "fetchOpenOrders": {"warnWithoutSymbol": False}}
        else:
            exchange_id, symbol, qty, price = "binance", "BTC/USDT", Decimal("0.001"), Decimal("40000.00")
            options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                       "fetchOpenOrders": {"warnWithoutSymbol": False}}
        exchange = getattr(ccxt, exchange_id)({"apiKey": "k", "secret": "s", "enableRateLimit": False,
                                               "timeout": 10_000, "options": options})
        redirect(exchange, url)
        pro = None
        if push:
            pro = getattr(ccxt.pro, exchange_id)({"apiKey": "k", "secret": "s", "enableRateLimit": False,
                                                  "options": options})
            redirect(pro, url, parent.recv())
        adapter = CcxtAdapter(exchange_id, exchange=exchange, symbols=[symbol],
                              poll_interval_s=None if push else poll_s, push=pro)
        sink = AckSink()
        adapter.connect(sink)
        while push and not adapter.pushing:
            time.sleep(0.01)
        acks: list[int] = []
        for i in range(n):
            start = time.monotonic_ns()
            adapter.submit(Order(f"l-{i:08d}", "b", symbol, OrderSide.BUY, OrderType.LIMIT, qty, 0,
                                 limit_price=price))
            acks.append(sink.accepted_ns - start)
        to_sink: list[int] = []
        for i in range(fills):
            cid = f"l-{i:08d}"
            parent.send(f"fill:{cid}")
            filled_at = parent.recv()
            with sink.filled:
                if not sink.filled.wait_for(lambda: cid in sink.fills, timeout=60):
                    raise RuntimeError(f"the fill of {cid} never reached the sink")
            to_sink.append(sink.fills[cid] - filled_at)
        adapter.close()
        return acks, to_sink
    finally:
        parent.send("stop")
        process.join(timeout=10)


# -- mt5 --------------------------------------------------------------------------------------------
class TimedTerminal:
    """The fake MetaTrader5 module, with the time spent inside any of its functions counted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.spent_ns = 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return value(*args, **kwargs)
            finally:
                self.spent_ns += time.perf_counter_ns() - start

        return timed


def bench_mt5(n: int, warmup: int) -> list[int]:
    from brokers.mt5.adapter import MT5Adapter
    from tests.fakes.mt5_fake import FakeMT5

    fake = FakeMT5()
    fake.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    terminal = TimedTerminal(fake)
    adapter = MT5Adapter(terminal, ["EURUSD"], login=5001, password="secret", server="FakeBroker-Demo",
                         sleep=lambda s: None)
    adapter.connect(CountingSink())

    def submit(i: int) -> int:
        before = terminal.spent_ns
        adapter.submit(Order(f"b-{i:08d}", "b", "EURUSD", OrderSide.BUY, OrderType.LIMIT, Decimal("0.01"), 0,
                             limit_price=Decimal("1.00000")))
        return terminal.spent_ns - before

    return run(submit, n, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--fills", type=int, default=50, help="fills timed over the ccxt poll")
    parser.add_argument("--poll", type=float, default=0.2, help="the ccxt adapter's poll interval (s)")
    args = parser.parse_args()
    print(f"adapter overhead per submit (resting limit orders, {args.orders} after {args.warmup} warm-up)")
    p50, p99 = percentiles(bench_paper(args.orders, args.warmup))
    print(f"  paper  adapter only (venue excluded)                     p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    p50, p99 = percentiles(bench_mt5(args.orders, args.warmup))
    print(f"  mt5    adapter only (every terminal call excluded)       p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    if importlib.util.find_spec("ccxt") is None:
        print("  ccxt   skipped: ccxt is not installed (pip install ccxt==4.5.90)")
        return
    minus_fake, without_http = bench_ccxt(args.orders, args.warmup)
    p50, p99 = percentiles(minus_fake)
    print(f"  ccxt   adapter + ccxt + HTTP client + loopback (fake excl.) p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    p50, p99 = percentiles(without_http)
    print(f"  ccxt   adapter + ccxt, HTTP exchange excluded             p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    for futures in (False, True):
        venue = f"{'binanceusdm' if futures else 'ccxt':<11}"
        for push in (False, True):
            acks, to_sink = bench_ccxt_latency(args.orders, args.fills, args.poll, push, futures)
            how = "push stream (poll off)  " if push else f"REST poll every {args.poll:g} s "
            p50, p99 = percentiles(acks)
            print(f"  {venue} submit-to-ack, {how}            p50 {p50:8.1f} us   p99 {p99:8.1f} us")
            p50, p99 = percentiles(to_sink)
            print(f"  {venue} execution-to-sink, {how}        p50 {p50 / 1000:8.2f} ms   p99 {p99 / 1000:8.2f} ms")


if __name__ == "__main__":
    main()
