"""Signal fan-out through the control API: many WebSocket subscribers, one shared poller.

    .venv/bin/python bench/api_fanout.py [--clients 1000] [--rate 20] [--seconds 15] [--poll 0.05]

1. Starts the API (uvicorn, its own process, as `tickbridge serve` runs it: no per-message
   deflate) on loopback over a SQLite store (WAL).
2. Connects N WebSocket clients (/api/v1/signals/ws), each a subscriber with a pro subscription.
3. Inserts signals into the store at a steady rate from another process's view (plain SQL inserts,
   as the runtime's SqlSignals does), each stamped with its insert time, and measures delivery
   latency = client receive time - insert time, over every (signal, client) pair: p50, p99, max.
4. GET /api/v1/signals (limit 100) requests/s with 16 concurrent keep-alive clients.
Prints figures only; results go to docs/benchmarks.md. Target: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import websockets  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

PASSWORD = "bench-password-1"


class IdleBots:
    """A BotControl with nothing running: the benchmark drives signals, not bots."""

    def start(self, config: Any) -> None: ...
    def stop(self, bot_id: str) -> None: ...
    def kill(self, bot_id: str, reason: str) -> None: ...
    def status(self, bot_id: str) -> dict[str, Any]:
        return {"bot_id": bot_id, "state": "STOPPED"}
    def running(self) -> list[str]:
        return []


def serve(url: str, port: int, poll: float, ws: str) -> None:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url=url, poll_interval_s=poll, auth_rate_per_minute=100_000, migrate=False),
                     IdleBots())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws_ping_interval=None, backlog=4096,
                ws=ws, ws_per_message_deflate=False)


def prepare(url: str, n_subscribers: int) -> None:
    from api.security import set_hash_cost
    from api.users import create_user
    from engine.store.db import make_engine, upgrade
    from engine.store.models import BotConfigRow, BotRow, SubscriptionRow

    set_hash_cost(1, 8192)  # many users to create; login cost is not what is measured
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as db:
        owner = create_user(db, "owner", "trader", PASSWORD)
        db.add(BotRow(id="bench-bot", name="bench-bot", strategy="sma_cross", account_id="default", config={},
                      status="RUNNING", next_order_seq=0, checkpoint=-1, published_at=owner.created_at))
        db.flush()
        db.add(BotConfigRow(bot_id="bench-bot", version=1, owner_id=owner.id, config={"id": "bench-bot"},
                            created_by="owner"))
        for n in range(n_subscribers):
            user = create_user(db, f"sub{n:04d}", "subscriber", PASSWORD)
            user.plan = "pro"  # an entitlement: set in the store, as an admin would
            db.add(SubscriptionRow(user_id=user.id, bot_id="bench-bot", plan="pro"))
        db.commit()
    engine.dispose()


def api_keys(base: str, n: int) -> list[str]:
    """One API key per subscriber (log in, create a key): what an automated client would hold."""
    keys = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(n):
            token = http.post("/api/v1/auth/token", json={"username": f"sub{i:04d}", "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            keys.append(http.post("/api/v1/auth/api-keys", json={"name": "bench"}, headers=headers).json()["key"])
    return keys


def producer(url: str, rate: float, seconds: float, done: threading.Event, sent: list[int]) -> None:
    from engine.store.db import make_engine
    from engine.store.models import SignalRow

    engine = make_engine(url)
    interval, next_at, end = 1.0 / rate, time.perf_counter(), time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        t0 = time.time_ns()
        with engine.begin() as c:
            c.execute(insert(SignalRow.__table__).values(bot_id="bench-bot", symbol="SPY", ts=t0,
                                                          direction=1 - 2 * (n % 2), payload={"t0": t0, "n": n}))
        sent.append(t0)
        n += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    done.set()
    engine.dispose()


async def subscriber(ws_url: str, key: str, latencies: list[int], counts: list[int], ready: asyncio.Event,
                     connected: list[int], total: int, stop: asyncio.Event) -> None:
    async with websockets.connect(f"{ws_url}?api_key={key}", max_queue=None, ping_interval=None,
                                  open_timeout=60) as ws:
        connected[0] += 1
        if connected[0] == total:
            ready.set()
        received = 0
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            now = time.time_ns()
            latencies.append(now - json.loads(frame)["signal"]["payload"]["t0"])
            received += 1
        counts.append(received)


async def fanout(base: str, keys: list[str], url: str, rate: float, seconds: float) -> dict[str, float]:
    ws_url = base.replace("http://", "ws://") + "/api/v1/signals/ws"
    latencies: list[int] = []
    counts: list[int] = []
    ready, stop, connected = asyncio.Event(), asyncio.Event(), [0]
    tasks = []
    for key in keys:  # connect in waves so the listen backlog is not the thing measured
        tasks.append(asyncio.create_task(subscriber(ws_url, key, latencies, counts, ready, connected, len(keys), stop)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.2)
    await asyncio.wait_for(ready.wait(), 120)
    done, sent = threading.Event(), []
    thread = threading.Thread(target=producer, args=(url, rate, seconds, done, sent), daemon=True)
    thread.start()
    while not done.is_set():
        await asyncio.sleep(0.1)
    expected = len(sent) * len(keys)
    deadline = time.monotonic() + 10
    while len(latencies) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    ms = sorted(x / 1e6 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"signals": len(sent), "deliveries": len(ms), "expected": expected, "p50": pick(0.50), "p99": pick(0.99),
            "max": ms[-1], "mean": statistics.fmean(ms)}


async def rest_rate(base: str, key: str, seconds: float, concurrency: int = 16) -> float:
    n = 0
    end = time.perf_counter() + seconds

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal n
        while time.perf_counter() < end:
            response = await http.get("/api/v1/signals", params={"limit": 100})
            assert response.status_code == 200, response.text
            n += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def _cpu(pid: int) -> float:
    """user + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="signals inserted per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--poll", type=float, default=0.05, help="the API's signal poll interval, s")
    parser.add_argument("--port", type=int, default=18777)
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn's WebSocket implementation")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="tickbridge-fanout-")
    url = f"sqlite:///{os.path.join(workdir, 'fanout.db')}"
    started = time.perf_counter()
    prepare(url, args.clients)
    print(f"prepared {args.clients} subscribers in {time.perf_counter() - started:.1f} s")
    server = mp.get_context("spawn").Process(target=serve, args=(url, args.port, args.poll, args.ws), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{args.port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        keys = api_keys(base, args.clients)
        cpu_server, cpu_client = _cpu(server.pid), _cpu(os.getpid())
        figures = asyncio.run(fanout(base, keys, url, args.rate, args.seconds))
        cpu_server, cpu_client = _cpu(server.pid) - cpu_server, _cpu(os.getpid()) - cpu_client
        print(f"fan-out: {args.clients} WebSocket subscribers, {figures['signals']} signals at {args.rate:g}/s, "
              f"poll {args.poll * 1000:g} ms: {figures['deliveries']:,}/{figures['expected']:,} deliveries")
        print(f"  delivery latency p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
              f"max {figures['max']:.1f} ms, mean {figures['mean']:.1f} ms (target p99 <= 100 ms)")
        print(f"  CPU during the fan-out: API process {cpu_server:.1f} s, client process {cpu_client:.1f} s "
              f"(2 cores shared by both)")
        rps = asyncio.run(rest_rate(base, keys[0], 5.0))
        print(f"GET /api/v1/signals?limit=100: {rps:,.0f} requests/s (16 concurrent clients, 5 s)")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
