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
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
from typing import Any, Awaitable, Callable

from brokers.ccxt.loop import stop_pro_loop


class UserStream:
    """Runs `watch_orders` / `watch_my_trades` of a ccxt.pro exchange until `close()`."""

    def __init__(self, pro: Any, on_orders: Callable[[list[dict[str, Any]]], None],
                 on_trades: Callable[[list[dict[str, Any]]], None], on_live: Callable[[bool], None],
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.pro = pro
        self.on_orders, self.on_trades, self.on_live = on_orders, on_trades, on_live
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.live = False
        self.errors: list[str] = []          # the last failures (type names only: no URLs, no keys)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[Any] = []
        self._inbox: queue.Queue[tuple[Callable[..., None], Any] | None] = queue.Queue()
        self._delivery: threading.Thread | None = None

    def start(self) -> None:
        if self._loop is not None:
            return
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
        failures = 0
        while True:
            watches: list[asyncio.Task[None]] = []
            try:
                # markets first: a watch that loads them suspends, and an event arriving
                # meanwhile would only be cached (see the module docstring)
                await self.pro.load_markets()
                if hasattr(self.pro, "authenticate"):
                    await self.pro.authenticate()  # subscribed now: live before the first event
                    await self._set_live(True)
                watches = [asyncio.ensure_future(self._pump(self.pro.watch_orders, self.on_orders)),
                           asyncio.ensure_future(self._pump(self.pro.watch_my_trades, self.on_trades))]
                done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
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
            failures += 1
            delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

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
