"""Signal fan-out through the control API: many WebSocket subscribers, one shared poller.

    .venv/bin/python bench/api_fanout.py [--clients 1000] [--rate 20] [--seconds 15] [--poll 0.05]
                                         [--client-procs N] [--server-path DIR] [--writer external|api]
                                         [--json out.json]

1. Starts the API (uvicorn, its own process, as `tickbridge serve` runs it: no per-message
   deflate) on loopback over a SQLite store (WAL).
2. Connects N WebSocket clients (/api/v1/signals/ws), each a subscriber with a pro subscription,
   spread over --client-procs client processes (default: the CPU count), so that the load
   generator is not what is measured; their latencies are gathered and ranked together. They use
   a lean client (RawClient, --client raw) unless --client websockets is given.
   --client-procs 0 plays every client in this process (the old mode).
3. Inserts signals into the store at a steady rate from another process's view (plain SQL inserts,
   as the runtime's SqlSignals does), each stamped with its insert time, and measures delivery
   latency = client receive time - insert time, over every (signal, client) pair: p50, p99, max;
   and per signal (raw client) the latency of its first receipt (the wait for the poller, and the
   scheduling of API and clients) and the spread from its first to its last of N receipts.
   --writer api inserts them from a thread of the API's own process instead, announcing each
   (engine.signals.announce_stored), as bots under TICKBRIDGE_RUNTIME=thread would: the hub is
   woken rather than polling.
4. GET /api/v1/signals (limit 100) requests/s with 16 concurrent keep-alive clients.
Prints figures only; results go to docs/benchmarks.md. Target: p99 <= 100 ms.

On a shared machine wall-clock latency says more about the other jobs than about the server: the
CPU seconds of the API process and of the client processes per delivery are printed too, with
the load average before and after. --server-path DIR runs the API from another source tree (an
older copy of the code, to compare before/after in interleaved runs).
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


def serve(url: str, port: int, poll: float, ws: str, server_path: str | None = None,
          in_server: tuple[Any, Any, Any, float, float] | None = None) -> None:
    """The API under uvicorn; with `in_server` (go, done, count, rate, seconds) the producer runs
    in this process too, on a thread (as bots of TICKBRIDGE_RUNTIME=thread do), from `go` on."""
    if server_path:
        sys.path.insert(0, server_path)
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    if in_server is not None:
        threading.Thread(target=_producer_in_server, args=(url, *in_server), daemon=True).start()
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


def producer(url: str, rate: float, seconds: float, done: threading.Event, sent: list[int],
             announce: Any = None) -> None:
    """Insert signals at `rate` for `seconds`, each stamped with its insert time (payload t0);
    `announce` after each commit (engine.signals.announce_stored: what SqlSignals does when the
    writer shares the API's process)."""
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
        if announce is not None:
            announce()
        sent.append(t0)
        n += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    done.set()
    engine.dispose()


def _producer_in_server(url: str, go: Any, done_evt: Any, count: Any, rate: float, seconds: float) -> None:
    """The producer on a thread of the API's process: waits for `go`, then reports how many it sent."""
    import engine.signals as signals

    go.wait()
    done, sent = threading.Event(), []  # type: ignore[var-annotated]
    producer(url, rate, seconds, done, sent, getattr(signals, "announce_stored", None))  # None: an old tree
    count.value = len(sent)
    done_evt.set()


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


async def fanout(base: str, keys: list[str], url: str, rate: float, seconds: float,
                 server_pid: int) -> dict[str, float]:
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
    cpu_server, cpu_client = _cpu(server_pid), _cpu(os.getpid())  # from here: not the connects (argon2)
    done, sent = threading.Event(), []
    thread = threading.Thread(target=producer, args=(url, rate, seconds, done, sent), daemon=True)
    thread.start()
    while not done.is_set():
        await asyncio.sleep(0.1)
    expected = len(sent) * len(keys)
    deadline = time.monotonic() + 10
    while len(latencies) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    cpu_server, cpu_client = _cpu(server_pid) - cpu_server, _cpu(os.getpid()) - cpu_client
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {**_figures(latencies, len(sent), len(keys)), "server_cpu": cpu_server, "client_cpu": cpu_client}


class RawClient(asyncio.Protocol):
    """A lean WebSocket subscriber for the load generator: the opening handshake by hand, then
    server frames (unmasked, unfragmented text, as the API sends them) cut out of the byte stream;
    the latency read from the payload's "t0" without decoding the whole frame. ~10x cheaper per
    frame than the websockets client, so that the clients are not what the benchmark measures."""

    def __init__(self, latencies: list[int], opened: asyncio.Future[None], stamps: list[int] | None = None) -> None:
        self.latencies, self.opened, self.buffer, self.received = latencies, opened, b"", 0
        self.stamps = stamps  # each delivery's t0 (which signal it was), beside its latency
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.opened.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(buffer[:end].decode(errors="replace")))
                return
            self.opened.set_result(None)
            buffer = buffer[end + 4:]
        at, n, latencies, stamps = 0, len(buffer), self.latencies, self.stamps
        while n - at >= 2:
            size, head = buffer[at + 1] & 0x7F, 2
            if size == 126:
                if n - at < 4:
                    break
                size, head = int.from_bytes(buffer[at + 2:at + 4], "big"), 4
            elif size == 127:
                if n - at < 10:
                    break
                size, head = int.from_bytes(buffer[at + 2:at + 10], "big"), 10
            if n - at < head + size:
                break
            if buffer[at] == 0x81:
                start = buffer.find(b'"t0": ', at + head, at + head + size) + 6
                stop = start
                while 48 <= buffer[stop] <= 57:
                    stop += 1
                t0 = int(buffer[start:stop])
                latencies.append(time.time_ns() - t0)
                if stamps is not None:
                    stamps.append(t0)
                self.received += 1
            at += head + size
        self.buffer = buffer[at:]


async def raw_subscriber(host: str, port: int, key: str, latencies: list[int],
                         stamps: list[int] | None = None) -> tuple[Any, RawClient]:
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    transport, protocol = await loop.create_connection(lambda: RawClient(latencies, opened, stamps), host, port)
    transport.write(f"GET /api/v1/signals/ws?api_key={key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    await asyncio.wait_for(opened, 60)
    return transport, protocol


def client_process(ws_url: str, keys: list[str], ready: Any, signals: Any, results: Any, raw: bool = True) -> None:
    """One client process: connect its share of the subscribers, say so, receive until each has
    every signal (`signals` is -1 while the producer runs) or 10 s after the producer ended;
    report (latencies in ns as int64 bytes, per-client counts, CPU seconds while receiving, each
    latency's signal t0 as int64 bytes: empty for the websockets client)."""
    from array import array

    async def run() -> tuple[bytes, list[int], float, bytes]:
        latencies: list[int] = []
        stamps: list[int] = []
        counts: list[int] = []
        connected_evt, stop, connected = asyncio.Event(), asyncio.Event(), [0]
        tasks: list[Any] = []
        host, port = ws_url.split("//")[1].split("/")[0].split(":")
        for key in keys:
            if raw:
                tasks.append(asyncio.create_task(raw_subscriber(host, int(port), key, latencies, stamps)))
            else:
                tasks.append(asyncio.create_task(subscriber(ws_url, key, latencies, counts, connected_evt, connected,
                                                            len(keys), stop)))
            if len(tasks) % 100 == 0:
                await asyncio.sleep(0.2)
        if raw:
            opened = await asyncio.gather(*tasks)
        else:
            await asyncio.wait_for(connected_evt.wait(), 120)
        cpu = time.process_time()
        ready.put(len(keys))
        deadline = None
        while True:
            total = signals.value
            if total >= 0:
                if len(latencies) >= total * len(keys):
                    break
                deadline = deadline or time.monotonic() + 10
                if time.monotonic() > deadline:
                    break
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu
        stop.set()
        if raw:
            counts = [protocol.received for _, protocol in opened]
            for transport, _ in opened:
                transport.close()
        else:
            await asyncio.gather(*tasks, return_exceptions=True)
        return array("q", latencies).tobytes(), counts, cpu, array("q", stamps).tobytes()

    results.put(asyncio.run(run()))


async def fanout_procs(base: str, keys: list[str], url: str, rate: float, seconds: float,
                       procs: int, raw: bool, server_pid: int, in_server: Any = None) -> dict[str, float]:
    """fanout() with the clients in `procs` processes (spawned: no inherited event loop); with
    `in_server` (go, done, count) the producer runs in the API's process."""
    from array import array

    ctx = mp.get_context("spawn")
    ws_url = base.replace("http://", "ws://") + "/api/v1/signals/ws"
    ready, results, signals = ctx.Queue(), ctx.Queue(), ctx.Value("q", -1)
    shares = [keys[i::procs] for i in range(procs)]
    workers = [ctx.Process(target=client_process, args=(ws_url, share, ready, signals, results, raw), daemon=True)
               for share in shares if share]
    for worker in workers:
        worker.start()
    for _ in workers:
        await asyncio.to_thread(ready.get, True, 180)
    cpu_server = _cpu(server_pid)  # from here: not the connects (each authenticates an argon2 API key)
    if in_server is not None:
        go, done_evt, count = in_server
        go.set()
        await asyncio.to_thread(done_evt.wait, seconds + 60)
        n_sent = count.value
    else:
        done, sent = threading.Event(), []
        thread = threading.Thread(target=producer, args=(url, rate, seconds, done, sent), daemon=True)
        thread.start()
        while not done.is_set():
            await asyncio.sleep(0.1)
        n_sent = len(sent)
    signals.value = n_sent
    latencies: list[int] = []
    stamps: list[int] = []
    cpu = 0.0
    for _ in workers:
        raw, _counts, seconds_cpu, raw_stamps = await asyncio.to_thread(results.get, True, 120)
        latencies.extend(array("q", raw))
        stamps.extend(array("q", raw_stamps))
        cpu += seconds_cpu
    cpu_server = _cpu(server_pid) - cpu_server
    for worker in workers:
        worker.join(10)
    figures = _figures(latencies, n_sent, len(keys))
    figures.update(_per_signal(latencies, stamps))
    figures["client_cpu"], figures["server_cpu"] = cpu, cpu_server
    return figures


def _per_signal(latencies: list[int], stamps: list[int]) -> dict[str, float]:
    """Per signal: the latency of its first receipt (store -> poller -> first socket -> a client:
    what waiting for the poll costs) and the spread from its first to its last receipt (the
    fan-out to every client, and the clients' own scheduling); the median and p99 of each, ms."""
    if len(stamps) != len(latencies) or not stamps:
        return {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t0, latency in zip(stamps, latencies):
        if latency < first.get(t0, 1 << 62):
            first[t0] = latency
        if latency > last.get(t0, -1):
            last[t0] = latency
    firsts = sorted(v / 1e6 for v in first.values())
    spreads = sorted((last[t0] - first[t0]) / 1e6 for t0 in first)
    pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return {"first_p50": pick(firsts, 0.5), "first_p99": pick(firsts, 0.99),
            "spread_p50": pick(spreads, 0.5), "spread_p99": pick(spreads, 0.99)}


def _figures(latencies: list[int], signals: int, clients: int) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"signals": signals, "deliveries": len(ms), "expected": signals * clients, "p50": pick(0.50),
            "p99": pick(0.99), "max": ms[-1], "mean": statistics.fmean(ms)}


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
    parser.add_argument("--client-procs", type=int, default=os.cpu_count() or 1,
                        help="client processes (0: every client in this process, the old mode)")
    parser.add_argument("--server-path", default=None,
                        help="run the API from this source tree (put first on the server's sys.path)")
    parser.add_argument("--client", choices=("raw", "websockets"), default="raw",
                        help="client processes' WebSocket client: the lean one, or the websockets library")
    parser.add_argument("--writer", choices=("external", "api"), default="external",
                        help="where signals are written: another process (the API polls for them; "
                             "TICKBRIDGE_RUNTIME=process) or a thread of the API's process (it is woken)")
    parser.add_argument("--no-rest", action="store_true", help="skip the GET /signals rate")
    parser.add_argument("--workdir", default=None,
                        help="keep the store and the API keys here and reuse them on the next run")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the fan-out figures (ms, CPU s, load) as JSON to this file")
    args = parser.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="tickbridge-fanout-")
    os.makedirs(workdir, exist_ok=True)
    url = f"sqlite:///{os.path.join(workdir, 'fanout.db')}"
    saved = Path(workdir, f"keys-{args.clients}.json")
    if not saved.exists():
        started = time.perf_counter()
        prepare(url, args.clients)
        print(f"prepared {args.clients} subscribers in {time.perf_counter() - started:.1f} s")
    spawn = mp.get_context("spawn")
    in_server = (spawn.Event(), spawn.Event(), spawn.Value("q", 0)) if args.writer == "api" else None
    server = spawn.Process(target=serve, daemon=True,
                           args=(url, args.port, args.poll, args.ws, args.server_path,
                                 None if in_server is None else (*in_server, args.rate, args.seconds)))
    server.start()
    base = f"http://127.0.0.1:{args.port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        if saved.exists():
            keys = json.loads(saved.read_text())
        else:
            keys = api_keys(base, args.clients)
            saved.write_text(json.dumps(keys))
        load_before = os.getloadavg()
        if args.client_procs > 0:
            figures = asyncio.run(fanout_procs(base, keys, url, args.rate, args.seconds, args.client_procs,
                                                args.client == "raw", server.pid, in_server))
            clients_are = f"{args.client_procs} client processes ({args.client} client)"
        else:
            if in_server is not None:
                parser.error("--writer api needs --client-procs >= 1")
            figures = asyncio.run(fanout(base, keys, url, args.rate, args.seconds, server.pid))
            clients_are = "1 client process (this one, with the producer thread)"
        cpu_server, cpu_client = figures["server_cpu"], figures["client_cpu"]
        load_after = os.getloadavg()
        per = max(1, figures["deliveries"])
        print(f"fan-out: {args.clients} WebSocket subscribers in {clients_are}, {figures['signals']} signals at "
              f"{args.rate:g}/s written {'in the API process' if in_server else 'by another process'}, "
              f"poll {args.poll * 1000:g} ms, "
              f"API from {args.server_path or 'this tree'}: {figures['deliveries']:,}/{figures['expected']:,} "
              f"deliveries")
        print(f"  delivery latency p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
              f"max {figures['max']:.1f} ms, mean {figures['mean']:.1f} ms (target p99 <= 100 ms); "
              f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs")
        if "first_p50" in figures:
            print(f"  per signal: first receipt p50 {figures['first_p50']:.1f} ms, p99 {figures['first_p99']:.1f} ms; "
                  f"first to last of {args.clients} clients p50 {figures['spread_p50']:.1f} ms, "
                  f"p99 {figures['spread_p99']:.1f} ms")
        print(f"  CPU from all connected to all received: API process {cpu_server:.2f} s = "
              f"{cpu_server / per * 1e6:.1f} us per delivery; clients {cpu_client:.2f} s = "
              f"{cpu_client / per * 1e6:.1f} us per delivery")
        if args.json:
            args.json.write_text(json.dumps({
                "clients": args.clients, "rate": args.rate, "seconds": args.seconds, "poll": args.poll,
                "server_path": args.server_path, "clients_are": clients_are, "writer": args.writer,
                "load_before": list(load_before), "load_after": list(load_after), "cpus": os.cpu_count(),
                **figures}, indent=1))
        if not args.no_rest:
            rps = asyncio.run(rest_rate(base, keys[0], 5.0))
            print(f"GET /api/v1/signals?limit=100: {rps:,.0f} requests/s (16 concurrent clients, 5 s)")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
