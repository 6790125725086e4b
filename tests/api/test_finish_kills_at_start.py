"""The server finishes the kills a crash or a venue cut short when it starts (api.app's lifespan
calls the runtime's finish_kills on a thread of its own: the API serves meanwhile); what
finish_kills does is held in tests/integration/test_live_venue_bot.py."""

from __future__ import annotations

import threading

from live.manager import BotManager


def test_the_app_asks_its_runtime_to_finish_interrupted_kills_at_start_and_serves_meanwhile(make_api, monkeypatch):
    called, release = threading.Event(), threading.Event()

    def finish_kills(self: BotManager) -> list[str]:
        called.set()
        release.wait(30)  # a slow venue: the API must answer anyway
        return []

    monkeypatch.setattr(BotManager, "finish_kills", finish_kills)
    api = make_api()
    try:
        assert called.wait(30), "the lifespan did not call finish_kills"
        assert api.client.get("/api/v1/health").status_code == 200  # served while it runs
    finally:
        release.set()


def test_a_failing_finish_kills_does_not_stop_the_server(make_api, monkeypatch):
    def finish_kills(self: BotManager) -> list[str]:
        raise RuntimeError("venue down")

    monkeypatch.setattr(BotManager, "finish_kills", finish_kills)
    api = make_api()
    assert api.client.get("/api/v1/health").status_code == 200
