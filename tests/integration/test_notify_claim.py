"""Two notification workers on one store (two API processes: an engine each) never deliver one
notification twice, on SQLite and PostgreSQL: deliveries are claimed by a conditional update, and
an event read by both at once makes one delivery (UNIQUE (rule, event) and the cursor's
conditional update)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api.notify.dispatcher import Dispatcher
from api.notify.store import ATTEMPTS, DELIVERIES, RULES
from api.security import Vault, set_hash_cost
from api.settings import Settings
from api.users import create_user
from engine.store.db import make_engine, upgrade
from models.signals import Signal, SqlSignals

set_hash_cost(time_cost=1, memory_kib=8192)
N = 30


class Counting:
    """A webhook receiver that counts each delivery id it is sent."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.seen[self.headers["X-Tickbridge-Delivery"]] += 1
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def store(database_url):
    upgrade(database_url)
    receiver = Counting()
    settings = Settings(database_url=database_url, notify_allowed_networks=("127.0.0.1/32",), notify_backoff_s=0.0)
    vault = Vault(Fernet.generate_key().decode())
    engines = [make_engine(database_url) for _ in range(2)]
    with Session(engines[0]) as db:
        user = create_user(db, "alice", "admin", "correct horse battery")
        db.commit()
        user_id = user.id
    with engines[0].begin() as connection:
        rule_id = connection.execute(insert(RULES).values(
            owner_id=user_id, name="", kind="signal", channel="webhook", target={"url": receiver.url},
            secret=vault.seal("k" * 32), enabled=True, created_at=datetime.now(timezone.utc))).inserted_primary_key[0]
    workers = [Dispatcher(engine, settings, vault, name=f"worker-{i}") for i, engine in enumerate(engines)]
    yield engines, workers, receiver, rule_id, user_id
    receiver.server.shutdown()
    receiver.server.server_close()
    for engine in engines:
        engine.dispose()


def _together(*calls: Any) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_workers_never_send_one_delivery_twice(store):
    engines, workers, receiver, rule_id, user_id = store
    with engines[0].begin() as connection:
        for i in range(N):
            connection.execute(insert(DELIVERIES).values(
                rule_id=rule_id, owner_id=user_id, event_key=f"test:{i}", event_kind="test", payload={"text": str(i)},
                channel="webhook", status="pending", attempts=0, next_attempt_ns=0, created_ns=0))
    sent = _together(workers[0].send_due, workers[1].send_due)
    while sum(w.send_due() for w in workers):  # what a claim race left for the next round
        pass
    assert sum(sent) <= N and len(receiver.seen) == N and set(receiver.seen.values()) == {1}
    with engines[0].connect() as connection:
        assert connection.execute(select(func.count()).select_from(ATTEMPTS)).scalar() == N
        assert set(connection.execute(select(DELIVERIES.c.status)).scalars()) == {"sent"}


def test_one_claim_wins(store):
    engines, workers, _, rule_id, user_id = store
    with engines[0].begin() as connection:
        delivery_id = connection.execute(insert(DELIVERIES).values(
            rule_id=rule_id, owner_id=user_id, event_key="test:x", event_kind="test", payload={}, channel="webhook",
            status="pending", attempts=0, next_attempt_ns=0, created_ns=0)).inserted_primary_key[0]
    claims = _together(lambda: workers[0].claim(delivery_id, 1), lambda: workers[1].claim(delivery_id, 1))
    assert sum(c is not None for c in claims) == 1
    # an expired claim (its worker died mid-send) is taken over; a live one is not
    winner = next(c for c in claims if c is not None)
    loser = workers[1] if winner.claimed_by == "worker-0" else workers[0]
    assert loser.claim(delivery_id, 2) is None
    assert loser.claim(delivery_id, winner.claimed_until_ns + 1) is not None


def test_an_event_read_by_two_workers_at_once_is_delivered_once(store):
    engines, workers, receiver, _, _ = store
    for worker in workers:
        worker.scan()  # the cursors start at the end
    signals = SqlSignals(engines[0])
    signals.ensure_bot("b1", "sma_cross")
    for ts in range(5):
        signals.publish(Signal("b1", "SPY", ts, 1, Decimal("0.7"), Decimal("0.5"), 0.7, 0.3, 401.5, 1, 1))
    _together(workers[0].run_once, workers[1].run_once)
    for worker in workers:
        worker.run_once()
    assert len(receiver.seen) == 5 and set(receiver.seen.values()) == {1}
    with engines[0].connect() as connection:
        assert connection.execute(select(func.count()).select_from(DELIVERIES)).scalar() == 5


def test_stops_and_daily_losses_are_read_on_both_stores(store):
    """The bots source compares wall-clock timestamps and the risk source reads money rows: the
    same answer from SQLite's text and PostgreSQL's timestamptz / NUMERIC."""
    from live.books import record_stop

    engines, workers, receiver, rule_id, user_id = store
    with engines[0].begin() as connection:
        connection.execute(RULES.update().where(RULES.c.id == rule_id)
                           .values(kind="bot_state", stop_reasons=["ERROR", "KILLED"]))
        connection.execute(insert(RULES).values(
            owner_id=user_id, name="", kind="daily_loss", channel="webhook", target={"url": receiver.url},
            secret=None, enabled=True, created_at=datetime.now(timezone.utc)))
    workers[0].scan()
    SqlSignals(engines[0]).ensure_bot("b1", "sma_cross")
    record_stop(engines[0], "b1", "KILLED", "killed")
    from engine.store.models import AccountRiskStateRow

    with engines[0].begin() as connection:
        connection.execute(insert(AccountRiskStateRow.__table__).values(
            account_key=f"{user_id}:main", state="HALTED", reason="DAILY_LOSS", changed_ts=1, day=1,
            pnl_base=Decimal("-12.5"), drawdown_base=Decimal(0), seq=1))
    for worker in workers:
        worker.run_once()
    with engines[0].connect() as connection:
        kinds = sorted(connection.execute(select(DELIVERIES.c.event_kind)).scalars())
    assert kinds == ["bot_state", "daily_loss"] and len(receiver.seen) == 2
