"""`tickbridge demo` tells on its console what its bots do: each state change (STARTING, RUNNING,
STOPPED with the reason) and each error, one line with an ISO 8601 time, never a line per tick."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.demo import DEMO_BOT
from tests.e2e.test_demo import free_port

LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)  (\S+)  ([A-Z_]+)(?:  (.*))?$")


class Demo:
    """The demo as a user runs it, its output read line by line as it comes."""

    def __init__(self, tmp_path: Path, speed: str) -> None:
        self.db = tmp_path / "demo.db"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo", "--port", str(free_port()), "--speed", speed,
             "--url", f"sqlite:///{self.db}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def bot_lines(self) -> list[tuple[str, str, str]]:
        """(time, state or ERROR, the rest) of the demo bot's console lines, in order."""
        found = []
        for line in list(self.lines):
            match = LINE.match(line)
            if match and match.group(2) == DEMO_BOT["id"]:
                found.append((match.group(1), match.group(3), match.group(4) or ""))
        return found

    def wait_for(self, predicate, what: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.bot_lines()):
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert predicate(self.bot_lines()), f"never printed {what}:\n" + "\n".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=90)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(10)
        return self.process.returncode


def test_the_console_prints_each_state_change_with_its_time_and_reason_not_each_tick(tmp_path):
    demo = Demo(tmp_path, speed="0")  # as fast as possible: the bundled day of ticks ends in seconds
    try:
        demo.wait_for(lambda lines: any(state == "STOPPED" for _, state, _ in lines), "the end of the feed")
    finally:
        assert demo.stop() == 0, "\n".join(demo.lines)
    lines = demo.bot_lines()
    states = [state for _, state, _ in lines]
    assert states[:3] == ["STARTING", "RUNNING", "STOPPED"], lines
    stopped = lines[2][2]
    assert "END_OF_FEED" in stopped and "58143" in stopped  # why, in the runtime's words: the whole feed replayed
    assert len(lines) <= 6, lines  # 58,143 ticks, a handful of lines
    times = [t for t, _, _ in lines]
    assert times == sorted(times)


def test_a_bot_that_dies_on_a_store_error_says_so_on_the_console(tmp_path):
    demo = Demo(tmp_path, speed="100")  # slow enough to be trading when its store goes away
    try:
        demo.wait_for(lambda lines: any(state == "RUNNING" for _, state, _ in lines), "RUNNING")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{demo.db}{suffix}").unlink(missing_ok=True)  # an operator's cleanup gone wrong
        demo.wait_for(lambda lines: any(state == "ERROR" for _, state, _ in lines), "the store error")
    finally:
        demo.stop()
    lines = demo.bot_lines()
    stopped = [rest for _, state, rest in lines if state == "STOPPED"]
    errors = [rest for _, state, rest in lines if state == "ERROR"]
    assert stopped and "STORE_ERROR" in stopped[0], lines
    assert errors and "store" in errors[0].lower(), lines
