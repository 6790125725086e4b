"""When the signal hub reads new signals (issue 18: the poll interval was most of a signal's
latency): a signal stored in the API's own process wakes it (engine.signals.announce_stored), a
NOTIFY on PostgreSQL wakes it from any process, and once signals are coming it polls fast, so a
writer that cannot wake it waits milliseconds, not a whole idle interval. Each test gives the hub
an idle interval of an hour: a row that arrives came through the behaviour under test, never a
routine poll. Real SQLite and PostgreSQL stores, a real hub on a real event loop."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, text

import engine.signals as signals
from api.deps import SignalScope
from api.streaming import SignalHub, _Probe
from engine.signals import STORED_CHANNEL, Signal, announce_stored
from engine.store.db import make_engine
from engine.store.models import Base, SignalRow
from engine.store.signals import SqlSignals

HOUR = 3600.0
WAIT_S = 30.0


@pytest.fixture
def store(database_url: str) -> Any:
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    SqlSignals(engine).ensure_bot("b1", "sma_cross")
    yield engine
    engine.dispose()


def _store(engine: Any, ts: int) -> None:
    """A signal stored as the runtime stores it (SqlSignals: it announces the row in this process,
    and on PostgreSQL sends the NOTIFY)."""
    sink = SqlSignals(engine)
    try:
        sink.publish(Signal("b1", "SPY", ts, 1, Decimal("0.7"), Decimal("0.5"), 0.7, 0.3, 401.5, 1, 1))
    finally:
        sink.close()


def _insert_quietly(engine: Any, ts: int) -> None:
    """A signal row that wakes nobody: what a writer in another process looks like on SQLite."""
    with engine.begin() as connection:
        connection.execute(insert(SignalRow.__table__).values(bot_id="b1", symbol="SPY", ts=ts, direction=1,
                                                              payload={}, published_ns=time.time_ns()))


async def _received(client: Any, n: int) -> list[int]:
    """The ts of the next n signals the client is handed (fails after WAIT_S)."""
    got = []
    for _ in range(n):
        item = await asyncio.wait_for(client.queue.get(), WAIT_S)
        got.append(json.loads(item[3])["ts"])  # (release, seen, id, the signal's JSON)
    return got


async def _started(engine: Any, **kwargs: Any) -> tuple[SignalHub, Any]:
    """A started hub idle for an hour, one client of bot b1 (through its queue: no writer), and
    the hub past its first poll (it now waits for a wake-up or its next poll)."""
    hub = SignalHub(engine, HOUR, **kwargs)
    await hub.start()
    client = await hub.register(SignalScope(False, {"b1": 0}))
    deadline = time.monotonic() + WAIT_S
    while hub.polls < 1:
        assert time.monotonic() < deadline, "the poller never polled"
        await asyncio.sleep(0.005)
    return hub, client


def test_a_signal_stored_by_the_apis_own_process_is_read_at_once_not_at_the_next_poll(store):
    """SqlSignals announces the row after its commit (on PostgreSQL its NOTIFY wakes the hub too)."""
    async def scenario() -> list[int]:
        hub, client = await _started(store)
        try:
            await asyncio.to_thread(_store, store, 1)
            return await _received(client, 1)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == [1]


def test_after_a_signal_the_hub_polls_fast_so_a_writer_elsewhere_is_read_within_milliseconds(store):
    """The second row wakes nobody (a runtime in another process on SQLite): the fast poll that
    follows the first one reads it."""
    async def scenario() -> list[int]:
        hub, client = await _started(store)
        try:
            await asyncio.to_thread(_store, store, 1)
            first = await _received(client, 1)
            await asyncio.to_thread(_insert_quietly, store, 2)
            return first + await _received(client, 1)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == [1, 2]


def test_a_burst_larger_than_a_batch_arrives_whole_and_in_order(store, monkeypatch):
    monkeypatch.setattr("api.streaming.BATCH", 3)  # 7 rows: batches of 3, 3 and 1, back to back

    async def scenario() -> list[int]:
        hub, client = await _started(store)
        try:
            for ts in range(1, 7):
                await asyncio.to_thread(_insert_quietly, store, ts)
            await asyncio.to_thread(_store, store, 7)  # the last one wakes the hub: it reads all 7
            return await _received(client, 7)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6, 7]


def test_a_notify_from_another_connection_wakes_the_hub_on_postgresql(store):
    if store.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY: PostgreSQL only")

    async def scenario() -> list[int]:
        hub, client = await _started(store, fast_interval_s=HOUR)  # no fast poll: only the NOTIFY can do it
        try:
            deadline = time.monotonic() + WAIT_S
            while hub.listening is not True:  # the LISTEN is in place
                assert time.monotonic() < deadline, "the hub never listened"
                await asyncio.sleep(0.005)

            def write_and_notify() -> None:  # another process's writer: the row, then the NOTIFY only
                _insert_quietly(store, 1)
                with store.begin() as connection:
                    connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": STORED_CHANNEL})

            await asyncio.to_thread(write_and_notify)
            return await _received(client, 1)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == [1]


def _hooked(hub: SignalHub) -> bool:
    """The hub's wake-up is among this process's signal listeners."""
    return any(getattr(listener, "__self__", None) is hub._wake for listener in signals._listeners)


def test_a_stopped_hub_ends_its_threads_and_is_no_longer_announced_to(store):
    async def scenario() -> SignalHub:
        hub, _ = await _started(store)
        assert hub.polling and _hooked(hub)
        await hub.stop()
        await hub.stop()  # idempotent
        return hub

    hub = asyncio.run(scenario())
    assert not hub.polling and not _hooked(hub)
    announce_stored()  # whoever is left to wake: no error from a stopped hub


def test_the_probe_tells_whether_the_store_holds_rows_past_an_id(store):
    probe = _Probe(store)
    try:
        assert probe.newer(0) is False  # empty store
        _store(store, 1)
        assert probe.newer(0) is True
        with store.connect() as connection:
            top = connection.execute(text("SELECT max(id) FROM signals")).scalar()
        assert probe.newer(top) is False
    finally:
        probe.close()


def test_an_in_memory_store_has_no_probe_and_every_poll_reads_in_full():
    probe = _Probe(make_engine("sqlite://"))
    assert probe.newer(10**9) is True and probe.connection is None
