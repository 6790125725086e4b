"""The README's main job: `tickbridge demo` brings up the API with a paper bot on real ticks,
serves traders and subscribers, stops cleanly on Ctrl-C, and resumes on the next run."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from app.demo import DEMO_BOT, SUBSCRIBER, TRADER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(url: str, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--port", str(port), "--speed", "2000",
                             "--url", url, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_line(process: subprocess.Popen, needle: str, lines: list[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"never printed {needle!r}:\n{''.join(lines)}")


def login(http: httpx.Client, who: tuple[str, str]) -> dict[str, str]:
    response = http.post("/auth/token", json={"username": who[0], "password": who[1]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_demo_serves_trades_stops_cleanly_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    port = free_port()
    process = start(url, port)
    lines: list[str] = []
    try:
        wait_for_line(process, "Ctrl-C stops", lines)
        printed = "".join(lines)
        assert f"http://127.0.0.1:{port}/api/v1/docs" in printed and TRADER[0] in printed and TRADER[1] in printed
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as http:
            trader, subscriber = login(http, TRADER), login(http, SUBSCRIBER)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # the bot trades real ticks: wait for its first signal
                signals = http.get("/signals", headers=subscriber).json()["items"]
                if signals:
                    break
                time.sleep(0.5)
            assert signals and all(s["bot_id"] == DEMO_BOT["id"] for s in signals)
            status = http.get(f"/bots/{DEMO_BOT['id']}/status", headers=trader).json()
            assert status["bars"] > 0 and status["ticks"] > 0
            assert http.get(f"/bots/{DEMO_BOT['id']}/status", headers=subscriber).status_code in (403, 404)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines) + out
    assert "stopping" in out and "recorded: tickbridge parity" in out

    again = start(url, port, "--for", "2")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert "Ctrl-C stops" in out and "checkpoint" in out


def test_a_demo_whose_bot_replayed_its_whole_feed_starts_it_again(tmp_path):
    """The README: "run it again and the bot resumes". Once the bot has replayed the bundled ticks to
    their end, a start is refused (409, nothing left to trade); the demo then resets it (books
    archived, as a trader would) and replays the feed from the start instead of exiting with no API."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    port = free_port()
    first = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--port", str(port), "--speed", "0",
                              "--url", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        wait_for_line(first, "END_OF_FEED", lines, timeout_s=300)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    again = start(url, port, "--for", "2")
    out, _ = again.communicate(timeout=180)
    assert again.returncode == 0, out
    assert "RESET" in out and "replays the feed from the start" in out and "Ctrl-C stops" in out
