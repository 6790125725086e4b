"""`tickbridge serve` stops on SIGTERM (issue 11, item 9): with an SSE and a WebSocket client
connected and a paper bot trading, one SIGTERM ends both streams, stops the bot cleanly (its row
in the store says STOPPED) and the process exits with status 0.

How long it takes is printed, not asserted (the machine is shared): the bound below only keeps a
hang from stalling the suite. docs/benchmarks.md has the measured figure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from websockets.sync.client import connect

from api.security import set_hash_cost
from api.users import create_user
from engine.store.db import make_engine, upgrade
from engine.store.models import BotRow

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sigterm-password-1"
BOUND_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_exits_cleanly_on_sigterm_with_streams_open(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    set_hash_cost(time_cost=1, memory_kib=8192)  # the stored hash says its cost: the server verifies it cheaply
    engine = make_engine(url)
    with Session(engine) as db:
        create_user(db, "tom", "trader", PASSWORD)
        db.commit()
    port = free_port()
    env = {**os.environ, "TICKBRIDGE_DATABASE_URL": url, "TICKBRIDGE_JWT_SECRET": "s" * 40,
           "TICKBRIDGE_STATE_DIR": str(tmp_path / "var"), "TICKBRIDGE_FEED_PATH": str(ROOT / "data" / "ticks"),
           "TICKBRIDGE_FEED_SPEED": "60"}
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(server.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        http = httpx.Client(base_url=base, timeout=BOUND_S)
        deadline = time.monotonic() + BOUND_S
        while True:
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        token = http.post("/auth/token", json={"username": "tom", "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        bot = {"id": "tom-bot", "strategy": "sma_cross", "symbol": "EURUSD", "bar": "1min",
               "params": {"fast": 10, "slow": 30}, "cash": "10000", "on_stop": "cancel"}
        created = http.post("/bots", json=bot, headers=headers)
        assert created.status_code == 201, created.text
        runtime_id = created.json().get("runtime_id", "tom-bot")  # the store's id of the bot
        assert http.post("/bots/tom-bot/start", headers=headers).status_code == 200

        sse = httpx.Client(base_url=base, timeout=httpx.Timeout(BOUND_S))
        stream = sse.stream("GET", "/signals/sse", headers=headers)
        response = stream.__enter__()
        lines = response.iter_lines()
        assert next(lines) == ": connected"
        ws = connect(f"ws://127.0.0.1:{port}/api/v1/signals/ws", additional_headers=headers, open_timeout=BOUND_S)

        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        rest = []
        for line in lines:  # ends when the server ends the stream (keepalives would go on forever)
            rest.append(line)
            assert time.monotonic() - sent < BOUND_S, "the SSE stream outlived the SIGTERM"
        ws_closed = _closed_code(ws)
        returncode = server.wait(BOUND_S)
        took = time.monotonic() - sent
        stream.__exit__(None, None, None)
        sse.close()
        http.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    reader.join(BOUND_S)
    log = "".join(output)
    print(f"tickbridge serve exited {took:.1f} s after SIGTERM with status {returncode}")
    assert returncode == 0, log
    assert all(not line.startswith("data:") or line for line in rest)
    assert ws_closed in (1001, 1012), ws_closed  # going away / service restart: reconnect later
    with Session(engine) as db:
        assert db.scalar(select(BotRow.status).where(BotRow.id == runtime_id)) == "STOPPED"
    engine.dispose()


def _closed_code(ws) -> int | None:  # type: ignore[no-untyped-def]
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws.recv(BOUND_S)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        return None
