"""CI proof of the README's first command: the main job runs on the BASE install.

Run with the interpreter of a virtual environment that has only `pip install -e .` (what
`make demo` installs; no test extras), so an import that only a test extra brings (httpx was
one) fails here instead of on a user's fresh machine. Standard library only, for that reason.

It starts `tickbridge demo` on a free port with a throwaway SQLite store, waits for
/api/v1/health, logs in as the demo trader, waits until the demo bot has traded (a fill in
/bots/<id>/fills), then stops it with SIGINT and requires a clean exit (status 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

DEADLINE_S = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    bindir = Path(sys.executable).parent
    from app.demo import DEMO_BOT, TRADER  # the logins and bot the demo prints

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="tickbridge-demo-check-"))
    command = [str(bindir / "tickbridge"), "demo", "--port", str(port), "--speed", "1000",
               "--url", f"sqlite:///{work / 'demo.db'}"]
    print("demo check:", " ".join(command), flush=True)
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + DEADLINE_S
    ok = False
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if call("GET", f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the demo's API never answered /health")
        print("demo check: /health answers", flush=True)
        token = None
        while token is None and time.monotonic() < deadline:  # the demo creates its users first
            status, answer = call("POST", f"{base}/auth/token", {"username": TRADER[0], "password": TRADER[1]})
            token = answer["access_token"] if status == 200 else None  # type: ignore[index]
            time.sleep(0.5 if token is None else 0)
        if token is None:
            raise SystemExit("could not log in as the demo trader")
        print("demo check: logged in as", TRADER[0], flush=True)
        fills: object = []
        while time.monotonic() < deadline and process.poll() is None:
            status, fills = call("GET", f"{base}/bots/{DEMO_BOT['id']}/fills", token=token)
            if status == 200 and fills:
                break
            time.sleep(1.0)
        if not fills or not isinstance(fills, list):
            raise SystemExit(f"the demo bot did not trade within {DEADLINE_S:.0f} s")
        print(f"demo check: the demo bot traded ({len(fills)} fills so far)", flush=True)
        ok = True
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            ok = False
            print("demo check: the demo did not stop within 60 s of SIGINT", flush=True)
        reader.join(5)
        if not ok or process.returncode != 0:
            print("".join(output), flush=True)
    if process.returncode != 0:
        print(f"demo check: exit status {process.returncode}", flush=True)
        return 1
    print("demo check: stopped cleanly on SIGINT", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
