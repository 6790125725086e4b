"""The account's push stream: ccxt.pro `watch_orders` and `watch_my_trades` on one asyncio loop
in a thread, handing what arrives to the adapter.

Why a separate loop: ccxt.pro is asyncio, the adapter and the engine are threads. Each watch runs
in its own task and restarts after a failure with exponential backoff and jitter; the stream is
`live` once subscribed (or a watch answered) since the last failure. Whenever it becomes live (the
first time, and after every reconnect) `on_live` runs, so the adapter reconciles over REST what it
may have missed while the socket was down: push first, the REST poll as the backup.

What a watch returns is handed to a delivery thread through a queue, never processed on the loop:
ccxt.pro resolves a watch only if one is waiting when the message arrives, so a watch loop that
stopped to book a fill would leave the next event in ccxt's cache until some later event came.

Live means the account's events can reach us: where subscribing is a request on the socket
(binance spot's websocket API: `authenticate` subscribes) that is after `authenticate`; where
the subscription is a key in the url (binance USD-M's listenKey: `authenticate` only fetches the
key over REST) it is once the watches' socket is open, so the reconciliation that `on_live`
runs cannot fall before the socket hears the account.

A venue's notice that the subscription has ended while the socket stays open (binance's
`listenKeyExpired`: "no more user data event will be updated after this event") is a failure
like a dropped socket: ccxt.pro ignores the message, so a stream trusting the socket would stay
"live" and deaf. And every reconnect starts from a fresh key (ccxt otherwise reuses its cached
listenKey for 20 minutes, and one that expired would dial into silence): POSTing the listenKey
again returns the active key, extended, or a new one.

The key is kept alive here, every `options['listenKeyRefreshRate']` ms (ccxt's own setting, 20
minutes; binance drops a key 60 minutes after its last keep-alive): ccxt.pro 4.5.90 sends its
first keep-alive and then never another (its re-arm looks for the subscription in a dict, but
its clients are objects), so a stream left to ccxt would lose its key after 80 minutes.

While the venue asks for quiet (`quiet_s`: the adapter's 429 / 418 Retry-After still running) the
stream neither (re)subscribes nor keeps its key alive: both are requests (binance spot's websocket
API shares the IP's limits with REST; USD-M's listenKey is REST), and binance lengthens an IP ban for
every call made during it. A socket that stays open keeps delivering; one that drops waits out the
quiet period (re-checked every second) before it dials again, then reconciles as after any drop.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
from typing import Any, Awaitable, Callable

from brokers.ccxt.loop import stop_pro_loop

# events by which a venue says the account's subscription has ended though the socket is open
SUBSCRIPTION_ENDED = frozenset({"listenKeyExpired"})


class SubscriptionEnded(Exception):
    """The venue ended the account's subscription (e.g. binance's listenKeyExpired)."""


class UserStream:
    """Runs `watch_orders` / `watch_my_trades` of a ccxt.pro exchange until `close()`."""

    def __init__(self, pro: Any, on_orders: Callable[[list[dict[str, Any]]], None],
                 on_trades: Callable[[list[dict[str, Any]]], None], on_live: Callable[[bool], None],
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 quiet_s: Callable[[], float] | None = None) -> None:
        self.pro = pro
        self.quiet_s = quiet_s or (lambda: 0.0)   # seconds the venue still asks for no calls
        self.on_orders, self.on_trades, self.on_live = on_orders, on_trades, on_live
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.live = False
        self.errors: list[str] = []          # the last failures (type names only: no URLs, no keys)
        self.failures = 0                    # failures since the stream was last live: the backoff's exponent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[Any] = []
        self._inbox: queue.Queue[tuple[Callable[..., None], Any] | None] = queue.Queue()
        self._delivery: threading.Thread | None = None

    def start(self) -> None:
        if self._loop is not None:
            return
        self._watch_for_ended_subscriptions()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{self.pro.id}-user-stream", daemon=True)
        self._thread.start()
        self._delivery = threading.Thread(target=self._deliver, name=f"{self.pro.id}-user-stream-delivery", daemon=True)
        self._delivery.start()
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._supervise(), self._loop))

    async def _supervise(self) -> None:
        """Subscribe, run both watches until one fails, drop every socket, back off, again. A
        fresh socket each time: ccxt keeps a closed client's subscriptions and would otherwise
        treat a new connection as subscribed without asking the venue."""
        while True:
            watches: list[asyncio.Task[None]] = []
            await self._wait_quiet()
            try:
                # markets first: a watch that loads them suspends, and an event arriving
                # meanwhile would only be cached (see the module docstring)
                await self.pro.load_markets()
                if hasattr(self.pro, "authenticate"):
                    await self.pro.authenticate()  # spot: subscribed now; USD-M: the listenKey fetched
                watches = [asyncio.ensure_future(self._pump(self.pro.watch_orders, self.on_orders)),
                           asyncio.ensure_future(self._pump(self.pro.watch_my_trades, self.on_trades))]
                if await self._sockets_open(watches):
                    self.failures = 0            # a good subscription: the next drop backs off from the start
                    await self._set_live(True)   # before the first event
                while True:
                    done, _ = await asyncio.wait(watches, timeout=self._keep_alive_s(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if done:
                        break
                    await self._keep_alive()
                for task in done:
                    task.result()  # raises what stopped it
            except asyncio.CancelledError:
                for task in watches:
                    task.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - a stream keeps going; the poll covers the gap
                self.errors.append(type(error).__name__)
                del self.errors[:-20]
            for task in watches:
                task.cancel()
            await self._set_live(False)
            try:
                await self.pro.close_ws_clients()
            except Exception:  # noqa: BLE001 - the sockets are gone either way
                pass
            self._forget_listen_keys()
            self.failures += 1
            delay = min(self.backoff_s * 2 ** (self.failures - 1), self.max_backoff_s)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _wait_quiet(self) -> None:
        """Until the venue's quiet period (a 429 / 418's Retry-After) has ended: re-checked every second,
        so a shorter or an ended one is not overslept."""
        while (left := self.quiet_s()) > 0:
            await asyncio.sleep(min(left, 1.0))

    async def _sockets_open(self, watches: list[asyncio.Task[None]]) -> bool:
        """Until every websocket the watches dial is open (True), or a watch has ended (False:
        it failed to connect; the supervisor sees why). ccxt keeps non-socket bookkeeping
        "clients" too (binance's authenticationFlights): only ws urls count."""
        while not any(task.done() for task in watches):
            clients = [c for url, c in list(self.pro.clients.items()) if str(url).startswith("ws")]
            if clients and all(c.connected.done() and not c.connected.cancelled() and c.connected.exception() is None
                               for c in clients):
                return True
            await asyncio.sleep(0.005)
        return False

    def _watch_for_ended_subscriptions(self) -> None:
        """See the module docstring: a subscription-ended event fails the watches of its socket
        (they raise SubscriptionEnded; the supervisor reconnects with a fresh key). Installed on
        the instance before any socket exists, as ccxt binds `handle_message` per socket."""
        handle = self.pro.handle_message

        def handle_message(client: Any, message: Any) -> Any:
            if isinstance(message, dict) and message.get("e") in SUBSCRIPTION_ENDED:
                client.reject(SubscriptionEnded(str(message.get("e"))))
                return None
            return handle(client, message)

        self.pro.handle_message = handle_message

    def _keep_alive_s(self) -> float | None:
        """How often the account's listenKey is kept alive; None where there is none (spot)."""
        if not hasattr(self.pro, "keep_alive_listen_key") or not any(
                isinstance(bucket, dict) and bucket.get("listenKey") for bucket in list(self.pro.options.values())):
            return None
        return max(float(self.pro.options.get("listenKeyRefreshRate") or 1_200_000) / 1000, 0.01)

    async def _keep_alive(self) -> None:
        """PUT the listenKey (see the module docstring). ccxt handles a refusal by failing the
        socket's watches, and the supervisor then reconnects with a fresh key."""
        if self._keep_alive_s() is not None and self.quiet_s() <= 0:   # not during a quiet period
            await self.pro.keep_alive_listen_key({})

    def _forget_listen_keys(self) -> None:
        """Make the next `authenticate` ask the venue for the key again (see the module docstring):
        ccxt.pro binance keeps it per market type in `options[type]` with the time it was got."""
        for bucket in list(self.pro.options.values()):
            if isinstance(bucket, dict) and "listenKey" in bucket:
                bucket["listenKey"] = None
                bucket["lastAuthenticatedTime"] = 0

    async def _pump(self, watch: Callable[[], Awaitable[list[dict[str, Any]]]],
                    handler: Callable[[list[dict[str, Any]]], None]) -> None:
        while True:
            items = await watch()
            await self._set_live(True)
            if items:
                self._inbox.put((handler, list(items)))  # and straight back to watching

    async def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            self._inbox.put((self.on_live, live))

    def _deliver(self) -> None:
        """The delivery thread: calls the adapter with what the watches returned, in order."""
        while True:
            item = self._inbox.get()
            if item is None:
                return
            handler, payload = item
            try:
                handler(payload)
            except Exception as error:  # noqa: BLE001 - one bad event must not stop the stream
                self.errors.append(type(error).__name__)
                del self.errors[:-20]

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        stop_pro_loop(loop, self._tasks, self.pro, self._thread)
        self._loop = None
        self.live = False
        self._inbox.put(None)
        if self._delivery is not None:
            self._delivery.join(timeout=10)
