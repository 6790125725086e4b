"""The control API under load, with a paper bot trading in the same server (issue 11, item 2).

    .venv/bin/python bench/api_load.py [--clients 10,60,200,500] [--seconds 60] [--idle 20]
                                       [--login-share 0.05] [--url DATABASE_URL] [--env K=V ...]

1. Builds a long tick file (the bundled real EURUSD day, repeated back to back with shifted
   times) so the bot never runs out during the run, a store (a temp SQLite file unless --url) with
   one trader, and starts `tickbridge serve` as a SUBPROCESS on a free loopback port, its bot
   runtime replaying that file as fast as it can (--speed 0, the default: its ticks/s then show
   how much CPU it gets) or at a fixed speed (--speed N: then it should simply keep pace).
2. Creates and starts a paper bot (sma_cross on 1-minute bars) through the API.
3. Idle: measures the bot's ticks/s with no load (from its status counter, sampled every second
   by a probe connection that is not part of the load).
4. For each client count: that many concurrent keep-alive clients (asyncio + aiohttp, this
   process) send requests back to back for --seconds: authenticated reads (GET /bots,
   /bots/{id}/status, /bots/{id}/orders, /bots/{id}/fills, /signals, /auth/me, equally) and, with
   probability --login-share, a login (POST /auth/token: argon2 at its production cost). Reports
   requests/s, p50 and p99 latency, the answers by status (and timeouts / refused connections),
   and the bot's ticks/s during the step against its idle rate. A client told 503/429 waits the
   Retry-After it was given, as a well-behaved client does (--ignore-retry-after: it does not).
5. Idle again, then SIGTERM to the server: how long it took to exit and its exit status.

The load generator and the server share the machine's cores (2 on the project's machine): the
figures are the pair's, not the server's alone. Prints figures only; results go to
docs/benchmarks.md ("API under load").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

USER, PASSWORD = "bench-trader", "bench-password-1"
BOT = {"id": "bench-bot", "strategy": "sma_cross", "symbol": "EURUSD", "bar": "1min",
       "params": {"fast": 10, "slow": 30, "mode": "long_short", "fixed_size": 5000},
       "cash": "10000", "commission": "0.00002", "on_stop": "cancel"}
JWT_SECRET = "bench-jwt-secret-" + "x" * 40
REQUEST_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_tick_file(target: Path, repeats: int) -> int:
    """The real EURUSD day repeated `repeats` times, each copy shifted by whole days."""
    from backtest.data import load_ticks

    day = load_ticks(ROOT / "data" / "ticks" / "EURUSD_fxcm_20140505.csv.gz")[["bid", "ask"]]
    copies = []
    for k in range(repeats):
        copy = day.copy()
        copy.index = day.index + pd.Timedelta(days=k)
        copies.append(copy)
    frame = pd.concat(copies)
    frame.index.name = "time"
    frame.reset_index().to_parquet(target, index=False)
    return len(frame)


def prepare_store(url: str) -> None:
    from sqlalchemy.orm import Session

    from api.users import create_user
    from engine.store.db import make_engine, upgrade

    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as db:
        create_user(db, USER, "trader", PASSWORD)
        db.commit()
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runtime_pid(server_pid: int) -> int | None:
    """The server's child that runs the bots (live.remote), if it has one."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == server_pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            return int(entry)
    return None


@dataclass
class Step:
    name: str
    clients: int
    seconds: float
    reads: list[float] = field(default_factory=list)
    logins: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    by_op: Counter[str] = field(default_factory=Counter)
    ticks: list[tuple[float, int]] = field(default_factory=list)
    market: list[tuple[float, int]] = field(default_factory=list)  # (wall s, last tick's market ns)
    cpu: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0

    def tick_rate(self) -> float | None:
        """Least-squares ticks/s over the probe's samples (each stamped mid-request)."""
        if len(self.ticks) < 3:
            return None
        t = np.array([s[0] for s in self.ticks])
        n = np.array([s[1] for s in self.ticks], dtype=float)
        return float(np.polyfit(t - t[0], n, 1)[0])

    def pace(self, speed: float) -> float | None:
        """Market time the bot got through per wall second, over its speed: 1.0 = on schedule
        (a paced replay falls below it by its processing time, and further when starved)."""
        if len(self.market) < 3 or not speed:
            return None
        t = np.array([s[0] for s in self.market])
        ns = np.array([s[1] for s in self.market], dtype=float)
        return float(np.polyfit(t - t[0], ns / 1e9, 1)[0]) / speed

    def row(self, idle: float | None) -> str:
        """One markdown table row (HEADER names the columns)."""
        total = sum(self.statuses.values())
        ok = sum(v for k, v in self.statuses.items() if k.startswith("2"))
        rate = self.tick_rate()
        bot = "n/a" if rate is None else f"{rate:,.0f}" + (f" ({rate / idle * 100:.0f} %)" if idle else "")
        shed = self.statuses.get("503", 0) + self.statuses.get("429", 0)
        other = {k: v for k, v in sorted(self.statuses.items()) if not k.startswith("2") and k not in ("503", "429")}
        cpu = " / ".join(f"{self.cpu[k] * 100:.0f}" if k in self.cpu else "-" for k in ("server", "runtime", "client"))
        per_s = (lambda n: n / self.elapsed) if self.elapsed else (lambda n: 0.0)
        return (f"| {self.name} | {per_s(total):,.1f} | {per_s(ok):,.1f} | {_pct(self.reads, 50)} | "
                f"{_pct(self.reads, 99)} | {_pct(self.logins, 50)} | {_pct(self.logins, 99)} | "
                f"{shed / total * 100 if total else 0:.1f} % | "
                f"{', '.join(f'{k}: {v}' for k, v in other.items()) or '0'} | {bot} | {cpu} |")


HEADER = ("| step | req/s | 2xx/s | read p50 ms | read p99 ms | login p50 ms | login p99 ms | shed (503/429) | "
          "500s and failures | bot ticks/s (% of idle) | CPU % server / runtime / client |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def _pct(values: list[float], q: int) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000:,.0f}"


class Bench:
    def __init__(self, base: str, login_share: float, honour_retry_after: bool) -> None:
        self.base, self.login_share, self.honour_retry_after = base, login_share, honour_retry_after
        self.headers: dict[str, str] = {}

    async def login(self, session: aiohttp.ClientSession) -> dict[str, str]:
        for _ in range(60):
            async with session.post(f"{self.base}/auth/token", json={"username": USER, "password": PASSWORD}) as r:
                if r.status == 200:
                    return {"Authorization": f"Bearer {(await r.json())['access_token']}"}
            await asyncio.sleep(1)
        raise RuntimeError("could not log in")

    async def setup(self) -> None:
        async with aiohttp.ClientSession() as session:
            self.headers = await self.login(session)
            async with session.post(f"{self.base}/bots", json=BOT, headers=self.headers) as r:
                assert r.status == 201, await r.text()
            async with session.post(f"{self.base}/bots/{BOT['id']}/start", headers=self.headers) as r:
                assert r.status == 200, await r.text()

    async def probe(self, step: Step, stop: asyncio.Event) -> None:
        """The bot's tick counter once a second, on a connection of its own (not counted as load)."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    async with session.get(f"{self.base}/bots/{BOT['id']}/status", headers=self.headers) as r:
                        body = await r.json() if r.status == 200 else None
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    body = None
                got = time.monotonic()
                if body is not None and body.get("state") == "RUNNING":
                    step.ticks.append(((sent + got) / 2, int(body["ticks"])))
                    if body.get("last_tick_ts"):
                        step.market.append(((sent + got) / 2, int(body["last_tick_ts"])))
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (got - sent)))
                except asyncio.TimeoutError:
                    pass

    async def client(self, session: aiohttp.ClientSession, step: Step, deadline: float, rng: random.Random) -> None:
        reads = ["/bots", f"/bots/{BOT['id']}/status", f"/bots/{BOT['id']}/orders", f"/bots/{BOT['id']}/fills",
                 "/signals", "/auth/me"]
        while time.monotonic() < deadline:
            login = rng.random() < self.login_share
            op = "login" if login else rng.choice(reads)
            started = time.monotonic()
            retry_after = None
            try:
                if login:
                    request = session.post(f"{self.base}/auth/token", json={"username": USER, "password": PASSWORD})
                else:
                    request = session.get(self.base + op, headers=self.headers)
                async with request as r:
                    await r.read()
                    status = str(r.status)
                    retry_after = r.headers.get("Retry-After")
            except asyncio.TimeoutError:
                status = "timeout"
            except aiohttp.ClientError as exc:
                status = type(exc).__name__
            (step.logins if login else step.reads).append(time.monotonic() - started)
            step.statuses[status] += 1
            step.by_op[f"{op.split('/')[-1] or op} {status}"] += 1
            if self.honour_retry_after and status in ("429", "503") and retry_after and retry_after.isdigit():
                await asyncio.sleep(min(float(retry_after), max(0.0, deadline - time.monotonic())))

    async def run_step(self, step: Step, pids: dict[str, int | None]) -> None:
        stop = asyncio.Event()
        probe = asyncio.create_task(self.probe(step, stop))
        started = time.monotonic()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}
        if step.clients:
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                deadline = started + step.seconds
                rng = random.Random(step.clients)
                await asyncio.gather(*(self.client(session, step, deadline, random.Random(rng.random()))
                                       for _ in range(step.clients)))
        else:
            await asyncio.sleep(step.seconds)
        step.elapsed = time.monotonic() - started
        step.cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / step.elapsed
                    for name, pid in pids.items() if pid is not None}
        stop.set()
        await probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="10,60,200,500", help="comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each load step")
    parser.add_argument("--idle", type=float, default=20.0, help="duration of the idle measurements")
    parser.add_argument("--login-share", type=float, default=0.05, help="share of requests that are logins")
    parser.add_argument("--url", default=None, help="database URL (default: a temp SQLite file)")
    parser.add_argument("--repeats", type=int, default=0, help="copies of the tick day (default: from the run time)")
    parser.add_argument("--env", action="append", default=[], help="extra K=V for the server's environment")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server log, store)")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="the bot's replay speed, x real time (0: as fast as it can)")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="run this load generator N nice levels lower (it stands in for remote clients)")
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="clients retry at once after a 503/429 instead of waiting Retry-After")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.client_nice:
        os.nice(args.client_nice)

    tmp = Path(tempfile.mkdtemp(prefix="tickbridge-load-"))
    url = args.url or f"sqlite:///{tmp / 'load.db'}"
    (tmp / "ticks").mkdir()
    total_s = 2 * args.idle + len(counts) * (args.seconds + 15) + 60
    repeats = args.repeats or max(4, int(total_s * 25_000 / 58_143) + 1)  # room for 25k ticks/s
    n_ticks = long_tick_file(tmp / "ticks" / "EURUSD_bench.parquet", repeats)
    prepare_store(url)
    port = free_port()
    env = {**os.environ, "TICKBRIDGE_DATABASE_URL": url, "TICKBRIDGE_JWT_SECRET": JWT_SECRET,
           "TICKBRIDGE_FEED_PATH": str(tmp / "ticks"), "TICKBRIDGE_FEED_SPEED": f"{args.speed:g}",
           "TICKBRIDGE_STATE_DIR": str(tmp / "var"), "TICKBRIDGE_AUTH_RATE": "100000000"}
    env.update(kv.split("=", 1) for kv in args.env)
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    print(f"server pid {server.pid} on {base}; store {url.split('://')[0]}; tick file {n_ticks:,} ticks; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    print(f"steps: clients {counts} x {args.seconds:g} s, logins {args.login_share * 100:g} % of requests, "
          f"bot at {'full speed' if not args.speed else f'{args.speed:g}x'}, clients "
          f"{'ignore' if args.ignore_retry_after else 'honour'} Retry-After, client nice +{args.client_nice}, "
          f"extra server env {args.env or 'none'}")
    try:
        try:
            from uvloop import run as run_loop  # the client's own CPU matters on a shared machine
        except ImportError:
            run_loop = asyncio.run
        run_loop(_run(base, server, counts, args))
    finally:
        if server.poll() is None:
            sent = time.monotonic()
            server.send_signal(signal.SIGTERM)
            try:
                rc = server.wait(60)
                print(f"SIGTERM -> server exited in {time.monotonic() - sent:.1f} s with status {rc}")
            except subprocess.TimeoutExpired:
                print("SIGTERM -> server still running after 60 s: SIGKILL")
                server.kill()
                server.wait()
        log.close()
        print(f"load average {os.getloadavg()[0]:.2f} at the end" + (f"; server log {tmp / 'server.log'}"
                                                                     if args.keep else ""))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


async def _run(base: str, server: subprocess.Popen, counts: list[int], args: argparse.Namespace) -> None:
    bench = Bench(base, args.login_share, not args.ignore_retry_after)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError("the server exited at start; see its log")
            try:
                async with session.get(f"{base}/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    await bench.setup()
    await asyncio.sleep(10)  # the bot's first seconds (imports, first bars) out of the idle figure
    # an idle window before and after every load step: the step's tick rate is compared with the
    # mean of the two around it, which cancels the bot's own drift (its live indicators are
    # recomputed over all bars so far at each bar close, so a long replay slows down by itself)
    steps = [Step("idle", 0, args.idle)]
    for c in counts:
        steps += [Step(f"{c} clients", c, args.seconds), Step("idle", 0, args.idle)]
    pids = {"server": server.pid, "runtime": runtime_pid(server.pid), "client": os.getpid()}
    print(f"bot runtime: {'its own process, pid %d' % pids['runtime'] if pids['runtime'] else 'in the server'}")
    print(HEADER)
    notes = []
    for i, step in enumerate(steps):
        await bench.run_step(step, pids)
        if step.clients:
            top = ", ".join(f"{k}: {v}" for k, v in step.by_op.most_common() if not k.split()[-1].startswith("2"))
            notes.append(f"{step.name}: non-2xx by operation: {top[:300] or 'none'}")
            await asyncio.sleep(5)  # let queues drain before the idle window
        else:
            if i >= 2:  # this idle window closes the load step before it: print that one first
                around = [r for r in (steps[i - 2].tick_rate(), step.tick_rate()) if r]
                print(steps[i - 1].row(sum(around) / len(around) if around else None), flush=True)
            print(step.row(None), flush=True)
    if args.speed:
        paces = [f"{st.name}: {p * 100:.0f} %" for st in steps if (p := st.pace(args.speed)) is not None]
        print(f"replay pace at {args.speed:g}x (market time per wall second / speed): " + "; ".join(paces))
        if server.poll() is not None:
            raise RuntimeError(f"the server died (status {server.returncode})")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
