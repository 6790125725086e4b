"""One bot, one runner: a lease in the store (table bot_leases, migration 0006) for every bot a
runtime runs.

Why: two runtimes on one store (two API workers, a `tickbridge run` beside a server) could each
start the same bot. Both would replay and append to the bot's one paper venue log and write the
bot's rows; the second died on a UNIQUE constraint only after it had written to the venue log.
The lease makes the second start fail (BotLeased, a 409 at the API) before it touches either,
and lets a bot whose runtime died be taken over once that runtime's lease has expired.

- acquire: one atomic statement, an INSERT that on conflict takes the row over only where it
  expired or is already ours; then, in the same transaction, who holds it now.
- renew: a heartbeat thread moves expires_at on every ttl/3, where the owner is still us. No row
  updated means another runtime took the bot (we stalled past the expiry): the lease is lost.
- check (the bot's thread, before each input and before each journal commit, hence before any
  order reaches a venue): local, no I/O. It raises LeaseLost when the heartbeat saw the lease
  taken; if no renewal succeeded for half a TTL (the heartbeat is stalled or the store slow),
  it renews synchronously first, so the bot never acts on a lease that may have expired.
- release: the row is deleted (where the owner is still us) when the bot's thread ends.

Expiry is the writer's wall clock (UTC): runtimes on different hosts must keep their clocks
within a fraction of the TTL of each other, which NTP does.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import StoreUnavailable
from live.control import BotLeased, LeaseLost
from engine.store.models import BotLeaseRow

LEASES = BotLeaseRow.__table__
DEFAULT_TTL_S = 15.0


def runtime_owner() -> str:
    """"<hostname>:<pid>:<uuid4>": which machine and process hold a bot, unique per runtime."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4()}"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)  # SQLite drops the zone


def _store_error(exc: SQLAlchemyError) -> StoreUnavailable:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return StoreUnavailable(f"cannot read or write the bot leases (is the store upgraded? `tickbridge db "
                            f"upgrade`): {reason}")


class Leases:
    """The leases one runtime takes in one store."""

    def __init__(self, engine: Engine, ttl_s: float = DEFAULT_TTL_S, owner: str | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease TTL must be positive")
        self.engine = engine
        self.ttl_s = ttl_s
        self.owner = owner or runtime_owner()

    def acquire(self, bot_id: str) -> "BotLease":
        """Take the bot's lease (free, expired, or already ours) and start renewing it; raise
        BotLeased naming the holder otherwise."""
        now = datetime.now(timezone.utc)
        values = {"bot_id": bot_id, "owner": self.owner, "acquired_at": now, "heartbeat_at": now,
                  "expires_at": now + timedelta(seconds=self.ttl_s)}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(LEASES).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["bot_id"], set_={k: statement.excluded[k] for k in values if k != "bot_id"},
            where=(LEASES.c.expires_at < now) | (LEASES.c.owner == self.owner))
        started = time.monotonic()
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
                holder = connection.execute(select(LEASES.c.owner, LEASES.c.expires_at)
                                            .where(LEASES.c.bot_id == bot_id)).one()
        except SQLAlchemyError as exc:
            raise _store_error(exc) from None
        if holder.owner != self.owner:
            raise BotLeased(bot_id, holder.owner, f"{_utc(holder.expires_at):%Y-%m-%d %H:%M:%S}")
        lease = BotLease(self, bot_id, started)
        lease.start()
        return lease


class BotLease:
    """One bot's lease while this runtime runs it (see the module docstring)."""

    def __init__(self, leases: Leases, bot_id: str, renewed_at: float) -> None:
        self.leases = leases
        self.bot_id = bot_id
        self.renewals = 0
        self.lost: LeaseLost | None = None
        self._renewed_at = renewed_at  # monotonic time taken *before* the last successful write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{bot_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def renew(self) -> None:
        """Move the expiry on, where we still own the row; LeaseLost if another runtime took it."""
        if self.lost is not None:
            raise self.lost
        leases = self.leases
        started = time.monotonic()
        now = datetime.now(timezone.utc)
        try:
            with leases.engine.begin() as connection:
                updated = connection.execute(
                    update(LEASES).where(LEASES.c.bot_id == self.bot_id, LEASES.c.owner == leases.owner)
                    .values(heartbeat_at=now, expires_at=now + timedelta(seconds=leases.ttl_s))).rowcount
        except SQLAlchemyError as exc:
            raise _store_error(exc) from None
        if updated != 1:
            self.lost = LeaseLost(self.bot_id, "another runtime took over its lease (this one stalled past "
                                  "the lease's expiry)")
            raise self.lost
        self._renewed_at = max(self._renewed_at, started)
        self.renewals += 1

    def check(self) -> None:
        """On the bot's thread, before it acts: raise LeaseLost unless the lease is surely ours."""
        if self.lost is not None:
            raise self.lost
        if time.monotonic() - self._renewed_at >= self.leases.ttl_s / 2:
            self.renew()  # the heartbeat fell behind: prove we still hold it before acting

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.leases.ttl_s / 3):
            try:
                self.renew()
            except LeaseLost:
                return
            except StoreUnavailable:
                continue  # check() renews synchronously once half a TTL passed without a renewal

    def release(self) -> None:
        """Stop renewing and give the bot up (only if the row is still ours). Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self.lost is not None:
            return
        try:
            with self.leases.engine.begin() as connection:
                connection.execute(delete(LEASES).where(LEASES.c.bot_id == self.bot_id,
                                                        LEASES.c.owner == self.leases.owner))
        except SQLAlchemyError:
            pass  # the store is gone: the lease expires on its own
