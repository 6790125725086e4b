"""The store's `signals` table as a SignalSink (and the signals of a bot read back)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, insert, select, text

from engine.signals import STORED_CHANNEL, Signal, announce_stored
from engine.store.models import BotRow, SignalRow
from engine.store.prepared import SqliteWriter, usable

SIGNALS = SignalRow.__table__
# PostgreSQL readers in other processes are woken by this NOTIFY, sent in the writing transaction
NOTIFY = text("SELECT pg_notify(:channel, '')").bindparams(channel=STORED_CHANNEL)
SIGNAL_KEYS = ("bot_id", "symbol", "ts", "direction", "target_weight", "confidence", "model_id", "model_version",
               "payload", "published_ns")


class SqlSignals:
    """Signals written to the store's `signals` table, one committed row each: a subscriber may
    act on a signal as soon as it is published, so it must survive a crash from then on.

    A running bot's sink rides on its journal (`defer_to`, live/runner.py): the row is written by
    the journal's next commit, which comes before any order the signal leads to can reach a venue
    (the write-ahead, where it is durable in the bot's write-ahead record: engine/store/write_ahead.py,
    and reaches the table with the order's rows right after the venue call) and at the latest when
    the bot's input is done. A subscriber still sees only committed rows, so nothing it may act on
    can be lost; a signal and the order it causes are durable together, at the cost of one commit
    instead of two, and a subscriber never sees a signal before the bot's own order is on its way.
    Readers are woken after the commit that stored a signal, whichever wrote it (engine.signals:
    announce_stored in this process, a NOTIFY on PostgreSQL in the writing transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = insert(SIGNALS)  # built once; on SQLite in a file, run at the driver (prepared.py):
        self._writer = SqliteWriter(engine) if usable(engine) else None  # a rule bot publishes before it orders
        self._prepared = self._writer.prepare(self._insert, SIGNAL_KEYS) if self._writer is not None else None
        self._journal: Any = None

    def defer_to(self, journal: Any) -> None:
        """Write each signal with `journal`'s next commit (a SqlJournal on the same database)."""
        self._journal = journal

    def ensure_bot(self, bot_id: str, strategy: str) -> None:
        with self.engine.begin() as connection:
            if connection.execute(select(BotRow.id).where(BotRow.id == bot_id)).first() is None:
                connection.execute(insert(BotRow.__table__).values(id=bot_id, name=bot_id, strategy=strategy))

    def publish(self, signal: Signal) -> None:
        row = {"bot_id": signal.bot_id, "symbol": signal.symbol, "ts": signal.ts, "direction": signal.direction,
               "target_weight": signal.target_weight, "confidence": signal.confidence,
               "model_id": str(signal.model_id), "model_version": str(signal.model_version),
               "payload": {"p_up": signal.p_up, "p_down": signal.p_down, "price": signal.price},
               "published_ns": time.time_ns()}  # the wall clock: plan delays count from here
        if self._journal is not None:
            self._journal.record_signal(row)
            return
        if self._writer is not None and self._prepared is not None:
            self._writer.write([(self._prepared, [row])])
        else:
            with self.engine.begin() as connection:
                connection.execute(self._insert, row)
                if connection.dialect.name == "postgresql":
                    connection.execute(NOTIFY)
        announce_stored()  # committed: this process's readers (engine.signals) wake now

    def close(self) -> None:
        """Give back the connection the SQLite path holds (before the engine is disposed)."""
        if self._writer is not None:
            self._writer.close()

    def load(self, bot_id: str) -> list[Signal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(SIGNALS).where(SIGNALS.c.bot_id == bot_id)
                                      .order_by(SIGNALS.c.ts, SIGNALS.c.id)).all()
        return [Signal(r.bot_id, r.symbol, r.ts, r.direction, r.confidence, r.target_weight, r.payload["p_up"],
                       r.payload["p_down"], r.payload["price"], int(r.model_id), int(r.model_version))
                for r in rows]
