"""The asyncio loop thread that ccxt.pro watchers run on (the feed's and the user-data stream's)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterable


def stop_pro_loop(loop: asyncio.AbstractEventLoop, tasks: Iterable["asyncio.Future[Any]"], pro: Any,
                  thread: threading.Thread | None) -> None:
    """Cancel the watchers, close ccxt.pro's sockets (ccxt keeps a closed client's subscriptions
    otherwise), stop the loop and wait for its thread, then close the loop."""
    for task in tasks:
        task.cancel()
    if pro is not None:
        try:
            asyncio.run_coroutine_threadsafe(pro.close(), loop).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing: nothing left to save
            pass
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout=10)
    loop.close()
