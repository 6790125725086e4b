"""A small, real, in-process BotControl for the API tests: it keeps each bot's state and a log of
every call, and refuses what a runtime refuses (starting a running bot, stopping a stopped one).
It trades nothing; the API's job is to route calls to it under the right authority."""

from __future__ import annotations

import threading
from typing import Any

from engine.errors import TickbridgeError
from live.config import BotConfig


class NotRunning(TickbridgeError):
    pass


class InProcessBots:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.configs: dict[str, BotConfig] = {}
        self.log: list[tuple[str, str, str]] = []   # (action, bot id, detail)
        self._lock = threading.Lock()

    def start(self, config: BotConfig) -> None:
        with self._lock:
            if self.states.get(config.id) == "RUNNING":
                raise TickbridgeError(f"bot {config.id!r} is already running")
            self.states[config.id], self.configs[config.id] = "RUNNING", config
            self.log.append(("start", config.id, config.strategy))

    def stop(self, bot_id: str) -> None:
        with self._lock:
            if self.states.get(bot_id) != "RUNNING":
                raise NotRunning(f"bot {bot_id!r} is not running")
            self.states[bot_id] = "STOPPED"
            self.log.append(("stop", bot_id, ""))

    def kill(self, bot_id: str, reason: str) -> None:
        with self._lock:
            self.states[bot_id] = "HALTED"
            self.log.append(("kill", bot_id, reason))

    def resume(self, bot_id: str) -> None:
        with self._lock:
            if self.states.get(bot_id) != "HALTED":
                raise NotRunning(f"bot {bot_id!r} is not halted")
            self.states[bot_id] = "STOPPED"
            self.log.append(("resume", bot_id, ""))

    def reset(self, bot_id: str, actor: str) -> dict[str, Any]:
        with self._lock:
            if self.states.get(bot_id) == "RUNNING":
                raise TickbridgeError(f"bot {bot_id!r} is running: stop it before resetting it")
            self.states[bot_id] = "STOPPED"
            self.log.append(("reset", bot_id, actor))
            return {"bot_id": bot_id, "archive_id": None, "message": f"bot {bot_id!r} reset"}

    def status(self, bot_id: str) -> dict[str, Any]:
        return {"bot_id": bot_id, "state": self.states.get(bot_id, "STOPPED"), "bars": 0, "ticks": 0, "orders": 0,
                "equity": None, "position": None, "last_tick_ts": None}

    def running(self) -> list[str]:
        return sorted(b for b, s in self.states.items() if s == "RUNNING")
