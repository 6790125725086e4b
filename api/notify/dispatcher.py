"""The dispatcher: ONE per API process (like the signals poller, api.streaming), started and
stopped by the app's lifespan. Every `notify_interval_s` it scans the sources for new events
(api.notify.events: deliveries inserted with the cursors, in one transaction) and sends the
deliveries that are due.

Two workers (processes or dispatchers) never send one delivery twice: a delivery is claimed by a
conditional update (status pending and due, or a claim that expired: its sender died mid-send)
that sets the claimant and a claim deadline; only the worker whose update changed the row sends,
and only it may record the result (WHERE claimed_by = itself). A sender that dies after sending
and before recording leaves the claim to expire and the delivery is sent again: at least once,
never twice while workers are alive (the delivery id in X-Tickbridge-Delivery lets a receiver
deduplicate that rare case).

Retries: 2xx is final; a retryable failure waits notify_backoff_s * 2^(attempt-1), capped at
notify_backoff_max_s, plus up to 50 % jitter (so receivers coming back are not hit by every
sender at once), or the receiver's Retry-After when longer; after notify_max_attempts the
delivery is failed. Every attempt is a row of the delivery log (notification_attempts).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import time
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.exc import OperationalError

from api.notify import channels, events
from api.notify.store import ATTEMPTS, DELIVERIES, RULES
from api.security import Vault
from api.settings import Settings

log = logging.getLogger("tickbridge.api.notify")
NS = 1_000_000_000
CLAIM_S = 120.0          # a claim outlives any one send (timeouts are far shorter)
SEND_BATCH = 50


def backoff_s(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """The wait after failed attempt `attempt` (1 = the first): exponential, capped, with jitter."""
    base = min(settings.notify_backoff_max_s, settings.notify_backoff_s * 2 ** (attempt - 1))
    return base * (1.0 + 0.5 * (rng or random).random())


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, vault: Vault, name: str | None = None) -> None:
        self.engine, self.settings, self.vault = engine, settings, vault
        self.name = name or f"{socket.gethostname()}:{secrets.token_hex(4)}"[:64]
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the store went away for a moment: keep going, /ready reports it
                log.exception("notification dispatch failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.notify_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    # -- one round (also called directly by tests) --------------------------------------------------
    def run_once(self, now_ns: int | None = None) -> int:
        """Scan for events, then send what is due; returns the deliveries sent (successfully)."""
        self.scan(now_ns)
        return self.send_due(now_ns)

    def scan(self, now_ns: int | None = None) -> int:
        try:
            with self.engine.begin() as connection:
                return events.scan_once(connection, self.settings, now_ns)
        except events.LostRace:
            return 0  # another worker read these events: it made their deliveries
        except OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                return 0  # SQLite: another writer won the scan
            raise

    def send_due(self, now_ns: int | None = None) -> int:
        now_ns = time.time_ns() if now_ns is None else now_ns
        due = or_(and_(DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_ns <= now_ns),
                  and_(DELIVERIES.c.status == "sending", DELIVERIES.c.claimed_until_ns < now_ns))
        with self.engine.connect() as connection:
            ids = list(connection.execute(select(DELIVERIES.c.id).where(due)
                                          .order_by(DELIVERIES.c.next_attempt_ns, DELIVERIES.c.id)
                                          .limit(SEND_BATCH)).scalars())
        sent = 0
        for delivery_id in ids:
            claimed = self.claim(delivery_id, now_ns)
            if claimed is not None:
                sent += self.deliver(claimed)
        return sent

    def claim(self, delivery_id: int, now_ns: int) -> Any | None:
        """The delivery, if this worker's conditional update took it (else another one has it)."""
        due = or_(and_(DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_ns <= now_ns),
                  and_(DELIVERIES.c.status == "sending", DELIVERIES.c.claimed_until_ns < now_ns))
        with self.engine.begin() as connection:
            taken = connection.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id, due)
                                       .values(status="sending", claimed_by=self.name,
                                               claimed_until_ns=now_ns + int(CLAIM_S * NS),
                                               attempts=DELIVERIES.c.attempts + 1)).rowcount
            if taken != 1:
                return None
            return connection.execute(select(DELIVERIES).where(DELIVERIES.c.id == delivery_id)).first()

    def deliver(self, delivery: Any, max_attempts: int | None = None) -> int:
        """Send one claimed delivery and record the attempt; 1 when it was delivered."""
        limit = max_attempts or self.settings.notify_max_attempts
        with self.engine.connect() as connection:
            rule = connection.execute(select(RULES).where(RULES.c.id == delivery.rule_id)).first()
            if rule is None or rule.deleted_at is not None or (not rule.enabled and delivery.event_kind != "test"):
                visible, not_before = False, 0
                why = "rule deleted or disabled"
            else:
                visible, not_before = events.visible_now(connection, self.settings, delivery.owner_id,
                                                         delivery.event_kind, delivery.payload, time.time_ns())
                why = "no longer visible to the rule's owner (subscription, publication or plan)"
        if not visible:
            return self._record(delivery, "skipped", channels.Outcome(False, error=why), None)
        if not_before > time.time_ns():  # a plan's delay now longer than when it was queued: not yet
            self._release(delivery, not_before)
            return 0
        secret = None
        if rule.secret is not None:
            try:
                secret = self.vault.open(rule.secret)
            except ValueError:
                return self._record(delivery, "failed", channels.Outcome(
                    False, error="the rule's secret cannot be decrypted with TICKBRIDGE_ACCOUNTS_KEY"), None)
        message = channels.Message(delivery.id, rule.id, delivery.event_key, delivery.event_kind, delivery.payload,
                                   dict(rule.target), secret, int(time.time()))
        try:
            outcome = channels.send(rule.channel, message, self.settings)
        except Exception as error:  # noqa: BLE001 - a channel bug must not stop the dispatcher
            log.exception("notification channel %s failed", rule.channel)
            outcome = channels.Outcome(False, retryable=True, error=f"internal error: {type(error).__name__}")
        if outcome.ok:
            return self._record(delivery, "sent", outcome, None)
        if outcome.retryable and delivery.attempts < limit:
            wait = backoff_s(delivery.attempts, self.settings)
            if outcome.retry_after_s is not None:
                wait = max(wait, outcome.retry_after_s)
            return self._record(delivery, "retry", outcome, time.time_ns() + int(wait * NS))
        return self._record(delivery, "failed", outcome, None)

    def _release(self, delivery: Any, not_before: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery.id,
                                                        DELIVERIES.c.claimed_by == self.name)
                               .values(status="pending", next_attempt_ns=not_before, claimed_by=None,
                                       claimed_until_ns=None, attempts=DELIVERIES.c.attempts - 1))

    def _record(self, delivery: Any, result: str, outcome: channels.Outcome, next_ns: int | None) -> int:
        now = time.time_ns()
        status = {"retry": "pending"}.get(result, result)
        values: dict[str, Any] = {"status": status, "claimed_by": None, "claimed_until_ns": None,
                                  "last_http_status": outcome.http_status,
                                  "last_error": None if outcome.error is None else outcome.error[:512]}
        if next_ns is not None:
            values["next_attempt_ns"] = next_ns
        if result == "sent":
            values["sent_ns"] = now
        with self.engine.begin() as connection:
            mine = connection.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery.id,
                                                               DELIVERIES.c.claimed_by == self.name)
                                      .values(**values)).rowcount
            if mine == 1:
                connection.execute(ATTEMPTS.insert().values(
                    delivery_id=delivery.id, attempt=delivery.attempts, status=result,
                    http_status=outcome.http_status, error=values["last_error"], at_ns=now, next_attempt_ns=next_ns))
        return 1 if result == "sent" and mine == 1 else 0
